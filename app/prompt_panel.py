"""Prompt panel: boxes and clicks on the edit plane answered by a promptable model, 3D
propagation with per-slice confidence, accept/reject.

The panel is a thin caller of :class:`app.prompt_state.PromptState` (typed, kept in
``st.session_state["prompt"]``), which works on the LPS display volume (``Case.image_lps``)
sliced along the edit plane's axis, with the case's one modality decision
(:func:`app.session.modality`). A displayed pixel maps to a session ``(x, y)`` by dropping
that axis from :func:`app.render.display_to_voxel`. The proposal lives in the case's
annotation (drawn as a yellow outline); every prompt, propagation, accept and reject is one
edit of it, undone by the page's one Undo.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from app import render, session
from app.annotation import Annotation
from app.prompt_state import PromptState
from app.settings import AppSettings
from app.viewer import Click
from medseg.errors import MedsegError
from medseg.models.promptable import LITE_STEM


def model_source() -> str | None:
    """``"lite"`` when the shipped lite weights exist, else ``MEDSEG_PROMPT_MODEL``."""
    if LITE_STEM.with_suffix(".safetensors").is_file():
        return "lite"
    env = os.environ.get("MEDSEG_PROMPT_MODEL")
    return env if env and Path(env).is_file() else None


def unavailable_reason() -> str | None:
    if model_source() is None:
        return (f"no promptable model is installed ({LITE_STEM}.safetensors is missing and "
                "MEDSEG_PROMPT_MODEL does not name a SAM/MedSAM checkpoint)")
    return None


@st.cache_resource(max_entries=1, show_spinner="Loading the promptable model")
def load_model(source: str) -> Any:
    from medseg.models.promptable import load_promptable

    return load_promptable(source, device="cpu")


def state(plane: str) -> PromptState:
    """The prompt state of the open case, this plane's axis and the modality decision
    (rebuilt when any of them changes)."""
    case, source, _ = session.current()
    axis, override = render.plane_axis(plane), session.modality_override()
    st_ = st.session_state.get("prompt")
    if not isinstance(st_, PromptState) or not st_.matches(source.key, axis, override):
        st_ = PromptState.open(load_model(model_source() or "lite"), source.key, case.image_lps,
                               axis, override)
        st.session_state["prompt"] = st_
    return st_


def prefetch(plane: str, index: int) -> None:
    """Embed the displayed slice before the user prompts on it (the model's image encoder
    runs once per slice; a box or click then only runs the light prompt decoder)."""
    st_ = state(plane)
    with st.spinner(f"Preparing slice {index} for prompting (image encoder)"):
        st_.runtime.embedding(int(index))  # a cache hit when the slice was embedded before


def to_xy(shape: tuple[int, ...], plane: str, index: int, row: int, col: int
          ) -> tuple[int, int]:
    """Displayed pixel -> session slice coordinates ``(x, y)``."""
    vox = render.display_to_voxel_arrays(shape, plane, index, np.asarray(row), np.asarray(col))
    axis = render.plane_axis(plane)
    x, y = (int(v) for a, v in enumerate(vox) if a != axis)
    return x, y


def proposal(case_shape: tuple[int, ...], value: int | None) -> np.ndarray | None:
    """The annotation's proposal of label ``value`` on the display grid (or None)."""
    if value is None or "ann" not in st.session_state:
        return None
    mask = st.session_state["ann"].proposal_mask(value)
    return mask if mask is not None and mask.shape == case_shape else None


def _model_record(st_: PromptState) -> dict[str, str]:
    return {"name": st_.runtime.model.name, "version": st_.runtime.model.version}


def handle_click(settings: AppSettings, tool: str, click: Click, value: int) -> None:
    """A box drag or a point click on the edit plane -> predict on that slice."""
    case, source, ann = session.current()
    st_ = state(click.plane)
    shape, k = case.image_lps.shape, click.index
    box = point = None
    if tool == "Box":
        if click.row2 is None:
            return
        xa, ya = to_xy(shape, click.plane, k, click.row, click.col)
        xb, yb = to_xy(shape, click.plane, k, click.row2, click.col2 or click.col)
        box = (min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb))
    else:
        x, y = to_xy(shape, click.plane, k, click.row, click.col)
        point = (x, y, tool == "Point +")
    answer = st_.prompt(ann, value, k, box=box, point=point)  # type: ignore[arg-type]
    prompt = st_.prompts(ann, value).get(k)
    session.workspace(settings).audit(
        session.annotator(), "prompt", source.key, label=ann.label(value).name,
        plane=click.plane, slice=k, box=prompt.box if prompt else None,
        points=list(prompt.points) if prompt else None, score=round(answer.score, 4),
        seconds=round(answer.seconds, 4), repropagated=answer.result is not None,
        model=_model_record(st_), modality=st_.runtime.modality.describe())
    session.remember(settings)  # a refresh now comes back to this proposal


