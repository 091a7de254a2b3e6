"""Meshes: vertices on the mask boundary in world mm, closed, with the mask's volume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from medseg import io
from medseg.errors import ConfigError, LabelNameError, LabelNotFoundError, OutputError
from medseg.io.mesh import label_mesh, write_meshes
from medseg.volume import Volume
from tests.conftest import make_volume
from tests.io.export_fixtures import TS, ellipsoid


def _boundary_fraction(mask: Volume, value: int, verts_lps: np.ndarray, reach: int) -> float:
    """Share of vertices whose voxel neighbourhood (+-reach) holds both inside and outside."""
    inside = np.pad(mask.array == value, reach + 1)
    idx = mask.world_to_index(verts_lps) + reach + 1
    lo = np.floor(idx).astype(int) - (reach - 1 if reach > 0 else 0)
    ok = 0
    for corner in lo:
        block = inside[corner[0]:corner[0] + reach + 1, corner[1]:corner[1] + reach + 1,
                       corner[2]:corner[2] + reach + 1]
        ok += bool(block.any() and not block.all())
    return ok / len(lo)


def _oblique_mask() -> Volume:
    vol = make_volume("oblique", shape=(40, 36, 16))  # 0.8 x 0.9 x 2.5 mm, rotated axes
    return ellipsoid(vol, radii_mm=(11.0, 9.0, 13.0))


def test_vertices_lie_on_the_boundary_of_an_oblique_anisotropic_mask() -> None:
    mask = _oblique_mask()
    mesh = label_mesh(mask, 1)
    assert mesh.is_watertight and mesh.volume > 0
    # each marching-cubes vertex sits between an inside and an outside voxel centre
    assert _boundary_fraction(mask, 1, mesh.vertices, reach=1) == 1.0
    voxel_ml = mask.array.sum() * np.prod(mask.spacing) / 1000
    assert abs(mesh.volume / 1000 - voxel_ml) / voxel_ml < 0.05
    smooth = label_mesh(mask, 1, smooth_iterations=10)
    assert _boundary_fraction(mask, 1, smooth.vertices, reach=2) > 0.99  # within ~1 voxel
    assert abs(smooth.volume - mesh.volume) / mesh.volume < 0.03  # Taubin does not shrink


def test_mirrored_grid_keeps_outward_normals_and_ras_frame() -> None:
    vol = make_volume("identity", shape=(30, 30, 20))
    mirrored = dataclasses.replace(vol, direction=np.diag([-1.0, 1.0, 1.0]))  # det < 0
    mask = ellipsoid(mirrored)
    lps = label_mesh(mask, 1)
    assert lps.is_watertight and lps.volume > 0 and lps.is_winding_consistent
    ras = label_mesh(mask, 1, frame="RAS")
    np.testing.assert_allclose(ras.vertices, lps.vertices * [-1, -1, 1], atol=1e-9)
    with pytest.raises(ConfigError):
        label_mesh(mask, 1, frame="XYZ")


def test_real_organ_files_and_summary(tmp_path: Path) -> None:
    seg = io.read(TS / "example_seg.nii.gz", label=True)  # RAS NIfTI, 3 mm
    summary = write_meshes(seg, tmp_path / "stl", "stl", labels=["liver", "spleen"])
    data = json.loads((tmp_path / "stl" / "summary.json").read_text())
    assert data["frame"] == "LPS" and [d["name"] for d in data["labels"]] == ["spleen", "liver"]
    for item in summary["labels"]:
        assert item["watertight"] and item["surface_area_mm2"] > 0
        assert abs(item["volume_ml"] - item["voxel_volume_ml"]) / item["voxel_volume_ml"] < 0.03
    path = tmp_path / "stl" / "5_liver.stl"
    assert b"SPACE=LPS" in path.read_bytes()[:80]
    mesh = trimesh.load(path)
    assert _boundary_fraction(seg, 5, mesh.vertices, reach=1) > 0.999  # float32 STL rounding
    assert abs(mesh.volume / 1000 - data["labels"][1]["volume_ml"]) < 0.01


def test_obj_decimated(tmp_path: Path) -> None:
    mask = _oblique_mask()
    full = write_meshes(mask, tmp_path / "a", "obj")["labels"][0]
    small = write_meshes(mask, tmp_path / "b", "obj", decimate=0.25)["labels"][0]
    assert small["faces"] < 0.35 * full["faces"]
    assert abs(small["volume_ml"] - full["volume_ml"]) / full["volume_ml"] < 0.05
    text = (tmp_path / "b" / "1_lesion.obj").read_text()
    assert text.startswith("# medseg mesh label=1 name=lesion units=mm SPACE=LPS")
    loaded = trimesh.load(tmp_path / "b" / "1_lesion.obj", process=False)
    assert len(loaded.faces) == small["faces"]


def test_unknown_label_and_empty_selection(tmp_path: Path) -> None:
    mask = _oblique_mask()
    with pytest.raises(LabelNotFoundError, match="lesion"):
        write_meshes(mask, tmp_path, "stl", labels=["liver"])
    with pytest.raises(ConfigError):
        write_meshes(mask, tmp_path, "ply")


# ----------------------------------------------------------------------------- names and sets
def _two_labels(names: dict[int, str]) -> Volume:
    mask = _oblique_mask()
    arr = mask.array.copy()
    arr[:, :18][arr[:, :18] == 1] = 2
    return dataclasses.replace(mask.with_array(arr), labels=names)


def test_long_and_unicode_names_give_short_file_names(tmp_path: Path) -> None:
    long, uni = "M" * 5000, "Leber ü 肝臓"
    summary = write_meshes(_two_labels({1: long, 2: uni}), tmp_path / "m", "obj")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert all(len(f) <= 60 for f in files) and "summary.json" in files
    data = json.loads((tmp_path / "m" / "summary.json").read_text(encoding="utf-8"))
    assert {d["name"] for d in data["labels"]} == {long, uni}  # full names in the summary
    by_name = {d["name"]: d["file"] for d in summary["labels"]}
    assert by_name[uni] == "2_Leber_____.obj" and by_name[long].startswith("1_MMMM")
    header = (tmp_path / "m" / by_name[uni]).read_text(encoding="ascii").splitlines()[0]
    assert header.encode().decode("unicode_escape").endswith(f"name={uni} units=mm SPACE=LPS")


def test_a_name_with_a_newline_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(LabelNameError, match="U\\+000A"):
        write_meshes(_two_labels({1: "a\nb", 2: "ok"}), tmp_path / "m", "stl")
    assert list(tmp_path.iterdir()) == []


def test_mesh_set_is_all_or_nothing_on_a_full_disk(full_fs: Path) -> None:
    before = sorted(p.name for p in full_fs.iterdir())
    with pytest.raises(OutputError, match="disk is full"):
        write_meshes(_two_labels({1: "a", 2: "b"}), full_fs / "meshes", "stl")
    assert sorted(p.name for p in full_fs.iterdir()) == before


def test_an_existing_set_is_replaced_and_a_foreign_folder_kept(tmp_path: Path) -> None:
    out = tmp_path / "m"
    write_meshes(_two_labels({1: "a", 2: "b"}), out, "stl")
    write_meshes(_two_labels({1: "a", 2: "b"}), out, "stl", labels=["a"])
    assert sorted(p.name for p in out.iterdir()) == ["1_a.stl", "summary.json"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="notes.txt"):
        write_meshes(_two_labels({1: "a", 2: "b"}), out, "stl")
    assert sorted(p.name for p in out.iterdir()) == ["1_a.stl", "notes.txt", "summary.json"]
