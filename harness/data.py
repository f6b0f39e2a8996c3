r"""Load a BEIR-layout dataset, strictly.

A dataset folder holds ``corpus.jsonl[.gz]`` (``_id``, ``title``, ``text``), ``queries.jsonl[.gz]``
(``_id``, ``text``) and ``qrels/<split>.tsv`` (header ``query-id<TAB>corpus-id<TAB>score``).

We read the files ourselves instead of through ``beir.datasets.data_loader.GenericDataLoader``
because that loader skips bad rows silently and reports no file/line; a benchmark harness must
either stop with ``file:line: what is wrong`` or count what it skipped. The recorded policy:

* errors (the run stops): unreadable/truncated gzip, non-UTF-8 bytes, malformed JSON (including
  nesting too deep or numbers too long to parse), a line that is not a JSON object, a missing,
  empty or non-string ``_id``, an id holding whitespace or control characters (the TREC run format
  and the qrels TSV cannot carry it), a ``title``/``text`` that is not a string, a string holding
  an unpaired UTF-16 surrogate escape (``"\ud800"``: not encodable as UTF-8), duplicate document or
  query ids, an empty corpus (no documents, or only empty ones), a qrels file without the header,
  with the wrong column count or with no judgement rows, a qrels score that is not an integer or
  not within 32 bits, the same (query, document) pair judged twice, a qrels row naming a query
  that is not in queries.jsonl, a split that does not exist; with ``strict=True`` (``--strict``)
  also a qrels row naming a document that is not in the corpus.
  Each message names the file and, for a row, its line (``path:LINE: what is wrong``).
* counted skips (shown in every result under ``counts``): test queries whose text is empty
  (``queries_empty_text``; they stay in the evaluation and score 0, since a retriever given
  nothing retrieves nothing), documents whose title and text are both empty
  (``documents_empty_text``; kept, encoded as the empty string), judged documents that are not in
  the corpus (``qrels_documents_not_in_corpus``; a known property of some official releases: kept
  in the judgments, so they count toward the ideal DCG exactly as in BEIR and MTEB, and reported
  once on stderr).
* tolerated without changing anything: blank lines, ``\r\n`` line ends, a UTF-8 byte-order mark at
  the start of a file, integer ``_id`` values (read as their decimal string), a missing or ``null``
  ``title``/``text`` (read as the empty string), extra JSON keys (``metadata``...).

Only the split's queries are kept (those named in ``qrels/<split>.tsv``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from harness.errors import HarnessError

#: BEIR joins title and text with one space and strips the result (beir.retrieval.models.util).
TITLE_SEPARATOR = " "

#: Where the project's machines keep the BEIR data: a fallback for names, used only where it exists.
SIBLING_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "beir"


def user_data_dir() -> Path:
    """``$XDG_CACHE_HOME/harness/datasets`` (default ``~/.cache/harness/datasets``): where downloads go."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "harness" / "datasets"


def data_dirs(data_dir: Path | None = None) -> list[Path]:
    """The folders a dataset name is looked up in, first to last; the first is where downloads go.

    ``--data-dir``, else ``$HARNESS_DATA_DIR``, else the user cache (:func:`user_data_dir`) followed
    by ``../shared/data/beir`` beside the checkout where that folder exists.
    """
    if data_dir:
        return [Path(data_dir)]
    env = os.environ.get("HARNESS_DATA_DIR")
    if env:
        return [Path(env)]
    return [user_data_dir()] + ([SIBLING_DATA_DIR] if SIBLING_DATA_DIR.is_dir() else [])


def default_data_dir() -> Path:
    """The first of :func:`data_dirs` that exists (the user cache when none does)."""
    folders = data_dirs()
    return next((folder for folder in folders if folder.is_dir()), folders[0])


def default_split(name: str) -> str:
    """The split BEIR evaluates: ``dev`` for MS MARCO (its test split is TREC-DL), else ``test``."""
    return "dev" if Path(name.rstrip("/\\")).name.lower() == "msmarco" else "test"


