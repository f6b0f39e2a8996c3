"""``harness run``: its arguments and its execution, shared by the command line (:mod:`harness.cli`)
and by ``harness check``/``reproduce`` (:mod:`harness.regression`), which run a conditions file's
``args`` exactly as ``python -m harness run`` would.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from harness.engine import add_engine_arguments, engine_from_args
from harness.errors import HarnessError
from harness.evaluate import METRICS, SHOWN_METRICS, parse_metric

REPO = Path(__file__).resolve().parents[1]
DATA_DIR_HELP = ("folder of BEIR datasets (default: $HARNESS_DATA_DIR, else $XDG_CACHE_HOME/harness/datasets,"
                 " i.e. ~/.cache/harness/datasets, with ../shared/data/beir beside the checkout as a fallback)")
RUN_HELP = "evaluate a model on BEIR datasets and store the results"
RUN_DESCRIPTION = ("Index each dataset with the chosen method, search its test queries exactly, evaluate with"
                   " pytrec_eval and write results/<condition>/<dataset>.json with full provenance.")


def add_run_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``harness run``, added to ``p``."""
    p.add_argument("--model", required=True, help="bm25, minilm, pico, muvera-pico, colbert-pico, colbert:PATH,"
                   " muvera:PATH, a sentence-transformers folder, or a Hugging Face hub id owner/name (the hub is"
                   " offline by default, HF_HUB_OFFLINE=1; set HF_HUB_OFFLINE=0 to download)")
    p.add_argument("--datasets", required=True,
                   help="comma-separated dataset names or folders; an official BEIR name that is not local is"
                   " downloaded and verified; a folder of BEIR folders (cqadupstack) runs each one and stores"
                   " their mean under the folder's name")
    p.add_argument("--split", default=None, help="qrels split to evaluate (default: dev for msmarco, else test)")
    p.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    p.add_argument("--strict", action="store_true",
                   help="refuse judged documents that are not in the corpus (default: keep and count them, as BEIR)")
    p.add_argument("--empty-queries", choices=("zero", "drop"), default="zero",
                   help="a judged query with no results scores 0 (zero, default) or is left out of the mean (drop:"
                   " BEIR's pipeline); drop is its own condition (name suffix -empty-drop)")
    p.add_argument("--results-dir", type=Path, default=REPO / "results", help="where result JSON files go")
    p.add_argument("--rerank", default=None, help="ColBERT model that rescores the first stage's top --rerank-depth")
    p.add_argument("--rerank-depth", type=int, default=100, help="how many first-stage results to rerank (default 100)")
    p.add_argument("--index", choices=("exact", "txtai"), default="exact",
                   help="exact: built-in batched matrix product; txtai: txtai Embeddings with its exact numpy backend")
    p.add_argument("--top-k", type=int, default=1000, help="results kept per query (default 1000, for recall@1000)")
    p.add_argument("--batch-size", type=int, default=32, help="encoding batch size")
    p.add_argument("--max-length", type=int, default=None, help="override the dense model's max sequence length")
    from harness.models import ort  # numpy only; the CLI has it loaded already

    p.add_argument("--precision", choices=tuple(dict.fromkeys(x for xs in ort.PRECISIONS.values() for x in xs)),
                   default="fp32",
                   help="dense encoder numerics: fp32 (reference), int8 (dynamic quantisation, torch or onnx) or"
                   " bf16 (openvino on a CPU with bf16 instructions); int8 and bf16 are faster, give slightly"
                   " different scores and are reported as their own conditions")
    p.add_argument("--backend", choices=ort.BACKENDS, default="torch",
                   help="encoder runtime: torch (PyTorch eager), onnx (the model exported once to ONNX, run by"
                   " onnxruntime; fp32 gives the same numbers, int8 is its own condition) or openvino (the same"
                   " graph run by OpenVINO, fp32 or bf16; needs pip install openvino)")
    p.add_argument("--fde-mode", choices=("txtai", "paper"), default="txtai", help="MUVERA FDE variant")
    p.add_argument("--fde-repetitions", type=int, default=20)
    p.add_argument("--fde-hashes", type=int, default=5)
    p.add_argument("--fde-projection", type=int, default=16)
    p.add_argument("--fde-final-projection", type=int, default=None, help="paper mode: final random projection dims")
    p.add_argument("--fde-seed", type=int, default=42)
    p.add_argument("--name", default=None, help="condition name (default: derived from the settings)")
    p.add_argument("--cache-dir", type=Path, default=None, help="vector cache (default: $HARNESS_CACHE_DIR or ~/.cache/harness)")
    p.add_argument("--no-cache", action="store_true", help="encode everything again; read and write no cache")
    p.add_argument("--json", action="store_true", help="print one JSON object per (condition, dataset) to stdout")
    p.add_argument("--save-run", action="store_true", help="also write the TREC run file next to each result")
    p.add_argument("--no-save", action="store_true", help="do not write result files (print only)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a model folder's own Python code to run")
    p.add_argument("--allow-pickle", action="store_true", help="allow pickle (.bin) weights; they can execute code")
    p.add_argument("--stream-corpus", action="store_true",
                   help="dense and MUVERA models: keep the corpus on disk (its ids and 16 bytes a document in"
                   " memory) and the vectors or FDEs in a memory-mapped file, for corpora larger than memory")
    p.add_argument("--max-memory", type=float, default=None,
                   help="memory budget in GiB for vectors and scores: full maxsim scoring, and dense/FDE search"
                   " chunk by chunk")
    add_engine_arguments(p)
    p.add_argument("--profile", choices=("beir", "txtai-benchmark"), default="beir",
                   help="beir: BEIR's conventions (exact search, all metrics); txtai-benchmark: txtai's"
                   " examples/benchmarks.py run through txtai (its Embeddings/faiss or BM25 scoring, text joining,"
                   " query handling and evaluation at 10), stored as its own condition")
    p.add_argument("--txtai-config", type=Path, default=None,
                   help="txtai-benchmark: YAML file whose embeddings/scoring sections replace benchmarks.py's defaults")
    p.add_argument("--metrics", default=",".join(SHOWN_METRICS),
                   help=f"comma-separated metrics printed on each result line, named <name>@<cutoff> (default"
                   f" {','.join(SHOWN_METRICS)}); every result stores {', '.join(METRICS)} and any other metric named here")
    return p


