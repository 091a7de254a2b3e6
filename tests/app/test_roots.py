"""The app reads nothing outside its data roots (server files) or an upload's own folder."""

from __future__ import annotations

import io as _io
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT, SAMPLES

APP = str(ROOT / "app" / "main.py")
MARK = b"SECRET-OUTSIDE-THE-ROOTS:"  # the bytes of the file that must never be read


def mha(target: str) -> bytes:
    return ("ObjectType = Image\nNDims = 3\nDimSize = 4 4 2\nElementType = MET_UCHAR\n"
            f"ElementDataFile = {target}\n").encode()


def nrrd(target: str) -> bytes:
    return ("NRRD0004\ntype: uint8\ndimension: 3\nsizes: 4 4 2\nencoding: raw\n"
            f"data file: {target}\n\n").encode()


def mhd(data_name: str) -> bytes:
    return ("ObjectType = Image\nNDims = 3\nDimSize = 4 4 2\nElementType = MET_UCHAR\n"
            "ElementSpacing = 0.5 0.5 2\nElementDataFile = " + data_name + "\n").encode()


@pytest.fixture()
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "secret.raw"
    path.parent.mkdir()
    path.write_bytes(MARK * 8)
    return path


HOSTILE = {  # name -> header naming a data file outside every allowed folder
    "passwd.mha": lambda s: mha("/etc/passwd"),
    "passwd.nrrd": lambda s: nrrd("/etc/passwd"),
    "secret.mha": lambda s: mha(str(s)),
    "secret.nrrd": lambda s: nrrd(str(s)),
}


def _nothing_opened(at: AppTest, ws: Path) -> None:
    assert not at.exception and "case" not in at.session_state
    assert not (ws / "cases").exists()
    for f in ws.rglob("*"):  # the target's bytes reached no file the app wrote
        assert not f.is_file() or MARK not in f.read_bytes(), f


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.sidebar.radio(key="source").set_value("Upload").run()
    at.sidebar.file_uploader(key="upload").set_value((name, data, "application/octet-stream"))
    return at.run()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_uploaded_header_naming_a_file_outside_is_refused(name: str, secret: Path,
                                                          app_workspace: Path) -> None:
    at = _upload(AppTest.from_file(APP, default_timeout=120).run(), name, HOSTILE[name](secret))
    (msg,) = [e.value for e in at.sidebar.error]
    assert name in msg and "points outside the header's folder" in msg
    assert "nothing was read" in msg
    _nothing_opened(at, app_workspace)


