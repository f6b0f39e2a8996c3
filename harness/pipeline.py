"""One condition on one dataset: encode (cached) -> search -> rerank -> evaluate -> result dict.

A *condition* is what a results row means: a first stage (BM25, a dense encoder, a MUVERA FDE of
ColBERT token vectors, or full ColBERT maxsim), an optional maxsim reranker of its top ``depth``,
and the settings that change numbers (index, top-k, FDE parameters, max lengths). Its name is the
results folder and the table's key (:func:`condition_name`).

Reranking keeps the first stage's tail: the top ``depth`` are re-ordered by maxsim, the rest follow
in first-stage order (their scores shifted below the reranked ones), so recall@1000 still sees them.
"""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import registry
from harness.cache import VectorCache, texts_sha256
from harness.data import TITLE_SEPARATOR, Dataset
from harness.errors import HarnessError
from harness.evaluate import PRIMARY_METRIC, clean_ranking, evaluate
from harness.retrieval import exact, maxsim
from harness.results import build_result


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
    precision: str = "fp32"  # "fp32" (reference numerics) | "int8" (dynamic quantisation, faster)
    backend: str = "torch"  # "torch" (PyTorch eager) | "onnx" (exported graph run by onnxruntime)
    name: str | None = None
    empty_queries: str = "zero"  # "zero" | "drop": queries with no results score 0, or leave the mean (BEIR)
    device: str = "cpu"  # torch device of the encoders ("cpu" | "cuda"), chosen by harness.engine.device
    engine: object = None  # harness.engine.LocalEngine (None) or RayEngine: where encoding and search run


def engine_of(options: RunOptions):
    """The engine that runs ``options``' encoding and search (:mod:`harness.engine`)."""
    from harness.engine import LocalEngine

    return options.engine or LocalEngine(options.device, options.max_memory_bytes)


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


