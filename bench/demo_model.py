"""The shipped default CT-organ model: leave-one-patient-out evaluation and the shipped weights.

Data: the two real CTs in data_samples/totalsegmentator (Apache-2.0) with TotalSegmentator's
labels (model predictions, used as pseudo ground truth):

* patient A: example_ct.nii.gz, 122x101x112 @ 3 mm (chest + abdomen), labels
  example_seg_fast_force_split.nii.gz;
* patient B: the 20-slice JPEG 2000 DICOM series example_ct_dicom (512x512 @ 0.98 mm, 2 mm
  slices, upper abdomen), labels example_seg_dicom.nii.gz (stored LAS: conformed to the series
  grid, no resampling). B's slab holds spleen and liver, no kidney.

Stages (``--stage all`` runs them in order):

* ``prepare``: writes runs/demo_data/ (B as NIfTI, its labels on its grid) and one Decathlon
  dataset.json per training set: ``a``, ``b``, ``ab``;
* ``train``: configs/demo.yaml unchanged except ``data.root`` and ``train.output_dir``, on A alone,
  on B alone and on both (the shipped model, runs/demo_ab);
* ``eval``: the A-model on B and the B-model on A (organs the other patient has: spleen, liver),
  with ``Segmenter`` on the stored grid; the shipped model on both (its training data: not a
  held-out figure); baseline in the same run: a HU-window threshold (liver/spleen soft tissue
  40-200 HU inside the body, largest component), which marks soft tissue, not an organ.

Writes bench/results/demo_model.{json,md}. Ship with
``cp runs/demo_ab/best.safetensors medseg/weights/ct_organs_2d.safetensors``.

    .venv/bin/python bench/demo_model.py --stage all
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from medseg.demo import TRAINING_SETS as FOLDS

ROOT = Path(__file__).resolve().parents[1]
TS = ROOT / "data_samples/totalsegmentator"
DATA = ROOT / "runs/demo_data"
CONFIG = ROOT / "configs/demo.yaml"
RESULTS = ROOT / "bench/results"
#: demo label value -> TotalSegmentator file value
TS_VALUE = {1: 1, 2: 2, 3: 3, 4: 5}


def prepare() -> None:
    """runs/demo_data: patient B as NIfTI and the dataset files (medseg.demo does it)."""
    from medseg.demo import prepare_training_data

    prepare_training_data(DATA)


def _overrides(fold: str) -> list[str]:
    return [f"data.root=runs/demo_data/dataset_{fold}.json", f"train.output_dir=runs/demo_{fold}"]


def train_folds(folds: list[str]) -> dict[str, Any]:
    from medseg.config import load_config
    from medseg.engine.train import train

    out = {}
    for fold in folds:
        cfg = load_config(CONFIG, _overrides(fold))
        t0 = time.perf_counter()
        train(cfg, progress=False)
        out[fold] = {"train_s": round(time.perf_counter() - t0, 1), "overrides": _overrides(fold)}
        print(fold, out[fold], flush=True)
    return out


def _case(name: str) -> tuple[Any, Any]:
    from medseg import io

    if name == "a":
        return (io.read(TS / "example_ct.nii.gz"),
                io.read(TS / "example_seg_fast_force_split.nii.gz", label=True))
    image = io.read(TS / "example_ct_dicom")
    return image, io.read(TS / "example_seg_dicom.nii.gz", label=True).conform_to(image)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum() + b.sum())
    return round(float(2 * (a & b).sum() / s), 4) if s else float("nan")


def _baseline(image: Any) -> np.ndarray:
    """Soft-tissue HU window (40-200) inside the body, largest connected component."""
    from scipy import ndimage

    body = ndimage.binary_fill_holes(image.array > -300)
    tissue = (image.array >= 40) & (image.array <= 200) & body
    lab, n = ndimage.label(tissue)
    if n == 0:
        return tissue
    sizes = np.bincount(lab.ravel())[1:]
    return lab == (1 + int(np.argmax(sizes)))


def score(bundle: Path, case: str) -> dict[str, Any]:
    from medseg.engine.infer import Segmenter

    image, ref = _case(case)
    seg = Segmenter(bundle, device="cpu")
    t0 = time.perf_counter()
    pred = seg.predict(image)
    secs = time.perf_counter() - t0
    assert not isinstance(pred, tuple)
    base = _baseline(image)
    dice, base_dice = {}, {}
    for value, name in seg.labels.items():
        truth = ref.array == TS_VALUE[value]
        if truth.sum() == 0:
            continue
        dice[name] = _dice(pred.array == value, truth)
        if name in ("liver", "spleen"):
            base_dice[name] = _dice(base, truth)
    return {"dice": dice, "baseline_dice": base_dice, "predict_s": round(secs, 2)}


def evaluate() -> dict[str, Any]:
    runs = {f: ROOT / f"runs/demo_{f}/best.safetensors" for f in FOLDS}
    held_out = {"a_on_b": score(runs["a"], "b"), "b_on_a": score(runs["b"], "a")}
    shipped = {"ab_on_a": score(runs["ab"], "a"), "ab_on_b": score(runs["ab"], "b")}
    return {"held_out": held_out, "shipped_on_training_cases": shipped,
            "bundle_bytes": runs["ab"].stat().st_size}


def write_results(res: dict[str, Any]) -> None:
    from medseg.io.atomic import write_text_atomic

    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text_atomic(RESULTS / "demo_model.json", json.dumps(res, indent=1) + "\n")
    ev = res["evaluation"]
    rows = []
    for key, title in (("a_on_b", "A-model on B (held out)"),
                       ("b_on_a", "B-model on A (held out)")):
        r = ev["held_out"][key]
        for organ, d in r["dice"].items():
            if key == "b_on_a" and organ.startswith("kidney"):
                rows.append(f"| {title} | {organ} | {d:.3f} (B's slab has no kidney to learn) "
                            "| |")
                continue
            rows.append(f"| {title} | {organ} | {d:.3f} | {r['baseline_dice'].get(organ, '')} |")
    for key, title in (("ab_on_a", "shipped (A+B) on A"), ("ab_on_b", "shipped (A+B) on B")):
        r = ev["shipped_on_training_cases"][key]
        for organ, d in r["dice"].items():
            rows.append(f"| {title} (training case) | {organ} | {d:.3f} | |")
    train = res.get("training", {})
    md = ("# Default CT-organ model (configs/demo.yaml): leave-one-patient-out\n\n"
          "`.venv/bin/python bench/demo_model.py --stage all`. Two real CTs (TotalSegmentator "
          "samples, Apache-2.0; labels are TotalSegmentator predictions): A = example_ct "
          "(3 mm, chest + abdomen), B = the 20-slice DICOM series (upper abdomen, no kidney). "
          "Same config on A alone, B alone, and both (the shipped model). Baseline: soft-tissue "
          "HU window 40-200 inside the body, largest component.\n\n"
          "| model | organ | Dice | baseline Dice |\n|---|---|---|---|\n" + "\n".join(rows)
          + f"\n\nShipped bundle: {ev['bundle_bytes'] / 1e6:.2f} MB. Training time (s): "
          + ", ".join(f"{k}: {v['train_s']}" for k, v in train.items()) + ".\n")
    write_text_atomic(RESULTS / "demo_model.md", md)
    print(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=("all", "prepare", "train", "eval"), default="all")
    ap.add_argument("--folds", nargs="+", default=list(FOLDS))
    args = ap.parse_args()
    res: dict[str, Any] = {}
    prev = RESULTS / "demo_model.json"
    if prev.exists():
        res = json.loads(prev.read_text())
    if args.stage in ("all", "prepare"):
        prepare()
    if args.stage in ("all", "train"):
        res["training"] = {**res.get("training", {}), **train_folds(args.folds)}
        RESULTS.mkdir(parents=True, exist_ok=True)
        prev.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    if args.stage in ("all", "eval"):
        res["evaluation"] = evaluate()
        write_results(res)


if __name__ == "__main__":
    main()
