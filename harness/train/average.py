"""A weight-space average ("model soup", Wortsman et al. 2022) of ColBERT KD runs.

The config's ``[average]`` section lists *members*: KD runs from the same start (same dense pico,
identity Dense, seed and batches) that differ only in the listed ``--set`` overrides, and one weight
per member. Each member trains in its own process (one per CPU, so two members take the wall time of
one) with its own run folder and checkpoints, so ``--resume`` resumes each of them; then the shipped
weights are sum_i weight_i * member_i, parameter by parameter. Runs fine-tuned from one start can
often be averaged into a model that keeps the strengths of both (what it gave for colbert-pico:
``models/colbert-pico-adapted/README.md``).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

from harness.errors import HarnessError
from harness.train.config import apply_overrides


def members(cfg: dict) -> list[tuple[list[str], float]]:
    """``[(overrides, weight), ...]`` from ``[average]``; ``[]`` when the config trains one run."""
    avg = cfg.get("average") or {}
    sets, weights = avg.get("members") or [], avg.get("weights") or []
    if not sets:
        return []
    if len(sets) != len(weights) or len(sets) < 2:
        raise HarnessError(f"average: need at least two members and one weight per member, got "
                           f"{len(sets)} members and {len(weights)} weights")
    if abs(sum(weights) - 1.0) > 1e-6 or min(weights) < 0:
        raise HarnessError(f"average.weights must be non-negative and sum to 1, got {weights}")
    return [(list(s), float(w)) for s, w in zip(sets, weights)]


def member_config(cfg: dict, overrides: list[str], index: int) -> dict:
    """The member's own config: the parent's, with its overrides, its own run folder, no averaging
    and no self-check (the average is checked instead)."""
    run_dir = Path(cfg["run"]["run_dir"]) / f"member-{index}"
    own = apply_overrides(cfg, overrides + ["average.members=[]", "average.weights=[]", "eval.after_kd=false"])
    own["run"]["run_dir"] = str(run_dir)
    return own


def average_state_dicts(states: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    """Parameter-wise weighted sum; every state must have the same keys and shapes."""
    keys = states[0].keys()
    for s in states[1:]:
        if s.keys() != keys or any(s[k].shape != states[0][k].shape for k in keys):
            raise HarnessError("average: the members' weights do not have the same layout")
    return {k: sum(w * s[k] for s, w in zip(states, weights)) if states[0][k].is_floating_point()
            else states[0][k] for k in keys}


def exit_with_parent(parent: int, poll_seconds: float = 1.0) -> None:
    """Pool initializer: the member process ends once ``parent`` (the ``harness train`` process) is
    gone, so a killed or interrupted average leaves no member training on, writing its run folder
    under a later ``--resume``. Finished work survives in the members' atomic checkpoints."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def train_colbert_average(cfg: dict, resume: bool = False, teacher=None) -> dict:
    """Train the members, average them, self-check and save like a single run. The members train
    in parallel processes, or, when a ``teacher`` object is passed (tests), one after another in
    this process with that teacher."""
    from harness.models.colbert import ColBERT
    from harness.models.runtime import cpu_threads
    from harness.train.colbert_kd import quick_eval_colbert, save_colbert, train_colbert
    from harness.train.pools import load_pools
    from harness.train.teacher import Teacher

    plan = members(cfg)
    t0 = time.time()
    in_process = teacher is not None
    teacher = teacher or Teacher(max_len=cfg["teacher"]["max_len"], batch_size=cfg["teacher"]["batch_size"],
                                 backend=cfg["teacher"].get("backend", "torch"))
    recipe = load_pools(cfg, teacher)[1]  # fills the teacher cache once, so the members only read it
    prep = time.time() - t0
    configs = [member_config(cfg, sets, i) for i, (sets, _) in enumerate(plan)]
    outs = [str(Path(c["run"]["run_dir"]) / "model") for c in configs]
    if in_process:
        infos = [train_colbert(c, resume=resume, teacher=teacher, out_dir=o) for c, o in zip(configs, outs)]
    else:
        with ProcessPoolExecutor(min(len(plan), cpu_threads()), mp_context=get_context("spawn"),
                                 initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
            runs = [pool.submit(train_colbert, c, resume, out_dir=o) for c, o in zip(configs, outs)]
            infos = [r.result() for r in runs]
    models = [ColBERT.load(o) for o in outs]
    weights = [w for _, w in plan]
    model = models[0]
    model.encoder.load_state_dict(average_state_dicts([m.encoder.state_dict() for m in models], weights))
    torch.set_num_threads(cpu_threads())
    evals = {"average": quick_eval_colbert(model, cfg)} if cfg["eval"]["after_kd"] else {}
    label = [" ".join(sets) or "as configured" for sets, _ in plan]
    info = {
        "kind": "colbert",
        "seed": int(cfg["run"]["seed"]),
        "recipe": recipe,
        "teacher_sha256": teacher.sha256,
        "teacher_max_len": teacher.max_len,
        "init_from": cfg["model"]["init_from"],
        "steps": {f"kd ({lab})": i["steps"]["kd"] for lab, i in zip(label, infos)},
        "average": [{"overrides": sets, "weight": w} for sets, w in plan],
        "stage_wall": {f"kd ({lab})": i["wall_seconds"] for lab, i in zip(label, infos)},
        "teacher_prep_seconds_this_run": prep + sum(i["teacher_prep_seconds_this_run"] for i in infos),
        "wall_seconds": max(i["wall_seconds"] for i in infos),  # the members train side by side
        "evals": evals,
        "history": {f"kd ({lab})": i["history"].get("kd", []) for lab, i in zip(label, infos)},
        "threads": infos[0]["threads"],
    }
    save_colbert(model, Path(cfg["run"]["out"]), info, cfg)
    return info
