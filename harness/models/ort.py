"""Exported-graph backends: export an encoder's forward pass once with ``torch.onnx.export``, cache
the graph beside the vectors, and run it with onnxruntime's CPU provider (backend ``onnx``) or with
OpenVINO's CPU plugin (backend ``openvino``, an optional dependency: ``pip install openvino``).

What is exported: the model's own forward from token ids to its output (a dense model's sentence
embedding, pooling and normalisation included; a ColBERT model's normalised token vectors). The
harness keeps doing the tokenisation (:class:`harness.models.dense.OffsetFreeTokeniser`, clipping),
so an ONNX run sees exactly the features the torch run sees.

Graph cache: ``<cache dir>/onnx/<key[:2]>/<key>.onnx``, the key being the sha256 of the weights
sha256, the exported length and shape settings, the precision / quantisation scheme, the opset and
the torch version (an export from another torch may differ). Files are written to a temporary name
and renamed, so a killed export never leaves half a graph. The vector cache key carries the graph's
own sha256 and the onnxruntime version (:func:`identity`), so vectors from another graph or runtime
never hit.

int8 (``quantize``): onnxruntime's dynamic quantisation of the MatMul weights, per output channel,
signed 8-bit weights on a 7-bit range (``reduce_range``: without VNNI, AVX2's u8 x s8 pair sums
saturate at 8 x 8 bits, see :mod:`harness.models.runtime`), activations quantised per call over
the whole input tensor (so vectors depend on which texts share a batch: the batch size is part of
their identity). MatMuls named in ``INT8_KEEP_FP32`` (each layer's FFN output projection) stay fp32.

OpenVINO runs the same fp32 graph (``openvino.Core().compile_model``) with its inference precision
pinned to f32: on a CPU with AVX-512 BF16 its default would be bf16, which changes the vectors.
``precision="bf16"`` asks for that bf16 inference on purpose (its own condition); it needs a CPU
whose OpenVINO plugin reports BF16 (AVX-512 BF16 or AMX), and is refused elsewhere rather than
silently run in f32. The int8 graph is onnxruntime's format, so int8 runs on ``onnx`` only.

Why ORT is faster than PyTorch eager here: the session's graph optimisations fuse LayerNorm, GELU,
bias adds and attention pieces that PyTorch runs as separate ops (a third of MiniLM's time), and
MLAS's GEMMs are about as fast as MKL's. Measurements: benchmarks/README.md.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from harness.errors import HarnessError

BACKENDS = ("torch", "onnx", "openvino")
GRAPH_BACKENDS = ("onnx", "openvino")  # run an exported graph, on the CPU
#: the precisions each backend runs (bf16 is a runtime setting of OpenVINO on the fp32 graph)
PRECISIONS = {"torch": ("fp32", "int8"), "onnx": ("fp32", "int8"), "openvino": ("fp32", "bf16")}
OPSET = 17
EXPORT_FORMAT = 1  # bump when the export wrapper changes what a graph computes
#: regular expressions: MatMul nodes whose name matches one stay fp32 in the int8 graph: each BERT
#: layer's FFN output projection, whose input (the GELU output) is where activation outliers
#: usually sit, so one per-tensor uint8 scale fits it worst. Effect on ndcg@10: benchmarks/README.md.
INT8_KEEP_FP32: tuple[str, ...] = (r"/layer\.\d+/output/dense/",)
#: dynamic quantisation settings (onnxruntime.quantization.quantize_dynamic)
INT8_SCHEME = {
    "scheme": "onnxruntime dynamic int8",
    "weights": "int8 symmetric per output channel, 7-bit range (reduce_range)",
    "activations": "uint8 asymmetric per tensor, computed per call",
    "ops": "MatMul",
    "kept_fp32": "MatMuls named like " + " or ".join(INT8_KEEP_FP32) if INT8_KEEP_FP32 else "none",
}


def onnxruntime():
    """The onnxruntime module, or one clear error naming what to install."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise HarnessError(f"backend 'onnx' needs onnxruntime, which cannot be imported here ({exc});"
                           " pip install onnxruntime onnx, or use --backend torch") from None
    return ort


def runtime_version() -> str:
    return onnxruntime().__version__


def openvino():
    """The openvino module, or one clear error naming what to install."""
    try:
        import openvino as ov
    except ImportError as exc:
        raise HarnessError(f"backend 'openvino' needs the openvino package, which cannot be imported here ({exc});"
                           " pip install openvino, or use --backend onnx") from None
    return ov


