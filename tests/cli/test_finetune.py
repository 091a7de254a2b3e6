"""``medseg finetune`` through the CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from medseg.cli import main
from medseg.models.promptable import load_promptable

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
DS = ROOT / "data_samples"


def _config(tmp_path: Path) -> Path:
    cfg = {"model": {"backend": "lite", "arch": {
        "image_size": 64, "embed_dim": 32, "widths": [8, 16, 16, 32], "attn_heads": 2,
        "decoder_mlp_dim": 64, "decoder_heads": 2}},
        "data": {"min_area": 20, "exclude": ["liver"], "sources": [
            {"image": str(DS / "dcmqi/ct-3slice"),
             "label": str(DS / "dcmqi/liver_spine_seg.nrrd"), "modality": "CT"}]},
        "train": {"output_dir": str(tmp_path / "run"), "iterations": 50, "batch_size": 2}}
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_finetune_cli_with_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["finetune", "--config", str(_config(tmp_path)), "--set", "train.iterations=2",
               "--set", "train.log_every=1"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "finetuned lite: 2 iteration(s)" in out
    ckpt = tmp_path / "run/lite_sam.safetensors"
    assert ckpt.is_file() and (tmp_path / "run/lite_sam.json").is_file()
    model = load_promptable(ckpt)
    assert model.recipe.image_size == 64 and model.name == "medseg-lite-sam"
    assert model.version.startswith("ft-")  # the training config's hash names the weights
    assert '"iteration": 2' in (tmp_path / "run/train_log.jsonl").read_text()


@pytest.mark.parametrize(("override", "message"), [
    ("train.iteration=5", "unknown key 'train.iteration'"),
    ("train.batch_size=0", "'train.batch_size'"),
    ("model.backend=sam", "needs model.checkpoint"),
    ("data.sources=[]", "'data.sources'"),
    ("data.exclude=[liver, thoracic_spine]", "no slice has a structure"),
])
def test_finetune_cli_bad_config_is_one_clear_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, message: str) -> None:
    rc = main(["finetune", "--config", str(_config(tmp_path)), "--set", override])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err


def test_finetune_cli_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["finetune", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_the_finetune_templates_validate() -> None:
    from medseg.engine.prompt_config import load_finetune_config

    lite = load_finetune_config(ROOT / "configs/lite_sam_finetune.yaml")
    assert lite.model.checkpoint is not None and lite.train.freeze_image_encoder
    assert not lite.train.propagate_mask_prompt  # propagation steps as the runtime prompts
    medsam = load_finetune_config(ROOT / "configs/medsam_finetune.yaml")
    assert medsam.train.freeze_prompt_encoder and medsam.model.backend == "sam"
