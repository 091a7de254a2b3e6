"""BRATS whole-tumour benchmark: a small 3D U-Net trained with the medseg ``Trainer`` on the
four BRATS train + validation cases, scored with ``Segmenter`` on the two test cases.

    .venv/bin/python bench/brats_unet.py                  # train, then evaluate
    .venv/bin/python bench/brats_unet.py --stage eval     # evaluate an existing run

Data: /work/shared/data/deepmedic_brats2015 (CC BY-NC-SA 3.0, Menze et al., IEEE TMI 2015).
Nothing of it enters the repository: the dataset.json (absolute paths), the run and the
weights live in bench/.cache/brats (gitignored). Whole tumour = OTMultiClass > 0.

Named baseline, same run: a FLAIR threshold (z-score units) chosen on the train + validation
cases to maximise their mean whole-tumour Dice, applied to the test cases inside the brain mask.
Nothing is chosen on the test cases: when bench/results/brats_cv.json exists (written by
bench/brats_cv.py, leave-one-case-out CV on the train + validation cases), its chosen training
overrides and post-processing are used; otherwise the config as is, and the post-processing
that scores best on the training cases themselves. The model is the last epoch's.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDSEG_BRATS", ROOT.parent / "shared/data/deepmedic_brats2015"))
CACHE = ROOT / "bench/.cache/brats"
CONFIG = ROOT / "configs/brats_wt.yaml"
RESULTS = ROOT / "bench/results"
CHANNELS = ("Flair_subtrMeanDivStd.nii.gz", "T1c_subtrMeanDivStd.nii.gz")
TRAIN_SPLITS = ("train", "validation")
#: mirroring test-time augmentation (every axis-flip combination), nnU-Net's default; fixed
#: before the run, like the config, never chosen on the test cases
TTA = True


def case_dirs(split: str) -> list[Path]:
    """Case folders of one split of the DeepMedic BRATS copy, sorted."""
    return sorted(p for p in (DATA / split).iterdir() if p.is_dir())


def write_dataset_json() -> Path:
    """Decathlon ``dataset.json`` (absolute paths into the shared data) for the training cases."""
    training = [{"image": [str(d / c) for c in CHANNELS], "label": str(d / "OTMultiClass.nii.gz")}
                for s in TRAIN_SPLITS for d in case_dirs(s)]
    doc = {"name": "brats_wt", "modality": {"0": "FLAIR", "1": "T1c"},
           "labels": {"0": "background", "1": "necrosis", "2": "edema",
                      "3": "non_enhancing", "4": "enhancing"},
           "training": training}
    path = CACHE / "dataset.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


class LoadSampler:
    """Samples the 1-minute load average every ``period`` s in a daemon thread."""

    def __init__(self, period: float = 15.0) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)
        self._thread.start()

    def _run(self, period: float) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(period)

    def summary(self) -> dict[str, float]:
        self._stop.set()
        s = np.asarray(self.samples or [os.getloadavg()[0]])
        return {"load1_mean": round(float(s.mean()), 2), "load1_min": round(float(s.min()), 2),
                "load1_max": round(float(s.max()), 2), "n_samples": int(s.size)}


def run_training(overrides: list[str]) -> dict[str, Any]:
    """Train configs/brats_wt.yaml with the medseg Trainer; timing, memory and load figures."""
    import torch

    from medseg.config import load_config
    from medseg.engine.infer import peak_rss_mb
    from medseg.engine.train import train

    write_dataset_json()
    os.chdir(ROOT)
    cfg = load_config(CONFIG, overrides)
    load = LoadSampler()
    t0 = time.perf_counter()
    result = train(cfg, resume=False, progress=False)
    wall = time.perf_counter() - t0
    secs = [float(r["seconds"]) for r in result.history]
    out = {"config": str(CONFIG.relative_to(ROOT)), "overrides": overrides,
           "epochs": cfg.train.epochs, "iterations_per_epoch": cfg.train.iterations_per_epoch,
           "patches_per_iteration": cfg.train.batch_size * cfg.augment.num_samples,
           "patch_size": list(cfg.train.patch_size),
           "train_wall_s": round(wall, 1), "epoch_s_median": round(float(np.median(secs)), 2),
           "epoch_s_max": round(float(np.max(secs)), 2),
           "final_train_loss": float(result.history[-1]["train_loss"]),
           "train_peak_rss_mb": round(peak_rss_mb(), 1), "torch_threads": torch.get_num_threads(),
           "load_during_training": load.summary(), "bundle": str(result.last_bundle)}
    (CACHE / "train_summary.json").write_text(json.dumps(out, indent=1), encoding="utf-8")
    return out


def _read(d: Path, name: str) -> Any:
    from medseg import io

    return io.read(d / name)


def _scores(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> dict[str, float]:
    from medseg.metrics.table import binary_metrics

    m = binary_metrics(pred, ref, spacing, name="whole_tumour")
    return {"dice": round(m.dice, 4), "hd95_mm": round(m.hd95, 2),
            "volume_pred_ml": round(m.volume_pred_ml, 1),
            "volume_ref_ml": round(m.volume_ref_ml, 1)}


def flair_threshold_baseline() -> tuple[float, dict[str, float]]:
    """FLAIR threshold (inside the brain mask) maximising the mean whole-tumour Dice over the
    train + validation cases; returns it and its mean Dice there."""
    grid = np.round(np.arange(0.0, 4.01, 0.1), 2)
    dices = []
    for d in [d for s in TRAIN_SPLITS for d in case_dirs(s)]:
        flair = _read(d, CHANNELS[0]).array
        brain = _read(d, "brainmask.nii.gz").array > 0.5
        ref = _read(d, "OTMultiClass.nii.gz").array > 0
        fl, rf = flair[brain], ref[brain]
        dices.append([2 * np.sum((fl > t) & rf) / max(np.sum(fl > t) + rf.sum(), 1) for t in grid])
    mean = np.mean(dices, axis=0)
    best = int(np.argmax(mean))
    return float(grid[best]), {"train_val_mean_dice": round(float(mean[best]), 4)}


VARIANTS = {"none": None, "largest_component": "largest_component"}


def _predict_variants(seg: Any, d: Path) -> tuple[dict[str, np.ndarray], Any, float]:
    """Whole-tumour masks of one case without and with largest-component post-processing,
    the reference volume and the prediction time (s)."""
    from medseg.engine.postprocess import PostProcess, postprocess_labels

    vols = [_read(d, c) for c in CHANNELS]
    t0 = time.perf_counter()
    raw = np.asarray(seg.predict(vols, tta=TTA).array)
    secs = time.perf_counter() - t0
    masks = {"none": raw > 0,
             "largest_component": postprocess_labels(raw, PostProcess(largest_component=True)) > 0}
    return masks, _read(d, "OTMultiClass.nii.gz"), secs


def choose_postprocess(seg: Any) -> tuple[str, dict[str, float]]:
    """Post-processing variant with the best mean Dice on the train + validation cases."""
    dice: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for d in [d for s in TRAIN_SPLITS for d in case_dirs(s)]:
        masks, ref, _ = _predict_variants(seg, d)
        for k, m in masks.items():
            dice[k].append(_scores(m, ref.array > 0, ref.spacing)["dice"])
    mean = {k: round(float(np.mean(v)), 4) for k, v in dice.items()}
    return max(mean, key=lambda k: mean[k]), mean


def _cv_means() -> dict[str, float] | None:
    path = RESULTS / "brats_cv.json"
    if not path.is_file():
        return None
    means = json.loads(path.read_text(encoding="utf-8")).get("mean_held_out_dice")
    return dict(means) if means else None


def cv_choice() -> tuple[list[str], str] | None:
    """(config overrides, post-processing) chosen by bench/brats_cv.py, if it has run."""
    path = RESULTS / "brats_cv.json"
    if not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    if "chosen" not in doc:
        return None
    name, post = doc["chosen"].split("/")
    return list(doc["candidates"][name]), post


def evaluate(bundle: Path) -> dict[str, Any]:
    """Segmenter on the two test cases (native 1 mm grid) and the FLAIR-threshold baseline.
    The post-processing (none / largest component) is picked on the train + validation cases."""
    from medseg.engine.infer import Segmenter, peak_rss_mb

    threshold, fit = flair_threshold_baseline()
    seg = Segmenter(bundle, device="cpu")
    chosen, train_val = choose_postprocess(seg)
    selected_by = "train + validation cases (training data)"
    cv = cv_choice()
    if cv is not None:
        chosen, selected_by = cv[1], "leave-one-case-out CV on train + validation (brats_cv.py)"
    cases: dict[str, Any] = {}
    for d in case_dirs("test"):
        masks, ref_vol, secs = _predict_variants(seg, d)
        ref = ref_vol.array > 0
        brain = _read(d, "brainmask.nii.gz").array > 0.5
        base = (_read(d, CHANNELS[0]).array > threshold) & brain
        cases[d.name] = {"model": {**_scores(masks[chosen], ref, ref_vol.spacing),
                                   "predict_s": round(secs, 2)},
                         **{f"model_{k}": _scores(m, ref, ref_vol.spacing)
                            for k, m in masks.items()},
                         "flair_threshold": _scores(base, ref, ref_vol.spacing)}
    keys = ("model", *[f"model_{k}" for k in VARIANTS], "flair_threshold")
    mean = {k: round(float(np.mean([c[k]["dice"] for c in cases.values()])), 4) for k in keys}
    return {"bundle": str(bundle.relative_to(ROOT)) if bundle.is_relative_to(ROOT) else str(bundle),
            "postprocess": {"chosen": chosen, "selected_by": selected_by,
                            "train_val_mean_dice": train_val,
                            "cv_mean_held_out_dice": _cv_means()},
            "test_cases": cases, "mean_dice": mean,
            "baseline": {"name": "flair_threshold", "threshold_z": threshold, **fit},
            "eval_peak_rss_mb": round(peak_rss_mb(), 1)}


def write_results(res: dict[str, Any]) -> None:
    """bench/results/brats_unet.{json,md}."""
    from medseg.io.atomic import write_text_atomic

    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text_atomic(RESULTS / "brats_unet.json", json.dumps(res, indent=1) + "\n")
    tr, ev = res["training"], res["evaluation"]
    load = tr.get("load_during_training", {})
    other = next(k for k in VARIANTS if k != ev["postprocess"]["chosen"])
    lines = [
        "# BRATS whole tumour: 3D U-Net trained on this CPU", "",
        f"`.venv/bin/python bench/brats_unet.py` ({tr.get('config')}): medseg `Trainer` on the 4 "
        "BRATS train + validation cases (FLAIR + T1c, 2 mm, cropped to the brain, "
        f"{'x'.join(map(str, tr.get('patch_size', [48, 48, 48])))} patches "
        f"(overrides {tr.get('overrides')}), {tr.get('patches_per_iteration')} per iteration), "
        f"{tr.get('epochs')} epochs x {tr.get('iterations_per_epoch')} iterations; last-epoch "
        "model scored by `Segmenter` on the 2 test cases at their native 1 mm grid. Whole "
        "tumour = labels > 0. Nothing was tuned on the test cases.", "",
        f"Baseline in the same run: FLAIR > {ev['baseline']['threshold_z']} (z-score) inside "
        "the brain mask, the threshold that maximises the mean Dice of the train + validation "
        f"cases ({ev['baseline']['train_val_mean_dice']} there).", "",
        f"Post-processing picked by {ev['postprocess'].get('selected_by', 'the training cases')}"
        f": **{ev['postprocess']['chosen']}** (mean held-out Dice per candidate/post-processing "
        f"in the CV: {ev['postprocess'].get('cv_mean_held_out_dice')}; on the training cases "
        f"themselves: {ev['postprocess']['train_val_mean_dice']}). The config's training "
        "settings were chosen by the same CV (bench/results/brats_cv.json). The other "
        "post-processing is shown for information only; it was not selected.", "",
        f"| test case | model Dice | model HD95 (mm) | {other} (not selected) | "
        "baseline Dice | baseline HD95 (mm) | volume ref / model (mL) | predict (s) |",
        "|---|---|---|---|---|---|---|---|"]
    for name, c in ev["test_cases"].items():
        m, b, lc = c["model"], c["flair_threshold"], c[f"model_{other}"]
        lines.append(f"| {name} | {m['dice']:.3f} | {m['hd95_mm']} | {lc['dice']:.3f} | "
                     f"{b['dice']:.3f} | {b['hd95_mm']} | {m['volume_ref_ml']} / "
                     f"{m['volume_pred_ml']} | {m['predict_s']} |")
    mean = ev["mean_dice"]
    worst = min(c["model"]["dice"] for c in ev["test_cases"].values())
    lines += [f"| **mean** | **{mean['model']:.3f}** | | {mean[f'model_{other}']:.3f} | "
              f"{mean['flair_threshold']:.3f} | | | |",
              "", "| training | |", "|---|---|",
              f"| wall time, training (s) | {tr.get('train_wall_s')} |",
              f"| time per epoch, median / max (s) | {tr.get('epoch_s_median')} / "
              f"{tr.get('epoch_s_max')} |",
              f"| final training loss (DiceCE) | {tr.get('final_train_loss', float('nan')):.4f} |",
              f"| peak RSS, training process (MB) | {tr.get('train_peak_rss_mb')} |",
              f"| peak RSS, evaluation process (MB) | {ev['eval_peak_rss_mb']} |",
              f"| torch threads | {tr.get('torch_threads')} |",
              f"| 1-min load average during training, mean (min-max) | {load.get('load1_mean')} "
              f"({load.get('load1_min')}-{load.get('load1_max')}) |", "",
              f"Target whole-tumour Dice >= 0.80 per case: "
              f"{'met' if worst >= 0.8 else 'NOT met'} (worst case {worst:.3f})."
              " The train + validation cases were all used for training, so their Dice above is "
              "not a held-out figure.", "",
              "The machine has 2 cores shared with other jobs: a load average above 2 means the "
              "training got only part of them, so the times are upper bounds for an idle 2-core "
              "CPU.", ""]
    write_text_atomic(RESULTS / "brats_unet.md", "\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=("all", "train", "eval"), default="all")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    cv = cv_choice()
    if cv is not None and not args.overrides:
        args.overrides = cv[0]
        print(f"training settings chosen by bench/brats_cv.py: {cv[0] or 'the config as is'}")
    if args.stage in ("all", "train"):
        print(json.dumps(run_training(args.overrides), indent=1), flush=True)
    if args.stage in ("all", "eval"):
        from medseg.config import load_config

        bundle = Path(load_config(CONFIG, args.overrides).train.output_dir) / "last.safetensors"
        ev = evaluate(ROOT / bundle)
        print(json.dumps(ev, indent=1), flush=True)
        summary = CACHE / "train_summary.json"
        tr = json.loads(summary.read_text(encoding="utf-8")) if summary.is_file() else {}
        write_results({"training": tr, "evaluation": ev})


if __name__ == "__main__":
    main()
