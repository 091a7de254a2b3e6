"""Conflict copies: the edits of a session whose save was refused as stale, kept for merging.

When :meth:`app.workspace.Workspace.save` refuses a save (someone else saved the case after
this session loaded it), the session's annotation is written, complete, to its own folder::

    cases/<key>/conflicts/<utc>-<annotator>/labels.nii.gz   (+ .labels.json; image grid)
    cases/<key>/conflicts/<utc>-<annotator>/state.json      the state it would have saved,
                                                            plus "conflict": {...}

The folder is built under a temporary name and renamed into place only when both files are
written (all-or-nothing). Until its user reloads the case, every further change of that
session updates the same copy (never the case). A copy can be merged into the current
annotation by label name (:func:`read_copy`, then ``merge_prediction``), or compared.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.annotation import Annotation
from app.case import Case
from app.reading import read_volume
from app.workspace import CaseSource, SaveConflictError, Workspace, WorkspaceError, utc_now
from medseg import io
from medseg.io.atomic import write_text_atomic
from medseg.volume import present_values


@dataclass(frozen=True)
class ConflictCopy:
    """One saved conflict copy: its folder and what its ``state.json`` says."""

    folder: Path
    annotator: str
    saved_utc: str
    base_revision: int
    labels: dict[int, str]
    voxels: dict[str, int]


def conflicts_dir(ws: Workspace, key: str) -> Path:
    return ws.case_dir(key) / "conflicts"


def _write_files(folder: Path, state: dict[str, Any], case: Case, ann: Annotation) -> None:
    io.write(ann.to_volume(case.image_lps, case.image), folder / "labels.nii.gz",
             reference=case.image)
    write_text_atomic(folder / "state.json", json.dumps(state, indent=1) + "\n")


def write_copy(ws: Workspace, source: CaseSource, case: Case, ann: Annotation, *,
               annotator: str, conflict: SaveConflictError, folder: Path | None = None) -> Path:
    """Keep ``ann`` as a conflict copy of ``source``'s case; returns its folder.

    A new copy gets a new folder (``<utc>-<annotator>``), renamed into place complete; with
    ``folder`` (this session's existing copy) its two files are replaced atomically.
    """
    state = ws.build_state(source, case, ann, annotator=annotator,
                           old=ws.read_state(source.key) or {}, revision=conflict.base)
    state["conflict"] = {"base_revision": conflict.base, "saved_revision": conflict.current,
                         "saved_by": conflict.saved_by, "saved_utc": conflict.saved_utc,
                         "kept_utc": utc_now()}
    if folder is not None:
        _write_files(folder, state, case, ann)
        return folder
    parent = conflicts_dir(ws, source.key)
    parent.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "_", annotator).strip("_")[:40] or "unknown"
    stamp = utc_now().replace("-", "").replace(":", "")
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=parent))
    try:
        _write_files(tmp, state, case, ann)
        for n in range(100):
            target = parent / (f"{stamp}-{slug}" + (f"-{n}" if n else ""))
            if not target.exists():
                tmp.rename(target)
                return target
        raise WorkspaceError(f"{parent}: could not name a new conflict copy; clean the folder.")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def list_copies(ws: Workspace, key: str) -> list[ConflictCopy]:
    """The conflict copies of case ``key``, newest first (unreadable ones are skipped)."""
    parent = conflicts_dir(ws, key)
    if not parent.is_dir():
        return []
    out = []
    for folder in sorted(parent.iterdir(), reverse=True):
        if folder.name.startswith(".") or not (folder / "labels.nii.gz").is_file():
            continue
        try:
            state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
            out.append(ConflictCopy(
                folder, str(state.get("annotator", "unknown")),
                str(state["conflict"]["kept_utc"]), int(state["conflict"]["base_revision"]),
                {int(d["value"]): str(d["name"]) for d in state.get("labels", [])},
                {str(k): int(v) for k, v in state.get("voxels", {}).items()}))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def read_copy(ws: Workspace, key: str, copy: ConflictCopy, case: Case
              ) -> tuple[np.ndarray, dict[int, str]]:
    """A copy's label map on the display grid (``[i, j, k]`` LPS, like ``Annotation.array``)
    and its label names, for merging into the annotation by name."""
    vol = read_volume(copy.folder / "labels.nii.gz", (conflicts_dir(ws, key),), label=True)
    arr = np.asarray(vol.conform_to(case.image_lps).array)
    present = set(present_values(arr))
    return arr, {v: n for v, n in copy.labels.items() if v in present}
