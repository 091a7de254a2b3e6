"""Auto-segmentation panel: run a model bundle (shipped or the user's); the result becomes
editable labels (merged into the label table by name, one undoable edit)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
import streamlit as st

from app import session
from app.annotation import Annotation
from app.settings import AppSettings
from app.sources import resolve_in_roots
from app.uploads import stored_upload
from medseg.errors import MedsegError
from medseg.modality import ModalityDecision
from medseg.models import bundle as bundle_mod
from medseg.models.catalog import ModelEntry, describe_bundle, model_identity, models_dir
from medseg.provenance import Provenance
from medseg.volume import Volume


def shipped_bundles(env: dict[str, str] | None = None) -> list[Path]:
    """Model bundles installed with medseg (``medseg/weights/*.safetensors`` other than the
    promptable lite model) plus ``MEDSEG_DEFAULT_BUNDLE`` when set, plus the operator's
    imported models (``medseg import-model`` outputs in ``MEDSEG_MODELS_DIR``)."""
    env = dict(os.environ if env is None else env)
    out = []
    if env.get("MEDSEG_DEFAULT_BUNDLE"):
        out.append(Path(env["MEDSEG_DEFAULT_BUNDLE"]).expanduser().resolve())
    out += list(bundle_mod.shipped_bundles().values())
    imported = models_dir(env)
    if imported is not None and imported.is_dir():
        out += sorted(imported.glob("*.safetensors"))
    return [p for p in out if p.is_file()]


def _describe(entry: ModelEntry | None, option: str) -> str:
    """A bundle's name, version and labels in the picker, never its server path (a bundle
    that cannot be read shows its file name); other options as they are."""
    if entry is None:
        return option
    if entry.error:
        return f"{Path(option).name} (unreadable)"
    names = [entry.labels[k] for k in sorted(entry.labels)]
    shown = ", ".join(names[:4]) + (f" +{len(names) - 4} more" if len(names) > 4 else "")
    version = f" ({entry.version})" if entry.version else ""
    return f"{entry.name}{version}: {shown}"


def modality_warning(path: Path, case_modality: ModalityDecision) -> str | None:
    """The warning to show before running the bundle at ``path`` on an image of another
    modality (:func:`medseg.models.bundle.modality_mismatch`), or None."""
    meta = bundle_mod.read_bundle_meta(path)
    name, _ = model_identity(meta, path)
    return bundle_mod.modality_mismatch(meta, case_modality, f"The model {name}")


def _model_caption(entry: ModelEntry) -> str:
    """Labels, what the model is for (modality, body region), source and licence."""
    prov = entry.provenance
    try:
        region = bundle_mod.read_bundle_meta(entry.path).body_region
    except MedsegError:
        region = None
    names = [entry.labels[k] for k in sorted(entry.labels)]
    source = ", ".join(str(prov[k]) for k in ("source_format", "dataset", "configuration")
                       if prov.get(k))
    return (f"{len(names)} labels: {', '.join(names[:12])}{' ...' if len(names) > 12 else ''}; "
            f"modality {entry.modality or 'any'}" + (f" ({region})" if region else "")
            + (f"; from {source}" if source else "")
            + (f"; licence: {prov['licence']}" if prov.get("licence") else ""))


@st.cache_resource(max_entries=2, show_spinner=False)
def _segmenter(path: str, mtime: float) -> object:
    from medseg.engine.infer import Segmenter

    return Segmenter(path, device="cpu")


def model_info(seg: object, path: Path) -> dict[str, object]:
    """Name, version and content hash of a bundle, for the audit log and the state."""
    meta = seg.meta  # type: ignore[attr-defined]
    sha = hashlib.sha256()
    with open(path, "rb") as fh:  # in chunks: a bundle can be large
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
    digest = sha.hexdigest()[:16]
    return {"name": path.stem, "file": str(path), "sha256_16": digest,
            "medseg_version": meta.medseg_version, "config_hash": meta.config_hash,
            "labels": {str(k): v for k, v in meta.labels.items()}}


def merge_prediction(ann: Annotation, pred_lps: np.ndarray, names: dict[int, str],
                     replace: bool) -> np.ndarray:
    """Map predicted values to annotation labels by name (adding missing labels).

    ``pred_lps``: integer label map on the display grid. With ``replace`` the predicted
    labels' voxels are rewritten entirely; otherwise predictions only fill background voxels.
    Returns the new annotation array (the caller records it as one edit).
    """
    new = ann.array.copy()
    inv = ann.names_inv()
    for value, name in sorted(names.items()):
        m = pred_lps == value
        target = inv.get(name) or ann.add_label(name).value
        if replace:
            new[new == target] = 0
            new[m] = target
        else:
            new[m & (new == 0)] = target
    return new


def provenance_of(seg: object, path: Path, ann: Annotation, names: dict[int, str],
                  replace: bool) -> dict[int, Provenance]:
    """Per annotation label value the prediction writes (matched by name): automatic with the
    bundle's name and version (:func:`medseg.models.catalog.model_identity`), or, when the
    prediction only fills the background of a label that already has voxels, semi-automatic
    (the label mixes the model's voxels with earlier ones). Call before the edit."""
    name, version = model_identity(seg.meta, path)  # type: ignore[attr-defined]
    inv, counts = ann.names_inv(), ann.voxel_counts()
    out = {}
    for n in names.values():
        if n in inv:
            mixed = not replace and counts.get(inv[n], 0) > 0
            out[inv[n]] = Provenance("semiautomatic" if mixed else "automatic", name, version)
    return out


def _choose_bundle(settings: AppSettings) -> Path | None:
    shipped = shipped_bundles()
    options = [str(p) for p in shipped] + ["Server path", "Upload a bundle"]
    if not shipped:
        st.info("No default model is installed (nothing in medseg/weights/ and "
                "MEDSEG_DEFAULT_BUNDLE is unset). Use a bundle written by `medseg train`: give "
                "its path inside the data folders or upload the .safetensors file.")
    entries = {str(p): describe_bundle(p) for p in shipped}
    pick = st.selectbox("Model bundle", options, key="bundle_pick",
                        format_func=lambda o: _describe(entries.get(o), o))
    if pick in entries and not entries[pick].error:
        st.caption(_model_caption(entries[pick]))
    if pick == "Server path":
        text = st.text_input("Bundle path (inside the data folders)", key="bundle_path")
        return resolve_in_roots(text, settings.data_roots) if text else None
    if pick == "Upload a bundle":
        up = st.file_uploader("Model bundle (.safetensors)", type=["safetensors"],
                              key="bundle_upload", max_upload_size=settings.max_upload_mb)
        if up is None:
            return None
        return stored_upload(up, settings.workspace / "models", settings.max_upload_mb,
                             slot="bundle").path
    return Path(pick)


def _confirmed(path: Path | None, decision: ModalityDecision) -> tuple[bool, str | None]:
    """Shows the modality warning (before anything runs) and asks for a confirmation;
    returns ``(may run, warning)``."""
    if path is None or not path.is_file():
        return path is not None, None
    warning = modality_warning(path, decision)
    if warning is None:
        return True, None
    st.warning(warning, icon="⚠️")
    ok = st.checkbox("Run it on this image anyway (the result is marked as made on another "
                     "modality in the audit log)", value=False, key="autoseg_confirm_modality")
    return ok, warning


def edits_replaced(path: Path, ann: Annotation) -> dict[str, int]:
    """``{label name: voxels}`` of the annotation's labels a run of the bundle at ``path``
    with *Replace* would rewrite (the bundle's labels, matched by name, that have voxels)."""
    names = bundle_mod.read_bundle_meta(path).labels.values()
    inv, counts = ann.names_inv(), ann.voxel_counts()
    return {n: counts[inv[n]] for n in names if n in inv and counts.get(inv[n], 0) > 0}


def _replace_confirmed(path: Path | None) -> bool:
    """With *Replace* ticked: ask before a run rewrites labels that have voxels."""
    if path is None or not path.is_file():
        return True
    _, _, ann = session.current()
    try:
        lost = edits_replaced(path, ann)
    except MedsegError:
        return True  # not a bundle: the run reports it
    if not lost:
        return True
    st.warning(f"Replace your {sum(lost.values()):,} voxels of {', '.join(lost)} with the "
               "model's? Undo brings them back.", icon="⚠️")
    return bool(st.checkbox("Yes, replace them", value=False, key="autoseg_confirm_replace"))


def autoseg_panel(settings: AppSettings) -> None:
    case, source, _ = session.current()
    decision = session.modality(case)  # the case's one modality decision
    try:
        path = _choose_bundle(settings)
    except MedsegError as exc:
        st.error(str(exc))
        return
    try:
        allowed, warning = _confirmed(path, decision)
    except MedsegError as exc:  # not a readable bundle: said at once (a run says it again)
        st.error(str(exc))
        allowed, warning = True, None
    marked = st.session_state.get("autoseg_marks", {}).get(source.key)
    if marked:
        st.caption(f"Labels from the last auto-segmentation of this case: {marked}")
    replace = st.checkbox("Replace my edits of the predicted labels (else fill background only)",
                          value=False, key="autoseg_replace")
    if replace and allowed:
        allowed = _replace_confirmed(path)
    run = st.button("Run auto-segmentation", key="run_autoseg", disabled=not allowed)
    if path is None or not run or not allowed:
        return
    _run(settings, path, decision, warning, replace)


def _run(settings: AppSettings, path: Path, decision: ModalityDecision, warning: str | None,
         replace: bool) -> None:
    """Run the bundle, merge its labels as one edit, audit it (with the modality warning
    the user confirmed, if any) and rerun the page."""
    case, source, ann = session.current()
    bar = st.progress(0.0, text=f"Loading {path.name}")
    try:
        if not path.is_file():
            raise MedsegError(f"{path.name}: no such bundle file.")
        seg = _segmenter(str(path), path.stat().st_mtime)
        info = model_info(seg, path)
        if warning:
            info["modality_warning"] = warning
        bar.progress(0.2, text="Segmenting (sliding window over the volume)")
        # confirmed on another modality: the model's own modality check is waived
        modality = None if warning else decision.modality
        pred = seg.predict(dataclasses.replace(case.image, modality=modality))  # type: ignore[attr-defined]
        assert isinstance(pred, Volume)
        bar.progress(0.85, text="Merging the result into the label table")
        pred_lps = pred.conform_to(case.image_lps).array
        new = merge_prediction(ann, np.asarray(pred_lps), dict(pred.labels or {}), replace)
        made = provenance_of(seg, path, ann, dict(pred.labels or {}), replace)
        action = f"auto-segment {path.name}" + (" on another modality" if warning else "")
        changed = ann.replace(new, action, provenance=made)
        session.commit(settings, "auto-segment", extra={"model": info}, model=info,
                       changed=changed, seconds=seg.last_stats,  # type: ignore[attr-defined]
                       provenance={ann.label(v).name: p.as_dict() for v, p in made.items()},
                       **({"modality_warning": warning} if warning else {}))
        bar.progress(1.0, text="Done")
    except MedsegError as exc:
        st.error(str(exc))
        return
    counts = ann.voxel_counts()
    made_of = ", ".join(f"{ann.label(v).name} {n} voxels" for v, n in counts.items() if n)
    marks = st.session_state.setdefault("autoseg_marks", {})
    marks[source.key] = (f"made by {info['name']} on an image it was not made for: {warning}"
                         if warning else f"made by {info['name']}")
    st.session_state["flash"] = (
        f"Auto-segmentation with {path.name} done: {made_of}. "
        + ("It ran on an image of another modality than the model's: check every label. "
           if warning else "")
        + "The labels are editable; Undo reverts the whole result.")
    st.rerun()
