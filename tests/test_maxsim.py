"""Exact maxsim: rerank and chunked full search against a brute-force Python loop."""

import numpy as np
import pytest

from harness.retrieval import maxsim


def brute(query, doc):
    if len(doc) == 0:
        return -np.inf
    if len(query) == 0:
        return 0.0
    return float((query.astype(np.float64) @ doc.astype(np.float64).T).max(axis=1).sum())


def token_sets(seed, n, max_tokens, dim=16, min_tokens=0, integer=False):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        shape = (int(rng.integers(min_tokens, max_tokens + 1)), dim)
        # small integers make every float32 sum exact, so duplicate documents tie exactly
        values = rng.integers(-2, 3, size=shape) if integer else rng.normal(size=shape)
        out.append(values.astype(np.float32))
    return out


def brute_top(queries, docs, k, ranks=None):
    ranks = np.arange(len(docs)) if ranks is None else ranks
    full = np.array([[brute(q, d) for d in docs] for q in queries])
    order = [sorted(range(len(docs)), key=lambda j: (-row[j], ranks[j]))[:k] for row in full]
    return full, np.array(order)


def test_rerank_matches_brute_force():
    docs = token_sets(0, 120, 40)
    queries = token_sets(1, 17, 12)
    rng = np.random.default_rng(2)
    candidates = rng.integers(-1, len(docs), size=(17, 25))
    got = maxsim.rerank(queries, docs, candidates)
    assert got.shape == (17, 25) and got.dtype == np.float32
    for i, q in enumerate(queries):
        for j, c in enumerate(candidates[i]):
            expected = -np.inf if c < 0 else brute(q, docs[c])
            if np.isinf(expected):
                assert got[i, j] == expected
            else:
                assert got[i, j] == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("budget", [20_000, 200_000, 1 << 30])
def test_search_matches_brute_force(budget):
    docs = token_sets(3, 150, 30)
    queries = token_sets(4, 9, 10, min_tokens=1)
    full, order = brute_top(queries, docs, 40)
    scores, indices = maxsim.search(queries, docs, 40, memory_budget_bytes=budget)
    assert scores.shape == indices.shape == (9, 40) and scores.dtype == np.float32 and indices.dtype == np.int64
    np.testing.assert_array_equal(indices, order)
    np.testing.assert_allclose(scores, np.take_along_axis(full, order, axis=1), atol=1e-4)


def test_ties_lower_index_first_and_custom_ranks():
    base = token_sets(5, 20, 8, integer=True, min_tokens=1)
    docs = base + base + base  # every document three times: exact ties
    queries = token_sets(6, 5, 6, integer=True, min_tokens=1)
    for budget in (5_000, 1 << 30):
        scores, indices = maxsim.search(queries, docs, 25, memory_budget_bytes=budget)
        full, order = brute_top(queries, docs, 25)
        np.testing.assert_array_equal(indices, order)
        np.testing.assert_array_equal(scores, np.take_along_axis(full, order, axis=1).astype(np.float32))
    ranks = np.arange(len(docs))[::-1].copy()  # reversed tie order: higher index first
    _, indices = maxsim.search(queries, docs, 25, tie_ranks=ranks)
    np.testing.assert_array_equal(indices, brute_top(queries, docs, 25, ranks)[1])


def test_edge_cases():
    docs = [np.zeros((0, 4), np.float32), np.ones((2, 4), np.float32)]
    queries = [np.ones((3, 4), np.float32), np.zeros((0, 4), np.float32)]
    scores, indices = maxsim.search(queries, docs, 10)
    assert scores.shape == (2, 2)  # k capped at the corpus size
    np.testing.assert_array_equal(indices, [[1, 0], [1, 0]])
    np.testing.assert_array_equal(scores, [[12.0, -np.inf], [0.0, -np.inf]])  # empty doc: -inf
    got = maxsim.rerank(queries, docs, np.array([[0, 1, -1], [1, 0, -1]]))
    np.testing.assert_array_equal(got, [[-np.inf, 12.0, -np.inf], [0.0, -np.inf, -np.inf]])
