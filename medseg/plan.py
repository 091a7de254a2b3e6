"""Automatic planning: a dataset fingerprint -> a training config (in the spirit of nnU-Net).

Fingerprint: per-case voxel spacing and shape (from the image headers), foreground intensity
statistics (voxels inside any label, sampled), and the voxel fraction of every label.
Rules (documented in docs/training.md, "Planning"):

* target spacing = median spacing per axis; for anisotropic data (coarsest / finest median
  spacing > 3) the coarse axis takes the 10th percentile of its spacings instead;
* patch = the median case size at that spacing, shrunk along its longest axis until it fits the
  voxel budget, each axis a multiple of 16 (four stride-2 levels of the U-Net), >= 16;
  fewer than 16 median slices -> a 2D U-Net on slices;
* voxel budget: a GPU memory budget at about 1.5 kB per patch voxel and batch item (4.8M-parameter
  U-Net, fp16 AMP), or 64^3 voxels per item on the CPU; batch size 2;
* CT: clip window = 0.5th / 99.5th foreground percentiles; MR: z-score over non-zero voxels;
* rare labels (< 1% of the foreground) -> positive:negative patch sampling 2:1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config import DataConfig, MedsegConfig, parse_config
from medseg.data import load_dataset

__all__ = ["Fingerprint", "fingerprint", "plan_config"]

_BYTES_PER_VOXEL_GPU = 1536
_CPU_VOXELS = 64**3
_DIV = 16


@dataclass
class Fingerprint:
    """Dataset statistics; spacings/shapes are per case, in RAS axis order (the order the
    images have after ``preprocess.orientation: RAS``)."""

    n_cases: int
    modality: str | None
    labels: dict[int, str]
    spacings: list[list[float]]
    shapes: list[list[int]]
    foreground_percentiles: dict[str, float]
    foreground_mean: float
    foreground_std: float
    label_fractions: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fingerprint(data: DataConfig, samples_per_case: int = 10_000, seed: int = 0) -> Fingerprint:
    """Read every case once (image + label) and summarise it."""
    from monai.transforms import LoadImage
    from nibabel.orientations import io_orientation

    ds = load_dataset(data)
    loader = LoadImage(image_only=True, dtype=None)
    rng = np.random.default_rng(seed)
    spacings, shapes, samples = [], [], []
    counts = np.zeros(len(ds.labels) + 1, dtype=np.int64)
    keep = data.label_mapping()
    for case in ds.cases:
        img = loader(str(case.images[0]))
        lab = np.asarray(loader(str(case.label)))
        aff = np.asarray(img.affine)
        order = io_orientation(aff)[:, 0].astype(int)  # file axis -> RAS axis
        sp, sh = np.linalg.norm(aff[:3, :3], axis=0), np.asarray(img.shape[:3])
        spacings.append([float(sp[order == r][0]) for r in range(3)])  # RAS order, as trained
        shapes.append([int(sh[order == r][0]) for r in range(3)])
        if keep is not None:
            lab = np.select([lab == v for v in keep], list(keep.values()), 0)
        lab = lab.astype(np.int64)
        counts += np.bincount(lab.ravel(), minlength=counts.size)[: counts.size]
        fg = np.asarray(img)[lab > 0]
        if fg.size:
            samples.append(rng.choice(fg, size=min(samples_per_case, fg.size), replace=False))
    vals = np.concatenate(samples).astype(np.float64) if samples else np.zeros(1)
    fg_total = max(int(counts[1:].sum()), 1)
    return Fingerprint(
        n_cases=len(ds.cases), modality=ds.modality, labels=ds.labels,
        spacings=spacings, shapes=shapes,
        foreground_percentiles={str(p): float(np.percentile(vals, p)) for p in (0.5, 50, 99.5)},
        foreground_mean=float(vals.mean()), foreground_std=float(vals.std()),
        label_fractions={ds.labels[i]: float(counts[i] / fg_total)
                         for i in range(1, counts.size)})


def _target_spacing(fp: Fingerprint) -> list[float]:
    sp = np.asarray(fp.spacings, dtype=np.float64)
    target = np.median(sp, axis=0)
    coarse, fine = int(np.argmax(target)), float(np.min(target))
    if target[coarse] / fine > 3:
        target[coarse] = np.percentile(sp[:, coarse], 10)
    return [round(float(t), 4) for t in target]


def _fit_patch(size: np.ndarray, budget: int, dims: int) -> list[int]:
    patch = np.maximum(np.floor(size / _DIV) * _DIV, _DIV).astype(int)[:dims]
    while int(np.prod(patch)) > budget and patch.max() > _DIV:
        ax = int(np.argmax(patch))
        patch[ax] = max(_DIV, patch[ax] - _DIV)
    return [int(p) for p in patch]


def plan_config(data: DataConfig, fp: Fingerprint, *, name: str = "planned",
                gpu_memory_gb: float | None = None, output_dir: str | None = None
                ) -> MedsegConfig:
    """A validated training config for ``data`` from its fingerprint (see module docstring)."""
    spacing = _target_spacing(fp)
    sizes = np.asarray(fp.shapes, dtype=np.float64) * np.asarray(fp.spacings) / spacing
    median = np.median(sizes, axis=0)
    dims = 2 if median[2] < _DIV else 3
    batch = 2
    budget = (int(gpu_memory_gb * 1e9 / _BYTES_PER_VOXEL_GPU / batch) if gpu_memory_gb
              else _CPU_VOXELS)
    if dims == 2:
        budget = budget * _DIV  # one slice costs ~16x less than a 16-slice patch
    patch = _fit_patch(median, budget, dims)
    ct = (fp.modality or "").upper() == "CT"
    lo, hi = fp.foreground_percentiles["0.5"], fp.foreground_percentiles["99.5"]
    intensity = ({"mode": "ct", "window": [round(lo, 1), round(max(hi, lo + 1), 1)]} if ct
                 else {"mode": "zscore"})
    rare = min(fp.label_fractions.values(), default=1.0) < 0.01
    raw: dict[str, Any] = {
        "name": name,
        "data": data.model_dump(mode="json", exclude_none=True),
        "preprocess": {"orientation": "RAS",
                       "spacing": spacing if dims == 3 else [spacing[0], spacing[1], None],
                       "intensity": intensity, "foreground_crop": False},
        "augment": {"pos_neg": [2.0, 1.0] if rare else [1.0, 1.0]},
        "model": {"name": "unet", "spatial_dims": dims},
        "train": {"output_dir": output_dir or f"runs/{name}", "patch_size": patch,
                  "batch_size": batch if dims == 3 else 16,
                  "amp": gpu_memory_gb is not None},
    }
    return parse_config(raw, source=f"plan for {data.root}")


def describe(fp: Fingerprint) -> dict[str, Any]:
    """Summary of a fingerprint for the header of a planned config."""
    return {"cases": fp.n_cases, "modality": fp.modality,
            "median_spacing": [float(v) for v in np.median(fp.spacings, axis=0)],
            "median_shape": [float(v) for v in np.median(fp.shapes, axis=0)],
            "foreground_percentiles": fp.foreground_percentiles,
            "label_fractions": {k: round(v, 4) for k, v in fp.label_fractions.items()}}


def write_plan(cfg: MedsegConfig, fp: Fingerprint, path: str | Path) -> Path:
    """Write the planned config as YAML with the fingerprint summary as a comment header."""
    from medseg.config import dump_config
    from medseg.io.atomic import write_text_atomic

    header = "".join(f"# {k}: {v}\n" for k, v in describe(fp).items())
    p = Path(path)
    write_text_atomic(p, "# planned by `medseg plan` from the dataset fingerprint\n" + header
                      + dump_config(cfg))
    return p
