"""The audit log in the page: a table in plain words (time, who, what, label, voxels changed)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from app.audit_view import COLUMNS, audit_rows
from app.workspace import Workspace
from tests.app.steps import open_sample_and_paint
from tests.conftest import ROOT

APP = str(ROOT / "app" / "main.py")


def test_rows_from_a_real_audit_log_are_plain_words(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    key = "case-1"
    ws.audit("jane", "open case", key, source={"kind": "sample"}, restored=False, revision=0,
             labels=[])
    ws.audit("jane", "add label", key, undo_depth=1, revision=1,
             label={"value": 1, "name": "liver", "color": [1, 2, 3]})
    ws.audit("jane", "brush", key, label="liver", plane="axial", slice=10, row=3, col=4,
             points=20, radius_mm=3.0, voxels_changed=412,
             provenance={"kind": "manual", "model": None})
    ws.audit("bob", "auto-segment", key, model={"name": "ct_organs_2d", "file": "/srv/x"},
             changed=True, modality_warning="made for CT images, but this image is MR")
    ws.audit("bob", "delete label", key, label={"value": 1, "name": "liver"}, voxels=132135)
    ws.audit("bob", "export", key, format="seg", labels=["liver"], file="ct_liver_seg.dcm")
    rows = audit_rows(ws.audit_entries(key))
    assert [r["what"] for r in rows] == ["exported", "deleted a label", "auto-segmented",
                                         "painted", "added a label", "opened the case"]
    assert all(tuple(r) == COLUMNS for r in rows)
    assert all(isinstance(v, str) and "{" not in v for r in rows for v in r.values())
    painted = rows[3]
    assert (painted["who"], painted["label"], painted["voxels changed"]) == ("jane", "liver",
                                                                               "412")
    assert painted["details"] == "axial slice 10, radius 3 mm, a stroke of 20 points"
    assert rows[1]["voxels changed"] == "132,135" and rows[1]["label"] == "liver"
    assert "another modality" in rows[2]["details"] and "/srv" not in rows[2]["details"]
    assert rows[0]["details"] == "SEG file ct_liver_seg.dcm"
    assert len(rows[0]["time (UTC)"]) == 19 and "T" not in rows[0]["time (UTC)"]


def test_audit_log_panel_in_the_page() -> None:
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.sidebar.text_input(key="annotator").input("Jane Doe").run()
    open_sample_and_paint(at, "MR abdomen, NIfTI 3 mm")
    at.radio(key="panel").set_value("Audit log").run()
    assert not at.exception
    frame = next(d.value for d in at.dataframe if "what" in d.value.columns)
    assert tuple(frame.columns) == COLUMNS
    assert list(frame["what"])[:3] == ["painted", "added a label", "opened the case"]
    assert set(frame["who"]) == {"Jane Doe"} and list(frame["label"])[:2] == ["liver", "liver"]
