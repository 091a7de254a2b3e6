"""Resampling one volume onto another volume's voxel grid, in world (LPS) space.

The only resampler of medseg. Label maps are always resampled with nearest neighbour (no new
label values can appear); images with linear interpolation. Positions are matched in world
coordinates, so flipped, permuted, oblique and anisotropic grids are all handled: a voxel of
the output takes the value the input has at the same physical point.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import SimpleITK as sitk

from medseg.volume import Volume

__all__ = ["resample_to", "to_sitk"]


def to_sitk(volume: Volume, array: np.ndarray | None = None) -> sitk.Image:
    """A SimpleITK image of ``array`` (default ``volume.array``, shape ``(I, J, K)``) with the
    volume's geometry. SimpleITK arrays are ``[k, j, i]``, hence the transpose; ITK's direction
    matrix has the axis unit vectors as columns, exactly like :attr:`Volume.direction`."""
    arr = volume.array if array is None else array
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(arr, (2, 1, 0))))
    img.SetSpacing(tuple(float(s) for s in volume.spacing))
    img.SetOrigin(tuple(float(o) for o in volume.origin))
    img.SetDirection(tuple(float(d) for d in np.asarray(volume.direction).ravel()))
    return img


def _label_dtype(arr: np.ndarray) -> np.dtype:
    """A dtype SimpleITK resamples exactly for a label array (bool is not an ITK pixel type)."""
    if arr.dtype == np.bool_:
        return np.dtype(np.uint8)
    if arr.dtype.kind in "iu":
        return arr.dtype
    return np.dtype(np.int32)  # float label maps hold whole numbers (see io.as_label_map)


def resample_to(volume: Volume, reference: Volume, *, label: bool | None = None,
                default_value: float | None = None) -> Volume:
    """Resample ``volume`` onto the voxel grid of ``reference``.

    Args:
        volume: image or label map, array ``(I, J, K)`` on its own grid.
        reference: the grid to produce (shape, spacing, origin, direction); its voxels are
            not used.
        label: ``True`` forces nearest-neighbour (label map), ``False`` linear (image);
            ``None`` decides from ``volume.is_label``.
        default_value: value of output voxels that fall outside ``volume``; default 0 for label
            maps and the minimum of the image for images (air for CT, background for MR).

    Returns:
        A new :class:`Volume` with ``reference``'s shape and geometry and ``volume``'s
        modality and label names. Label maps keep their dtype (bool stays bool); images become
        float32 (float64 stays float64). When the grids already match (within 1e-4 mm), the
        voxels are returned unchanged (a copy), with no interpolation at all. ``meta`` gains
        ``"resampled_from"``: the original grid and the interpolator used.
    """
    is_label = volume.is_label if label is None else bool(label)
    if not volume.grid_differences(reference):
        return dataclasses.replace(
            volume, array=volume.array.copy(), spacing=reference.spacing,
            origin=reference.origin, direction=np.array(reference.direction, copy=True),
            meta=dict(volume.meta))
    src = volume.array
    if is_label:
        work = src.astype(_label_dtype(src), copy=False)
        interp = sitk.sitkNearestNeighbor
        fill = 0.0 if default_value is None else float(default_value)
    else:
        out_dtype = np.float64 if src.dtype == np.float64 else np.float32
        work = src.astype(out_dtype, copy=False)
        interp = sitk.sitkLinear
        fill = (float(np.nanmin(src)) if src.size else 0.0) if default_value is None \
            else float(default_value)
    ref_img = sitk.Image([int(s) for s in reference.shape], sitk.sitkUInt8)
    ref_img.SetSpacing(tuple(float(s) for s in reference.spacing))
    ref_img.SetOrigin(tuple(float(o) for o in reference.origin))
    ref_img.SetDirection(tuple(float(d) for d in np.asarray(reference.direction).ravel()))
    src_img = to_sitk(volume, work)
    out_img = sitk.Resample(src_img, ref_img, sitk.Transform(), interp, fill,
                            src_img.GetPixelID())
    out = np.transpose(sitk.GetArrayFromImage(out_img), (2, 1, 0))
    if is_label:
        out = out.astype(src.dtype, copy=False)
    meta = dict(volume.meta)
    meta["resampled_from"] = {
        "shape": list(volume.shape),
        "spacing_mm": list(volume.spacing),
        "origin_lps_mm": list(volume.origin),
        "orientation": volume.orientation,
        "interpolator": "nearest neighbour" if is_label else "linear",
    }
    return dataclasses.replace(
        volume, array=np.ascontiguousarray(out), spacing=reference.spacing,
        origin=reference.origin, direction=np.array(reference.direction, copy=True), meta=meta)
