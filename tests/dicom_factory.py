"""Write a Volume as a synthetic DICOM CT/MR series (test fixture generator).

``write_series(volume, folder, ...)`` turns ``volume.array[i, j, k]`` (integer values, LPS
geometry) into one file per slice (or one enhanced multi-frame file), with optional lossless
compression (``"rle"``, ``"jpegls"``, ``"j2k"`` via pydicom's ``Dataset.compress``) and knobs
that break the series in the ways a reader must detect: a dropped slice, gantry tilt, a
duplicated slice, a junk non-DICOM file, shuffled file names and InstanceNumbers.

Slice ``k`` is written at ``origin + direction[:, 2] * spacing[2] * k`` with
``ImageOrientationPatient = direction[:, 0] + direction[:, 1]`` and
``PixelSpacing = [spacing[1], spacing[0]]``; its pixel rows run along ``j``. A reader that
sorts along ``row x col`` therefore returns the volume unchanged when ``det(direction) > 0``
and reversed along ``k`` when ``det(direction) < 0`` (see :func:`expected_read`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)
from pydicom.valuerep import DSfloat

from medseg.volume import Volume

COMPRESSION = {"rle": RLELossless, "jpegls": JPEGLSLossless, "j2k": JPEG2000Lossless}
SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}
ENHANCED_SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2.1", "MR": "1.2.840.10008.5.1.4.1.1.4.1"}


def ds_values(values: Any) -> list[DSfloat]:
    """Numbers as DICOM decimal strings (at most 16 characters, full usable precision)."""
    return [DSfloat(float(v), auto_format=True) for v in np.ravel(values)]


def expected_read(volume: Volume) -> Volume:
    """What a reader sorting along ``row x col`` must return for ``write_series(volume)``."""
    if np.linalg.det(volume.direction) > 0:
        return volume
    k = volume.shape[2] - 1
    direction = volume.direction.copy()
    direction[:, 2] *= -1
    origin = volume.index_to_world([0, 0, k])
    return Volume(volume.array[:, :, ::-1], volume.spacing, tuple(origin), direction,
                  volume.modality)


def _stored(volume: Volume, intercept: float) -> tuple[np.ndarray, int]:
    """Stored values ``[k, rows, cols]`` and PixelRepresentation for ``value - intercept``."""
    stored = np.round(volume.array.astype(np.float64) - intercept).transpose(2, 1, 0)
    if stored.min() >= 0 and stored.max() <= 65535:
        return stored.astype(np.uint16), 0
    return stored.astype(np.int16), 1


def _base(modality: str, uids: dict[str, str], shape: tuple[int, int], pixel_rep: int,
          description: str, series_number: int) -> Dataset:
    ds = Dataset()
    ds.PatientName, ds.PatientID = "Synthetic^Phantom", "MEDSEG-TEST"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids["study"], uids["series"]
    ds.FrameOfReferenceUID = uids["for"]
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20240101", "120000", ""
    ds.Modality, ds.SeriesNumber, ds.SeriesDescription = modality, series_number, description
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = pixel_rep
    return ds


def _file_meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _save(ds: Dataset, pixels: np.ndarray, path: Path, compression: str | None) -> None:
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW"
    if compression:
        ds.compress(COMPRESSION[compression], arr=pixels if pixels.shape[0] > 1 else pixels[0],
                    generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)


def write_series(volume: Volume, folder: str | Path, *, modality: str = "CT",
                 compression: str | None = None, multiframe: bool = False,
                 shuffle: bool = True, seed: int = 0, drop: tuple[int, ...] = (),
                 tilt_deg: float = 0.0, duplicate: int | None = None, junk: bool = False,
                 series_uid: str | None = None, series_number: int = 1,
                 description: str = "medseg synthetic", intercept: float | None = None,
                 slope: float = 1.0) -> list[Path]:
    """Write ``volume`` as a DICOM series into ``folder``; return the files in slice order.

    ``drop``: slice indices left out; ``tilt_deg``: shift slice ``k`` along the column direction
    by ``tan(tilt) * k * spacing_k`` (gantry tilt); ``duplicate``: write that slice twice;
    ``junk``: add a non-DICOM ``notes.txt``; ``slope``/``intercept``: RescaleSlope/Intercept
    (default intercept -1024 for CT, 0 for MR). Values must be representable after rescale.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    intercept = (-1024.0 if modality == "CT" else 0.0) if intercept is None else intercept
    vol = volume
    if slope != 1.0:
        vol = volume.with_array(volume.array / slope)
    stored, pixel_rep = _stored(vol, intercept / slope)
    uids = {"study": generate_uid(), "series": series_uid or generate_uid(),
            "for": generate_uid()}
    d, sp = volume.direction, volume.spacing
    ks = [k for k in range(volume.shape[2]) if k not in drop]
    if duplicate is not None:
        ks.insert(ks.index(duplicate) + 1, duplicate)
    shift = np.tan(np.radians(tilt_deg)) * sp[2]
    positions = [np.asarray(volume.origin) + d[:, 2] * sp[2] * k + d[:, 1] * shift * k
                 for k in ks]
    base = _base(modality, uids, (volume.shape[1], volume.shape[0]), pixel_rep, description,
                 series_number)
    common = dict(iop=ds_values(np.concatenate([d[:, 0], d[:, 1]])),
                  spacing=ds_values([sp[1], sp[0]]), thickness=DSfloat(sp[2], auto_format=True),
                  slope=slope, intercept=intercept)
    if multiframe:
        path = folder / "enhanced.dcm"
        _write_multiframe(base, common, stored, ks, positions, path, modality, compression, rng)
        out = [path]
    else:
        names = [f"{rng.integers(16**8):08x}.dcm" if shuffle else f"slice{n:04d}.dcm"
                 for n in range(len(ks))]
        numbers = rng.permutation(len(ks)) + 1 if shuffle else np.arange(len(ks)) + 1
        out = []
        for n, (k, pos) in enumerate(zip(ks, positions, strict=True)):
            ds = base.copy()
            sop = generate_uid()
            ds.file_meta = _file_meta(SOP_CLASS[modality], sop)
            ds.SOPClassUID, ds.SOPInstanceUID = SOP_CLASS[modality], sop
            ds.InstanceNumber = int(numbers[n])
            ds.ImagePositionPatient = ds_values(pos)
            ds.ImageOrientationPatient, ds.PixelSpacing = common["iop"], common["spacing"]
            ds.SliceThickness = common["thickness"]
            ds.RescaleSlope = DSfloat(slope, auto_format=True)
            ds.RescaleIntercept = DSfloat(intercept, auto_format=True)
            _save(ds, stored[k][None], folder / names[n], compression)
            out.append(folder / names[n])
    if junk:
        (folder / "notes.txt").write_text("not a DICOM file\n")
    return out


