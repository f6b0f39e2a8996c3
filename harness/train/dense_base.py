"""The trained dense pico that the ColBERT recipe starts from: its encoder and its shipped length."""

from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError


def load_dense_base(path: str | Path):
    """The BertHash encoder of a trained dense pico folder (a one-line error naming the train
    command when the folder holds none)."""
    from harness.models.berthash import load_berthash

    path = Path(path)
    if not (path / "config.json").exists():
        raise HarnessError(f"{path}: no trained dense pico here; train it first "
                           "(python -m harness train --config harness/train/configs/pico.toml)")
    return load_berthash(path)


def shipped_length(folder: str | Path) -> int:
    """``max_seq_length`` of a sentence-transformers folder, as sentence-transformers reads it."""
    from sentence_transformers import SentenceTransformer

    from harness.models import berthash  # noqa: F401  (the harness's own bert_hash code, not the folder's)

    return int(SentenceTransformer(str(folder), device="cpu").max_seq_length)
