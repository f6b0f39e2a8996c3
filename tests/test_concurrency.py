"""Concurrent runs: two processes on one results folder (or one cache) both succeed, and a reader
never sees a half-written file (every write is temp file + rename)."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np

from conftest import LIGHT_IMPORT, make_beir, start_harness
from harness.cache import VectorCache, encode_in_blocks
from harness.fileio import atomic_write_json
from harness.results import load_results, read_result

# Subprocesses skip harness/__init__ (transformers) with LIGHT_IMPORT; the modules under test are the real ones.
STUB = LIGHT_IMPORT


def _payload(writer: int, version: int) -> dict:
    """A result-shaped JSON whose size and content depend on (writer, version): a torn read shows."""
    filler = f"w{writer}v{version}-" * (20_000 + 97 * version)
    return {"condition": "bm25", "dataset": "alpha", "metrics": {"ndcg@10": version / 1000}, "writer": writer,
            "version": version, "filler": filler, "check": len(filler)}


def _assert_whole(result: dict) -> None:
    assert result == _payload(result["writer"], result["version"])


def test_two_cli_runs_share_a_results_folder(tmp_path, harness_env):
    a = make_beir(tmp_path / "data", name="alpha")
    b = make_beir(tmp_path / "data", name="beta", qrels=[("q1", "doc5", 1), ("q1", "doc6", 2), ("q2", "doc10", 1)])
    results = tmp_path / "results"
    common = ["run", "--model", "bm25", "--results-dir", str(results), "--save-run", "--json"]
    procs = [start_harness([*common, "--datasets", f"{a},{b}"], harness_env, light=True),
             start_harness([*common, "--datasets", f"{b},{a}"], harness_env, light=True)]

    reads, seen = 0, set()
    while any(p.poll() is None for p in procs):  # read everything, all the time, while they write
        for key, result in load_results(results).items():  # raises on any half-written file
            assert "metrics" in result and "per_query" in result
            seen.add(key)
        reads += 1
        time.sleep(0.02)
    outputs = [p.communicate() for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    assert reads > 0

    printed = [{(r["dataset"]): r for r in map(json.loads, out.strip().splitlines())} for out, _ in outputs]
    stored = load_results(results)
    assert set(stored) == {("bm25", "alpha"), ("bm25", "beta")}
    for name in ("alpha", "beta"):
        assert printed[0][name]["metrics"] == printed[1][name]["metrics"] == stored[("bm25", name)]["metrics"]
        run_lines = (results / "bm25" / f"{name}.trec").read_text().splitlines()
        assert run_lines and all(len(line.split()) == 6 for line in run_lines)
    assert sorted(p.name for p in (results / "bm25").iterdir()) == ["alpha.json", "alpha.trec", "beta.json", "beta.trec"]


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    from harness.fileio import atomic_write_bytes

    umask = os.umask(0)
    os.umask(umask)
    atomic_write_bytes(tmp_path / "result.json", b"{}")
    assert (tmp_path / "result.json").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0o600


def test_atomic_write_json_under_hammering_reads_threads(tmp_path):
    path = tmp_path / "results" / "bm25" / "alpha.json"
    atomic_write_json(path, _payload(0, 0))
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        try:
            for version in range(1, 80):
                atomic_write_json(path, _payload(index, version))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader(counts: list[int]) -> None:
        while not stop.is_set():
            try:
                _assert_whole(read_result(path))
                counts[0] += 1
            except BaseException as exc:
                errors.append(exc)
                return

    counts = [0]
    read_thread = threading.Thread(target=reader, args=(counts,))
    read_thread.start()
    writers = [threading.Thread(target=writer, args=(i,)) for i in (1, 2)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    read_thread.join()
    assert errors == []
    assert counts[0] > 0
    _assert_whole(read_result(path))
    assert [p.name for p in path.parent.iterdir()] == ["alpha.json"]  # no temp file left


WRITER = STUB + textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from harness.fileio import atomic_write_json
    path, index, go = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    while not go.exists():
        time.sleep(0.001)
    for version in range(1, 60):
        atomic_write_json(path, _payload(index, version))
''')


def test_processes_rewriting_one_result_file_while_it_is_read(tmp_path):
    results = tmp_path / "results"
    path = results / "bm25" / "alpha.json"
    atomic_write_json(path, _payload(0, 0))
    go = tmp_path / "go"
    script = inspect.getsource(_payload) + WRITER  # the writers build the same payloads as _assert_whole checks
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), str(i), str(go)], stderr=subprocess.PIPE, text=True)
             for i in (1, 2)]
    time.sleep(0.3)
    go.touch()
    reads = 0
    while True:  # read at least once, and on until both writers are done
        running = any(p.poll() is None for p in procs)
        _assert_whole(load_results(results)[("bm25", "alpha")])  # load_results raises on a torn file
        reads += 1
        if not running:
            break
    for proc in procs:
        assert proc.wait() == 0, proc.stderr.read()
    assert reads > 0
    _assert_whole(read_result(path))
    assert [p.name for p in path.parent.iterdir()] == ["alpha.json"]


ENCODER = STUB + textwrap.dedent('''
    import sys, time
    from pathlib import Path
    import numpy as np
    from harness.cache import VectorCache, encode_in_blocks
    cache_dir, out, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    texts = [f"text {i} " * (1 + i % 9) for i in range(40)]
    def encode(block):
        time.sleep(0.03)  # slow enough for the two processes to interleave their blocks
        return np.array([[len(t), sum(map(ord, t)) % 97, i] for i, t in enumerate(block)], dtype=np.float32)
    while not go.exists():
        time.sleep(0.001)
    vectors, info = encode_in_blocks(texts, encode, VectorCache(cache_dir), {"k": "shared"}, block_size=4)
    np.save(out, vectors)
''')


def test_two_processes_encoding_into_one_cache(tmp_path):
    cache_dir, go = tmp_path / "cache", tmp_path / "go"
    outs = [tmp_path / f"out{i}.npy" for i in (1, 2)]
    procs = [subprocess.Popen([sys.executable, "-c", ENCODER, str(cache_dir), str(out), str(go)],
                              stderr=subprocess.PIPE, text=True) for out in outs]
    time.sleep(0.3)
    go.touch()
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    first, second = (np.load(out) for out in outs)
    assert first.tobytes() == second.tobytes()
    entries = [p for p in cache_dir.rglob("*") if p.is_file()]
    assert len(entries) == 1 and entries[0].suffix == ".npz"  # the whole entry; blocks and temps gone
    texts = [f"text {i} " * (1 + i % 9) for i in range(40)]
    cached, info = encode_in_blocks(texts, lambda block: 1 / 0, VectorCache(cache_dir), {"k": "shared"}, block_size=4)
    assert info["blocks_cached"] == info["blocks"] == 10 and cached.tobytes() == first.tobytes()
