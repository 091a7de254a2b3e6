"""Benchmark: peak memory (RSS) of opening a zip that holds one 600 MiB DICOM member.

Input, built at run time in a temporary folder: one DICOM CT image (16384 x 19200 pixels,
16 bits, all zero: 600 MiB of Pixel Data, with position/orientation/spacing so it is a
one-slice image series) stored deflated in a zip of about 0.6 MB. Each variant runs in a fresh
Python subprocess under ``/usr/bin/time -v``; its "Maximum resident set size" is the figure:

* ``import only``: ``import medseg.io, pydicom`` (the floor every variant pays);
* ``zipfile.read (baseline)``: the way medseg opened zip members before issue 18
  (``zipfile.ZipFile.read`` of the whole member, then ``pydicom.dcmread`` from ``BytesIO``);
* ``medseg.io.list_series``: default limits; the member expands more than 200 times its
  compressed size, so it is refused (``UploadTooLargeError``) after 16 MiB were streamed;
* ``medseg, limits raised``: ``medseg.io.dicom.list_series(zip, max_zip_ratio=inf)``: the whole
  member streamed to a temporary file in 1 MiB chunks, then its header read; lists 1 series.

Medians of ``--runs`` runs (variants interleaved). Outputs bench/results/zip_rss.{json,md}.

Usage: .venv/bin/python bench/zip_rss.py [--runs 3] [--mib 600]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from medseg.io.atomic import write_text_atomic  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MiB = 2**20
COLUMNS = 19200  # rows follow from the member size (16-bit pixels)

VARIANTS = {
    "import only": "import medseg.io, pydicom\nprint('imported')",
    "zipfile.read (baseline)": (
        "import io, zipfile, pydicom, medseg.io\n"
        "zf = zipfile.ZipFile(ZIP)\n"
        "data = zf.read(zf.namelist()[0])\n"
        "ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)\n"
        "print('read', len(data), ds.Rows, ds.Columns)"),
    "medseg.io.list_series": (
        "import medseg.io\n"
        "from medseg.errors import MedsegError\n"
        "try:\n"
        "    print('series', len(medseg.io.list_series(ZIP)))\n"
        "except MedsegError as exc:\n"
        "    print('refused', type(exc).__name__)"),
    "medseg, limits raised": (
        "from medseg.io.dicom import list_series\n"
        "print('series', len(list_series(ZIP, max_zip_ratio=float('inf'))))"),
}


def dicom_header(rows: int) -> bytes:
    """A CT image header (file meta + dataset) without Pixel Data, explicit VR little endian."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", \
        ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.FrameOfReferenceUID, ds.Modality, ds.SeriesNumber = generate_uid(), "CT", 1
    ds.Rows, ds.Columns = rows, COLUMNS
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness = [0.1, 0.1], 1
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def build_zip(path: Path, member_mib: int) -> tuple[int, int]:
    """Write the zip, streaming the zero pixels; return (member bytes, zip bytes)."""
    rows = member_mib * MiB // (2 * COLUMNS)
    pixel_bytes = rows * COLUMNS * 2
    header = dicom_header(rows)
    element = b"\xe0\x7f\x10\x00OW\x00\x00" + pixel_bytes.to_bytes(4, "little")
    zero = bytes(MiB)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf, \
            zf.open("big/CT000001.dcm", "w", force_zip64=True) as out:
        out.write(header + element)
        left = pixel_bytes
        while left:
            n = min(left, MiB)
            out.write(zero[:n])
            left -= n
    return len(header) + len(element) + pixel_bytes, path.stat().st_size


def run_variant(code: str, archive: Path, scratch: Path) -> dict[str, Any]:
    """Peak RSS (MiB), wall seconds and the last output line of one subprocess."""
    env = dict(os.environ, TMPDIR=str(scratch), PYTHONPATH=str(ROOT))
    cmd = ["/usr/bin/time", "-v", sys.executable, "-c", f"ZIP = {str(archive)!r}\n{code}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+(?:\.\d+)?)", proc.stderr)
    if rss is None or wall is None:
        raise RuntimeError(f"no /usr/bin/time output:\n{proc.stderr[-2000:]}")
    left = list(scratch.iterdir())
    if left:
        raise RuntimeError(f"temporary files left behind: {left}")
    out = proc.stdout.strip().splitlines()
    return {"rss_mib": int(rss.group(1)) / 1024,
            "wall_s": float(wall.group(1) or 0) * 60 + float(wall.group(2)),
            "result": out[-1] if out else proc.stderr.strip().splitlines()[-1],
            "rc": proc.returncode}


def markdown(result: dict[str, Any]) -> str:
    inp = result["input"]
    lines = [
        "# Peak memory opening a zip with one large DICOM member",
        "",
        f"Input: one {inp['member_mib']:.0f} MiB DICOM member (all-zero 16-bit pixels) in a "
        f"{inp['zip_bytes'] / 1e6:.2f} MB zip (ratio {inp['ratio']:.0f}:1). Peak RSS from "
        f"`/usr/bin/time -v` of a fresh Python process; median of {result['runs']} runs. "
        f"{result['machine']}.",
        "",
        "| variant | peak RSS (MiB) | RSS / member size | wall (s) | outcome |",
        "|---|---:|---:|---:|---|",
    ]
    for name, row in result["variants"].items():
        lines.append(f"| {name} | {row['rss_mib']:.0f} | {row['rss_mib'] / inp['member_mib']:.2f}"
                     f" | {row['wall_s']:.2f} | {row['result']} |")
    base = result["variants"]["zipfile.read (baseline)"]["rss_mib"]
    full = result["variants"]["medseg, limits raised"]["rss_mib"]
    floor = result["variants"]["import only"]["rss_mib"]
    lines += ["", f"Streaming the whole member costs {full - floor:.0f} MiB over the import floor "
              f"against {base - floor:.0f} MiB for the baseline ({base / full:.1f}x less peak "
              "RSS); with the default limits the member is refused after 16 MiB.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mib", type=int, default=600)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="zip_rss-") as tmp:
        archive, scratch = Path(tmp) / "one_member.zip", Path(tmp) / "scratch"
        scratch.mkdir()
        member, size = build_zip(archive, args.mib)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
        for _ in range(args.runs):
            for name, code in VARIANTS.items():
                runs[name].append(run_variant(code, archive, scratch))
    result = {
        "bench": "zip_rss", "runs": args.runs,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
                   f"Python {platform.python_version()}",
        "input": {"member_mib": member / MiB, "zip_bytes": size, "ratio": member / size,
                  "member": "DICOM CT image, 16-bit zero pixels"},
        "variants": {name: {"rss_mib": statistics.median(r["rss_mib"] for r in rows),
                            "wall_s": statistics.median(r["wall_s"] for r in rows),
                            "result": rows[-1]["result"],
                            "all_rss_mib": [round(r["rss_mib"], 1) for r in rows]}
                     for name, rows in runs.items()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text_atomic(RESULTS / "zip_rss.json", json.dumps(result, indent=1) + "\n")
    write_text_atomic(RESULTS / "zip_rss.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