@dataclass
class Dataset:
    """One BEIR dataset split, held in memory.

    Documents and queries are parallel lists in file order; ``qrels[query_id][doc_id]`` is an int
    grade (0 = judged not relevant).
    """

    name: str
    path: Path
    split: str
    doc_ids: list[str]
    titles: list[str]
    texts: list[str]
    query_ids: list[str]
    queries: list[str]
    qrels: dict[str, dict[str, int]]
    files: dict[str, str] = field(default_factory=dict)  # stored file -> sha256 of its (uncompressed) content
    counts: dict[str, int] = field(default_factory=dict)
    #: ``stream=True``: the corpus stays on disk (a :class:`harness.engine.store.CorpusFile`, 16 bytes
    #: a document in memory) and ``titles`` / ``texts`` are empty; only dense and MUVERA encoders read it.
    corpus: object | None = None

    def doc_texts(self, separator: str = TITLE_SEPARATOR) -> list[str]:
        """``title + separator + text``, stripped (BEIR's convention); text alone when no title."""
        self.require_texts("this method")
        return [
            (title + separator + text).strip() if title else text.strip()
            for title, text in zip(self.titles, self.texts)
        ]

    def require_texts(self, who: str) -> None:
        """One error line when ``who`` needs the corpus texts in memory and they were streamed."""
        if self.corpus is not None:
            raise HarnessError(
                f"{who} needs the corpus in memory, and {self.path} was loaded with --stream-corpus"
                " (which serves dense and MUVERA encoders only): drop --stream-corpus"
            )

    def text_lengths(self) -> list[int]:
        """Characters of each document's text (``doc_texts``), without holding the texts when streamed."""
        if self.corpus is not None:
            return self.corpus.lengths.tolist()
        return [len(t) for t in self.doc_texts()]

    @property
    def checksum(self) -> str:
        """One sha256 over the stored files' sha256s: the dataset's identity in cache keys."""
        digest = hashlib.sha256()
        for rel in sorted(self.files):
            digest.update(f"{rel}\0{self.files[rel]}\n".encode())
        return digest.hexdigest()


def resolve_dataset_path(name_or_path: str, data_dir: Path | None = None) -> Path:
    """A folder path as given, or ``<folder>/<name>`` for the first of :func:`data_dirs` holding it;
    an official BEIR name found nowhere is downloaded (:mod:`harness.download`) into the first."""
    candidate = Path(name_or_path)
    if candidate.is_dir():
        return candidate
    folders = data_dirs(data_dir)
    relative = not candidate.is_absolute() and ".." not in candidate.parts
    for folder in folders if relative else []:
        if (folder / name_or_path).is_dir():
            return folder / name_or_path
    if os.sep in name_or_path or "/" in name_or_path or not relative:
        raise HarnessError(f"dataset folder not found: {name_or_path}")
    from harness.download import BEIR_MD5, download_dataset, expected_md5

    if name_or_path not in BEIR_MD5:
        try:
            expected_md5(name_or_path)
        except HarnessError as exc:
            where = " or ".join(str(folder) for folder in folders)
            raise HarnessError(
                f"{exc} (and no folder '{name_or_path}' in {where}; give a folder path, or --data-dir DIR)"
            ) from None
    return download_dataset(name_or_path, folders[0])


def dataset_name(name_or_path: str) -> str:
    """A folder is named by its last component ("." and "x/" included; symlinks are not followed);
    a name is its own name."""
    return Path(os.path.abspath(name_or_path)).name if Path(name_or_path).is_dir() else name_or_path


def subsets(folder: Path) -> list[Path]:
    """The BEIR dataset folders directly inside ``folder`` when it is a collection (CQADupStack's
    12 subforums), sorted by name; empty when ``folder`` is itself a dataset."""
    if (folder / "qrels").is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and (p / "qrels").is_dir())


