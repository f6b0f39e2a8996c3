"""The training loop both recipes share: seeding, per-step batch randomness, atomic checkpoints that
``--resume`` continues from, the optimiser schedule, the KL loss, loss curves and the atomic swap
of a finished model folder into place."""

from __future__ import annotations

import io
import math
import pickle
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from harness.errors import HarnessError
from harness.fileio import atomic_save_figure, atomic_write_bytes


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


def warmup_linear(optimizer, warmup: int, total: int):
    def f(step):
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, f)


class StageRunner:
    """Generic loop: ``step_fn(step, rng) -> loss tensor``; handles optimizer, schedule,
    checkpoints, tqdm and loss history."""

    def __init__(self, ckpt: Checkpointer, module: torch.nn.Module, cfg: dict, seed: int, timer_start: float):
        self.ckpt, self.module, self.cfg, self.seed = ckpt, module, cfg, seed
        self.every = int(cfg["checkpoint"]["every"])
        #: torch intra-op threads of every stage (``run.threads``), set again at each stage's start:
        #: the self-check between stages encodes through code that sets its own thread count.
        self.threads = int(cfg.get("run", {}).get("threads", 2))
        self.t_start = time.time() - timer_start

    def wall(self) -> float:
        return time.time() - self.t_start

    def run(self, stage: str, steps: int, lr: float, params, step_fn, warmup_frac=0.06,
            weight_decay=0.01, log_every: int = 10, max_grad_norm: float = 1.0):
        st = self.ckpt.state
        if stage in st["done"] or steps <= 0:
            return
        torch.set_num_threads(self.threads)
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        sched = warmup_linear(opt, max(1, int(warmup_frac * steps)), steps)
        start = 0
        hist = st["history"].setdefault(stage, [])
        if st.get("stage") == stage and st.get("optimizer") is not None:
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
            start = int(st["step"])
            if st.get("torch_rng") is not None:
                torch.set_rng_state(st["torch_rng"])
        self.module.train()
        bar = tqdm(range(start, steps), desc=stage, initial=start, total=steps, dynamic_ncols=True)
        run_loss = None
        for step in bar:
            rng = step_rng(self.seed, stage, step)
            loss = step_fn(step, rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            opt.step()
            sched.step()
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise HarnessError(f"stage {stage}: loss became {lv} at step {step}; lower the learning rate")
            run_loss = lv if run_loss is None else 0.95 * run_loss + 0.05 * lv
            if step % log_every == 0 or step == steps - 1:
                hist.append((step, lv))
                bar.set_postfix(loss=f"{run_loss:.4g}")
            if (step + 1) % self.every == 0 and step + 1 < steps:
                self.ckpt.save(stage=stage, step=step + 1, model=self.module.state_dict(),
                               optimizer=opt.state_dict(), scheduler=sched.state_dict(), wall=self.wall())
        st["done"].append(stage)
        st.setdefault("stage_wall", {})[stage] = self.wall()
        self.ckpt.save(stage=None, step=0, model=self.module.state_dict(), optimizer=None, scheduler=None,
                       wall=self.wall())


def kl_teacher_student(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Row-wise KL(teacher || student) over candidate lists; both are logits (already scaled)."""
    t = torch.softmax(teacher, dim=-1)
    return torch.sum(t * (torch.log_softmax(teacher, -1) - torch.log_softmax(student, -1)), -1).mean()


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


def swap_in(tmp: Path, out: Path) -> None:
    """Replace ``out`` by the finished folder ``tmp`` (renames; never a half-written model)."""
    old = out.with_name(out.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    if old.exists():
        shutil.rmtree(old)
