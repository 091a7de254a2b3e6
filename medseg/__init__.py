"""medseg: geometry-exact medical volumetric segmentation.

The light core (``Volume``, ``read``, ``write``) is imported eagerly; the rest is loaded on
first use so ``import medseg`` stays fast and does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from medseg.errors import MedsegError
from medseg.io import list_series, read, write
from medseg.volume import Volume

__version__ = "0.1.0"

#: public name -> module that defines it (imported lazily)
_LAZY = {
    "evaluate_label_maps": "medseg.metrics",
    "surface_distances": "medseg.metrics",
    "LabelMetrics": "medseg.metrics",
    "resample_to": "medseg.resample",
    "export": "medseg.export",
    "read_mask": "medseg.export",
    "evaluate_case": "medseg.report",
    "evaluate_cohort": "medseg.report",
    "Segmenter": "medseg.engine.infer",
    "load_config": "medseg.config",
    "Trainer": "medseg.engine.train",
}

__all__ = ["MedsegError", "Volume", "__version__", "list_series", "read", "write", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medseg' has no attribute {name!r}")
