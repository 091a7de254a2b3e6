"""Benchmark: medseg on an nnU-Net model folder against nnU-Net's own ``nnUNetPredictor``, same
model, same settings, same run.

Input: the real sample CT (data_samples/totalsegmentator/example_ct.nii.gz, 122x101x112 @ 3 mm)
resampled trilinearly (scipy.ndimage.zoom, order 1) to SHAPE (512x512x300, and 512x512x900 for
the large case) and saved as an int16 RAS NIfTI (the recipe of bench/infer_vs_monai.py; cached
in bench/.cache). Model: the nnU-Net v2 fixture tests/fixtures/nnunet/models/
Dataset501_CTOrgans/nnUNetTrainer__nnUNetPlans__3d_fullres, fold 0 (trained by nnunetv2 itself,
see tests/fixtures/nnunet/make_fixtures.py): 3 mm, patch 48x64x64, PlainConvUNet 4-32 features.

Baseline: ``nnUNetPredictor`` (nnunetv2 2.8.1 in the tool venv ``.tools/nnunet``, ``make
tools-nnunet``), CPU, tile step 0.5, Gaussian, ``predict_from_files_sequential`` (everything in
one process, so the whole process's peak RSS is the whole cost; its default multi-process mode
splits the same work over worker processes). medseg: ``medseg predict MODEL_FOLDER CT --out``.
Both with test-time mirroring (nnU-Net's default) and without (``--disable_tta``).

Each run is its own process under ``/usr/bin/time -v`` (imports, reading and writing included);
the two tools alternate; wall time and peak RSS are the medians of --repeats runs. The labels
of both tools are compared (identical voxels, Dice per class). The 512x512x900 case runs once
per tool under --limit seconds. Writes bench/results/nnunet_vs_predictor.{json,md}.

    nice -n 10 .venv/bin/python bench/nnunet_vs_predictor.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CACHE = ROOT / "bench/.cache"
RESULTS = ROOT / "bench/results"
TOOL = ROOT / ".tools/nnunet/bin/python"
MODEL = ROOT / ("tests/fixtures/nnunet/models/Dataset501_CTOrgans/"
                "nnUNetTrainer__nnUNetPlans__3d_fullres")
NNUNET_RUN = """
import sys, torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
model, image, out, tta = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=tta,
                    device=torch.device("cpu"), verbose=False, allow_tqdm=False)
p.initialize_from_trained_model_folder(model, use_folds=(0,),
                                       checkpoint_name="checkpoint_final.pth")
p.predict_from_files_sequential([[image]], [out], save_probabilities=False, overwrite=True)
"""


def resampled_ct(shape: tuple[int, int, int]) -> Path:
    """The sample CT zoomed (order 1) to ``shape``, int16 NIfTI (cached)."""
    import nibabel as nib
    import numpy as np
    from scipy import ndimage

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"ct_{'x'.join(map(str, shape))}.nii.gz"
    if not path.exists():
        src = nib.load(str(ROOT / "data_samples/totalsegmentator/example_ct.nii.gz"))
        arr = np.asarray(src.dataobj, dtype=np.float32)
        factors = [t / s for t, s in zip(shape, arr.shape, strict=True)]
        big = ndimage.zoom(arr, factors, order=1).astype(np.int16)
        aff = src.affine.copy()
        aff[:3, :3] = src.affine[:3, :3] @ np.diag([1 / f for f in factors])
        nib.save(nib.Nifti1Image(big, aff), str(path))
    return path


def timed(cmd: list[str], limit: float) -> dict[str, object]:
    """Run ``cmd`` under /usr/bin/time -v; wall seconds, peak RSS (MB), exit status."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as t:
        try:
            proc = subprocess.run(["/usr/bin/time", "-v", "-o", t.name, *cmd],
                                  capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            return {"rc": "timeout", "wall_s": limit, "peak_rss_mb": None}
        text = Path(t.name).read_text()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text).group(1)
    secs = sum(float(p) * 60 ** i for i, p in enumerate(reversed(wall.split(":"))))
    out = {"rc": proc.returncode, "wall_s": round(secs, 2), "peak_rss_mb": round(rss / 1024)}
    if proc.returncode:
        out["stderr_tail"] = proc.stderr[-400:]
    return out


def run_nnunet(image: Path, out: Path, tta: bool, limit: float) -> dict[str, object]:
    out.parent.mkdir(parents=True, exist_ok=True)  # nnU-Net writes its run arguments there
    return timed([str(TOOL), "-c", NNUNET_RUN, str(MODEL), str(image),
                  str(out.parent / out.name.replace(".nii.gz", "")), "1" if tta else "0"], limit)


def run_medseg(image: Path, out_dir: Path, tta: bool, limit: float) -> dict[str, object]:
    return timed([str(ROOT / ".venv/bin/medseg"), "predict", str(MODEL), str(image), "--out",
                  str(out_dir), "--device", "cpu", "--fold", "0",
                  "--tta" if tta else "--no-tta"], limit)


