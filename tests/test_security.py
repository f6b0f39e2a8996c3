"""Nothing a model or checkpoint folder holds runs code unless the user says so."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from harness.errors import HarnessError
from harness.models.weights import require_safetensors
from harness.train.loop import Checkpointer, warmup_linear


def _st_folder(root, root_weights: str, dense_weights: str | None = None):
    """A sentence-transformers layout: modules.json, the transformer at the root, optionally 1_Dense."""
    root.mkdir()
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    (root / root_weights).write_bytes(b"weights")
    if dense_weights:
        (root / "1_Dense").mkdir()
        (root / "1_Dense" / dense_weights).write_bytes(b"weights")
        modules.append({"idx": 1, "name": "1", "path": "1_Dense", "type": "sentence_transformers.models.Dense"})
    (root / "modules.json").write_text(json.dumps(modules))
    return root


def test_a_safetensors_file_elsewhere_does_not_vouch_for_a_pickle_the_loader_reads(tmp_path):
    # The transformer reads pytorch_model.bin; the safetensors file is another module's.
    folder = _st_folder(tmp_path / "m", "pytorch_model.bin", dense_weights="model.safetensors")
    with pytest.raises(HarnessError, match=r"m/pytorch_model.bin: weights are a pickle file"):
        require_safetensors(folder, recursive=True)
    assert require_safetensors(folder, allow_pickle=True, recursive=True) is False
    # A stray .safetensors beside the pickle is not the file transformers opens either.
    (folder / "adapter.safetensors").write_bytes(b"x")
    with pytest.raises(HarnessError, match="pickle"):
        require_safetensors(folder)
    with pytest.raises(HarnessError, match="pickle"):
        require_safetensors(folder, recursive=True)


def test_pickle_in_a_module_folder_is_refused_too(tmp_path):
    folder = _st_folder(tmp_path / "m", "model.safetensors", dense_weights="pytorch_model.bin")
    with pytest.raises(HarnessError, match=r"1_Dense/pytorch_model.bin: weights are a pickle file"):
        require_safetensors(folder, recursive=True)
    safe = _st_folder(tmp_path / "ok", "model.safetensors", dense_weights="model.safetensors")
    assert require_safetensors(safe, recursive=True) is True
    with pytest.raises(HarnessError, match="no model weights found"):
        require_safetensors(_st_folder(tmp_path / "empty", "config.json"), recursive=True)


def test_checkpoint_resumes_with_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = warmup_linear(optimizer, 2, 10)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    settings = {"run.kind": "dense", "kl.steps": 10, "data.datasets": ["scifact", "nfcorpus"], "kl.tau": 0.05}
    ckpt = Checkpointer(tmp_path, resume=False, settings=settings)
    ckpt.state["history"]["kl"] = [(0, 1.5), (10, 0.75)]
    ckpt.state["done"].append("mlm")
    ckpt.save(stage="kl", step=3, model=model.state_dict(), optimizer=optimizer.state_dict(),
              scheduler=scheduler.state_dict(), wall=12.5)
    again = Checkpointer(tmp_path, resume=True, settings=settings)
    assert again.state["history"]["kl"] == [(0, 1.5), (10, 0.75)]
    assert again.state["done"] == ["mlm"] and again.state["step"] == 3 and again.state["wall"] == 12.5
    assert torch.equal(again.state["model"]["weight"], model.state_dict()["weight"])
    optimizer.load_state_dict(again.state["optimizer"])
    scheduler.load_state_dict(again.state["scheduler"])
    assert torch.equal(again.state["torch_rng"], ckpt.state["torch_rng"])


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


@pytest.mark.parametrize("extra", [_Payload(), np.zeros(3)], ids=["code", "numpy"])
def test_checkpoint_holding_other_objects_is_refused_not_unpickled(tmp_path, capsys, extra):
    torch.save({"done": [], "stage": None, "step": 0, "history": {}, "wall": 0.0, "extra": {"x": extra}},
               tmp_path / "checkpoint.pt", )
    with pytest.raises(HarnessError, match=r"checkpoint.pt: not a plain checkpoint, refused"):
        Checkpointer(tmp_path, resume=True)
    assert "code ran" not in capsys.readouterr().out


def test_training_reads_the_shipped_length_without_trusting_folder_code(tmp_path, monkeypatch):
    import shutil

    from harness.registry import models_dir
    from harness.train.dense_base import shipped_length

    folder = tmp_path / "pico"
    shutil.copytree(models_dir() / "pico", folder)
    (folder / "modeling_bert_hash.py").write_text("raise RuntimeError('folder code ran')\n")
    assert shipped_length(folder) == shipped_length(models_dir() / "pico") > 0  # the harness's own code read it
