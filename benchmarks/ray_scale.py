"""Encoding throughput and memory as the corpus grows: local engine vs Ray (2 actors), BertHash pico.

A synthetic corpus of ``--docs`` documents (comma-separated sizes) is built from the sentences of
the real SciFact and NFCorpus corpora (each document: 1-3 sentences drawn with a fixed seed) and
written as ``corpus.jsonl``. Each (engine, size) runs in its own subprocess on an empty vector
cache: :class:`harness.engine.store.CorpusFile` streams the corpus, :func:`encode_corpus` encodes
it through the cache blocks into a memory-mapped ``.npy``, and 1,000 of the sentences are then
searched as queries (exact top-100, chunked under a 128 MiB budget). Printed per run: docs/s of
encoding, search seconds, and peak RSS (``VmHWM``) of every process: the driver, each Ray actor
(reported by the actor itself) and Ray's own processes (raylet, GCS, workers: the driver's
descendants). ``vectors MiB`` is the size of the searched float32 vectors (n x 80 x 4 bytes);
``driver - vectors`` subtracts it (``--model minilm``: 384-d; its row is for the cost model), the figure issue 19 asks to stay flat.

    nice -n 19 python benchmarks/ray_scale.py --docs 100000,300000 --engines local,ray
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, emit, machine_line, run_side  # noqa: F401

QUERIES = 1000
SEARCH_BUDGET = 128 * 2**20  # --max-memory of both engines' searches: chunks (local) or chunks within each shard task (Ray)


def _sentences(data_dir: Path) -> list[str]:
    from harness.data import load_dataset

    out = []
    for name in ("scifact", "nfcorpus"):
        for text in load_dataset(str(data_dir / name)).texts:
            out += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if 20 <= len(s.strip()) <= 400]
    return out


def build_corpus(path: Path, n: int, sentences: list[str]) -> None:
    rng = random.Random(19)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(n):
            text = " ".join(rng.choice(sentences) for _ in range(rng.randint(1, 3)))
            handle.write(json.dumps({"_id": f"s{i}", "title": "", "text": text}) + "\n")


def _descendant_peaks(root: int) -> dict[int, tuple[str, float]]:
    """pid -> (command name, VmHWM MiB) of every live descendant of ``root``."""
    parents, names = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            parents[int(entry.name)] = int(fields.get("PPid", "0").strip())
            hwm = fields.get("VmHWM", "0 kB").split()[0]
            names[int(entry.name)] = (fields.get("Name", "?").strip(), int(hwm) / 1024)
    out, frontier = {}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in out:
                out[child] = names[child]
                frontier.append(child)
    return out


def side(args) -> dict:
    import numpy as np

    from harness.cache import VectorCache
    from harness.engine import LocalEngine
    from harness.engine.store import CorpusFile, encode_corpus
    from harness.models.dense import DenseEncoder
    from harness.stages import DenseEncoderAdapter
    from harness.retrieval import exact

    corpus_path = Path(args.corpus)
    start = time.perf_counter()
    corpus = CorpusFile.scan(corpus_path)
    scan_seconds = time.perf_counter() - start
    from harness import registry

    spec, path = registry.resolve(args.model)
    encoder = DenseEncoderAdapter(DenseEncoder(spec.name, path))
    cache = VectorCache(Path(args.cache_dir))
    parts = {"benchmark": "ray_scale", "corpus": corpus.sha256, "model": encoder.cache_identity()}
    engine = None
    extra = {}
    if args.side == "ray":
        from harness.engine.ray_engine import RayEngine

        engine = RayEngine(num_cpus=2, workers=2, max_memory_bytes=SEARCH_BUDGET)
        engine.start()
    try:
        cpu0, start = time.process_time(), time.perf_counter()
        vectors, info = encode_corpus(corpus, encoder.encode_documents, cache, parts, engine=engine)
        encode_seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        extra["encode_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        queries = encoder.encode_queries(corpus.texts(range(0, len(corpus), max(1, len(corpus) // QUERIES)))[:QUERIES])
        ranks = exact.tie_ranks([f"s{i}" for i in range(len(corpus))])
        start = time.perf_counter()
        searcher = engine or LocalEngine(max_memory_bytes=SEARCH_BUDGET)
        scores, _ = searcher.search(queries, vectors, 100, ranks)
        search_seconds = time.perf_counter() - start
        if engine is not None:
            extra["actor_peak_rss_mb"] = {str(k): round(v, 1) for k, v in engine.actor_peak_rss_mb.items()}
            extra["ray_processes_peak_rss_mb"] = {f"{name}:{pid}": round(mb, 1)
                                                  for pid, (name, mb) in _descendant_peaks(os.getpid()).items()}
    finally:
        if engine is not None:
            engine.close()
    return {"engine": args.side, "model": args.model, "docs": len(corpus), "scan_s": round(scan_seconds, 1),
            "encode_s": round(encode_seconds, 1), "docs_per_s": round(len(corpus) / encode_seconds, 1),
            "driver_cpu_s": round(cpu, 1), "search_s": round(search_seconds, 1),
            "vectors_mb": round(vectors.nbytes / 2**20, 1), "blocks": info, "top1_mean": float(np.mean(scores[:, 0])),
            **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", default="100000,300000,1000000")
    parser.add_argument("--engines", default="local,ray")
    parser.add_argument("--model", default="pico", help="dense model (registry name): pico, or minilm for the cost model")
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "beir"))
    parser.add_argument("--scratch", default=None, help="folder for the synthetic corpora (default: a temporary one)")
    parser.add_argument("--side", choices=("local", "ray"), help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.side:
        emit(side(args))
        return
    print(machine_line(), flush=True)
    sys.path.insert(0, str(REPO))
    sentences = _sentences(Path(args.data_dir))
    print(f"{len(sentences)} sentences from scifact + nfcorpus", flush=True)
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        rows = []
        for n in [int(x) for x in args.docs.split(",")]:
            corpus = Path(scratch) / f"corpus-{n}.jsonl"
            build_corpus(corpus, n, sentences)
            for engine in args.engines.split(","):
                with tempfile.TemporaryDirectory(dir=scratch) as cache:
                    result = run_side(__file__, ["--side", engine, "--corpus", str(corpus), "--cache-dir", cache,
                                                 "--model", args.model])
                print(json.dumps(result), flush=True)
                rows.append(result)
            corpus.unlink()
    print("\nengine | docs | docs/s | driver CPU s | search s | driver peak RSS MiB after encoding | at the end |"
          " vectors MiB | end - vectors | actors' peak RSS MiB | Ray's other processes, peak RSS MiB (sum)")
    for r in rows:
        actors = ", ".join(f"{v:.0f}" for v in r.get("actor_peak_rss_mb", {}).values()) or "-"
        others = sum(r.get("ray_processes_peak_rss_mb", {}).values())
        print(f"{r['engine']} | {r['docs']} | {r['docs_per_s']} | {r['driver_cpu_s']} | {r['search_s']} |"
              f" {r['encode_peak_rss_mb']:.0f} | {r['peak_rss_mb']:.0f} | {r['vectors_mb']:.0f} | {r['peak_rss_mb'] - r['vectors_mb']:.0f} | {actors} |"
              f" {f'{others:.0f}' if others else '-'}")
    for engine in args.engines.split(","):
        mine = [r for r in rows if r["engine"] == engine]
        if len(mine) > 1:
            small, large = mine[0], mine[-1]
            ratio = (large["peak_rss_mb"] - large["vectors_mb"]) / (small["peak_rss_mb"] - small["vectors_mb"])
            print(f"{engine}: driver peak RSS minus vectors, {large['docs']} vs {small['docs']} docs: {ratio:.2f}x")
    by = {(r["engine"], r["docs"]): r for r in rows}
    for n in sorted({r["docs"] for r in rows}):
        if ("local", n) in by and ("ray", n) in by:
            print(f"{n} docs: ray / local docs/s = {by[('ray', n)]['docs_per_s'] / by[('local', n)]['docs_per_s']:.2f}x")


if __name__ == "__main__":
    main()
