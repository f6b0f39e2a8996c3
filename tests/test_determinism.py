"""Determinism: the same command gives bit-identical numbers and run files, and every ranking breaks
ties one way, trec_eval's (score descending, then document id descending), at the top-k cut too."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import pytrec_eval
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import DEFAULT_DOCS, DEFAULT_QRELS, make_beir, start_harness
from harness.cache import VectorCache
from harness.data import load_dataset
from harness.evaluate import evaluate, ranking
from harness.pipeline import Condition, RunOptions
from harness.results import write_trec_run
from harness.retrieval import exact

# The default corpus plus exact copies under other ids: every copy ties with its original in BM25.
TIED_DOCS = DEFAULT_DOCS + [dict(d, _id=f"copy{i}") for i, d in enumerate(DEFAULT_DOCS[:10])] + [
    dict(DEFAULT_DOCS[0], _id="9"), dict(DEFAULT_DOCS[0], _id="10"),  # "9" > "10" as strings: 9 ranks first
]
TIED_QRELS = DEFAULT_QRELS + [("q0", "copy0", 1), ("q0", "10", 2), ("q1", "copy6", 2)]


def _desc_key(doc_id: str):
    """Sorting ascending by this sorts ids descending (strcmp order: a prefix after its extensions)."""
    return tuple(-ord(c) for c in doc_id) + (1,)


def reference_order(scores: list[float], ids: list[str]) -> list[int]:
    """Indices by score descending, then id descending: what trec_eval does with a run."""
    return sorted(range(len(ids)), key=lambda i: (-scores[i], _desc_key(ids[i])))


# ---------------------------------------------------------------------------------------------
# The whole command, three times


def test_same_bm25_command_three_times_is_bit_identical(tmp_path, harness_env):
    folder = make_beir(tmp_path / "data", name="ties", docs=TIED_DOCS, qrels=TIED_QRELS)
    runs = []
    for seed in ("0", "1", "4242"):  # a different str-hash seed each time: set/dict order must not matter
        out = tmp_path / f"results-{seed}"
        env = dict(harness_env, PYTHONHASHSEED=seed)
        runs.append((out, start_harness(["run", "--model", "bm25", "--datasets", str(folder), "--results-dir", str(out),
                                         "--save-run", "--json", "--top-k", "25"], env)))
    printed, stored, trec = [], [], []
    for out, proc in runs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        line = json.loads(stdout.strip())
        printed.append(json.dumps([line["metrics"], line["counts"], line["n_queries"]]))
        result = json.loads((out / "bm25" / "ties.json").read_text())
        stored.append(json.dumps([result["metrics"], result["counts"], result["per_query"]]))
        trec.append((out / "bm25" / "ties.trec").read_bytes())
    assert printed[0] == printed[1] == printed[2]  # the JSON text: every float bit equal
    assert stored[0] == stored[1] == stored[2]
    assert trec[0] == trec[1] == trec[2]

    # ... and the same as this process computes
    result, run = Condition("bm25", RunOptions(top_k=25), VectorCache(enabled=False)).run(load_dataset(str(folder)))
    assert json.dumps([result["metrics"], result["counts"], result["per_query"]]) == stored[0]

    lines = [line.split() for line in trec[0].decode().splitlines()]
    by_query: dict[str, list[tuple[str, float]]] = {}
    for qid, _, doc_id, rank, score, tag in lines:
        by_query.setdefault(qid, []).append((doc_id, float(score)))
        assert int(rank) == len(by_query[qid]) and tag == "bm25"
    for qid, ranked in by_query.items():
        assert [d for d, _ in ranked] == [ranked[i][0] for i in reference_order([s for _, s in ranked], [d for d, _ in ranked])]
    q0 = [d for d, _ in by_query["q0"]]
    assert q0.index("doc0") < q0.index("copy0") and q0.index("9") < q0.index("10")  # tied copies, larger id first


def test_bm25_top_k_cut_inside_a_tie_keeps_the_larger_ids(tmp_path):
    docs = [{"_id": doc_id, "text": "glacier ice"} for doc_id in ("a", "b10", "b9", "c", "zz", "b")] + [
        {"_id": "x", "text": "glacier ice glacier ice glacier"}, {"_id": "y", "text": "unrelated words here"}]
    folder = make_beir(tmp_path, docs=docs, queries=[{"_id": "q", "text": "glacier ice"}], qrels=[("q", "a", 1)])
    ds = load_dataset(str(folder))
    for k in range(1, 8):
        _, run = Condition("bm25", RunOptions(top_k=k), VectorCache(enabled=False)).run(ds)
        assert ranking(run["q"]) == ["x", "zz", "c", "b9", "b10", "b", "a"][:k]


# ---------------------------------------------------------------------------------------------
# exact.top_k / exact.search under constructed ties


def test_top_k_constructed_ties_at_the_boundary():
    ids = ["d1", "d10", "d2", "d9", "e", "d"]
    scores = np.array([[2.0, 2.0, 2.0, 2.0, 1.0, 3.0]], dtype=np.float32)
    ranks = exact.tie_ranks(ids)
    expected_full = ["d", "d9", "d2", "d10", "d1", "e"]  # 3.0, then the 2.0 ties by id descending
    for k in range(1, 7):
        s, idx = exact.top_k(scores, k, ranks)
        assert [ids[i] for i in idx[0]] == expected_full[:k]
        assert s.dtype == np.float32 and list(s[0]) == sorted(s[0], reverse=True)


def test_top_k_all_equal_scores_and_minus_inf():
    ids = [f"doc{i}" for i in range(12)]
    scores = np.zeros((3, 12), dtype=np.float32)
    scores[1, ::2] = -np.inf
    scores[2] = -np.inf
    ranks = exact.tie_ranks(ids)
    _, idx = exact.top_k(scores, 4, ranks)
    desc = sorted(ids, reverse=True)
    assert [ids[i] for i in idx[0]] == desc[:4]
    assert [ids[i] for i in idx[1]] == [d for d in desc if int(d[3:]) % 2][:4]
    run = exact.to_run(["a", "b", "c"], ids, *exact.top_k(scores, 4, ranks))
    assert run["c"] == {}  # -inf is "not retrieved"


@settings(max_examples=200, deadline=None, database=None)
@given(data=st.data(), n_rows=st.integers(1, 4), n_docs=st.integers(1, 25))
def test_top_k_matches_trec_eval_order_under_random_ties(data, n_rows, n_docs):
    ids = data.draw(st.lists(st.text("ab19", min_size=1, max_size=4), min_size=n_docs, max_size=n_docs, unique=True))
    values = st.sampled_from([0.0, 0.5, 1.0, 1.5, -np.inf])  # few distinct values: ties everywhere
    scores = np.array(data.draw(st.lists(st.lists(values, min_size=n_docs, max_size=n_docs), min_size=n_rows, max_size=n_rows)),
                      dtype=np.float32)
    k = data.draw(st.integers(1, n_docs + 2))
    out_scores, idx = exact.top_k(scores, k, exact.tie_ranks(ids))
    for row in range(n_rows):
        expected = reference_order(scores[row].tolist(), ids)[:k]
        assert idx[row].tolist() == expected
        assert out_scores[row].tolist() == scores[row, expected].tolist()


@settings(max_examples=60, deadline=None, database=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 40))
def test_search_ranking_does_not_depend_on_corpus_order_or_blocking(seed, k):
    """Small-integer vectors make every dot product exact, so ties are real ties."""
    rng = np.random.default_rng(seed)
    docs = rng.integers(-2, 3, size=(30, 4)).astype(np.float32)
    docs[10:20] = docs[0]  # ten exact duplicates of doc 0
    queries = rng.integers(-2, 3, size=(5, 4)).astype(np.float32)
    ids = [f"d{i}" for i in range(30)]
    scores, idx = exact.search(queries, docs, k, exact.tie_ranks(ids))
    for row in range(5):
        full = (queries[row].astype(np.float64) @ docs.T.astype(np.float64)).tolist()
        assert idx[row].tolist() == reference_order(full, ids)[:k]
    # The same corpus in another file order ranks the same ids.
    perm = rng.permutation(30)
    p_ids = [ids[i] for i in perm]
    _, p_idx = exact.search(queries, docs[perm], k, exact.tie_ranks(p_ids))
    assert [[p_ids[i] for i in r] for r in p_idx.tolist()] == [[ids[i] for i in r] for r in idx.tolist()]
    # One query per score block gives the same answer.
    saved = exact.SCORE_BLOCK_BYTES
    try:
        exact.SCORE_BLOCK_BYTES = 1
        b_scores, b_idx = exact.search(queries, docs, k, exact.tie_ranks(ids))
    finally:
        exact.SCORE_BLOCK_BYTES = saved
    assert b_idx.tolist() == idx.tolist() and b_scores.tobytes() == scores.tobytes()


def test_run_file_metrics_and_trec_eval_agree_on_ties(tmp_path):
    """The run file's order, the harness's MRR@10 cut and pytrec_eval all rank ties the same way."""
    qrels = {"q": {"a": 1}, "r": {"b10": 1}}
    run = {"q": {"a": 1.0, "b": 1.0, "c": 1.0}, "r": {"b9": 0.5, "b10": 0.5, "b": 0.5}}
    write_trec_run(tmp_path / "run.trec", run, tag="t")
    order = {}
    for line in (tmp_path / "run.trec").read_text().splitlines():
        qid, _, doc_id, rank, _, _ = line.split()
        order.setdefault(qid, []).append(doc_id)
    assert order == {"q": ["c", "b", "a"], "r": ["b9", "b10", "b"]}
    trec = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run)
    assert trec["q"]["recip_rank"] == 1 / 3 and trec["r"]["recip_rank"] == 1 / 2
    ours = evaluate(qrels, run).per_query
    assert ours["q"]["mrr@10"] == 1 / 3 and ours["r"]["mrr@10"] == 1 / 2


@pytest.mark.parametrize("relevant", ["z", "\u00e9", "\u03a9mega", "a", "a1"])
def test_non_ascii_ids_tie_like_trec_eval(relevant):
    """trec_eval compares UTF-8 bytes; Python compares code points: the same order, so the same rank."""
    run = {"q": {doc_id: 1.0 for doc_id in ("z", "\u00e9", "\u03a9mega", "a", "a1")}}
    qrels = {"q": {relevant: 1}}
    position = ranking(run["q"]).index(relevant) + 1
    assert ranking(run["q"]) == ["\u03a9mega", "\u00e9", "z", "a1", "a"]
    trec = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run)["q"]["recip_rank"]
    assert trec == evaluate(qrels, run).per_query["q"]["mrr@10"] == 1 / position


def test_ranking_is_independent_of_dict_order():
    scores = {f"d{i}": float(i % 3) for i in range(40)}
    items = list(scores.items())
    expected = ranking(scores)
    for seed in range(5):
        random.Random(seed).shuffle(items)
        assert ranking(dict(items)) == expected
    assert expected == [d for d in sorted(scores, key=lambda d: (-scores[d], _desc_key(d)))]
