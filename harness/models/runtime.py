"""How the dense encoders run on this CPU: thread settings and the int8 (dynamic quantisation) path.

Why PyTorch eager (SDPA attention) stays the default fp32 runtime
-----------------------------------------------------------------
(``--backend onnx``, :mod:`harness.models.ort`, now runs the same models on onnxruntime; the
measurements that decided the default are in benchmarks/README.md. The table below is the first,
2026-11-28 measurement.)

Measured on all-MiniLM-L6-v2, scifact documents (~240 tokens each, 72% at the 256-token cap),
AMD EPYC (Zen 3, 2 cores, AVX2+FMA), CPU seconds per document at one thread (the machine was
shared, so CPU time is the stable measure), batch 32, length sorted:

============================================  ===============  =================================
runtime (fp32)                                docs / CPU-s     vs PyTorch eager (cosine)
============================================  ===============  =================================
PyTorch eager, SDPA attention (default)       9.2              1 (reference)
PyTorch eager, "eager" attention              ~7 (2 threads)   identical to 1e-7
ONNX Runtime 1.32, torch.onnx export, ALL     7.9              max abs diff 2e-7
ONNX Runtime + BERT fusions (Attention,       8.8              max abs diff 2e-7
  BiasGelu, SkipLayerNorm; eager-attn export)
============================================  ===============  =================================

The profile explains why nothing beats eager by much: 67% of the time is the Linear GEMMs (MKL
sgemm at ~82 GFLOP per CPU-second), 13% SDPA attention, 9% GELU, 7% copies, 4% LayerNorm/add.
ONNX Runtime's MLAS sgemm is no faster than MKL here (66 vs 71 GFLOP/CPU-s on a 8192x384x1536
product), so its fusions only win back part of the non-GEMM 33%, and it needs the ``onnx``
package plus an export step. So fp32 stays on the default eager path with unchanged numerics, and
its cache identity is unchanged (no ``runtime`` key).

What the fp32 path does add: ``torch.inference_mode``, intra-op threads = the CPUs this process may
run on (``os.sched_getaffinity``; torch's default counts the machine's cores, which oversubscribes
a CPU-limited container), and batches formed by *token* count (documents are already sorted
longest first by ``harness.cache.encode_in_blocks``, by characters; sorting a block by tokens cuts
padded tokens from 4.4% to 0.2% on scifact, 3.3% to 0.3% on nfcorpus). Models narrower than
``harness.models.dense.TOKEN_SORT_MIN_HIDDEN`` keep the character order (the extra tokenisation
costs them more than the padding it saves) and run their batches data-parallel
(:func:`run_batches_data_parallel`). The fast tokenizer keeps its own parallelism
(``TOKENIZERS_PARALLELISM`` is left to the user; the CLI used to switch it off): a cold
``python -m harness run --model pico --datasets scifact,nfcorpus`` took 24.5 s with it off and
22.0 s with it on (benchmarks/README.md).

int8: dynamic quantisation with fp32 outlier channels
------------------------------------------------------
``precision="int8"`` replaces every ``nn.Linear`` of the transformer (in_features >= 64) with
:class:`Int8DynamicLinear`: weights quantised symmetrically per output channel to 7 bits, activations
quantised per call (asymmetric uint8 over the whole input tensor), fbgemm's int8 GEMM, fp32 out;
except that, per call, the 8 input channels with the largest |x| are taken out of the int8 product
and multiplied in fp32 (LLM.int8()-style decomposition, chosen dynamically from every 8th row).
Attention, GELU and LayerNorm stay fp32. Measured the same way (docs per CPU-second at one thread
on the shared machine, so +-15%; cosine to the fp32 vectors over 64 scifact documents):

=======================================================  ============  ==========================
int8 variant                                             docs / CPU-s  cosine to fp32 mean (min)
=======================================================  ============  ==========================
torch ``quantize_dynamic`` (per-tensor, default)          14.1          0.924 (0.879)
torch ``quantize_dynamic``, per-channel qconfig           15.5          0.983 (0.975)
ONNX Runtime ``quantize_dynamic`` QInt8 per-tensor        15.5          0.936 (0.894)
ONNX Runtime ``quantize_dynamic`` QInt8 per-channel       15.2          0.993 (0.988)
7-bit per-channel weights, 8-bit activations              16.4-17.5     0.9937 (0.9909)
  + 8 fp32 outlier channels per call (this module)        ~12.8-14      0.9976 (0.9960)
  same with 8-bit weights (rejected: saturates, below)    ~13           0.9989 (0.9982)
=======================================================  ============  ==========================

The outlier channels are split off because BERT's activations have a few large channels (the FFN
inputs reach |x| = 28 where the median channel maximum is ~2), and one such channel sets the int8
step for the whole tensor. On the full scifact corpus this module's vectors have cosine 0.9974
(min 0.993) to fp32 for documents and 0.998 (min 0.996) for queries, yet ndcg@10 moves from
0.6451 (fp32) to 0.6553 (+0.0102; fp32 documents + int8 queries 0.6474, int8 documents + fp32
queries 0.6496); the 7-bit variant without outlier channels gave 0.6549. The shift is upward and
the same size with 2.5x less vector error, so it looks systematic for this dataset rather than
noise that a little more precision would remove; it is outside the +-0.002 target all the same.
(Those figures came from the batching of that day. Activation scales are per call, so int8
vectors depend on which texts share a batch; re-encoded from an empty cache on 2026-11-29 with
today's batching, the stored row is SciFact 0.6537 (+0.0086) and NFCorpus 0.3122 (-0.0038).)

Why 7-bit weights: without VNNI (AVX2 only), the u8 x s8 multiply-add (``vpmaddubsw``) sums two
products into int16, which saturates for 8-bit x 8-bit values; on random inputs 8-bit weights gave
20% relative error (``tests/test_dense_speed_paths.py`` would catch it). torch's ``quantize_dynamic``
avoids that by dropping the *activations* to 7 bits (``reduce_range=True``), which costs more
because of the outlier channels; dropping the *weights* to 7 bits instead (per channel, so each
row keeps its own scale) keeps the 8-bit activation resolution and cannot saturate
(2 x 255 x 64 < 32768). ONNX Runtime's int8 was no faster than fbgemm here and would add the
``onnx`` export dependency.
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
