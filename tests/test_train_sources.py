"""Training sources (harness.train.sources): the general-text layouts, shards and the
contamination guards of the zero-shot recipe."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.train import data as tdata
from harness.train.sources import Source, excluded_queries, load_source, shard_ranges, source_files


def _write_jsonl(path: Path, rows, compress: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def make_pairs(root: Path, n_docs: int = 10) -> Path:
    folder = root / "general"
    _write_jsonl(folder / "corpus.jsonl.gz",
                 [{"_id": f"wiki-{i}", "title": f"Article {i // 2}", "text": f"Paragraph {i} of article. It is long."}
                  for i in range(n_docs)])
    _write_jsonl(folder / "pairs.jsonl.gz",
                 [{"query": f"Article {i // 2} section {i}", "positive": f"wiki-{i}"} for i in range(n_docs)]
                 + [{"query": "What Is Vitamin D?", "positive": "wiki-0"}])
    return folder


def test_pairs_source_is_cut_into_shards_with_their_own_queries(tmp_path):
    folder = make_pairs(tmp_path)
    src = Source.from_config({"path": str(folder), "shard_docs": 4}, tmp_path)
    assert (src.format, src.name) == ("pairs", "general")
    shards, dropped = load_source(src, excluded=set())
    assert dropped == 0
    assert [s.name for s in shards] == ["general-00", "general-01", "general-02"]
    assert [len(s.doc_ids) for s in shards] == [4, 4, 2]
    first = shards[0]
    assert first.doc_ids == ["wiki-0", "wiki-1", "wiki-2", "wiki-3"]
    assert first.query_texts == ["Article 0 section 0", "Article 0 section 1", "Article 1 section 2",
                                 "Article 1 section 3", "What Is Vitamin D?"]
    # every query's judged positive lies in its own shard
    for s in shards:
        for q in s.query_ids:
            assert set(s.qrels[q]) <= set(s.doc_ids)
    assert source_files(src) == [folder / "corpus.jsonl.gz", folder / "pairs.jsonl.gz"]


def test_queries_equal_to_an_evaluation_query_are_dropped(tmp_path):
    folder = make_pairs(tmp_path)
    beir = tmp_path / "beir" / "toy"
    _write_jsonl(beir / "queries.jsonl", [{"_id": "1", "text": "what is vitamin  D"}], compress=False)
    excluded = excluded_queries([beir])
    assert excluded == {"what is vitamin d"}
    shards, dropped = load_source(Source.from_config({"path": str(folder)}, tmp_path), excluded)
    assert dropped == 1
    assert all("Vitamin" not in t for s in shards for t in s.query_texts)


def test_max_docs_keeps_whole_shards_spread_over_the_collection():
    assert shard_ranges(100, 10, 0) == [(i, i + 10) for i in range(0, 100, 10)]
    assert shard_ranges(100, 10, 30) == [(0, 10), (30, 40), (60, 70)]
    assert shard_ranges(95, 10, 1000) == [(i, min(i + 10, 95)) for i in range(0, 95, 10)]


@pytest.mark.parametrize("row", [["a query", "its positive text", "a negative"],
                                 {"query": "a query", "positive": "its positive text"}])
def test_sentence_transformers_layout_both_line_shapes(tmp_path, row):
    path = _write_jsonl(tmp_path / "pairs-st.jsonl.gz", [row, row])
    src = Source.from_config({"path": str(path), "shard_docs": 10}, tmp_path)
    assert (src.format, src.name) == ("st", "pairs-st")
    (shard,), _ = load_source(src, set())
    assert shard.doc_texts == ["its positive text"]  # positives deduplicated by text
    assert shard.query_texts == ["a query", "a query"]
    assert all(rel == {shard.doc_ids[0]: 1} for rel in shard.qrels.values())


def test_bad_lines_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('["q", "p"]\n{"query": 3}\n', encoding="utf-8")
    with pytest.raises(HarnessError, match=r"bad\.jsonl:2: expected \[query, positive"):
        load_source(Source.from_config({"path": str(path)}, tmp_path), set())
    folder = make_pairs(tmp_path)
    _write_jsonl(folder / "pairs.jsonl.gz", [{"query": "x", "positive": "nope"}])
    with pytest.raises(HarnessError, match=r"pairs\.jsonl\.gz:1: positive 'nope' is not in the corpus"):
        load_source(Source.from_config({"path": str(folder)}, tmp_path), set())


def test_beir_source_reads_a_training_split_never_test(tmp_path):
    from tests.test_train import make_beir

    folder = make_beir(tmp_path)
    with pytest.raises(HarnessError, match="test split"):
        Source.from_config({"path": str(folder), "split": "test"}, tmp_path)
    (shard,), _ = load_source(Source.from_config({"path": str(folder), "shard_docs": 100}, tmp_path), set())
    assert not any("SECRET" in t for t in shard.query_texts)
    assert len(shard.query_texts) == 5  # q0..q4; q5 is also a test query


def test_train_query_with_a_test_query_text_is_dropped(tmp_path):
    """Same words under another id is a leak too: the adapted recipe drops it."""
    from tests.test_train import make_beir

    folder = make_beir(tmp_path)
    rows = [json.loads(line) for line in gzip.open(folder / "queries.jsonl.gz", "rt")]
    rows[0]["text"] = "secret test question,  " + rows[6]["text"].split()[-1]  # q0 == t0 once normalised
    _write_jsonl(folder / "queries.jsonl.gz", rows)
    ids, _, qrels, _ = tdata.load_split_queries(folder)
    assert "q0" not in ids and "q0" not in qrels
    assert {"q1", "q2", "q3", "q4"} <= set(ids)
