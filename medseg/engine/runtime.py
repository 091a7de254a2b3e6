"""Small run-time helpers of :class:`~medseg.engine.infer.Segmenter`: device choice, peak
memory, step timing, zero-copy tensors."""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

__all__ = ["Clock", "as_tensor", "norm_modality", "peak_rss_mb", "pick_device"]

_MODALITY_ALIASES = {"MRI": "MR", "MR": "MR", "CT": "CT", "PET": "PT", "PT": "PT"}


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def norm_modality(m: str | None) -> str | None:
    return None if m is None else _MODALITY_ALIASES.get(m.upper(), m.upper())


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB; Linux/macOS)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


class Clock:
    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[f"{name}_s"] = round(now - self.t, 4)
        self.t = now


def as_tensor(a: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``a``'s memory where torch allows it: arrays with negative strides
    (flipped views, e.g. from ``Volume.reorient``) or non-native byte order (big-endian files)
    are copied first. Read-only arrays are shared (never written here)."""
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    elif any(st < 0 for st in a.strides):
        a = a.copy()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(a)
