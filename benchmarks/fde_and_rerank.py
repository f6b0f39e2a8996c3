"""MUVERA FDE encoding of a 25K-document corpus, and exact maxsim reranking of 1,000 queries x top 100.

Synthetic ColBERT-pico-shaped data (speed does not depend on the values): documents of 150-250
tokens (uniform, mean ~200) x 80 dims, queries of 32 tokens x 80 dims, every token vector unit
length, float32, seed 0. All documents live in one contiguous float32 buffer and the per-document
matrices are views of it, as the vector cache returns them.

* FDE side: ``harness.models.muvera.FDE(FDEConfig(), 80).encode_documents`` (txtai mode, 20
  repetitions x 32 partitions x 16 = 10,240 dims) over all documents; ``--fde-mode paper`` adds
  the paper's empty-partition filling. Target < 30 s.
* rerank side: ``harness.retrieval.maxsim.rerank`` of 1,000 queries x 100 random candidates each.
  Target < 10 s.

Each side runs in its own subprocess; its peak RSS is compared with the float32 bytes it must hold
at once (FDE: the token vectors + the (25,000 x 10,240) FDE matrix; rerank: the token vectors of
documents and queries + the score matrix). Target: peak RSS <= 1.5 x those bytes.

    python benchmarks/fde_and_rerank.py
    python benchmarks/fde_and_rerank.py --docs 2000 --queries 100     # quick check
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, machine_line, run_side  # noqa: E402

DIM = 80


def synthetic_tokens(n: int, low: int, high: int, seed: int):
    """(list of (n_i, DIM) float32 unit-row views into one buffer, the buffer)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = rng.integers(low, high + 1, size=n)
    buffer = np.empty((int(lengths.sum()), DIM), dtype=np.float32)
    step = 1 << 20
    for start in range(0, len(buffer), step):  # chunked, so no float64 temporary of the whole buffer
        block = buffer[start : start + step]
        rng.standard_normal(out=block, dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return [buffer[offsets[i] : offsets[i + 1]] for i in range(n)], buffer


def side_fde(args) -> dict:
    import torch

    from harness.models.muvera import FDE, FDEConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    docs, buffer = synthetic_tokens(args.docs, 150, 250, seed=0)
    config = FDEConfig() if args.fde_mode == "txtai" else FDEConfig(mode="paper", fill_empty=True)
    fde = FDE(config, DIM)
    start = time.perf_counter()
    out = fde.encode_documents(docs)
    seconds = time.perf_counter() - start
    held = buffer.nbytes + out.nbytes
    return {"side": "fde", "seconds": seconds, "docs": len(docs), "tokens": len(buffer), "dims": out.shape[1],
            "held_bytes": held, "token_bytes": buffer.nbytes, "output_bytes": out.nbytes, "threads": torch.get_num_threads(),
            "mode": args.fde_mode}


def side_rerank(args) -> dict:
    import numpy as np
    import torch

    from harness.retrieval.maxsim import rerank

    if args.threads:
        torch.set_num_threads(args.threads)
    docs, buffer = synthetic_tokens(args.docs, 150, 250, seed=0)
    queries, qbuffer = synthetic_tokens(args.queries, 32, 32, seed=1)
    rng = np.random.default_rng(2)
    candidates = np.stack([rng.choice(args.docs, size=args.depth, replace=False) for _ in range(args.queries)])
    start = time.perf_counter()
    scores = rerank(queries, docs, candidates)
    seconds = time.perf_counter() - start
    # exact check on a few pairs against a plain numpy maxsim
    for q, j in ((0, 0), (args.queries - 1, args.depth - 1)):
        expected = (queries[q] @ docs[candidates[q, j]].T).max(axis=1).sum()
        assert abs(float(scores[q, j]) - float(expected)) < 1e-3 * max(1.0, abs(float(expected))), (scores[q, j], expected)
    flops = 2.0 * sum(len(queries[q]) * len(docs[d]) * DIM for q in range(args.queries) for d in candidates[q])
    held = buffer.nbytes + qbuffer.nbytes + scores.nbytes
    return {"side": "rerank", "seconds": seconds, "queries": args.queries, "depth": args.depth, "docs": len(docs),
            "held_bytes": held, "flops": flops, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=25_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--fde-mode", choices=("txtai", "paper"), default="txtai")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    parser.add_argument("--side", choices=("fde", "rerank"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        emit(side_fde(args) if args.side == "fde" else side_rerank(args))
        return

    print(machine_line(), flush=True)
    common = ["--docs", str(args.docs), "--queries", str(args.queries), "--depth", str(args.depth),
              "--fde-mode", args.fde_mode, "--threads", str(args.threads)]
    fde = run_side(__file__, ["--side", "fde", *common])
    print(f"  done: fde {fde['seconds']:.1f} s", file=sys.stderr, flush=True)
    rr = run_side(__file__, ["--side", "rerank", *common])
    print(f"  done: rerank {rr['seconds']:.1f} s", file=sys.stderr, flush=True)

    mib = 2**20
    print(f"FDE ({fde['mode']} mode, {fde['threads']} threads): {fde['docs']:,} docs, {fde['tokens']:,} tokens x {DIM}"
          f" -> ({fde['docs']:,}, {fde['dims']:,}) in {fde['seconds']:.1f} s"
          f" ({fde['tokens'] / fde['seconds'] / 1e6:.2f} M tokens/s; target < 30 s:"
          f" {'met' if fde['seconds'] < 30 else 'MISSED'})")
    ratio = fde["peak_rss_mb"] * mib / fde["held_bytes"]
    print(f"  peak RSS {fde['peak_rss_mb']:.0f} MiB vs float32 held {fde['held_bytes'] / mib:.0f} MiB"
          f" (tokens {fde['token_bytes'] / mib:.0f} + FDEs {fde['output_bytes'] / mib:.0f}) = {ratio:.2f}x"
          f" (target <= 1.5x: {'met' if ratio <= 1.5 else 'MISSED'})")
    print(f"rerank ({rr['threads']} threads): {rr['queries']:,} queries x top {rr['depth']} over {rr['docs']:,} docs in"
          f" {rr['seconds']:.1f} s ({rr['flops'] / rr['seconds'] / 1e9:.1f} GFLOP/s of dot products;"
          f" target < 10 s: {'met' if rr['seconds'] < 10 else 'MISSED'})")
    ratio = rr["peak_rss_mb"] * mib / rr["held_bytes"]
    print(f"  peak RSS {rr['peak_rss_mb']:.0f} MiB vs float32 held {rr['held_bytes'] / mib:.0f} MiB = {ratio:.2f}x"
          f" (target <= 1.5x: {'met' if ratio <= 1.5 else 'MISSED'})")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
