"""ColBERT multi-vector encoder: a BERT-family encoder + a bias-free Linear to ``token_dim``.

Shapes and units: ``encode_queries`` / ``encode_documents`` return one float32 array per text,
(n_tokens_i, token_dim), every row L2-normalised (unit length, so dot product = cosine).
``forward_queries`` / ``forward_documents`` return (tokens (B, L, token_dim), mask (B, L) bool)
with gradients; masked-out positions hold zero vectors and must be ignored through ``mask``.

Tokenisation (PyLate's convention, reproduced exactly by sentence-transformers' loader): the text
is prefixed with ``"[Q] "`` (queries) or ``"[D] "`` (documents), each one added token, so inputs
read ``[CLS] [Q] tokens... [SEP]``. Queries are cut to ``query_length`` (32) tokens and, with
``mask_expansion`` (PyLate's ``do_query_expansion``), padded to exactly 32 with ``[MASK]`` tokens
that the encoder does not attend to (``attend_to_expansion_tokens=False``) but whose output
vectors are kept and scored. Documents are cut to ``document_length`` (300) tokens, with no
padding kept and with the ``skiplist_words`` tokens (PyLate's default: ASCII punctuation)
dropped from the output. Padding is masked in attention and removed from outputs, so a text's
vectors do not depend on what else is in its batch.

Engine: sentence-transformers 6's ``MultiVectorEncoder`` (Transformer -> Dense ->
MultiVectorMask -> Normalize) does the tokenisation, expansion, masking and normalisation, and
loads PyLate folders natively (it maps ``pylate.models.Dense.Dense`` onto its own Dense and reads
the legacy top-level ``query_prefix`` / ``query_length`` / ``do_query_expansion`` keys). What it
does not do, and this module adds: (1) strict loading: every tensor in the checkpoint files is
compared with the modules (missing, unexpected or mis-shaped tensors raise ``HarnessError``;
only a missing BERT ``pooler.*``, unused by ColBERT, is tolerated), and pickle weights are
refused unless ``allow_pickle=True`` (allowed pickle files are loaded but not compared); (2) saving in PyLate's v3 layout, which NeuML's
colbert-muvera models use, instead of sentence-transformers' native multi-vector layout:

    modules.json                       [Transformer (path ""), pylate.models.Dense.Dense ("1_Dense")]
    config_sentence_transformers.json  model_type "ColBERT", query_prefix, document_prefix,
                                       query_length, document_length, do_query_expansion,
                                       attend_to_expansion_tokens, skiplist_words, prompts
    sentence_bert_config.json          max_seq_length = document_length - 1 (as PyLate writes)
    config.json, model.safetensors     the encoder (BertHash also ships its modeling code)
    tokenizer files                    including the added "[Q] " / "[D] " tokens
    1_Dense/config.json, 1_Dense/model.safetensors   {"linear.weight": (token_dim, hidden)}
"""

from __future__ import annotations

import json
import os
import string
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from sentence_transformers import MultiVectorEncoder
from sentence_transformers.base.modules import Normalize, Transformer
from sentence_transformers.base.modules.dense import Dense
from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask
from torch import nn
from transformers import AddedToken, AutoTokenizer, PreTrainedModel

from harness.errors import HarnessError
from harness.models import berthash
from harness.models.dense import TOKEN_SORT_MIN_HIDDEN
from harness.models.weights import file_sha256, require_safetensors

QUERY_PREFIX = "[Q] "
DOCUMENT_PREFIX = "[D] "
QUERY_LENGTH = 32
DOCUMENT_LENGTH = 300
DEFAULT_SKIPLIST = list(string.punctuation)
_WEIGHTS = "model.safetensors"
_DENSE_DIR = "1_Dense"
_TOLERATED_MISSING_PREFIX = "pooler."


