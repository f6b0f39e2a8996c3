"""Command line: ``python -m harness {run,table,check,cache,train}``.

Every user-facing failure is a :class:`HarnessError`, printed as one ``error: ...`` line with exit
status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from harness.errors import HarnessError, error_line
from harness.train import add_train_parser

REPO = Path(__file__).resolve().parents[1]


def _add_run_parser(sub) -> None:
    p = sub.add_parser(
        "run",
        help="evaluate a model on BEIR datasets and store the results",
        description="Index each dataset with the chosen method, search its test queries exactly, evaluate with"
        " pytrec_eval and write results/<condition>/<dataset>.json with full provenance.",
    )
    p.add_argument("--model", required=True, help="bm25, minilm, pico, muvera-pico, colbert-pico, colbert:PATH,"
                   " muvera:PATH, a sentence-transformers folder, or a hub id")
    p.add_argument("--datasets", required=True, help="comma-separated dataset names (under --data-dir) or folders")
    p.add_argument("--split", default="test", help="qrels split to evaluate (default: test)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder of BEIR datasets (default: $HARNESS_DATA_DIR, else ../shared/data/beir)")
    p.add_argument("--results-dir", type=Path, default=REPO / "results", help="where result JSON files go")
    p.add_argument("--rerank", default=None, help="ColBERT model that rescores the first stage's top --rerank-depth")
    p.add_argument("--rerank-depth", type=int, default=100, help="how many first-stage results to rerank (default 100)")
    p.add_argument("--index", choices=("exact", "txtai"), default="exact",
                   help="exact: built-in batched matrix product; txtai: txtai Embeddings with its exact numpy backend")
    p.add_argument("--top-k", type=int, default=1000, help="results kept per query (default 1000, for recall@1000)")
    p.add_argument("--batch-size", type=int, default=32, help="encoding batch size")
    p.add_argument("--max-length", type=int, default=None, help="override the dense model's max sequence length")
    p.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                   help="dense encoder numerics: fp32 (reference) or int8 (dynamic quantisation: faster, slightly"
                   " different scores, reported as its own condition)")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="encoder runtime: torch (PyTorch eager) or onnx (the model exported once to ONNX, run by"
                   " onnxruntime; fp32 gives the same numbers, int8 is its own condition)")
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
    p.add_argument("--max-memory", type=float, default=None, help="memory budget in GiB for full maxsim scoring")
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    execute_run(args)
    return 0


def execute_run(args) -> list[dict]:
    """Run one condition over the requested datasets; returns the results (also saved unless --no-save)."""
    from harness.cache import VectorCache
    from harness.data import load_dataset
    from harness.pipeline import Condition, RunOptions
    from harness.results import result_path, write_result, write_trec_run

    fde = {}
    if args.model.startswith("muvera") or args.fde_mode != "txtai":
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
    )
    names = _names(args.datasets)
    if not names:
        raise HarnessError("--datasets is empty")
    cache = VectorCache(args.cache_dir, enabled=not args.no_cache)
    condition = Condition(args.model, options, cache)
    command = "python -m harness " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    results = []
    for name in names:
        dataset = load_dataset(name, split=args.split, data_dir=args.data_dir)
        result, run = condition.run(dataset, command=command)
        if not args.no_save:
            path = write_result(args.results_dir, result)
            if args.save_run:
                write_trec_run(path.with_suffix(".trec"), run, tag=condition.name)
        if args.json:
            print(json.dumps({k: v for k, v in result.items() if k != "per_query"}), flush=True)
        else:
            m = result["metrics"]
            print(
                f"{condition.name:<40} {dataset.name:<10} ndcg@10={m['ndcg@10']:.4f} recall@100={m['recall@100']:.4f}"
                f" mrr@10={m['mrr@10']:.4f} queries={result['n_queries']} ({result['timing']['total_seconds']:.1f}s)"
                + ("" if args.no_save else f" -> {result_path(args.results_dir, condition.name, dataset.name)}"),
                file=sys.stderr if args.json else sys.stdout,
                flush=True,
            )
        results.append(result)
    return results


def _add_table_parser(sub) -> None:
    p = sub.add_parser(
        "table",
        help="render markdown comparison tables from stored results",
        description="Render the model-card tables (Model | Parameters | NFCorpus | SciDocs | SciFact | Average),"
        " one per table group named in the conditions file, and rewrite the marked block in README.md.",
    )
    p.add_argument("--results-dir", type=Path, default=REPO / "results")
    p.add_argument("--conditions", type=Path, default=None, help="conditions file (default: results/conditions.toml)")
    p.add_argument("--readme", type=Path, default=REPO / "README.md", help="file whose marked block is rewritten")
    p.add_argument("--print", dest="print_only", action="store_true", help="print the tables; do not touch README")
    p.set_defaults(func=cmd_table)


def cmd_table(args) -> int:
    from harness.report import render_tables, update_readme

    conditions = args.conditions or args.results_dir / "conditions.toml"
    markdown = render_tables(args.results_dir, conditions)
    if args.print_only:
        print(markdown)
    else:
        update_readme(args.readme, markdown)
        print(f"updated the tables in {args.readme}")
    return 0


def _add_plot_parser(sub) -> None:
    p = sub.add_parser("plot", help="plot ndcg@10 against bytes per document from stored results",
                       description="Write a PNG of ndcg@10 against the bytes each method stores per document.")
    p.add_argument("--results-dir", type=Path, default=REPO / "results")
    p.add_argument("--conditions", type=Path, default=None, help="conditions file (default: results/conditions.toml)")
    p.add_argument("--out", type=Path, default=REPO / "results" / "ndcg_vs_bytes.png")
    p.set_defaults(func=cmd_plot)


def cmd_plot(args) -> int:
    from harness.plot import plot

    print(f"wrote {plot(args.results_dir, args.conditions or args.results_dir / 'conditions.toml', args.out)}")
    return 0


def _add_check_parser(sub) -> None:
    p = sub.add_parser(
        "check",
        help="regression check: rerun fast conditions and compare ndcg@10 with the committed expectations",
        description="Rerun every condition marked fast in the conditions file (or those named) and exit 1 with a"
        " readable diff when ndcg@10 drops beyond its tolerance or moves where it must be deterministic.",
    )
    _add_condition_selection(p, "default: all fast ones")
    p.add_argument("--all", action="store_true", help="also rerun the conditions not marked fast")
    p.set_defaults(func=cmd_check)


def _add_condition_selection(p, default_only: str) -> None:
    """The options ``check`` and ``reproduce`` share: which conditions, on which datasets, from where."""
    p.add_argument("--conditions", type=Path, default=REPO / "results" / "conditions.toml")
    p.add_argument("--only", default=None, help=f"comma-separated condition names ({default_only})")
    p.add_argument("--datasets", default=None, help="comma-separated datasets (default: each condition's expected)")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--cache-dir", type=Path, default=None)


def cmd_check(args) -> int:
    from harness.regression import check

    return check(args.conditions, only=_names(args.only), datasets=_names(args.datasets), include_slow=args.all,
                 data_dir=args.data_dir, cache_dir=args.cache_dir)


def _add_reproduce_parser(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help="rerun conditions from the conditions file and store their results",
        description="Run each condition of the conditions file (all, or --only) on its expected datasets and"
        " write the results: how every row of the README tables is produced.",
    )
    _add_condition_selection(p, "default: all")
    p.add_argument("--results-dir", type=Path, default=REPO / "results")
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args) -> int:
    from harness.regression import reproduce

    return reproduce(args.conditions, args.results_dir, only=_names(args.only), datasets=_names(args.datasets),
                     data_dir=args.data_dir, cache_dir=args.cache_dir)


def _names(value: str | None) -> list[str] | None:
    return [n.strip() for n in value.split(",") if n.strip()] if value else None


def _add_cache_parser(sub) -> None:
    p = sub.add_parser("cache", help="show or clear the vector cache",
                       description="Show where the vector cache is and how big it is, or clear it.")
    p.add_argument("action", choices=("info", "clear"))
    p.add_argument("--cache-dir", type=Path, default=None)
    p.set_defaults(func=cmd_cache)


def cmd_cache(args) -> int:
    from harness.cache import VectorCache

    cache = VectorCache(args.cache_dir)
    if args.action == "clear":
        print(f"cleared {cache.root}: {cache.clear() / 2**20:.1f} MiB freed")
    else:
        print(f"{cache.root}: {cache.size_bytes() / 2**20:.1f} MiB")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="BEIR benchmark harness for tiny embedding models: run, tabulate and regression-check.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_parser(sub)
    _add_table_parser(sub)
    _add_check_parser(sub)
    _add_reproduce_parser(sub)
    _add_plot_parser(sub)
    _add_cache_parser(sub)
    add_train_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Model hubs are unreachable here, and hub ids retry for minutes before failing: default offline.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # our own bars show progress; keep stderr for errors
    try:
        return args.func(args)
    except HarnessError as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished results are saved; rerun the same command to resume", file=sys.stderr)
        return 130
