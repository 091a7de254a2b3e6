"""Report fixtures: a perturbed TotalSegmentator prediction evaluated once per session, and
small synthetic label maps on awkward (oblique, anisotropic) grids for fast cohort/CLI tests."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from medseg.io import read, write
from medseg.report.case import CaseReport
from medseg.report.evaluate import evaluate_case
from medseg.volume import Volume
from tests.conftest import SAMPLES, rotation

TS = SAMPLES / "totalsegmentator"
LIVER, SPLEEN, KIDNEY_LEFT, STOMACH = 5, 1, 3, 6
SPLEEN_SHIFT_VOXELS = 4


@dataclass
class RenderedCase:
    """A case report written to ``out`` from ``pred``/``ref`` files, with its run time."""

    out: Path
    pred: Path
    ref: Path
    image: Path
    names: Path
    report: CaseReport
    seconds: float


def perturb_totalseg(ref: Volume) -> np.ndarray:
    """Reference labels with the liver eroded by 2 voxels, the spleen shifted 4 voxels along i
    (12 mm) and the left kidney dropped."""
    a = ref.array.copy()
    liver = a == LIVER
    a[liver & ~ndi.binary_erosion(liver, iterations=2)] = 0
    spleen = a == SPLEEN
    a[spleen] = 0
    a[np.roll(spleen, SPLEEN_SHIFT_VOXELS, axis=0) & (a == 0)] = SPLEEN
    a[a == KIDNEY_LEFT] = 0
    return a


@pytest.fixture(scope="session")
def ts_case(tmp_path_factory: pytest.TempPathFactory) -> RenderedCase:
    """The TotalSegmentator CT case, evaluated with image and a names JSON."""
    tmp = tmp_path_factory.mktemp("ts_case")
    ref_path = TS / "example_seg.nii.gz"
    ref = read(ref_path, label=True)
    pred_path = write(ref.with_array(perturb_totalseg(ref), labels=None), tmp / "pred.nii.gz")
    table = json.loads((TS / "totalsegmentator_class_map_DERIVED.json").read_text())["total"]
    names = tmp / "names.json"
    names.write_text(json.dumps({"labels": table}))
    t0 = time.perf_counter()
    report = evaluate_case(pred_path, ref_path, tmp / "report", image=TS / "example_ct_sm.nii.gz",
                           labels=names, nsd_tolerance_mm=2.0)
    seconds = time.perf_counter() - t0
    return RenderedCase(tmp / "report", pred_path, ref_path, TS / "example_ct_sm.nii.gz", names,
                        report, seconds)


def synthetic_pair(seed: int = 0, shift: int = 1) -> tuple[Volume, Volume]:
    """(prediction, reference): two ellipsoid labels on an oblique 0.9 x 1.1 x 4 mm grid;
    the prediction's label 2 is shifted by ``shift`` voxels along i."""
    shape = (40, 36, 12)
    ii, jj, kk = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    ref = np.zeros(shape, np.uint8)
    ref[((ii - 14) / 8.0) ** 2 + ((jj - 18) / 9.0) ** 2 + ((kk - 6) / 3.5) ** 2 <= 1] = 1
    ref[((ii - 29) / 6.0) ** 2 + ((jj - 14) / 6.0) ** 2 + ((kk - 5) / 3.0) ** 2 <= 1] = 2
    rng = np.random.default_rng(seed)
    pred = ref.copy()
    pred[pred == 2] = 0
    pred[np.roll(ref == 2, shift, axis=0)] = 2
    flip = rng.random(ref.shape) < 0.002
    pred[flip & (ref == 1)] = 0
    direction = rotation("z", 12) @ rotation("x", -8)
    geo = {"spacing": (0.9, 1.1, 4.0), "origin": (-20.0, 15.0, -30.0), "direction": direction}
    names = {1: "organ_a", 2: "lesion <b>"}
    return (Volume(pred, labels=names, modality="SEG", **geo),
            Volume(ref, labels=names, modality="SEG", **geo))
