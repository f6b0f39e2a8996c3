"""Candidate pools for list-wise distillation: each training collection's teacher view (teacher
embeddings of its documents and training queries, optional BM25 and known-positive terms, each
query's teacher top-k), and the batches drawn from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from tqdm.auto import tqdm

from harness.errors import HarnessError
from harness.train import data as tdata
from harness.train.config import beir_root, data_root
from harness.train.teacher import Teacher


@dataclass
class Pool:
    """One dataset's teacher view: normalised 384-d teacher embeddings of docs and training
    queries, optional lexical scores, each query's teacher top-k documents, and its known positives.

    Teacher score of (query i, doc j) = cosine(t_queries[i], t_docs[j]) + lexical_weight *
    lexical[i, j] + label_weight * labels[i, j], where ``lexical`` is BM25 divided by the query's
    best BM25 score over the corpus (so in [0, 1]; None for the plain MiniLM teacher) and
    ``labels`` marks the known positives of training queries (sparse 0/1: judged relevant in
    train/dev, or a pseudo-query's source document; None = not used). Both are sparse: a query
    shares terms with few documents, and 62 dense (M, N) pools outgrow 24 GiB."""

    name: str
    docs: list[str]
    queries: list[str]
    t_docs: np.ndarray  # (N, 384)
    t_queries: np.ndarray  # (M, 384)
    topk: np.ndarray  # (M, k) doc indices by descending teacher score
    positives: list[tuple[int, ...]]
    kinds: list[str]
    lexical: sparse.csr_matrix | None = None  # (M, N) float32 in [0, 1]
    lexical_weight: float = 0.0
    labels: sparse.csr_matrix | None = None  # (M, N) float32 0/1
    label_weight: float = 0.0

    def teacher_scores(self, qidx, docs) -> np.ndarray:
        """(len(qidx), len(docs)) teacher scores."""
        out = self.t_queries[qidx] @ self.t_docs[docs].T
        for term, weight in ((self.lexical, self.lexical_weight), (self.labels, self.label_weight)):
            if term is not None and weight:
                out = out + weight * term[np.asarray(qidx)][:, np.asarray(docs)].toarray()
        return out.astype(np.float32)


def relevance_labels(positives: list[tuple[int, ...]], n_docs: int) -> sparse.csr_matrix:
    """(len(positives), n_docs) known relevance of training pairs: 1 where document j is a known
    positive of query i (judged relevant in train/dev, or a pseudo-query's source document)."""
    rows = np.repeat(np.arange(len(positives)), [len(p) for p in positives])
    cols = np.fromiter((d for p in positives for d in p), dtype=np.int64, count=len(rows))
    return sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(positives), n_docs))


def normalised_bm25(queries: list[str], docs: list[str]) -> sparse.csr_matrix:
    """(n_queries, n_docs) sparse float32 BM25 scores (the harness's bm25 settings) divided by
    each query's maximum; documents sharing no term with the query (score 0) are not stored."""
    from harness.retrieval.bm25 import BM25

    scores = BM25(docs).scores(queries)
    scores /= np.maximum(scores.max(1, keepdims=True), 1e-9)
    return sparse.csr_matrix(scores)


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


def training_datasets(cfg: dict) -> tuple[list[tdata.Dataset], dict]:
    """The config's training collections as datasets, and what the contamination guard dropped.

    ``data.sources`` (general text, :mod:`harness.train.sources`) gives corpus shards;
    otherwise ``data.datasets`` names BEIR folders under ``data.root`` whose train/dev queries
    are used (the corpus-adapted recipe)."""
    from harness.train import sources as tsources

    dcfg = cfg["data"]
    if not dcfg.get("sources"):
        return [tdata.load_dataset(data_root(cfg) / n) for n in dcfg["datasets"]], {}
    places = [beir_root(cfg) / n for n in dcfg.get("exclude_queries_of", [])]
    excluded = tsources.excluded_queries(places)
    sources = [tsources.Source.from_config(entry, data_root(cfg)) for entry in dcfg["sources"]]
    ngrams = tsources.corpus_ngrams(places) if any(s.format == "package" for s in sources) else set()
    out, dropped, texts_dropped = [], {}, {}
    for src in sources:
        shards, dropped[src.name] = tsources.load_source(src, excluded, ngrams)
        if src.format == "package":
            texts_dropped[src.name] = src.texts_dropped
        out += shards
    guard = {"excluded_query_sets": list(dcfg.get("exclude_queries_of", [])),
             "excluded_texts": len(excluded), "training_queries_dropped": dropped}
    if texts_dropped:
        guard["package_texts_dropped_13gram"] = texts_dropped
    return out, guard


def load_pools(cfg: dict, teacher: Teacher, datasets=None) -> tuple[list[Pool], dict]:
    """Datasets -> teacher-embedded pools (docs + train/dev/pseudo queries), plus the recipe summary.

    ``data.holdout_splits`` (e.g. ``["dev"]``) leaves those splits' real queries out of training,
    for pilot runs scored on them; ``teacher.bm25_weight`` > 0 adds normalised BM25 to the teacher
    score and ``teacher.label_weight`` > 0 the known relevance of training pairs (see
    :class:`Pool`)."""
    dcfg = cfg["data"]
    root = data_root(cfg)
    bm25_weight = float(cfg["teacher"].get("bm25_weight", 0.0))
    label_weight = float(cfg["teacher"].get("label_weight", 0.0))
    guard = {}
    if datasets is None:
        datasets, guard = training_datasets(cfg)
    pools, summary_ds, summary_q, found_splits = [], [], {}, set()
    for ds in tqdm(datasets, desc="pools", unit="dataset"):
        tdata.assert_no_test_leak(ds)
        qs = tdata.build_queries(ds, sentences_per_doc=dcfg["sentences_per_doc"], seed=dcfg["seed"],
                                 use_real=dcfg["use_real_queries"], use_pseudo=dcfg["use_pseudo_queries"],
                                 title_queries=dcfg.get("title_queries", True))
        t_q = teacher.encode([q.text for q in qs], name=f"{ds.name}-queries")  # cache key: all queries
        t_d = teacher.encode(ds.docs, name=f"{ds.name}-docs")
        held_out = set()
        for split in dcfg.get("holdout_splits", []):
            if (root / ds.name / "qrels" / f"{split}.tsv").is_file():  # scifact has no dev split
                held_out |= tdata.split_query_ids(root / ds.name, split, set(ds.doc_ids))
                found_splits.add(split)
        keep = [i for i, q in enumerate(qs) if q.qid not in held_out]
        qs, t_q = [qs[i] for i in keep], t_q[keep]
        q_texts = [q.text for q in qs]
        lexical = normalised_bm25(q_texts, ds.docs) if bm25_weight else None
        labels = relevance_labels([q.positives for q in qs], len(ds.docs)) if label_weight else None
        pool = Pool(ds.name, ds.docs, q_texts, t_d, t_q, np.zeros((len(qs), 0), dtype=np.int64),
                    [q.positives for q in qs], [q.kind for q in qs], lexical, bm25_weight,
                    labels, label_weight)
        pool.topk = teacher_topk(pool, dcfg["teacher_topk"])
        pools.append(pool)
        summary_ds.append(ds)
        summary_q[ds.name] = qs
    missing = set(dcfg.get("holdout_splits", [])) - found_splits
    if missing:
        raise HarnessError(f"data.holdout_splits: no dataset has qrels/{sorted(missing)[0]}.tsv")
    summary = tdata.recipe_summary(summary_ds, summary_q)
    if guard:
        summary["contamination_guard"] = guard
    return pools, summary
