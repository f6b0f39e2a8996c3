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


def result_path(results_dir: Path, condition: str, dataset: str) -> Path:
    return Path(results_dir) / condition / f"{dataset}.json"


def write_result(results_dir: Path, result: dict) -> Path:
    path = result_path(results_dir, result["condition"], result["dataset"])
    atomic_write_json(path, result)
    return path


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
