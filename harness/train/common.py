"""Shared training plumbing: TOML config + ``--set`` overrides, seeding, atomic checkpoints,
loss curves, tokenisation and the teacher-score candidate pools."""

from __future__ import annotations

import copy
import io
import pickle
import random
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import sparse

from harness.data import default_data_dir
from harness.errors import HarnessError
from harness.fileio import atomic_save_figure, atomic_write_bytes

# ----------------------------------------------------------------------------- config


def _parse_value(raw: str):
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # bare string


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """``key.sub=value`` pairs; values are TOML literals (``3``, ``1e-3``, ``true``, ``[1,2]``) or
    bare strings. Unknown keys are an error (a typo should not silently do nothing)."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or []:
        if "=" not in item:
            raise HarnessError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = cfg
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise HarnessError(f"--set {key}: no section {p!r} in the config")
            node = node[p]
        if parts[-1] not in node:
            raise HarnessError(f"--set {key}: unknown key (known: {', '.join(sorted(node))})")
        node[parts[-1]] = _parse_value(raw.strip())
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> dict:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            cfg = tomllib.load(f)
    except FileNotFoundError:
        raise HarnessError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise HarnessError(f"{path}: {e}") from None
    return apply_overrides(cfg, overrides or [])


# ----------------------------------------------------------------------------- seeding / io


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def step_rng(seed: int, stage: str, step: int) -> np.random.Generator:
    """Batch sampling depends only on (seed, stage, step): a resumed run draws the same batches."""
    return np.random.default_rng([seed, sum(map(ord, stage)) * 7919 + len(stage), step])


def atomic_torch_save(path: Path, obj) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def candidate_batcher(pools: list, kc: dict):
    """A sampler ``rng -> (pool, query indices, document indices)`` for list-wise distillation.

    Each batch comes from one dataset (chosen in proportion to its queries): ``batch_queries``
    queries, a ``real_query_frac`` share of them real train/dev queries, and the sorted union of
    their sampled candidates (teacher top-``hard_from`` + positives + ``random``), scored in-batch.
    """
    weights = np.array([len(p.queries) for p in pools], dtype=float)
    weights /= weights.sum()
    real_idx = [np.array([i for i, k in enumerate(p.kinds) if k == "query"], dtype=np.int64) for p in pools]

    def draw(rng: np.random.Generator):
        p_i = int(rng.choice(len(pools), p=weights))
        pool = pools[p_i]
        n_real = int(round(kc["batch_queries"] * kc["real_query_frac"])) if len(real_idx[p_i]) else 0
        qidx = np.concatenate([rng.choice(real_idx[p_i], size=n_real),
                               rng.integers(len(pool.queries), size=kc["batch_queries"] - n_real)])
        cands = sample_candidates(pool, qidx, kc["candidates"], rng, kc["hard_from"], kc["random"])
        return pool, qidx, sorted({d for c in cands for d in c})

    return draw


REPO = Path(__file__).resolve().parents[2]


def _folder(value: str | None) -> Path:
    """A config folder: "" = the harness's BEIR data folder (``$HARNESS_DATA_DIR``, else
    ``../shared/data/beir`` beside the checkout); a relative path is relative to the checkout, so
    training runs from any working directory."""
    if not value:
        return default_data_dir()
    path = Path(value)
    return path if path.is_absolute() else REPO / path


def data_root(cfg: dict) -> Path:
    """Where ``data.datasets`` / ``data.sources`` are read: ``data.root``."""
    return _folder(cfg["data"].get("root"))


def beir_root(cfg: dict) -> Path:
    """The BEIR folders ``data.exclude_queries_of`` names: ``data.beir_root``."""
    return _folder(cfg["data"].get("beir_root"))


def eval_root(cfg: dict) -> Path:
    """Where the self-check's ``eval.datasets`` are read: ``eval.root``, else ``data.root``."""
    return _folder(cfg["eval"].get("root")) if "root" in cfg["eval"] else data_root(cfg)


# Config values that do not change a run's weights: where it writes, how many threads it uses,
# how often it checkpoints, the self-check, the card and the averaging plan (each member has its own run).
_NOT_SETTINGS = {"run": {"out", "run_dir", "threads"}, "data": {"root", "beir_root"}}
_NOT_SETTINGS_SECTIONS = {"checkpoint", "eval", "card", "average"}


