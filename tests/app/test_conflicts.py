"""No lost update: two sessions on one case, saves as a compare-and-swap, conflict copies."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.annotation import Annotation
from app.case import Case
from app.conflicts import list_copies, read_copy
from app.workspace import SaveConflictError, Workspace, sample_source
from tests.conftest import ROOT, make_volume

APP = str(ROOT / "app" / "main.py")
DCMQI = "CT 3 slices + liver (dcmqi)"


def _session(who: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.text_input(key="annotator").input(who).run()
    at.sidebar.selectbox(key="sample").select(DCMQI).run()
    at.sidebar.button(key="open_sample").click().run()
    assert not at.exception
    return at


def _stroke(at: AppTest, row: int, col: int) -> np.ndarray:
    """Brush at (row, col) of the axial edit plane; returns the voxels it added (LPS grid)."""
    before = at.session_state["ann"].array.copy()
    at.number_input(key="brush_row").set_value(row)
    at.number_input(key="brush_col").set_value(col)
    at.button(key="brush_apply").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    added = (at.session_state["ann"].array == 1) & (before == 0)
    assert added.sum() > 20
    return added


def _saved(ws: Path, at: AppTest) -> tuple[np.ndarray, dict[str, object]]:
    key = at.session_state["case_source"].key
    ann, _ = Workspace(ws).restore(key, at.session_state["case"])
    assert ann is not None
    return ann.array, json.loads((ws / "cases" / key / "state.json").read_text())


def test_two_sessions_on_one_case_lose_no_edit(app_workspace: Path) -> None:
    ada = _session("Ada")
    ada.selectbox(key="new_label_pick").set_value("liver")
    ada.button(key="add_label").click().run()
    ada_1 = _stroke(ada, 200, 260)
    bob = _session("Bob")  # opens the case as Ada saved it (revision 2)
    assert bob.session_state["revision"] == 2 and (bob.session_state["ann"].array == 1).sum()
    ada_2 = _stroke(ada, 300, 260)  # revision 3
    bob_1 = bob_stroke = _stroke(bob, 100, 100)  # from revision 2: refused, kept as a copy
    (warning,) = [w.value for w in bob.warning]
    assert "**Ada saved this case**" in warning and "version 3" in warning
    saved, state = _saved(app_workspace, ada)
    assert state["revision"] == 3 and state["annotator"] == "Ada"
    assert saved[ada_1 | ada_2].all() and not saved[bob_1].any()  # Ada's work stands
    key = ada.session_state["case_source"].key
    ws = Workspace(app_workspace)
    (copy,) = list_copies(ws, key)
    assert copy.annotator == "Bob" and copy.base_revision == 2
    assert str(copy.folder) in warning
    kept, _ = read_copy(ws, key, copy, bob.session_state["case"])
    assert (kept[bob_1] == 1).all() and (kept[ada_1] == 1).all() and not kept[ada_2].any()
    bob_2 = _stroke(bob, 120, 100)  # still stale: the same copy is updated, not the case
    (copy,) = list_copies(ws, key)
    kept, _ = read_copy(ws, key, copy, bob.session_state["case"])
    assert (kept[bob_1 | bob_2] == 1).all() and _saved(app_workspace, ada)[1]["revision"] == 3
    # reload: Bob gets Ada's version and an empty local history, then merges his copy
    bob.button(key="reload_case").click().run()
    assert not bob.warning and bob.session_state["revision"] == 3
    ann: Annotation = bob.session_state["ann"]
    assert ann.array[ada_1 | ada_2].all() and not ann.array[bob_stroke].any()
    bob.button(key=f"merge_copy_{copy.folder.name}").click().run()
    assert not bob.exception and not bob.error and bob.session_state["revision"] == 4
    saved, state = _saved(app_workspace, bob)
    assert saved[ada_1 | ada_2 | bob_1 | bob_2].all() and state["annotator"] == "Bob"
    # and now Ada is the stale one: her next stroke is refused, Bob's merge stays
    ada_3 = _stroke(ada, 250, 200)
    assert any("**Bob saved this case**" in w.value for w in ada.warning)
    saved, state = _saved(app_workspace, ada)
    assert state["revision"] == 4 and not saved[ada_3 & ~(ada_1 | ada_2)].any()
    assert len(list_copies(ws, key)) == 2
    actions = [json.loads(x) for x in (app_workspace / "audit.jsonl").read_text().splitlines()]
    refused = [e for e in actions if "refused_stale_save" in e]
    assert [e["annotator"] for e in refused] == ["Bob", "Bob", "Ada"]


def _case_and_annotation(seed: int) -> tuple[Case, Annotation]:
    case = Case("oblique", make_volume("oblique"))
    ann = Annotation.empty(case.image_lps.shape)
    value = ann.add_label("liver").value
    mask = np.zeros(ann.array.shape, bool)
    mask[seed % 10: seed % 10 + 5, 2:6, 1:3] = True
    ann.set_voxels(mask, value, "paint")
    return case, ann


ROUNDS, RACERS = 5, 3


def _racer(ws: str, n: int, barrier: object, out: object) -> None:
    """In each round, save from the round's revision at the same moment as the others."""
    case, ann = _case_and_annotation(n)
    for round_ in range(ROUNDS):
        barrier.wait()  # type: ignore[attr-defined]
        try:
            rev = Workspace(Path(ws)).save(sample_source("oblique", None), case, ann,
                                           annotator=f"p{n}", expected_revision=round_)
            out.put((round_, "saved", n, rev))  # type: ignore[attr-defined]
        except SaveConflictError as exc:
            out.put((round_, "refused", n, exc.current))  # type: ignore[attr-defined]
        barrier.wait()  # type: ignore[attr-defined]  # the round is over for everyone


def test_concurrent_saves_from_one_revision_let_exactly_one_through(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(RACERS), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(str(tmp_path), n, barrier, out))
             for n in range(RACERS)]
    for p in procs:
        p.start()
    results = [out.get(timeout=180) for _ in range(ROUNDS * RACERS)]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    for round_ in range(ROUNDS):
        saved = [r for r in results if r[0] == round_ and r[1] == "saved"]
        refused = [r for r in results if r[0] == round_ and r[1] == "refused"]
        assert len(saved) == 1 and saved[0][3] == round_ + 1, results
        assert len(refused) == RACERS - 1 and {r[3] for r in refused} <= {round_, round_ + 1}
    key = sample_source("oblique", None).key
    state = json.loads((tmp_path / "cases" / key / "state.json").read_text())
    assert state["revision"] == ROUNDS


def test_a_save_without_a_revision_is_unconditional_and_restore_gives_the_revision(
        tmp_path: Path) -> None:
    case, ann = _case_and_annotation(0)
    ws, src = Workspace(tmp_path), sample_source("oblique", None)
    assert ws.restore(src.key, case) == (None, 0)
    assert ws.save(src, case, ann, annotator="a") == 1
    assert ws.save(src, case, ann, annotator="a", expected_revision=1) == 2
    with pytest.raises(SaveConflictError, match="a saved this case .*version 2.*version 1"):
        ws.save(src, case, ann, annotator="b", expected_revision=1)
    ws.set_status(src.key, "done")
    restored, revision = ws.restore(src.key, case)
    assert revision == 3 and restored is not None
    np.testing.assert_array_equal(restored.array, ann.array)
