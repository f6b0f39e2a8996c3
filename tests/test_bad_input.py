"""Bad input ends in ONE readable error line naming the file (and line), or in a counted skip.

Never a traceback, never a silently changed score. The policy is harness/data.py's docstring.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DEFAULT_DOCS, DEFAULT_QRELS, DEFAULT_QUERIES, REPO, harness_subprocess_env, make_beir, run_cli
from harness.cache import VectorCache
from harness.data import Dataset, load_dataset
from harness.errors import HarnessError
from harness.pipeline import Condition, RunOptions

CORPUS, QUERIES, QRELS = "corpus.jsonl.gz", "queries.jsonl.gz", "qrels/test.tsv"


def _lines(records) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)


def _doc(i: int) -> bytes:
    return json.dumps(DEFAULT_DOCS[i]).encode()


def _qrels(*rows: str, header: str = "query-id\tcorpus-id\tscore") -> str:
    return "\n".join(([header] if header is not None else []) + list(rows)) + "\n"


def load_error(folder: Path, split: str = "test") -> str:
    with pytest.raises(HarnessError) as info:
        load_dataset(str(folder), split=split, strict=True)
    message = str(info.value)
    assert "\n" not in message, f"error message spans lines: {message!r}"
    return message


def assert_names(message: str, path: Path, line: int | str | None) -> None:
    """``message`` starts with ``path:LINE:`` (line given), or names ``path`` (file-level errors)."""
    if line is None:
        assert re.match(re.escape(str(path)) + r"(\[\.gz\])?:", message), message
    else:
        assert re.match(re.escape(str(path)) + f":{line}: ", message), message


# ---------------------------------------------------------------------------------------------
# Errors, each with file and line. (name, make_beir kwargs, file, line, words in the message)

GOOD = [_doc(0), _doc(1), _doc(2)]
ERROR_CASES = [
    ("malformed_json", {"docs": _lines([_doc(0), _doc(1), b'{"_id": "x", "text": "oops"'])}, CORPUS, 3, "malformed JSON"),
    ("non_utf8_bytes", {"docs": _lines([_doc(0), b'{"_id": "x", "text": "caf\xe9 \xff"}'])}, CORPUS, 2, "UTF-8"),
    ("missing_id", {"docs": _lines([_doc(0), {"title": "t", "text": "no id"}])}, CORPUS, 2, "no '_id'"),
    ("empty_id", {"docs": _lines([_doc(0), {"_id": "", "text": "x"}])}, CORPUS, 2, "non-empty string"),
    ("float_id", {"docs": _lines([_doc(0), {"_id": 1.5, "text": "x"}])}, CORPUS, 2, "non-empty string"),
    ("id_with_space", {"docs": _lines([_doc(0), {"_id": "doc 9", "text": "x"}])}, CORPUS, 2, "whitespace"),
    ("id_with_tab", {"docs": _lines([_doc(0), {"_id": "doc\t9", "text": "x"}])}, CORPUS, 2, "whitespace"),
    ("lone_surrogate_text", {"docs": _lines([_doc(0), b'{"_id": "x", "text": "bad \\ud800 text"}'])}, CORPUS, 2, "surrogate"),
    ("lone_surrogate_id", {"docs": _lines([_doc(0), b'{"_id": "x\\udfff", "text": "t"}'])}, CORPUS, 2, "character"),
    ("json_nested_too_deep", {"docs": _lines([_doc(0), b"[" * 100_000])}, CORPUS, 2, "malformed JSON"),
    ("json_number_too_long", {"docs": _lines([_doc(0), b'{"_id": "x", "n": ' + b"9" * 5000 + b"}"])}, CORPUS, 2, "malformed JSON"),
    ("line_not_an_object", {"docs": _lines([_doc(0), b'["x", "text"]'])}, CORPUS, 2, "JSON object"),
    ("text_not_a_string", {"docs": _lines([_doc(0), {"_id": "x", "text": 5}])}, CORPUS, 2, "not a string"),
    ("duplicate_doc_ids", {"docs": _lines([_doc(0), _doc(1), _doc(0)])}, CORPUS, 3, "duplicate document id 'doc0' (first on line 1)"),
    ("duplicate_query_ids", {"queries": _lines(DEFAULT_QUERIES[:3] + [DEFAULT_QUERIES[1]])}, QUERIES, 4, "duplicate query id 'q1'"),
    ("queries_malformed_json", {"queries": _lines(DEFAULT_QUERIES[:2]) + b"{oops\n"}, QUERIES, 3, "malformed JSON"),
    ("qrels_unknown_query", {"qrels": _qrels("q0\tdoc0\t1", "q-missing\tdoc1\t1")}, QRELS, 3, "query 'q-missing' is not in"),
    ("qrels_unknown_doc", {"qrels": _qrels("q0\tdoc0\t1", "q0\tdoc999\t1")}, QRELS, 3, "document 'doc999' is not in the corpus"),
    ("qrels_non_integer_score", {"qrels": _qrels("q0\tdoc0\t1", "q0\tdoc1\t0.5")}, QRELS, 3, "not an integer"),
    ("qrels_text_score", {"qrels": _qrels("q0\tdoc0\trelevant")}, QRELS, 2, "not an integer"),
    ("qrels_underscore_score", {"qrels": _qrels("q0\tdoc0\t1_0")}, QRELS, 2, "not an integer"),
    ("qrels_score_beyond_32_bits", {"qrels": _qrels("q0\tdoc0\t1", "q0\tdoc1\t4294967295")}, QRELS, 3, "out of range"),
    ("qrels_arabic_digit_score", {"qrels": _qrels("q0\tdoc0\t\u0661")}, QRELS, 2, "not an integer"),
    ("qrels_no_header", {"qrels": _qrels("q0\tdoc0\t1", "q0\tdoc1\t1", header=None)}, QRELS, 1, "expected the header"),
    ("qrels_space_separated", {"qrels": "query-id corpus-id score\nq0 doc0 1\n"}, QRELS, 1, "expected the header"),
    ("qrels_too_many_columns", {"qrels": _qrels("q0\tdoc0\t1", "q0\tQ0\tdoc1\t1")}, QRELS, 3, "expected 3 tab-separated columns, got 4"),
    ("qrels_too_few_columns", {"qrels": _qrels("q0\tdoc0\t1", "", "q0\tdoc1")}, QRELS, 4, "got 2"),
    ("qrels_judged_twice", {"qrels": _qrels("q0\tdoc0\t1", "q0\tdoc1\t1", "q0\tdoc0\t2")}, QRELS, 4, "judged twice (first on line 2)"),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error_names_file_and_line(tmp_path, case):
    _, kwargs, file, line, words = case
    folder = make_beir(tmp_path, **kwargs)
    message = load_error(folder)
    assert_names(message, folder / file, line)
    assert words in message


def test_truncated_gzip(tmp_path):
    # Many lines, so the cut falls well inside the data; the line is where the data breaks off.
    docs = [{"_id": f"d{i}", "text": f"document number {i} " + "word " * (i % 50)} for i in range(3000)]
    folder = make_beir(tmp_path, docs=docs, qrels=[("q0", "d1", 1)])
    path = folder / CORPUS
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = load_error(folder)
    line = int(re.match(re.escape(str(path)) + r":(\d+): ", message).group(1))
    assert 1 < line < 3000 and "truncated gzip" in message
    # The lines before the break are whole and intact: the reported line is the first damaged one.
    readable = gzip.GzipFile(fileobj=io.BytesIO(data[: len(data) // 2]))
    partial = b""
    try:
        while chunk := readable.read(4096):
            partial += chunk
    except EOFError:
        pass
    assert partial.count(b"\n") + 1 == line


def test_files_are_streamed_and_hashed_as_their_uncompressed_bytes(tmp_path):
    """A gzipped and a plain copy of the same bytes (BOM, CRLF, blank lines, no final newline) load
    to the same dataset, and each file's recorded sha256 is that of its uncompressed content."""
    import hashlib

    corpus = b"\xef\xbb\xbf" + _doc(0) + b"\r\n\n" + _doc(1) + b"\n" + _doc(2)
    loaded = []
    for gz in (True, False):
        folder = make_beir(tmp_path / str(gz), docs=corpus, qrels=[("q0", "doc1", 1)], gz=gz)
        loaded.append(load_dataset(str(folder), strict=True))
    zipped, plain = loaded
    assert zipped.doc_ids == plain.doc_ids == [DEFAULT_DOCS[i]["_id"] for i in range(3)]
    assert (zipped.titles, zipped.texts) == (plain.titles, plain.texts)
    assert zipped.files["corpus.jsonl.gz"] == plain.files["corpus.jsonl"] == hashlib.sha256(corpus).hexdigest()


