"""Exact top-k search over single vectors, with one deterministic tie rule.

Scores are inner products (vectors are L2-normalised upstream when the model says so, which makes
them cosine similarities). Every ranking in the harness uses trec_eval's order: score descending,
then document id descending; :func:`tie_ranks` turns that id order into integers so that numpy can
apply it, including at the top-k boundary (of several documents tied at the k-th score, the ones
trec_eval would rank first are kept).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from tqdm.auto import tqdm

#: Upper bound for one (queries x documents) float32 score block, in bytes.
SCORE_BLOCK_BYTES = 256 * 2**20

#: Queries scored by one GEMM. Fixed (not derived from the corpus size) so that every shard of a
#: corpus computes each query's scores in the same block as the whole corpus does.
QUERY_BLOCK = 256

#: Fewest document rows, and query rows, one score GEMM is given (zero rows pad a smaller corpus,
#: shard or query block). MKL scores fewer than 12 document rows, and a few queries, with other
#: kernels whose float32 sums round differently (and, for a handful of queries, differently on one
#: thread than on two); padded, a score does not depend on how many other documents share the
#: GEMM nor on the thread count, so shards of any size, searched by one-CPU Ray tasks, score
#: exactly as the whole corpus does (tests/test_ray_engine.py checks it).
MIN_GEMM_ROWS = 32


def tie_ranks(doc_ids: list[str]) -> np.ndarray:
    """(n_docs,) int64: 0 for the largest id, so ascending rank = trec_eval's tie order."""
    order = sorted(range(len(doc_ids)), key=doc_ids.__getitem__, reverse=True)
    ranks = np.empty(len(doc_ids), dtype=np.int64)
    ranks[order] = np.arange(len(doc_ids))
    return ranks


def top_k(scores: np.ndarray, k: int, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of each row of ``scores`` (n_rows, n_docs), sorted best first.

    Returns (scores (n_rows, k) float32, doc indices (n_rows, k) int64), k capped at n_docs.
    """
    n_rows, n_docs = scores.shape
    k = min(k, n_docs)
    if k < n_docs:
        picked = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(scores, picked, axis=1).min(axis=1)
        ambiguous = np.flatnonzero((scores >= kth[:, None]).sum(axis=1) > k)
        for row in ambiguous:  # ties straddle the boundary: settle them by the tie rule
            candidates = np.flatnonzero(scores[row] >= kth[row])
            order = np.lexsort((ranks[candidates], -scores[row, candidates]))
            picked[row] = candidates[order[:k]]
    else:
        picked = np.broadcast_to(np.arange(n_docs), (n_rows, n_docs)).copy()
    picked_scores = np.take_along_axis(scores, picked, axis=1)
    order = np.lexsort((ranks[picked], -picked_scores), axis=-1)
    picked = np.take_along_axis(picked, order, axis=1)
    return np.take_along_axis(scores, picked, axis=1).astype(np.float32), picked.astype(np.int64)


def search(queries: np.ndarray, docs: np.ndarray, k: int, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact maximum-inner-product search.

    queries: (n_queries, dim) float32; docs: (n_docs, dim) float32. Returns (n_queries, min(k, n_docs))
    scores and doc indices, best first. Queries are scored in blocks of :data:`QUERY_BLOCK` rows
    against at most :data:`SCORE_BLOCK_BYTES` of scores at a time (larger corpora: in document
    chunks, whose top-k are merged). A score depends on which query block computed it (MKL's
    kernels), not on how many documents shared the GEMM (from :data:`MIN_GEMM_ROWS` on): blocks are
    fixed, so a search over a shard of ``docs`` (:mod:`harness.retrieval.sharded`) scores every
    document exactly as this one does.
    """
    with warnings.catch_warnings():  # a read-only memory map is only read here; torch warns about any
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        doc_tensor = torch.from_numpy(np.ascontiguousarray(docs, dtype=np.float32))
    n_docs = len(doc_tensor)
    doc_rows = max(MIN_GEMM_ROWS, SCORE_BLOCK_BYTES // (4 * QUERY_BLOCK))
    out_scores, out_indices = [], []
    with torch.inference_mode():
        blocks = range(0, len(queries), QUERY_BLOCK)
        for start in tqdm(blocks, desc="exact search", unit="block", leave=False, disable=len(blocks) < 2):
            block = torch.from_numpy(np.ascontiguousarray(queries[start : start + QUERY_BLOCK], dtype=np.float32))
            best = None
            for first in range(0, max(n_docs, 1), doc_rows):
                last = min(first + doc_rows, n_docs)
                part_scores, part_indices = top_k(_scores(block, doc_tensor[first:last]), k, ranks[first:last])
                part = (part_scores, part_indices + first)
                best = part if best is None else _merge(best, part, k, ranks)
            out_scores.append(best[0])
            out_indices.append(best[1])
    if not out_scores:
        return np.zeros((0, min(k, n_docs)), np.float32), np.zeros((0, min(k, n_docs)), np.int64)
    return np.concatenate(out_scores), np.concatenate(out_indices)


def _scores(block: torch.Tensor, docs: torch.Tensor) -> np.ndarray:
    """(block rows, len(docs)) float32 inner products; fewer than MIN_GEMM_ROWS docs, or queries,
    are zero-padded to that many rows."""
    n, m = len(docs), len(block)
    if n < MIN_GEMM_ROWS:
        docs = torch.cat([docs, docs.new_zeros((MIN_GEMM_ROWS - n, docs.shape[1]))])
    if m < MIN_GEMM_ROWS:
        block = torch.cat([block, block.new_zeros((MIN_GEMM_ROWS - m, block.shape[1]))])
    return (block @ docs.T).numpy()[:m, :n]


def _merge(a, b, k: int, ranks: np.ndarray):
    """The k best of two (scores, indices) results per row: score descending, then tie rank."""
    scores = np.concatenate([a[0], b[0]], axis=1)
    indices = np.concatenate([a[1], b[1]], axis=1)
    order = np.lexsort((ranks[indices], -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(indices, order, axis=1)


def to_run(
    query_ids: list[str], doc_ids: list[str], scores: np.ndarray, indices: np.ndarray
) -> dict[str, dict[str, float]]:
    """``{query_id: {doc_id: score}}`` with Python floats; a ``-inf`` score means "not retrieved"."""
    if np.isnan(scores).any():
        raise ValueError("NaN scores in a ranking: the encoder produced invalid vectors")
    run = {}
    for query_id, row_scores, row_indices in zip(query_ids, scores.tolist(), indices.tolist()):
        run[query_id] = {doc_ids[i]: s for i, s in zip(row_indices, row_scores) if s != float("-inf")}
    return run
