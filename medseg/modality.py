"""The one modality decision: which kind of image a Volume is, decided once for every consumer.

The viewer's intensity window, the promptable model's intensity window (a CT HU window or
percentiles, :mod:`medseg.models.prompt_recipe`) and the auto-segmentation model's modality
check all read the same :class:`ModalityDecision`, made by :func:`decide_modality`:

1. an explicit override (``medseg prompt --modality``, the app's modality selector) wins;
2. else the header's modality when the file has one (DICOM ``Modality``);
3. else the data: a volume with a finite voxel below :data:`CT_AIR_HU` (-500) holds air in
   Hounsfield units, so it is CT; otherwise the modality stays unknown (``None``), which every
   consumer treats as "not CT" (percentile windows). NIfTI, NRRD and MHA files carry no
   modality, so a CT opened from them is recognised by this rule.

Names are normalised once (:func:`normalize_modality`: upper case, ``MRI`` -> ``MR``,
``PET`` -> ``PT``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from medseg.volume import Volume

__all__ = ["CT_AIR_HU", "KNOWN_MODALITIES", "ModalityDecision", "check_modality",
           "decide_modality", "looks_like_ct", "normalize_modality"]

#: a CT holds air (about -1000 HU); no MR, PET or normalised image goes this far below zero
CT_AIR_HU = -500.0
_ALIASES = {"MRI": "MR", "PET": "PT"}
#: DICOM's defined terms for image modalities (PS3.3 C.7.3.1.1.1) an override may name
KNOWN_MODALITIES = ("CT", "MR", "PT", "NM", "US", "XA", "RF", "CR", "DX", "MG", "IO", "PX",
                    "OT", "SC", "OPT", "OCT", "ES", "XC", "GM", "SM", "RG", "BDUS", "IVUS",
                    "IVOCT")

Source = Literal["override", "header", "data"]


def normalize_modality(modality: str | None) -> str | None:
    """``"ct"`` -> ``"CT"``, ``"MRI"`` -> ``"MR"``, ``"PET"`` -> ``"PT"``; empty -> None."""
    text = (modality or "").strip().upper()
    return _ALIASES.get(text, text) or None


def looks_like_ct(array: np.ndarray) -> bool:
    """Whether ``array`` (any shape) has a finite value below :data:`CT_AIR_HU`."""
    values = np.asarray(array)
    if values.size == 0:
        return False
    if np.issubdtype(values.dtype, np.floating):
        finite = values[np.isfinite(values)]
        return bool(finite.size) and float(finite.min()) < CT_AIR_HU
    return float(values.min()) < CT_AIR_HU


def check_modality(modality: str | None, option: str = "--modality") -> str | None:
    """The normalised override, or :class:`~medseg.errors.ModalityError` for an unknown code.

    A typo (``XRAY``, ``C T``) would otherwise silently mean "not CT" and window a CT by
    percentiles; an explicit choice must name a DICOM modality.
    """
    chosen = normalize_modality(modality)
    if chosen is not None and chosen not in KNOWN_MODALITIES:
        from medseg.errors import ModalityError

        raise ModalityError(
            f"{option} {modality!r} is not a DICOM modality; give one of "
            f"{', '.join(KNOWN_MODALITIES[:6])}, ... (MRI and PET are accepted as MR and PT), "
            "or leave it out to decide from the file.")
    return chosen


@dataclass(frozen=True)
class ModalityDecision:
    """A volume's modality (``None``: unknown, treated as not CT) and where it came from."""

    modality: str | None
    source: Source

    @property
    def is_ct(self) -> bool:
        return self.modality == "CT"

    def describe(self) -> str:
        """One line for people, e.g. ``CT (from the data: voxels below -500, air in HU)``."""
        if self.source == "override":
            return f"{self.modality} (chosen)"
        if self.source == "header":
            return f"{self.modality} (from the file's header)"
        if self.is_ct:
            return f"CT (from the data: voxels below {CT_AIR_HU:g}, air in HU)"
        return f"unknown, not CT (no voxel below {CT_AIR_HU:g}; the file names no modality)"


def decide_modality(volume: Volume, override: str | None = None) -> ModalityDecision:
    """The modality of ``volume``: ``override``, else its header's, else the data rule."""
    chosen = check_modality(override)
    if chosen is not None:
        return ModalityDecision(chosen, "override")
    header = normalize_modality(volume.modality)
    if header is not None:
        return ModalityDecision(header, "header")
    return ModalityDecision("CT" if looks_like_ct(volume.array) else None, "data")
