"""Single-vector (dense) encoders through sentence-transformers: MiniLM, pico, any ST folder or hub id.

``encode_queries`` / ``encode_documents`` return float32 arrays of shape (n_texts, dim); whether they
are L2-normalised is the model's own choice (its Normalize module), recorded in provenance.

Precision: ``"fp32"`` (default) runs PyTorch eager with SDPA attention, the reference numerics;
``"int8"`` quantises the transformer's Linear layers dynamically (int8 GEMMs, ~1.8x faster per CPU
second on MiniLM; ndcg@10 moves -0.0038 on NFCorpus and +0.0086 on SciFact, results/minilm-int8).
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

from harness.errors import HarnessError
from harness.models.weights import folder_sha256, require_safetensors

PRECISIONS = ("fp32", "int8")
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
    good unless its first batch gives exactly what ``preprocess`` gives (same keys, same values)."""

    def __init__(self, model, max_tokens: int):
        import copy

        self.preprocess = model.preprocess
        self.max_tokens = max_tokens
        tokenizer = getattr(model, "tokenizer", None)
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self.backend = copy.deepcopy(backend) if hasattr(backend, "encode_batch_fast") else None
        if self.backend is not None:
            self.backend.enable_truncation(max_tokens)
            self.backend.enable_padding(pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token,
                                        pad_type_id=tokenizer.pad_token_type_id)
        self.verified = False

    def _fast(self, texts: list[str]) -> dict:
        import torch

        encodings = self.backend.encode_batch_fast(texts)

        def as_tensor(field: str):
            return torch.from_numpy(np.array([getattr(e, field) for e in encodings], dtype=np.int64))
        return {"input_ids": as_tensor("ids"), "token_type_ids": as_tensor("type_ids"),
                "attention_mask": as_tensor("attention_mask"), "modality": "text"}

    def features(self, texts: list[str]) -> dict:
        if self.backend is None:
            return self.preprocess(texts)
        if self.verified:
            return self._fast(texts)
        reference, fast = self.preprocess(texts), self._fast(texts)
        same = reference.keys() == fast.keys() and all(
            reference[k] == fast[k] if isinstance(fast[k], str) else fast[k].equal(reference[k]) for k in fast)
        if same:
            self.verified = True
        else:
            self.backend = None
        return reference


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
    ):
        from sentence_transformers import SentenceTransformer

        from harness.models import berthash  # noqa: F401  (registers bert_hash with transformers' Auto classes)

        self.name = name
        self.path = path
        self.batch_size = batch_size
        if precision not in PRECISIONS:
            raise HarnessError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
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
            reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
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
        self.precision = precision
        self._parameters = int(sum(p.numel() for p in self.model.parameters()))
        self._quantized_layers = 0
        self._tokeniser: OffsetFreeTokeniser | None = None
        if precision == "int8":
            from harness.models.runtime import quantize_int8

            self._quantized_layers = quantize_int8(self.model[0])
            if not self._quantized_layers:
                raise HarnessError(f"{path}: precision int8 found no Linear layer to quantise in {type(self.model[0]).__name__}")
        self._folder = local if local.is_dir() else None

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
            whole = [texts[i] for i in batch]
            if not clip:
                return tokenise_texts(whole)
            clipped = [clip_text(t, max_tokens) for t in whole]
            batch_features = tokenise_texts(clipped)
            filled = (batch_features["attention_mask"].sum(1) >= max_tokens).tolist()
            if all(full or len(c) == len(t) for full, c, t in zip(filled, clipped, whole)):
                return batch_features
            # a clipped text that no longer fills max_tokens (a rare run of long words) is tokenised whole
            return tokenise_texts([c if full else t for full, c, t in zip(filled, clipped, whole)])

        def forward(features: dict) -> np.ndarray:
            return self.model(features)["sentence_embedding"].to(torch.float32).numpy()

        with torch.inference_mode():
            if wide:
                vectors = (forward(tokenise(batch)) for batch in batches)
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
        if self.precision != "fp32":  # part of the cache identity: int8 vectors never hit fp32 entries
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
        if self.precision == "int8":
            from harness.models.runtime import INT8_SCHEME

            # activation scales are computed per batch, so int8 vectors depend on which texts share
            # a batch: the batch size is part of their identity (and of the cache key)
            provenance["quantization"] = {**INT8_SCHEME, "quantized_layers": self._quantized_layers,
                                          "batch_size": self.batch_size}
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
