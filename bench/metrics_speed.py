"""Speed and memory of medseg.metrics.binary_metrics against MONAI's metric functions.

Input: data_samples/totalsegmentator/example_seg.nii.gz (real TotalSegmentator CT labels,
122x101x30 @ 3 mm) upsampled nearest-neighbour to 512x512x300 and given an anisotropic spacing
of (0.8, 0.8, 2.0) mm. Two cases:

* ``liver``: reference = liver; prediction = liver shifted 3 voxels along i, dilated twice
  (6-connected) and with 20 % of its boundary voxels flipped.
* ``all_organs``: reference = every labelled voxel as one mask (a large bounding box, the worst
  case for cropping); prediction = eroded once, shifted 2 voxels along j.

Baseline (same run, same masks): MONAI ``compute_dice`` + ``compute_hausdorff_distance``
(percentile 95 and 100) + ``compute_average_surface_distance(symmetric=True)`` +
``compute_surface_dice([2.0])``, all with ``spacing`` and ``include_background=True`` on
``[1, 1, I, J, K]`` bool tensors. Ours: one ``binary_metrics`` call (computes all of them plus
IoU, sensitivity, precision and volumes). Each method runs in its own subprocess: median wall
time of N runs, and peak RSS above the RSS after loading the masks (VmHWM reset through
/proc/self/clear_refs). Writes bench/results/metrics_speed.{json,md}.

Run: .venv/bin/python bench/metrics_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data_samples" / "totalsegmentator" / "example_seg.nii.gz"
SHAPE = (512, 512, 300)
SPACING = (0.8, 0.8, 2.0)
TAU = 2.0


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def make_cases(folder: Path) -> dict[str, str]:
    """Write ``<case>_pred.npy`` / ``<case>_ref.npy`` into ``folder``; returns descriptions."""
    sys.path.insert(0, str(ROOT))
    import medseg

    labels = medseg.read(SAMPLE).array
    idx = [(np.arange(n) * labels.shape[a] / n).astype(np.intp) for a, n in enumerate(SHAPE)]
    big = labels[np.ix_(*idx)]
    rng = np.random.default_rng(0)
    liver = big == 5
    pred = ndimage.binary_dilation(np.roll(liver, 3, axis=0), iterations=2)
    edge = pred & ~ndimage.binary_erosion(pred)
    pred ^= edge & (rng.random(SHAPE) < 0.2)
    organs = big > 0
    cases = {"liver": (pred, liver),
             "all_organs": (np.roll(ndimage.binary_erosion(organs), 2, axis=1), organs)}
    for name, (p, r) in cases.items():
        np.save(folder / f"{name}_pred.npy", p)
        np.save(folder / f"{name}_ref.npy", r)
    return {"liver": "liver (label 5) vs shifted 3 vox + dilated 2 + 20% boundary noise",
            "all_organs": "union of all 41 labels vs eroded 1 + shifted 2 vox"}


def run_ours(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    from medseg.metrics import binary_metrics

    m = binary_metrics(pred, ref, SPACING, nsd_tolerance_mm=TAU)
    return {"dice": m.dice, "hd95": m.hd95, "hd": m.hd, "assd": m.assd, "nsd": m.nsd}


def run_monai(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    import torch
    from monai.metrics import (
        compute_average_surface_distance,
        compute_dice,
        compute_hausdorff_distance,
        compute_surface_dice,
    )

    yp, yr = torch.from_numpy(pred)[None, None], torch.from_numpy(ref)[None, None]
    kw = {"include_background": True, "spacing": list(SPACING)}
    out = {
        "dice": compute_dice(yp, yr, include_background=True),
        "hd95": compute_hausdorff_distance(yp, yr, percentile=95, **kw),
        "hd": compute_hausdorff_distance(yp, yr, **kw),
        "assd": compute_average_surface_distance(yp, yr, symmetric=True, **kw),
        "nsd": compute_surface_dice(yp, yr, [TAU], **kw),
    }
    return {k: float(v.reshape(-1)[0]) for k, v in out.items()}


def child(method: str, folder: str, case: str, repeats: int) -> None:
    """Subprocess body: load the pair, time ``repeats`` runs, print a JSON line."""
    import warnings

    warnings.simplefilter("ignore")
    sys.path.insert(0, str(ROOT))
    fn = {"medseg": run_ours, "monai": run_monai}[method]
    pred = np.load(Path(folder) / f"{case}_pred.npy")
    ref = np.load(Path(folder) / f"{case}_ref.npy")
    fn(pred[:8, :8, :8].copy(), ref[:8, :8, :8].copy())  # imports and first-call set-up
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter
    base_kb = _status_kb("VmRSS")
    times, values = [], {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        values = fn(pred, ref)
        times.append(time.perf_counter() - t0)
    peak_mb = (_status_kb("VmHWM") - base_kb) / 1024
    print(json.dumps({"times_s": times, "peak_rss_mb": peak_mb, "values": values,
                      "input_mb": (pred.nbytes + ref.nbytes) / 2**20}))


def measure(method: str, folder: Path, case: str, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--child", method, str(folder), case, str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["median_s"] = statistics.median(res["times_s"])
    return res


def markdown(result: dict) -> str:
    lines = ["# Metric speed: medseg.metrics.binary_metrics vs MONAI "
             f"{result['monai_version']}", "",
             f"Masks {result['shape']} bool at spacing {result['spacing_mm']} mm, from "
             "TotalSegmentator example_seg.nii.gz (nearest-neighbour upsampling). "
             f"{result['repeats']} runs per method, median; peak RSS above the loaded masks. "
             f"Machine: {result['machine']}.", "",
             "| case | method | median s | peak RSS MB | speed-up | HD95 | HD | ASSD | NSD@2mm |",
             "|---|---|---|---|---|---|---|---|---|"]
    for case, res in result["cases"].items():
        for method in ("medseg", "monai"):
            r, v = res[method], res[method]["values"]
            speed = f"{res['speedup']:.1f}x" if method == "medseg" else "1x"
            lines.append(f"| {case} | {method} | {r['median_s']:.2f} | {r['peak_rss_mb']:.0f} "
                         f"| {speed} | {v['hd95']:.6f} | {v['hd']:.6f} | {v['assd']:.6f} "
                         f"| {v['nsd']:.6f} |")
    lines += ["", "Cases: " + "; ".join(f"`{k}`: {v}" for k, v in result["cases_doc"].items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import monai

    from medseg.io.atomic import write_bytes_atomic

    result: dict = {"shape": list(SHAPE), "spacing_mm": list(SPACING), "repeats": args.repeats,
                    "nsd_tolerance_mm": TAU, "monai_version": monai.__version__,
                    "machine": f"{platform.processor() or platform.machine()}, "
                               f"{os.cpu_count()} CPUs (shared)", "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        result["cases_doc"] = make_cases(Path(tmp))
        for case in result["cases_doc"]:
            res = {m: measure(m, Path(tmp), case, args.repeats) for m in ("medseg", "monai")}
            res["speedup"] = res["monai"]["median_s"] / res["medseg"]["median_s"]
            res["max_abs_diff"] = {k: abs(res["medseg"]["values"][k] - res["monai"]["values"][k])
                                   for k in res["medseg"]["values"]}
            result["cases"][case] = res
            print(case, res["speedup"], res["max_abs_diff"], flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "metrics_speed.json", json.dumps(result, indent=1).encode())
    write_bytes_atomic(out / "metrics_speed.md", markdown(result).encode())
    print(markdown(result))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        main()