def _server_open(root: Path, entry: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.radio(key="source").set_value("Server folder").run()
    at.sidebar.text_input(key="server_folder").input(str(root)).run()
    at.sidebar.selectbox(key="server_entry").select(entry).run()
    return at.sidebar.button(key="open_server").click().run()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_server_header_naming_a_file_outside_is_refused(name: str, secret: Path, tmp_path: Path,
                                                        app_workspace: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / name).write_bytes(HOSTILE[name](secret))
    monkeypatch.setenv("MEDSEG_DATA_ROOTS", str(root))
    at = _server_open(root, name)
    (msg,) = [e.value for e in at.sidebar.error]
    assert name in msg and "nothing was read" in msg
    _nothing_opened(at, app_workspace)


def test_server_header_whose_data_file_is_a_symlink_out_of_the_roots_is_refused(
        secret: Path, tmp_path: Path, app_workspace: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "evil.mhd").write_bytes(mhd("evil.raw"))
    (root / "evil.raw").symlink_to(secret)
    monkeypatch.setenv("MEDSEG_DATA_ROOTS", str(root))
    at = _server_open(root, "evil.mhd")
    (msg,) = [e.value for e in at.sidebar.error]
    assert "evil.raw" in msg and str(root) in msg and "nothing was read" in msg
    _nothing_opened(at, app_workspace)


@pytest.mark.parametrize("name", ["scan.mhd", "scan.nhdr", "scan.hdr"])
def test_a_lone_detached_header_upload_asks_for_a_zip(name: str, app_workspace: Path) -> None:
    at = _upload(AppTest.from_file(APP, default_timeout=120).run(), name, mhd("scan.raw"))
    (msg,) = [e.value for e in at.sidebar.error]
    assert msg.startswith(f"{name}: a detached header") and "together as one zip" in msg
    _nothing_opened(at, app_workspace)


VOXELS = np.arange(32, dtype=np.uint8).reshape(2, 4, 4)  # [k, j, i] as stored on disk


def _zip(members: dict[str, bytes]) -> bytes:
    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _analyze_pair(tmp_path: Path) -> dict[str, bytes]:
    nib.save(nib.Nifti1Pair(VOXELS.transpose(2, 1, 0).copy(), np.diag([0.5, 0.5, 2, 1])),
             tmp_path / "pair.hdr")
    return {f"case/pair.{e}": (tmp_path / f"pair.{e}").read_bytes() for e in ("hdr", "img")}


@pytest.mark.parametrize("kind", ["mhd", "nhdr", "hdr"])
def test_a_zip_of_header_and_data_opens_from_the_upload_folder(kind: str, tmp_path: Path,
                                                               app_workspace: Path) -> None:
    members = {"mhd": {"scan.mhd": mhd("scan.raw"), "scan.raw": VOXELS.tobytes()},
               "nhdr": {"scan.nhdr": nrrd("scan.raw").replace(b"sizes", b"spacings: 0.5 0.5 "
                                                                        b"2\nsizes"),
                        "scan.raw": VOXELS.tobytes()},
               "hdr": _analyze_pair(tmp_path)}[kind]
    at = _upload(AppTest.from_file(APP, default_timeout=120).run(), "scan.zip", _zip(members))
    assert not at.exception and not at.sidebar.error, [e.value for e in at.sidebar.error]
    case = at.session_state["case"]
    np.testing.assert_array_equal(case.image.array, VOXELS.transpose(2, 1, 0))
    assert case.image.spacing == pytest.approx((0.5, 0.5, 2.0))
    source = at.session_state["case_source"]
    (upload,) = [p for p in (app_workspace / "uploads").iterdir() if not p.name.startswith(".")]
    assert Path(source.ref).parent.parent in (upload / "extracted", upload)
    assert Path(source.ref).is_relative_to(upload / "extracted")


def test_a_zip_whose_header_points_out_of_its_folder_is_refused(secret: Path,
                                                                app_workspace: Path) -> None:
    zipped = _zip({"scan.mhd": mhd("../../../../../../../../" + str(secret).lstrip("/")),
                   "scan.raw": VOXELS.tobytes()})
    at = _upload(AppTest.from_file(APP, default_timeout=120).run(), "scan.zip", zipped)
    (msg,) = [e.value for e in at.sidebar.error]
    assert "scan.mhd" in msg and "nothing was read" in msg
    _nothing_opened(at, app_workspace)


def test_a_zip_slip_upload_is_refused_and_nothing_extracted(app_workspace: Path) -> None:
    zipped = _zip({"scan.mhd": mhd("scan.raw"), "../../escape.raw": VOXELS.tobytes()})
    at = _upload(AppTest.from_file(APP, default_timeout=120).run(), "scan.zip", zipped)
    (msg,) = [e.value for e in at.sidebar.error]
    assert "../../escape.raw" in msg
    _nothing_opened(at, app_workspace)
    assert not list(app_workspace.rglob("extracted")) and not list(app_workspace.rglob("*.raw"))


def test_a_zip_of_dicom_files_keeps_opening(app_workspace: Path) -> None:
    folder = SAMPLES / "dcmqi/ct-3slice"
    zipped = _zip({f"ct/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())})
    at = _upload(AppTest.from_file(APP, default_timeout=120).run(), "ct.zip", zipped)
    assert not at.exception and not at.sidebar.error, [e.value for e in at.sidebar.error]
    assert at.session_state["case"].image.shape == (512, 512, 3)
    assert not list(app_workspace.rglob("extracted"))  # read from the zip as before


def _saved_state(ws: Path, source: dict[str, object]) -> str:
    """A case saved in the workspace whose state names ``source`` (as a tampered file would)."""
    from app.case import open_case
    from app.workspace import CaseSource, Workspace

    src = CaseSource(**source)  # type: ignore[arg-type]
    case = open_case("x", SAMPLES / "pyradiomics/brain1_image.nrrd", roots=(SAMPLES,))
    from app.annotation import Annotation

    Workspace(ws).save(src, case, Annotation.empty(case.image_lps.shape), annotator="x")
    return src.key


@pytest.mark.parametrize("kind", ["server", "upload"])
def test_restoring_a_case_whose_state_names_a_file_outside_is_refused(
        kind: str, secret: Path, app_workspace: Path) -> None:
    key = _saved_state(app_workspace, {"kind": kind, "name": "x", "ref": str(secret),
                                       "identity": f"tampered-{kind}"})
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["case"] = key
    at.run()
    assert not at.exception and "case" not in at.session_state
    (msg,) = [e.value for e in at.error]
    assert msg.startswith(f"Could not restore case {key}: ") and str(secret) in msg


def test_compare_reference_upload_naming_a_file_outside_is_refused(secret: Path,
                                                                   app_workspace: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.button(key="open_sample").click().run()
    at.radio(key="panel").set_value("Compare").run()
    at.radio(key="ref_pick").set_value("Upload").run()
    at.file_uploader(key="ref_upload").set_value(("ref.mha", mha(str(secret)), "x/y")).run()
    assert not at.exception and "report" not in at.session_state
    assert any("ref.mha" in e.value and "nothing was read" in e.value for e in at.error)


def test_autoseg_bundle_path_outside_the_roots_is_refused(secret: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.button(key="open_sample").click().run()
    at.radio(key="panel").set_value("Auto-segment").run()
    at.selectbox(key="bundle_pick").select("Server path").run()
    at.text_input(key="bundle_path").input(str(secret)).run()
    assert not at.exception
    assert any("outside the data folders" in e.value and str(secret) in e.value
               for e in at.error)
