"""Reference implementations (MONAI, DeepMind surface-distance) and mask makers for metric tests.

MONAI's metric functions take one-hot, batch-first tensors ``[B, C, *spatial]``; with
``include_background=True`` and a single channel the channel *is* our mask. Its distances are
float32 (``torch.float``), so agreement is checked to a relative 1e-6, float32's resolution.
"""

from __future__ import annotations

import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "data_samples"
TOTALSEG = SAMPLES / "totalsegmentator" / "example_seg.nii.gz"
BRAIN1 = SAMPLES / "pyradiomics" / "brain1_label.nrrd"


def monai_scores(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...],
                 tau: float) -> dict[str, float]:
    """dice, hd, hd95, assd, nsd of MONAI 1.x for one pair of bool masks (warnings silenced)."""
    from monai.metrics import (
        compute_average_surface_distance,
        compute_dice,
        compute_hausdorff_distance,
        compute_surface_dice,
    )

    yp = torch.from_numpy(np.ascontiguousarray(pred)).float()[None, None]
    yr = torch.from_numpy(np.ascontiguousarray(ref)).float()[None, None]
    sp = list(spacing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {
            "dice": compute_dice(yp, yr, include_background=True),
            "hd": compute_hausdorff_distance(yp, yr, include_background=True, spacing=sp),
            "hd95": compute_hausdorff_distance(yp, yr, include_background=True, percentile=95,
                                               spacing=sp),
            "assd": compute_average_surface_distance(yp, yr, include_background=True,
                                                     symmetric=True, spacing=sp),
            "nsd": compute_surface_dice(yp, yr, [tau], include_background=True, spacing=sp),
        }
    scores = {k: float(v.reshape(-1)[0]) for k, v in out.items()}
    scores.update(monai_hd95_float64(pred, ref, spacing))
    return scores


def monai_hd95_float64(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]
                       ) -> dict[str, float]:
    """MONAI's HD95 recomputed from MONAI's own edges and distances, quantiles in float64.

    ``compute_hausdorff_distance(percentile=95)`` calls ``torch.quantile`` on float32 distances,
    whose rank ``0.95 * (n - 1)`` is then rounded to float32; that alone moves HD95 by up to
    about ``2**-23 * n * gap``. Returns ``hd95_f64`` and ``n`` (the larger directed set size).
    """
    from monai.metrics.utils import get_edge_surface_distance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yp, yr = (torch.from_numpy(np.ascontiguousarray(m)) for m in (pred, ref))
        _, dists, _ = get_edge_surface_distance(yp, yr, spacing=list(spacing), symmetric=True)
    if any(d.numel() == 0 for d in dists):
        return {"hd95_f64": float("nan"), "n": 0.0}
    hd95 = max(float(torch.quantile(d.double(), 0.95)) for d in dists)
    return {"hd95_f64": hd95, "n": float(max(d.numel() for d in dists))}


class _NumpyCompat(types.SimpleNamespace):
    """numpy with the names removed in numpy 2 that surface-distance 0.1 still uses."""

    Inf = np.inf
    NaN = np.nan

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


def deepmind() -> Any:
    """DeepMind's ``surface_distance`` package, patched (here, not in medseg) for numpy 2."""
    import surface_distance
    import surface_distance.metrics as sdm

    if not isinstance(sdm.np, _NumpyCompat):
        sdm.np = _NumpyCompat()
    return surface_distance


def deepmind_scores(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...],
                    tau: float) -> dict[str, float]:
    """DeepMind's surfel-area-weighted scores; ``assd`` pools both directions by area."""
    sd = deepmind()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = sd.compute_surface_distances(ref, pred, spacing)
        areas = np.concatenate([d["surfel_areas_gt"], d["surfel_areas_pred"]])
        dists = np.concatenate([d["distances_gt_to_pred"], d["distances_pred_to_gt"]])
        return {
            "dice": float(sd.compute_dice_coefficient(ref, pred)),
            "hd": float(sd.compute_robust_hausdorff(d, 100)),
            "hd95": float(sd.compute_robust_hausdorff(d, 95)),
            "assd": float(np.sum(dists * areas) / np.sum(areas)),
            "nsd": float(sd.compute_surface_dice_at_tolerance(d, tau)),
        }


def perturb(mask: np.ndarray, seed: int) -> np.ndarray:
    """A plausible 'prediction' of ``mask``: shifted, dilated or eroded, with boundary noise."""
    rng = np.random.default_rng(seed)
    out = np.roll(mask, int(rng.integers(-2, 3)), axis=int(rng.integers(0, mask.ndim)))
    kind = seed % 3
    if kind == 0:
        out = ndimage.binary_dilation(out, iterations=int(rng.integers(1, 3)))
    elif kind == 1:
        out = ndimage.binary_erosion(out)
    edge = out ^ ndimage.binary_erosion(out)
    flip = edge & (rng.random(mask.shape) < 0.2)
    return out ^ flip


def random_blobs(shape: tuple[int, ...], seed: int, fill: float) -> np.ndarray:
    """Smooth random blobs filling about ``fill`` of ``shape`` (may touch every border)."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=1.5, mode="wrap")
    return noise > np.quantile(noise, 1.0 - fill)