def _check_tensors(module: nn.Module, weights: Path, what: str, drop_heads: bool = False) -> None:
    """Raise ``HarnessError`` unless ``weights`` (safetensors) holds exactly ``module``'s tensors.

    A checkpoint saved from a model with a task head (keys under ``base_model_prefix``, e.g.
    ``bert.``) is matched after stripping that prefix; with ``drop_heads`` its other keys (the head)
    are ignored. A missing ``pooler.*`` is tolerated (ColBERT never uses the pooler).
    """
    with safe_open(str(weights), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    prefix = getattr(module, "base_model_prefix", "") + "."
    if prefix != "." and not set(shapes) & set(expected) and any(k.startswith(prefix) for k in shapes):
        heads = {k for k in shapes if not k.startswith(prefix)}
        shapes = {k.removeprefix(prefix): v for k, v in shapes.items() if k.startswith(prefix)}
        if heads and not drop_heads:
            shapes.update({k: None for k in heads})
    missing = sorted(k for k in expected if k not in shapes and not k.startswith(_TOLERATED_MISSING_PREFIX))
    unexpected = sorted(k for k in shapes if k not in expected)
    mismatched = sorted(f"{k}: {shapes[k]} vs {expected[k]}" for k in expected if k in shapes and shapes[k] != expected[k])
    problems = [
        f"{label}: {items}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch (file vs model)", mismatched))
        if items
    ]
    if problems:
        raise HarnessError(f"{weights}: does not match the {what}; " + "; ".join(problems))


