"""The OpenVINO backend (``--backend openvino``) runs the exported fp32 graph with the torch path's
numbers, keeps its own cache identity, and fails with one line where it cannot run. Tiny random
models; no timings asserted.

* dense vectors (narrow data-parallel and wide token-sorted paths: tests/test_onnx_backend.py) and
  ColBERT token vectors within cosine 0.99999 / 1e-5 of torch; the graph is the onnx backend's
  (exported once, shared);
* inference precision pinned to f32 (a bf16-capable CPU would otherwise default to bf16);
* bf16 on request: its own condition and cache identity, vectors close to f32 where the CPU has
  bf16 instructions, one ``error:`` line where it has none;
* identities: torch, onnx and openvino all distinct; fp32 runs are one condition;
* int8 on openvino, bf16 elsewhere: one ``error:`` line (no openvino installed:
  tests/test_onnx_backend.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_cli
from harness.models import ort
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
    assert err.startswith("error: backend 'openvino' runs precision fp32 or bf16, not 'int8'")
    assert "int8 runs on --backend torch or onnx" in err


@pytest.mark.skipif(not ort.openvino_bf16(),
                    reason="this CPU has no bf16 instructions (the refusal is tested below)")
def test_openvino_bf16_is_its_own_condition_close_to_f32(tiny_model, tmp_path):
    f32 = DenseEncoder("pico", tiny_model, batch_size=3, backend="openvino", graph_dir=tmp_path)
    bf16 = DenseEncoder("pico", tiny_model, batch_size=3, backend="openvino", precision="bf16", graph_dir=tmp_path)
    assert bf16._session.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "bf16"
    p = bf16.provenance()
    assert (p["precision"], p["inference_precision"]) == ("bf16", "bf16")
    assert p["graph_sha256"] == f32.provenance()["graph_sha256"]  # one fp32 graph, two runtime precisions
    assert DenseEncoderAdapter(bf16).cache_identity() != DenseEncoderAdapter(f32).cache_identity()
    assert condition_name("minilm", RunOptions(backend="openvino", precision="bf16")) == "minilm-openvino-bf16"
    a, b = f32.encode_documents(TEXTS), bf16.encode_documents(TEXTS)
    assert not np.array_equal(a, b)  # bf16 really ran: 8-bit mantissas change the vectors
    assert _cosine(a, b).min() > 0.99


def test_bf16_without_cpu_support_or_off_openvino_is_one_error_line(tiny_model, small_beir, tmp_path, capsys,
                                                                    monkeypatch):
    argv = ["run", "--model", tiny_model, "--precision", "bf16", "--datasets", str(small_beir), "--no-save",
            "--cache-dir", str(tmp_path)]
    code, _, err = run_cli(argv + ["--backend", "onnx"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: backend 'onnx' runs precision fp32 or int8, not 'bf16'; bf16 runs on --backend openvino")
    monkeypatch.setattr(ort, "openvino_bf16", lambda: False)
    code, _, err = run_cli(argv + ["--backend", "openvino"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: precision bf16 needs a CPU with bf16 instructions") and "--precision fp32" in err
