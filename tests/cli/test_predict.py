"""``medseg predict`` end to end through the CLI entry point."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg import io
from medseg.cli import main
from medseg.cli.predict import discover_cases
from medseg.engine.infer import Segmenter
from tests.engine.fixtures import CT, LABELS, random_bundle

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
DICOM = ROOT / "data_samples/dcmqi/ct-3slice"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_bundle(tmp_path_factory.mktemp("m") / "model.safetensors")


def test_predict_file_dicom_folder_and_case_folder(bundle: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cases = tmp_path / "cases"
    cases.mkdir()
    shutil.copy(CT, cases / "a.nii.gz")
    shutil.copy(CT, cases / "b.nii.gz")
    out = tmp_path / "out"
    rc = main(["predict", str(bundle), str(CT), str(DICOM), str(cases), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    written = sorted(p.name for p in out.glob("*.nii.gz"))
    assert written == ["a.nii.gz", "b.nii.gz", "ct-3slice.nii.gz", "example_ct_sm.nii.gz"]
    direct = Segmenter(bundle).predict(io.read(CT))
    for name, src in (("example_ct_sm", CT), ("ct-3slice", DICOM)):
        mask = io.read(out / f"{name}.nii.gz", label=True)
        image = io.read(src)
        assert mask.grid_differences(image, atol_mm=1e-3) == []
        assert mask.labels == LABELS and mask.array.dtype == np.uint8
    np.testing.assert_array_equal(io.read(out / "a.nii.gz", label=True).array, direct.array)


def test_predict_options_and_format(bundle: Path, tmp_path: Path) -> None:
    rc = main(["predict", str(bundle), str(CT), "--out", str(tmp_path), "--format", "nrrd",
               "--largest-component", "--fill-holes", "--min-size", "5", "--invert", "labels"])
    assert rc == 0
    mask = io.read(tmp_path / "example_ct_sm.nrrd", label=True)
    assert mask.shape == (122, 101, 30)


def test_predict_errors(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(tmp_path / "none.safetensors"), str(CT), "--out",
                 str(tmp_path)]) == 2
    assert "model bundle not found" in capsys.readouterr().err
    assert main(["predict", str(bundle), str(tmp_path / "missing.nii.gz"), "--out",
                 str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["predict", str(bundle), str(CT), str(CT), "--out", str(tmp_path)]) == 2
    assert "same case name" in capsys.readouterr().err


def test_discover_cases_subfolders(tmp_path: Path) -> None:
    (tmp_path / "p1").mkdir()
    (tmp_path / "p2").mkdir()
    (tmp_path / "p1/x.dcm").write_bytes(b"")
    (tmp_path / "p2/y.dcm").write_bytes(b"")
    assert [n for n, _ in discover_cases([tmp_path])] == ["p1", "p2"]


def test_torchrun_sharding_writes_every_case_once(bundle: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cases = tmp_path / "cases"
    cases.mkdir()
    for name in ("c1", "c2", "c3"):
        shutil.copy(CT, cases / f"{name}.nii.gz")
    written: list[list[str]] = []
    for rank in (0, 1):  # what two torchrun processes see
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        out = tmp_path / f"out{rank}"
        assert main(["predict", str(bundle), str(cases), "--out", str(out)]) == 0
        written.append(sorted(p.name for p in out.glob("*.nii.gz")))
    assert written == [["c1.nii.gz", "c3.nii.gz"], ["c2.nii.gz"]]
    monkeypatch.setenv("RANK", "2")
    assert main(["predict", str(bundle), str(cases), "--out", str(tmp_path / "x")]) == 2


def test_dicom_seg_for_dicom_inputs(bundle: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["predict", str(bundle), str(DICOM), str(CT), "--out", str(tmp_path),
               "--dicom-seg"])
    assert rc == 0, capsys.readouterr().err
    assert "example_ct_sm.seg.dcm: input is not DICOM" in capsys.readouterr().out
    from medseg.io.dicom_seg import read_dicom_seg

    segs = read_dicom_seg(tmp_path / "ct-3slice.seg.dcm", reference=io.read(DICOM))
    mask = io.read(tmp_path / "ct-3slice.nii.gz", label=True)
    assert len(segs) == len(np.unique(mask.array)) - 1
    for seg in segs:  # every segment equals the NIfTI mask's label of that name
        value = {v: k for k, v in LABELS.items()}[next(iter(seg.labels.values()))]
        np.testing.assert_array_equal(seg.array > 0, mask.array == value)


def test_real_torchrun_two_processes_write_every_case_exactly_once(bundle: Path,
                                                                   tmp_path: Path) -> None:
    """`torchrun --nproc_per_node 2 -m medseg predict ...`: the real launcher and rendezvous."""
    import os
    import subprocess
    import sys

    cases = tmp_path / "cases"
    cases.mkdir()
    for name in ("c1", "c2", "c3", "c4", "c5"):
        shutil.copy(CT, cases / f"{name}.nii.gz")
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", "0", "-m", "medseg", "predict", str(bundle), str(cases),
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    written = sorted(p.name for p in out.glob("*.nii.gz"))
    assert written == [f"c{i}.nii.gz" for i in range(1, 6)]
    # each case was handled by exactly one rank: one "IN -> OUT" line per case over both ranks
    text = proc.stdout + proc.stderr
    done = sorted(ln.split(" -> ")[0].rsplit("/", 1)[-1] for ln in text.splitlines()
                  if " -> " in ln)
    assert done == [f"c{i}.nii.gz" for i in range(1, 6)], text
    counts = sorted(int(ln.split()[1]) for ln in text.splitlines() if ln.startswith("wrote "))
    assert counts == [2, 3], text
