"""BertHash: architecture sizes, Auto registration, MLM head."""

import torch
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

import harness  # noqa: F401  (registers bert_hash)
from harness.models import berthash


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_pico_parameter_count_exact():
    assert n_params(berthash.BertHashModel(berthash.pico_config())) == 448_256
    assert n_params(berthash.BertHashModel(berthash.pico_config(), add_pooling_layer=False)) == 441_776


def test_pico_shapes_and_names():
    model = berthash.BertHashModel(berthash.pico_config(), add_pooling_layer=False)
    state = model.state_dict()
    assert state["embeddings.word_embeddings.weight"].shape == (30522, 8)
    assert state["embeddings.projection.weight"].shape == (80, 8)
    out = model(torch.tensor([[101, 7592, 102]])).last_hidden_state
    assert out.shape == (1, 3, 80)


def test_factories():
    for factory, (p, h, i) in [
        (berthash.femto_config, (5, 50, 200)),
        (berthash.pico_config, (8, 80, 320)),
        (berthash.nano_config, (16, 128, 512)),
    ]:
        c = factory()
        assert (c.projections, c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads) == (
            p, h, i, 2, 2,
        )
        assert c.model_type == "bert_hash" and c.vocab_size == 30522


def test_register_idempotent_and_auto_classes():
    berthash.register()
    berthash.register()
    config = AutoConfig.for_model("bert_hash", projections=8)
    assert isinstance(config, berthash.BertHashConfig)
    assert isinstance(AutoModel.from_config(config), berthash.BertHashModel)
    assert isinstance(AutoModelForMaskedLM.from_config(config), berthash.BertHashForMaskedLM)


def test_mlm_head_is_tied_and_trains():
    torch.manual_seed(0)
    model = berthash.BertHashForMaskedLM(berthash.pico_config())
    # Tied decoder: only the transform (dense + LayerNorm) and the vocab bias are added.
    assert n_params(model) == 441_776 + (80 * 80 + 80) + 2 * 80 + 30522
    ids = torch.tensor([[101, 7592, 2088, 102]])
    labels = torch.tensor([[-100, 7592, -100, -100]])
    out = model(ids, labels=labels)
    assert out.logits.shape == (1, 4, 30522)
    out.loss.backward()
    assert model.bert.embeddings.word_embeddings.weight.grad[7592].abs().sum() > 0
