"""Measurement-only self-check: ndcg@10 on a judged split of a BEIR dataset (TEST by default;
pilot runs score the DEV split they held out of training with ``data.holdout_splits``).

Used to report numbers in the model cards, never to build training data. (The official numbers
come from ``python -m harness run``.) Test queries are read here and only here. The split is read
by :func:`harness.data.load_dataset`, searched exactly by :mod:`harness.retrieval` and scored by
:func:`harness.pipeline.evaluate_ranking`, the rules of a ``harness run``; the encoders are the
models being trained, in memory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from harness.data import Dataset, load_dataset
from harness.errors import HarnessError, error_line
from harness.pipeline import evaluate_ranking, retrieval_depth
from harness.retrieval import exact, maxsim
from harness.stages import l2_normalise

#: Results kept per query: ndcg@10 needs 10; 100 is the depth the maxsim rerank rows rescore.
TOP_K = 100


def load_judged(folder: str | Path, split: str = "test") -> Dataset:
    """The corpus and one judged split's queries and judgments."""
    return load_dataset(str(folder), split=split)


def ndcg10(dataset: Dataset, ranking: tuple[np.ndarray, np.ndarray]) -> float:
    """ndcg@10 of (scores, doc indices), each (n_queries, >= 10), best first."""
    return evaluate_ranking(dataset, *ranking, TOP_K, metrics=("ndcg@10",))[0].metrics["ndcg@10"]


def _search(dataset: Dataset, queries: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top :data:`TOP_K` (+1 for a self-match) of (n, d) query and document vectors."""
    return exact.search(queries, docs, retrieval_depth(dataset, TOP_K), exact.tie_ranks(dataset.doc_ids))


@torch.no_grad()
def eval_dense(encode, folder, split: str = "test") -> float:
    """``encode(texts, kind)`` -> (n, d) numpy array (kind is "query" or "doc"); cosine scores."""
    ds = load_judged(folder, split)
    q, d = l2_normalise(encode(ds.queries, "query")), l2_normalise(encode(ds.doc_texts(), "doc"))
    return ndcg10(ds, _search(ds, q, d))


def _numpy(tokens: list[torch.Tensor]) -> list[np.ndarray]:
    return [t.detach().cpu().numpy().astype(np.float32) for t in tokens]


@torch.no_grad()
def eval_colbert(encode_tokens, folder, dense_encode=None, fde_encode=None, split: str = "test") -> dict:
    """Full maxsim ndcg@10 (``encode_tokens(texts, kind)`` -> list of (n_tokens, d) tensors); with
    ``dense_encode`` also dense top-100 -> maxsim rerank; with ``fde_encode(token_list, kind) ->
    (n, dim)`` also MUVERA-FDE single-vector retrieval, by inner product and by cosine, and the
    cosine FDE's top 100 reranked by maxsim (the txtai-mode ``muvera-pico+rerank`` row)."""
    ds = load_judged(folder, split)
    ranks = exact.tie_ranks(ds.doc_ids)
    q_tok, d_tok = encode_tokens(ds.queries, "query"), encode_tokens(ds.doc_texts(), "doc")
    q_np, d_np = _numpy(q_tok), _numpy(d_tok)

    def reranked(ranking):
        return maxsim.rerank_top(q_np, d_np, *ranking, TOP_K, ranks)

    res = {"maxsim": ndcg10(ds, maxsim.search(q_np, d_np, retrieval_depth(ds, TOP_K), tie_ranks=ranks))}
    if dense_encode is not None:
        dense = _search(ds, l2_normalise(dense_encode(ds.queries, "query")), l2_normalise(dense_encode(ds.doc_texts(), "doc")))
        res["dense"] = ndcg10(ds, dense)
        res["dense+rerank100"] = ndcg10(ds, reranked(dense))
    if fde_encode is not None:
        fq, fd = fde_encode(q_tok, "query"), fde_encode(d_tok, "doc")
        res["muvera_fde"] = ndcg10(ds, _search(ds, fq.astype(np.float32), fd.astype(np.float32)))
        # the txtai-mode muvera-pico row's cosine (same normalisation): a model can rank well by one and badly by the other
        fde_cosine = _search(ds, l2_normalise(fq), l2_normalise(fd))
        res["muvera_fde_cosine"] = ndcg10(ds, fde_cosine)
        res["muvera_fde_cosine+rerank100"] = ndcg10(ds, reranked(fde_cosine))
    return res


@torch.no_grad()
def eval_teacher(folder, split: str = "test", bm25_weights=(0.0,), max_len: int = 128) -> dict[float, float]:
    """ndcg@10 of the teacher score used for distillation, MiniLM cosine + w * normalised BM25
    (:class:`harness.train.pools.Pool`), for each w in ``bm25_weights``. The teacher is not
    trained, so any judged split is a fair measurement of it; ``bm25_weight`` was chosen on dev."""
    from dataclasses import replace

    from harness.train.pools import Pool, normalised_bm25
    from harness.train.teacher import Teacher

    folder = Path(folder)
    ds = load_judged(folder, split)
    docs = ds.doc_texts()
    teacher = Teacher(max_len=max_len)
    n = len(ds.queries)
    pool = Pool(folder.name, docs, ds.queries, teacher.encode(docs, name=f"{folder.name}-docs"),
                teacher._encode_raw(ds.queries), np.zeros((n, 0), dtype=np.int64), [()] * n, ["query"] * n,
                normalised_bm25(ds.queries, docs))
    every_query, every_doc = np.arange(n), np.arange(len(docs))
    ranks, depth = exact.tie_ranks(ds.doc_ids), retrieval_depth(ds, TOP_K)
    return {w: ndcg10(ds, exact.top_k(replace(pool, lexical_weight=w).teacher_scores(every_query, every_doc),
                                      depth, ranks)) for w in bm25_weights}


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
