"""Exact late-interaction (ColBERT maxsim) scoring: reranking candidates and full-corpus search.

Units and shapes: a query is a float32 matrix (n_q_tokens, dim), a document (n_d_tokens, dim)
(token vectors, normally unit length). maxsim(q, d) = sum over query tokens of the maximum dot
product with any document token, a float32 score. A query without tokens scores 0 against every
document; a document without tokens scores -inf (the harness's "not retrieved").

``rerank`` scores given candidates: (n_queries, depth) document indices -> (n_queries, depth)
float32, negative indices (no candidate) -> -inf. Per query, its candidates' token matrices are
stacked without padding into one (total_tokens, dim) block, scored by one GEMM against the query's
tokens, and reduced per document with ``np.maximum.reduceat`` at the documents' row offsets: no
Python loop per candidate, no padded copy, and a working set of one query's candidates (a few MB),
so peak memory is the cached token vectors plus that.

``rerank_top`` re-orders the top of a first stage's ranking by ``rerank`` and keeps its tail.

``search`` scores every document: (scores (n_queries, k) float32, indices (n_queries, k) int64),
k capped at the number of documents, best first. Documents are visited in length order (so a
chunk pads little) in chunks sized from ``memory_budget_bytes``; chunk scores are buffered and
merged into a running top-k. Ties: higher score first, then lower ``tie_ranks[index]`` (default:
the document index itself, i.e. lower index first), including at the k-th place.

The arithmetic is float32 BLAS (numpy in ``rerank``, torch in ``search``); chunking changes only
the order of float32 additions, not which tokens are compared. Timings:
``benchmarks/fde_and_rerank.py`` (``rerank`` of 1,000 queries x top 100 pico-shaped token sets).
Full ``search`` costs n_query_tokens x n_corpus_tokens x dim multiply-adds, e.g. 2.6e12 (5 TFLOP)
for 1,000 queries x 5,000 such documents.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes


def _pad(arrays: list[np.ndarray], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad to (n, max_len >= 1, dim) float32 + (n, max_len) bool mask of real tokens."""
    lengths = torch.tensor([len(a) for a in arrays], dtype=torch.int64)
    padded = pad_sequence([torch.from_numpy(np.asarray(a, dtype=np.float32).reshape(-1, dim)) for a in arrays], batch_first=True)
    if padded.shape[1] == 0:  # keep one (masked) column so maxima over padding are -inf, not errors
        padded = padded.new_zeros((len(arrays), 1, dim))
    return padded, torch.arange(padded.shape[1]) < lengths[:, None]


def rerank(query_tokens: list[np.ndarray], doc_tokens: list[np.ndarray], candidates: np.ndarray) -> np.ndarray:
    """Exact maxsim of each query against its candidate documents: (n_queries, depth) float32."""
    candidates = np.asarray(candidates, dtype=np.int64)
    n_queries, depth = candidates.shape
    out = np.full((n_queries, depth), -np.inf, dtype=np.float32)
    if n_queries == 0 or depth == 0:
        return out
    lengths = np.fromiter((len(d) for d in doc_tokens), dtype=np.int64, count=len(doc_tokens))
    for row in range(n_queries):
        row_candidates = candidates[row]
        columns = np.flatnonzero(row_candidates >= 0)
        columns = columns[lengths[row_candidates[columns]] > 0]  # documents without tokens stay -inf
        if not columns.size:
            continue
        query = np.asarray(query_tokens[row], dtype=np.float32)
        if not len(query):
            out[row, columns] = 0.0
            continue
        docs = row_candidates[columns]
        tokens = np.concatenate([doc_tokens[i] for i in docs])  # (total tokens, dim), unpadded
        sims = tokens @ query.T  # (total tokens, n query tokens): one GEMM
        starts = np.concatenate(([0], np.cumsum(lengths[docs])[:-1]))
        out[row, columns] = np.maximum.reduceat(sims, starts, axis=0).sum(axis=1, dtype=np.float32)
    return out


