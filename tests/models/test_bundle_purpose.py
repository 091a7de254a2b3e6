"""What a model is for: modality and body region in the bundle, and the mismatch check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open

from medseg import io
from medseg.modality import ModalityDecision, decide_modality
from medseg.models.bundle import modality_mismatch as mismatch
from medseg.models.bundle import (
    read_bundle_meta,
    resolve_bundle,
    save_bundle,
)
from tests.engine.fixtures import random_bundle

ROOT = Path(__file__).resolve().parents[2]
MR = ROOT / "data_samples/totalsegmentator/example_mr_sm.nii.gz"
CT = ROOT / "data_samples/totalsegmentator/example_ct_sm.nii.gz"


def test_shipped_default_model_says_ct_abdomen() -> None:
    meta = read_bundle_meta(resolve_bundle("default"))
    assert (meta.modality, meta.body_region) == ("CT", "abdomen")
    assert meta.made_for() == "CT abdomen"


def test_ct_model_on_the_mr_sample_is_a_mismatch_and_on_the_ct_sample_not() -> None:
    meta = read_bundle_meta(resolve_bundle("default"))
    on_mr = mismatch(meta, decide_modality(io.read(MR)), "ct_organs_2d")
    assert on_mr is not None and on_mr.startswith("ct_organs_2d was made for CT abdomen images")
    assert "not CT" in on_mr and "\n" not in on_mr
    assert mismatch(meta, decide_modality(io.read(CT))) is None


@pytest.mark.parametrize(("model", "image", "warned"), [
    ("CT", ModalityDecision("MR", "header"), True),
    ("CT", ModalityDecision(None, "data"), True),       # unknown = not CT
    ("MR", ModalityDecision(None, "data"), False),      # unknown may be MR: cannot tell
    ("MR", ModalityDecision("CT", "data"), True),
    ("mri", ModalityDecision("MR", "override"), False),  # names normalised
    (None, ModalityDecision("PT", "header"), False),     # the model names no modality
])
def test_mismatch_rules(tmp_path: Path, model: str | None, image: ModalityDecision,
                        warned: bool) -> None:
    meta = read_bundle_meta(random_bundle(tmp_path / "m.safetensors", modality=model))
    assert (mismatch(meta, image) is not None) is warned


def test_body_region_round_trips_and_is_left_out_when_unset(tmp_path: Path) -> None:
    import torch

    from medseg.models.bundle import load_bundle

    plain = random_bundle(tmp_path / "plain.safetensors")
    with safe_open(str(plain), framework="pt") as fh:
        assert "body_region" not in json.loads(fh.metadata()["medseg"])  # old readers
    net, meta = load_bundle(plain)
    regional = save_bundle(tmp_path / "r.safetensors", net,
                           meta.model_copy(update={"body_region": "head"}))
    again = read_bundle_meta(regional)
    assert again.body_region == "head" and again.made_for() == "CT head"
    net2, _ = load_bundle(regional)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                  net2.state_dict().values(), strict=True))
