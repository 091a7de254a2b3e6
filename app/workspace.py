"""Workspace: where annotations autosave, keyed by case identity, plus the audit log.

Layout under ``MEDSEG_WORKSPACE`` (see docs/app.md)::

    audit.jsonl                    one JSON object per line: who did what, when
    uploads/<sha256[:16]>/<name>   uploaded files (so a restart can reopen them)
    cases/<key>/labels.nii.gz      the annotation on the image's exact grid (+ .labels.json)
    cases/<key>/state.json         label table, colours, case source, status, undo depth...
    cases/<key>/report/            the last comparison report
    cases/<key>/export/            the last exports

``key`` = a readable slug of the case name + the first 16 hex digits of the SHA-256 of the
case identity (sample name, resolved server path + series, or upload content hash). Every file
is written atomically (write to a temporary file, rename), labels before state.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.annotation import Annotation, LabelDef
from app.case import Case
from medseg import io
from medseg.errors import MedsegError
from medseg.io.atomic import write_text_atomic
from medseg.volume import present_values

STATE_VERSION = 1
STATUSES = ("to do", "in progress", "done")


class WorkspaceError(MedsegError):
    """The workspace folder or one of its files cannot be used."""


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class CaseSource:
    """How to reopen a case: ``kind`` is ``sample`` (``ref`` = sample name), ``server`` or
    ``upload`` (``ref`` = file path); ``identity`` is what the workspace key hashes."""

    kind: str
    name: str
    ref: str
    identity: str
    series: str | None = None
    reference: str | None = None

    @property
    def key(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9]+", "_", self.name).strip("_")[:40] or "case"
        return f"{slug}-{hashlib.sha256(self.identity.encode()).hexdigest()[:16]}"


def sample_source(name: str, reference: Path | None) -> CaseSource:
    return CaseSource("sample", name, name, f"sample:{name}",
                      reference=str(reference) if reference else None)


def server_source(path: Path, series: str | int | None = None) -> CaseSource:
    s = None if series is None else str(series)
    return CaseSource("server", path.name, str(path), f"server:{path.resolve()}:{s}", s)


def upload_source(path: Path, digest: str, series: str | int | None = None) -> CaseSource:
    s = None if series is None else str(series)
    return CaseSource("upload", path.name, str(path), f"upload:{digest}:{s}", s)


def default_annotator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Workspace:
    """One workspace folder (created on first write)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------ paths
    def case_dir(self, key: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", key):
            raise WorkspaceError(f"{key!r} is not a workspace case key.")
        return self.root / "cases" / key

    def labels_path(self, key: str) -> Path:
        return self.case_dir(key) / "labels.nii.gz"

    def state_path(self, key: str) -> Path:
        return self.case_dir(key) / "state.json"

    def upload_dir(self, digest: str) -> Path:
        return self.root / "uploads" / digest[:16]

    # ------------------------------------------------------------------ state
    def read_state(self, key: str) -> dict[str, Any] | None:
        """The saved state of a case, or None when it was never saved."""
        path = self.state_path(key)
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise WorkspaceError(f"{path}: unreadable workspace state ({exc}). Move the file "
                                 "away to start this case afresh.") from exc
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise WorkspaceError(f"{path}: not a medseg app state (version {STATE_VERSION}).")
        return state

    def status(self, key: str) -> str:
        state = self.read_state(key)
        return "to do" if state is None else str(state.get("status", "in progress"))

    def save(self, source: CaseSource, case: Case, ann: Annotation, *, annotator: str,
             status: str | None = None, extra: dict[str, Any] | None = None) -> Path:
        """Write the label map (image grid, atomically) then the state JSON."""
        key = source.key
        labels_vol = ann.to_volume(case.image_lps, case.image)
        io.write(labels_vol, self.labels_path(key), reference=case.image)
        old = self.read_state(key) or {}
        state = {
            "version": STATE_VERSION,
            "key": key,
            "source": asdict(source),
            "image_grid": {"shape": list(case.image.shape),
                           "spacing_mm": [float(s) for s in case.image.spacing],
                           "origin_lps_mm": [float(o) for o in case.image.origin]},
            "labels": [lab.as_dict() for lab in ann.labels],
            "voxels": {str(k): v for k, v in ann.voxel_counts().items()},
            "status": status or (old.get("status") if old.get("status") == "done"
                                 else "in progress"),
            "undo_depth": len(ann.undo_stack),
            "redo_depth": len(ann.redo_stack),
            "edits": ann.edits,
            "annotator": annotator,
            "created_utc": old.get("created_utc", utc_now()),
            "updated_utc": utc_now(),
            **{k: v for k, v in old.items() if k in ("model",)},
            **(extra or {}),
        }
        write_text_atomic(self.state_path(key), json.dumps(state, indent=1) + "\n")
        return self.state_path(key)

    def set_status(self, key: str, status: str) -> None:
        if status not in STATUSES:
            raise WorkspaceError(f"status must be one of {STATUSES}, got {status!r}.")
        state = self.read_state(key)
        if state is None:
            raise WorkspaceError(f"case {key} has no saved annotation yet.")
        state["status"] = status
        state["updated_utc"] = utc_now()
        write_text_atomic(self.state_path(key), json.dumps(state, indent=1) + "\n")

    def restore(self, key: str, case: Case) -> Annotation | None:
        """The saved annotation of ``case`` (label map conformed to the display grid)."""
        state = self.read_state(key)
        if state is None:
            return None
        ann = Annotation.empty(case.image_lps.shape)
        ann.labels = [LabelDef(int(d["value"]), str(d["name"]),
                               (int(d["color"][0]), int(d["color"][1]), int(d["color"][2])))
                      for d in state.get("labels", [])]
        ann.edits = int(state.get("edits", 0))
        path = self.labels_path(key)
        if path.is_file():
            vol = io.read(path, label=True)
            try:
                ann.load_volume(vol, case.image_lps)
            except MedsegError as exc:
                raise WorkspaceError(f"{path}: saved labels do not fit this image ({exc}). "
                                     "Was the source file replaced? Move the case folder away "
                                     "to start afresh.") from exc
        unknown = set(present_values(ann.array)) - {0} - set(ann.names())
        for v in sorted(unknown):  # a value without a table entry stays visible and editable
            ann.add_label(f"label_{v}", value=int(v))
        return ann

    # ------------------------------------------------------------------ audit
    def audit(self, annotator: str, action: str, case_key: str | None = None,
              **details: Any) -> dict[str, Any]:
        """Append one JSON line to ``audit.jsonl`` (append + flush + fsync: never rewritten)."""
        import os

        entry = {"time_utc": utc_now(), "annotator": annotator or "unknown", "action": action,
                 "case": case_key, **details}
        self.root.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, default=str) + "\n"
        with open(self.root / "audit.jsonl", "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        return entry

    def audit_entries(self, case_key: str | None = None) -> list[dict[str, Any]]:
        path = self.root / "audit.jsonl"
        if not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue
            if case_key is None or e.get("case") == case_key:
                out.append(e)
        return out
