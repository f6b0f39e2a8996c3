"""Single-vector (dense) encoders through sentence-transformers: MiniLM, pico, any ST folder or hub id.

``encode_queries`` / ``encode_documents`` return float32 arrays of shape (n_texts, dim); whether they
are L2-normalised is the model's own choice (its Normalize module), recorded in provenance.

Precision: ``"fp32"`` (default) runs PyTorch eager with SDPA attention, the reference numerics;
``"int8"`` quantises the transformer's Linear layers dynamically (int8 GEMMs, ~1.8x faster per CPU
second on MiniLM; ndcg@10 moves by a few thousandths, results/minilm-int8); ``"bf16"`` runs the
exported graph with OpenVINO's bf16 inference (``backend="openvino"`` on a CPU with bf16 instructions).
Activation scales are computed per batch, so int8 vectors depend on which texts share a batch: the
batch size is part of their provenance and cache key.
Why these runtimes, with the measurements: :mod:`harness.models.runtime`. Texts are encoded in
batches of similar length (the caller sorts documents by characters; models at least
``TOKEN_SORT_MIN_HIDDEN`` wide re-sort a block by tokens here and run one batch at a time on one
intra-op thread per CPU this process may use; narrower ones, like pico, run their batches
data-parallel, one worker per CPU), under ``torch.inference_mode``. Tokenisation is kept cheap
without changing a bit of the vectors: long texts are clipped where the truncated input stays
identical (``clip_text``) and the Rust tokenizer is not asked for character offsets
(``OffsetFreeTokeniser``); together 1.49x for pico at its 128 tokens (benchmarks/README.md).

Backend: ``"torch"`` (default) runs the sentence-transformers modules; ``"onnx"`` runs the same
forward pass exported once to an ONNX graph by onnxruntime (:mod:`harness.models.ort`), with the
same tokenisation and batching (fp32 vectors agree to cosine >= 0.99999; int8 is ORT's dynamic
quantisation). It adds ``backend`` / ``onnxruntime`` / ``graph_sha256`` to provenance, which the
pipeline puts into the cache key.

Cache identity: the fp32 provenance keys the vector cache reads (weights_sha256, path, max_length,
pooling, normalized, modules) are what they always were. A non-fp32 precision marks the
transformer's entry in ``modules`` (e.g. ``"Transformer[int8]"``), so its vectors never share a
cache entry with fp32 ones, and adds ``precision`` / ``quantization`` keys, which the pipeline puts
into the cache key too (a changed int8 scheme never serves stale vectors).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from harness.errors import HarnessError, first_line
from harness.models.weights import folder_sha256, require_safetensors

TOKEN_SORT_MIN_HIDDEN = 256
CLIP_CHARS_PER_TOKEN = 6


def clip_text(text: str, max_tokens: int) -> str:
    """``text`` up to the first space after ``CLIP_CHARS_PER_TOKEN * max_tokens`` characters (the
    whole text when it is shorter or has no space there).

    A fast tokenizer reads the whole text even when it keeps only the first ``max_tokens`` tokens;
    for pico (128 tokens, ~1,500-character documents) that is a fifth of the encoding time. With a
    BERT pre-tokenizer (words never span a space) the clipped text's tokens are the whole text's
    first tokens, so whenever the clipped text still fills ``max_tokens`` the truncated input is
    identical; the caller falls back to the whole text when it does not."""
    cut = text.find(" ", CLIP_CHARS_PER_TOKEN * max_tokens)
    return text if cut < 0 else text[:cut]


class OffsetFreeTokeniser:
    """Tokenises a batch of plain texts into the features sentence-transformers' ``preprocess``
    builds (``input_ids``, ``token_type_ids``, ``attention_mask``: int64 tensors (batch, longest),
    truncated at ``max_tokens``; ``modality`` ``"text"``), through the ``tokenizers`` backend's
    ``encode_batch_fast``, which skips the character offsets ``transformers`` always asks for:
    for pico that is a fifth of the encoding time. ``features`` falls back to ``preprocess`` for
    good unless its first batch gives exactly what ``preprocess`` gives (same keys, same values).

    For ColBERT (``harness.models.colbert``): ``prefix`` is prepended to every text, ``pad_to``
    pads every row to that many tokens, ``finish`` completes the features (query expansion), and
    ``preprocess`` is the reference to match, and the entries named in ``constants`` that are not
    tensors (``prompt_length``) are taken from its first batch."""

    def __init__(self, model, max_tokens: int, prefix: str = "", pad_to: int | None = None, finish=None,
                 preprocess=None, constants: tuple[str, ...] = ()):
        import copy

        self.preprocess = preprocess or model.preprocess
        self.max_tokens = max_tokens
        self.prefix = prefix
        self.finish = finish
        self.constant_keys = constants
        self.constants = {"modality": "text"}
        tokenizer = getattr(model, "tokenizer", None)
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self.backend = copy.deepcopy(backend) if hasattr(backend, "encode_batch_fast") else None
        if self.backend is not None:
            self.backend.enable_truncation(max_tokens)
            self.backend.enable_padding(pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token,
                                        pad_type_id=tokenizer.pad_token_type_id, length=pad_to)
        self.verified = False

    def _fast(self, texts: list[str]) -> dict:
        import torch

        encodings = self.backend.encode_batch_fast([self.prefix + t for t in texts] if self.prefix else texts)

        def as_tensor(field: str):
            return torch.from_numpy(np.array([getattr(e, field) for e in encodings], dtype=np.int64))
        features = {"input_ids": as_tensor("ids"), "token_type_ids": as_tensor("type_ids"),
                    "attention_mask": as_tensor("attention_mask"), **self.constants}
        return self.finish(features) if self.finish else features

    def features(self, texts: list[str]) -> dict:
        if self.backend is None:
            return self.preprocess(texts)
        if self.verified:
            return self._fast(texts)
        reference = self.preprocess(texts)
        self.constants |= {k: reference[k] for k in self.constant_keys if k in reference}
        fast = self._fast(texts)
        same = reference.keys() == fast.keys() and all(
            fast[k].equal(reference[k]) if hasattr(fast[k], "equal") else reference[k] == fast[k] for k in fast)
        if same:
            self.verified = True
        else:
            self.backend = None
        return reference


def clipped_features(tokenise_texts, texts: list[str], max_tokens: int, clip: bool) -> dict:
    """``tokenise_texts(texts)`` (features truncated at ``max_tokens``), with long texts clipped
    first (:func:`clip_text`) when ``clip``; a clipped text that no longer fills ``max_tokens`` (a
    rare run of long words) is tokenised whole, so the features are always the whole texts'."""
    if not clip:
        return tokenise_texts(texts)
    clipped = [clip_text(t, max_tokens) for t in texts]
    features = tokenise_texts(clipped)
    filled = (features["attention_mask"].sum(1) >= max_tokens).tolist()
    if all(full or len(c) == len(t) for full, c, t in zip(filled, clipped, texts)):
        return features
    return tokenise_texts([c if full else t for full, c, t in zip(filled, clipped, texts)])


