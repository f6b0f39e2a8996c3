"""The harness side by side with BEIR's own reference pipeline, same model, same data.

BEIR: ``DenseRetrievalExactSearch`` + ``models.SentenceBERT`` + ``EvaluateRetrieval`` (cosine),
fp32, exactly as BEIR's README runs it. Harness: ``Condition.run`` cold (empty vector cache) and warm
(the cache the cold run filled), for the fp32 condition, the int8 condition (``--precision int8``)
or both (``--precision all``), each with its own cache. Each side runs in its own subprocess, so its wall time and peak RSS are its
own; every side gets the same documents (``title + " " + text``), test queries and qrels, the same
batch size, and the times include loading the model (not the data).

    python benchmarks/beir_reference.py --model minilm --dataset scifact
    python benchmarks/beir_reference.py --model minilm --dataset scifact --precision int8
    python benchmarks/beir_reference.py --precision all      # fp32 and int8 rows, one BEIR run
    python benchmarks/beir_reference.py --max-docs 300      # a quick run on a subset

prints each side's ndcg@10 (fp32 must agree with BEIR to 4 decimals; int8 within 0.002), its time,
its peak RSS, and the speed-ups over BEIR.
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
    options = RunOptions(batch_size=args.batch_size, precision=args.precision)
    condition = Condition(args.model, options, VectorCache(args.cache_dir))
    result, _ = condition.run(dataset)
    return {
        "ndcg@10": result["metrics"]["ndcg@10"],
        "seconds": time.perf_counter() - start,
        "timing": result["timing"],
    }


def side_beir(args) -> dict:
    from beir.retrieval import models
    from beir.retrieval.evaluation import EvaluateRetrieval
    from beir.retrieval.search.dense import DenseRetrievalExactSearch

    from harness import registry
    from harness.data import load_dataset

    dataset = load_dataset(args.dataset, data_dir=args.data_dir)
    corpus = {d: {"title": t, "text": x} for d, t, x in zip(dataset.doc_ids, dataset.titles, dataset.texts)}
    queries = dict(zip(dataset.query_ids, dataset.queries))
    _, path = registry.resolve(args.model)
    start = time.perf_counter()
    model = models.SentenceBERT(path)
    retriever = EvaluateRetrieval(
        DenseRetrievalExactSearch(model, batch_size=args.batch_size, show_progress_bar=False),
        score_function="cos_sim",
        k_values=[1, 3, 5, 10, 100, 1000],
    )
    results = retriever.retrieve(corpus, queries)
    ndcg, _, _, _ = retriever.evaluate(dataset.qrels, results, retriever.k_values)
    return {"ndcg@10": ndcg["NDCG@10"], "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser, ("harness", "beir"))
    parser.add_argument("--precision", choices=("fp32", "int8", "all"), default="fp32",
                        help="the harness condition(s) to run against BEIR's fp32 reference")
    args = parser.parse_args()
    if ran_as_side(args, {"harness": side_harness, "beir": side_beir}):
        return
    with tempfile.TemporaryDirectory() as scratch:
        base = data_argv(args, scratch)

        def side(name: str, precision: str, cache_dir: str) -> dict:
            argv = ["--side", name, *base, "--precision", precision, "--cache-dir", cache_dir]
            out = run_side(__file__, argv)
            print(f"  done: {name} {precision} {out['seconds']:.1f} s", file=sys.stderr, flush=True)
            return out

        rows = []
        precisions = ["fp32", "int8"] if args.precision == "all" else [args.precision]
        for precision in precisions:
            cache_dir = str(Path(scratch) / f"cache-{precision}")
            rows.append((f"harness {precision} cold", precision, side("harness", precision, cache_dir)))
            rows.append((f"harness {precision} warm", precision, side("harness", precision, cache_dir)))
        beir = side("beir", "fp32", "")

    print(f"model={args.model} dataset={args.dataset}{f' (first {args.max_docs} docs)' if args.max_docs else ''}"
          f" batch_size={args.batch_size}")
    print(f"{'side':<20} {'ndcg@10':>8} {'seconds':>9} {'peak RSS MB':>12} {'vs BEIR':>8}")
    print(f"{'beir reference fp32':<20} {beir['ndcg@10']:8.4f} {beir['seconds']:9.1f} {beir['peak_rss_mb']:12.0f} {'1.00x':>8}")
    for name, _, out in rows:
        ratio = beir["seconds"] / out["seconds"]
        print(f"{name:<20} {out['ndcg@10']:8.4f} {out['seconds']:9.1f} {out['peak_rss_mb']:12.0f} {ratio:7.2f}x")
    for name, precision, out in rows:
        delta = out["ndcg@10"] - beir["ndcg@10"]
        if precision == "fp32":
            verdict = "agree to 4 decimals" if round(out["ndcg@10"], 4) == round(beir["ndcg@10"], 4) else "DIFFER"
        else:
            verdict = "within 0.002" if abs(delta) <= 0.002 else "NOT within 0.002"
        print(f"{name}: ndcg@10 - beir = {delta:+.5f} ({verdict})")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
