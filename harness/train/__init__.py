"""``python -m harness train``: train the tiny students (``pico`` dense, ``colbert-pico``).

CLI wiring (for the CLI owner), either::

    from harness.train import add_train_parser
    add_train_parser(subparsers)          # adds "train"; sets args.func = run_train_args

or call ``harness.train.main(argv)`` with the arguments after ``train``::

    main(["--config", "harness/train/configs/pico.toml", "--set", "kl.steps=10", "--resume"])

Both return 0 on success and raise ``HarnessError`` for user errors (bad config, missing data).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["main", "add_train_parser", "run_train_args", "train_from_config"]


def _configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--config", required=True, help="TOML config, e.g. harness/train/configs/pico.toml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set kl.steps=200 (repeatable; TOML literals)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run's last checkpoint (.cache/train/runs/<name>/checkpoint.pt)")
    p.add_argument("--out", default=None, help="output folder (default: run.out from the config)")
    return p


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train a tiny student model (pico / colbert-pico) from a TOML config")
    _configure(p)
    p.set_defaults(func=run_train_args)
    return p


def train_from_config(config: str | Path, overrides: list[str] | None = None, resume: bool = False,
                      out: str | Path | None = None) -> dict:
    from harness.train.config import load_config

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg = load_config(config, overrides)
    if out is not None:
        cfg["run"]["out"] = str(out)
    kind = cfg["run"]["kind"]
    if kind == "dense":
        from harness.train.dense_kd import train_dense

        return train_dense(cfg, resume=resume)
    if kind == "colbert":
        from harness.train.colbert_kd import train_colbert
        from harness.train.average import members, train_colbert_average

        return train_colbert_average(cfg, resume=resume) if members(cfg) else train_colbert(cfg, resume=resume)
    from harness.errors import HarnessError

    raise HarnessError(f"{config}: run.kind must be 'dense' or 'colbert', not {kind!r}")


def run_train_args(args: argparse.Namespace) -> int:
    train_from_config(args.config, args.overrides, args.resume, args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = _configure(argparse.ArgumentParser(prog="harness train"))
    return run_train_args(p.parse_args(argv))
