"""What ``Segmenter`` was given, loaded once: a medseg bundle, or a foreign model source.

A medseg ``.safetensors`` bundle (native or imported) or a shipped model name loads through
:func:`medseg.models.bundle.load_bundle`; an nnU-Net model folder or a MONAI bundle folder/zip
is converted in memory by :func:`medseg.models.importer.convert` (exactly what
``medseg import-model`` would write); a folder holding several nnU-Net model folders (such as
TotalSegmentator's weights) gives its parts, merged by label name (:mod:`medseg.engine.merge`).
``trust_code`` (MONAI bundles only) runs the bundle's own config instead
(:class:`medseg.models.monai_bundle.TrustedBundle`).
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
    """``kind``: ``"medseg"`` (native bundle), ``"nnunet"``, ``"monai_bundle"``,
    ``"trusted_bundle"`` (``trusted``: the MONAI runner) or ``"parts"`` (several nnU-Net model
    folders, run one after the other and merged by label name; ``trusted``: the folders)."""

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


def _parts(path: Path, folders: list[Path]) -> LoadedModel:
    """Several nnU-Net model folders under ``path`` (TotalSegmentator's parts): described
    here, loaded one by one by the caller (``trusted`` lists the folders)."""
    from medseg import __version__
    from medseg.engine.merge import merged_names
    from medseg.models.nnunet import read_model_folder

    models = [read_model_folder(f) for f in folders]
    if any(m.in_channels != models[0].in_channels for m in models):
        raise ForeignModelError(f"{path}: its model folders take different input channels; "
                                "pass one of them.")
    modalities = {m.modality for m in models}
    meta = BundleMeta(
        medseg_version=__version__,
        network=NetworkSpec(name="nnunet.parts", spatial_dims=3,
                            in_channels=models[0].in_channels, out_channels=2),
        labels=merged_names([m.recipe.labels for m in models]),
        modality=modalities.pop() if len(modalities) == 1 else None,
        preprocess=PreprocessConfig(spacing=None, intensity=IntensityConfig(mode="none")),
        inference=InferenceConfig(roi_size=(1, 1, 1)),
        provenance={"source_format": "nnU-Net model folders (parts merged by label name)",
                    "dataset": path.name, "source_path": str(path),
                    "parts": [m.provenance for m in models]})
    return LoadedModel(path, nn.Identity(), meta, "parts", folders)


def load_model(ref: str | Path, device: torch.device, *, folds: list[str] | None = None,
               checkpoint: str | None = None, trust_code: bool = False) -> LoadedModel:
    """Load ``ref`` for inference on ``device`` (network in eval mode)."""
    from medseg.models.importer import convert, source_kind

    p = Path(ref).expanduser() if not isinstance(ref, Path) else ref
    kind = source_kind(p) if p.exists() and not p.name.endswith(".safetensors") else None
    if trust_code:
        return _trusted(p, device)
    if kind == "nnunet":
        from medseg.models.nnunet import find_model_folders

        folders = find_model_folders(p)
        if len(folders) > 1:
            return _parts(p, folders)
    if kind is not None:
        net, meta = convert(p, folds=folds, checkpoint=checkpoint)
        return LoadedModel(p, net.to(device).eval(), meta, kind)
    if p.is_dir():
        raise ForeignModelError(
            f"{p}: a folder that is neither an nnU-Net model folder (plans.json, dataset.json, "
            "fold_N/) nor a MONAI bundle (configs/metadata.json). Pass one of those, or a "
            ".safetensors bundle.")
    if folds or checkpoint:
        raise ForeignModelError(f"{ref}: --folds/--checkpoint apply to nnU-Net model folders.")
    path = resolve_bundle(ref)
    net, meta = load_bundle(path, device=device)
    return LoadedModel(path, net, meta, (meta.recipe or {}).get("kind", "medseg"))
