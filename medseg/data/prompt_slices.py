"""2D slices and box/point prompts sampled from 3D labelled volumes (promptable training).

A :class:`SliceTable` lists every ``(source, axis, slice, label value)`` whose structure covers
at least ``min_area`` pixels in that slice (one structure per sample, as in MedSAM). A
:class:`PromptSampler` draws from it (weighted: source weight, then uniform over the source's
structures, then uniform over the structure's slices) and returns augmented training samples at
the model's working resolution, laid out exactly as at inference: the slice is scaled to [0, 255]
(CT window or volume percentiles), its longest side resized to ``image_size`` and padded at the
bottom/right (SAM's ``ResizeLongestSide`` + pad), replicated over 3 channels and normalised with
the model's ``pixel_mean``/``pixel_std``.

Slice orientation as in :class:`medseg.engine.prompt.PromptSession`: ``x`` is the first remaining
voxel axis and ``y`` the second, the model image is ``image[y, x]`` (for ``axis=2``: columns = i,
rows = j); boxes are ``XYXY`` with ``x`` = column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from medseg.errors import DatasetError
from medseg.models.prompt_recipe import PromptRecipe

__all__ = ["LabelledVolume", "PromptBatch", "PromptSampler", "SliceEntry", "SliceTable",
           "synthetic_lesion", "take_slice"]

#: CT windows drawn besides the recipe's own by the intensity augmentation
AUGMENT_CT_WINDOWS = ((-1000.0, 1000.0), (-200.0, 400.0), (-1350.0, 150.0), (-100.0, 200.0))


@dataclass
class LabelledVolume:
    """One training source: image ``(I, J, K)`` float32 and label map ``(I, J, K)`` int;
    ``modality`` is the volume's one modality decision (None: unknown, not CT)."""

    name: str
    image: npt.NDArray[np.float32]
    label: npt.NDArray[np.int32]
    labels: dict[int, str]
    modality: str | None
    spacing: tuple[float, float, float]
    weight: float = 1.0
    axes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.image.shape != self.label.shape:
            raise DatasetError(f"{self.name}: image {self.image.shape} and label "
                               f"{self.label.shape} grids differ; resample the label first")
        if not self.axes:
            sp = np.asarray(self.spacing)
            iso = sp.max() / sp.min() < 1.5 and min(self.image.shape) >= 48
            self.axes = (0, 1, 2) if iso else (int(np.argmax(sp)),)


def take_slice(arr: npt.NDArray[np.generic], axis: int, index: int) -> npt.NDArray[np.generic]:
    """The 2D slice ``index`` across voxel ``axis`` as a model image ``[y, x]`` (x = first
    remaining voxel axis, y = second; the transpose of ``PromptSession.slice_image``).
    A view (no copy): ``np.take`` along the last axis of a large volume cost most of a
    training sample's time."""
    key: tuple[slice | int, ...] = (slice(None),) * axis + (index,)
    return arr[key].T


@dataclass(frozen=True)
class SliceEntry:
    source: int
    axis: int
    index: int
    value: int
    area: int


class SliceTable:
    """All eligible ``(source, axis, slice, value)`` samples and their sampling weights."""

    def __init__(self, sources: list[LabelledVolume], min_area: int,
                 exclude: tuple[str, ...] = ()) -> None:
        self.sources = sources
        self.entries: list[SliceEntry] = []
        self.structures: dict[tuple[int, int], list[int]] = {}
        for s, vol in enumerate(sources):
            for value, name in sorted(vol.labels.items()):
                if name in exclude:
                    continue
                for axis in vol.axes:
                    other = tuple(a for a in range(3) if a != axis)
                    areas = (vol.label == value).sum(axis=other)
                    for idx in np.flatnonzero(areas >= min_area):
                        self.structures.setdefault((s, value), []).append(len(self.entries))
                        self.entries.append(SliceEntry(s, axis, int(idx), value, int(areas[idx])))
        if not self.entries:
            raise DatasetError(f"no slice has a structure of >= {min_area} pixels in "
                               f"{[v.name for v in sources]}; lower data.min_area or add data")
        self.probs = self._weights()

    def _weights(self) -> npt.NDArray[np.float64]:
        w = np.zeros(len(self.entries))
        per_source: dict[int, int] = {}
        for s, _ in self.structures:
            per_source[s] = per_source.get(s, 0) + 1
        for (s, _), idx in self.structures.items():
            w[idx] = self.sources[s].weight / per_source[s] / len(idx)
        return w / w.sum()

    def names(self) -> list[str]:
        """Sorted unique structure names in the table."""
        return sorted({self.sources[s].labels[v] for s, v in self.structures})


