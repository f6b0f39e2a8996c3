"""Start-up time of the commands that encode nothing: each must finish in under 1 s.

Runs every command ``--repeat`` times as ``python -m harness ...`` in a fresh subprocess (wall
time, median and best; median CPU seconds of the subprocess, the steadier figure on a busy machine),
then once more under a wrapper that reports which heavy modules the command imported (none of
torch / transformers / sentence_transformers / scipy.stats should be).

    python benchmarks/startup.py               # 5 runs each
    python benchmarks/startup.py --repeat 10

No test asserts a time; ``tests/test_startup.py`` checks only what is imported.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "sentence_transformers", "scipy.stats", "txtai", "beir")
COMMANDS = [
    ["--help"],
    ["table", "--print"],
    ["plot", "--help"],
    ["check", "--help"],
    ["cache", "info"],
    ["data", "list"],
]
PROBE = (
    "import sys, contextlib, io\n"
    "from harness.cli import main\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    try:\n"
    "        main(sys.argv[1:])\n"
    "    except SystemExit:\n"
    "        pass\n"
    "print(','.join(m for m in {heavy!r} if m in sys.modules))\n"
)


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes so far (steady under load, where
    wall time is not)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(REPO), "HARNESS_CACHE_DIR": tmp, "HF_HUB_OFFLINE": "1"}
        print(f"load average {os.getloadavg()[0]:.2f}; {args.repeat} runs per command; python {sys.version.split()[0]}")
        print(f"{'command':<28} {'median s':>9} {'best s':>8} {'CPU s':>6}  heavy modules imported")
        worst = 0.0
        for command in COMMANDS:
            times, cpu = [], []
            for _ in range(args.repeat):
                start, used = time.perf_counter(), _children_cpu()
                subprocess.run([sys.executable, "-m", "harness", *command], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
                times.append(time.perf_counter() - start)
                cpu.append(_children_cpu() - used)
            probe = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *command], cwd=REPO, env=env,
                                   capture_output=True, text=True, check=False)
            heavy = probe.stdout.strip() if probe.returncode == 0 else f"probe failed: {probe.stderr.strip()[-80:]}"
            median = statistics.median(times)
            worst = max(worst, median)
            print(f"{' '.join(command):<28} {median:>9.3f} {min(times):>8.3f} {statistics.median(cpu):>6.3f}"
                  f"  {heavy or 'none'}")
        print(f"slowest median: {worst:.3f} s ({'under' if worst < 1 else 'OVER'} the 1 s target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
