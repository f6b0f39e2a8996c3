"""``--profile txtai-benchmark``: txtai's examples/benchmarks.py conventions, checked against direct
calls of txtai (Embeddings with the same config, ScoringFactory for BM25) on a small fixture, and the
``beir`` default left as it was.

The fixture has 120 documents (5% of them, 6, train the scalar quantiser as in the benchmark's
config), a document without a title, an empty document (not indexed), a document whose id equals a
query id and whose text is that query (a self-match to filter), and a query outside the test split
(searched, not evaluated).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from conftest import REPO, harness_subprocess_env, make_beir, run_cli

WORDS = ("photosynthesis chlorophyll leaf sunlight volcano magma eruption lava vaccine antibody immune virus glacier"
         " ice melting arctic bitcoin blockchain ledger mining sonata piano composer melody").split()


def _docs() -> list[dict]:
    rng = np.random.default_rng(3)
    docs = [{"_id": f"d{i}", "title": f"{WORDS[i % len(WORDS)]} notes" if i % 7 else "",
             "text": " ".join(rng.choice(WORDS, size=8))} for i in range(117)]
    docs.append({"_id": "empty", "title": "", "text": ""})
    docs.append({"_id": "q1", "title": "", "text": "magma and lava in a volcano eruption"})
    docs.append({"_id": "d-last", "title": "Glacier", "text": "arctic ice melting"})
    return docs


QUERIES = [
    {"_id": "q1", "text": "magma and lava in a volcano eruption"},
    {"_id": "q2", "text": "leaf chlorophyll"},
    {"_id": "q3", "text": "piano sonata composer"},
    {"_id": "q-train", "text": "bitcoin ledger"},
]
QRELS = [("q1", "d1", 1), ("q1", "q1", 2), ("q2", "d2", 1), ("q2", "d9", 0), ("q3", "d5", 2), ("q3", "d-last", 1)]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    from harness.models import berthash

    torch.manual_seed(0)
    model = berthash.BertHashModel(berthash.pico_config(), add_pooling_layer=False)
    folder = tmp_path_factory.mktemp("txtai-profile") / "pico-random"
    berthash.save_sentence_transformer(model, berthash.tokenizer_dir(), folder, max_seq_length=64)
    return str(folder)


@pytest.fixture
def dataset_dir(tmp_path):
    return make_beir(tmp_path, docs=_docs(), queries=QUERIES, qrels=QRELS)


def _benchmark_rows(folder) -> list[tuple]:
    """benchmarks.py's ``rows``, written from its description, read straight from the file."""
    import gzip

    out = []
    for line in gzip.decompress((folder / "corpus.jsonl.gz").read_bytes()).decode().splitlines():
        row = json.loads(line)
        text = f'{row["title"]}. {row["text"]}' if row.get("title") else row["text"]
        if text:
            out.append((row["_id"], text, None))
    return out


def _direct_run(search, limit=10) -> dict:
    """benchmarks.py's query loop: every query, batches of 256, limit + 1, own id dropped, cut."""
    ids, texts = [q["_id"] for q in QUERIES], [q["text"] for q in QUERIES]
    results = {}
    for start in range(0, len(texts), 256):
        for i, found in enumerate(search(texts[start : start + 256], limit + 1)):
            uid = ids[start + i]
            results[uid] = dict([(d, s) for d, s in found if d != uid][:limit])
    return results


def _profile(model, dataset_dir, tmp_path, **kwargs):
    from harness.cache import VectorCache
    from harness.data import load_dataset
    from harness.pipeline import RunOptions
    from harness.txtai_benchmark import TxtaiBenchmarkCondition

    condition = TxtaiBenchmarkCondition(model, RunOptions(), VectorCache(tmp_path / "cache"), **kwargs)
    return condition.run(load_dataset(str(dataset_dir)))


def test_rows_join_title_and_skip_empty(dataset_dir):
    from harness.data import load_dataset
    from harness.txtai_benchmark import rows

    got = rows(load_dataset(str(dataset_dir)))
    assert got == _benchmark_rows(dataset_dir)
    assert ("d-last", "Glacier. arctic ice melting", None) in got
    assert ("d0", _docs()[0]["text"], None) in got  # no title: the text alone
    assert "empty" not in {doc for doc, _, _ in got} and len(got) == 119


