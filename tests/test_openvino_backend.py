"""The OpenVINO backend (``--backend openvino``) runs the exported fp32 graph with the torch path's
numbers, keeps its own cache identity, and fails with one line where it cannot run. Tiny random
models; no timings asserted.

* dense vectors (narrow data-parallel and wide token-sorted paths: tests/test_onnx_backend.py) and
  ColBERT token vectors within cosine 0.99999 / 1e-5 of torch; the graph is the onnx backend's
  (exported once, shared);
* inference precision pinned to f32 (a bf16-capable CPU would otherwise default to bf16);
* identities: torch, onnx and openvino all distinct; fp32 runs are one condition;
* int8 on openvino: one ``error:`` line (no openvino installed: tests/test_onnx_backend.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_cli
from harness.models.dense import DenseEncoder
from harness.pipeline import RunOptions, condition_name
from harness.stages import DenseEncoderAdapter
from test_dense_speed_paths import tiny_model  # noqa: F401  (the same random pico, a module fixture)
from test_onnx_backend import TEXTS, _cosine, colbert  # noqa: F401  (texts, and the tiny ColBERT fixture)

pytest.importorskip("openvino")


def test_openvino_runs_f32_on_the_onnx_backends_graph(tiny_model, tmp_path):
    """Vectors: ``test_dense_graph_fp32_matches_torch`` in tests/test_onnx_backend.py."""
    encoder = DenseEncoder("pico", tiny_model, batch_size=3, backend="openvino", graph_dir=tmp_path)
    assert encoder._session.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"
    p = encoder.provenance()
    assert (p["backend"], p["inference_precision"]) == ("openvino", "f32")
    onnx = DenseEncoder("pico", tiny_model, batch_size=3, backend="onnx", graph_dir=tmp_path)
    assert len(list(tmp_path.rglob("*.onnx"))) == 1 and onnx.provenance()["graph_sha256"] == p["graph_sha256"]
    assert np.array_equal(encoder.encode_documents(TEXTS), encoder.encode_documents(TEXTS))  # thread-local requests


def test_identities_differ_but_fp32_is_one_condition(tiny_model, tmp_path):
    identities = [DenseEncoderAdapter(DenseEncoder("pico", tiny_model, backend=b, graph_dir=tmp_path)).cache_identity()
                  for b in ("torch", "onnx", "openvino")]
    assert all(a != b for i, a in enumerate(identities) for b in identities[i + 1:])
    assert condition_name("minilm", RunOptions(backend="openvino")) == "minilm"


def test_colbert_openvino_matches_torch(colbert, tmp_path):
    colbert.set_backend("torch")
    reference = {"query": colbert.encode_queries(TEXTS, batch_size=3),
                 "document": colbert.encode_documents(TEXTS, batch_size=3)}
    colbert.set_backend("openvino", tmp_path)
    try:
        got = {"query": colbert.encode_queries(TEXTS, batch_size=3),
               "document": colbert.encode_documents(TEXTS, batch_size=3)}
        assert colbert.provenance()["backend"] == "openvino"
    finally:
        colbert.set_backend("torch")
    for task in got:
        assert [a.shape for a in got[task]] == [b.shape for b in reference[task]]
        assert max(float(np.abs(a - b).max()) for a, b in zip(got[task], reference[task])) < 1e-5


def test_openvino_int8_is_one_error_line(tiny_model, small_beir, tmp_path, capsys):
    code, out, err = run_cli(["run", "--model", tiny_model, "--backend", "openvino", "--precision", "int8",
                              "--datasets", str(small_beir), "--no-save", "--cache-dir", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: backend 'openvino' runs fp32 only") and "--backend onnx" in err
