"""Shared test helpers: tiny BEIR datasets written to ``tmp_path``, and ways to run the CLI.

Reuse from any test module::

    from conftest import make_beir, DEFAULT_DOCS, DEFAULT_QUERIES, DEFAULT_QRELS

    folder = make_beir(tmp_path)                                   # the default dataset
    folder = make_beir(tmp_path, docs=[{"_id": "d1", "text": "x"}], queries=[...], qrels=[("q1", "d1", 1)])
    folder = make_beir(tmp_path, docs=b'{"_id": "d1"\\n', gz=False)  # raw bytes, written as given

or ask for the fixtures ``small_beir`` (a folder with the default dataset) and ``harness_env``
(subprocess environment: offline, private cache, no stray results).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------
# The default dataset: 6 topics x 5 documents; each query shares rare words with its relevant
# documents (grade 2 for the best match, 1 for the second) so BM25 ranks them first, and one
# judged non-relevant document (grade 0) per query from another topic.

_TOPICS = [
    ("photosynthesis", "chlorophyll", "leaf", "sunlight"),
    ("volcano", "magma", "eruption", "lava"),
    ("vaccine", "antibody", "immune", "virus"),
    ("glacier", "ice", "melting", "arctic"),
    ("bitcoin", "blockchain", "ledger", "mining"),
    ("sonata", "piano", "composer", "melody"),
]
_FILLER = "the study reports results from several experiments and compares them with earlier work".split()


def _default_docs() -> list[dict]:
    docs = []
    for t, (a, b, c, d) in enumerate(_TOPICS):
        texts = [
            f"{a} {b} {c}: how {a} depends on {b} and {c} in {d}",
            f"{a} and {b} observed together; {c} measured",
            f"notes on {d} with a short remark about {a}",
            f"{c} {d} overview " + " ".join(_FILLER[:6]),
            " ".join(_FILLER) + f" including {d}",
        ]
        for j, text in enumerate(texts):
            docs.append({"_id": f"doc{t * 5 + j}", "title": f"{a.title()} report {j}", "text": text})
    return docs


DEFAULT_DOCS: list[dict] = _default_docs()
DEFAULT_QUERIES: list[dict] = [
    {"_id": f"q{t}", "text": f"what is the role of {b} in {a} and {c}"} for t, (a, b, c, _) in enumerate(_TOPICS)
] + [{"_id": "q-train-only", "text": "a query that is not in the test split"}]
DEFAULT_QRELS: list[tuple[str, str, int]] = [
    row
    for t in range(len(_TOPICS))
    for row in ((f"q{t}", f"doc{t * 5}", 2), (f"q{t}", f"doc{t * 5 + 1}", 1), (f"q{t}", f"doc{(t * 5 + 7) % 30}", 0))
]


def _jsonl(records: Iterable[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def _payload(value, default: Sequence[dict]) -> bytes:
    if value is None:
        value = default
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return _jsonl(value)


def make_beir(
    root: Path,
    docs: Sequence[dict] | str | bytes | None = None,
    queries: Sequence[dict] | str | bytes | None = None,
    qrels: Sequence[tuple] | str | bytes | None = None,
    gz: bool = True,
    name: str = "tiny",
    split: str = "test",
) -> Path:
    """Write a BEIR-layout dataset folder ``root/name`` and return its path.

    ``docs`` / ``queries``: records (dicts, written one JSON object a line) or the file's exact
    content as ``str``/``bytes`` (for broken files); ``None`` means the default dataset's.
    ``qrels``: ``(query_id, doc_id, grade)`` rows (the header is added) or the exact content of
    ``qrels/<split>.tsv``. ``gz``: gzip corpus.jsonl and queries.jsonl (BEIR's downloads do).
    """
    folder = Path(root) / name
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    for stem, value, default in (("corpus.jsonl", docs, DEFAULT_DOCS), ("queries.jsonl", queries, DEFAULT_QUERIES)):
        data = _payload(value, default)
        for stale in (folder / stem, folder / f"{stem}.gz"):
            stale.unlink(missing_ok=True)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (folder / stem).write_bytes(data)
    if qrels is None:
        qrels = DEFAULT_QRELS
    if isinstance(qrels, (str, bytes)):
        data = qrels.encode("utf-8") if isinstance(qrels, str) else qrels
    else:
        data = ("query-id\tcorpus-id\tscore\n" + "".join("\t".join(map(str, row)) + "\n" for row in qrels)).encode()
    (folder / "qrels" / f"{split}.tsv").write_bytes(data)
    return folder


@pytest.fixture
def small_beir(tmp_path) -> Path:
    """The default dataset (30 docs, 6 test queries + 1 non-test query), gzipped, at tmp_path/tiny."""
    return make_beir(tmp_path)


# ---------------------------------------------------------------------------------------------
# Running the CLI


def harness_subprocess_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for ``python -m harness`` subprocesses: offline, a private cache and data dir."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        HARNESS_CACHE_DIR=str(tmp / "cache"),
        HARNESS_DATA_DIR=str(tmp / "no-data-dir"),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    env.update(extra)
    return env


@pytest.fixture
def harness_env(tmp_path) -> dict[str, str]:
    return harness_subprocess_env(tmp_path)


#: Python code that makes ``import harness.X`` load the real submodule WITHOUT running
#: harness/__init__.py. For subprocesses that never touch BertHash (bm25 runs, cache and file I/O).
LIGHT_IMPORT = (
    "import sys, types; _pkg = types.ModuleType('harness'); _pkg.__path__ = [{!r}]; sys.modules['harness'] = _pkg\n"
).format(str(REPO / "harness"))


def harness_command(args: Sequence[str], light: bool = False) -> list[str]:
    """``python -m harness ARGS``; ``light=True``: the same ``harness.cli.main`` under :data:`LIGHT_IMPORT`."""
    if light:
        return [sys.executable, "-c", LIGHT_IMPORT + "from harness.cli import main; sys.exit(main())", *args]
    return [sys.executable, "-m", "harness", *args]


def start_harness(args: Sequence[str], env: dict[str, str], light: bool = False, **popen) -> subprocess.Popen:
    """Start ``python -m harness ARGS`` (stdout/stderr captured as text). Always pass --results-dir."""
    return subprocess.Popen(
        harness_command(args, light), cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen,
    )


def run_cli(argv: Sequence[str], capsys) -> tuple[int, str, str]:
    """``harness.cli.main(argv)`` in-process: (exit status, stdout, stderr)."""
    from harness.cli import main

    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """A random-weight BertHash pico (sentence-transformers folder ``pico``) and a ColBERT pico
    (``colbert-pico``, 16-d tokens) in one temporary folder, built once per test module."""
    import torch

    from harness.models import berthash
    from harness.models.colbert import ColBERT

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    dense = berthash.BertHashModel(berthash.pico_config(), add_pooling_layer=False)
    berthash.save_sentence_transformer(dense, berthash.tokenizer_dir(), root / "pico")
    torch.manual_seed(1)
    base = berthash.BertHashModel(berthash.pico_config(), add_pooling_layer=False)
    ColBERT.new(base, token_dim=16, document_length=64, query_length=16).save(root / "colbert-pico")
    return root
