"""Official BEIR quirks, each reproduced on a small fixture and scored against BEIR's own code
(``beir.retrieval.evaluation.EvaluateRetrieval``, ``DenseRetrievalExactSearch``, ``GenericDataLoader``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import DEFAULT_QRELS, DEFAULT_QUERIES, make_beir, run_cli
from harness.cache import VectorCache
from harness.data import load_dataset
from harness.errors import HarnessError
from harness.evaluate import evaluate
from harness.pipeline import Condition, RunOptions
from harness.stages import Stage
from harness.retrieval import exact


@pytest.fixture
def unrounded_beir(monkeypatch):
    """BEIR's EvaluateRetrieval with its 5-decimal rounding off, so values compare exactly."""
    import beir.retrieval.evaluation as beir_evaluation
    from beir.retrieval.evaluation import EvaluateRetrieval

    monkeypatch.setattr(beir_evaluation, "round", lambda value, digits=None: value, raising=False)
    return EvaluateRetrieval


def _beir(EvaluateRetrieval, qrels, run):
    ndcg, _map, recall, _p = EvaluateRetrieval.evaluate(qrels, json.loads(json.dumps(run)), [10, 100])
    return {"ndcg@10": ndcg["NDCG@10"], "recall@100": recall["Recall@100"]}


def _bm25(folder, tmp_path, **options):
    dataset = load_dataset(str(folder))
    return Condition("bm25", RunOptions(**options), VectorCache(tmp_path / "cache")).run(dataset)


# --------------------------------------------------------------------------- judged documents absent


