"""Hostile label names, model files, configs, prompts and evaluation parameters."""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.hostile import craft
from tests.hostile.cases_outputs import DICOM_CT, SMALL_CT, dicom_mask, eval_pair
from tests.hostile.harness import Case, cases

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "medseg" / "weights"


# ------------------------------------------------------------------ label names
def _seg_names(path: Path) -> list[str]:
    import pydicom

    ds = pydicom.dcmread(path)
    return [str(s.SegmentLabel) for s in ds.SegmentSequence]


def _rt_names(path: Path) -> list[str]:
    import pydicom

    ds = pydicom.dcmread(path)
    return [str(r.ROIName) for r in ds.StructureSetROISequence]


def label_export(fmt: str, names: dict[int, str], expect: str,
                 contains: tuple[str, ...] = ()) -> Callable[[Path], Case]:
    def build(d: Path) -> Case:
        mask = dicom_mask(d, names)
        out = d / ("o.seg.dcm" if fmt == "seg" else "o.rt.dcm" if fmt == "rtstruct" else "o")
        argv = ["export", str(mask), "--format", fmt, "--out", str(out)]
        if fmt in ("seg", "rtstruct"):
            argv += ["--reference", str(DICOM_CT)]
        cited = (*tuple(n[:30] for n in names.values()), "label")

        def check() -> None:
            if fmt == "seg":
                assert _seg_names(out) == list(names.values()), _seg_names(out)
            elif fmt == "rtstruct":
                assert _rt_names(out) == list(names.values()), _rt_names(out)
            else:
                summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
                assert [i["name"] for i in summary["labels"]] == list(names.values())

        return Case(argv, cited, outputs=(out,), expect=expect, contains=contains, check=check)

    return build


UNICODE = {1: "Leber (hépatique)", 2: "肝臓の腫瘍"}
LONG65 = {1: "a" * 65, 2: "spleen"}
NEWLINE = {1: "liver\nDROP TABLE", 2: "spleen"}
NUL = {1: "liv\x00er", 2: "spleen"}
TAB = {1: "liver\tleft", 2: "spleen"}
HUGE = {1: "z" * 5000, 2: "spleen"}
for _fmt in ("seg", "rtstruct"):
    cases("labels", {
        f"{_fmt}_unicode": label_export(_fmt, UNICODE, "accept"),
        f"{_fmt}_65_chars": label_export(_fmt, LONG65, "refuse", ("64",)),
        f"{_fmt}_newline": label_export(_fmt, NEWLINE, "refuse"),
        f"{_fmt}_nul": label_export(_fmt, NUL, "refuse"),
        f"{_fmt}_tab": label_export(_fmt, TAB, "refuse"),
        f"{_fmt}_5000_chars": label_export(_fmt, HUGE, "refuse", ("64",)),
    })
cases("labels", {"stl_unicode": label_export("stl", UNICODE, "accept"),
                 "stl_newline": label_export("stl", NEWLINE, "either")})


def csv_formula(names: dict[int, str]) -> Callable[[Path], Case]:
    def build(d: Path) -> Case:
        pred, ref = eval_pair(d, names)
        out = d / "rep"

        def check() -> None:
            with open(out / "report.csv", encoding="utf-8", newline="") as fh:
                for row in csv.reader(fh):
                    for cell in row:
                        assert cell[:1] not in ("=", "+", "@", "\t", "\r") and not (
                            cell[:1] == "-" and not _is_number(cell)), f"live cell {cell!r}"

        return Case(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out)],
                    (), outputs=(out,), expect="accept", check=check)

    return build


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


cases("labels", {
    "csv_equals": csv_formula({1: '=HYPERLINK("http://x.example","click")', 2: "spleen"}),
    "csv_plus": csv_formula({1: "+1+cmd|' /C calc'!A0", 2: "spleen"}),
    "csv_minus": csv_formula({1: "-2+3", 2: "spleen"}),
    "csv_at": csv_formula({1: "@SUM(1+1)*cmd|' /C calc'!A0", 2: "spleen"}),
    "csv_tab": csv_formula({1: "\t=1+1", 2: "spleen"}),
})


