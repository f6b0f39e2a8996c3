"""Model weight files: the one place that decides which files may be loaded and how they are hashed.

Pickle weights (``.bin``, ``.pt``, ...) can execute code when unpickled, so every loader in the
harness refuses a folder whose weights exist only as pickle files unless the caller allows it
(``--allow-pickle`` on the command line, ``allow_pickle=True`` in Python). The hashes here are what
results record as ``weights_sha256`` and what the vector cache is keyed by.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from harness.errors import HarnessError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
SAFETENSORS = "model.safetensors"
SHARDED_SAFETENSORS_INDEX = "model.safetensors.index.json"


def _hash_into(digest, path: Path) -> None:
    """Feed a file's bytes to ``digest`` in 1 MiB chunks (weights can be hundreds of MB)."""
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)


def file_sha256(path: Path | None) -> str | None:
    """sha256 (hex) of one file's bytes; None when there is no such file."""
    if path is None or not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    _hash_into(digest, Path(path))
    return digest.hexdigest()


def weight_files(folder: Path, recursive: bool = True) -> list[Path]:
    """The folder's safetensors files, else its pickle weight files, sorted by path."""
    found = folder.rglob if recursive else folder.glob
    return sorted(found("*.safetensors")) or sorted(p for p in found("*") if p.suffix in PICKLE_SUFFIXES)


def folder_sha256(folder: Path) -> str:
    """sha256 over a model folder's weight files (:func:`weight_files`): path and bytes of each."""
    digest = hashlib.sha256()
    for path in weight_files(folder):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        _hash_into(digest, path)
    return digest.hexdigest()


def _module_folders(folder: Path) -> list[Path]:
    """The folders a sentence-transformers loader reads weights from: each module's path in
    ``modules.json`` (the root for ``""``), or the folder itself when there is no modules.json."""
    try:
        entries = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [folder]
    if not isinstance(entries, list):
        return [folder]
    paths = [folder / str(e.get("path") or "") for e in entries if isinstance(e, dict)]
    return list(dict.fromkeys(p for p in paths if p.is_dir())) or [folder]


def require_safetensors(folder: Path, allow_pickle: bool = False, recursive: bool = False) -> bool:
    """True when the weights a loader will read from ``folder`` are safetensors; False when some are
    pickle files and ``allow_pickle``; otherwise a one-line ``HarnessError`` naming the pickle file
    (or saying no weights were found).

    What counts is the file the loader opens: ``model.safetensors`` (or its sharded index) in the
    folder, which transformers and sentence-transformers prefer over a pickle beside it; any other
    ``.safetensors`` file does not vouch for a ``pytorch_model.bin`` next to it. ``recursive``: the
    folder is a sentence-transformers model, and every module folder in its ``modules.json`` that
    holds weights is checked the same way.
    """
    folder = Path(folder)
    safe, pickles = 0, []
    for module in _module_folders(folder) if recursive else [folder]:
        if (module / SAFETENSORS).is_file() or (module / SHARDED_SAFETENSORS_INDEX).is_file():
            safe += 1
        else:
            pickles += sorted(p for p in module.glob("*") if p.suffix in PICKLE_SUFFIXES)
    if pickles and allow_pickle:
        return False
    if pickles:
        raise HarnessError(
            f"{pickles[0]}: weights are a pickle file, which can execute code when loaded; convert the model"
            " to safetensors, or pass --allow-pickle (allow_pickle=True in Python) if you trust its source"
        )
    if not safe:
        raise HarnessError(f"{folder}: no model weights found (expected {SAFETENSORS})")
    return True
