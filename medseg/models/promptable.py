"""Promptable (SAM-style) models: one wrapper for the lite default and SAM/MedSAM checkpoints.

Both backends are ``segment_anything.modeling.Sam``-compatible modules (``image_encoder``,
``prompt_encoder``, ``mask_decoder``, ``pixel_mean``/``pixel_std`` buffers). :class:`PromptModel`
adds the preprocessing (the SAM/MedSAM recipe) and the coordinate mapping:

* ``preprocess(slice2d)``: ``slice2d`` is a 2D image indexed ``[row, col] = [y, x]``. Intensities
  are windowed (``spec.window`` for CT, else the 0.5/99.5 percentiles) to [0, 255]; then
  recipe ``"sam"`` resizes the longest side to ``image_size`` (aspect kept), pads bottom/right
  with zeros and normalises with the module's ``pixel_mean``/``pixel_std``; recipe ``"medsam"``
  (MedSAM's own inference code) stretches to ``image_size`` x ``image_size`` and scales to [0, 1].
* Prompt coordinates (``spec.coords``): ``"indices"`` (the default) scales voxel indices,
  ``x_model = x * sx``, as segment_anything's ``ResizeLongestSide`` and MedSAM's
  ``box / [W, H, W, H] * 1024`` do; ``"edges"`` maps an inclusive voxel box to the outer edges
  of its voxels, ``(x0 sx, y0 sy, (x1 + 1) sx, (y1 + 1) sy)``, and a click to its voxel's
  centre, ``((x + 0.5) sx, (y + 0.5) sy)``: how :mod:`medseg.data.prompt_slices` draws training
  prompts. The shipped lite weights keep ``"indices"`` (every box reaches them one voxel
  short on its right and bottom sides, 2.1 model pixels on a 3 mm CT): all of their
  calibration (mask threshold, propagation margin) was chosen that way, and switching them to
  ``"edges"`` lost on the validation structures (2026-12-05, bench/notes/
  lite_model_selection.md).
* ``decode`` returns low-resolution logits ``[B, M, 4 * embed_size, 4 * embed_size]`` (float32)
  and predicted IoU ``[B, M]``; :meth:`Resize.logits_to_slice` maps them back to ``[H, W]``.

Shipped lite weights are ``medseg/weights/lite_sam.safetensors`` plus ``lite_sam.json``
(:func:`save_promptable` writes both)::

    {"format": "medseg-promptable", "format_version": 1,
     "spec": {"name", "image_size", "embed_size", "window": [lo, hi] | null, "version",
              "coords": "edges" | "indices"},
     "recipe": "sam", "builder": "medseg.models.<module>:<function>", "arch": {...kwargs}}

``builder(**arch)`` must return the Sam-compatible module (random init); it must live under
``medseg.models`` (nothing else is imported from a weights file).
"""

from __future__ import annotations

import importlib
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F

from medseg.errors import MedsegError, PromptModelError
from medseg.io.atomic import atomic_path, write_text_atomic

Recipe = Literal["sam", "medsam"]
Coords = Literal["indices", "edges"]
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
LITE_STEM = WEIGHTS_DIR / "lite_sam"
FORMAT = "medseg-promptable"


@dataclass(frozen=True)
class PromptModelSpec:
    """What a promptable model expects: square input side, embedding grid, CT window."""

    name: str
    image_size: int
    embed_size: int
    window: tuple[float, float] | None = None  # CT HU window; None = percentiles 0.5/99.5
    version: str = "0"
    recipe: Recipe = "sam"
    #: how slice voxel prompts map to model pixels (module docstring): "indices" as SAM's
    #: predictor, "edges" as medseg's prompt sampler draws training boxes and clicks
    coords: Coords = "indices"

    @property
    def low_res_size(self) -> int:
        """Side of the mask logits ``decode`` returns (and ``mask_input`` takes)."""
        return 4 * self.embed_size


