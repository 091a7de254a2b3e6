"""``medseg train --config configs/NAME.yaml [--set key=value ...] [--resume]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medseg.cli import app


@app.command()
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="configs/NAME.yaml")],
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="Dotted override, e.g. --set train.epochs=5 (repeatable).")] = None,
    resume: Annotated[bool, typer.Option(
        help="Continue from OUTPUT_DIR/last.pt (model, optimiser, scheduler, epoch, RNG).")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train a segmentation model; the best checkpoint is a bundle for `medseg predict`."""
    from medseg.config import load_config
    from medseg.engine.train import train as run_training

    cfg = load_config(config, overrides or [])
    result = run_training(cfg, resume=resume, progress=progress)
    last = result.history[-1] if result.history else {}
    typer.echo(f"trained {cfg.name}: {last.get('epoch', 0)} epoch(s), "
               f"val Dice {last.get('val_dice_mean', 'n/a')}")
    typer.echo(f"best bundle: {result.best_bundle}")
    typer.echo(f"metrics: {result.output_dir / 'metrics.csv'}")