def test_dense_matches_direct_txtai_embeddings(tiny_model, dataset_dir, tmp_path):
    from txtai import Embeddings

    from harness.evaluate import ranking
    from harness.txtai_benchmark import EMBEDDINGS, evaluate

    result, run = _profile(tiny_model, dataset_dir, tmp_path)
    embeddings = Embeddings({**copy.deepcopy(EMBEDDINGS), "path": tiny_model})
    embeddings.index(_benchmark_rows(dataset_dir))
    direct = _direct_run(embeddings.batchsearch)
    assert run == direct  # same ids, same scores, every query (the non-test one too)
    assert len(run["q1"]) == 10 and "q1" not in run["q1"]
    assert result["counts"]["self_matches_removed"] >= 1  # q1 found the document with its own id
    assert result["counts"]["queries_searched"] == 4 and result["n_queries"] == 3
    assert result["counts"]["documents_indexed"] == 119
    qrels = {}
    for q, d, g in QRELS:
        qrels.setdefault(q, {})[d] = g
    assert result["metrics"] == evaluate(qrels, direct)[0]
    assert result["metrics"]["ndcg@10"] == round(result["metrics"]["ndcg@10"], 5)
    assert result["profile"] == "txtai-benchmark" and result["method"]["profile"] == "txtai-benchmark"
    index = result["method"]["index"]
    assert index["components"] == "IDMap,SQ8" and index["approximate"] and result["method"]["approximate"]
    assert ranking(run["q3"])  # a usable run for --save-run


def test_encode_cache_gives_the_same_run_without_encoding(tiny_model, dataset_dir, tmp_path):
    first, run = _profile(tiny_model, dataset_dir, tmp_path)
    again, rerun = _profile(tiny_model, dataset_dir, tmp_path)
    assert rerun == run and again["metrics"] == first["metrics"]
    assert first["cache"]["encode_calls_cached"] == {"calls": 2, "cached": 0}
    assert again["cache"]["encode_calls_cached"] == {"calls": 2, "cached": 2}


def test_bm25_matches_direct_txtai_scoring(dataset_dir, tmp_path):
    from txtai.scoring import ScoringFactory

    from harness.txtai_benchmark import SCORING

    result, run = _profile("bm25", dataset_dir, tmp_path)
    scoring = ScoringFactory.create(dict(SCORING))
    scoring.index(_benchmark_rows(dataset_dir))
    assert run == _direct_run(scoring.batchsearch)
    assert result["method"]["approximate"] is False and result["condition"] == "bm25-txtai-benchmark"


def test_config_file_replaces_the_defaults(tiny_model, dataset_dir, tmp_path):
    config = tmp_path / "flat.yml"
    config.write_text("embeddings:\n  batch: 64\n  encodebatch: 16\n  faiss:\n    quantize: false\n")
    result, _ = _profile(tiny_model, dataset_dir, tmp_path, config_file=config)
    assert result["condition"] == "pico-random-txtai-benchmark-flat"
    assert result["method"]["index"]["components"] == "IDMap,Flat" and not result["method"]["approximate"]


def test_seeded_faiss_default_seeds_are_txtais_index():
    from txtai.ann import ANNFactory

    from harness.txtai_benchmark import SEEDED_FAISS

    rng = np.random.default_rng(0)
    data = rng.standard_normal((6000, 16)).astype(np.float32)  # > 5,000 rows: txtai builds an IVF index
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    queries = data[:25] + 0.1 * rng.standard_normal((25, 16)).astype(np.float32)
    settings = {"quantize": True, "sample": 0.05}

    def build(backend=None, **seeds):
        config = {"dimensions": 16, "faiss": {**settings, **seeds}}
        if backend:
            config["backend"] = backend
        ann = ANNFactory.create(config)
        ann.index(data.copy())
        return ann.config["build"]["settings"]["components"], ann.search(queries, 10)

    stock = build()
    assert stock[0] == "IVF7,SQ8"
    assert build(SEEDED_FAISS) == stock
    assert build(SEEDED_FAISS, sample_seed=0, kmeans_seed=1234) == stock
    assert build(SEEDED_FAISS, sample_seed=5)[1] != stock[1]


