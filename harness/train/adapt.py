"""``python -m harness adapt``: adapt a general pico checkpoint to one corpus's unlabelled text.

GPL-style: the only queries are pseudo-queries made from the corpus's own documents (each
title, and random sentences, -> their document); the teacher (all-MiniLM-L6-v2, optionally
blended with BM25 as in the zero-shot recipe) scores them against the corpus, and the student
continues from the general checkpoint with the list-wise KL stage (dense pico) or the KD stage
(ColBERT pico). No query file, no judgment and no split of the dataset is read, except its
queries' texts, to drop any pseudo-query equal to one of them.

The result is a new model folder (default ``models/adapted/<model>-<dataset>``) whose card says
what it was adapted to; its BEIR rows on that dataset measure domain adaptation, not zero-shot
retrieval, and belong in the README's "adapted" table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import HarnessError

CONFIGS = Path(__file__).resolve().parent / "configs"


def adapt_config(model: str, dataset: str, steps: int, out: Path | None, data_dir: Path | None) -> dict:
    """The training config of one adaptation run (dense or ColBERT by the model's kind)."""
    from harness.data import resolve_dataset_path
    from harness.registry import resolve
    from harness.train.config import load_config

    spec, path = resolve(model)
    if spec.model_kind.training is None or path is None or not Path(path).is_dir():
        raise HarnessError(f"adapt: --model must be a local pico or ColBERT pico model, not {model!r}")
    folder = resolve_dataset_path(dataset, data_dir)
    name = folder.name
    colbert = spec.model_kind.training == "colbert"
    cfg = load_config(CONFIGS / ("colbert-pico.toml" if colbert else "pico.toml"))
    base = spec.name if spec.name in ("pico", "colbert-pico") else Path(path).name
    target = Path(out) if out else Path("models") / "adapted" / f"{base}-{name}"
    cfg["run"].update(out=str(target), run_dir=f".cache/train/runs/adapt-{base}-{name}")
    cfg["data"].update(root=str(folder.parent.resolve()), sources=[{"path": name, "format": "corpus", "name": name}],
                       exclude_queries_of=[str(folder.resolve())], beir_root="", title_queries=True,
                       sentences_per_doc=2, use_real_queries=False, use_pseudo_queries=True)
    if colbert:
        cfg["model"]["init_from"] = str(path)
        cfg["kd"]["steps"] = steps
        cfg["eval"].update(after_kd=False, dense_from="")
    else:
        cfg["init"]["from"] = str(path)
        cfg["embed"]["steps"] = 0
        cfg["kl"]["steps"] = steps
        cfg["eval"].update(after_embed=False, after_kl=False)
    command = f"python -m harness adapt --model {model} --dataset {dataset} --steps {steps}"
    cfg["card"] = {
        "title": f"{base} adapted to {name}",
        "command": command,
        "summary": f"`{model}` ({path}) continued on the unlabelled corpus text of `{name}` ({folder}). "
                   f"Its scores on {name} measure domain adaptation, not zero-shot retrieval.",
        "recipe": f"Every document of `{name}`'s corpus; queries are pseudo-queries made from the documents "
                  "(each title, and 2 random sentences, -> their document). No query, judgment or split of the "
                  "dataset is read; a pseudo-query equal to one of its queries' texts is dropped.",
        "method": ("KD stage of the ColBERT recipe" if colbert else "KL stage of the dense recipe")
                  + f", {steps} steps from the general checkpoint, with the zero-shot recipe's teacher "
                  "(MiniLM cosine + 0.3 x per-query-normalised BM25 over this corpus).",
        "selection": "Nothing was selected: the step count is the command's --steps.",
    }
    return cfg


def add_adapt_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "adapt", help="adapt a pico model to one corpus's unlabelled text (pseudo-queries + teacher)",
        description="Continue a general pico or ColBERT pico checkpoint on one dataset's corpus text, with "
        "pseudo-queries made from its documents and the MiniLM(+BM25) teacher. Reads no query or judgment. "
        "The adapted model's rows on that dataset are not zero-shot: report them in their own table.")
    p.add_argument("--model", default="pico", help="pico, colbert-pico, or a local model folder (default pico)")
    p.add_argument("--dataset", required=True, help="dataset name (under --data-dir) or BEIR folder")
    p.add_argument("--steps", type=int, default=1000, help="training steps (default 1000)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default models/adapted/<model>-<dataset>)")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--resume", action="store_true", help="continue an interrupted adaptation")
    p.set_defaults(func=run_adapt_args)
    return p


def run_adapt_args(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.steps < 1:
        raise HarnessError("adapt: --steps must be at least 1")
    cfg = adapt_config(args.model, args.dataset, args.steps, args.out, args.data_dir)
    if cfg["run"]["kind"] == "colbert":
        from harness.train.colbert_kd import train_colbert

        train_colbert(cfg, resume=args.resume)
    else:
        from harness.train.dense_kd import train_dense

        train_dense(cfg, resume=args.resume)
    print(f"wrote {cfg['run']['out']}")
    return 0
