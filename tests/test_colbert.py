"""ColBERT: PyLate layout load/save, prefixes and lengths, padding isolation, strictness, gradients."""

import json
import os
import string
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, BertConfig, BertModel

import harness.models.berthash  # noqa: F401  (registers bert_hash)
from harness.errors import HarnessError
from harness.models import berthash
from harness.models.colbert import ColBERT

QUERIES = ["what is the capital of france", "hello"]
DOCS = ["Paris is the capital of France.", "short", "a much longer document about many things " * 60]


@pytest.fixture(scope="module")
def pico():
    torch.manual_seed(0)
    return ColBERT.new(berthash.BertHashModel(berthash.pico_config(), add_pooling_layer=False), 48, seed=1)


@pytest.fixture(scope="module")
def saved(pico, tmp_path_factory):
    return pico.save(tmp_path_factory.mktemp("colbert") / "pico")


def test_shapes_prefixes_lengths(pico):
    tokenizer = pico.transformer.tokenizer
    assert tokenizer.tokenize("[Q] hello world") == ["[Q] ", "hello", "world"]
    queries = pico.encode_queries(QUERIES)
    docs = pico.encode_documents(DOCS)
    assert [q.shape for q in queries] == [(32, 48), (32, 48)]  # [MASK]-expanded to query_length
    # [CLS] [D] paris is the capital of france . [SEP] minus the skiplisted "." -> 9
    assert docs[0].shape == (9, 48) and docs[1].shape == (4, 48) and docs[2].shape == (300, 48)
    for a in queries + docs:
        assert a.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert pico.token_dim == 48


def test_no_expansion_keeps_real_tokens_only():
    torch.manual_seed(0)
    model = ColBERT.new(berthash.BertHashModel(berthash.pico_config(), add_pooling_layer=False), 16, mask_expansion=False)
    assert model.encode_queries(["hello"])[0].shape == (4, 16)  # [CLS] [Q] hello [SEP]
    assert model.encode_queries(["word " * 100])[0].shape == (32, 16)


def test_padding_never_leaks(pico):
    long_text = "padding would change this if it leaked " * 40
    for encode in (pico.encode_queries, pico.encode_documents):
        alone = encode(["a short text."])[0]
        batched = encode(["a short text.", long_text], batch_size=2)[0]
        assert alone.shape == batched.shape
        np.testing.assert_allclose(alone, batched, atol=1e-6)


def test_forward_matches_encode_and_has_grad(pico):
    tokens, mask = pico.forward_documents(DOCS[:2])
    assert tokens.shape[:2] == mask.shape and tokens.shape[2] == 48 and tokens.requires_grad
    encoded = pico.encode_documents(DOCS[:2])
    for row, m, expected in zip(tokens, mask, encoded):
        np.testing.assert_allclose(row[m].detach().numpy(), expected, atol=1e-6)
        assert torch.all(row[~m] == 0)
    q_tokens, q_mask = pico.forward_queries(QUERIES)
    assert q_mask.sum(1).tolist() == [32, 32]
    score = torch.einsum("qd,kd->qk", q_tokens[0][q_mask[0]], tokens[0][mask[0]]).max(1).values.sum()
    score.backward()
    assert pico.dense.linear.weight.grad is not None
    assert pico.transformer.model.embeddings.projection.weight.grad.abs().sum() > 0
    pico.encoder.zero_grad()


def test_save_writes_pylate_layout(saved):
    modules = json.loads((saved / "modules.json").read_text())
    assert [m["type"] for m in modules] == ["sentence_transformers.models.Transformer", "pylate.models.Dense.Dense"]
    config = json.loads((saved / "config_sentence_transformers.json").read_text())
    assert config["model_type"] == "ColBERT"
    assert (config["query_prefix"], config["document_prefix"]) == ("[Q] ", "[D] ")
    assert (config["query_length"], config["document_length"], config["do_query_expansion"]) == (32, 300, True)
    assert config["attend_to_expansion_tokens"] is False and config["skiplist_words"] == list(string.punctuation)
    assert load_file(str(saved / "1_Dense" / "model.safetensors"))["linear.weight"].shape == (48, 80)
    assert (saved / "model.safetensors").is_file() and (saved / "modeling_bert_hash.py").is_file()


def test_roundtrip_and_provenance(pico, saved):
    loaded = ColBERT.load(saved)
    for a, b in zip(pico.encode_queries(QUERIES) + pico.encode_documents(DOCS),
                    loaded.encode_queries(QUERIES) + loaded.encode_documents(DOCS)):
        np.testing.assert_array_equal(a, b)
    p = loaded.provenance()
    assert len(p["weights_sha256"]) == 64 and len(p["dense_weights_sha256"]) == 64
    assert p["parameters"] == sum(t.numel() for t in loaded.parameters())
    assert (p["token_dim"], p["query_length"], p["document_length"]) == (48, 32, 300)
    assert (p["query_prefix"], p["document_prefix"], p["mask_expansion"]) == ("[Q] ", "[D] ", True)


