"""Prompt panel: boxes and points on the edit plane answered by a promptable model
(:class:`medseg.engine.prompt.PromptSession`), 3D propagation
(:class:`medseg.engine.propagate.Propagator`) with per-slice confidence, accept/reject.

The session works on the LPS display volume (``Case.image_lps``) sliced along the edit
plane's axis, so a displayed pixel maps to a session ``(x, y)`` by dropping that axis from
:func:`app.render.display_to_voxel`. The proposal (the session's masks of the active label)
is drawn as a yellow outline and written into the annotation only on *Accept*, as one
undoable edit.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from app import render, session
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


def _state(case_key: str, plane: str) -> dict[str, Any]:
    """The prompt session of this case and plane (rebuilt when either changes)."""
    from medseg.engine.prompt import PromptSession
    from medseg.engine.propagate import Propagator

    case, _, _ = session.current()
    axis = render.plane_axis(plane)
    st_ = st.session_state.get("prompt")
    if st_ is None or st_["case"] != case_key or st_["axis"] != axis:
        ps = PromptSession(load_model(model_source() or "lite"))
        ps.set_volume(case.image_lps, axis=axis)
        st_ = {"case": case_key, "axis": axis, "session": ps, "prop": Propagator(ps),
               "points": {}, "box": {}, "result": None, "last": None}
        st.session_state["prompt"] = st_
    return st_


def prefetch(plane: str, index: int) -> None:
    """Embed the displayed slice before the user prompts on it (the model's image encoder
    runs once per slice; a box or click then only runs the light prompt decoder)."""
    _, source, _ = session.current()
    st_ = _state(source.key, plane)
    ps = st_["session"]
    with st.spinner(f"Preparing slice {index} for prompting (image encoder)"):
        ps.embedding(int(index))  # a cache hit when the slice was embedded before


def to_xy(shape: tuple[int, ...], plane: str, index: int, row: int, col: int
          ) -> tuple[int, int]:
    """Displayed pixel -> session slice coordinates ``(x, y)``."""
    vox = render.display_to_voxel_arrays(shape, plane, index, np.asarray(row), np.asarray(col))
    axis = render.plane_axis(plane)
    x, y = (int(v) for a, v in enumerate(vox) if a != axis)
    return x, y


def proposal(case_shape: tuple[int, ...], value: int | None) -> np.ndarray | None:
    """The session's current 3D proposal of label ``value`` on the display grid (or None)."""
    st_ = st.session_state.get("prompt")
    if st_ is None or value is None or value not in st_["session"].objects:
        return None
    mask = st_["session"].object_array(value)
    return mask if mask.shape == case_shape and mask.any() else None


def handle_click(settings: AppSettings, tool: str, click: Click, value: int) -> None:
    """A box drag or a point click on the edit plane -> predict on that slice."""
    case, source, ann = session.current()
    st_ = _state(source.key, click.plane)
    ps = st_["session"]
    ps.object(value, ann.label(value).name)
    shape = case.image_lps.shape
    k = click.index
    if tool == "Box":
        if click.row2 is None:
            return
        xa, ya = to_xy(shape, click.plane, k, click.row, click.col)
        xb, yb = to_xy(shape, click.plane, k, click.row2, click.col2 or click.col)
        st_["box"][k] = (min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb))
        st_["points"][k] = []
    else:
        x, y = to_xy(shape, click.plane, k, click.row, click.col)
        st_["points"].setdefault(k, []).append((x, y, tool == "Point +"))
    box, points = st_["box"].get(k), st_["points"].get(k) or None
    t0 = time.perf_counter()
    _, score = ps.predict(k, box=box, points=points, object_id=value,
                          mask_input="previous" if points and box is None else None)
    seconds = time.perf_counter() - t0
    st_["last"] = (k, score, seconds)
    spec = ps.model.spec
    session.workspace(settings).audit(
        session.annotator(), "prompt", source.key, label=ann.label(value).name,
        plane=click.plane, slice=k, box=box, points=points, score=round(score, 4),
        seconds=round(seconds, 4), model={"name": spec.name, "version": spec.version})


