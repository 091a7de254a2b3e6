"""What the prompt panel does, without Streamlit: the typed prompt state of one case and plane.

:class:`PromptState` holds the model runtime (:class:`medseg.engine.prompt.PromptSession`,
which keeps only slice embeddings) and the propagator for one case, edit-plane axis and
modality decision. Masks live in the case's :class:`app.annotation.Annotation`: every method
below reads the proposal and its prompts from there and writes its result back as one
undoable edit, so the page has one store of masks and one Undo. The prompt panel
(:mod:`app.prompt_panel`) and the simulated annotator of ``bench/prompt_robot.py`` both call
these methods: the bench measures what the app does.

* :meth:`PromptState.prompt`: a box (replacing the slice's prompt) or a click (added to it) on
  one slice. A click without a box refines the slice's current proposal (mask prompt). When
  the label's proposal is the result of a propagation made here, the corrected slice becomes a
  key slice and the propagation is redone from it (locally) in the same edit.
* :meth:`PromptState.propagate`: from the key slices through the volume.
* :meth:`PromptState.accept` / :meth:`PromptState.reject`: the proposal into the label map
  (semi-automatic, with the model's name and version) or away.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from app.annotation import Annotation
from medseg.engine.prompt import Box, Point, PromptSession, SlicePrompt
from medseg.engine.propagate import PropagationConfig, PropagationResult, Propagator
from medseg.models.promptable import PromptModel
from medseg.provenance import Provenance
from medseg.volume import Volume


@dataclass(frozen=True)
class Answer:
    """What one prompt did: its slice, predicted IoU, seconds, and the propagation it redid."""

    slice_index: int
    score: float
    seconds: float
    result: PropagationResult | None = None


@dataclass
class PromptState:
    """Prompt runtime of one case (``case_key``), slicing ``axis`` and modality override."""

    case_key: str
    axis: int
    modality_override: str | None
    runtime: PromptSession
    propagator: Propagator
    results: dict[int, PropagationResult] = field(default_factory=dict)
    last: Answer | None = None

    @classmethod
    def open(cls, model: PromptModel, case_key: str, volume: Volume, axis: int,
             modality_override: str | None = None,
             config: PropagationConfig | None = None) -> PromptState:
        """A state for ``volume`` (the display grid of the annotation) sliced along ``axis``."""
        runtime = PromptSession(model)
        runtime.set_volume(volume, axis=axis, modality=modality_override)
        return cls(case_key, axis, modality_override, runtime, Propagator(runtime, config))

    def matches(self, case_key: str, axis: int, modality_override: str | None) -> bool:
        return (self.case_key, self.axis, self.modality_override) == \
            (case_key, axis, modality_override)

    @property
    def provenance(self) -> Provenance:
        """What an accepted proposal of this state is: semi-automatic with this model."""
        model = self.runtime.model
        return Provenance.semiautomatic(model.name, model.version)

    # ------------------------------------------------------------------ reading the store
    def prompts(self, ann: Annotation, value: int) -> dict[int, SlicePrompt]:
        """The prompts of ``value``'s proposal on this state's axis: ``slice -> prompt``."""
        return {k: p for (a, k), p in ann.prompts(value).items() if a == self.axis}

    def keys(self, ann: Annotation, value: int) -> dict[int, np.ndarray]:
        """Key slices of ``value``: prompted slices whose proposal is not empty."""
        out = {k: ann.proposal_slice(value, self.axis, k) for k in self.prompts(ann, value)}
        return {k: m for k, m in sorted(out.items()) if m.any()}

    def _propagated(self, ann: Annotation, value: int) -> bool:
        """Whether ``value``'s proposal is still this state's last propagation of it."""
        res = self.results.get(value)
        if res is None:
            return False
        got = ann.proposal_mask(value)
        want = res.mask.array > 0
        return got is not None and bool(np.array_equal(got, want))

    def _changes(self, ann: Annotation, value: int, masks: dict[int, np.ndarray]
                 ) -> dict[int, np.ndarray | None]:
        """Per slice, ``value``'s new proposal: ``masks``, and nothing on other slices."""
        current = ann.proposal_mask(value)
        other = tuple(a for a in range(3) if a != self.axis)
        present = [] if current is None else np.flatnonzero(current.any(axis=other)).tolist()
        out: dict[int, np.ndarray | None] = {int(k): None for k in present}
        out.update(masks)
        return out

    # ------------------------------------------------------------------ actions
    def prompt(self, ann: Annotation, value: int, k: int, *, box: Box | None = None,
               point: Point | None = None) -> Answer:
        """A box or a click on slice ``k`` for label ``value`` (see the module docstring)."""
        old = self.prompts(ann, value).get(int(k), SlicePrompt())
        new = old.with_box(box) if box is not None else \
            old.with_point(point) if point is not None else old
        current = ann.proposal_slice(value, self.axis, k)
        refine = new.box is None and bool(current.any())
        t0 = time.perf_counter()
        mask, score = self.runtime.predict(k, box=new.box, points=list(new.points) or None,
                                           mask_input=current if refine else None)
        prompts = {**ann.prompts(value), (self.axis, int(k)): new}
        name = ann.label(value).name
        if self._propagated(ann, value) and mask.any():
            keys = self.keys(ann, value) | {int(k): mask}
            result = self.propagator.repropagate(keys, int(k), value, name=name)
            seconds = time.perf_counter() - t0
            self.results[value] = result
            ann.propose(value, self.axis, self._changes(ann, value, result.masks), prompts,
                        f"correct {name} slice {k} and re-propagate")
        else:
            seconds = time.perf_counter() - t0
            result = None
            ann.propose(value, self.axis, {int(k): mask}, prompts, f"prompt {name} slice {k}")
        self.last = Answer(int(k), score, seconds, result)
        return self.last

    def propagate(self, ann: Annotation, value: int) -> PropagationResult:
        """Propagate ``value``'s key slices through the volume; one edit of its proposal."""
        name = ann.label(value).name
        result = self.propagator.propagate(self.keys(ann, value), value, name=name)
        self.results[value] = result
        ann.propose(value, self.axis, self._changes(ann, value, result.masks),
                    ann.prompts(value), f"propagate {name}")
        return result

    def accept(self, ann: Annotation, value: int) -> bool:
        """Write ``value``'s proposal into the label map, semi-automatic with this model."""
        self.results.pop(value, None)
        return ann.accept_proposal(value, self.provenance,
                                   f"accept prompt {ann.label(value).name}")

    def reject(self, ann: Annotation, value: int) -> bool:
        """Drop ``value``'s proposal (undoable)."""
        self.results.pop(value, None)
        return ann.clear_proposal(value, f"reject prompt {ann.label(value).name}")
