"""The audit log as people read it: one row per entry with time, who, what, label, voxels
changed and details in plain words (never a raw dict). Pure functions over the entries of
``audit.jsonl`` (:meth:`app.workspace.Workspace.audit_entries`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["COLUMNS", "audit_rows", "describe"]

COLUMNS = ("time (UTC)", "who", "what", "label", "voxels changed", "details")

Entry = Mapping[str, Any]

_WHAT: dict[str, str] = {
    "open case": "opened the case", "reload case": "reloaded the saved version",
    "brush": "painted", "erase": "erased", "add label": "added a label",
    "edit label": "changed a label", "delete label": "deleted a label", "undo": "undid",
    "redo": "redid", "auto-segment": "auto-segmented", "prompt": "prompted the model",
    "propagate": "propagated the proposal", "accept prompt": "accepted the proposal",
    "reject prompt": "rejected the proposal", "compare": "compared with the reference",
    "export": "exported", "send to PACS": "sent to a PACS",
    "send to PACS failed": "sending to a PACS failed", "mark done": "marked the case done",
    "merge conflict copy": "merged a conflict copy", "export dataset": "exported the dataset",
}


def _name(value: Any) -> str:
    """A label given as a name or as ``{"name": ...}`` (label records)."""
    if isinstance(value, Mapping):
        return str(value.get("name", ""))
    return "" if value is None else str(value)


def _model(entry: Entry) -> str:
    model = entry.get("model")
    if isinstance(model, Mapping):
        return str(model.get("name") or model.get("file") or "")
    return "" if model is None else str(model)


def _stroke(e: Entry) -> str:
    where = f"{e.get('plane', '')} slice {e.get('slice', '?')}".strip()
    radius = f", radius {e['radius_mm']:g} mm" if isinstance(e.get("radius_mm"), int | float) \
        else ""
    points = f", a stroke of {e['points']} points" if e.get("points") else ""
    return where + radius + points


def _label_edit(e: Entry) -> str:
    before, after = e.get("before"), e.get("after")
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return ""
    parts = []
    if before.get("name") != after.get("name"):
        parts.append(f"renamed {before.get('name')!r} to {after.get('name')!r}")
    if before.get("color") != after.get("color"):
        parts.append("new colour")
    return "; ".join(parts)


def _auto(e: Entry) -> str:
    text = f"model {_model(e)}"
    if e.get("modality_warning"):
        text += f"; run on another modality than the model's: {e['modality_warning']}"
    return text


def _prompt(e: Entry) -> str:
    kind = "box" if e.get("box") else "point" if e.get("points") else "prompt"
    score = f", predicted quality {e['score']:.2f}" if isinstance(e.get("score"), float) else ""
    return f"{kind} on {e.get('plane', '')} slice {e.get('slice', '?')}{score}".replace("  ", " ")


_DETAILS: dict[str, Callable[[Entry], str]] = {
    "open case": lambda e: (f"restored saved work (version {e.get('revision')})"
                            if e.get("restored") else "no saved work"),
    "brush": _stroke, "erase": _stroke, "edit label": _label_edit,
    "undo": lambda e: _name(e.get("reverted")), "redo": lambda e: _name(e.get("reapplied")),
    "auto-segment": _auto, "prompt": _prompt,
    "propagate": lambda e: f"model {_model(e)}" if _model(e) else "",
    "accept prompt": lambda e: f"model {_model(e)}" if _model(e) else "",
    "compare": lambda e: (f"NSD tolerance {e['nsd_mm']:g} mm"
                          if isinstance(e.get("nsd_mm"), int | float) else ""),
    "export": lambda e: f"{str(e.get('format', '')).upper()} file {e.get('file', '')}",
    "send to PACS": lambda e: f"{e.get('file', '')} to {e.get('server', '')}",
    "send to PACS failed": lambda e: f"{e.get('file', '')} to {e.get('server', '')}: "
                                     f"{e.get('error', '')}",
    "export dataset": lambda e: str(e.get("path", "")),
    "merge conflict copy": lambda e: str(e.get("copy", "")),
}


def describe(entry: Entry) -> dict[str, str]:
    """One table row (keys :data:`COLUMNS`) for an audit entry; every cell is plain text."""
    action = str(entry.get("action", ""))
    voxels = entry.get("voxels_changed", entry.get("voxels"))
    details = _DETAILS.get(action, lambda e: "")(entry)
    if entry.get("refused_stale_save"):
        details = (details + "; " if details else "") + "not saved: someone saved this case " \
            "first (kept as a conflict copy)"
    time = str(entry.get("time_utc", ""))
    return {"time (UTC)": time.replace("T", " ")[:19], "who": str(entry.get("annotator", "")),
            "what": _WHAT.get(action, action), "label": _name(entry.get("label")),
            "voxels changed": f"{int(voxels):,}" if isinstance(voxels, int | float) else "",
            "details": details}


def audit_rows(entries: list[dict[str, Any]], limit: int = 200) -> list[dict[str, str]]:
    """The last ``limit`` entries, newest first, as table rows."""
    return [describe(e) for e in reversed(entries[-limit:])]
