"""Checks on the real BEIR data in ../shared/data/beir (skipped when it is absent)."""

import pytest
import torch

from harness.data import default_data_dir, load_dataset

pytestmark = pytest.mark.skipif(
    not (default_data_dir() / "scifact" / "corpus.jsonl.gz").is_file(), reason="real BEIR data not present"
)


def _run(model, dataset, tmp_path, **options):
    from harness.cache import VectorCache
    from harness.pipeline import Condition, RunOptions

    result, _ = Condition(model, RunOptions(**options), VectorCache(tmp_path / "cache")).run(dataset)
    return result


def test_real_datasets_load_with_the_published_counts():
    scifact, nfcorpus = load_dataset("scifact"), load_dataset("nfcorpus")
    assert (len(scifact.doc_ids), len(scifact.query_ids)) == (5183, 300)
    assert (len(nfcorpus.doc_ids), len(nfcorpus.query_ids)) == (3633, 323)
    assert scifact.files["corpus.jsonl.gz"] == "dec31c8182f3d744c7d2c09423756fd1d17cbef75808db13ba01cc0aab4d1ac6"
    assert sum(grade == 2 for judged in nfcorpus.qrels.values() for grade in judged.values()) == 576


@pytest.mark.parametrize("name, low, high", [("scifact", 0.66, 0.69), ("nfcorpus", 0.31, 0.33)])
def test_bm25_is_in_the_published_range(name, low, high, tmp_path):
    result = _run("bm25", load_dataset(name), tmp_path)
    assert low <= result["metrics"]["ndcg@10"] <= high
    assert result["n_queries"] == {"scifact": 300, "nfcorpus": 323}[name]


def test_nfcorpus_bm25_empty_queries_zero_and_drop(tmp_path):
    """15 NFCorpus test queries retrieve nothing with BM25: BEIR's pipeline leaves them out (drop)."""
    nfcorpus = load_dataset("nfcorpus")
    zero = _run("bm25", nfcorpus, tmp_path)
    drop = _run("bm25", nfcorpus, tmp_path, empty_queries="drop")
    assert zero["counts"]["queries_without_results"] == drop["counts"]["queries_without_results"] == 15
    assert (round(zero["metrics"]["ndcg@10"], 4), zero["n_queries"]) == (0.3180, 323)
    assert (round(drop["metrics"]["ndcg@10"], 4), drop["n_queries"]) == (0.3335, 308)


def test_txtai_index_gives_the_same_ndcg_on_scifact(tmp_path):
    from harness.models import berthash

    torch.manual_seed(0)
    model = berthash.BertHashModel(berthash.pico_config(), add_pooling_layer=False)
    folder = berthash.save_sentence_transformer(model, berthash.tokenizer_dir(), tmp_path / "pico", max_seq_length=128)
    scifact = load_dataset("scifact")
    built_in = _run(str(folder), scifact, tmp_path)
    through_txtai = _run(str(folder), scifact, tmp_path, index="txtai")
    assert through_txtai["cache"]["documents_cached_blocks"] == "6/6"  # same vectors, only the index differs
    assert round(through_txtai["metrics"]["ndcg@10"], 4) == round(built_in["metrics"]["ndcg@10"], 4)
    assert through_txtai["metrics"]["recall@1000"] == pytest.approx(built_in["metrics"]["recall@1000"], abs=1e-4)
