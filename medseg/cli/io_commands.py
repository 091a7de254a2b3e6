"""``medseg info`` and ``medseg convert``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from medseg import io
from medseg.cli import app
from medseg.volume import Volume


def _series_arg(series: str | None) -> str | int | None:
    if series is None:
        return None
    return int(series) if series.isdigit() else series


def _print_volume(info: dict[str, Any]) -> None:
    for key in ("shape", "spacing_mm", "origin_lps_mm", "orientation", "dtype", "modality",
                "value_range"):
        typer.echo(f"  {key:14s} {info[key]}")
    if "labels" in info:
        typer.echo(f"  {'labels':14s} {len(info['labels'])}: " + ", ".join(
            f"{k}={v}" for k, v in list(info["labels"].items())[:12])
            + (" ..." if len(info["labels"]) > 12 else ""))


@app.command()
def info(
    path: Annotated[Path, typer.Argument(
        help="NIfTI/NRRD/MHA file, DICOM file or folder, zip, or pacs://SERVER/UID.")],
    series: Annotated[str | None, typer.Option(
        help="DICOM: SeriesInstanceUID or the number listed here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """List DICOM series, then shape, spacing, orientation, modality and value range."""
    from medseg.pacs.uri import resolve_input

    path, series = resolve_input(path, series)  # pacs://SERVER/UID: the cached series
    listing = io.list_series(path)
    out: dict[str, Any] = {"path": str(path)}
    if listing:
        out["series"] = [{"number": s.number, "uid": s.uid, "description": s.description,
                          "modality": s.modality, "images": s.n_images,
                          "size": [s.columns, s.rows], "multiframe": s.multiframe}
                         for s in listing]
    vol: Volume | None = None
    if not listing or len(listing) == 1 or series is not None:
        vol = io.read(path, series=_series_arg(series))
        out["volume"] = vol.describe()
        out["volume"]["orientation_note"] = "letters = direction each axis (i, j, k) points to"
    if as_json:
        typer.echo(json.dumps(out, indent=1))
        return
    typer.echo(f"{path}")
    for s in out.get("series", []):
        typer.echo(f"  series {s['number']}: {s['modality']} {s['images']} image(s) "
                   f"{s['size'][0]}x{s['size'][1]} '{s['description']}' uid={s['uid']}")
    if vol is None:
        typer.echo("  several series: pass --series N (or the UID) to inspect one")
        return
    _print_volume(out["volume"])


@app.command()
def convert(
    src: Annotated[Path, typer.Argument(
        help="Input image, label map, DICOM folder or zip, or pacs://SERVER/UID.")],
    dst: Annotated[Path, typer.Argument(help="Output .nii.gz, .nii, .nrrd or .mha.")],
    series: Annotated[str | None, typer.Option(
        help="DICOM: SeriesInstanceUID or number from `medseg info`.")] = None,
    label: Annotated[bool | None, typer.Option(
        "--label/--image", help="Treat the input as a label map / as an image "
        "(default: label map when label names are stored with it).")] = None,
    nan_to_zero: Annotated[bool, typer.Option(
        help="Replace NaN voxels by 0 instead of refusing the file.")] = False,
) -> None:
    """Convert between formats, keeping the exact geometry (and label names)."""
    from medseg.io.atomic import check_writable, staged_files
    from medseg.pacs.uri import resolve_input

    check_writable(dst.parent, file=dst)  # a bad output is refused before the input is read
    src, series = resolve_input(src, series)  # pacs://SERVER/UID: the cached series
    vol = io.read(src, series=_series_arg(series), label=label,
                  nan="zero" if nan_to_zero else "error")
    with staged_files(dst.parent) as stage:  # the image and its label sidecar, together
        io.write(vol, stage / dst.name)
    written = dst
    d = vol.describe()
    typer.echo(f"wrote {written}: {d['shape']} {d['dtype']} spacing {d['spacing_mm']} mm, "
               f"orientation {d['orientation']}"
               + (f", {len(d['labels'])} labels" if "labels" in d else ""))
