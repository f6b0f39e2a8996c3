"""Stored results: one JSON file per (condition, dataset) under ``results/<condition>/<dataset>.json``.

Files are written atomically (:mod:`harness.fileio`), so a reader (``harness table``) never sees a
half-written result and a killed run keeps every result it had finished. A file that still fails to
parse is reported by name, never skipped silently.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import HarnessError
from harness.fileio import atomic_write_bytes, atomic_write_json

SCHEMA_VERSION = 1


def build_result(condition: str, model: str, dataset, *, metrics: dict, primary_metric: str, n_queries: int,
                 counts: dict, method: dict, text_format: dict, storage: dict, log, command: str,
                 per_query: dict[str, float]) -> dict:
    """The stored record of one (condition, dataset) run: what it measured and everything needed to
    say how (``log`` is the run's :class:`harness.stages.RunLog`; ``per_query``: query -> primary)."""
    from harness.provenance import environment, now_utc, peak_rss_mb

    return {
        "schema": SCHEMA_VERSION,
        "condition": condition,
        "model": model,
        "dataset": dataset.name,
        "split": dataset.split,
        "metrics": metrics,
        "primary_metric": primary_metric,
        "n_queries": n_queries,
        "counts": counts,
        "method": method,
        "dataset_info": {
            "path": str(dataset.path),
            "files_sha256": dataset.files,
            "checksum": dataset.checksum,
            "n_documents": len(dataset.doc_ids),
            "text_format": text_format,
        },
        "storage": storage,
        "timing": log.seconds,
        "cache": log.cache,
        "peak_rss_mb": peak_rss_mb(),
        "environment": environment(),
        "command": command,
        "created": now_utc(),
        "per_query": {primary_metric: per_query},
    }
def safe_component(name: str) -> str:
    """One file-name component for a condition or dataset name, never a way out of the folder:
    path separators become ``--`` (``cqadupstack/android`` -> ``cqadupstack--android``), and ``..``,
    ``.`` and a leading dot become underscores (``../x`` -> ``__--x``)."""
    parts = [part for part in name.replace("\\", "/").split("/") if part]
    parts = ["_" * len(part) if set(part) == {"."} else part for part in parts]
    safe = "--".join(parts) or "_"
    return "_" + safe[1:] if safe.startswith(".") else safe


def result_path(results_dir: Path, condition: str, dataset: str) -> Path:
    """``<results_dir>/<condition>/<dataset>.json``, each name made safe by :func:`safe_component`;
    ``harness table`` reads the names back from the files, so they keep their slashes there."""
    return Path(results_dir) / safe_component(condition) / f"{safe_component(dataset)}.json"


def write_result(results_dir: Path, result: dict) -> Path:
    path = result_path(results_dir, result["condition"], result["dataset"])
    atomic_write_json(path, result)
    return path


def mean_result(dataset: str, parts: list[dict]) -> dict:
    """The result of a collection (CQADupStack: 12 subforums) as BEIR and MTEB report it: each
    metric is the mean over the subsets' results (not over the pooled queries); counts, query
    numbers and times are summed, storage is weighted by each subset's documents, and the
    per-query ndcg@10 of every subset is kept under ``<subset>/<query id>``."""
    first = parts[0]
    documents = [r["dataset_info"]["n_documents"] for r in parts]
    storage = {}
    for key, value in (first.get("storage") or {}).items():
        values = [r["storage"].get(key) for r in parts]
        if isinstance(value, (int, float)) and all(isinstance(v, (int, float)) for v in values):
            value = round(sum(v * n for v, n in zip(values, documents)) / sum(documents), 1)
        storage[key] = value
    counts: dict[str, int] = {}
    for r in parts:
        for key, value in r["counts"].items():
            counts[key] = counts.get(key, 0) + value
    timing: dict[str, float] = {}
    for r in parts:
        for key, value in r["timing"].items():
            timing[key] = round(timing.get(key, 0.0) + value, 3)
    return {
        **first,
        "dataset": dataset,
        "metrics": {m: sum(r["metrics"][m] for r in parts) / len(parts) for m in first["metrics"]},
        "n_queries": sum(r["n_queries"] for r in parts),
        "counts": counts,
        "mean_of": [r["dataset"] for r in parts],
        "dataset_info": {
            "path": str(Path(first["dataset_info"]["path"]).parent),
            "subsets": {r["dataset"]: r["dataset_info"]["checksum"] for r in parts},
            "n_documents": sum(documents),
            "text_format": first["dataset_info"].get("text_format"),
        },
        "storage": storage,
        "timing": timing,
        "per_query": {
            metric: {f"{r['dataset'].rsplit('/', 1)[-1]}/{q}": v for r in parts for q, v in r["per_query"][metric].items()}
            for metric in first["per_query"]
        },
    }


def read_result(path: Path) -> dict:
    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{path}: unreadable result file ({exc})") from None
    if not isinstance(result, dict) or "metrics" not in result or "condition" not in result:
        raise HarnessError(f"{path}: not a harness result (no 'condition'/'metrics')")
    return result


def load_results(results_dir: Path) -> dict[tuple[str, str], dict]:
    """{(condition, dataset): result} for every ``<condition>/<dataset>.json`` under the folder."""
    results = {}
    for path in sorted(Path(results_dir).glob("*/*.json")):
        result = read_result(path)
        results[(result["condition"], result["dataset"])] = result
    return results


def write_trec_run(path: Path, run: dict[str, dict[str, float]], tag: str) -> None:
    """TREC run format ``qid Q0 docid rank score tag``, ranked as the metrics ranked it."""
    from harness.evaluate import ranking

    lines = []
    for query_id, docs in run.items():
        for rank, doc_id in enumerate(ranking(docs), start=1):
            lines.append(f"{query_id} Q0 {doc_id} {rank} {docs[doc_id]!r} {tag}\n")
    atomic_write_bytes(Path(path), "".join(lines).encode())
