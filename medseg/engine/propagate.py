"""3D propagation of a promptable model's 2D masks from key slices, in both directions.

The caller owns the masks: :meth:`Propagator.propagate` takes the key slices' masks and
returns every slice's mask; :meth:`Propagator.repropagate` does the same after one key slice
changed, recomputing only what that change can reach. Rules (docs/prompting.md):

* Key slices keep their masks as given.
* From every key slice a *run* walks up (+1) and down (-1), one slice at a time, until the next
  key slice or the volume's end. On each slice the prompt is the run's previous mask's
  bounding box grown by a margin (mm or voxels; 1 voxel by default).
* A run stops (that slice and the rest of its way stay empty) when the predicted IoU is below
  ``min_score``, the mask has fewer than ``min_area_px`` voxels, its area is below
  ``min_area_ratio`` (or above ``max_area_ratio``) times the previous slice's, or its mean
  intensity drifted from the key slice's by more than ``max_intensity_drift`` of the volume's
  intensity window.
* Between two key slices both runs exist; their logits are averaged with the predicted IoU as
  weights. Confidence = that weighted IoU times ``(1 + IoU(run masks)) / 2`` (the two
  directions disagreeing lowers it); the slices to check are the lowest-confidence ones.
* A changed key slice recomputes only the runs leaving it, each only until its mask equals the
  previous run's mask on a slice (from there on the run is deterministic and unchanged) or the
  next key slice; the result equals a full propagation with the new keys.

The propagator uses the session's public API only; its own state is a cache of runs per object,
forgotten when the session's volume changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from medseg.engine.prompt import Box, PromptSession
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
    """3D result of one object: every slice's mask (keys included), the label map on the
    input grid, per-slice confidence."""

    masks: dict[int, np.ndarray]     # slice -> bool [x, y]; slices without a mask are absent
    scores: dict[int, float]
    mask: Volume
    confidence: np.ndarray           # float64 [n_slices]; NaN where the object is absent
    to_check: list[int]
    keys: list[int]
    stops: list[Stop] = field(default_factory=list)
    recomputed: list[int] = field(default_factory=list)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    xs, ys = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])


@dataclass
class _Memory:
    """What the propagator keeps of one object: its keys and the last result's masks."""

    keys: dict[int, np.ndarray]
    masks: dict[int, np.ndarray]
    scores: dict[int, float]


def _clean_keys(keys: Mapping[int, np.ndarray], object_id: int) -> dict[int, np.ndarray]:
    out = {int(k): np.asarray(m, dtype=bool) for k, m in keys.items() if np.any(m)}
    if not out:
        raise PromptError(f"Object {object_id} has no key slice with a mask: predict a box or "
                          "points on a key slice before propagating.")
    return dict(sorted(out.items()))


