"""Text headers of MetaImage (``.mha``/``.mhd``) and NRRD (``.nrrd``/``.nhdr``), parsed by medseg.

medseg reads these headers itself *before* SimpleITK opens anything, for two reasons:

1. **Which files will be read.** ``ElementDataFile`` (MetaImage) and ``data file`` /
   ``datafile`` (NRRD) may name another file, a ``LIST`` of files, or a printf pattern
   (``slice%03d.raw 1 10 1``); :mod:`medseg.io.detached` checks every one of them before a byte
   is read.
2. **Silent repairs.** ITK turns a NaN NRRD spacing into 1 mm and a negative spacing into a flip
   of the direction; the raw header values are checked here instead (``ElementSpacing[i]``,
   ``spacings[i]``, ``space directions[i]``, ``TransformMatrix``).

The parser errs on the strict side: keys are matched case-insensitively, every line separator
counts, and a header whose data-file field is not found within :data:`HEADER_LIMIT` bytes is
refused rather than guessed at.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import CorruptFileError

__all__ = ["HEADER_LIMIT", "MAX_DATA_FILES", "DataFiles", "ItkHeader", "parse_itk_header"]

#: Most header bytes medseg parses (a data-file field, or the end of an NRRD header, must come
#: before this).
HEADER_LIMIT = 1 << 20
#: Most data files one header may name (a LIST or an expanded pattern).
MAX_DATA_FILES = 100_000

_META_LINE = re.compile(r"^\s*([A-Za-z0-9_]+)\s*[=:]\s*(.*?)\s*$")
#: MetaIO skips CR, LF, space and tab before a key and ends it at "=" or ":"
_META_DATAFILE = re.compile(r"(?:^|[\r\n])[ \t\r\n]*ElementDataFile[ \t]*[=:][ \t]*",
                            re.IGNORECASE)
_NRRD_LINE = re.compile(r"^([^:#][^:]*?)\s*:=?\s?(.*?)\s*$")
_PRINTF = re.compile(r"%(?:%|[-+ #0]*\d*(?:\.\d+)?([a-zA-Z]))")
_LOCAL = ("LOCAL", "Local", "local")


@dataclass
class DataFiles:
    """Where a header's voxels are: ``local`` (in the header file) or the files ``names``."""

    field_name: str  # "ElementDataFile" or "data file"
    local: bool
    names: list[str] = field(default_factory=list)  # as written (stripped), relative to the header
    #: the same names with the trailing white space / carriage return a library may keep; checked
    #: too when such a file exists
    variants: list[str] = field(default_factory=list)


@dataclass
class ItkHeader:
    """A parsed MetaImage or NRRD header: ``fields`` maps lower-case keys to raw values."""

    path: Path
    format: str  # "metaimage" or "nrrd"
    fields: dict[str, str]
    data: DataFiles


def parse_itk_header(path: Path) -> ItkHeader:
    """Parse ``path`` as NRRD when it starts with ``NRRD``, else as MetaImage."""
    with open(path, "rb") as fh:
        raw = fh.read(HEADER_LIMIT + 1)
    truncated = len(raw) > HEADER_LIMIT
    raw = raw[:HEADER_LIMIT]
    if raw.startswith(b"NRRD"):
        return _parse_nrrd(path, raw, truncated)
    if path.name.lower().endswith((".nrrd", ".nhdr")):
        raise CorruptFileError(f"{path}: not an NRRD file (it does not start with 'NRRD'). "
                               "Check that the file is complete and really NRRD.")
    return _parse_metaimage(path, raw, truncated)


def _split(text: str) -> list[str]:
    """Lines split at every CR and LF (a superset of what MetaIO and teem split at)."""
    return re.split(r"[\r\n]", text)


def _raw_value(line_tail: str) -> tuple[str, list[str]]:
    """A data-file value up to the next LF: stripped, plus its unstripped variant."""
    raw = line_tail.split("\n", 1)[0]
    stripped = raw.strip()
    return stripped, ([raw.rstrip("\n")] if raw != stripped else [])


def _parse_metaimage(path: Path, raw: bytes, truncated: bool) -> ItkHeader:
    text = raw.decode("latin-1")
    m = _META_DATAFILE.search(text)
    if m is None:
        where = f"in its first {HEADER_LIMIT // 2**20} MiB" if truncated else "at all"
        raise CorruptFileError(
            f"{path}: no ElementDataFile line {where}, so this is not a MetaImage header medseg "
            "can check. Re-export the image (e.g. with SimpleITK or 3D Slicer).")
    fields: dict[str, str] = {}
    for line in _split(text[:m.start()]):
        fm = _META_LINE.match(line)
        if fm:
            fields.setdefault(fm.group(1).lower(), fm.group(2))
    value, variants = _raw_value(text[m.end():])
    fields["elementdatafile"] = value
    rest = text[m.end():].split("\n", 1)[1] if "\n" in text[m.end():] else ""
    return ItkHeader(path, "metaimage", fields,
                     _meta_data_files(path, value, variants, rest, fields, truncated))


