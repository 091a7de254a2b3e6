"""How far medseg's metrics are from MONAI's and from DeepMind's surface-distance, on real masks.

Cases: every organ of data_samples/totalsegmentator/example_seg.nii.gz (3 mm CT labels, 30-slice
crop) against a perturbed copy (shift, dilation/erosion, boundary noise; tests/metrics/reference.py)
at the file's 3 mm spacing and at (0.8, 0.8, 2.0) mm, and pyradiomics brain1 (0.78 x 0.78 x 6.5 mm)
against an eroded and a perturbed copy. Writes bench/results/metrics_agreement.{json,md}.

Run: .venv/bin/python bench/metrics_agreement.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import medseg  # noqa: E402
from medseg.io.atomic import write_bytes_atomic  # noqa: E402
from medseg.metrics import binary_metrics  # noqa: E402
from tests.metrics.reference import (  # noqa: E402
    BRAIN1,
    TOTALSEG,
    deepmind_scores,
    monai_scores,
    perturb,
)

KEYS = ("dice", "hd", "hd95", "assd", "nsd")
TAU = 2.0


def cases() -> list[tuple[str, str, np.ndarray, np.ndarray, tuple[float, ...]]]:
    """(group, name, pred, ref, spacing) for every real-mask case."""
    seg = medseg.read(TOTALSEG)
    names = seg.labels or {}
    out = []
    for group, spacing in (("totalseg 3 mm", seg.spacing), ("totalseg 0.8x0.8x2 mm",
                                                            (0.8, 0.8, 2.0))):
        for value in sorted(int(v) for v in np.unique(seg.array) if v):
            ref = seg.array == value
            if np.count_nonzero(ref) < 20:  # 1-voxel labels: nothing to compare
                continue
            pred = perturb(ref, value)
            if pred.any():
                out.append((group, names.get(value, str(value)), pred, ref, tuple(spacing)))
    brain = medseg.read(BRAIN1)
    ref = brain.array == 1
    out.append(("brain1 0.78x0.78x6.5 mm", "eroded", ndimage.binary_erosion(ref), ref,
                brain.spacing))
    out.append(("brain1 0.78x0.78x6.5 mm", "perturbed", perturb(ref, 4), ref, brain.spacing))
    return out


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def summarise(rows: list[dict], other: str) -> dict[str, dict[str, float]]:
    """Per metric: max/median/p90 of |other - ours|, max relative, mean of (other - ours)."""
    out = {}
    for k in KEYS:
        absd = [abs(r["ours"][k] - r[other][k]) for r in rows]
        out[k] = {"max_abs": float(np.max(absd)), "median_abs": float(np.median(absd)),
                  "p90_abs": float(np.percentile(absd, 90)),
                  "max_rel": float(max(_rel(r["ours"][k], r[other][k]) for r in rows)),
                  "mean_signed": float(np.mean([r[other][k] - r["ours"][k] for r in rows]))}
    return out


def main() -> None:
    rows = []
    for group, name, pred, ref, spacing in cases():
        ours = binary_metrics(pred, ref, spacing, nsd_tolerance_mm=TAU).as_dict()
        rows.append({"group": group, "case": name, "spacing": list(spacing),
                     "ours": {k: ours[k] for k in KEYS},
                     "monai": monai_scores(pred, ref, spacing, TAU),
                     "deepmind": deepmind_scores(pred, ref, spacing, TAU)})
    groups = ["all", *dict.fromkeys(r["group"] for r in rows)]
    result: dict = {"n_cases": len(rows), "nsd_tolerance_mm": TAU, "summary": {}}
    for g in groups:
        sel = [r for r in rows if g in ("all", r["group"])]
        result["summary"][g] = {"n": len(sel), "monai": summarise(sel, "monai"),
                                "deepmind": summarise(sel, "deepmind")}
    result["rows"] = rows
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "metrics_agreement.json", json.dumps(result, indent=1).encode())
    write_bytes_atomic(out / "metrics_agreement.md", markdown(result).encode())
    print(markdown(result))


def markdown(result: dict) -> str:
    lines = [f"# Metric agreement on {result['n_cases']} real mask pairs (NSD tau = {TAU} mm)",
             "", "Produced by `bench/metrics_agreement.py`. Differences are other - medseg; "
             "distances in mm.", "",
             "| cases | metric | MONAI max abs | MONAI max rel | DeepMind median abs "
             "| DeepMind p90 abs | DeepMind max abs | DeepMind max rel | DeepMind mean signed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for g, summ in result["summary"].items():
        for k in KEYS:
            m, d = summ["monai"][k], summ["deepmind"][k]
            lines.append(
                f"| {g} (n={summ['n']}) | {k} | {m['max_abs']:.2g} | {m['max_rel']:.2g} "
                f"| {d['median_abs']:.3g} | {d['p90_abs']:.3g} | {d['max_abs']:.3g} "
                f"| {d['max_rel']:.3g} | {d['mean_signed']:+.3g} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
