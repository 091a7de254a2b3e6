"""The one image type of medseg: a voxel array plus its complete geometry.

Conventions (the single place where they are defined):

* ``array`` is indexed ``array[i, j, k]``: ``i`` runs along the first image axis (DICOM/ITK
  columns, "x"), ``j`` along the second (rows, "y"), ``k`` along the slice axis. This is
  nibabel's order; SimpleITK's ``GetArrayFromImage`` returns the transpose ``[k, j, i]``.
* Geometry is stored in the **LPS** patient frame (DICOM and ITK): world position of voxel
  ``(i, j, k)`` is ``origin + direction @ (spacing * (i, j, k))`` in millimetres, where the
  columns of ``direction`` are the unit vectors of the i, j and k axes.
* ``affine_lps`` is the 4x4 matrix of that mapping. ``affine_ras`` (NIfTI, nibabel, MONAI
  default) is ``LPS_TO_RAS @ affine_lps``; :func:`lps_to_ras` is the only conversion point.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from medseg.errors import GeometryError, GeometryMismatchError

#: Flips x and y: maps LPS coordinates to RAS coordinates and back (it is its own inverse).
LPS_TO_RAS: npt.NDArray[np.float64] = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Tolerance on direction cosines: columns whose norms/dot products are off by more are refused.
ORTHONORMAL_TOL = 1e-3


def lps_to_ras(affine: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Convert a 4x4 affine between LPS and RAS world frames (the conversion is symmetric)."""
    return LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)


def _orthonormalise(direction: npt.NDArray[np.float64], what: str) -> npt.NDArray[np.float64]:
    """Check that ``direction`` is orthonormal within tolerance and return it cleaned.

    Tiny float noise (from float32 headers) is removed by a polar decomposition; anything beyond
    :data:`ORTHONORMAL_TOL` means a sheared grid, which is refused rather than silently distorted.
    """
    gram = direction.T @ direction
    err = float(np.abs(gram - np.eye(3)).max())
    if not np.isfinite(err) or err > ORTHONORMAL_TOL:
        raise GeometryError(
            f"{what}: direction cosines are not orthonormal (max |D^T D - I| = {err:.3g}). "
            "The grid is sheared or skewed, which medseg cannot represent without resampling. "
            "Resample the image onto an orthogonal grid first (e.g. with 3D Slicer or "
            "SimpleITK.Resample) and try again."
        )
    u, _, vt = np.linalg.svd(direction)
    return np.asarray(u @ vt, dtype=np.float64)