def require(backend: str, precision: str = "fp32") -> None:
    """Fail with one line, before anything loads, when ``backend`` cannot run here or at ``precision``."""
    if backend not in BACKENDS:
        raise HarnessError(f"backend '{backend}' is not one of {', '.join(BACKENDS)}")
    if backend in GRAPH_BACKENDS:
        onnxruntime()  # the export and the int8 tools are onnxruntime's
    if precision not in PRECISIONS[backend]:
        runs_on = [b for b, p in PRECISIONS.items() if precision in p]
        where = f"; {precision} runs on --backend {' or '.join(runs_on)}" if runs_on else ""
        raise HarnessError(f"backend '{backend}' runs precision {' or '.join(PRECISIONS[backend])},"
                           f" not '{precision}'{where}")
    if backend == "openvino":
        openvino()
        if precision == "bf16" and not openvino_bf16():
            raise HarnessError("precision bf16 needs a CPU with bf16 instructions (AVX-512 BF16 or AMX), and"
                               " OpenVINO finds none on this one; use --precision fp32")


def openvino_bf16() -> bool:
    """Whether OpenVINO's CPU plugin can infer in bf16 on this machine."""
    return "BF16" in openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def session(backend: str, path: Path, intra_threads: int, precision: str = "fp32"):
    """A session of ``backend`` ("onnx" or "openvino") on the graph ``path``: ``run(features)`` ->
    numpy output, ``inputs``, ``identity()``. ``intra_threads`` threads per call; ``precision`` is
    OpenVINO's inference precision (the onnx graph carries its own)."""
    if backend == "openvino":
        return OpenVINOSession(path, intra_threads, precision)
    return Session(path, intra_threads)


def threads() -> int:
    """Intra-op threads: OMP_NUM_THREADS when the user set it, else the CPUs this process may use."""
    from harness.models.runtime import cpu_threads

    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else cpu_threads()


def graph_path(cache_root: Path, key: str) -> Path:
    return Path(cache_root) / "onnx" / key[:2] / f"{key}.onnx"


@contextmanager
def eager_attention(hf_model):
    """Trace ``hf_model`` (a transformers model, or None) with its "eager" attention: matmul +
    softmax, a pattern onnxruntime fuses, where SDPA's decomposition adds NaN guards (same numbers
    to 1e-7 either way)."""
    config = getattr(hf_model, "config", None)
    previous = getattr(config, "_attn_implementation", None)
    if config is not None and previous not in (None, "eager"):
        config._attn_implementation = "eager"
    try:
        yield
    finally:
        if config is not None and previous is not None:
            config._attn_implementation = previous


def export(module, example: dict, output_name: str, target: Path, hf_model=None) -> Path:
    """``torch.onnx.export`` of ``module(**example)`` (int64 tensors (batch, seq)) to ``target``,
    batch and sequence axes dynamic, attention traced eager (:func:`eager_attention`); written
    atomically. Raises HarnessError on any failure."""
    import torch

    if target.is_file():
        return target
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
    except ImportError as exc:
        raise HarnessError(f"backend 'onnx' needs the onnx package to export the graph ({exc}); pip install onnx") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    names = list(example)
    handle, temporary = tempfile.mkstemp(suffix=".onnx.tmp", dir=target.parent)
    os.close(handle)
    try:
        with warnings.catch_warnings(), torch.inference_mode(), eager_attention(hf_model):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(), tuple(example[n] for n in names), temporary, dynamo=False, input_names=names,
                output_names=[output_name], opset_version=OPSET,
                dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in names}, output_name: {0: "batch"}},
            )
        os.replace(temporary, target)
    except HarnessError:
        raise
    except Exception as exc:
        raise HarnessError(f"cannot export {type(module).__name__} to ONNX: {type(exc).__name__}: {exc}") from None
    finally:
        Path(temporary).unlink(missing_ok=True)
    return target


def kept_fp32(node_name: str) -> bool:
    """Whether the MatMul node ``node_name`` stays fp32 in the int8 graph (:data:`INT8_KEEP_FP32`)."""
    return any(re.search(pattern, node_name) for pattern in INT8_KEEP_FP32)


