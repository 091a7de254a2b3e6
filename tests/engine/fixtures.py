"""Tiny real-data fixtures for training/inference tests (crops of the TotalSegmentator CT)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from medseg.config import InferenceConfig, MedsegConfig, PreprocessConfig, parse_config
from medseg.models.bundle import BundleMeta, NetworkSpec, save_bundle
from medseg.models.registry import build_network
from medseg.volume import Volume

ROOT = Path(__file__).resolve().parents[2]
CT = ROOT / "data_samples/totalsegmentator/example_ct_sm.nii.gz"
SEG = ROOT / "data_samples/totalsegmentator/example_seg.nii.gz"
#: TotalSegmentator value -> our consecutive value: spleen, kidney_left, liver.
REMAP = {1: 1, 3: 2, 5: 3}
LABELS = {1: "spleen", 2: "kidney_left", 3: "liver"}
TINY_UNET = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 0}
#: Crops (i, j) of the 122x101x30 CT holding spleen, left kidney and part of the liver.
CROPS = [(10, 20), (14, 18), (8, 24)]


def sample_ct() -> Volume:
    """The whole sample CT (122x101x30 @ 3 mm, RAS NIfTI) as a Volume (int16 HU)."""
    img = nib.load(str(CT))
    return Volume.from_affine(np.asarray(img.dataobj), img.affine, "RAS", modality="CT",
                              meta={"path": str(CT)})


def remapped_seg() -> np.ndarray:
    seg = np.asarray(nib.load(str(SEG)).dataobj)
    out = np.zeros(seg.shape, dtype=np.uint8)
    for src, dst in REMAP.items():
        out[seg == src] = dst
    return out


def make_dataset(root: Path, size: tuple[int, int] = (48, 40), depth: int = 30) -> Path:
    """A Decathlon dataset of ``len(CROPS)`` real crops (``size`` x ``depth`` voxels at 3 mm);
    returns the dataset.json path."""
    img = nib.load(str(CT))
    ct = np.asarray(img.dataobj)
    seg = remapped_seg()
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    training = []
    for n, (i0, j0) in enumerate(CROPS):
        sl = (slice(i0, i0 + size[0]), slice(j0, j0 + size[1]), slice(0, depth))
        aff = img.affine.copy()
        aff[:3, 3] = img.affine[:3, :3] @ np.array([i0, j0, 0]) + img.affine[:3, 3]
        name = f"case{n}.nii.gz"
        nib.save(nib.Nifti1Image(ct[sl].astype(np.int16), aff), str(root / "imagesTr" / name))
        nib.save(nib.Nifti1Image(seg[sl], aff), str(root / "labelsTr" / name))
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    ds = {"name": "tiny", "modality": {"0": "CT"},
          "labels": {"0": "background", **{str(k): v for k, v in LABELS.items()}},
          "training": training}
    (root / "dataset.json").write_text(json.dumps(ds))
    return root / "dataset.json"


def tiny_config(dataset_json: Path, out_dir: Path, **sections: dict[str, Any]) -> MedsegConfig:
    """A 3D config that trains in seconds on 2 CPU threads; ``sections`` update the raw dict."""
    raw: dict[str, Any] = {
        "name": "tiny",
        "data": {"format": "decathlon", "root": str(dataset_json), "val_fraction": 0.34},
        "preprocess": {"spacing": [3.0, 3.0, 3.0], "intensity": {"mode": "ct",
                                                                  "window": [-200, 300]}},
        "augment": {"num_samples": 2, "rotate_prob": 0.0, "scale_prob": 0.0},
        "model": {"name": "unet", "spatial_dims": 3, "kwargs": TINY_UNET},
        "optimizer": {"name": "adam", "lr": 0.01},
        "scheduler": {"name": "none"},
        "train": {"output_dir": str(out_dir), "epochs": 2, "iterations_per_epoch": 2,
                  "batch_size": 1, "patch_size": [24, 24, 16], "val_every": 1,
                  "deterministic": True},
        "inference": {"overlap": 0.25, "sw_batch_size": 2},
    }
    for key, val in sections.items():
        raw[key] = {**raw.get(key, {}), **val}
    return parse_config(raw, source="tiny test config")


def random_bundle(path: Path, *, spacing: tuple[float, float, float] | None = (4.0, 4.0, 4.0),
                  spatial_dims: int = 3, modality: str | None = "CT", seed: int = 0,
                  orientation: str = "RAS") -> Path:
    """A bundle with fixed random weights whose output bias yields non-trivial masks."""
    torch.manual_seed(seed)
    net = build_network("unet", spatial_dims, 1, 4, **TINY_UNET)
    roi = (32, 32, 32) if spatial_dims == 3 else (32, 32)
    meta = BundleMeta(
        medseg_version="0.1.0",
        network=NetworkSpec(name="unet", spatial_dims=spatial_dims, in_channels=1,
                            out_channels=4, kwargs=TINY_UNET),
        labels=dict(LABELS), modality=modality,
        preprocess=PreprocessConfig(orientation=orientation, spacing=spacing,
                                    intensity={"mode": "ct", "window": (-200.0, 300.0)}),
        inference=InferenceConfig(roi_size=roi, overlap=0.25, sw_batch_size=2))
    return save_bundle(path, net, meta)