def _propagate(st_: PromptState, value: int) -> Any:
    """Run propagation in a thread, showing a progress bar fed by the slices embedded."""
    ps = st_.runtime
    n, start = ps.n_slices, ps.embeddings_computed
    out: dict[str, Any] = {}
    _, _, ann = session.current()

    def work() -> None:
        try:
            out["result"] = st_.propagate(ann, value)
        except MedsegError as exc:
            out["error"] = exc

    bar = st.progress(0.0, text="Propagating through the volume")
    th = threading.Thread(target=work, daemon=True)
    th.start()
    while th.is_alive():
        done = min(ps.embeddings_computed - start, n)
        bar.progress(done / n, text=f"Propagating: {done} of {n} slices embedded")
        th.join(0.1)
    bar.progress(1.0, text="Propagation done")
    if "error" in out:
        raise out["error"]
    return out["result"]


def prompt_panel(settings: AppSettings, active: int | None, index: int, plane: str) -> None:
    case, _, _ = session.current()
    if active is None:
        st.info("Add a label first; prompts segment the active label.")
        return
    try:
        st_ = state(plane)
    except MedsegError as exc:
        st.error(str(exc))
        return
    model = st_.runtime.model
    lo, hi = st_.runtime.window
    st.caption(f"Model {model.name} ({model.version}); modality "
               f"{st_.runtime.modality.describe()}, intensities {lo:g}..{hi:g} to the model. "
               f"Tools **Box** (drag on the {plane} view, tight around the structure: the "
               "model fills a loose box and stops at a box that cuts in), **Point +/-** "
               "(click). The proposal is outlined in yellow; after a propagation a prompt on "
               "any slice corrects it and propagates again from there. Undo (left) reverts "
               "prompts too.")
    if st_.last is not None:
        a = st_.last
        st.markdown(f"Slice {a.slice_index}: mask in **{a.seconds * 1000:.0f} ms**, predicted "
                    f"IoU {a.score:.2f}" + (" (re-propagated)" if a.result is not None else ""))
    _box_seam(settings, active, index, plane, case.image_lps.shape)
    _actions(settings, st_, active)
    _show_result(st_, active)


def _actions(settings: AppSettings, st_: PromptState, active: int) -> None:
    _, source, ann = session.current()
    name, has = ann.label(active).name, ann.proposal_mask(active) is not None
    c1, c2, c3 = st.columns(3)
    if c1.button("Propagate", key="propagate", disabled=not has):
        try:
            res = _propagate(st_, active)
        except MedsegError as exc:
            st.error(str(exc))
            return
        session.workspace(settings).audit(
            session.annotator(), "propagate", source.key, label=name, keys=res.keys,
            to_check=res.to_check, model=_model_record(st_))
        session.remember(settings)
        n = int(np.count_nonzero(np.nan_to_num(res.confidence, nan=0.0)))
        st.session_state["flash"] = (f"Propagated {name} to {n} slices: the views show the "
                                     "3D proposal (yellow outline). Accept or correct it.")
        st.rerun()  # the views above were drawn before the propagation: redraw them
    if c2.button("Accept", key="accept_prompt", disabled=not has, type="primary"):
        over = overwritten(ann, active)
        if not over:
            _accept(settings, st_, active)
        st.session_state["confirm_accept"] = active
    if st.session_state.get("confirm_accept") == active and has:
        over = overwritten(ann, active)
        st.warning("Accepting writes " + name + " over " + ", ".join(
            f"{count} voxels of {lab}" for lab, count in over.items())
            + ". Undo brings them back.")
        yes, no = st.columns(2)
        if yes.button("Accept anyway", key="accept_anyway", type="primary"):
            _accept(settings, st_, active)
        if no.button("Keep them", key="accept_cancel"):
            st.session_state.pop("confirm_accept", None)
            st.rerun()
    if c3.button("Reject", key="reject_prompt", disabled=not has):
        st_.reject(ann, active)
        session.workspace(settings).audit(session.annotator(), "reject prompt", source.key,
                                          label=name)
        session.remember(settings)
        st.rerun()


