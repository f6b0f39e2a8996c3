"""How the dense encoders run on this CPU: thread settings and the int8 (dynamic quantisation) path.

fp32 runs on PyTorch eager (SDPA attention) under ``torch.inference_mode``, with intra-op threads =
the CPUs this process may run on (:func:`cpu_threads`, the affinity mask; torch's default counts
the machine's cores, which oversubscribes a CPU-limited container). Batches are formed by *token*
count (documents arrive sorted longest first by characters from ``harness.cache.encode_in_blocks``);
models narrower than ``harness.models.dense.TOKEN_SORT_MIN_HIDDEN`` keep the character order and run
their batches data-parallel (:func:`run_batches_data_parallel`). ``TOKENIZERS_PARALLELISM`` is left
to the user.

``precision="int8"`` replaces every ``nn.Linear`` of the transformer (in_features >= 64) with
:class:`Int8DynamicLinear`: weights quantised symmetrically per output channel to 7 bits (so the AVX2
u8 x s8 pair sums, ``vpmaddubsw``, cannot saturate int16: 2 x 255 x 64 < 32768), activations
quantised per call (asymmetric uint8 over the whole input tensor), fbgemm's int8 GEMM, fp32 out;
per call, the 8 input channels with the largest |x| (estimated on every 8th row) are taken out of
the int8 product and multiplied in fp32 (LLM.int8()-style decomposition), because a few large BERT
activation channels would otherwise set the int8 step for the whole tensor. Attention, GELU and
LayerNorm stay fp32. Activation scales are per call, so int8 vectors depend on which texts share a
batch.

The measurements behind these choices (runtimes compared, int8 variants, their ndcg@10 shifts) are
in ``benchmarks/README.md``.
"""

from __future__ import annotations

import os
import warnings

import torch

INT8_MIN_IN_FEATURES = 64
INT8_WEIGHT_BITS = 7  # 2 x 255 x 64 < 32768: the AVX2 u8 x s8 pair sums (vpmaddubsw) cannot saturate
INT8_OUTLIER_CHANNELS = 8  # input channels per call computed in fp32 (the largest |x|)
INT8_OUTLIER_ROW_STRIDE = 8  # channel maxima are estimated on every 8th row of the input
INT8_SCHEME = {
    "scheme": "dynamic int8",
    "weights": f"int{INT8_WEIGHT_BITS} symmetric per output channel",
    "activations": "uint8 asymmetric per tensor, computed per call",
    "outliers": f"the {INT8_OUTLIER_CHANNELS} input channels with the largest |x| per call stay fp32",
    "kernel": "fbgemm quantized::linear_dynamic",
    "layers": f"nn.Linear with in_features >= {INT8_MIN_IN_FEATURES} in the transformer",
}


def cpu_threads() -> int:
    """CPUs this process may run on (the affinity mask, which a container may restrict)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def configure_threads() -> int:
    """Set torch's intra-op threads to :func:`cpu_threads` unless the user set OMP_NUM_THREADS."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = cpu_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def run_batches_data_parallel(forward, batches: list) -> list:
    """``[forward(b) for b in batches]``, run by one worker thread per CPU (:func:`configure_threads`),
    each on one intra-op thread (torch releases the GIL inside its ops); results in input order.
    Per batch the arithmetic is the one-thread arithmetic, so the results do not depend on the
    number of workers. Why: for narrow models (pico is 80 wide) the intra-op pool synchronises its
    threads at every one of many tiny ops, and independent batches never wait for each other
    (benchmarks/README.md). Memory: one batch's activations per worker, so it is for narrow models
    only (MiniLM's peak RSS rose from ~1045 to ~1875 MB this way). Call under inference mode and
    tokenise first: a fast tokenizer must not be used from two threads at once."""
    from concurrent.futures import ThreadPoolExecutor

    workers = min(configure_threads(), len(batches))
    if workers <= 1:
        return [forward(b) for b in batches]

    def run(batch):
        with torch.inference_mode():  # thread-local: each worker enters it itself
            return forward(batch)

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(run, batches))
    finally:
        torch.set_num_threads(previous)


class Int8DynamicLinear(torch.nn.Module):
    """``nn.Linear`` with int8 weights (per output channel) and per-call int8 activations, except the
    ``outliers`` input channels of largest magnitude, whose products are computed in fp32."""

    def __init__(self, linear: torch.nn.Linear, weight_bits: int = INT8_WEIGHT_BITS,
                 outliers: int = INT8_OUTLIER_CHANNELS):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.outliers = min(outliers, self.in_features // 8)
        weight = linear.weight.detach().float()
        qmax = 2 ** (weight_bits - 1) - 1
        scales = (weight.abs().amax(dim=1) / qmax).clamp(min=1e-12).double()
        zeros = torch.zeros(self.out_features, dtype=torch.int64)
        bias = linear.bias.detach().float() if linear.bias is not None else None
        self.register_buffer("weight_t", weight.t().contiguous(), persistent=False)  # (in, out), outlier rows
        previous = torch.backends.quantized.engine
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch deprecates quantized tensors in favour of torchao
            if "fbgemm" in torch.backends.quantized.supported_engines:
                torch.backends.quantized.engine = "fbgemm"
            try:
                qweight = torch.quantize_per_channel(weight, scales, zeros, 0, torch.qint8)
                self._packed = torch.ops.quantized.linear_prepack(qweight, bias)
            finally:
                torch.backends.quantized.engine = previous

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if not self.outliers or flat.shape[0] == 0:
            y = torch.ops.quantized.linear_dynamic(flat, self._packed, reduce_range=False)
            return y.reshape(*x.shape[:-1], self.out_features)
        # BERT activations have a few large channels (|x| ~ 28 where most stay below ~2); one such
        # channel would set the int8 step for the whole tensor. Take them out and do them in fp32.
        sample = flat[:: INT8_OUTLIER_ROW_STRIDE]
        channels = torch.topk(sample.abs().amax(dim=0), self.outliers, sorted=False).indices
        outlier_part = flat.index_select(1, channels)
        inliers = flat.index_fill(1, channels, 0.0)
        y = torch.ops.quantized.linear_dynamic(inliers, self._packed, reduce_range=False)
        y.addmm_(outlier_part, self.weight_t.index_select(0, channels))
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 dynamic, {self.outliers} fp32 outlier channels"


def quantize_int8(module: torch.nn.Module, min_in_features: int = INT8_MIN_IN_FEATURES) -> int:
    """Replace, in place, every ``nn.Linear`` of ``module`` (in_features >= min) by
    :class:`Int8DynamicLinear`; returns how many were replaced."""
    targets = [
        (name, child)
        for name, child in module.named_modules()
        if isinstance(child, torch.nn.Linear) and child.in_features >= min_in_features
    ]
    for name, linear in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, Int8DynamicLinear(linear))
    return len(targets)