class Propagator:
    """Propagates objects through the volume of a :class:`PromptSession`."""

    def __init__(self, session: PromptSession, config: PropagationConfig | None = None) -> None:
        self.session = session
        self.config = config or PropagationConfig()
        # (object, direction, slice) -> (logits [L, L] float16, score, run's mask)
        self._runs: dict[tuple[int, int, int], tuple[torch.Tensor, float, np.ndarray]] = {}
        self._stops: dict[tuple[int, int, int], Stop] = {}
        self._memory: dict[int, _Memory] = {}
        self._epoch = -1  # session volume the runs belong to

    def _sync(self) -> None:
        """Forget runs computed on a previous volume of the session."""
        if self._epoch != self.session.epoch:
            self._runs.clear()
            self._stops.clear()
            self._memory.clear()
            self._epoch = self.session.epoch

    def _forget(self, object_id: int) -> None:
        self._runs = {k: v for k, v in self._runs.items() if k[0] != object_id}
        self._stops = {k: v for k, v in self._stops.items() if k[0] != object_id}
        self._memory.pop(object_id, None)

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

    def _mean_intensity(self, k: int, mask: np.ndarray) -> float:
        """Mean of slice ``k`` inside ``mask`` as a fraction of the session's window."""
        lo, hi = self.session.window
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
    def _run(self, object_id: int, prev: np.ndarray, start: int, direction: int, end: int,
             until_unchanged: bool) -> list[int]:
        """Walk from key ``start`` (mask ``prev``) toward ``end`` (exclusive); returns the
        slices predicted."""
        s = self.session
        key_mean = self._mean_intensity(start, prev)
        done: list[int] = []
        self._stops.pop((object_id, direction, start), None)
        for k in range(start + direction, end, direction):
            if (abs(k - start) - 1) % max(1, self.config.lookahead) == 0:
                s.embed_slices(list(range(k, end, direction)[: self.config.lookahead]))
            low, score = s.predict_low_res(k, box=self.box_from_mask(prev), multimask=False)
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

    def _collect(self, object_id: int, keys: dict[int, np.ndarray], slices: range,
                 key_scores: Mapping[int, float]) -> None:
        """Remember keys + the fused runs on ``slices`` (other slices keep their masks)."""
        old = self._memory.get(object_id, _Memory({}, {}, {}))
        masks = {k: m for k, m in old.masks.items() if k not in slices and k not in keys}
        scores = {k: old.scores[k] for k in masks}
        for k in slices:
            fused = None if k in keys else self._fuse(object_id, k)
            if fused is not None and fused[0].any():
                masks[k], scores[k] = fused
        for k, m in keys.items():
            masks[k], scores[k] = m, float(key_scores.get(k, 1.0))
        self._memory[object_id] = _Memory(keys, dict(sorted(masks.items())), scores)

    # ------------------------------------------------------------------ public
    def propagate(self, keys: Mapping[int, np.ndarray], object_id: int = 1, *,
                  name: str = "structure", key_scores: Mapping[int, float] | None = None
                  ) -> PropagationResult:
        """Propagate the object whose key slices hold ``keys`` (``{k: mask [x, y]}``) through
        the whole volume. ``key_scores`` (e.g. the keys' predicted IoU) is their confidence."""
        self._sync()
        keys_ = _clean_keys(keys, object_id)
        self._forget(object_id)
        ks = list(keys_)
        bounds = [-1, *ks, self.session.n_slices]
        touched: list[int] = []
        for i, key in enumerate(ks):
            touched += self._run(object_id, keys_[key], key, 1, bounds[i + 2], False)
            touched += self._run(object_id, keys_[key], key, -1, bounds[i], False)
        self._collect(object_id, keys_, range(self.session.n_slices), key_scores or {})
        return self._result(object_id, name, touched)

    def repropagate(self, keys: Mapping[int, np.ndarray], slice_index: int, object_id: int = 1,
                    *, name: str = "structure", key_scores: Mapping[int, float] | None = None
                    ) -> PropagationResult:
        """As :meth:`propagate` after key ``slice_index`` was added or changed, recomputing
        only the runs leaving it (module docstring). Falls back to :meth:`propagate` when this
        propagator has no earlier result of the object on this volume, or when other keys
        changed too."""
        self._sync()
        keys_ = _clean_keys(keys, object_id)
        if slice_index not in keys_:
            raise PromptError(f"Slice {slice_index} is not a key slice of object {object_id}; "
                              "predict on it first.")
        old = self._memory.get(object_id)
        others = {k: m for k, m in keys_.items() if k != slice_index}
        if old is None or set(others) != set(old.keys) - {slice_index} or \
                any(not np.array_equal(m, old.keys[k]) for k, m in others.items()):
            return self.propagate(keys_, object_id, name=name, key_scores=key_scores)
        ks = list(keys_)
        i = ks.index(slice_index)
        bounds = [-1, *ks, self.session.n_slices]
        for direction in (1, -1):  # runs that used to cross this slice now end at it
            self._runs.pop((object_id, direction, slice_index), None)
            neighbour = bounds[i] if direction == 1 else bounds[i + 2]
            stop = self._stops.get((object_id, direction, neighbour))
            if stop is not None and (stop.slice_index - slice_index) * direction > 0:
                del self._stops[(object_id, direction, neighbour)]
        key = keys_[slice_index]
        touched = self._run(object_id, key, slice_index, 1, bounds[i + 2], True)
        touched += self._run(object_id, key, slice_index, -1, bounds[i], True)
        self._collect(object_id, keys_, range(bounds[i] + 1, bounds[i + 2]), key_scores or {})
        return self._result(object_id, name, touched)

    def _result(self, object_id: int, name: str, recomputed: list[int]) -> PropagationResult:
        s, mem = self.session, self._memory[object_id]
        conf = np.full(s.n_slices, np.nan)
        for k, score in mem.scores.items():
            conf[k] = score
        candidates = [k for k in mem.masks if k not in mem.keys]
        to_check = sorted(candidates, key=lambda k: (conf[k], k))[: self.config.n_check]
        stops = [v for k, v in sorted(self._stops.items()) if k[0] == object_id]
        return PropagationResult(
            masks=dict(mem.masks), scores=dict(mem.scores),
            mask=s.to_volume(mem.masks, object_id, name), confidence=conf, to_check=to_check,
            keys=list(mem.keys), stops=stops, recomputed=sorted(set(recomputed)))
