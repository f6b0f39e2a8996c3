"""The stages a condition is built from, one class per model kind, each reporting its own costs.

A first stage (:class:`Stage`) maps a dataset to (scores, doc indices), each (n_queries, k), best
first; it also says what it stores per document (:meth:`Stage.storage`, float32 bytes) and how many
bytes of vectors it will hold at once (:meth:`Stage.memory_estimate`). :class:`ColBERTTokens`
holds one ColBERT model's token matrices, shared by full maxsim, MUVERA and the maxsim reranker.
:mod:`harness.registry` maps each model kind to the factory below that builds its stage.
"""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from harness.cache import VectorCache, texts_sha256
from harness.data import TITLE_SEPARATOR, Dataset
from harness.engine import engine_of
from harness.retrieval import exact, maxsim

if TYPE_CHECKING:
    from harness.pipeline import RunOptions

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


class Stage:
    """A first stage: ``retrieve`` returns (scores, doc indices), each (n_queries, k), best first."""

    kind = ""

    def provenance(self) -> dict:
        raise NotImplementedError

    def retrieve(self, dataset: Dataset, k: int, log: RunLog) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def storage(self, dataset: Dataset) -> dict:
        """What this stage stores per document (float32): ``dims`` + ``vector_bytes_per_doc`` for one
        vector, ``token_dim``, ``mean_tokens_per_doc`` + ``token_bytes_per_doc`` for token matrices;
        {} when it stores no vectors (BM25)."""
        return {}

    def memory_estimate(self, dataset: Dataset) -> int:
        """Bytes of vectors this stage holds at once on ``dataset``, estimated before any encoding,
        beyond the ColBERT token matrices (:meth:`ColBERTTokens.memory_estimate` counts those once)."""
        return 0


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
            if dataset.corpus is not None:  # streamed: texts read from disk block by block, vectors memory-mapped
                from harness.engine.store import encode_corpus

                docs, info = encode_corpus(dataset.corpus, self.encoder.encode_documents, self.cache,
                                           {**key, "side": "documents"}, engine=self.options.engine)
            else:
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

    def storage(self, dataset):
        p = self.provenance()
        return {"dims": p["dims"], "vector_bytes_per_doc": p["bytes_per_doc"]}

    def memory_estimate(self, dataset):
        """Document and query vectors, plus one (n_docs x up to 1,024 queries) float32 score block."""
        n_docs, n_queries = len(dataset.doc_ids), len(dataset.queries)
        dims = self.encoder.provenance()["dims"]
        return 4 * dims * (n_docs + n_queries) + 4 * n_docs * min(n_queries, 1024)


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
        if "backend" in p:  # an exported graph: the runtime, its version and settings, the graph's own hash
            identity |= {k: p[k] for k in ("backend", "onnxruntime", "openvino", "inference_precision", "graph_sha256")
                         if k in p}
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

    def memory_estimate(self, dataset: Dataset) -> int:
        """Bytes of the corpus's float32 token matrices, estimated as one token per 4 characters
        (+2 per document), capped at the model's document length: a budget check, not an accounting."""
        p = self.model.provenance()
        length = p.get("document_length") or 300
        n_docs = len(dataset.doc_ids)
        chars = sum(dataset.text_lengths())
        return 4 * p["token_dim"] * min(chars // 4 + 2 * n_docs, length * n_docs)


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

    def storage(self, dataset):
        return self.tokens.storage(dataset)


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
        key = {"fde": self.config.to_dict(), "tokens": self.tokens.key(dataset), "similarity": self.similarity}
        if dataset.corpus is not None:  # streamed: texts -> tokens -> FDEs block by block, FDEs memory-mapped
            from harness.engine.store import FDEDocuments, encode_corpus

            encode = FDEDocuments(functools.partial(self.tokens.model.encode_documents, batch_size=self.tokens.batch_size),
                                  self.fde, normalise=self.similarity == "cosine")
            with log.step("fde_documents_seconds"):
                docs, info = encode_corpus(dataset.corpus, encode, self.cache, {**key, "side": "documents"},
                                           engine=self.options.engine)
            log.cache["fde_documents_cached_blocks"] = f"{info['blocks_cached']}/{info['blocks']}"
        else:
            tokens = self.tokens.documents(dataset, log)
            with log.step("fde_documents_seconds"):
                docs, hit = self.cache.get_or_compute(key, lambda: self._finish(self.fde.encode_documents(tokens)))
            log.cache["fde_documents_cached"] = hit
        query_tokens = self.tokens.queries(dataset, log)
        with log.step("fde_queries_seconds"):
            queries = self._finish(self.fde.encode_queries(query_tokens))
        with log.step("search_seconds"):
            return search_vectors(self.options.index, queries, docs, k, exact.tie_ranks(dataset.doc_ids),
                                  engine_of(self.options))

    def storage(self, dataset):
        """One FDE per document; its token vectors are not kept."""
        return {"dims": self.fde.dims, "vector_bytes_per_doc": self.fde.dims * 4}


class MaxSimReranker:
    """Rescore the top ``depth`` of a first stage by exact maxsim, keeping its tail
    (:func:`harness.retrieval.maxsim.rerank_top`), so recall@1000 still sees it."""

    def __init__(self, tokens: ColBERTTokens, depth: int):
        self.tokens = tokens
        self.depth = depth

    def provenance(self) -> dict:
        return {**self.tokens.provenance(), "depth": self.depth}

    def storage(self, dataset: Dataset) -> dict:
        return self.tokens.storage(dataset)

    def rerank(self, dataset, scores, indices, log):
        docs = self.tokens.documents(dataset, log)
        queries = self.tokens.queries(dataset, log)
        with log.step("rerank_seconds"):
            return maxsim.rerank_top(queries, docs, scores, indices, self.depth, exact.tie_ranks(dataset.doc_ids),
                                     score=engine_of(self.tokens.options).rerank)




# ---------------------------------------------------------------------------------------------
# One factory per model kind: (condition, spec, weights path) -> its first stage. The condition
# gives the run's options, the vector cache and the ColBERT models it shares between stages.


def bm25_stage(condition, spec, path) -> Stage:
    return BM25Stage()


def dense_stage(condition, spec, path) -> Stage:
    from harness.models.dense import DenseEncoder

    options = condition.options
    encoder = DenseEncoder(
        spec.name, path, batch_size=options.batch_size, max_length=options.max_length,
        trust_remote_code=options.trust_remote_code, allow_pickle=options.allow_pickle,
        precision=options.precision, backend=options.backend, graph_dir=condition.cache.graph_dir(),
        device=options.device,
    )
    return VectorStage(DenseEncoderAdapter(encoder), condition.cache, options)


def maxsim_stage(condition, spec, path) -> Stage:
    return MaxSimStage(condition.tokens(spec.name, path), condition.options)


def fde_stage(condition, spec, path) -> Stage:
    return FDEStage(condition.tokens(spec.name, path), condition.options.fde, condition.cache, condition.options)
