"""``medseg export``: DICOM-SEG, RTSTRUCT, STL/OBJ meshes or NIfTI from a label map."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from medseg.cli import app
from medseg.errors import ConfigError, InputNotFoundError


def _label_table(spec: str | None) -> dict[int, str] | None:
    """``names.json`` or ``names.json:KEY`` (a sub-map, e.g. TotalSegmentator's ``total``)."""
    if spec is None:
        return None
    from medseg.errors import CorruptFileError
    from medseg.io.labels import labels_from_json, read_text_file

    path, _, key = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"Label table {p} does not exist. Pass a JSON file of "
                                 '{"1": "liver", ...} (optionally FILE.json:KEY for a sub-map).')
    try:
        data = json.loads(read_text_file(p, "label table"))
    except json.JSONDecodeError as exc:
        raise CorruptFileError(f"Label table {p} is not valid JSON (line {exc.lineno}, column "
                               f"{exc.colno}: {exc.msg}). Fix the file.") from None
    if key:
        if not isinstance(data, dict) or key not in data:
            keys = ", ".join(data) if isinstance(data, dict) else "none"
            raise ConfigError(f"Label table {p} has no map named {key!r} (maps: {keys}).")
        data = data[key]
    elif isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()) \
            and "labels" not in data:
        raise ConfigError(f"Label table {p} holds several maps ({', '.join(data)}); pick one "
                          f"with --labels {p}:NAME.")
    return labels_from_json(json.dumps(data), str(p))


def _print(summary: dict[str, Any]) -> None:
    from medseg.io.labels import display_name

    typer.echo(f"wrote {summary.get('format')} -> {summary.get('path')}")
    for item in summary.get("segments") or summary.get("rois") or summary.get("labels") or []:
        extra = {k: v for k, v in item.items() if k not in ("name", "label_value")}
        typer.echo(f"  {item.get('label_value')}: {display_name(str(item.get('name')))}  "
                   + ", ".join(f"{k}={v}" for k, v in extra.items()))
    if summary.get("skipped_empty"):
        typer.echo("  skipped (empty): " + ", ".join(display_name(n)
                                                      for n in summary["skipped_empty"]))
    for item in summary.get("renamed_labels") or []:
        typer.echo(f"  renamed label {item.get('label_value')}: "
                   f"{display_name(repr(item['name']))} -> {item['written_as']!r}")
    if summary.get("derived_uids"):
        typer.echo(f"  generated (blank in source): {', '.join(summary['derived_uids'])}")


@app.command()
def export(
    mask: Annotated[Path, typer.Argument(help="Label map (or probability map with "
                                         "--fractional): NIfTI, NRRD, MHA; or a DICOM-SEG / "
                                         "RTSTRUCT file to convert.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (seg, rtstruct, nifti) "
                                      "or folder (stl, obj).")],
    fmt: Annotated[str, typer.Option("--format", "-f",
                                     help="seg | rtstruct | stl | obj | nifti")] = "seg",
    reference: Annotated[Path | None, typer.Option(
        "--reference", "-r", help="Source image the mask was made on; for seg/rtstruct the "
        "DICOM series folder or zip.")] = None,
    series: Annotated[str | None, typer.Option(
        help="DICOM reference holding several series: UID or number from `medseg info`.")
    ] = None,
    labels_file: Annotated[str | None, typer.Option(
        "--labels", help="Label names JSON {\"1\": \"liver\"} (FILE.json:KEY for a sub-map).")
    ] = None,
    label: Annotated[list[str] | None, typer.Option(
        "--label", "-l", help="Label value or name to export (repeat for several).")] = None,
    all_labels: Annotated[bool, typer.Option(
        "--all-labels", help="Export every label present (the default without --label).")
    ] = False,
    anonymize: Annotated[bool, typer.Option(
        help="Remove patient/study identifying attributes from DICOM exports.")] = False,
    fractional: Annotated[bool, typer.Option(
        help="seg: MASK is a probability map in [0, 1]; write a FRACTIONAL SEG.")] = False,
    algorithm_type: Annotated[str, typer.Option(
        help="manual | semiautomatic | automatic")] = "automatic",
    model_name: Annotated[str, typer.Option(help="Algorithm/model name recorded in DICOM.")
                          ] = "medseg",
    model_version: Annotated[str | None, typer.Option(
        help="Algorithm version (default: the medseg version).")] = None,
    annotator: Annotated[str | None, typer.Option(
        help="seg/rtstruct: the person who made or corrected the segmentation, recorded as "
             "the DICOM-SEG ContentCreatorName / RTSTRUCT ROIInterpreter ('Jane Doe' or "
             "'Doe^Jane'; blank with --anonymize).")] = None,
    frame: Annotated[str, typer.Option(help="Mesh coordinates: LPS or RAS.")] = "LPS",
    smooth: Annotated[int, typer.Option(help="Mesh Taubin smoothing iterations.")] = 0,
    decimate: Annotated[float | None, typer.Option(
        help="Mesh: keep this fraction of faces (0-1).")] = None,
    shorten_labels: Annotated[bool, typer.Option(
        "--shorten-labels", help="Shorten label names the format cannot hold (DICOM: over 64 "
        "bytes, backslash, control characters) instead of refusing them; the summary lists "
        "each renamed label.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    send: Annotated[str | None, typer.Option(
        "--send", help="seg/rtstruct: also store the file in this PACS (a name from the "
                       "servers file, docs/pacs.md) and print its SOP Instance UID.")] = None,
) -> None:
    """Export a segmentation for clinical systems: DICOM-SEG, RTSTRUCT, meshes or NIfTI.

    MASK and --reference may be pacs://SERVER/UID (a SEG/RTSTRUCT or the image series)."""
    from medseg import io
    from medseg.cli.pacs import send_server
    from medseg.export import Algorithm, read_mask
    from medseg.export import export as run_export
    from medseg.pacs.uri import resolve_input

    if all_labels and label:
        raise ConfigError("Use either --all-labels or --label, not both.")
    if send is not None and fmt.lower() not in ("seg", "rtstruct"):
        raise ConfigError(f"--send stores DICOM-SEG or RTSTRUCT; --format {fmt} is neither.")
    server = send_server(send)  # a bad server name fails before any work
    mask, _ = resolve_input(mask)
    if reference is not None:
        reference, series = resolve_input(reference, series)
    algorithm = Algorithm(algorithm_type.lower().replace("-", ""), model_name, model_version,
                          creator=annotator)
    ref = None
    if reference is not None:
        ref = io.read(reference, series=int(series) if series and series.isdigit() else series,
                      label=False)
    vol = read_mask(mask, ref, fractional=fractional)
    summary = run_export(vol, ref, fmt, out, labels=label or None,
                         label_names=_label_table(labels_file), fractional=fractional,
                         algorithm=algorithm, anonymize=anonymize, frame=frame,
                         smooth_iterations=smooth, decimate=decimate,
                         shorten_labels=shorten_labels)
    stored: list[Any] = []
    if server is not None:
        from medseg.pacs.send import send_files

        stored = send_files(server, [out])
        summary["stored"] = [dataclasses.asdict(x) for x in stored]
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
    else:
        _print(summary)
        from medseg.cli.pacs import print_stored

        print_stored(stored)