def overwritten(ann: Annotation, value: int) -> dict[str, int]:
    """Per other label name, how many of its voxels accepting ``value``'s proposal would
    overwrite (the confirmation before replacing someone's edits)."""
    mask = ann.proposal_mask(value)
    if mask is None:
        return {}
    under = ann.array[mask]
    counts = np.bincount(under, minlength=max([0, *ann.names()]) + 1)
    return {lab.name: int(counts[lab.value]) for lab in ann.labels
            if lab.value != value and counts[lab.value]}


def _accept(settings: AppSettings, st_: PromptState, active: int) -> None:
    _, _, ann = session.current()
    st.session_state.pop("confirm_accept", None)
    mask = ann.proposal_mask(active)
    over = overwritten(ann, active)
    st_.accept(ann, active)
    session.commit(settings, "accept prompt", label=ann.label(active).name,
                   voxels=int(0 if mask is None else mask.sum()), overwritten=over,
                   voxels_changed=ann.voxels_changed(), model=_model_record(st_),
                   provenance=st_.provenance.as_dict())
    st.rerun()


def _box_seam(settings: AppSettings, active: int, index: int, plane: str,
              shape: tuple[int, ...]) -> None:
    """A box typed as displayed pixel rows/columns (keyboard users, tests)."""
    rows, cols = render.extract_shape(shape, plane)
    with st.expander("Box by numbers (displayed pixel rows and columns)"):
        c = st.columns(4)
        r0 = c[0].number_input("Top row", 0, rows - 1, rows // 3, key="box_r0")
        c0 = c[1].number_input("Left column", 0, cols - 1, cols // 3, key="box_c0")
        r1 = c[2].number_input("Bottom row", 0, rows - 1, 2 * rows // 3, key="box_r1")
        c1 = c[3].number_input("Right column", 0, cols - 1, 2 * cols // 3, key="box_c1")
        if st.button("Predict box", key="box_apply"):
            try:
                handle_click(settings, "Box", Click(plane, index, int(min(r0, r1)),
                                                    int(min(c0, c1)), int(max(r0, r1)),
                                                    int(max(c0, c1))), active)
            except MedsegError as exc:
                st.error(str(exc))
                return
            st.rerun()


def _to_check(st_: PromptState, value: int) -> list[int]:
    """The slices of ``value``'s propagated proposal most likely wrong, worst first
    (:func:`medseg.review.slices_to_check` on the grid the propagation ran on: the display
    volume sliced along the state's axis); computed once per propagation result."""
    from medseg.review import slices_to_check

    res = st_.results[value]
    cached = st.session_state.get("to_check")
    if cached is not None and cached[0] == id(res):
        return list(cached[1])
    case, _, ann = session.current()
    mask = ann.proposal_mask(value)
    if mask is None:
        return []
    ranked = slices_to_check(np.asarray(case.image_lps.array), mask, res.confidence, k=5,
                             keys=res.keys, axis=st_.axis, spacing=case.image_lps.spacing)
    st.session_state["to_check"] = (id(res), list(ranked))
    return list(ranked)


def _show_result(st_: PromptState, value: int) -> None:
    res = st_.results.get(value)
    _, _, ann = session.current()
    if res is None or ann.proposal_mask(value) is None:
        return
    conf = np.nan_to_num(res.confidence, nan=0.0)
    st.markdown("**Confidence per slice** (0 = no mask)")
    st.bar_chart({"confidence": conf}, height=160)
    to_check = _to_check(st_, value)
    if to_check:
        st.markdown("**Slices to check** (most likely wrong first): "
                    + ", ".join(str(k) for k in to_check))
        cols = st.columns(min(len(to_check), 6))
        for col, k in zip(cols, to_check, strict=False):
            if col.button(f"Go to {k}", key=f"goto_{k}"):
                cur = list(st.session_state["cursor"])
                cur[st_.axis] = int(k)
                st.session_state["pending_cursor"] = tuple(cur)
                st.rerun()
    for stop in res.stops:
        st.caption(f"Run from slice {stop.start} ({'+' if stop.direction > 0 else '-'}) "
                   f"stopped at {stop.slice_index}: {stop.reason}")