def quantize(source: Path, target: Path, ops=("MatMul", "Attention")) -> Path:
    """Dynamic int8 copy of the fp32 graph ``source`` (:data:`INT8_SCHEME`; MatMuls matching
    :data:`INT8_KEEP_FP32` stay fp32), written atomically."""
    if target.is_file():
        return target
    onnxruntime()
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".onnx.tmp", dir=target.parent)
    os.close(handle)
    excluded = [n.name for n in onnx.load(str(source)).graph.node if n.op_type == "MatMul" and kept_fp32(n.name)]
    try:
        # onnxruntime's quantiser logs an advice ("consider to run pre-processing") on the root logger
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(str(source), temporary, per_channel=True, reduce_range=True, weight_type=QuantType.QInt8,
                             op_types_to_quantize=list(ops), nodes_to_exclude=excluded,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        finally:
            logging.disable(logging.NOTSET)
        os.replace(temporary, target)
    except Exception as exc:
        raise HarnessError(f"cannot quantise {source} to int8: {type(exc).__name__}: {exc}") from None
    finally:
        Path(temporary).unlink(missing_ok=True)
    return target


def cached_graph(cache_root: Path, identity: dict, module, example: dict, output_name: str, hf_model=None,
                 precision: str = "fp32") -> Path:
    """The graph of ``module`` for ``identity`` (weights sha256, lengths, what the graph outputs),
    exported on first use into ``cache_root`` (:func:`graph_path`); its int8 copy for
    ``precision="int8"``; the fp32 graph for "bf16" (a runtime setting). ``module`` is only traced
    when the graph is not cached yet."""
    import torch

    from harness.cache import cache_key

    onnxruntime()
    key = cache_key({"graph": identity, "opset": OPSET, "format": EXPORT_FORMAT, "torch": torch.__version__})
    path = export(module, example, output_name, graph_path(cache_root, key), hf_model)
    if precision == "int8":
        path = quantize(path, graph_path(cache_root, cache_key({"of": key, "int8": INT8_SCHEME})))
    elif precision not in ("fp32", "bf16"):
        raise HarnessError(f"no exported graph for precision '{precision}' (fp32, bf16 or int8)")
    return path


class Session:
    """An onnxruntime CPU session on a cached graph, fed numpy int64 features."""

    def __init__(self, path: Path, intra_threads: int):
        ort = onnxruntime()
        from harness.models.weights import file_sha256

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise HarnessError(f"onnxruntime cannot load {path}: {type(exc).__name__}: {exc}") from None
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.path = path
        self.sha256 = file_sha256(path)

    def run(self, features: dict) -> np.ndarray:
        feed = {n: np.ascontiguousarray(_numpy(features[n]), dtype=np.int64) for n in self.inputs}
        return self.session.run(None, feed)[0]

    def identity(self) -> dict:
        """What identifies this session's numbers: backend, runtime version, graph hash."""
        return {"backend": "onnx", "onnxruntime": runtime_version(), "graph_sha256": self.sha256}


class OpenVINOSession:
    """The same graph compiled by OpenVINO for the CPU, at inference precision f32 (``precision``
    "fp32") or bf16 ("bf16": matrix products in bf16, accumulation and outputs f32). Safe to call from
    several threads (one infer request per thread): with ``intra_threads`` 1, batches run
    data-parallel as on the ORT session, on as many streams as :func:`threads`."""

    def __init__(self, path: Path, intra_threads: int, precision: str = "fp32"):
        import threading

        from harness.models.weights import file_sha256

        ov = openvino()
        streams = max(1, threads() // max(1, intra_threads))
        self.inference_precision = {"fp32": "f32", "bf16": "bf16"}[precision]
        config = {"INFERENCE_PRECISION_HINT": self.inference_precision, "INFERENCE_NUM_THREADS": intra_threads * streams,
                  "NUM_STREAMS": streams, "PERFORMANCE_HINT": "THROUGHPUT" if streams > 1 else "LATENCY"}
        try:
            self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        except Exception as exc:
            raise HarnessError(f"openvino cannot compile {path}: {type(exc).__name__}: {exc}") from None
        self.inputs = [i.get_any_name() for i in self.compiled.inputs]
        self.path = path
        self.sha256 = file_sha256(path)
        self.version = ov.__version__.split("-")[0]
        self._local = threading.local()

    def run(self, features: dict) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        feed = {n: np.ascontiguousarray(_numpy(features[n]), dtype=np.int64) for n in self.inputs}
        return np.array(request.infer(feed)[0], dtype=np.float32, copy=True)

    def identity(self) -> dict:
        """What identifies this session's numbers: backend, runtime version, precision, graph hash."""
        return {"backend": "openvino", "openvino": self.version, "inference_precision": self.inference_precision,
                "graph_sha256": self.sha256}


def _numpy(value):
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def run_data_parallel(run, batches: list, workers: int) -> list:
    """``[run(b) for b in batches]`` by ``workers`` threads (onnxruntime releases the GIL in ``run``)."""
    if workers <= 1 or len(batches) <= 1:
        return [run(b) for b in batches]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(workers, len(batches))) as pool:
        return list(pool.map(run, batches))
