"""The nnU-Net inference recipe: everything ``nnUNetPredictor`` reads from ``plans.json``,
``dataset.json`` and the checkpoint, as one typed, JSON-serialisable record.

It is built once from a model folder (:mod:`medseg.models.nnunet.folder`) and stored in an
imported medseg bundle (``BundleMeta.recipe``), so a bundle runs exactly like its folder.
Axes: nnU-Net's, i.e. SimpleITK array order ``(z, y, x)`` of the stored voxels, then
``transpose_forward``; ``spacing`` and ``patch_size`` are in the transposed order.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ChannelNorm", "NnUnetRecipe", "Resampling"]

NormScheme = Literal["CTNormalization", "ZScoreNormalization", "NoNormalization",
                     "RescaleTo01Normalization", "RGBTo01Normalization"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resampling(_Frozen):
    """``resample_data_or_seg_to_shape`` keyword arguments: spline ``order`` in-plane (all
    axes without separate-z), ``order_z`` along the low-resolution axis with separate-z,
    ``force_separate_z`` (``None``: decided by the anisotropy threshold)."""

    order: int = Field(ge=0, le=5)
    order_z: int = Field(default=0, ge=0, le=5)
    force_separate_z: bool | None = None


class ChannelNorm(_Frozen):
    """One input channel's normalisation (nnU-Net's ``ImageNormalization`` classes):
    ``CTNormalization`` clips to ``[lower, upper]`` (the 0.5/99.5 foreground percentiles) then
    ``(x - mean) / max(std, 1e-8)``; ``ZScoreNormalization`` uses the image's own mean and std
    (inside the non-zero mask when ``use_mask``); the others are as named."""

    scheme: NormScheme
    use_mask: bool = False
    mean: float | None = None
    std: float | None = None
    lower: float | None = None
    upper: float | None = None


class NnUnetRecipe(_Frozen):
    """nnUNetPredictor's behaviour for one trained configuration."""

    kind: Literal["nnunet"] = "nnunet"
    configuration: str
    spatial_dims: Literal[2, 3]
    patch_size: tuple[int, ...]
    #: the configuration's target spacing (2 entries for 2d: the slice spacing is kept)
    spacing: tuple[float, ...]
    transpose_forward: tuple[int, int, int] = (0, 1, 2)
    transpose_backward: tuple[int, int, int] = (0, 1, 2)
    channels: tuple[ChannelNorm, ...]
    channel_names: tuple[str, ...]
    resample_data: Resampling = Resampling(order=3)
    resample_probabilities: Resampling = Resampling(order=1)
    #: ``inference_allowed_mirroring_axes`` of the trainer (``None``: no mirroring)
    mirror_axes: tuple[int, ...] | None = None
    tile_step_size: float = Field(default=0.5, gt=0, le=1)
    #: output value -> name (value 0 is background)
    labels: dict[int, str]
    #: region-based models: output values painted in this order where sigmoid > 0.5
    regions_class_order: tuple[int, ...] | None = None
    anisotropy_threshold: float = 3.0

    @property
    def num_heads(self) -> int:
        """Output channels of the network."""
        if self.regions_class_order is not None:
            return len(self.regions_class_order)
        return len(self.labels) + 1
