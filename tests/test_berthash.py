"""BertHash: architecture sizes, Auto registration, MLM head."""

import torch
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

import harness.models.berthash  # noqa: F401  (registers bert_hash)
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


# --- strict loading, safetensors only, code shipping -------------------------------------------

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from harness.errors import HarnessError  # noqa: E402

TEXTS = ["hello world", "a second, rather different sentence.", "the quick brown fox " * 80]


@pytest.fixture(scope="module")
def saved_pico(tmp_path_factory):
    torch.manual_seed(0)
    model = berthash.BertHashModel(berthash.pico_config()).eval()
    path = tmp_path_factory.mktemp("pico")
    model.save_pretrained(path)
    return model, path


def _copy_checkpoint(src, dst, edit_state=None, edit_config=None):
    dst.mkdir()
    state = load_file(str(src / "model.safetensors"))
    if edit_state:
        edit_state(state)
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((src / "config.json").read_text())
    if edit_config:
        edit_config(config)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_save_ships_code_and_auto_map(saved_pico):
    _, path = saved_pico
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "bert_hash"
    assert config["auto_map"] == berthash.AUTO_MAP
    assert (path / "modeling_bert_hash.py").is_file() and (path / "configuration_bert_hash.py").is_file()
    assert not list(path.glob("*.bin"))


def test_roundtrip_exact(saved_pico):
    model, path = saved_pico
    loaded = berthash.load_berthash(path)
    auto = AutoModel.from_pretrained(path)
    assert isinstance(auto, berthash.BertHashModel)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]) and torch.equal(tensor, auto.state_dict()[name])


def test_missing_tensor_raises(saved_pico, tmp_path):
    _, path = saved_pico
    bad = _copy_checkpoint(path, tmp_path / "bad", edit_state=lambda s: s.pop("encoder.layer.1.output.dense.weight"))
    with pytest.raises(HarnessError, match="missing.*encoder.layer.1.output.dense.weight"):
        berthash.load_berthash(bad)
    with pytest.raises(HarnessError, match="missing"):
        AutoModel.from_pretrained(bad)


def test_unexpected_tensor_raises(saved_pico, tmp_path):
    _, path = saved_pico
    bad = _copy_checkpoint(path, tmp_path / "bad", edit_state=lambda s: s.update({"embeddings.extra": torch.zeros(3)}))
    with pytest.raises(HarnessError, match="unexpected.*embeddings.extra"):
        berthash.load_berthash(bad)


def test_shape_mismatch_raises(saved_pico, tmp_path):
    _, path = saved_pico
    bad = _copy_checkpoint(path, tmp_path / "bad", edit_config=lambda c: c.update(projections=5))
    with pytest.raises(HarnessError, match="shape mismatch.*word_embeddings"):
        berthash.load_berthash(bad)


def test_wrong_model_type_raises(saved_pico, tmp_path):
    _, path = saved_pico
    bad = _copy_checkpoint(path, tmp_path / "bad", edit_config=lambda c: c.update(model_type="bert"))
    with pytest.raises(HarnessError, match="model_type"):
        berthash.load_berthash(bad)


def test_pickle_refused_unless_allowed(saved_pico, tmp_path):
    model, path = saved_pico
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((path / "config.json").read_text())
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(HarnessError, match="pickle"):
        berthash.load_berthash(pickled)
    loaded = berthash.load_berthash(pickled, allow_pickle=True)
    assert torch.equal(loaded.embeddings.projection.weight, model.embeddings.projection.weight)


def test_neuml_layout_with_foreign_auto_map(saved_pico, tmp_path):
    """config.json with model_type bert_hash + an auto_map whose code is absent: the harness uses its own."""
    model, path = saved_pico
    foreign = {"AutoConfig": "configuration_bert_hash.BertHashConfig", "AutoModel": "modeling_bert_hash.BertHashModel"}
    neuml = _copy_checkpoint(path, tmp_path / "neuml", edit_config=lambda c: c.update(auto_map=foreign))
    ids = torch.tensor([[101, 7592, 2088, 102]])
    expected = model(ids).last_hidden_state
    assert torch.allclose(berthash.load_berthash(neuml)(ids).last_hidden_state, expected)
    assert torch.allclose(AutoModel.from_pretrained(neuml)(ids).last_hidden_state, expected)


def test_encoder_from_mlm_checkpoint(tmp_path):
    torch.manual_seed(1)
    mlm = berthash.BertHashForMaskedLM(berthash.pico_config()).eval()
    mlm.save_pretrained(tmp_path)
    encoder = berthash.load_berthash(tmp_path)
    assert encoder.pooler is None
    ids = torch.tensor([[101, 7592, 102]])
    assert torch.allclose(encoder(ids).last_hidden_state, mlm.bert(ids).last_hidden_state)
    again = berthash.load_berthash(tmp_path, masked_lm=True)
    assert torch.equal(again.cls.predictions.bias, mlm.cls.predictions.bias)


def _run_without_harness(script: str, *args) -> dict:
    """Run ``script`` in a fresh interpreter outside the repo; it prints one ``RESULT <json>`` line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        capture_output=True, text=True, env=env, cwd="/", timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line.split("RESULT ", 1)[1] for line in proc.stdout.splitlines() if "RESULT " in line]
    assert len(lines) == 1, proc.stdout[-3000:]
    return json.loads(lines[0])


def test_sentence_transformer_folder_three_ways(tmp_path):
    torch.manual_seed(2)
    model = berthash.BertHashModel(berthash.pico_config()).eval()
    out = berthash.save_sentence_transformer(model, berthash.tokenizer_dir(), tmp_path / "st")
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                 "1_Pooling/config.json", "tokenizer.json", "model.safetensors", "modeling_bert_hash.py"):
        assert (out / name).is_file(), name
    expected = berthash.embed(model, berthash.tokenizer_dir(), TEXTS)
    assert expected.shape == (3, 80) and expected.dtype == np.float32

    result = _run_without_harness(
        """
        import json, sys
        import numpy as np
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers import AutoModel, AutoTokenizer
        import txtai
        path, texts = sys.argv[1], json.loads(sys.argv[2])
        st = SentenceTransformer(path, trust_remote_code=True, device="cpu").encode(texts)
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, trust_remote_code=True).eval()
        batch = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        auto = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
        emb = txtai.Embeddings(path=path, content=False, backend="numpy", vectors={"trust_remote_code": True})
        tx = np.asarray(emb.batchtransform(texts))
        print("RESULT " + json.dumps({"harness_imported": "harness" in sys.modules, "module": type(model).__module__,
                          "st": st.tolist(), "auto": auto.tolist(), "txtai": tx.tolist()}))
        """,
        out, json.dumps(TEXTS),
    )
    assert not result["harness_imported"] and "harness" not in result["module"]
    np.testing.assert_allclose(np.array(result["st"]), expected, atol=1e-5)
    np.testing.assert_allclose(np.array(result["auto"]), expected, atol=1e-5)
    # txtai always L2-normalises dense vectors.
    normalised = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(np.array(result["txtai"]), normalised, atol=1e-5)
    # In-process (harness imported) the registered harness class takes precedence over the shipped code.
    in_process = AutoModel.from_pretrained(out, trust_remote_code=True)
    assert isinstance(in_process, berthash.BertHashModel)
    np.testing.assert_allclose(berthash.embed(in_process, out, TEXTS), expected, atol=1e-5)
