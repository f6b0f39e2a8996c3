"""The harness side by side with BEIR's own reference pipeline, same model, same data.

BEIR: ``DenseRetrievalExactSearch`` + ``models.SentenceBERT`` + ``EvaluateRetrieval`` (cosine).
Harness: ``Condition.run`` cold (empty vector cache) and warm (the cache the cold run filled).
Each side runs in its own subprocess so that its wall time and peak RSS are its own; both sides get
the same documents (``title + " " + text``), the same test queries and qrels, and the same batch size.

    python benchmarks/beir_reference.py --model minilm --dataset scifact

prints both ndcg@10 values (they must agree to 4 decimals) and the time ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def side_harness(args) -> dict:
    from harness.cache import VectorCache
    from harness.data import load_dataset
    from harness.pipeline import Condition, RunOptions

    dataset = load_dataset(args.dataset, data_dir=args.data_dir)
    start = time.perf_counter()
    condition = Condition(args.model, RunOptions(batch_size=args.batch_size), VectorCache(args.cache_dir))
    result, _ = condition.run(dataset)
    return {"ndcg@10": result["metrics"]["ndcg@10"], "seconds": time.perf_counter() - start}


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


def run_side(side: str, args, cache_dir: str) -> dict:
    command = [sys.executable, __file__, "--side", side, "--model", args.model, "--dataset", args.dataset,
               "--batch-size", str(args.batch_size), "--cache-dir", cache_dir]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--side", choices=("harness", "beir"), help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.side:
        out = side_harness(args) if args.side == "harness" else side_beir(args)
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(out))
        return
    with tempfile.TemporaryDirectory() as cache_dir:
        cold = run_side("harness", args, cache_dir)
        warm = run_side("harness", args, cache_dir)
    beir = run_side("beir", args, "")
    print(f"model={args.model} dataset={args.dataset} batch_size={args.batch_size} cpus={os.cpu_count()}")
    for name, side in (("beir reference", beir), ("harness cold", cold), ("harness warm", warm)):
        print(f"{name:<15} ndcg@10={side['ndcg@10']:.4f}  {side['seconds']:8.1f} s  peak RSS {side['peak_rss_mb']:.0f} MB")
    agree = round(beir["ndcg@10"], 4) == round(cold["ndcg@10"], 4) == round(warm["ndcg@10"], 4)
    print(f"ndcg@10 agree to 4 decimals: {agree}")
    print(f"speed-up cold: {beir['seconds'] / cold['seconds']:.2f}x   warm: {beir['seconds'] / warm['seconds']:.1f}x")


if __name__ == "__main__":
    main()
