"""harness.conditions: the conditions file, read strictly."""

from __future__ import annotations

import pytest

from harness.conditions import CONDITIONS, load_conditions
from harness.errors import HarnessError

BODY = '''
datasets = ["nfcorpus", "scifact"]
[[group]]
name = "main"
caption = "the rows"
[[group]]
name = "three ways"
layout = "conventions"
[[condition]]
name = "bm25"
label = "BM25"
args = "--model bm25"
groups = ["main", "three ways"]
fast = true
tolerance = 0.002
expected = { nfcorpus = 0.318, scifact = 0.6791 }
published = { scifact = 0.66 }
txtai_benchmark = "bm25-txtai"
[[condition]]
name = "bm25-txtai"
label = "BM25 through txtai"
args = "--model bm25 --profile txtai-benchmark"
'''


def test_fields_defaults_and_the_command_of_a_row(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(BODY)
    conditions = load_conditions(path)
    assert conditions.datasets == ("nfcorpus", "scifact")
    assert conditions.groups == (("main", "the rows"), ("three ways", ""))
    assert conditions.layouts == {"three ways": "conventions"}
    bm25, txtai = conditions.conditions
    assert (bm25.fast, bm25.deterministic, bm25.tolerance) == (True, True, 0.002)
    assert bm25.expected == {"nfcorpus": 0.318, "scifact": 0.6791} and bm25.published == {"scifact": 0.66}
    assert (txtai.fast, txtai.groups, txtai.expected) == (False, (), {})
    assert bm25.command(["scifact"]) == "python -m harness run --model bm25 --datasets scifact"


@pytest.mark.parametrize("change, message", [
    (lambda b: b.replace('label = "BM25"\n', ""), r"condition #1 lacks label"),
    (lambda b: b.replace('groups = ["main", "three ways"]', 'groups = ["nope"]'), r"'bm25' names unknown groups \['nope'\]"),
    (lambda b: b.replace('txtai_benchmark = "bm25-txtai"', 'txtai_benchmark = "ghost"'), r"unknown txtai_benchmark condition 'ghost'"),
    (lambda b: b + "[[condition\n", r"invalid TOML"),
])
def test_mistakes_are_one_error_naming_the_file(tmp_path, change, message):
    path = tmp_path / "c.toml"
    path.write_text(change(BODY))
    with pytest.raises(HarnessError, match=message):
        load_conditions(path)
    with pytest.raises(HarnessError, match="conditions file not found"):
        load_conditions(tmp_path / "missing.toml")


def test_the_project_file_lives_beside_the_code_and_every_fast_row_has_expectations():
    conditions = load_conditions(CONDITIONS)
    assert CONDITIONS.parent.name == "harness"
    fast = [c for c in conditions.conditions if c.fast]
    assert fast and all(c.expected for c in fast)
