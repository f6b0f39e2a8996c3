"""MUVERA fixed-dimensional encodings (FDE) of multi-vector (ColBERT) token sets.

Units and shapes: input is one float32 matrix per text, (n_tokens_i, token_dim); output is
(n_texts, dims) float32 with ``dims = repetitions * 2**hashes * projection`` (``projection`` =
``token_dim`` when None/0), e.g. 20 * 32 * 16 = 10,240 by default, or ``final_projection`` when
that is set. Inner products of a query FDE and a document FDE approximate the Chamfer (maxsim)
similarity sum_i max_j <q_i, d_j> of the token sets.

Per repetition r (seed ``seed + r``):

* SimHash: ``hashes`` Gaussian hyperplanes (d x hashes, ``numpy.random.default_rng(seed + r)
  .normal``) give each token a bit vector; the partition index is folded from the bits exactly as
  txtai does (``index = (index << 1) + (bit ^ (index & 1))``, a Gray-code style ordering);
* inner projection (when ``projection`` is set): an AMS sketch, a (d x projection) matrix with
  one random +-1 per input dimension, drawn from a fresh ``default_rng(seed + r)`` as txtai does;
* queries: per partition, the SUM of the projected token vectors; documents: the MEAN (empty
  partitions are zero).

``mode="txtai"`` reproduces ``txtai.models.Muvera()(data, "query" | "data")`` (tested to 1e-5).
``mode="paper"`` follows the MUVERA paper (arXiv 2405.19504, section 2) where txtai departs from it:
the AMS sketch is scaled by 1/sqrt(projection) (rank-neutral); with ``fill_empty`` an empty
document partition takes the projected vector of the document's token whose SimHash bits are
nearest in Hamming distance to the partition's bit code (ties: the earliest token); with
``final_projection`` the concatenated FDE is multiplied by a dense random +-1 matrix
(``default_rng(seed + repetitions)``) scaled by 1/sqrt(final_projection). Queries are never filled.

Why our own code instead of ``txtai.models.Muvera``: txtai's class exposes neither the SimHash
bits nor per-partition counts (needed for the paper's empty-partition filling), has no final
projection, and aggregates with a Python loop per projected dimension and repetition over the
whole input at once; this module keeps txtai's random streams and index folding (so
``mode="txtai"`` matches it) and, per block of about 16K tokens, runs one GEMM for every
repetition's hyperplanes, one for every repetition's sketch and one ``index_add_`` scatter.
Measured: 25,000 documents x 150-250 tokens x 80 dims -> (25,000, 10,240) in about 29 s (txtai
mode) / 44 s (paper mode with fill_empty) with one torch thread on a shared 2-core machine at load
average ~10; an unloaded machine is several times faster. (torch's 2-thread OpenMP pool was 2-3x
slower than 1 thread at that load.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from harness.errors import HarnessError

MODES = ("txtai", "paper")
_CHUNK_TOKENS = 1 << 14  # tokens per encoding block (bounds temporaries to tens of MB)


@dataclass(frozen=True)
class FDEConfig:
    """FDE parameters; ``dims(token_dim)`` is the output width. See the module docstring."""

    repetitions: int = 20
    hashes: int = 5
    projection: int | None = 16
    seed: int = 42
    mode: str = "txtai"
    fill_empty: bool = False
    final_projection: int | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise HarnessError(f"FDE mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "txtai" and (self.fill_empty or self.final_projection):
            raise HarnessError("FDE fill_empty and final_projection need mode='paper' (txtai has neither)")
        if self.repetitions < 1 or not 1 <= self.hashes <= 16:
            raise HarnessError(f"FDE needs repetitions >= 1 and 1 <= hashes <= 16, got {self.repetitions}, {self.hashes}")
        for name in ("projection", "final_projection"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise HarnessError(f"FDE {name} must be positive or None, got {value}")

    def block_dims(self, token_dim: int) -> int:
        """Width of one partition's block: ``projection``, or ``token_dim`` without projection."""
        return self.projection or token_dim

    def dims(self, token_dim: int) -> int:
        """Output width for tokens of ``token_dim`` dimensions."""
        if self.final_projection:
            return self.final_projection
        return self.repetitions * 2**self.hashes * self.block_dims(token_dim)

    def to_dict(self) -> dict:
        """All fields, for provenance and cache keys."""
        return asdict(self)


def partition_table(hashes: int) -> np.ndarray:
    """``table[code]`` = txtai's partition index for SimHash bits ``code`` (an int, first hyperplane
    most significant): ``index = (index << 1) + (bit ^ (index & 1))`` folded over the bits. A bijection."""
    bits = (np.arange(2**hashes)[:, None] >> np.arange(hashes - 1, -1, -1)) & 1
    index = np.zeros(2**hashes, dtype=np.int64)
    for x in range(hashes):
        index = (index << 1) + (bits[:, x] ^ (index & 1))
    return index


