"""Benchmark: medseg running a MONAI model-zoo bundle against the bundle's own pipeline
(``python -m monai.bundle run``), same bundle, same input, same run.

Input: the sample CT resampled to 512x512x300 (int16 NIfTI; the recipe of
bench/infer_vs_monai.py and bench/nnunet_vs_predictor.py, cached in bench/.cache). Bundle: the
fixture tests/fixtures/monai_bundle/ct_organs_unet (model-zoo layout, spleen_ct_segmentation's
config style: LoadImaged -> Orientationd(RAS) -> Spacingd(2 mm) -> ScaleIntensityRanged ->
SlidingWindowInferer(64^3, overlap 0.5, gaussian) -> Activationsd(softmax) -> Invertd ->
AsDiscreted(argmax) -> SaveImaged; a 3D MONAI UNet, 5 classes).

Baseline: ``monai.bundle.run(config_file=configs/inference.json, datalist=[CT])`` (what
``python -m monai.bundle run`` calls: MONAI's own ConfigParser, SupervisedEvaluator and
transforms), in the MONAI tool venv ``.tools/monai`` (``make tools-monai``: the same MONAI 1.6.1,
torch 2.13.0 and nibabel as medseg's venv, plus pytorch-ignite). medseg: ``medseg predict
BUNDLE CT --out`` (the allow-listed lean path). Whole processes under ``/usr/bin/time -v``,
the two tools alternating; medians of --repeats runs; labels compared. Writes
bench/results/monai_bundle_vs_own.{json,md}.

    nice -n 10 .venv/bin/python bench/monai_bundle_vs_own.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.nnunet_vs_predictor import agreement, median_of, resampled_ct, timed  # noqa: E402
from tests.fixtures.monai_bundle.make_bundle import (  # noqa: E402
    MONAI_PY,
    MONAI_RUN,
    monai_run_args,
)

RESULTS = ROOT / "bench/results"
BUNDLE = ROOT / "tests/fixtures/monai_bundle/ct_organs_unet"


def run_bundle(image: Path, out: Path, limit: float) -> dict[str, object]:
    return timed([str(MONAI_PY), "-c", MONAI_RUN, *monai_run_args(image, out, BUNDLE)], limit)


def run_medseg(image: Path, out: Path, limit: float) -> dict[str, object]:
    return timed([str(ROOT / ".venv/bin/medseg"), "predict", str(BUNDLE), str(image), "--out",
                  str(out), "--device", "cpu"], limit)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit", type=float, default=900.0)
    ap.add_argument("--name", default="monai_bundle_vs_own")
    args = ap.parse_args()
    image = resampled_ct((512, 512, 300))
    with tempfile.TemporaryDirectory(prefix="bench-monai-") as tmp:
        ours: list[dict[str, object]] = []
        base: list[dict[str, object]] = []
        for _ in range(args.repeats):  # interleaved: both see the same machine load
            ours.append(run_medseg(image, Path(tmp) / "medseg", args.limit))
            base.append(run_bundle(image, Path(tmp) / "bundle", args.limit))
        stem = image.name.replace(".nii.gz", "")
        res: dict[str, object] = {
            "input": f"{image.name} (sample CT zoomed, order 1)",
            "bundle": str(BUNDLE.relative_to(ROOT)), "repeats": args.repeats,
            "medseg_runs": ours, "bundle_runs": base,
            "medseg_wall_s": median_of(ours, "wall_s"),
            "bundle_wall_s": median_of(base, "wall_s"),
            "medseg_peak_rss_mb": median_of(ours, "peak_rss_mb"),
            "bundle_peak_rss_mb": median_of(base, "peak_rss_mb")}
        if res["medseg_wall_s"] and res["bundle_wall_s"]:
            res["wall_ratio"] = round(res["medseg_wall_s"] / res["bundle_wall_s"], 3)  # type: ignore[operator]
            res["rss_ratio"] = round(res["medseg_peak_rss_mb"]  # type: ignore[operator]
                                     / res["bundle_peak_rss_mb"], 3)
            res["agreement"] = agreement(Path(tmp) / "medseg" / f"{stem}.nii.gz",
                                         Path(tmp) / "bundle" / f"{stem}_seg.nii.gz")
    print(json.dumps({k: v for k, v in res.items() if not k.endswith("_runs")}))
    ag = res.get("agreement", {})
    md = "\n".join([
        "# medseg vs the MONAI bundle's own pipeline (CPU, same bundle)", "",
        f"Input {res['input']}; bundle {res['bundle']}; {args.repeats} runs per tool, medians; "
        "whole processes (/usr/bin/time -v).", "",
        "| | medseg predict | monai.bundle.run | ratio |", "|---|---|---|---|",
        f"| wall time | {res['medseg_wall_s']} s | {res['bundle_wall_s']} s | "
        f"{res.get('wall_ratio')} |",
        f"| peak RSS | {res['medseg_peak_rss_mb']} MB | {res['bundle_peak_rss_mb']} MB | "
        f"{res.get('rss_ratio')} |", "",
        f"Labels: {ag.get('identical_fraction')} of voxels identical; Dice per class "
        f"{ag.get('dice')}.", ""])
    from medseg.io.atomic import write_text_atomic

    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text_atomic(RESULTS / f"{args.name}.json", json.dumps(res, indent=1) + "\n")
    write_text_atomic(RESULTS / f"{args.name}.md", md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
