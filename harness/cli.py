"""Command line: ``python -m harness {run,table,check,cache,train}``.

Every user-facing failure is a :class:`HarnessError`, printed as one ``error: ...`` line with exit
status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.conditions import CONDITIONS
from harness.errors import HarnessError, error_line
from harness.runner import DATA_DIR_HELP, REPO, RUN_DESCRIPTION, RUN_HELP, add_run_arguments, execute_run, split_names
from harness.train import add_train_parser
from harness.train.adapt import add_adapt_parser


def _add_run_parser(sub) -> None:
    p = add_run_arguments(sub.add_parser("run", help=RUN_HELP, description=RUN_DESCRIPTION))
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    execute_run(args)
    return 0


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
    p.add_argument("--conditions", type=Path, default=CONDITIONS, help="conditions file (default: %(default)s)")
    p.add_argument("--readme", type=Path, default=REPO / "README.md", help="file whose marked block is rewritten")
    p.add_argument("--print", dest="print_only", action="store_true", help="print the tables; do not touch README")
    p.add_argument("--check", action="store_true",
                   help="exit 1 if the README's table block differs from what the stored results render (CI)")
    p.set_defaults(func=cmd_table)


def cmd_table(args) -> int:
    from harness.report import readme_is_current, render_tables, update_readme

    markdown = render_tables(args.results_dir, args.conditions)
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
    p.add_argument("--conditions", type=Path, default=CONDITIONS, help="conditions file (default: %(default)s)")
    p.add_argument("--out", type=Path, default=REPO / "results" / "ndcg_vs_bytes.png")
    p.set_defaults(func=cmd_plot)


def cmd_plot(args) -> int:
    from harness.plot import plot

    print(f"wrote {plot(args.results_dir, args.conditions, args.out)}")
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
    p.add_argument("--conditions", type=Path, default=CONDITIONS, help="conditions file (default: %(default)s)")
    p.add_argument("--only", default=None, help=f"comma-separated condition names ({default_only})")
    p.add_argument("--datasets", default=None, help="comma-separated datasets (default: each condition's expected)")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--cache-dir", type=Path, default=None)


def cmd_check(args) -> int:
    from harness.regression import check

    return check(args.conditions, only=split_names(args.only), datasets=split_names(args.datasets), include_slow=args.all,
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

    return reproduce(args.conditions, args.results_dir, only=split_names(args.only), datasets=split_names(args.datasets),
                     data_dir=args.data_dir, cache_dir=args.cache_dir)


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
