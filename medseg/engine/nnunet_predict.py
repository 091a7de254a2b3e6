"""Run an nnU-Net recipe on medseg volumes: nnUNetPredictor's labels, lean.

``NnUnetRunner.predict_labels(volumes)`` does what ``nnUNetPredictor`` does for one case
(``DefaultPreprocessor.run_case_npy`` -> ``predict_sliding_window_return_logits`` ->
``convert_predicted_logits_to_segmentation_with_correct_shape``), in medseg's memory budget:

1. nnU-Net's axes: the SimpleITK order of the stored voxels (``array.transpose(2, 1, 0)``), then
   ``transpose_forward``; spacing likewise. Views, no copies. (nnU-Net ignores the direction
   cosines; so does this, which is what makes the labels equal on flipped/oblique inputs.)
2. crop to non-zero, normalise, resample to the target spacing
   (:mod:`medseg.engine.nnunet_steps`): slab-wise from the stored dtype, float32.
3. sliding window with nnU-Net's positions, Gaussian and per-window mirroring
   (:func:`medseg.engine.window.nnunet_sliding_logits`), folds averaged.
4. export: the logits resampled back to the cropped shape (linear, or nearest along the
   separate-z axis) and argmax, computed only at label boundaries
   (:func:`medseg.engine.invert.iter_native_labels`); un-crop, transpose back. (Region-based
   models are refused before they get here, by :mod:`medseg.models.importer`.)

Like nnU-Net, the stitched logits are accumulated in float16 (window by window, in its order)
and the resampled logits are rounded to float16 before the argmax, so ties fall as nnU-Net's do.
Differences, at float rounding level: resampling in float32 where nnU-Net uses float64;
z-score statistics accumulated in float64. ``last_stats`` holds the seconds of each step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from medseg.engine.invert import first_argmax_, iter_native_labels, iter_native_slabs
from medseg.engine.nnunet_steps import (
    bbox_nonzero,
    compute_new_shape,
    nonzero_mask,
    normalise,
    resample_plan,
    resample_volume,
    separate_z_axis,
)
from medseg.engine.window import nnunet_sliding_logits
from medseg.models.nnunet.recipe import ChannelNorm, NnUnetRecipe
from medseg.volume import Volume

__all__ = ["NnUnetRunner"]


def _zscore_stats(x: np.ndarray, mask: np.ndarray | None, chunk: int = 1 << 22
                  ) -> tuple[float, float]:
    """Mean and (population) std of ``x`` (inside ``mask``) in float64, chunk by chunk."""
    flat = x.reshape(-1)
    m = None if mask is None else mask.reshape(-1)
    n, s = 0, 0.0
    for i in range(0, flat.size, chunk):
        v = flat[i:i + chunk].astype(np.float64)
        if m is not None:
            v = v[m[i:i + chunk]]
        n, s = n + v.size, s + float(v.sum())
    mean = s / max(n, 1)
    ss = 0.0
    for i in range(0, flat.size, chunk):
        v = flat[i:i + chunk].astype(np.float64)
        if m is not None:
            v = v[m[i:i + chunk]]
        ss += float(((v - mean) ** 2).sum())
    return mean, float(np.sqrt(ss / max(n, 1)))


class NnUnetRunner:
    """One loaded nnU-Net configuration (network with its folds) and its recipe."""

    def __init__(self, net: nn.Module, recipe: NnUnetRecipe, *, device: torch.device,
                 amp: bool = True, batch: int | None = None) -> None:
        self.net, self.recipe, self.device = net, recipe, device
        self.amp = amp and device.type == "cuda"
        self.batch = batch
        self.last_stats: dict[str, float] = {}

    # ------------------------------------------------------------------ preprocessing
    def _channels(self, vols: Sequence[Volume]) -> tuple[list[np.ndarray], tuple[float, ...]]:
        tf = self.recipe.transpose_forward
        arrays = [np.asarray(v.array).transpose(2, 1, 0).transpose(tf) for v in vols]
        sp = tuple(float(s) for s in vols[0].spacing[::-1])
        return arrays, tuple(sp[a] for a in tf)

    def _fetcher(self, x: np.ndarray, norm: ChannelNorm, mask: np.ndarray | None
                 ) -> Callable[[int, int, int], np.ndarray]:
        stats = None
        if norm.scheme == "ZScoreNormalization":
            stats = _zscore_stats(x, mask if norm.use_mask else None)

        def fetch(axis: int, i0: int, i1: int) -> np.ndarray:
            sl = [slice(None)] * 3
            sl[axis] = slice(i0, i1)
            m = None if mask is None else mask[tuple(sl)]
            return normalise(x[tuple(sl)], norm, m, stats)

        return fetch

    def preprocess(self, vols: Sequence[Volume]) -> tuple[torch.Tensor, dict[str, object]]:
        """Preprocessed ``(C, *S)`` float32 and what the export needs to undo it."""
        r = self.recipe
        arrays, spacing = self._channels(vols)
        box = bbox_nonzero(arrays)
        cropped = [a[box] for a in arrays]
        shape = cropped[0].shape
        target = tuple(r.spacing) if len(r.spacing) == 3 else (spacing[0], *r.spacing)
        new_shape = compute_new_shape(shape, spacing, target)
        rd = r.resample_data
        z = separate_z_axis(spacing, target, rd.force_separate_z, r.anisotropy_threshold)
        ops, per_slice = resample_plan(shape, new_shape, rd.order, rd.order_z, z)
        need_mask = any(c.use_mask and c.scheme == "ZScoreNormalization" for c in r.channels)
        mask = nonzero_mask(cropped) if need_mask else None
        data = torch.stack([
            resample_volume(shape, self._fetcher(c, norm, mask), ops, z if per_slice else None)
            for c, norm in zip(cropped, r.channels, strict=True)])
        return data, {"box": box, "full_shape": arrays[0].shape, "cropped_shape": shape,
                      "spacing": spacing, "target": target}

    # ------------------------------------------------------------------ export
    def _export(self, logits: torch.Tensor, info: dict[str, object]) -> np.ndarray:
        r = self.recipe
        shape = info["cropped_shape"]
        assert isinstance(shape, tuple)
        rp = r.resample_probabilities
        z = separate_z_axis(info["target"], info["spacing"], rp.force_separate_z,  # type: ignore[arg-type]
                            r.anisotropy_threshold)
        if rp.order != 1 or (z is not None and rp.order_z not in (0, 1)):
            raise NotImplementedError("probability resampling other than linear/nearest")
        nearest = (z,) if z is not None and rp.order_z == 0 else ()
        mapping = [(a, m / n, 0.5 * m / n - 0.5)
                   for a, (n, m) in enumerate(zip(shape, logits.shape[1:], strict=True))]
        k = logits.shape[0]
        logits = logits.float()  # exact: the float16 stitched logits, interpolated in float32
        out = np.empty(shape, dtype=np.uint8 if k < 255 else np.uint16)
        dst = torch.from_numpy(out.view(np.int16) if k >= 255 else out)
        if k <= 128:
            for i0, i1, lab in iter_native_labels(logits, mapping, shape, nearest_axes=nearest,
                                                  quantize=torch.float16):
                dst[i0:i1] = lab
        else:
            for i0, i1, v in iter_native_slabs(logits, mapping, shape, nearest_axes=nearest):
                first_argmax_(v.half().float(), dst[i0:i1])
        full = np.zeros(info["full_shape"], dtype=out.dtype)  # type: ignore[call-overload]
        full[info["box"]] = out  # type: ignore[index]
        return full

    # ------------------------------------------------------------------ public
    def predict_labels(self, vols: Sequence[Volume], *, tta: bool = True) -> np.ndarray:
        """Label map on the volumes' grid (``Volume.array`` index order), uint8 (uint16 beyond
        254 labels). ``tta``: mirroring on the trainer's allowed axes (``--disable_tta`` in
        nnU-Net is ``tta=False``)."""
        t0 = time.perf_counter()
        data, info = self.preprocess(vols)
        t1 = time.perf_counter()
        logits = nnunet_sliding_logits(
            self.net, data, patch=self.recipe.patch_size, step=self.recipe.tile_step_size,
            mirror_axes=self.recipe.mirror_axes if tta else None, device=self.device,
            amp=self.amp, batch=self.batch)
        del data
        t2 = time.perf_counter()
        labels = self._export(logits, info)
        out = labels.transpose(self.recipe.transpose_backward).transpose(2, 1, 0)
        t3 = time.perf_counter()
        self.last_stats = {"preprocess_s": round(t1 - t0, 4), "sliding_window_s": round(t2 - t1, 4),
                           "invert_s": round(t3 - t2, 4)}
        return np.ascontiguousarray(out)
