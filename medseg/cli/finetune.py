"""``medseg finetune --config configs/medsam_finetune.yaml [--set key=value ...]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medseg.cli import app


@app.command()
def finetune(
    config: Annotated[Path, typer.Option(
        "--config", "-c", help="configs/lite_sam_finetune.yaml (the shipped lite model on your "
                               "data), configs/medsam_finetune.yaml (SAM/MedSAM), or a stage "
                               "of configs/lite_sam/ (the shipped model's training)")],
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="Dotted override, e.g. --set train.iterations=200 (repeatable).")] = None,
) -> None:
    """Train or fine-tune a promptable model (MedSAM's scheme: jittered GT boxes, Dice + BCE).

    Works for the lite backend and for SAM/MedSAM checkpoints (model.backend: sam). Under
    torchrun it trains with DDP; AMP is used only on CUDA. Writes safetensors checkpoints to
    train.output_dir.
    """
    from medseg.engine.prompt_config import load_finetune_config
    from medseg.engine.prompt_train import run_finetune

    cfg = load_finetune_config(config, overrides or [])
    result = run_finetune(cfg, log=typer.echo)
    typer.echo(f"finetuned {cfg.model.backend}: {result.iterations} iteration(s) in "
               f"{result.seconds:.0f} s; checkpoint: {result.checkpoint}")
