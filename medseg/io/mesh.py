"""Surface meshes (STL, OBJ) of label maps, in millimetre patient coordinates.

Coordinates are **LPS** (DICOM patient frame, x to the patient's Left, y Posterior, z Superior)
by default, which is what 3D Slicer assumes for STL/OBJ since version 4.11; ``frame="RAS"``
writes RAS instead. The frame is stated in every file: the 80-byte STL header and the first OBJ
comment read ``medseg mesh ... SPACE=LPS`` (the tag 3D Slicer looks for).

Pipeline per label: crop to the label's bounding box (+1 voxel of padding so every surface is
closed), ``skimage.measure.marching_cubes`` at level 0.5 in voxel-index space, vertices mapped
through the Volume's affine (so oblique and flipped grids are exact), faces re-wound when the
affine mirrors space so that normals point outwards, optional Taubin smoothing (does not
shrink) and quadric decimation. Area (mm^2), enclosed volume (mL) and watertightness are
measured on the final mesh.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from skimage import measure

from medseg.errors import ConfigError, EmptySegmentationError
from medseg.io.atomic import OutputSet, atomic_dir, write_bytes_atomic, write_text_atomic
from medseg.io.export_source import select_labels
from medseg.io.labels import check_label_names
from medseg.volume import Volume

__all__ = ["MESH_FORMATS", "MESH_SET", "label_mesh", "mesh_bytes", "mesh_file_name",
           "write_meshes"]

MESH_FORMATS = ("stl", "obj")
#: What a mesh-set folder holds; an existing one is replaced as a whole (see atomic_dir).
MESH_SET = OutputSet("mesh set", "summary.json", ("summary.json", "*.stl", "*.obj"))
#: Characters of a label name kept in a mesh file name.
SLUG_CHARS = 40


def label_mesh(mask: Volume, value: int, *, frame: str = "LPS", smooth_iterations: int = 0,
               decimate: float | None = None) -> trimesh.Trimesh:
    """Closed triangle mesh of ``mask.array == value`` with vertices in ``frame`` mm.

    Args:
        mask: label map (any geometry).
        value: label value to mesh.
        frame: ``"LPS"`` (default) or ``"RAS"``.
        smooth_iterations: Taubin smoothing passes (0 = none; 10-20 is typical).
        decimate: keep about this fraction of the faces (0 < f < 1); ``None`` keeps all.
    """
    if frame.upper() not in ("LPS", "RAS"):
        raise ConfigError(f"Mesh frame must be LPS or RAS, got {frame!r}.")
    inside = np.asarray(mask.array) == value
    if not inside.any():
        raise EmptySegmentationError(f"Label {value} is empty; there is no surface to mesh.")
    nz = np.nonzero(inside)
    lo = np.array([int(a.min()) for a in nz])
    hi = np.array([int(a.max()) for a in nz]) + 1
    crop = inside[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    padded = np.pad(crop, 1).astype(np.float32)
    verts, faces, _, _ = measure.marching_cubes(padded, level=0.5)
    ijk = verts + lo - 1
    aff = mask.affine_lps if frame.upper() == "LPS" else mask.affine_ras
    xyz = ijk @ aff[:3, :3].T + aff[:3, 3]
    if np.linalg.det(aff[:3, :3]) < 0:
        faces = faces[:, ::-1]
    mesh = trimesh.Trimesh(vertices=xyz, faces=faces, process=True)
    if mesh.is_watertight and mesh.volume < 0:
        mesh.invert()
    if smooth_iterations > 0:
        trimesh.smoothing.filter_taubin(mesh, lamb=0.5, nu=0.53, iterations=smooth_iterations)
    if decimate is not None:
        if not 0 < decimate < 1:
            raise ConfigError(f"decimate must be a fraction in (0, 1), got {decimate}.")
        target = max(4, int(len(mesh.faces) * decimate))
        mesh = mesh.simplify_quadric_decimation(face_count=target)
        mesh.merge_vertices()  # the decimator leaves collapsed (zero-area) faces behind
        mesh.update_faces(mesh.nondegenerate_faces())
        mesh.remove_unreferenced_vertices()
    return mesh


def _header(name: str, value: int, frame: str) -> str:
    """One ASCII line; the name is escaped (``\\xfc``, ``\\u809d``), so OBJ keeps it whole
    (STL keeps the first 80 bytes of the line)."""
    text = name.encode("unicode_escape").decode("ascii")
    return f"medseg mesh label={value} name={text} units=mm SPACE={frame.upper()}"


def mesh_bytes(mesh: trimesh.Trimesh, fmt: str, header: str) -> bytes:
    """Encode ``mesh`` as binary STL or as OBJ text, with ``header`` in the file."""
    if fmt == "stl":
        tri = np.asarray(mesh.vertices, dtype=np.float32)[mesh.faces]
        rec = np.zeros(len(tri), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
        rec["n"] = np.asarray(mesh.face_normals, dtype=np.float32)
        rec["v"] = tri
        head = header.encode("ascii", "replace")[:80].ljust(80, b" ")
        return head + np.uint32(len(tri)).tobytes() + rec.tobytes()
    if fmt == "obj":
        lines = [f"# {header}"]
        lines += [f"v {x:.5f} {y:.5f} {z:.5f}" for x, y, z in mesh.vertices]
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in mesh.faces]
        return ("\n".join(lines) + "\n").encode("ascii")
    raise ConfigError(f"Mesh format must be one of {', '.join(MESH_FORMATS)}, got {fmt!r}.")


def mesh_file_name(value: int, name: str, fmt: str) -> str:
    """``<value>_<slug>.<fmt>``: the slug keeps ASCII letters, digits, ``-_.`` of the name
    (others become ``_``); a slug longer than :data:`SLUG_CHARS` is cut and ends with 6 hex
    digits of the name's SHA-1. Short whatever the name; unique through the value."""
    slug = "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "-_." else "_"
                   for ch in name).strip(".") or "label"
    if len(slug) > SLUG_CHARS:
        digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:6]
        slug = f"{slug[:SLUG_CHARS - 7]}_{digest}"
    return f"{value}_{slug}.{fmt}"


