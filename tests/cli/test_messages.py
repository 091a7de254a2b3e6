"""One line, always: label names a format cannot hold, library warnings, multi-line library
errors (torch, load_state_dict, model JSON) through the real ``medseg`` command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest
import torch
from safetensors.torch import load_file, save_file

from medseg import io
from medseg.cli import one_line, os_error_line
from tests.cli.clirun import accepted, listing, medseg, refused
from tests.conftest import SAMPLES
from tests.engine.fixtures import random_bundle

DCMQI = SAMPLES / "dcmqi"
CT = SAMPLES / "totalsegmentator" / "example_ct_sm.nii.gz"
WEIGHTS = Path(__file__).resolve().parents[2] / "medseg" / "weights"


def _liver(tmp_path: Path, name: str) -> Path:
    """dcmqi's liver mask (on the ct-3slice grid) under ``name``, with an empty label 2."""
    mask = io.read(DCMQI / "liver_seg.nrrd", label=True)
    return io.write(mask.with_array(mask.array, labels={1: name, 2: "empty"}),
                    tmp_path / "mask.nii.gz")


def test_a_name_too_long_for_a_seg_is_refused_or_shortened_on_request(tmp_path: Path) -> None:
    mask, out = _liver(tmp_path, "L" * 5000), tmp_path / "out" / "seg.dcm"
    args = ["export", mask, "-r", DCMQI / "ct-3slice", "-f", "seg", "-l", "1", "-o", out]
    msg = refused(medseg(*args), "label 1")
    assert "64 bytes" in msg and "--shorten-labels" in msg and len(msg) < 700
    assert listing(tmp_path / "out") == []
    run = medseg(*args, "--shorten-labels", "--json")
    accepted(run)
    summary = json.loads(run.out)
    written = summary["renamed_labels"][0]["written_as"]
    assert summary["renamed_labels"][0]["name"] == "L" * 5000 and len(written) == 64
    assert pydicom.dcmread(out).SegmentSequence[0].SegmentLabel == written


def test_control_characters_in_an_roi_name_are_refused(tmp_path: Path) -> None:
    mask = _liver(tmp_path, "liver\nspleen\x00")
    msg = refused(medseg("export", mask, "-r", DCMQI / "ct-3slice", "-f", "rtstruct", "-l", "1",
                         "-o", tmp_path / "rt.dcm"), "label 1")
    assert "U+000A (line feed)" in msg and "liver\\nspleen" in msg
    assert not (tmp_path / "rt.dcm").exists()


def test_unicode_names_and_no_warning_line(tmp_path: Path) -> None:
    """Label 2 is empty: medseg's own "skipping empty segment" warning must not print; the
    summary says it instead."""
    mask, out = _liver(tmp_path, "Leber – 肝臓"), tmp_path / "seg.dcm"
    run = medseg("export", mask, "-r", DCMQI / "ct-3slice", "-f", "seg", "-l", "1", "-l", "2",
                 "-o", out)
    accepted(run)
    assert "skipped (empty): empty" in run.out
    ds = pydicom.dcmread(out)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["Leber – 肝臓"]


def test_a_pickled_checkpoint_for_prompt_is_one_line(tmp_path: Path) -> None:
    pickled = tmp_path / "model.pth"
    torch.save({"net": torch.nn.Linear(2, 2)}, pickled)
    msg = refused(medseg("prompt", CT, "--box", "15,40,30,80,70", "--model", pickled,
                         "--out", tmp_path / "p.nii.gz"), str(pickled))
    assert "pickled Python objects" in msg
    assert not (tmp_path / "p.nii.gz").exists()


def test_a_bundle_with_wrong_tensor_shapes_is_one_line(tmp_path: Path) -> None:
    good = random_bundle(tmp_path / "good.safetensors")
    state = load_file(str(good))
    key = next(k for k, v in state.items() if v.ndim > 1)
    state[key] = torch.zeros(*(s + 1 for s in state[key].shape))
    bad = tmp_path / "bad.safetensors"
    from safetensors import safe_open

    with safe_open(str(good), framework="pt") as fh:
        meta = fh.metadata()
    save_file(state, str(bad), metadata=meta)
    msg = refused(medseg("predict", bad, CT, "--out", tmp_path / "out"), str(bad))
    assert "wrong shape" in msg and key in msg
    assert listing(tmp_path / "out") == []


