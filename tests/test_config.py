"""Config loading, validation messages and dotted overrides."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from medseg.config import (
    MedsegConfig,
    apply_overrides,
    config_hash,
    load_config,
    parse_config,
    read_yaml,
)
from medseg.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
#: The training configs (configs/ also holds other commands' configs, e.g. medseg finetune).
CONFIGS = [ROOT / "configs" / f"{n}.yaml" for n in ("ct_organs_3d", "unet_2d", "mri_tumour",
                                                     "demo")]
#: every config a user runs: ``medseg train`` configs and ``medseg finetune`` configs
FINETUNE = ["lite_sam_finetune.yaml", "medsam_finetune.yaml",
            *(f"lite_sam/{n}.yaml" for n in ("01_scratch", "02_box_jitter", "03_roi_decoder",
                                              "04_propagation_steps", "05_intensity_curves",
                                              "06_gpu_encoder", "07_gpu_batch64",
                                              "08_gpu_half_lr", "10_lesions"))]


def _raw(**extra: object) -> dict:
    raw: dict = {"data": {"root": "ds/dataset.json"}}
    raw.update(extra)
    return raw


def test_shipped_configs_validate() -> None:
    for path in CONFIGS:
        cfg = load_config(path)
        assert isinstance(cfg, MedsegConfig)
        assert len(cfg.roi_size) == cfg.model.spatial_dims
    assert load_config(ROOT / "configs/unet_2d.yaml").preprocess.spacing == (1.0, 1.0, None)


def test_configs_holds_only_configs_that_load() -> None:
    """configs/ is what users run: each file loads under ``medseg train --config`` or
    ``medseg finetune --config``, and nothing else is there (candidate and rejected configs
    live in bench/experiments/)."""
    from medseg.engine.prompt_config import FinetuneConfig, load_finetune_config

    found = sorted(str(p.relative_to(ROOT / "configs"))
                   for p in (ROOT / "configs").rglob("*") if p.is_file())
    assert found == sorted([p.name for p in CONFIGS] + ["brats_wt.yaml", *FINETUNE])
    for name in found:
        path = ROOT / "configs" / name
        if name in FINETUNE:
            assert isinstance(load_finetune_config(path), FinetuneConfig), name
        else:
            assert isinstance(load_config(path), MedsegConfig), name


def test_the_lite_chain_runs_stage_after_stage_and_never_trains_on_held_out_data() -> None:
    """Each stage of configs/lite_sam/ starts from the previous stage's output, and none
    samples the held-out kidneys or reads BRATS / brain2 / breast1."""
    from medseg.engine.prompt_config import load_finetune_config

    chain = [load_finetune_config(ROOT / "configs" / n) for n in FINETUNE[2:]]
    assert chain[0].model.checkpoint is None
    for prev, cfg in itertools.pairwise(chain):
        assert cfg.model.checkpoint == prev.train.output_dir / "lite_sam.safetensors"
    for cfg in chain:
        assert {"kidney_left", "kidney_right"} <= set(cfg.data.exclude)
        assert not any(t in str(s.image).lower() for s in cfg.data.sources
                       for t in ("brats", "brain2", "breast1"))
    assert chain[-1].model.recipe == {"mask_threshold": 1.0}


def test_demo_config_trains_on_the_prepared_sample_cts(tmp_path: Path) -> None:
    """configs/demo.yaml reads what `python -m medseg.demo --prepare-training runs/demo_data`
    writes: both licence-clean sample CTs with labels on their grids."""
    from medseg.data.manifest import load_dataset
    from medseg.demo import main

    cfg = load_config(ROOT / "configs/demo.yaml")
    assert Path(cfg.data.root) == Path("runs/demo_data/dataset_ab.json")
    assert main(["--prepare-training", str(tmp_path)]) == 0
    cfg = load_config(ROOT / "configs/demo.yaml", [f"data.root={tmp_path / 'dataset_ab.json'}"])
    ds = load_dataset(cfg.data)
    assert len(ds.cases) == 2 and all(c.images[0].is_file() and c.label.is_file() for c in ds.cases)


def test_unknown_key_names_itself_and_allowed_keys() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(_raw(train={"epochz": 3}), source="x.yaml")
    msg = str(exc.value)
    assert "x.yaml" in msg and "'train.epochz'" in msg
    assert "epochs" in msg and "patch_size" in msg and "allowed keys under train" in msg


def test_unknown_top_level_section() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'trainer'.*allowed keys under top level"):
        parse_config(_raw(trainer={}))


def test_wrong_type_names_key() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(_raw(train={"epochs": "many"}))
    assert "'train.epochs'" in str(exc.value) and "many" in str(exc.value)
    with pytest.raises(ConfigError, match=r"preprocess\.intensity\.mode"):
        parse_config(_raw(preprocess={"intensity": {"mode": "hounsfield"}}))


def test_unknown_network_lists_available() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(_raw(model={"name": "resnet9000"}))
    assert "resnet9000" in str(exc.value) and "unet" in str(exc.value)
    assert "swinunetr" in str(exc.value)


def test_missing_data_section() -> None:
    with pytest.raises(ConfigError, match="missing required key 'data'"):
        parse_config({})


def test_patch_dims_must_match_model() -> None:
    with pytest.raises(ConfigError, match="spatial_dims=2"):
        parse_config(_raw(model={"spatial_dims": 2}, train={"patch_size": [64, 64, 64]}))


def test_bad_orientation_and_window() -> None:
    with pytest.raises(ConfigError, match="orientation"):
        parse_config(_raw(preprocess={"orientation": "RRS"}))
    with pytest.raises(ConfigError, match="window low"):
        parse_config(_raw(preprocess={"intensity": {"window": [300, -200]}}))


def test_overrides_are_dotted_and_yaml_typed() -> None:
    raw = apply_overrides(_raw(), ["train.epochs=7", "preprocess.spacing=[1, 1, 2.5]",
                                   "train.deterministic=true", "data.n_folds=null"])
    cfg = parse_config(raw)
    assert cfg.train.epochs == 7 and cfg.train.deterministic is True
    assert cfg.preprocess.spacing == (1.0, 1.0, 2.5)
    assert _raw()["data"] == {"root": "ds/dataset.json"}  # input untouched


def test_override_errors() -> None:
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides(_raw(), ["train.epochs"])
    with pytest.raises(ConfigError, match="'train.epochs' is a value"):
        apply_overrides(_raw(train={"epochs": 3}), ["train.epochs.x=1"])
    with pytest.raises(ConfigError, match="'train.epohcs'"):
        parse_config(apply_overrides(_raw(), ["train.epohcs=1"]))


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)
    twice = tmp_path / "twice.yaml"  # PyYAML alone keeps the second block silently
    twice.write_text("train:\n  epochs: 3\ndata:\n  root: a\n  root: b\n")
    with pytest.raises(ConfigError, match=r"twice.yaml.*'root' appears twice \(lines 4 and 5\)"):
        load_config(twice)
    twice.write_text("train:\n  epochs: 3\ndata:\n  root: a\ntrain:\n  epochs: 5\n")
    with pytest.raises(ConfigError, match=r"'train' appears twice \(lines 1 and 5\)"):
        load_config(twice)
    twice.write_text("data: {root: a, root: b}\n")  # on one line
    with pytest.raises(ConfigError, match=r"'root' appears twice \(lines 1 and 1\)"):
        load_config(twice)


def test_yaml_merge_keys_and_anchors_still_load(tmp_path: Path) -> None:
    p = tmp_path / "merge.yaml"
    p.write_text("base: &b {x: 1, y: 2}\nmore: &m {z: 3}\none:\n  <<: *b\n  y: 5\n"
                 "two:\n  <<: [*b, *m]\nlist: [*b, *b]\n")
    raw = read_yaml(p)
    assert raw["one"] == {"x": 1, "y": 5} and raw["two"] == {"x": 1, "y": 2, "z": 3}
    assert raw["list"] == [{"x": 1, "y": 2}] * 2


def test_config_hash_is_stable_and_sensitive() -> None:
    a = parse_config(_raw())
    b = parse_config(_raw())
    c = parse_config(_raw(train={"epochs": 5}))
    assert config_hash(a) == config_hash(b) != config_hash(c)
    assert len(config_hash(a)) == 16