def write_meshes(mask: Volume, out_dir: str | Path, fmt: str = "stl", *,
                 labels: list[int | str] | None = None, frame: str = "LPS",
                 smooth_iterations: int = 0, decimate: float | None = None,
                 renamed_labels: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One :func:`mesh_file_name` file per selected label plus ``summary.json`` in ``out_dir``.

    The set is all-or-nothing (:func:`medseg.io.atomic.atomic_dir`): it is built beside
    ``out_dir`` and swapped in when every file is written; an existing mesh set there is
    replaced as a whole, a folder holding other files is refused. Label names are checked
    (:func:`medseg.io.labels.check_label_names`) before anything is written.

    ``renamed_labels`` (from :func:`medseg.io.labels.renamed`) is recorded in the summary.

    Returns the summary: per label the file, vertex/face counts, watertightness, surface area
    (mm^2), enclosed mesh volume (mL) and the voxel volume of the label (mL) for comparison.
    """
    fmt = fmt.lower()
    if fmt not in MESH_FORMATS:
        raise ConfigError(f"Mesh format must be one of {', '.join(MESH_FORMATS)}, got {fmt!r}.")
    out = Path(out_dir)
    chosen = check_label_names(select_labels(mask, labels), fmt)
    voxel_ml = float(np.prod(mask.spacing)) / 1000.0
    counts = {v: int(np.count_nonzero(np.asarray(mask.array) == v)) for v in chosen}
    if not any(counts.values()):
        raise EmptySegmentationError("Every selected label is empty; no mesh was written.")
    items: list[dict[str, Any]] = []
    skipped = [name for value, name in chosen.items() if counts[value] == 0]
    with atomic_dir(out, MESH_SET) as stage:
        for value, name in chosen.items():
            if counts[value] == 0:
                continue
            mesh = label_mesh(mask, value, frame=frame, smooth_iterations=smooth_iterations,
                              decimate=decimate)
            path = stage / mesh_file_name(value, name, fmt)
            write_bytes_atomic(path, mesh_bytes(mesh, fmt, _header(name, value, frame)))
            items.append(_stats(mesh, path, value, name, counts[value] * voxel_ml))
        summary = {"format": fmt.upper(), "frame": frame.upper(), "units": "mm",
                   "smooth_iterations": smooth_iterations, "decimate": decimate,
                   "labels": items, "skipped_empty": skipped}
        if renamed_labels:
            summary["renamed_labels"] = renamed_labels
        write_text_atomic(stage / "summary.json", json.dumps(summary, indent=1) + "\n")
    summary["path"] = str(out)
    return summary


def _stats(mesh: trimesh.Trimesh, path: Path, value: int, name: str,
           voxel_ml: float) -> dict[str, Any]:
    watertight = bool(mesh.is_watertight)
    volume = abs(float(mesh.volume)) / 1000.0 if watertight else float("nan")
    return {"label_value": value, "name": name, "file": path.name,
            "vertices": len(mesh.vertices), "faces": len(mesh.faces), "watertight": watertight,
            "surface_area_mm2": round(float(mesh.area), 3),
            "volume_ml": round(volume, 4) if watertight else None,
            "voxel_volume_ml": round(voxel_ml, 4)}