def test_not_gzip_at_all(tmp_path):
    folder = make_beir(tmp_path)
    (folder / QUERIES).write_bytes(b"this is plain text, not gzip\n")
    assert_names(load_error(folder), folder / QUERIES, 1)


# File-level errors: no line to name.
def test_split_that_does_not_exist(tmp_path):
    folder = make_beir(tmp_path)
    message = load_error(folder, split="dev")
    assert_names(message, folder / "qrels" / "dev.tsv", None)
    assert "split 'dev' not found (available: test)" in message


@pytest.mark.parametrize("docs", [b"", b"\n\n  \n"], ids=["zero_bytes", "blank_lines"])
def test_empty_corpus(tmp_path, docs):
    folder = make_beir(tmp_path, docs=docs)
    message = load_error(folder)
    assert_names(message, folder / CORPUS, None)
    assert "corpus is empty" in message


def test_corpus_of_only_empty_documents(tmp_path):
    folder = make_beir(tmp_path, docs=[{"_id": "doc0", "text": ""}, {"_id": "doc1", "title": " ", "text": None}],
                       qrels=[("q0", "doc0", 1)])
    message = load_error(folder)
    assert_names(message, folder / CORPUS, None)
    assert "every document is empty" in message


@pytest.mark.parametrize("qrels", ["", "query-id\tcorpus-id\tscore\n"], ids=["zero_bytes", "header_only"])
def test_qrels_without_judgements(tmp_path, qrels):
    folder = make_beir(tmp_path, qrels=qrels)
    assert_names(load_error(folder), folder / QRELS, None)