def splits_words_at_spaces(tokenizer) -> bool:
    """True for a fast tokenizer whose pre-tokenizer is BERT's (splits at whitespace and
    punctuation) after BERT's per-character normaliser or none: the tokenizers ``clip_text`` is exact for."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    normalizer = backend.normalizer
    return (type(backend.pre_tokenizer).__name__ == "BertPreTokenizer"
            and (normalizer is None or type(normalizer).__name__ == "BertNormalizer"))


class DenseEncoder:
    """A sentence-transformers model used as a single-vector retriever encoder."""

    kind = "dense"

    def __init__(
        self,
        name: str,
        path: str,
        batch_size: int = 32,
        max_length: int | None = None,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
        precision: str = "fp32",
        backend: str = "torch",
        graph_dir: Path | None = None,
        device: str = "cpu",
    ):
        from sentence_transformers import SentenceTransformer

        from harness.models import berthash  # noqa: F401  (registers bert_hash with transformers' Auto classes)
        from harness.models import ort

        self.name = name
        self.path = path
        self.batch_size = batch_size
        ort.require(backend, precision)  # fail with one line before loading anything (ort.PRECISIONS)
        local = Path(path)
        if local.is_dir():
            require_safetensors(local, allow_pickle, recursive=True)
        # A failing hub download logs each failed request before raising; the error line below says it once.
        hub_logger = logging.getLogger("huggingface_hub")
        hub_level = hub_logger.level
        if not local.is_dir():
            hub_logger.setLevel(logging.ERROR)
        try:
            self.model = SentenceTransformer(path, device="cpu", trust_remote_code=trust_remote_code)
        except HarnessError:
            raise
        except Exception as exc:
            reason = first_line(exc)
            if local.is_dir():
                raise HarnessError(f"cannot load model folder '{path}' with sentence-transformers: {reason}") from None
            offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")
            hint = " (the hub is offline by default: set HF_HUB_OFFLINE=0 to download)" if offline else ""
            raise HarnessError(f"cannot load hub model '{path}': {reason}{hint}") from None
        finally:
            hub_logger.setLevel(hub_level)
        tokenizer = getattr(self.model, "tokenizer", None)
        vocabulary = len(tokenizer) if tokenizer is not None else 0
        if vocabulary <= len(getattr(tokenizer, "all_special_tokens", [])):
            # transformers falls back to a tokenizer of special tokens only: every word would be [UNK]
            raise HarnessError(
                f"{path}: no usable tokenizer (vocabulary of {vocabulary}); the folder needs its tokenizer files"
                " (tokenizer.json or vocab.txt with tokenizer_config.json)"
            )
        if max_length:
            self.model.max_seq_length = max_length
        self.dim = int(self.model.get_embedding_dimension())
        self.device = device
        if device != "cpu":
            if backend in ort.GRAPH_BACKENDS:
                raise HarnessError(f"--backend {backend} runs on the CPU only; drop --device {device}")
            self.model.to(device)
        self.precision = precision
        self._parameters = int(sum(p.numel() for p in self.model.parameters()))
        self._quantized_layers = 0
        self._tokeniser: OffsetFreeTokeniser | None = None
        self._folder = local if local.is_dir() else None
        self.backend = backend
        self._session = None
        if backend in ort.GRAPH_BACKENDS:
            self._session = self._graph_session(graph_dir)
        elif precision == "int8":
            from harness.models.runtime import quantize_int8

            self._quantized_layers = quantize_int8(self.model[0])
            if not self._quantized_layers:
                raise HarnessError(f"{path}: precision int8 found no Linear layer to quantise in {type(self.model[0]).__name__}")

    def _graph_session(self, graph_dir: Path | None):
        """An onnxruntime (or OpenVINO) session on this model's graph (sentence embedding from token ids),
        exported once into ``graph_dir`` (the vector cache's folder; a temporary one if None).
        Wide models run one batch at a time on every thread; narrow ones one thread per batch,
        batches data-parallel, as the torch path does."""
        import tempfile

        import torch

        from harness.models import ort

        if graph_dir is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="harness-onnx-")
            graph_dir = Path(self._scratch.name)
        tokeniser = OffsetFreeTokeniser(self.model, int(self.model.max_seq_length))
        example = {k: v for k, v in tokeniser.features(["a short text", "a somewhat longer second text"]).items()
                   if isinstance(v, torch.Tensor)}
        model = self.model

        class SentenceEmbedding(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, *tensors):
                return self.model({**dict(zip(example, tensors)), "modality": "text"})["sentence_embedding"]

        identity = {"kind": "dense", "weights_sha256": self._weights_sha256() or str(self.path),
                    "max_length": int(self.model.max_seq_length), "modules": [type(m).__name__ for m in self.model],
                    "inputs": list(example), "output": "sentence_embedding"}
        graph = ort.cached_graph(graph_dir, identity, SentenceEmbedding(), example, "sentence_embedding",
                                 getattr(self.model[0], "auto_model", None), self.precision)
        return ort.session(self.backend, graph, ort.threads() if self._sort_by_tokens else 1, self.precision)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts)

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts)

    @property
    def _sort_by_tokens(self) -> bool:
        """Sort batches by token count (an extra tokenisation pass) only for models at least
        ``TOKEN_SORT_MIN_HIDDEN`` wide. For MiniLM it cuts padding from 4.4% to 0.2% for ~1% of the
        time. For pico, whose forward pass is ~2 ms per document, the pass costs more than the padding
        it saves, so narrow models sort by characters, as sentence-transformers does. The same split
        picks the executor: narrow models run their batches data-parallel (see ``_encode``)."""
        config = getattr(getattr(self.model[0], "auto_model", None), "config", None)
        return int(getattr(config, "hidden_size", 0) or self.dim) >= TOKEN_SORT_MIN_HIDDEN

    def _token_lengths(self, texts: list[str]) -> list[int]:
        """Tokens per text after truncation (characters if the tokenizer cannot say)."""
        tokenizer = getattr(self.model, "tokenizer", None)
        try:
            ids = tokenizer(
                texts, truncation=True, max_length=int(self.model.max_seq_length),
                return_attention_mask=False, return_token_type_ids=False,
            )["input_ids"]
            return [len(i) for i in ids]
        except Exception:
            return [len(t) for t in texts]

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Length-sorted batches, each tokenised (texts clipped where that is exact, ``clip_text``;
        no character offsets, ``OffsetFreeTokeniser``) and run through the model as ``encode`` would.
        Wide models: sorted by tokens, one batch at a time on all intra-op threads (bounded memory).
        Narrow models: sorted by characters, tokenised up front, batches run data-parallel."""
        import torch

        from harness.models.runtime import configure_threads, run_batches_data_parallel

        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        configure_threads()
        wide = self._sort_by_tokens
        lengths = self._token_lengths(texts) if wide else [len(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: (-lengths[i], i))
        batches = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]

        max_tokens = int(self.model.max_seq_length)
        clip = splits_words_at_spaces(getattr(self.model, "tokenizer", None))
        if self._tokeniser is None or self._tokeniser.max_tokens != max_tokens:
            self._tokeniser = OffsetFreeTokeniser(self.model, max_tokens)  # verified once per encoder
        tokenise_texts = self._tokeniser.features

        def tokenise(batch: list[int]) -> dict:
            return clipped_features(tokenise_texts, [texts[i] for i in batch], max_tokens, clip)

        def forward(features: dict) -> np.ndarray:
            if self._session is not None:
                return self._session.run(features)
            if self.device != "cpu":
                features = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
            return self.model(features)["sentence_embedding"].to(torch.float32).cpu().numpy()

        with torch.inference_mode():
            if wide:
                vectors = (forward(tokenise(batch)) for batch in batches)
            elif self._session is not None:
                from harness.models.ort import run_data_parallel, threads

                vectors = run_data_parallel(forward, [tokenise(batch) for batch in batches], threads())
            else:
                vectors = run_batches_data_parallel(forward, [tokenise(batch) for batch in batches])
            for batch, batch_vectors in zip(batches, vectors):
                out[batch] = batch_vectors.reshape(len(batch), self.dim)
        return out

    def _weights_sha256(self) -> str | None:
        """Hashed once per encoder (provenance is asked for several times per run; MiniLM is 90 MB)."""
        if self._folder is None:
            return None
        if not hasattr(self, "_sha256"):
            self._sha256 = folder_sha256(self._folder)
        return self._sha256

    def provenance(self) -> dict:
        modules = [type(m).__name__ for m in self.model]
        normalized = "Normalize" in modules
        if self.precision != "fp32":  # part of the cache identity: int8 / bf16 vectors never hit fp32 entries
            modules[0] = f"{modules[0]}[{self.precision}]"
        provenance = {
            "model": self.name,
            "path": str(self.path),
            "weights_sha256": self._weights_sha256(),
            "parameters": self._parameters,
            "dims": self.dim,
            "bytes_per_doc": self.dim * 4,
            "max_length": int(self.model.max_seq_length),
            "pooling": _pooling_mode(self.model),
            "normalized": normalized,
            "modules": modules,
            "precision": self.precision,
        }
        if self._session is not None:  # part of the cache identity (torch provenance keeps its keys)
            provenance |= self._session.identity()
        if self.precision == "int8":
            from harness.models import ort, runtime

            # activation scales are computed per batch, so int8 vectors depend on which texts share
            # a batch: the batch size is part of their identity (and of the cache key)
            scheme = ort.INT8_SCHEME if self._session is not None else runtime.INT8_SCHEME
            layers = {} if self._session is not None else {"quantized_layers": self._quantized_layers}
            provenance["quantization"] = {**scheme, **layers, "batch_size": self.batch_size}
        return provenance


def _pooling_mode(model) -> str | None:
    for module in model:
        if type(module).__name__ == "Pooling":
            mode = getattr(module, "pooling_mode", None)
            if mode:
                return str(mode)
            config = module.get_config_dict() if hasattr(module, "get_config_dict") else {}
            return next((k.removeprefix("pooling_mode_") for k, v in config.items() if k.startswith("pooling_mode_") and v is True), None)
    return None
