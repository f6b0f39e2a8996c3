"""Where a condition's heavy steps run: ``--engine local`` (this process) or ``--engine ray``.

An engine offers the steps the pipeline delegates to it, with one contract whatever runs them:

* ``encode_in_blocks(texts, encode, cache, parts, desc)``: the vectors of ``texts`` in input order and
  ``{"blocks", "blocks_cached"}``, through the cache blocks of :func:`harness.cache.encode_in_blocks`
  (same keys, same block contents), so both engines share the cache and resume each other's runs;
* ``search(queries, docs, k, ranks)``: exact inner-product top-k, (n_queries, k) scores and indices;
* ``maxsim_search(query_tokens, doc_tokens, k, memory, ranks)``: exact full maxsim top-k;
* ``rerank(query_tokens, doc_tokens, candidates)``: exact maxsim of each query's candidates
  (:func:`harness.retrieval.maxsim.rerank`), reading only the candidates' token matrices;
* ``provenance()``: what a result records (engine, device, Ray version and cluster size).

A condition's FDEs are computed where its token matrices are assembled (the driver); for corpora
whose FDEs exceed memory, :class:`harness.engine.store.FDEDocuments` computes them per block, in
the actors with the Ray engine, straight to disk.

``--max-memory`` makes the local engine search dense and FDE vectors chunk by chunk
(:func:`harness.retrieval.sharded.search_chunked`), the same ranking in bounded score memory.
"""

from __future__ import annotations

import numpy as np

from harness.engine.device import DEVICES, device_provenance, select_device
from harness.errors import HarnessError

ENGINES = ("local", "ray")


class LocalEngine:
    """Every step in this process (torch's intra-op threads and the encoders' own batch workers)."""

    name = "local"

    def __init__(self, device: str = "cpu", max_memory_bytes: int | None = None):
        self.device = device
        self.max_memory_bytes = max_memory_bytes

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        pass

    def provenance(self) -> dict:
        return {"engine": self.name, **device_provenance(self.device)}

    def encode_in_blocks(self, texts, encode, cache, parts, desc="encode"):
        from harness.cache import encode_in_blocks

        return encode_in_blocks(texts, encode, cache, parts, desc=desc)

    def search(self, queries: np.ndarray, docs, k: int, ranks: np.ndarray):
        from harness.retrieval import exact, sharded

        rows = sharded.chunk_rows(docs.shape[1] if docs.ndim == 2 else 0, len(queries), k, self.max_memory_bytes)
        if rows is None and not isinstance(docs, np.memmap):
            return exact.search(queries, docs, k, ranks)
        return sharded.search_chunked(queries, docs, k, ranks, rows or max(k, 65536))

    def rerank(self, query_tokens, doc_tokens, candidates: np.ndarray) -> np.ndarray:
        from harness.retrieval import maxsim

        return maxsim.rerank(query_tokens, doc_tokens, candidates)

    def maxsim_search(self, query_tokens, doc_tokens, k: int, memory: int, ranks: np.ndarray):
        from harness.retrieval import maxsim

        return maxsim.search(query_tokens, doc_tokens, k, memory_budget_bytes=memory, tie_ranks=ranks)


def engine_of(options) -> "LocalEngine":
    """The engine that runs a run's encoding and search: ``options.engine`` (a RayEngine, set by
    ``harness run``), else a local engine on ``options.device`` under ``options.max_memory_bytes``."""
    return options.engine or LocalEngine(options.device, options.max_memory_bytes)


def add_engine_arguments(parser) -> None:
    """``--engine``, ``--ray-address``, ``--ray-workers``, ``--device`` on a ``run`` parser."""
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help="local: this process; ray: encode with a Ray Data actor pool and search shards as"
                        " Ray tasks (same numbers, same cache)")
    parser.add_argument("--ray-address", default=None,
                        help="--engine ray: address of a running Ray cluster (host:port, ray://host:port or"
                        " auto); default: start a local Ray runtime with this machine's CPUs")
    parser.add_argument("--ray-workers", type=int, default=None,
                        help="--engine ray: encoder actors (default: the cluster's CPUs, or GPUs with --device cuda)")
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="torch device of every encoder: cpu (default), cuda, or auto (cuda when present)")


def engine_from_args(args, max_memory_bytes: int | None = None):
    """The engine ``args`` ask for (not started yet: use it as a context manager)."""
    device = select_device(getattr(args, "device", "cpu"))
    engine = getattr(args, "engine", "local")
    if engine == "local":
        if getattr(args, "ray_address", None) or getattr(args, "ray_workers", None):
            raise HarnessError("--ray-address and --ray-workers need --engine ray")
        return LocalEngine(device, max_memory_bytes)
    if getattr(args, "profile", "beir") != "beir":
        raise HarnessError(f"--engine ray runs the harness's own pipeline; --profile {args.profile} runs txtai's")
    from harness.engine.ray_engine import RayEngine

    return RayEngine(address=args.ray_address, workers=args.ray_workers, device=device,
                     max_memory_bytes=max_memory_bytes)
