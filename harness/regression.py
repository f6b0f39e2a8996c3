"""``harness check``: rerun the conditions marked fast and compare ndcg@10 with the committed values;
``harness reproduce``: rerun conditions and store their results (how every table row is made).

A condition fails when its ndcg@10 (rounded to 4 decimals) drops by more than its tolerance, or,
for a deterministic condition, moves at all. Improvements are reported too: a deterministic score
that moves up means the committed expectation is stale and must be updated deliberately.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path

from tabulate import tabulate

from harness.conditions import load_conditions
from harness.errors import HarnessError
from harness.evaluate import PRIMARY_METRIC


def _run_condition(spec, names: list[str], results_dir: Path | None, data_dir, cache_dir) -> list[dict]:
    """``harness run <spec.args> --datasets <names>`` in-process; saved only when results_dir is given."""
    from harness.runner import execute_run, parse_run_args

    with tempfile.TemporaryDirectory() as tmp:
        argv = [*shlex.split(spec.args), "--datasets", ",".join(names), "--name", spec.name,
                "--results-dir", str(results_dir or tmp)]
        if results_dir is None:
            argv.append("--no-save")
        if data_dir:
            argv += ["--data-dir", str(data_dir)]
        if cache_dir:
            argv += ["--cache-dir", str(cache_dir)]
        return execute_run(parse_run_args(argv))


def _select(conditions, conditions_path: Path, only: list[str] | None, include_slow: bool):
    selected = [c for c in conditions.conditions if (c.name in only if only else (c.fast or include_slow))]
    if only and len(selected) != len(set(only)):
        unknown = set(only) - {c.name for c in selected}
        raise HarnessError(f"{conditions_path}: no condition named {', '.join(sorted(unknown))}")
    return selected


def reproduce(
    conditions_path: Path,
    results_dir: Path,
    only: list[str] | None = None,
    datasets: list[str] | None = None,
    data_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> int:
    """Run every selected condition (default: all) on its expected datasets, or ``datasets``."""
    conditions = load_conditions(conditions_path)
    for spec in _select(conditions, conditions_path, only, include_slow=True):
        names = datasets or list(spec.expected)
        if not names:
            raise HarnessError(f"{conditions_path}: condition '{spec.name}' has no expected datasets; pass --datasets")
        print(f"# {spec.command(names)}", flush=True)
        _run_condition(spec, names, results_dir, data_dir, cache_dir)
    return 0


def check(
    conditions_path: Path,
    only: list[str] | None = None,
    datasets: list[str] | None = None,
    include_slow: bool = False,
    data_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> int:
    """Exit status: 0 when every checked score holds, 1 otherwise."""
    conditions = load_conditions(conditions_path)
    selected = _select(conditions, conditions_path, only, include_slow)
    rows, failed = [], 0
    for spec in selected:
        names = [d for d in spec.expected if datasets is None or d in datasets]
        if not names:
            continue
        from harness.data import dataset_name

        results = {r["dataset"]: r for r in _run_condition(spec, names, None, data_dir, cache_dir)}
        for name in names:
            result = results[dataset_name(name)]  # a collection also gives its subsets' results
            expected = spec.expected[name]
            got = round(result["metrics"][PRIMARY_METRIC], 4)
            delta = round(got - expected, 4)
            if delta < -spec.tolerance - 1e-9:
                status = "FAIL: dropped"
            elif spec.deterministic and delta != 0:
                status = "FAIL: moved (deterministic)"
            elif delta > 0:
                status = "ok (improved: update expected)"
            else:
                status = "ok"
            failed += status.startswith("FAIL")
            rows.append([spec.name, result["dataset"], f"{expected:.4f}", f"{got:.4f}", f"{delta:+.4f}",
                         f"{spec.tolerance:.4f}", status])
    if not rows:
        raise HarnessError(f"{conditions_path}: no condition selected to check")
    print(tabulate(rows, headers=["condition", "dataset", "expected", "got", "delta", "tolerance", "status"],
                   tablefmt="github"))
    print(f"{len(rows) - failed} held, {failed} failed", file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0
