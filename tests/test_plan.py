"""``medseg plan``: fingerprint of a real tiny dataset -> a config that loads and trains."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medseg.cli import main
from medseg.config import DataConfig, load_config
from medseg.engine.train import train
from medseg.plan import Fingerprint, _target_spacing, fingerprint, plan_config
from tests.engine.fixtures import make_dataset

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def fp_and_ds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Fingerprint, Path]:
    ds = make_dataset(tmp_path_factory.mktemp("ds"))
    return fingerprint(DataConfig(root=ds)), ds


def test_fingerprint_of_real_crops(fp_and_ds: tuple[Fingerprint, Path]) -> None:
    fp, _ = fp_and_ds
    assert fp.n_cases == 3 and fp.modality == "CT"
    assert fp.spacings == [[3.0, 3.0, 3.0]] * 3 and fp.shapes == [[48, 40, 30]] * 3
    assert -200 < fp.foreground_percentiles["50"] < 200  # soft tissue HU inside the organs
    assert sum(fp.label_fractions.values()) == pytest.approx(1.0)
    assert set(fp.label_fractions) == {"spleen", "kidney_left", "liver"}


def test_plan_rules(fp_and_ds: tuple[Fingerprint, Path]) -> None:
    fp, ds = fp_and_ds
    cfg = plan_config(DataConfig(root=ds), fp, name="p")
    assert cfg.preprocess.spacing == (3.0, 3.0, 3.0) and cfg.model.spatial_dims == 3
    assert cfg.train.patch_size == (48, 32, 16)  # median size floored to multiples of 16
    lo, hi = cfg.preprocess.intensity.window
    assert (lo, hi) == (round(fp.foreground_percentiles["0.5"], 1),
                        round(fp.foreground_percentiles["99.5"], 1))
    thin = Fingerprint(**{**fp.as_dict(), "shapes": [[48, 40, 8]] * 3})
    assert plan_config(DataConfig(root=ds), thin).model.spatial_dims == 2
    aniso = Fingerprint(**{**fp.as_dict(), "spacings": [[0.8, 0.8, 5.0], [0.7, 0.7, 6.0],
                                                       [0.9, 0.9, 2.5]]})
    sp = _target_spacing(aniso)
    assert sp[:2] == [0.8, 0.8] and sp[2] == pytest.approx(2.5 + 0.2 * 2.5, abs=1e-6)


def test_plan_cli_writes_a_config_that_trains(fp_and_ds: tuple[Fingerprint, Path],
                                              tmp_path: Path) -> None:
    _, ds = fp_and_ds
    out = tmp_path / "planned.yaml"
    assert main(["plan", str(ds), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# planned by `medseg plan`") and "label_fractions" in text
    cfg = load_config(out, [f"train.output_dir={tmp_path / 'run'}", "train.epochs=1",
                            "train.iterations_per_epoch=1", "train.batch_size=1",
                            "model.kwargs={channels: [4, 8, 16], strides: [2, 2]}"])
    assert cfg.name == "planned"
    res = train(cfg, progress=False)
    assert res.best_bundle.is_file()
    assert main(["plan", str(ds), "--out", str(out), "--format", "dicom"]) == 2