class FDE:
    """Fixed-dimensional encoder for one ``FDEConfig`` and token width (random matrices built once)."""

    def __init__(self, config: FDEConfig, token_dim: int):
        self.config = config
        self.token_dim = token_dim
        self.partitions = 2**config.hashes
        self.block = config.block_dims(token_dim)
        self.dims = config.dims(token_dim)
        reps, hashes = config.repetitions, config.hashes
        # All repetitions side by side, so one GEMM per token chunk serves every repetition:
        # hyperplanes (token_dim, reps * hashes), sketches (token_dim, reps * projection).
        hyperplanes, sketches = [], []
        for r in range(reps):
            hyperplanes.append(np.random.default_rng(config.seed + r).normal(0.0, 1.0, size=(token_dim, hashes)))
            if config.projection:
                rng = np.random.default_rng(config.seed + r)
                sketch = np.zeros((token_dim, config.projection), dtype=np.float32)
                columns = rng.integers(0, config.projection, size=token_dim)
                sketch[np.arange(token_dim), columns] = rng.choice([-1.0, 1.0], size=token_dim)
                sketches.append(sketch)
        self._hyperplanes = torch.from_numpy(np.concatenate(hyperplanes, axis=1).astype(np.float32))
        self._sketch = None
        if config.projection:
            scale = 1 / math.sqrt(config.projection) if config.mode == "paper" else 1.0
            self._sketch = torch.from_numpy(np.concatenate(sketches, axis=1) * np.float32(scale))
        self._final = None
        if config.final_projection:
            rng = np.random.default_rng(config.seed + reps)
            full = reps * self.partitions * self.block
            signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(full, config.final_projection))
            self._final = torch.from_numpy(signs / np.float32(math.sqrt(config.final_projection)))
        self._partition_of_code = partition_table(hashes)
        self._code_of_partition = np.argsort(self._partition_of_code)
        self._popcount = np.array([bin(v).count("1") for v in range(2**hashes)], dtype=np.int64)

    def encode_queries(self, tokens: list[np.ndarray]) -> np.ndarray:
        """Query FDEs (per-partition sums): (len(tokens), dims) float32."""
        return self._encode(tokens, documents=False)

    def encode_documents(self, tokens: list[np.ndarray]) -> np.ndarray:
        """Document FDEs (per-partition means, optionally filled): (len(tokens), dims) float32."""
        return self._encode(tokens, documents=True)

    @torch.no_grad()
    def _encode(self, tokens: list[np.ndarray], documents: bool) -> np.ndarray:
        for i, t in enumerate(tokens):
            if t.ndim != 2 or t.shape[1] != self.token_dim:
                raise HarnessError(f"FDE input {i}: expected shape (n_tokens, {self.token_dim}), got {t.shape}")
        lengths = np.array([len(t) for t in tokens], dtype=np.int64)
        out = np.zeros((len(tokens), self.dims), dtype=np.float32)
        # Document blocks of about _CHUNK_TOKENS tokens bound the temporaries (a longer document is a block alone).
        ends = np.cumsum(lengths)
        start = 0
        while start < len(tokens):
            stop = max(start + 1, int(np.searchsorted(ends, (ends[start - 1] if start else 0) + _CHUNK_TOKENS, "right")))
            points = torch.from_numpy(np.concatenate(tokens[start:stop]).astype(np.float32, copy=False))
            out[start:stop] = self.encode_points(points, lengths[start:stop], documents).numpy()
            start = stop
        return out

    def encode_points(self, points: torch.Tensor, lengths: np.ndarray, documents: bool) -> torch.Tensor:
        """(n, dims) FDEs of n texts whose tokens are stacked in ``points`` (sum(lengths), token_dim);
        every repetition in one scatter. Differentiable with respect to ``points`` (the SimHash
        partition of each token is not), which is how training can score candidates by FDE."""
        n, reps, parts, block = len(lengths), self.config.repetitions, self.partitions, self.block
        owner = np.repeat(np.arange(n), lengths)
        # SimHash bits as an int per (token, repetition), first hyperplane most significant.
        above = (points.detach() @ self._hyperplanes).numpy().reshape(len(points), reps, -1) > 0
        codes = np.zeros((len(points), reps), dtype=np.int64)
        for x in range(self.config.hashes):
            codes = (codes << 1) | above[:, :, x]
        index = self._partition_of_code[codes]  # (tokens, reps)
        if self._sketch is not None:
            projected = (points @ self._sketch).reshape(-1, block)  # rows: token-major, then repetition
        else:
            projected = points[:, None, :].expand(-1, reps, -1).reshape(-1, block)
        # Row (doc * reps + r) * parts + partition of a (n * reps * parts, block) view of the FDEs.
        flat = torch.from_numpy(((owner[:, None] * reps + np.arange(reps)) * parts + index).reshape(-1))
        sums = torch.zeros((n * reps * parts, block), dtype=torch.float32).index_add(0, flat, projected)
        counts = torch.bincount(flat, minlength=n * reps * parts)
        if documents:
            sums = sums / counts.clamp(min=1)[:, None].to(torch.float32)
            if self.config.fill_empty:
                self._fill_empty(sums, counts.numpy(), codes, owner, lengths, projected)
        fde = sums.reshape(n, reps * parts * block)
        return fde @ self._final if self._final is not None else fde

    def _fill_empty(self, sums, counts, codes, owner, lengths, projected) -> None:
        """In place: each empty (document, repetition, partition) row of ``sums`` takes the projected
        vector of the document's Hamming-nearest token in that repetition (earliest on ties).
        Documents without tokens stay zero."""
        reps, parts = self.config.repetitions, self.partitions
        empty = (counts == 0).reshape(-1, reps, parts) & (lengths > 0)[:, None, None]
        token, rep = np.nonzero(empty.any(axis=2)[owner])  # (token, repetition) pairs to examine
        if not len(token):
            return
        distance = self._popcount[codes[token, rep][:, None] ^ self._code_of_partition[None, :]]  # (pairs, parts)
        big = len(owner) + 1
        key = torch.from_numpy((distance * big + token[:, None]).reshape(-1))  # min = nearest, then earliest
        target = torch.from_numpy((((owner[token] * reps + rep)[:, None]) * parts + np.arange(parts)).reshape(-1))
        best = torch.full((len(counts),), np.iinfo(np.int64).max, dtype=torch.int64)
        best.scatter_reduce_(0, target, key, reduce="amin")
        rows = np.flatnonzero(empty)
        sums[rows] = projected[(best.numpy()[rows] % big) * reps + rows // parts % reps]