def _item(**attrs: Any) -> Sequence:
    ds = Dataset()
    for key, value in attrs.items():
        setattr(ds, key, value)
    return Sequence([ds])


def _write_multiframe(base: Dataset, common: dict[str, Any], stored: np.ndarray,
                      ks: list[int], positions: list[np.ndarray], path: Path, modality: str,
                      compression: str | None, rng: np.random.Generator) -> None:
    """Enhanced CT/MR: frames in shuffled order; per-frame rescale overrides a wrong shared one."""
    order = rng.permutation(len(ks))
    ds = base.copy()
    sop = generate_uid()
    ds.file_meta = _file_meta(ENHANCED_SOP_CLASS[modality], sop)
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_SOP_CLASS[modality], sop
    ds.InstanceNumber, ds.NumberOfFrames = 1, len(ks)
    shared = Dataset()
    shared.PixelMeasuresSequence = _item(PixelSpacing=common["spacing"],
                                         SliceThickness=common["thickness"])
    shared.PlaneOrientationSequence = _item(ImageOrientationPatient=common["iop"])
    shared.PixelValueTransformationSequence = _item(  # deliberately wrong: per-frame wins
        RescaleSlope="1", RescaleIntercept="12345", RescaleType="US")
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for n in order:
        frame = Dataset()
        frame.PlanePositionSequence = _item(ImagePositionPatient=ds_values(positions[n]))
        frame.FrameContentSequence = _item(InStackPositionNumber=int(n) + 1)
        frame.PixelValueTransformationSequence = _item(
            RescaleSlope=DSfloat(common["slope"], auto_format=True),
            RescaleIntercept=DSfloat(common["intercept"], auto_format=True),
            RescaleType="HU" if modality == "CT" else "US")
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    _save(ds, np.stack([stored[ks[n]] for n in order]), path, compression)


def make_volume(shape: tuple[int, int, int] = (40, 32, 8), *, spacing: tuple[float, ...] =
                (0.5, 0.7, 5.0), direction: np.ndarray | None = None,
                origin: tuple[float, float, float] = (-12.5, 30.25, -100.0), seed: int = 0,
                modality: str = "CT") -> Volume:
    """A small CT-like volume (int16 HU, -1024..2000) with a unique value pattern per voxel."""
    rng = np.random.default_rng(seed)
    array = rng.integers(-1024, 2000, size=shape, dtype=np.int16)
    return Volume(array, tuple(spacing), origin,  # type: ignore[arg-type]
                  np.eye(3) if direction is None else direction, modality)


def rotation(axis: str, degrees: float) -> np.ndarray:
    """3x3 rotation about the x, y or z axis."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i = "xyz".index(axis)
    m = np.eye(3)
    a, b = [n for n in range(3) if n != i]
    m[a, a], m[a, b], m[b, a], m[b, b] = c, -s, s, c
    return m


__all__ = ["COMPRESSION", "expected_read", "make_volume", "rotation", "write_series"]