def parse_run_args(argv: list[str]) -> argparse.Namespace:
    """The arguments that follow ``python -m harness run``, parsed as the command line parses them."""
    return add_run_arguments(argparse.ArgumentParser(prog="python -m harness run")).parse_args(argv)


def execute_run(args) -> list[dict]:
    """Run one condition over the requested datasets; returns the results (also saved unless --no-save).

    A collection (a folder of BEIR folders, e.g. CQADupStack) gives one result per subset, then
    their mean under the collection's name (:func:`harness.results.mean_result`).
    """
    from transformers.utils import logging as transformers_logging

    from harness.pipeline import RunOptions

    transformers_logging.disable_progress_bar()  # our own bars show progress; keep stderr for errors
    # Read by the kinds that build an FDE (muvera); the others ignore them.
    fde = {
        "repetitions": args.fde_repetitions,
        "hashes": args.fde_hashes,
        "projection": args.fde_projection,
        "seed": args.fde_seed,
        "mode": args.fde_mode,
    }
    if args.fde_mode == "paper":
        fde.update(fill_empty=True, final_projection=args.fde_final_projection)
    options = RunOptions(
        top_k=args.top_k,
        index=args.index,
        batch_size=args.batch_size,
        max_length=args.max_length,
        rerank=args.rerank,
        rerank_depth=args.rerank_depth,
        fde=fde,
        trust_remote_code=args.trust_remote_code,
        allow_pickle=args.allow_pickle,
        max_memory_bytes=int(args.max_memory * 2**30) if args.max_memory else None,
        precision=args.precision,
        backend=args.backend,
        name=args.name,
        empty_queries=args.empty_queries,
        metrics=METRICS + tuple(m for m in shown_metrics(args) if m not in METRICS),
    )
    names = split_names(args.datasets)
    if not names:
        raise HarnessError("--datasets is empty")
    with engine_from_args(args, options.max_memory_bytes) as options.engine:
        options.device = options.engine.device
        return _execute(args, options, names)