class ColBERT:
    """A ColBERT model (see the module docstring). Build with ``load`` or ``new``."""

    def __init__(self, encoder: MultiVectorEncoder, path: Path | None = None):
        self.encoder = encoder
        self.path = path
        self._session = None  # an exported-graph session (harness.models.ort) with backend "onnx" / "openvino"
        self.device = "cpu"  # torch device of the modules (to_device)
        self._tokenisers: dict = {}
        expansion = encoder[0].query_expansion
        if expansion is not None and expansion["strategy"] != "fixed":
            raise HarnessError(f"unsupported query expansion {expansion}: only PyLate's fixed-length [MASK] padding")

    # ------------------------------------------------------------------ construction

    @classmethod
    def load(cls, path: str | os.PathLike, *, allow_pickle: bool = False) -> ColBERT:
        """Load a PyLate (or sentence-transformers multi-vector) folder strictly, on CPU, in eval mode."""
        folder = Path(path)
        if not (folder / "modules.json").is_file():
            raise HarnessError(f"{folder}: not a ColBERT folder (no modules.json)")
        strict_root = require_safetensors(folder, allow_pickle)
        strict_dense = require_safetensors(folder / _DENSE_DIR, allow_pickle) if (folder / _DENSE_DIR).is_dir() else None
        try:
            encoder = MultiVectorEncoder(str(folder), device="cpu", local_files_only=True)
        except HarnessError:
            raise
        except (RuntimeError, ValueError, OSError) as exc:  # e.g. torch's strict load_state_dict in Dense
            raise HarnessError(f"{folder}: cannot load as ColBERT: {type(exc).__name__}: {exc}") from None
        dense = [m for m in encoder if isinstance(m, Dense)]
        if len(dense) != 1 or not isinstance(encoder[0], Transformer):
            raise HarnessError(f"{folder}: expected Transformer + one Dense projection, got {[type(m).__name__ for m in encoder]}")
        if strict_root:
            _check_tensors(encoder[0].model, folder / _WEIGHTS, "encoder")
        if strict_dense:
            _check_tensors(dense[0], folder / _DENSE_DIR / _WEIGHTS, "Dense projection")
        elif strict_dense is None:
            raise HarnessError(f"{folder}: no {_DENSE_DIR}/ projection folder")
        encoder.eval()
        return cls(encoder, folder)

    @classmethod
    def new(
        cls,
        base: str | os.PathLike | PreTrainedModel,
        token_dim: int,
        *,
        tokenizer: str | os.PathLike | None = None,
        query_length: int = QUERY_LENGTH,
        document_length: int = DOCUMENT_LENGTH,
        mask_expansion: bool = True,
        skiplist_words: list[str] | None = None,
        seed: int = 0,
    ) -> ColBERT:
        """A fresh ColBERT on ``base`` (a model folder, or a transformers model, which is copied)
        with a ``seed``-initialised bias-free (hidden -> token_dim) projection.

        The tokenizer comes from ``tokenizer``, else the base folder, else BertHash's
        bert-base-uncased vocabulary; the ``[Q] `` / ``[D] `` tokens are added (and the embedding
        table grown by two rows) when missing. A base folder saved with a task head (e.g.
        ``BertHashForMaskedLM``) loads with the head dropped; any other mismatch raises."""
        with tempfile.TemporaryDirectory() as tmp:
            staging = Path(tmp)
            if isinstance(base, PreTrainedModel):
                base.save_pretrained(staging)
                base_dir = staging
            else:
                base_dir = Path(base)
                require_safetensors(base_dir, allow_pickle=False)
                for item in base_dir.iterdir():  # config, weights and any shipped modeling code, read-only
                    if item.name in ("config.json", "model.safetensors.index.json") or item.suffix in (".safetensors", ".py"):
                        os.symlink(item.resolve(), staging / item.name)
            source = Path(tokenizer) if tokenizer else base_dir
            if not (source / "tokenizer_config.json").is_file():
                source = berthash.tokenizer_dir()
            tok = AutoTokenizer.from_pretrained(str(source))
            tok.add_special_tokens(
                {"additional_special_tokens": [AddedToken(p, normalized=False, special=True) for p in (QUERY_PREFIX, DOCUMENT_PREFIX)]},
                replace_extra_special_tokens=False,
            )
            tok.save_pretrained(staging)
            transformer = Transformer(
                str(staging),
                document_length=document_length,
                query_length=None if mask_expansion else query_length,
                query_expansion={"strategy": "fixed", "attend": False, "length": query_length} if mask_expansion else None,
                max_seq_length=document_length - 1,
            )
            _check_tensors(transformer.model, base_dir / _WEIGHTS, "encoder", drop_heads=True)
        if transformer.model.get_input_embeddings().num_embeddings < len(transformer.tokenizer):
            transformer.model.resize_token_embeddings(len(transformer.tokenizer))
        generator = torch.Generator().manual_seed(seed)
        dense = Dense(
            in_features=transformer.get_embedding_dimension(),
            out_features=token_dim,
            bias=False,
            activation_function=nn.Identity(),
            module_input_name="token_embeddings",
        )
        bound = 1 / np.sqrt(dense.linear.in_features)  # nn.Linear's default range, seeded
        with torch.no_grad():
            dense.linear.weight.uniform_(-bound, bound, generator=generator)
        encoder = MultiVectorEncoder(
            modules=[
                transformer,
                dense,
                MultiVectorMask(skiplist_words=DEFAULT_SKIPLIST if skiplist_words is None else skiplist_words),
                Normalize(module_input_name="token_embeddings"),
            ],
            device="cpu",
            prompts={"query": QUERY_PREFIX, "document": DOCUMENT_PREFIX},
            similarity_fn_name="maxsim",
        )
        return cls(encoder)

    # ------------------------------------------------------------------ properties

    @property
    def transformer(self) -> Transformer:
        return self.encoder[0]

    @property
    def dense(self) -> Dense:
        return next(m for m in self.encoder if isinstance(m, Dense))

    @property
    def token_dim(self) -> int:
        return self.dense.linear.out_features

    @property
    def query_length(self) -> int:
        expansion = self.transformer.query_expansion
        return expansion["length"] if expansion else self.transformer.query_length

    @property
    def document_length(self) -> int:
        return self.transformer.document_length

    @document_length.setter
    def document_length(self, n: int) -> None:
        """Cut documents to ``n`` tokens; the tokenizer's limit is ``n - 1``, as PyLate writes it."""
        self.transformer.document_length, self.transformer.max_seq_length = int(n), int(n) - 1
        self._tokenisers.pop("document", None)

    @property
    def mask_expansion(self) -> bool:
        return self.transformer.query_expansion is not None

    @property
    def skiplist_words(self) -> list[str]:
        return next(m for m in self.encoder if isinstance(m, MultiVectorMask)).skiplist_words

    @property
    def prefixes(self) -> dict[str, str]:
        return {"query": self.encoder.prompts.get("query") or "", "document": self.encoder.prompts.get("document") or ""}

    # ------------------------------------------------------------------ inference

    def encode_queries(self, texts: list[str], batch_size: int = 32) -> list[np.ndarray]:
        """Per query: (n_tokens_i, token_dim) float32, unit rows (n_tokens_i = query_length with expansion)."""
        return self._encode(texts, "query", batch_size)

    def encode_documents(self, texts: list[str], batch_size: int = 32) -> list[np.ndarray]:
        """Per document: (n_tokens_i, token_dim) float32, unit rows, skiplist tokens removed."""
        return self._encode(texts, "document", batch_size)

    def _encode(self, texts: list[str], task: str, batch_size: int) -> list[np.ndarray]:
        """What ``encode_query`` / ``encode_document`` return, computed the harness's way: the same
        length-sorted batches, tokenised without character offsets (and documents clipped where
        that is exact, :func:`harness.models.dense.clipped_features`), every batch tokenised up
        front and, for narrow encoders like pico, the batches run data-parallel (one worker per
        CPU); the token vectors come from the torch modules or the ONNX graph (``set_backend``)."""
        from harness.models import ort
        from harness.models.dense import clipped_features, splits_words_at_spaces
        from harness.models.runtime import configure_threads, run_batches_data_parallel

        texts = list(texts)
        if not texts:
            return []
        configure_threads()
        self.encoder.eval()
        order = np.argsort([-self.encoder._input_length(t) for t in texts])  # sentence-transformers' batches
        tokenise = self._tokeniser(task).features
        limit = self.query_length if task == "query" else self.document_length
        clip = task == "document" and splits_words_at_spaces(self.transformer.tokenizer)
        batches = [clipped_features(tokenise, [texts[i] for i in order[start : start + batch_size]], limit, clip)
                   for start in range(0, len(texts), batch_size)]

        def forward(features: dict) -> list[np.ndarray]:
            with torch.inference_mode():
                if self._session is None:
                    if self.device != "cpu":
                        features = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
                    features = self.encoder(features, task=task)
                else:
                    features["token_embeddings"] = torch.from_numpy(self._session.run(features))
                    features = self._mask(features, task=task)
                masks = features["attention_mask"].bool()
                return [t[m].cpu().numpy() for t, m in zip(features["token_embeddings"].float(), masks)]

        narrow = self.transformer.get_embedding_dimension() < TOKEN_SORT_MIN_HIDDEN
        if self._session is not None:
            outputs = ort.run_data_parallel(forward, batches, ort.threads() if narrow else 1)
        elif narrow:
            outputs = run_batches_data_parallel(forward, batches)
        else:
            outputs = [forward(b) for b in batches]
        flat = [np.ascontiguousarray(a, dtype=np.float32) for batch in outputs for a in batch]
        return [flat[j] for j in np.argsort(order)]

    def _tokeniser(self, task: str):
        """The offset-free tokeniser of ``task`` (checked once against ``preprocess``, as for dense
        models), with the prefix, and for queries the fixed-length [MASK] expansion."""
        from harness.models.dense import OffsetFreeTokeniser

        if task not in self._tokenisers:
            expansion = self.transformer.query_expansion if task == "query" else None
            finish = None
            if expansion is not None:
                mask_id = self.transformer.tokenizer.convert_tokens_to_ids(expansion["token"]) if expansion["token"] \
                    else self.transformer.tokenizer.mask_token_id

                def finish(features: dict) -> dict:  # Transformer.preprocess's fixed expansion
                    positions = features["attention_mask"] == 0
                    features["input_ids"] = features["input_ids"].masked_fill(positions, mask_id)
                    features["query_expansion_positions"] = positions
                    if expansion["attend"]:
                        features["attention_mask"] = features["attention_mask"].masked_fill(positions, 1)
                    return features
            prefix = self.prefixes[task]
            self._tokenisers[task] = OffsetFreeTokeniser(
                self.transformer, self.query_length if task == "query" else self.document_length, prefix=prefix,
                pad_to=self.query_length if expansion is not None else None, finish=finish,
                preprocess=lambda texts: self.encoder.preprocess(texts, prompt=prefix, task=task),
                constants=("prompt_length",),
            )
        return self._tokenisers[task]

    @property
    def _mask(self) -> MultiVectorMask:
        return next(m for m in self.encoder if isinstance(m, MultiVectorMask))

    def set_backend(self, backend: str, graph_dir: Path | None = None) -> None:
        """Run inference with ``backend``: "torch" (the modules), "onnx" or "openvino": Transformer,
        Dense and Normalize exported once into ``graph_dir`` (a temporary folder if None) and run by
        onnxruntime or OpenVINO; the scoring mask (``MultiVectorMask``) stays in the harness."""
        import tempfile

        from harness.models import ort

        ort.require(backend)
        self._session = None
        if backend == "torch":
            return
        if graph_dir is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="harness-onnx-")
            graph_dir = Path(self._scratch.name)
        self.encoder.eval()
        example = {k: v for k, v in self._tokeniser("document").features(["a short text", "a longer second text"]).items()
                   if k in ("input_ids", "token_type_ids", "attention_mask")}
        modules = [m for m in self.encoder if not isinstance(m, MultiVectorMask)]

        class TokenVectors(nn.Module):
            def __init__(self):
                super().__init__()
                self.modules_ = nn.ModuleList(modules)

            def forward(self, *tensors):
                features = {**dict(zip(example, tensors)), "modality": "text"}
                for module in self.modules_:
                    features = module(features)
                return features["token_embeddings"]

        p = self.provenance()
        identity = {"kind": "colbert", **{k: p[k] for k in ("weights_sha256", "dense_weights_sha256", "token_dim")},
                    "modules": [type(m).__name__ for m in modules], "inputs": list(example), "output": "token_embeddings"}
        if p["weights_sha256"] is None:
            raise HarnessError(f"backend '{backend}' needs a ColBERT model loaded from or saved to a folder (its weights hash)")
        graph = ort.cached_graph(graph_dir, identity, TokenVectors(), example, "token_embeddings", self.transformer.model)
        narrow = self.transformer.get_embedding_dimension() < TOKEN_SORT_MIN_HIDDEN
        self._session = ort.session(backend, graph, 1 if narrow else ort.threads())

    # ------------------------------------------------------------------ training

    def to_device(self, device: str) -> None:
        """Run the torch modules on ``device`` ("cpu" or "cuda"); token vectors still come back as
        float32 numpy arrays."""
        if device != "cpu" and self._session is not None:
            raise HarnessError(f"--backend {self._session.identity()['backend']} runs on the CPU only; drop --device {device}")
        self.device = device
        self.encoder.to(device)

    def forward_queries(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable: (tokens (B, L, token_dim), mask (B, L) bool); same vectors as ``encode_queries``."""
        return self._forward(texts, "query")

    def forward_documents(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable: (tokens (B, L, token_dim), mask (B, L) bool); same vectors as ``encode_documents``."""
        return self._forward(texts, "document")

    def _forward(self, texts: list[str], task: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Runs in the encoder's current train/eval mode (``encode_*`` leaves it in eval mode)."""
        features = self.encoder.preprocess(list(texts), prompt=self.prefixes[task], task=task)
        features = self.encoder(features, task=task)
        mask = features["attention_mask"].bool()
        return features["token_embeddings"] * mask.unsqueeze(-1), mask

    def parameters(self):
        """All trainable parameters (encoder and projection)."""
        return self.encoder.parameters()

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike) -> Path:
        """Write the PyLate v3 layout (module docstring) to ``path``; later provenance hashes these files."""
        out = Path(path)
        (out / _DENSE_DIR).mkdir(parents=True, exist_ok=True)
        self.transformer.model.save_pretrained(out)
        self.transformer.tokenizer.save_pretrained(out)
        weight = self.dense.linear.weight.detach().contiguous().cpu()
        save_file({"linear.weight": weight}, str(out / _DENSE_DIR / _WEIGHTS), metadata={"format": "pt"})
        dense_config = {
            "in_features": weight.shape[1],
            "out_features": weight.shape[0],
            "bias": False,
            "activation_function": "torch.nn.modules.linear.Identity",
        }
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": _DENSE_DIR, "type": "pylate.models.Dense.Dense"},
        ]
        expansion = self.transformer.query_expansion
        st_config = {
            "model_type": "ColBERT",
            "prompts": {"query": "", "document": ""},
            "default_prompt_name": None,
            "similarity_fn_name": "MaxSim",
            "query_prefix": self.prefixes["query"],
            "document_prefix": self.prefixes["document"],
            "query_length": self.query_length,
            "document_length": self.document_length,
            "attend_to_expansion_tokens": bool(expansion and expansion["attend"]),
            "skiplist_words": self.skiplist_words,
            "do_query_expansion": self.mask_expansion,
        }
        for name, content in (
            (f"{_DENSE_DIR}/config.json", dense_config),
            ("modules.json", modules),
            ("config_sentence_transformers.json", st_config),
            ("sentence_bert_config.json", {"max_seq_length": self.document_length - 1, "do_lower_case": False}),
        ):
            (out / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        self.path = out
        return out

    def provenance(self) -> dict:
        """What identifies this model's outputs (hashes are None until loaded from / saved to disk)."""
        return {
            "path": str(self.path) if self.path else None,
            "weights_sha256": file_sha256(self.path and self.path / _WEIGHTS),
            "dense_weights_sha256": file_sha256(self.path and self.path / _DENSE_DIR / _WEIGHTS),
            "parameters": int(sum(p.numel() for p in self.encoder.parameters())),
            "base_model_type": self.transformer.model.config.model_type,
            "token_dim": self.token_dim,
            "query_length": self.query_length,
            "document_length": self.document_length,
            "query_prefix": self.prefixes["query"],
            "document_prefix": self.prefixes["document"],
            "mask_expansion": self.mask_expansion,
            "attend_to_expansion_tokens": bool(self.mask_expansion and self.transformer.query_expansion["attend"]),
            "skiplist_words": list(self.skiplist_words),
            "normalized": True,
            **(self._session.identity() if self._session is not None else {}),
        }
