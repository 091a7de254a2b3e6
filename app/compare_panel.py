"""Compare panel: the annotation against a reference mask with medseg's case report.

Labels are matched **by name** (the annotation's "liver" is compared with the reference's
"liver" whatever their values); the matched pairs are written as two label maps on the
image grid (``cases/<key>/report/annotation.nii.gz`` and ``reference.nii.gz``) and evaluated by
:func:`medseg.report.load_case` / :func:`compute_case`, so the report's inputs are real files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from app import session
from app.annotation import Annotation
from app.case import Case
from app.export_panel import slug
from app.reading import read_volume
from app.settings import AppSettings
from app.uploads import stored_upload
from medseg import io
from medseg.errors import MedsegError
from medseg.io.atomic import write_bytes_atomic
from medseg.volume import Volume


def match_labels(ann: Annotation, ref: Volume) -> dict[str, tuple[int, int]]:
    """``{name: (annotation value, reference value)}`` for names present in both tables."""
    ref_inv = {n: v for v, n in (ref.labels or {}).items()}
    return {lab.name: (lab.value, ref_inv[lab.name]) for lab in ann.labels
            if lab.name in ref_inv}


def reference_table(ann: Annotation, ref: Volume) -> list[dict[str, object]]:
    """One row per reference label (readable however many there are): its name, value,
    voxels and whether your annotation has a label of that name; matched labels first."""
    arr = np.asarray(ref.array)
    counts = dict(zip(*np.unique(arr[arr != 0], return_counts=True), strict=True))
    mine = {lab.name for lab in ann.labels}
    rows: list[dict[str, object]] = [
        {"reference label": name, "value": int(v), "voxels": int(counts.get(v, 0)),
         "in your annotation": "yes" if name in mine else ""}
        for v, name in sorted((ref.labels or {}).items())]
    return sorted(rows, key=lambda r: r["in your annotation"] != "yes")


def write_pair(case: Case, ann: Annotation, ref: Volume, out: Path, only_matched: bool
               ) -> tuple[Path, Path, dict[str, tuple[int, int]]]:
    """Write annotation and reference as label maps on the image grid, matched by name.

    Matched labels get the reference's value in the annotation file; unmatched annotation
    labels keep theirs (shifted past the reference's values if they would collide). With
    ``only_matched`` reference labels without an annotation of the same name are dropped.
    """
    pairs = match_labels(ann, ref)
    pred_img = ann.to_volume(case.image_lps, case.image)
    ref_img = ref.conform_to(case.image)
    src = np.asarray(pred_img.array)
    pred = np.zeros(src.shape, dtype=np.uint16)
    names: dict[int, str] = {}
    shift = max([0, *(ref.labels or {})])
    for lab in ann.labels:
        target = pairs[lab.name][1] if lab.name in pairs else lab.value + shift
        pred[src == lab.value] = target
        names[target] = lab.name
    refarr = np.asarray(ref_img.array)
    ref_names = dict(ref.labels or {})
    if only_matched:
        keep = [v for _, v in pairs.values()]
        refarr = np.where(np.isin(refarr, keep), refarr, 0)
        ref_names = {v: n for v, n in ref_names.items() if v in keep}
    pred_path, ref_path = out / "annotation.nii.gz", out / "reference.nii.gz"
    io.write(case.image.with_array(pred, labels=names), pred_path, reference=case.image)
    io.write(case.image.with_array(refarr.astype(np.uint16), labels=ref_names or {1: "none"}),
             ref_path, reference=case.image)
    return pred_path, ref_path, pairs


def build_report(case: Case, ann: Annotation, ref: Volume, out: Path, only_matched: bool,
                 nsd_mm: float) -> dict[str, Any]:
    """Compute the report; returns metrics rows, figures and the four file payloads."""
    from medseg.report import compute_case, load_case
    from medseg.report.evaluate import case_figures
    from medseg.report.render_html import case_html
    from medseg.report.render_pdf import case_pdf

    pred_path, ref_path, pairs = write_pair(case, ann, ref, out, only_matched)
    inputs = load_case(pred_path, ref_path)
    inputs.image = case.image
    report = compute_case(inputs, nsd_tolerance_mm=nsd_mm, case_id=case.name,
                          subject="annotation")  # a person's annotation, not a prediction
    figs = case_figures(inputs, report)
    files = {
        "json": (json.dumps(report.to_dict(), indent=1, allow_nan=False) + "\n").encode(),
        "csv": report.csv_text().encode(),
        "html": case_html(report, figs).encode(),
        "pdf": case_pdf(report, figs),
    }
    for ext, data in files.items():
        write_bytes_atomic(out / f"report.{ext}", data)
    return {"rows": [m.as_dict() for m in report.metrics], "figures": figs, "files": files,
            "pairs": pairs}


def _reference(settings: AppSettings, case: Case) -> Volume | None:
    """The reference mask: the one shipped with the case, or an upload (bounded, streamed to
    ``references/<sha256[:16]>/`` and read only from that folder)."""
    options = (["Shipped with the case"] if case.labels is not None else []) + ["Upload"]
    pick = st.radio("Reference mask", options, horizontal=True, key="ref_pick")
    if pick != "Upload":
        return case.labels
    up = st.file_uploader("Reference label map (NIfTI, NRRD, MHA; on the image's grid)",
                          type=["nii", "gz", "nrrd", "mha"], key="ref_upload",
                          max_upload_size=settings.max_upload_mb)
    if up is None:
        return None
    stored = stored_upload(up, settings.workspace / "references", settings.max_upload_mb,
                           slot="reference")
    cached = st.session_state.get("ref_volume")
    if cached is None or cached[0] != (stored.digest, id(case)):
        ref = read_volume(stored.path, (stored.path.parent,), label=True).conform_to(case.image)
        cached = ((stored.digest, id(case)), ref)
        st.session_state["ref_volume"] = cached
    return cached[1]


def compare_panel(settings: AppSettings) -> None:
    case, source, ann = session.current()
    try:
        ref = _reference(settings, case)
    except MedsegError as exc:
        st.error(str(exc))
        return
    if ref is None:
        st.info("Upload a reference label map to compare with.")
        return
    pairs = match_labels(ann, ref)
    st.caption(f"Your annotation is compared with the reference by label name: "
               f"{len(pairs)} of the reference's {len(ref.labels or {})} labels matched"
               + (f" ({', '.join(pairs)})." if pairs else
                  "; name your labels as in the reference (table below)."))
    with st.expander(f"Reference labels ({len(ref.labels or {})})", expanded=not pairs):
        st.dataframe(reference_table(ann, ref), hide_index=True, key="reference_labels",
                     width="stretch", height=min(400, 38 + 35 * len(ref.labels or {})))
    only = st.checkbox("Only the reference labels I annotated", value=True, key="ref_only")
    nsd = st.number_input("NSD tolerance (mm)", 0.1, 20.0, 2.0, key="nsd_mm")
    if st.button("Compare", key="run_compare"):
        out = settings.workspace / "cases" / source.key / "report"
        with st.spinner("Computing Dice, HD95, ASSD, NSD and the report figures"):
            try:
                st.session_state["report"] = (source.key, build_report(
                    case, ann, ref, out, only, float(nsd)))
                session.workspace(settings).audit(session.annotator(), "compare", source.key,
                                                  matched=list(pairs), nsd_mm=float(nsd))
            except MedsegError as exc:
                st.error(str(exc))
                return
    shown = st.session_state.get("report")
    if shown and shown[0] == source.key:
        _show(shown[1], case.name)


def report_name(case_name: str, ext: str) -> str:
    """The report's download name: ``CT_abdomen_DICOM_JPEG_2000_report.pdf`` for the case
    "CT abdomen, DICOM (JPEG 2000)" (words joined by one underscore, no trailing ones)."""
    return f"{slug(case_name)}_report.{ext}"


def _show(result: dict[str, Any], name: str) -> None:
    import pandas as pd

    cols = ["name", "dice", "hd95", "assd", "nsd", "volume_pred_ml", "volume_ref_ml", "flags"]
    df = pd.DataFrame(result["rows"])
    nice = {"name": "label", "dice": "Dice", "hd95": "HD95 (mm)", "assd": "ASSD (mm)",
            "nsd": "NSD", "volume_pred_ml": "volume yours (mL)",
            "volume_ref_ml": "volume reference (mL)", "flags": "flags"}
    st.dataframe(df[[c for c in cols if c in df.columns]].rename(columns=nice),
                 hide_index=True, key="metrics_table")
    mime = {"json": "application/json", "csv": "text/csv", "html": "text/html",
            "pdf": "application/pdf"}
    for col, (ext, data) in zip(st.columns(4), result["files"].items(), strict=True):
        col.download_button(f"Report {ext.upper()}", data, report_name(name, ext), mime[ext],
                            key=f"dl_report_{ext}")
    for fig in result["figures"]:
        st.image(fig.png, caption=f"{fig.title}: {fig.caption}", width=760)
