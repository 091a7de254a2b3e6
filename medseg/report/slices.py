"""Where to look and how to show it: display orientation and the slices a report renders.

Display convention (radiological, stated on every figure):

* axial: viewed from the feet, patient's Right on the image's left, Anterior at the top;
* coronal: viewed from the front, patient's Right on the image's left, Superior at the top;
* sagittal: viewed from the patient's left, Anterior on the image's left, Superior at the top.

Arrays are brought to a *display frame* ``[x, y, z]`` whose axes increase toward the patient's
Left, Posterior and Superior (LPS) by permuting and flipping the ``[i, j, k]`` axes only (no
interpolation). For an oblique grid the nearest patient axes are used and the obliquity is
reported; pixels keep their physical size, so images have the true aspect ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medseg.metrics import SurfaceDistances
from medseg.volume import Volume, nearest_axes

VIEWS = ("axial", "coronal", "sagittal")
#: display-frame axis held fixed by each view (x=0 L, y=1 P, z=2 S)
VIEW_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}
#: (top, bottom, left, right) edge letters of each view
VIEW_EDGES = {"axial": ("A", "P", "R", "L"), "coronal": ("S", "I", "R", "L"),
              "sagittal": ("S", "I", "A", "P")}


@dataclass(frozen=True)
class DisplayFrame:
    """How the ``[i, j, k]`` axes of a volume map onto the LPS display frame.

    ``perm[d]`` is the array axis along display axis ``d`` (0=x toward L, 1=y toward P,
    2=z toward S); ``flip[d]`` says that array axis runs the other way. ``spacing`` is in mm
    along x, y, z; ``shape`` the display-frame shape.
    """

    perm: tuple[int, int, int]
    flip: tuple[bool, bool, bool]
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    obliquity_deg: float

    def canonical(self, array: np.ndarray) -> np.ndarray:
        """View of ``array`` (shape ``(I, J, K)``) in the display frame ``[x, y, z]``."""
        out = np.transpose(array, self.perm)
        for d in range(3):
            if self.flip[d]:
                out = np.flip(out, axis=d)
        return out

    def to_display(self, ijk: np.ndarray | tuple[int, int, int]) -> tuple[int, int, int]:
        """Display-frame voxel ``(x, y, z)`` of array voxel ``(i, j, k)``."""
        idx = [int(v) for v in ijk]
        out = []
        for d in range(3):
            a = self.perm[d]
            out.append(self.shape[d] - 1 - idx[a] if self.flip[d] else idx[a])
        return (out[0], out[1], out[2])

    def array_index(self, view: str, index: int) -> tuple[str, int]:
        """Array axis name (``"i"``, ``"j"``, ``"k"``) and index of a view's slice."""
        d = VIEW_AXIS[view]
        a = self.perm[d]
        return "ijk"[a], (self.shape[d] - 1 - index if self.flip[d] else index)


def display_frame(volume: Volume) -> DisplayFrame:
    """The :class:`DisplayFrame` of ``volume``: each array axis goes to the patient axis it is
    most aligned with (greedy on ``|direction|``, so 45-degree grids still get distinct axes)."""
    absd = np.abs(np.asarray(volume.direction))  # rows: L, P, S; columns: i, j, k
    perm = nearest_axes(volume.direction)
    flip = tuple(bool(volume.direction[d, perm[d]] < 0) for d in range(3))
    cosines = [absd[d, perm[d]] for d in range(3)]
    obliquity = float(np.degrees(np.arccos(np.clip(min(cosines), -1.0, 1.0))))
    return DisplayFrame(
        perm=(perm[0], perm[1], perm[2]), flip=(flip[0], flip[1], flip[2]),
        spacing=tuple(float(volume.spacing[a]) for a in perm),  # type: ignore[arg-type]
        shape=tuple(int(volume.shape[a]) for a in perm),  # type: ignore[arg-type]
        obliquity_deg=round(obliquity, 3))


