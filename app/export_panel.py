"""Export panel: NIfTI, DICOM-SEG, RTSTRUCT (DICOM sources) and STL/OBJ meshes via
:func:`medseg.export.export`, offered as downloads named after the case and labels."""

from __future__ import annotations

import dataclasses
import io as _io
import re
import zipfile
from pathlib import Path

import streamlit as st

from app import session
from app.annotation import Annotation
from app.case import Case
from app.settings import AppSettings
from medseg.errors import MedsegError

FORMATS = {"NIfTI": "nifti", "DICOM-SEG": "seg", "RTSTRUCT": "rtstruct", "STL meshes": "stl",
           "OBJ meshes": "obj"}
DICOM_ONLY = ("seg", "rtstruct")


def is_dicom(case: Case) -> bool:
    """Whether the image came from a DICOM series (needed for DICOM-SEG and RTSTRUCT)."""
    try:
        from medseg.io.export_source import dicom_source_of

        dicom_source_of(case.image, "DICOM-SEG")
        return True
    except MedsegError:
        return False


def slug(text: str) -> str:
    text = re.sub(r"\.(nii\.gz|nii|nrrd|mha|zip|dcm)$", "", text, flags=re.I)
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:60] or "case"


def file_name(case: Case, names: list[str], fmt: str) -> str:
    """``<case>_<label or N-labels>.<ext>`` (meshes: a zip of one file per label)."""
    part = slug(names[0]) if len(names) == 1 else f"{len(names)}labels"
    ext = {"nifti": ".nii.gz", "seg": "_seg.dcm", "rtstruct": "_rtstruct.dcm",
           "stl": "_stl.zip", "obj": "_obj.zip"}[fmt]
    return f"{slug(case.name)}_{part}{ext}"


def build_export(case: Case, ann: Annotation, fmt: str, values: list[int], out_dir: Path,
                 annotator: str | None = None) -> tuple[str, bytes, dict[str, object]]:
    """Export the chosen labels; returns (download name, bytes, medseg's summary). DICOM-SEG
    and RTSTRUCT identify the algorithm from the labels' provenance (manual, or
    semi-automatic / automatic with the model's name and version) and record ``annotator``
    as the content creator (SEG ContentCreatorName, RTSTRUCT ROIInterpreter); the same file
    is what *Send to PACS* stores."""
    from medseg.export import export
    from medseg.provenance import export_algorithm

    mask = ann.to_volume(case.image_lps, case.image)
    names = [ann.label(v).name for v in values]
    name = file_name(case, names, fmt)
    target = out_dir / (name[: -len("_stl.zip")] + "_" + fmt if fmt in ("stl", "obj") else name)
    algorithm = export_algorithm({ann.label(v).name: ann.provenance(v) for v in values}) \
        if fmt in DICOM_ONLY else None
    if algorithm is not None and annotator:
        algorithm = dataclasses.replace(algorithm, creator=annotator)
    summary = export(mask, case.image, fmt, target, labels=values, algorithm=algorithm)
    if fmt in ("stl", "obj"):
        buf = _io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(target.iterdir()):
                zf.write(f, f.name)
        return name, buf.getvalue(), summary
    return name, target.read_bytes(), summary


def export_panel(settings: AppSettings) -> None:
    case, source, ann = session.current()
    counts = ann.voxel_counts()
    present = [lab for lab in ann.labels if counts.get(lab.value)]
    if not present:
        st.info("Nothing to export yet: annotate at least one label.")
        return
    dicom = is_dicom(case)
    if not dicom:
        st.caption("DICOM-SEG and RTSTRUCT need a DICOM image series as source (they reference "
                   "its instances); this case was opened from a "
                   f"{Path(source.ref).suffix or 'non-DICOM'} file, so they are not offered.")
    choices = [k for k, v in FORMATS.items() if dicom or v not in DICOM_ONLY]
    c1, c2 = st.columns([1, 2])
    fmt_name = c1.selectbox("Format", choices, key="export_fmt")
    picked = c2.multiselect("Labels", [lab.name for lab in present],
                            default=[lab.name for lab in present], key="export_labels")
    if not picked:
        return
    values = [ann.names_inv()[n] for n in picked]
    fmt = FORMATS[fmt_name]
    if st.button(f"Build {fmt_name}", key="build_export"):
        out_dir = settings.workspace / "cases" / source.key / "export"
        try:
            with st.spinner(f"Writing {fmt_name}"):
                name, data, _ = build_export(case, ann, fmt, values, out_dir,
                                             annotator=session.annotator())
        except MedsegError as exc:
            st.error(str(exc))
            return
        st.session_state["export"] = (source.key, fmt, name, data)
        session.workspace(settings).audit(session.annotator(), "export", source.key,
                                          format=fmt, labels=picked, file=name,
                                          bytes=len(data), provenance={
                                              n: ann.provenance(ann.names_inv()[n]).as_dict()
                                              for n in picked})
    ready = st.session_state.get("export")
    if ready and ready[0] == source.key and ready[1] == fmt:
        st.download_button(f"Download {ready[2]}", ready[3], ready[2],
                           "application/octet-stream", key="dl_export")
        from app.pacs_panel import send_section

        send_section(settings, source.key, fmt, ready[2])  # DICOM-SEG / RTSTRUCT to a PACS