@dataclass
class PromptBatch:
    """Model-ready batch. ``image (B,3,S,S)`` normalised; ``mask (B,1,S,S)`` {0,1} float;
    ``boxes (B,4)`` XYXY; ``points (B,N,2)``/``point_labels (B,N)`` or None; ``mask_input
    (B,1,m,m)`` logits (``m`` = the prompt encoder's mask input size; zeros where unused)
    and ``has_mask_input (B,)`` bool."""

    image: torch.Tensor
    mask: torch.Tensor
    boxes: torch.Tensor
    points: torch.Tensor | None
    point_labels: torch.Tensor | None
    mask_input: torch.Tensor
    has_mask_input: torch.Tensor


@dataclass(frozen=True)
class AugmentSettings:
    """Augmentation strengths (probabilities in [0, 1])."""

    flip: float = 0.5
    scale: tuple[float, float] = (0.75, 1.4)
    aspect: float = 0.2
    rotate_deg: float = 15.0
    elastic: float = 0.3
    intensity: float = 0.8
    noise: float = 0.3
    #: probability of a random piecewise-linear intensity curve (6 knots, not monotonic):
    #: new contrasts from the same anatomy, so boundaries rather than CT's HU levels are learnt
    lut: float = 0.0
    #: probability that a non-propagation sample's target becomes a synthetic lesion (see
    #: :func:`synthetic_lesion`): tumours are one volume of the training data, and a lesion's
    #: expert outline includes its soft, fading rim (FLAIR oedema), which sharp organ
    #: boundaries never teach
    lesion: float = 0.0


