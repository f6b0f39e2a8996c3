"""Exact search: correct top-k, trec_eval's tie order at the boundary, and txtai giving the same ranking."""

import numpy as np

from harness.retrieval import exact


def test_search_matches_a_full_sort():
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(500, 16)).astype(np.float32)
    queries = rng.normal(size=(7, 16)).astype(np.float32)
    ranks = exact.tie_ranks([f"d{i:04d}" for i in range(500)])
    scores, indices = exact.search(queries, docs, 50, ranks)
    full = queries @ docs.T
    for row in range(7):
        expected = np.argsort(-full[row], kind="stable")[:50]
        assert list(indices[row]) == list(expected)
        np.testing.assert_allclose(scores[row], full[row, expected], rtol=1e-5)


def test_ties_at_the_boundary_keep_trec_eval_order():
    doc_ids = ["a", "b", "c", "d", "e"]
    scores = np.array([[1.0, 2.0, 1.0, 1.0, 0.5]], dtype=np.float32)
    ranks = exact.tie_ranks(doc_ids)
    top_scores, top_indices = exact.top_k(scores, 3, ranks)
    # b first; of the tied a, c, d trec_eval ranks the larger id first: d, then c.
    assert [doc_ids[i] for i in top_indices[0]] == ["b", "d", "c"]
    assert top_scores.tolist() == [[2.0, 1.0, 1.0]]


def test_k_larger_than_corpus_returns_every_document():
    scores = np.array([[0.1, 0.3, 0.2]], dtype=np.float32)
    _, indices = exact.top_k(scores, 10, exact.tie_ranks(["x", "y", "z"]))
    assert indices.tolist() == [[1, 2, 0]]


def test_minus_inf_means_not_retrieved():
    run = exact.to_run(["q"], ["a", "b"], np.array([[1.0, -np.inf]], np.float32), np.array([[0, 1]]))
    assert run == {"q": {"a": 1.0}}


def test_txtai_index_gives_the_exact_ranking():
    from harness.retrieval.txtai_index import search as txtai_search

    rng = np.random.default_rng(1)
    docs = rng.normal(size=(6000, 12)).astype(np.float32)  # above txtai's 5,000-row IVF switch
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = rng.normal(size=(5, 12)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ranks = exact.tie_ranks([str(i) for i in range(6000)])
    ours = exact.search(queries, docs, 100, ranks)
    theirs = txtai_search(queries, docs, 100, ranks)
    assert (ours[1] == theirs[1]).all()
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-5)
