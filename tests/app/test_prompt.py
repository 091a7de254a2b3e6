"""Prompt panel with a deterministic fake promptable backend (mask = bright voxels in the box):
box -> proposal, propagation with confidence, accept into the annotation, audit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app import prompt_panel, render
from tests.conftest import ROOT
from tests.prompt_factory import ThresholdModel

APP = str(ROOT / "app" / "main.py")


@pytest.fixture()
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prompt_panel, "model_source", lambda: "fake")
    monkeypatch.setattr(prompt_panel, "load_model", lambda source: ThresholdModel(level=200.0))


def test_pixel_to_session_xy_round_trip() -> None:
    shape = (7, 5, 4)
    for plane in render.PLANES:
        axis = render.plane_axis(plane)
        rows, cols = render.extract_shape(shape, plane)
        for r, c in [(0, 0), (rows - 1, cols - 1), (1, 2)]:
            vox = render.display_to_voxel_arrays(shape, plane, 2, np.asarray(r), np.asarray(c))
            x, y = prompt_panel.to_xy(shape, plane, 2, r, c)
            assert (x, y) == tuple(int(v) for a, v in enumerate(vox) if a != axis)


def test_box_propagate_accept(fake_model: None, app_workspace: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.selectbox(key="sample").select("CT abdomen, NIfTI 3 mm").run()
    at.sidebar.button(key="open_sample").click().run()
    at.selectbox(key="new_label_pick").set_value("lesion")
    at.button(key="add_label").click().run()
    at.radio(key="panel").set_value("Prompt").run()
    assert not at.exception and not at.error
    case = at.session_state["case"]
    k = int(at.session_state["cursor"][2])
    for key, v in (("box_r0", 10), ("box_c0", 10), ("box_r1", 90), ("box_c1", 110)):
        at.number_input(key=key).set_value(v)
    at.button(key="box_apply").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    ps = at.session_state["prompt"]["session"]
    mask2d = ps.objects[1].masks[k]
    # the fake model: voxels brighter than level 200 (of 0..255 after the CT window) in the box
    assert mask2d.any() and mask2d.shape == case.image_lps.shape[:2]
    assert any("mask in" in m.value for m in at.markdown)
    at.button(key="propagate").click().run()
    res = at.session_state["prompt"]["result"]
    assert np.isfinite(res.confidence).sum() > 1 and res.keys == [k]
    assert ann_voxels(at) == 0  # nothing written before accepting
    at.button(key="accept_prompt").click().run()
    ann = at.session_state["ann"]
    proposal = ann.array == 1
    assert proposal.sum() == res.mask.array.astype(bool).sum()
    log = [json.loads(x) for x in (app_workspace / "audit.jsonl").read_text().splitlines()]
    prompt = next(e for e in log if e["action"] == "prompt")
    assert prompt["model"] == {"name": "threshold", "version": "fake"} and prompt["box"]
    assert [e["action"] for e in log][-2:] == ["propagate", "accept prompt"]


def ann_voxels(at: AppTest) -> int:
    return int((at.session_state["ann"].array > 0).sum())