class RunLog:
    """What a run measured: wall seconds per step, and which cache entries it reused."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.cache: dict[str, object] = {}

    @contextmanager
    def step(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)


# ---------------------------------------------------------------------------------------------
# Stages


class Stage:
    """A first stage: ``retrieve`` returns (scores, doc indices), each (n_queries, k), best first."""

    kind = ""

    def provenance(self) -> dict:
        raise NotImplementedError

    def retrieve(self, dataset: Dataset, k: int, log: RunLog) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class BM25Stage(Stage):
    kind = "bm25"

    def provenance(self) -> dict:
        from harness.retrieval.bm25 import SETTINGS

        return {"model": "bm25", "parameters": 0, "dims": None, "bytes_per_doc": None, "settings": SETTINGS}

    def retrieve(self, dataset, k, log):
        from harness.retrieval.bm25 import BM25

        with log.step("index_seconds"):
            index = BM25(dataset.doc_texts())
        with log.step("search_seconds"):
            return index.search(dataset.queries, k, exact.tie_ranks(dataset.doc_ids))


class VectorStage(Stage):
    """One dense vector per text, searched exactly (built-in or txtai)."""

    def __init__(self, encoder, cache: VectorCache, options: RunOptions):
        self.encoder = encoder
        self.cache = cache
        self.options = options
        self.kind = encoder.kind

    def provenance(self) -> dict:
        return {**self.encoder.provenance(), "similarity": self.encoder.similarity}

    def retrieve(self, dataset, k, log):
        key = {
            "vectors": self.encoder.cache_identity(),
            "dataset": dataset.checksum,
            "text": {"format": "title+sep+text", "separator": TITLE_SEPARATOR},
            "dtype": "float32",
        }
        with log.step("encode_documents_seconds"):
            docs, info = engine_of(self.options).encode_in_blocks(
                dataset.doc_texts(), self.encoder.encode_documents, self.cache, {**key, "side": "documents"},
                desc=f"{self.encoder.name} documents",
            )
        log.cache["documents_cached_blocks"] = f"{info['blocks_cached']}/{info['blocks']}"
        with log.step("encode_queries_seconds"):
            queries, hit = self.cache.get_or_compute(
                {**key, "side": "queries", "queries": texts_sha256(dataset.queries)},
                lambda: self.encoder.encode_queries(dataset.queries),
            )
        log.cache["queries_cached"] = hit
        with log.step("search_seconds"):
            return search_vectors(self.options.index, queries, docs, k, exact.tie_ranks(dataset.doc_ids),
                                  engine_of(self.options))


def search_vectors(index: str, queries: np.ndarray, docs: np.ndarray, k: int, ranks: np.ndarray, engine=None):
    """Exact top-k by inner product, with the built-in search (run by ``engine``) or a txtai index."""
    if index == "txtai":
        from harness.retrieval.txtai_index import search as txtai_search

        return txtai_search(queries, docs, k, ranks)
    return engine.search(queries, docs, k, ranks) if engine is not None else exact.search(queries, docs, k, ranks)


class DenseEncoderAdapter:
    """A :class:`harness.models.dense.DenseEncoder` with cosine similarity (vectors L2-normalised)."""

    kind = "dense"
    similarity = "cosine"

    def __init__(self, encoder):
        self.inner = encoder
        self.name = encoder.name

    def cache_identity(self) -> dict:
        p = self.inner.provenance()
        identity = {k: p[k] for k in ("weights_sha256", "path", "max_length", "pooling", "normalized", "modules")}
        if p["precision"] != "fp32":  # fp32 keys stay as they were; any other numerics have their own
            identity |= {"precision": p["precision"], "quantization": p.get("quantization")}
        if "backend" in p:  # onnx: the runtime version and the graph's own hash
            identity |= {k: p[k] for k in ("backend", "onnxruntime", "graph_sha256")}
        return identity | {"normalize": "l2"}

    def provenance(self) -> dict:
        return self.inner.provenance()

    def encode_documents(self, texts):
        return l2_normalise(self.inner.encode_documents(texts))

    def encode_queries(self, texts):
        return l2_normalise(self.inner.encode_queries(texts))


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """(n, d) float32 rows scaled to unit L2 norm (zero rows stay zero): what cosine scoring searches."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class ColBERTTokens:
    """A loaded ColBERT model plus a cache of its document token matrices, shared by every stage."""

    def __init__(self, name: str, path: str, cache: VectorCache, options: RunOptions):
        from harness.models.colbert import ColBERT

        self.name = name
        self.model = ColBERT.load(path, allow_pickle=options.allow_pickle)
        self.model.set_backend(options.backend, cache.graph_dir())
        self.model.to_device(options.device)
        self.options = options
        self.cache = cache
        self.batch_size = options.batch_size
        self._documents: tuple[Dataset, list[np.ndarray]] | None = None  # the last dataset's, in memory
        self._queries: tuple[Dataset, list[np.ndarray]] | None = None

    def provenance(self) -> dict:
        return {"model": self.name, **self.model.provenance()}

    def key(self, dataset: Dataset) -> dict:
        """Everything that changes the document token matrices (cache key)."""
        p = self.model.provenance()
        return {
            "tokens": {k: p.get(k) for k in sorted(p) if k not in ("parameters", "path")},
            "dataset": dataset.checksum,
            "text": {"format": "title+sep+text", "separator": TITLE_SEPARATOR},
            "dtype": "float32",
            "side": "documents",
        }

    def documents(self, dataset: Dataset, log: RunLog) -> list[np.ndarray]:
        if self._documents is not None and self._documents[0] is dataset:
            return self._documents[1]
        with log.step("encode_documents_seconds"):
            tokens, info = engine_of(self.options).encode_in_blocks(
                dataset.doc_texts(), functools.partial(self.model.encode_documents, batch_size=self.batch_size),
                self.cache, self.key(dataset), desc=f"{self.name} document tokens",
            )
        self._documents = (dataset, tokens)
        log.cache["documents_cached_blocks"] = f"{info['blocks_cached']}/{info['blocks']}"
        return tokens

    def queries(self, dataset: Dataset, log: RunLog) -> list[np.ndarray]:
        if self._queries is None or self._queries[0] is not dataset:
            key = {**self.key(dataset), "side": "queries", "queries": texts_sha256(dataset.queries)}
            with log.step("encode_queries_seconds"):
                tokens, hit = self.cache.get_or_compute(
                    key, lambda: self.model.encode_queries(dataset.queries, batch_size=self.batch_size)
                )
            log.cache["queries_cached"] = hit
            self._queries = (dataset, tokens)
        return self._queries[1]

    def storage(self, dataset: Dataset) -> dict:
        """Mean stored size of a document's token matrix (float32), from the encoded corpus."""
        docs = self.documents(dataset, RunLog())
        tokens = float(np.mean([len(d) for d in docs])) if docs else 0.0
        return {"token_dim": self.model.token_dim, "mean_tokens_per_doc": round(tokens, 1),
                "token_bytes_per_doc": round(tokens * self.model.token_dim * 4, 1)}


