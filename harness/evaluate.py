"""Score a run against qrels with pytrec_eval (trec_eval's own code), under explicit rules.

A *run* is ``{query_id: {doc_id: score}}`` with Python-float scores; *qrels* are
``{query_id: {doc_id: int grade}}``. The rules (DEVELOPERS.md), each counted in ``counts``:

* grade 0 is a judged non-relevant document (trec_eval: relevance level 1);
* queries with no document of grade > 0 cannot be scored and are dropped
  (``queries_without_relevant``);
* a judged query that the run did not answer, or answered with nothing, scores 0 on every
  metric (``queries_without_results``): pytrec_eval would silently leave it out of the mean;
* a document whose id equals the query id is removed from that query's ranking, as BEIR does
  (``self_matches_removed``);
* ties: trec_eval orders equal scores by document id, descending; :func:`ranking` uses the same
  order, so the run file, MRR@10's cut and the metrics all see one ranking.

``mrr@10`` is ``recip_rank`` on each ranking cut to its first 10 (trec_eval's ``recip_rank`` has no
cut-off).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytrec_eval

#: harness metric name -> pytrec_eval measure key. The primary metric comes first.
METRICS: dict[str, str] = {
    "ndcg@10": "ndcg_cut_10",
    "ndcg@100": "ndcg_cut_100",
    "recall@100": "recall_100",
    "recall@1000": "recall_1000",
    "mrr@10": "recip_rank",
}
PRIMARY_METRIC = "ndcg@10"
_MEASURES = {"ndcg_cut.10,100", "recall.100,1000"}


def ranking(scores: dict[str, float]) -> list[str]:
    """Document ids best first: score descending, equal scores by id descending (trec_eval's order)."""
    by_id = sorted(scores, reverse=True)
    return sorted(by_id, key=lambda doc_id: -scores[doc_id])


@dataclass
class Evaluation:
    """Mean metrics over the scored queries, each query's metrics, and what the rules counted."""

    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]]
    counts: dict[str, int] = field(default_factory=dict)


def evaluate(
    qrels: dict[str, dict[str, int]],
    run: dict[str, dict[str, float]],
    remove_self_matches: bool = True,
) -> Evaluation:
    """Apply the module's rules and return the metrics in :data:`METRICS`."""
    scorable = {q: judged for q, judged in qrels.items() if any(grade > 0 for grade in judged.values())}
    counts = {
        "queries_judged": len(qrels),
        "queries_without_relevant": len(qrels) - len(scorable),
        "queries_evaluated": len(scorable),
        "queries_without_results": 0,
        "self_matches_removed": 0,
    }
    cleaned: dict[str, dict[str, float]] = {}
    for query_id in scorable:
        docs = run.get(query_id) or {}
        if remove_self_matches and query_id in docs:
            docs = {d: s for d, s in docs.items() if d != query_id}
            counts["self_matches_removed"] += 1
        if docs:
            cleaned[query_id] = {d: float(s) for d, s in docs.items()}
        else:
            counts["queries_without_results"] += 1

    per_query = {q: {name: 0.0 for name in METRICS} for q in scorable}
    if cleaned:
        judged = {q: scorable[q] for q in cleaned}
        main = pytrec_eval.RelevanceEvaluator(judged, _MEASURES).evaluate(cleaned)
        top10 = {q: {d: docs[d] for d in ranking(docs)[:10]} for q, docs in cleaned.items()}
        mrr = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}).evaluate(top10)
        for query_id in cleaned:
            values = {**main[query_id], **mrr[query_id]}
            per_query[query_id] = {name: float(values[key]) for name, key in METRICS.items()}
    n = len(per_query)
    metrics = {name: (sum(v[name] for v in per_query.values()) / n if n else 0.0) for name in METRICS}
    return Evaluation(metrics=metrics, per_query=per_query, counts=counts)
