"""Measurement-only self-check: ndcg@10 on a judged split of a BEIR dataset (TEST by default;
pilot runs score the DEV split they held out of training with ``data.holdout_splits``).

Used to report numbers in the model cards, never to build training data. (The official numbers
come from ``python -m harness run``.) Test queries are read here and only here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from harness.data import split_qrels_path
from harness.errors import HarnessError, error_line
from harness.stages import l2_normalise
from harness.train.data import _find, _open_text, load_dataset, read_qrels


def load_judged(folder: str | Path, split: str = "test"):
    """(query ids, query texts, qrels) of one judged split."""
    folder = Path(folder)
    qrels = read_qrels(split_qrels_path(folder, split))
    qids, qtexts = [], []
    with _open_text(_find(folder, "queries")) as f:
        for line in f:
            row = json.loads(line)
            if str(row["_id"]) in qrels:
                qids.append(str(row["_id"]))
                qtexts.append(row["text"])
    return qids, qtexts, qrels


def ndcg10(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> float:
    import pytrec_eval

    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"})
    res = ev.evaluate(run)
    return float(np.mean([res[q]["ndcg_cut_10"] for q in qrels if q in res] or [0.0])) if res else 0.0


def run_from_scores(scores: np.ndarray, qids, doc_ids, k: int = 100, exclude_self: bool = True):
    run = {}
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    for i, q in enumerate(qids):
        run[q] = {doc_ids[j]: float(scores[i, j]) for j in top[i] if not (exclude_self and doc_ids[j] == q)}
    return run


@torch.no_grad()
def eval_dense(encode, folder, k: int = 100, split: str = "test") -> float:
    """``encode(texts, kind)`` -> (n, d) numpy array (kind is "query" or "doc"); cosine scores."""
    ds = load_dataset(folder)
    qids, qtexts, qrels = load_judged(folder, split)
    q, d = l2_normalise(encode(qtexts, "query")), l2_normalise(encode(ds.docs, "doc"))
    return ndcg10(run_from_scores(q @ d.T, qids, ds.doc_ids, k), qrels)


@torch.no_grad()
def maxsim_scores(qs: list[torch.Tensor], docs: list[torch.Tensor], doc_batch: int = 256) -> np.ndarray:
    """Token matrices (n_tokens, d) per text, padding removed -> full maxsim (n_queries, n_docs)."""
    Q = torch.nn.utils.rnn.pad_sequence(qs, batch_first=True)  # (nq, Lq, d) zero-padded
    qmask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(x)) for x in qs], batch_first=True)
    scores = torch.zeros(len(qs), len(docs))
    for s in range(0, len(docs), doc_batch):
        ds_tok = docs[s:s + doc_batch]
        D = torch.nn.utils.rnn.pad_sequence(ds_tok, batch_first=True)  # (nd, Ld, d)
        dmask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(x)) for x in ds_tok], batch_first=True)
        for qs_ in range(0, len(qs), 16):
            sim = torch.einsum("qid,njd->qnij", Q[qs_:qs_ + 16], D)  # (16, nd, Lq, Ld)
            sim = sim.masked_fill(dmask[None, :, None, :] == 0, -1e4).amax(-1)
            scores[qs_:qs_ + 16, s:s + len(ds_tok)] = (sim * qmask[qs_:qs_ + 16, None, :]).sum(-1)
    return scores.numpy()


def rerank(first: np.ndarray, second: np.ndarray, k: int = 100) -> np.ndarray:
    """Keep ``first``'s top-k per query, ordered by ``second``; everything else scores -inf."""
    out = np.full_like(second, -np.inf)
    k = min(k, first.shape[1])
    top = np.argpartition(-first, k - 1, axis=1)[:, :k]
    rows = np.arange(first.shape[0])[:, None]
    out[rows, top] = second[rows, top]
    return out


def run_from_finite(scores: np.ndarray, qids, doc_ids, k: int = 100):
    run = {}
    for i, q in enumerate(qids):
        row = scores[i]
        top = np.argsort(-row)[:k]
        run[q] = {doc_ids[j]: float(row[j]) for j in top if np.isfinite(row[j]) and doc_ids[j] != q}
    return run


