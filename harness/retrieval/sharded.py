"""Exact search over shards (row ranges) of the stored vectors, merged with the harness's tie rule.

A shard is a half-open range ``[start, stop)`` of document rows. Searching a shard returns its own
top-k (scores (n_queries, k_shard) float32, *global* doc indices (n_queries, k_shard) int64), ties
settled by the global :func:`harness.retrieval.exact.tie_ranks`; :func:`merge` keeps, per query, the
k best of several shard results in the same order (score descending, then tie rank ascending, i.e.
doc id descending). Every document of the global top-k is in its own shard's top-k, so the merged
ranking equals the unsharded one whenever the shard scores are the same floats.

The same functions serve two engines: the local engine searches the shards one after the other
(:func:`search_chunked`: the memory of one shard's scores at a time, ``--max-memory``), the Ray engine
as tasks (:mod:`harness.engine.ray_engine`). ``docs`` may be an in-memory array or a read-only
memory map (:func:`numpy.load` with ``mmap_mode="r"``): a shard is read from disk when it is searched.
"""

from __future__ import annotations

import numpy as np

from harness.retrieval import exact, maxsim


def shard_bounds(n_rows: int, n_shards: int) -> list[tuple[int, int]]:
    """``n_shards`` (at most ``n_rows``, at least 1) contiguous ranges covering ``range(n_rows)``."""
    n_shards = max(1, min(n_shards, n_rows))
    edges = np.linspace(0, n_rows, n_shards + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def chunk_rows(dim: int, n_queries: int, k: int, memory_bytes: int | None) -> int | None:
    """Document rows per chunk so that a chunk's working set fits in ``memory_bytes``: per row its
    vector (4 x dim bytes) and, for one block of ``exact.QUERY_BLOCK`` queries, its score and the
    top-k selection's temporaries (about 24 bytes a score); fixed, the queries and the running
    top-k of every query. None: no budget. The rows do not grow with the corpus, so neither does
    the search's memory (apart from the vectors a memory map pages in)."""
    if not memory_bytes:
        return None
    fixed = 4 * n_queries * dim + 2 * 24 * n_queries * k
    return max(k, 1, (memory_bytes - fixed) // (4 * max(dim, 1) + 24 * exact.QUERY_BLOCK))


def merge(parts: list[tuple[np.ndarray, np.ndarray]], k: int, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the ``k`` best of the concatenated shard results, best first (see module docstring)."""
    scores = np.concatenate([p[0] for p in parts], axis=1)
    indices = np.concatenate([p[1] for p in parts], axis=1)
    order = np.lexsort((ranks[indices], -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, axis=1).astype(np.float32), np.take_along_axis(indices, order, axis=1)


def search_shard(queries: np.ndarray, docs, start: int, stop: int, k: int, ranks: np.ndarray):
    """Exact inner-product top-k of ``queries`` over ``docs[start:stop]``; global indices."""
    shard = np.ascontiguousarray(docs[start:stop], dtype=np.float32)
    scores, indices = exact.search(queries, shard, k, ranks[start:stop])
    return scores, indices + start


def search_chunked(queries: np.ndarray, docs, k: int, ranks: np.ndarray, rows: int):
    """:func:`harness.retrieval.exact.search` over chunks of ``rows`` documents, merged as they come:
    the same result, with one chunk of ``docs`` (which may be a memory map) in memory at a time."""
    best = None
    for start in range(0, len(docs), rows):
        part = search_shard(queries, docs, start, min(start + rows, len(docs)), k, ranks)
        best = part if best is None else merge([best, part], k, ranks)
    if best is None:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    return best


def maxsim_shard(query_tokens: list[np.ndarray], doc_tokens, start: int, stop: int, k: int, memory: int,
                 ranks: np.ndarray):
    """Exact full maxsim top-k of the queries over documents ``start..stop-1``; global indices."""
    shard = [np.asarray(doc_tokens[i], dtype=np.float32) for i in range(start, stop)]
    scores, indices = maxsim.search(query_tokens, shard, k, memory_budget_bytes=memory, tie_ranks=ranks[start:stop])
    return scores, indices + start
