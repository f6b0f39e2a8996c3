"""On-disk cache of encoded vectors, so that nothing unchanged is encoded twice.

An entry is keyed by the sha256 of a canonical JSON of everything that changes the vectors (weights
sha256, dataset content sha256, text format, max length, pooling, FDE parameters, dtype, ...): a
changed key misses, it never serves stale vectors. Values are float32 arrays, either one matrix
(n, dim) or a ragged list of token matrices [(n_i, dim)], stored as ``.npz`` (``data`` + ``offsets``).

Encoding is cached in blocks (:func:`encode_in_blocks`), so a run killed mid-encoding resumes from
its last finished block. Every file is written to a unique temporary name and renamed into place
(atomic on POSIX), so a killed run or two concurrent runs never leave a half-written entry.

Location: ``--cache-dir`` or ``$HARNESS_CACHE_DIR``, default ``~/.cache/harness``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from harness.fileio import atomic_write_bytes

Vectors = np.ndarray | list[np.ndarray]


_ENTRY_FOLDER = re.compile("[0-9a-f]{2}")


def default_cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE_DIR") or Path.home() / ".cache" / "harness")


def cache_key(parts: dict) -> str:
    """sha256 of the canonical JSON of ``parts``."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def texts_sha256(texts: Sequence[str]) -> str:
    """sha256 of a list of texts (order matters): the identity of what a query-side entry encoded."""
    return cache_key({"texts": list(texts)})


def as_float32(value: Vectors) -> Vectors:
    """The dtype every cache entry has, so a miss returns what a later hit will."""
    if isinstance(value, list):
        return [np.asarray(v, dtype=np.float32) for v in value]
    return np.asarray(value, dtype=np.float32)


class VectorCache:
    """Get-or-compute store of float32 vectors; ``enabled=False`` computes every time."""

    def __init__(self, root: Path | None = None, enabled: bool = True):
        self.root = Path(root) if root else default_cache_dir()
        self.enabled = enabled

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def has(self, key: str) -> bool:
        """Whether an entry for ``key`` is stored (False with the cache off)."""
        return self.enabled and self._path(key).is_file()

    def load(self, key: str) -> Vectors | None:
        path = self._path(key)
        if not self.enabled or not path.is_file():
            return None
        try:
            with np.load(path) as stored:
                data, offsets = stored["data"], stored["offsets"]
                ragged = bool(stored["ragged"])
        except Exception:  # unreadable entry (e.g. disk full when it was written): recompute it
            return None
        if not ragged:
            return data
        return [data[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]

    def save(self, key: str, value: Vectors) -> None:
        if not self.enabled:
            return
        ragged = isinstance(value, list)
        if ragged:
            offsets = np.cumsum([0] + [len(v) for v in value], dtype=np.int64)
            data = np.concatenate(value) if value else np.zeros((0, 0), np.float32)
        else:
            offsets, data = np.zeros(0, np.int64), value
        buffer = io.BytesIO()
        np.savez(buffer, data=np.asarray(data, dtype=np.float32), offsets=offsets, ragged=np.array(ragged))
        atomic_write_bytes(self._path(key), buffer.getvalue())

    def get_or_compute(self, parts: dict, compute: Callable[[], Vectors]) -> tuple[Vectors, bool]:
        """(value, hit): the cached value for ``parts``, else ``compute()`` stored under it."""
        key = cache_key(parts)
        value = self.load(key)
        if value is not None:
            return value, True
        value = as_float32(compute())
        self.save(key, value)
        return value, False

    def discard(self, parts: dict) -> None:
        self._path(cache_key(parts)).unlink(missing_ok=True)

    def _entry_folders(self) -> list[Path]:
        """The folders entries live in (``<root>/<two hex digits>/``, exported ONNX graphs in
        ``<root>/onnx/``, decompressed ``--stream-corpus`` corpora in ``<root>/corpora/``): the root
        itself may hold other things, e.g. downloaded datasets in ``~/.cache/harness/datasets``."""
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir()
                if p.is_dir() and (_ENTRY_FOLDER.fullmatch(p.name) or p.name in ("onnx", "corpora"))]

    def graph_dir(self) -> Path | None:
        """Where exported ONNX graphs are kept (``root``, beside the vectors); None with the cache off."""
        return self.root if self.enabled else None

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for folder in self._entry_folders() for p in folder.rglob("*")
                   if p.suffix in (".npz", ".npy", ".onnx", ".jsonl"))

    def clear(self) -> int:
        """Delete every entry (and nothing else under the root); returns the bytes freed."""
        size = self.size_bytes()
        for folder in self._entry_folders():
            shutil.rmtree(folder)
        return size


def whole_key_parts(parts: dict, n_texts: int) -> dict:
    """Cache key parts of the whole encoded corpus of ``n_texts`` texts (see :func:`encode_in_blocks`)."""
    return {**parts, "n": n_texts}


def block_key_parts(whole_parts: dict, block: int, block_size: int) -> dict:
    """Cache key parts of block number ``block`` of the corpus keyed by ``whole_parts``."""
    return {**whole_parts, "block": block, "block_size": block_size}


def block_order(lengths: Sequence[int]) -> np.ndarray:
    """(n,) int64 text indices, longest first (ties: lower index first): block ``b`` encodes
    ``order[b * block_size : (b + 1) * block_size]``. ``lengths`` are the texts' lengths in characters."""
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    return np.lexsort((np.arange(len(lengths)), -lengths))


def encode_in_blocks(
    texts: Sequence[str],
    encode: Callable[[list[str]], Vectors],
    cache: VectorCache,
    parts: dict,
    block_size: int = 1024,
    desc: str = "encode",
) -> tuple[Vectors, dict]:
    """Encode ``texts`` longest first in blocks of ``block_size``, each block cached until done.

    Sorting by length keeps the padding in each batch small (and the order is a function of the
    texts, so the blocks are stable across runs). Returns the vectors in input order and
    ``{"blocks": n, "blocks_cached": m}``. The whole result is cached as one entry; the block
    entries are then removed.
    """
    whole_parts = whole_key_parts(parts, len(texts))
    n_blocks = (len(texts) + block_size - 1) // block_size
    whole = cache.load(cache_key(whole_parts))
    if whole is not None:
        return whole, {"blocks": n_blocks, "blocks_cached": n_blocks}
    order = block_order([len(t) for t in texts])
    pieces, cached = [], 0
    with tqdm(total=len(texts), desc=desc, unit="text", leave=False) as bar:
        for b in range(n_blocks):
            block = [texts[i] for i in order[b * block_size : (b + 1) * block_size]]
            block_parts = block_key_parts(whole_parts, b, block_size)
            value, hit = cache.get_or_compute(block_parts, lambda: encode(block))
            cached += hit
            pieces.append(value)
            bar.update(len(block))
    inverse = np.empty(len(texts), dtype=np.int64)
    inverse[order] = np.arange(len(texts))
    if pieces and isinstance(pieces[0], list):
        flat = [v for piece in pieces for v in piece]
        result: Vectors = [flat[j] for j in inverse]
    else:
        result = np.concatenate(pieces)[inverse] if pieces else np.zeros((0, 0), np.float32)
    cache.save(cache_key(whole_parts), result)
    for b in range(n_blocks):
        cache.discard(block_key_parts(whole_parts, b, block_size))
    return result, {"blocks": n_blocks, "blocks_cached": cached}
