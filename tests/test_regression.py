"""harness.regression: `check` compares a rerun with the committed ndcg@10; `reproduce` stores it."""

from __future__ import annotations

import json

import pytest

from harness.errors import HarnessError
from harness.regression import check, reproduce


def _conditions(tmp_path, dataset, expected, deterministic=True, tolerance=0.0):
    path = tmp_path / "conditions.toml"
    path.write_text(f'datasets = ["{dataset}"]\n[[group]]\nname = "g"\n'
                    f'[[condition]]\nname = "bm25"\nlabel = "BM25"\nargs = "--model bm25"\ngroups = ["g"]\n'
                    f'fast = true\ndeterministic = {str(deterministic).lower()}\ntolerance = {tolerance}\n'
                    f'expected = {{ "{dataset}" = {expected:.4f} }}\n')
    return path


@pytest.fixture
def bm25_score(small_beir, tmp_path):
    """bm25's ndcg@10 on the small dataset, stored by `reproduce` under the condition's name."""
    conditions = _conditions(tmp_path, small_beir, 0.0)
    assert reproduce(conditions, tmp_path / "results", cache_dir=tmp_path / "cache") == 0
    (stored,) = (tmp_path / "results" / "bm25").glob("*.json")
    return round(json.loads(stored.read_text())["metrics"]["ndcg@10"], 4)


def test_holding_moving_and_dropping(small_beir, tmp_path, bm25_score, capsys):
    cache = tmp_path / "cache"
    assert check(_conditions(tmp_path, small_beir, bm25_score), cache_dir=cache) == 0
    assert "| ok " in capsys.readouterr().out
    assert check(_conditions(tmp_path, small_beir, bm25_score - 0.001), cache_dir=cache) == 1  # deterministic: moved
    assert "FAIL: moved (deterministic)" in capsys.readouterr().out
    assert check(_conditions(tmp_path, small_beir, bm25_score - 0.001, deterministic=False), cache_dir=cache) == 0
    assert "ok (improved: update expected)" in capsys.readouterr().out
    lower = _conditions(tmp_path, small_beir, bm25_score + 0.003, deterministic=False, tolerance=0.002)
    assert check(lower, cache_dir=cache) == 1
    assert "FAIL: dropped" in capsys.readouterr().out


def test_selection_errors(small_beir, tmp_path):
    conditions = _conditions(tmp_path, small_beir, 0.5)
    with pytest.raises(HarnessError, match="no condition named ghost"):
        check(conditions, only=["ghost"])
    with pytest.raises(HarnessError, match="no condition selected"):
        check(conditions, datasets=["elsewhere"])
