"""The ONNX Runtime backend (``--backend onnx``) gives the torch path's numbers, keeps its own cache
identity, and fails with one line where it cannot run. Tiny random models; no timings asserted.

* dense (narrow data-parallel and wide token-sorted paths), fp32: vectors within cosine 0.99999 of
  torch; the graph is exported once and reused; int8: close to fp32 and its own identity;
* ColBERT: the harness's own tokenisation and batching give sentence-transformers' ``encode_query``
  / ``encode_document`` vectors exactly (torch) and to 1e-5 (onnx), skiplist and expansion included;
* cache keys: torch fp32 keys unchanged, onnx fp32 / onnx int8 / torch int8 all distinct;
* no onnxruntime, or an export that fails: one ``error:`` line.
"""

from __future__ import annotations

import builtins
import sys

import numpy as np
import pytest
import torch

from conftest import run_cli
from harness.errors import HarnessError
from harness.models import berthash
from harness.models.colbert import ColBERT
from harness.models.dense import DenseEncoder
from harness.pipeline import RunOptions, condition_name
from harness.stages import DenseEncoderAdapter
from test_dense_speed_paths import TEXTS as SPEED_TEXTS
from test_dense_speed_paths import tiny_model  # noqa: F401  (the same random pico, a module fixture)

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TEXTS = SPEED_TEXTS + ["a sentence; with (punctuation)! and more: " * 8, "Crème brûlée à l'Élysée, 细胞 蛋白质"]


@pytest.fixture(scope="module")
def colbert(tmp_path_factory) -> ColBERT:
    torch.manual_seed(0)
    model = ColBERT.new(berthash.BertHashModel(berthash.pico_config(), add_pooling_layer=False), 48, seed=1)
    model.document_length = 40  # so that long documents are clipped and truncated
    return ColBERT.load(model.save(tmp_path_factory.mktemp("colbert") / "pico"))


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
@pytest.mark.parametrize("token_sort", [False, True], ids=["narrow-data-parallel", "wide-token-sorted"])
def test_dense_graph_fp32_matches_torch(tiny_model, tmp_path, token_sort, backend, monkeypatch):
    """Both exported-graph backends (``openvino``: tests/test_openvino_backend.py for the rest)."""
    from harness.models import dense

    if backend == "openvino":
        pytest.importorskip("openvino")
    if token_sort:
        monkeypatch.setattr(dense, "TOKEN_SORT_MIN_HIDDEN", 0)
    expected = DenseEncoder("pico", tiny_model, batch_size=3).encode_documents(TEXTS)
    encoder = DenseEncoder("pico", tiny_model, batch_size=3, backend=backend, graph_dir=tmp_path)
    got = encoder.encode_documents(TEXTS)
    assert got.shape == expected.shape and got.dtype == np.float32
    nonzero = np.linalg.norm(expected, axis=1) > 0
    assert _cosine(got, expected)[nonzero].min() >= 0.99999
    assert np.abs(got - expected).max() < 1e-4
    graphs = list(tmp_path.rglob("*.onnx"))
    assert len(graphs) == 1 and encoder.provenance()["graph_sha256"] == encoder._session.sha256
    stamp = graphs[0].stat().st_mtime_ns
    again = DenseEncoder("pico", tiny_model, batch_size=3, backend=backend, graph_dir=tmp_path)  # cached graph
    assert graphs[0].stat().st_mtime_ns == stamp and list(tmp_path.rglob("*.onnx")) == graphs
    assert np.array_equal(again.encode_documents(TEXTS), got)


def test_dense_onnx_int8_is_close_and_its_own_condition(tiny_model, tmp_path, caplog):
    fp32 = DenseEncoder("pico", tiny_model, batch_size=4).encode_documents(TEXTS)
    with caplog.at_level("INFO"):
        encoder = DenseEncoder("pico", tiny_model, batch_size=4, precision="int8", backend="onnx", graph_dir=tmp_path)
    assert "pre-processing" not in caplog.text  # onnxruntime's quantiser advice is not shown to the user
    got = encoder.encode_documents(TEXTS)
    assert got.shape == fp32.shape
    assert _cosine(got, fp32).mean() > 0.98
    assert not np.array_equal(got, fp32)
    p = encoder.provenance()
    assert p["quantization"]["scheme"] == "onnxruntime dynamic int8" and p["quantization"]["batch_size"] == 4
    assert condition_name("minilm", RunOptions(precision="int8", backend="onnx")) == "minilm-onnx-int8"
    assert condition_name("minilm", RunOptions(precision="int8")) == "minilm-int8"
    # fp32 numbers agree across backends (4 decimals), so they are one condition
    assert condition_name("minilm", RunOptions(backend="onnx")) == "minilm"


