"""Tiny, synthetic tests for harness.train (seconds; no ../shared data, no teacher weights)."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.errors import HarnessError
from harness.train import config, loop, pools, data as tdata
from harness.train.teacher import Teacher

WORDS = ("cell protein cancer diet vitamin gene brain heart risk trial dose blood fat sugar "
         "mouse tumor insulin liver bone virus").split()


def make_beir(root: Path, name: str = "toy", n_docs: int = 24, seed: int = 0) -> Path:
    """A BEIR-layout dataset: train queries q0..q5, test queries t0..t3, and q5 ALSO in test."""
    rng = np.random.default_rng(seed)
    d = root / name
    (d / "qrels").mkdir(parents=True)
    with gzip.open(d / "corpus.jsonl.gz", "wt") as f:
        for i in range(n_docs):
            words = rng.choice(WORDS, size=30)
            text = ". ".join(" ".join(words[j:j + 6]).capitalize() for j in range(0, 30, 6)) + "."
            f.write(json.dumps({"_id": f"d{i}", "title": f"Title about {words[0]} {words[1]}", "text": text}) + "\n")
    with gzip.open(d / "queries.jsonl.gz", "wt") as f:
        for i in range(6):
            f.write(json.dumps({"_id": f"q{i}", "text": f"train question {WORDS[i]}"}) + "\n")
        for i in range(4):
            f.write(json.dumps({"_id": f"t{i}", "text": f"SECRET TEST QUESTION {WORDS[i]}"}) + "\n")
    (d / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(6)))
    (d / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"t{i}\td{i + 6}\t1\n" for i in range(4)) + "q5\td20\t1\n")
    return d


def fake_encoder(texts):
    """Deterministic 384-d 'teacher': bag of hashed words, normalised."""
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for r, t in enumerate(texts):
        for w in t.lower().replace(".", " ").split():
            out[r, int(hashlib.md5(w.encode()).hexdigest(), 16) % 384] += 1.0
    return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-9)


# ----------------------------------------------------------------------------- data rules


def test_test_queries_are_filtered_out(tmp_path):
    folder = make_beir(tmp_path)
    ds = tdata.load_dataset(folder)
    assert ds.test_query_ids == {"t0", "t1", "t2", "t3", "q5"}
    assert set(ds.query_ids) == {"q0", "q1", "q2", "q3", "q4"}  # q5 is also a test query: dropped
    assert not set(ds.qrels) & ds.test_query_ids
    qs = tdata.build_queries(ds, sentences_per_doc=2)
    texts = [q.text for q in qs]
    assert not any("SECRET" in t for t in texts)
    assert {q.kind for q in qs} == {"query", "title", "sentence"}
    assert all(q.positives for q in qs)
    with pytest.raises(HarnessError):
        tdata.load_split_queries(folder, splits=("train", "test"))
    ds.query_ids.append("t0")
    with pytest.raises(HarnessError, match="leaked"):
        tdata.assert_no_test_leak(ds)


def test_recipe_summary_counts(tmp_path):
    ds = tdata.load_dataset(make_beir(tmp_path))
    qs = tdata.build_queries(ds, sentences_per_doc=1)
    s = tdata.recipe_summary([ds], {ds.name: qs})["toy"]
    assert s["documents"] == 24 and s["train_dev_queries"] == 5 and s["test_queries_excluded"] == 5
    assert s["training_queries_by_kind"]["sentence"] == 24


# ----------------------------------------------------------------------------- config / io


def test_config_overrides(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[a]\nx = 1\ny = "s"\n[b]\nz = [1, 2]\n')
    cfg = config.load_config(p, ["a.x=2.5", "a.y=hello", "b.z=[3]"])
    assert cfg == {"a": {"x": 2.5, "y": "hello"}, "b": {"z": [3]}}
    with pytest.raises(HarnessError, match="unknown key"):
        config.load_config(p, ["a.nope=1"])
    with pytest.raises(HarnessError, match="not found"):
        config.load_config(tmp_path / "missing.toml")


def test_teacher_cache_and_resume(tmp_path):
    calls = []

    def enc(texts):
        calls.append(len(texts))
        return fake_encoder(texts)

    texts = [f"text number {i} " + "x" * (i % 7) for i in range(10)]
    t = Teacher(cache_dir=tmp_path, encoder=enc)
    a = t.encode(texts, name="t", chunk=4)
    assert calls == [4, 4, 2]
    np.testing.assert_allclose(a, fake_encoder(texts), atol=1e-6)  # order restored after length sort
    b = t.encode(texts, name="t", chunk=4)
    assert calls == [4, 4, 2] and np.array_equal(a, b)  # cached
    assert not list((tmp_path / "parts").glob("*.npy"))
    c = t.encode(texts, name="renamed-shard", chunk=4)  # same texts under another name: same cache
    assert calls == [4, 4, 2] and np.array_equal(a, c)
    t.encode(texts[:-1], name="t", chunk=4)  # other texts: encoded
    assert calls == [4, 4, 2, 4, 4, 1]


def test_stage_runner_resume_is_exact(tmp_path):
    """An interrupted stage resumed from its checkpoint ends with the same weights."""
    cfg = {"checkpoint": {"every": 2}}
    X = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
    y = X @ torch.arange(5.0)

    def fit(run_dir, stop_at=None, resume=False):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Dropout(0.1), torch.nn.Linear(8, 1))
        ckpt = loop.Checkpointer(run_dir, resume)
        if ckpt.resumed:
            model.load_state_dict(ckpt.state["model"])
        from harness.train.loop import StageRunner

        runner = StageRunner(ckpt, model, cfg, seed=3, timer_start=0.0)

        def step(i, rng):
            if stop_at is not None and i == stop_at:
                raise KeyboardInterrupt
            idx = rng.integers(64, size=8)
            return ((model(X[idx]).squeeze(-1) - y[idx]) ** 2).mean()

        runner.run("s", 9, 1e-2, list(model.parameters()), step)
        return model, ckpt

    full, _ = fit(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "b", stop_at=5)
    resumed, ckpt = fit(tmp_path / "b", resume=True)
    for p, q in zip(full.parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q)
    assert ckpt.state["done"] == ["s"]


def test_every_stage_runs_at_the_configured_threads(tmp_path):
    """The self-check between stages encodes through code that sets torch's thread count; each stage
    sets ``run.threads`` again at its start, and the card records that number."""
    from harness.train.loop import StageRunner

    model = torch.nn.Linear(3, 1)
    runner = StageRunner(loop.Checkpointer(tmp_path, False), model, {"checkpoint": {"every": 5}, "run": {"threads": 1}},
                         seed=0, timer_start=0.0)
    seen = []

    def step(i, rng):
        seen.append(torch.get_num_threads())
        return model(torch.ones(2, 3)).pow(2).mean()

    previous = torch.get_num_threads()
    try:
        for stage in ("a", "b"):
            torch.set_num_threads(2)  # what a self-check's encoder leaves behind
            runner.run(stage, 2, 1e-2, list(model.parameters()), step)
    finally:
        torch.set_num_threads(previous)
    assert seen == [1, 1, 1, 1] and runner.threads == 1


def test_candidates_and_kl():
    rng = np.random.default_rng(0)
    td = fake_encoder([f"doc {i} {WORDS[i % 20]}" for i in range(30)])
    tq = fake_encoder([f"q {WORDS[i]}" for i in range(5)])
    pool = pools.Pool("p", ["d"] * 30, ["q"] * 5, td, tq, np.zeros((5, 0), np.int64),
                       [(3,), (), (1, 2), (4,), (0,)], ["query"] * 5)
    pool.topk = topk = pools.teacher_topk(pool, 8)
    sc = tq @ td.T
    assert np.all(np.diff(np.take_along_axis(sc, topk, 1), axis=1) <= 1e-6)
    cands = pools.sample_candidates(pool, np.arange(5), 6, rng, hard_from=8, n_random=1)
    assert all(len(c) == 6 == len(set(c)) for c in cands)
    assert cands[0][0] == 3 and cands[2][0] in (1, 2)
    t = torch.randn(4, 7)
    assert loop.kl_teacher_student(t, t).abs() < 1e-6
    assert loop.kl_teacher_student(torch.zeros(4, 7), t) > 0


def test_hybrid_teacher_adds_normalised_bm25():
    docs = ["vitamin d and bone health", "sugar intake and heart risk", "a trial of insulin dose",
            "vitamin c in the diet"]
    queries = ["vitamin bone", "heart sugar risk", "nothing matches here"]
    sparse_lex = pools.normalised_bm25(queries, docs)
    lex = sparse_lex.toarray()
    assert sparse_lex.nnz == np.count_nonzero(lex) < lex.size  # zeros (no shared term) are not stored
    assert lex.shape == (3, 4) and np.allclose(lex.max(1), [1, 1, 0])  # per-query max is 1; no match = 0
    assert lex[0].argmax() == 0 and lex[1].argmax() == 1 and lex[0, 3] > 0 and lex[0, 1] == 0
    td, tq = fake_encoder(docs), fake_encoder(queries)
    pool = pools.Pool("p", docs, queries, td, tq, np.zeros((3, 0), np.int64), [()] * 3, ["query"] * 3,
                       sparse_lex, 0.5)
    qidx, didx = np.array([2, 0]), np.array([3, 0, 1])
    np.testing.assert_allclose(pool.teacher_scores(qidx, didx),
                               tq[qidx] @ td[didx].T + 0.5 * lex[np.ix_(qidx, didx)], rtol=1e-6)
    hybrid = pool.teacher_scores(np.arange(3), np.arange(4))
    np.testing.assert_allclose(np.take_along_axis(hybrid, pools.teacher_topk(pool, 4), 1), -np.sort(-hybrid, 1))


def test_label_teacher_adds_known_positives(tmp_path):
    from harness.train.pools import load_pools

    labels = pools.relevance_labels([(2,), (), (0, 3)], 4)
    np.testing.assert_array_equal(labels.toarray(), [[0, 0, 1, 0], [0, 0, 0, 0], [1, 0, 0, 1]])
    docs = [f"doc {w}" for w in WORDS[:4]]
    td, tq = fake_encoder(docs), fake_encoder(["q a", "q b", "q c"])
    pool = pools.Pool("p", docs, ["q a", "q b", "q c"], td, tq, np.zeros((3, 0), np.int64),
                       [(2,), (), (0, 3)], ["query"] * 3, labels=labels, label_weight=0.5)
    qidx, didx = np.array([2, 0]), np.array([3, 0, 2])
    np.testing.assert_allclose(pool.teacher_scores(qidx, didx),
                               tq[qidx] @ td[didx].T + 0.5 * np.array([[1, 1, 0], [0, 0, 1]]), rtol=1e-6)
    # from a config: every known positive (judged train query, pseudo-query source) is lifted by the weight
    make_beir(tmp_path)
    cfg = config.load_config(CONFIGS / "pico-adapted.toml", tiny_overrides(tmp_path, tmp_path))
    teacher = Teacher(cache_dir=tmp_path / "cache", encoder=fake_encoder)
    (plain,), _ = load_pools(cfg, teacher)
    cfg["teacher"]["label_weight"] = 2.0
    (lifted,), _ = load_pools(cfg, teacher)
    every_q, every_d = np.arange(len(plain.queries)), np.arange(len(plain.docs))
    diff = lifted.teacher_scores(every_q, every_d) - plain.teacher_scores(every_q, every_d)
    expected = np.zeros_like(diff)
    for i, pos in enumerate(plain.positives):
        expected[i, list(pos)] = 2.0
    assert expected.sum() > 0 and plain.labels is None
    np.testing.assert_allclose(diff, expected, atol=1e-5)
    assert all(set(pos) <= set(top[:len(pos)]) for pos, top in zip(lifted.positives, lifted.topk))


def test_holdout_split_leaves_its_queries_out(tmp_path):
    from harness.train.pools import load_pools

    folder = make_beir(tmp_path)
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq4\td4\t1\n")
    cfg = config.load_config(CONFIGS / "pico-adapted.toml", tiny_overrides(tmp_path, tmp_path))
    teacher = Teacher(cache_dir=tmp_path / "cache", encoder=fake_encoder)
    (full,), _ = load_pools(cfg, teacher)
    cfg["data"]["holdout_splits"] = ["dev"]
    (held,), _ = load_pools(cfg, teacher)
    dev_text = "train question " + WORDS[4]
    assert dev_text in full.queries and dev_text not in held.queries
    assert len(held.queries) == len(full.queries) - 1 == held.t_queries.shape[0] == held.topk.shape[0]
    assert held.kinds.count("query") == full.kinds.count("query") - 1
    cfg["data"]["holdout_splits"] = ["deev"]  # a typo must not silently hold out nothing
    with pytest.raises(HarnessError, match="deev"):
        load_pools(cfg, teacher)


def test_loss_plot(tmp_path):
    loop.plot_losses({"a": [(i, 1.0 / (i + 1)) for i in range(40)], "b": [(0, 1.0), (10, 0.5)]},
                       tmp_path / "loss.png", "t")
    assert (tmp_path / "loss.png").stat().st_size > 1000


# ----------------------------------------------------------------------------- end to end (tiny)

CONFIGS = Path(__file__).resolve().parents[1] / "harness" / "train" / "configs"


def tiny_overrides(tmp_path: Path, data_root: Path) -> list[str]:
    return [f"run.run_dir={json.dumps(str(tmp_path / 'run'))}", f"data.root={json.dumps(str(data_root))}",
            'data.datasets=["toy"]', "data.teacher_topk=8", "checkpoint.every=2"]


def tiny_colbert_overrides(tmp_path: Path, data_root: Path, init: Path, steps: int) -> list[str]:
    """A ColBERT KD run of ``steps`` small in-batch steps from ``init`` on the synthetic dataset."""
    return tiny_overrides(tmp_path, data_root) + [
        f"model.init_from={json.dumps(str(init))}", f"kd.steps={steps}", "kd.batch_queries=3",
        "kd.candidates=4", "kd.hard_from=6", "kd.doc_max_len=40", "eval.after_kd=false"]


@pytest.fixture(scope="module")
def tiny_dense(tmp_path_factory):
    """A dense pico trained for a few steps on the synthetic dataset (shared by the tests below)."""
    from harness.train.dense_kd import train_dense

    tmp_path = tmp_path_factory.mktemp("dense")
    root = tmp_path / "beir"
    make_beir(root)
    cfg = config.load_config(CONFIGS / "pico-adapted.toml", tiny_overrides(tmp_path, root) + [
        "mlm.steps=2", "mlm.batch=4", "embed.steps=3", "embed.batch_docs=4", "embed.batch_queries=4",
        "kl.steps=3", "kl.batch_queries=3", "kl.candidates=4", "kl.hard_from=6",
        "eval.after_embed=false", "eval.after_kl=false"])
    out = tmp_path / "pico"
    teacher = Teacher(cache_dir=tmp_path / "cache", encoder=fake_encoder)
    info = train_dense(cfg, teacher=teacher, out_dir=out)
    return {"cfg": cfg, "out": out, "info": info, "teacher": teacher, "root": root, "tmp": tmp_path}


def test_train_dense_tiny(tiny_dense):
    from sentence_transformers import SentenceTransformer

    from harness.train.dense_kd import train_dense

    out, info = tiny_dense["out"], tiny_dense["info"]
    assert info["steps"] == {"mlm": 2, "embed": 3, "kl": 3}
    for name in ("README.md", "loss_curve.png", "model.safetensors", "modules.json", "training_info.json"):
        assert (out / name).exists(), name
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))
    card = (out / "README.md").read_text()
    assert "sha256" in card and "fake" in card and "seed: 42" in card
    st = SentenceTransformer(str(out), trust_remote_code=True, device="cpu")
    emb = st.encode(["a query about cancer", "a document"])
    assert emb.shape == (2, 80) and np.isfinite(emb).all()
    assert st.max_seq_length == 128  # the trained length: later positions never received a gradient
    # resuming a finished run skips every stage
    info2 = train_dense(tiny_dense["cfg"], resume=True, teacher=tiny_dense["teacher"],
                        out_dir=tiny_dense["tmp"] / "pico2")
    assert info2["history"] == info["history"]
    # ... but not under other settings: the checkpoint belongs to another recipe
    changed = config.apply_overrides(tiny_dense["cfg"], ["kl.lr=0.5"])
    with pytest.raises(HarnessError, match=r"cannot resume.*kl\.lr"):
        train_dense(changed, resume=True, teacher=tiny_dense["teacher"], out_dir=tiny_dense["tmp"] / "pico3")


def test_trained_length_is_the_longest_input_a_stage_with_steps_read(tmp_path):
    from harness.train.dense_kd import trained_length

    cfg = config.load_config(CONFIGS / "pico-adapted.toml", ["mlm.steps=0", "mlm.max_len=512", "embed.doc_max_len=96",
                                                     "embed.query_max_len=48", "kl.doc_max_len=64"])
    assert trained_length(cfg) == 96  # the MLM stage would read 512 tokens, but it has no steps
    cfg = config.apply_overrides(cfg, ["embed.steps=0"])
    assert trained_length(cfg) == 64
    cfg = config.apply_overrides(cfg, ["mlm.steps=10"])
    assert trained_length(cfg) == 512


def test_dense_continues_from_a_trained_folder(tiny_dense, tmp_path):
    from harness.models.berthash import load_berthash
    from harness.train.dense_kd import train_dense

    cfg = config.load_config(CONFIGS / "pico-adapted.toml", tiny_overrides(tmp_path, tiny_dense["root"]) + [
        f"init.from={json.dumps(str(tiny_dense['out']))}", "mlm.steps=0", "embed.steps=0", "kl.steps=0",
        "eval.after_embed=false", "eval.after_kl=false"])
    train_dense(cfg, teacher=tiny_dense["teacher"], out_dir=tmp_path / "again")
    before, after = load_berthash(tiny_dense["out"]).state_dict(), load_berthash(tmp_path / "again").state_dict()
    assert before.keys() == after.keys()
    for k in before:
        torch.testing.assert_close(before[k], after[k])


def test_train_colbert_tiny(tiny_dense, tmp_path):
    from harness.models.colbert import ColBERT
    from harness.train.colbert_kd import train_colbert

    cfg = config.load_config(CONFIGS / "colbert-pico-adapted.toml", tiny_colbert_overrides(tmp_path, tiny_dense["root"], tiny_dense["out"], 3) + [
        "kd.fde_weight=1.0", "kd.fde_teacher_scale=20.0", "kd.teacher_scale_end=10.0",
        "teacher.bm25_weight=0.5"])
    out = tmp_path / "colbert"
    info = train_colbert(cfg, teacher=tiny_dense["teacher"], out_dir=out)
    assert info["steps"] == {"kd": 3} and len(info["history"]["kd"]) >= 1
    for name in ("README.md", "loss_curve.png", "model.safetensors", "1_Dense/model.safetensors", "modules.json"):
        assert (out / name).exists(), name
    model = ColBERT.load(out)
    assert model.document_length == 40 and model.token_dim == 80  # shipped at the length it trained on
    q = model.encode_queries(["a query about cancer"])[0]
    assert q.shape == (32, 80)


def test_self_check_scores_fdes_by_inner_product_and_by_cosine(small_beir):
    """The txtai-mode row scores FDEs by cosine; the self-check reports that beside inner product
    (a model can rank well by one and badly by the other, as a colbert-pico candidate did)."""
    import zlib

    from harness.train.quick_eval import eval_colbert

    def encode_tokens(texts, kind):  # one 16-d one-hot per word, hashed
        out = []
        for text in texts:
            words = text.lower().split() or [""]
            t = torch.zeros(len(words), 16)
            t[torch.arange(len(words)), torch.tensor([zlib.crc32(w.encode()) % 16 for w in words])] = 1.0
            out.append(t)
        return out

    def fde(doc_scale):
        def encode(tokens, kind):
            x = np.stack([t.sum(0).numpy() for t in tokens])
            if kind == "doc":
                x = x * doc_scale(len(tokens))[:, None]
            return x
        return encode

    plain = eval_colbert(encode_tokens, small_beir, fde_encode=fde(lambda n: np.ones(n)))
    scaled = eval_colbert(encode_tokens, small_beir, fde_encode=fde(lambda n: 1.0 + 10.0 * (np.arange(n) % 3)))
    assert {"maxsim", "muvera_fde", "muvera_fde_cosine"} <= set(plain)
    assert scaled["muvera_fde_cosine"] == plain["muvera_fde_cosine"]  # cosine ignores document norms
    assert scaled["muvera_fde"] != plain["muvera_fde"]  # inner product does not
    # the FDE's top 100 reranked by maxsim: on a corpus of under 100 documents that is full maxsim
    assert plain["muvera_fde_cosine+rerank100"] == scaled["muvera_fde_cosine+rerank100"] == plain["maxsim"]


def test_average_of_two_kd_runs_is_their_parameter_mean(tiny_dense, tmp_path):
    """``[average]``: each member trains as its own run; the shipped weights are the weighted mean."""
    from harness.models.colbert import ColBERT
    from harness.train.average import train_colbert_average

    overrides = tiny_colbert_overrides(tmp_path, tiny_dense["root"], tiny_dense["out"], 3) + [
        'average.members=[[], ["kd.teacher_scale=5.0", "kd.lr=0.01"]]', "average.weights=[0.25, 0.75]",
        f"run.out={json.dumps(str(tmp_path / 'soup'))}"]
    cfg = config.load_config(CONFIGS / "colbert-pico-adapted.toml", overrides)
    info = train_colbert_average(cfg, teacher=tiny_dense["teacher"])
    run = tmp_path / "run"
    a, b, soup = (ColBERT.load(p).encoder.state_dict() for p in (run / "member-0" / "model", run / "member-1" / "model", tmp_path / "soup"))
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the members differ
    for k in a:
        torch.testing.assert_close(soup[k], 0.25 * a[k] + 0.75 * b[k])
    assert [m["weight"] for m in info["average"]] == [0.25, 0.75]
    card = (tmp_path / "soup" / "README.md").read_text()
    assert "0.75 x (kd.teacher_scale=5.0 kd.lr=0.01)" in card
    # the member with no overrides is exactly a plain run of the config
    from harness.train.colbert_kd import train_colbert

    plain = config.load_config(CONFIGS / "colbert-pico-adapted.toml", overrides + [
        f"run.run_dir={json.dumps(str(tmp_path / 'plain-run'))}", "average.members=[]", "average.weights=[]"])
    train_colbert(plain, teacher=tiny_dense["teacher"], out_dir=tmp_path / "plain")
    p = ColBERT.load(tmp_path / "plain").encoder.state_dict()
    assert all(torch.equal(p[k], a[k]) for k in a)


def test_average_config_errors():
    from harness.train.average import members

    assert members({"average": {"members": [], "weights": []}}) == []
    with pytest.raises(HarnessError, match="one weight per member"):
        members({"average": {"members": [[], ["kd.lr=1e-3"]], "weights": [1.0]}})
    with pytest.raises(HarnessError, match="sum to 1"):
        members({"average": {"members": [[], ["kd.lr=1e-3"]], "weights": [0.5, 0.6]}})


def test_teacher_scale_schedule():
    from harness.train.colbert_kd import teacher_scale

    assert [teacher_scale({"teacher_scale": 20.0, "teacher_scale_end": 0.0, "steps": 5}, s) for s in (0, 4)] == [20.0, 20.0]
    sched = {"teacher_scale": 5.0, "teacher_scale_end": 20.0, "steps": 5}
    assert [teacher_scale(sched, s) for s in range(5)] == [5.0, 8.75, 12.5, 16.25, 20.0]


def test_average_members_in_parallel_processes_equal_in_process(tiny_dense, tmp_path, monkeypatch):
    """The default path trains each member in its own spawned process; it must give exactly the
    weights of training them one after another here (real MiniLM teacher, tiny data)."""
    from harness.models.colbert import ColBERT
    from harness.train import teacher as teacher_module
    from harness.train.average import train_colbert_average

    cache = tmp_path / "train-cache"
    monkeypatch.setenv("HARNESS_TRAIN_CACHE", str(cache))  # the spawned members read it at import
    monkeypatch.setattr(teacher_module, "CACHE", cache)
    weights = {}
    for mode in ("processes", "here"):
        cfg = config.load_config(CONFIGS / "colbert-pico-adapted.toml", tiny_colbert_overrides(tmp_path / mode, tiny_dense["root"], tiny_dense["out"], 2) + [
            'average.members=[[], ["kd.teacher_scale=5.0"]]', "average.weights=[0.5, 0.5]",
            f"run.out={json.dumps(str(tmp_path / mode / 'out'))}"])
        teacher = Teacher(max_len=cfg["teacher"]["max_len"], cache_dir=cache / "teacher") if mode == "here" else None
        train_colbert_average(cfg, teacher=teacher)
        weights[mode] = ColBERT.load(tmp_path / mode / "out").encoder.state_dict()
    for k, v in weights["here"].items():
        assert torch.equal(weights["processes"][k], v), k


def test_colbert_kd_continues_from_a_colbert_folder(tiny_dense, tmp_path):
    """``model.init_from`` may name a trained ColBERT folder: KD then continues that model (with no
    steps it is saved unchanged)."""
    from harness.models.colbert import ColBERT
    from harness.train.colbert_kd import train_colbert

    def run(init, out, steps):
        cfg = config.load_config(CONFIGS / "colbert-pico-adapted.toml",
                                 tiny_colbert_overrides(tmp_path / out, tiny_dense["root"], init, steps))
        train_colbert(cfg, teacher=tiny_dense["teacher"], out_dir=tmp_path / out)
        return ColBERT.load(tmp_path / out).encoder.state_dict()

    first = run(tiny_dense["out"], "first", 3)
    same = run(tmp_path / "first", "same", 0)
    assert all(torch.equal(first[k], same[k]) for k in first)
    moved = run(tmp_path / "first", "moved", 2)
    assert any(not torch.equal(first[k], moved[k]) for k in first)


def test_resume_under_other_settings_is_refused(tmp_path):
    """A checkpoint resumes only under the settings it was made with; where the run writes, its
    threads and its self-check may change; checkpoints without recorded settings resume as before."""
    cfg = {"run": {"seed": 1, "out": "a", "run_dir": "r", "threads": 1}, "kd": {"steps": 10, "lr": 1e-3},
           "eval": {"split": "test"}}
    loop.Checkpointer(tmp_path, False, config.run_settings(cfg)).save(model={"w": torch.ones(1)})
    moved = copy.deepcopy(cfg)
    moved["run"].update(out="b", run_dir="s", threads=2)
    moved["eval"]["split"] = "dev"
    assert loop.Checkpointer(tmp_path, True, config.run_settings(moved)).resumed
    other = copy.deepcopy(cfg)
    other["kd"]["lr"] = 2e-3
    with pytest.raises(HarnessError, match=r"checkpoint\.pt: cannot resume.*kd\.lr: 0\.001 in the checkpoint, 0\.002 now"):
        loop.Checkpointer(tmp_path, True, config.run_settings(other))
    legacy = loop.Checkpointer(tmp_path / "old", False)
    legacy.save(model={"w": torch.ones(1)})
    assert loop.Checkpointer(tmp_path / "old", True, config.run_settings(other)).resumed
    assert not loop.Checkpointer(tmp_path, False, config.run_settings(other)).resumed  # without --resume: start over


def test_average_members_end_when_the_parent_is_killed(tmp_path):
    """A killed ``harness train`` (average) must not leave member processes training on: the pool's
    initializer (harness.train.average.exit_with_parent) ends them once their parent is gone."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pid_file, script = tmp_path / "member.pid", tmp_path / "parent.py"  # a file: spawn re-imports it
    script.write_text(f"""
import os, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from harness.train.average import exit_with_parent

def member(path):
    open(path, "w").write(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=exit_with_parent,
                             initargs=(os.getpid(), 0.1)) as pool:
        pool.submit(member, {str(pid_file)!r}).result()
""")
    parent = subprocess.Popen([sys.executable, str(script)])
    deadline = time.time() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    member_pid = int(pid_file.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            os.kill(member_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(member_pid, signal.SIGKILL)
    pytest.fail("the member process outlived its killed parent")


def test_quick_eval_names_a_missing_split_and_the_ones_there(tmp_path, capsys):
    from harness.train.quick_eval import load_judged, main

    folder = make_beir(tmp_path)
    with pytest.raises(HarnessError, match=r"qrels/dev\.tsv: split 'dev' not found \(available: test, train\)"):
        load_judged(folder, "dev")
    assert main(["--datasets", "toy", "--split", "dev", "--data-dir", str(tmp_path)]) == 2
    assert "error: " in capsys.readouterr().err


def test_adapt_trains_on_pseudo_queries_of_the_corpus_only(tiny_dense, tmp_path):
    """`harness adapt`: continues the general model on one corpus's documents; its training queries
    are all made from documents (no query file, no judgment), and the card says what it was adapted to."""
    from harness.train.adapt import adapt_config
    from harness.train.dense_kd import train_dense
    from harness.train.pools import load_pools

    folder = tiny_dense["root"] / "toy"
    cfg = adapt_config(str(tiny_dense["out"]), str(folder), steps=2, out=tmp_path / "adapted", data_dir=None)
    cfg = config.apply_overrides(cfg, [f"run.run_dir={json.dumps(str(tmp_path / 'run'))}", "kl.batch_queries=3",
                                       "kl.candidates=4", "kl.hard_from=6", "data.teacher_topk=8"])
    assert cfg["init"]["from"] == str(tiny_dense["out"]) and cfg["embed"]["steps"] == 0
    pools, _ = load_pools(cfg, tiny_dense["teacher"])
    (pool,) = pools
    assert set(pool.kinds) == {"title", "sentence"}
    assert not any("SECRET" in q or "train question" in q for q in pool.queries)
    info = train_dense(cfg, teacher=tiny_dense["teacher"])
    assert info["steps"]["kl"] == 2
    card = (tmp_path / "adapted" / "README.md").read_text()
    assert "adapted to toy" in card and "No query, judgment or split" in card
