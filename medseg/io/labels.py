"""Label-name persistence: a JSON sidecar next to every label map medseg writes.

The sidecar of ``case.nii.gz`` is ``case.labels.json``::

    {"labels": {"1": "liver", "2": "spleen"}}

NIfTI files additionally carry the same JSON in a header extension (code 6, "comment"), and
NRRD/MHA files in the metadata key ``medseg_labels``, so the names survive when only the image
file is copied. On reading, the in-file copy wins over the sidecar.
"""

from __future__ import annotations

import json
from pathlib import Path

from medseg.errors import CorruptFileError
from medseg.io.atomic import write_text_atomic

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
        return {int(k): str(v) for k, v in mapping.items()}
    except (ValueError, TypeError) as exc:
        raise CorruptFileError(
            f"Label names in {source} are not a JSON object of value -> name "
            f"(e.g. {{\"labels\": {{\"1\": \"liver\"}}}}): {exc}"
        ) from exc


def write_sidecar(image_path: str | Path, labels: dict[int, str]) -> Path:
    path = sidecar_path(image_path)
    write_text_atomic(path, labels_to_json(labels) + "\n")
    return path


def read_sidecar(image_path: str | Path) -> dict[int, str] | None:
    path = sidecar_path(image_path)
    if not path.is_file():
        return None
    return labels_from_json(path.read_text(encoding="utf-8"), str(path))
