"""Builders of MONAI dictionary-transform pipelines from config; shared by training and inference.

Arrays flowing through these pipelines are channel-first ``MetaTensor``s ``(C, X, Y, Z)`` whose
``affine`` maps voxel indices to **RAS** world millimetres (MONAI's convention; a
:class:`~medseg.volume.Volume` supplies ``volume.affine_ras``). Keys: ``"image"`` (float32)
and, in training/validation, ``"label"`` (integer label values, one channel).

The deterministic part (:func:`preprocess_transforms`) is the same list in every pipeline:
orientation -> target spacing -> intensity normalisation -> optional foreground crop. The
inference pipeline is only that part, so ``Compose.inverse`` maps predictions back to the input
grid (intensity transforms are not invertible and are skipped by the inverse).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai import transforms as mt

from medseg.config import AugmentConfig, IntensityConfig, MedsegConfig, PreprocessConfig

__all__ = ["BUNDLE_INTENSITY", "build_infer_transforms", "build_train_transforms",
           "build_val_transforms", "bundle_intensity_transforms",
           "intensity_transform", "load_transforms", "preprocess_transforms",
           "spatial_transforms"]


#: nibabel/MONAI axis-code convention: each pair is (low end, high end) of an axis.
_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def _above_minimum(x: torch.Tensor) -> torch.Tensor:
    """Foreground for cropping: voxels brighter than the (normalised) image minimum."""
    return x > x.min()


def intensity_transform(cfg: IntensityConfig, key: str = "image") -> list[mt.MapTransform]:
    """The intensity normalisation of ``cfg`` on ``key`` (float32 output)."""
    if cfg.mode == "ct":
        lo, hi = cfg.window
        return [mt.ScaleIntensityRanged(key, a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True,
                                        dtype=np.float32)]
    if cfg.mode == "mr_percentile":
        lo, hi = cfg.percentiles
        return [mt.ScaleIntensityRangePercentilesd(key, lower=lo, upper=hi, b_min=0.0, b_max=1.0,
                                                   clip=True, channel_wise=True,
                                                   dtype=np.float32)]
    if cfg.mode == "zscore":
        return [mt.NormalizeIntensityd(key, nonzero=True, channel_wise=True, dtype=np.float32)]
    return [mt.EnsureTyped(key, dtype=torch.float32)]


def spatial_transforms(cfg: PreprocessConfig, keys: Sequence[str] = ("image",), *,
                       lazy: bool = False) -> list[mt.MapTransform]:
    """Orientation, then target spacing (bilinear for ``keys[0]``, nearest for the others).
    With ``lazy`` MONAI only records the operations (the pending affine and shape give the
    output grid without resampling)."""
    keys = list(keys)
    modes = ["bilinear"] + ["nearest"] * (len(keys) - 1)
    out: list[mt.MapTransform] = [
        mt.Orientationd(keys, axcodes=cfg.orientation, labels=_RAS_LABELS, lazy=lazy)]
    if cfg.spacing is not None:
        pixdim = [-1.0 if s is None else float(s) for s in cfg.spacing]  # <= 0: keep native
        out.append(mt.Spacingd(keys, pixdim=pixdim, mode=modes, dtype=np.float32, lazy=lazy))
    return out


def preprocess_transforms(cfg: PreprocessConfig, keys: Sequence[str] = ("image",)
                          ) -> list[mt.MapTransform]:
    """Deterministic, invertible-where-spatial preprocessing. ``keys[0]`` is the image; any
    further key is a label map (nearest-neighbour resampling)."""
    keys = list(keys)
    out = spatial_transforms(cfg, keys)
    out += intensity_transform(cfg.intensity, keys[0])
    if cfg.foreground_crop:
        out.append(mt.CropForegroundd(keys, source_key=keys[0], select_fn=_above_minimum,
                                      margin=2, allow_smaller=True))
    return out


class SelectLabelsd(mt.MapTransform):
    """Keep the label values in ``mapping`` (source -> new value); all others become 0."""

    def __init__(self, keys: str, mapping: dict[int, int]) -> None:
        super().__init__(keys)
        self.mapping = dict(mapping)

    def __call__(self, data: Any) -> dict[str, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            lab = d[key]
            out = torch.zeros_like(lab) if isinstance(lab, torch.Tensor) else np.zeros_like(lab)
            for src, dst in self.mapping.items():
                out[lab == src] = dst
            d[key] = out
        return d


def load_transforms(keys: Sequence[str] = ("image", "label"),
                    label_mapping: dict[int, int] | None = None) -> list[mt.MapTransform]:
    """Read files (NIfTI/NRRD/... through MONAI readers) to channel-first MetaTensors; with
    ``label_mapping`` ({file value: new value}, ``DataConfig.label_mapping()``) the label key
    is renumbered and every other value becomes background."""
    out: list[mt.MapTransform] = [mt.LoadImaged(list(keys), image_only=True),
                                  mt.EnsureChannelFirstd(list(keys))]
    if label_mapping and len(keys) > 1:
        out.append(SelectLabelsd(keys[1], label_mapping))
    return out


def _augment(cfg: AugmentConfig, patch: Sequence[int], nd: int) -> list[mt.MapTransform]:
    """Random patch sampling (by label) then spatial and intensity augmentation.

    ``patch`` is the 3D crop size; for 2D training its last entry is 1 (one slice).
    """
    keys = ["image", "label"]
    pos, neg = cfg.pos_neg
    out: list[mt.MapTransform] = [
        mt.SpatialPadd(keys, spatial_size=list(patch)),
        mt.RandCropByPosNegLabeld(keys, label_key="label", spatial_size=list(patch), pos=pos,
                                  neg=neg, num_samples=cfg.num_samples, image_key="image",
                                  image_threshold=0.0, allow_smaller=False),
    ]
    if nd == 2:
        out.append(mt.SqueezeDimd(keys, dim=-1))
    if not cfg.enabled:
        return out
    for axis in sorted(set(cfg.flip_axes)):
        if cfg.flip_prob > 0 and axis < nd:
            out.append(mt.RandFlipd(keys, prob=cfg.flip_prob, spatial_axis=axis))
    if cfg.rotate_prob > 0 or cfg.scale_prob > 0:
        rad = float(np.deg2rad(cfg.rotate_deg))
        prob = max(cfg.rotate_prob, cfg.scale_prob)
        out.append(mt.RandAffined(
            keys, prob=prob, rotate_range=[rad] * (1 if nd == 2 else 3),
            scale_range=[cfg.scale_range] * nd, mode=("bilinear", "nearest"),
            padding_mode="zeros"))
    if cfg.intensity_scale_prob > 0:
        out.append(mt.RandScaleIntensityd("image", factors=cfg.intensity_scale,
                                          prob=cfg.intensity_scale_prob))
    if cfg.intensity_shift_prob > 0:
        out.append(mt.RandShiftIntensityd("image", offsets=cfg.intensity_shift,
                                          prob=cfg.intensity_shift_prob))
    if cfg.noise_prob > 0:
        out.append(mt.RandGaussianNoised("image", prob=cfg.noise_prob, std=cfg.noise_std))
    return out


def _patch3d(cfg: MedsegConfig) -> tuple[int, int, int]:
    p = cfg.train.patch_size
    return (p[0], p[1], 1) if cfg.model.spatial_dims == 2 else (p[0], p[1], p[2])


def build_train_transforms(cfg: MedsegConfig) -> mt.Compose:
    """Files -> preprocessed -> ``num_samples`` random patches per case (2D: single slices,
    squeezed to ``(C, X, Y)``). ``label`` stays integer-valued."""
    keys = ("image", "label")
    steps = [*load_transforms(keys, cfg.data.label_mapping()),
             *preprocess_transforms(cfg.preprocess, keys),
             mt.EnsureTyped(list(keys), dtype=torch.float32, track_meta=True),
             *_augment(cfg.augment, _patch3d(cfg), cfg.model.spatial_dims)]
    return mt.Compose(steps)


def build_val_transforms(cfg: MedsegConfig) -> mt.Compose:
    """Files -> preprocessed whole volumes ``(C, X, Y, Z)`` for sliding-window validation."""
    keys = ("image", "label")
    return mt.Compose([*load_transforms(keys, cfg.data.label_mapping()),
                       *preprocess_transforms(cfg.preprocess, keys),
                       mt.EnsureTyped(list(keys), dtype=torch.float32)])


def build_infer_transforms(cfg: PreprocessConfig) -> mt.Compose:
    """In-memory ``{"image": MetaTensor (C, I, J, K), RAS affine}`` -> preprocessed image.

    Its ``inverse`` maps a prediction carrying the image's ``applied_operations`` back to
    the input grid.
    """
    return mt.Compose(preprocess_transforms(cfg, ("image",)))


def describe(pipeline: mt.Compose) -> list[dict[str, Any]]:
    """Names of the transforms in a pipeline (for logs and docs)."""
    return [{"transform": type(t).__name__} for t in pipeline.flatten().transforms]


#: MONAI intensity transforms an imported MONAI bundle may name (medseg.models.monai_bundle)
BUNDLE_INTENSITY = ("ScaleIntensityRanged", "ScaleIntensityRangePercentilesd",
                    "NormalizeIntensityd", "ScaleIntensityd", "ThresholdIntensityd",
                    "ClipIntensityPercentilesd")


def bundle_intensity_transforms(specs: Sequence[dict[str, Any]], key: str = "image"
                                ) -> list[mt.MapTransform]:
    """The intensity steps of an imported MONAI bundle (``BundleMeta.recipe["intensity"]``:
    ``[{"name": ..., "args": {...}}]``), built as MONAI's own classes on ``key``, followed by a
    float32 cast. Names outside :data:`BUNDLE_INTENSITY` raise ``ValueError``."""
    out: list[mt.MapTransform] = []
    for spec in specs:
        name = spec["name"]
        if name not in BUNDLE_INTENSITY:
            raise ValueError(f"intensity transform {name!r} is not allowed")
        out.append(getattr(mt, name)(keys=key, **dict(spec.get("args", {}))))
    return [*out, mt.EnsureTyped(key, dtype=torch.float32)]
