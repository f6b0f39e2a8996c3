"""Loading a BEIR folder: the harness's checked, streamed loader vs BEIR's ``GenericDataLoader``.

Each side loads the same dataset split in its own subprocess and reports wall seconds and peak
RSS (``ru_maxrss``) of that process. BEIR's loader reads only uncompressed files, so for a folder
of ``.jsonl.gz`` files its side gets a decompressed copy in a temporary folder (the copying is not
timed). ``--corpus-only`` builds a one-query folder around any ``corpus.jsonl[.gz]`` (e.g. the
general Wikipedia paragraphs), for a corpus larger than the BEIR fixtures.

    python benchmarks/load_memory.py --dataset ../shared/data/beir/scifact
    python benchmarks/load_memory.py --dataset ../shared/data/general/wikipedia --corpus-only
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine_line, run_side  # noqa: E402


def _plain_copy(folder: Path, target: Path, corpus_only: bool) -> Path:
    """``target`` holding ``folder``'s files uncompressed (and a one-query split when ``corpus_only``)."""
    (target / "qrels").mkdir(parents=True, exist_ok=True)
    stems = ["corpus.jsonl"] if corpus_only else ["corpus.jsonl", "queries.jsonl"]
    for stem in stems:
        source = folder / stem if (folder / stem).is_file() else folder / f"{stem}.gz"
        opener = gzip.open if source.suffix == ".gz" else open
        with opener(source, "rb") as src, open(target / stem, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    if corpus_only:
        with open(target / "corpus.jsonl", "rb") as handle:
            first = json.loads(handle.readline())["_id"]
        (target / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "a question"}) + "\n")
        (target / "qrels" / "test.tsv").write_text(f"query-id\tcorpus-id\tscore\nq1\t{first}\t1\n")
    else:
        for qrels in (folder / "qrels").glob("*.tsv"):
            shutil.copy(qrels, target / "qrels" / qrels.name)
    return target


def side(args) -> None:
    start = time.perf_counter()
    if args.side == "beir":
        from beir.datasets.data_loader import GenericDataLoader

        corpus, queries, qrels = GenericDataLoader(data_folder=args.dataset).load(split=args.split)
        documents = len(corpus)
    else:
        from harness.data import load_dataset

        documents = len(load_dataset(args.dataset, split=args.split).doc_ids)
    emit({"side": args.side, "documents": documents, "seconds": round(time.perf_counter() - start, 2)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="a BEIR folder (or, with --corpus-only, any corpus folder)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--corpus-only", action="store_true", help="add a one-query split around the corpus")
    parser.add_argument("--side", choices=["beir", "harness"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return side(args)
    print(machine_line())
    folder = Path(args.dataset)
    with tempfile.TemporaryDirectory(prefix="load-memory-") as scratch:
        plain = _plain_copy(folder, Path(scratch) / "plain", args.corpus_only)
        harness_folder = plain if args.corpus_only else folder  # the harness reads the .gz files as they are
        results = [
            run_side(__file__, ["--side", "beir", "--dataset", str(plain), "--split", args.split]),
            run_side(__file__, ["--side", "harness", "--dataset", str(harness_folder), "--split", args.split]),
        ]
    beir = results[0]
    print(f"{'side':10s} {'documents':>10s} {'seconds':>8s} {'peak RSS MiB':>13s} {'RSS vs BEIR':>12s}")
    for r in results:
        print(f"{r['side']:10s} {r['documents']:10d} {r['seconds']:8.2f} {r['peak_rss_mb']:13.0f}"
              f" {r['peak_rss_mb'] / beir['peak_rss_mb']:11.2f}x")


if __name__ == "__main__":
    main()
