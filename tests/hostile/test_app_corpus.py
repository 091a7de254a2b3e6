"""The hostile corpus through the app: uploads, server files inside a data root, symlinks,
detached headers, zips and two sessions on one case, driven with Streamlit's AppTest.

Contract (issue 18), whatever the app decides for each input: no exception reaches the page;
either the case opens, or exactly one one-line message names the input; a refusal opens no
case and leaves nothing half-written in the workspace (no ``cases/`` folder, no partial upload,
no extraction folder); no byte of a file outside the allowed folders reaches the workspace.
"""

from __future__ import annotations

import io as _io
import os
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT
from tests.hostile.cases_inputs import INPUTS

APP = str(ROOT / "app" / "main.py")
MARK = b"OUTSIDE-THE-ROOTS-MARK:"

#: Inputs uploaded through the real file uploader (folders are zipped first).
UPLOADS = [
    "nifti_random_bytes", "nifti_truncated_gz", "nifti_gzip_of_garbage", "nifti_pixdim_nan",
    "nifti_sform_nan", "nifti_qform_nan", "nifti_sform_shear", "nifti_complex", "nifti_rgb24",
    "nifti_uint64_huge", "nifti_inf", "nifti_nan", "nifti_4d", "nifti_huge_dims",
    "nifti_bad_datatype", "nifti_2d", "nifti_single_voxel", "nifti_big_endian", "nifti2",
    "mgz", "mgz_truncated", "mha_etc_passwd", "nhdr_etc_passwd", "mha_rgb", "mha_complex",
    "mha_inf", "mha_zero_spacing", "mha_huge_dims", "nrrd_garbage", "nrrd_nan_direction",
    "nrrd_4d", "dicom_junk_folder", "dicom_missing_rows", "dicom_dropped_slice",
    "dicom_corrupt_rle", "zip_slip", "zip_absolute_member", "zip_bomb_ratio",
    "zip_symlink_member", "zip_corrupt", "zip_empty", "zip_nested_zip", "zip_dicom_ok",
    "analyze_header_without_img", "mhd_missing_data",
]
#: Inputs placed inside a data root and opened as server files.
SERVER = [
    "nifti_pixdim_nan", "nifti_rgb24", "nifti_huge_dims", "mha_etc_passwd", "nhdr_etc_passwd",
    "mhd_missing_data", "mhd_short_data", "mhd_ok", "mhd_list_with_missing", "analyze_pair",
    "analyze_header_without_img", "mgz", "dicom_missing_rows", "dicom_gantry_tilt",
    "zip_slip", "zip_bomb_ratio", "zip_symlink_member", "zip_dicom_ok",
]


def _zip_folder(folder: Path) -> Path:
    out = folder.with_suffix(".zip")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, f"{folder.name}/{p.relative_to(folder)}")
    return out


def _texts(at: AppTest) -> list[str]:
    """Every error message shown (``at.error`` covers the sidebar and the main area)."""
    return [e.value for e in at.error]


def _check(at: AppTest, ws: Path, cited: str, expect: str) -> None:
    assert not at.exception, [e.value for e in at.exception]
    errors = _texts(at)
    page = " ".join(errors + [w.value for w in at.warning])
    assert "Traceback" not in page
    if "case" in at.session_state:
        assert expect != "refuse", f"opened, but must be refused: {errors}"
        assert not errors, errors
        return
    assert expect != "accept", f"refused, but must open: {errors}"
    assert len(errors) == 1, errors
    (msg,) = errors
    assert "\n" not in msg.strip(), msg
    assert cited in msg, f"{cited!r} not named in {msg!r}"
    assert not (ws / "cases").exists(), "a case folder was made for a refused input"
    for p in ws.rglob("*"):
        assert ".incoming" not in p.parts or not p.is_file(), f"partial upload {p}"
        assert not p.name.startswith(".extract-"), f"extraction left {p}"
        assert not p.is_file() or MARK not in p.read_bytes(), f"outside bytes in {p}"


