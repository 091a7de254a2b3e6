"""``medseg predict`` warns (and records it) when a model meets an image of another modality."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg import io
from medseg.cli import main
from tests.engine.fixtures import random_bundle

ROOT = Path(__file__).resolve().parents[2]
MR = ROOT / "data_samples/totalsegmentator/example_mr_sm.nii.gz"
CT = ROOT / "data_samples/totalsegmentator/example_ct_sm.nii.gz"


def test_ct_model_on_mr_warns_writes_the_mask_and_records_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = random_bundle(tmp_path / "ctmodel.safetensors", modality="CT")
    out = tmp_path / "out"
    rc = main(["predict", str(bundle), str(MR), str(CT), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    warnings = [ln for ln in captured.err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and str(MR) in warnings[0]
    assert "made for CT images" in warnings[0] and "not CT" in warnings[0]
    assert "error" not in captured.err
    assert (out / "example_mr_sm.nii.gz").is_file() and (out / "example_ct_sm.nii.gz").is_file()
    record = (out / "example_mr_sm.warning.txt").read_text()
    assert record.strip() == warnings[0].split(": ", 2)[2]
    assert not (out / "example_ct_sm.warning.txt").exists()
    assert io.read(out / "example_mr_sm.nii.gz").shape == io.read(MR).shape
