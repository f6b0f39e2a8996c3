"""``colbert-pico``: ColBERT (BertHash pico base initialised from the trained dense ``pico`` + a
bias-free 80 -> 80 Dense) trained by knowledge distillation on UN-normalised teacher scores:
KL(softmax(teacher_scale * teacher cosine) || softmax(student_scale * raw maxsim)) over each
query's candidate list scored against all candidates of the batch (in-batch). No min-max
normalisation of either score set (NeuML's cards: keeps the model usable under MUVERA).
Optional, off by default: a teacher-scale schedule (``kd.teacher_scale_end``) and an FDE-aware KL
term (``kd.fde_weight``, with its own target scale ``kd.fde_teacher_scale``).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from harness.errors import HarnessError
from harness.train.config import eval_root, run_settings
from harness.train.dense_base import load_dense_base, shipped_length
from harness.train.loop import Checkpointer, StageRunner, kl_teacher_student, plot_losses, seed_everything, swap_in
from harness.train.pools import candidate_batcher, load_pools
from harness.train.teacher import Teacher


def maxsim(q: torch.Tensor, qmask: torch.Tensor, d: torch.Tensor, dmask: torch.Tensor) -> torch.Tensor:
    """q (B, Lq, D), d (U, Ld, D) -> (B, U): sum over query tokens of max over document tokens."""
    sim = torch.einsum("bid,ujd->buij", q, d)
    sim = sim.masked_fill(~dmask.bool()[None, :, None, :], -1e4).amax(-1)
    return (sim * qmask.to(sim.dtype)[:, None, :]).sum(-1)


def fde_scores(q: torch.Tensor, qmask: torch.Tensor, d: torch.Tensor, dmask: torch.Tensor,
               rng: np.random.Generator) -> torch.Tensor:
    """(B, U) cosine of txtai-mode MUVERA FDEs (default shape, 10,240 dims) of the query and
    document token sets, differentiable in the tokens. The SimHash and sketch seed is drawn from
    ``rng`` at every step, so the model learns to survive FDE compression in general rather than
    one particular set of hyperplanes."""
    from harness.models.muvera import FDE, FDEConfig

    fde = FDE(FDEConfig(seed=int(rng.integers(2**31))), q.shape[-1])
    fq = fde.encode_points(q[qmask], qmask.sum(1).numpy(), documents=False)
    fd = fde.encode_points(d[dmask], dmask.sum(1).numpy(), documents=True)
    return torch.nn.functional.normalize(fq, dim=-1) @ torch.nn.functional.normalize(fd, dim=-1).T


def new_colbert(cfg: dict):
    """ColBERT on the trained dense pico's folder (its weights), + bias-free hidden -> token_dim Dense;
    or, when ``model.init_from`` is a ColBERT folder (it has the Dense), that model, to continue it."""
    from harness.models.colbert import _DENSE_DIR, ColBERT

    init = Path(cfg["model"]["init_from"])
    if (init / _DENSE_DIR).is_dir():
        return ColBERT.load(init)
    load_dense_base(init)  # clear error when the dense model is missing or broken
    model = ColBERT.new(init, int(cfg["model"]["token_dim"]), seed=int(cfg["run"]["seed"]))
    if cfg["model"].get("identity_init", True):
        w = model.dense.linear.weight
        if w.shape[0] != w.shape[1]:
            raise HarnessError("model.identity_init needs token_dim == hidden size")
        with torch.no_grad():
            w.copy_(torch.eye(w.shape[0]))
    return model


def train_colbert(cfg: dict, resume: bool = False, pools=None, teacher=None, out_dir=None) -> dict:
    torch.set_num_threads(int(cfg["run"].get("threads", 2)))
    seed = int(cfg["run"]["seed"])
    seed_everything(seed)
    ckpt = Checkpointer(Path(cfg["run"]["run_dir"]), resume, run_settings(cfg))
    teacher = teacher or Teacher(max_len=cfg["teacher"]["max_len"], batch_size=cfg["teacher"]["batch_size"],
                                 backend=cfg["teacher"].get("backend", "torch"))
    t0 = time.time()
    pools_, recipe = load_pools(cfg, teacher) if pools is None else (pools, {})
    pools = pools_
    prep_time = time.time() - t0
    model = new_colbert(cfg)
    if ckpt.resumed:
        model.encoder.load_state_dict(ckpt.state["model"])
    runner = StageRunner(ckpt, model.encoder, cfg, seed, ckpt.state.get("wall", 0.0))

    kc = cfg["kd"]
    draw = candidate_batcher(pools, kc)
    set_doc_len(model, kc["doc_max_len"])

    def kd_step(step, rng):
        pool, qidx, docs = draw(rng)
        q, qm = model.forward_queries([pool.queries[i] for i in qidx])
        d, dm = model.forward_documents([pool.docs[i] for i in docs])
        s_scores = maxsim(q, qm, d, dm) * kc["student_scale"]
        t_scores = torch.from_numpy(pool.teacher_scores(qidx, docs))
        loss = kl_teacher_student(s_scores, t_scores * teacher_scale(kc, step))
        if kc.get("fde_weight"):
            fde_target = t_scores * (kc.get("fde_teacher_scale") or teacher_scale(kc, step))
            loss = loss + kc["fde_weight"] * kl_teacher_student(fde_scores(q, qm, d, dm, rng) * kc["fde_scale"], fde_target)
        return loss

    model.encoder.train()
    runner.run("kd", kc["steps"], kc["lr"], [p for p in model.parameters() if p.requires_grad], kd_step)
    evals = {}
    if cfg["eval"]["after_kd"]:
        evals["after_kd"] = quick_eval_colbert(model, cfg)
    info = {
        "kind": "colbert",
        "seed": seed,
        "recipe": recipe,
        "teacher_sha256": teacher.sha256,
        "teacher_max_len": teacher.max_len,
        "init_from": cfg["model"]["init_from"],
        "steps": {"kd": kc["steps"]},
        "stage_wall": ckpt.state.get("stage_wall", {}),
        "teacher_prep_seconds_this_run": prep_time,
        "wall_seconds": runner.wall(),
        "evals": evals,
        "history": ckpt.state["history"],
        "threads": runner.threads,  # what the stages ran with (the self-check may set others)
    }
    save_colbert(model, Path(out_dir or cfg["run"]["out"]), info, cfg)
    return info


def teacher_scale(kc: dict, step: int) -> float:
    """The teacher's logit scale at ``step``: ``kd.teacher_scale``, or, with ``kd.teacher_scale_end``
    set (> 0), moving linearly from the first to the second over the run (soft early, sharp late or
    the reverse)."""
    start, end = float(kc["teacher_scale"]), float(kc.get("teacher_scale_end") or 0.0)
    if end <= 0:
        return start
    return start + (end - start) * step / max(1, int(kc["steps"]) - 1)


def set_doc_len(model, n: int) -> None:
    """Train and ship with documents cut to ``n`` tokens (``kd.doc_max_len``, the teacher's 128).
    Position embeddings past the trained length keep their random initial values, so the shipped
    model must not read further (``examples/pilots/2026-11-29-trained-length.sh`` measures it)."""
    model.document_length = n


@torch.no_grad()
def quick_eval_colbert(model, cfg: dict) -> dict:
    from harness.train.quick_eval import eval_colbert

    model.encoder.eval()

    def enc_tokens(texts, kind):
        fn = model.encode_queries if kind == "query" else model.encode_documents
        return [torch.from_numpy(a) for a in fn(texts, batch_size=64)]

    dense_encode = _dense_encoder(cfg["eval"].get("dense_from"))  # None: no dense columns

    try:
        fde_encode = _fde_encoder()
    except ImportError:
        fde_encode = None
    res = {}
    for name in cfg["eval"]["datasets"]:
        split = cfg["eval"].get("split", "test")
        res[name] = eval_colbert(enc_tokens, eval_root(cfg) / name, dense_encode, fde_encode, split=split)
        tqdm.write(f"[eval] {name} ({split}, measurement only): {res[name]}")
    return res


def _dense_encoder(folder: str | None):
    """``encode(texts, kind) -> (n, 80)`` with the dense pico in ``folder`` at its shipped length, or None."""
    if not folder:
        return None
    from harness.models.berthash import embed, tokenizer_dir

    dense, length = load_dense_base(folder), shipped_length(folder)
    return lambda texts, kind: embed(dense, tokenizer_dir(), texts, max_length=length)


def _fde_encoder():
    from harness.models.muvera import FDE, FDEConfig

    fdes = {}

    def enc(tokens: list[torch.Tensor], kind: str) -> np.ndarray:
        dim = tokens[0].shape[1]
        fde = fdes.setdefault(dim, FDE(FDEConfig(), dim))
        arrs = [t.numpy().astype(np.float32) for t in tokens]
        return fde.encode_queries(arrs) if kind == "query" else fde.encode_documents(arrs)

    return enc


def save_colbert(model, out: Path, info: dict, cfg: dict) -> None:
    from harness.train.card import write_card

    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save(str(tmp))
    for f in ("README.md",):
        (tmp / f).unlink(missing_ok=True)
    plot_losses(info["history"], tmp / "loss_curve.png", f"{out.name}: training loss")
    write_card(tmp, info, cfg)
    swap_in(tmp, out)