def agreement(a_path: Path, b_path: Path) -> dict[str, object]:
    import nibabel as nib
    import numpy as np

    a = np.asarray(nib.load(str(a_path)).dataobj)
    b = np.asarray(nib.load(str(b_path)).dataobj)
    dice = {}
    for c in sorted((set(np.unique(a)) | set(np.unique(b))) - {0}):
        x, y = a == c, b == c
        dice[str(int(c))] = round(float(2 * (x & y).sum() / (x.sum() + y.sum())), 5)
    return {"identical_fraction": round(float((a == b).mean()), 6), "dice": dice}


def median_of(runs: list[dict[str, object]], key: str) -> float | None:
    vals = [r[key] for r in runs if r["rc"] == 0 and r[key] is not None]
    return statistics.median(vals) if vals else None  # type: ignore[type-var]


def bench_setting(image: Path, tta: bool, repeats: int, limit: float, work: Path
                  ) -> dict[str, object]:
    name = image.name.replace(".nii.gz", "")
    ours: list[dict[str, object]] = []
    base: list[dict[str, object]] = []
    for _ in range(repeats):  # interleaved, so both tools see the same machine load
        ours.append(run_medseg(image, work / "medseg", tta, limit))
        base.append(run_nnunet(image, work / "nnunet" / f"{name}.nii.gz", tta, limit))
    row: dict[str, object] = {"tta": tta, "medseg_runs": ours, "nnunet_runs": base}
    for tool, runs in (("medseg", ours), ("nnunet", base)):
        row[f"{tool}_wall_s"] = median_of(runs, "wall_s")
        row[f"{tool}_peak_rss_mb"] = median_of(runs, "peak_rss_mb")
    if row["medseg_wall_s"] and row["nnunet_wall_s"]:
        row["wall_ratio"] = round(row["medseg_wall_s"] / row["nnunet_wall_s"], 3)  # type: ignore[operator]
        row["rss_ratio"] = round(row["medseg_peak_rss_mb"] / row["nnunet_peak_rss_mb"], 3)  # type: ignore[operator]
        row["agreement"] = agreement(work / "medseg" / f"{name}.nii.gz",
                                     work / "nnunet" / f"{name}.nii.gz")
    return row


def markdown(res: dict[str, object]) -> str:
    lines = ["# medseg vs nnUNetPredictor (CPU, same nnU-Net model folder)", "",
             f"Input {res['input']}; model {res['model']}; {res['repeats']} runs per tool, "
             "medians; whole processes (/usr/bin/time -v).", "",
             "| setting | medseg wall | nnU-Net wall | ratio | medseg peak RSS | "
             "nnU-Net peak RSS | ratio | identical voxels | Dice per class |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in res["settings"]:  # type: ignore[attr-defined]
        ag = row.get("agreement", {})
        lines.append(
            f"| {'TTA (mirroring)' if row['tta'] else 'no TTA'} | {row['medseg_wall_s']} s | "
            f"{row['nnunet_wall_s']} s | {row.get('wall_ratio')} | {row['medseg_peak_rss_mb']} MB "
            f"| {row['nnunet_peak_rss_mb']} MB | {row.get('rss_ratio')} | "
            f"{ag.get('identical_fraction')} | {ag.get('dice')} |")
    big = res.get("large")
    if big:
        lines += ["", f"512x512x900 (one run each, limit {big['limit_s']} s, TTA as nnU-Net's "
                  f"default): medseg {big['medseg']}; nnUNetPredictor {big['nnunet']}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit", type=float, default=900.0, help="seconds per run")
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--name", default="nnunet_vs_predictor")
    args = ap.parse_args()
    if not TOOL.exists():
        print("the nnunetv2 tool venv is missing: make tools-nnunet", file=sys.stderr)
        return 2
    image = resampled_ct((512, 512, 300))
    res: dict[str, object] = {"input": f"{image.name} (sample CT zoomed, order 1)",
                              "model": str(MODEL.relative_to(ROOT)) + " fold 0",
                              "repeats": args.repeats, "settings": []}
    with tempfile.TemporaryDirectory(prefix="bench-nnunet-") as tmp:
        for tta in (True, False):
            row = bench_setting(image, tta, args.repeats, args.limit, Path(tmp) / str(tta))
            res["settings"].append(row)  # type: ignore[attr-defined]
            print(json.dumps({k: v for k, v in row.items() if not k.endswith("_runs")}))
        if not args.skip_large:
            big = resampled_ct((512, 512, 900))
            work = Path(tmp) / "large"
            res["large"] = {"limit_s": args.limit,
                            "medseg": run_medseg(big, work / "medseg", True, args.limit),
                            "nnunet": run_nnunet(big, work / "nnunet" / "ct.nii.gz", True,
                                                 args.limit)}
            print(json.dumps(res["large"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    from medseg.io.atomic import write_text_atomic

    write_text_atomic(RESULTS / f"{args.name}.json", json.dumps(res, indent=1) + "\n")
    write_text_atomic(RESULTS / f"{args.name}.md", markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
