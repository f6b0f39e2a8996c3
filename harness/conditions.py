"""The conditions file (:data:`CONDITIONS`, ``harness/conditions.toml``): every row of the tables, with
the command that produces it and the ndcg@10 it is expected to give, in the spirit of Pyserini's
two-click reproductions (whose YAML also lives beside the code). ``harness table`` reads it for labels
and groups; ``harness check`` reruns it; ``harness reproduce`` makes ``results/`` from it.

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

A group with ``layout = "conventions"`` is the seed-conventions table: one row per member, each
dataset shown three ways: the seed's published figure (``published``), the condition named by the
member's ``txtai_benchmark`` (the same model under ``--profile txtai-benchmark``) and the member
itself (``--profile beir``)::

    published = { nfcorpus = 0.3089, scifact = 0.6527 }   # the seed's figure, as published
    txtai_benchmark = "minilm-txtai-benchmark"            # a condition of this file
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError

#: The project's conditions file: an input of the code, versioned with it.
CONDITIONS = Path(__file__).with_name("conditions.toml")


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
    published: dict[str, float] = field(default_factory=dict)  # the seed's figure for this row
    txtai_benchmark: str | None = None  # the condition running this row under --profile txtai-benchmark

    def command(self, datasets: list[str]) -> str:
        return f"python -m harness run {self.args} --datasets {','.join(datasets)}"


@dataclass(frozen=True)
class Conditions:
    datasets: tuple[str, ...]
    groups: tuple[tuple[str, str], ...]  # (name, caption)
    conditions: tuple[ConditionSpec, ...]
    layouts: dict[str, str] = field(default_factory=dict)  # group name -> layout, when not the default


def load_conditions(path: Path) -> Conditions:
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"{path}: conditions file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise HarnessError(f"{path}: invalid TOML ({exc})") from None
    groups = tuple((g["name"], g.get("caption", "")) for g in raw.get("group", []))
    layouts = {g["name"]: g["layout"] for g in raw.get("group", []) if "layout" in g}
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
                published={k: float(v) for k, v in entry.get("published", {}).items()},
                txtai_benchmark=entry.get("txtai_benchmark"),
            )
        )
    names = {c.name for c in conditions}
    for spec in conditions:
        if spec.txtai_benchmark and spec.txtai_benchmark not in names:
            raise HarnessError(f"{path}: condition '{spec.name}' names an unknown txtai_benchmark condition"
                               f" '{spec.txtai_benchmark}'")
    return Conditions(tuple(raw.get("datasets", [])), groups, tuple(conditions), layouts)