class MaxSimStage(Stage):
    """Exact full maxsim over the corpus, memory-bounded."""

    kind = "colbert"

    def __init__(self, tokens: ColBERTTokens, options: RunOptions):
        self.tokens = tokens
        self.memory = options.max_memory_bytes or maxsim.DEFAULT_MEMORY_BUDGET
        self.options = options

    def provenance(self) -> dict:
        p = self.tokens.provenance()
        return {**p, "similarity": "maxsim"}

    def retrieve(self, dataset, k, log):
        docs = self.tokens.documents(dataset, log)
        queries = self.tokens.queries(dataset, log)
        with log.step("search_seconds"):
            return engine_of(self.options).maxsim_search(queries, docs, k, self.memory, exact.tie_ranks(dataset.doc_ids))


class FDEStage(Stage):
    """MUVERA: ColBERT token vectors (from the shared token cache) -> one FDE per text -> exact search."""

    kind = "muvera"

    def __init__(self, tokens: ColBERTTokens, fde_options: dict, cache: VectorCache, options: RunOptions):
        from harness.models.muvera import FDE, FDEConfig

        self.tokens = tokens
        self.cache = cache
        self.options = options
        self.config = FDEConfig(**fde_options)
        self.fde = FDE(self.config, token_dim=tokens.model.token_dim)
        # txtai indexes L2-normalised vectors (cosine); the paper scores FDEs by inner product.
        self.similarity = "cosine" if self.config.mode == "txtai" else "dot"

    def provenance(self) -> dict:
        p = self.tokens.provenance()
        return {**p, "fde": self.config.to_dict(), "dims": self.fde.dims, "bytes_per_doc": self.fde.dims * 4,
                "similarity": self.similarity}

    def _finish(self, vectors: np.ndarray) -> np.ndarray:
        return l2_normalise(vectors) if self.similarity == "cosine" else vectors.astype(np.float32)

    def retrieve(self, dataset, k, log):
        tokens = self.tokens.documents(dataset, log)
        key = {"fde": self.config.to_dict(), "tokens": self.tokens.key(dataset), "similarity": self.similarity}
        with log.step("fde_documents_seconds"):
            docs, hit = self.cache.get_or_compute(key, lambda: self._finish(self.fde.encode_documents(tokens)))
        log.cache["fde_documents_cached"] = hit
        query_tokens = self.tokens.queries(dataset, log)
        with log.step("fde_queries_seconds"):
            queries = self._finish(self.fde.encode_queries(query_tokens))
        with log.step("search_seconds"):
            return search_vectors(self.options.index, queries, docs, k, exact.tie_ranks(dataset.doc_ids),
                                  engine_of(self.options))


