"""Atomic file writes: a killed or concurrent run never leaves a half-written file behind."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path


def _new_file_mode() -> int:
    """The mode ``open()`` would give a new file (0o666 minus the umask); mkstemp's own is 0o600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_NEW_FILE_MODE = _new_file_mode()  # read once: os.umask is process-wide, so never flip it while writing


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a unique temporary file in the same folder, then rename.

    ``os.replace`` is atomic on POSIX: readers see the old file or the new one, never a mix, and two
    writers of the same path each leave a whole file (the last rename wins).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _NEW_FILE_MODE)  # readable like any other file the user writes, not owner-only
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, value, sort_keys: bool = False) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=sort_keys, ensure_ascii=False) + "\n").encode())


def atomic_save_figure(path: Path, figure, **savefig_kwargs) -> None:
    """Render a matplotlib figure as PNG in memory, then write it atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", **savefig_kwargs)
    atomic_write_bytes(path, buffer.getvalue())
