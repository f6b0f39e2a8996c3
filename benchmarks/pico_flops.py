"""BertHash pico document encoding: docs/s, FLOPs per token and per document, achieved GFLOP/s and
the fraction of this CPU's fp32 peak, for several runtimes / batch sizes / thread counts.

Model: ``models/pico`` when it exists (``--model PATH`` for another folder), else a random-weight
pico built with ``harness.models.berthash.pico_config()`` + ``save_sentence_transformer`` (speed
does not depend on the weights). Data: the first ``--docs`` scifact documents (``title + " " +
text``, cut at ``--max-length`` tokens: 256 by default, as the figures in benchmarks/README.md were
measured; the shipped pico reads 128 since 2026-11-29), encoded as the harness encodes them (sorted by length; documents are
batched by token count).

FLOPs counted (multiply-add = 2 flops, matrix products only; softmax, GELU, LayerNorm, pooling are
not counted), for a text of n tokens, hidden H = 80, intermediate I = 320, projections P = 8,
layers N = 2:

    per token:     2 * (P*H + N * (4*H*H + 2*H*I))      = 2 * (640 + 2 * 76,800) = 308,480
    per sequence:  + N * 2 * (2 * n*n*H)                 (QK^T and attention x V)

The achieved rate counts only real tokens (padding is overhead, not work). Two peaks are printed:
the nominal one, cores x SIMD lanes x FMA units x 2 flops x clock (from /proc/cpuinfo; on 2 AVX2
cores at 2.445 GHz, 2 x 8 x 2 x 2 x 2.445 = 156.5 GFLOP/s), and the rate a large MKL sgemm
actually reaches on all cores (``_common.measured_fp32_gflops``). This CPU boosts above the
reported clock, so the sgemm rate is the higher one; fractions of peak and the 35% target are
judged against the higher of the two.

Sides (each in its own subprocess, so each has its own peak RSS):

* ``st``: the peer the harness replaces, plain ``SentenceTransformer.encode`` (PyTorch eager, SDPA,
  ``threads`` intra-op threads working on one batch at a time);
* ``torch``: the harness's own path, ``harness.models.dense.DenseEncoder`` (the same PyTorch eager
  forward pass; for a model as narrow as pico, length-sorted batches run data-parallel by
  ``threads`` workers of one intra-op thread each; long texts are clipped before tokenisation
  where the truncated input stays identical, ``harness.models.dense.clip_text``, and tokenised
  without character offsets, ``harness.models.dense.OffsetFreeTokeniser``);
* ``torch-plain``: the same path tokenising as sentence-transformers does (whole texts, through
  ``preprocess``), to show what those two steps gain;
* ``ort``: the same model exported with ``torch.onnx.export`` (locally) and run by ONNX Runtime
  (graph optimisations ALL), tokenisation and mean pooling as the harness does. Needs ``onnx``.

    python benchmarks/pico_flops.py                     # default grid
    python benchmarks/pico_flops.py --docs 500 --grid torch:32:2,torch:256:2,ort:256:2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, emit, fp32_peak_gflops, machine_line, measured_fp32_gflops, run_side  # noqa: E402

DEFAULT_GRID = "st:32:2,torch:32:1,torch:32:2,torch:64:2,torch:128:2,ort:128:2"


def pico_flops(lengths, hidden=80, intermediate=320, projections=8, layers=2) -> float:
    """Matrix-product flops to encode texts of the given token counts (see the module docstring)."""
    per_token = 2 * (projections * hidden + layers * (4 * hidden * hidden + 2 * hidden * intermediate))
    return float(sum(per_token * n + layers * 2 * 2 * n * n * hidden for n in lengths))


def load_texts(args) -> list[str]:
    from harness.data import load_dataset

    dataset = load_dataset(args.dataset, data_dir=args.data_dir)
    return dataset.doc_texts()[: args.docs]


def side(args) -> dict:
    import numpy as np
    import torch

    texts = load_texts(args)
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # DenseEncoder keeps the user's setting
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    cap = args.max_length
    lengths = [len(i) for i in tokenizer(texts, truncation=True, max_length=cap)["input_ids"]]
    texts = [texts[i] for i in sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))]  # as encode_in_blocks
    if args.runtime in ("torch", "torch-plain"):
        from harness.models import dense
        from harness.models.dense import DenseEncoder

        if args.runtime == "torch-plain":
            dense.splits_words_at_spaces = lambda tokenizer: False
            dense.OffsetFreeTokeniser.features = lambda self, texts: self.preprocess(texts)

        encoder = DenseEncoder("pico", args.model, batch_size=args.batch_size, max_length=cap, trust_remote_code=True)
        encode = encoder.encode_documents
    elif args.runtime == "st":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(args.model, device="cpu", trust_remote_code=True)
        model.max_seq_length = cap

        def encode(batch_texts):
            return model.encode(batch_texts, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False)
    else:
        import onnxruntime as ort

        onnx_path = export_onnx(args.model, Path(args.scratch))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

        def encode(batch_texts):
            count = [len(i) for i in tokenizer(batch_texts, truncation=True, max_length=cap)["input_ids"]]
            order = sorted(range(len(batch_texts)), key=lambda i: (-count[i], i))
            out = np.zeros((len(batch_texts), 80), dtype=np.float32)
            for start in range(0, len(order), args.batch_size):
                rows = order[start : start + args.batch_size]
                enc = tokenizer([batch_texts[i] for i in rows], padding=True, truncation=True, max_length=cap, return_tensors="np")
                feed = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
                hidden = session.run(None, feed)[0]
                mask = feed["attention_mask"][..., None].astype(np.float32)
                out[rows] = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
            return out

    encode(texts[:64])  # warm-up (allocators, thread pools, ORT graph)
    cpu0, start = time.process_time(), time.perf_counter()
    for block in range(0, len(texts), 1024):  # the harness's block size
        encode(texts[block : block + 1024])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu0
    flops = pico_flops(lengths)
    return {
        "runtime": args.runtime, "batch_size": args.batch_size, "threads": args.threads, "docs": len(texts),
        "tokens": int(sum(lengths)), "seconds": seconds, "cpu_seconds": cpu, "flops": flops,
    }


def export_onnx(model_dir: str, scratch: Path) -> Path:
    """torch.onnx.export of the model's transformer (last hidden state), dynamic batch and length."""
    import torch
    from sentence_transformers import SentenceTransformer

    target = scratch / "pico.onnx"
    if target.is_file():
        return target
    st = SentenceTransformer(model_dir, device="cpu", trust_remote_code=True)
    inner = st[0].model.eval()

    class LastHidden(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    example = st.tokenizer(["a short text", "a slightly longer text for the export"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    import warnings

    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHidden(inner), tuple(example[n] for n in names), str(target), dynamo=False, input_names=names,
            output_names=["last_hidden_state"], dynamic_axes={n: {0: "batch", 1: "seq"} for n in names + ["last_hidden_state"]},
            opset_version=17,
        )
    return target


def build_pico(folder: Path) -> str:
    import torch

    from harness.models.berthash import BertHashModel, pico_config, save_sentence_transformer, tokenizer_dir

    torch.manual_seed(0)
    model = BertHashModel(pico_config(), add_pooling_layer=False)
    save_sentence_transformer(model, tokenizer_dir(), folder)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="pico sentence-transformers folder (default: models/pico, else random)")
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--max-length", type=int, default=256, help="tokens per document, every side (default 256)")
    parser.add_argument("--grid", default=DEFAULT_GRID, help="runtime:batch_size:threads,...")
    parser.add_argument("--side", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--runtime", default="torch", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.side:
        emit(side(args))
        return

    print(machine_line(), flush=True)
    nominal, formula = fp32_peak_gflops()
    measured, how = measured_fp32_gflops()
    peak = max(nominal, measured)
    with tempfile.TemporaryDirectory() as scratch:
        model = args.model
        if model is None:
            shipped = REPO / "models" / "pico"
            model = str(shipped) if shipped.is_dir() else build_pico(Path(scratch) / "pico-random")
        print(f"model: {model}", flush=True)
        rows = []
        for item in args.grid.split(","):
            runtime, batch, threads = item.split(":")
            if runtime == "ort":
                try:
                    import onnx  # noqa: F401
                except ImportError:
                    print(f"  skipped {item}: ONNX export needs the onnx package (pip install onnx)", file=sys.stderr)
                    continue
            argv = ["--side", "--model", model, "--dataset", args.dataset, "--docs", str(args.docs), "--runtime", runtime,
                    "--batch-size", batch, "--threads", threads, "--scratch", scratch, "--max-length", str(args.max_length)]
            if args.data_dir:
                argv += ["--data-dir", args.data_dir]
            out = run_side(__file__, argv)
            print(f"  done: {item} {out['docs'] / out['seconds']:.0f} docs/s", file=sys.stderr, flush=True)
            rows.append(out)

    if not rows:
        return
    first = rows[0]
    tokens_per_doc = first["tokens"] / first["docs"]
    print(f"data: {first['docs']} {args.dataset} documents, {tokens_per_doc:.1f} tokens/doc ({args.max_length} cap)")
    print(f"FLOPs: {first['flops'] / first['tokens'] / 1e3:.1f} KFLOP per token (incl. attention at these lengths),"
          f" {first['flops'] / first['docs'] / 1e6:.1f} MFLOP per document")
    print(f"fp32 peak, nominal: {formula}")
    print(f"fp32 peak, measured: {how}")
    print(f"fractions below are of {peak:.1f} GFLOP/s, the higher of the two")
    print(f"{'runtime':<11} {'batch':>6} {'threads':>8} {'docs/s':>8} {'tokens/s':>10} {'GFLOP/s':>8} {'% peak':>7}"
          f" {'GFLOP/CPU-s':>12} {'peak RSS MB':>12}")
    for r in rows:
        gflops = r["flops"] / r["seconds"] / 1e9
        print(f"{r['runtime']:<11} {r['batch_size']:>6} {r['threads']:>8} {r['docs'] / r['seconds']:8.0f}"
              f" {r['tokens'] / r['seconds']:10.0f} {gflops:8.1f} {100 * gflops / peak:6.1f}%"
              f" {r['flops'] / r['cpu_seconds'] / 1e9:12.1f} {r['peak_rss_mb']:12.0f}")
    for peer_runtime, label in (("st", "sentence-transformers"), ("torch-plain", "plain tokenisation")):
        peer = next((r for r in rows if r["runtime"] == peer_runtime), None)
        for r in rows:
            if peer and r["runtime"] == "torch" and (r["batch_size"], r["threads"]) == (peer["batch_size"], peer["threads"]):
                print(f"harness vs {label} (batch {r['batch_size']}, {r['threads']} threads): "
                      f"{peer['seconds'] / r['seconds']:.2f}x")
    best = max(rows, key=lambda r: r["docs"] / r["seconds"])
    best_gflops = best["flops"] / best["seconds"] / 1e9
    print(f"best: {best['runtime']} batch {best['batch_size']} threads {best['threads']}: {best_gflops:.1f} GFLOP/s ="
          f" {100 * best_gflops / peak:.1f}% of peak (target 35%)")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
