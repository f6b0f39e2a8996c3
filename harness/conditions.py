"""The conditions file (``results/conditions.toml``): every row of the tables, with the command that
produces it and the ndcg@10 it is expected to give, in the spirit of Pyserini's two-click
reproductions. ``harness table`` reads it for labels and groups; ``harness check`` reruns it.

Format::

    datasets = ["nfcorpus", "scidocs", "scifact"]        # table columns, in this order

    [[group]]
    name = "compare to other models"                      # a table, in file order
    caption = "..."

    [[condition]]
    name = "bm25"                                         # = results/<name>/
    label = "BM25"                                        # the Model column
    args = "--model bm25"                                 # `python -m harness run` arguments
    groups = ["compare to other models"]
    fast = true                                           # rerun by `harness check` in CI
    deterministic = true                                  # any move at 4 decimals is a failure
    tolerance = 0.002                                     # allowed ndcg@10 drop otherwise
    expected = { nfcorpus = 0.3180, scifact = 0.6791 }    # ndcg@10, 4 decimals
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError


@dataclass(frozen=True)
class ConditionSpec:
    name: str
    label: str
    args: str
    groups: tuple[str, ...]
    fast: bool = False
    deterministic: bool = True
    tolerance: float = 0.0
    expected: dict[str, float] = field(default_factory=dict)

    def command(self, datasets: list[str]) -> str:
        return f"python -m harness run {self.args} --datasets {','.join(datasets)}"


@dataclass(frozen=True)
class Conditions:
    datasets: tuple[str, ...]
    groups: tuple[tuple[str, str], ...]  # (name, caption)
    conditions: tuple[ConditionSpec, ...]


def load_conditions(path: Path) -> Conditions:
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"{path}: conditions file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise HarnessError(f"{path}: invalid TOML ({exc})") from None
    groups = tuple((g["name"], g.get("caption", "")) for g in raw.get("group", []))
    group_names = {name for name, _ in groups}
    conditions = []
    for number, entry in enumerate(raw.get("condition", []), start=1):
        missing = [key for key in ("name", "label", "args") if key not in entry]
        if missing:
            raise HarnessError(f"{path}: condition #{number} lacks {', '.join(missing)}")
        unknown = set(entry.get("groups", [])) - group_names
        if unknown:
            raise HarnessError(f"{path}: condition '{entry['name']}' names unknown groups {sorted(unknown)}")
        conditions.append(
            ConditionSpec(
                name=entry["name"],
                label=entry["label"],
                args=entry["args"],
                groups=tuple(entry.get("groups", [])),
                fast=bool(entry.get("fast", False)),
                deterministic=bool(entry.get("deterministic", True)),
                tolerance=float(entry.get("tolerance", 0.0)),
                expected={k: float(v) for k, v in entry.get("expected", {}).items()},
            )
        )
    return Conditions(tuple(raw.get("datasets", [])), groups, tuple(conditions))