@pytest.mark.parametrize(("builder", "says"), [
    ("os:system", "must be 'medseg.models.<module>:<function>'"),
    ("medseg.models.nope:build", "does not exist in this medseg"),
    ("medseg.models.lite_sam:build_lite_sam", "does not accept its 'arch' settings"),
])
def test_a_bad_builder_in_a_model_json_names_the_file(tmp_path: Path, builder: str,
                                                      says: str) -> None:
    doc = json.loads((WEIGHTS / "lite_sam.json").read_text())
    doc["builder"] = builder
    doc["arch"] = {**doc.get("arch", {}), "no_such_setting": 1}
    meta = tmp_path / "mine.json"
    meta.write_text(json.dumps(doc))
    shutil.copy(WEIGHTS / "lite_sam.safetensors", tmp_path / "mine.safetensors")
    msg = refused(medseg("prompt", CT, "--box", "15,40,30,80,70", "--model",
                         tmp_path / "mine.safetensors", "--out", tmp_path / "p.nii.gz"),
                  str(meta))
    assert says in msg


def test_last_resort_lines() -> None:
    assert one_line("first\n  second\tthird") == "first second third"
    try:
        open("/nonexistent-medseg-dir/x.txt", "rb")  # noqa: SIM115
    except OSError as exc:
        line = os_error_line(exc)
    assert line.startswith("/nonexistent-medseg-dir/x.txt: No such file or directory.")


def test_algorithm_and_prompt_label_names_are_checked(tmp_path: Path) -> None:
    msg = refused(medseg("export", DCMQI / "liver_seg.nrrd", "-r", DCMQI / "ct-3slice", "-f",
                         "seg", "-o", tmp_path / "s.dcm", "--model-name", "a\\b"), "a\\\\b")
    assert "backslash" in msg and "--model-name" in msg
    msg = refused(medseg("prompt", CT, "--box", "15,40,30,80,70", "--label-name", "a\nb",
                         "--out", tmp_path / "p.nii.gz"), "label 1")
    assert "--label-name" in msg
    assert listing(tmp_path) == []


def test_an_empty_box_and_a_grid_mismatch_name_their_input(tmp_path: Path) -> None:
    msg = refused(medseg("prompt", CT, "--box", "15,80,30,40,70", "--out",
                         tmp_path / "p.nii.gz"), "--box '15,80,30,40,70'")
    assert "empty" in msg
    ref = io.read(DCMQI / "liver_seg.nrrd", label=True)
    io.write(ref, tmp_path / "ref.nii.gz")
    msg = refused(medseg("evaluate", "--pred", SAMPLES / "totalsegmentator" / "example_seg.nii.gz",
                         "--ref", tmp_path / "ref.nii.gz", "--out", tmp_path / "rep"),
                  "example_seg.nii.gz vs reference")
    assert str(tmp_path / "ref.nii.gz") in msg and "--resample-to ref" in msg
    assert listing(tmp_path) == ["ref.labels.json", "ref.nii.gz"]


def test_ctrl_c_is_one_line_and_leaves_only_complete_cases(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    from medseg.cli import INTERRUPTED, main
    from medseg.engine.infer import Segmenter

    for n in range(4):
        shutil.copy(CT, tmp_path / f"c{n}.nii.gz")
    out = tmp_path / "out"
    calls: list[int] = []
    predict = Segmenter.predict

    def ctrl_c_in_the_second_case(self: Segmenter, *args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:  # a real SIGINT, at a known point (a timer raced the cases)
            os.kill(os.getpid(), signal.SIGINT)
        return predict(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Segmenter, "predict", ctrl_c_in_the_second_case)
    # Python's own Ctrl-C handler, as in a shell, whatever earlier tests left installed
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        rc = main(["predict", "default", str(tmp_path), "--out", str(out)])
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == INTERRUPTED and err == [
        "error: interrupted; outputs that were not finished were not written."], (rc, err)
    masks = sorted(p.name for p in out.glob("*.nii.gz")) if out.is_dir() else []
    assert len(masks) == 1  # the first case, whole; the second was interrupted
    for name in masks:  # every case on disk is whole: mask and sidecar, readable
        stem = name.removesuffix(".nii.gz")
        assert (out / f"{stem}.labels.json").is_file()
        assert io.read(out / name, label=True).shape == io.read(CT).shape
    assert listing(out) == sorted([*masks, *(m.replace(".nii.gz", ".labels.json")
                                             for m in masks)])
