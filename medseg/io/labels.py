"""Label names: the JSON sidecar next to every label map medseg writes, and the one check of
whether a name fits an output format (:func:`check_label_names`).

The sidecar of ``case.nii.gz`` is ``case.labels.json``::

    {"labels": {"1": "liver", "2": "spleen"}}

NIfTI files additionally carry the same JSON in a header extension (code 6, "comment"), and
NRRD/MHA files in the metadata key ``medseg_labels``, so the names survive when only the image
file is copied. On reading, the in-file copy wins over the sidecar.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path

from medseg.errors import ConfigError, CorruptFileError, LabelNameError
from medseg.io.atomic import show_path, write_text_atomic

_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def sidecar_path(image_path: str | Path) -> Path:
    """``case.nii.gz`` -> ``case.labels.json``."""
    p = Path(image_path)
    name = p.name
    for suf in _IMAGE_SUFFIXES:
        if name.lower().endswith(suf):
            name = name[: -len(suf)]
            break
    return p.with_name(name + ".labels.json")


def labels_to_json(labels: dict[int, str]) -> str:
    return json.dumps({"labels": {str(k): v for k, v in sorted(labels.items())}}, indent=1)


def labels_from_json(text: str, source: str) -> dict[int, str]:
    """Parse ``{"labels": {...}}`` or a bare ``{"1": "liver"}`` mapping (keys are label values)."""
    try:
        data = json.loads(text)
        mapping = data.get("labels", data) if isinstance(data, dict) else None
        if not isinstance(mapping, dict):
            raise ValueError("expected a JSON object")
        labels = {int(k): str(v) for k, v in mapping.items()}
    except (ValueError, TypeError) as exc:
        raise CorruptFileError(
            f"Label names in {source} are not a JSON object of value -> name "
            f"(e.g. {{\"labels\": {{\"1\": \"liver\"}}}}): {exc}"
        ) from exc
    for value, name in labels.items():
        if _SURROGATE.search(name):
            raise CorruptFileError(
                f"Label names in {source}: the name of label {value} holds an unpaired UTF-16 "
                "surrogate (\\ud800-\\udfff), which no file can store. Fix the name.")
    return labels


def write_sidecar(image_path: str | Path, labels: dict[int, str]) -> Path:
    path = sidecar_path(image_path)
    write_text_atomic(path, labels_to_json(labels) + "\n")
    return path


def read_text_file(path: str | Path, what: str = "label-name file") -> str:
    """The UTF-8 text of ``path``; :class:`CorruptFileError` naming it when it cannot be read
    or is not UTF-8 text."""
    p = Path(path)
    try:
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"{show_path(p)}: the {what} is not UTF-8 text (byte "
                               f"{exc.start}). Save it as UTF-8 JSON.") from None
    except OSError as exc:
        raise CorruptFileError(f"{show_path(p)}: the {what} cannot be read "
                               f"({exc.strerror or exc}).") from None


def read_sidecar(image_path: str | Path) -> dict[int, str] | None:
    path = sidecar_path(image_path)
    if not path.is_file():
        return None
    return labels_from_json(read_text_file(path, "label sidecar"), str(path))


# ----------------------------------------------------------------------------- name rules
#: Longest label name each output format can hold, in bytes of UTF-8 (= characters for ASCII
#: names); ``None``: no limit. DICOM SegmentLabel (SEG) and ROIName (RTSTRUCT) are LO values of
#: at most 64 characters; validators (dciodvfy) and many receiving systems count the encoded
#: bytes, so medseg counts bytes: 64 ASCII characters, 32 accented Latin or 21 CJK ones.
NAME_LIMITS: dict[str, int | None] = {"seg": 64, "rtstruct": 64, "stl": None, "obj": None,
                                      "nifti": None}
_DICOM = ("seg", "rtstruct")
_FORMAT_NAMES = {"seg": "a DICOM-SEG SegmentLabel", "rtstruct": "an RTSTRUCT ROIName",
                 "stl": "an STL export", "obj": "an OBJ export", "nifti": "a NIfTI export"}
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Characters a shortened name keeps before its ``~hash`` suffix is appended.
_HASH_LEN = 6


_CONTROL_NAMES = {0: "NUL", 9: "tab", 10: "line feed", 13: "carriage return", 27: "ESC"}


def _control(name: str) -> str | None:
    for ch in name:
        if unicodedata.category(ch) == "Cc":
            return f"U+{ord(ch):04X} ({_CONTROL_NAMES.get(ord(ch), 'control character')})"
    return None


def label_name_problem(name: str, fmt: str) -> str | None:
    """Why ``name`` cannot be written exactly as a label name in ``fmt``; ``None`` when it can.

    Every format refuses empty names, control characters (newline, NUL, ESC...) and unpaired
    surrogates; DICOM formats also refuse a backslash (DICOM's value separator), leading or
    trailing spaces (DICOM drops them) and names longer than :data:`NAME_LIMITS`.
    """
    if fmt not in NAME_LIMITS:
        raise ConfigError(f"Unknown label-name format {fmt!r}; use one of "
                          f"{', '.join(NAME_LIMITS)}.")
    if not name.strip():
        return "is empty"
    if _SURROGATE.search(name):
        return "holds an unpaired surrogate character, which no file encoding can store"
    control = _control(name)
    if control:
        return f"holds the control character {control}"
    if fmt in _DICOM:
        if "\\" in name:
            return "holds a backslash, which DICOM uses to separate values"
        if name != name.strip(" "):
            return "starts or ends with a space, which DICOM drops"
    limit = NAME_LIMITS[fmt]
    size = _utf8_len(name)
    if limit is not None and size > limit:
        chars = f"{len(name)} characters" + (f" ({size} bytes in UTF-8)" if size != len(name)
                                             else "")
        return f"has {chars}, more than the {limit} bytes it may have"
    return None


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def shorten_label_name(name: str, fmt: str, value: int) -> str:
    """``name`` made to fit ``fmt``: control characters and (DICOM) backslashes become spaces,
    spaces are collapsed, and a name over the limit keeps its start (whole characters) plus
    ``~`` and 6 hex digits of its SHA-1 (so two long names that share a start stay distinct)."""
    bad = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff" + ("\\\\]" if fmt in _DICOM else "]"))
    text = " ".join(bad.sub(" ", name).split()) or f"label_{value}"
    limit = NAME_LIMITS[fmt]
    if limit is not None and _utf8_len(text) > limit:
        digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LEN]
        head = text.encode("utf-8")[: limit - _HASH_LEN - 1].decode("utf-8", "ignore")
        text = head.rstrip() + "~" + digest
    return text


#: What a refusal tells an export's user to do.
EXPORT_FIX = ("Rename the label (--labels JSON), or pass --shorten-labels to shorten names that "
              "do not fit (the export summary records each change).")


def check_label_names(names: Mapping[int, str], fmt: str, *, shorten: bool = False,
                      fix: str = EXPORT_FIX) -> dict[int, str]:
    """The names to write for ``fmt``, ``{value: name}``; call before anything is written.

    Without ``shorten``, every name must fit (:func:`label_name_problem`) and is returned
    unchanged; the first that does not raises :class:`LabelNameError` naming the label, the
    rule and ``fix`` (the way out for the caller's user). With ``shorten``, names that do not
    fit are replaced by :func:`shorten_label_name` (callers record the mapping, see
    :func:`renamed`).
    """
    out: dict[int, str] = {}
    for value, name in names.items():
        problem = label_name_problem(name, fmt)
        if problem is None:
            out[value] = name
        elif shorten:
            out[value] = shorten_label_name(name, fmt, value)
        else:
            raise LabelNameError(
                f"label {value} name {show_path(repr(name))} {problem} in "
                f"{_FORMAT_NAMES[fmt]}; nothing was written. {fix}")
    return out


def renamed(before: Mapping[int, str], after: Mapping[int, str]) -> list[dict[str, object]]:
    """``[{"label_value", "name", "written_as"}]`` for every name that ``after`` changed."""
    return [{"label_value": v, "name": before[v], "written_as": after[v]}
            for v in sorted(after) if before.get(v) != after[v]]


def display_name(name: str, width: int = 60) -> str:
    """``name`` for one line of text: control characters escaped (``\\n``), longer than
    ``width`` characters elided in the middle with ``...``. For display only; files keep the
    full name."""
    text = name
    if _SURROGATE.search(text) or _control(text):
        text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    if len(text) > width:
        head = max(width - 12, 1)
        text = f"{text[:head]}...{text[-8:]}" if width >= 20 else text[:width] + "..."
    return text
