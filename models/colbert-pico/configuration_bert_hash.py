"""BertHash configuration (standalone: imports only transformers, so it can ship inside checkpoints).

BertHash is BERT with a factorised word-embedding table: ``vocab_size x projections`` token
vectors followed by a bias-free ``projections -> hidden_size`` linear map. Every other field has
the meaning it has in ``transformers.BertConfig``.
"""

from transformers import BertConfig


class BertHashConfig(BertConfig):
    """``BertConfig`` plus ``projections``: width (int, >= 1) of the per-token embedding rows, and
    ``add_pooling_layer``: whether ``BertHashModel`` has BERT's pooler (false in checkpoints saved
    without one, so loaders build no pooler to random-initialise)."""

    model_type = "bert_hash"

    projections: int = 16
    add_pooling_layer: bool = True


__all__ = ["BertHashConfig"]