def test_loads_pylate_written_folder(saved, tmp_path):
    """PyLate adds "[Q] " / "[D] " as ordinary (normalised) added tokens; the loader must still
    tokenise them as single tokens and give the same vectors."""
    pylate = tmp_path / "pylate"
    pylate.mkdir()
    for item in saved.iterdir():
        if "tokenizer" not in item.name and "special_tokens" not in item.name:
            os.symlink(item, pylate / item.name)
    tokenizer = AutoTokenizer.from_pretrained(str(berthash.tokenizer_dir()))
    tokenizer.add_tokens(["[Q] ", "[D] "])
    tokenizer.save_pretrained(pylate)
    reference, loaded = ColBERT.load(saved), ColBERT.load(pylate)
    for a, b in zip(reference.encode_queries(QUERIES) + reference.encode_documents(DOCS),
                    loaded.encode_queries(QUERIES) + loaded.encode_documents(DOCS)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def _copy(saved, dst, edit=None, dense_edit=None):
    dst.mkdir()
    for item in saved.iterdir():
        if item.name not in ("model.safetensors", "1_Dense"):
            os.symlink(item, dst / item.name)
    state = load_file(str(saved / "model.safetensors"))
    if edit:
        edit(state)
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    (dst / "1_Dense").mkdir()
    (dst / "1_Dense" / "config.json").write_text((saved / "1_Dense" / "config.json").read_text())
    dense = load_file(str(saved / "1_Dense" / "model.safetensors"))
    if dense_edit:
        dense_edit(dense)
    save_file(dense, str(dst / "1_Dense" / "model.safetensors"), metadata={"format": "pt"})
    return dst


def test_strict_loading(saved, tmp_path):
    bad = _copy(saved, tmp_path / "missing", edit=lambda s: s.pop("encoder.layer.0.output.dense.bias"))
    with pytest.raises(HarnessError, match="missing.*encoder.layer.0.output.dense.bias"):
        ColBERT.load(bad)
    bad = _copy(saved, tmp_path / "extra", dense_edit=lambda s: s.update({"linear.bias": torch.zeros(48)}))
    with pytest.raises(HarnessError, match="(?is)unexpected.*linear.bias"):
        ColBERT.load(bad)
    bad = _copy(saved, tmp_path / "shape", dense_edit=lambda s: s.update({"linear.weight": torch.zeros(48, 79)}))
    with pytest.raises(HarnessError, match="(?s)linear.weight"):
        ColBERT.load(bad)


def test_pickle_refused(saved, tmp_path):
    pickled = _copy(saved, tmp_path / "pickled")
    dense = load_file(str(pickled / "1_Dense" / "model.safetensors"))
    (pickled / "1_Dense" / "model.safetensors").unlink()
    torch.save(dense, pickled / "1_Dense" / "pytorch_model.bin")
    with pytest.raises(HarnessError, match="pickle"):
        ColBERT.load(pickled)


def test_new_from_plain_bert_folder_and_mlm_checkpoint(tmp_path):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    BertModel(config).save_pretrained(tmp_path / "bert")
    AutoTokenizer.from_pretrained(str(berthash.tokenizer_dir())).save_pretrained(tmp_path / "bert")
    model = ColBERT.new(tmp_path / "bert", 24)
    assert model.encode_documents(["hello there"])[0].shape == (5, 24)
    assert model.transformer.model.config.vocab_size == 30524
    model.save(tmp_path / "bert-colbert")
    np.testing.assert_array_equal(ColBERT.load(tmp_path / "bert-colbert").encode_queries(["x"])[0], model.encode_queries(["x"])[0])

    berthash.BertHashForMaskedLM(berthash.pico_config()).save_pretrained(tmp_path / "mlm")
    from_mlm = ColBERT.new(tmp_path / "mlm", 16)  # head dropped, tokenizer defaults to BertHash's
    assert from_mlm.encode_queries(["hi"])[0].shape == (32, 16)


def test_saved_folder_loads_without_harness(pico, saved):
    """sentence-transformers' own MultiVectorEncoder reads the PyLate folder (BertHash via shipped code)."""
    script = textwrap.dedent(
        """
        import json, sys
        from sentence_transformers import MultiVectorEncoder
        model = MultiVectorEncoder(sys.argv[1], device="cpu", trust_remote_code=True)
        q = model.encode_query(json.loads(sys.argv[2]), convert_to_numpy=True)
        d = model.encode_document(json.loads(sys.argv[3]), convert_to_numpy=True)
        print("RESULT " + json.dumps({"harness": "harness" in sys.modules,
                                      "q": [x.tolist() for x in q], "d": [x.tolist() for x in d]}))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-c", script, str(saved), json.dumps(QUERIES), json.dumps(DOCS)],
                          capture_output=True, text=True, env=env, cwd="/", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads([line.split("RESULT ", 1)[1] for line in proc.stdout.splitlines() if "RESULT " in line][0])
    assert not result["harness"]
    for got, expected in zip(result["q"] + result["d"], pico.encode_queries(QUERIES) + pico.encode_documents(DOCS)):
        np.testing.assert_allclose(np.array(got), expected, atol=1e-5)
