"""Shipped checkpoints load silently, with identical vectors, through the three usage paths a user
has without the harness: sentence-transformers, transformers AutoModel + mean pooling, txtai."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

# Runs WITHOUT the harness importable (PYTHONPATH empty, cwd outside the repository): the folder's
# own shipped code is what loads, as it would for a user who only downloaded the folder.
SCRIPT = r"""
import json, sys
import numpy as np, torch
pico, colbert = sys.argv[1], sys.argv[2]
texts = ["a protein that binds dna", "glacier melting in the arctic", "x"]
from sentence_transformers import SentenceTransformer
st = SentenceTransformer(pico, trust_remote_code=True, device="cpu")
a = st.encode(texts, convert_to_numpy=True)
from transformers import AutoModel, AutoTokenizer
tok = AutoTokenizer.from_pretrained(pico, trust_remote_code=True)
model = AutoModel.from_pretrained(pico, trust_remote_code=True).eval()
batch = tok(texts, padding=True, truncation=True, max_length=st.max_seq_length, return_tensors="pt")
with torch.no_grad():
    h = model(**batch).last_hidden_state
m = batch["attention_mask"].unsqueeze(-1).float()
b = ((h * m).sum(1) / m.sum(1)).numpy()
from txtai import Embeddings
c = Embeddings(path=pico, vectors={"trust_remote_code": True}, content=False).batchtransform(texts)
unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)
colbert_model = AutoModel.from_pretrained(colbert, trust_remote_code=True)
print(json.dumps({"st_vs_auto": float(np.abs(a - b).max()), "st_vs_txtai": float(np.abs(unit(a) - c).max()),
                  "pooler": model.pooler is not None, "colbert_pooler": colbert_model.pooler is not None}))
"""


@pytest.mark.parametrize("folders", [("pico", "colbert-pico"), ("pico-adapted", "colbert-pico-adapted")])
def test_shipped_checkpoints_load_silently_with_identical_vectors(tmp_path, folders):
    env = {**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TRANSFORMERS_VERBOSITY": "info", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    done = subprocess.run([sys.executable, "-c", SCRIPT, *(str(REPO / "models" / f) for f in folders)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    output = done.stdout + done.stderr
    for word in ("MISSING", "newly initialized", "LOAD REPORT"):
        assert word not in output, output[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"st_vs_auto": 0.0, "st_vs_txtai": pytest.approx(0.0, abs=1e-6), "pooler": False,
                      "colbert_pooler": False}


def test_saved_encoder_records_that_it_has_no_pooler(tmp_path):
    from harness.models.berthash import BertHashModel, femto_config, save_sentence_transformer, tokenizer_dir

    out = save_sentence_transformer(BertHashModel(femto_config(), add_pooling_layer=False), tokenizer_dir(),
                                    tmp_path / "femto")
    assert json.loads((out / "config.json").read_text())["add_pooling_layer"] is False
    from transformers import AutoModel

    assert AutoModel.from_pretrained(out).pooler is None  # the registered class reads the config too
    shipped = (REPO / "harness" / "models" / "hf_modeling" / "modeling_bert_hash.py").read_text()
    for folder in ("pico", "colbert-pico", "pico-adapted", "colbert-pico-adapted"):  # the shipped code is the current code
        assert (REPO / "models" / folder / "modeling_bert_hash.py").read_text() == shipped
