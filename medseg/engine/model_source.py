"""What ``Segmenter`` was given, loaded once: a medseg bundle, or a foreign model source.

A medseg ``.safetensors`` bundle (native or imported) or a shipped model name loads through
:func:`medseg.models.bundle.load_bundle`; an nnU-Net model folder or a MONAI bundle folder/zip
is converted in memory by :func:`medseg.models.importer.convert` (exactly what
``medseg import-model`` would write). ``trust_code`` (MONAI bundles only) runs the bundle's own
config instead (:class:`medseg.models.monai_bundle.TrustedBundle`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medseg.config import InferenceConfig, IntensityConfig, PreprocessConfig
from medseg.errors import ForeignModelError
from medseg.models.bundle import BundleMeta, NetworkSpec, load_bundle, resolve_bundle

__all__ = ["LoadedModel", "load_model"]


@dataclass
class LoadedModel:
    """``kind``: ``"medseg"`` (native bundle), ``"nnunet"``, ``"monai_bundle"`` or
    ``"trusted_bundle"``; ``trusted`` holds the MONAI runner of the last."""

    path: Path
    net: nn.Module
    meta: BundleMeta
    kind: str
    trusted: Any = None


def _trusted(path: Path, device: torch.device) -> LoadedModel:
    from medseg import __version__
    from medseg.models.importer import source_kind
    from medseg.models.monai_bundle import TrustedBundle

    if source_kind(path) != "monai_bundle":
        raise ForeignModelError(f"{path}: --trust-code applies to MONAI bundles only.")
    tb = TrustedBundle(path, device)
    nd = int(getattr(tb.net, "dimensions", 0) or getattr(tb.net, "spatial_dims", 0) or 3)
    meta = BundleMeta(
        medseg_version=__version__,
        network=NetworkSpec(name="monai.trusted", spatial_dims=2 if nd == 2 else 3,
                            in_channels=int(getattr(tb.net, "in_channels", 1) or 1),
                            out_channels=max(2, tb.out_channels)),
        labels=tb.labels, preprocess=PreprocessConfig(spacing=None,
                                                      intensity=IntensityConfig(mode="none")),
        inference=InferenceConfig(roi_size=(1, 1, 1)),
        provenance={"source_format": "MONAI bundle (own config, --trust-code)",
                    "source_path": str(path)})
    return LoadedModel(path, tb.net, meta, "trusted_bundle", tb)


def load_model(ref: str | Path, device: torch.device, *, folds: list[str] | None = None,
               checkpoint: str | None = None, trust_code: bool = False) -> LoadedModel:
    """Load ``ref`` for inference on ``device`` (network in eval mode)."""
    from medseg.models.importer import convert, source_kind

    p = Path(ref).expanduser() if not isinstance(ref, Path) else ref
    kind = source_kind(p) if p.exists() and not p.name.endswith(".safetensors") else None
    if trust_code:
        return _trusted(p, device)
    if kind is not None:
        net, meta = convert(p, folds=folds, checkpoint=checkpoint)
        return LoadedModel(p, net.to(device).eval(), meta, kind)
    if folds or checkpoint:
        raise ForeignModelError(f"{ref}: --folds/--checkpoint apply to nnU-Net model folders.")
    path = resolve_bundle(ref)
    net, meta = load_bundle(path, device=device)
    return LoadedModel(path, net, meta, (meta.recipe or {}).get("kind", "medseg"))