def rerank_top(query_tokens: list[np.ndarray], doc_tokens: list[np.ndarray], scores: np.ndarray,
               indices: np.ndarray, depth: int, tie_ranks: np.ndarray, score=None) -> tuple[np.ndarray, np.ndarray]:
    """A first stage's ranking (scores, doc indices (n_queries, k), best first; -inf = not retrieved)
    with its top ``depth`` re-ordered by exact maxsim (ties by ``tie_ranks``) and the rest kept in
    first-stage order, their scores shifted below every reranked score. Same shapes out, float32.
    ``score(query_tokens, doc_tokens, candidates)`` computes the maxsim scores (default :func:`rerank`;
    an engine's ``rerank`` runs it elsewhere)."""
    depth = min(depth, indices.shape[1])
    head = indices[:, :depth]
    head_scores = (score or rerank)(query_tokens, doc_tokens, head).astype(np.float32)
    retrieved = np.isfinite(scores[:, :depth])
    head_scores[~retrieved] = -np.inf
    order = np.lexsort((tie_ranks[head], -head_scores), axis=-1)
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


def search(
    query_tokens: list[np.ndarray],
    doc_tokens: list[np.ndarray],
    k: int,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    tie_ranks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact full maxsim top-k of every query over all documents (see the module docstring)."""
    n_queries, n_docs = len(query_tokens), len(doc_tokens)
    k = min(k, n_docs)
    ranks = np.arange(n_docs, dtype=np.int64) if tie_ranks is None else np.asarray(tie_ranks, dtype=np.int64)
    best_scores = np.zeros((n_queries, 0), dtype=np.float32)
    best_indices = np.zeros((n_queries, 0), dtype=np.int64)
    if n_queries == 0 or k == 0:
        return best_scores, best_indices
    dim = query_tokens[0].shape[1]
    queries, query_mask = _pad(query_tokens, dim)
    sorted_lengths = np.array([len(d) for d in doc_tokens], dtype=np.int64)
    order = np.argsort(sorted_lengths, kind="stable")
    sorted_lengths = np.maximum(sorted_lengths[order], 1)

    # Budget: resident queries and top-k state; of the rest, half buffers chunk scores (24 bytes
    # per buffered (query, doc) at merge time: float32 score, int64 index, int64 sort order, copy)
    # and half holds one chunk (padded tokens + float32 similarity block).
    fixed = queries.numel() * 4 + n_queries * k * 12
    spare = max(memory_budget_bytes - fixed, 1 << 20)
    buffer_width = max(2 * k, (spare // 2) // (n_queries * 24))
    chunk_tokens = max(1, (spare // 2) // (4 * (queries.shape[0] * queries.shape[1] + dim)))

    pending_scores: list[np.ndarray] = []
    pending_indices: list[np.ndarray] = []
    start = 0
    with torch.inference_mode():
        while start < n_docs:
            # Ascending lengths: a chunk of c documents ending at j pads to c * length[j] tokens.
            window = sorted_lengths[start : start + chunk_tokens]
            fits = np.searchsorted(np.arange(1, len(window) + 1) * window, chunk_tokens, side="right")
            stop = start + max(1, int(fits))
            chunk = order[start:stop]
            docs, doc_mask = _pad([doc_tokens[i] for i in chunk], dim)
            sims = torch.einsum("nqd,cld->nqcl", queries, docs)  # one GEMM: (n, Lq, chunk, L)
            best = sims.masked_fill_(~doc_mask, float("-inf")).amax(dim=-1)  # (n, Lq, chunk)
            # sum the maxima over real query tokens; documents without tokens -> -inf
            # (query tokens added one by one: torch's sum(dim=1) orders its additions by the chunk's
            # shape, and a document must score the same whichever chunk or shard it lands in)
            masked = torch.where(query_mask.unsqueeze(-1), best, torch.zeros((), dtype=best.dtype))
            scores = masked[:, 0].clone()
            for j in range(1, masked.shape[1]):
                scores += masked[:, j]
            scores.masked_fill_(~doc_mask.any(dim=-1), float("-inf"))
            pending_scores.append(scores.numpy())
            pending_indices.append(chunk)
            start = stop
            if sum(map(len, pending_indices)) >= buffer_width or start >= n_docs:
                columns = np.concatenate(pending_indices)
                best_scores, best_indices = _merge(
                    np.concatenate([best_scores, *pending_scores], axis=1),
                    np.concatenate([best_indices, np.broadcast_to(columns, (n_queries, len(columns)))], axis=1),
                    k,
                    ranks,
                )
                pending_scores, pending_indices = [], []
    return best_scores, best_indices


def _merge(scores: np.ndarray, indices: np.ndarray, k: int, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best (score descending, then tie rank ascending), sorted best first."""
    order = np.lexsort((ranks[indices], -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(indices, order, axis=1)
