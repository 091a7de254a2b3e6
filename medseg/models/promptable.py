"""Promptable (SAM-style) models: one wrapper for the lite default and SAM/MedSAM checkpoints.

Both backends are ``segment_anything.modeling.Sam``-compatible modules (``image_encoder``,
``prompt_encoder``, ``mask_decoder``). :class:`PromptModel` pairs such a module with its
:class:`~medseg.models.prompt_recipe.PromptRecipe` (preprocessing, prompt coordinates, mask
threshold) and a name and version (what provenance records):

* ``preprocess(slice2d, window)``: 2D slice ``[row, col] = [y, x]`` -> model input
  ``[1, 3, S, S]`` and its :class:`~medseg.models.prompt_recipe.Resize`;
* ``embed``: model inputs -> image embeddings ``[B, D, E, E]``;
* ``decode``: prompts in model-input pixels -> logits ``[1, M, L, L]`` covering the model input
  (``L`` = 4 E for SAM's decoder, ``S`` for the lite model's RoI decoder) and predicted IoU.

Files: the lite model and fine-tuned models are ``NAME.safetensors`` plus ``NAME.json``
(:func:`save_promptable` writes both; the JSON's format is in :mod:`medseg.models.prompt_recipe`:
name, version, recipe, ``builder`` + ``arch``). ``builder(**arch)`` must return the module
(random init) and live under ``medseg.models``; nothing else is imported from a weights file.
Official SAM ViT-B/L/H and MedSAM ``.pth`` checkpoints load with the recipe of their own
preprocessing (:func:`~medseg.models.prompt_recipe.sam_recipe`,
:func:`~medseg.models.prompt_recipe.medsam_recipe`).
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from medseg.errors import PromptModelError
from medseg.io.atomic import atomic_path
from medseg.models.lite_sam import LiteSam
from medseg.models.prompt_recipe import (
    ModelDescription,
    PromptRecipe,
    Resize,
    check_builder,
    medsam_recipe,
    read_description,
    sam_recipe,
    write_description,
)

__all__ = ["LITE_STEM", "PromptModel", "Resize", "load_promptable", "network_builder",
           "save_promptable"]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
LITE_STEM = WEIGHTS_DIR / "lite_sam"
Family = Literal["sam", "medsam"]


class PromptModel:
    """A Sam-compatible module plus its recipe, name and version. CPU float32 by default."""

    def __init__(self, sam: torch.nn.Module, recipe: PromptRecipe, *, name: str,
                 version: str, device: str | torch.device | None = None,
                 optimize: bool = False) -> None:
        self.device = torch.device(device or "cpu")
        self.sam = sam.to(self.device).eval()
        self.recipe = recipe
        self.name, self.version = name, version
        #: trace + ``torch.jit.optimize_for_inference`` the image encoder (CPU; same outputs
        #: to float rounding); falls back to eager on failure
        self.optimize = optimize
        self._traced: dict[tuple[int, ...], Any] = {}
        self._dense_pe: torch.Tensor | None = None

    @property
    def mask_threshold(self) -> float:
        """Logit above which a pixel is in a returned mask (the recipe's)."""
        return self.recipe.mask_threshold

    @property
    def low_res_size(self) -> int:
        """Side of the mask prompt ``decode(mask_input=)`` takes."""
        pe = getattr(self.sam, "prompt_encoder", None)
        size = getattr(pe, "mask_input_size", None)
        return int(size[0]) if size else self.recipe.image_size

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
        """The :class:`Resize` of a slice of shape ``hw = (H, W)`` (the recipe's)."""
        return self.recipe.resize_for(hw)

    def preprocess(self, slice2d: np.ndarray, window: tuple[float, float]
                   ) -> tuple[torch.Tensor, Resize]:
        """2D slice ``[y, x]`` -> model input ``[1, 3, S, S]`` on the model's device and its
        Resize, by :meth:`PromptRecipe.model_input`; ``window`` = the volume's intensity range
        (:meth:`PromptRecipe.intensity_range`)."""
        x, rs = self.recipe.model_input(slice2d, window)
        return x.to(self.device), rs

    @torch.inference_mode()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Model inputs ``[B, C, S, S]`` -> image embeddings ``[B, D, E, E]``."""
        x = x.to(self.device)
        return self._encoder(x)(x)  # type: ignore[no-any-return]

    @torch.inference_mode()
    def decode(self, embedding: torch.Tensor, *, box: np.ndarray | None = None,
               points: np.ndarray | None = None, point_labels: np.ndarray | None = None,
               mask_input: torch.Tensor | None = None,
               multimask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts in model-input pixels -> (logits ``[1, M, L, L]``, IoU ``[1, M]``).

        ``embedding`` ``[1, D, E, E]``; ``box`` ``[4]`` (x0, y0, x1, y1); ``points`` ``[N, 2]``
        (x, y) with ``point_labels`` ``[N]`` (1 positive, 0 negative); ``mask_input`` logits
        ``[1, 1, low_res_size, low_res_size]``. M is 3 with ``multimask`` else 1; a lite model
        with the RoI decoder answers one mask ``[1, 1, S, S]`` (click-only prompts refit their
        RoI per the recipe's ``click_square``, ``click_grow`` and ``mask_threshold``).
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
        if isinstance(self.sam, LiteSam) and self.sam.roi_decoder is not None:
            r = self.recipe
            low_res, iou = self.sam.decode(embedding.to(dev), boxes, pts, masks,
                                           multimask=multimask, threshold=r.mask_threshold,
                                           click_square=r.click_square, click_grow=r.click_grow)
            return low_res.float(), iou.float()
        sparse, dense = self.sam.prompt_encoder(points=pts, boxes=boxes, masks=masks)  # type: ignore[operator]
        low_res, iou = self.sam.mask_decoder(  # type: ignore[operator]
            image_embeddings=embedding.to(dev), image_pe=self.dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=multimask)
        return low_res.float(), iou.float()


def network_builder(net: torch.nn.Module) -> tuple[str, dict[str, Any]]:
    """``(builder, arch)`` that rebuild ``net``'s architecture: a :class:`LiteSam` by its
    config, a segment-anything ``Sam`` by the ViT shapes of its state dict."""
    if isinstance(net, LiteSam):
        return "medseg.models.lite_sam:build_lite_sam", dataclasses.asdict(net.config)
    from medseg.models.sam_modules import infer_vit_arch

    arch = infer_vit_arch(dict(net.state_dict()), type(net).__name__)
    return "medseg.models.sam_builders:build_sam_vit_kwargs", dataclasses.asdict(arch)


def save_promptable(model: PromptModel, stem: str | Path,
                    training: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``stem.safetensors`` and ``stem.json`` (name, version, recipe, builder, arch,
    ``training``), each atomically; returns both paths. The one writer of weights files."""
    from safetensors.torch import save_file

    builder, arch = network_builder(model.sam)
    stem = Path(stem)
    weights, meta = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.sam.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"format": "medseg-promptable"})
    write_description(meta, ModelDescription(model.name, model.version, model.recipe, builder,
                                             arch, dict(training or {})))
    return weights, meta


