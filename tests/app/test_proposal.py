"""The annotation as the one store: proposal layer, provenance per label, one undo history, and
provenance through the workspace."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.annotation import Annotation
from app.case import open_case
from app.workspace import Workspace, sample_source
from medseg.engine.prompt import SlicePrompt
from medseg.provenance import Provenance
from tests.conftest import SAMPLES

AUTO = Provenance.automatic("ct_organs_2d", "0.4")
SEMI = Provenance.semiautomatic("medseg-lite-sam", "1")


def _ann() -> Annotation:
    ann = Annotation.empty((30, 20, 10))
    ann.add_label("liver")
    ann.add_label("tumour")
    return ann


def test_manual_edits_keep_manual_labels_and_make_model_labels_semi_automatic() -> None:
    ann = _ann()
    m = np.zeros(ann.array.shape, bool)
    m[5:10, 5:10, 2] = True
    ann.set_voxels(m, 1, "paint")
    assert ann.provenance(1) == Provenance()
    new = ann.array.copy()
    new[10:20, 5:15, 3:6] = 2
    ann.replace(new, "auto-segment", provenance={2: AUTO})
    assert ann.provenance(2) == AUTO and ann.provenance(1) == Provenance()
    ann.brush("axial", 4, 8, 12, 1.0, 2, True, (1.0, 1.0, 1.0))  # erase tumour voxels
    assert ann.provenance(2) == AUTO.after_edit() == Provenance("semiautomatic",
                                                               "ct_organs_2d", "0.4")
    ann.undo()
    assert ann.provenance(2) == AUTO
    ann.redo()
    assert ann.provenance(2).kind == "semiautomatic"
    ann.delete_label(2)
    assert 2 not in ann.meta.provenance and not (ann.array == 2).any()


def test_painting_over_another_label_edits_that_label_too() -> None:
    ann = _ann()
    whole = np.zeros(ann.array.shape, bool)
    whole[0:10, 0:10, 0:5] = True
    ann.set_voxels(whole, 2, "tumour by model", provenance=AUTO)
    assert ann.provenance(2) == AUTO
    part = np.zeros(ann.array.shape, bool)
    part[0:3, 0:3, 0] = True
    ann.set_voxels(part, 1, "paint liver over it")
    assert ann.provenance(1).kind == "manual" and ann.provenance(2).kind == "semiautomatic"


def test_proposals_are_undoable_edits_of_their_slices_only() -> None:
    ann = _ann()
    m = np.zeros((30, 20), bool)
    m[10:14, 5:9] = True
    prompt = {(2, 4): SlicePrompt((10.0, 5.0, 13.0, 8.0))}
    assert ann.propose(1, 2, {4: m}, prompt, "prompt liver slice 4")
    patch = ann.undo_stack[-1]
    assert [p.layer for p in patch.parts] == ["proposal"]
    assert patch.parts[0].before.size == 16  # the changed box, not the volume
    assert ann.prompts(1) == prompt and not ann.array.any()
    assert ann.propose(1, 2, {5: m}, {**prompt, (2, 5): SlicePrompt(points=((11, 6, True),))},
                       "prompt liver slice 5")
    assert np.flatnonzero(ann.proposal_mask(1).any(axis=(0, 1))).tolist() == [4, 5]
    assert not ann.propose(1, 2, {5: m}, ann.prompts(1), "same again")  # nothing changed
    ann.undo()
    assert np.flatnonzero(ann.proposal_mask(1).any(axis=(0, 1))).tolist() == [4]
    assert set(ann.prompts(1)) == {(2, 4)}
    assert ann.accept_proposal(1, SEMI, "accept")
    assert (ann.array == 1).sum() == 16 and ann.proposal_mask(1) is None
    assert ann.provenance(1) == SEMI and ann.prompts(1) == {}


def test_provenance_is_saved_and_restored_with_the_case(tmp_path: Path) -> None:
    image = SAMPLES / "totalsegmentator/example_ct_sm.nii.gz"
    case = open_case("ct", image, roots=(SAMPLES,))
    ann = Annotation.empty(case.image_lps.shape)
    ann.add_label("liver")
    ann.add_label("tumour")
    m = np.zeros(ann.array.shape, bool)
    m[40:60, 40:60, 10:12] = True
    ann.set_voxels(m, 1, "accept prompt liver", provenance=SEMI)
    ws = Workspace(tmp_path / "ws")
    source = sample_source("ct", None)
    ws.save(source, case, ann, annotator="tester")
    state = ws.read_state(source.key)
    assert state is not None and state["provenance"]["1"] == {"label": "liver", **SEMI.as_dict()}
    assert state["provenance"]["2"]["kind"] == "manual"
    back, revision = ws.restore(source.key, case)
    assert back is not None and revision == 1
    assert back.provenance(1) == SEMI and back.provenance(2) == Provenance()
