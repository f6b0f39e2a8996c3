"""``--engine ray``, sharded search, ``--device`` and the on-disk corpus path.

The Ray tests start one local Ray runtime for the module (``num_cpus=2``) and compare, on tiny
random-weight pico checkpoints and the tiny default dataset, what Ray computes with what the local
engine computes: the same vectors (bit for bit: the actors run pico's one-thread arithmetic), the
same rankings and metrics, the same cache blocks (a run stopped part way is resumed by the other
engine). Search sharding is checked without Ray too, on random vectors with planted ties.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

from conftest import make_beir, run_cli
from harness.cache import VectorCache, encode_in_blocks
from harness.engine import LocalEngine
from harness.engine.device import select_device
from harness.errors import HarnessError
from harness.retrieval import exact, maxsim, sharded

# ---------------------------------------------------------------------------------------------
# --device


def test_device_selection():
    assert select_device("cpu", count=lambda: 4) == "cpu"
    assert select_device("auto", count=lambda: 0) == "cpu"
    assert select_device("auto", count=lambda: 1) == "cuda"
    assert select_device("cuda", count=lambda: 2) == "cuda"
    with pytest.raises(HarnessError, match="no CUDA device"):
        select_device("cuda", count=lambda: 0)
    with pytest.raises(HarnessError, match="use one of auto, cpu, cuda"):
        select_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_is_one_error_line(small_beir, tmp_path, capsys):
    code, out, err = run_cli(["run", "--model", "bm25", "--datasets", str(small_beir), "--device", "cuda",
                              "--results-dir", str(tmp_path)], capsys)
    assert code == 2 and err.strip().count("\n") == 0 and "no CUDA device" in err and "Traceback" not in err


def test_unreachable_ray_address_is_one_error_line(small_beir, tmp_path, capsys):
    code, _, err = run_cli(["run", "--model", "bm25", "--datasets", str(small_beir), "--engine", "ray",
                            "--ray-address", "127.0.0.1:9", "--results-dir", str(tmp_path)], capsys)
    assert code == 2 and err.strip().count("\n") == 0 and "cannot reach a Ray cluster" in err
    code, _, err = run_cli(["run", "--model", "bm25", "--datasets", str(small_beir), "--ray-address", "x:1",
                            "--results-dir", str(tmp_path)], capsys)
    assert code == 2 and "need --engine ray" in err


# ---------------------------------------------------------------------------------------------
# Sharded and chunked search = the whole search, bit for bit


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(7)
    docs = rng.normal(size=(1200, 80)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    docs[200:230] = docs[11]  # 31 equal documents: ties straddle every shard and the top-k boundary
    queries = rng.normal(size=(300, 80)).astype(np.float32)  # two query blocks of exact.QUERY_BLOCK
    queries[:3] = docs[11]
    ranks = exact.tie_ranks([f"d{i}" for i in rng.permutation(len(docs))])
    return queries, docs, ranks


@pytest.mark.parametrize("rows", [11, 397, 1199])  # chunks narrower than 12 rows; a last chunk of 1
def test_chunked_search_equals_exact(vectors, rows):
    queries, docs, ranks = vectors
    whole = exact.search(queries, docs, 100, ranks)
    chunked = sharded.search_chunked(queries, docs, 100, ranks, rows)
    assert np.array_equal(whole[0], chunked[0]) and np.array_equal(whole[1], chunked[1])


def test_shard_merge_and_memory_mapped_docs_equal_exact(vectors, tmp_path):
    queries, docs, ranks = vectors
    whole = exact.search(queries, docs, 50, ranks)
    parts = [sharded.search_shard(queries, docs, a, b, 50, ranks) for a, b in sharded.shard_bounds(len(docs), 7)]
    merged = sharded.merge(parts, 50, ranks)
    assert np.array_equal(whole[0], merged[0]) and np.array_equal(whole[1], merged[1])
    np.save(tmp_path / "docs.npy", docs)
    mapped = np.load(tmp_path / "docs.npy", mmap_mode="r")
    local = LocalEngine(max_memory_bytes=4 * 80 * 500 * 2).search(queries, mapped, 50, ranks)  # ~500-row chunks
    assert np.array_equal(whole[0], local[0]) and np.array_equal(whole[1], local[1])


def test_sharded_maxsim_equals_whole():
    rng = np.random.default_rng(3)
    docs = [rng.normal(size=(int(rng.integers(0, 30)), 16)).astype(np.float32) for _ in range(600)]
    docs[40] = docs[41] = docs[500]  # ties across shards
    queries = [rng.normal(size=(8, 16)).astype(np.float32) for _ in range(12)]
    ranks = exact.tie_ranks([f"x{i}" for i in range(len(docs))])
    whole = maxsim.search(queries, docs, 40, tie_ranks=ranks)
    parts = [sharded.maxsim_shard(queries, docs, a, b, 40, 1 << 30, ranks) for a, b in sharded.shard_bounds(600, 3)]
    merged = sharded.merge(parts, 40, ranks)
    assert np.array_equal(whole[0], merged[0]) and np.array_equal(whole[1], merged[1])


def test_reranker_reads_candidates_from_a_token_store(tmp_path):
    from harness.engine.store import TokenStore

    rng = np.random.default_rng(5)
    docs = [rng.normal(size=(int(rng.integers(0, 20)), 16)).astype(np.float32) for _ in range(200)]
    queries = [rng.normal(size=(8, 16)).astype(np.float32) for _ in range(6)]
    candidates = rng.integers(-1, 200, size=(6, 30))
    store = TokenStore.write(tmp_path / "tokens", iter(docs))
    assert len(store) == 200 and all(np.array_equal(store[i], docs[i]) for i in range(200))
    assert np.array_equal(maxsim.rerank(queries, store, candidates), maxsim.rerank(queries, docs, candidates))


# ---------------------------------------------------------------------------------------------
# Models, and the local reference




@pytest.fixture(scope="module")
def pico(models_dir):
    from harness.models.dense import DenseEncoder
    from harness.stages import DenseEncoderAdapter

    return DenseEncoderAdapter(DenseEncoder("pico", str(models_dir / "pico")))


TEXTS = [f"document {i} about " + " ".join(["volcano magma", "glacier ice", "piano sonata"][i % 3] for _ in range(i % 7 + 1))
         for i in range(40)]
PARTS = {"test": "ray", "side": "documents"}


class Stop(Exception):
    pass


def _stop_after(encode, blocks: int):
    calls = []

    def run(texts):
        if len(calls) == blocks:
            raise Stop
        calls.append(1)
        return encode(texts)

    return run


def test_corpus_file_streams_the_dataset_texts(tmp_path):
    from harness.data import load_dataset
    from harness.engine.store import CorpusFile

    folder = make_beir(tmp_path)  # gzipped
    corpus = CorpusFile.scan(folder / "corpus.jsonl.gz", scratch=tmp_path / "scratch")
    expected = load_dataset(str(folder)).doc_texts()
    assert corpus.texts(range(len(corpus))) == expected
    assert corpus.texts([5, 0]) == [expected[5], expected[0]] and list(corpus.lengths) == [len(t) for t in expected]


@pytest.mark.parametrize("model", ["pico", "muvera-pico"])
def test_stream_corpus_run_equals_in_memory_run(model, models_dir, small_beir, tmp_path, capsys, monkeypatch):
    """``harness run --stream-corpus``: same rankings and metrics as the in-memory run, the texts read
    back from disk and the vectors (dense, or MUVERA FDEs made block by block from the token
    matrices) memory-mapped; the decompressed copy is reused."""
    from harness.data import load_dataset

    monkeypatch.setenv("HARNESS_MODELS_DIR", str(models_dir))

    def run(*extra: str) -> tuple[dict, str]:
        results = tmp_path / ("stream" if extra else "memory")
        code, out, err = run_cli(["run", "--model", model, "--datasets", str(small_beir), "--top-k", "20",
                                  "--results-dir", str(results), "--cache-dir", str(tmp_path / f"cache-{results.name}"),
                                  "--save-run", "--json", *extra], capsys)
        assert code == 0, err
        result = json.loads(out.strip().splitlines()[-1])
        return result, (results / result["condition"] / "tiny.trec").read_text()

    memory, memory_run = run()
    streamed, streamed_run = run("--stream-corpus")
    assert streamed["metrics"] == pytest.approx(memory["metrics"], abs=1e-9)
    if model == "pico":  # one-thread batches: the same floats
        assert streamed_run == memory_run
    else:  # FDEs made per block: the same ranking, scores equal to float32 rounding
        assert [line.split()[:4] for line in streamed_run.splitlines()] == [
            line.split()[:4] for line in memory_run.splitlines()]
    assert streamed["dataset_info"] == memory["dataset_info"] and streamed["counts"] == memory["counts"]
    assert streamed["method"]["execution"]["corpus"] == "streamed from disk"
    copies = list((tmp_path / "cache-stream" / "corpora").glob("corpus-*.jsonl"))
    assert len(copies) == 1 and list((tmp_path / "cache-stream").rglob("*.npy"))
    again = load_dataset(str(small_beir), stream=True, scratch=tmp_path / "cache-stream" / "corpora")
    assert again.corpus.path == copies[0] and again.titles == [] and len(again.doc_ids) == len(again.corpus)


def test_stream_corpus_refuses_what_needs_texts_and_checks_every_line(models_dir, small_beir, tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.setenv("HARNESS_MODELS_DIR", str(models_dir))
    for args in (["--model", "bm25"], ["--model", "colbert-pico"], ["--model", "pico", "--rerank", "colbert-pico"],
                 ["--model", "muvera-pico", "--rerank", "colbert-pico"]):
        code, _, err = run_cli(["run", *args, "--stream-corpus", "--datasets", str(small_beir), "--no-save",
                                "--cache-dir", str(tmp_path / "cache")], capsys)
        assert code == 2 and err.count("\n") == 1 and err.startswith("error: --stream-corpus serves dense models"), err
    docs = [{"_id": "d0", "text": "one"}, {"_id": "d1", "text": "two"}, {"_id": "d0", "text": "again"}]
    folder = make_beir(tmp_path / "bad", docs=docs, queries=[{"_id": "q0", "text": "one"}], qrels=[("q0", "d1", 1)])
    code, _, err = run_cli(["run", "--model", "pico", "--stream-corpus", "--datasets", str(folder), "--no-save",
                            "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 2 and f"{folder / 'corpus.jsonl.gz'}:3: duplicate document id 'd0'" in err


def test_encode_corpus_to_disk_shares_blocks_with_encode_in_blocks(tmp_path, pico):
    from harness.engine.store import CorpusFile, encode_corpus

    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"_id": str(i), "title": "", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    corpus = CorpusFile.scan(path)
    reference, _ = encode_in_blocks(TEXTS, pico.encode_documents, VectorCache(tmp_path / "ref"), PARTS, block_size=8)
    cache = VectorCache(tmp_path / "cache")
    with pytest.raises(Stop):  # a run stopped after 2 of 5 blocks
        encode_in_blocks(TEXTS, _stop_after(pico.encode_documents, 2), cache, PARTS, block_size=8)
    vectors, info = encode_corpus(corpus, pico.encode_documents, cache, PARTS, block_size=8)
    assert isinstance(vectors, np.memmap) and info == {"blocks": 5, "blocks_cached": 2}
    assert np.array_equal(np.asarray(vectors), reference)
    again, info = encode_corpus(corpus, pico.encode_documents, cache, PARTS, block_size=8)
    assert info["blocks_cached"] == 5 and np.array_equal(np.asarray(again), reference)


def test_fdes_go_to_disk_and_search_chunk_by_chunk(tmp_path, models_dir):
    from harness.engine.store import CorpusFile, FDEDocuments, encode_corpus
    from harness.models.colbert import ColBERT
    from harness.models.muvera import FDE, FDEConfig
    from harness.stages import l2_normalise

    model = ColBERT.load(models_dir / "colbert-pico")
    fde = FDE(FDEConfig(), token_dim=model.token_dim)
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"_id": str(i), "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    tokens = functools.partial(model.encode_documents, batch_size=8)
    in_memory = l2_normalise(fde.encode_documents(tokens(TEXTS)))  # what FDEStage computes
    on_disk, _ = encode_corpus(CorpusFile.scan(path), FDEDocuments(tokens, fde, normalise=True),
                               VectorCache(tmp_path / "c"), PARTS, block_size=8)
    assert isinstance(on_disk, np.memmap) and on_disk.shape == (len(TEXTS), fde.dims)
    assert np.allclose(np.asarray(on_disk), in_memory, atol=1e-6)
    queries = l2_normalise(fde.encode_queries(model.encode_queries(["volcano magma", "piano"])))
    ranks = exact.tie_ranks([str(i) for i in range(len(TEXTS))])
    chunked = LocalEngine(max_memory_bytes=fde.dims * 4 * 10 * 2 + 10**6).search(queries, on_disk, 10, ranks)
    assert np.array_equal(chunked[1], exact.search(queries, np.asarray(on_disk), 10, ranks)[1])


# ---------------------------------------------------------------------------------------------
# Ray


@pytest.fixture(scope="module")
def ray_engine():
    pytest.importorskip("ray")
    from harness.engine.ray_engine import RayEngine

    engine = RayEngine(num_cpus=2)
    engine.start()
    yield engine
    engine.close()


def test_ray_vectors_equal_local_and_resume_a_stopped_run(tmp_path, pico, ray_engine):
    reference, _ = encode_in_blocks(TEXTS, pico.encode_documents, VectorCache(tmp_path / "ref"), PARTS, block_size=8)
    cache = VectorCache(tmp_path / "cache")
    with pytest.raises(Stop):  # the local run is stopped after 3 of 5 blocks; Ray finishes it
        encode_in_blocks(TEXTS, _stop_after(pico.encode_documents, 3), cache, PARTS, block_size=8)
    vectors, info = ray_engine.encode_in_blocks(TEXTS, pico.encode_documents, cache, PARTS, block_size=8)
    assert info == {"blocks": 5, "blocks_cached": 3}
    assert np.array_equal(vectors, reference)  # bit for bit
    assert ray_engine.actor_peak_rss_mb  # the actors reported their memory
    fresh, info = ray_engine.encode_in_blocks(TEXTS, pico.encode_documents, VectorCache(tmp_path / "c2"), PARTS,
                                              block_size=8)
    assert info["blocks_cached"] == 0 and np.array_equal(fresh, reference)


def test_ray_colbert_tokens_equal_local(tmp_path, models_dir, ray_engine):
    from harness.models.colbert import ColBERT

    model = ColBERT.load(models_dir / "colbert-pico")
    encode = functools.partial(model.encode_documents, batch_size=4)
    local, _ = encode_in_blocks(TEXTS, encode, VectorCache(tmp_path / "a"), PARTS, block_size=16)
    remote, info = ray_engine.encode_in_blocks(TEXTS, encode, VectorCache(tmp_path / "b"), PARTS, block_size=16)
    assert info["blocks"] == 3 and len(local) == len(remote) == len(TEXTS)
    assert all(np.array_equal(a, b) for a, b in zip(local, remote))


def test_ray_search_equals_exact(vectors, ray_engine):
    queries, docs, ranks = vectors
    whole = exact.search(queries, docs, 100, ranks)
    ray_result = ray_engine.search(queries, docs, 100, ranks)
    assert np.array_equal(whole[0], ray_result[0]) and np.array_equal(whole[1], ray_result[1])
    budget = ray_engine.max_memory_bytes
    try:  # under a budget each task searches its shard chunk by chunk: the same result
        ray_engine.max_memory_bytes = 4 * docs.shape[1] * 300 + 4 * len(queries) * docs.shape[1] + 48 * len(queries) * 100
        chunked = ray_engine.search(queries, docs, 100, ranks)
    finally:
        ray_engine.max_memory_bytes = budget
    assert np.array_equal(whole[0], chunked[0]) and np.array_equal(whole[1], chunked[1])


def test_ray_encode_corpus_from_file(tmp_path, pico, ray_engine):
    from harness.engine.store import CorpusFile, encode_corpus

    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"_id": str(i), "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    reference, _ = encode_in_blocks(TEXTS, pico.encode_documents, VectorCache(tmp_path / "ref"), PARTS, block_size=8)
    vectors, info = encode_corpus(CorpusFile.scan(path), pico.encode_documents, VectorCache(tmp_path / "c"), PARTS,
                                  engine=ray_engine, block_size=8)
    assert info == {"blocks": 5, "blocks_cached": 0} and np.array_equal(np.asarray(vectors), reference)


@pytest.mark.parametrize("args", [["--model", "pico"], ["--model", "colbert-pico"], ["--model", "muvera-pico"],
                                  ["--model", "pico", "--rerank", "colbert-pico", "--rerank-depth", "10"],
                                  ["--model", "pico", "--stream-corpus"], ["--model", "muvera-pico", "--stream-corpus"]])
def test_ray_run_equals_local_run(args, models_dir, small_beir, tmp_path, capsys, monkeypatch, ray_engine):
    monkeypatch.setenv("HARNESS_MODELS_DIR", str(models_dir))

    def run(engine: str) -> tuple[dict, str]:
        results = tmp_path / engine
        code, out, err = run_cli(["run", *args, "--engine", engine, "--datasets", str(small_beir), "--top-k", "20",
                                  "--results-dir", str(results), "--cache-dir", str(tmp_path / f"cache-{engine}"),
                                  "--save-run", "--json"], capsys)
        assert code == 0, err
        result = json.loads(out.strip().splitlines()[-1])
        return result, (results / result["condition"] / "tiny.trec").read_text()

    local, local_run = run("local")
    remote, remote_run = run("ray")
    assert remote["metrics"] == local["metrics"] and remote_run == local_run  # rankings and scores
    assert remote["condition"] == local["condition"]
    execution = remote["method"]["execution"]
    assert execution["engine"] == "ray" and execution["device"] == "cpu" and execution["workers"] == 2
    assert execution["ray"] == remote["environment"]["packages"]["ray"]
    corpus = "streamed from disk" if "--stream-corpus" in args else "in memory"
    assert local["method"]["execution"] == {"engine": "local", "device": "cpu", "corpus": corpus}


def test_ray_rerank_and_maxsim_search_equal_local(ray_engine):
    rng = np.random.default_rng(9)
    docs = [rng.normal(size=(int(rng.integers(0, 20)), 16)).astype(np.float32) for _ in range(300)]
    queries = [rng.normal(size=(8, 16)).astype(np.float32) for _ in range(9)]
    candidates = rng.integers(-1, 300, size=(9, 40))
    assert np.array_equal(ray_engine.rerank(queries, docs, candidates), maxsim.rerank(queries, docs, candidates))
    ranks = exact.tie_ranks([f"x{i}" for i in range(len(docs))])
    whole = maxsim.search(queries, docs, 25, tie_ranks=ranks)
    remote = ray_engine.maxsim_search(queries, docs, 25, 1 << 30, ranks)
    assert np.array_equal(whole[0], remote[0]) and np.array_equal(whole[1], remote[1])


def test_ray_run_from_the_command_line_prints_no_warnings(small_beir, tmp_path):
    """A whole ``harness run --engine ray`` in a fresh process: the result line and no Ray chatter
    (Ray's notice that it chose token authentication for the local runtime is dropped)."""
    import subprocess
    import sys

    from conftest import REPO, harness_subprocess_env

    pytest.importorskip("ray")
    env = harness_subprocess_env(tmp_path)
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--model", "bm25", "--engine", "ray",
                           "--datasets", str(small_beir), "--results-dir", str(tmp_path / "results")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ndcg@10" in done.stdout
    assert "WARNING" not in done.stderr and "Token authentication" not in done.stderr, done.stderr[-2000:]
