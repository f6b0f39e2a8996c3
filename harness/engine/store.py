"""Corpora larger than memory: the corpus read as a stream, vectors written to memory-mapped files.

:class:`CorpusFile` scans a BEIR ``corpus.jsonl`` once, line by line, keeping per document only its
byte offset and its text length (16 bytes a document); any document's text is then read back by
seeking to its line. :func:`encode_corpus` encodes such a corpus through the cache blocks of
:func:`harness.cache.encode_in_blocks` (same order, same keys, so local and Ray runs share them and
a killed run resumes), one block in memory at a time, and writes the vectors in corpus order to a
``.npy`` file in the cache (``<key>.npy`` beside the ``.npz`` entries), returned as a read-only memory
map. Searching it with :func:`harness.retrieval.sharded.search_chunked` (local) or the Ray engine's
shard tasks reads it chunk by chunk; FDEs written this way are searched the same way.

So the memory of encoding is flat in the corpus size apart from the offsets, lengths and block
order (24 bytes a document) and the vectors being searched (benchmarks/README.md measures it).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from harness.cache import VectorCache, as_float32, block_key_parts, block_order, cache_key, whole_key_parts
from harness.data import TITLE_SEPARATOR
from harness.engine.ray_engine import BLOCK_SIZE, TextSource
from harness.errors import HarnessError


def document_text(record: dict) -> str:
    """``title + separator + text``, stripped, as :meth:`harness.data.Dataset.doc_texts` builds it."""
    title, text = record.get("title") or "", record.get("text") or ""
    return (title + TITLE_SEPARATOR + text).strip() if title else text.strip()


class CorpusFile(TextSource):
    """A ``corpus.jsonl`` read by position. ``offsets`` (n,) int64 byte offsets of the documents'
    lines, ``lengths`` (n,) int64 characters of their texts, ``sha256`` of the file's bytes.
    Picklable (the open file is not part of its state), so Ray actors read it themselves."""

    def __init__(self, path: Path, offsets: np.ndarray, lengths: np.ndarray, sha256: str):
        self.path = Path(path)
        self.offsets = offsets
        self.lengths = lengths
        self.sha256 = sha256
        self._file = None

    def __len__(self) -> int:
        return len(self.offsets)

    def __getstate__(self):
        return {**self.__dict__, "_file": None}

    @classmethod
    def scan(cls, path: Path, scratch: Path | None = None, sha256: str | None = None) -> CorpusFile:
        """Index ``path`` in one streamed pass. A ``.gz`` file is first decompressed, streamed, into
        ``scratch`` (a folder; default the system temporary folder), since gzip cannot seek. Given the
        uncompressed content's ``sha256``, the copy is named by it and reused by later scans."""
        path = Path(path)
        if path.suffix == ".gz":
            folder = Path(scratch or tempfile.gettempdir())
            folder.mkdir(parents=True, exist_ok=True)
            plain = folder / (f"corpus-{sha256[:24]}.jsonl" if sha256 else path.stem + f".{os.getpid()}.plain")
            if not (sha256 and plain.is_file()):
                partial = plain.with_name(f".{plain.name}.{os.getpid()}.tmp")
                try:
                    with gzip.open(path, "rb") as source, open(partial, "wb") as target:
                        shutil.copyfileobj(source, target, 1 << 20)
                    os.replace(partial, plain)
                finally:
                    partial.unlink(missing_ok=True)
            path = plain
        offsets, lengths = [], []
        digest = hashlib.sha256()
        position = 0
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                digest.update(line)
                if line.strip():
                    try:
                        record = json.loads(line)
                    except ValueError as exc:
                        raise HarnessError(f"{path}:{number}: malformed JSON ({exc})") from None
                    offsets.append(position)
                    lengths.append(len(document_text(record)))
                position += len(line)
        return cls(path, np.asarray(offsets, dtype=np.int64), np.asarray(lengths, dtype=np.int64), digest.hexdigest())

    def texts(self, indices) -> list[str]:
        """The texts of documents ``indices`` (corpus positions), in that order."""
        if self._file is None:
            self._file = open(self.path, "rb")
        out = []
        for i in indices:
            self._file.seek(int(self.offsets[i]))
            out.append(document_text(json.loads(self._file.readline())))
        return out


def _npy_path(cache: VectorCache, key: str) -> Path:
    return cache.root / key[:2] / f"{key}.npy"