@torch.no_grad()
def eval_colbert(encode_tokens, folder, dense_encode=None, fde_encode=None, split: str = "test") -> dict:
    """Full maxsim ndcg@10 (``encode_tokens(texts, kind)`` -> list of (n_tokens, d) tensors); with
    ``dense_encode`` also dense top-100 -> maxsim rerank; with ``fde_encode(token_list, kind) ->
    (n, dim)`` also MUVERA-FDE single-vector retrieval, by inner product and by cosine, and the
    cosine FDE's top 100 reranked by maxsim (the txtai-mode ``muvera-pico+rerank`` row)."""
    ds = load_dataset(folder)
    qids, qtexts, qrels = load_judged(folder, split)
    q_tok, d_tok = encode_tokens(qtexts, "query"), encode_tokens(ds.docs, "doc")
    ms = maxsim_scores(q_tok, d_tok)
    res = {"maxsim": ndcg10(run_from_finite(ms, qids, ds.doc_ids), qrels)}
    if dense_encode is not None:
        dense = l2_normalise(dense_encode(qtexts, "query")) @ l2_normalise(dense_encode(ds.docs, "doc")).T
        res["dense"] = ndcg10(run_from_finite(dense, qids, ds.doc_ids), qrels)
        res["dense+rerank100"] = ndcg10(run_from_finite(rerank(dense, ms, 100), qids, ds.doc_ids), qrels)
    if fde_encode is not None:
        fq, fd = fde_encode(q_tok, "query"), fde_encode(d_tok, "doc")
        res["muvera_fde"] = ndcg10(run_from_finite(fq @ fd.T, qids, ds.doc_ids), qrels)
        # the txtai-mode muvera-pico row's cosine (same normalisation): a model can rank well by one and badly by the other
        fde_cosine = l2_normalise(fq) @ l2_normalise(fd).T
        res["muvera_fde_cosine"] = ndcg10(run_from_finite(fde_cosine, qids, ds.doc_ids), qrels)
        res["muvera_fde_cosine+rerank100"] = ndcg10(run_from_finite(rerank(fde_cosine, ms, 100), qids, ds.doc_ids), qrels)
    return res


@torch.no_grad()
def eval_teacher(folder, split: str = "test", bm25_weights=(0.0,), max_len: int = 128) -> dict[float, float]:
    """ndcg@10 of the teacher score used for distillation, MiniLM cosine + w * normalised BM25
    (:class:`harness.train.common.Pool`), for each w in ``bm25_weights``. The teacher is not
    trained, so any judged split is a fair measurement of it; ``bm25_weight`` was chosen on dev."""
    from dataclasses import replace

    from harness.train.common import Pool, normalised_bm25
    from harness.train.teacher import Teacher

    folder = Path(folder)
    ds = load_dataset(folder)
    qids, qtexts, qrels = load_judged(folder, split)
    teacher = Teacher(max_len=max_len)
    n = len(qtexts)
    pool = Pool(folder.name, ds.docs, qtexts, teacher.encode(ds.docs, name=f"{folder.name}-docs"),
                teacher._encode_raw(qtexts), np.zeros((n, 0), dtype=np.int64), [()] * n, ["query"] * n,
                normalised_bm25(qtexts, ds.docs))
    every_query, every_doc = np.arange(n), np.arange(len(ds.docs))
    return {w: ndcg10(run_from_finite(replace(pool, lexical_weight=w).teacher_scores(every_query, every_doc),
                                      qids, ds.doc_ids), qrels) for w in bm25_weights}


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.train.quick_eval --datasets nfcorpus --split dev --bm25-weights 0,0.5``:
    print the distillation teacher's ndcg@10 for each BM25 weight."""
    import argparse

    from harness.data import default_data_dir

    p = argparse.ArgumentParser(prog="python -m harness.train.quick_eval", description=main.__doc__)
    p.add_argument("--datasets", default="nfcorpus")
    p.add_argument("--split", default="dev")
    p.add_argument("--bm25-weights", default="0,0.2,0.3,0.4,0.5,0.7,1.0")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--max-len", type=int, default=128, help="teacher input length in tokens")
    args = p.parse_args(argv)
    root = Path(args.data_dir) if args.data_dir else default_data_dir()
    weights = [float(w) for w in args.bm25_weights.split(",")]
    try:
        for name in args.datasets.split(","):
            for w, score in eval_teacher(root / name, args.split, weights, args.max_len).items():
                print(f"{name} {args.split} teacher at {args.max_len} tokens = MiniLM cosine + {w:g} x normalised BM25:"
                      f" ndcg@10 {score:.4f}")
    except HarnessError as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