def labels_file(content: str, expect: str = "refuse") -> Callable[[Path], Case]:
    def build(d: Path) -> Case:
        lm = craft.label_map(d / "lm.nii.gz", {1: "liver", 2: "spleen"})
        names = d / "names.json"
        names.write_text(content, encoding="utf-8")
        out = d / "sel.nii.gz"
        return Case(["export", str(lm), "--format", "nifti", "--labels", str(names),
                     "--out", str(out)], ("names.json",), outputs=(out,), expect=expect)

    return build


cases("labels", {
    "labels_json_truncated": labels_file('{"1": "liver",'),
    "labels_json_list": labels_file('["liver", "spleen"]'),
    "labels_json_bad_key": labels_file('{"one": "liver"}'),
    "labels_json_nested": labels_file('{"total": {"1": "liver"}, "mr": {"1": "x"}}'),
    "labels_json_binary": labels_file("\x00\x01\x02\x03"),
})


def export_unknown_label(d: Path) -> Case:
    lm = craft.label_map(d / "lm.nii.gz", {1: "liver", 2: "spleen"})
    out = d / "sel.nii.gz"
    return Case(["export", str(lm), "--format", "nifti", "--label", "pancreas", "--out",
                 str(out)], ("pancreas",), outputs=(out,), expect="refuse")


cases("labels", {"export_unknown_label": export_unknown_label})


# ------------------------------------------------------------------ model files
class _Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _pickle_payload(path: Path, marker: Path) -> Path:
    import torch

    torch.save({"model": {"w": _Payload(marker)}}, path)
    return path


def model_case(command: str, make: Callable[[Path], Path], names: tuple[str, ...],
               marker: bool = False) -> Callable[[Path], Case]:
    def build(d: Path) -> Case:
        model = make(d)
        out = d / "out" / ("p.nii.gz" if command == "prompt" else "pred")
        if command == "prompt":
            argv = ["prompt", str(SMALL_CT), "--box", "15,40,30,80,70", "--model", str(model),
                    "--out", str(out)]
        else:
            argv = ["predict", str(model), str(SMALL_CT), "--out", str(out)]
        mark = d / "PAYLOAD_RAN"

        def not_run() -> None:
            assert not mark.exists(), "the pickle payload ran"

        return Case(argv, names or (model.name,), outputs=(out,), expect="refuse",
                    check_refused=not_run if marker else None)

    return build


def _payload_pth(d: Path) -> Path:
    return _pickle_payload(d / "evil.pth", d / "PAYLOAD_RAN")


def _payload_pt(d: Path) -> Path:
    return _pickle_payload(d / "evil.pt", d / "PAYLOAD_RAN")


def _random_pth(d: Path) -> Path:
    p = d / "noise.pth"
    p.write_bytes(os.urandom(2048))
    return p


def _random_safetensors(d: Path) -> Path:
    p = d / "noise.safetensors"
    p.write_bytes(os.urandom(2048))
    return p


def _truncated_bundle(d: Path) -> Path:
    src = WEIGHTS / "ct_organs_2d.safetensors"
    p = d / "cut.safetensors"
    p.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return p