def test_missing_corpus_file(tmp_path):
    folder = make_beir(tmp_path)
    (folder / CORPUS).unlink()
    message = load_error(folder)
    assert message.startswith(f"{folder / 'corpus.jsonl'}[.gz]: file not found")


# ---------------------------------------------------------------------------------------------
# Tolerated input: read exactly like the clean file.


def test_tolerated_variants_load_like_the_clean_dataset(tmp_path):
    clean = load_dataset(str(make_beir(tmp_path / "a")))
    docs = [dict(d) for d in DEFAULT_DOCS]
    docs[0] = {"_id": "doc0", "title": docs[0]["title"], "text": docs[0]["text"], "metadata": {"x": [1, 2]}}
    queries = _lines(DEFAULT_QUERIES).replace(b"\n", b"\r\n\n")  # CRLF and blank lines
    qrels = "\ufeffquery-id\tcorpus-id\tscore\r\n" + "".join(f"{q}\t{d}\t{g}\r\n" for q, d, g in DEFAULT_QRELS)
    odd = load_dataset(str(make_beir(tmp_path / "b", docs=b"\xef\xbb\xbf" + _lines(docs), queries=queries, qrels=qrels, gz=False)))
    for attr in ("doc_ids", "titles", "texts", "query_ids", "queries", "qrels", "counts"):
        assert getattr(odd, attr) == getattr(clean, attr), attr


def test_integer_ids_missing_title_and_null_text(tmp_path):
    folder = make_beir(tmp_path, docs=[{"_id": 7, "text": "seven"}, {"_id": "8", "title": "eight", "text": None}],
                       queries=[{"_id": 1, "text": "seven"}], qrels=[("1", "7", 1)])
    ds = load_dataset(str(folder))
    assert ds.doc_ids == ["7", "8"] and ds.titles == ["", "eight"] and ds.texts == ["seven", ""]
    assert ds.query_ids == ["1"] and ds.qrels == {"1": {"7": 1}}


def test_dataset_named_by_folder_even_when_given_as_dot(tmp_path, monkeypatch):
    folder = make_beir(tmp_path, name="mydata")
    monkeypatch.chdir(folder)
    assert load_dataset(".").name == "mydata"
    assert load_dataset(str(folder) + "/").name == "mydata"


# ---------------------------------------------------------------------------------------------
# Counted skips: they show in the result's counts, and change nothing else.


def _bm25(dataset: Dataset) -> dict:
    result, _ = Condition("bm25", RunOptions(), VectorCache(enabled=False)).run(dataset)
    return result


