"""Score a run against qrels with pytrec_eval (trec_eval's own code), under explicit rules.

A *run* is ``{query_id: {doc_id: score}}`` with Python-float scores; *qrels* are
``{query_id: {doc_id: int grade}}``. The rules, each counted in ``counts``:

* grade 0 is a judged non-relevant document (trec_eval: relevance level 1);
* a query whose judgments are all grade 0 has nothing to find: it stays in the mean and scores 0
  on every metric, as in BEIR's ``EvaluateRetrieval`` (``queries_without_relevant``);
* judged documents absent from the corpus stay in the qrels, so they count toward the ideal DCG
  (BEIR and MTEB do the same; :mod:`harness.data` counts them);
* a judged query that the run did not answer, or answered with nothing
  (``queries_without_results``): with ``empty_queries="zero"`` (the default) it scores 0 on every
  metric (pytrec_eval's own score for an empty ranking); with ``"drop"`` it is left out of the mean,
  which is what BEIR's BM25 pipeline does: its lexical search gives a query with no hits no entry
  at all, and pytrec_eval scores only the queries present in the run;
* a document whose id equals the query id is removed from that query's ranking, as BEIR does
  (``self_matches_removed``); the caller retrieves one extra document (``top_k + 1``) and the
  ranking is cut to ``top_k`` after the removal, as BEIR's exact search does, so recall@1000 still
  sees 1000 documents;
* ties: trec_eval orders equal scores by document id, descending; :func:`ranking` uses the same
  order, so the run file, MRR@10's cut and the metrics all see one ranking.

Metrics are named as ranx names them, ``<name>@<cutoff>`` (``"ndcg@10"``), and parsed
(:func:`parse_metric`); :data:`MEASURES` is the one table from a name to its pytrec_eval measure.
``mrr@10`` is ``recip_rank`` on each ranking cut to its first 10 (trec_eval's ``recip_rank`` has no
cut-off).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.errors import HarnessError


@dataclass(frozen=True)
class Measure:
    """A pytrec_eval measure family; ``cuts_ranking``: it takes no cut-off of its own, so the metric's
    cut-off cuts each ranking before it is scored (``recip_rank`` for ``mrr@k``)."""

    trec: str
    cuts_ranking: bool = False


#: metric name -> pytrec_eval measure: adding a metric is one entry here.
MEASURES: dict[str, Measure] = {
    "ndcg": Measure("ndcg_cut"),
    "recall": Measure("recall"),
    "map": Measure("map_cut"),
    "P": Measure("P"),
    "mrr": Measure("recip_rank", cuts_ranking=True),
}

#: What every run stores, the primary metric first; ``harness run`` prints :data:`SHOWN_METRICS`.
METRICS = ("ndcg@10", "ndcg@100", "recall@100", "recall@1000", "mrr@10")
PRIMARY_METRIC = METRICS[0]
SHOWN_METRICS = ("ndcg@10", "recall@100", "mrr@10")

_METRIC = re.compile(r"(?P<name>[A-Za-z_]+)@(?P<cutoff>[1-9][0-9]*)")


@dataclass(frozen=True)
class Metric:
    """A parsed metric: ``"ndcg@10"`` -> name ``ndcg``, cut-off 10."""

    name: str
    cutoff: int

    def __str__(self) -> str:
        return f"{self.name}@{self.cutoff}"

    @property
    def measure(self) -> Measure:
        return MEASURES[self.name]

    @property
    def trec_key(self) -> str:
        """The key pytrec_eval gives this metric's per-query value."""
        return self.measure.trec if self.measure.cuts_ranking else f"{self.measure.trec}_{self.cutoff}"


def parse_metric(text: str) -> Metric:
    """``"<name>@<cutoff>"`` -> :class:`Metric`, the name one of :data:`MEASURES`."""
    match = _METRIC.fullmatch(text.strip())
    if not match or match["name"] not in MEASURES:
        raise HarnessError(f"unknown metric {text!r}: use <name>@<cutoff> with a name among {', '.join(MEASURES)}"
                           " (e.g. ndcg@10)")
    return Metric(match["name"], int(match["cutoff"]))


