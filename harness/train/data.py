"""Training-data recipe for the pico students.

Only these sources are used:

* corpus text of scifact and nfcorpus (title + text),
* their TRAIN/DEV queries, i.e. query ids that appear in ``qrels/train.tsv`` / ``qrels/dev.tsv``,
* pseudo-queries derived from the documents (the title, a sentence of the abstract).

The files are read by the harness's own BEIR loader (:mod:`harness.data`: the same checks, file:line
errors and file preference as an evaluation run); this module adds only the leak guard. Test queries
(any id in ``qrels/test.tsv``) and test judgments are never read into the training set:
:func:`load_split_queries` drops them explicitly and :func:`assert_no_test_leak` checks it.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from harness.data import TITLE_SEPARATOR, read_corpus, read_qrels, read_queries
from harness.errors import HarnessError

_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")


def normalise_query(text: str) -> str:
    """Casefolded NFKC text, punctuation removed, whitespace collapsed: the identity of a query
    for the contamination checks (a training query equal to an evaluation query is dropped)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


@dataclass
class Dataset:
    """One BEIR dataset reduced to what training may see."""

    name: str
    doc_ids: list[str]
    doc_titles: list[str]
    doc_texts: list[str]
    query_ids: list[str] = field(default_factory=list)  # train/dev queries only
    query_texts: list[str] = field(default_factory=list)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)  # train/dev judgments only
    test_query_ids: frozenset[str] = frozenset()  # kept only to prove they are excluded

    @property
    def docs(self) -> list[str]:
        """Document strings as the retrieval harness encodes them (:meth:`harness.data.Dataset.doc_texts`)."""
        return [(t + TITLE_SEPARATOR + x).strip() for t, x in zip(self.doc_titles, self.doc_texts)]


def split_query_ids(folder: Path, split: str, doc_ids: set[str]) -> frozenset[str]:
    """The query ids judged in ``qrels/<split>.tsv``; empty when the dataset has no such split."""
    if not (folder / "qrels" / f"{split}.tsv").is_file():
        return frozenset()
    return frozenset(read_qrels(folder, split, doc_ids)[0])


def load_split_queries(folder: Path, splits=("train", "dev"), doc_ids: set[str] | None = None):
    """Return (query ids, texts, qrels, test query ids) of the given splits, with every test query
    removed: by id, and by text (:func:`normalise_query`). ``doc_ids``: the corpus's (read when not given)."""
    if "test" in splits:
        raise HarnessError("training may not use the test split")
    folder = Path(folder)
    if doc_ids is None:
        doc_ids = set(read_corpus(folder)[0])
    test_ids = split_query_ids(folder, "test", doc_ids)
    qrels: dict[str, dict[str, int]] = {}
    for split in splits:
        if (folder / "qrels" / f"{split}.tsv").is_file():
            for qid, rel in read_qrels(folder, split, doc_ids)[0].items():
                if qid in test_ids:  # a query id shared with test is dropped, judgments and all
                    continue
                qrels.setdefault(qid, {}).update(rel)
    rows = list(read_queries(folder)[0].items())
    # A train/dev query whose text equals a test query's (other id, same words) is a leak too.
    test_texts = {normalise_query(t) for q, t in rows if q in test_ids}
    ids, texts = [], []
    for qid, text in rows:
        if qid in qrels and qid not in test_ids and normalise_query(text) not in test_texts:
            ids.append(qid)
            texts.append(text)
    kept = set(ids)
    qrels = {q: rel for q, rel in qrels.items() if q in kept}
    return ids, texts, qrels, test_ids


def load_dataset(folder: str | Path, splits=("train", "dev")) -> Dataset:
    folder = Path(folder)
    if not folder.is_dir():
        raise HarnessError(f"{folder}: dataset folder not found")
    ids, titles, texts, *_ = read_corpus(folder)
    qids, qtexts, qrels, test_ids = load_split_queries(folder, splits, set(ids))
    ds = Dataset(folder.name, ids, titles, texts, qids, qtexts, qrels, test_ids)
    assert_no_test_leak(ds)
    return ds


def assert_no_test_leak(ds: Dataset) -> None:
    leaked = set(ds.query_ids) & ds.test_query_ids or set(ds.qrels) & ds.test_query_ids
    if leaked:
        raise HarnessError(f"{ds.name}: test queries leaked into training data: {sorted(leaked)[:5]}")


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT_SPLIT.split(text) if len(s.strip()) >= 20]


@dataclass
class TrainQuery:
    text: str
    dataset: str
    kind: str  # "query" (train/dev), "title", "sentence"
    positives: tuple[int, ...]  # doc indices (within its dataset) known relevant / the source doc
    qid: str = ""  # the query id for real train/dev queries; "" for pseudo-queries


def pseudo_queries(ds: Dataset, sentences_per_doc: int, rng: random.Random, titles: bool = True) -> list[TrainQuery]:
    """Document-derived pseudo-queries: the title -> its document (unless ``titles`` is false, as
    for Wikipedia paragraphs, which share their article's title), and random sentences -> their
    document (the harness scores the sentence against the whole document)."""
    out = []
    for i, (title, text) in enumerate(zip(ds.doc_titles, ds.doc_texts)):
        if titles and len(title.strip()) >= 10:
            out.append(TrainQuery(title.strip(), ds.name, "title", (i,)))
        sents = split_sentences(text)
        rng.shuffle(sents)
        for s in sents[:sentences_per_doc]:
            out.append(TrainQuery(s[:400], ds.name, "sentence", (i,)))
    return out


def real_queries(ds: Dataset) -> list[TrainQuery]:
    index = {d: i for i, d in enumerate(ds.doc_ids)}
    out = []
    for qid, text in zip(ds.query_ids, ds.query_texts):
        pos = tuple(index[d] for d, s in ds.qrels.get(qid, {}).items() if s > 0 and d in index)
        out.append(TrainQuery(text, ds.name, "query", pos, qid))
    return out


def build_queries(ds: Dataset, sentences_per_doc: int = 2, seed: int = 0, use_real: bool = True,
                  use_pseudo: bool = True, title_queries: bool = True) -> list[TrainQuery]:
    rng = random.Random(f"{seed}:{ds.name}")
    out = []
    if use_real:
        out += real_queries(ds)
    if use_pseudo:
        out += pseudo_queries(ds, sentences_per_doc, rng, title_queries)
    return out


def fingerprint(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def recipe_summary(datasets: list[Dataset], queries: dict[str, list[TrainQuery]]) -> dict:
    """Counts for the model card."""
    out = {}
    for ds in datasets:
        qs = queries.get(ds.name, [])
        kinds: dict[str, int] = {}
        for q in qs:
            kinds[q.kind] = kinds.get(q.kind, 0) + 1
        out[ds.name] = {
            "documents": len(ds.doc_ids),
            "train_dev_queries": len(ds.query_ids),
            "test_queries_excluded": len(ds.test_query_ids),
            "training_queries_by_kind": kinds,
        }
    return out