def test_empty_query_text_is_counted_and_scores_zero(tmp_path):
    baseline = _bm25(load_dataset(str(make_beir(tmp_path / "a"))))
    queries = [dict(q) for q in DEFAULT_QUERIES]
    queries[2]["text"] = "   "
    result = _bm25(load_dataset(str(make_beir(tmp_path / "b", queries=queries))))
    assert result["counts"]["queries_empty_text"] == 1
    assert result["counts"]["queries_without_results"] == 1
    assert result["n_queries"] == 6  # still evaluated ...
    per_query = result["per_query"]["ndcg@10"]
    assert per_query["q2"] == 0.0  # ... as 0
    expected = dict(baseline["per_query"]["ndcg@10"], q2=0.0)
    assert per_query == expected  # and no other query moved
    assert result["metrics"]["ndcg@10"] == pytest.approx(sum(expected.values()) / 6, abs=1e-15)


def test_empty_document_text_is_counted_and_kept(tmp_path):
    docs = [dict(d) for d in DEFAULT_DOCS]
    docs[4] = {"_id": "doc4", "title": "", "text": "  "}
    docs[9] = {"_id": "doc9", "title": "only a title", "text": ""}  # not empty: has a title
    ds = load_dataset(str(make_beir(tmp_path, docs=docs)))
    assert ds.counts["documents_empty_text"] == 1
    assert len(ds.doc_ids) == 30 and ds.doc_texts()[4] == "" and ds.doc_texts()[9] == "only a title"
    result = _bm25(ds)
    assert result["counts"]["documents_empty_text"] == 1
    assert result["dataset_info"]["n_documents"] == 30


def test_counts_are_in_every_saved_result(tmp_path, capsys):
    folder = make_beir(tmp_path, queries=[*DEFAULT_QUERIES[:5], {"_id": "q5", "text": ""}])
    code, out, _ = run_cli(["run", "--model", "bm25", "--datasets", str(folder), "--results-dir",
                            str(tmp_path / "r"), "--no-cache", "--json"], capsys)
    assert code == 0
    printed = json.loads(out.strip().splitlines()[-1])
    saved = json.loads((tmp_path / "r" / "bm25" / "tiny.json").read_text())
    for result in (printed, saved):
        assert result["counts"]["queries_empty_text"] == 1
        assert result["counts"]["documents_empty_text"] == 0


# ---------------------------------------------------------------------------------------------
# Through the CLI: exit status 2 and one `error:` line, no traceback.


def assert_one_error_line(code: int, err: str) -> str:
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _cli(tmp_path, capsys, *extra):
    return run_cli(["run", *extra, "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache")],
                   capsys)


@pytest.mark.parametrize("case", [c for c in ERROR_CASES if c[0] in
                                  ("malformed_json", "non_utf8_bytes", "duplicate_doc_ids", "qrels_unknown_doc", "qrels_no_header")],
                         ids=lambda c: c[0])
def test_cli_bad_dataset_is_one_error_line(tmp_path, capsys, case):
    _, kwargs, file, line, _ = case
    folder = make_beir(tmp_path, **kwargs)
    code, out, err = _cli(tmp_path, capsys, "--model", "bm25", "--datasets", str(folder), "--strict")
    message = assert_one_error_line(code, err)
    assert_names(message.removeprefix("error: "), folder / file, line)
    assert not (tmp_path / "results").exists()  # nothing written


def test_cli_unknown_model_name(tmp_path, capsys, small_beir):
    code, _, err = _cli(tmp_path, capsys, "--model", "no-such-model", "--datasets", str(small_beir))
    assert "unknown model 'no-such-model'" in assert_one_error_line(code, err)


def test_cli_unknown_dataset_name(tmp_path, capsys):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    code, _, err = _cli(tmp_path, capsys, "--model", "bm25", "--datasets", "no-such-dataset", "--data-dir", str(data_dir))
    line = assert_one_error_line(code, err)
    assert line.startswith("error: not a BEIR dataset: no-such-dataset; known: arguana, climate-fever,")
    assert f"no folder 'no-such-dataset' in {data_dir}" in line
    assert list(data_dir.iterdir()) == []  # nothing downloaded, nothing left behind


def test_cli_dataset_folder_not_found(tmp_path, capsys):
    code, _, err = _cli(tmp_path, capsys, "--model", "bm25", "--datasets", str(tmp_path / "nope"))
    assert "dataset folder not found" in assert_one_error_line(code, err)


def test_cli_split_that_does_not_exist(tmp_path, capsys, small_beir):
    code, _, err = _cli(tmp_path, capsys, "--model", "bm25", "--datasets", str(small_beir), "--split", "dev")
    assert "split 'dev' not found" in assert_one_error_line(code, err)