@dataclass
class Volume:
    """A 3D image or label map with its geometry and metadata.

    Attributes:
        array: voxels, shape ``(I, J, K)`` in ``[i, j, k]`` order (see module docstring).
        spacing: voxel size along i, j, k in mm.
        origin: world position (LPS, mm) of voxel ``(0, 0, 0)``'s centre.
        direction: 3x3, columns are the LPS unit vectors of the i, j, k axes.
        modality: ``"CT"``, ``"MR"``, ... or ``None`` when unknown.
        labels: for label maps, ``{value: name}`` for every non-zero label; ``None`` for images.
        meta: source metadata, e.g. ``meta["dicom"]`` (:class:`medseg.io.dicom.DicomSource`)
            or ``meta["path"]``. Never needed to interpret the geometry.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: npt.NDArray[np.float64] = field(default_factory=lambda: np.eye(3))
    modality: str | None = None
    labels: dict[int, str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise GeometryError(
                f"Volume needs a 3D array, got shape {self.array.shape}. "
                "Select one 3D frame (or add a singleton slice axis for a 2D image)."
            )
        spacing = tuple(float(s) for s in self.spacing)
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise GeometryError(f"Voxel spacing must be 3 positive numbers, got {self.spacing}.")
        origin = tuple(float(o) for o in self.origin)
        if len(origin) != 3 or not all(np.isfinite(origin)):
            raise GeometryError(f"Origin must be 3 finite numbers, got {self.origin}.")
        self.spacing = spacing  # type: ignore[assignment]
        self.origin = origin  # type: ignore[assignment]
        direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        self.direction = _orthonormalise(direction, "Volume")
        if self.labels is not None:
            self.labels = {int(k): str(v) for k, v in self.labels.items()}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_affine(
        cls,
        array: np.ndarray,
        affine: npt.ArrayLike,
        frame: str = "RAS",
        **kwargs: Any,
    ) -> Volume:
        """Build a Volume from a 4x4 voxel-to-world affine in the ``"RAS"`` or ``"LPS"`` frame."""
        aff = np.asarray(affine, dtype=np.float64)
        if frame.upper() == "RAS":
            aff = lps_to_ras(aff)
        elif frame.upper() != "LPS":
            raise ValueError(f"frame must be 'RAS' or 'LPS', got {frame!r}")
        m = aff[:3, :3]
        spacing = np.linalg.norm(m, axis=0)
        if np.any(spacing <= 0) or not np.all(np.isfinite(aff)):
            raise GeometryError(f"Affine has a zero-length or non-finite axis: {aff.tolist()}")
        return cls(array, tuple(spacing), tuple(aff[:3, 3]), m / spacing, **kwargs)

    def with_array(self, array: np.ndarray, *, labels: dict[int, str] | None = None,
                   modality: str | None = None) -> Volume:
        """A new Volume on the same grid holding ``array`` (e.g. a mask predicted for this image).

        ``labels`` given means the result is a label map; metadata is shared (not copied).
        """
        array = np.asarray(array)
        if array.shape != self.shape:
            raise GeometryMismatchError(
                f"Array of shape {array.shape} cannot take the geometry of a volume of shape "
                f"{self.shape}."
            )
        return dataclasses.replace(
            self, array=array, labels=labels,
            modality=modality if modality is not None else ("SEG" if labels is not None
                                                             else self.modality),
        )

    # ------------------------------------------------------------------ geometry
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def is_label(self) -> bool:
        return self.labels is not None

    @property
    def affine_lps(self) -> npt.NDArray[np.float64]:
        """4x4 voxel index -> LPS world (mm)."""
        aff = np.eye(4)
        aff[:3, :3] = self.direction * np.asarray(self.spacing)
        aff[:3, 3] = self.origin
        return aff

    @property
    def affine_ras(self) -> npt.NDArray[np.float64]:
        """4x4 voxel index -> RAS world (mm), as stored in NIfTI and used by nibabel/MONAI."""
        return lps_to_ras(self.affine_lps)

    def index_to_world(self, ijk: npt.ArrayLike, frame: str = "LPS") -> npt.NDArray[np.float64]:
        """World coordinates (mm) of voxel indices; ``ijk`` has shape ``(3,)`` or ``(N, 3)``."""
        pts = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
        aff = self.affine_lps if frame.upper() == "LPS" else self.affine_ras
        out = pts @ aff[:3, :3].T + aff[:3, 3]
        return out[0] if np.ndim(ijk) == 1 else out

    def world_to_index(self, xyz: npt.ArrayLike, frame: str = "LPS") -> npt.NDArray[np.float64]:
        """Continuous voxel indices of world points; ``xyz`` has shape ``(3,)`` or ``(N, 3)``."""
        pts = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
        aff = self.affine_lps if frame.upper() == "LPS" else self.affine_ras
        out = (pts - aff[:3, 3]) @ np.linalg.inv(aff[:3, :3]).T
        return out[0] if np.ndim(xyz) == 1 else out

    @property
    def orientation(self) -> str:
        """Axis codes in nibabel's convention: each letter is where that axis *increases toward*.

        A standard NIfTI from dcm2niix is ``"RAS"``; a DICOM axial series read as is is
        ``"LPS"`` (i toward the patient's Left, j toward Posterior, k toward Superior).
        """
        codes = []
        for axis in self.direction.T:  # LPS unit vectors of i, j, k
            dim = int(np.argmax(np.abs(axis)))
            positive = axis[dim] > 0
            codes.append(("L", "P", "S")[dim] if positive else ("R", "A", "I")[dim])
        return "".join(codes)

    def reorient(self, code: str = "LPS") -> Volume:
        """The same voxels permuted/flipped so the axes point as close as possible to ``code``.

        Exact (no interpolation): only axis permutations and flips, with origin and direction
        updated so every voxel keeps its world position. ``code`` uses :attr:`orientation`'s
        letters, e.g. ``"LPS"`` (DICOM-like) or ``"RAS"``. Returns views where possible.
        """
        code = code.upper()
        letters = {"L": (0, 1), "R": (0, -1), "P": (1, 1), "A": (1, -1), "S": (2, 1), "I": (2, -1)}
        if len(code) != 3 or sorted(letters[c][0] for c in code if c in letters) != [0, 1, 2]:
            raise ValueError(f"orientation code must name each of L/R, P/A, S/I once: {code!r}")
        src_axis_of_world = nearest_axes(self.direction)
        perm = [int(src_axis_of_world[letters[c][0]]) for c in code]
        arr = np.transpose(self.array, perm)
        spacing = np.asarray(self.spacing)[perm]
        direction = self.direction[:, perm].copy()
        origin = np.asarray(self.origin, dtype=np.float64)
        for out_axis, c in enumerate(code):
            world_dim, sign = letters[c]
            if np.sign(direction[world_dim, out_axis]) != sign:
                n = arr.shape[out_axis]
                origin = origin + direction[:, out_axis] * spacing[out_axis] * (n - 1)
                direction[:, out_axis] *= -1
                arr = np.flip(arr, axis=out_axis)
        return dataclasses.replace(self, array=arr, spacing=tuple(spacing),
                                   origin=tuple(origin), direction=direction)

    def conform_to(self, reference: Volume, atol_mm: float = 1e-4) -> Volume:
        """This volume on ``reference``'s grid *without interpolation*, or an error.

        Succeeds when both sample the same points and only the axis order or direction differs
        (e.g. a NIfTI mask written by dcm2niix with the row axis flipped relative to the DICOM
        series): the voxels are permuted/flipped exactly. Anything else raises
        :class:`GeometryMismatchError`; resample explicitly then (nearest neighbour for labels).
        """
        if not self.grid_differences(reference, atol_mm=atol_mm):
            return self
        candidate = self.reorient(reference.orientation)
        if candidate.grid_differences(reference, atol_mm=atol_mm):
            self.check_same_grid(reference, atol_mm=atol_mm)  # raises with the differences
        return dataclasses.replace(candidate, array=np.ascontiguousarray(candidate.array),
                                   spacing=reference.spacing, origin=reference.origin,
                                   direction=reference.direction)

    def grid_differences(self, other: Volume, atol_mm: float = 1e-4,
                         atol_dir: float = 1e-5) -> list[str]:
        """Human-readable list of every way the voxel grids of ``self`` and ``other`` differ."""
        diffs: list[str] = []
        if self.shape != other.shape:
            diffs.append(f"shape {self.shape} vs {other.shape}")
        ds = np.abs(np.subtract(self.spacing, other.spacing))
        if ds.max() > atol_mm:
            diffs.append(f"spacing {_fmt(self.spacing)} vs {_fmt(other.spacing)} mm")
        do = np.abs(np.subtract(self.origin, other.origin))
        if do.max() > atol_mm:
            diffs.append(f"origin {_fmt(self.origin)} vs {_fmt(other.origin)} mm (LPS), "
                         f"off by {do.max():.4g} mm")
        dd = np.abs(self.direction - other.direction)
        if dd.max() > atol_dir:
            diffs.append(f"direction {self.orientation} {np.round(self.direction, 5).tolist()} vs "
                         f"{other.orientation} {np.round(other.direction, 5).tolist()}")
        return diffs

    def check_same_grid(self, other: Volume, what: str = "volume", reference: str = "reference",
                        atol_mm: float = 1e-4) -> None:
        """Raise :class:`GeometryMismatchError` saying exactly what differs, if anything does."""
        diffs = self.grid_differences(other, atol_mm=atol_mm)
        if diffs:
            raise GeometryMismatchError(
                f"The {what} and the {reference} are not on the same voxel grid: "
                + "; ".join(diffs)
                + ". Resample the first onto the second (nearest neighbour for label maps) "
                "or pass the image it was made from as reference."
            )

    def describe(self) -> dict[str, Any]:
        """Plain summary used by ``medseg info`` and reports."""
        arr = self.array
        finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
        out: dict[str, Any] = {
            "shape": list(self.shape),
            "spacing_mm": [round(s, 6) for s in self.spacing],
            "origin_lps_mm": [round(o, 4) for o in self.origin],
            "orientation": self.orientation,
            "dtype": str(arr.dtype),
            "modality": self.modality,
            "value_range": [float(finite.min()), float(finite.max())] if finite.size else None,
        }
        if self.labels is not None:
            present = [v for v in present_values(arr) if v != 0]
            out["labels"] = {str(k): self.labels.get(k, f"label_{k}") for k in present}
        return out


def present_values(arr: np.ndarray, chunk: int = 1 << 24) -> list[int]:
    """Sorted values occurring in a label array. uint8/uint16 (what medseg writes): a bincount
    over chunks in memory order, no sorted copy of the volume as ``np.unique`` makes (0.06 vs
    1.25 s on 512x512x300 here); torch's bincount when torch is already loaded, numpy's
    otherwise. Other dtypes: ``np.unique``."""
    if arr.dtype not in (np.uint8, np.uint16):  # other label dtypes: the plain way
        return [int(v) for v in np.unique(arr)]
    arr = arr.astype(arr.dtype.newbyteorder("="), copy=False)
    flat = arr.ravel(order="K")
    counts = np.zeros(256 if arr.dtype == np.uint8 else 65536, dtype=np.int64)
    torch = sys.modules.get("torch")
    for i in range(0, flat.size, chunk):
        part = flat[i:i + chunk]
        if torch is not None:
            # a copy only for uint16 (no uint16 bincount in torch) or a read-only chunk
            t = torch.from_numpy(part.astype(np.int32) if part.dtype == np.uint16 or
                                 not part.flags.writeable else np.ascontiguousarray(part))
            c = torch.bincount(t).numpy()
        else:
            c = np.bincount(part)
        counts[:c.size] += c
    return [int(v) for v in np.flatnonzero(counts)]


def nearest_axes(direction: npt.NDArray[np.float64]) -> list[int]:
    """For each LPS world axis (x, y, z), the array axis most aligned with it.

    Greedy on ``|direction|`` so every array axis is used once, even for 45-degree grids.
    """
    work = np.abs(np.asarray(direction, dtype=np.float64)).copy()  # rows: x, y, z; cols: i, j, k
    out = [-1, -1, -1]
    for _ in range(3):
        d, a = np.unravel_index(int(np.argmax(work)), work.shape)
        out[int(d)] = int(a)
        work[d, :] = -1.0
        work[:, a] = -1.0
    return out


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"
