"""``medseg prompt INPUT --box Z,X0,Y0,X1,Y1 [--points ...] [--propagate] --out MASK``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from medseg.cli import app
from medseg.errors import PromptError

COORDS_HELP = (
    "Coordinates are voxel indices (0-based) of the input as medseg reads it (`medseg info` "
    "shows its shape): Z is the slice index along --axis; X is the index along the first "
    "remaining array axis and Y along the second (for --axis 2: X = i, Y = j, i.e. the NIfTI/NRRD "
    "first and second axes, whatever the orientation). Box corners are inclusive."
)


def _ints(text: str, n: int, what: str, example: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(float(p)) for p in parts]
    except ValueError:
        values = []
    if len(values) != n or any(float(p) != v for p, v in zip(parts, values, strict=False)):
        raise PromptError(f"{what} {text!r}: expected {n} comma-separated voxel indices, "
                          f"e.g. {example}.")
    return values


def parse_box(text: str) -> tuple[int, tuple[int, int, int, int]]:
    """``"Z,X0,Y0,X1,Y1"`` -> ``(z, (x0, y0, x1, y1))``."""
    z, x0, y0, x1, y1 = _ints(text, 5, "--box", "--box 12,40,52,90,101")
    if x0 > x1 or y0 > y1:
        raise PromptError(f"--box {text!r} is empty: it needs X0 <= X1 and Y0 <= Y1 (inclusive "
                          "corners Z,X0,Y0,X1,Y1), e.g. --box 12,40,52,90,101.")
    return z, (x0, y0, x1, y1)


def parse_points(text: str) -> list[tuple[int, tuple[int, int, bool]]]:
    """``"Z,X,Y,+;Z,X,Y,-"`` -> ``[(z, (x, y, positive)), ...]``."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(";"))):
        head, _, sign = item.rpartition(",")
        if sign.strip() not in ("+", "-"):
            raise PromptError(f"--points item {item!r}: expected Z,X,Y,+ or Z,X,Y,- "
                              "(+ inside the structure, - outside).")
        z, x, y = _ints(head, 3, "--points item", "--points '12,60,70,+;12,20,20,-'")
        out.append((z, (x, y, sign.strip() == "+")))
    return out


@app.command(help="Segment one structure from box/point prompts with a promptable (SAM-style) "
                  "model and write it as a label map on the input's exact grid. " + COORDS_HELP)
def prompt(
    input_path: Annotated[Path, typer.Argument(
        metavar="INPUT", help="Image: NIfTI, NRRD, MHA, a DICOM folder/file or zip, or "
                              "pacs://SERVER/UID.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Mask file to write (label map).")],
    box: Annotated[list[str] | None, typer.Option(
        "--box", help="Z,X0,Y0,X1,Y1: a box on slice Z, inclusive voxel indices (convention "
                      "above), tight around the structure (docs/prompting.md, 'Drawing a "
                      "box'); repeat for several key slices.")] = None,
    points: Annotated[list[str] | None, typer.Option(
        "--points", help="Z,X,Y,+|-;... clicks: + inside, - outside (repeatable).")] = None,
    axis: Annotated[int, typer.Option(help="Array axis the slices are cut along (0, 1, 2).")
                    ] = 2,
    propagate: Annotated[bool, typer.Option(
        "--propagate", help="Propagate from the prompted slices through the volume (3D).")
                         ] = False,
    model: Annotated[str, typer.Option(
        help="'lite' (shipped default) or a SAM ViT-B/L/H / MedSAM .pth checkpoint.")] = "lite",
    label_name: Annotated[str, typer.Option(help="Name of the label (value 1).")] = "structure",
    series: Annotated[str | None, typer.Option(help="DICOM series to read, if several.")
                      ] = None,
    modality: Annotated[str | None, typer.Option(
        help="CT, MR, ...: overrides the modality decided from the file's header or, when it "
             "has none (NIfTI, NRRD), from the data (a voxel below -500 = CT). CT uses the "
             "model's HU window, others the volume's percentiles.")] = None,
) -> None:
    """Thin caller of :class:`~medseg.engine.prompt.PromptSession` and the propagator."""
    from medseg import io
    from medseg.engine.prompt import PromptSession
    from medseg.engine.propagate import Propagator

    boxes: dict[int, tuple[int, int, int, int]] = {}
    clicks: dict[int, list[tuple[int, int, bool]]] = {}
    for text in box or []:
        z, b = parse_box(text)
        if z in boxes:
            raise PromptError(f"--box: two boxes on slice {z}; give one box per slice.")
        boxes[z] = b
    for text in points or []:
        for z, p in parse_points(text):
            clicks.setdefault(z, []).append(p)
    if not boxes and not clicks:
        raise PromptError("Give at least one --box or --points prompt. " + COORDS_HELP)
    from medseg.io.atomic import check_writable, staged_files
    from medseg.io.labels import check_label_names
    from medseg.modality import check_modality

    check_label_names({1: label_name}, "nifti", fix="Give another --label-name.")
    modality = check_modality(modality)
    check_writable(out.parent, file=out)  # before the model runs
    from medseg.pacs.uri import resolve_input

    input_path, series = resolve_input(input_path, series)  # pacs://SERVER/UID: cached series
    image = io.read(input_path, series=series)
    session = PromptSession(model)
    session.set_volume(image, axis=axis, modality=modality)
    lo, hi = session.window
    typer.echo(f"modality {session.modality.describe()}; intensities {lo:g}..{hi:g} -> 0..255")
    keys: dict[int, np.ndarray] = {}
    scores: dict[int, float] = {}
    for z in sorted(set(boxes) | set(clicks)):
        keys[z], scores[z] = session.predict(z, box=boxes.get(z), points=clicks.get(z))
        typer.echo(f"slice {z}: predicted IoU {scores[z]:.3f}")
    masks = keys
    if propagate:
        result = Propagator(session).propagate(keys, 1, name=label_name, key_scores=scores)
        masks = result.masks
        span = f"{min(masks)}..{max(masks)}" if masks else "none"
        typer.echo(f"propagated: slices {span}; check first: {result.to_check}")
        for stop in result.stops:
            typer.echo(f"  run from {stop.start} ({'+' if stop.direction > 0 else '-'}) stopped "
                       f"at {stop.slice_index}: {stop.reason}")
    labels = session.to_volume(masks, 1, label_name)
    with staged_files(out.parent) as stage:  # the mask and its label sidecar, together
        io.write(labels, stage / out.name, reference=image)
    written = out
    typer.echo(f"{int((labels.array > 0).sum())} voxels -> {written}")
