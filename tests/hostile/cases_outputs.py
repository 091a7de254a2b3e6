"""Output-side faults: read-only folders, a full disk, a parent that is a file, an output that
must be a folder but is a file, names too long; for every command that writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.hostile import craft
from tests.hostile.harness import Case, cases, tmpfs

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "data_samples"
DICOM_CT = SAMPLES / "dcmqi" / "ct-3slice"
SMALL_CT = SAMPLES / "totalsegmentator" / "example_ct_sm.nii.gz"


def dicom_mask(d: Path, names: dict[int, str] | None = None) -> Path:
    """A label map on the grid of the bundled 3-slice DICOM CT (one box per label)."""
    from medseg import io

    ct = io.read(DICOM_CT, label=False)
    names = names or {1: "liver", 2: "spleen"}
    a = np.zeros(ct.shape, dtype=np.uint8)
    for i, v in enumerate(sorted(names)):
        a[100 + 60 * i: 150 + 60 * i, 200:260, :] = v
    out = d / "mask.nii.gz"
    io.write(ct.with_array(a, labels=names), out, reference=ct)
    return out


def eval_pair(d: Path, names: dict[int, str] | None = None) -> tuple[Path, Path]:
    names = names or {1: "liver", 2: "spleen"}
    ref = craft.label_map(d / "ref.nii.gz", names)
    pred_arr = np.zeros(craft.SHAPE, np.uint8)
    for i, v in enumerate(sorted(names)):
        pred_arr[1 + 2 * i: 3 + 2 * i, 3:8, 1:5] = v
    pred = craft.nifti(d / "pred.nii.gz", pred_arr,
                       labels={str(k): v for k, v in names.items()})
    return pred, ref


# ------------------------------------------------------------------ writers under test
# Each returns (argv, output path, extra names a refusal may cite) for an output at ``out``.
Writer = Callable[[Path, Path], tuple[list[str], Path]]


def w_convert(d: Path, out_dir: Path) -> tuple[list[str], Path]:
    out = out_dir / "converted.nii.gz"
    return ["convert", str(SMALL_CT), str(out)], out


def w_convert_nrrd(d: Path, out_dir: Path) -> tuple[list[str], Path]:
    out = out_dir / "converted.nrrd"
    return ["convert", str(SMALL_CT), str(out)], out


def w_evaluate(d: Path, out_dir: Path) -> tuple[list[str], Path]:
    pred, ref = eval_pair(d)
    out = out_dir / "report"
    return ["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out)], out


def w_seg(d: Path, out_dir: Path) -> tuple[list[str], Path]:
    out = out_dir / "mask.seg.dcm"
    return ["export", str(dicom_mask(d)), "--reference", str(DICOM_CT), "--format", "seg",
            "--out", str(out)], out


def w_rtstruct(d: Path, out_dir: Path) -> tuple[list[str], Path]:
    out = out_dir / "rt.dcm"
    return ["export", str(dicom_mask(d)), "--reference", str(DICOM_CT), "--format",
            "rtstruct", "--out", str(out)], out


def w_stl(d: Path, out_dir: Path) -> tuple[list[str], Path]:
    out = out_dir / "meshes"
    return ["export", str(craft.label_map(d / "lm.nii.gz", {1: "liver", 2: "spleen"})),
            "--format", "stl", "--out", str(out)], out


def w_export_nifti(d: Path, out_dir: Path) -> tuple[list[str], Path]:
    out = out_dir / "sel.nii.gz"
    return ["export", str(craft.label_map(d / "lm.nii.gz", {1: "liver", 2: "spleen"})),
            "--format", "nifti", "--label", "liver", "--out", str(out)], out


def w_predict(d: Path, out_dir: Path) -> tuple[list[str], Path]:
    out = out_dir / "pred"
    return ["predict", "default", str(SMALL_CT), "--out", str(out)], out / "example_ct_sm.nii.gz"


def w_prompt(d: Path, out_dir: Path) -> tuple[list[str], Path]:
    out = out_dir / "prompted.nii.gz"
    return ["prompt", str(SMALL_CT), "--box", "15,40,30,80,70", "--out", str(out)], out


WRITERS: dict[str, Writer] = {
    "convert": w_convert, "convert_nrrd": w_convert_nrrd, "evaluate": w_evaluate,
    "export_seg": w_seg, "export_rtstruct": w_rtstruct, "export_stl": w_stl,
    "export_nifti": w_export_nifti, "predict": w_predict, "prompt": w_prompt,
}
FOLDER_OUTPUTS = ("evaluate", "export_stl")


# ------------------------------------------------------------------ faults
def readonly(writer: Writer) -> Callable[[Path], Case]:
    def build(d: Path) -> Case:
        mnt = d / "ro"
        argv, out = writer(d, mnt / "sub")
        return Case(argv, (str(mnt), "ro/sub", "read-only", "Read-only"), outputs=(out,),
                    expect="refuse", mounts=[tmpfs(mnt, "1m", read_only=True)])

    return build


def full_disk(writer: Writer) -> Callable[[Path], Case]:
    def build(d: Path) -> Case:
        mnt = d / "full"
        argv, out = writer(d, mnt)
        return Case(argv, (str(mnt),), outputs=(out,), expect="refuse",
                    contains=("space",), mounts=[tmpfs(mnt, "256k", fill=True)])

    return build


def small_disk(writer: Writer) -> Callable[[Path], Case]:
    """A disk with a little room: the first files fit, a later one does not."""

    def build(d: Path) -> Case:
        mnt = d / "small"
        argv, out = writer(d, mnt)
        return Case(argv, (str(mnt),), outputs=(out,), expect="either",
                    mounts=[tmpfs(mnt, "48k")])

    return build


def parent_is_file(writer: Writer) -> Callable[[Path], Case]:
    def build(d: Path) -> Case:
        blocker = d / "blocker"
        blocker.write_text("a file where a folder should be")
        argv, out = writer(d, blocker)
        return Case(argv, ("blocker",), outputs=(out,), expect="refuse")

    return build


def name_too_long(writer: Writer) -> Callable[[Path], Case]:
    def build(d: Path) -> Case:
        argv, out = writer(d, d / ("n" * 300))
        return Case(argv, ("n" * 40,), outputs=(out,), expect="refuse")

    return build


def out_is_file(writer: Writer) -> Callable[[Path], Case]:
    def build(d: Path) -> Case:
        argv, out = writer(d, d)
        target = out if out.suffix == "" else out.parent
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("I am a file")
        return Case(argv, (target.name,), expect="refuse")

    return build


def out_is_dir(writer: Writer) -> Callable[[Path], Case]:
    def build(d: Path) -> Case:
        argv, out = writer(d, d)
        out.mkdir(parents=True)
        (out / "keep.txt").write_text("keep me")

        def check() -> None:
            raise AssertionError("a folder was replaced by a file")

        return Case(argv, (out.name,), expect="refuse", check=check)

    return build


for _name, _w in WRITERS.items():
    cases("outputs", {f"readonly_{_name}": readonly(_w)}, needs_root=True)
    cases("outputs", {f"parent_is_file_{_name}": parent_is_file(_w),
                      f"name_too_long_{_name}": name_too_long(_w)})
    if _name in FOLDER_OUTPUTS:
        cases("outputs", {f"out_is_file_{_name}": out_is_file(_w)})
    elif _name not in ("predict",):
        cases("outputs", {f"out_is_dir_{_name}": out_is_dir(_w)})
for _name in ("convert", "evaluate", "export_stl", "export_seg", "predict"):
    cases("outputs", {f"full_disk_{_name}": full_disk(WRITERS[_name]),
                      f"small_disk_{_name}": small_disk(WRITERS[_name])}, needs_root=True)


# ------------------------------------------------------------------ all-or-nothing sets
def _report_complete(out: Path) -> Callable[[], None]:
    def check() -> None:
        files = sorted(p.name for p in out.iterdir())
        for f in ("report.json", "report.csv", "report.html", "report.pdf"):
            assert f in files, f"{f} missing from {files}"
        json.loads((out / "report.json").read_text())

    return check


def _meshes_complete(out: Path) -> Callable[[], None]:
    def check() -> None:
        summary = json.loads((out / "summary.json").read_text())
        for item in summary["labels"]:
            assert (out / item["file"]).is_file(), item["file"]

    return check


def many_meshes_small_disk(d: Path) -> Case:
    names = {v: f"structure_{v}" for v in range(1, 61)}
    a = np.zeros((40, 40, 40), np.uint8)
    for v in names:
        i, j = divmod(v - 1, 8)
        a[1 + 5 * i: 4 + 5 * i, 1 + 5 * j: 4 + 5 * j, 5:30] = v
    lm = craft.nifti(d / "many.nii.gz", a, labels={str(k): n for k, n in names.items()})
    mnt = d / "meshdisk"
    out = mnt / "meshes"
    return Case(["export", str(lm), "--format", "stl", "--out", str(out)], (str(mnt), "meshes"),
                outputs=(out,), expect="refuse", mounts=[tmpfs(mnt, "96k")],
                check=_meshes_complete(out))


def report_replaces_old_set(d: Path) -> Case:
    pred, ref = eval_pair(d)
    out = d / "report"
    out.mkdir()
    (out / "report.json").write_text("{\"old\": true}")
    (out / "stale.txt").write_text("from an older run")
    return Case(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out)],
                ("report",), expect="either", check=_report_complete(out))


def report_long_label(d: Path) -> Case:
    pred, ref = eval_pair(d, {1: "L" * 5000, 2: "spleen"})
    out = d / "longrep"
    return Case(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out)],
                ("L" * 30, "label"), outputs=(out,), expect="either",
                check=_report_complete(out))


def stl_long_label(d: Path) -> Case:
    lm = craft.label_map(d / "lm.nii.gz", {1: "M" * 5000, 2: "spleen"})
    out = d / "meshes"
    return Case(["export", str(lm), "--format", "stl", "--out", str(out)], ("M" * 30, "label"),
                outputs=(out,), expect="either", check=_meshes_complete(out))


cases("outputs", {"many_meshes_small_disk": many_meshes_small_disk}, needs_root=True)
cases("outputs", {"report_replaces_old_set": report_replaces_old_set,
                  "report_long_label": report_long_label, "stl_long_label": stl_long_label})


# ------------------------------------------------------------------ batches
def predict_batch_one_bad(d: Path) -> Case:
    """Two inputs, the second unreadable: the first mask is written, the second reported."""
    (d / "in").mkdir()
    good = d / "in" / "good.nii.gz"
    good.write_bytes(SMALL_CT.read_bytes())
    bad = d / "in" / "bad.nii.gz"
    bad.write_bytes(b"garbage")
    out = d / "pred"

    def good_written() -> None:
        assert (out / "good.nii.gz").is_file(), "the good case's mask is missing"
        assert not (out / "bad.nii.gz").exists(), "a mask was written for the bad case"

    return Case(["predict", "default", str(good), str(bad), "--out", str(out)],
                ("bad.nii.gz",), expect="refuse", check_refused=good_written, one_line=False)


def evaluate_cohort_one_bad(d: Path) -> Case:
    """A cohort where one prediction is garbage: the other case's report is complete."""
    for sub in ("p", "r"):
        (d / sub).mkdir()
    names = {"1": "liver", "2": "spleen"}
    for case_id in ("a", "b"):
        craft.label_map(d / "r" / f"{case_id}.nii.gz", {1: "liver", 2: "spleen"})
        a = np.zeros(craft.SHAPE, np.uint8)
        a[1:4, 3:8, 1:5] = 1
        craft.nifti(d / "p" / f"{case_id}.nii.gz", a, labels=names)
    (d / "p" / "a.nii.gz").write_bytes(b"garbage")
    out = d / "cohort"

    def b_reported() -> None:
        reports = list(out.rglob("report.json"))
        assert reports, f"no case report under {out}"

    return Case(["evaluate", "--pred", str(d / "p"), "--ref", str(d / "r"), "--out", str(out)],
                ("a.nii.gz", "a:", "a "), expect="refuse", check_refused=b_reported,
                one_line=False)


cases("batch", {"predict_batch_one_bad": predict_batch_one_bad,
                "evaluate_cohort_one_bad": evaluate_cohort_one_bad})