def _meta_data_files(path: Path, value: str, variants: list[str], rest: str,
                     fields: dict[str, str], truncated: bool) -> DataFiles:
    name = "ElementDataFile"
    if value in _LOCAL:
        return DataFiles(name, local=True)
    if value.startswith("LIST"):
        if truncated:
            raise _too_long(path, name)
        return DataFiles(name, False, _limit(rest.split(), path, name))
    if "%" in value:
        tokens = value.split()
        dims = _ints(fields.get("dimsize", ""))
        default_max = dims[-1] if dims else None
        nums = [_int(t, path, name) for t in tokens[1:4]]
        lo = nums[0] if nums else 1
        hi = nums[1] if len(nums) > 1 else default_max
        step = nums[2] if len(nums) > 2 else 1
        if hi is None:
            raise CorruptFileError(f"{path}: ElementDataFile pattern {value!r} has no maximum "
                                   "and DimSize is missing; fix the header.")
        if step <= 0:
            raise CorruptFileError(f"{path}: ElementDataFile pattern {value!r} has step {step}; "
                                   "it must be positive. Fix the header.")
        return DataFiles(name, False, expand_pattern(tokens[0], lo, hi, step, path, name))
    return DataFiles(name, False, [value], variants)


def _parse_nrrd(path: Path, raw: bytes, truncated: bool) -> ItkHeader:
    text = raw.decode("latin-1")
    end = text.find("\n\n")  # teem ends the header at an empty line; never stop earlier
    if end < 0 and truncated:
        raise _too_long(path, "data file")
    head = text if end < 0 else text[:end + 1]
    fields: dict[str, str] = {}
    offset = 0
    for line in _split(head):
        start, offset = offset, offset + len(line) + 1
        m = _NRRD_LINE.match(line)
        if not m or start == 0:
            continue
        key = " ".join(m.group(1).lower().split())
        fields.setdefault(key, m.group(2))
        if key in ("data file", "datafile"):
            value, variants = _raw_value(text[start + m.start(2):])
            tail = text[start:].split("\n", 1)
            return ItkHeader(path, "nrrd", fields, _nrrd_data_files(
                path, value, variants, tail[1] if len(tail) > 1 else "", truncated))
    return ItkHeader(path, "nrrd", fields, DataFiles("data file", local=True))


def _nrrd_data_files(path: Path, value: str, variants: list[str], rest: str,
                     truncated: bool) -> DataFiles:
    name = "data file"
    tokens = value.split()
    if tokens and tokens[0] == "LIST":
        if truncated:
            raise _too_long(path, name)
        lines = [s for s in rest.split("\n") if s.strip()]
        return DataFiles(name, False, _limit([s.strip() for s in lines], path, name),
                         [s for s in lines if s != s.strip()])
    if len(tokens) >= 4 and "%" in tokens[0]:
        lo, hi, step = (_int(t, path, name) for t in tokens[1:4])
        if step == 0 or (hi - lo) * step < 0:
            raise CorruptFileError(f"{path}: data file pattern {value!r} never reaches its end "
                                   f"(step {step}); fix the header.")
        return DataFiles(name, False, expand_pattern(tokens[0], lo, hi, step, path, name))
    return DataFiles(name, False, [value], variants)


def expand_pattern(fmt: str, lo: int, hi: int, step: int, path: Path, field_name: str
                   ) -> list[str]:
    """The file names a printf pattern with one integer conversion gives for ``lo..hi``."""
    conversions = [m.group(1) for m in _PRINTF.finditer(fmt) if m.group(1) is not None]
    if len(conversions) != 1 or conversions[0] not in "diu":
        raise CorruptFileError(
            f"{path}: {field_name} pattern {fmt!r} must hold exactly one integer conversion "
            "(such as %03d); fix the header.")
    count = (hi - lo) // step + 1
    if count > MAX_DATA_FILES:
        raise CorruptFileError(f"{path}: {field_name} pattern {fmt!r} names {count} files, more "
                               f"than the {MAX_DATA_FILES} medseg reads; fix the header.")
    c_fmt = _PRINTF.sub(lambda m: "%" if m.group(1) is None else m.group(0)[:-1] + "d", fmt)
    return [c_fmt % i for i in range(lo, hi + (1 if step > 0 else -1), step)]


def _limit(names: list[str], path: Path, field_name: str) -> list[str]:
    if len(names) > MAX_DATA_FILES:
        raise CorruptFileError(f"{path}: {field_name} LIST names {len(names)} files, more than "
                               f"the {MAX_DATA_FILES} medseg reads; fix the header.")
    return names


def _too_long(path: Path, field_name: str) -> CorruptFileError:
    return CorruptFileError(
        f"{path}: the header (with its {field_name} list) is longer than "
        f"{HEADER_LIMIT // 2**20} MiB; medseg refuses to guess where it ends. Fix the header.")


def _int(token: str, path: Path, field_name: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise CorruptFileError(f"{path}: {field_name} pattern number {token!r} is not an "
                               "integer; fix the header.") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split()]
    except ValueError:
        return []


def numbers(text: str) -> list[float]:
    """Every number in ``text`` (``nan``/``inf`` included), e.g. of ``(1,0,0) (0,1,0)``."""
    out = []
    for token in re.split(r"[\s(),]+", text.strip()):
        if token:
            try:
                out.append(float(token))
            except ValueError:
                out.append(math.nan)
    return out
