"""Interrupted runs: a killed encoding resumes from its finished blocks, bit for bit; a killed
multi-dataset run keeps every result it finished; no half-written file is ever read as valid."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import LIGHT_IMPORT, REPO, harness_subprocess_env, make_beir, run_cli
from harness import fileio
from harness.cache import VectorCache, encode_in_blocks
from harness.results import load_results

# ---------------------------------------------------------------------------------------------
# Block-wise encoding killed mid-way (harness.cache.encode_in_blocks)

TEXTS = [f"text number {i} " + "word " * (i * 7 % 23) for i in range(50)]  # 7 blocks of 8, lengths vary
BLOCK = 8
N_BLOCKS = 7
PARTS = {"vectors": "fake-encoder", "dataset": "fifty-texts", "dtype": "float32", "side": "documents"}

# The encoder, shared by the test process and the killed subprocess: pseudo-random float32 bits
# from each text's sha256 (every mantissa bit matters), dense (n, 16) or ragged [(tokens, 4)].
ENCODER_SOURCE = '''
import hashlib
import numpy as np

def fake_vectors(text, rows, dim):
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)

def fake_encode(block, ragged):
    if ragged:
        return [fake_vectors(t, 1 + len(t.split()) % 5, 4) for t in block]
    return np.concatenate([fake_vectors(t, 1, 16) for t in block])
'''
_namespace: dict = {}
exec(ENCODER_SOURCE, _namespace)
fake_encode = _namespace["fake_encode"]

# The subprocesses load harness.* without running harness/__init__ (which imports transformers,
# ~6 s of CPU) through conftest.LIGHT_IMPORT: the code under test is the real module.
KILLED_ENCODE = textwrap.dedent('''
    import json, os, signal, sys, types
    {light_import}
    from harness import fileio
    from harness.cache import VectorCache, encode_in_blocks
    {encoder}
    cache_dir, ragged, kill_at, where = sys.argv[1], sys.argv[2] == "ragged", int(sys.argv[3]), sys.argv[4]
    calls = 0
    def encode(block):
        global calls
        if where == "encode" and calls == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # dies inside encoding block number kill_at
        calls += 1
        print("encoded", calls, flush=True)
        return fake_encode(block, ragged)
    if where == "rename":  # dies after the block's temp file is written, before its rename
        real_replace, renames = os.replace, [0]
        def replace(src, dst):
            if renames[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            renames[0] += 1
            real_replace(src, dst)
        fileio.os = types.SimpleNamespace(**{{**vars(os), "replace": replace}})
    encode_in_blocks({texts!r}, encode, VectorCache(cache_dir), {parts!r}, block_size={block})
    print("finished", flush=True)
''')


def run_killed_encode(cache_dir: Path, ragged: bool, kill_at: int, where: str) -> subprocess.CompletedProcess:
    script = KILLED_ENCODE.format(light_import=LIGHT_IMPORT.strip(), encoder=ENCODER_SOURCE,
                                  texts=TEXTS, parts=PARTS, block=BLOCK)
    return subprocess.run([sys.executable, "-c", script, str(cache_dir), "ragged" if ragged else "dense", str(kill_at), where],
                          capture_output=True, text=True, timeout=120)


def encode_counting(cache_dir: Path, ragged: bool):
    calls = []

    def encode(block):
        calls.append(len(block))
        return fake_encode(block, ragged)

    vectors, info = encode_in_blocks(TEXTS, encode, VectorCache(cache_dir), PARTS, block_size=BLOCK)
    return vectors, info, len(calls)


def same_bits(a, b) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(same_bits(x, y) for x, y in zip(a, b))
    return a.dtype == b.dtype == np.float32 and a.shape == b.shape and a.tobytes() == b.tobytes()


def cache_files(cache_dir: Path) -> tuple[list[Path], list[Path]]:
    """(entries the cache can read, other files): entries are <2 hex>/<64 hex>.npz."""
    entries, other = [], []
    for path in sorted(p for p in cache_dir.rglob("*") if p.is_file()):
        ok = re.fullmatch(r"[0-9a-f]{64}\.npz", path.name) and path.parent.name == path.name[:2]
        (entries if ok else other).append(path)
    return entries, other


@pytest.fixture(scope="module", params=["dense", "ragged"])
def reference(request, tmp_path_factory):
    """An uninterrupted run: its vectors, and that it encoded every block once."""
    ragged = request.param == "ragged"
    vectors, info, calls = encode_counting(tmp_path_factory.mktemp("ref-cache"), ragged)
    assert calls == N_BLOCKS and info == {"blocks": N_BLOCKS, "blocks_cached": 0}
    return ragged, vectors


def test_killed_encoding_resumes_from_finished_blocks_bit_for_bit(tmp_path, reference):
    ragged, expected = reference
    cache_dir = tmp_path / "cache"
    proc = run_killed_encode(cache_dir, ragged, kill_at=3, where="encode")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.split("\n").count("finished") == 0 and "encoded 3" in proc.stdout

    entries, other = cache_files(cache_dir)
    assert len(entries) == 3 and other == []  # three finished blocks, nothing half-written
    cache = VectorCache(cache_dir)
    assert all(cache.load(p.stem) is not None for p in entries)

    vectors, info, calls = encode_counting(cache_dir, ragged)
    assert info == {"blocks": N_BLOCKS, "blocks_cached": 3}
    assert calls == N_BLOCKS - 3  # the finished blocks were reused, not encoded again
    assert same_bits(vectors, expected)
    entries, other = cache_files(cache_dir)
    assert len(entries) == 1 and other == []  # block entries replaced by the whole entry

    vectors, info, calls = encode_counting(cache_dir, ragged)  # and a third run encodes nothing
    assert calls == 0 and info["blocks_cached"] == N_BLOCKS and same_bits(vectors, expected)


def test_killed_between_write_and_rename_leaves_no_readable_entry(tmp_path, reference):
    ragged, expected = reference
    cache_dir = tmp_path / "cache"
    proc = run_killed_encode(cache_dir, ragged, kill_at=2, where="rename")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "encoded 3" in proc.stdout  # the third block was encoded and written, never renamed

    entries, other = cache_files(cache_dir)
    assert len(entries) == 2
    assert len(other) == 1 and other[0].name.startswith(".") and other[0].name.endswith(".tmp")
    assert VectorCache(cache_dir).size_bytes() == sum(p.stat().st_size for p in entries)  # the temp is no entry

    vectors, info, calls = encode_counting(cache_dir, ragged)
    assert info["blocks_cached"] == 2 and calls == N_BLOCKS - 2  # the unrenamed block is encoded again
    assert same_bits(vectors, expected)


def test_a_damaged_entry_is_recomputed_not_trusted(tmp_path, reference):
    ragged, expected = reference
    cache_dir = tmp_path / "cache"
    run_killed_encode(cache_dir, ragged, kill_at=4, where="encode")
    entries, _ = cache_files(cache_dir)
    assert len(entries) == 4
    entries[0].write_bytes(entries[0].read_bytes()[:100])  # as a non-atomic copy or a full disk would leave it
    vectors, info, calls = encode_counting(cache_dir, ragged)
    assert info["blocks_cached"] == 3 and calls == N_BLOCKS - 3
    assert same_bits(vectors, expected)


def test_resume_is_bit_identical_even_for_a_float64_encoder(tmp_path):
    def encode(block):
        return fake_encode(block, False).astype(np.float64) / 3.0

    first, _ = encode_in_blocks(TEXTS, encode, VectorCache(tmp_path), PARTS, block_size=BLOCK)
    again, info = encode_in_blocks(TEXTS, encode, VectorCache(tmp_path), PARTS, block_size=BLOCK)
    assert info["blocks_cached"] == N_BLOCKS
    assert first.dtype == again.dtype and first.tobytes() == again.tobytes()


# ---------------------------------------------------------------------------------------------
# Multi-dataset CLI runs interrupted after the first dataset


def _two_datasets(tmp_path: Path) -> tuple[Path, Path]:
    a = make_beir(tmp_path / "data", name="alpha")
    b = make_beir(tmp_path / "data", name="beta", qrels=[("q1", "doc5", 1), ("q1", "doc6", 2), ("q2", "doc10", 1)])
    return a, b


def _stable(result: dict) -> dict:
    return {k: result[k] for k in ("condition", "dataset", "metrics", "counts", "n_queries", "per_query")}


def _results_args(tmp_path: Path, datasets: str) -> list[str]:
    return ["run", "--model", "bm25", "--datasets", datasets, "--results-dir", str(tmp_path / "results"),
            "--cache-dir", str(tmp_path / "cache"), "--save-run"]


KILLED_CLI = LIGHT_IMPORT + textwrap.dedent('''
    import os, signal, sys
    import harness.data
    real_load = harness.data.load_dataset
    def load_dataset(name, *args, **kwargs):
        if name.endswith("beta"):  # the first dataset's result is written by now
            os.kill(os.getpid(), signal.SIGKILL)
        return real_load(name, *args, **kwargs)
    harness.data.load_dataset = load_dataset
    from harness.cli import main
    sys.exit(main(sys.argv[1:]))
''')


def test_sigkill_after_first_dataset_keeps_its_result_and_rerun_matches(tmp_path, capsys):
    a, b = _two_datasets(tmp_path)
    proc = subprocess.run([sys.executable, "-c", KILLED_CLI, *_results_args(tmp_path, f"{a},{b}")],
                          cwd=REPO, env=harness_subprocess_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    folder = tmp_path / "results" / "bm25"
    assert sorted(p.name for p in folder.iterdir()) == ["alpha.json", "alpha.trec"]  # whole files only, no temp
    killed = load_results(tmp_path / "results")
    assert list(killed) == [("bm25", "alpha")]
    killed_run = (folder / "alpha.trec").read_bytes()

    code, _, err = run_cli(_results_args(tmp_path, f"{a},{b}"), capsys)  # rerun the same command
    assert code == 0, err
    rerun = load_results(tmp_path / "results")
    assert set(rerun) == {("bm25", "alpha"), ("bm25", "beta")}
    assert _stable(rerun[("bm25", "alpha")]) == _stable(killed[("bm25", "alpha")])
    assert (folder / "alpha.trec").read_bytes() == killed_run


def test_corrupt_second_dataset_keeps_the_first_result(tmp_path, capsys):
    a, b = _two_datasets(tmp_path)
    (b / "corpus.jsonl.gz").write_bytes((b / "corpus.jsonl.gz").read_bytes()[:40])
    code, out, err = run_cli(_results_args(tmp_path, f"{a},{b}"), capsys)
    assert code == 2 and "Traceback" not in err
    last = re.split(r"[\r\n]+", err.strip())[-1]  # after dataset alpha's progress bars
    assert last.startswith(f"error: {b / 'corpus.jsonl.gz'}:1: ") and err.count("error:") == 1
    first = load_results(tmp_path / "results")
    assert list(first) == [("bm25", "alpha")]
    assert "alpha" in out  # the finished dataset was reported before the failure

    make_beir(tmp_path / "data", name="beta", qrels=[("q1", "doc5", 1), ("q1", "doc6", 2), ("q2", "doc10", 1)])
    assert run_cli(_results_args(tmp_path, f"{a},{b}"), capsys)[0] == 0
    again = load_results(tmp_path / "results")
    assert _stable(again[("bm25", "alpha")]) == _stable(first[("bm25", "alpha")])


def test_ctrl_c_after_first_dataset(tmp_path, capsys, monkeypatch):
    import harness.data

    a, b = _two_datasets(tmp_path)
    real_load = harness.data.load_dataset

    def load_dataset(name, *args, **kwargs):
        if name.endswith("beta"):
            raise KeyboardInterrupt
        return real_load(name, *args, **kwargs)

    monkeypatch.setattr(harness.data, "load_dataset", load_dataset)
    code, _, err = run_cli(_results_args(tmp_path, f"{a},{b}"), capsys)
    assert code == 130 and "rerun the same command to resume" in err and "Traceback" not in err
    assert list(load_results(tmp_path / "results")) == [("bm25", "alpha")]


def test_interrupted_result_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "results" / "bm25" / "alpha.json"
    old = {"condition": "bm25", "dataset": "alpha", "metrics": {"ndcg@10": 0.5}}
    fileio.atomic_write_json(path, old)

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fileio.atomic_write_json(path, {**old, "metrics": {"ndcg@10": 0.9}})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == old
    assert [p.name for p in path.parent.iterdir()] == ["alpha.json"]  # the temp file was removed


def test_temp_file_left_by_a_killed_writer_is_never_read(tmp_path):
    """What SIGKILL between write and rename leaves (a hidden *.tmp) is invisible to readers."""
    folder = tmp_path / "results" / "bm25"
    fileio.atomic_write_json(folder / "alpha.json", {"condition": "bm25", "dataset": "alpha", "metrics": {}})
    (folder / ".beta.json.k2j4x.tmp").write_text('{"condition": "bm25", "dataset": "beta", "metr')
    assert list(load_results(tmp_path / "results")) == [("bm25", "alpha")]