@dataclass(frozen=True)
class Resize:
    """Mapping between a slice ``[H, W]`` (rows = y, cols = x) and the square model input."""

    original_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    input_size: int
    #: the model's prompt convention (``PromptModelSpec.coords``): True = pixel edges/centres
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
        """Inclusive voxel box ``(x0, y0, x1, y1)`` of the slice -> float32 ``[4]`` in model-input
        pixels: with ``edges`` the outer edges of its corner voxels, ``(x0 sx, y0 sy, (x1 + 1) sx,
        (y1 + 1) sy)``; otherwise the indices scaled, as SAM's predictor does."""
        b = np.asarray(box, dtype=np.float64).reshape(2, 2)
        if self.edges:
            b = b + np.array([[0.0, 0.0], [1.0, 1.0]])
        return (b * self.scale_xy).astype(np.float32).reshape(4)

    def logits_to_slice(self, low_res: torch.Tensor) -> torch.Tensor:
        """Low-res logits ``[B, M, L, L]`` -> ``[B, M, H, W]`` logits on the slice (padding cut)."""
        up = F.interpolate(low_res.float(), (self.input_size, self.input_size),
                           mode="bilinear", align_corners=False)
        up = up[..., : self.resized_hw[0], : self.resized_hw[1]]
        return F.interpolate(up, self.original_hw, mode="bilinear", align_corners=False)

    def mask_to_low_res(self, mask: np.ndarray, low_res_size: int, *,
                        logit: float = 8.0) -> torch.Tensor:
        """Binary slice mask ``[H, W]`` -> mask prompt ``[1, 1, L, L]`` of logits (+-``logit``).

        The same geometry as the decoder output (resize, pad, downscale by ``input/L``), so a
        previous prediction can be fed back as ``mask_input``.
        """
        m = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
        m = F.interpolate(m, self.resized_hw, mode="bilinear", align_corners=False)
        pad_h, pad_w = self.input_size - self.resized_hw[0], self.input_size - self.resized_hw[1]
        m = F.pad(m, (0, pad_w, 0, pad_h))
        m = F.interpolate(m, (low_res_size, low_res_size), mode="area")
        return (m - 0.5) * (2.0 * logit)


def intensity_range(image: np.ndarray, modality: str | None,
                    window: tuple[float, float] | None) -> tuple[float, float]:
    """``(lo, hi)`` mapped to [0, 255]: ``window`` for CT when given, else 0.5/99.5 percentiles."""
    if window is not None and (modality or "").upper() == "CT":
        return float(window[0]), float(window[1])
    finite = np.asarray(image, dtype=np.float32)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [0.5, 99.5])
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


