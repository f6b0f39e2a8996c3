"""One condition on one dataset: encode (cached) -> search -> rerank -> evaluate -> result dict.

A *condition* is what a results row means: a first stage (BM25, a dense encoder, a MUVERA FDE of
ColBERT token vectors, or full ColBERT maxsim), an optional maxsim reranker of its top ``depth``,
and the settings that change numbers (index, top-k, FDE parameters, max lengths). Its name is the
results folder and the table's key (:func:`condition_name`).

This module orchestrates; the stages are in :mod:`harness.stages`, and the model kind's entry in
:mod:`harness.registry` says which one a ``--model`` builds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import registry
from harness.cache import VectorCache
from harness.data import TITLE_SEPARATOR, Dataset
from harness.engine import engine_of
from harness.errors import HarnessError
from harness.evaluate import METRICS, PRIMARY_METRIC, Evaluation, clean_ranking, evaluate
from harness.retrieval import exact
from harness.results import build_result
from harness.stages import ColBERTTokens, MaxSimReranker, RunLog, Stage


@dataclass
class RunOptions:
    """Settings of a run that are not the model itself."""

    top_k: int = 1000
    index: str = "exact"  # "exact" | "txtai"
    batch_size: int = 32
    max_length: int | None = None
    rerank: str | None = None
    rerank_depth: int = 100
    fde: dict = field(default_factory=dict)  # FDEConfig fields for muvera first stages
    trust_remote_code: bool = False
    allow_pickle: bool = False
    max_memory_bytes: int | None = None
    precision: str = "fp32"  # dense encoders: "fp32" (reference) | "int8" (dynamic quantisation) | "bf16" (openvino)
    backend: str = "torch"  # "torch" (PyTorch eager) | "onnx" / "openvino" (exported graph run by onnxruntime / OpenVINO)
    name: str | None = None
    empty_queries: str = "zero"  # "zero" | "drop": queries with no results score 0, or leave the mean (BEIR)
    metrics: tuple[str, ...] = METRICS  # evaluated and stored, as "<name>@<cutoff>"; the primary first
    device: str = "cpu"  # torch device of the encoders ("cpu" | "cuda"), chosen by harness.engine.device
    engine: object = None  # harness.engine.LocalEngine (None) or RayEngine: where encoding and search run


def condition_name(model: str, options: RunOptions) -> str:
    """A file-system-safe name that changes whenever a number-changing setting does."""

    def slug(value: str) -> str:
        value = value.rstrip("/")
        if ":" in value:
            kind, path = value.split(":", 1)
            value = f"{kind}-{Path(path).name}"
        elif "/" in value:
            value = value.replace("/", "__") if not Path(value).exists() else Path(value).name
        return value

    if options.name:
        return options.name
    name = slug(model)
    fde_mode = options.fde.get("mode")
    if fde_mode and fde_mode != "txtai":
        name += f"-{fde_mode}"
    if options.index != "exact":
        name += f"-{options.index}"
    if options.max_length:
        name += f"-len{options.max_length}"
    if options.precision != "fp32":  # fp32 numbers agree across backends (4 decimals): one condition
        name += f"-{options.backend}" if options.backend != "torch" else ""
        name += f"-{options.precision}"
    if options.rerank:
        name += f"+rerank-{slug(options.rerank)}@{options.rerank_depth}"
    if options.empty_queries != "zero":
        name += f"-empty-{options.empty_queries}"
    return name


# ---------------------------------------------------------------------------------------------
# Building and running a condition


class Condition:
    """A resolved condition: its stages are loaded once and reused across datasets."""

    def __init__(self, model: str, options: RunOptions, cache: VectorCache):
        self.model = model
        self.options = options
        self.cache = cache
        self.name = condition_name(model, options)
        self._colbert: dict[str, ColBERTTokens] = {}
        spec, path = registry.resolve(model)
        if options.precision != "fp32" and spec.model_kind.name != "dense":
            raise HarnessError(f"--precision {options.precision} applies to dense encoders; '{model}' is a"
                               f" {spec.model_kind.name} model, which runs fp32 only")
        self.spec = spec
        self.first_stage: Stage = spec.model_kind.first_stage(self, spec, path)
        self.reranker = None
        if options.rerank:
            rerank_spec, rerank_path = registry.resolve(options.rerank)
            if not rerank_spec.model_kind.reranks:
                raise HarnessError(
                    f"--rerank {options.rerank}: a reranker must be a ColBERT model (colbert-pico or colbert:PATH)"
                )
            self.reranker = MaxSimReranker(self.tokens(rerank_spec.name, rerank_path), options.rerank_depth)

    def tokens(self, name: str, path: str) -> ColBERTTokens:
        """The ColBERT model at ``path`` with its token cache, loaded once per condition."""
        if path not in self._colbert:
            self._colbert[path] = ColBERTTokens(name, path, self.cache, self.options)
        return self._colbert[path]

    def storage(self, dataset: Dataset) -> dict:
        """What must be stored per document to serve this condition, in float32 bytes: the first
        stage's vector or token matrices, and the reranker's token matrices (the reranker's stand in
        for a maxsim first stage's), with their sum as ``bytes_per_doc``."""
        storage = self.first_stage.storage(dataset)
        if self.reranker is not None:
            storage.update(self.reranker.storage(dataset))
        if storage:
            storage["bytes_per_doc"] = storage.get("vector_bytes_per_doc", 0) + storage.get("token_bytes_per_doc", 0)
        return storage

    def memory_estimate(self, dataset: Dataset) -> int:
        """Bytes the vectors of ``dataset`` will hold at once, estimated before any encoding.

        The first stage's own vectors plus each ColBERT model's token matrices, counted once however
        many stages share them: a budget check, not an accounting.
        """
        return self.first_stage.memory_estimate(dataset) + sum(
            tokens.memory_estimate(dataset) for tokens in self._colbert.values())

    def run(self, dataset: Dataset, command: str = "") -> tuple[dict, dict[str, dict[str, float]]]:
        """Evaluate this condition on ``dataset``; returns (result, run)."""
        budget = self.options.max_memory_bytes
        if budget:
            needed = self.memory_estimate(dataset)
            if needed > budget:
                raise HarnessError(
                    f"{self.name} on {dataset.name} needs about {needed / 2**30:.2f} GiB of vectors, over the"
                    f" --max-memory budget of {budget / 2**30:.2f} GiB; raise the budget or use a smaller corpus"
                )
        log = RunLog()
        start = time.perf_counter()
        k = self.options.top_k
        depth = retrieval_depth(dataset, k)
        scores, indices = self.first_stage.retrieve(dataset, max(depth, self.options.rerank_depth if self.reranker else 0), log)
        if self.reranker is not None:
            scores, indices = self.reranker.rerank(dataset, scores, indices, log)
        with log.step("evaluate_seconds"):
            evaluation, run = evaluate_ranking(dataset, scores, indices, k, self.options.empty_queries,
                                               self.options.metrics)
        run = {q: clean_ranking(q, docs, True, k)[0] for q, docs in run.items()}
        log.seconds["total_seconds"] = round(time.perf_counter() - start, 3)
        result = build_result(
            self.name, self.model, dataset,
            metrics=evaluation.metrics,
            primary_metric=PRIMARY_METRIC,
            n_queries=evaluation.counts["queries_evaluated"],
            counts={**dataset.counts, **evaluation.counts},
            method={
                "kind": self.spec.kind,
                "first_stage": self.first_stage.provenance(),
                "reranker": self.reranker.provenance() if self.reranker else None,
                "index": self.options.index,
                "top_k": k,
                "search": "exact" if self.options.index == "exact" else "txtai numpy backend (exact)",
                "empty_queries": self.options.empty_queries,
                "execution": {**engine_of(self.options).provenance(),
                              "corpus": "streamed from disk" if dataset.corpus is not None else "in memory"},
            },
            text_format={"document": "title + separator + text, stripped", "separator": TITLE_SEPARATOR},
            storage=self.storage(dataset),
            log=log,
            command=command,
            per_query={q: v[PRIMARY_METRIC] for q, v in evaluation.per_query.items()},
        )
        return result, run


def retrieval_depth(dataset: Dataset, k: int) -> int:
    """How many documents to retrieve per query for ``k`` to be evaluated: a query id that is also a
    document id may retrieve itself, which evaluation removes, so one more keeps k after the removal
    (as BEIR's exact search does)."""
    return k + 1 if not set(dataset.query_ids).isdisjoint(dataset.doc_ids) else k


def evaluate_ranking(dataset: Dataset, scores: np.ndarray, indices: np.ndarray, k: int,
                     empty_queries: str = "zero", metrics=METRICS) -> tuple[Evaluation, dict[str, dict[str, float]]]:
    """Score a ranking of ``dataset`` (scores, doc indices (n_queries, >= k), best first; -inf = not
    retrieved) under :mod:`harness.evaluate`'s rules: cut to :func:`retrieval_depth`, an empty query
    retrieves nothing (it scores 0, counted), self-matches removed, then ``k`` evaluated. Returns the
    evaluation and the run it scored."""
    depth = retrieval_depth(dataset, k)
    scores, indices = scores[:, :depth].copy(), indices[:, :depth]
    empty = [i for i, text in enumerate(dataset.queries) if not text.strip()]
    scores[empty] = -np.inf
    run = exact.to_run(dataset.query_ids, dataset.doc_ids, scores, indices)
    return evaluate(dataset.qrels, run, top_k=k, empty_queries=empty_queries, metrics=metrics), run
