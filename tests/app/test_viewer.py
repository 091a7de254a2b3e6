"""App state logic with Streamlit's AppTest: open cases, move sliders, window presets, errors."""

from __future__ import annotations

import io as _io
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app import render
from app.case import Case, open_case
from app.settings import load_settings
from app.sources import PathOutsideRootsError, UploadTooLargeError, resolve_in_roots
from app.uploads import store_upload
from medseg import io
from tests.conftest import ROOT, SAMPLES, make_volume

APP = str(ROOT / "app" / "main.py")


def _app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=120).run()


def test_open_sample_shows_three_planes_and_readout() -> None:
    at = _app()
    assert "Open a bundled sample" in at.info[0].value
    at.sidebar.button(key="open_sample").click().run()
    assert not at.exception and not at.error
    planes = [s.label for s in at.slider if (s.key or "").startswith("slider_")]
    assert planes == ["Axial", "Coronal", "Sagittal"]
    at.slider(key="slider_axial").set_value(3).run()
    readout = next(m.value for m in at.markdown if m.value.startswith("**Cursor**"))
    assert "(256, 256, 3)" in readout and "-798.5" in readout
    at.selectbox(key="preset").select("CT bone").run()
    assert not at.exception


def test_open_nrrd_sample_uses_mr_auto_window() -> None:
    at = _app()
    at.sidebar.selectbox(key="sample").select("MR brain tumour (T1 post-Gd)").run()
    at.sidebar.button(key="open_sample").click().run()
    assert not at.exception and not at.error
    assert at.selectbox(key="preset").options == ["Auto (percentiles)", "Manual"]
    assert at.multiselect(key="hidden").options == []  # the annotation starts empty
    at.radio(key="overlay").set_value("Reference").run()
    assert at.multiselect(key="visible_ref").value == ["brain_tumour"]


def test_server_folder_outside_roots_is_refused_in_page() -> None:
    at = _app()
    at.sidebar.radio(key="source").set_value("Server folder").run()
    at.sidebar.text_input(key="server_folder").input("/etc").run()
    assert not at.exception
    assert "outside the data folders" in at.sidebar.error[0].value


def test_case_readout_is_consistent_with_geometry() -> None:
    vol = make_volume("oblique")
    case = Case("x", vol)
    r = case.readout((1, 2, 3))
    world = np.asarray(r["lps_mm"])
    ijk = np.asarray(r["voxel"])
    np.testing.assert_allclose(vol.index_to_world(ijk), world, atol=0.01)
    assert r["value"] == float(vol.array[tuple(ijk)])


def test_case_accepts_flipped_label_map_exactly() -> None:
    case = open_case("ct", SAMPLES / "totalsegmentator/example_ct_dicom",
                     SAMPLES / "totalsegmentator/example_seg_dicom.nii.gz", roots=(SAMPLES,))
    raw = io.read(SAMPLES / "totalsegmentator/example_seg_dicom.nii.gz")
    assert case.labels is not None and case.labels.grid_differences(case.image) == []
    # the liver voxel count is unchanged by the exact re-indexing
    assert (case.labels.array == 5).sum() == (raw.array == 5).sum()


def test_display_orientation_is_radiological() -> None:
    vol = make_volume("flipped").reorient("LPS")
    view = render.extract(vol, "axial", 0)
    # screen column 0 is the patient's right-most voxel: smallest L coordinate
    i0, _, _ = render.display_to_voxel(vol, "axial", 0, 0, 0)
    i1, _, _ = render.display_to_voxel(vol, "axial", 0, 0, view.pixels.shape[1] - 1)
    assert vol.index_to_world([i0, 0, 0])[0] < vol.index_to_world([i1, 0, 0])[0]
    for plane in render.PLANES:
        idx = vol.shape[render.plane_axis(plane)] // 2
        v = render.extract(vol, plane, idx)
        r, c = v.pixels.shape[0] - 1, v.pixels.shape[1] // 2
        assert v.pixels[r, c] == vol.array[render.display_to_voxel(vol, plane, idx, r, c)]
    w, h = render.physical_size(render.extract(vol, "coronal", 0), 300)
    assert h / w == pytest.approx(vol.shape[2] * 3.0 / (vol.shape[0] * 1.2), rel=0.02)


def test_uploads_are_size_limited_and_named_safely(tmp_path: Path) -> None:
    stored = store_upload(_io.BytesIO(b"x" * 10), "../../etc/passwd.nii.gz", 10, tmp_path,
                          max_mb=1)
    p = stored.path
    assert p.parent.parent == tmp_path and p.name == "passwd.nii.gz"
    with pytest.raises(UploadTooLargeError, match="limit"):
        store_upload(_io.BytesIO(b"x" * (2 * 2**20)), "big.nii.gz", 2 * 2**20, tmp_path,
                     max_mb=1)


def test_roots_resolution_blocks_symlink_escape(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to("/etc")
    with pytest.raises(PathOutsideRootsError):
        resolve_in_roots(root / "link" / "hosts", (root,))
    assert resolve_in_roots("sub", (root,)) == root / "sub"
    settings = load_settings({"MEDSEG_DATA_ROOTS": str(root), "MEDSEG_MAX_UPLOAD_MB": "5"})
    assert settings.data_roots == (root.resolve(),) and settings.max_upload_mb == 5


def test_start_sample_opens_the_ct_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDSEG_START_SAMPLE", "CT abdomen, DICOM (JPEG 2000)")
    monkeypatch.setenv("MEDSEG_WORKSPACE", str(tmp_path))
    at = _app()
    assert not at.exception and not at.error
    assert any("### CT abdomen, DICOM (JPEG 2000)" in m.value for m in at.markdown)
    monkeypatch.setenv("MEDSEG_START_SAMPLE", "no such sample")
    at = _app()
    assert "not a bundled sample" in at.error[0].value


def test_sidebar_names_the_open_case_and_a_new_case_starts_with_its_own_window() -> None:
    at = _app()
    at.sidebar.selectbox(key="sample").select("MR brain tumour (T1 post-Gd)").run()
    assert any("**MR brain tumour (T1 post-Gd)**" in c.value for c in at.sidebar.caption)
    at.sidebar.button(key="open_sample").click().run()
    assert any(c.value.startswith("Open now: **MR brain tumour") for c in at.sidebar.caption)
    at.selectbox(key="preset").select("Manual").run()
    at.sidebar.selectbox(key="sample").select("CT abdomen, NIfTI 3 mm").run()
    at.sidebar.button(key="open_sample").click().run()
    assert not at.exception and not at.error
    assert any(c.value.startswith("Open now: **CT abdomen, NIfTI") for c in at.sidebar.caption)
    assert at.selectbox(key="preset").value == "CT soft tissue"  # not the MR's manual window