def trec_measures(metrics) -> set[str]:
    """The pytrec_eval measure strings that score ``metrics`` on whole rankings (``{"ndcg_cut.10,100"}``);
    metrics whose measure cuts the ranking are left out (:func:`evaluate` scores them per cut-off)."""
    cutoffs: dict[str, set[int]] = {}
    for metric in metrics:
        if not metric.measure.cuts_ranking:
            cutoffs.setdefault(metric.measure.trec, set()).add(metric.cutoff)
    return {f"{trec}.{','.join(map(str, sorted(cuts)))}" for trec, cuts in cutoffs.items()}


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


#: ``--empty-queries``: what a judged query with no results counts as (see the module docstring).
EMPTY_QUERIES = ("zero", "drop")


def clean_ranking(query_id: str, docs: dict[str, float], remove_self_match: bool, top_k: int | None):
    """(the query's ranking without its self-match and cut to ``top_k``, whether a self-match went)."""
    removed = remove_self_match and query_id in docs
    if removed:
        docs = {d: s for d, s in docs.items() if d != query_id}
    if top_k is not None and len(docs) > top_k:
        docs = {d: docs[d] for d in ranking(docs)[:top_k]}
    return docs, removed


def evaluate(
    qrels: dict[str, dict[str, int]],
    run: dict[str, dict[str, float]],
    remove_self_matches: bool = True,
    top_k: int | None = None,
    empty_queries: str = "zero",
    metrics=METRICS,
) -> Evaluation:
    """Apply the module's rules and return ``metrics`` (names as in :data:`METRICS`), in that order."""
    import pytrec_eval

    parsed = {name: parse_metric(name) for name in metrics}
    if empty_queries not in EMPTY_QUERIES:
        raise ValueError(f"empty_queries must be one of {EMPTY_QUERIES}, not {empty_queries!r}")
    counts = {
        "queries_judged": len(qrels),
        "queries_without_relevant": sum(1 for judged in qrels.values() if not any(g > 0 for g in judged.values())),
        "queries_evaluated": 0,
        "queries_without_results": 0,
        "self_matches_removed": 0,
    }
    cleaned: dict[str, dict[str, float]] = {}
    for query_id in qrels:
        docs, removed = clean_ranking(query_id, run.get(query_id) or {}, remove_self_matches, top_k)
        counts["self_matches_removed"] += removed
        if docs:
            cleaned[query_id] = {d: float(s) for d, s in docs.items()}
        else:
            counts["queries_without_results"] += 1

    scored = list(qrels) if empty_queries == "zero" else list(cleaned)
    counts["queries_evaluated"] = len(scored)
    per_query = {q: {name: 0.0 for name in parsed} for q in scored}
    if cleaned:
        judged = {q: qrels[q] for q in cleaned}
        whole = pytrec_eval.RelevanceEvaluator(judged, trec_measures(parsed.values())).evaluate(cleaned)
        cut: dict[Metric, dict] = {}  # measures without a cut-off, scored on each ranking's top cutoff
        for metric in parsed.values():
            if metric.measure.cuts_ranking:
                top = {q: {d: docs[d] for d in ranking(docs)[:metric.cutoff]} for q, docs in cleaned.items()}
                cut[metric] = pytrec_eval.RelevanceEvaluator(judged, {metric.measure.trec}).evaluate(top)
        for query_id in cleaned:
            per_query[query_id] = {
                name: float((cut[m] if m in cut else whole).get(query_id, {}).get(m.trec_key, 0.0))
                for name, m in parsed.items()
            }
    n = len(per_query)
    means = {name: (sum(v[name] for v in per_query.values()) / n if n else 0.0) for name in parsed}
    return Evaluation(metrics=means, per_query=per_query, counts=counts)
