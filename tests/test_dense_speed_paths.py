"""The dense encoder's speed paths give the numbers they should (tiny random models, seconds).

* fp32: both batching paths (narrow models: batches run data-parallel; wide ones: batches sorted
  by tokens, one at a time) equal plain sentence-transformers encoding, for any batch size, empty
  texts included, in input order, and the data-parallel vectors do not depend on the worker count;
* int8: the quantised Linear matches float Linear to int8 accuracy, the quantised encoder stays
  close to fp32 (cosine), and its provenance marks the precision so it never shares a cache entry
  with fp32 vectors, while the fp32 provenance keys the cache reads are unchanged.

No timings are asserted here: speed is measured by ``benchmarks/``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import run_cli
from harness.errors import HarnessError
from harness.models import berthash
from harness.models.dense import DenseEncoder
from harness.models.runtime import Int8DynamicLinear, quantize_int8

TEXTS = [
    "photosynthesis converts sunlight into chemical energy in the chloroplast",
    "",
    "a",
    "volcanic eruptions release magma, ash and gases " * 12,
    "the immune response to a vaccine involves antibodies and memory cells",
    "glaciers retreat as arctic ice melts faster each decade " * 5,
    "short text",
    "bitcoin miners validate blocks on a distributed ledger",
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    torch.manual_seed(0)
    config = berthash.pico_config()
    model = berthash.BertHashModel(config, add_pooling_layer=False)
    folder = tmp_path_factory.mktemp("speed") / "pico-random"
    berthash.save_sentence_transformer(model, berthash.tokenizer_dir(), folder, max_seq_length=64)
    return str(folder)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


@pytest.mark.parametrize("token_sort", [False, True], ids=["narrow-data-parallel", "wide-token-sorted"])
def test_fp32_batching_matches_plain_sentence_transformers(tiny_model, token_sort, monkeypatch):
    from sentence_transformers import SentenceTransformer

    from harness.models import dense

    if token_sort:  # take the path MiniLM-wide models take (sorted by tokens, one batch at a time)
        monkeypatch.setattr(dense, "TOKEN_SORT_MIN_HIDDEN", 0)

    reference = SentenceTransformer(tiny_model, device="cpu", trust_remote_code=True).encode(
        TEXTS, batch_size=3, convert_to_numpy=True
    )
    for batch_size in (1, 3, 32):
        encoder = DenseEncoder("pico", tiny_model, batch_size=batch_size, trust_remote_code=True)
        vectors = encoder.encode_documents(TEXTS)
        assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), encoder.dim)
        np.testing.assert_allclose(vectors, reference, rtol=0, atol=2e-5)
        np.testing.assert_allclose(encoder.encode_queries(TEXTS[::-1]), reference[::-1], rtol=0, atol=2e-5)
    assert encoder.encode_documents([]).shape == (0, encoder.dim)
    assert encoder._sort_by_tokens == token_sort  # pico is 80 wide: no extra tokenisation by default


def test_data_parallel_vectors_do_not_depend_on_the_worker_count(tiny_model, monkeypatch):
    import harness.models.runtime as runtime

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch_threads = torch.get_num_threads()
    try:
        encoder = DenseEncoder("pico", tiny_model, batch_size=2, trust_remote_code=True)
        monkeypatch.setattr(runtime, "cpu_threads", lambda: 1)
        one = encoder.encode_documents(TEXTS)
        monkeypatch.setattr(runtime, "cpu_threads", lambda: 3)
        three = encoder.encode_documents(TEXTS)
        np.testing.assert_array_equal(one, three)  # same batches, same arithmetic, input order kept
        assert torch.get_num_threads() == 3  # the workers' one-thread setting does not leak out
        assert runtime.run_batches_data_parallel(lambda b: b * 2, [1, 2, 3, 4]) == [2, 4, 6, 8]
    finally:
        torch.set_num_threads(torch_threads)


def test_clipped_texts_give_the_whole_texts_vectors(tiny_model, monkeypatch):
    """Long texts are clipped before tokenisation (``clip_text``) only where the truncated input is
    the same: a clipped text that no longer fills the 64 tokens is tokenised whole, its batch-mates
    stay clipped, and every vector equals the one from the whole text."""
    from harness.models import dense

    long_words = " ".join(["x" * 101] * 80)  # each 101-character word is one [UNK]: 64 tokens need > 6 x 64 chars
    texts = TEXTS + [long_words, "tumour suppressor genes " * 60, long_words + " end"]
    encoder = DenseEncoder("pico", tiny_model, batch_size=3, trust_remote_code=True)
    assert dense.splits_words_at_spaces(encoder.model.tokenizer)
    seen = []
    features = dense.OffsetFreeTokeniser.features
    monkeypatch.setattr(dense.OffsetFreeTokeniser, "features", lambda self, batch: seen.append(batch) or features(self, batch))
    clipped = encoder.encode_documents(texts)
    retokenised = [batch for batch in seen if long_words in batch]  # the [UNK] text, whole, in a second call
    assert retokenised and any(t.startswith("tumour") and len(t) < len(texts[-2]) for t in retokenised[0])
    monkeypatch.setattr(dense, "splits_words_at_spaces", lambda tokenizer: False)
    np.testing.assert_array_equal(clipped, encoder.encode_documents(texts))
    assert dense.clip_text("ab cd ef", 0) == "ab" and dense.clip_text("abcdef", 0) == "abcdef"


def test_offset_free_tokeniser_builds_what_preprocess_builds(tiny_model):
    """The ``tokenizers`` fast path gives sentence-transformers' features exactly, for texts with
    accents, CJK, control characters, empty and over-long ones; a model whose ``preprocess``
    builds anything else keeps ``preprocess``."""
    from sentence_transformers import SentenceTransformer

    from harness.models.dense import OffsetFreeTokeniser

    model = SentenceTransformer(tiny_model, device="cpu", trust_remote_code=True)
    texts = TEXTS + ["Crème brûlée à l'Élysée", "细胞 蛋白质 癌症", "tab\tand\u0007bell  ", " " * 5, "word " * 200]
    tokeniser = OffsetFreeTokeniser(model, 64)
    first = tokeniser.features(texts[:4])  # the check against preprocess
    assert tokeniser.verified and first.keys() == model.preprocess(texts[:4]).keys()
    fast, reference = tokeniser.features(texts), model.preprocess(texts)
    assert fast.keys() == reference.keys() and fast["modality"] == reference["modality"]
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert fast[key].dtype == reference[key].dtype and fast[key].equal(reference[key])
    assert fast["input_ids"].shape[1] == 64

    class Extra:  # a preprocess that adds a key the fast path cannot know
        tokenizer = model.tokenizer

        def preprocess(self, batch):
            return {**model.preprocess(batch), "prompt_length": 0}

    other = OffsetFreeTokeniser(Extra(), 64)
    assert "prompt_length" in other.features(texts) and other.backend is None and not other.verified


def test_fp32_provenance_keys_unchanged(tiny_model):
    p = DenseEncoder("pico", tiny_model, trust_remote_code=True).provenance()
    assert p["modules"] == ["Transformer", "Pooling"]
    assert p["max_length"] == 64 and p["pooling"] == "mean" and p["normalized"] is False
    assert p["precision"] == "fp32" and "quantization" not in p


@pytest.mark.parametrize("bias", [True, False])
def test_int8_linear_matches_float_linear(bias):
    torch.manual_seed(1)
    linear = torch.nn.Linear(384, 200, bias=bias)
    x = torch.randn(5, 17, 384) * 2
    x[..., 7] *= 4  # an outlier channel, as BERT activations have
    with torch.inference_mode():
        expected = linear(x)
        got = Int8DynamicLinear(linear)(x)
        default = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(linear), {torch.nn.Linear}, dtype=torch.qint8)(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    relative = float((got - expected).norm() / expected.norm())
    assert relative < 0.03, relative
    # fp32 outlier channels + 8-bit activations + per-channel weights beat torch's default
    # (7-bit activations, per-tensor weights) by a wide margin on outlier-channel inputs
    assert relative < 0.5 * float((default - expected).norm() / expected.norm())


def test_int8_linear_outlier_channels_exact_path():
    """With every input channel an 'outlier' the layer is plain fp32; with none it is plain int8."""
    torch.manual_seed(2)
    linear = torch.nn.Linear(64, 48)
    x = torch.randn(3, 9, 64)
    with torch.inference_mode():
        all_fp32 = Int8DynamicLinear(linear, outliers=64)
        all_fp32.outliers = 64
        np.testing.assert_allclose(all_fp32(x).numpy(), linear(x).numpy(), rtol=0, atol=1e-5)
        none = Int8DynamicLinear(linear, outliers=0)
        assert none.outliers == 0 and float((none(x) - linear(x)).norm() / linear(x).norm()) < 0.03
        assert Int8DynamicLinear(linear)(x[:0]).shape == (0, 9, 48)


def test_quantize_int8_replaces_large_linears_only():
    model = torch.nn.Sequential(torch.nn.Linear(8, 80, bias=False), torch.nn.ReLU(), torch.nn.Linear(80, 80))
    assert quantize_int8(model) == 1
    assert isinstance(model[0], torch.nn.Linear) and isinstance(model[2], Int8DynamicLinear)


def test_int8_encoder_close_to_fp32_and_marked(tiny_model):
    fp32 = DenseEncoder("pico", tiny_model, batch_size=4, trust_remote_code=True)
    int8 = DenseEncoder("pico", tiny_model, batch_size=4, trust_remote_code=True, precision="int8")
    a, b = fp32.encode_documents(TEXTS), int8.encode_documents(TEXTS)
    assert b.dtype == np.float32 and b.shape == a.shape
    assert _cosine(a, b).min() > 0.98
    # deterministic: the same texts give bit-identical vectors
    np.testing.assert_array_equal(b, int8.encode_documents(TEXTS))

    p32, p8 = fp32.provenance(), int8.provenance()
    assert p8["precision"] == "int8" and p8["quantization"]["quantized_layers"] == 12  # 2 layers x 6 Linear
    assert p8["parameters"] == p32["parameters"]
    identity = ("weights_sha256", "path", "max_length", "pooling", "normalized", "modules")
    assert {k: p8[k] for k in identity} != {k: p32[k] for k in identity}  # never the fp32 cache entry
    assert p8["modules"][0] == "Transformer[int8]"
    # per-batch activation scales: another batch size gives other vectors, and another identity
    other = DenseEncoder("pico", tiny_model, batch_size=2, trust_remote_code=True, precision="int8")
    assert not np.array_equal(b, other.encode_documents(TEXTS))
    assert other.provenance()["quantization"] != p8["quantization"]


def test_unknown_precision_is_one_line_error(tiny_model):
    with pytest.raises(HarnessError, match="backend 'torch' runs precision fp32 or int8, not 'fp16'"):
        DenseEncoder("pico", tiny_model, trust_remote_code=True, precision="fp16")


@pytest.mark.parametrize("model", ["bm25", "colbert-pico"])
def test_precision_on_a_model_that_is_not_dense_is_one_error_line(model, small_beir, tmp_path, capsys):
    """bm25 or ColBERT under --precision int8 would otherwise store fp32 numbers as an int8 condition."""
    code, _, err = run_cli(["run", "--model", model, "--precision", "int8", "--datasets", str(small_beir),
                            "--no-save", "--cache-dir", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: --precision int8 applies to dense encoders; '{model}' is a")
