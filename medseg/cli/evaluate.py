"""``medseg evaluate``: metrics and boundary reports for one case or a cohort of cases."""

from __future__ import annotations

import enum
import math
from pathlib import Path
from typing import Annotated

import typer

from medseg.cli import app
from medseg.errors import EvaluationInputError, InputNotFoundError


class ResampleTarget(str, enum.Enum):
    """Grid that the prediction (and image) are resampled onto."""

    ref = "ref"


def _check_paths(pred: Path, ref: Path, image: Path | None) -> bool:
    """True for a cohort (two folders); raise when the inputs do not fit together."""
    for what, p in (("--pred", pred), ("--ref", ref), ("--image", image)):
        if p is not None and not p.exists():
            raise InputNotFoundError(f"{what} {p}: no such file or folder. Check the path.")
    cohort = pred.is_dir() and ref.is_dir()
    if pred.is_dir() != ref.is_dir():
        raise EvaluationInputError(
            f"--pred {pred} and --ref {ref}: one is a folder and the other a file. Give two "
            "files (one case) or two folders of case files paired by name (a cohort).")
    if cohort and image is not None and not image.is_dir():
        raise EvaluationInputError(
            f"--image {image} must be a folder of images named like the cases when --pred and "
            "--ref are folders.")
    return cohort


def _print_cases(cases: list[dict[str, object]], out: Path) -> None:
    """One line per case on stdout: the report folder written, or the failure."""
    for c in cases:
        if c["status"] == "ok":
            typer.echo(f"{c['case_id']}: wrote {out / str(c['dir'])}/report."
                       "{json,csv,html,pdf}")
        else:
            typer.echo(f"failed: {c['case_id']}: {c['error']} [{c['prediction']}]")


@app.command()
def evaluate(
    pred: Annotated[Path, typer.Option("--pred", help="Predicted label map, or a folder of them "
                                       "(cohort: paired with --ref by file name).")],
    ref: Annotated[Path, typer.Option("--ref", help="Reference label map, or a folder.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder for the report files.")],
    image: Annotated[Path | None, typer.Option(
        "--image", help="Image to draw the overlays on (a folder for a cohort: <case> or "
        "<case>_0000). Default: the reference mask.")] = None,
    labels: Annotated[Path | None, typer.Option(
        "--labels", help='JSON of label names, {"labels": {"1": "liver"}}. Default: names '
        "stored with the files, else label_N.")] = None,
    nsd_tolerance: Annotated[float, typer.Option(
        "--nsd-tolerance", help="Tolerance of the normalised surface Dice, in mm.")] = 2.0,
    resample_to: Annotated[ResampleTarget | None, typer.Option(
        "--resample-to", help="Resample the prediction (nearest neighbour) and the image "
        "(linear) onto the reference grid when grids differ. Without it, differing grids are "
        "an error.")] = None,
) -> None:
    """Dice, IoU, HD/HD95/ASSD/NSD and volumes per label, with JSON, CSV, HTML and PDF
    reports (overlays at the worst boundary error and the largest error volume).

    --out is written all or nothing: it must be new, empty or an earlier medseg report of the
    same kind (replaced as a whole). In a cohort, a case that fails is listed and the others
    are evaluated; the command then exits with code 2."""
    if not math.isfinite(nsd_tolerance) or nsd_tolerance < 0:
        raise EvaluationInputError(
            f"--nsd-tolerance {nsd_tolerance}: give a distance >= 0 in mm, e.g. 2.")
    target = resample_to.value if resample_to is not None else None
    from medseg.cli.pacs import resolve_all

    pred, ref, *rest = resolve_all([pred, ref, *([image] if image is not None else [])])
    image = rest[0] if rest else None  # pacs://SERVER/UID inputs: their cached series
    if _check_paths(pred, ref, image):
        from medseg.report.cohort import evaluate_cohort

        cohort = evaluate_cohort(pred, ref, out, image_dir=image, labels=labels,
                                 nsd_tolerance_mm=nsd_tolerance, resample_to=target)
        _print_cases(cohort.cases, out)
        ok = len(cohort.cases) - len(cohort.failed)
        typer.echo(f"{ok} of {len(cohort.cases)} cases evaluated; summary: {out / 'index.html'}")
        for kind, names in cohort.pairing.unpaired.items():
            if names:
                typer.echo(f"  unpaired {kind} files: {', '.join(names)}")
        if cohort.failed:
            raise EvaluationInputError(
                f"{len(cohort.failed)} of {len(cohort.cases)} cases failed ("
                + "; ".join(f"{c['case_id']}: {c['error']} [{c['prediction']}]"
                            for c in cohort.failed[:3])
                + f"). The other cases' reports and the summary were written to {out}; see "
                f"{out / 'index.html'}.")
        return
    from medseg.report.evaluate import evaluate_case, mean_dice

    report = evaluate_case(pred, ref, out, image=image, labels=labels,
                           nsd_tolerance_mm=nsd_tolerance, resample_to=target)
    for note in report.geometry["resampling"]:
        if not note.startswith("none"):
            typer.echo(f"note: {note}")
    typer.echo(f"{len(report.metrics)} labels, mean Dice {mean_dice(report):.3f}; wrote "
               f"{out / 'report.html'}, report.pdf, report.json, report.csv")