def test_cli_model_folder_with_only_config(tmp_path, capsys, small_beir):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    code, _, err = _cli(tmp_path, capsys, "--model", str(model), "--datasets", str(small_beir))
    assert f"{model}: no model weights found" in assert_one_error_line(code, err)


def _tiny_bert(folder: Path) -> Path:
    """A real (random, 8-dim) BERT saved ONLY as pickle weights, with a character vocabulary."""
    import torch
    from transformers import BertConfig, BertModel

    folder.mkdir()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=64)
    config.save_pretrained(folder)
    torch.save(BertModel(config).state_dict(), folder / "pytorch_model.bin")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True}))
    return folder


def test_cli_pickle_weights_refused_unless_allowed(tmp_path, capsys, small_beir):
    model = _tiny_bert(tmp_path / "pickled")
    code, _, err = _cli(tmp_path, capsys, "--model", str(model), "--datasets", str(small_beir))
    line = assert_one_error_line(code, err)
    assert f"{model / 'pytorch_model.bin'}: weights are a pickle file" in line and "--allow-pickle" in line
    assert not (tmp_path / "results").exists()

    code, out, err = _cli(tmp_path, capsys, "--model", str(model), "--datasets", str(small_beir), "--allow-pickle", "--json")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["n_queries"] == 6


def test_cli_model_folder_without_tokenizer_files(tmp_path, capsys, small_beir):
    import torch
    from safetensors.torch import save_file

    model = _tiny_bert(tmp_path / "no-tokenizer")
    save_file(torch.load(model / "pytorch_model.bin"), str(model / "model.safetensors"))  # safe weights ...
    for name in ("pytorch_model.bin", "vocab.txt", "tokenizer_config.json"):  # ... and no tokenizer files
        (model / name).unlink()
    code, _, err = _cli(tmp_path, capsys, "--model", str(model), "--datasets", str(small_beir))
    assert "tokenizer" in assert_one_error_line(code, err)


def test_cli_corrupt_pickle_with_allow_pickle_is_one_line(tmp_path, capsys, small_beir):
    model = tmp_path / "broken"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert", "hidden_size": 8, "num_attention_heads": 2}')
    (model / "pytorch_model.bin").write_bytes(b"not a pickle")  # torch.load: "Unsupported operand 110"
    code, _, err = _cli(tmp_path, capsys, "--model", str(model), "--datasets", str(small_beir), "--allow-pickle")
    assert "cannot load model" in assert_one_error_line(code, err)


def test_cli_corpus_of_only_stopwords(tmp_path, capsys):
    folder = make_beir(tmp_path, docs=[{"_id": "a", "text": "the of"}, {"_id": "b", "text": "and a"}],
                       queries=[{"_id": "q", "text": "the"}], qrels=[("q", "a", 1)])
    code, _, err = _cli(tmp_path, capsys, "--model", "bm25", "--datasets", str(folder))
    assert code in (0, 2) and "Traceback" not in err


def test_real_subprocess_prints_one_error_line(tmp_path):
    folder = make_beir(tmp_path, docs=_lines([_doc(0), b"{not json"]))
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--model", "bm25", "--datasets", str(folder),
         "--results-dir", str(tmp_path / "results")],
        cwd=REPO, env=harness_subprocess_env(tmp_path), capture_output=True, text=True, timeout=300,
    )
    message = assert_one_error_line(proc.returncode, proc.stderr)
    assert_names(message.removeprefix("error: "), folder / CORPUS, 2)
    assert proc.stdout == ""


# ---------------------------------------------------------------------------------------------
# Fuzzing: whatever the bytes, the loader returns a consistent Dataset or raises HarnessError.


def _check_consistent(ds: Dataset) -> None:
    assert len(set(ds.doc_ids)) == len(ds.doc_ids) == len(ds.titles) == len(ds.texts) > 0
    assert len(set(ds.query_ids)) == len(ds.query_ids) == len(ds.queries)
    assert set(ds.query_ids) == set(ds.qrels)
    known = set(ds.doc_ids)
    assert all(set(judged) <= known and all(type(g) is int for g in judged.values()) for judged in ds.qrels.values())
    assert ds.counts["queries_empty_text"] == sum(not q.strip() for q in ds.queries)
    assert ds.counts["documents_empty_text"] == sum(not t.strip() for t in ds.doc_texts())
    assert ds.counts["documents_empty_text"] < len(ds.doc_ids)
    for value in (*ds.doc_ids, *ds.query_ids, *ds.texts, *ds.titles, *ds.queries):
        value.encode("utf-8")  # every string can be written to a result/run file
    assert all(not any(c.isspace() for c in i) for i in (*ds.doc_ids, *ds.query_ids))


