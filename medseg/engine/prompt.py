"""Prompt session: boxes and clicks on the slices of a Volume, answered by a promptable model.

Coordinates are **voxel indices of the Volume**. On slice ``k`` of ``axis`` the slice is
``volume.array.take(k, axis)``, a 2D array indexed ``[x, y]``: ``x`` is the index along the first
remaining array axis and ``y`` along the second (for ``axis=2``: ``x = i``, ``y = j``). A box is
``(x0, y0, x1, y1)`` with inclusive voxel indices; a point is ``(x, y, positive)``. Masks returned
have the slice's shape (``[x, y]`` order, bool), so ``mask_3d.take(k, axis)[...] = mask`` puts them
back. The model sees the transposed slice (rows = y, cols = x), as SAM expects.

The session is the model runtime only: it answers prompts, and its one state is the volume it
works on (with the modality decision and intensity range made once for it,
:mod:`medseg.modality`, :meth:`~medseg.models.prompt_recipe.PromptRecipe.intensity_range`)
and a byte-bounded LRU cache of slice embeddings. Masks belong to the caller (the app's
annotation, the CLI's label map): the session keeps none and has no undo.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medseg.errors import EmptyBoxError, NoVolumeSetError, PromptError, PromptOutsideImageError
from medseg.modality import ModalityDecision, decide_modality
from medseg.models.promptable import PromptModel, Resize, load_promptable
from medseg.volume import Volume

Box = tuple[float, float, float, float]
Point = tuple[float, float, bool]
DEFAULT_CACHE_BYTES = 512 * 2**20


@dataclass(frozen=True)
class SlicePrompt:
    """What a user gave on one slice: a box (inclusive voxel indices) and clicks in order."""

    box: Box | None = None
    points: tuple[Point, ...] = ()

    def with_box(self, box: Box) -> SlicePrompt:
        """A new box replaces the slice's prompt (its clicks go with the old box)."""
        return SlicePrompt(tuple(float(v) for v in box), ())  # type: ignore[arg-type]

    def with_point(self, point: Point) -> SlicePrompt:
        return SlicePrompt(self.box, (*self.points, (float(point[0]), float(point[1]),
                                                     bool(point[2]))))


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


