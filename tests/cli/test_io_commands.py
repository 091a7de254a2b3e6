"""`medseg info` and `medseg convert` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medseg import io
from medseg.cli import main
from tests.conftest import SAMPLES


def test_info_prints_geometry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(SAMPLES / "pyradiomics/brain1_image.nrrd")]) == 0
    out = capsys.readouterr().out
    assert "[256, 256, 25]" in out and "6.5" in out and "orientation" in out


def test_info_json_lists_labels(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(SAMPLES / "totalsegmentator/example_seg.nii.gz"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["volume"]["labels"]["5"] == "liver"
    assert data["volume"]["shape"] == [122, 101, 30]


def test_convert_round_trip_keeps_geometry_and_names(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    src = SAMPLES / "totalsegmentator/example_seg.nii.gz"
    dst = tmp_path / "seg.nrrd"
    assert main(["convert", str(src), str(dst)]) == 0
    assert "41 labels" in capsys.readouterr().out
    a, b = io.read(src), io.read(dst)
    assert b.grid_differences(a) == [] and b.labels == a.labels
    np.testing.assert_array_equal(a.array, b.array)


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("x")
    proc = subprocess.run([sys.executable, "-m", "medseg", "info", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    assert "notes.txt" in proc.stderr


def test_usage_error_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert"]) == 2
