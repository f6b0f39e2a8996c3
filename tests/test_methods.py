"""Every method of `harness run` end to end on a tiny dataset, with small random checkpoints.

The checkpoints are BertHash pico-sized models with random weights: the numbers are meaningless,
the plumbing (encode -> cache -> search -> rerank -> evaluate -> result) is what is checked, and the
rankings are compared with independent computations.
"""

import json

import pytest

from conftest import run_cli


@pytest.fixture
def cli(models_dir, small_beir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_MODELS_DIR", str(models_dir))

    def run(*args):
        code, out, err = run_cli(["run", *args, "--datasets", str(small_beir), "--results-dir", str(tmp_path / "r"),
                                  "--cache-dir", str(tmp_path / "cache"), "--save-run", "--json"], capsys)
        assert code == 0, err
        return json.loads(out.strip().splitlines()[-1])

    return run


def _ranking(tmp_path, condition, query="q0"):
    lines = (tmp_path / "r" / condition / "tiny.trec").read_text().splitlines()
    return [line.split()[2] for line in lines if line.split()[0] == query]


def test_pico_dense(cli, tmp_path):
    result = cli("--model", "pico")
    stage = result["method"]["first_stage"]
    assert result["condition"] == "pico" and stage["dims"] == 80 and stage["bytes_per_doc"] == 320
    assert stage["parameters"] == 441_776  # BertHash pico without the pooler
    assert stage["pooling"] == "mean" and stage["similarity"] == "cosine"
    assert result["storage"] == {"dims": 80, "vector_bytes_per_doc": 320, "bytes_per_doc": 320}
    assert len(_ranking(tmp_path, "pico")) == 30  # every document, the corpus is smaller than top-k
    # The txtai index gives the same numbers.
    assert cli("--model", "pico", "--index", "txtai")["metrics"] == pytest.approx(result["metrics"], abs=1e-6)


def test_muvera_modes_record_their_settings(cli):
    txtai_mode = cli("--model", "muvera-pico")
    stage = txtai_mode["method"]["first_stage"]
    assert txtai_mode["condition"] == "muvera-pico"
    assert stage["dims"] == 20 * 2**5 * 16 == 10_240 and stage["bytes_per_doc"] == 40_960
    assert stage["fde"]["mode"] == "txtai" and stage["similarity"] == "cosine" and stage["token_dim"] == 16
    assert txtai_mode["storage"]["bytes_per_doc"] == 40_960  # the token vectors are not kept
    paper = cli("--model", "muvera-pico", "--fde-mode", "paper", "--fde-final-projection", "1024")
    assert paper["condition"] == "muvera-pico-paper"
    assert paper["method"]["first_stage"]["fde"]["fill_empty"] is True
    assert paper["method"]["first_stage"]["dims"] == 1024 and paper["method"]["first_stage"]["similarity"] == "dot"


def test_full_maxsim_equals_a_brute_force_loop(cli, tmp_path, models_dir, small_beir):
    from harness.data import load_dataset
    from harness.models.colbert import ColBERT

    cli("--model", "colbert-pico")
    dataset = load_dataset(str(small_beir))
    model = ColBERT.load(models_dir / "colbert-pico")
    docs = model.encode_documents(dataset.doc_texts())
    query = model.encode_queries([dataset.queries[0]])[0]
    scores = {doc_id: float((query @ d.T).max(axis=1).sum()) for doc_id, d in zip(dataset.doc_ids, docs)}
    expected = sorted(scores, key=lambda d: (-round(scores[d], 4), d))  # ids only break exact ties
    ranked = _ranking(tmp_path, "colbert-pico", dataset.query_ids[0])
    assert ranked[:10] == expected[:10]


def test_rerank_of_the_whole_corpus_equals_full_maxsim(cli, tmp_path):
    full = cli("--model", "colbert-pico")
    reranked = cli("--model", "pico", "--rerank", "colbert-pico", "--rerank-depth", "30")
    assert reranked["condition"] == "pico+rerank-colbert-pico@30"
    assert reranked["method"]["reranker"]["depth"] == 30
    # Serving it stores the pico vector and the token matrices; full maxsim only the token matrices.
    tokens = full["storage"]["token_bytes_per_doc"]
    assert full["storage"]["token_dim"] == 16 and tokens == 16 * 4 * full["storage"]["mean_tokens_per_doc"]
    assert full["storage"]["bytes_per_doc"] == tokens and reranked["storage"]["bytes_per_doc"] == 320 + tokens
    assert reranked["metrics"] == pytest.approx(full["metrics"], abs=1e-6)
    for q in ("q0", "q3"):
        assert _ranking(tmp_path, "pico+rerank-colbert-pico@30", q) == _ranking(tmp_path, "colbert-pico", q)


def test_rerank_keeps_the_first_stage_tail(cli, tmp_path):
    cli("--model", "pico")
    cli("--model", "pico", "--rerank", "colbert-pico", "--rerank-depth", "5")
    first = _ranking(tmp_path, "pico")
    reranked = _ranking(tmp_path, "pico+rerank-colbert-pico@5")
    assert sorted(reranked[:5]) == sorted(first[:5])  # the same candidates, re-ordered
    assert reranked[5:] == first[5:]  # the rest untouched, in first-stage order


def test_named_models_fail_in_one_line_when_their_checkpoint_is_missing(small_beir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_MODELS_DIR", str(tmp_path / "empty"))
    code, _, err = run_cli(["run", "--model", "pico", "--datasets", str(small_beir), "--results-dir", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1 and "harness train" in err


def test_warm_run_encodes_nothing(cli, tmp_path):
    cold = cli("--model", "muvera-pico")
    warm = cli("--model", "muvera-pico")
    assert cold["cache"]["documents_cached_blocks"] == "0/1" and not cold["cache"]["fde_documents_cached"]
    assert warm["cache"]["documents_cached_blocks"] == "1/1" and warm["cache"]["fde_documents_cached"]
    assert not cold["cache"]["queries_cached"] and warm["cache"]["queries_cached"]
    assert warm["metrics"] == cold["metrics"]
    dense_cold, dense_warm = cli("--model", "pico"), cli("--model", "pico")
    assert not dense_cold["cache"]["queries_cached"] and dense_warm["cache"]["queries_cached"]
    assert dense_warm["cache"]["documents_cached_blocks"] == "1/1" and dense_warm["metrics"] == dense_cold["metrics"]


def test_edited_queries_are_encoded_again(cli, small_beir):
    from conftest import DEFAULT_QUERIES, make_beir

    assert cli("--model", "pico")["cache"]["queries_cached"] is False
    edited = [dict(q, text=q["text"] + " again") for q in DEFAULT_QUERIES]
    make_beir(small_beir.parent, queries=edited)
    assert cli("--model", "pico")["cache"]["queries_cached"] is False  # new texts: no stale query vectors


def test_changed_settings_never_serve_stale_vectors(cli):
    one = cli("--model", "muvera-pico", "--fde-seed", "1", "--name", "seed1")
    two = cli("--model", "muvera-pico", "--fde-seed", "2", "--name", "seed2")
    assert not one["cache"]["fde_documents_cached"]
    assert not two["cache"]["fde_documents_cached"]  # a changed FDE seed misses the FDE cache...
    assert two["cache"]["documents_cached_blocks"] == "1/1"  # ...and reuses the token matrices it shares
    assert cli("--model", "muvera-pico", "--fde-seed", "1", "--name", "seed1")["cache"]["fde_documents_cached"]
    assert one["method"]["first_stage"]["fde"]["seed"] == 1 and two["method"]["first_stage"]["fde"]["seed"] == 2


def test_max_memory_budget_is_checked_before_the_run(small_beir, tmp_path, capsys, models_dir, monkeypatch):
    monkeypatch.setenv("HARNESS_MODELS_DIR", str(models_dir))
    code, _, err = run_cli(["run", "--model", "colbert-pico", "--datasets", str(small_beir), "--max-memory", "0.00001",
                            "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 2 and "over the --max-memory budget" in err
    assert not (tmp_path / "cache").exists()  # refused before encoding anything
