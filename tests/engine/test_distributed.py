"""DDP training with two gloo CPU processes matches one process with the same global batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from medseg.engine.infer import Segmenter
from medseg.engine.train import train
from tests.engine.fixtures import make_dataset, tiny_config

torch.set_num_threads(1)


def _config(dataset: Path, out: Path, batch_size: int):  # type: ignore[no-untyped-def]
    """Whole-volume patches (48x40x28 = the case) and no augmentation: no randomness in the
    data, so two ranks x 1 case and one process x 2 cases see the same global batch. SGD, not
    Adam: Adam's normalisation amplifies float noise in near-zero gradients (biases before
    instance norm)."""
    return tiny_config(dataset, out, augment={"enabled": False, "num_samples": 1},
                       optimizer={"name": "sgd", "lr": 0.05},
                       train={"patch_size": [48, 40, 28], "batch_size": batch_size,
                              "epochs": 2, "iterations_per_epoch": 1})


def _worker(rank: int, world: int, port: int, dataset: str, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    train(_config(Path(dataset), Path(out), batch_size=1), progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_single_process(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", depth=28)
    mp.spawn(_worker, args=(2, _free_port(), str(ds), str(tmp_path / "ddp")), nprocs=2,
             join=True)
    single = train(_config(ds, tmp_path / "single", batch_size=2), progress=False)
    assert single.history[-1]["step"] == 2
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == [
        "best.safetensors", "config.json", "last.pt", "last.safetensors", "metrics.csv"]
    a = Segmenter(tmp_path / "ddp/last.safetensors").net.state_dict()
    b = Segmenter(single.last_bundle).net.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    ddp_loss = [float(r["train_loss"]) for r in _csv(tmp_path / "ddp/metrics.csv")]
    one_loss = [r["train_loss"] for r in single.history]
    assert ddp_loss == pytest.approx(one_loss, rel=1e-4)
    assert ddp_loss[1] < ddp_loss[0]


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path) as fh:
        return list(csv.DictReader(fh))
