"""Dense ``pico`` student: (optional MLM) -> embedding distillation (MSE to the PCA-80 teacher
embedding) -> KL distillation of teacher score distributions over candidate lists.

Stages run in order; each is checkpointed every ``checkpoint.every`` steps (atomic writes) and a
``--resume`` run continues from the last checkpoint with the same batches (batch sampling is a
pure function of (seed, stage, step)).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from harness.errors import HarnessError
from harness.train.config import eval_root, run_settings
from harness.train.dense_base import load_dense_base
from harness.train.loop import (
    Checkpointer,
    StageRunner,
    kl_teacher_student,
    plot_losses,
    seed_everything,
    swap_in,
)
from harness.train.pools import candidate_batcher, load_pools
from harness.train.teacher import Teacher, teacher_path


class PCA:
    """Teacher 384 -> ``dims`` reduction: centred PCA, then one global scale so entries have RMS 1
    (the scale does not change cosines; it keeps the MSE well conditioned)."""

    def __init__(self, X: np.ndarray, dims: int):
        self.mean = X.mean(0)
        _, s, vt = np.linalg.svd(X - self.mean, full_matrices=False)
        self.components = vt[:dims]  # (dims, 384)
        self.explained = float((s[:dims] ** 2).sum() / (s**2).sum())
        Z = (X - self.mean) @ self.components.T
        self.scale = float(1.0 / np.sqrt((Z**2).mean()))

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean) @ self.components.T * self.scale).astype(np.float32)


# ----------------------------------------------------------------------------- model


def load_tokenizer(cfg: dict | None = None):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(teacher_path()))


def new_base(cfg: dict):
    from harness.models.berthash import BertHashForMaskedLM, pico_config

    conf = pico_config()
    for k, v in cfg.get("model", {}).items():
        if k != "name":
            setattr(conf, k, v)
    return BertHashForMaskedLM(conf)


def mean_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


def init_words_from_teacher(base, std: float) -> None:
    """Initialise the (vocab x projections) word table with the teacher's (vocab x 384) word
    embeddings reduced by PCA to ``projections`` dims (same vocabulary), scaled so projected
    word vectors have std ``std``. Gives the student lexical similarity from step 0."""
    from safetensors import safe_open

    with safe_open(str(teacher_path() / "model.safetensors"), framework="pt") as f:
        key = next(k for k in f.keys() if k.endswith("word_embeddings.weight"))
        E = f.get_tensor(key).float()
    if E.shape[0] != base.embeddings.word_embeddings.weight.shape[0]:
        raise HarnessError(f"teacher vocabulary {E.shape[0]} != student {base.embeddings.word_embeddings.weight.shape[0]}")
    P = base.embeddings.word_embeddings.weight.shape[1]
    Ec = E - E.mean(0)
    _, _, V = torch.linalg.svd(Ec[::3], full_matrices=False)  # subsample rows: fast, same subspace
    W = Ec @ V[:P].T  # (vocab, P)
    with torch.no_grad():
        proj = base.embeddings.projection.weight  # (hidden, P)
        out_std = (W @ proj.T).std()
        base.embeddings.word_embeddings.weight.copy_(W * (std / out_std))


class DenseStudent(torch.nn.Module):
    """BertHash encoder + mean pooling (exactly the saved sentence-transformers pipeline)."""

    def __init__(self, base, tokenizer):
        super().__init__()
        self.base = base  # BertHashModel
        self.tokenizer = tokenizer

    def forward(self, texts: list[str], max_len: int) -> torch.Tensor:
        enc = self.tokenizer(texts, truncation=True, max_length=max_len, padding=True, return_tensors="pt")
        h = self.base(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        return mean_pool(h, enc["attention_mask"])

    @torch.no_grad()
    def encode(self, texts: list[str], max_len: int, batch_size: int = 128) -> np.ndarray:
        was = self.training
        self.eval()
        order = np.argsort([len(t) for t in texts])
        out = np.zeros((len(texts), self.base.config.hidden_size), dtype=np.float32)
        for s in range(0, len(texts), batch_size):
            idx = order[s:s + batch_size]
            out[idx] = self([texts[i] for i in idx], max_len).numpy()
        self.train(was)
        return out


def _mask_tokens(input_ids: torch.Tensor, attn: torch.Tensor, tok, prob: float, gen: torch.Generator):
    labels = input_ids.clone()
    special = (input_ids == tok.cls_token_id) | (input_ids == tok.sep_token_id) | (attn == 0)
    pick = (torch.rand(input_ids.shape, generator=gen) < prob) & ~special
    labels[~pick] = -100
    inp = input_ids.clone()
    r = torch.rand(input_ids.shape, generator=gen)
    inp[pick & (r < 0.8)] = tok.mask_token_id
    rand_ids = torch.randint(999, tok.vocab_size, input_ids.shape, generator=gen)
    sel = pick & (r >= 0.8) & (r < 0.9)
    inp[sel] = rand_ids[sel]
    return inp, labels


# ----------------------------------------------------------------------------- training


def train_dense(cfg: dict, resume: bool = False, pools=None, teacher=None, out_dir=None) -> dict:
    torch.set_num_threads(int(cfg["run"].get("threads", 2)))
    seed = int(cfg["run"]["seed"])
    seed_everything(seed)
    run_dir = Path(cfg["run"]["run_dir"])
    ckpt = Checkpointer(run_dir, resume, run_settings(cfg))
    teacher = teacher or Teacher(max_len=cfg["teacher"]["max_len"], batch_size=cfg["teacher"]["batch_size"],
                                 backend=cfg["teacher"].get("backend", "torch"))
    t0 = time.time()
    if pools is None:
        pools, recipe = load_pools(cfg, teacher)
    else:
        recipe = {p.name: {"documents": len(p.docs), "training_queries": len(p.queries)} for p in pools}
    prep_time = time.time() - t0
    tok = load_tokenizer(cfg)
    mlm = new_base(cfg)
    if cfg.get("init", {}).get("teacher_word_pca", False):
        init_words_from_teacher(mlm.bert, cfg["init"].get("word_std", 0.05))
    if cfg.get("init", {}).get("from"):  # continue from a trained dense pico folder
        mlm.bert.load_state_dict(load_dense_base(cfg["init"]["from"]).state_dict())
    student = DenseStudent(mlm.bert, tok)
    if ckpt.resumed:
        mlm.load_state_dict(ckpt.state["model"])
    runner = StageRunner(ckpt, mlm, cfg, seed, ckpt.state.get("wall", 0.0))

    # --- stage 0: MLM (optional)
    mc = cfg["mlm"]
    all_docs = [d for p in pools for d in p.docs]
    all_queries = [q for p in pools for q in p.queries]
    mlm_texts = all_docs + all_queries
    gen = torch.Generator()

    def mlm_step(step, rng):
        gen.manual_seed(int(rng.integers(2**31)))
        texts = [mlm_texts[i] for i in rng.integers(len(mlm_texts), size=mc["batch"])]
        enc = tok(texts, truncation=True, max_length=mc["max_len"], padding=True, return_tensors="pt")
        inp, labels = _mask_tokens(enc["input_ids"], enc["attention_mask"], tok, mc["mask_prob"], gen)
        # logits only at masked positions (the full (batch, seq, 30522) logits dominate the cost)
        h = mlm.bert(input_ids=inp, attention_mask=enc["attention_mask"]).last_hidden_state
        sel = labels != -100
        logits = mlm.cls.predictions(h[sel], mlm.bert.embeddings)
        return F.cross_entropy(logits, labels[sel])

    runner.run("mlm", mc["steps"], mc["lr"], [p for p in mlm.parameters()], mlm_step)

    # --- stage 1: embedding distillation, MSE to PCA-reduced teacher embeddings
    ec = cfg["embed"]
    dims = mlm.config.hidden_size
    T_docs = np.concatenate([p.t_docs for p in pools])
    T_queries = np.concatenate([p.t_queries for p in pools])
    pca = PCA(np.concatenate([T_docs, T_queries]), dims)
    Z_docs, Z_queries = torch.from_numpy(pca(T_docs)), torch.from_numpy(pca(T_queries))
    enc_params = list(mlm.bert.parameters())

    def embed_step(step, rng):
        di = rng.integers(len(all_docs), size=ec["batch_docs"])
        qi = rng.integers(len(all_queries), size=ec["batch_queries"])
        d = student([all_docs[i] for i in di], ec["doc_max_len"])
        q = student([all_queries[i] for i in qi], ec["query_max_len"])
        loss = ec.get("mse_weight", 1.0) * (F.mse_loss(d, Z_docs[di]) + F.mse_loss(q, Z_queries[qi]))
        if ec.get("cos_weight", 0):
            loss = loss + ec["cos_weight"] * ((1 - F.cosine_similarity(d, Z_docs[di])).mean()
                                               + (1 - F.cosine_similarity(q, Z_queries[qi])).mean())
        return loss

    runner.run("embed", ec["steps"], ec["lr"], enc_params, embed_step)
    evals = {}
    if cfg["eval"]["after_embed"]:
        evals["after_embed"] = quick_eval_dense(student, cfg)

    # --- stage 2: KL over candidate lists (teacher top-k + positives + random, all in-batch)
    kc = cfg["kl"]
    draw = candidate_batcher(pools, kc)

    def kl_step(step, rng):
        pool, qidx, docs = draw(rng)
        q = F.normalize(student([pool.queries[i] for i in qidx], kc["query_max_len"]), dim=-1)
        d = F.normalize(student([pool.docs[i] for i in docs], kc["doc_max_len"]), dim=-1)
        s_scores = q @ d.T * kc["student_scale"]
        t_scores = torch.from_numpy(pool.teacher_scores(qidx, docs)) * kc["teacher_scale"]
        loss = kl_teacher_student(s_scores, t_scores)
        if kc.get("mse_weight", 0):
            loss = loss + kc["mse_weight"] * F.mse_loss(
                student([pool.docs[i] for i in docs[: ec["batch_docs"]]], kc["doc_max_len"]),
                torch.from_numpy(pca(pool.t_docs[docs[: ec["batch_docs"]]])))
        return loss

    runner.run("kl", kc["steps"], kc["lr"], enc_params, kl_step)
    if cfg["eval"]["after_kl"]:
        evals["after_kl"] = quick_eval_dense(student, cfg)

    wall = runner.wall()
    info = {
        "kind": "dense",
        "seed": seed,
        "recipe": recipe,
        "teacher_sha256": teacher.sha256,
        "teacher_max_len": teacher.max_len,
        "pca_explained_variance": pca.explained,
        "steps": {"mlm": mc["steps"], "embed": ec["steps"], "kl": kc["steps"]},
        "stage_wall": ckpt.state.get("stage_wall", {}),
        "teacher_prep_seconds_this_run": prep_time,
        "wall_seconds": wall,
        "evals": evals,
        "history": ckpt.state["history"],
        "threads": runner.threads,  # what the stages ran with (the self-check may set others)
    }
    out = Path(out_dir or cfg["run"]["out"])
    save_dense(student, tok, out, info, cfg)
    return info


@torch.no_grad()
def quick_eval_dense(student: DenseStudent, cfg: dict) -> dict:
    from harness.train.quick_eval import eval_dense

    ec = cfg["eval"]
    length = trained_length(cfg)
    res = {}
    for name in ec["datasets"]:

        def enc(texts, kind):
            return student.encode(texts, min(ec["query_max_len"], length) if kind == "query" else length)

        split = ec.get("split", "test")
        res[name] = eval_dense(enc, eval_root(cfg) / name, split=split)
        tqdm.write(f"[eval] {name} ndcg@10 ({split}, measurement only) = {res[name]:.4f}")
    return res


def trained_length(cfg: dict) -> int:
    """Tokens per text the dense pico is shipped with and self-checked at: the longest input any of
    its training stages with steps read. Position embeddings past that length never receive a
    gradient and keep their random initial values, so reading further makes the vectors worse
    (``examples/pilots/2026-11-29-trained-length.sh`` measures it)."""
    lengths = []
    for stage, keys in (("mlm", ("max_len",)), ("embed", ("doc_max_len", "query_max_len")),
                        ("kl", ("doc_max_len", "query_max_len"))):
        if int(cfg[stage]["steps"]):
            lengths += [int(cfg[stage][k]) for k in keys]
    return max(lengths, default=int(cfg["embed"]["doc_max_len"]))


def export_base(base):
    """Copy the trained encoder into ``harness.models.berthash.BertHashModel`` (whose
    ``save_pretrained`` ships the standalone code + auto_map for ``trust_remote_code``)."""
    from harness.models.berthash import BertHashModel

    clean = BertHashModel(base.config, add_pooling_layer=False)
    missing, unexpected = clean.load_state_dict(base.state_dict(), strict=False)
    if missing or unexpected:
        raise HarnessError(f"export: encoder state does not match BertHashModel: {missing} {unexpected}")
    return clean.eval()


def save_dense(student: DenseStudent, tok, out: Path, info: dict, cfg: dict) -> None:
    from harness.models.berthash import save_sentence_transformer
    from harness.train.card import write_card

    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_sentence_transformer(export_base(student.base), tok, tmp, pooling="mean",
                              max_seq_length=trained_length(cfg))
    plot_losses(info["history"], tmp / "loss_curve.png", f"{out.name}: training loss")
    write_card(tmp, info, cfg)
    swap_in(tmp, out)
