"""Prompt session: boxes and clicks on the slices of a Volume, answered by a promptable model.

Coordinates are **voxel indices of the Volume**. On slice ``k`` of ``axis`` the slice is
``volume.array.take(k, axis)``, a 2D array indexed ``[x, y]``: ``x`` is the index along the first
remaining array axis and ``y`` along the second (for ``axis=2``: ``x = i``, ``y = j``). A box is
``(x0, y0, x1, y1)`` with inclusive voxel indices; a point is ``(x, y, positive)``. Masks returned
have the slice's shape (``[x, y]`` order, bool), so ``mask_3d.take(k, axis)[...] = mask`` puts them
back. The model sees the transposed slice (rows = y, cols = x), as SAM expects.

Each slice's image embedding is computed once and kept in a byte-bounded LRU cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from medseg.errors import EmptyBoxError, NoVolumeSetError, PromptError, PromptOutsideImageError
from medseg.models.promptable import PromptModel, Resize, intensity_range, load_promptable
from medseg.volume import Volume

Box = tuple[float, float, float, float]
Point = tuple[float, float, bool]
DEFAULT_CACHE_BYTES = 512 * 2**20


class EmbeddingCache:
    """LRU map ``key -> tensor`` holding at most ``budget_bytes`` of tensor data."""

    def __init__(self, budget_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.budget_bytes = int(budget_bytes)
        self._items: OrderedDict[object, torch.Tensor] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: object) -> torch.Tensor | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return item

    def put(self, key: object, value: torch.Tensor) -> None:
        """Store ``value``; evict least recently used entries until the budget holds."""
        size = value.element_size() * value.nelement()
        if key in self._items:
            old = self._items.pop(key)
            self.nbytes -= old.element_size() * old.nelement()
        if size > self.budget_bytes:
            return
        self._items[key] = value
        self.nbytes += size
        while self.nbytes > self.budget_bytes:
            _, evicted = self._items.popitem(last=False)
            self.nbytes -= evicted.element_size() * evicted.nelement()

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
        self.nbytes = 0


@dataclass
class ObjectState:
    """One object (label) of a case: its name, per-slice masks/scores and its undo history.

    ``masks[k]`` is bool ``[x, y]`` on slice ``k``; ``history`` holds, per edit, the previous
    ``(mask, score)`` of every slice the edit changed (``None`` = slice had no mask).
    """

    name: str
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)
    prompted: set[int] = field(default_factory=set)
    history: list[dict[int, tuple[np.ndarray, float] | None]] = field(default_factory=list)


class PromptSession:
    """Embeds slices once, answers box/point prompts per object, keeps masks and undo history."""

    def __init__(self, model: PromptModel | str = "lite", *,
                 cache_bytes: int = DEFAULT_CACHE_BYTES, batch_size: int = 4) -> None:
        self.model = load_promptable(model) if isinstance(model, str) else model
        self.cache = EmbeddingCache(cache_bytes)
        self.batch_size = int(batch_size)
        self.embeddings_computed = 0
        self.objects: dict[int, ObjectState] = {}
        self._volume: Volume | None = None
        self.axis = 2
        self.modality: str | None = None
        self._window: tuple[float, float] = (0.0, 1.0)
        self._resize: Resize | None = None
        self._epoch = 0

    # ------------------------------------------------------------------ volume and slices
    def set_volume(self, volume: Volume, axis: int = 2, *, modality: str | None = None) -> None:
        """Use ``volume``, sliced along array axis ``axis`` (0, 1 or 2). Clears objects.

        ``modality`` ("CT", "MR"...) overrides ``volume.modality`` (NIfTI files carry none); CT
        selects the model's HU window, anything else the volume's 0.5/99.5 percentiles.
        """
        if axis not in (0, 1, 2):
            raise PromptError(f"axis must be 0, 1 or 2 (an array axis of the volume), got {axis}.")
        self._volume, self.axis = volume, int(axis)
        self.modality = modality or volume.modality
        self._epoch += 1
        self.cache.clear()
        self.objects = {}
        arr = np.asarray(volume.array)
        sample = arr.reshape(-1)[:: max(1, arr.size // 2_000_000)]
        self._window = intensity_range(sample, self.modality, self.model.spec.window)
        a, b = self.slice_shape
        self._resize = self.model.resize_for((b, a))

    @property
    def volume(self) -> Volume:
        if self._volume is None:
            raise NoVolumeSetError("No volume set: call set_volume(volume, axis) before prompting.")
        return self._volume

    @property
    def n_slices(self) -> int:
        return self.volume.shape[self.axis]

    @property
    def slice_shape(self) -> tuple[int, int]:
        """``(X, Y)``: sizes of the first and second remaining array axes of a slice."""
        shape = [s for i, s in enumerate(self.volume.shape) if i != self.axis]
        return shape[0], shape[1]

    @property
    def resize(self) -> Resize:
        _ = self.volume
        assert self._resize is not None
        return self._resize

    def in_plane_spacing(self) -> tuple[float, float]:
        """Voxel size (mm) along slice x and y."""
        sp = [s for i, s in enumerate(self.volume.spacing) if i != self.axis]
        return sp[0], sp[1]

    def slice_image(self, k: int) -> np.ndarray:
        """Slice ``k`` as a 2D array indexed ``[x, y]`` (a view of the volume)."""
        self._check_slice(k)
        return np.take(self.volume.array, int(k), axis=self.axis)

    def _check_slice(self, k: int) -> None:
        n = self.n_slices
        if not 0 <= int(k) < n:
            raise PromptOutsideImageError(
                f"Slice {k} is outside the volume: axis {self.axis} has slices 0..{n - 1}.")

    # ------------------------------------------------------------------ embeddings
    def embed_slices(self, slices: Sequence[int]) -> None:
        """Compute (in batches of ``batch_size``) the embeddings of ``slices`` not yet cached."""
        todo = [int(k) for k in dict.fromkeys(slices) if (self._epoch, self.axis, k)
                not in self.cache]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            for k in chunk:
                self._check_slice(k)
            x = torch.cat([self.model.preprocess(self.slice_image(k).T, self.modality,
                                                 window=self._window)[0] for k in chunk])
            emb = self.model.embed(x)
            self.embeddings_computed += len(chunk)
            for k, e in zip(chunk, emb, strict=True):
                self.cache.put((self._epoch, self.axis, k), e[None].clone())

    def embedding(self, k: int) -> torch.Tensor:
        """Image embedding ``[1, D, E, E]`` of slice ``k`` (computed on a cache miss)."""
        self._check_slice(k)
        key = (self._epoch, self.axis, int(k))
        emb = self.cache.get(key)
        if emb is None:
            x, _ = self.model.preprocess(self.slice_image(k).T, self.modality,
                                         window=self._window)
            emb = self.model.embed(x)
            self.embeddings_computed += 1
            self.cache.put(key, emb)
        return emb

    # ------------------------------------------------------------------ prompts
    def check_box(self, box: Box) -> Box:
        """Validate an inclusive voxel box ``(x0, y0, x1, y1)`` on a slice of this volume."""
        if len(box) != 4:
            raise PromptError(f"A box is (x0, y0, x1, y1), got {box!r}.")
        x0, y0, x1, y1 = (float(v) for v in box)
        if x0 > x1 or y0 > y1:
            raise EmptyBoxError(
                f"Box {tuple(box)} is empty: it needs x0 <= x1 and y0 <= y1 "
                "(inclusive voxel indices, x along the first remaining array axis).")
        nx, ny = self.slice_shape
        if x0 < 0 or y0 < 0 or x1 > nx - 1 or y1 > ny - 1:
            raise PromptOutsideImageError(
                f"Box {tuple(box)} is outside the slice: x must lie in 0..{nx - 1} and y in "
                f"0..{ny - 1} (voxel indices of the slice, axis {self.axis} removed).")
        return x0, y0, x1, y1

    def check_points(self, points: Sequence[Point]) -> tuple[np.ndarray, np.ndarray]:
        """Validate ``[(x, y, positive), ...]`` -> (xy ``[N, 2]`` float, labels ``[N]`` int)."""
        nx, ny = self.slice_shape
        xy, labels = [], []
        for p in points:
            if len(p) != 3:
                raise PromptError(f"A point is (x, y, positive), got {p!r}.")
            x, y = float(p[0]), float(p[1])
            if not (0 <= x <= nx - 1 and 0 <= y <= ny - 1):
                raise PromptOutsideImageError(
                    f"Point ({p[0]}, {p[1]}) is outside the slice: x must lie in 0..{nx - 1} "
                    f"and y in 0..{ny - 1} (voxel indices of the slice).")
            xy.append((x, y))
            labels.append(1 if p[2] else 0)
        return np.asarray(xy, np.float64).reshape(-1, 2), np.asarray(labels, np.int64)

    def mask_prompt(self, mask: np.ndarray) -> torch.Tensor:
        """Slice mask ``[x, y]`` -> low-res logits ``[1, 1, L, L]`` for ``decode(mask_input=)``."""
        if mask.shape != self.slice_shape:
            raise PromptError(f"mask_input has shape {mask.shape}, the slice {self.slice_shape}.")
        return self.resize.mask_to_low_res(np.asarray(mask).T > 0,
                                           self.model.spec.low_res_size)

    def predict_low_res(self, k: int, *, box: Box | None = None,
                        points: Sequence[Point] | None = None,
                        mask_input: np.ndarray | None = None,
                        multimask: bool | None = None) -> tuple[torch.Tensor, float]:
        """Validated prompts on slice ``k`` -> (best logits ``[L, L]``: low-res, or the model
        input for a RoI-decoder model; predicted IoU)."""
        self._check_slice(k)
        if box is None and not points and mask_input is None:
            raise PromptError("Give a box, at least one point or a mask_input to predict.")
        rs = self.resize
        mbox = None if box is None else rs.box_to_model(self.check_box(box))
        mpts, labels = (None, None)
        if points:
            xy, labels = self.check_points(points)  # validates each point first
            if box is None and mask_input is None and not labels.any():
                raise PromptError(f"Slice {k}: only negative clicks. A negative click says "
                                  "what is not the object; add a positive click on it, or a "
                                  "box.")
            mpts = rs.points_to_model(xy)
        mprompt = None if mask_input is None else self.mask_prompt(mask_input)
        multi = (box is None and points is not None and len(points) == 1) \
            if multimask is None else multimask
        low, iou = self.model.decode(self.embedding(k), box=mbox, points=mpts,
                                     point_labels=labels, mask_input=mprompt, multimask=multi,
                                     modality=self.modality)
        best = int(torch.argmax(iou[0]))
        return low[0, best].detach().cpu(), float(iou[0, best])

    def low_res_to_mask(self, low_res: torch.Tensor) -> np.ndarray:
        """Low-res logits ``[L, L]`` -> bool slice mask ``[x, y]`` (logits above the model's
        ``mask_threshold``)."""
        full = self.resize.logits_to_slice(low_res.float()[None, None])[0, 0]
        return (full > self.model.mask_threshold).numpy().T.copy()

    def predict(self, slice_index: int, box: Box | None = None,
                points: Sequence[Point] | None = None,
                mask_input: np.ndarray | Literal["previous"] | None = None,
                object_id: int = 1, *, multimask: bool | None = None,
                record: bool = True) -> tuple[np.ndarray, float]:
        """Segment ``object_id`` on slice ``slice_index`` -> (mask bool ``[x, y]``, IoU score).

        ``box`` ``(x0, y0, x1, y1)`` inclusive voxel indices; ``points`` ``[(x, y, positive)]``;
        ``mask_input`` a previous slice mask ``[x, y]`` or ``"previous"`` (this object's current
        mask on this slice, for click refinement). With ``record`` the mask replaces the
        object's mask on that slice (undoable).
        """
        if isinstance(mask_input, str):
            mask_input = self.objects[object_id].masks.get(int(slice_index)) \
                if object_id in self.objects else None
        low, score = self.predict_low_res(int(slice_index), box=box, points=points,
                                          mask_input=mask_input, multimask=multimask)
        mask = self.low_res_to_mask(low)
        if record:
            obj = self.object(object_id)
            obj.prompted.add(int(slice_index))
            self.apply_edit(object_id, {int(slice_index): (mask, score)})
        return mask, score

    # ------------------------------------------------------------------ objects and undo
    def object(self, object_id: int, name: str | None = None) -> ObjectState:
        """The state of ``object_id`` (created on first use, named ``name`` or object_<id>)."""
        if object_id < 1:
            raise PromptError(f"object_id must be a positive label value, got {object_id}.")
        obj = self.objects.setdefault(int(object_id), ObjectState(name or f"object_{object_id}"))
        if name:
            obj.name = name
        return obj

    def apply_edit(self, object_id: int,
                   changes: dict[int, tuple[np.ndarray, float] | None]) -> None:
        """Set (or with ``None`` remove) masks of several slices as one undoable step."""
        obj = self.object(object_id)
        if not changes:
            return
        previous: dict[int, tuple[np.ndarray, float] | None] = {}
        for k, new in changes.items():
            previous[k] = (obj.masks[k], obj.scores[k]) if k in obj.masks else None
            if new is None or not new[0].any():
                obj.masks.pop(k, None)
                obj.scores.pop(k, None)
            else:
                obj.masks[k], obj.scores[k] = new[0], float(new[1])
        obj.history.append(previous)

    def undo(self, object_id: int = 1) -> list[int]:
        """Revert the last edit of ``object_id``; returns the slices it restored."""
        obj = self.objects.get(int(object_id))
        if obj is None or not obj.history:
            raise PromptError(f"Nothing to undo for object {object_id}.")
        previous = obj.history.pop()
        for k, old in previous.items():
            if old is None:
                obj.masks.pop(k, None)
                obj.scores.pop(k, None)
            else:
                obj.masks[k], obj.scores[k] = old
        return sorted(previous)

    def object_array(self, object_id: int) -> np.ndarray:
        """Bool mask of ``object_id`` on the whole volume grid ``[i, j, k]``."""
        out = np.zeros(self.volume.shape, dtype=bool)
        for k, m in self.object(object_id).masks.items():
            idx: list[slice | int] = [slice(None)] * 3
            idx[self.axis] = k
            out[tuple(idx)] = m
        return out

    def label_volume(self) -> Volume:
        """All objects as one label map on the input grid (later object ids win overlaps)."""
        arr = np.zeros(self.volume.shape, dtype=np.uint16 if max(self.objects, default=0) > 255
                       else np.uint8)
        for oid in sorted(self.objects):
            arr[self.object_array(oid)] = oid
        return self.volume.with_array(arr, labels={o: s.name for o, s in self.objects.items()})
