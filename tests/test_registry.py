"""harness.registry: what a --model value resolves to, and model kinds as data."""

from __future__ import annotations

import pytest

from harness import registry, stages
from harness.errors import HarnessError


def test_every_kind_builds_its_stage_and_says_what_it_can_do():
    assert set(registry.KINDS) == {"bm25", "dense", "colbert", "muvera"}
    assert registry.KINDS["muvera"].first_stage is stages.fde_stage
    assert registry.KINDS["colbert"].first_stage is stages.maxsim_stage
    assert [k for k, kind in registry.KINDS.items() if kind.reranks] == ["colbert", "muvera"]
    assert registry.KINDS["bm25"].training is None and registry.KINDS["muvera"].training == "colbert"
    assert all(spec.kind in registry.KINDS for spec in registry.MODELS.values())


def test_names_resolve_to_their_checkpoint_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_MODELS_DIR", str(tmp_path))
    (tmp_path / "colbert-pico").mkdir()
    spec, path = registry.resolve("muvera-pico")
    assert (spec.kind, path) == ("muvera", str(tmp_path / "colbert-pico"))
    assert registry.resolve("bm25") == (registry.MODELS["bm25"], None)
    with pytest.raises(HarnessError, match=r"model 'pico' needs its checkpoint in .*pico.*harness train"):
        registry.resolve("pico")


def test_kind_prefixes_folders_and_hub_ids(tmp_path):
    folder = tmp_path / "my-colbert"
    folder.mkdir()
    spec, path = registry.resolve(f"colbert:{folder}")
    assert (spec.name, spec.kind, path) == ("my-colbert", "colbert", str(folder))
    assert registry.resolve(f"muvera:{folder}")[0].kind == "muvera"
    assert registry.resolve(str(folder))[0].kind == "dense"  # a bare folder is a dense encoder
    assert registry.resolve("owner/model") == (registry.ModelSpec("owner/model", "dense"), "owner/model")
    with pytest.raises(HarnessError, match="model folder not found"):
        registry.resolve(f"colbert:{tmp_path / 'missing'}")
    with pytest.raises(HarnessError, match=r"unknown model 'bm25:x'.*colbert:PATH, muvera:PATH"):
        registry.resolve("bm25:x")  # bm25 takes no folder
