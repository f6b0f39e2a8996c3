"""Where ONNX Runtime's speed on MiniLM-sized encoders comes from, variant by variant, on the first
``--docs`` documents of a dataset, in one process with the variants interleaved (``--repeat``
rounds), so that every variant sees the same machine state.

fp32 variants (same vectors; max abs difference to the harness's torch path printed):

* ``st``: sentence-transformers ``encode`` (what BEIR's pipeline runs);
* ``torch``: the harness's torch path (``DenseEncoder``);
* ``onnx``: the harness's onnx path (``--backend onnx``: ``torch.onnx`` export, ORT_ENABLE_ALL);
* ``onnx-fused``: the same graph after ``onnxruntime.transformers.optimizer`` (model type bert:
  fused EmbedLayerNormalization, Attention, BiasGelu, SkipLayerNormalization);
* ``onnx-fused-dp``: the fused graph, one intra-op thread per session call, batches run
  data-parallel on every CPU (as the harness runs narrow models);
* ``openvino``: the unfused graph compiled by OpenVINO for the CPU, if ``openvino`` is installed, at
  f32 (``--backend openvino``) and at OpenVINO's default precision (bf16 on a CPU with AVX-512 BF16).

int8 variants (``quantize_dynamic`` of the fp32 graph's MatMuls, per channel, 7-bit weights unless
said): mean / minimum cosine to the fp32 vectors, and speed. ``keep-ffn-out`` keeps each layer's
FFN output projection (1536 -> 384, the input with GELU's outliers) in fp32 (the harness's int8
scheme, ``ort.INT8_KEEP_FP32``), ``keep-ffn-out-last3`` only those of layers 3-5; ``keep-first-last``
keeps the first and last layer in fp32; ``no-reduce-range`` uses the full 8-bit weight range.

    python benchmarks/ort_variants.py --docs 320 --repeat 2

CPU seconds (``time.process_time``, all threads) are the steadier figure on a shared machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--docs", type=int, default=320)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skip-int8", action="store_true")
    args = parser.parse_args()

    import numpy as np
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from sentence_transformers import SentenceTransformer

    from harness.data import load_dataset
    from harness.models import ort
    from harness.models.dense import DenseEncoder
    from harness.registry import resolve

    print(machine_line())
    docs = load_dataset(args.dataset).doc_texts()[: args.docs]
    path = resolve("minilm")[1]
    scratch = Path(tempfile.mkdtemp(prefix="ort-variants-"))
    torch_encoder = DenseEncoder("minilm", path, batch_size=args.batch_size)
    onnx_encoder = DenseEncoder("minilm", path, batch_size=args.batch_size, backend="onnx", graph_dir=scratch)
    plain_session = onnx_encoder._session
    graph = plain_session.path
    fused = optimizer.optimize_model(str(graph), model_type="bert", num_heads=12, hidden_size=384, opt_level=1)
    fused_ops = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
    fused_path = scratch / "fused.onnx"
    fused.save_model_to_file(str(fused_path))
    print(f"{len(docs)} documents of {args.dataset}, batch {args.batch_size}, fused operators: {fused_ops}")
    st = SentenceTransformer(path, device="cpu")

    def with_session(session, data_parallel: bool = False):
        def run():
            onnx_encoder._session = session
            if not data_parallel:
                return onnx_encoder.encode_documents(docs)
            tokeniser = onnx_encoder._tokeniser
            order = sorted(range(len(docs)), key=lambda i: (-len(docs[i]), i))
            batches = [order[s : s + args.batch_size] for s in range(0, len(order), args.batch_size)]
            features = [{k: v for k, v in tokeniser.features([docs[i] for i in b]).items() if k in session.inputs}
                        for b in batches]
            out = np.zeros((len(docs), 384), dtype=np.float32)
            for batch, vectors in zip(batches, ort.run_data_parallel(session.run, features, ort.threads())):
                out[batch] = vectors
            return out

        return run

    onnx_encoder.encode_documents(docs[:2])  # builds the verified tokeniser
    variants = {
        "st": lambda: st.encode(docs, batch_size=args.batch_size, normalize_embeddings=True),
        "torch": lambda: torch_encoder.encode_documents(docs),
        "onnx": with_session(plain_session),
        "onnx-fused": with_session(ort.Session(fused_path, ort.threads())),
        "onnx-fused-dp": with_session(ort.Session(fused_path, 1), data_parallel=True),
    }
    try:  # another runtime on the same graph, when installed (not a harness dependency)
        import openvino

        version = openvino.__version__.split("-")[0]
        for hint in ("f32", None):  # the harness's --backend openvino, and OpenVINO's own default
            compiled = openvino.Core().compile_model(str(graph), "CPU", {"INFERENCE_PRECISION_HINT": hint} if hint else {})
            precision = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()

            class OpenVINOSession:
                inputs = plain_session.inputs

                def __init__(self, compiled):
                    self.compiled = compiled

                def run(self, features):
                    feed = {n: np.ascontiguousarray(np.asarray(features[n]), dtype=np.int64) for n in self.inputs}
                    return self.compiled(feed)[0]

            label = "" if hint else " (its default here)"
            variants[f"openvino {version} {precision}{label}"] = with_session(OpenVINOSession(compiled))
    except ImportError:
        pass
    if not args.skip_int8:
        matmuls = [n.name for n in onnx.load(str(graph)).graph.node if n.op_type == "MatMul"]
        keep = {
            "int8": [],
            "int8-no-reduce-range": [],
            "int8-keep-ffn-out": [n for n in matmuls if ort.kept_fp32(n)],
            "int8-keep-ffn-out-last3": [n for n in matmuls if ort.kept_fp32(n)
                                        and any(f"/layer.{i}/" in n for i in (3, 4, 5))],
            "int8-keep-first-last": [n for n in matmuls if "/layer.0/" in n or "/layer.5/" in n],
        }
        for name, excluded in keep.items():
            target = scratch / f"{name}.onnx"
            quantize_dynamic(str(graph), str(target), per_channel=True, reduce_range=name != "int8-no-reduce-range",
                             weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], nodes_to_exclude=excluded,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            variants[f"{name} ({len(excluded)} of {len(matmuls)} MatMuls fp32)"] = with_session(
                ort.Session(target, ort.threads()))

    seconds = {name: [] for name in variants}
    vectors = {}
    for _ in range(args.repeat):
        for name, run in variants.items():
            wall, cpu = time.perf_counter(), time.process_time()
            vectors[name] = np.asarray(run(), dtype=np.float32)
            seconds[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    reference = vectors["torch"] / np.linalg.norm(vectors["torch"], axis=1, keepdims=True)
    st_cpu = min(c for _, c in seconds["st"])
    print(f"{'variant':52s} {'wall s':>7s} {'CPU s':>7s} {'vs st (CPU)':>11s}  cosine to torch fp32 (mean / min)")
    for name, times in seconds.items():
        wall, cpu = min(w for w, _ in times), min(c for _, c in times)
        v = vectors[name] / np.linalg.norm(vectors[name], axis=1, keepdims=True)
        cosine = (v * reference).sum(axis=1)
        print(f"{name:52s} {wall:7.2f} {cpu:7.2f} {st_cpu / cpu:10.2f}x  {cosine.mean():.6f} / {cosine.min():.6f}")
    print("(best of", args.repeat, "rounds per variant)")


if __name__ == "__main__":
    main()
