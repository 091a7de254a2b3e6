"""medseg's labels for nnU-Net models equal nnU-Net's own ``nnUNetPredictor``'s.

References: ``tests/fixtures/nnunet/reference/<case>_{tta,notta}.nii.gz``, written by the real
``nnUNetPredictor`` (tool venv, ``reference_predict.py``) on the inputs of
``tests/fixtures/nnunet/inputs.py``: the sample CT, an LPS-flipped and a 20-degree oblique copy
(3d_fullres, one fold and the two-fold ensemble), the 2d configuration, and an anisotropic brain
MR whose spacing differs from the model's (separate-z resampling both ways, transposed axes).
Agreement: >= 99.9 % identical voxels and Dice >= 0.99 for every class present.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg import io
from medseg.engine.infer import Segmenter
from tests.fixtures.nnunet.inputs import CASES, make

torch.set_num_threads(2)
FIX = Path(__file__).resolve().parents[1] / "fixtures/nnunet"


@lru_cache(maxsize=4)
def _segmenter(model: str, folds: tuple[int, ...]) -> Segmenter:
    return Segmenter(FIX / "models" / model, device="cpu", folds=[str(f) for f in folds])


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, dict[int, float]]:
    """Fraction of identical voxels and Dice per class present in either."""
    same = float((a == b).mean())
    dice = {}
    for c in sorted((set(np.unique(a)) | set(np.unique(b))) - {0}):
        x, y = a == c, b == c
        dice[int(c)] = float(2 * (x & y).sum() / (x.sum() + y.sum()))
    return same, dice


#: every case without test-time mirroring, and with it where it is cheap (mirroring multiplies
#: the forward passes by 8 in 3D): the other TTA references stay committed for manual checks
RUNS = [(c, False) for c in CASES] + [("ct_sm", True), ("ct_sm_2d", True),
                                       ("ct_oblique", True)]


@pytest.mark.parametrize(("case", "tta"), RUNS, ids=[f"{c}-{'tta' if t else 'notta'}"
                                                    for c, t in RUNS])
def test_same_labels_as_nnunet_predictor(case: str, tta: bool,
                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    model, folds, _ = CASES[case]
    image = io.read(make(case, tmp_path_factory.getbasetemp() / "nnunet_inputs"))
    ref = io.read(FIX / "reference" / f"{case}_{'tta' if tta else 'notta'}.nii.gz", label=True)
    ours = _segmenter(model, folds).predict(image, tta=tta)
    assert ours.grid_differences(ref) == []  # on the input's grid, as nnU-Net's export
    same, dice = agreement(np.asarray(ours.array), np.asarray(ref.array))
    assert same >= 0.999, (same, dice)
    assert min(dice.values(), default=1.0) >= 0.99, dice


def test_references_segment_something() -> None:
    """The toy fixtures segment little, but the comparisons are not all on empty maps: the
    two-fold ensemble finds three classes, the brain model the tumour."""
    found = {}
    for path in sorted((FIX / "reference").glob("*.nii.gz")):
        arr = np.asarray(io.read(path, label=True).array)
        found[path.name] = set(np.unique(arr).tolist()) - {0}
    assert len(found) == 2 * len(CASES)
    assert found["ct_sm_ensemble_notta.nii.gz"] == {1, 3, 4}
    assert found["brain_tta.nii.gz"] == {1}
    assert sum(bool(v) for v in found.values()) >= len(found) - 1


def test_default_tta_is_nnunets() -> None:
    """nnUNetPredictor mirrors by default; so does medseg for an nnU-Net model."""
    seg = _segmenter(CASES["ct_sm"][0], (0,))
    assert seg.default_tta and seg.kind == "nnunet"
    assert seg.labels == {1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "liver"}


@pytest.mark.skipif(not (FIX.parents[2] / ".tools/nnunet/bin/python").exists(),
                    reason="nnunetv2 tool venv not built (make tools-nnunet)")
@pytest.mark.parametrize("case", ["ct_oblique", "brain"])
def test_untrained_network_worst_case(case: str, tmp_path: Path) -> None:
    """An untrained network (nnU-Net's own He initialisation from the fixture's plans) gives
    voxel-scale noise in every class, the worst case for ties; nnUNetPredictor run live in the
    tool venv. Every class appears, and the labels still match."""
    import json
    import subprocess

    model, _, _ = CASES[case]
    image = make(case, tmp_path)
    jobs = [{"op": "random_model", "model": str(FIX / "models" / model),
             "out": str(tmp_path / "random"), "seed": 0},
            {"op": "predict", "model": str(tmp_path / "random"), "image": str(image),
             "tta": False, "out": str(tmp_path / "ref")}]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    subprocess.run([str(FIX.parents[2] / ".tools/nnunet/bin/python"),
                    str(FIX / "tool_reference.py"), str(tmp_path / "jobs.json")],
                   check=True, capture_output=True, timeout=900)
    ours = Segmenter(tmp_path / "random", device="cpu").predict(io.read(image), tta=False)
    ref = io.read(tmp_path / "ref.nii.gz", label=True)
    same, dice = agreement(np.asarray(ours.array), np.asarray(ref.array))
    assert len(dice) == len(ours.labels or {})
    assert same >= 0.999 and min(dice.values()) >= 0.99, (same, dice)
