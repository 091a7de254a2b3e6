"""Case reports on real data: the perturbed TotalSegmentator CT and pyradiomics brain1."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.errors import GeometryMismatchError
from medseg.io import read, write
from medseg.metrics import per_slice_dice
from medseg.report.evaluate import evaluate_case
from medseg.resample import resample_to
from medseg.volume import Volume
from tests.conftest import SAMPLES
from tests.report.conftest import (
    KIDNEY_LEFT,
    LIVER,
    SPLEEN,
    SPLEEN_SHIFT_VOXELS,
    STOMACH,
    RenderedCase,
)


def _strict_json(path: Path) -> dict:
    def no_constants(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name} in {path}")

    return json.loads(path.read_text(), parse_constant=no_constants)


def test_json_metrics_follow_the_perturbations(ts_case: RenderedCase) -> None:
    data = _strict_json(ts_case.out / "report.json")
    rows = {r["label"]: r for r in data["labels"]}
    assert len(rows) == 41
    assert rows[LIVER]["name"] == "liver" and rows[SPLEEN]["name"] == "spleen"
    assert rows[STOMACH]["dice"] == 1.0 and rows[STOMACH]["hd"] == 0.0
    assert rows[KIDNEY_LEFT]["dice"] == 0.0 and "empty_pred" in rows[KIDNEY_LEFT]["flags"]
    assert rows[KIDNEY_LEFT]["hd"] is None  # inf is written as null; the flag says why
    assert 0.5 < rows[LIVER]["dice"] < 0.9
    assert rows[LIVER]["volume_pred_ml"] < rows[LIVER]["volume_ref_ml"]
    # a 12 mm shift along i: the largest boundary error of the spleen is at least the shift
    assert rows[SPLEEN]["hd"] >= SPLEEN_SHIFT_VOXELS * 3.0 - 1e-6
    assert data["geometry"]["grid"]["shape"] == [122, 101, 30]
    assert data["geometry"]["grid"]["spacing_mm"] == [3.0, 3.0, 3.0]
    assert data["geometry"]["resampling"][0].startswith("none")
    assert data["medseg_version"] and "world_frame" in data["conventions"]
    digest = hashlib.sha256(ts_case.ref.read_bytes()).hexdigest()
    assert data["inputs"]["reference"]["sha256"] == digest
    assert data["inputs"]["image"]["path"].endswith("example_ct_sm.nii.gz")
    assert len(data["per_slice_dice_k"][str(STOMACH)]) == 30


def test_worst_boundary_and_largest_error_locations(ts_case: RenderedCase) -> None:
    data = _strict_json(ts_case.out / "report.json")
    loc = data["locations"]
    rows = {r["label"]: r for r in data["labels"]}
    wb = loc["worst_boundary"]
    finite_hd = {k: r["hd"] for k, r in rows.items() if r["hd"] is not None}
    assert wb["distance_mm"] == pytest.approx(max(finite_hd.values()), abs=1e-3)
    assert wb["label"] in (LIVER, SPLEEN)
    pred, ref = read(ts_case.pred, label=True), read(ts_case.ref, label=True)
    i, j, k = wb["ijk"]
    mask = (pred if wb["on_boundary_of"] == "prediction" else ref).array == wb["label"]
    assert mask[i, j, k]
    assert loc["worst_boundary_slices"]["axial"] == {"axis": "k", "index": k, "display_index": k}
    assert loc["worst_boundary_slices"]["sagittal"]["index"] == i
    np.testing.assert_allclose(wb["world_lps_mm"], ref.index_to_world([i, j, k]), atol=0.01)
    # the largest error slices are the argmax of per-slice disagreement, computed here directly
    err = pred.array != ref.array
    assert loc["largest_error"]["axial"]["index"] == int(np.argmax(err.sum(axis=(0, 1))))
    assert loc["largest_error"]["coronal"]["index"] == int(np.argmax(err.sum(axis=(0, 2))))
    assert loc["largest_error"]["sagittal"]["index"] == int(np.argmax(err.sum(axis=(1, 2))))
    assert loc["largest_error"]["axial"]["error_voxels"] == int(err.sum(axis=(0, 1)).max())
    assert loc["total_error_voxels"] == int(err.sum())
    # per-slice Dice (computed on per-label crops) equals the full-array computation
    for lab in (LIVER, SPLEEN, KIDNEY_LEFT):
        full = per_slice_dice(pred.array == lab, ref.array == lab, axis=2)
        got = np.array([np.nan if v is None else v for v in data["per_slice_dice_k"][str(lab)]])
        np.testing.assert_allclose(got, full, equal_nan=True)


def test_csv_has_one_row_per_label(ts_case: RenderedCase) -> None:
    rows = list(csv.DictReader(io.StringIO((ts_case.out / "report.csv").read_text())))
    assert len(rows) == 41
    by_label = {int(r["label"]): r for r in rows}
    assert by_label[KIDNEY_LEFT]["flags"] == "empty_pred"
    assert float(by_label[STOMACH]["dice"]) == 1.0
    assert by_label[KIDNEY_LEFT]["hd"] == "inf"
    assert {r["case_id"] for r in rows} == {"pred"}


def test_html_is_self_contained(ts_case: RenderedCase) -> None:
    text = (ts_case.out / "report.html").read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) == 5 and all(s.startswith("data:image/png;base64,") for s in sources)
    for src in sources:
        png = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert png.format == "PNG" and png.width >= 400
    assert "liver" in text and "kidney_left" in text and "Radiological convention" in text
    assert "LPS" in text and "[122, 101, 30]" in text


def test_pdf_has_every_section(ts_case: RenderedCase) -> None:
    data = (ts_case.out / "report.pdf").read_bytes()
    assert data.startswith(b"%PDF-")
    pages = len(re.findall(rb"/Type\s*/Page\b", data))
    assert pages >= 5  # table, two overlays, histograms, per-slice Dice/volumes, geometry
    assert data.count(b"/Subtype /Image") >= 5


def test_case_report_is_fast(ts_case: RenderedCase) -> None:
    # < 10 s per case is the target on an idle 2-core machine; leave room for a shared one
    assert ts_case.seconds < 15.0, ts_case.seconds


@pytest.fixture(scope="module")
def brain1_offgrid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """brain1: a prediction on a coarser, shifted grid; reference and image as shipped."""
    tmp = tmp_path_factory.mktemp("brain1")
    ref = read(SAMPLES / "pyradiomics/brain1_label.nrrd", label=True)
    coarse = Volume(np.zeros((128, 128, 25), np.uint8), (1.5625, 1.5625, 6.5),
                    tuple(np.add(ref.origin, (0.39, -0.39, 0.0))), ref.direction)
    pred = resample_to(ref, coarse)
    return (write(pred, tmp / "pred.nrrd"), SAMPLES / "pyradiomics/brain1_label.nrrd",
            SAMPLES / "pyradiomics/brain1_image.nrrd")


def test_grid_mismatch_is_refused_with_the_fix(brain1_offgrid: tuple[Path, Path, Path],
                                                tmp_path: Path) -> None:
    pred, ref, image = brain1_offgrid
    with pytest.raises(GeometryMismatchError, match=r"--resample-to ref") as info:
        evaluate_case(pred, ref, tmp_path / "out", image=image)
    assert "spacing" in str(info.value) and "prediction" in str(info.value)
    assert not (tmp_path / "out" / "report.json").exists()


def test_resample_to_ref_is_nearest_and_stated(brain1_offgrid: tuple[Path, Path, Path],
                                               tmp_path: Path) -> None:
    pred, ref, image = brain1_offgrid
    report = evaluate_case(pred, ref, tmp_path / "out", image=image, resample_to="ref")
    data = _strict_json(tmp_path / "out" / "report.json")
    note = " ".join(data["geometry"]["resampling"])
    assert "nearest-neighbour" in note and "--resample-to ref" in note
    assert data["geometry"]["inputs"]["prediction"]["shape"] == [128, 128, 25]
    assert data["geometry"]["grid"]["spacing_mm"] == [0.78125, 0.78125, 6.5]
    (row,) = report.metrics
    assert row.name == "brain_tumour"  # from the label table stored with the files
    assert 0.8 < row.dice < 1.0  # the same mask, twice through a 2x coarser grid
    html = (tmp_path / "out" / "report.html").read_text()
    assert "nearest-neighbour" in html and "brain_tumour" in html


def test_empty_label_maps_still_give_a_report(tmp_path: Path) -> None:
    empty = Volume(np.zeros((12, 10, 4), np.uint8), (1.0, 1.0, 2.5), labels={})
    p = write(empty, tmp_path / "p.nii.gz")
    r = write(empty, tmp_path / "r.nii.gz")
    report = evaluate_case(p, r, tmp_path / "out")
    assert report.metrics == [] and report.locations["worst_boundary"] is None
    data = _strict_json(tmp_path / "out" / "report.json")
    assert data["labels"] == [] and data["locations"]["total_error_voxels"] == 0
    assert (tmp_path / "out" / "report.pdf").read_bytes().startswith(b"%PDF-")
    assert "centre of the reference foreground" in (tmp_path / "out" / "report.html").read_text()
