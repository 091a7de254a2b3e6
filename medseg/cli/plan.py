"""``medseg plan DATASET --out configs/NAME.yaml``: a training config from a dataset fingerprint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medseg.cli import app


@app.command()
def plan(
    dataset: Annotated[Path, typer.Argument(
        help="dataset.json (Decathlon), nnU-Net raw folder, or folder with image/label folders.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Config file to write (YAML).")],
    fmt: Annotated[str, typer.Option("--format", help="decathlon, nnunet or folders.")
                   ] = "decathlon",
    modality: Annotated[str, typer.Option(help="CT or MR (decides the normalisation).")] = "CT",
    name: Annotated[str | None, typer.Option(help="Config name (default: file stem).")] = None,
    gpu_memory_gb: Annotated[float | None, typer.Option(
        help="Plan patch/batch for this much GPU memory; default: plan for the CPU.")] = None,
) -> None:
    """Fingerprint a dataset (spacing, sizes, intensities, label frequencies) and write a
    training config for it."""
    from medseg.config import DataConfig
    from medseg.errors import ConfigError
    from medseg.plan import describe, fingerprint, plan_config, write_plan

    try:
        data = DataConfig(format=fmt, root=dataset, modality=modality)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(f"--format {fmt} / --modality {modality}: {exc}") from None
    fp = fingerprint(data)
    cfg = plan_config(data, fp, name=name or out.name.split(".")[0],
                      gpu_memory_gb=gpu_memory_gb)
    write_plan(cfg, fp, out)
    typer.echo(json.dumps(describe(fp), indent=1))
    typer.echo(f"spacing {cfg.preprocess.spacing}, patch {cfg.train.patch_size}, "
               f"{cfg.model.spatial_dims}D -> {out}")