def _propagate(st_: dict[str, Any], value: int) -> Any:
    """Run propagation in a thread, showing a progress bar fed by the slices embedded."""
    ps = st_["session"]
    n = ps.n_slices
    start = ps.embeddings_computed
    out: dict[str, Any] = {}

    def work() -> None:
        try:
            out["result"] = st_["prop"].propagate(value)
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
    case, source, ann = session.current()
    if active is None:
        st.info("Add a label first; prompts segment the active label.")
        return
    try:
        st_ = _state(source.key, plane)
    except MedsegError as exc:
        st.error(str(exc))
        return
    ps = st_["session"]
    spec = ps.model.spec
    st.caption(f"Model {spec.name} ({spec.version}). Tools **Box** (drag on the {plane} view, "
               "tight around the structure: the model fills a loose box and stops at a box "
               "that cuts in), **Point +/-** (click). The proposal is outlined in yellow; "
               "accept it to edit.")
    if st_["last"] is not None:
        k, score, seconds = st_["last"]
        st.markdown(f"Slice {k}: mask in **{seconds * 1000:.0f} ms**, predicted IoU {score:.2f}")
    _box_seam(settings, active, index, plane, case.image_lps.shape)
    c1, c2, c3, c4 = st.columns(4)
    has = active in ps.objects and bool(ps.objects[active].masks)
    if c1.button("Propagate", key="propagate", disabled=not has):
        try:
            res = _propagate(st_, active)
        except MedsegError as exc:
            st.error(str(exc))
            return
        st_["result"] = res
        session.workspace(settings).audit(
            session.annotator(), "propagate", source.key, label=ann.label(active).name,
            keys=res.keys, to_check=res.to_check, model={"name": spec.name,
                                                          "version": spec.version})
    if c2.button("Accept", key="accept_prompt", disabled=not has, type="primary"):
        mask = ps.object_array(active)
        ann.set_voxels(mask, active, f"accept prompt {ann.label(active).name}")
        session.commit(settings, "accept prompt", label=ann.label(active).name,
                       voxels=int(mask.sum()), model={"name": spec.name,
                                                      "version": spec.version})
        _clear(st_, active)
        st.rerun()
    if c3.button("Reject", key="reject_prompt", disabled=not has):
        _clear(st_, active)
        session.workspace(settings).audit(session.annotator(), "reject prompt", source.key,
                                          label=ann.label(active).name)
        st.rerun()
    if c4.button("Undo prompt", key="undo_prompt",
                 disabled=not (active in ps.objects and ps.objects[active].history)):
        ps.undo(active)
        st.rerun()
    _show_result(st_, active)


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


def _clear(st_: dict[str, Any], value: int) -> None:
    st_["session"].objects.pop(value, None)
    st_["points"], st_["box"], st_["result"], st_["last"] = {}, {}, None, None


def _show_result(st_: dict[str, Any], value: int) -> None:
    res = st_["result"]
    if res is None or value not in st_["session"].objects:
        return
    conf = np.nan_to_num(res.confidence, nan=0.0)
    st.markdown("**Confidence per slice** (0 = no mask)")
    st.bar_chart({"confidence": conf}, height=160)
    if res.to_check:
        st.markdown("**Slices to check** (lowest confidence): "
                    + ", ".join(str(k) for k in res.to_check))
        cols = st.columns(min(len(res.to_check), 6))
        for col, k in zip(cols, res.to_check, strict=False):
            if col.button(f"Go to {k}", key=f"goto_{k}"):
                cur = list(st.session_state["cursor"])
                cur[st_["axis"]] = int(k)
                st.session_state["pending_cursor"] = tuple(cur)
                st.rerun()
    for stop in res.stops:
        st.caption(f"Run from slice {stop.start} ({'+' if stop.direction > 0 else '-'}) "
                   f"stopped at {stop.slice_index}: {stop.reason}")
