"""ColBERT token encoding, side by side: sentence-transformers' ``encode_document`` / ``encode_query``
(what ``harness.models.ColBERT`` called before it tokenised on its own) vs the harness's torch path
vs the harness's ONNX Runtime path, on a dataset's full corpus and test queries.

Each side runs in its own subprocess (own wall time and peak RSS), loads ``models/colbert-pico``
(or ``--model``), encodes the documents in the vector cache's blocks (1,024 texts, longest first,
as ``harness.cache.encode_in_blocks`` feeds them) and then the queries, and writes its token
matrices to a scratch file; the parent checks every side's vectors against the
sentence-transformers side (same token counts, max abs difference) and prints the speed-ups.

    python benchmarks/colbert_encode.py --dataset scifact,nfcorpus
    python benchmarks/colbert_encode.py --dataset scifact --max-docs 500     # quick check
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, ran_as_side, run_side  # noqa: E402

SIDES = ("st", "torch", "onnx")


def side(args) -> dict:
    import numpy as np

    from harness.data import load_dataset
    from harness.models.colbert import ColBERT

    dataset = load_dataset(args.dataset, data_dir=args.data_dir)
    texts = dataset.doc_texts()[: args.max_docs or None]
    order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))  # as encode_in_blocks
    texts = [texts[i] for i in order]
    start, cpu = time.perf_counter(), time.process_time()
    model = ColBERT.load(args.model)
    if args.side == "st":
        def encode(batch, task):
            call = model.encoder.encode_query if task == "query" else model.encoder.encode_document
            return [np.asarray(a, dtype=np.float32) for a in
                    call(batch, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False)]
    else:
        model.set_backend(args.side, Path(args.scratch) / "graphs")

        def encode(batch, task):
            call = model.encode_queries if task == "query" else model.encode_documents
            return call(batch, batch_size=args.batch_size)
    loaded = time.perf_counter() - start
    docs = [v for block in range(0, len(texts), 1024) for v in encode(texts[block : block + 1024], "document")]
    documents_done = time.perf_counter()
    queries = encode(dataset.queries, "query")
    seconds = time.perf_counter() - start
    np.savez(Path(args.scratch) / f"{args.side}.npz", *docs, *queries)
    return {"runtime": args.side, "docs": len(docs), "queries": len(queries), "seconds": seconds,
            "cpu_seconds": time.process_time() - cpu,
            "load_seconds": loaded, "document_seconds": documents_done - start - loaded,
            "query_seconds": time.perf_counter() - documents_done,
            "tokens": int(sum(len(d) for d in docs))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "models" / "colbert-pico"))
    parser.add_argument("--dataset", default="scifact,nfcorpus")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-docs", type=int, default=0)
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if ran_as_side(args, dict.fromkeys(SIDES, side)):
        return
    import numpy as np

    for dataset in args.dataset.split(","):
        with tempfile.TemporaryDirectory() as scratch:
            rows = []
            for runtime in args.sides.split(","):
                argv = ["--side", runtime, "--model", args.model, "--dataset", dataset, "--batch-size", str(args.batch_size),
                        "--max-docs", str(args.max_docs), "--scratch", scratch]
                if args.data_dir:
                    argv += ["--data-dir", args.data_dir]
                out = run_side(__file__, argv)
                print(f"  done: {dataset} {runtime} {out['seconds']:.1f} s", file=sys.stderr, flush=True)
                rows.append(out)
            vectors = {r["runtime"]: np.load(Path(scratch) / f"{r['runtime']}.npz") for r in rows}
            reference = rows[0]
            print(f"model={args.model} dataset={dataset}: {reference['docs']} documents"
                  f" ({reference['tokens']} tokens kept), {reference['queries']} queries, batch {args.batch_size}")
            print(f"{'side':<8} {'seconds':>8} {'load':>6} {'docs s':>7} {'queries s':>9} {'docs/s':>7}"
                  f" {'CPU s':>7} {'peak RSS MB':>12} {'vs ' + reference['runtime']:>8} {'CPU vs':>7} {'max |diff|':>11}"
                  f" {'same counts':>11}")
            first = vectors[reference["runtime"]]
            for r in rows:
                mine = vectors[r["runtime"]]
                same = all(first[k].shape == mine[k].shape for k in first.files)
                diff = max(float(np.abs(first[k] - mine[k]).max()) if first[k].size else 0.0 for k in first.files) \
                    if same else float("nan")
                print(f"{r['runtime']:<8} {r['seconds']:8.1f} {r['load_seconds']:6.1f} {r['document_seconds']:7.1f}"
                      f" {r['query_seconds']:9.1f} {r['docs'] / r['document_seconds']:7.0f} {r['cpu_seconds']:7.1f}"
                      f" {r['peak_rss_mb']:12.0f} {reference['seconds'] / r['seconds']:7.2f}x"
                      f" {reference['cpu_seconds'] / r['cpu_seconds']:6.2f}x {diff:11.2e} {str(same):>11}")
            for r in rows[1:]:
                print(f"{r['runtime']} vs {reference['runtime']}: {reference['seconds'] / r['seconds']:.2f}x whole,"
                      f" {reference['document_seconds'] / r['document_seconds']:.2f}x document encoding,"
                      f" {reference['cpu_seconds'] / r['cpu_seconds']:.2f}x CPU seconds")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
