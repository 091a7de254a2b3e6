"""Dataset mode: the cases under a folder inside the data roots (found by
:func:`medseg.data.discovery.discover`: label maps are references, collection folders are
walked), each case's status from the workspace, and export of the annotated set as a
Decathlon dataset ``medseg train`` reads.

Export layout (``<workspace>/datasets/<name>/``)::

    dataset.json            {"name", "modality": {"0": ...}, "labels": {"0": "background",
                             "1": ...}, "numTraining", "training": [{"image", "label"}]}
    imagesTr/<case>.nii.gz  the image (exact copy of the source grid, NIfTI)
    labelsTr/<case>.nii.gz  the annotation, labels renumbered 1..N by name across cases
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import streamlit as st

from app import session
from app.reading import read_volume
from app.settings import AppSettings
from app.sources import SAMPLES, resolve_in_roots
from app.workspace import CaseSource, Workspace, WorkspaceError, sample_source, server_source
from medseg import io
from medseg.data.discovery import FoundCase, discover
from medseg.errors import MedsegError
from medseg.io.atomic import write_text_atomic


@dataclass(frozen=True)
class DatasetCase:
    """A discovered case: ``path`` the image (file or DICOM folder), ``name`` its path in
    the cases folder, ``reference`` its best label map (or DICOM-SEG/RTSTRUCT), ``source``
    how the app opens it (the same workspace key however the case is opened)."""

    path: Path
    source: CaseSource
    status: str
    name: str = ""
    reference: Path | None = None


def source_for(path: Path, series: str | None = None, reference: Path | None = None
               ) -> CaseSource:
    """The case source of an image on the server. A bundled sample's image gets the
    sample's source, so a case opened from *Sample*, from a server folder or in dataset
    mode has one workspace key (one annotation, one status); any other path its server
    source, with ``reference`` recorded."""
    resolved = path.resolve()
    for sample in SAMPLES:
        if series is None and sample.image.resolve() == resolved:
            return sample_source(sample.name, sample.labels)
    src = server_source(path, series)
    return replace(src, reference=str(reference)) if reference is not None else src


def list_cases(folder: str | Path, roots: tuple[Path, ...], ws: Workspace) -> list[DatasetCase]:
    """The cases under ``folder`` (inside ``roots``) found by
    :func:`medseg.data.discovery.discover` (label maps are references, not cases; collection
    folders are walked, not listed), each with its status in the workspace."""
    base = resolve_in_roots(folder, roots)
    if not base.is_dir():
        raise WorkspaceError(f"{folder}: not a folder inside the data roots.")
    out = []
    for c in _cases(str(base), tuple(str(r) for r in roots), _tree_stamp(base)):
        src = source_for(c.image, c.series, c.reference)
        out.append(DatasetCase(c.image, src, ws.status(src.key), c.name, c.reference))
    return out


def _tree_stamp(base: Path, depth: int = 5) -> tuple[tuple[str, int], ...]:
    """Modification times of ``base`` and its folders (a file added, removed or renamed
    anywhere changes its folder's): the cache key of a discovery."""
    out, todo = [], [(base, 0)]
    while todo:
        folder, level = todo.pop()
        try:
            out.append((str(folder), folder.stat().st_mtime_ns))
            subs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        except OSError:
            continue
        todo += [(p, level + 1) for p in subs if level < depth]
    return tuple(sorted(out))


@st.cache_data(max_entries=8, show_spinner=False)
def _cases(base: str, roots: tuple[str, ...], stamp: tuple[tuple[str, int], ...]
           ) -> list[FoundCase]:
    """:func:`medseg.data.discovery.discover` once per folder state (``stamp``): the page
    reruns on every click, the discovery reads headers."""
    del stamp  # part of the cache key only
    return discover(base, [Path(r) for r in roots]).cases


def next_case(cases: list[DatasetCase], current: str | None) -> DatasetCase | None:
    """The first not-done case after ``current`` (wrapping round), else None."""
    keys = [c.source.key for c in cases]
    start = keys.index(current) + 1 if current in keys else 0
    for c in cases[start:] + cases[:start]:
        if c.status != "done" and c.source.key != current:
            return c
    return None


def export_decathlon(cases: list[DatasetCase], ws: Workspace, out: Path, name: str,
                     include_in_progress: bool = False, *, roots: tuple[Path, ...]) -> Path:
    """Write the annotated cases as a Decathlon dataset; returns ``dataset.json``'s path.

    Images are read only inside ``roots`` (the data roots), saved labels only inside their
    workspace case folder.

    Label values are renumbered 1..N consistently across cases by label name (first seen
    first), as ``medseg train`` requires.
    """
    wanted = ("done", "in progress") if include_in_progress else ("done",)
    chosen = [c for c in cases if c.status in wanted]
    if not chosen:
        raise WorkspaceError(f"No case is marked {' or '.join(wanted)}; mark annotated cases "
                             "done before exporting the dataset.")
    names: list[str] = []
    states = {}
    for c in chosen:
        state = ws.read_state(c.source.key) or {}
        states[c.source.key] = state
        names += [d["name"] for d in state.get("labels", []) if d["name"] not in names]
    value_of = {n: i + 1 for i, n in enumerate(names)}
    training, modality = [], None
    for c in chosen:
        cid = c.source.key
        image = read_volume(c.path, roots, series=c.source.series, label=False)
        modality = modality or image.modality
        saved = read_volume(ws.labels_path(cid), (ws.case_dir(cid),),
                            label=True).conform_to(image)
        arr = np.zeros(image.shape, dtype=np.uint8 if len(names) < 256 else np.uint16)
        for d in states[cid].get("labels", []):
            arr[np.asarray(saved.array) == d["value"]] = value_of[d["name"]]
        io.write(image, out / "imagesTr" / f"{cid}.nii.gz")
        io.write(image.with_array(arr, labels={v: n for n, v in value_of.items()}),
                 out / "labelsTr" / f"{cid}.nii.gz", reference=image)
        training.append({"image": f"./imagesTr/{cid}.nii.gz", "label": f"./labelsTr/{cid}.nii.gz"})
    ds = {"name": name, "description": "Annotated with the medseg app",
          "modality": {"0": modality or "CT"},
          "labels": {"0": "background", **{str(v): n for n, v in value_of.items()}},
          "numTraining": len(training), "training": training}
    write_text_atomic(out / "dataset.json", json.dumps(ds, indent=1) + "\n")
    return out / "dataset.json"


def dataset_panel(settings: AppSettings) -> None:
    ws = session.workspace(settings)
    folder = st.text_input("Cases folder (inside the data folders)",
                           value=str(settings.data_roots[0]), key="dataset_folder")
    try:
        cases = list_cases(folder, settings.data_roots, ws)
    except MedsegError as exc:  # the roots check
        st.error(str(exc))
        return
    if not cases:
        st.info("No cases in this folder: no image file or DICOM series (label maps such as "
                "*_seg.nii.gz are references, not cases).")
        return
    cur = st.session_state.get("case_source")
    cur_key = cur.key if cur is not None else None
    st.dataframe([{"case": c.name or c.path.name, "reference": c.reference.name
                   if c.reference else "", "status": c.status,
                   "open": "◀" if c.source.key == cur_key else ""} for c in cases],
                 hide_index=True, key="dataset_table")
    done = sum(c.status == "done" for c in cases)
    st.caption(f"{done} of {len(cases)} done")
    c1, c2, c3 = st.columns(3)
    if cur_key in [c.source.key for c in cases] and c1.button("Mark this case done",
                                                              key="mark_done"):
        session.commit(settings, "mark done", status="done")
        st.rerun()
    nxt = next_case(cases, cur_key)
    if nxt is not None and c2.button(f"Next case: {nxt.path.name}", key="next_case"):
        session.open_source(nxt.source, settings)
        st.rerun()
    name = c3.text_input("Dataset name", value="medseg_annotations", key="dataset_name")
    partial = st.checkbox("Include cases still in progress", value=False, key="dataset_partial")
    if st.button("Export dataset", key="export_dataset"):
        safe = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name) or "dataset"
        try:
            path = export_decathlon(cases, ws, settings.workspace / "datasets" / safe, safe,
                                    partial, roots=settings.data_roots)
        except MedsegError as exc:
            st.error(str(exc))
            return
        ws.audit(session.annotator(), "export dataset", None, path=str(path))
        st.success(f"Wrote {path}. Train with: medseg train --config <yaml> "
                   f"--set data.root={path}")
