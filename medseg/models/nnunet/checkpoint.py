"""Reading nnU-Net checkpoints (``fold_N/checkpoint_final.pth``) without running pickled code.

nnU-Net saves a pickled dict (``network_weights``, ``init_args``, ``trainer_name``,
``inference_allowed_mirroring_axes``, optimizer state, logs). ``nnUNetPredictor`` opens it with
``torch.load(weights_only=False)``, which runs whatever the pickle asks for. medseg uses
``torch.load(weights_only=True)``: only tensors, containers, numbers, strings and
``torch.device`` are rebuilt, plus the smallest allow-list nnU-Net's own files need (numpy
scalars in the training log: ``numpy.core.multiarray.scalar``, ``numpy.dtype`` and the
numpy dtype classes). A pickle that names any other global (``os.system``, ``builtins.eval``,
a class with a ``__reduce__``...) is refused before anything is built, so a payload never runs.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.errors import ForeignModelError, UnsafeModelError

__all__ = ["ALLOWED_GLOBALS", "NnUnetCheckpoint", "load_checkpoint"]


def _numpy_globals() -> list[Any]:
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    dtypes = [getattr(np.dtypes, n) for n in ("Float64DType", "Float32DType", "Float16DType",
                                              "Int64DType", "Int32DType", "BoolDType")]
    return [scalar, np.dtype, *dtypes]


#: globals a checkpoint may name besides torch's own weights-only set
ALLOWED_GLOBALS: list[Any] = _numpy_globals()


@dataclass(frozen=True)
class NnUnetCheckpoint:
    """The parts of a checkpoint inference needs. ``weights`` is nnU-Net's (DNA-named)
    ``state_dict``; ``mirror_axes`` the trainer's ``inference_allowed_mirroring_axes``."""

    path: Path
    weights: dict[str, torch.Tensor]
    trainer_name: str
    configuration: str
    mirror_axes: tuple[int, ...] | None
    epoch: int | None


def _load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        detail = next((ln.strip() for ln in first if "GLOBAL" in ln or "Unsupported" in ln),
                      first[0] if first else "")
        raise UnsafeModelError(
            f"{path}: refused to load: the checkpoint asks to rebuild Python objects outside "
            f"medseg's allow-list ({detail[:160]}), which could run code. Only tensors, numbers "
            "and numpy scalars are loaded; get the model from a source you trust and re-save it "
            "with nnU-Net.") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, TypeError) as exc:
        why = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ForeignModelError(f"{path}: not a readable nnU-Net checkpoint ({why}). Check the "
                                "file is complete (re-download or re-copy it).") from None


def load_checkpoint(path: str | Path) -> NnUnetCheckpoint:
    """Load ``path`` safely (see the module docstring) and check its structure.

    Raises:
        UnsafeModelError: the pickle names a global outside the allow-list.
        ForeignModelError: unreadable, truncated, or not an nnU-Net checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise ForeignModelError(f"{p}: checkpoint not found. An nnU-Net model folder holds "
                                "fold_N/checkpoint_final.pth (or checkpoint_best.pth).")
    raw = _load(p)
    if not isinstance(raw, dict) or not isinstance(raw.get("network_weights"), dict):
        raise ForeignModelError(f"{p}: not an nnU-Net v2 checkpoint (no 'network_weights'). "
                                "Pass the trained model folder nnU-Net wrote.")
    weights = raw["network_weights"]
    bad = [k for k, v in weights.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ForeignModelError(f"{p}: network_weights entry {bad[0]!r} is not a tensor.")
    init = raw["init_args"] if isinstance(raw.get("init_args"), dict) else {}
    axes = raw.get("inference_allowed_mirroring_axes")
    return NnUnetCheckpoint(
        path=p, weights=weights, trainer_name=str(raw.get("trainer_name", "")),
        configuration=str(init.get("configuration", "")),
        mirror_axes=None if axes is None else tuple(int(a) for a in axes),
        epoch=int(raw["current_epoch"]) if isinstance(raw.get("current_epoch"), int) else None)