def run_settings(cfg: dict) -> dict[str, object]:
    """``{"section.key": value}`` of every config value that decides the trained weights."""
    return {f"{sec}.{k}": v for sec, body in cfg.items() if isinstance(body, dict) and sec not in _NOT_SETTINGS_SECTIONS
            for k, v in body.items() if k not in _NOT_SETTINGS.get(sec, ())}


class Checkpointer:
    """One checkpoint file per run (``.cache/train/runs/<name>/checkpoint.pt``), written atomically.

    Holds: completed stages, current stage + step, model/optimizer/scheduler state, torch RNG state,
    loss history, accumulated wall time and the run's settings (:func:`run_settings`). Resuming under
    other settings is refused (it would silently mix two recipes, or reuse a finished run of
    another recipe); checkpoints written before settings were recorded resume as before."""

    def __init__(self, run_dir: Path, resume: bool, settings: dict | None = None):
        self.path = Path(run_dir) / "checkpoint.pt"
        self.state: dict = {"done": [], "stage": None, "step": 0, "history": {}, "wall": 0.0, "extra": {}}
        if resume and self.path.exists():
            try:  # tensors and plain Python values only: unpickling arbitrary objects could run code
                self.state = torch.load(self.path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as exc:
                raise HarnessError(f"{self.path}: not a plain checkpoint, refused ({str(exc).splitlines()[0]});"
                                   " delete it, or drop --resume to start over") from None
            _check_same_settings(self.path, self.state.get("settings"), settings)
        elif not resume and self.path.exists():
            self.path.unlink()
        if settings is not None:
            self.state["settings"] = settings

    @property
    def resumed(self) -> bool:
        return bool(self.state.get("model"))

    def save(self, **kw) -> None:
        self.state.update(kw)
        self.state["torch_rng"] = torch.get_rng_state()
        atomic_torch_save(self.path, self.state)


def _check_same_settings(path: Path, saved: dict | None, settings: dict | None) -> None:
    if saved is None or settings is None or saved == settings:
        return
    diffs = [f"{k}: {saved.get(k, '(unset)')!r} in the checkpoint, {settings.get(k, '(unset)')!r} now"
             for k in sorted(set(saved) | set(settings)) if saved.get(k) != settings.get(k)]
    raise HarnessError(f"{path}: cannot resume, the checkpoint was made with other settings ("
                       + "; ".join(diffs[:5]) + (f"; and {len(diffs) - 5} more" if len(diffs) > 5 else "")
                       + "). Resume with the same config and --set overrides, or drop --resume to start over.")


# ----------------------------------------------------------------------------- plots


def plot_losses(history: dict[str, list[tuple[int, float]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [s for s, pts in history.items() if pts]
    if not stages:
        return
    fig, axes = plt.subplots(1, len(stages), figsize=(4.2 * len(stages), 3.2), squeeze=False)
    for ax, s in zip(axes[0], stages):
        pts = np.asarray(history[s], dtype=float)
        ax.plot(pts[:, 0], pts[:, 1], lw=0.6, alpha=0.35, color="C0")
        if len(pts) >= 20:  # moving average
            k = max(5, len(pts) // 50)
            ma = np.convolve(pts[:, 1], np.ones(k) / k, mode="valid")
            ax.plot(pts[k - 1:, 0], ma, lw=1.5, color="C1", label=f"mean of {k}")
            ax.legend(fontsize=7)
        ax.set_title(s, fontsize=9)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_save_figure(path, fig, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- lr schedule


def warmup_linear(optimizer, warmup: int, total: int):
    def f(step):
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, f)


# ----------------------------------------------------------------------------- candidates


@dataclass
class Pool:
    """One dataset's teacher view: normalised 384-d teacher embeddings of docs and training
    queries, optional lexical scores, each query's teacher top-k documents, and its known positives.

    Teacher score of (query i, doc j) = cosine(t_queries[i], t_docs[j]) + lexical_weight *
    lexical[i, j] + label_weight * labels[i, j], where ``lexical`` is BM25 divided by the query's
    best BM25 score over the corpus (so in [0, 1]; None for the plain MiniLM teacher) and
    ``labels`` marks the known positives of training queries (sparse 0/1: judged relevant in
    train/dev, or a pseudo-query's source document; None = not used)."""

    name: str
    docs: list[str]
    queries: list[str]
    t_docs: np.ndarray  # (N, 384)
    t_queries: np.ndarray  # (M, 384)
    topk: np.ndarray  # (M, k) doc indices by descending teacher score
    positives: list[tuple[int, ...]]
    kinds: list[str]
    lexical: np.ndarray | None = None  # (M, N) float32 in [0, 1]
    lexical_weight: float = 0.0
    labels: sparse.csr_matrix | None = None  # (M, N) float32 0/1
    label_weight: float = 0.0

    def teacher_scores(self, qidx, docs) -> np.ndarray:
        """(len(qidx), len(docs)) teacher scores."""
        out = self.t_queries[qidx] @ self.t_docs[docs].T
        if self.lexical is not None and self.lexical_weight:
            out = out + self.lexical_weight * self.lexical[np.ix_(np.asarray(qidx), np.asarray(docs))]
        if self.labels is not None and self.label_weight:
            out = out + self.label_weight * self.labels[np.asarray(qidx)][:, np.asarray(docs)].toarray()
        return out.astype(np.float32)


def relevance_labels(positives: list[tuple[int, ...]], n_docs: int) -> sparse.csr_matrix:
    """(len(positives), n_docs) known relevance of training pairs: 1 where document j is a known
    positive of query i (judged relevant in train/dev, or a pseudo-query's source document)."""
    rows = np.repeat(np.arange(len(positives)), [len(p) for p in positives])
    cols = np.fromiter((d for p in positives for d in p), dtype=np.int64, count=len(rows))
    return sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(positives), n_docs))


def normalised_bm25(queries: list[str], docs: list[str]) -> np.ndarray:
    """(n_queries, n_docs) BM25 scores (the harness's bm25 settings) divided by each query's
    maximum; rows without any matching document stay 0."""
    from harness.retrieval.bm25 import BM25

    scores = BM25(docs).scores(queries)
    scores /= np.maximum(scores.max(1, keepdims=True), 1e-9)
    return scores


def teacher_topk(pool: Pool, k: int, block: int = 2048) -> np.ndarray:
    """(M, k) each training query's top-k documents by teacher score, best first."""
    n_docs = pool.t_docs.shape[0]
    k = min(k, n_docs)
    all_docs = np.arange(n_docs)
    out = np.zeros((pool.t_queries.shape[0], k), dtype=np.int64)
    for s in range(0, pool.t_queries.shape[0], block):
        sc = pool.teacher_scores(np.arange(s, min(s + block, len(out))), all_docs)
        part = np.argpartition(-sc, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sc, part, 1), axis=1)
        out[s:s + block] = np.take_along_axis(part, order, 1)
    return out


def sample_candidates(pool: Pool, qidx: np.ndarray, n_cand: int, rng: np.random.Generator,
                      hard_from: int, n_random: int) -> list[list[int]]:
    """Per query: one known positive (if any), hard candidates drawn from the teacher's top
    ``hard_from`` documents, and ``n_random`` random documents; ``n_cand`` in total."""
    out = []
    N = len(pool.docs)
    for q in qidx:
        cands: list[int] = []
        pos = pool.positives[q]
        if pos:
            cands.append(int(pos[rng.integers(len(pos))]))
        top = pool.topk[q, :hard_from]
        n_hard = max(0, n_cand - n_random - len(cands))
        for d in rng.permutation(top):
            if n_hard == 0:
                break
            if int(d) not in cands:
                cands.append(int(d))
                n_hard -= 1
        while len(cands) < n_cand:
            d = int(rng.integers(N))
            if d not in cands:
                cands.append(d)
        out.append(cands)
    return out


def kl_teacher_student(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Row-wise KL(teacher || student) over candidate lists; both are logits (already scaled)."""
    t = torch.softmax(teacher, dim=-1)
    return torch.sum(t * (torch.log_softmax(teacher, -1) - torch.log_softmax(student, -1)), -1).mean()


class Timer:
    def __init__(self, start: float = 0.0):
        self.t0 = time.time() - start

    @property
    def elapsed(self) -> float:
        return time.time() - self.t0
