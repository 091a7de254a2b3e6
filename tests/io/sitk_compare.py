"""Compare a medseg Volume with what SimpleITK reads (the independent reference)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from medseg.volume import Volume


def assert_matches_sitk(vol: Volume, img: sitk.Image, atol_mm: float = 1e-4,
                        values: bool = True) -> None:
    """Origin, spacing, direction within ``atol_mm`` and (optionally) identical voxels."""
    np.testing.assert_allclose(vol.origin, img.GetOrigin(), atol=atol_mm)
    np.testing.assert_allclose(vol.spacing, img.GetSpacing(), atol=atol_mm)
    np.testing.assert_allclose(vol.direction.flatten(), img.GetDirection(), atol=atol_mm)
    if values:
        ref = sitk.GetArrayFromImage(img).T
        assert vol.shape == ref.shape
        np.testing.assert_array_equal(vol.array, ref)
