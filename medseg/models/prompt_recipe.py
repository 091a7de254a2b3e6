"""The one contract of a promptable model: its recipe, and the weights JSON that carries it.

A :class:`PromptRecipe` says how a slice and its prompts become model inputs and how the
model's logits become a mask. The training sampler (:mod:`medseg.data.prompt_slices`), the
runtime (:class:`medseg.models.promptable.PromptModel`, :mod:`medseg.engine.prompt`), the
benches, the CLI and the app all call the methods below, so training and serving preprocess
identically (tested on the same slice). Slices are 2D arrays indexed ``[row, col] = [y, x]``.

1. **Intensities** (:meth:`PromptRecipe.intensity_range`, once per volume): a CT (the one
   modality decision, :mod:`medseg.modality`) uses ``ct_window`` (HU) when the recipe has
   one; everything else the ``percentiles`` of the volume's finite voxels (at most 2 M,
   evenly strided). :meth:`PromptRecipe.to_0_255` maps that range to [0, 255].
2. **Size** (:meth:`PromptRecipe.resize_for`): ``resize="longest"`` scales the longest side to
   ``image_size`` (``int(side * scale + 0.5)``, as segment-anything's ``ResizeLongestSide``)
   and pads bottom/right; ``"stretch"`` resizes to ``image_size`` squared (MedSAM).
   :meth:`PromptRecipe.resample` interpolates (``interpolation``, ``antialias``).
3. **Normalisation** (:meth:`PromptRecipe.normalize`): ``"mean_std"`` is
   ``(x - pixel_mean) / pixel_std`` on [0, 255] (SAM); ``"minmax"`` maps each image's range to
   [0, 1] (MedSAM). The grey slice is replicated over 3 channels; padding is 0 after
   normalisation (SAM's ``Sam.preprocess``).
4. **Prompts** (:class:`Resize`): ``coords="indices"`` scales inclusive voxel indices
   (``x * sx``: SAM's predictor, MedSAM's ``box / [W, H, W, H] * 1024``); ``"edges"`` maps a
   box to its voxels' outer edges and a click to its voxel's centre. The training sampler
   draws its boxes and clicks in the same convention.
5. **Masks**: logits above ``mask_threshold`` (a calibration of trained weights; 0 for SAM).
   Click-only prompts of a model with a RoI decoder are decoded in a square of
   ``click_square`` of the input side around the clicks, then in the first mask's box grown
   by ``click_grow`` of its size per side.

Weights JSON (``NAME.json`` next to ``NAME.safetensors``; :func:`read_description`,
:func:`write_description`)::

    {"format": "medseg-promptable", "format_version": 2, "name": str, "version": str,
     "recipe": {PromptRecipe fields}, "builder": "medseg.models.<module>:<function>",
     "arch": {builder keyword arguments}, "training": {...}}

Version-1 files (a ``spec`` section, the mask threshold and pixel statistics in ``arch``) are
read and converted; only version 2 is written.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F

from medseg.errors import PromptModelError
from medseg.io.atomic import write_text_atomic
from medseg.models.strict import from_mapping

__all__ = ["FORMAT", "SAM_PIXEL_MEAN", "SAM_PIXEL_STD", "ModelDescription", "PromptRecipe",
           "Resize", "check_builder", "lite_recipe", "medsam_recipe", "read_description",
           "sam_recipe", "write_description"]

FORMAT = "medseg-promptable"
Coords = Literal["indices", "edges"]
Resizing = Literal["longest", "stretch"]
Interpolation = Literal["bilinear", "bicubic"]
Normalization = Literal["mean_std", "minmax"]
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
#: MedSAM's abdomen window (level 40, width 400), the lite model's CT window
ABDOMEN_WINDOW = (-160.0, 240.0)
MAX_RANGE_SAMPLE = 2_000_000


@dataclass(frozen=True)
class Resize:
    """Mapping between a slice ``[H, W]`` (rows = y, cols = x) and the square model input."""

    original_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    input_size: int
    #: the recipe's prompt convention: True = pixel edges/centres ("edges")
    edges: bool = False

    @property
    def scale_xy(self) -> tuple[float, float]:
        """``(sx, sy)``: model-input pixels per slice pixel along x (columns) and y (rows)."""
        return (self.resized_hw[1] / self.original_hw[1], self.resized_hw[0] / self.original_hw[0])

    def points_to_model(self, xy: np.ndarray) -> np.ndarray:
        """``xy`` ``[N, 2]`` slice pixel (x, y) -> float32 ``[N, 2]`` model-input pixels (the
        voxel's centre with ``edges``, its index scaled otherwise)."""
        shift = 0.5 if self.edges else 0.0
        return ((np.asarray(xy, dtype=np.float64).reshape(-1, 2) + shift)
                * self.scale_xy).astype(np.float32)

    def box_to_model(self, box: tuple[float, float, float, float]) -> np.ndarray:
        """Inclusive voxel box ``(x0, y0, x1, y1)`` -> float32 ``[4]`` model-input pixels: with
        ``edges`` the outer edges of its corner voxels, ``(x0 sx, y0 sy, (x1 + 1) sx,
        (y1 + 1) sy)``; otherwise the indices scaled, as SAM's predictor does."""
        b = np.asarray(box, dtype=np.float64).reshape(2, 2)
        if self.edges:
            b = b + np.array([[0.0, 0.0], [1.0, 1.0]])
        return (b * self.scale_xy).astype(np.float32).reshape(4)

    def logits_to_slice(self, low_res: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, M, L, L]`` covering the model input -> ``[B, M, H, W]`` on the slice."""
        up = F.interpolate(low_res.float(), (self.input_size, self.input_size),
                           mode="bilinear", align_corners=False)
        up = up[..., : self.resized_hw[0], : self.resized_hw[1]]
        return F.interpolate(up, self.original_hw, mode="bilinear", align_corners=False)

    def mask_to_low_res(self, mask: np.ndarray, low_res_size: int, *,
                        logit: float = 8.0) -> torch.Tensor:
        """Binary slice mask ``[H, W]`` -> mask prompt ``[1, 1, L, L]`` of logits (+-``logit``),
        with the decoder output's geometry (resize, pad, downscale by ``input / L``)."""
        m = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
        m = F.interpolate(m, self.resized_hw, mode="bilinear", align_corners=False)
        pad_h, pad_w = self.input_size - self.resized_hw[0], self.input_size - self.resized_hw[1]
        m = F.pad(m, (0, pad_w, 0, pad_h))
        m = F.interpolate(m, (low_res_size, low_res_size), mode="area")
        return (m - 0.5) * (2.0 * logit)


def _pair(value: Any, name: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise PromptModelError(f"prompt recipe: {name} must be [low, high] with low < high, "
                               f"got {list(value)}")
    return lo, hi


@dataclass(frozen=True)
class PromptRecipe:
    """How a promptable model sees slices and prompts (module docstring, steps 1-5)."""

    image_size: int
    resize: Resizing = "longest"
    interpolation: Interpolation = "bilinear"
    antialias: bool = True
    normalize: Normalization = "mean_std"
    pixel_mean: tuple[float, float, float] = SAM_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = SAM_PIXEL_STD
    #: HU window of CT images (None: percentiles for every modality)
    ct_window: tuple[float, float] | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)
    coords: Coords = "indices"
    mask_threshold: float = 0.0
    click_square: float = 1 / 6
    click_grow: float = 0.25

    def __post_init__(self) -> None:
        for name, kind in (("resize", Resizing), ("interpolation", Interpolation),
                           ("normalize", Normalization), ("coords", Coords)):
            if getattr(self, name) not in get_args(kind):
                raise PromptModelError(f"prompt recipe: {name} is {getattr(self, name)!r}, "
                                       f"expected one of {', '.join(get_args(kind))}")
        if not isinstance(self.image_size, int) or self.image_size < 8:
            raise PromptModelError(f"prompt recipe: image_size must be an integer >= 8, got "
                                   f"{self.image_size!r}")
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3 or min(self.pixel_std) <= 0:
            raise PromptModelError("prompt recipe: pixel_mean and pixel_std take 3 values each, "
                                   "pixel_std positive")
        lo, hi = _pair(self.percentiles, "percentiles")
        if lo < 0 or hi > 100:
            raise PromptModelError(f"prompt recipe: percentiles must lie in 0..100, got "
                                   f"{[lo, hi]}")
        window = None if self.ct_window is None else _pair(self.ct_window, "ct_window")
        threshold = self.mask_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or \
                not np.isfinite(threshold):
            raise PromptModelError(f"prompt recipe: mask_threshold must be a finite number "
                                   f"(a logit, 0 = SAM's), got {threshold!r}")
        if not (0 < self.click_square <= 1 and 0 <= self.click_grow <= 2):
            raise PromptModelError("prompt recipe: click_square must lie in (0, 1] and "
                                   "click_grow in [0, 2]")
        object.__setattr__(self, "ct_window", window)
        object.__setattr__(self, "percentiles", (lo, hi))
        object.__setattr__(self, "mask_threshold", float(threshold))
        object.__setattr__(self, "pixel_mean", tuple(float(v) for v in self.pixel_mean))
        object.__setattr__(self, "pixel_std", tuple(float(v) for v in self.pixel_std))

    # ------------------------------------------------------------------ geometry
    def resize_for(self, hw: tuple[int, int]) -> Resize:
        """The :class:`Resize` of a slice of shape ``hw = (H, W)``."""
        size, edges = self.image_size, self.coords == "edges"
        if self.resize == "stretch":
            return Resize((int(hw[0]), int(hw[1])), (size, size), size, edges)
        scale = size / max(hw)
        resized = (max(1, int(hw[0] * scale + 0.5)), max(1, int(hw[1] * scale + 0.5)))
        return Resize((int(hw[0]), int(hw[1])), resized, size, edges)

    # ------------------------------------------------------------------ intensities
    def intensity_range(self, values: np.ndarray, modality: str | None) -> tuple[float, float]:
        """``(lo, hi)`` of a volume (any shape) mapped to [0, 255]: ``ct_window`` for
        ``modality == "CT"`` when set, else ``percentiles`` of the finite voxels of an even
        stride of at most 2 M of them."""
        if self.ct_window is not None and modality == "CT":
            return self.ct_window
        arr = np.asarray(values).reshape(-1)
        sample = np.asarray(arr[:: max(1, arr.size // MAX_RANGE_SAMPLE)], dtype=np.float32)
        finite = sample[np.isfinite(sample)]
        if finite.size == 0:
            return 0.0, 1.0
        lo, hi = np.percentile(finite, self.percentiles)
        return float(lo), float(hi) if hi > lo else float(lo) + 1.0

    @staticmethod
    def to_0_255(slice2d: np.ndarray, window: tuple[float, float]) -> np.ndarray:
        """A 2D slice -> float32 in [0, 255] (``window`` to 0..255; NaN -> its low end)."""
        lo, hi = window
        img = np.nan_to_num(np.asarray(slice2d, dtype=np.float32), nan=lo)
        return ((np.clip(img, lo, hi) - lo) * (255.0 / max(hi - lo, 1e-6))).astype(np.float32)

    # ------------------------------------------------------------------ images
    def resample(self, x: torch.Tensor, rs: Resize) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, C, h, w]`` at ``rs.resized_hw`` (interpolation per recipe)."""
        return F.interpolate(x, rs.resized_hw, mode=self.interpolation, align_corners=False,
                             antialias=self.antialias)

    def normalize_image(self, x: torch.Tensor, inside: torch.Tensor | None = None
                        ) -> torch.Tensor:
        """Grey ``[B, 1, h, w]`` on [0, 255] (clamped) -> ``[B, 3, h, w]`` model values.
        ``"minmax"`` takes each image's range over ``inside`` (bool like ``x``; default all)."""
        x = x.clamp(0.0, 255.0)
        if self.normalize == "minmax":
            keep = torch.ones_like(x, dtype=torch.bool) if inside is None else inside
            lo = torch.where(keep, x, torch.full_like(x, 255.0)).amin((1, 2, 3), keepdim=True)
            hi = torch.where(keep, x, torch.zeros_like(x)).amax((1, 2, 3), keepdim=True)
            return ((x - lo) / (hi - lo).clamp(min=1e-8)).expand(-1, 3, -1, -1)
        mean = torch.tensor(self.pixel_mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.pixel_std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def pad(self, x: torch.Tensor, rs: Resize) -> torch.Tensor:
        """``[B, C, h, w]`` -> ``[B, C, S, S]``, zeros at the bottom/right."""
        return F.pad(x, (0, rs.input_size - rs.resized_hw[1], 0, rs.input_size - rs.resized_hw[0]))

    def model_input(self, slice2d: np.ndarray, window: tuple[float, float]
                    ) -> tuple[torch.Tensor, Resize]:
        """2D slice ``[y, x]`` -> model input ``[1, 3, S, S]`` float32 (CPU) and its Resize."""
        img = np.asarray(slice2d)
        if img.ndim != 2:
            raise ValueError(f"model_input takes a 2D slice, got shape {img.shape}")
        rs = self.resize_for(img.shape)  # type: ignore[arg-type]
        x = torch.from_numpy(self.to_0_255(img, window))[None, None]
        x = self.normalize_image(self.resample(x, rs))
        return self.pad(x, rs).contiguous(), rs

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptRecipe:
        """From a JSON/YAML mapping; unknown keys or bad values raise PromptModelError."""
        return from_mapping(cls, data, "prompt recipe")

    def with_overrides(self, overrides: dict[str, Any]) -> PromptRecipe:
        """This recipe with some fields replaced (validated as :meth:`from_dict`)."""
        return PromptRecipe.from_dict({**self.to_dict(), **overrides})


def sam_recipe(image_size: int = 1024) -> PromptRecipe:
    """segment-anything's preprocessing (``ResizeLongestSide`` bilinear antialiased, pixel
    mean/std, padding); natural-image model: percentiles for every modality."""
    return PromptRecipe(image_size=image_size)


def medsam_recipe(image_size: int = 1024) -> PromptRecipe:
    """MedSAM's: CT at the abdomen window (its ``pre_CT_MR.py``), others 0.5/99.5
    percentiles; stretched to the square input, bicubic and antialiased (its
    ``skimage.transform.resize(order=3, anti_aliasing=True)``), each image min-max to [0, 1]."""
    return PromptRecipe(image_size=image_size, resize="stretch", interpolation="bicubic",
                        normalize="minmax", ct_window=ABDOMEN_WINDOW)


def lite_recipe(image_size: int = 256) -> PromptRecipe:
    """The lite model's recipe before calibration: SAM's resizing and normalisation, CT at the
    abdomen window, others 0.5/99.5 percentiles, SAM's prompt convention."""
    return PromptRecipe(image_size=image_size, ct_window=ABDOMEN_WINDOW)


@dataclass(frozen=True)
class ModelDescription:
    """The content of a weights JSON (module docstring)."""

    name: str
    version: str
    recipe: PromptRecipe
    builder: str
    arch: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)


def check_builder(builder: str, source: Path | None = None) -> None:
    """A builder must be ``medseg.models.<module>:<function>`` (nothing else is imported)."""
    module, _, func = builder.partition(":")
    if not module.startswith("medseg.models.") or not func.isidentifier():
        where = f"{source}: " if source is not None else ""
        raise PromptModelError(
            f"{where}builder {builder!r} must be 'medseg.models.<module>:<function>' "
            "(weights files may only name medseg's own model builders).")


def write_description(path: Path, desc: ModelDescription) -> None:
    """Write ``desc`` as version-2 JSON at ``path``, atomically."""
    check_builder(desc.builder)
    doc = {"format": FORMAT, "format_version": 2, "name": desc.name, "version": desc.version,
           "recipe": desc.recipe.to_dict(), "builder": desc.builder, "arch": desc.arch,
           "training": desc.training}
    write_text_atomic(path, json.dumps(doc, indent=1) + "\n")


def read_description(path: Path) -> ModelDescription:
    """Read a weights JSON (version 1 or 2); any defect is one PromptModelError naming it."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"format is {doc.get('format') if isinstance(doc, dict) else doc!r}"
                             f", expected {FORMAT!r}")
        desc = _from_v1(doc) if doc.get("format_version", 1) == 1 else ModelDescription(
            str(doc["name"]), str(doc["version"]), PromptRecipe.from_dict(dict(doc["recipe"])),
            str(doc["builder"]), dict(doc.get("arch", {})), dict(doc.get("training", {})))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError,
            PromptModelError) as exc:
        raise PromptModelError(f"{path}: not a medseg promptable-model description "
                               f"({' '.join(str(exc).split())[:200]}).") from None
    check_builder(desc.builder, path)
    return desc


def _from_v1(doc: dict[str, Any]) -> ModelDescription:
    """A version-1 document: ``spec`` (name, image_size, window, version, recipe, coords);
    the lite model kept its mask threshold and pixel statistics in ``arch``."""
    spec, arch = dict(doc["spec"]), dict(doc.get("arch", {}))
    size = int(spec["image_size"])
    base = medsam_recipe(size) if spec.get("recipe", doc.get("recipe")) == "medsam" else \
        replace(sam_recipe(size), ct_window=tuple(spec["window"]) if spec.get("window") else None)
    if arch.pop("roi_modalities", []):
        raise ValueError("arch.roi_modalities routes some modalities to another decoder, which "
                         "this medseg no longer does; retrain or drop the key")
    recipe = replace(base, coords=spec.get("coords", "indices"),
                     mask_threshold=arch.pop("mask_threshold", 0.0),
                     pixel_mean=tuple(arch.pop("pixel_mean", base.pixel_mean)),
                     pixel_std=tuple(arch.pop("pixel_std", base.pixel_std)))
    return ModelDescription(str(spec["name"]), str(spec.get("version", "0")), recipe,
                            str(doc["builder"]), arch, dict(doc.get("training", {})))
