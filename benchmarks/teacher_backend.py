"""The training teacher (all-MiniLM-L6-v2 at ``max_len`` 128, ``harness.train.teacher.Teacher``) on
its torch backend (sentence-transformers ``encode``, the default) vs its onnx backend (config
``[teacher] backend = "onnx"``), side by side, each in its own subprocess, on the first ``--docs``
documents of a dataset. Prints wall and CPU seconds, the speed-ups and the minimum cosine between
the two sides' vectors. The ONNX side's time includes exporting the graph (a fresh cache).

    python benchmarks/teacher_backend.py --docs 2000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ran_as_side, run_side  # noqa: E402

BACKENDS = ("torch", "onnx")


def side(args) -> dict:
    import numpy as np

    from harness.data import load_dataset
    from harness.train.teacher import Teacher

    texts = load_dataset(args.dataset, data_dir=args.data_dir).doc_texts()[: args.docs]
    start, cpu = time.perf_counter(), time.process_time()
    teacher = Teacher(max_len=args.max_len, cache_dir=Path(args.scratch) / args.side, backend=args.side)
    vectors = np.concatenate([teacher._encode_raw(texts[i : i + 1024]) for i in range(0, len(texts), 1024)])
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    np.save(Path(args.scratch) / f"{args.side}.npy", vectors)
    return {"backend": args.side, "docs": len(texts), "seconds": seconds, "cpu_seconds": cpu_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--side", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if ran_as_side(args, dict.fromkeys(BACKENDS, side)):
        return
    import numpy as np

    with tempfile.TemporaryDirectory() as scratch:
        rows = []
        for backend in BACKENDS:
            argv = ["--side", backend, "--dataset", args.dataset, "--docs", str(args.docs), "--max-len", str(args.max_len),
                    "--scratch", scratch] + (["--data-dir", args.data_dir] if args.data_dir else [])
            rows.append(run_side(__file__, argv))
            print(f"  done: {backend} {rows[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
        a, b = (np.load(Path(scratch) / f"{r['backend']}.npy") for r in rows)
        cosine = float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())
    torch_side, onnx_side = rows
    print(f"teacher MiniLM, max_len {args.max_len}, {torch_side['docs']} {args.dataset} documents")
    for r in rows:
        print(f"{r['backend']:<6} {r['seconds']:8.1f} s wall {r['cpu_seconds']:8.1f} s CPU {r['peak_rss_mb']:8.0f} MB peak RSS")
    print(f"onnx vs torch: {torch_side['seconds'] / onnx_side['seconds']:.2f}x wall,"
          f" {torch_side['cpu_seconds'] / onnx_side['cpu_seconds']:.2f}x CPU; minimum cosine {cosine:.8f}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