def _wrong_shapes_bundle(d: Path) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    src = WEIGHTS / "ct_organs_2d.safetensors"
    with safe_open(str(src), framework="pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    first = sorted(k for k in tensors if tensors[k].ndim >= 2)[0]
    tensors[first] = tensors[first][..., :1].contiguous()
    p = d / "wrongshape.safetensors"
    save_file(tensors, str(p), metadata=meta)
    return p


def _bad_network_bundle(d: Path) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    src = WEIGHTS / "ct_organs_2d.safetensors"
    with safe_open(str(src), framework="pt") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    doc = json.loads(meta["medseg"])
    doc["network"]["name"] = "os.system"
    meta["medseg"] = json.dumps(doc)
    p = d / "badnet.safetensors"
    save_file(tensors, str(p), metadata=meta)
    return p


def _lite_copy(d: Path, edit: Callable[[dict[str, object]], None]) -> Path:
    p = d / "mylite.safetensors"
    shutil.copy(WEIGHTS / "lite_sam.safetensors", p)
    doc = json.loads((WEIGHTS / "lite_sam.json").read_text())
    edit(doc)
    (d / "mylite.json").write_text(json.dumps(doc))
    return p


def _lite_bad_builder(d: Path) -> Path:
    return _lite_copy(d, lambda doc: doc.__setitem__("builder", "os:system"))


def _lite_bad_arch(d: Path) -> Path:
    return _lite_copy(d, lambda doc: doc["arch"].__setitem__("embed_dim", 64))  # type: ignore[index]


def _lite_json_missing(d: Path) -> Path:
    p = d / "alone.safetensors"
    shutil.copy(WEIGHTS / "lite_sam.safetensors", p)
    return p


def _nifti_as_model(d: Path) -> Path:
    p = d / "image.nii.gz"
    shutil.copy(SMALL_CT, p)
    return p


def _folder_model(d: Path) -> Path:
    p = d / "amodel"
    p.mkdir()
    (p / "readme.txt").write_text("not a model")
    return p


cases("models", {
    "prompt_pickle_payload_pth": model_case("prompt", _payload_pth, (), marker=True),
    "prompt_pickle_payload_pt": model_case("prompt", _payload_pt, (), marker=True),
    "prompt_random_pth": model_case("prompt", _random_pth, ()),
    "prompt_random_safetensors": model_case("prompt", _random_safetensors, ()),
    "prompt_lite_bad_builder": model_case("prompt", _lite_bad_builder, ("mylite",)),
    "prompt_lite_bad_arch": model_case("prompt", _lite_bad_arch, ("mylite",)),
    "prompt_lite_json_missing": model_case("prompt", _lite_json_missing, ("alone",)),
    "prompt_nifti_as_model": model_case("prompt", _nifti_as_model, ()),
    "predict_random_safetensors": model_case("predict", _random_safetensors, ()),
    "predict_truncated_bundle": model_case("predict", _truncated_bundle, ()),
    "predict_wrong_shapes": model_case("predict", _wrong_shapes_bundle, ()),
    "predict_bad_network": model_case("predict", _bad_network_bundle, ()),
    "predict_pickle_payload": model_case("predict", _payload_pth, (), marker=True),
    "predict_nifti_as_model": model_case("predict", _nifti_as_model, ()),
    "predict_folder_model": model_case("predict", _folder_model, ()),
})


# ------------------------------------------------------------------ configs
def config_case(command: str, text: str | None, overrides: tuple[str, ...] = (),
                name: str = "bad.yaml") -> Callable[[Path], Case]:
    def build(d: Path) -> Case:
        cfg = d / name
        if text is not None:
            cfg.write_text(text, encoding="utf-8")
        argv = [command, "--config", str(cfg)]
        for o in overrides:
            argv += ["--set", o]
        cited = (name, *tuple(o.split("=")[0] for o in overrides))
        return Case(argv, cited, expect="refuse", cwd=d)

    return build


_DEMO = (ROOT / "configs" / "demo.yaml").read_text(encoding="utf-8")
for _cmd in ("train", "finetune"):
    cases("configs", {
        f"{_cmd}_yaml_syntax": config_case(_cmd, "name: [unclosed\n  x: :"),
        f"{_cmd}_yaml_list": config_case(_cmd, "- a\n- b\n"),
        f"{_cmd}_empty": config_case(_cmd, ""),
        f"{_cmd}_missing_file": config_case(_cmd, None, name="nowhere.yaml"),
        f"{_cmd}_binary": config_case(_cmd, "\x00\x01\x02\xff"),
    })
cases("configs", {
    "train_unknown_key": config_case("train", _DEMO + "\nsurprise: 1\n"),
    "train_bad_override_key": config_case("train", _DEMO, ("train.nonsense=3",),
                                          name="demo_copy.yaml"),
    "train_bad_override_value": config_case("train", _DEMO, ("train.epochs=-5",),
                                            name="demo_copy2.yaml"),
    "train_override_syntax": config_case("train", _DEMO, ("novalue",), name="demo_copy3.yaml"),
})


def plan_case(kind: str) -> Callable[[Path], Case]:
    def build(d: Path) -> Case:
        ds = d / "dataset"
        if kind == "empty":
            ds.mkdir()
        elif kind == "file":
            ds.write_text("x")
        elif kind == "bad_json":
            ds.mkdir()
            (ds / "dataset.json").write_text("{oops")
        out = d / "plan.yaml"
        return Case(["plan", str(ds), "--out", str(out)], ("dataset",), outputs=(out,),
                    expect="refuse")

    return build


cases("configs", {f"plan_{k}": plan_case(k) for k in ("empty", "file", "bad_json", "missing")})


# ------------------------------------------------------------------ prompts
def prompt_case(extra: list[str], cited: tuple[str, ...]) -> Callable[[Path], Case]:
    def build(d: Path) -> Case:
        out = d / "p.nii.gz"
        return Case(["prompt", str(SMALL_CT), *extra, "--out", str(out)], cited, outputs=(out,),
                    expect="refuse")

    return build


cases("prompts", {
    "box_outside": prompt_case(["--box", "15,400,30,480,70"], ("box", "outside")),
    "box_empty": prompt_case(["--box", "15,80,30,40,70"], ("box",)),
    "box_nan": prompt_case(["--box", "15,nan,30,80,70"], ("box", "nan")),
    "box_short": prompt_case(["--box", "15,40,30"], ("box",)),
    "box_slice_out_of_range": prompt_case(["--box", "999,40,30,80,70"], ("999", "slice")),
    "box_negative_slice": prompt_case(["--box", "-1,40,30,80,70"], ("-1", "slice", "box")),
    "points_malformed": prompt_case(["--points", "15,40,+"], ("point",)),
    "no_prompt": prompt_case([], ("box", "point")),
    "axis_5": prompt_case(["--box", "15,40,30,80,70", "--axis", "5"], ("axis",)),
    "modality_bogus": prompt_case(["--box", "15,40,30,80,70", "--modality", "XRAY"],
                                  ("modality", "XRAY")),
})


# ------------------------------------------------------------------ evaluation inputs
def eval_case(kind: str) -> Callable[[Path], Case]:
    def build(d: Path) -> Case:
        pred, ref = eval_pair(d)
        out = d / "rep"
        argv = ["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out)]
        cited: tuple[str, ...] = (pred.name, ref.name)
        if kind == "grid_mismatch":
            craft.nifti(pred, np.zeros((5, 5, 5), np.uint8), labels={"1": "liver"})
        elif kind == "tolerance_negative":
            argv += ["--nsd-tolerance", "-1"]
            cited = ("tolerance",)
        elif kind == "tolerance_nan":
            argv += ["--nsd-tolerance", "nan"]
            cited = ("tolerance",)
        elif kind == "pred_missing":
            pred.unlink()
        elif kind == "image_garbage":
            img = d / "img.nii.gz"
            img.write_bytes(b"garbage")
            argv += ["--image", str(img)]
            cited = ("img.nii.gz",)
        elif kind == "pred_is_image":
            craft.nifti(pred, craft.arr(np.float32) / 3.0)
        return Case(argv, cited, outputs=(out,), expect="refuse")

    return build


cases("evaluate", {f"eval_{k}": eval_case(k) for k in (
    "grid_mismatch", "tolerance_negative", "tolerance_nan", "pred_missing", "image_garbage",
    "pred_is_image")})
