"""Training configs: a TOML file plus ``--set key=value`` overrides, where its folders are, and which
of its values decide the trained weights (what a ``--resume`` must match)."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

from harness.data import default_data_dir
from harness.errors import HarnessError


def _parse_value(raw: str):
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # bare string


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """``key.sub=value`` pairs; values are TOML literals (``3``, ``1e-3``, ``true``, ``[1,2]``) or
    bare strings. Unknown keys are an error (a typo should not silently do nothing)."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or []:
        if "=" not in item:
            raise HarnessError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = cfg
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise HarnessError(f"--set {key}: no section {p!r} in the config")
            node = node[p]
        if parts[-1] not in node:
            raise HarnessError(f"--set {key}: unknown key (known: {', '.join(sorted(node))})")
        node[parts[-1]] = _parse_value(raw.strip())
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> dict:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            cfg = tomllib.load(f)
    except FileNotFoundError:
        raise HarnessError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise HarnessError(f"{path}: {e}") from None
    return apply_overrides(cfg, overrides or [])


REPO = Path(__file__).resolve().parents[2]


def _folder(value: str | None) -> Path:
    """A config folder: "" = the harness's BEIR data folder (``$HARNESS_DATA_DIR``, else
    ``../shared/data/beir`` beside the checkout); a relative path is relative to the checkout, so
    training runs from any working directory."""
    if not value:
        return default_data_dir()
    path = Path(value)
    return path if path.is_absolute() else REPO / path


def data_root(cfg: dict) -> Path:
    """Where ``data.datasets`` / ``data.sources`` are read: ``data.root``."""
    return _folder(cfg["data"].get("root"))


def beir_root(cfg: dict) -> Path:
    """The BEIR folders ``data.exclude_queries_of`` names: ``data.beir_root``."""
    return _folder(cfg["data"].get("beir_root"))


def eval_root(cfg: dict) -> Path:
    """Where the self-check's ``eval.datasets`` are read: ``eval.root``, else ``data.root``."""
    return _folder(cfg["eval"].get("root")) if "root" in cfg["eval"] else data_root(cfg)


# Config values that do not change a run's weights: where it writes, how many threads it uses,
# how often it checkpoints, the self-check, the card and the averaging plan (each member has its own run).
_NOT_SETTINGS = {"run": {"out", "run_dir", "threads"}, "data": {"root", "beir_root"}}
_NOT_SETTINGS_SECTIONS = {"checkpoint", "eval", "card", "average"}


def run_settings(cfg: dict) -> dict[str, object]:
    """``{"section.key": value}`` of every config value that decides the trained weights."""
    return {f"{sec}.{k}": v for sec, body in cfg.items() if isinstance(body, dict) and sec not in _NOT_SETTINGS_SECTIONS
            for k, v in body.items() if k not in _NOT_SETTINGS.get(sec, ())}