def encode_corpus(corpus: CorpusFile, encode, cache: VectorCache, parts: dict, engine=None,
                  block_size: int = BLOCK_SIZE) -> tuple[np.memmap, dict]:
    """Dense vectors of every document of ``corpus``, (n, dim) float32 in corpus order, as a read-only
    memory map of a ``.npy`` file in the cache, and ``{"blocks", "blocks_cached"}``.

    Missing blocks are encoded by ``engine`` when it is a Ray engine (actors read their texts from
    ``corpus``), else here, one block at a time. Needs the cache enabled (the vectors live there)."""
    if not cache.enabled:
        raise HarnessError("encoding a corpus to disk needs the vector cache (drop --no-cache)")
    n = len(corpus)
    whole = whole_key_parts(parts, n)
    path = _npy_path(cache, cache_key(whole))
    n_blocks = (n + block_size - 1) // block_size
    if path.is_file():
        return np.load(path, mmap_mode="r"), {"blocks": n_blocks, "blocks_cached": n_blocks}
    cached = None
    if engine is not None and getattr(engine, "name", "local") == "ray":
        info = engine.encode_blocks(n, corpus.lengths, encode, cache, parts, source=corpus, block_size=block_size)
        cached = info["blocks_cached"]
    order = block_order(corpus.lengths)
    hits = 0
    dim = None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    handle = None
    try:
        for b in range(n_blocks):
            rows = order[b * block_size : (b + 1) * block_size]
            key = cache_key(block_key_parts(whole, b, block_size))
            value = cache.load(key)
            if value is None:
                value = as_float32(encode(corpus.texts(rows)))
                cache.save(key, value)
            else:
                hits += 1
            if isinstance(value, list):
                raise HarnessError("encode_corpus stores one vector per document (dense or FDE), not token matrices")
            if handle is None:
                dim = value.shape[1]
                handle = open(tmp, "wb")
                header = np.lib.format.header_data_from_array_1_0(np.zeros((0, dim), np.float32))
                header["shape"] = (n, dim)
                np.lib.format.write_array_header_1_0(handle, header)
                start = handle.tell()
                handle.truncate(start + 4 * n * dim)
            row_bytes = 4 * dim
            for row, vector in zip(rows.tolist(), value):  # rows land in corpus order
                os.pwrite(handle.fileno(), vector.tobytes(), start + row * row_bytes)
        if handle is None:
            raise HarnessError("the corpus has no documents")
        handle.close()
        handle = None
        os.replace(tmp, path)
    finally:
        if handle is not None:
            handle.close()
        tmp.unlink(missing_ok=True)
    for b in range(n_blocks):
        cache.discard(block_key_parts(whole, b, block_size))
    return np.load(path, mmap_mode="r"), {"blocks": n_blocks, "blocks_cached": hits if cached is None else cached}


class FDEDocuments:
    """Picklable ``encode`` for :func:`encode_corpus` that gives MUVERA FDEs: texts -> ColBERT token
    matrices (``tokens``, e.g. ``functools.partial(colbert.encode_documents, batch_size=32)``) ->
    (n, fde.dims) float32 FDEs, L2-normalised when ``normalise`` (txtai mode, cosine). With it the
    FDEs of a corpus go to disk block by block and are searched chunk by chunk, never all in RAM
    (10,240 dims are 40 KB a document)."""

    def __init__(self, tokens, fde, normalise: bool):
        self.tokens = tokens
        self.fde = fde
        self.normalise = normalise

    def __call__(self, texts: list[str]) -> np.ndarray:
        vectors = self.fde.encode_documents(self.tokens(texts))
        if self.normalise:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        return vectors.astype(np.float32)


class TokenStore:
    """Ragged token matrices on disk: ``<stem>.tokens.npy`` (total_tokens, dim) float32 and
    ``<stem>.offsets.npy`` (n + 1,) int64, both memory-mapped. ``store[i]`` is document i's
    (n_tokens_i, dim) matrix, read from disk only when used, so the maxsim reranker
    (:func:`harness.retrieval.maxsim.rerank`) pages in only its candidates' matrices."""

    def __init__(self, stem: Path):
        self.stem = Path(stem)
        self.tokens = np.load(f"{stem}.tokens.npy", mmap_mode="r")
        self.offsets = np.load(f"{stem}.offsets.npy")

    @staticmethod
    def write(stem: Path, matrices) -> TokenStore:
        """Write ``matrices`` (an iterable of (n_i, dim) arrays, e.g. block by block) and open them."""
        stem = Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        offsets, dim = [0], None
        tmp = Path(f"{stem}.tokens.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(b"\0" * 128)  # header placeholder: the shape is known at the end
            for matrix in matrices:
                matrix = np.ascontiguousarray(matrix, dtype=np.float32)
                dim = matrix.shape[1] if dim is None else dim
                handle.write(matrix.tobytes())
                offsets.append(offsets[-1] + len(matrix))
            header = np.lib.format.header_data_from_array_1_0(np.zeros((0, dim or 0), np.float32))
            header["shape"] = (offsets[-1], dim or 0)
            handle.seek(0)
            np.lib.format.write_array_header_1_0(handle, header)
            if handle.tell() != 128:
                raise RuntimeError("npy header is not 128 bytes")
        os.replace(tmp, f"{stem}.tokens.npy")
        np.save(f"{stem}.offsets.npy", np.asarray(offsets, dtype=np.int64))
        return TokenStore(stem)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self):
        return (self[i] for i in range(len(self)))
