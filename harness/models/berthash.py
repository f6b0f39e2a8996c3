"""BertHash: BERT with a factorised (vocab x projections) -> hidden word-embedding table.

Architecture (see ``hf_modeling/modeling_bert_hash.py`` for shapes and tensor names): stock
``transformers`` BERT except word embeddings = ``nn.Embedding(vocab_size, projections)`` followed
by a bias-free ``nn.Linear(projections, hidden_size)``. Sizes (parameters counted exactly):

===========  ===========  ======  ============  ======  =====  ===================================
name         projections  hidden  intermediate  layers  heads  parameters (with / without pooler)
===========  ===========  ======  ============  ======  =====  ===================================
femto        5            50      200           2       2      see ``femto_config()``
pico         8            80      320           2       2      448,256 / 441,776
nano         16           128     512           2       2      see ``nano_config()``
===========  ===========  ======  ============  ======  =====  ===================================

All use the bert-base-uncased vocabulary (30,522 ids), 512 positions, 2 token types, GELU,
LayerNorm eps 1e-12 and absolute positions.

The model classes live in ``hf_modeling/`` as standalone files (they import only torch and
transformers) so that saved checkpoints can ship them for ``trust_remote_code=True`` users; this
module subclasses them to add strict loading and code shipping on save, and registers them
with transformers' Auto classes (``register()``, run when this module is imported, which
``import harness`` does).
"""

from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

from harness.models.hf_modeling import modeling_bert_hash
from harness.models.hf_modeling.configuration_bert_hash import BertHashConfig

VOCAB_SIZE = 30522


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


class BertHashModel(modeling_bert_hash.BertHashModel):
    """Encoder: input_ids (batch, seq) -> last_hidden_state (batch, seq, hidden_size) [+ pooler]."""


class BertHashForMaskedLM(modeling_bert_hash.BertHashForMaskedLM):
    """Encoder without pooler + MLM head tied to the factorised embeddings; logits (batch, seq, vocab)."""


def register() -> None:
    """Register ``bert_hash`` with AutoConfig / AutoModel / AutoModelForMaskedLM (idempotent)."""
    AutoConfig.register(BertHashConfig.model_type, BertHashConfig, exist_ok=True)
    AutoModel.register(BertHashConfig, BertHashModel, exist_ok=True)
    AutoModelForMaskedLM.register(BertHashConfig, BertHashForMaskedLM, exist_ok=True)


__all__ = [
    "BertHashConfig",
    "BertHashModel",
    "BertHashForMaskedLM",
    "femto_config",
    "pico_config",
    "nano_config",
    "register",
]

register()