class PromptSession:
    """Embeds slices once and answers box/point prompts on them (see the module docstring)."""

    def __init__(self, model: PromptModel | str = "lite", *,
                 cache_bytes: int = DEFAULT_CACHE_BYTES, batch_size: int = 4) -> None:
        self.model = load_promptable(model) if isinstance(model, str) else model
        self.cache = EmbeddingCache(cache_bytes)
        self.batch_size = int(batch_size)
        self.embeddings_computed = 0
        self._volume: Volume | None = None
        self.axis = 2
        self._modality = ModalityDecision(None, "data")
        self._window: tuple[float, float] = (0.0, 1.0)
        self._resize: Resize | None = None
        self._epoch = 0

    # ------------------------------------------------------------------ volume and slices
    def set_volume(self, volume: Volume, axis: int = 2, *, modality: str | None = None) -> None:
        """Use ``volume``, sliced along array axis ``axis`` (0, 1 or 2).

        ``modality`` ("CT", "MR"...) overrides the decision of
        :func:`medseg.modality.decide_modality` (header, else the data); the recipe's CT window
        applies when the decision is CT, the volume's percentiles otherwise.
        """
        if axis not in (0, 1, 2):
            raise PromptError(f"axis must be 0, 1 or 2 (an array axis of the volume), got {axis}.")
        self._volume, self.axis = volume, int(axis)
        self._modality = decide_modality(volume, modality)
        self._epoch += 1
        self.cache.clear()
        self._window = self.model.recipe.intensity_range(volume.array, self._modality.modality)
        a, b = self.slice_shape
        self._resize = self.model.resize_for((b, a))

    @property
    def volume(self) -> Volume:
        if self._volume is None:
            raise NoVolumeSetError("No volume set: call set_volume(volume, axis) before prompting.")
        return self._volume

    @property
    def modality(self) -> ModalityDecision:
        """The modality decision of the current volume."""
        return self._modality

    @property
    def window(self) -> tuple[float, float]:
        """``(lo, hi)`` intensities mapped to [0, 255] for the model (once per volume)."""
        return self._window

    @property
    def epoch(self) -> int:
        """Counts :meth:`set_volume` calls: results computed under another epoch are stale."""
        return self._epoch

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
    def model_input(self, k: int) -> torch.Tensor:
        """Slice ``k`` as the model sees it: ``[1, 3, S, S]`` (the recipe's preprocessing)."""
        self._check_slice(k)
        return self.model.preprocess(self.slice_image(k).T, self._window)[0]

    def embed_slices(self, slices: Sequence[int]) -> None:
        """Compute (in batches of ``batch_size``) the embeddings of ``slices`` not yet cached."""
        todo = [int(k) for k in dict.fromkeys(slices) if (self._epoch, self.axis, k)
                not in self.cache]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            emb = self.model.embed(torch.cat([self.model_input(k) for k in chunk]))
            self.embeddings_computed += len(chunk)
            for k, e in zip(chunk, emb, strict=True):
                self.cache.put((self._epoch, self.axis, k), e[None].clone())

    def embedding(self, k: int) -> torch.Tensor:
        """Image embedding ``[1, D, E, E]`` of slice ``k`` (computed on a cache miss)."""
        self._check_slice(k)
        key = (self._epoch, self.axis, int(k))
        emb = self.cache.get(key)
        if emb is None:
            emb = self.model.embed(self.model_input(k))
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
        """Slice mask ``[x, y]`` -> logits ``[1, 1, L, L]`` for ``decode(mask_input=)``."""
        if mask.shape != self.slice_shape:
            raise PromptError(f"mask_input has shape {mask.shape}, the slice {self.slice_shape}.")
        return self.resize.mask_to_low_res(np.asarray(mask).T > 0, self.model.low_res_size)

    def predict_low_res(self, k: int, *, box: Box | None = None,
                        points: Sequence[Point] | None = None,
                        mask_input: np.ndarray | None = None,
                        multimask: bool | None = None) -> tuple[torch.Tensor, float]:
        """Validated prompts on slice ``k`` -> (best logits ``[L, L]`` covering the model input,
        predicted IoU). Multimask output (best IoU kept) defaults to a single click alone."""
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
                                     point_labels=labels, mask_input=mprompt, multimask=multi)
        best = int(torch.argmax(iou[0]))
        return low[0, best].detach().cpu(), float(iou[0, best])

    def low_res_to_mask(self, low_res: torch.Tensor) -> np.ndarray:
        """Logits ``[L, L]`` -> bool slice mask ``[x, y]`` (above the recipe's threshold)."""
        full = self.resize.logits_to_slice(low_res.float()[None, None])[0, 0]
        return (full > self.model.mask_threshold).numpy().T.copy()

    def predict(self, slice_index: int, box: Box | None = None,
                points: Sequence[Point] | None = None,
                mask_input: np.ndarray | None = None, *,
                multimask: bool | None = None) -> tuple[np.ndarray, float]:
        """Segment on slice ``slice_index`` -> (mask bool ``[x, y]``, predicted IoU).

        ``box`` ``(x0, y0, x1, y1)`` inclusive voxel indices; ``points`` ``[(x, y, positive)]``;
        ``mask_input`` a slice mask ``[x, y]`` (e.g. the current mask, for click refinement).
        Nothing is stored: the caller owns the mask.
        """
        low, score = self.predict_low_res(int(slice_index), box=box, points=points,
                                          mask_input=mask_input, multimask=multimask)
        return self.low_res_to_mask(low), score

    def to_volume(self, masks: Mapping[int, np.ndarray], value: int = 1,
                  name: str = "structure") -> Volume:
        """Slice masks ``{k: [x, y] bool}`` -> a label map on the volume's grid (``value``
        where a mask is set, named ``name``)."""
        if value < 1:
            raise PromptError(f"A label value is a positive integer, got {value}.")
        arr = np.zeros(self.volume.shape, dtype=np.uint8 if value < 256 else np.uint16)
        for k, m in masks.items():
            self._check_slice(k)
            idx: list[slice | int] = [slice(None)] * 3
            idx[self.axis] = int(k)
            arr[tuple(idx)] = np.where(m, value, arr[tuple(idx)])
        return self.volume.with_array(arr, labels={value: name})