def view_plane(canon: np.ndarray, view: str, index: int) -> np.ndarray:
    """2D display image (rows top to bottom, columns left to right) of one view.

    ``canon`` is a display-frame array ``[x, y, z]``; ``index`` the slice along the view's
    fixed axis. See the module docstring for the orientation of each view.
    """
    if view == "axial":
        return canon[:, :, index].T
    if view == "coronal":
        return canon[:, index, :].T[::-1]
    if view == "sagittal":
        return canon[index, :, :].T[::-1]
    raise ValueError(f"unknown view {view!r}; use one of {VIEWS}")


def view_pixel_mm(frame: DisplayFrame, view: str) -> tuple[float, float]:
    """(width, height) of one display pixel of ``view``, in mm."""
    sx, sy, sz = frame.spacing
    return {"axial": (sx, sy), "coronal": (sx, sz), "sagittal": (sy, sz)}[view]


def view_point(frame: DisplayFrame, view: str, xyz: tuple[int, int, int]) -> tuple[int, int]:
    """(column, row) on the view image of display voxel ``(x, y, z)``."""
    x, y, z = xyz
    nz = frame.shape[2]
    return {"axial": (x, y), "coronal": (x, nz - 1 - z),
            "sagittal": (y, nz - 1 - z)}[view]


@dataclass(frozen=True)
class WorstBoundary:
    """The surface voxel farthest from the other segmentation's surface, for one label."""

    label: int
    ijk: tuple[int, int, int]
    distance_mm: float
    side: str  # "prediction" (a predicted boundary far from the reference) or "reference"


def worst_boundary_point(sd: SurfaceDistances, label: int) -> WorstBoundary | None:
    """Locate the maximum surface distance (the Hausdorff distance) of one label.

    ``sd`` comes from :func:`medseg.metrics.surface_distances`, whose ``*_surface_ijk`` give the
    voxel of every distance, so the point found is exactly the one behind ``hd``. Returns
    ``None`` when either segmentation is empty (no finite distance).
    """
    best: WorstBoundary | None = None
    for dist, ijk, side in ((sd.pred_to_ref, sd.pred_surface_ijk, "prediction"),
                            (sd.ref_to_pred, sd.ref_surface_ijk, "reference")):
        dist = np.asarray(dist)
        if dist.size == 0 or not np.all(np.isfinite(dist)):
            return None
        n = int(np.argmax(dist))
        if best is None or float(dist[n]) > best.distance_mm:
            v = np.asarray(ijk)[n]
            best = WorstBoundary(int(label), (int(v[0]), int(v[1]), int(v[2])), float(dist[n]),
                                 side)
    return best


def error_slices(pred: np.ndarray, ref: np.ndarray, frame: DisplayFrame) -> dict[str, int]:
    """Per view, the display-frame slice index holding the most disagreeing voxels (FP + FN
    of any label: voxels where the two label maps differ). Centre slices when they agree."""
    err = frame.canonical(pred != ref)
    out: dict[str, int] = {}
    for view in VIEWS:
        d = VIEW_AXIS[view]
        other = tuple(a for a in range(3) if a != d)
        counts = err.sum(axis=other)
        out[view] = int(np.argmax(counts)) if counts.max() > 0 else frame.shape[d] // 2
    return out


def error_counts(pred: np.ndarray, ref: np.ndarray, frame: DisplayFrame,
                 slices: dict[str, int]) -> dict[str, int]:
    """Number of disagreeing voxels on each view's chosen slice."""
    err = frame.canonical(pred != ref)
    return {v: int(view_plane(err, v, i).sum()) for v, i in slices.items()}


def foreground_centre(ref: np.ndarray) -> tuple[int, int, int]:
    """Voxel nearest the centroid of the non-zero voxels (the grid centre when there are none)."""
    idx = np.argwhere(ref != 0)
    if idx.size == 0:
        return tuple(int(s) // 2 for s in ref.shape)  # type: ignore[return-value]
    c = np.round(idx.mean(axis=0)).astype(int)
    return (int(c[0]), int(c[1]), int(c[2]))
