"""The evaluation rules, checked by hand and against BEIR's own EvaluateRetrieval."""

import math
import random

import pytest

from harness.evaluate import evaluate, ranking


def test_graded_ndcg_at_10_by_hand():
    qrels = {"q": {"d1": 2, "d2": 1, "d3": 0}}
    run = {"q": {"d3": 0.9, "d2": 0.8, "d1": 0.7}}
    dcg = 0 / math.log2(2) + 1 / math.log2(3) + 2 / math.log2(4)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    result = evaluate(qrels, run)
    assert result.metrics["ndcg@10"] == pytest.approx(dcg / ideal, abs=1e-9)
    assert result.metrics["mrr@10"] == pytest.approx(1 / 2)  # d3 is judged, but grade 0 is not relevant
    assert result.metrics["recall@100"] == pytest.approx(1.0)


def test_queries_without_relevant_judgments_score_zero_and_are_counted():
    # As BEIR's EvaluateRetrieval (pytrec_eval scores them 0): they stay in the mean.
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 0}}
    run = {"q1": {"d1": 1.0}, "q2": {"d2": 1.0}}
    for mode in ("zero", "drop"):
        result = evaluate(qrels, run, empty_queries=mode)
        assert result.counts["queries_without_relevant"] == 1
        assert result.counts["queries_evaluated"] == 2
        assert result.per_query["q2"]["ndcg@10"] == 0.0
        assert result.metrics["ndcg@10"] == 0.5


def test_queries_with_no_results_count_as_zero_not_missing():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}
    run = {"q1": {"d1": 1.0}, "q2": {}}  # q2 answered nothing, q3 not at all
    result = evaluate(qrels, run)
    assert result.counts["queries_without_results"] == 2
    assert result.metrics["ndcg@10"] == pytest.approx(1 / 3)
    assert result.per_query["q3"]["ndcg@10"] == 0.0


def test_self_matches_are_removed_and_counted():
    qrels = {"q1": {"d1": 1}}
    run = {"q1": {"q1": 5.0, "d1": 1.0}}
    result = evaluate(qrels, run)
    assert result.counts["self_matches_removed"] == 1
    assert result.metrics["ndcg@10"] == 1.0


def test_ties_follow_trec_eval_order_doc_id_descending():
    assert ranking({"a": 1.0, "c": 1.0, "b": 2.0, "z": 1.0}) == ["b", "z", "c", "a"]
    # MRR@10's cut uses the same order as trec_eval's own sort: "a" is ranked last among ties.
    qrels = {"q": {"a": 1}}
    run = {"q": {f"d{i:02d}": 1.0 for i in range(10)} | {"a": 1.0}}
    assert evaluate(qrels, run).metrics["mrr@10"] == 0.0
    run = {"q": {f"d{i:02d}": 1.0 for i in range(9)} | {"a": 1.0}}
    assert evaluate(qrels, run).metrics["mrr@10"] == pytest.approx(1 / 10)


def test_matches_beir_evaluate_retrieval_where_the_rules_agree(monkeypatch):
    import beir.retrieval.custom_metrics as beir_custom
    import beir.retrieval.evaluation as beir_evaluation
    from beir.retrieval.evaluation import EvaluateRetrieval

    # BEIR rounds its means to 5 decimals; compare the unrounded values.
    for module in (beir_evaluation, beir_custom):
        monkeypatch.setattr(module, "round", lambda value, digits=None: value, raising=False)

    rng = random.Random(7)
    docs = [f"doc{i}" for i in range(300)]
    qrels, run = {}, {}
    for q in range(40):
        qid = f"q{q}"
        judged = rng.sample(docs, 12)
        qrels[qid] = {d: rng.choice([1, 1, 2]) for d in judged[:5]} | {d: 0 for d in judged[5:]}
        run[qid] = {d: rng.random() for d in rng.sample(docs, 150)} | {d: rng.random() + 0.3 for d in judged[:3]}
    ours = evaluate(qrels, run).metrics
    ndcg, _map, recall, _p = EvaluateRetrieval.evaluate(qrels, run, [10, 100, 1000])
    assert ours["ndcg@10"] == pytest.approx(ndcg["NDCG@10"], abs=1e-6)
    assert ours["ndcg@100"] == pytest.approx(ndcg["NDCG@100"], abs=1e-6)
    assert ours["recall@100"] == pytest.approx(recall["Recall@100"], abs=1e-6)
    mrr = EvaluateRetrieval.evaluate_custom(qrels, run, [10], metric="mrr")
    assert ours["mrr@10"] == pytest.approx(mrr["MRR@10"], abs=1e-6)
