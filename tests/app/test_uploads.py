"""Uploads: every uploader honours MEDSEG_MAX_UPLOAD_MB before reading, and stores in chunks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from streamlit.proto.Common_pb2 import FileURLs
from streamlit.runtime.uploaded_file_manager import UploadedFile, UploadedFileRec
from streamlit.testing.v1 import AppTest

from app.uploads import CHUNK, store_upload
from medseg.errors import UploadTooLargeError
from tests.conftest import ROOT

APP = str(ROOT / "app" / "main.py")
TWO_MB = 2 * 2**20
LIMIT = "over the upload limit of 1 MB"


class SpyUpload(UploadedFile):
    """Streamlit's own UploadedFile, recording how the app reads it."""

    def __init__(self, name: str, data: bytes, declared: int | None = None) -> None:
        super().__init__(UploadedFileRec("id-1", name, "application/octet-stream", data),
                         FileURLs())
        if declared is not None:
            self.size = declared
        self.reads: list[int] = []
        self.getvalue_calls = 0

    def read(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        out = super().read(size)
        self.reads.append(len(out))
        return out

    def getvalue(self) -> bytes:
        self.getvalue_calls += 1
        return super().getvalue()


def _stored_files(area: Path) -> list[Path]:
    return [p for p in area.rglob("*") if p.is_file()] if area.exists() else []


def test_store_upload_streams_in_chunks_and_hashes_on_the_way(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 255, 3 * CHUNK + 123, np.uint8).tobytes()
    up = SpyUpload("../scan 1.nii.gz", data)
    stored = store_upload(up, up.name, up.size, tmp_path, max_mb=10)
    assert up.getvalue_calls == 0 and max(up.reads) == CHUNK and sum(up.reads) == len(data)
    assert stored.digest == hashlib.sha256(data).hexdigest() and stored.size == len(data)
    assert stored.path == tmp_path / stored.digest[:16] / "scan_1.nii.gz"
    assert stored.path.read_bytes() == data
    again = store_upload(SpyUpload("other.nii.gz", data), "other.nii.gz", len(data), tmp_path,
                         max_mb=10)  # same bytes, same folder
    assert again.path.parent == stored.path.parent
    assert _stored_files(tmp_path / ".incoming") == []


def test_declared_size_is_checked_before_reading(tmp_path: Path) -> None:
    up = SpyUpload("big.mha", b"\0" * TWO_MB)
    with pytest.raises(UploadTooLargeError, match=LIMIT):
        store_upload(up, up.name, up.size, tmp_path, max_mb=1)
    assert up.reads == [] and _stored_files(tmp_path) == []


def test_a_lying_declared_size_stops_at_the_limit_and_keeps_nothing(tmp_path: Path) -> None:
    up = SpyUpload("liar.mha", b"\0" * TWO_MB, declared=10)
    with pytest.raises(UploadTooLargeError, match="upload limit of 1 MB"):
        store_upload(up, up.name, up.size, tmp_path, max_mb=1)
    assert sum(up.reads) <= 2**20 + CHUNK and _stored_files(tmp_path) == []


def _app(monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("MEDSEG_MAX_UPLOAD_MB", "1")
    return AppTest.from_file(APP, default_timeout=120).run()


def test_image_upload_over_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                app_workspace: Path) -> None:
    from streamlit import config

    at = _app(monkeypatch)
    assert config.get_option("server.maxUploadSize") == 1  # Streamlit's own cap follows
    at.sidebar.radio(key="source").set_value("Upload").run()
    at.sidebar.file_uploader(key="upload").set_value(
        ("big.nii.gz", b"\0" * TWO_MB, "application/gzip")).run()
    assert not at.exception and "case" not in at.session_state
    assert LIMIT in at.sidebar.error[0].value and "big.nii.gz" in at.sidebar.error[0].value
    assert _stored_files(app_workspace / "uploads") == []


def _open_sample(at: AppTest) -> AppTest:
    at.sidebar.selectbox(key="sample").select("CT abdomen, NIfTI 3 mm").run()
    at.sidebar.button(key="open_sample").click().run()
    assert not at.exception and "case" in at.session_state
    return at


def test_reference_mask_upload_over_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                         app_workspace: Path) -> None:
    at = _open_sample(_app(monkeypatch))
    at.radio(key="panel").set_value("Compare").run()
    at.radio(key="ref_pick").set_value("Upload").run()
    at.file_uploader(key="ref_upload").set_value(
        ("ref.nii.gz", b"\0" * TWO_MB, "application/gzip")).run()
    assert not at.exception
    assert any(LIMIT in e.value and "ref.nii.gz" in e.value for e in at.error)
    assert _stored_files(app_workspace / "references") == []


def test_bundle_upload_over_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                 app_workspace: Path) -> None:
    at = _open_sample(_app(monkeypatch))
    at.radio(key="panel").set_value("Auto-segment").run()
    at.selectbox(key="bundle_pick").select("Upload a bundle").run()
    at.file_uploader(key="bundle_upload").set_value(
        ("model.safetensors", b"\0" * TWO_MB, "application/octet-stream")).run()
    assert not at.exception
    assert any(LIMIT in e.value and "model.safetensors" in e.value for e in at.error)
    assert _stored_files(app_workspace / "models") == []


def test_bundle_upload_under_the_limit_is_stored_by_content(monkeypatch: pytest.MonkeyPatch,
                                                            app_workspace: Path,
                                                            tmp_path: Path) -> None:
    from tests.engine.fixtures import random_bundle

    bundle = random_bundle(tmp_path / "tiny.safetensors")
    data = bundle.read_bytes()
    monkeypatch.setenv("MEDSEG_MAX_UPLOAD_MB", str(len(data) // 2**20 + 2))
    at = _open_sample(AppTest.from_file(APP, default_timeout=180).run())
    at.radio(key="panel").set_value("Auto-segment").run()
    at.selectbox(key="bundle_pick").select("Upload a bundle").run()
    at.file_uploader(key="bundle_upload").set_value(
        ("tiny.safetensors", data, "application/octet-stream")).run()
    at.button(key="run_autoseg").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    digest = hashlib.sha256(data).hexdigest()
    (stored,) = _stored_files(app_workspace / "models")
    assert stored == app_workspace / "models" / digest[:16] / "tiny.safetensors"
    assert "Auto-segmentation with tiny.safetensors" in at.success[0].value