def _load_or_harness_error(folder: Path) -> None:
    try:
        ds = load_dataset(str(folder))
    except HarnessError as exc:
        assert "\n" not in str(exc) and "\r" not in str(exc) and str(exc).startswith(str(folder))
        return
    _check_consistent(ds)


FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(target=st.sampled_from(["docs", "queries", "qrels"]), content=st.binary(max_size=400), gz=st.booleans())
def test_fuzz_random_bytes(tmp_path_factory, target, content, gz):
    folder = make_beir(tmp_path_factory.mktemp("fuzz"), gz=gz, **{target: content})
    _load_or_harness_error(folder)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=2000), flip=st.integers(min_value=0, max_value=2000),
       byte=st.integers(min_value=0, max_value=255), target=st.sampled_from([CORPUS, QUERIES]))
def test_fuzz_damaged_gzip(tmp_path_factory, cut, flip, byte, target):
    folder = make_beir(tmp_path_factory.mktemp("fuzz"))
    path = folder / target
    data = bytearray(path.read_bytes())
    if flip < len(data):
        data[flip] = byte
    path.write_bytes(bytes(data[: max(cut, 1)] if cut < len(data) else data))
    _load_or_harness_error(folder)


_IDS = st.sampled_from(["doc0", "doc1", "doc2", "q0", "q1", "0", "1"])
_JSON_SCALAR = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
_JSON = st.recursive(_JSON_SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                     max_leaves=8)
_RECORD = st.fixed_dictionaries(
    {},
    optional={
        "_id": _IDS | _JSON_SCALAR,
        "title": st.text(max_size=20) | _JSON_SCALAR,
        "text": st.sampled_from(["cell protein", "", "  ", "the"]) | st.text(max_size=20) | _JSON,
        "metadata": _JSON,
    },
)
_JSON_LINE = _RECORD.map(lambda r: json.dumps(r)) | _JSON.map(json.dumps) | st.text(max_size=30)
_TSV_CELL = _IDS | st.sampled_from(["0", "1", "2", "-1", " 1", "1.0", "", "x"]) | st.text(max_size=6)
_TSV_ROW = st.lists(_TSV_CELL, min_size=0, max_size=4).map("\t".join)


@FUZZ
@given(docs=st.lists(_JSON_LINE, max_size=6), queries=st.lists(_JSON_LINE, max_size=4),
       rows=st.lists(_TSV_ROW, max_size=5), header=st.booleans())
def test_fuzz_json_and_tsv_lines(tmp_path_factory, docs, queries, rows, header):
    qrels = ("query-id\tcorpus-id\tscore\n" if header else "") + "\n".join(rows)
    folder = make_beir(tmp_path_factory.mktemp("fuzz"), docs="\n".join(docs), queries="\n".join(queries),
                       qrels=qrels, gz=False)
    _load_or_harness_error(folder)


@FUZZ
@given(n_docs=st.integers(1, 5), texts=st.lists(st.sampled_from(["cell", "protein cell", "", "diet", "gene"]), min_size=5, max_size=5),
       query_text=st.sampled_from(["cell", "", "gene diet"]), grades=st.lists(st.integers(-1, 3), min_size=1, max_size=5))
def test_fuzz_valid_datasets_load(tmp_path_factory, n_docs, texts, query_text, grades):
    """Structurally valid input always loads, with the counts matching the content."""
    texts = texts[:n_docs]
    if not any(t.strip() for t in texts):
        texts[0] = "cell"
    docs = [{"_id": f"d{i}", "text": t} for i, t in enumerate(texts)]
    qrels = [("q", f"d{i}", g) for i, g in enumerate(grades[:n_docs])]
    folder = make_beir(tmp_path_factory.mktemp("fuzz"), docs=docs, queries=[{"_id": "q", "text": query_text}], qrels=qrels)
    ds = load_dataset(str(folder))
    _check_consistent(ds)
    assert ds.counts["queries_empty_text"] == (query_text == "")
