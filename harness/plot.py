"""``harness plot``: ndcg@10 against bytes stored per document, one point per (condition, dataset).

Bytes per document is what a deployment must keep for search: the float32 vector for dense and FDE
first stages, the token matrix (mean over the corpus) for full maxsim, and both for a first stage
plus maxsim reranking. BM25 (an inverted index) is left out.
"""

from __future__ import annotations

from pathlib import Path

from harness.conditions import load_conditions
from harness.errors import HarnessError
from harness.fileio import atomic_save_figure
from harness.evaluate import PRIMARY_METRIC
from harness.results import load_results
from harness.report import DISPLAY


def bytes_per_document(result: dict) -> float | None:
    return (result.get("storage") or {}).get("bytes_per_doc")


def _clusters(points: list[tuple[float, float, int]]) -> list[tuple[tuple[float, float], list[int]]]:
    """Points that would print on top of each other (within 12% in bytes and 0.012 in ndcg@10)
    share one label: [((x, y) of the first, [numbers])], in input order."""
    groups: list[tuple[tuple[float, float], list[int]]] = []
    for x, y, number in points:
        for (gx, gy), members in groups:
            if abs(x / gx - 1) < 0.12 and abs(y - gy) < 0.012:
                members.append(number)
                break
        else:
            groups.append(((x, y), [number]))
    return groups


def plot(results_dir: Path, conditions_path: Path, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = load_conditions(conditions_path)
    results = load_results(results_dir)
    fig, ax = plt.subplots(figsize=(11.5, 5), dpi=120)
    markers = "osD^v<>ph*"
    numbers: dict[str, int] = {}  # condition label -> the number its points carry on the plot
    plotted = 0
    for i, dataset in enumerate(conditions.datasets):
        points = []
        for spec in conditions.conditions:
            result = results.get((spec.name, dataset))
            size = bytes_per_document(result) if result else None
            if size:
                number = numbers.setdefault(spec.label, len(numbers) + 1)
                points.append((size, result["metrics"][PRIMARY_METRIC], number))
        if not points:
            continue
        xs, ys, _ = zip(*points)
        ax.scatter(xs, ys, marker=markers[i % len(markers)], s=50, label=DISPLAY.get(dataset, dataset))
        for (x, y), group in _clusters(points):
            ax.annotate(", ".join(map(str, group)), (x, y), textcoords="offset points", xytext=(6, 3), fontsize=8)
        plotted += len(points)
    if not plotted:
        raise HarnessError(f"no stored results in {results_dir} with a per-document size to plot")
    key = "\n".join(f"{n}  {label}" for label, n in numbers.items())
    fig.text(0.6, 0.5, key, fontsize=7.5, va="center", family="monospace")
    ax.set_xscale("log")
    ax.set_xlabel("bytes stored per document (float32, log scale)")
    ax.set_ylabel("ndcg@10 (BEIR test split)")
    ax.set_title("Retrieval quality against storage per document")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout(rect=(0, 0, 0.59, 1))
    atomic_save_figure(out, fig)
    plt.close(fig)
    return out
