"""Review aids: which slices of a propagated 3D proposal an annotator should look at first.

:func:`slices_to_check` ranks slices by a suspicion score that combines the model's own
confidence with shape and image signals, because a confident model can still be wrong on a
slice (the predicted IoU of a promptable model is near 0.9 on most slices of a CT, and a
missed lobe or an included wall does not lower it). Every signal estimates how many voxels
of the slice may be wrong, as a fraction of the proposal's largest section (so the small
sections at a structure's ends, whose shape changes fast, do not dominate):

* ``low confidence``: (1 - the slice's confidence, i.e. predicted IoU,
  :mod:`medseg.engine.propagate`) times the slice's area;
* ``shape jump``: voxels where the slice's mask differs from the shape interpolated from its
  two neighbours (:func:`medseg.edit.interpolate_masks`; the one neighbour at a run's end):
  a slice that does not fit between its neighbours is where a part was missed or a wall
  included;
* ``area jump``: the slice's area minus its neighbours' mean area, in absolute value;
* ``weak edges``: (1 - the mean image gradient on the mask's outline over the slice's 90th
  gradient percentile, capped to 0..1) times the slice's area: an outline that does not
  follow image edges;
* ``cut short``: for the first empty slice past each end of the proposal, the last masked
  slice's area: a run that stopped while the structure was still large probably missed its
  continuation.

Candidates are the masked slices that are not key slices (the annotator drew those) plus the
two slices past the proposal's ends. The score is the signals' weighted sum with
:data:`WEIGHTS`, chosen on the validation structures of ``bench/review_slices.py`` and
measured on its held-out structures (bench/results/review_slices.md): the shape and area
jumps find the worst slice most often; the model's confidence alone does worse than them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
from scipy import ndimage

from medseg.edit import interpolate_masks

__all__ = ["SIGNALS", "WEIGHTS", "slice_signals", "slices_to_check"]

SIGNALS = ("low_confidence", "shape_jump", "area_jump", "weak_edges", "cut_short")
#: weights of :data:`SIGNALS` in the suspicion score: the best of a grid search on the
#: validation structures of bench/review_slices.py (hit@5 0.40 -> 0.68 there; held-out test
#: structures 0.65 -> 0.71). Confidence, weak edges and cut-short runs did not add hits there,
#: so they weigh 0; they stay computed (:func:`slice_signals`) and can be weighed in.
WEIGHTS: dict[str, float] = {"low_confidence": 0.0, "shape_jump": 1.0, "area_jump": 0.5,
                             "weak_edges": 0.0, "cut_short": 0.0}


def slices_to_check(image: np.ndarray, mask: np.ndarray,
                    scores: np.ndarray | Mapping[int, float], k: int = 5, *,
                    keys: Collection[int] = (), axis: int = 2,
                    spacing: Sequence[float] | None = None,
                    weights: Mapping[str, float] | None = None) -> list[int]:
    """The ``k`` slices (indices along ``axis``) most worth checking, worst first.

    Args:
        image: the image, any numeric dtype, same shape as ``mask``.
        mask: the 3D proposal (bool or 0/1), on the image's grid.
        scores: per-slice confidence (array of ``n_slices`` with NaN where there is no
            mask, or ``{slice: score}``); missing slices count as confidence 1.
        keys: key slices (prompted by the annotator), never returned.
        axis: the slicing axis.
        spacing: voxel size per axis of ``image`` (None: isotropic).
        weights: overrides of :data:`WEIGHTS`.
    """
    signals = slice_signals(image, mask, scores, keys=keys, axis=axis, spacing=spacing)
    w = {**WEIGHTS, **(weights or {})}
    total = {s: sum(w[name] * v for name, v in sig.items()) for s, sig in signals.items()}
    return sorted(total, key=lambda s: (-total[s], s))[:k]


def slice_signals(image: np.ndarray, mask: np.ndarray,
                  scores: np.ndarray | Mapping[int, float], *, keys: Collection[int] = (),
                  axis: int = 2, spacing: Sequence[float] | None = None
                  ) -> dict[int, dict[str, float]]:
    """``{slice: {signal: value}}`` for every candidate slice: each value is a number of
    voxels over the largest section's area, mostly 0..1 (module docstring)."""
    img = np.moveaxis(np.asarray(image, dtype=np.float32), axis, 0)
    m = np.moveaxis(np.asarray(mask, dtype=bool), axis, 0)
    plane = None if spacing is None else [float(s) for i, s in enumerate(spacing) if i != axis]
    n = m.shape[0]
    conf = _confidence(scores, n)
    areas = m.reshape(n, -1).sum(axis=1).astype(float)
    masked = [s for s in range(n) if areas[s] > 0]
    if not masked:
        return {}
    big = float(areas.max())
    out: dict[int, dict[str, float]] = {}
    for s in masked:
        if s in keys:
            continue
        share = areas[s] / big
        out[s] = {"low_confidence": float(np.clip(1.0 - conf[s], 0.0, 1.0) * share),
                  "shape_jump": _shape_jump(m, s, plane) / big,
                  "area_jump": _area_jump(areas, s) / big,
                  "weak_edges": _weak_edges(img[s], m[s]) * share,
                  "cut_short": 0.0}
    for end, beyond in ((masked[0], masked[0] - 1), (masked[-1], masked[-1] + 1)):
        if 0 <= beyond < n and beyond not in keys:
            out[beyond] = {name: 0.0 for name in SIGNALS}
            out[beyond]["cut_short"] = float(areas[end] / big)
    return out


def _confidence(scores: np.ndarray | Mapping[int, float], n: int) -> np.ndarray:
    conf = np.ones(n)
    if isinstance(scores, Mapping):
        for s, v in scores.items():
            if 0 <= int(s) < n:
                conf[int(s)] = float(v)
    else:
        arr = np.asarray(scores, dtype=float)[:n]
        conf[: len(arr)] = np.where(np.isfinite(arr), arr, 1.0)
    return conf


def _shape_jump(m: np.ndarray, s: int, plane: list[float] | None) -> float:
    """Voxels by which slice ``s`` differs from the shape its neighbours imply."""
    below = m[s - 1] if s > 0 and m[s - 1].any() else None
    above = m[s + 1] if s + 1 < m.shape[0] and m[s + 1].any() else None
    expected: np.ndarray
    if below is not None and above is not None:
        expected = interpolate_masks(below, above, 0.5, plane)
    elif below is not None:
        expected = below
    elif above is not None:
        expected = above
    else:
        return 0.0
    return float(np.count_nonzero(m[s] ^ np.asarray(expected, dtype=bool)))


def _area_jump(areas: np.ndarray, s: int) -> float:
    """Voxels by which slice ``s``'s area differs from its masked neighbours' mean."""
    near = [areas[t] for t in (s - 1, s + 1) if 0 <= t < len(areas) and areas[t] > 0]
    if not near:
        return 0.0
    return float(abs(areas[s] - float(np.mean(near))))


def _weak_edges(img: np.ndarray, m: np.ndarray) -> float:
    grad = ndimage.gaussian_gradient_magnitude(img, sigma=1.0)
    outline = m & ~ndimage.binary_erosion(m)
    ref = float(np.percentile(grad, 90))
    if not outline.any() or ref <= 0:
        return 0.0
    return float(np.clip(1.0 - float(grad[outline].mean()) / ref, 0.0, 1.0))
