"""Resumable training checkpoints (``last.pt``) that load with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors, numbers, strings, lists, tuples and dicts: model, optimiser,
scheduler and AMP-scaler state dicts, the completed epoch and global step, the best validation
score, and every random state (Python, NumPy, torch CPU/CUDA and each MONAI random transform of
the training pipeline), so a resumed run draws the same patches it would have drawn.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import Compose, Randomizable

from medseg.errors import BundleError
from medseg.io.atomic import atomic_path

__all__ = ["capture_rng", "load_checkpoint", "restore_rng", "save_checkpoint"]


def _np_state(state: tuple[Any, ...]) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}


def _np_tuple(d: dict[str, Any]) -> tuple[Any, ...]:
    return (d["name"], d["keys"].numpy().astype(np.uint32), d["pos"], d["has_gauss"],
            d["cached"])


def _randomizables(pipeline: Compose | None) -> list[Randomizable]:
    if pipeline is None:
        return []
    return [t for t in pipeline.flatten().transforms if isinstance(t, Randomizable)]


def capture_rng(pipeline: Compose | None = None) -> dict[str, Any]:
    """Every random state that affects training, in a ``weights_only``-loadable form."""
    out: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _np_state(tuple(np.random.get_state(legacy=True))),
        "torch": torch.get_rng_state(),
        "transforms": [_np_state(tuple(t.R.get_state(legacy=True)))
                       for t in _randomizables(pipeline)],
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict[str, Any], pipeline: Compose | None = None) -> None:
    """Inverse of :func:`capture_rng` (the pipeline must have the same random transforms)."""
    random.setstate(state["python"])
    np.random.set_state(_np_tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    ts = _randomizables(pipeline)
    if len(ts) == len(state["transforms"]):
        for t, s in zip(ts, state["transforms"], strict=True):
            t.R.set_state(_np_tuple(s))


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """``torch.save`` ``payload`` atomically."""
    p = Path(path)
    with atomic_path(p) as tmp:
        torch.save(payload, tmp)
    return p


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint without unpickling arbitrary objects."""
    p = Path(path)
    if not p.is_file():
        raise BundleError(f"{p}: no checkpoint to resume from. Train without --resume first.")
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of a foreign or corrupt file
        raise BundleError(f"{p}: not a medseg training checkpoint ({exc}).") from exc
    if not isinstance(data, dict) or "model" not in data or "epoch" not in data:
        raise BundleError(f"{p}: not a medseg training checkpoint (keys missing).")
    return data