class MaxSimReranker:
    """Rescore the top ``depth`` of a first stage by exact maxsim."""

    def __init__(self, tokens: ColBERTTokens, depth: int):
        self.tokens = tokens
        self.depth = depth

    def provenance(self) -> dict:
        return {**self.tokens.provenance(), "depth": self.depth}

    def rerank(self, dataset, scores, indices, log):
        docs = self.tokens.documents(dataset, log)
        queries = self.tokens.queries(dataset, log)
        depth = min(self.depth, indices.shape[1])
        head = indices[:, :depth]
        with log.step("rerank_seconds"):
            head_scores = engine_of(self.tokens.options).rerank(queries, docs, head).astype(np.float32)
            retrieved = np.isfinite(scores[:, :depth])
            head_scores[~retrieved] = -np.inf
            ranks = exact.tie_ranks(dataset.doc_ids)
            order = np.lexsort((ranks[head], -head_scores), axis=-1)
            head = np.take_along_axis(head, order, axis=1)
            head_scores = np.take_along_axis(head_scores, order, axis=1)
            tail_scores = scores[:, depth:].astype(np.float64)
            if tail_scores.size:  # shift the tail below every reranked score, keeping its order
                finite = np.isfinite(tail_scores)
                floor = np.where(np.isfinite(head_scores), head_scores, np.inf).min(axis=1, keepdims=True)
                top = np.where(finite, tail_scores, -np.inf).max(axis=1, keepdims=True)
                shift = np.where(np.isfinite(floor) & np.isfinite(top), floor - top - 1.0, 0.0)
                tail_scores = np.where(finite, tail_scores + shift, -np.inf)
            return (
                np.concatenate([head_scores, tail_scores.astype(np.float32)], axis=1),
                np.concatenate([head, indices[:, depth:]], axis=1),
            )


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
        self.spec = spec
        self.first_stage = self._first_stage(spec, path)
        self.reranker = None
        if options.rerank:
            rerank_spec, rerank_path = registry.resolve(options.rerank)
            if rerank_spec.kind not in ("colbert", "muvera"):
                raise HarnessError(
                    f"--rerank {options.rerank}: a reranker must be a ColBERT model (colbert-pico or colbert:PATH)"
                )
            self.reranker = MaxSimReranker(self._tokens(rerank_spec.name, rerank_path), options.rerank_depth)

    def _tokens(self, name: str, path: str) -> ColBERTTokens:
        if path not in self._colbert:
            self._colbert[path] = ColBERTTokens(name, path, self.cache, self.options)
        return self._colbert[path]

    def _first_stage(self, spec: registry.ModelSpec, path: str | None) -> Stage:
        if spec.kind == "bm25":
            return BM25Stage()
        if spec.kind == "dense":
            from harness.models.dense import DenseEncoder

            encoder = DenseEncoder(
                spec.name, path, batch_size=self.options.batch_size, max_length=self.options.max_length,
                trust_remote_code=self.options.trust_remote_code, allow_pickle=self.options.allow_pickle,
                precision=self.options.precision, backend=self.options.backend, graph_dir=self.cache.graph_dir(),
                device=self.options.device,
            )
            return VectorStage(DenseEncoderAdapter(encoder), self.cache, self.options)
        if spec.kind == "muvera":
            return FDEStage(self._tokens(spec.name, path), self.options.fde, self.cache, self.options)
        if spec.kind == "colbert":
            return MaxSimStage(self._tokens(spec.name, path), self.options)
        raise HarnessError(f"unknown model kind '{spec.kind}'")

    def storage(self, dataset: Dataset) -> dict:
        """What must be stored per document to serve this condition, in float32 bytes.

        A dense or FDE first stage stores one vector; full maxsim and a maxsim reranker store the
        token matrices (their mean size over the corpus). An FDE's token vectors are not kept.
        """
        storage: dict = {}
        if isinstance(self.first_stage, (VectorStage, FDEStage)):
            p = self.first_stage.provenance()
            storage.update(dims=p["dims"], vector_bytes_per_doc=p["bytes_per_doc"])
        token_stage = self.first_stage.tokens if isinstance(self.first_stage, MaxSimStage) else None
        if self.reranker is not None:
            token_stage = self.reranker.tokens
        if token_stage is not None:
            storage.update(token_stage.storage(dataset))
        if storage:
            storage["bytes_per_doc"] = storage.get("vector_bytes_per_doc", 0) + storage.get("token_bytes_per_doc", 0)
        return storage

    def memory_estimate(self, dataset: Dataset) -> int:
        """Bytes the vectors of ``dataset`` will hold at once, estimated before any encoding.

        Token counts are estimated as one token per 4 characters, capped at the model's document
        length: a budget check, not an accounting.
        """
        n_docs, n_queries = len(dataset.doc_ids), len(dataset.queries)
        total = 0
        if isinstance(self.first_stage, VectorStage):
            dims = self.first_stage.encoder.provenance()["dims"]
            total += 4 * dims * (n_docs + n_queries) + 4 * n_docs * min(n_queries, 1024)
        for tokens in self._colbert.values():
            p = tokens.model.provenance()
            length = p.get("document_length") or 300
            chars = sum(len(t) + len(x) for t, x in zip(dataset.titles, dataset.texts))
            total += 4 * p["token_dim"] * min(chars // 4 + 2 * n_docs, length * n_docs)
        return total

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
        # A query id that is also a document id may retrieve itself, which evaluation removes: one
        # more document keeps k after the removal, as BEIR's exact search does.
        depth = k + 1 if not set(dataset.query_ids).isdisjoint(dataset.doc_ids) else k
        scores, indices = self.first_stage.retrieve(dataset, max(depth, self.options.rerank_depth if self.reranker else 0), log)
        if self.reranker is not None:
            scores, indices = self.reranker.rerank(dataset, scores, indices, log)
        scores, indices = scores[:, :depth], indices[:, :depth]
        empty = [i for i, text in enumerate(dataset.queries) if not text.strip()]
        scores[empty] = -np.inf  # an empty query retrieves nothing: it scores 0, counted
        run = exact.to_run(dataset.query_ids, dataset.doc_ids, scores, indices)
        with log.step("evaluate_seconds"):
            evaluation = evaluate(dataset.qrels, run, top_k=k, empty_queries=self.options.empty_queries)
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
                "execution": engine_of(self.options).provenance(),
            },
            text_format={"document": "title + separator + text, stripped", "separator": TITLE_SEPARATOR},
            storage=self.storage(dataset),
            log=log,
            command=command,
            per_query={q: v[PRIMARY_METRIC] for q, v in evaluation.per_query.items()},
        )
        return result, run