def synthetic_lesion(image: torch.Tensor, valid: torch.Tensor, rng: np.random.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Paint a random lesion into ``image (1, 1, S, S)`` in [0, 255] -> (image, mask).

    An irregular blob (radius 5-40 px, low-frequency boundary noise) centred on a pixel of
    ``valid`` tissue; its intensity profile rises from the outline to a plateau over a random
    rim width, with texture and sometimes a dark (necrotic) core. The mask is the whole
    abnormal region: the profile above 0.15-0.35 of its plateau, so the rim counts as lesion.
    None when there is no tissue to place it in.
    """
    s = image.shape[-1]
    tissue = torch.nonzero((valid[0, 0] > 0.5) & (image[0, 0] > 15))
    if len(tissue) < 50:
        return None
    cy, cx = (float(v) for v in tissue[int(rng.integers(len(tissue)))])
    r = float(rng.uniform(5, 40))
    yy, xx = torch.meshgrid(torch.arange(s, dtype=torch.float32),
                            torch.arange(s, dtype=torch.float32), indexing="ij")
    asp = math.exp(rng.uniform(-0.4, 0.4))
    th = rng.uniform(0, math.pi)
    dx, dy = xx - cx, yy - cy
    u = (dx * math.cos(th) + dy * math.sin(th)) * asp
    v = (-dx * math.sin(th) + dy * math.cos(th)) / asp
    coarse = torch.from_numpy(rng.normal(0, 1, size=(1, 1, 6, 6)).astype(np.float32))
    wobble = F.interpolate(coarse, size=(s, s), mode="bicubic", align_corners=False)[0, 0]
    f = 1 - torch.sqrt(u * u + v * v) / r + float(rng.uniform(0.15, 0.5)) * wobble
    rim = float(rng.uniform(0.05, 0.6))  # fraction of the radius over which the signal fades
    prof = (f / rim).clamp(0, 1)
    prof = prof * prof * (3 - 2 * prof)  # smoothstep: soft rim, flat plateau
    fine = torch.from_numpy(rng.normal(0, 1, size=(1, 1, 24, 24)).astype(np.float32))
    tex = F.interpolate(fine, size=(s, s), mode="bilinear", align_corners=False)[0, 0]
    sig = prof * (1 + float(rng.uniform(0, 0.3)) * tex)
    if rng.random() < 0.3:  # necrotic core: darker centre inside the plateau
        core = ((f - float(rng.uniform(0.4, 0.7))) / 0.1).clamp(0, 1)
        sig = sig * (1 - float(rng.uniform(0.3, 0.9)) * core)
    mask = prof > float(rng.uniform(0.15, 0.35))
    if int(mask.sum()) < 30:
        return None
    base = image[0, 0]
    level = float(np.quantile(base[valid[0, 0] > 0.5].numpy(), 0.99))
    bright = rng.random() < 0.75
    target = float(rng.uniform(min(level, 230), 255)) if bright else float(rng.uniform(0, 40))
    alpha = float(rng.uniform(0.5, 1.0))
    out = base + (target - base) * (alpha * sig).clamp(0, 1)
    return out.clamp(0, 255)[None, None], mask.float()[None, None]


def random_curve(x: torch.Tensor, rng: np.random.Generator, knots: int = 6) -> torch.Tensor:
    """``x`` in [0, 1] through a random piecewise-linear curve: ``knots`` values drawn from
    U(0, 1) at 0, 1/(knots-1), ..., 1 (not monotonic: a new contrast of the same anatomy)."""
    k = torch.from_numpy(rng.uniform(0, 1, size=knots).astype(np.float32))
    pos = x.clamp(0, 1) * (knots - 1)
    lo = pos.floor().clamp(max=knots - 2).long()
    return torch.lerp(k[lo], k[lo + 1], pos - lo)


class PromptSampler:
    """Draws augmented prompt-training batches from a :class:`SliceTable`, prepared by
    ``recipe`` (module docstring); ``mask_size`` is the side of the mask prompt."""

    def __init__(self, table: SliceTable, recipe: PromptRecipe, mask_size: int,
                 box_jitter: float = 20.0, box_jitter_rel: float = 0.3, box_shrink: float = 0.12,
                 point_prob: float = 0.3, mask_prompt_prob: float = 0.2,
                 augment: AugmentSettings | None = None, seed: int = 0,
                 box_jitter_slice_px: float = 0.0, propagate_prob: float = 0.0,
                 propagate_margin: tuple[float, float] = (2.0, 6.0),
                 propagate_mask_prompt: bool = True) -> None:
        self.table, self.recipe, self.mask_size = table, recipe, mask_size
        self.size = recipe.image_size
        self.box_jitter, self.box_jitter_rel = box_jitter, box_jitter_rel
        self.box_shrink = box_shrink
        self.box_jitter_slice_px = box_jitter_slice_px
        self.point_prob, self.mask_prompt_prob = point_prob, mask_prompt_prob
        self.propagate_prob = propagate_prob
        self.propagate_margin = propagate_margin
        self.propagate_mask_prompt = propagate_mask_prompt
        self.aug = augment
        self.rng = np.random.default_rng(seed)
        #: per source: the runtime's intensity range, and the percentile range (augmentation)
        self.ranges = [recipe.intensity_range(v.image, v.modality) for v in table.sources]
        self.percentile_ranges = [recipe.intensity_range(v.image, None) for v in table.sources]

    def _to_0_255(self, img: npt.NDArray[np.generic], source: int,
                  augment: bool) -> npt.NDArray[np.float32]:
        """The slice on [0, 255] by the runtime's range of its volume; augmented CT slices
        sometimes get another CT window or the volume's percentiles instead."""
        window = self.ranges[source]
        ct = self.table.sources[source].modality == "CT" and self.recipe.ct_window is not None
        if ct and augment:
            if self.rng.random() >= 0.8:
                window = self.percentile_ranges[source]
            elif self.rng.random() >= 0.5:
                windows = (window, *AUGMENT_CT_WINDOWS)
                window = windows[int(self.rng.integers(len(windows)))]
        return self.recipe.to_0_255(img, window)

    def _canvas(self, stack: npt.NDArray[np.float32]) -> torch.Tensor:
        """``(C, h, w)`` -> ``(1, C, S, S)``: resized by the recipe, zero-padded bottom/right
        (before normalisation; :meth:`_one` pads the normalised image as the runtime does)."""
        rs = self.recipe.resize_for(stack.shape[1:])  # type: ignore[arg-type]
        t = torch.from_numpy(np.ascontiguousarray(stack))[None]
        return self.recipe.pad(self.recipe.resample(t, rs), rs)

    def _convention(self, box: torch.Tensor, scale: float) -> torch.Tensor:
        """A box on pixel edges (``[x0, x1)``) in the recipe's convention: ``"indices"`` puts
        the right/bottom sides on the last voxel's index (one slice voxel, ``scale`` model
        pixels, in from its outer edge), as the runtime maps an inclusive voxel box."""
        if self.recipe.coords == "edges":
            return box
        return box - torch.tensor([0.0, 0.0, scale, scale])

    def _grid(self) -> torch.Tensor:
        """Random affine (+ coarse elastic) sampling grid ``(1, S, S, 2)``."""
        a, rng = self.aug, self.rng
        assert a is not None
        s = math.exp(rng.uniform(math.log(a.scale[0]), math.log(a.scale[1])))
        asp = math.exp(rng.uniform(-a.aspect, a.aspect))
        th = math.radians(rng.uniform(-a.rotate_deg, a.rotate_deg))
        fx = -1.0 if rng.random() < a.flip else 1.0
        fy = -1.0 if rng.random() < a.flip * 0.5 else 1.0
        sx, sy = fx / (s * asp), fy * asp / s
        c, si = math.cos(th), math.sin(th)
        tx, ty = rng.uniform(-0.25, 0.25, size=2)
        theta = torch.tensor([[[c * sx, -si * sy, tx], [si * sx, c * sy, ty]]],
                             dtype=torch.float32)
        grid = F.affine_grid(theta, [1, 1, self.size, self.size], align_corners=False)
        if rng.random() < a.elastic:
            coarse = torch.from_numpy(rng.normal(0, 0.03, size=(1, 2, 5, 5)).astype(np.float32))
            disp = F.interpolate(coarse, size=(self.size, self.size), mode="bicubic",
                                 align_corners=False)
            grid = grid + disp.permute(0, 2, 3, 1)
        return grid

    def _intensity(self, img: torch.Tensor) -> torch.Tensor:
        """``img`` in [0, 255]: random gamma, contrast, brightness, noise, blur."""
        rng, a = self.rng, self.aug
        assert a is not None
        x = img / 255.0
        if rng.random() < a.lut:
            x = random_curve(x, rng)
        if rng.random() < a.intensity:
            x = x.clamp(0, 1) ** math.exp(rng.uniform(-0.5, 0.5))
            x = (x - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.12, 0.12)
        if rng.random() < a.noise:
            x = x + torch.randn_like(x) * rng.uniform(0.005, 0.05)
        if rng.random() < 0.15:
            x = F.avg_pool2d(x, 3, 1, 1)
        return (x.clamp(0, 1) * 255.0)

    def _box(self, mask: torch.Tensor, scale: float) -> torch.Tensor | None:
        """Jittered XYXY box (pixel edges) of ``mask (1,1,S,S)``; ``scale`` = model pixels per
        slice pixel.

        Half of the samples (when ``box_jitter_slice_px`` > 0) move each side by
        U(-J, J) slice pixels (the benchmark protocol's unit); the others move each side
        outwards by up to ``box_jitter`` px (capped at ``box_jitter_rel`` x side) or inwards by
        up to ``box_shrink`` x side.
        """
        ys, xs = torch.nonzero(mask[0, 0] > 0.5, as_tuple=True)
        if ys.numel() < 8:
            return None
        x0, x1 = float(xs.min()), float(xs.max()) + 1
        y0, y1 = float(ys.min()), float(ys.max()) + 1
        if self.aug is None:
            return torch.tensor([x0, y0, x1, y1])
        w, h = x1 - x0, y1 - y0
        if self.box_jitter_slice_px > 0 and self.rng.random() < 0.5:
            d = self.rng.uniform(-1, 1, size=4) * self.box_jitter_slice_px * scale
            b = torch.tensor([x0 - d[0], y0 - d[1], x1 + d[2], y1 + d[3]]).clamp(0, self.size)
            ok = b[2] - b[0] >= 2 and b[3] - b[1] >= 2
            return b if ok else torch.tensor([x0, y0, x1, y1])
        out = []
        for v, side, sign in ((x0, w, -1), (y0, h, -1), (x1, w, 1), (y1, h, 1)):
            grow = min(self.box_jitter, max(2.0, self.box_jitter_rel * side))
            step = float(self.rng.uniform(-self.box_shrink * side, grow))
            out.append(v + sign * step)
        b = torch.tensor(out).clamp(0, self.size)
        if b[2] - b[0] < 2 or b[3] - b[1] < 2:
            return torch.tensor([x0, y0, x1, y1])
        return b

    def _step_box(self, prev: torch.Tensor, scale: float) -> torch.Tensor | None:
        """The box of a propagation step (pixel edges): ``prev``'s bbox grown by
        ``propagate_margin`` slice pixels per side (the runtime grows it by its
        ``PropagationConfig`` margin, 1 voxel by default)."""
        ys, xs = torch.nonzero(prev[0, 0] > 0.5, as_tuple=True)
        if ys.numel() < 8:
            return None
        m = self.rng.uniform(*self.propagate_margin, size=4) * scale
        b = torch.tensor([float(xs.min()) - m[0], float(ys.min()) - m[1],
                          float(xs.max()) + 1 + m[2], float(ys.max()) + 1 + m[3]])
        return b.clamp(0, self.size)

    def _click(self, x: float, y: float, scale: float) -> list[float]:
        """Model pixel ``(x, y)`` as the runtime places a click on the slice voxel under it:
        the voxel's centre (``"edges"``) or its scaled index (``"indices"``)."""
        if self.recipe.coords == "edges":
            return [x + 0.5, y + 0.5]
        return [math.floor((x + 0.5) / scale) * scale, math.floor((y + 0.5) / scale) * scale]

    def _points(self, mask: torch.Tensor, box: torch.Tensor,
                scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """1-3 points: positives inside the mask, maybe one negative in box but outside."""
        m = mask[0, 0] > 0.5
        pos = torch.nonzero(m)
        n = int(self.rng.integers(1, 4))
        coords, labels = [], []
        for _ in range(n):
            y, x = pos[int(self.rng.integers(len(pos)))].tolist()
            coords.append(self._click(x, y, scale))
            labels.append(1.0)
        x0, y0, x1, y1 = (int(v) for v in box.tolist())
        neg = torch.nonzero(~m[y0:y1, x0:x1])
        if len(neg) and self.rng.random() < 0.5:
            y, x = neg[int(self.rng.integers(len(neg)))].tolist()
            coords.append(self._click(x0 + x, y0 + y, scale))
            labels.append(0.0)
        while len(coords) < 4:
            coords.append([0.0, 0.0])
            labels.append(-1.0)
        return torch.tensor(coords), torch.tensor(labels)

    def _one(self) -> tuple[torch.Tensor, ...] | None:
        e = self.table.entries[int(self.rng.choice(len(self.table.entries), p=self.table.probs))]
        vol = self.table.sources[e.source]
        img = self._to_0_255(take_slice(vol.image, e.axis, e.index), e.source,
                             self.aug is not None)
        nb = int(np.clip(e.index + self.rng.choice([-1, 1]), 0, vol.image.shape[e.axis] - 1))
        step = self.aug is not None and self.rng.random() < self.propagate_prob
        if step:  # a propagation step from e.index to its neighbour nb (which may be empty)
            img = self._to_0_255(take_slice(vol.image, e.axis, nb), e.source, True)
            lab = take_slice(vol.label, e.axis, nb) == e.value
            prev = take_slice(vol.label, e.axis, e.index) == e.value
        else:
            lab = take_slice(vol.label, e.axis, e.index) == e.value
            prev = take_slice(vol.label, e.axis, nb) == e.value
        stack = np.stack([img, lab, prev, np.ones_like(img)]).astype(np.float32)
        if self.aug is not None and self.rng.random() < 0.5:  # random 90-degree turns
            stack = np.rot90(stack, int(self.rng.integers(1, 4)), axes=(1, 2))
        canvas = self._canvas(stack)
        scale = self.size / max(stack.shape[1:])
        if self.aug is not None:
            canvas = F.grid_sample(canvas, self._grid(), mode="bilinear", padding_mode="zeros",
                                   align_corners=False)
        ci, cm, cp, valid = canvas[:, 0:1], canvas[:, 1:2], canvas[:, 2:3], canvas[:, 3:4]
        cm, cp = (cm > 0.5).float(), (cp > 0.5).float()
        lesion = not step and self.aug is not None and self.aug.lesion > 0 \
            and self.rng.random() < self.aug.lesion
        if lesion:  # painted before the intensity augmentation, which then alters it too
            painted = synthetic_lesion(ci, valid, self.rng)
            if painted is None:
                return None
            ci, cm = painted
            cp = cm
        if self.aug is not None:
            ci = self._intensity(ci)
        box = self._step_box(cp, scale) if step else self._box(cm, scale)
        if box is None:
            return None
        use_pts = not step and self.aug is not None and self.rng.random() < self.point_prob
        pts = self._points(cm, box, scale) if use_pts else (torch.zeros(4, 2), -torch.ones(4))
        box = self._convention(box, scale)
        inside = valid > 0.5
        x = self.recipe.normalize_image(ci, inside)[0]
        if self.aug is None or self.rng.random() < 0.5:
            x = x * inside[0]  # the runtime pads with 0 after normalisation; else black
        if step:  # the key slice's mask as mask prompt (train.propagate_mask_prompt)
            use_mask = self.propagate_mask_prompt
        else:
            use_mask = self.aug is not None and self.rng.random() < self.mask_prompt_prob \
                and not lesion  # a lesion has no neighbouring slice to prompt with
        low = F.interpolate(cp, size=(self.mask_size, self.mask_size), mode="area")[0]
        low = (low * 2 - 1) * float(self.rng.uniform(2.0, 12.0)) if use_mask else low * 0
        return x, cm[0], box, pts[0], pts[1], low, torch.tensor(use_mask)

    def batch(self, n: int) -> PromptBatch:
        """``n`` augmented samples (redrawn when augmentation pushed the structure out)."""
        items: list[tuple[torch.Tensor, ...]] = []
        tries = 0
        while len(items) < n:
            tries += 1
            if tries > 50 * n:
                raise DatasetError("could not draw valid prompt samples; check data.min_area")
            got = self._one()
            if got is not None:
                items.append(got)
        cols = list(zip(*items, strict=True))
        pl = torch.stack(cols[4])
        has_pts = bool((pl >= 0).any())
        return PromptBatch(
            image=torch.stack(cols[0]), mask=torch.stack(cols[1]), boxes=torch.stack(cols[2]),
            points=torch.stack(cols[3]) if has_pts else None,
            point_labels=pl if has_pts else None,
            mask_input=torch.stack(cols[5]), has_mask_input=torch.stack(cols[6]))
