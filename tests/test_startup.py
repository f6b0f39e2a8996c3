"""Commands that encode nothing import nothing heavy (times: benchmarks/startup.py, never asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO, harness_subprocess_env


def _benchmark():
    """benchmarks/startup.py, whose probe (what a command imported) the test reuses."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("startup_benchmark", REPO / "benchmarks" / "startup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STARTUP = _benchmark()
HEAVY, PROBE = STARTUP.HEAVY, STARTUP.PROBE


@pytest.mark.parametrize("command", [[], ["--help"], ["table", "--print"], ["plot", "--help"], ["check", "--help"],
                                     ["cache", "info"], ["data", "list"]], ids=lambda c: " ".join(c) or "import")
def test_light_commands_import_no_heavy_module(tmp_path, command):
    code = f"import sys, harness.cli; print(','.join(m for m in {HEAVY!r} if m in sys.modules))" if not command \
        else PROBE.format(heavy=HEAVY)
    env = harness_subprocess_env(tmp_path, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", code, *command], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1:] in ([], [""]), f"imported: {done.stdout.strip()}"


def test_paired_t_pvalue_matches_scipy_ttest_rel():
    import numpy as np
    from scipy.stats import ttest_rel

    from harness.report import paired_t_pvalue

    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(2, 1200))
        x = rng.random(n)
        y = x + rng.normal(rng.normal(0, 0.05), 0.1, n) * (rng.random(n) < 0.7)
        assert paired_t_pvalue(list(y - x)) == pytest.approx(float(ttest_rel(y, x).pvalue), abs=1e-11)