def _execute(args, options, names: list[str]) -> list[dict]:
    """Run ``options``' condition over ``names`` (inside the engine's context, see :func:`execute_run`)."""
    from harness.cache import VectorCache
    from harness.data import dataset_name, default_split, load_dataset, resolve_dataset_path, subsets
    from harness.pipeline import Condition
    from harness.results import mean_result

    cache = VectorCache(args.cache_dir, enabled=not args.no_cache)
    if args.profile == "txtai-benchmark":
        from harness.txtai_benchmark import TxtaiBenchmarkCondition

        condition = TxtaiBenchmarkCondition(args.model, options, cache, config_file=args.txtai_config)
    elif args.txtai_config:
        raise HarnessError("--txtai-config needs --profile txtai-benchmark")
    else:
        condition = Condition(args.model, options, cache)
    if args.stream_corpus:
        from harness.stages import FDEStage, VectorStage

        streams = isinstance(condition.first_stage, (VectorStage, FDEStage))
        if args.profile != "beir" or not streams or condition.reranker:
            raise HarnessError("--stream-corpus serves dense models (pico, minilm, a sentence-transformers folder) and"
                               " MUVERA FDEs, without --rerank or --profile txtai-benchmark: the others need the"
                               " corpus in memory")
        if args.no_cache:
            raise HarnessError("--stream-corpus keeps the vectors in the cache folder: drop --no-cache")
    command = "python -m harness " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    def load(folder: Path, split: str):
        return load_dataset(str(folder), split=split, strict=args.strict, stream=args.stream_corpus,
                            scratch=cache.root / "corpora" if args.stream_corpus else None)

    results = []
    for name in names:
        split = args.split or default_split(name)
        folder = resolve_dataset_path(name, args.data_dir)
        parts = subsets(folder)
        if not parts:
            dataset = load(folder, split)
            dataset.name = dataset_name(name)
            results.append(_run_dataset(args, condition, dataset, command))
            continue
        collection = dataset_name(name)
        done = []
        for part in parts:
            dataset = load(part, split)
            dataset.name = f"{collection}/{part.name}"
            done.append(_run_dataset(args, condition, dataset, command))
        results += done
        results.append(_report(args, condition.name, mean_result(collection, done), save_run=None))
    return results


def shown_metrics(args) -> tuple[str, ...]:
    """``--metrics``, each name checked (:func:`harness.evaluate.parse_metric`)."""
    names = tuple(split_names(args.metrics) or ())
    for name in names:
        parse_metric(name)
    return names


def _run_dataset(args, condition, dataset, command: str) -> dict:
    result, run = condition.run(dataset, command=command)
    return _report(args, condition.name, result, save_run=run)


def _report(args, condition_name: str, result: dict, save_run) -> dict:
    """Save ``result`` (and its TREC run) unless --no-save; print its line or its JSON object."""
    from harness.results import result_path, write_result, write_trec_run

    if not args.no_save:
        path = write_result(args.results_dir, result)
        if args.save_run and save_run is not None:
            write_trec_run(path.with_suffix(".trec"), save_run, tag=condition_name)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "per_query"}), flush=True)
    else:
        m = result["metrics"]
        shown = " ".join(f"{k}={m[k]:.4f}" for k in shown_metrics(args) if k in m)
        mean = f" (mean of {len(result['mean_of'])})" if result.get("mean_of") else ""
        print(
            f"{condition_name:<40} {result['dataset']:<10} {shown}"
            f" queries={result['n_queries']}{mean} ({result['timing']['total_seconds']:.1f}s)"
            + ("" if args.no_save else f" -> {result_path(args.results_dir, condition_name, result['dataset'])}"),
            file=sys.stderr if args.json else sys.stdout,
            flush=True,
        )
    return result



def split_names(value: str | None) -> list[str] | None:
    return [n.strip() for n in value.split(",") if n.strip()] if value else None


