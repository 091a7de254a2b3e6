"""Benchmark: opening a 512x512x300 CT series through DICOMweb from a local Orthanc, against
reading the same files from disk (the named baseline), and the cost of a repeated open.

Input, built at run time in a temporary folder: the bundled TotalSegmentator CT
(data_samples/totalsegmentator/example_ct_dicom, 20 JPEG 2000 slices of 512x512) decoded and
repeated 15 times along z into 300 uncompressed slices (Explicit VR Little Endian, 512 KiB of
pixels each, 150 MiB in all), each with its own position (3 mm steps), SOP Instance UID and one
series/study UID, so it is one valid 300-slice series. It is uploaded to an Orthanc started on
free local ports (Debian ``orthanc`` + ``orthanc-dicomweb``, HTTP basic auth on, as in the
tests) and opened with:

* ``disk read (baseline)``: ``medseg.io.read(folder)`` of the 300 files (page cache warm);
* ``DICOMweb, cold cache, N workers``: ``medseg.pacs.pull`` into an empty cache (QIDO-RS listing
  + N parallel WADO-RS instance retrievals) then ``read_series`` (the same reader);
* ``repeated open (cache hit)``: ``pull`` again (no request) then ``read_series``.

Each variant runs ``--runs`` times (interleaved, the order rotating from run to run); the
figures are medians. Outputs
bench/results/pacs_retrieve.{json,md}.

Usage: .venv/bin/python bench/pacs_retrieve.py [--runs 3] [--slices 300]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from medseg.io.atomic import write_text_atomic  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SOURCE = ROOT / "data_samples" / "totalsegmentator" / "example_ct_dicom"
STUDY = "1.2.826.0.1.3680043.8.498.2001"
SERIES = "1.2.826.0.1.3680043.8.498.2002"


def make_series(dest: Path, n: int) -> Path:
    """``n`` uncompressed 512x512 slices from the bundled CT (see the module docstring)."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian

    sources = [pydicom.dcmread(f) for f in sorted(SOURCE.iterdir())]
    sources.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    z0, step = float(sources[0].ImagePositionPatient[2]), 3.0
    dest.mkdir(parents=True)
    for k in range(n):
        ds = pydicom.dcmread(sorted(SOURCE.iterdir())[0])
        src = sources[k % len(sources)]
        ds.PixelData = src.pixel_array.astype(np.int16 if ds.PixelRepresentation else
                                              np.uint16).tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.RescaleSlope, ds.RescaleIntercept = src.RescaleSlope, src.RescaleIntercept
        sop = f"{SERIES}.{k + 1}"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, SERIES
        ds.PatientID, ds.InstanceNumber = "BENCH-300", k + 1
        pos = list(src.ImagePositionPatient)
        ds.ImagePositionPatient = [pos[0], pos[1], z0 + step * k]
        ds.save_as(dest / f"{k:04d}.dcm", enforce_file_format=True)
    return dest


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run(runs: int, slices: int) -> dict[str, Any]:
    from medseg import io
    from medseg.pacs import load_server, pull, read_series
    from tests.pacs.orthanc import orthanc_server

    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="pacs-bench-"))
    try:
        folder = make_series(tmp / "series", slices)
        size = sum(f.stat().st_size for f in folder.iterdir())
        with orthanc_server(tmp / "orthanc") as orthanc:
            orthanc.upload(folder)
            os.environ["MEDSEG_BENCH_PW"] = orthanc.password
            servers = orthanc.servers_file(tmp / "servers.yaml", password_env="MEDSEG_BENCH_PW",
                                           extra={"timeout_s": 60})
            uri = f"pacs://orthanc/{SERIES}"
            disk = io.read(folder)
            times: dict[str, list[float]] = {}
            variants: dict[str, Callable[[int], Any]] = {
                "disk read (baseline)": lambda i: io.read(folder),
            }
            for workers in (1, 4):
                server = load_server("orthanc", servers).model_copy(update={"workers": workers})

                def cold(i: int, server: Any = server, workers: int = workers) -> Any:
                    cache = tmp / f"cache-{workers}-{i}"
                    got = pull(uri, server=server, cache=cache)
                    assert not got.hit and got.n_instances == slices
                    vol = read_series(got)
                    shutil.rmtree(cache)
                    return vol

                variants[f"DICOMweb, cold cache, {workers} worker(s)"] = cold
            warm_cache = tmp / "cache-warm"
            pull(uri, servers=servers, cache=warm_cache)

            def hit(i: int) -> Any:
                got = pull(uri, servers=servers, cache=warm_cache)
                assert got.hit
                return read_series(got)

            variants["repeated open (cache hit)"] = hit
            names = list(variants)
            for i in range(runs):  # the order rotates from run to run (no order effect)
                for name in names[i % len(names):] + names[:i % len(names)]:
                    gc.collect()
                    secs, vol = _timed(lambda fn=variants[name], i=i: fn(i))
                    assert np.array_equal(vol.array, disk.array)  # same voxels every way
                    times.setdefault(name, []).append(secs)
                    del vol
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        os.environ.pop("MEDSEG_BENCH_PW", None)
    base = statistics.median(times["disk read (baseline)"])
    rows = [{"variant": name, "median_s": statistics.median(t), "runs_s": t,
             "ratio_to_disk": statistics.median(t) / base} for name, t in times.items()]
    return {"benchmark": "pacs_retrieve", "series": f"512x512x{slices} CT, uncompressed",
            "bytes": size, "runs": runs, "machine": platform.platform(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Opening a {result['series']} series ({result['bytes'] / 2**20:.0f} MiB): "
             "local Orthanc (DICOMweb) vs disk",
             "", f"Medians of {result['runs']} runs on {result['cpus']} CPU(s), "
             f"{result['machine']} (1-minute load average before/after: "
             f"{result['load_average_1min'][0]} / {result['load_average_1min'][1]}; Orthanc "
             "and medseg share these CPUs). Produced by `bench/pacs_retrieve.py`; the baseline "
             "is `medseg.io.read` of the same files from disk.", "",
             "| variant | median (s) | x disk read |", "|---|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['variant']} | {r['median_s']:.2f} | {r['ratio_to_disk']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slices", type=int, default=300)
    args = parser.parse_args()
    if not shutil.which("Orthanc") or not Path("/usr/share/orthanc/plugins").is_dir():
        print("skipped: needs the Debian packages orthanc and orthanc-dicomweb "
              "(make system-deps)")
        return
    result = run(args.runs, args.slices)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text_atomic(RESULTS / "pacs_retrieve.json", json.dumps(result, indent=1) + "\n")
    write_text_atomic(RESULTS / "pacs_retrieve.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
