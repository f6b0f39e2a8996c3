"""``--profile txtai-benchmark``: a condition run the way txtai's ``examples/benchmarks.py`` runs it.

The seed's figures were made with that script. This profile reproduces its conventions through
txtai itself (nothing here re-implements txtai's encoding, indexing or search):

* documents: ``(id, f"{title}. {text}" if title else text, None)``, documents whose text is empty
  are not indexed (benchmarks.py ``rows``);
* dense models: ``txtai.Embeddings`` with the benchmark's default config (:data:`EMBEDDINGS`) plus
  ``path`` = the model folder. txtai picks the vector method: mean pooling through transformers for
  MiniLM (512 tokens, the tokenizer's length) and pico (128), and for a ColBERT folder its late
  pooling with its own ``Muvera`` fixed-dimensional encoding (``muvera-pico``). Above 5,000
  documents txtai's Faiss backend builds an IVF index; with ``quantize`` every vector is stored as
  8-bit scalars whose ranges are trained on a 5% sample. The result records the index txtai built
  and says whether its scores are approximate;
* BM25: ``txtai.scoring.ScoringFactory.create({"method": "bm25", "terms": True})`` (the script's
  ``scoring`` method);
* queries: every query in queries.jsonl, in batches of 256, searched with ``limit + 1``; a result
  whose id equals the query id is dropped and the rest cut to ``limit`` (10, the script's default);
* evaluation: pytrec_eval ``ndcg_cut.10`` (and ``map_cut``, ``recall``, ``P`` at 10) over the queries
  that both the run and ``qrels/<split>.tsv`` hold, the mean rounded to 5 decimals.

``--txtai-config FILE`` is the script's ``--config``: a YAML file whose ``embeddings`` / ``scoring``
sections replace the defaults. Without ``path`` in the file, the harness's model folder is used.

Encoding is cached: the txtai vectors model's ``encode`` output (before txtai normalises it) is
stored under a key holding the profile, the txtai version, the vector settings, the model's weights
sha256 and the texts, so a rerun re-indexes and re-searches without re-encoding, with the vectors
txtai would compute. :class:`SeededFaiss` exposes the two seeds txtai and faiss fix (the training
sample's and k-means'), for measuring how much the index training moves the numbers
(``benchmarks/txtai_seed_spread.py``).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
from txtai.ann.dense.faiss import Faiss

from harness import registry
from harness.cache import VectorCache, texts_sha256
from harness.data import Dataset, _find, _read_jsonl, _TextFile
from harness.errors import HarnessError, first_line
from harness.evaluate import PRIMARY_METRIC, parse_metric, trec_measures
from harness.results import build_result

PROFILE = "txtai-benchmark"
#: benchmarks.py ``Embed``: the embeddings config when no config file names one.
EMBEDDINGS = {"batch": 8192, "encodebatch": 128, "faiss": {"quantize": True, "sample": 0.05}}
#: benchmarks.py ``Score``: txtai's BM25 scoring.
SCORING = {"method": "bm25", "terms": True}
#: benchmarks.py ``--topk`` default: the search limit and the metrics' cut-off.
LIMIT = 10
QUERY_BATCH = 256
#: pytrec_eval measure -> harness metric name (ndcg@10 first: the primary metric).
#: benchmarks.py's metrics, named as harness.evaluate parses them.
METRICS = ("ndcg@10", "map@10", "recall@10", "P@10")


def read_config(path: Path | None, key: str, default: dict) -> dict:
    """Section ``key`` of the YAML config file (benchmarks.py ``readconfig``), else ``default``."""
    if path is None:
        return copy.deepcopy(default)
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise HarnessError(f"{path}: txtai config file not found") from None
    except yaml.YAMLError as exc:
        raise HarnessError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise HarnessError(f"{path}: a txtai config file holds a mapping (embeddings:, scoring:)")
    section = config.get(key, default)
    return copy.deepcopy(section)


def rows(dataset: Dataset) -> list[tuple[str, str, None]]:
    """The documents as benchmarks.py streams them: title joined with ". ", empty texts left out."""
    dataset.require_texts("--profile txtai-benchmark")
    out = []
    for doc_id, title, text in zip(dataset.doc_ids, dataset.titles, dataset.texts):
        joined = f"{title}. {text}" if title else text
        if joined:
            out.append((doc_id, joined, None))
    return out


def all_queries(dataset: Dataset) -> tuple[list[str], list[str]]:
    """(ids, texts) of every query in queries.jsonl, in file order (not only the split's)."""
    ids, texts = [], []
    for _, query_id, record in _read_jsonl(_TextFile(_find(dataset.path, "queries.jsonl")), "query"):
        ids.append(query_id)
        texts.append(record["text"])
    return ids, texts


def filter_self_matches(query_ids: list[str], hits: list[list[tuple]], limit: int) -> tuple[dict, int]:
    """``{query: {doc: score}}`` with each query's own id removed and cut to ``limit``; and how many
    queries had themselves among their results."""
    run, removed = {}, 0
    for query_id, found in zip(query_ids, hits):
        pairs = [(str(doc), float(score)) for doc, score in found]
        kept = [(doc, score) for doc, score in pairs if doc != query_id]
        removed += len(kept) < len(pairs)
        run[query_id] = dict(kept[:limit])
    return run, removed


def evaluate(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> tuple[dict, dict]:
    """benchmarks.py's evaluation: (metrics rounded to 5 decimals, per-query values by metric name),
    over the queries pytrec_eval scores (those the run answered)."""
    import pytrec_eval

    parsed = {name: parse_metric(name) for name in METRICS}
    scored = pytrec_eval.RelevanceEvaluator(qrels, trec_measures(parsed.values())).evaluate(run)
    per_query = {q: {name: values[m.trec_key] for name, m in parsed.items()} for q, values in scored.items()}
    metrics = {
        name: (round(float(np.mean([values[name] for values in per_query.values()])), 5) if per_query else 0.0)
        for name in parsed
    }
    return metrics, per_query


def index_description(embeddings) -> dict:
    """What txtai built: the Faiss components, lists probed, and whether scores are approximate."""
    ann = embeddings.ann
    backend = getattr(ann, "backend", None)
    components = (embeddings.config.get("build") or {}).get("settings", {}).get("components")
    nlist, nprobe = getattr(backend, "nlist", None), getattr(backend, "nprobe", None)
    info = {"backend": embeddings.config.get("backend"), "components": components, "nlist": nlist, "nprobe": nprobe}
    storage = components.split(",")[-1] if components else ""
    quantised = storage.startswith("SQ")
    partial = bool(nlist) and nprobe is not None and nprobe < nlist
    unknown = bool(components) and not any(part in components for part in ("Flat", "SQ", "IVF"))
    notes = []
    if quantised:
        sample = (embeddings.config.get("faiss") or {}).get("sample")
        trained = f", ranges trained on a {sample:.0%} sample" if sample else ""
        notes.append(f"{storage[2:]}-bit scalar-quantised vectors{trained}")
    if nlist:
        notes.append(f"IVF probes {min(nprobe or nlist, nlist)} of {nlist} lists")
    if unknown:
        notes.append(f"index {components}")
    info["approximate"] = quantised or partial or unknown
    info["approximation"] = "; ".join(notes) if notes else "exact (flat float32, every document scored)"
    return info


def memoise_encode(vectors, cache: VectorCache, identity: dict, log: dict) -> None:
    """Cache every ``vectors.encode(texts, category)`` call (txtai normalises the result afterwards)."""
    encode = vectors.encode

    def cached(data, category=None):
        key = {**identity, "category": category, "texts": texts_sha256(list(data))}
        value, hit = cache.get_or_compute(key, lambda: encode(data, category))
        log["calls"] = log.get("calls", 0) + 1
        log["cached"] = log.get("cached", 0) + int(hit)
        return value

    vectors.encode = cached


class SeededFaiss(Faiss):
    """txtai's Faiss backend with its two fixed seeds as settings of the ``faiss`` section:
    ``sample_seed`` (which rows train the index; txtai uses 0) and ``kmeans_seed`` (IVF k-means;
    faiss's default is 1234). Configure, create, search and nprobe stay txtai's own; the test
    suite checks that the default seeds give txtai's index exactly."""

    def setting(self, name, default=None):
        section = self.config.get("faiss") or {}
        value = section.get(name)
        return value if value or name in section else default

    def index(self, embeddings):
        train, fraction = embeddings, self.setting("sample")
        if fraction:
            generator = np.random.default_rng(self.setting("sample_seed", 0))
            chosen = generator.choice(len(embeddings), int(fraction * len(embeddings)), replace=False, shuffle=False)
            train = embeddings[np.sort(chosen)]
        params = self.configure(embeddings.shape[0], train.shape[0])
        self.backend = self.create(embeddings, params)
        kmeans_seed = self.setting("kmeans_seed")
        if kmeans_seed is not None and hasattr(self.backend, "cp"):
            self.backend.cp.seed = int(kmeans_seed)
        self.backend.train(train)
        self.backend.add_with_ids(embeddings, np.arange(embeddings.shape[0], dtype=np.int64))
        self.config["offset"] = embeddings.shape[0]
        self.metadata({"components": params})


#: txtai resolves a custom ANN backend from its dotted name.
SEEDED_FAISS = f"{__name__}.SeededFaiss"


class TxtaiBenchmarkCondition:
    """One model under the txtai-benchmark profile; ``run(dataset)`` -> (result, run), as Condition."""

    def __init__(self, model: str, options, cache: VectorCache, config_file: Path | None = None,
                 faiss_overrides: dict | None = None):
        from harness.pipeline import condition_name

        unsupported = [flag for flag, on in (
            ("--index txtai", options.index != "exact"), ("--rerank", bool(options.rerank)),
            ("--max-length", bool(options.max_length)), (f"--precision {options.precision}", options.precision != "fp32"),
            ("--fde-mode paper", options.fde.get("mode", "txtai") != "txtai"),
        ) if on]
        if unsupported:
            raise HarnessError(f"--profile {PROFILE} runs txtai's benchmark path only; drop {', '.join(unsupported)}"
                               " (set txtai options in --txtai-config FILE)")
        self.model, self.options, self.cache = model, options, cache
        self.config_file = Path(config_file) if config_file else None
        self.faiss_overrides = faiss_overrides or {}  # SeededFaiss settings (seeds, sample, quantize)
        self.spec, self.path = registry.resolve(model)
        if self.spec.kind == "colbert":
            raise HarnessError(f"{model}: full ColBERT maxsim cannot run through txtai's benchmark (one vector per"
                               " document); use muvera-pico for txtai's own MUVERA FDE of the same model")
        suffix = f"-{PROFILE}" + (f"-{self.config_file.stem}" if self.config_file else "")
        self.name = options.name or condition_name(model, options) + suffix
        if self.spec.kind == "bm25":
            self.config = read_config(self.config_file, "scoring", SCORING)
        else:
            self.config = read_config(self.config_file, "embeddings", EMBEDDINGS)
            self.config.setdefault("path", self.path)
            if self.spec.kind == "muvera":
                self._muvera_settings()
            if self.faiss_overrides:
                self.config["backend"] = SEEDED_FAISS
                self.config["faiss"] = {**self.config.get("faiss", {}), **self.faiss_overrides}

    def _muvera_settings(self) -> None:
        """The FDE options the harness was given, as txtai's late-pooling ``muvera`` settings."""
        fde = {k: self.options.fde[k] for k in ("repetitions", "hashes", "projection", "seed") if k in self.options.fde}
        if fde:
            vectors = self.config.setdefault("vectors", {})
            vectors["muvera"] = {**fde, **(vectors.get("muvera") or {})}

    def _identity(self, embeddings) -> dict:
        from txtai.version import __version__ as txtai_version

        from harness.models.weights import folder_sha256

        model = embeddings.model
        keys = ("path", "method", "tokenizer", "maxlength", "encodebatch", "vectors", "instructions", "tokenize",
                "dimensionality")
        path = Path(str(self.config.get("path")))
        return {
            "profile": PROFILE,
            "txtai": txtai_version,
            "vector_class": f"{type(model).__name__}/{type(getattr(model, 'model', None)).__name__}",
            "settings": {k: self.config.get(k) for k in keys},
            "weights_sha256": folder_sha256(path) if path.is_dir() else None,
            "dtype": "float32",
        }

    def run(self, dataset: Dataset, command: str = "") -> tuple[dict, dict[str, dict[str, float]]]:
        from harness.stages import RunLog

        log = RunLog()
        start = time.perf_counter()
        documents = rows(dataset)
        if not documents:
            raise HarnessError(f"{dataset.path}: no document has text; txtai's benchmark indexes none")
        query_ids, queries = all_queries(dataset)
        if self.spec.kind == "bm25":
            search, method = self._scoring(documents, log)
        else:
            search, method = self._embeddings(documents, dataset, log)
        with log.step("search_seconds"):
            hits = []
            for begin in range(0, len(queries), QUERY_BATCH):
                hits.extend(search(queries[begin : begin + QUERY_BATCH], LIMIT + 1))
        run, removed = filter_self_matches(query_ids, hits, LIMIT)
        if "describe" in method:
            method.update(method.pop("describe")())
        with log.step("evaluate_seconds"):
            metrics, per_query = evaluate(dataset.qrels, run)
        log.seconds["total_seconds"] = round(time.perf_counter() - start, 3)
        counts = {
            **dataset.counts,
            "documents_indexed": len(documents),
            "documents_not_indexed_empty": len(dataset.doc_ids) - len(documents),
            "queries_searched": len(queries),
            "queries_judged": len(dataset.qrels),
            "queries_evaluated": len(per_query),
            "self_matches_removed": removed,
        }
        result = build_result(
            self.name, self.model, dataset,
            metrics=metrics,
            primary_metric=PRIMARY_METRIC,
            n_queries=len(per_query),
            counts=counts,
            method={"kind": self.spec.kind, "profile": PROFILE, "top_k": LIMIT, **method},
            text_format={"document": 'f"{title}. {text}" if title else text (not stripped; empty not indexed)'},
            storage={},
            log=log,
            command=command,
            per_query={q: float(v[PRIMARY_METRIC]) for q, v in per_query.items()},
        )
        result["profile"] = PROFILE
        result["evaluation"] = ("txtai examples/benchmarks.py: pytrec_eval at 10 over the queries both the run and"
                                " the qrels hold, every queries.jsonl query searched with limit + 1 and its own id"
                                " removed; means rounded to 5 decimals")
        return result, run

    def _scoring(self, documents, log):
        from txtai.scoring import ScoringFactory

        scoring = ScoringFactory.create(copy.deepcopy(self.config))
        with log.step("index_seconds"):
            scoring.index(documents)
        method = {"first_stage": {"model": "bm25", "txtai_scoring": self.config, "parameters": 0},
                  "search": "txtai scoring (exact)", "approximate": False}
        return scoring.batchsearch, method

    def _embeddings(self, documents, dataset, log):
        from txtai import Embeddings

        from harness.models import berthash  # noqa: F401  (bert_hash folders load through the harness's registered code)

        try:
            embeddings = Embeddings(copy.deepcopy(self.config))
        except Exception as exc:
            reason = first_line(exc)
            raise HarnessError(f"{self.model}: txtai cannot load {self.config.get('path')}: {reason}") from None
        if embeddings.model is None:
            raise HarnessError(f"{self.model}: txtai found no vector model for {self.config.get('path')}")
        encode_log: dict = {}
        memoise_encode(embeddings.model, self.cache, self._identity(embeddings), encode_log)
        with log.step("index_seconds"):
            embeddings.index(documents)
        log.cache["encode_calls_cached"] = encode_log
        model = embeddings.model
        pooling = getattr(model, "model", None)
        stage = {
            "model": self.spec.name,
            "path": str(self.config.get("path")),
            "txtai_config": {k: v for k, v in self.config.items() if k != "path"},
            "vectors": type(model).__name__,
            "pooling": type(pooling).__name__ if pooling is not None else None,
            # read from settings, not from the pooling's state (a cached encode never sets it)
            "max_length": ({"documents": pooling.dlength, "queries": pooling.qlength} if hasattr(pooling, "dlength")
                           else getattr(pooling, "maxlength", None)),
            "dims": embeddings.config.get("dimensions"),
        }
        if stage["dims"]:
            stage["bytes_per_doc"] = stage["dims"] * 4

        def describe():
            ann = index_description(embeddings)
            return {"first_stage": stage, "index": ann, "approximate": ann["approximate"],
                    "search": f"txtai Embeddings, {ann['backend']} {ann['components']}: {ann['approximation']}"}

        return embeddings.batchsearch, {"describe": describe}
