"""Case manifests: Decathlon ``dataset.json``, image/label folder pairs, nnU-Net raw folders.

A :class:`Case` is an id, one image file per channel and one label file. Label values must be
``0`` (background) and ``1..N`` with names; every case's label file is checked against them, so
cases that disagree (an undeclared value, different names for one value) fail with the case id.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config import DataConfig
from medseg.errors import DatasetError

__all__ = ["Case", "Dataset", "check_label_values", "load_dataset"]

_IMAGE_EXT = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


@dataclass(frozen=True)
class Case:
    """One training case; ``images`` holds one file per input channel (same grid)."""

    id: str
    images: tuple[Path, ...]
    label: Path

    def as_dict(self) -> dict[str, Any]:
        """MONAI data-dict: ``image`` (one path or a list, one per channel) and ``label``."""
        img: Any = str(self.images[0]) if len(self.images) == 1 else [str(p) for p in self.images]
        return {"image": img, "label": str(self.label), "case_id": self.id}


@dataclass(frozen=True)
class Dataset:
    cases: list[Case]
    labels: dict[int, str]
    modality: str | None


def _strip_ext(name: str) -> str:
    for ext in _IMAGE_EXT:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read dataset JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: dataset JSON must be an object.")
    return data


def _labels_from_json(raw: Any, path: Path) -> dict[int, str]:
    """Decathlon ``{"0": "background", "1": "liver"}`` or nnU-Net v2 ``{"background": 0, ...}``."""
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: 'labels' must be a mapping.")
    out: dict[int, str] = {}
    for k, v in raw.items():
        value, name = (v, k) if isinstance(v, int) else (k, v)
        try:
            out[int(value)] = str(name)
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: label entry {k!r}: {v!r} is not value/name "
                               "(region-based nnU-Net labels are not supported).") from None
    out.pop(0, None)
    return out


def _decathlon(cfg: DataConfig) -> tuple[list[Case], dict[int, str], str | None]:
    path = cfg.root if cfg.root.is_file() else cfg.root / "dataset.json"
    data = _read_json(path)
    if "training" not in data:
        raise DatasetError(f"{path}: no 'training' list; is this a Decathlon dataset.json?")
    cases = []
    for i, item in enumerate(data["training"]):
        if not isinstance(item, dict) or "image" not in item or "label" not in item:
            raise DatasetError(f"{path}: training entry {i} needs 'image' and 'label'.")
        imgs = item["image"] if isinstance(item["image"], list) else [item["image"]]
        images = tuple((path.parent / p).resolve() for p in imgs)
        cases.append(Case(_strip_ext(Path(imgs[0]).name), images,
                          (path.parent / item["label"]).resolve()))
    labels = _labels_from_json(data.get("labels", {}), path)
    modality = data.get("modality", {}).get("0") if isinstance(data.get("modality"), dict) else None
    return cases, labels, modality


def _pairs(root: Path, images_dir: str, labels_dir: str, nnunet_ending: str | None
           ) -> list[Case]:
    img_dir, lab_dir = root / images_dir, root / labels_dir
    for d, key in ((img_dir, "data.images_dir"), (lab_dir, "data.labels_dir")):
        if not d.is_dir():
            raise DatasetError(f"{d}: folder not found (from data.root + {key}).")
    by_case: dict[str, list[Path]] = {}
    for f in sorted(img_dir.iterdir()):
        if not f.name.lower().endswith(_IMAGE_EXT) or f.name.startswith("."):
            continue
        stem = _strip_ext(f.name)
        cid = re.sub(r"_\d{4}$", "", stem)
        by_case.setdefault(cid, []).append(f)
    cases = []
    for cid, imgs in by_case.items():
        ext = nnunet_ending or imgs[0].name[len(_strip_ext(imgs[0].name)):]
        label = lab_dir / f"{cid}{ext}"
        if not label.is_file():
            raise DatasetError(f"case {cid}: no label file {label}. Every image in {img_dir} "
                               f"needs a label map of the same case id in {lab_dir}.")
        cases.append(Case(cid, tuple(imgs), label))
    if not cases:
        raise DatasetError(f"{img_dir}: no image files ({', '.join(_IMAGE_EXT)}).")
    return cases


def _nnunet(cfg: DataConfig) -> tuple[list[Case], dict[int, str], str | None]:
    data = _read_json(cfg.root / "dataset.json")
    ending = data.get("file_ending", ".nii.gz")
    cases = _pairs(cfg.root, "imagesTr", "labelsTr", ending)
    labels = _labels_from_json(data.get("labels", {}), cfg.root / "dataset.json")
    chans = data.get("channel_names") or data.get("modality") or {}
    return cases, labels, chans.get("0") if isinstance(chans, dict) else None


def _unique_values(path: Path) -> np.ndarray:
    from monai.transforms import LoadImage

    arr = np.asarray(LoadImage(image_only=True, dtype=None)(str(path)))
    return np.unique(arr)


def check_label_values(cases: list[Case], labels: dict[int, str]) -> None:
    """Every case's label values must be among ``0`` and the declared ``labels`` (1..N)."""
    if sorted(labels) != list(range(1, len(labels) + 1)):
        raise DatasetError(f"label values {sorted(labels)} must be 1..N without gaps; remap the "
                           "label maps (or data.labels) to consecutive values.")
    allowed = {0, *labels}
    for case in cases:
        values = _unique_values(case.label)
        bad = [int(v) if float(v).is_integer() else v for v in values.tolist()
               if v not in allowed]
        if bad:
            raise DatasetError(
                f"case {case.id}: label map {case.label.name} holds value(s) {bad} that the other "
                f"cases' label set {sorted(allowed)} ({labels}) does not declare. Label sets must "
                "be consistent across cases: fix the file or declare the label in data.labels.")


def load_dataset(cfg: DataConfig, check_labels: bool = True) -> Dataset:
    """Resolve the cases of ``cfg`` and their label names; optionally check every label map."""
    if not cfg.root.exists():
        raise DatasetError(f"data.root {cfg.root}: no such file or folder. Fix data.root in the "
                           "config or pass --set data.root=PATH.")
    if cfg.format == "decathlon":
        cases, labels, modality = _decathlon(cfg)
    elif cfg.format == "nnunet":
        cases, labels, modality = _nnunet(cfg)
    else:
        cases, labels, modality = _pairs(cfg.root, cfg.images_dir, cfg.labels_dir, None), {}, None
    if cfg.labels is not None:
        labels = dict(cfg.labels)
    if cfg.keep_labels is not None:
        labels = cfg.kept_labels() or {}
        check_labels = False
    if not labels:
        raise DatasetError(f"{cfg.root}: no label names. Set data.labels, e.g. "
                           "{1: liver, 2: spleen}.")
    for case in cases:
        missing = [p for p in (*case.images, case.label) if not p.exists()]
        if missing:
            raise DatasetError(f"case {case.id}: missing file(s) {[str(m) for m in missing]}.")
        if len(case.images) != cfg.channels:
            raise DatasetError(f"case {case.id}: {len(case.images)} image channel(s), config "
                               f"data.channels = {cfg.channels}.")
    if cfg.max_cases is not None:
        cases = cases[: cfg.max_cases]
    if check_labels:
        check_label_values(cases, labels)
    return Dataset(cases, labels, cfg.modality or modality)
