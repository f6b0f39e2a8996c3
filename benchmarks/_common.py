"""Helpers shared by the benchmark scripts: subprocess sides, peak RSS, machine facts, data subsets.

Every benchmark runs each side in its own Python subprocess (``run_side``) so that each side's
wall time and peak RSS (``ru_maxrss`` of that process) are its own. A side prints one JSON line
last on stdout; the parent collects them.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's harness, installed or not (the sides get it via PYTHONPATH)

from harness.models.runtime import cpu_threads  # noqa: E402  (the CPUs this process may use)


def peak_rss_mb() -> float:
    """Peak resident set size of this process, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(result: dict) -> None:
    """Print a side's result as the last stdout line (with its peak RSS and load average)."""
    result = {**result, "peak_rss_mb": round(peak_rss_mb(), 1), "load_end": round(os.getloadavg()[0], 2)}
    print(json.dumps(result), flush=True)


def run_side(script: str, args: list[str], env: dict | None = None) -> dict:
    """Run ``python script args`` (a side) and return its JSON result; stderr is passed through on failure."""
    command = [sys.executable, script, *args]
    environment = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH")]))
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"side failed ({done.returncode}): {' '.join(command)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cpuinfo(field: str) -> str | None:
    """The value of ``field`` for the first CPU in /proc/cpuinfo; None when unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_clock_ghz() -> float:
    """The clock /proc/cpuinfo reports (``cpu MHz`` of the first CPU), GHz; 0 if unknown."""
    mhz = _cpuinfo("cpu MHz")
    return float(mhz) / 1000 if mhz else 0.0


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    return set((_cpuinfo("flags") or "").split())


def machine_line() -> str:
    from harness.provenance import cpu

    load = os.getloadavg()
    return (
        f"machine: {cpu_model()}, {cpu_threads()} CPUs, {cpu_clock_ghz():.3f} GHz (/proc/cpuinfo), "
        f"ISA {' '.join(cpu()['isa']) or 'unknown'}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, python {platform.python_version()}"
    )


def fp32_peak_gflops(cores: int | None = None, clock_ghz: float | None = None) -> tuple[float, str]:
    """This CPU's fp32 FMA peak and the formula: cores x SIMD lanes x FMA units x 2 flops x GHz.

    Lanes: 16 with AVX-512, 8 with AVX2 (256-bit / 32-bit floats). Two FMA units per core (Zen 2/3/4
    and Intel since Haswell).
    """
    cores = cores or cpu_threads()
    clock = clock_ghz or cpu_clock_ghz()
    lanes = 16 if "avx512f" in cpu_flags() else 8
    peak = cores * lanes * 2 * 2 * clock
    return peak, f"{cores} cores x {lanes} fp32 lanes x 2 FMA units x 2 flops x {clock:.3f} GHz = {peak:.1f} GFLOP/s"


def measured_fp32_gflops(threads: int | None = None, size: int = 2048, repeats: int = 10) -> tuple[float, str]:
    """The fp32 rate this CPU demonstrably reaches: best of ``repeats`` (size x size) @ (size x size)
    torch (MKL) sgemm products on ``threads`` intra-op threads, GFLOP/s. A CPU that boosts above the
    clock /proc/cpuinfo reports beats :func:`fp32_peak_gflops` here, and then this is the honest peak."""
    import time

    import torch

    threads = threads or cpu_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = float("inf")
    try:
        torch.mm(a, b)  # warm-up: thread pool, page faults, clock ramp
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    rate = 2 * size**3 / best / 1e9
    return rate, f"best of {repeats} {size}^3 sgemm (torch/MKL) on {threads} threads = {rate:.1f} GFLOP/s"


def subset_beir(source: Path, target: Path, max_docs: int, split: str = "test") -> Path:
    """Write a small BEIR folder: the first ``max_docs`` documents plus every judged document of the
    first queries whose judged documents fit, and those queries. For quick runs of a benchmark."""
    def read_jsonl(stem: str) -> list[dict]:
        for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
            path = source / name
            if path.is_file():
                opener = gzip.open if name.endswith(".gz") else open
                with opener(path, "rt", encoding="utf-8") as handle:
                    return [json.loads(line) for line in handle if line.strip()]
        raise SystemExit(f"{source}: no {stem}.jsonl[.gz]")

    corpus = read_jsonl("corpus")
    queries = {q["_id"]: q for q in read_jsonl("queries")}
    rows = (source / "qrels" / f"{split}.tsv").read_text().splitlines()
    header, qrels = rows[0], [r.split("\t") for r in rows[1:] if r.strip()]
    keep_docs = {d["_id"] for d in corpus[: max_docs // 2]}
    by_query: dict[str, list[list[str]]] = {}
    for row in qrels:
        by_query.setdefault(row[0], []).append(row)
    kept_rows = []
    for qid, judged in by_query.items():
        docs = {r[1] for r in judged}
        if len(keep_docs | docs) > max_docs:
            continue
        keep_docs |= docs
        kept_rows += judged
    for d in corpus:  # fill up to max_docs with unjudged documents
        if len(keep_docs) >= max_docs:
            break
        keep_docs.add(d["_id"])
    target.mkdir(parents=True, exist_ok=True)
    (target / "qrels").mkdir(exist_ok=True)
    with open(target / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for d in corpus:
            if d["_id"] in keep_docs:
                handle.write(json.dumps(d) + "\n")
    kept_queries = list(dict.fromkeys(r[0] for r in kept_rows))
    with open(target / "queries.jsonl", "w", encoding="utf-8") as handle:
        for qid in kept_queries:
            handle.write(json.dumps(queries[qid]) + "\n")
    (target / "qrels" / f"{split}.tsv").write_text("\n".join([header, *("\t".join(r) for r in kept_rows)]) + "\n")
    return target


def add_data_arguments(parser, sides: tuple[str, ...]) -> None:
    """Options of the scripts that time a whole retrieval run: model, data, batch size, subset, and
    the hidden ``--side`` / ``--cache-dir`` the parent passes to each side's subprocess."""
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-docs", type=int, default=0, help="run on a subset of this many documents (quick check)")
    parser.add_argument("--side", choices=sides, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)


def data_argv(args, scratch: str) -> list[str]:
    """The side arguments naming model and data; with ``--max-docs`` the data is a subset written to
    ``scratch`` (:func:`subset_beir`)."""
    dataset, data_dir = args.dataset, args.data_dir
    if args.max_docs:
        from harness.data import resolve_dataset_path

        source = resolve_dataset_path(args.dataset, Path(args.data_dir) if args.data_dir else None)
        dataset = str(subset_beir(source, Path(scratch) / f"{Path(source).name}-{args.max_docs}", args.max_docs))
        data_dir = None
    argv = ["--model", args.model, "--dataset", dataset, "--batch-size", str(args.batch_size)]
    return argv + (["--data-dir", data_dir] if data_dir else [])


def ran_as_side(args, sides: dict) -> bool:
    """In a side's subprocess (``--side NAME``): run ``sides[NAME](args)``, print its result and
    return True. In the parent: print the machine line and return False."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.side:
        emit(sides[args.side](args))
        return True
    print(machine_line(), flush=True)
    return False
