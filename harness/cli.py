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
from harness.train.adapt import add_adapt_parser

REPO = Path(__file__).resolve().parents[1]
DATA_DIR_HELP = ("folder of BEIR datasets (default: $HARNESS_DATA_DIR, else $XDG_CACHE_HOME/harness/datasets,"
                 " i.e. ~/.cache/harness/datasets, with ../shared/data/beir beside the checkout as a fallback)")


def _add_run_parser(sub) -> None:
    p = sub.add_parser(
        "run",
        help="evaluate a model on BEIR datasets and store the results",
        description="Index each dataset with the chosen method, search its test queries exactly, evaluate with"
        " pytrec_eval and write results/<condition>/<dataset>.json with full provenance.",
    )
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
    p.add_argument("--profile", choices=("beir", "txtai-benchmark"), default="beir",
                   help="beir: BEIR's conventions (exact search, all metrics); txtai-benchmark: txtai's"
                   " examples/benchmarks.py run through txtai (its Embeddings/faiss or BM25 scoring, text joining,"
                   " query handling and evaluation at 10), stored as its own condition")
    p.add_argument("--txtai-config", type=Path, default=None,
                   help="txtai-benchmark: YAML file whose embeddings/scoring sections replace benchmarks.py's defaults")
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    execute_run(args)
    return 0


def execute_run(args) -> list[dict]:
    """Run one condition over the requested datasets; returns the results (also saved unless --no-save).

    A collection (a folder of BEIR folders, e.g. CQADupStack) gives one result per subset, then
    their mean under the collection's name (:func:`harness.results.mean_result`).
    """
    from transformers.utils import logging as transformers_logging

    from harness.cache import VectorCache
    from harness.data import dataset_name, default_split, load_dataset, resolve_dataset_path, subsets
    from harness.pipeline import Condition, RunOptions
    from harness.results import mean_result

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
    )
    names = _names(args.datasets)
    if not names:
        raise HarnessError("--datasets is empty")
    cache = VectorCache(args.cache_dir, enabled=not args.no_cache)
    if args.profile == "txtai-benchmark":
        from harness.txtai_benchmark import TxtaiBenchmarkCondition

        condition = TxtaiBenchmarkCondition(args.model, options, cache, config_file=args.txtai_config)
    elif args.txtai_config:
        raise HarnessError("--txtai-config needs --profile txtai-benchmark")
    else:
        condition = Condition(args.model, options, cache)
    command = "python -m harness " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    results = []
    for name in names:
        split = args.split or default_split(name)
        folder = resolve_dataset_path(name, args.data_dir)
        parts = subsets(folder)
        if not parts:
            dataset = load_dataset(str(folder), split=split, strict=args.strict)
            dataset.name = dataset_name(name)
            results.append(_run_dataset(args, condition, dataset, command))
            continue
        collection = dataset_name(name)
        done = []
        for part in parts:
            dataset = load_dataset(str(part), split=split, strict=args.strict)
            dataset.name = f"{collection}/{part.name}"
            done.append(_run_dataset(args, condition, dataset, command))
        results += done
        results.append(_report(args, condition.name, mean_result(collection, done), save_run=None))
    return results


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
        shown = " ".join(f"{k}={m[k]:.4f}" for k in ("ndcg@10", "recall@100", "mrr@10") if k in m)
        mean = f" (mean of {len(result['mean_of'])})" if result.get("mean_of") else ""
        print(
            f"{condition_name:<40} {result['dataset']:<10} {shown}"
            f" queries={result['n_queries']}{mean} ({result['timing']['total_seconds']:.1f}s)"
            + ("" if args.no_save else f" -> {result_path(args.results_dir, condition_name, result['dataset'])}"),
            file=sys.stderr if args.json else sys.stdout,
            flush=True,
        )
    return result


def _add_data_parser(sub) -> None:
    p = sub.add_parser(
        "data",
        help="list local BEIR datasets, or download one",
        description="list: every official BEIR dataset and where it is local. get NAME: download, verify"
        " (BEIR's published md5) and unzip NAME into the data folder, without running anything. The server"
        " is BEIR's, or $HARNESS_BEIR_URL (a mirror serving <url>/<name>.zip).",
    )
    p.add_argument("action", choices=("list", "get"))
    p.add_argument("names", nargs="*", help="dataset names for get")
    p.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    p.set_defaults(func=cmd_data)


def cmd_data(args) -> int:
    from harness.data import data_dirs, resolve_dataset_path
    from harness.download import BEIR_MD5, base_url

    folders = data_dirs(args.data_dir)
    if args.action == "get":
        if not args.names:
            raise HarnessError("data get: name at least one dataset, e.g. `harness data get scifact`")
        for name in args.names:
            print(f"{name}: {resolve_dataset_path(name, args.data_dir)}")
        return 0
    print("data folders (first: where downloads go): " + ", ".join(map(str, folders)))
    print(f"server: {base_url()}")
    local = {}
    for folder in reversed(folders):
        if folder.is_dir():
            local.update({p.name: p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")})
    for name in sorted(set(BEIR_MD5) | set(local)):
        where = str(local[name]) if name in local else "not local (harness data get " + name + ")"
        kind = "" if name in BEIR_MD5 else "  [not an official BEIR name]"
        print(f"{name:<18} {where}{kind}")
    return 0


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
    p.add_argument("--check", action="store_true",
                   help="exit 1 if the README's table block differs from what the stored results render (CI)")
    p.set_defaults(func=cmd_table)


def cmd_table(args) -> int:
    from harness.report import readme_is_current, render_tables, update_readme

    conditions = args.conditions or args.results_dir / "conditions.toml"
    markdown = render_tables(args.results_dir, conditions)
    if args.check:
        if readme_is_current(args.readme, markdown):
            print(f"the tables in {args.readme} match the stored results")
            return 0
        print(f"the tables in {args.readme} differ from the stored results; run `python -m harness table`",
              file=sys.stderr)
        return 1
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
        epilog="Model hubs are offline by default (HF_HUB_OFFLINE=1): a hub id loads only from the local"
        " Hugging Face cache. Set HF_HUB_OFFLINE=0 to download hub models. Datasets download from BEIR's"
        " server, or from $HARNESS_BEIR_URL.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_parser(sub)
    _add_table_parser(sub)
    _add_check_parser(sub)
    _add_reproduce_parser(sub)
    _add_plot_parser(sub)
    _add_cache_parser(sub)
    _add_data_parser(sub)
    add_train_parser(sub)
    add_adapt_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Model hubs are unreachable here, and hub ids retry for minutes before failing: default offline.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished results are saved; rerun the same command to resume", file=sys.stderr)
        return 130
