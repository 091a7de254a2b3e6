"""Structures and the classical baseline shared by the promptable benches.

Structures (none used in training, see configs/lite_sam/): ``test`` = the held-out set (the
two BRATS 2015 test cases, FLAIR whole tumour = OTMultiClass > 0, skipped when
../shared/data is absent, non-commercial data, evaluation only; pyradiomics brain2 and breast1
lesions; the held-out kidneys of the TotalSegmentator CTs and MR); ``validation`` = the
validation organs (spleen, gallbladder, urinary bladder, never sampled since stage 3) and the
BRATS validation and train tumours (nothing in medseg trains on BRATS). Each case's modality is
stated here (the bench knows it), so every bench sees the same intensities as the published
figures.

Baseline: OpenCV GrabCut (``cv2.grabCut``, rectangle init, 5 iterations; Otsu inside the box
when GrabCut labels everything background) on the slice windowed exactly as the model sees it.
GrabCut initialises its colour models with k-means on OpenCV's global random generator, so
each call first seeds it (0): a slice's result does not depend on the calls before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from medseg import io as mio
from medseg.engine.prompt import PromptSession
from medseg.volume import Volume

ROOT = Path(__file__).resolve().parent.parent
BRATS_ROOT = ROOT.parent / "shared" / "data" / "deepmedic_brats2015"
BRATS = BRATS_ROOT / "test"
BRATS_VAL = BRATS_ROOT / "validation"
BRATS_TRAIN = BRATS_ROOT / "train"
DS = ROOT / "data_samples"
OUT = ROOT / "bench" / "results"
AXIS, MIN_AREA = 2, 50
#: validation organs (excluded from the lite model's training since stage 3)
VALIDATION = ("spleen", "gallbladder", "urinary_bladder")
Box = tuple[int, int, int, int]


@dataclass
class Case:
    name: str
    group: str
    image: Volume
    mask: np.ndarray  # bool [I, J, K], same grid as image


def cases(which: str = "test") -> list[Case]:
    """The ``test`` (held-out) or ``validation`` structures (module docstring)."""
    if which == "validation":  # organs first: their boxes do not depend on BRATS's presence
        return _organ_cases(VALIDATION, "val_organ", "val_organ_mr") + \
            _brats_cases(BRATS_VAL, "brats_val", "val_tumour") + \
            _brats_cases(BRATS_TRAIN, "brats_train", "val_tumour")
    out = _brats_cases(BRATS, "brats_test", "tumour")
    for name in ("brain2", "breast1"):
        img = mio.read(DS / "pyradiomics" / f"{name}_image.nrrd")
        img.modality = "MR"
        lab = mio.read(DS / "pyradiomics" / f"{name}_label.nrrd").conform_to(img)
        out.append(Case(f"pyradiomics/{name}", "tumour", img, np.asarray(lab.array) > 0))
    return out + _organ_cases(("kidney_left", "kidney_right"), "organ", "organ_mr")


def _brats_cases(folder: Path, tag: str, group: str) -> list[Case]:
    out: list[Case] = []
    for d in sorted(folder.glob("*")) if folder.is_dir() else []:
        img = mio.read(d / "Flair_subtrMeanDivStd.nii.gz")
        img.modality = "MR"
        lab = mio.read(d / "OTMultiClass.nii.gz").conform_to(img)
        out.append(Case(f"{tag}/{d.name}", group, img, np.asarray(lab.array) > 0))
    return out


def _organ_cases(organs: tuple[str, ...], ct_group: str, mr_group: str) -> list[Case]:
    out: list[Case] = []
    ts = DS / "totalsegmentator"
    for img_path, lab_path, tag, group, mod in (
            (ts / "example_ct.nii.gz", ts / "example_seg_fast_force_split.nii.gz",
             "example_ct", ct_group, "CT"),
            (ts / "example_ct_dicom", ts / "example_seg_dicom.nii.gz", "dicom_ct", ct_group,
             "CT"),
            (ts / "example_mr_sm.nii.gz", ts / "example_seg_mr.nii.gz", "example_mr",
             mr_group, "MR")):
        img = mio.read(img_path)
        img.modality = mod
        lab = mio.read(lab_path).conform_to(img, atol_mm=1e-2)
        names = {v: k for k, v in (lab.labels or {}).items()}
        for organ in organs:
            if organ not in names:
                continue
            m = np.asarray(lab.array) == names[organ]
            if (m.sum(axis=(0, 1)) >= MIN_AREA).any():  # the DICOM CT ends above the kidneys
                out.append(Case(f"{tag}/{organ}", group, img, m))
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s


def key_slice(case: Case) -> int:
    """The 3D protocol's key slice: the structure's largest section."""
    return int(np.argmax(case.mask.sum(axis=(0, 1))))


def tight_box(m2: np.ndarray) -> Box:
    xs, ys = np.nonzero(m2)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def u8(session: PromptSession, k: int) -> np.ndarray:
    """Slice ``k`` ``[x, y]`` windowed to uint8 as the model's preprocessing does."""
    lo, hi = session.window
    s = np.asarray(session.slice_image(k), dtype=np.float32)
    return (np.clip((s - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def grabcut(img_u8: np.ndarray, box: Box) -> np.ndarray:
    """GrabCut of ``img_u8 [x, y]`` initialised with the inclusive box; bool ``[x, y]``."""
    x0, y0, x1, y1 = box
    if x1 - x0 < 2 or y1 - y0 < 2:
        out = np.zeros(img_u8.shape, bool)
        out[x0:x1 + 1, y0:y1 + 1] = True
        return out
    pad = 20
    a0, b0 = max(0, x0 - pad), max(0, y0 - pad)
    a1, b1 = min(img_u8.shape[0], x1 + pad + 1), min(img_u8.shape[1], y1 + pad + 1)
    crop = np.ascontiguousarray(img_u8[a0:a1, b0:b1].T)  # rows = y, cols = x
    bgr = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    gc = np.zeros(crop.shape, np.uint8)
    rect = (x0 - a0, y0 - b0, x1 - x0 + 1, y1 - y0 + 1)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(bgr, gc, rect, bgd, fgd, 5, cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        gc[:] = cv2.GC_PR_FGD
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).T
    out = np.zeros(img_u8.shape, bool)
    out[a0:a1, b0:b1] = fg
    return out if out.any() else otsu_in_box(img_u8, box)


def otsu_in_box(img_u8: np.ndarray, box: Box) -> np.ndarray:
    """Fallback when GrabCut collapses to background: Otsu threshold inside the box, keeping
    the class (bright or dark) of the box centre; bool ``[x, y]``."""
    x0, y0, x1, y1 = box
    roi = np.ascontiguousarray(img_u8[x0:x1 + 1, y0:y1 + 1])
    t, _ = cv2.threshold(roi, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bright = roi > t
    cx, cy = roi.shape[0] // 2, roi.shape[1] // 2
    fg = bright if bright[cx, cy] else ~bright
    out = np.zeros(img_u8.shape, bool)
    out[x0:x1 + 1, y0:y1 + 1] = fg
    return out


def grabcut_3d(session: PromptSession, key: int, box: Box) -> np.ndarray:
    """Classical 3D baseline of the box protocol: GrabCut on the key box, then slice by slice
    with the previous mask's bbox + 4 px as box, stopping at the first slice under 10 px."""
    n = session.n_slices
    out = np.zeros((*session.slice_shape, n), bool)
    out[..., key] = first = grabcut(u8(session, key), box)
    for step in (1, -1):
        prev, k = first, key + step
        while 0 <= k < n:
            xs, ys = np.nonzero(prev)
            if xs.size == 0:
                break
            b = (max(0, int(xs.min()) - 4), max(0, int(ys.min()) - 4),
                 min(prev.shape[0] - 1, int(xs.max()) + 4),
                 min(prev.shape[1] - 1, int(ys.max()) + 4))
            m = grabcut(u8(session, k), b)
            if m.sum() < 10:
                break
            out[..., k] = prev = m
            k += step
    return out
