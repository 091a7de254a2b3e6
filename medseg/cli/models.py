"""``medseg import-model SRC --out NAME.safetensors`` and ``medseg models``: bring your own model.

Thin commands over :mod:`medseg.models.importer` and :mod:`medseg.models.catalog`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medseg.cli import app


def _labels_text(labels: dict[int, str], limit: int = 6) -> str:
    names = [labels[k] for k in sorted(labels)]
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


@app.command("import-model")
def import_model_cmd(
    source: Annotated[Path, typer.Argument(
        help="An nnU-Net v2 model folder (Trainer__Plans__configuration, or a folder holding "
             "exactly one), e.g. a TotalSegmentator task; or a MONAI bundle folder or zip.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The bundle to write (.safetensors).")],
    fold: Annotated[list[str] | None, typer.Option(
        "--fold", help="nnU-Net: a fold to include (repeat; default every fold_N present).")
    ] = None,
    checkpoint: Annotated[str | None, typer.Option(
        help="nnU-Net: checkpoint file name (default checkpoint_final.pth, else "
             "checkpoint_best.pth).")] = None,
) -> None:
    """Convert a foreign model once into a medseg bundle (weights, recipe, label names,
    provenance); predict, the app and every other command then load it like a native model.
    Checkpoints are read without running pickled code; MONAI configs are read without running
    their expressions (see docs/models.md)."""
    from medseg.models.catalog import describe_bundle
    from medseg.models.importer import import_model

    path = import_model(source, out, folds=fold or None, checkpoint=checkpoint)
    entry = describe_bundle(path)
    prov = entry.provenance
    typer.echo(f"wrote {path}: {entry.name} ({entry.version}), {prov.get('source_format')}, "
               f"{len(entry.labels)} labels: {_labels_text(entry.labels)}; modality "
               f"{entry.modality or 'any'}")


@app.command("models")
def models_cmd(
    folders: Annotated[list[Path] | None, typer.Argument(
        help="Extra folders of .safetensors bundles to list.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document instead of text.")
                       ] = False,
) -> None:
    """List shipped and imported models (MEDSEG_MODELS_DIR and the folders given) with their
    labels, input modality, spacing and provenance."""
    from medseg.models.catalog import list_models

    entries = list_models(folders or [])
    if as_json:
        typer.echo(json.dumps([{
            "path": str(e.path), "origin": e.origin, "name": e.name, "version": e.version,
            "kind": e.kind, "labels": {str(k): v for k, v in e.labels.items()},
            "modality": e.modality, "spacing": e.spacing, "provenance": e.provenance,
            **({"error": e.error} if e.error else {})} for e in entries], indent=1))
        return
    if not entries:
        typer.echo("no models (nothing shipped; set MEDSEG_MODELS_DIR or name a folder)")
    for e in entries:
        if e.error:
            typer.echo(f"{e.path} [{e.origin}]: unreadable: {e.error}")
            continue
        prov = e.provenance
        src = f"; from {prov.get('source_format')}" if prov.get("source_format") else ""
        lic = f"; licence {prov['licence']}" if prov.get("licence") else ""
        typer.echo(f"{e.name} [{e.origin}, {e.kind}] {e.path}\n"
                   f"  version {e.version}; modality {e.modality or 'any'}; spacing "
                   f"{e.spacing or 'native'}{src}{lic}\n"
                   f"  {len(e.labels)} labels: {_labels_text(e.labels, 12)}")
