"""Time of one case report (JSON + CSV + HTML + PDF), by stage, against two baselines.

Baselines, measured in the same run on the same inputs:

* ``metrics only``: reading the files and ``medseg.metrics.evaluate_label_maps``, i.e. what a
  report costs on top of the numbers alone;
* ``naive figures``: the straightforward matplotlib way of drawing the same figures, one
  ``Axes.contour`` call per label and slice for the overlays and one histogram panel per label
  laid out with ``tight_layout`` (the first version of this module).

Inputs: data_samples/totalsegmentator example_seg (41 labels, 122x101x30 @ 3 mm) against a
perturbed copy (liver eroded, spleen shifted 12 mm, left kidney dropped) on example_ct_sm, and
pyradiomics brain1 (256x256x25 @ 0.78x0.78x6.5 mm) against its label dilated by 3 voxels.
Median of several runs. Writes bench/results/report_render.{json,md}.

Run: .venv/bin/python bench/report_render.py
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matplotlib.figure import Figure  # noqa: E402

from medseg.io import read, write  # noqa: E402
from medseg.io.atomic import write_text_atomic  # noqa: E402
from medseg.metrics import evaluate_label_maps  # noqa: E402
from medseg.report import figures as F  # noqa: E402
from medseg.report import overlay as O  # noqa: E402
from medseg.report.case import compute_case, load_case  # noqa: E402
from medseg.report.evaluate import case_figures  # noqa: E402
from medseg.report.render_html import case_html  # noqa: E402
from medseg.report.render_pdf import case_pdf  # noqa: E402
from tests.report.conftest import perturb_totalseg  # noqa: E402

S = ROOT / "data_samples"
RUNS = 5


def make_inputs(tmp: Path) -> dict[str, tuple[Path, Path, Path]]:
    """{name: (pred, ref, image)} files of the two benchmark cases."""
    ts_ref = read(S / "totalsegmentator/example_seg.nii.gz", label=True)
    ts_pred = write(ts_ref.with_array(perturb_totalseg(ts_ref), labels=ts_ref.labels),
                    tmp / "ts_pred.nii.gz")
    brain = read(S / "pyradiomics/brain1_label.nrrd", label=True)
    dil = ndi.binary_dilation(brain.array > 0, iterations=3).astype(np.uint8)
    b_pred = write(brain.with_array(dil, labels=brain.labels), tmp / "brain_pred.nrrd")
    return {
        "totalseg CT, 41 labels": (ts_pred, S / "totalsegmentator/example_seg.nii.gz",
                                   S / "totalsegmentator/example_ct_sm.nii.gz"),
        "brain1 MR, 1 label, 6.5 mm slices": (b_pred, S / "pyradiomics/brain1_label.nrrd",
                                              S / "pyradiomics/brain1_image.nrrd"),
    }


def naive_contours(ax: object, plane: np.ndarray, labels: Sequence[int], colour: str,
                   px: tuple[float, float], width: float) -> None:
    """Baseline: one ``Axes.contour`` call per label present."""
    rows, cols = plane.shape
    xs, ys = (np.arange(cols) + 0.5) * px[0], (np.arange(rows) + 0.5) * px[1]
    for lab in sorted(set(np.unique(plane).tolist()) & set(labels)):
        ax.contour(xs, ys, (plane == lab).astype(np.float32), levels=[0.5],  # type: ignore
                   colors=colour, linewidths=width)


def naive_histograms(names: Mapping[int, str],
                     distances: Mapping[int, tuple[np.ndarray, np.ndarray]],
                     hd95: Mapping[int, float], tolerance_mm: float) -> bytes:
    """Baseline: one histogram panel per label, ``tight_layout``."""
    labels = sorted(names)
    ncols = min(6, len(labels))
    nrows = math.ceil(len(labels) / ncols)
    fig = Figure(figsize=(2.05 * ncols + 0.4, 1.75 * nrows + 0.7))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax, lab in zip(axes, labels, strict=False):
        p2r, r2p = (d[np.isfinite(d)] for d in distances[lab])
        ax.set_title(names[lab][:28], fontsize=8)
        if p2r.size and r2p.size:
            ax.hist([p2r, r2p], bins=24, histtype="stepfilled", alpha=0.55)
            ax.axvline(tolerance_mm, ls=":")
    fig.tight_layout()
    return F.png_bytes(fig)


def run_report(pred: Path, ref: Path, image: Path, out: Path) -> dict[str, float]:
    """One full report, timed by stage (seconds)."""
    t = [time.perf_counter()]
    inputs = load_case(pred, ref, image_path=image)
    t.append(time.perf_counter())
    report = compute_case(inputs)
    t.append(time.perf_counter())
    figs = case_figures(inputs, report)
    t.append(time.perf_counter())
    write_text_atomic(out / "report.json", json.dumps(report.to_dict(), allow_nan=False))
    write_text_atomic(out / "report.csv", report.csv_text())
    write_text_atomic(out / "report.html", case_html(report, figs))
    t.append(time.perf_counter())
    (out / "report.pdf").write_bytes(case_pdf(report, figs))
    t.append(time.perf_counter())
    stages = ("read", "metrics+locate", "figures", "json+csv+html", "pdf")
    out_t = {s: t[i + 1] - t[i] for i, s in enumerate(stages)}
    out_t["total"] = t[-1] - t[0]
    return out_t


def metrics_only(pred: Path, ref: Path) -> float:
    t0 = time.perf_counter()
    evaluate_label_maps(read(pred, label=True), read(ref, label=True))
    return time.perf_counter() - t0


def median_runs(fn: Callable[[], dict[str, float]], runs: int) -> dict[str, float]:
    results = [fn() for _ in range(runs)]
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name, (pred, ref, image) in make_inputs(tmp).items():
            run_report(pred, ref, image, tmp)  # warm-up (imports, caches)
            ours = median_runs(lambda: run_report(pred, ref, image, tmp), RUNS)  # noqa: B023
            base = statistics.median(metrics_only(pred, ref) for _ in range(RUNS))
            saved = (O._contours, F.surface_histograms)
            O._contours, F.surface_histograms = naive_contours, naive_histograms  # type: ignore
            try:
                naive = median_runs(lambda: run_report(pred, ref, image, tmp), 3)  # noqa: B023
            finally:
                O._contours, F.surface_histograms = saved  # type: ignore
            rows.append({"case": name, "medseg_report_s": ours, "metrics_only_s": base,
                         "naive_figures_report_s": naive,
                         "report_over_metrics_ratio": ours["total"] / base,
                         "naive_over_ours_ratio": naive["total"] / ours["total"]})
    meta = {"machine": f"{platform.machine()}, {platform.python_version()}",
            "runs": RUNS, "note": "median seconds; wall clock on a shared 2-core machine"}
    res = ROOT / "bench" / "results"
    write_text_atomic(res / "report_render.json", json.dumps({"meta": meta, "rows": rows},
                                                             indent=1) + "\n")
    lines = ["# Case report rendering time", "",
             "Produced by `bench/report_render.py` (median of runs, seconds). Baselines: "
             "`metrics only` = read + evaluate_label_maps; `naive figures` = the same report "
             "with one Axes.contour per label and one tight_layout histogram panel per label.",
             "", "| case | read | metrics+locate | figures | json+csv+html | pdf | total | "
             "metrics only | report / metrics | naive figures total | naive / ours |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        o = r["medseg_report_s"]
        lines.append(f"| {r['case']} | {o['read']:.2f} | {o['metrics+locate']:.2f} | "
                     f"{o['figures']:.2f} | {o['json+csv+html']:.2f} | {o['pdf']:.2f} | "
                     f"{o['total']:.2f} | {r['metrics_only_s']:.2f} | "
                     f"{r['report_over_metrics_ratio']:.1f}x | "
                     f"{r['naive_figures_report_s']['total']:.2f} | "
                     f"{r['naive_over_ours_ratio']:.2f}x |")
    write_text_atomic(res / "report_render.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