@pytest.mark.parametrize("name", UPLOADS)
def test_upload(name: str, tmp_path: Path, app_workspace: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    path, _, expect = INPUTS[name](src)
    if path.is_dir():
        path = _zip_folder(path)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.radio(key="source").set_value("Upload").run()
    at.sidebar.file_uploader(key="upload").set_value(
        (path.name, path.read_bytes(), "application/octet-stream"))
    _check(at.run(), app_workspace, path.name, expect)


def _server_open(root: Path, entry: str, folder: Path | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.radio(key="source").set_value("Server folder").run()
    at.sidebar.text_input(key="server_folder").input(str(folder or root)).run()
    if at.sidebar.error:
        return at
    at.sidebar.selectbox(key="server_entry").select(entry).run()
    return at.sidebar.button(key="open_server").click().run()


@pytest.fixture()
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("MEDSEG_DATA_ROOTS", str(root))
    return root


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    """A folder outside every root holding a marked raw file and a valid NIfTI."""
    from tests.hostile import craft

    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret.raw").write_bytes(MARK * 64)
    craft.nifti(out / "valid.nii.gz")
    return out


@pytest.mark.parametrize("name", SERVER)
def test_server_file(name: str, data_root: Path, app_workspace: Path) -> None:
    path, _, expect = INPUTS[name](data_root)
    _check(_server_open(data_root, path.name), app_workspace, path.name, expect)


# ------------------------------------------------------------------ symlinks and roots
def _link_file_out(root: Path, out: Path) -> tuple[str, str, str]:
    (root / "linked.nii.gz").symlink_to(out / "valid.nii.gz")
    return "linked.nii.gz", "linked.nii.gz", "refuse"


def _link_file_in(root: Path, out: Path) -> tuple[str, str, str]:
    from tests.hostile import craft

    craft.nifti(root / "real.nii.gz")
    (root / "alias.nii.gz").symlink_to(root / "real.nii.gz")
    return "alias.nii.gz", "alias.nii.gz", "accept"


def _link_dicom_file_out(root: Path, out: Path) -> tuple[str, str, str]:
    from tests.hostile import craft

    series = craft.dicom_series(root / "series")
    victim = sorted(series.iterdir())[1]
    craft.dicom_series(out / "other")
    victim.unlink()
    victim.symlink_to(sorted((out / "other").iterdir())[1])
    return "series", victim.name, "refuse"


def _link_dicom_deep_out(root: Path, out: Path) -> tuple[str, str, str]:
    from tests.hostile import craft

    series = craft.dicom_series(root / "study" / "a" / "b")
    craft.dicom_series(out / "other")
    (series / "extra.dcm").symlink_to(sorted((out / "other").iterdir())[0])
    return "study", "extra.dcm", "refuse"


def _link_folder_out(root: Path, out: Path) -> tuple[str, str, str]:
    from tests.hostile import craft

    craft.dicom_series(out / "theirs")
    (root / "mine").symlink_to(out / "theirs")
    return "mine", "mine", "refuse"


def _raw_link_out(root: Path, out: Path) -> tuple[str, str, str]:
    from tests.hostile import craft

    craft.mhd_text(root / "scan.mhd", "scan.raw", dims=(8, 8, 1), etype="MET_UCHAR")
    (root / "scan.raw").symlink_to(out / "secret.raw")
    return "scan.mhd", "scan.raw", "refuse"


def _img_link_out(root: Path, out: Path) -> tuple[str, str, str]:
    import nibabel as nib
    import numpy as np

    nib.save(nib.Nifti1Pair(np.zeros((4, 4, 2), np.uint8), np.eye(4)), str(out / "p.hdr"))
    (root / "p.hdr").write_bytes((out / "p.hdr").read_bytes())
    (root / "p.img").symlink_to(out / "p.img")
    return "p.hdr", "p.img", "refuse"


def _nhdr_absolute_secret(root: Path, out: Path) -> tuple[str, str, str]:
    from tests.hostile import craft

    craft.nhdr_text(root / "x.nhdr", str(out / "secret.raw"), dims=(8, 8, 1))
    return "x.nhdr", "x.nhdr", "refuse"


def _mhd_dotdot_secret(root: Path, out: Path) -> tuple[str, str, str]:
    from tests.hostile import craft

    craft.mhd_text(root / "y.mhd", "../outside/secret.raw", dims=(8, 8, 1), etype="MET_UCHAR")
    return "y.mhd", "y.mhd", "refuse"


LINKS = {"file_out": _link_file_out, "file_in": _link_file_in,
         "dicom_file_out": _link_dicom_file_out, "dicom_deep_out": _link_dicom_deep_out,
         "folder_out": _link_folder_out, "raw_link_out": _raw_link_out,
         "img_link_out": _img_link_out, "nhdr_absolute_secret": _nhdr_absolute_secret,
         "mhd_dotdot_secret": _mhd_dotdot_secret}


@pytest.mark.parametrize("kind", sorted(LINKS))
def test_symlinks_and_escapes(kind: str, data_root: Path, outside: Path,
                              app_workspace: Path) -> None:
    entry, cited, expect = LINKS[kind](data_root, outside)
    at = _server_open(data_root, entry)
    if kind == "folder_out" and at.sidebar.selectbox(key="server_entry").options and \
            "mine" not in at.sidebar.selectbox(key="server_entry").options:
        return  # a link leaving the roots is not even listed: nothing to open
    _check(at, app_workspace, cited, expect)


def test_a_folder_path_climbing_out_of_the_roots_is_refused(data_root: Path,
                                                            app_workspace: Path) -> None:
    at = _server_open(data_root, "", folder=data_root / ".." / "..")
    _check(at, app_workspace, "..", "refuse")


def test_an_oversized_upload_is_refused_before_it_is_kept(tmp_path: Path, app_workspace: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv("MEDSEG_MAX_UPLOAD_MB", "1")
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.radio(key="source").set_value("Upload").run()
    at.sidebar.file_uploader(key="upload").set_value(
        ("big.nii.gz", os.urandom(2 << 20), "application/octet-stream"))
    at.run()
    _check(at, app_workspace, "big.nii.gz", "refuse")
    assert not [p for p in app_workspace.rglob("*") if p.is_file() and p.stat().st_size > 1e6]


# ------------------------------------------------------------------ concurrency
def test_a_stale_save_is_refused_in_one_line_and_kept(tmp_path: Path) -> None:
    from app.annotation import Annotation
    from app.case import Case
    from app.workspace import SaveConflictError, Workspace, sample_source
    from tests.conftest import make_volume

    case = Case("c", make_volume("flipped"))
    src, ws = sample_source("c", None), Workspace(tmp_path)
    first, second = (Annotation.empty(case.image_lps.shape) for _ in range(2))
    for ann in (first, second):
        ann.add_label("liver")
    assert ws.save(src, case, first, annotator="ada", expected_revision=0) == 1
    with pytest.raises(SaveConflictError) as err:
        ws.save(src, case, second, annotator="bob", expected_revision=0)
    assert "\n" not in str(err.value) and "ada" in str(err.value)
    assert ws.read_state(src.key)["annotator"] == "ada"  # type: ignore[index]


def _append_many(path: str, who: int) -> None:
    from app.workspace import Workspace

    ws = Workspace(Path(path))
    for i in range(200):
        ws.audit(f"user{who}", "stroke", "case", n=i, pad="x" * (i * 97 % 5000))


def test_the_audit_log_loses_no_line_under_concurrent_writers(tmp_path: Path) -> None:
    import json
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    entries = [json.loads(x) for x in lines]
    assert len(entries) == 600
    for w in range(3):
        assert [e["n"] for e in entries if e["annotator"] == f"user{w}"] == list(range(200))


def test_an_upload_zip_holding_a_secret_link_member_is_not_followed(
        tmp_path: Path, app_workspace: Path) -> None:
    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("scan.mhd", "ObjectType = Image\nNDims = 3\nDimSize = 8 8 1\n"
                                "ElementType = MET_UCHAR\nElementDataFile = scan.raw\n")
        info = zipfile.ZipInfo("scan.raw")
        info.create_system = 3
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.radio(key="source").set_value("Upload").run()
    at.sidebar.file_uploader(key="upload").set_value(("scan.zip", buf.getvalue(), "app/zip"))
    _check(at.run(), app_workspace, "scan.zip", "refuse")