def test_judged_documents_absent_from_the_corpus_are_kept_counted_and_scored_as_beir(
    tmp_path, capsys, unrounded_beir
):
    from beir.datasets.data_loader import GenericDataLoader

    qrels = DEFAULT_QRELS + [("q0", "gone1", 1), ("q1", "gone2", 2), ("q1", "gone3", 1)]
    folder = make_beir(tmp_path, qrels=qrels, gz=False)
    result, run = _bm25(folder, tmp_path)
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "3 judged document(s) are not in the corpus" in err
    assert result["counts"]["qrels_documents_not_in_corpus"] == 3
    _, _, beir_qrels = GenericDataLoader(str(folder)).load(split="test")
    assert load_dataset(str(folder)).qrels == beir_qrels  # kept, as BEIR keeps them
    expected = _beir(unrounded_beir, beir_qrels, run)
    assert result["metrics"]["ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-12)
    assert result["metrics"]["recall@100"] == pytest.approx(expected["recall@100"], abs=1e-12)
    assert result["metrics"]["ndcg@10"] < 1.0  # the absent documents lower the ideal-DCG ratio
    with pytest.raises(HarnessError, match=r"test.tsv:20: document 'gone1' is not in the corpus"):
        load_dataset(str(folder), strict=True)


# --------------------------------------------------------------------------- --empty-queries


def test_empty_queries_drop_matches_beir_and_zero_keeps_them(tmp_path, unrounded_beir):
    queries = [dict(q) for q in DEFAULT_QUERIES]
    queries[0]["text"] = "zebra quokka"  # shares no word with any document: BM25 returns nothing
    folder = make_beir(tmp_path, queries=queries)
    zero, run = _bm25(folder, tmp_path)
    drop, _ = _bm25(folder, tmp_path, empty_queries="drop")
    assert run["q0"] == {}
    assert zero["counts"]["queries_without_results"] == drop["counts"]["queries_without_results"] == 1
    qrels = load_dataset(str(folder)).qrels
    # BEIR's lexical search (BM25Search) writes a query's results only inside its loop over hits, so
    # a query with no hits has no key at all, and pytrec_eval leaves it out of the mean.
    beir_bm25_run = {q: docs for q, docs in run.items() if docs}
    expected = _beir(unrounded_beir, qrels, beir_bm25_run)
    assert drop["metrics"]["ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-12)
    assert drop["metrics"]["recall@100"] == pytest.approx(expected["recall@100"], abs=1e-12)
    assert drop["n_queries"] == 5 and zero["n_queries"] == 6
    # An empty ranking that is present (BEIR's dense search starts every query at {}) scores 0: "zero".
    expected_zero = _beir(unrounded_beir, qrels, run)
    assert zero["metrics"]["ndcg@10"] == pytest.approx(expected_zero["ndcg@10"], abs=1e-12)
    assert zero["metrics"]["ndcg@10"] == pytest.approx(expected["ndcg@10"] * 5 / 6, abs=1e-12)
    assert drop["condition"] == "bm25-empty-drop" and drop["method"]["empty_queries"] == "drop"


def test_queries_judged_only_grade_zero_score_zero_as_in_beir(unrounded_beir):
    qrels = {"q1": {"d1": 1, "d2": 0}, "q2": {"d2": 0, "d3": 0}, "q3": {"d3": 2}}
    run = {"q1": {"d1": 0.9, "d2": 0.8}, "q2": {"d2": 0.9, "d1": 0.1}, "q3": {"d1": 0.5, "d3": 0.4}}
    expected = _beir(unrounded_beir, qrels, run)
    for mode in ("zero", "drop"):
        ours = evaluate(qrels, run, empty_queries=mode)
        assert ours.metrics["ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-12)
        assert ours.per_query["q2"]["ndcg@10"] == 0.0 and ours.counts["queries_without_relevant"] == 1


# --------------------------------------------------------------------------- self-matches, k + 1


class _VectorStage(Stage):
    """A first stage over fixed vectors (the pipeline's exact search), to compare with BEIR's."""

    kind = "dense"

    def __init__(self, vectors):
        self.vectors = vectors

    def provenance(self):
        return {"model": "fixed", "parameters": 0, "dims": 4, "bytes_per_doc": 16}

    def retrieve(self, dataset, k, log):
        docs = np.stack([self.vectors[d] for d in dataset.doc_ids])
        queries = np.stack([self.vectors["query:" + q] for q in dataset.query_ids])
        return exact.search(queries, docs, k, exact.tie_ranks(dataset.doc_ids))


class _BeirModel:
    def __init__(self, vectors, texts):
        self.vectors, self.texts = vectors, texts

    def encode_queries(self, queries, **_):
        return torch.tensor(np.stack([self.vectors["query:" + self.texts[q]] for q in queries]))

    def encode_corpus(self, corpus, **_):
        return torch.tensor(np.stack([self.vectors[self.texts[c["text"]]] for c in corpus]))


def test_self_match_removal_keeps_top_k_as_beir_exact_search(tmp_path, unrounded_beir):
    from beir.retrieval.search.dense import DenseRetrievalExactSearch

    rng = np.random.default_rng(3)
    doc_ids = [f"d{i:02d}" for i in range(30)] + ["q1"]  # the query's own id is also a document
    docs = [{"_id": d, "text": f"text of {d}"} for d in doc_ids]
    queries = [{"_id": "q1", "text": "query one"}, {"_id": "q2", "text": "query two"}]
    vectors = {d: rng.normal(size=4).astype(np.float32) for d in doc_ids}
    for q in ("q1", "q2"):
        vectors["query:" + q] = rng.normal(size=4).astype(np.float32)
    vectors["q1"] = vectors["query:q1"] * 10  # the self-match ranks first
    order = sorted((d for d in doc_ids if d != "q1"), key=lambda d: -float(vectors[d] @ vectors["query:q1"]))
    qrels = [("q1", order[4], 1), ("q2", "d05", 1)]  # q1's relevant document is 5th after its self-match
    folder = make_beir(tmp_path, docs=docs, queries=queries, qrels=qrels)
    dataset = load_dataset(str(folder))
    condition = Condition("bm25", RunOptions(top_k=5), VectorCache(tmp_path / "cache"))
    condition.first_stage = _VectorStage(vectors)
    result, run = condition.run(dataset)

    texts = {f"text of {d}": d for d in doc_ids} | {"query one": "q1", "query two": "q2"}
    search = DenseRetrievalExactSearch(_BeirModel(vectors, texts), batch_size=8, show_progress_bar=False)
    beir_run = search.search({d["_id"]: {"title": "", "text": d["text"]} for d in docs},
                             {q["_id"]: q["text"] for q in queries}, top_k=5, score_function="dot")
    assert {q: set(d) for q, d in run.items()} == {q: set(d) for q, d in beir_run.items()}
    assert all(len(d) == 5 for d in run.values())  # 5 kept after the self-match went, not 4
    assert result["counts"]["self_matches_removed"] == 1
    expected = _beir(unrounded_beir, dataset.qrels, beir_run)
    assert result["metrics"]["recall@100"] == pytest.approx(expected["recall@100"], abs=1e-12)
    assert result["metrics"]["ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-6)
    assert result["metrics"]["recall@100"] >= 0.5  # q1's relevant document, 6th overall, is found


# --------------------------------------------------------------------------- collections, names, splits


def _collection(tmp_path):
    root = tmp_path / "cqadupstack"
    make_beir(root, name="android")
    queries = [dict(q) for q in DEFAULT_QUERIES]
    queries[1]["text"] = "zebra quokka"
    make_beir(root, name="gaming", queries=queries)
    return root


def test_a_folder_of_beir_folders_runs_each_and_stores_their_mean(tmp_path, capsys):
    root = _collection(tmp_path)
    results = tmp_path / "results"
    code, out, err = run_cli(["run", "--model", "bm25", "--datasets", str(root), "--json", "--results-dir",
                              str(results), "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 0, err
    objects = [json.loads(line) for line in out.splitlines()]
    assert [o["dataset"] for o in objects] == ["cqadupstack/android", "cqadupstack/gaming", "cqadupstack"]
    parts, mean = objects[:2], objects[2]
    for metric in mean["metrics"]:
        assert mean["metrics"][metric] == pytest.approx(sum(p["metrics"][metric] for p in parts) / 2)
    assert mean["mean_of"] == ["cqadupstack/android", "cqadupstack/gaming"]
    assert mean["n_queries"] == 12
    assert sorted(p.name for p in (results / "bm25").iterdir()) == [
        "cqadupstack--android.json", "cqadupstack--gaming.json", "cqadupstack.json"]
    stored = json.loads((results / "bm25" / "cqadupstack.json").read_text())
    assert len(stored["per_query"]["ndcg@10"]) == 12 and "gaming/q1" in stored["per_query"]["ndcg@10"]
    from harness.results import load_results

    assert ("bm25", "cqadupstack/android") in load_results(results)  # what `harness table` reads


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "..", "/abs/x"])
def test_names_with_slashes_or_dots_stay_inside_the_results_folder(tmp_path, capsys, small_beir, name):
    results = tmp_path / "results"
    code, _, err = run_cli(["run", "--model", "bm25", "--datasets", str(small_beir), "--name", name,
                            "--results-dir", str(results), "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 0, err
    written = [p for p in tmp_path.rglob("*.json") if "cache" not in p.parts]
    assert len(written) == 1 and written[0].parent.parent == results
    assert json.loads(written[0].read_text())["condition"] == name


def test_msmarco_defaults_to_its_dev_split(tmp_path):
    folder = make_beir(tmp_path, name="msmarco", split="dev")
    assert load_dataset(str(folder)).split == "dev"
    assert load_dataset(str(make_beir(tmp_path, name="other"))).split == "test"
