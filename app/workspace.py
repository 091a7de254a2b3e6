"""Workspace: where annotations autosave, keyed by case identity, plus the audit log.

Layout under ``MEDSEG_WORKSPACE`` (see docs/app.md)::

    audit.jsonl                    one JSON object per line: who did what, when
    uploads/<sha256[:16]>/<name>   uploaded files (so a restart can reopen them)
    cases/<key>/labels.nii.gz      the annotation on the image's exact grid (+ .labels.json)
    cases/<key>/state.json         label table, colours, provenance per label (manual,
                                   semiautomatic or automatic + model), case source, status,
                                   revision...
    cases/<key>/.lock              flock'ed while the case is saved or restored
    cases/<key>/conflicts/<utc>-<annotator>/   refused stale saves (app.conflicts)
    cases/<key>/report/            the last comparison report
    cases/<key>/export/            the last exports
    pacs-cache/                    series retrieved from a PACS (complete series only;
                                   app.sources.pacs_cache, medseg.pacs.cache)

``key`` = a readable slug of the case name + the first 16 hex digits of the SHA-256 of the
case identity (sample name, resolved server path + series, or upload content hash). Every file
is written atomically (write to a temporary file, rename), labels before state.

**Versions.** ``state.json`` carries ``revision``, the number of saves of the case (0 = never
saved). A save names the revision its session started from; under the case's exclusive lock it
is compared with the saved one and refused with :class:`SaveConflictError` when they differ
(a compare-and-swap), so of two sessions editing one case the second to save never overwrites
the first's work. Restores take the shared lock, so they never see labels of one revision with
the state of another.
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

from app.annotation import Annotation, LabelDef, Meta
from app.case import Case
from app.locks import append_line, file_lock
from app.reading import read_volume
from medseg import io
from medseg.errors import MedsegError
from medseg.io.atomic import write_text_atomic
from medseg.provenance import Provenance
from medseg.volume import present_values

STATE_VERSION = 1
STATUSES = ("to do", "in progress", "done")


class WorkspaceError(MedsegError):
    """The workspace folder or one of its files cannot be used."""


class SaveConflictError(WorkspaceError):
    """A save from a session whose revision is stale: someone else saved the case since."""

    def __init__(self, key: str, base: int, current: int, saved_by: str, saved_utc: str
                 ) -> None:
        self.key, self.base, self.current = key, base, current
        self.saved_by, self.saved_utc = saved_by, saved_utc
        super().__init__(
            f"case {key}: {saved_by} saved this case at {saved_utc} (version {current}) after "
            f"this page loaded version {base}; your change was not written over theirs. Reload "
            "the case to continue from the saved version (your edits are kept as a copy).")


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

    def lock_path(self, key: str) -> Path:
        return self.case_dir(key) / ".lock"

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
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WorkspaceError(f"{path}: unreadable workspace state ({exc}). Move the file "
                                 "away to start this case afresh.") from exc
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise WorkspaceError(f"{path}: not a medseg app state (version {STATE_VERSION}).")
        return state

    @staticmethod
    def revision_of(state: dict[str, Any] | None) -> int:
        """The revision a state records (0 for a case never saved or saved before versions)."""
        return int((state or {}).get("revision", 0))

    def status(self, key: str) -> str:
        state = self.read_state(key)
        return "to do" if state is None else str(state.get("status", "in progress"))

    def build_state(self, source: CaseSource, case: Case, ann: Annotation, *, annotator: str,
                    old: dict[str, Any], revision: int, status: str | None = None,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``state.json`` content of ``ann`` saved as ``revision`` over ``old``."""
        return {
            "version": STATE_VERSION,
            "key": source.key,
            "revision": revision,
            "source": asdict(source),
            "image_grid": {"shape": list(case.image.shape),
                           "spacing_mm": [float(s) for s in case.image.spacing],
                           "origin_lps_mm": [float(o) for o in case.image.origin]},
            "labels": [lab.as_dict() for lab in ann.labels],
            "voxels": {str(k): v for k, v in ann.voxel_counts().items()},
            "provenance": {str(lab.value): {"label": lab.name,
                                            **ann.provenance(lab.value).as_dict()}
                           for lab in ann.labels},
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

    def save(self, source: CaseSource, case: Case, ann: Annotation, *, annotator: str,
             status: str | None = None, extra: dict[str, Any] | None = None,
             expected_revision: int | None = None) -> int:
        """Write the label map (image grid, atomically) then the state JSON; return the new
        revision.

        With ``expected_revision`` (the revision the session loaded or last saved) this is a
        compare-and-swap under the case's exclusive lock: when the saved revision differs,
        nothing is written and :class:`SaveConflictError` is raised. ``None`` saves
        unconditionally (scripts, tests).
        """
        key = source.key
        labels_vol = ann.to_volume(case.image_lps, case.image)
        with file_lock(self.lock_path(key)):
            old = self.read_state(key) or {}
            current = self.revision_of(old)
            if expected_revision is not None and expected_revision != current:
                raise SaveConflictError(key, expected_revision, current,
                                        str(old.get("annotator", "someone")),
                                        str(old.get("updated_utc", "an unknown time")))
            state = self.build_state(source, case, ann, annotator=annotator, old=old,
                                     revision=current + 1, status=status, extra=extra)
            io.write(labels_vol, self.labels_path(key), reference=case.image)
            write_text_atomic(self.state_path(key), json.dumps(state, indent=1) + "\n")
        return current + 1

    def set_status(self, key: str, status: str) -> None:
        """Set a saved case's status (a new revision, under the case's lock)."""
        if status not in STATUSES:
            raise WorkspaceError(f"status must be one of {STATUSES}, got {status!r}.")
        with file_lock(self.lock_path(key)):
            state = self.read_state(key)
            if state is None:
                raise WorkspaceError(f"case {key} has no saved annotation yet.")
            state["status"] = status
            state["revision"] = self.revision_of(state) + 1
            state["updated_utc"] = utc_now()
            write_text_atomic(self.state_path(key), json.dumps(state, indent=1) + "\n")

    def restore(self, key: str, case: Case) -> tuple[Annotation | None, int]:
        """The saved annotation of ``case`` (label map conformed to the display grid) and
        the revision it was saved as; ``(None, 0)`` when the case was never saved. Read under
        the case's shared lock, so labels and state belong to one save."""
        if not self.state_path(key).is_file():
            return None, 0  # never saved (a save from now on conflicts with revision 0)
        with file_lock(self.lock_path(key), shared=True):
            state = self.read_state(key)
            if state is None:
                return None, 0
            ann = Annotation.empty(case.image_lps.shape)
            ann.labels = _label_table(state, self.state_path(key))
            ann.meta = Meta(provenance=_provenance(state, self.state_path(key)))
            ann.edits = int(state.get("edits", 0))
            path = self.labels_path(key)
            vol = read_volume(path, (self.case_dir(key),), label=True) \
                if path.is_file() else None
        if vol is not None:
            try:
                ann.load_volume(vol, case.image_lps)
            except MedsegError as exc:
                raise WorkspaceError(f"{path}: saved labels do not fit this image ({exc}). "
                                     "Was the source file replaced? Move the case folder away "
                                     "to start afresh.") from exc
        unknown = set(present_values(ann.array)) - {0} - set(ann.names())
        for v in sorted(unknown):  # a value without a table entry stays visible and editable
            ann.add_label(f"label_{v}", value=int(v))
        ann.settle()  # the restored table is where the next edit starts from
        return ann, self.revision_of(state)

    # ------------------------------------------------------------------ audit
    def audit(self, annotator: str, action: str, case_key: str | None = None,
              **details: Any) -> dict[str, Any]:
        """Append one JSON line to ``audit.jsonl`` (never rewritten): one ``write()`` on an
        ``O_APPEND`` descriptor under ``flock``, then ``fsync`` (:func:`app.locks.append_line`),
        so concurrent sessions and processes neither interleave nor lose entries."""
        entry = {"time_utc": utc_now(), "annotator": annotator or "unknown", "action": action,
                 "case": case_key, **details}
        append_line(self.root / "audit.jsonl", json.dumps(entry, default=str) + "\n")
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


def _label_table(state: dict[str, Any], path: Path) -> list[LabelDef]:
    """The label table of a saved state (refusing a malformed one with a clear message)."""
    try:
        return [LabelDef(int(d["value"]), str(d["name"]),
                         (int(d["color"][0]), int(d["color"][1]), int(d["color"][2])))
                for d in state.get("labels", [])]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise WorkspaceError(f"{path}: malformed label table ({exc!r}). Move the case folder "
                             "away to start this case afresh.") from exc


def _provenance(state: dict[str, Any], path: Path) -> dict[int, Provenance]:
    """Per label value, how it was made (states saved before provenance existed: none, so
    every label reads as manual)."""
    try:
        return {int(v): Provenance.from_dict(d)
                for v, d in (state.get("provenance") or {}).items()}
    except (MedsegError, TypeError, ValueError, AttributeError) as exc:
        raise WorkspaceError(f"{path}: malformed provenance ({exc}). Move the case folder "
                             "away to start this case afresh.") from exc
