"""Benchmark: medseg's DICOM series reader vs SimpleITK's ImageSeriesReader (GDCM).

Inputs:
  * ``j2k-20``: the real 20-slice 512x512 JPEG 2000 TotalSegmentator CT series (data_samples);
  * ``raw-200``: a 512x512x200 uncompressed (explicit VR little endian) series generated from it
    in a temporary folder (slices repeated, positions 2 mm apart, fresh UIDs, shuffled names).

Both readers do the whole job on every run: discover the files of the series, sort them, read
and decode the pixels. SimpleITK: ``GetGDCMSeriesFileNames`` + ``ImageSeriesReader.Execute`` +
``GetArrayFromImage``; medseg: ``read_dicom``. The first run of each is a warm-up (not timed);
then ``--runs`` timed runs each, alternating the two readers. Reported: median seconds and the
ratio medseg / SimpleITK (< 1 means medseg is faster). Outputs bench/results/dicom_read.{json,md}.

Usage: .venv/bin/python bench/dicom_read.py [--runs 7] [--slices 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from medseg.io.atomic import write_text_atomic  # noqa: E402
from medseg.io.dicom import read_dicom  # noqa: E402

TOTALSEG = ROOT / "data_samples" / "totalsegmentator" / "example_ct_dicom"
RESULTS = ROOT / "bench" / "results"


def make_raw_series(folder: Path, n_slices: int) -> None:
    """Write an uncompressed ``n_slices`` series built from the TotalSegmentator slices."""
    sources = [pydicom.dcmread(p) for p in sorted(TOTALSEG.iterdir())]
    pixels = [ds.pixel_array for ds in sources]
    series_uid, study_uid = generate_uid(), generate_uid()
    rng = np.random.default_rng(0)
    ipp0 = np.asarray(sources[0].ImagePositionPatient, dtype=float)
    for k in range(n_slices):
        ds = sources[k % len(sources)].copy()
        ds.file_meta = ds.file_meta.copy()
        sop = generate_uid()
        ds.SOPInstanceUID, ds.SOPClassUID = sop, ds.file_meta.MediaStorageSOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SeriesInstanceUID, ds.StudyInstanceUID = series_uid, study_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(ipp0[0]), float(ipp0[1]), float(ipp0[2]) - 2.0 * k]
        ds.PixelData = pixels[k % len(pixels)].tobytes()
        ds["PixelData"].VR = "OW"
        ds.save_as(folder / f"{rng.integers(16**8):08x}.dcm", enforce_file_format=True)


def read_sitk(folder: Path) -> np.ndarray:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return sitk.GetArrayFromImage(reader.Execute())


def read_medseg(folder: Path) -> np.ndarray:
    return read_dicom(folder).array


def time_pair(folder: Path, runs: int) -> dict[str, Any]:
    """Alternate the two readers; check they agree; return timings."""
    ours, theirs = read_medseg(folder), read_sitk(folder)  # warm-up + agreement check
    if not np.array_equal(ours, theirs.transpose(2, 1, 0)):
        raise SystemExit(f"{folder}: medseg and SimpleITK disagree on the voxels")
    t_ours, t_sitk = [], []
    for _ in range(runs):
        t = time.perf_counter()
        read_medseg(folder)
        t_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        read_sitk(folder)
        t_sitk.append(time.perf_counter() - t)
    med_ours, med_sitk = statistics.median(t_ours), statistics.median(t_sitk)
    return {"shape_ijk": list(ours.shape), "runs": runs,
            "medseg_s": t_ours, "sitk_s": t_sitk,
            "medseg_median_s": med_ours, "sitk_median_s": med_sitk,
            "ratio_medseg_over_sitk": med_ours / med_sitk}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    results["j2k-20"] = {"input": str(TOTALSEG.relative_to(ROOT)),
                         "what": "real CT, 512x512x20, JPEG 2000 lossless",
                         **time_pair(TOTALSEG, args.runs)}
    with tempfile.TemporaryDirectory(prefix="medseg-bench-") as tmp:
        make_raw_series(Path(tmp), args.slices)
        results[f"raw-{args.slices}"] = {
            "input": f"generated from {TOTALSEG.name} in a temp dir",
            "what": f"512x512x{args.slices}, uncompressed explicit VR little endian",
            **time_pair(Path(tmp), args.runs)}
    report = {
        "benchmark": "dicom_read", "baseline": f"SimpleITK {sitk.Version_VersionString()} "
        "ImageSeriesReader (GDCM)", "pydicom": pydicom.__version__,
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "loadavg_at_end": list(os.getloadavg()), "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "dicom_read.json", json.dumps(report, indent=2) + "\n")
    lines = [
        "# DICOM series read: medseg vs SimpleITK (GDCM)", "",
        f"Baseline: {report['baseline']}; medseg with pydicom {pydicom.__version__}; "
        f"{os.cpu_count()} CPUs; median of {args.runs} runs after one warm-up; both readers do "
        "discovery + sort + decode. Ratio < 1: medseg faster. Load average at the end: "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
        + " (a shared machine inflates both columns alike; the runs alternate).", "",
        "| input | shape (i,j,k) | medseg median s | SimpleITK median s | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(f"| {name}: {r['what']} | {'x'.join(map(str, r['shape_ijk']))} | "
                     f"{r['medseg_median_s']:.3f} | {r['sitk_median_s']:.3f} | "
                     f"{r['ratio_medseg_over_sitk']:.2f} |")
    lines += ["", "Command: `.venv/bin/python bench/dicom_read.py "
              f"--runs {args.runs} --slices {args.slices}`", ""]
    write_text_atomic(args.out / "dicom_read.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