def test_int8_keeps_the_named_matmuls_fp32(tiny_model, tmp_path):
    """MatMuls named by ``INT8_KEEP_FP32`` (each layer's FFN output projection) stay fp32 MatMuls
    in the int8 graph; every other weight MatMul is quantised."""
    import onnx

    from harness.models import ort

    encoder = DenseEncoder("pico", tiny_model, precision="int8", backend="onnx", graph_dir=tmp_path)
    nodes = onnx.load(str(encoder._session.path)).graph.node
    kept = [n.name for n in nodes if n.op_type == "MatMul" and ort.kept_fp32(n.name)]
    assert len(kept) == berthash.pico_config().num_hidden_layers  # one per layer
    quantised = [n for n in nodes if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")]
    assert quantised and not any(ort.kept_fp32(n.name) for n in quantised)
    assert encoder.provenance()["quantization"]["kept_fp32"] != "none"


def test_cache_identity_separates_backends_and_keeps_torch_keys(tiny_model, tmp_path):
    torch_fp32 = DenseEncoderAdapter(DenseEncoder("pico", tiny_model)).cache_identity()
    onnx_fp32 = DenseEncoderAdapter(DenseEncoder("pico", tiny_model, backend="onnx", graph_dir=tmp_path)).cache_identity()
    onnx_int8 = DenseEncoderAdapter(
        DenseEncoder("pico", tiny_model, precision="int8", backend="onnx", graph_dir=tmp_path)).cache_identity()
    torch_int8 = DenseEncoderAdapter(DenseEncoder("pico", tiny_model, precision="int8")).cache_identity()
    assert set(torch_fp32) == {"weights_sha256", "path", "max_length", "pooling", "normalized", "modules", "normalize"}
    import onnxruntime

    assert onnx_fp32["backend"] == "onnx" and onnx_fp32["onnxruntime"] == onnxruntime.__version__
    assert onnx_fp32["graph_sha256"] != onnx_int8["graph_sha256"]
    identities = [torch_fp32, onnx_fp32, onnx_int8, torch_int8]
    assert all(a != b for i, a in enumerate(identities) for b in identities[i + 1:])


def test_colbert_own_tokenisation_gives_sentence_transformers_vectors(colbert, tmp_path):
    """The torch path (offset-free tokeniser, clipping, data-parallel batches) is bit-identical to
    ``encode_query`` / ``encode_document``; the ONNX graph agrees to 1e-5, same token counts."""
    reference = {
        "query": colbert.encoder.encode_query(TEXTS, batch_size=3, convert_to_numpy=True),
        "document": colbert.encoder.encode_document(TEXTS, batch_size=3, convert_to_numpy=True),
    }
    colbert.set_backend("torch")
    got = {"query": colbert.encode_queries(TEXTS, batch_size=3), "document": colbert.encode_documents(TEXTS, batch_size=3)}
    assert colbert._tokenisers["query"].verified and colbert._tokenisers["document"].verified
    for task in got:
        assert [a.shape for a in got[task]] == [b.shape for b in reference[task]]
        assert all(np.array_equal(a, b) for a, b in zip(got[task], reference[task])), task
    assert all(len(q) == colbert.query_length for q in got["query"])  # [MASK] expansion kept
    assert len(got["document"][-2]) < colbert.document_length  # punctuation dropped (skiplist)

    colbert.set_backend("onnx", tmp_path)
    try:
        onnx = {"query": colbert.encode_queries(TEXTS, batch_size=3),
                "document": colbert.encode_documents(TEXTS, batch_size=3)}
        assert colbert.provenance()["backend"] == "onnx" and colbert.provenance()["graph_sha256"]
    finally:
        colbert.set_backend("torch")
    assert "backend" not in colbert.provenance()  # the torch identity (and cache key) is unchanged
    for task in onnx:
        assert [a.shape for a in onnx[task]] == [b.shape for b in reference[task]]
        assert max(float(np.abs(a - b).max()) for a, b in zip(onnx[task], reference[task])) < 1e-5


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_teacher_graph_backend_matches_torch(tiny_model, tmp_path, backend):
    from harness.train.teacher import Teacher

    if backend == "openvino":
        pytest.importorskip("openvino")
    texts = [t for t in TEXTS if t]
    torch_vectors = Teacher(tiny_model, max_len=32, cache_dir=tmp_path / "torch").encode(texts)
    teacher = Teacher(tiny_model, max_len=32, cache_dir=tmp_path / backend, backend=backend)
    graph_vectors = teacher.encode(texts)
    assert _cosine(graph_vectors, torch_vectors).min() >= 0.99999
    assert list((tmp_path / backend).rglob("*.onnx"))
    assert any(f"-{backend}-" in p.name for p in (tmp_path / backend).glob("*.npy"))


@pytest.mark.parametrize("backend, module, message, hint", [
    ("onnx", "onnxruntime", "error: backend 'onnx' needs onnxruntime", "--backend torch"),
    ("openvino", "openvino", "error: backend 'openvino' needs the openvino package", "pip install openvino"),
])
def test_missing_runtime_is_one_error_line(tiny_model, small_beir, tmp_path, capsys, monkeypatch, backend, module,
                                           message, hint):
    real_import = builtins.__import__

    def no_runtime(name, *args, **kwargs):
        if name.split(".")[0] == module:
            raise ImportError(f"No module named '{module}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setattr(builtins, "__import__", no_runtime)
    code, out, err = run_cli(["run", "--model", tiny_model, "--backend", backend, "--datasets", str(small_beir),
                              "--no-save", "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(message) and hint in err


def test_export_failure_is_a_harness_error(tiny_model, tmp_path, monkeypatch):
    def broken_export(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with pytest.raises(HarnessError, match="cannot export .* to ONNX: RuntimeError: unsupported operator"):
        DenseEncoder("pico", tiny_model, backend="onnx", graph_dir=tmp_path)
    assert not list(tmp_path.rglob("*.onnx")) and not list(tmp_path.rglob("*.tmp"))
