"""How much txtai's index training moves a txtai-benchmark number: encode once, index many times.

The txtai-benchmark profile (``harness/txtai_benchmark.py``) builds txtai's default benchmark index:
8-bit scalar quantisation whose per-dimension ranges are trained on a 5% sample of the documents
(txtai draws it with ``numpy.random.default_rng(0)``), and above 5,000 documents an IVF index whose
centroids faiss trains by k-means (seed 1234). Both seeds are fixed, so one machine always gives the
same number; another sample or k-means seed is as valid a draw. This script re-indexes the cached
txtai vectors (no re-encoding once the profile has run) with other seeds and other settings, and
prints ndcg@10 (benchmarks.py's evaluation, 5 decimals) for each:

* ``seed s``: sample seed ``s`` and k-means seed ``1234 + s`` (``s = 0`` is txtai's own index);
* ``kmeans k``: txtai's sample, k-means seed ``k`` (moves only IVF datasets);
* ``sample f``: the training sample fraction ``f`` (txtai's seed);
* ``flat``: no quantisation (``faiss.quantize: false``): exact float32 search, txtai's other choices kept.

    python benchmarks/txtai_seed_spread.py --model minilm --datasets nfcorpus,scifact --seeds 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.cache import VectorCache  # noqa: E402
from harness.data import load_dataset  # noqa: E402
from harness.pipeline import RunOptions  # noqa: E402
from harness.txtai_benchmark import TxtaiBenchmarkCondition  # noqa: E402


def variants(seeds: int, fractions: list[float]) -> list[tuple[str, dict]]:
    out = [(f"seed {s}", {"sample_seed": s, "kmeans_seed": 1234 + s}) for s in range(seeds)]
    out += [(f"kmeans {1234 + s}", {"kmeans_seed": 1234 + s}) for s in range(1, 4)]
    out += [(f"sample {f:g}", {"sample": f}) for f in fractions]
    out.append(("flat", {"quantize": False}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--datasets", default="nfcorpus,scifact")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--seeds", type=int, default=10, help="index-training seeds to draw (0 = txtai's own)")
    parser.add_argument("--fractions", default="0.1,0.25,1.0", help="training sample fractions besides txtai's 0.05")
    parser.add_argument("--published", default="", help="the seed's figures, e.g. nfcorpus=0.3089,scifact=0.6527")
    args = parser.parse_args()
    published = dict((k, float(v)) for k, v in (p.split("=") for p in args.published.split(",") if p))
    cache = VectorCache(args.cache_dir)
    fractions = [float(f) for f in args.fractions.split(",") if f]
    summary = {}
    for name in args.datasets.split(","):
        dataset = load_dataset(name, data_dir=args.data_dir)
        scores = {}
        for label, overrides in variants(args.seeds, fractions):
            condition = TxtaiBenchmarkCondition(args.model, RunOptions(), cache, faiss_overrides=overrides)
            result, _ = condition.run(dataset)
            scores[label] = result["metrics"]["ndcg@10"]
            index = result["method"]["index"]
            print(json.dumps({"dataset": name, "variant": label, "ndcg@10": scores[label],
                              "components": index["components"], "nprobe": index["nprobe"], "nlist": index["nlist"],
                              "encode": result["cache"]["encode_calls_cached"]}), flush=True)
        seeded = [v for k, v in scores.items() if k.startswith("seed ")]
        line = {"dataset": name, "seeds": len(seeded), "txtai": scores["seed 0"], "min": min(seeded),
                "max": max(seeded), "mean": round(statistics.mean(seeded), 5),
                "stdev": round(statistics.stdev(seeded), 5) if len(seeded) > 1 else 0.0, "flat": scores["flat"]}
        if name in published:
            line |= {"published": published[name], "published_inside": min(seeded) <= published[name] <= max(seeded)}
        summary[name] = line
        print(json.dumps({"summary": line}), flush=True)


if __name__ == "__main__":
    main()
