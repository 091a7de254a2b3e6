"""3D propagation of a promptable model's 2D masks from key slices, in both directions.

Rules (see docs/prompting.md):

* Key slices are the slices an object was prompted on (their masks are kept as given).
* From every key slice a *run* walks up (+1) and down (-1), one slice at a time, until the next
  key slice or the volume's end. On each slice the prompt is the run's previous mask's
  bounding box grown by a margin (mm or voxels; 1 voxel by default), and with
  ``use_mask_prompt`` the mask itself as mask prompt (off by default: the lite model copies a
  mask prompt, so a mask that starts too large stays too large and runs past the structure's
  end; chosen on validation organs, bench/results/prompt_propagation_val.md; the 1-voxel
  margin and the 0.2 drift limit with five key-slice boxes per validation structure,
  bench/results/prompt_propagation_val_stops5.md).
* A run stops (that slice and the rest of its way stay empty) when the predicted IoU is below
  ``min_score``, the mask has fewer than ``min_area_px`` voxels, its area is below
  ``min_area_ratio`` (or above ``max_area_ratio``) times the previous slice's, or its mean
  intensity drifted from the key slice's by more than ``max_intensity_drift``.
* Between two key slices both runs exist; their low-res logits are averaged with the predicted
  IoU as weights. Confidence = that weighted IoU times ``(1 + IoU(run masks)) / 2`` (the two
  directions disagreeing lowers it); the slices to check are the lowest-confidence ones.
* A correction makes its slice a key slice and recomputes only the runs leaving it, each only
  until its mask equals the previous run's mask on a slice (from there on the run is
  deterministic and unchanged) or the next key slice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from medseg.engine.prompt import Box, Point, PromptSession
from medseg.errors import PromptError
from medseg.volume import Volume


@dataclass(frozen=True)
class PropagationConfig:
    """Thresholds of propagation (defaults documented in docs/prompting.md)."""

    margin_mm: float | None = None   # box margin in mm; None -> margin_px
    margin_px: int = 1
    min_score: float = 0.5
    min_area_px: int = 10
    min_area_ratio: float = 0.3
    max_area_ratio: float = 3.0
    #: stop when the mean intensity inside the mask moves more than this fraction of the
    #: volume's intensity window away from the key slice's (None: rule off)
    max_intensity_drift: float | None = 0.2
    use_mask_prompt: bool = False
    n_check: int = 5
    lookahead: int = 8               # slices embedded ahead of a run, in batches


@dataclass
class Stop:
    """Where a run ended: ``slice_index`` is the first slice it did not segment."""

    object_id: int
    start: int
    direction: int
    slice_index: int
    reason: str


@dataclass
class PropagationResult:
    """3D result of one object: label map on the input grid + per-slice confidence."""

    mask: Volume
    confidence: np.ndarray           # float64 [n_slices]; NaN where the object is absent
    to_check: list[int]
    keys: list[int]
    stops: list[Stop] = field(default_factory=list)
    recomputed: list[int] = field(default_factory=list)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    xs, ys = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])


class Propagator:
    """Propagates the objects of a :class:`PromptSession` through its volume."""

    def __init__(self, session: PromptSession, config: PropagationConfig | None = None) -> None:
        self.session = session
        self.config = config or PropagationConfig()
        # (object, direction, slice) -> (low-res logits [L, L] float16, score, run's mask)
        self._runs: dict[tuple[int, int, int], tuple[torch.Tensor, float, np.ndarray]] = {}
        self._stops: dict[tuple[int, int, int], Stop] = {}
        self._epoch = -1  # session volume the runs belong to

    def _sync(self) -> None:
        """Forget runs computed on a previous volume of the session."""
        if self._epoch != self.session._epoch:
            self._runs.clear()
            self._stops.clear()
            self._epoch = self.session._epoch

    # ------------------------------------------------------------------ helpers
    def _margin(self) -> tuple[int, int]:
        cfg = self.config
        if cfg.margin_mm is None:
            return cfg.margin_px, cfg.margin_px
        sx, sy = self.session.in_plane_spacing()
        return int(np.ceil(cfg.margin_mm / sx)), int(np.ceil(cfg.margin_mm / sy))

    def box_from_mask(self, mask: np.ndarray) -> Box:
        """Bounding box ``(x0, y0, x1, y1)`` of ``mask`` ``[x, y]`` grown by the margin, clipped."""
        x0, y0, x1, y1 = _bbox(mask)
        mx, my = self._margin()
        nx, ny = mask.shape
        return (max(0, x0 - mx), max(0, y0 - my), min(nx - 1, x1 + mx), min(ny - 1, y1 + my))

    def _keys(self, object_id: int) -> list[int]:
        obj = self.session.objects.get(object_id)
        keys = sorted(k for k in obj.prompted if k in obj.masks) if obj else []
        if not keys:
            raise PromptError(f"Object {object_id} has no prompted slice with a mask: predict a "
                              "box or points on a key slice before propagating.")
        return keys

    def _mean_intensity(self, k: int, mask: np.ndarray) -> float:
        """Mean of slice ``k`` inside ``mask`` as a fraction of the session's window."""
        lo, hi = self.session._window
        return (float(self.session.slice_image(k)[mask].mean()) - lo) / max(hi - lo, 1e-6)

    def _check_drift(self, k: int, mask: np.ndarray, key_mean: float) -> str | None:
        limit = self.config.max_intensity_drift
        if limit is None:
            return None
        drift = abs(self._mean_intensity(k, mask) - key_mean)
        return f"intensity drift {drift:.3f} > {limit}" if drift > limit else None

    def _check_stop(self, area: int, prev_area: int, score: float) -> str | None:
        cfg = self.config
        if area == 0:
            return "empty mask"
        if score < cfg.min_score:
            return f"score {score:.3f} < {cfg.min_score}"
        if area < cfg.min_area_px:
            return f"area {area} px < {cfg.min_area_px}"
        if area < cfg.min_area_ratio * prev_area:
            return f"area {area} < {cfg.min_area_ratio} x previous {prev_area}"
        if area > cfg.max_area_ratio * prev_area:
            return f"area {area} > {cfg.max_area_ratio} x previous {prev_area}"
        return None

    # ------------------------------------------------------------------ runs
    def _run(self, object_id: int, start: int, direction: int, end: int,
             until_unchanged: bool) -> list[int]:
        """Walk from key ``start`` toward ``end`` (exclusive); returns the slices predicted."""
        s = self.session
        prev = s.objects[object_id].masks[start]
        key_mean = self._mean_intensity(start, prev)
        done: list[int] = []
        self._stops.pop((object_id, direction, start), None)
        for k in range(start + direction, end, direction):
            if (abs(k - start) - 1) % max(1, self.config.lookahead) == 0:
                ahead = range(k, end, direction)[: self.config.lookahead]
                s.embed_slices(list(ahead))
            mask_in = prev if self.config.use_mask_prompt else None
            low, score = s.predict_low_res(k, box=self.box_from_mask(prev), mask_input=mask_in,
                                           multimask=False)
            mask = s.low_res_to_mask(low)
            done.append(k)
            reason = self._check_stop(int(mask.sum()), int(prev.sum()), score) \
                or self._check_drift(k, mask, key_mean)
            if reason is not None:
                self._stops[(object_id, direction, start)] = Stop(object_id, start, direction,
                                                                  k, reason)
                for t in range(k, end, direction):
                    self._runs.pop((object_id, direction, t), None)
                break
            old = self._runs.get((object_id, direction, k))
            self._runs[(object_id, direction, k)] = (low.half(), score, mask)
            if until_unchanged and old is not None and np.array_equal(old[2], mask):
                break
            prev = mask
        return done

    def _fuse(self, object_id: int, k: int) -> tuple[np.ndarray, float] | None:
        up, down = self._runs.get((object_id, 1, k)), self._runs.get((object_id, -1, k))
        if up is None or down is None:
            one = up or down
            return None if one is None else (one[2], one[1])
        w_up, w_down = max(up[1], 1e-3), max(down[1], 1e-3)
        low = (up[0].float() * w_up + down[0].float() * w_down) / (w_up + w_down)
        inter = np.logical_and(up[2], down[2]).sum()
        union = np.logical_or(up[2], down[2]).sum()
        agree = inter / union if union else 1.0
        score = (w_up * w_up + w_down * w_down) / (w_up + w_down)
        return self.session.low_res_to_mask(low), float(score * (1.0 + agree) / 2.0)

    def _commit(self, object_id: int, slices: set[int], keys: list[int]) -> None:
        obj = self.session.objects[object_id]
        changes: dict[int, tuple[np.ndarray, float] | None] = {}
        for k in sorted(slices - set(keys)):
            new = self._fuse(object_id, k)
            old = obj.masks.get(k)
            if new is None and old is None:
                continue
            if new is not None and old is not None and np.array_equal(new[0], old) \
                    and abs(new[1] - obj.scores[k]) < 1e-9:
                continue
            changes[k] = new
        self.session.apply_edit(object_id, changes)

    # ------------------------------------------------------------------ public
    def propagate(self, object_id: int = 1) -> PropagationResult:
        """Propagate ``object_id`` from all its key slices through the whole volume."""
        self._sync()
        keys = self._keys(object_id)
        for run_key in [k for k in self._runs if k[0] == object_id]:
            del self._runs[run_key]
        self._stops = {k: v for k, v in self._stops.items() if k[0] != object_id}
        bounds = [-1, *keys, self.session.n_slices]
        touched: list[int] = []
        for i, key in enumerate(keys):
            touched += self._run(object_id, key, 1, bounds[i + 2], False)
            touched += self._run(object_id, key, -1, bounds[i], False)
        self._commit(object_id, set(range(self.session.n_slices)), keys)
        return self.result(object_id, recomputed=touched)

    def correct(self, slice_index: int, box: Box | None = None,
                points: list[Point] | None = None, object_id: int = 1) -> PropagationResult:
        """Re-prompt ``slice_index`` (it becomes a key slice) and re-propagate locally."""
        self.session.predict(slice_index, box=box, points=points, object_id=object_id)
        return self.repropagate(slice_index, object_id)

    def repropagate(self, slice_index: int, object_id: int = 1) -> PropagationResult:
        """Recompute only the runs leaving key ``slice_index`` (see the module docstring).

        Runs are those of the last :meth:`propagate`; after undoing a propagation, propagate
        again rather than correcting.
        """
        self._sync()
        keys = self._keys(object_id)
        if slice_index not in keys:
            raise PromptError(f"Slice {slice_index} is not a prompted slice of object "
                              f"{object_id}; predict on it first.")
        i = keys.index(slice_index)
        bounds = [-1, *keys, self.session.n_slices]
        for direction in (1, -1):  # runs that used to cross this slice now end at it
            self._runs.pop((object_id, direction, slice_index), None)
            neighbour = bounds[i] if direction == 1 else bounds[i + 2]
            stop = self._stops.get((object_id, direction, neighbour))
            if stop is not None and (stop.slice_index - slice_index) * direction > 0:
                del self._stops[(object_id, direction, neighbour)]
        touched = self._run(object_id, slice_index, 1, bounds[i + 2], True)
        touched += self._run(object_id, slice_index, -1, bounds[i], True)
        lo, hi = bounds[i] + 1, bounds[i + 2]
        self._commit(object_id, set(range(lo, hi)), keys)
        return self.result(object_id, recomputed=touched)

    def result(self, object_id: int = 1, recomputed: list[int] | None = None
               ) -> PropagationResult:
        """Current 3D mask, confidence and slices to check of ``object_id``."""
        s = self.session
        obj = s.objects[object_id]
        conf = np.full(s.n_slices, np.nan)
        for k, score in obj.scores.items():
            conf[k] = score
        keys = self._keys(object_id)
        candidates = [k for k in obj.masks if k not in keys]
        to_check = sorted(candidates, key=lambda k: (conf[k], k))[: self.config.n_check]
        dtype = np.uint8 if object_id < 256 else np.uint16
        arr = np.where(s.object_array(object_id), object_id, 0).astype(dtype)
        mask = s.volume.with_array(arr, labels={object_id: obj.name})
        stops = [v for k, v in sorted(self._stops.items()) if k[0] == object_id]
        return PropagationResult(mask=mask, confidence=conf, to_check=to_check, keys=keys,
                                 stops=stops, recomputed=sorted(set(recomputed or [])))
