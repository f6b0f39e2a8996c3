"""The harness side by side with txtai's own embeddings index, same model, same data.

txtai: ``Embeddings(path=<model folder>, content=False, backend="numpy", maxlength=256)`` (numpy =
exact search), ``index()`` of the documents (``title + " " + text``), ``batchsearch()`` of the test
queries (limit 1000); the returned ranking is scored with the harness's own evaluation
(pytrec_eval, same rules), so only the encoding/indexing/search differ. ``maxlength`` is set to the
model's sentence-transformers ``max_seq_length`` (256 for MiniLM) because txtai otherwise truncates
at the tokenizer's 512, which is a different (slower) model input; ``--txtai-maxlength 0`` gives
txtai's default.

Harness: ``Condition.run`` cold (empty vector cache) and warm (the cache the cold run filled),
``--precision`` fp32 by default. Each side runs in its own subprocess (its own wall time and peak RSS);
times include loading the model, not the data.

    python benchmarks/txtai_compare.py --model minilm --dataset scifact
    python benchmarks/txtai_compare.py --max-docs 300     # quick check on a subset
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_data_arguments, data_argv, ran_as_side, run_side  # noqa: E402


def side_harness(args) -> dict:
    from harness.cache import VectorCache
    from harness.data import load_dataset
    from harness.pipeline import Condition, RunOptions

    dataset = load_dataset(args.dataset, data_dir=args.data_dir)
    start = time.perf_counter()
    condition = Condition(args.model, RunOptions(batch_size=args.batch_size, precision=args.precision), VectorCache(args.cache_dir))
    result, _ = condition.run(dataset)
    return {"ndcg@10": result["metrics"]["ndcg@10"], "seconds": time.perf_counter() - start, "timing": result["timing"]}


def side_txtai(args) -> dict:
    from txtai import Embeddings

    from harness import registry
    from harness.data import load_dataset
    from harness.evaluate import evaluate

    dataset = load_dataset(args.dataset, data_dir=args.data_dir)
    texts = dataset.doc_texts()
    _, path = registry.resolve(args.model)
    config = {"path": path, "content": False, "backend": "numpy", "batch": 1024, "encodebatch": args.batch_size}
    if args.txtai_maxlength:
        config["maxlength"] = args.txtai_maxlength
    start = time.perf_counter()
    embeddings = Embeddings(config)
    embeddings.index((i, text, None) for i, text in enumerate(texts))
    indexed = time.perf_counter()
    hits = embeddings.batchsearch(dataset.queries, limit=1000)
    searched = time.perf_counter()
    run = {
        qid: {dataset.doc_ids[int(i)]: float(score) for i, score in found}
        for qid, found in zip(dataset.query_ids, hits)
    }
    metrics = evaluate(dataset.qrels, run).metrics
    return {
        "ndcg@10": metrics["ndcg@10"],
        "seconds": time.perf_counter() - start,
        "timing": {"index_seconds": round(indexed - start, 3), "search_seconds": round(searched - indexed, 3)},
        "config": {k: v for k, v in config.items() if k != "path"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser, ("harness", "txtai"))
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32", help="the harness side's precision")
    parser.add_argument("--txtai-maxlength", type=int, default=256, help="txtai's maxlength (0: txtai's default)")
    args = parser.parse_args()
    if ran_as_side(args, {"harness": side_harness, "txtai": side_txtai}):
        return
    with tempfile.TemporaryDirectory() as scratch:
        base = data_argv(args, scratch)

        def side(name: str) -> dict:
            argv = ["--side", name, *base, "--precision", args.precision, "--txtai-maxlength", str(args.txtai_maxlength),
                    "--cache-dir", str(Path(scratch) / "cache")]
            out = run_side(__file__, argv)
            print(f"  done: {name} {out['seconds']:.1f} s", file=sys.stderr, flush=True)
            return out

        cold = side("harness")
        warm = side("harness")
        txtai = side("txtai")

    print(f"model={args.model} dataset={args.dataset}{f' (first {args.max_docs} docs)' if args.max_docs else ''}"
          f" batch_size={args.batch_size} txtai config={txtai['config']}")
    print(f"{'side':<22} {'ndcg@10':>8} {'seconds':>9} {'peak RSS MB':>12} {'vs txtai':>9}")
    for name, out in (("txtai (numpy, exact)", txtai), (f"harness {args.precision} cold", cold), (f"harness {args.precision} warm", warm)):
        print(f"{name:<22} {out['ndcg@10']:8.4f} {out['seconds']:9.1f} {out['peak_rss_mb']:12.0f} {txtai['seconds'] / out['seconds']:8.2f}x")
    print(f"ndcg@10 harness cold - txtai = {cold['ndcg@10'] - txtai['ndcg@10']:+.5f}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