def _find(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise HarnessError(f"{folder / stem}[.gz]: file not found (a BEIR dataset folder needs it)")


class _TextFile:
    """The lines of a UTF-8 file (``.gz``: decompressed as a stream), read once, front to back.

    Iterating yields (line number, decoded line) for the non-blank lines, a leading BOM dropped;
    afterwards ``sha256`` is that of the whole (uncompressed) content, comparable with BEIR's
    published hashes. Only one line is held at a time, so loading never holds the file's bytes."""

    def __init__(self, path: Path):
        self.path = path
        self.sha256 = ""

    def __iter__(self):
        path, digest, number = self.path, hashlib.sha256(), 0
        opener = gzip.open if path.suffix == ".gz" else open
        bar = tqdm(desc=f"load {path.name}", unit="line", leave=False, disable=path.stat().st_size < (1 << 24))
        try:
            with opener(path, "rb") as handle:
                for number, raw in enumerate(handle, start=1):
                    digest.update(raw)
                    bar.update()
                    raw = raw[:-1] if raw.endswith(b"\n") else raw
                    if number == 1 and raw.startswith(_BOM):
                        raw = raw[len(_BOM) :]
                    if not raw.strip():
                        continue
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise HarnessError(
                            f"{path}:{number}: not valid UTF-8 ({exc.reason} at byte {exc.start})"
                        ) from None
                    yield number, line
        except (EOFError, OSError, zlib.error) as exc:
            if path.suffix != ".gz":
                raise HarnessError(f"{path}: cannot be read ({exc})") from None
            broken = number + 1  # the lines before are whole; the data breaks off in the next
            raise HarnessError(
                f"{path}:{broken}: corrupt or truncated gzip file (the data breaks off in line {broken}: {exc})"
            ) from None
        finally:
            bar.close()
        self.sha256 = digest.hexdigest()


_BOM = b"\xef\xbb\xbf"
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_GRADE_MIN, _GRADE_MAX = -(2**31), 2**31 - 1


#: What an id must not hold: whitespace (``str.isspace``), control characters (category Cc) and
#: unpaired surrogates (category Cs).
_BAD_ID_CHARACTER = re.compile("[\\s\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _bad_id_character(record_id: str) -> str | None:
    """The first character an id must not hold, if any."""
    match = _BAD_ID_CHARACTER.search(record_id)
    return match.group() if match else None


def _has_lone_surrogate(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _read_jsonl(source: _TextFile, kind: str):
    """Yield (line number, _id, record) of ``source`` with the id checked and unique."""
    path, seen = source.path, {}
    for number, line in source:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HarnessError(f"{path}:{number}: malformed JSON ({exc.msg} at column {exc.colno})") from None
        except (ValueError, RecursionError) as exc:  # e.g. a 5000-digit number, nesting too deep
            raise HarnessError(f"{path}:{number}: malformed JSON ({type(exc).__name__}: {str(exc)[:80]})") from None
        if not isinstance(record, dict):
            raise HarnessError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        if "_id" not in record:
            raise HarnessError(f"{path}:{number}: {kind} has no '_id'")
        record_id = record["_id"]
        if isinstance(record_id, int) and not isinstance(record_id, bool):
            record_id = str(record_id)
        if not isinstance(record_id, str) or not record_id:
            raise HarnessError(
                f"{path}:{number}: {kind} '_id' must be a non-empty string, got {json.dumps(record['_id'])[:40]}"
            )
        bad = _bad_id_character(record_id)
        if bad is not None:
            raise HarnessError(
                f"{path}:{number}: {kind} id {record_id[:60]!r} holds the character {bad!r}"
                " (ids must not contain whitespace or control characters)"
            )
        if record_id in seen:
            raise HarnessError(f"{path}:{number}: duplicate {kind} id '{record_id}' (first on line {seen[record_id]})")
        seen[record_id] = number
        for key in ("title", "text"):
            value = record.get(key)
            if value is None:  # missing or null: the empty string
                value = ""
            elif not isinstance(value, str):
                raise HarnessError(f"{path}:{number}: '{key}' of {kind} '{record_id}' is not a string")
            record[key] = value
        # A lone surrogate can only come from a \u escape (the line itself decoded as UTF-8).
        if "\\u" in line:
            for key in ("title", "text"):
                if _has_lone_surrogate(record[key]):
                    raise HarnessError(
                        f"{path}:{number}: '{key}' of {kind} '{record_id}' holds an unpaired surrogate escape"
                        " (not valid Unicode)"
                    )
        yield number, record_id, record


def _read_qrels(
    source: _TextFile, known_docs: set[str], strict: bool = True
) -> tuple[dict[str, dict[str, int]], dict[str, int], list[int]]:
    """qrels[query][doc] = int grade; the first line each query appears on; the lines that judge a
    document absent from the corpus (kept unless ``strict``, which refuses them)."""
    qrels: dict[str, dict[str, int]] = {}
    absent: list[int] = []
    where: dict[str, int] = {}
    judged_on: dict[tuple[str, str], int] = {}
    header_seen = False
    path = source.path
    for number, line in source:
        columns = line.rstrip("\r").split("\t")
        if not header_seen:
            if [c.strip().lower() for c in columns[:2]] != ["query-id", "corpus-id"] or len(columns) != 3:
                raise HarnessError(
                    f"{path}:{number}: expected the header 'query-id<TAB>corpus-id<TAB>score', got {line[:60]!r}"
                )
            header_seen = True
            continue
        if len(columns) != 3:
            raise HarnessError(f"{path}:{number}: expected 3 tab-separated columns, got {len(columns)}")
        query_id, doc_id, score = (c.strip() for c in columns)
        if not _INTEGER.fullmatch(score):  # int() alone would also take "1_0" and non-ASCII digits
            raise HarnessError(f"{path}:{number}: relevance score {score!r} is not an integer")
        grade = int(score)
        if not _GRADE_MIN <= grade <= _GRADE_MAX:  # pytrec_eval wraps larger grades (4294967295 -> -1) or crashes
            raise HarnessError(f"{path}:{number}: relevance score {score} is out of range (trec_eval grades are 32-bit)")
        if not query_id:
            raise HarnessError(f"{path}:{number}: empty query id")
        if doc_id not in known_docs:
            if strict:
                raise HarnessError(
                    f"{path}:{number}: document {doc_id!r} is not in the corpus (without --strict it is kept and"
                    " counted, as BEIR does)"
                )
            absent.append(number)
        first = judged_on.setdefault((query_id, doc_id), number)
        if first != number:
            raise HarnessError(
                f"{path}:{number}: query {query_id!r} and document {doc_id!r} are judged twice (first on line {first})"
            )
        qrels.setdefault(query_id, {})[doc_id] = grade
        where.setdefault(query_id, number)
    if not header_seen:
        raise HarnessError(f"{path}: empty qrels file")
    if not qrels:
        raise HarnessError(f"{path}: no judgements after the header")
    return qrels, where, absent


def split_qrels_path(folder: Path, split: str) -> Path:
    """``folder/qrels/<split>.tsv``; a clear error naming the splits present when it is missing."""
    path = folder / "qrels" / f"{split}.tsv"
    if not path.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
        raise HarnessError(f"{path}: split '{split}' not found (available: {', '.join(available) or 'none'})")
    return path


def read_corpus(folder: Path, keep_texts: bool = True) -> tuple[list[str], list[str], list[str], str, int]:
    """(ids, titles, texts, sha256 of the uncompressed file, documents with neither title nor text)
    of ``corpus.jsonl[.gz]``, in file order, every record checked (module docstring); an empty
    corpus, or one of empty documents only, is an error. ``keep_texts=False`` checks the texts but
    keeps none (``titles`` and ``texts`` come back empty)."""
    corpus_path = _find(folder, "corpus.jsonl")
    source = _TextFile(corpus_path)
    doc_ids, titles, texts, empty = [], [], [], 0
    for _, doc_id, record in _read_jsonl(source, "document"):
        doc_ids.append(doc_id)
        empty += not record["title"].strip() and not record["text"].strip()
        if keep_texts:
            titles.append(record["title"])
            texts.append(record["text"])
    sha256 = source.sha256
    if not doc_ids:
        raise HarnessError(f"{corpus_path}: the corpus is empty")
    if empty == len(doc_ids):
        raise HarnessError(f"{corpus_path}: every document is empty (no title or text in any of {len(doc_ids)})")
    return doc_ids, titles, texts, sha256, empty


def read_queries(folder: Path) -> tuple[dict[str, str], str]:
    """({query id: text} in file order, sha256 of the uncompressed file) of ``queries.jsonl[.gz]``."""
    source = _TextFile(_find(folder, "queries.jsonl"))
    queries = {query_id: record["text"] for _, query_id, record in _read_jsonl(source, "query")}
    return queries, source.sha256


def read_qrels(folder: Path, split: str, doc_ids: set[str], strict: bool = False):
    """``qrels/<split>.tsv`` checked: (qrels[query][doc] = int grade, the first line of each query, the
    lines judging a document not in ``doc_ids`` (refused when ``strict``), sha256 of the file)."""
    source = _TextFile(split_qrels_path(folder, split))
    return (*_read_qrels(source, doc_ids, strict), source.sha256)


def load_dataset(
    name_or_path: str, split: str | None = None, data_dir: Path | None = None, strict: bool = False,
    stream: bool = False, scratch: Path | None = None,
) -> Dataset:
    """Load and validate one split (default: :func:`default_split`) of a BEIR dataset (see the
    module docstring for the policy; ``strict`` refuses judged documents absent from the corpus).

    ``stream``: check the corpus the same way but keep only its ids in memory; the texts are read
    back from disk when encoded (``Dataset.corpus``; a ``.gz`` corpus is first decompressed into
    ``scratch``, default the system temporary folder, named by its sha256 and reused)."""
    split = split or default_split(name_or_path)
    folder = resolve_dataset_path(name_or_path, data_dir)
    name = dataset_name(name_or_path)
    qrels_path = split_qrels_path(folder, split)
    corpus_path = _find(folder, "corpus.jsonl")
    queries_path = _find(folder, "queries.jsonl")

    files: dict[str, str] = {}
    counts = {"documents_empty_text": 0, "queries_empty_text": 0}

    doc_ids, titles, texts, files[corpus_path.name], counts["documents_empty_text"] = read_corpus(folder, not stream)
    corpus = None
    if stream:
        from harness.engine.store import CorpusFile

        corpus = CorpusFile.scan(corpus_path, scratch, sha256=files[corpus_path.name])
        if corpus.sha256 != files[corpus_path.name] and corpus.path != corpus_path:
            corpus.path.unlink()  # a damaged decompressed copy: make it again
            corpus = CorpusFile.scan(corpus_path, scratch, sha256=files[corpus_path.name])
        if corpus.sha256 != files[corpus_path.name]:
            raise HarnessError(f"{corpus_path}: the file changed while it was being read")

    qrels, qrels_line, absent, files[f"qrels/{split}.tsv"] = read_qrels(folder, split, set(doc_ids), strict)
    counts["qrels_documents_not_in_corpus"] = len(absent)
    if absent:
        print(
            f"warning: {qrels_path}:{absent[0]}: {len(absent)} judged document(s) are not in the corpus; kept in the"
            " judgments as BEIR does (they count toward the ideal DCG), counted as qrels_documents_not_in_corpus;"
            " --strict refuses them",
            file=sys.stderr,
        )

    every_query, files[queries_path.name] = read_queries(folder)
    query_text = {query_id: text for query_id, text in every_query.items() if query_id in qrels}

    for query_id in qrels:
        if query_id not in query_text:
            raise HarnessError(f"{qrels_path}:{qrels_line[query_id]}: query {query_id!r} is not in {queries_path}")

    query_ids = [q for q in query_text]  # queries.jsonl order
    queries = [query_text[q] for q in query_ids]
    counts["queries_empty_text"] = sum(1 for text in queries if not text.strip())
    return Dataset(
        name=name,
        path=folder,
        split=split,
        doc_ids=doc_ids,
        titles=titles,
        texts=texts,
        query_ids=query_ids,
        queries=queries,
        qrels=qrels,
        files=files,
        counts=counts,
        corpus=corpus,
    )
