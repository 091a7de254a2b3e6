"""Third-party warnings and log lines never leak out of medseg.io, also with reads in threads,
and the process-wide state (warnings filters, loggers, fd 2) is restored afterwards."""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom import config

from medseg import io
from medseg.io.quiet import native_stderr, one_line, quiet_libraries
from tests.dicom_factory import make_volume, write_series


def noisy_nifti(path: Path) -> Path:
    """A valid sform with pixdim 0: nibabel logs 'pixdim[1,2,3] should be non-zero' on load."""
    img = nib.Nifti1Image(np.ones((3, 4, 5), np.int16), None)
    img.header.set_sform(np.diag([1.0, 2.0, 3.0, 1.0]), code=1)
    img.header["pixdim"][1:4] = 0
    nib.save(img, str(path))
    return path


def test_nibabel_log_and_pydicom_warnings_stay_inside(tmp_path: Path,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    path = noisy_nifti(tmp_path / "n.nii.gz")
    files = write_series(make_volume(), tmp_path / "dcm")
    with config.disable_value_validation():
        ds = pydicom.dcmread(files[0])
        ds.StudyInstanceUID = "1.2.abc"  # not a valid UI: pydicom warns when reading it
        ds.save_as(files[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert io.read(path).spacing == (1.0, 2.0, 3.0)
        assert [s.n_images for s in io.list_series(tmp_path / "dcm")] == [8]
        assert io.read(tmp_path / "dcm").shape[2] == 8
    assert [str(w.message) for w in caught] == []
    assert capfd.readouterr().err == ""


def test_state_is_restored_after_reads_in_threads(tmp_path: Path) -> None:
    path = noisy_nifti(tmp_path / "n.nii.gz")
    filters = list(warnings.filters)
    logger = logging.getLogger("nibabel.global")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                io.read(path)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert warnings.filters == filters and not logger.disabled
    with quiet_libraries():
        assert logger.disabled
    assert not logger.disabled


def test_native_stderr_is_captured_and_fd2_restored(capfd: pytest.CaptureFixture[str]) -> None:
    import os

    with native_stderr() as captured:
        os.write(2, b"ITK says\nsomething\n")
    assert captured == ["ITK says\nsomething\n"]
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_one_line_collapses_and_cuts() -> None:
    assert one_line("a\n  b\tc\r\n") == "a b c"
    assert len(one_line("x" * 1000, 50)) == 50


def test_a_fresh_process_prints_nothing_from_the_libraries(tmp_path: Path) -> None:
    """As the CLI runs: nibabel not imported yet when reading starts (its logger prints to
    stderr by itself); a bad datatype code and a repaired pixdim both log on load."""
    import subprocess
    import sys

    noisy = noisy_nifti(tmp_path / "n.nii")
    bad = tmp_path / "dtype.nii"
    data = bytearray(noisy.read_bytes())
    data[70:72] = (1234).to_bytes(2, "little")  # datatype code nibabel does not know
    bad.write_bytes(bytes(data))
    code = (
        "import sys\n"
        "from medseg import io\n"
        "from medseg.errors import MedsegError\n"
        f"print(io.read({str(noisy)!r}).spacing)\n"
        "try:\n"
        f"    io.read({str(bad)!r})\n"
        "except MedsegError as exc:\n"
        "    print('refused:', exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[2])
    assert proc.stderr == ""
    out = proc.stdout.splitlines()
    assert out[0] == "(1.0, 2.0, 3.0)" and out[1].startswith("refused:") and "dtype.nii" in out[1]