def _build(builder: str, arch: dict[str, Any], source: Path) -> torch.nn.Module:
    """The network ``builder`` makes from ``arch``; any failure is one PromptModelError."""
    check_builder(builder, source)
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
    except (TypeError, ValueError, AssertionError, PromptModelError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PromptModelError(
            f"{source}: builder {builder!r} does not accept its 'arch' settings ({first}). "
            "Use the description file shipped with the weights.") from None


def _load_described(weights: Path, device: str | torch.device | None,
                    what: str = "Promptable model") -> PromptModel:
    meta_path = weights.with_suffix(".json")
    if not weights.is_file() or not meta_path.is_file():
        raise PromptModelError(
            f"{what} not found: {weights} and {meta_path.name} are both needed. "
            "Train one with 'medseg finetune' (see docs/prompting.md) or pass a SAM/MedSAM "
            "checkpoint path instead.")
    desc = read_description(meta_path)
    sam = _build(desc.builder, desc.arch, meta_path)
    _load_state(sam, _safetensors(weights), f"{weights} (model {desc.name})")
    return PromptModel(sam, desc.recipe, name=desc.name, version=desc.version, device=device,
                       optimize=isinstance(sam, LiteSam))


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


def load_promptable(source: str | Path = "lite", *, family: Family | None = None,
                    device: str | torch.device | None = None) -> PromptModel:
    """Load the shipped lite model (``"lite"``), a medseg ``.safetensors`` model (its ``.json``
    beside it), or a SAM ViT-B/L/H / MedSAM ``.pth`` checkpoint.

    A ``.pth``'s ViT architecture is read off its state-dict shapes; its recipe is MedSAM's
    when ``family`` is ``"medsam"`` or (by default) its file name contains "medsam", else
    SAM's. Raises :class:`PromptModelError` for a missing file or another architecture.
    """
    from medseg.models.sam_modules import build_sam_vit, infer_vit_arch

    if str(source) == "lite":
        return _load_described(LITE_STEM.with_suffix(".safetensors"), device,
                               "Lite promptable model")
    path = Path(source)
    if not path.is_file():
        raise PromptModelError(f"Promptable model {path}: no such file. Pass 'lite' or the path "
                               "of a SAM/MedSAM .pth checkpoint.")
    if path.suffix == ".safetensors":
        return _load_described(path, device)
    state = _read_checkpoint(path)
    arch = infer_vit_arch(state, str(path))
    sam = build_sam_vit(arch)
    _load_state(sam, state, f"{path} (read as SAM {arch.name})")
    chosen = family or ("medsam" if "medsam" in path.name.lower() else "sam")
    recipe = (medsam_recipe if chosen == "medsam" else sam_recipe)(arch.image_size)
    return PromptModel(sam, recipe, name=f"{chosen}_{arch.name}",
                       version=f"{path.name}:{path.stat().st_size}", device=device)
