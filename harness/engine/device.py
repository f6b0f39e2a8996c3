"""Which torch device the encoders run on: ``--device auto|cpu|cuda``.

``auto`` picks ``cuda`` when torch sees at least one CUDA device, else ``cpu``. ``cuda`` on a
machine without one is a :class:`HarnessError` (one line), never a silent fall-back to the CPU.
The chosen device is recorded in every result (``method.execution.device``); it is not part of
the vector cache key, because fp32 vectors from any device are the same condition (their bits may
differ in the last places; the numbers are compared to 4 decimals).
"""

from __future__ import annotations

from collections.abc import Callable

from harness.errors import HarnessError

DEVICES = ("auto", "cpu", "cuda")


def cuda_device_count() -> int:
    """CUDA devices torch can use here (0 on a CPU-only build or machine)."""
    import torch

    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken driver install: treat as no GPU
        return 0


def select_device(requested: str, count: Callable[[], int] = cuda_device_count) -> str:
    """``"cpu"`` or ``"cuda"`` for a ``--device`` value; ``count`` returns the CUDA devices present."""
    if requested not in DEVICES:
        raise HarnessError(f"--device {requested}: use one of {', '.join(DEVICES)}")
    if requested == "cpu":
        return "cpu"
    available = count()
    if requested == "cuda" and not available:
        raise HarnessError(
            "--device cuda: torch sees no CUDA device on this machine (CPU-only torch build or no GPU);"
            " use --device cpu or --device auto"
        )
    return "cuda" if available else "cpu"


def device_provenance(device: str) -> dict:
    """What a result records about the device: its name, and the GPU model on CUDA."""
    if device != "cuda":
        return {"device": "cpu"}
    import torch

    return {"device": "cuda", "gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda}
