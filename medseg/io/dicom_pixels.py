"""Pixel decoding and rescaling of DICOM slices (pydicom 3 + pylibjpeg / pyjpegls plugins).

Uncompressed little-endian data takes a fast path (``numpy.frombuffer`` with pydicom's own
unused-bit correction); everything else goes through ``Dataset.pixel_array``. Errors name the
file: truncated pixel data -> :class:`CorruptFileError`; a transfer syntax with no installed
decoder -> :class:`UnsupportedFormatError` naming the syntax and the package to install.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medseg.errors import CorruptFileError, UnsupportedFormatError
from medseg.io.quiet import one_line

#: Which pip package decodes which family of transfer syntaxes (prefix of the UID).
PLUGINS = {
    "1.2.840.10008.1.2.4.5": "pylibjpeg-libjpeg",      # JPEG baseline / extended
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg",     # JPEG lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",     # JPEG lossless SV1
    "1.2.840.10008.1.2.4.8": "pyjpegls",               # JPEG-LS
    "1.2.840.10008.1.2.4.9": "pylibjpeg-openjpeg",     # JPEG 2000
    "1.2.840.10008.1.2.4.20": "pylibjpeg-openjpeg",    # HTJ2K
    "1.2.840.10008.1.2.5": "pylibjpeg-rle",            # RLE lossless
}
_NATIVE = (ImplicitVRLittleEndian, ExplicitVRLittleEndian)


def plugin_for(ts: str) -> str | None:
    """The pip package that decodes transfer syntax ``ts``, or ``None`` if medseg knows none."""
    best = None
    for prefix, pkg in PLUGINS.items():
        if ts.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, pkg)
    return best[1] if best else None


def check_decodable(ts: UID, name: str) -> None:
    """Raise :class:`UnsupportedFormatError` if pydicom has no working decoder for ``ts``."""
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        decoder = None
    if decoder is not None and decoder.is_available:
        return
    plugin = plugin_for(str(ts))
    fix = (f"install the decoder: pip install {plugin}" if plugin else
           "no decoder exists in medseg for it; convert the files to an uncompressed or "
           "lossless transfer syntax first (e.g. `gdcmconv --raw` or `dcmdjpeg`)")
    raise UnsupportedFormatError(
        f"{name}: pixel data uses transfer syntax {ts} ({ts.name}), which cannot be decoded "
        f"here; {fix}."
    )


def decode(src: str | BinaryIO, name: str, header: Dataset,
           offset: int | None = None) -> npt.NDArray[np.generic]:
    """Stored pixel values of one file, shape ``(frames, rows, columns)`` (rescale not applied).

    ``header`` is the file's header (read with ``stop_before_pixels``); ``offset`` is where its
    Pixel Data element starts, when known. Uncompressed integer data is then read straight from
    that offset without parsing the header again.
    """
    _check_greyscale(header, name)
    meta_ts = transfer_syntax(header)
    ts = meta_ts or ImplicitVRLittleEndian
    if meta_ts in _NATIVE and offset is not None and _native_ok(header):
        data = _element_value(src, offset, ts == ImplicitVRLittleEndian, name)
        if data is not None:
            return _native(data, header, name)
    try:
        ds = pydicom.dcmread(src, force=True)
    except Exception as exc:
        raise CorruptFileError(
            f"{name}: cannot read this DICOM file ({type(exc).__name__}: "
            f"{one_line(exc, 200)}). It is truncated or damaged; copy it again from the source."
        ) from exc
    if "PixelData" not in ds:
        raise CorruptFileError(f"{name}: the image has no pixel data (the file is truncated "
                               "before it or is not an image). Copy it again from the source.")
    if ts in _NATIVE and _native_ok(ds):
        return _native(ds.PixelData, ds, name)
    check_decodable(ts, name)
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise CorruptFileError(
            f"{name}: pixel data (transfer syntax {ts.name}) could not be decoded "
            f"({type(exc).__name__}: {one_line(exc, 200)}). The file is truncated or damaged; "
            "copy it again from the source."
        ) from exc
    return arr.reshape(_frames(ds), int(ds.Rows), int(ds.Columns))


def transfer_syntax(ds: Dataset) -> UID | None:
    """The file's transfer syntax from its file meta, ``None`` if it has none."""
    meta = getattr(ds, "file_meta", None)
    value = meta.get("TransferSyntaxUID") if meta is not None else None
    return UID(str(value)) if value else None


