"""BertHash modules (standalone: imports only torch and transformers, so it ships inside checkpoints).

Shapes: ``input_ids`` (batch, seq) int64 -> word vectors (batch, seq, projections) -> projected to
(batch, seq, hidden_size) by ``embeddings.projection`` (bias-free) -> stock BERT from there on.

Tensor names (state-dict keys, ``BertHashModel``): everything is named as in ``BertModel`` except
``embeddings.word_embeddings.weight`` has shape (vocab_size, projections) and there is one extra
tensor ``embeddings.projection.weight`` of shape (hidden_size, projections) (``nn.Linear`` layout).

``BertHashForMaskedLM`` ties its output layer to the factorised input embeddings: logits =
(transform(h) @ projection.weight) @ word_embeddings.weight.T + bias, i.e. the decoder reuses the
(hidden -> projections) map transposed and the (vocab x projections) table. An untied decoder
would add vocab_size * hidden_size parameters (2.4M for pico), more than five times the encoder.
Its extra tensors are ``cls.predictions.transform.{dense,LayerNorm}.*`` (hidden x hidden, as in
BERT) and ``cls.predictions.bias`` (vocab_size,).
"""

import torch
from torch import nn
from torch.nn import CrossEntropyLoss
from transformers import initialization as init
from transformers.modeling_outputs import MaskedLMOutput
from transformers.models.bert.modeling_bert import (
    BertEmbeddings,
    BertEncoder,
    BertModel,
    BertPooler,
    BertPreTrainedModel,
    BertPredictionHeadTransform,
)

from .configuration_bert_hash import BertHashConfig


class BertHashEmbeddings(BertEmbeddings):
    """BERT embeddings whose word vectors are (vocab, projections) rows mapped to hidden_size."""

    def __init__(self, config: BertHashConfig):
        super().__init__(config)
        self.word_embeddings = nn.Embedding(config.vocab_size, config.projections, padding_idx=config.pad_token_id)
        self.projection = nn.Linear(config.projections, config.hidden_size, bias=False)

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None, cache_length=0):
        """``inputs_embeds``, when given, is already in hidden_size units (batch, seq, hidden_size)."""
        if inputs_embeds is None:
            inputs_embeds = self.projection(self.word_embeddings(input_ids))
        return super().forward(
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            cache_length=cache_length,
        )


class BertHashPreTrainedModel(BertPreTrainedModel):
    config_class = BertHashConfig
    config: BertHashConfig

    def _init_weights(self, module):
        """BERT's init, plus: the projection gets std 1/sqrt(projections) so projected word vectors
        start at std ``initializer_range`` (BERT's word-vector scale) instead of its square."""
        super()._init_weights(module)
        if isinstance(module, BertHashLMHead):
            init.zeros_(module.bias)
        elif isinstance(module, BertHashEmbeddings):
            init.normal_(module.projection.weight, mean=0.0, std=module.projection.in_features**-0.5)


class BertHashModel(BertHashPreTrainedModel, BertModel):
    """``BertModel`` with ``BertHashEmbeddings``; forward/outputs are exactly ``BertModel``'s."""

    def __init__(self, config: BertHashConfig, add_pooling_layer: bool | None = None):
        """``add_pooling_layer``: build BERT's pooler; default ``config.add_pooling_layer``, which
        checkpoints saved without a pooler set to false, so any loader builds exactly the saved model."""
        if add_pooling_layer is None:
            add_pooling_layer = getattr(config, "add_pooling_layer", True)
        BertHashPreTrainedModel.__init__(self, config)
        self.config = config
        self.gradient_checkpointing = False
        self.embeddings = BertHashEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.post_init()


class BertHashLMHead(nn.Module):
    """MLM head whose decoder is tied to the factorised input embeddings (see module docstring)."""

    def __init__(self, config: BertHashConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: torch.Tensor, embeddings: BertHashEmbeddings) -> torch.Tensor:
        """(batch, seq, hidden_size) -> logits (batch, seq, vocab_size)."""
        hidden = self.transform(hidden_states) @ embeddings.projection.weight
        return hidden @ embeddings.word_embeddings.weight.T + self.bias


class BertHashMLMHeads(nn.Module):
    """Holder that keeps BERT's ``cls.predictions.*`` key prefix."""

    def __init__(self, config: BertHashConfig):
        super().__init__()
        self.predictions = BertHashLMHead(config)


class BertHashForMaskedLM(BertHashPreTrainedModel):
    """Encoder (``bert.*``, no pooler) + tied MLM head (``cls.predictions.*``)."""

    _tied_weights_keys = None

    def __init__(self, config: BertHashConfig):
        super().__init__(config)
        self.bert = BertHashModel(config, add_pooling_layer=False)
        self.cls = BertHashMLMHeads(config)
        self.post_init()

    def get_output_embeddings(self):
        return None

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        **kwargs,
    ) -> MaskedLMOutput:
        """``labels`` (batch, seq) with -100 on positions that do not count; loss = mean cross-entropy."""
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        logits = self.cls.predictions(outputs.last_hidden_state, self.bert.embeddings)
        loss = None
        if labels is not None:
            loss = CrossEntropyLoss()(logits.view(-1, self.config.vocab_size), labels.view(-1))
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions)


__all__ = ["BertHashModel", "BertHashForMaskedLM", "BertHashPreTrainedModel"]