def test_cli_profile_names_and_errors(tiny_model, dataset_dir, tmp_path, capsys):
    base = ["run", "--datasets", str(dataset_dir), "--results-dir", str(tmp_path / "r"), "--cache-dir",
            str(tmp_path / "c"), "--json"]
    code, out, _ = run_cli([*base, "--model", "bm25", "--profile", "beir"], capsys)
    default_code, default_out, _ = run_cli([*base, "--model", "bm25"], capsys)
    explicit, default = json.loads(out.strip().splitlines()[-1]), json.loads(default_out.strip().splitlines()[-1])
    assert code == default_code == 0 and explicit["condition"] == default["condition"] == "bm25"
    assert explicit["metrics"] == default["metrics"] and "profile" not in default
    code, out, _ = run_cli([*base, "--model", "bm25", "--profile", "txtai-benchmark"], capsys)
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["condition"] == "bm25-txtai-benchmark"
    assert (tmp_path / "r" / "bm25-txtai-benchmark" / "tiny.json").is_file()
    profile = ["--profile", "txtai-benchmark"]
    for extra, message in ((["--model", "bm25", "--txtai-config", "x.yml"], "--txtai-config needs --profile"),
                           (["--model", "bm25", *profile, "--rerank", "colbert-pico"], "drop --rerank"),
                           (["--model", f"colbert:{tiny_model}", *profile], "full ColBERT maxsim")):
        code, _, err = run_cli([*base, *extra], capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, err


def test_seed_conventions_table_and_reproduce(dataset_dir, tmp_path, capsys):
    results = tmp_path / "results"
    conditions = results / "conditions.toml"
    results.mkdir()
    conditions.write_text(
        'datasets = ["tiny", "other"]\n'
        '[[group]]\nname = "seed conventions"\nlayout = "conventions"\ncaption = "three ways"\n'
        '[[condition]]\nname = "bm25"\nlabel = "BM25"\nargs = "--model bm25"\ngroups = ["seed conventions"]\n'
        'published = { tiny = 0.5 }\ntxtai_benchmark = "bm25-txtai-benchmark"\n'
        '[[condition]]\nname = "bm25-txtai-benchmark"\nlabel = "BM25, txtai"\n'
        'args = "--model bm25 --profile txtai-benchmark"\ngroups = []\nexpected = { tiny = 0.0 }\n'
        '[[condition]]\nname = "rerank-only"\nlabel = "no txtai twin"\nargs = "--model bm25"\n'
        'groups = ["seed conventions"]\npublished = { tiny = 0.25 }\n')
    common = ["--datasets", str(dataset_dir), "--cache-dir", str(tmp_path / "c")]
    code, _, err = run_cli(["reproduce", "--conditions", str(conditions), "--results-dir", str(results),
                            "--only", "bm25-txtai-benchmark", *common], capsys)
    assert code == 0, err
    assert run_cli(["run", "--model", "bm25", "--results-dir", str(results), *common[:2]], capsys)[0] == 0
    txtai = json.loads((results / "bm25-txtai-benchmark" / "tiny.json").read_text())["metrics"]["ndcg@10"]
    beir = json.loads((results / "bm25" / "tiny.json").read_text())["metrics"]["ndcg@10"]
    code, out, _ = run_cli(["table", "--results-dir", str(results), "--conditions", str(conditions), "--print"], capsys)
    assert code == 0 and "### seed conventions" in out and "three ways" in out
    assert "| tiny seed " in out and "| tiny txtai-benchmark " in out and "other" not in out
    row = next(line for line in out.splitlines() if line.startswith("| BM25 "))
    assert [c.strip() for c in row.split("|")[2:5]] == ["0.5000", f"{txtai:.4f}", f"{beir:.4f}"]
    assert "†" not in row  # BM25 through txtai scoring is exact
    twinless = next(line for line in out.splitlines() if line.startswith("| no txtai twin "))
    assert "n/a" in twinless and "0.2500" in twinless


def test_a_bert_hash_folder_runs_in_a_fresh_process(tiny_model, dataset_dir, tmp_path):
    """Alone in its process (nothing has registered bert_hash with transformers yet), a BertHash
    folder still loads: the profile registers the harness's code itself (it used to end in
    transformers' trust_remote_code traceback unless a dense condition had run first)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "harness", "run", "--model", tiny_model, "--profile", "txtai-benchmark",
                           "--datasets", str(dataset_dir), "--no-save"],
                          cwd=REPO, env=harness_subprocess_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pico-random-txtai-benchmark" in done.stdout and "ndcg@10=" in done.stdout

