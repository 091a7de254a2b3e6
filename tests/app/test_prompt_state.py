"""The prompt panel's logic without Streamlit (:class:`app.prompt_state.PromptState`): masks
live in the annotation, every action is one undoable edit, corrections re-propagate."""

from __future__ import annotations

import numpy as np
import pytest

from app.annotation import Annotation
from app.prompt_state import PromptState
from medseg.engine.propagate import Propagator
from medseg.provenance import Provenance
from medseg.volume import Volume
from tests.prompt_factory import ThresholdModel

N = 40


def _volume() -> Volume:
    """48 x 48 x N, a bright disc (value 220) on slices 5..35; a 255 corner pins the window."""
    arr = np.zeros((48, 48, N), np.float32)
    arr[:5, :5, :] = 255.0
    ii, jj = np.mgrid[:48, :48]
    arr[((ii - 26) ** 2 + (jj - 28) ** 2 <= 36)[..., None] & (np.arange(N) >= 5)
        & (np.arange(N) <= 35)] = 220.0
    return Volume(arr, (0.8, 0.8, 2.5), modality="MR")


def _setup() -> tuple[PromptState, Annotation, Volume]:
    vol = _volume()
    ann = Annotation.empty(vol.shape)
    ann.add_label("disc")
    state = PromptState.open(ThresholdModel(image_size=64, level=100), "case", vol, 2)
    return state, ann, vol


BOX = (19, 21, 33, 35)


def test_a_box_proposes_one_slice_as_one_edit_and_undo_takes_it_back() -> None:
    state, ann, _ = _setup()
    answer = state.prompt(ann, 1, 20, box=BOX)
    assert answer.slice_index == 20 and answer.result is None and answer.score > 0.8
    prop = ann.proposal_mask(1)
    assert prop is not None and np.flatnonzero(prop.any(axis=(0, 1))).tolist() == [20]
    assert not ann.array.any()  # a proposal, not a label yet
    assert state.prompts(ann, 1)[20].box == BOX and len(ann.undo_stack) == 1
    assert ann.undo() == "prompt disc slice 20"
    assert ann.proposal_mask(1) is None and state.prompts(ann, 1) == {}
    assert ann.redo() == "prompt disc slice 20" and state.prompts(ann, 1)[20].box == BOX
    assert PromptState.open(ThresholdModel(64), "case", _volume(), 0).prompts(ann, 1) == {}


def test_a_click_without_a_box_refines_the_slices_proposal() -> None:
    state, ann, _ = _setup()
    state.prompt(ann, 1, 20, box=BOX)
    seen: list[dict[str, object]] = []
    inner = state.runtime.predict

    def spy(k: int, **kw: object) -> object:
        seen.append(kw)
        return inner(k, **kw)  # type: ignore[arg-type]

    state.runtime.predict = spy  # type: ignore[method-assign]
    state.prompt(ann, 1, 20, point=(26, 28, True))  # the slice has a box: box + click
    assert seen[-1]["box"] == BOX and seen[-1]["mask_input"] is None
    assert seen[-1]["points"] == [(26.0, 28.0, True)]
    state.prompt(ann, 1, 3, point=(26, 28, True))  # no box, no proposal: the click alone
    assert seen[-1]["mask_input"] is None
    state.propagate(ann, 1)
    before = ann.proposal_slice(1, 2, 22).copy()  # a propagated slice
    state.prompt(ann, 1, 22, point=(27, 28, True))  # a click refines its proposal
    assert before.any() and seen[-1]["box"] is None
    assert np.array_equal(seen[-1]["mask_input"], before)  # type: ignore[arg-type]
    assert seen[-1]["points"] == [(27.0, 28.0, True)]


def test_propagate_then_correct_re_propagates_locally_as_one_edit() -> None:
    state, ann, _ = _setup()
    state.prompt(ann, 1, 20, box=BOX)
    res = state.propagate(ann, 1)
    assert sorted(res.masks) == list(range(5, 36))
    assert np.array_equal(ann.proposal_mask(1), res.mask.array > 0)
    half = (19, 28, 33, 35)  # a box that cuts the disc: a correction on slice 30
    answer = state.prompt(ann, 1, 30, box=half)
    assert answer.result is not None and answer.result.keys == [20, 30]
    assert min(answer.result.recomputed) > 20  # local: nothing below the old key
    assert ann.undo_stack[-1].action == "correct disc slice 30 and re-propagate"
    fresh = Propagator(state.runtime).propagate({20: ann.proposal_slice(1, 2, 20),
                                                 30: ann.proposal_slice(1, 2, 30)})
    assert np.array_equal(ann.proposal_mask(1), fresh.mask.array > 0)
    ann.undo()  # back to the first propagation, in one step
    assert np.array_equal(ann.proposal_mask(1), res.mask.array > 0)
    ann.undo()  # undo the propagation: a prompt now only changes its own slice
    state.prompt(ann, 1, 30, box=half)
    assert state.last is not None and state.last.result is None
    assert np.flatnonzero(ann.proposal_mask(1).any(axis=(0, 1))).tolist() == [20, 30]


def test_accept_writes_the_label_semi_automatic_and_reject_drops_the_proposal() -> None:
    state, ann, _ = _setup()
    ann.add_label("organ")
    organ = np.zeros(ann.array.shape, bool)
    organ[20:30, 20:30, 18:22] = True
    ann.replace(np.where(organ, 2, 0).astype(np.uint16), "auto-segment",
                provenance={2: Provenance.automatic("ct_organs_2d", "0.4")})
    state.prompt(ann, 1, 20, box=BOX)
    state.propagate(ann, 1)
    proposal = ann.proposal_mask(1)
    assert state.accept(ann, 1)
    assert np.array_equal(ann.array == 1, proposal) and ann.proposal_mask(1) is None
    assert ann.provenance(1) == Provenance.semiautomatic("threshold", "fake")
    # the organ lost voxels to the accepted disc: edited by hand -> semi-automatic
    assert ann.provenance(2) == Provenance("semiautomatic", "ct_organs_2d", "0.4")
    assert ann.prompts(1) == {}
    ann.undo()
    assert ann.provenance(1).kind == "manual" and ann.provenance(2).kind == "automatic"
    assert state.reject(ann, 1) and ann.proposal_mask(1) is None
    assert ann.undo_stack[-1].action == "reject prompt disc"


def test_nothing_to_propagate_is_a_typed_error() -> None:
    from medseg.errors import PromptError

    state, ann, _ = _setup()
    with pytest.raises(PromptError, match="no key slice"):
        state.propagate(ann, 1)
