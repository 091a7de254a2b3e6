"""Output-side faults through the real ``medseg`` command: read-only folders, a full disk, a
parent that is a file, a folder where a file is wanted (and back), names too long, batches.
Every refusal is one line naming the path (exit 2, no traceback) and leaves nothing behind."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from medseg import io
from tests.cli.clirun import accepted, listing, medseg, refused
from tests.conftest import SAMPLES
from tests.engine.fixtures import random_bundle
from tests.report.conftest import synthetic_pair

CT = SAMPLES / "totalsegmentator" / "example_ct_sm.nii.gz"
SEG = SAMPLES / "totalsegmentator" / "example_seg.nii.gz"
DCMQI = SAMPLES / "dcmqi"

Args = Callable[[Path, Path], list[object]]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prediction/reference pair and a model bundle, made once."""
    d = tmp_path_factory.mktemp("inputs")
    pred, ref = synthetic_pair()
    io.write(pred, d / "pred.nii.gz")
    io.write(ref, d / "ref.nii.gz")
    random_bundle(d / "model.safetensors")
    return d


WRITERS: dict[str, Args] = {
    "convert": lambda i, o: ["convert", CT, o / "ct.nii.gz"],
    "evaluate": lambda i, o: ["evaluate", "--pred", i / "pred.nii.gz", "--ref",
                              i / "ref.nii.gz", "--out", o / "report"],
    "export_seg": lambda i, o: ["export", DCMQI / "liver_seg.nrrd", "-r", DCMQI / "ct-3slice",
                                "-f", "seg", "-o", o / "liver.dcm"],
    "export_rtstruct": lambda i, o: ["export", DCMQI / "liver_seg.nrrd", "-r",
                                     DCMQI / "ct-3slice", "-f", "rtstruct", "-o", o / "rt.dcm"],
    "export_stl": lambda i, o: ["export", SEG, "-f", "stl", "-l", "spleen", "-o", o / "m"],
    "predict": lambda i, o: ["predict", i / "model.safetensors", CT, "--out", o / "pred"],
    "prompt": lambda i, o: ["prompt", CT, "--box", "15,40,30,80,70", "--out", o / "p.nii.gz"],
}


@pytest.mark.parametrize("command", list(WRITERS))
def test_read_only_output_folder(command: str, inputs: Path, readonly_dir: Path) -> None:
    out = readonly_dir / "sub"
    msg = refused(medseg(*WRITERS[command](inputs, out)), str(out))
    assert "read-only" in msg or "permission denied" in msg
    assert listing(readonly_dir) == []


@pytest.mark.parametrize("command", ["convert", "evaluate", "export_stl", "predict"])
def test_full_disk(command: str, inputs: Path, full_fs: Path) -> None:
    before = listing(full_fs)
    msg = refused(medseg(*WRITERS[command](inputs, full_fs)), str(full_fs))
    assert "disk is full" in msg
    assert listing(full_fs) == before


@pytest.mark.parametrize("command", ["convert", "evaluate", "export_seg", "export_stl",
                                     "prompt"])
def test_parent_is_a_file(command: str, inputs: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    msg = refused(medseg(*WRITERS[command](inputs, blocker)), f"{blocker} is a file")
    assert "choose another output path" in msg
    assert listing(tmp_path) == ["blocker"]


def test_an_output_folder_that_is_a_file(inputs: Path, tmp_path: Path) -> None:
    target = tmp_path / "report"
    target.write_text("I am a file")
    refused(medseg("evaluate", "--pred", inputs / "pred.nii.gz", "--ref", inputs / "ref.nii.gz",
                   "--out", target), f"{target}: this is a file, but a folder is needed")
    refused(medseg("export", SEG, "-f", "stl", "-l", "spleen", "-o", target),
            "a folder is needed")
    assert target.read_text() == "I am a file" and listing(tmp_path) == ["report"]
    folder = tmp_path / "ct.nii.gz"
    folder.mkdir()
    refused(medseg("convert", CT, folder), "a file name is needed")
    assert listing(folder) == []


def test_names_too_long(tmp_path: Path) -> None:
    long_out = tmp_path / ("n" * 300 + ".nii.gz")
    msg = refused(medseg("convert", CT, long_out), "n" * 40)
    assert "255" in msg
    mask = io.read(SEG, label=True)
    names = {v: ("M" * 5000 if v == 1 else n) for v, n in (mask.labels or {}).items()}
    io.write(mask.with_array(mask.array, labels=names), tmp_path / "long.nii.gz")
    accepted(medseg("export", tmp_path / "long.nii.gz", "-f", "stl", "-l", "1", "-l", "5",
                    "-o", tmp_path / "m"))
    files = listing(tmp_path / "m")
    assert len(files) == 3 and all(len(f) < 60 for f in files)


def test_predict_batch_goes_on_and_says_what_was_written(inputs: Path, tmp_path: Path) -> None:
    shutil.copy(CT, tmp_path / "good.nii.gz")
    (tmp_path / "bad.nii.gz").write_bytes(b"garbage")
    out = tmp_path / "pred"
    run = medseg("predict", inputs / "model.safetensors", tmp_path / "bad.nii.gz",
                 tmp_path / "good.nii.gz", "--out", out)
    msg = refused(run, "bad.nii.gz")
    assert "1 of 2 cases failed" in msg and "good.nii.gz" in msg
    lines = run.out.splitlines()
    assert any(ln.startswith(f"failed: {tmp_path / 'bad.nii.gz'}") for ln in lines), run.out
    assert any(f"good.nii.gz -> {out / 'good.nii.gz'}" in ln for ln in lines), run.out
    assert listing(out) == ["good.labels.json", "good.nii.gz"]


def test_cohort_goes_on_and_says_what_was_written(tmp_path: Path) -> None:
    for case in ("a", "b"):
        pred, ref = synthetic_pair()
        io.write(pred, tmp_path / "p" / f"{case}.nii.gz")
        io.write(ref, tmp_path / "r" / f"{case}.nii.gz")
    (tmp_path / "p" / "a.nii.gz").write_bytes(b"garbage")
    out = tmp_path / "cohort"
    run = medseg("evaluate", "--pred", tmp_path / "p", "--ref", tmp_path / "r", "--out", out)
    msg = refused(run, "a.nii.gz")
    assert "1 of 2 cases failed" in msg and str(out) in msg
    assert "failed: a: " in run.out and f"b: wrote {out / 'cases' / 'b'}" in run.out
    assert np.isin(["cases/b/report.pdf", "index.html", "cohort.json"], listing(out)).all()
    assert not any(p.startswith("cases/a") for p in listing(out))


def test_evaluate_with_a_5000_character_and_a_formula_label(tmp_path: Path) -> None:
    import csv
    import dataclasses
    import json

    names = {1: "L" * 5000, 2: "=HYPERLINK(\"http://evil.example\")"}
    pred, ref = (dataclasses.replace(v, labels=names) for v in synthetic_pair())
    io.write(pred, tmp_path / "pred.nii.gz")
    io.write(ref, tmp_path / "ref.nii.gz")
    out = tmp_path / "report"
    accepted(medseg("evaluate", "--pred", tmp_path / "pred.nii.gz", "--ref",
                    tmp_path / "ref.nii.gz", "--out", out))
    assert listing(out) == ["report.csv", "report.html", "report.json", "report.pdf"]
    assert [m["name"] for m in json.loads((out / "report.json").read_text())["labels"]] == [
        names[1], names[2]]
    with open(out / "report.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["name"] for r in rows] == [names[1], "'" + names[2]]
