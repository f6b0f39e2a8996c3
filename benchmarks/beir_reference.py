"""The harness side by side with BEIR's own reference pipeline, same model, same data.

BEIR: ``DenseRetrievalExactSearch`` + ``models.SentenceBERT`` + ``EvaluateRetrieval`` (cosine),
fp32, exactly as BEIR's README runs it. Harness: ``Condition.run`` cold (empty vector cache, so the
ONNX sides include exporting their graph; ``load_seconds`` says how much of the time was model
loading and export) and, with ``--warm``, warm (the cache the cold run filled), for each variant
``backend:precision`` of ``--variants`` (default: torch fp32, onnx fp32, onnx int8), each with its
own cache. Each side runs in its own subprocess, so its wall time and peak RSS are its own; every
side gets the same documents (``title + " " + text``), test queries and qrels, the same batch size,
and the times include loading the model (not the data). Several datasets run one after another.

    python benchmarks/beir_reference.py --model minilm --dataset scifact,nfcorpus
    python benchmarks/beir_reference.py --variants torch:fp32,torch:int8 --warm
    python benchmarks/beir_reference.py --max-docs 300      # a quick run on a subset

prints each side's ndcg@10 (fp32 must agree with BEIR to 4 decimals; int8 within 0.002 of the
harness fp32, with the paired t-test p-value over queries), its time, its peak RSS, and the
speed-ups over BEIR.
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
    start, cpu = time.perf_counter(), time.process_time()
    options = RunOptions(batch_size=args.batch_size, precision=args.precision, backend=args.backend)
    condition = Condition(args.model, options, VectorCache(args.cache_dir))
    loaded = time.perf_counter() - start
    result, _ = condition.run(dataset)
    return {
        "ndcg@10": result["metrics"]["ndcg@10"],
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
        "load_seconds": loaded,
        "timing": result["timing"],
        "per_query": result["per_query"]["ndcg@10"],
    }


def side_beir(args) -> dict:
    from harness import registry
    from harness.data import load_dataset

    dataset = load_dataset(args.dataset, data_dir=args.data_dir)
    corpus = {d: {"title": t, "text": x} for d, t, x in zip(dataset.doc_ids, dataset.titles, dataset.texts)}
    queries = dict(zip(dataset.query_ids, dataset.queries))
    _, path = registry.resolve(args.model)
    # the clock starts before BEIR's imports (torch, sentence-transformers), as the harness side's
    # starts before its lazy imports of the same libraries
    start, cpu = time.perf_counter(), time.process_time()
    from beir.retrieval import models
    from beir.retrieval.evaluation import EvaluateRetrieval
    from beir.retrieval.search.dense import DenseRetrievalExactSearch

    import harness.models.berthash  # noqa: F401  (registers bert_hash, so SentenceBERT loads a pico folder)

    model = models.SentenceBERT(path)
    retriever = EvaluateRetrieval(
        DenseRetrievalExactSearch(model, batch_size=args.batch_size, show_progress_bar=False),
        score_function="cos_sim",
        k_values=[1, 3, 5, 10, 100, 1000],
    )
    results = retriever.retrieve(corpus, queries)
    ndcg, _, _, _ = retriever.evaluate(dataset.qrels, results, retriever.k_values)
    return {"ndcg@10": ndcg["NDCG@10"], "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser, ("harness", "beir"))
    parser.add_argument("--variants", default="torch:fp32,onnx:fp32,onnx:int8",
                        help="harness sides, backend:precision,... (default: torch:fp32,onnx:fp32,onnx:int8)")
    parser.add_argument("--warm", action="store_true", help="also time a warm rerun of each variant")
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)  # a side's own settings
    parser.add_argument("--backend", default="torch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if ran_as_side(args, {"harness": side_harness, "beir": side_beir}):
        return
    from harness.report import paired_test

    variants = [tuple(v.split(":")) for v in args.variants.split(",")]
    for dataset in args.dataset.split(","):
        args.dataset = dataset
        with tempfile.TemporaryDirectory() as scratch:
            base = data_argv(args, scratch)

            def side(name: str, backend: str, precision: str, cache_dir: str) -> dict:
                argv = ["--side", name, *base, "--backend", backend, "--precision", precision, "--cache-dir", cache_dir]
                out = run_side(__file__, argv)
                print(f"  done: {dataset} {name} {backend} {precision} {out['seconds']:.1f} s", file=sys.stderr, flush=True)
                return out

            beir = side("beir", "torch", "fp32", "")
            rows = []
            for backend, precision in variants:
                cache_dir = str(Path(scratch) / f"cache-{backend}-{precision}")
                label = f"harness {backend} {precision}"
                rows.append((f"{label} cold", precision, side("harness", backend, precision, cache_dir)))
                if args.warm:
                    rows.append((f"{label} warm", precision, side("harness", backend, precision, cache_dir)))

        print(f"model={args.model} dataset={dataset}{f' (first {args.max_docs} docs)' if args.max_docs else ''}"
              f" batch_size={args.batch_size}")
        print(f"{'side':<28} {'ndcg@10':>8} {'seconds':>9} {'CPU s':>8} {'load+export':>12} {'peak RSS MB':>12}"
              f" {'vs BEIR':>8} {'CPU vs BEIR':>12}")
        print(f"{'beir reference fp32':<28} {beir['ndcg@10']:8.4f} {beir['seconds']:9.1f} {beir['cpu_seconds']:8.1f} {'':>12}"
              f" {beir['peak_rss_mb']:12.0f} {'1.00x':>8} {'1.00x':>12}")
        for name, _, out in rows:
            ratio, cpu_ratio = beir["seconds"] / out["seconds"], beir["cpu_seconds"] / out["cpu_seconds"]
            print(f"{name:<28} {out['ndcg@10']:8.4f} {out['seconds']:9.1f} {out['cpu_seconds']:8.1f}"
                  f" {out['load_seconds']:12.1f} {out['peak_rss_mb']:12.0f} {ratio:7.2f}x {cpu_ratio:11.2f}x")
        reference = next((out for name, precision, out in rows if precision == "fp32"), None)
        for name, precision, out in rows:
            if name.endswith("warm"):
                continue
            if precision == "fp32":
                delta = out["ndcg@10"] - beir["ndcg@10"]
                verdict = "agree to 4 decimals" if round(out["ndcg@10"], 4) == round(beir["ndcg@10"], 4) else "DIFFER"
                print(f"{name}: ndcg@10 - beir = {delta:+.5f} ({verdict})")
            elif reference is not None:
                delta, p, n = paired_test(reference["per_query"], out["per_query"])
                verdict = "within 0.002" if abs(delta) <= 0.002 else "NOT within 0.002"
                print(f"{name}: ndcg@10 - harness fp32 = {delta:+.5f}, paired t-test p={p:.3f} over {n} queries"
                      f" ({verdict}); vs BEIR {beir['seconds'] / out['seconds']:.2f}x wall,"
                      f" {beir['cpu_seconds'] / out['cpu_seconds']:.2f}x CPU")
        print(f"load average at the end: {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