class PromptModel:
    """A Sam-compatible module plus its preprocessing. CPU float32 by default, CUDA optional."""

    def __init__(self, sam: torch.nn.Module, spec: PromptModelSpec,
                 device: str | torch.device | None = None, *, optimize: bool = False) -> None:
        self.device = torch.device(device or "cpu")
        self.sam = sam.to(self.device).eval()
        self.spec = spec
        #: trace + ``torch.jit.optimize_for_inference`` the image encoder (CPU; same outputs
        #: to float rounding; ~12% less CPU on the lite encoder); falls back to eager on failure.
        self.optimize = optimize
        self._traced: dict[tuple[int, ...], Any] = {}
        self._dense_pe: torch.Tensor | None = None

    @property
    def mask_threshold(self) -> float:
        """Logit above which a pixel is in a returned mask: the module's ``mask_threshold``
        (0 for SAM/MedSAM; the lite model's calibrated value from its weights JSON)."""
        return float(getattr(self.sam, "mask_threshold", 0.0))

    def dense_pe(self) -> torch.Tensor:
        """``prompt_encoder.get_dense_pe()`` ``[1, D, E, E]``, computed once (it is constant)."""
        if self._dense_pe is None:
            with torch.inference_mode():
                self._dense_pe = self.sam.prompt_encoder.get_dense_pe()  # type: ignore[operator,union-attr]
        return self._dense_pe

    def _encoder(self, x: torch.Tensor) -> Any:
        if not self.optimize or self.device.type != "cpu":
            return self.sam.image_encoder
        key = tuple(x.shape)
        if key not in self._traced:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    traced = torch.jit.trace(self.sam.image_encoder, x, check_trace=False)
                    self._traced[key] = torch.jit.optimize_for_inference(traced)
            except Exception:  # any tracing limitation: the eager module is always correct
                self._traced[key] = self.sam.image_encoder
        return self._traced[key]

    def resize_for(self, hw: tuple[int, int]) -> Resize:
        """The :class:`Resize` used for a slice of shape ``hw = (H, W)``."""
        size, edges = self.spec.image_size, self.spec.coords == "edges"
        if self.spec.recipe == "medsam":
            return Resize((int(hw[0]), int(hw[1])), (size, size), size, edges)
        scale = size / max(hw)
        resized = (max(1, int(hw[0] * scale + 0.5)), max(1, int(hw[1] * scale + 0.5)))
        return Resize((int(hw[0]), int(hw[1])), resized, size, edges)

    def preprocess(self, slice2d: np.ndarray, modality: str | None, *,
                   window: tuple[float, float] | None = None) -> tuple[torch.Tensor, Resize]:
        """2D image ``[row, col] = [y, x]`` -> model input ``[1, C, S, S]`` float32 + its Resize.

        ``window`` (``(lo, hi)``, e.g. computed once per volume) overrides the per-slice choice
        of :func:`intensity_range`.
        """
        img = np.asarray(slice2d, dtype=np.float32)
        if img.ndim != 2:
            raise ValueError(f"preprocess takes a 2D slice, got shape {img.shape}")
        lo, hi = window or intensity_range(img, modality, self.spec.window)
        img = np.nan_to_num(img, nan=lo)
        x = torch.from_numpy((np.clip(img, lo, hi) - lo) * (255.0 / max(hi - lo, 1e-6)))[None, None]
        rs = self.resize_for(img.shape)  # type: ignore[arg-type]
        x = F.interpolate(x, rs.resized_hw, mode="bilinear", align_corners=False, antialias=True)
        x = x.clamp(0.0, 255.0)
        mean = torch.as_tensor(self.sam.pixel_mean).detach().cpu().float()
        std = torch.as_tensor(self.sam.pixel_std).detach().cpu().float()
        x = x.expand(1, mean.shape[0], *rs.resized_hw)
        if self.spec.recipe == "medsam":
            x = x / 255.0
        else:
            x = (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
            x = F.pad(x, (0, rs.input_size - rs.resized_hw[1], 0, rs.input_size - rs.resized_hw[0]))
        return x.contiguous().to(self.device), rs

    @torch.inference_mode()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Model inputs ``[B, C, S, S]`` -> image embeddings ``[B, D, E, E]`` (E = embed_size)."""
        x = x.to(self.device)
        return self._encoder(x)(x)  # type: ignore[no-any-return]

    @torch.inference_mode()
    def decode(self, embedding: torch.Tensor, *, box: np.ndarray | None = None,
               points: np.ndarray | None = None, point_labels: np.ndarray | None = None,
               mask_input: torch.Tensor | None = None,
               multimask: bool = False,
               modality: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts in model-input pixels -> (low-res logits ``[1, M, L, L]``, IoU ``[1, M]``).

        ``embedding`` ``[1, D, E, E]``; ``box`` ``[4]`` (x0, y0, x1, y1); ``points`` ``[N, 2]``
        (x, y) with ``point_labels`` ``[N]`` (1 positive, 0 negative); ``mask_input`` low-res
        logits ``[1, 1, L, L]``. M is 3 with ``multimask`` else 1. A lite model with the RoI
        decoder answers ``[1, 1, S, S]`` on the model input for the ``modality`` it was
        validated on (``LiteSam.uses_roi``), the SAM decoder's output otherwise.
        """
        dev = self.device
        pts = None
        if points is not None and len(points):
            labels = np.ones(len(points)) if point_labels is None else point_labels
            pts = (torch.as_tensor(np.asarray(points, np.float32), device=dev)[None],
                   torch.as_tensor(np.asarray(labels, np.int64), device=dev)[None])
        boxes = None if box is None else torch.as_tensor(
            np.asarray(box, np.float32).reshape(1, 4), device=dev)
        masks = None if mask_input is None else mask_input.to(dev).float()
        if getattr(self.sam, "roi_decoder", None) is not None:  # lite model, RoI decoder
            low_res, iou = self.sam.decode(embedding.to(dev), boxes, pts, masks,  # type: ignore[operator]
                                           multimask=multimask,
                                           roi=self.sam.uses_roi(modality))  # type: ignore[operator]
            return low_res.float(), iou.float()
        sparse, dense = self.sam.prompt_encoder(points=pts, boxes=boxes, masks=masks)  # type: ignore[operator]
        low_res, iou = self.sam.mask_decoder(  # type: ignore[operator]
            image_embeddings=embedding.to(dev),
            image_pe=self.dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=multimask)
        return low_res.float(), iou.float()


def save_promptable(model: PromptModel, stem: str | Path, *, builder: str,
                    arch: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``stem.safetensors`` + ``stem.json`` (see module docstring); returns both paths.

    ``builder`` is ``"medseg.models.<module>:<function>"``; ``builder(**arch)`` must rebuild the
    module whose ``state_dict`` is saved.
    """
    from safetensors.torch import save_file

    _check_builder(builder)
    stem = Path(stem)
    weights, meta = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    state = {k: v.detach().cpu().contiguous() for k, v in model.sam.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp))
    doc = {"format": FORMAT, "format_version": 1, "spec": asdict(model.spec),
           "recipe": model.spec.recipe, "builder": builder, "arch": arch}
    write_text_atomic(meta, json.dumps(doc, indent=1) + "\n")
    return weights, meta


def _check_builder(builder: str, source: Path | None = None) -> None:
    module, _, func = builder.partition(":")
    if not module.startswith("medseg.models.") or not func.isidentifier():
        where = f"{source}: " if source is not None else ""
        raise PromptModelError(
            f"{where}builder {builder!r} must be 'medseg.models.<module>:<function>' "
            "(weights files may only name medseg's own model builders).")


def _build(builder: str, arch: dict[str, Any], source: Path) -> torch.nn.Module:
    """The network ``builder`` (``medseg.models.<module>:<function>``) makes from ``arch``;
    any failure is a one-line :class:`PromptModelError` naming ``source``."""
    _check_builder(builder, source)
    module, _, func = builder.partition(":")
    try:
        make = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise PromptModelError(
            f"{source}: builder {builder!r} does not exist in this medseg "
            f"({type(exc).__name__}). Use the description file shipped with the weights, or a "
            "medseg version that has this builder.") from None
    try:
        return make(**arch)  # type: ignore[no-any-return]
    except (TypeError, ValueError, AssertionError, MedsegError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PromptModelError(
            f"{source}: builder {builder!r} does not accept its 'arch' settings ({first}). "
            "Use the description file shipped with the weights.") from None


def _load_lite(weights: Path, device: str | torch.device | None) -> PromptModel:
    meta_path = weights.with_suffix(".json")
    if not weights.is_file() or not meta_path.is_file():
        raise PromptModelError(
            f"Lite promptable model not found: {weights} and {meta_path.name} are both needed. "
            "Train it with 'medseg finetune' (see docs/prompting.md) or pass a SAM/MedSAM "
            "checkpoint path instead of 'lite'.")
    try:
        doc = json.loads(meta_path.read_text())
        if doc.get("format") != FORMAT:
            raise ValueError(f"format is {doc.get('format')!r}, expected {FORMAT!r}")
        spec_d = dict(doc["spec"])
        spec_d["window"] = tuple(spec_d["window"]) if spec_d.get("window") else None
        builder = str(doc["builder"])
        spec_d.setdefault("coords", "indices")  # files written before the key existed
        if spec_d["coords"] not in get_args(Coords):
            raise ValueError(f"spec.coords is {spec_d['coords']!r}, expected one of "
                             f"{', '.join(map(repr, get_args(Coords)))}")
        spec = PromptModelSpec(**spec_d)
        arch = dict(doc.get("arch", {}))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PromptModelError(f"{meta_path}: not a medseg promptable-model description "
                               f"({' '.join(str(exc).split())[:200]}).") from None
    sam = _build(builder, arch, meta_path)
    _load_state(sam, _safetensors(weights), f"{weights} (lite model {spec.name})")
    return PromptModel(sam, spec, device, optimize=True)


def _load_state(sam: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    expected = sam.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{name}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for name, keys in (("missing", missing), ("unexpected", unexpected),
                               ("wrong shape", wrong)) if keys)
        raise PromptModelError(f"{what}: tensors do not fit the expected architecture ({detail}).")
    sam.load_state_dict(state, strict=True)


def _safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise PromptModelError(f"{path}: not a readable safetensors file "
                               f"({' '.join(str(exc).split())[:200]}).") from None


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "unsupported global" in text.lower():  # torch's multi-line weights-only refusal
            raise PromptModelError(
                f"{path}: holds pickled Python objects besides tensors, which medseg does not "
                "load (unpickling can run code). Save the model's state_dict() alone, or use an "
                "official SAM (sam_vit_b_01ec64.pth...) or MedSAM (medsam_vit_b.pth) "
                "checkpoint.") from None
        first = "" if "weights only load failed" in text.lower() else \
            ": " + (text.strip().splitlines() or [""])[0][:200]
        raise PromptModelError(
            f"{path}: cannot read as a PyTorch state dict (not a PyTorch checkpoint, or damaged; "
            f"{type(exc).__name__}{first}). "
            "Expected an official SAM (sam_vit_b_01ec64.pth...) or MedSAM (medsam_vit_b.pth) "
            "checkpoint.") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PromptModelError(f"{path}: holds {type(obj).__name__}, not a state dict of tensors.")
    return obj


def load_promptable(source: str | Path = "lite", *, recipe: Recipe | None = None,
                    device: str | torch.device | None = None) -> PromptModel:
    """Load the shipped lite model (``"lite"``) or a SAM ViT-B/L/H / MedSAM ``.pth`` checkpoint.

    The ViT architecture is read off the state-dict shapes. ``recipe`` defaults to ``"medsam"``
    when the file name contains "medsam", else ``"sam"`` (see the module docstring). A
    ``.safetensors`` path with a sibling ``.json`` loads as a medseg (lite) model.
    Raises :class:`PromptModelError` for a missing file or another architecture.
    """
    from medseg.models.sam_modules import build_sam_vit, infer_vit_arch

    if str(source) == "lite":
        return _load_lite(LITE_STEM.with_suffix(".safetensors"), device)
    path = Path(source)
    if not path.is_file():
        raise PromptModelError(f"Promptable model {path}: no such file. Pass 'lite' or the path "
                               "of a SAM/MedSAM .pth checkpoint.")
    if path.suffix == ".safetensors":
        return _load_lite(path, device)
    state = _read_checkpoint(path)
    arch = infer_vit_arch(state, str(path))
    sam = build_sam_vit(arch)
    _load_state(sam, state, f"{path} (read as SAM {arch.name})")
    chosen: Recipe = recipe or ("medsam" if "medsam" in path.name.lower() else "sam")
    spec = PromptModelSpec(name=f"{'medsam' if chosen == 'medsam' else 'sam'}_{arch.name}",
                           image_size=arch.image_size, embed_size=arch.embed_size, window=None,
                           version=f"{path.name}:{path.stat().st_size}", recipe=chosen)
    return PromptModel(sam, spec, device)
