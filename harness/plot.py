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


def plot(results_dir: Path, conditions_path: Path, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = load_conditions(conditions_path)
    results = load_results(results_dir)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    markers = "osD^v<>ph*"
    plotted = 0
    for i, dataset in enumerate(conditions.datasets):
        points = []
        for spec in conditions.conditions:
            result = results.get((spec.name, dataset))
            size = bytes_per_document(result) if result else None
            if size:
                points.append((size, result["metrics"][PRIMARY_METRIC], spec.label))
        if not points:
            continue
        xs, ys, labels = zip(*points)
        ax.scatter(xs, ys, marker=markers[i % len(markers)], s=50, label=DISPLAY.get(dataset, dataset))
        for x, y, label in points:
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        plotted += len(points)
    if not plotted:
        raise HarnessError(f"no stored results in {results_dir} with a per-document size to plot")
    ax.set_xscale("log")
    ax.set_xlabel("bytes stored per document (float32, log scale)")
    ax.set_ylabel("ndcg@10 (BEIR test split)")
    ax.set_title("Retrieval quality against storage per document")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_save_figure(out, fig)
    plt.close(fig)
    return out