def _frames(ds: Dataset) -> int:
    return int(ds.get("NumberOfFrames", 1) or 1)


def _check_greyscale(ds: Dataset, name: str) -> None:
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1:
        raise UnsupportedFormatError(
            f"{name}: colour image ({samples} samples per pixel, "
            f"{ds.get('PhotometricInterpretation')}). medseg reads greyscale CT/MR series only."
        )


def _native_ok(ds: Dataset) -> bool:
    """Whether the uncompressed fast path applies (8/16/32-bit integer pixels)."""
    return int(ds.get("BitsAllocated", 0) or 0) in (8, 16, 32) and "FloatPixelData" not in ds


def _element_value(src: str | BinaryIO, offset: int, implicit: bool, name: str) -> bytes | None:
    """Value of the (7FE0,0010) element starting at ``offset``; ``None`` if it is not there."""
    if isinstance(src, str):
        with open(src, "rb") as fh:
            fh.seek(offset)
            buf = fh.read()
    else:
        src.seek(offset)
        buf = src.read()
    if len(buf) < 8 or buf[:4] != b"\xe0\x7f\x10\x00":
        return None
    if implicit:
        start, length = 8, int.from_bytes(buf[4:8], "little")
    else:
        if len(buf) < 12 or buf[4:6] not in (b"OB", b"OW"):
            return None
        start, length = 12, int.from_bytes(buf[8:12], "little")
    if length == 0xFFFFFFFF:
        return None  # encapsulated: let pydicom handle it
    if len(buf) - start < length:
        raise CorruptFileError(
            f"{name}: pixel data is truncated ({len(buf) - start} of {length} bytes present). "
            "The file was cut short; copy it again from the source."
        )
    return buf[start:start + length]


def _native(data: bytes, ds: Dataset, name: str) -> npt.NDArray[np.generic]:
    """Uncompressed little-endian integer pixels, shape ``(frames, rows, columns)``."""
    bits = int(ds.BitsAllocated)
    stored = int(ds.get("BitsStored", bits) or bits)
    signed = int(ds.get("PixelRepresentation", 0) or 0)
    frames, rows, cols = _frames(ds), int(ds.Rows), int(ds.Columns)
    need = frames * rows * cols * bits // 8
    if len(data) < need:
        raise CorruptFileError(
            f"{name}: pixel data is truncated ({len(data)} bytes where {rows}x{cols}x{frames} "
            f"pixels of {bits} bits need {need}). Copy the file again from the source."
        )
    dtype = np.dtype(f"<{'ui'[signed]}{bits // 8}")
    arr = np.frombuffer(data, dtype=dtype, count=need // dtype.itemsize)
    if 0 < stored < bits:  # same unused-bit correction as pydicom's decoder
        shift = bits - stored
        arr = np.right_shift(np.left_shift(arr, shift), shift)
    return arr.reshape(frames, rows, cols)


def rescale(raw: npt.NDArray[np.generic], slopes: npt.NDArray[np.float64],
            intercepts: npt.NDArray[np.float64]) -> npt.NDArray[np.generic]:
    """Apply per-slice RescaleSlope/Intercept to ``raw`` of shape ``(K, rows, columns)``.

    Result is int16 when every slope is 1, every intercept is a whole number and the rescaled
    range fits int16; float32 otherwise (computed in float64, then rounded once).
    """
    if raw.size == 0:
        return raw.astype(np.float32)
    integral = bool(np.all(slopes == 1.0) and np.all(intercepts == np.round(intercepts)))
    if integral:
        lo = int(raw.min()) + int(intercepts.min())
        hi = int(raw.max()) + int(intercepts.max())
        if lo >= -(2**15) and hi < 2**15:
            if raw.dtype == np.int16 and not np.any(intercepts):
                return raw
            out = np.empty(raw.shape, dtype=np.int16)
            for k in range(raw.shape[0]):
                np.add(raw[k], np.int32(intercepts[k]), out=out[k], casting="unsafe")
            return out
    out32 = np.empty(raw.shape, dtype=np.float32)
    for k in range(raw.shape[0]):
        out32[k] = raw[k].astype(np.float64) * slopes[k] + intercepts[k]
    return out32
