"""Model selection for the BRATS benchmark by leave-one-case-out cross-validation on the four
train + validation cases only; the two test cases are not read here.

Candidates (fixed in this file before any run; each is configs/brats_wt.yaml plus overrides):

* ``base``: the config as it is (60 epochs of 25 iterations, 48^3 patches);
* ``long``: 200 epochs. On an idle 2-core CPU an epoch takes about 3.5 s, so the 45-minute
  budget allows far more than 60 epochs; does longer training generalise better or overfit?
* ``ctx64``: 64^3 training patches (the inference window's size) instead of 48^3: more context
  per patch. Added after the first two candidates had run and the test cases had been scored
  once with the CV's choice (base); it is chosen, or not, by the same CV numbers only.

For each candidate and each fold (train on 3 cases, predict the 4th at its native 1 mm grid with
the benchmark's flip TTA), the whole-tumour Dice with no post-processing and with the largest
connected component. The candidate x post-processing pair with the best mean held-out Dice is
written to bench/results/brats_cv.json; bench/brats_unet.py then trains it on all four cases and
scores the test cases once.

    .venv/bin/python bench/brats_cv.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import brats_unet as bu  # the benchmark's data and scoring helpers

CANDIDATES: dict[str, list[str]] = {"base": [], "long": ["train.epochs=200"],
                                    "ctx64": ["train.patch_size=[64,64,64]"]}
RESULTS = bu.RESULTS / "brats_cv.json"


def fold_dataset(held_out: Path) -> Path:
    """dataset.json of the train + validation cases without ``held_out``."""
    training = [{"image": [str(d / c) for c in bu.CHANNELS],
                 "label": str(d / "OTMultiClass.nii.gz")}
                for s in bu.TRAIN_SPLITS for d in bu.case_dirs(s) if d != held_out]
    doc = {"name": f"brats_wt_cv_{held_out.name}", "modality": {"0": "FLAIR", "1": "T1c"},
           "labels": {"0": "background", "1": "necrosis", "2": "edema",
                      "3": "non_enhancing", "4": "enhancing"}, "training": training}
    path = bu.CACHE / "cv" / f"dataset_{held_out.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


def run_fold(name: str, overrides: list[str], held_out: Path) -> dict[str, Any]:
    from medseg.config import load_config
    from medseg.engine.infer import Segmenter
    from medseg.engine.train import train

    out_dir = bu.CACHE / "cv" / f"{name}_{held_out.name}"
    cfg = load_config(bu.CONFIG, [*overrides, f"data.root={fold_dataset(held_out)}",
                                  f"train.output_dir={out_dir}"])
    t0 = time.perf_counter()
    result = train(cfg, resume=False, progress=False)
    secs = time.perf_counter() - t0
    masks, ref, _ = bu._predict_variants(Segmenter(result.last_bundle, device="cpu"), held_out)
    dice = {k: bu._scores(m, ref.array > 0, ref.spacing)["dice"] for k, m in masks.items()}
    return {"train_s": round(secs, 1), "dice": dice}


def main() -> None:
    os.chdir(bu.ROOT)
    cases = [d for s in bu.TRAIN_SPLITS for d in bu.case_dirs(s)]
    res: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    res.setdefault("folds", {})
    for name, overrides in CANDIDATES.items():
        for d in cases:
            key = f"{name}/{d.name}"
            if key in res["folds"]:
                continue
            res["folds"][key] = run_fold(name, overrides, d)
            print(key, res["folds"][key], flush=True)
            RESULTS.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    means = {}
    for name in CANDIDATES:
        for post in bu.VARIANTS:
            vals = [res["folds"][f"{name}/{d.name}"]["dice"][post] for d in cases]
            means[f"{name}/{post}"] = round(float(np.mean(vals)), 4)
    best = max(means, key=lambda k: means[k])
    res.update({"candidates": CANDIDATES, "cases": [d.name for d in cases],
                "mean_held_out_dice": means, "chosen": best})
    RESULTS.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({"mean_held_out_dice": means, "chosen": best}, indent=1))


if __name__ == "__main__":
    main()
