"""``medseg train`` through the CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from medseg.cli import main
from tests.engine.fixtures import make_dataset

torch.set_num_threads(1)


def test_train_cli_with_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = make_dataset(tmp_path / "ds")
    cfg = {"name": "cli", "data": {"root": str(ds), "val_fraction": 0.0},
           "preprocess": {"spacing": [3, 3, 3]},
           "model": {"kwargs": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 0}},
           "train": {"output_dir": str(tmp_path / "run"), "epochs": 5, "batch_size": 1,
                     "patch_size": [24, 24, 16]}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc = main(["train", "--config", str(path), "--set", "train.epochs=1",
               "--set", "train.iterations_per_epoch=1", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert "best bundle" in capsys.readouterr().out
    assert (tmp_path / "run/best.safetensors").is_file()
    rc = main(["train", "--config", str(path), "--set", "train.epoch=1"])
    assert rc == 2 and "unknown key 'train.epoch'" in capsys.readouterr().err
