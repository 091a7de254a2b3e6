"""An open case in the app: the image, optional labels, both also reoriented for display."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.reading import read_volume
from medseg.io.roots import resolve_inside
from medseg.volume import Volume


@dataclass
class Case:
    """What the viewer shows. ``image``/``labels`` keep the file's own grid (for export);
    ``image_lps``/``labels_lps`` are exact LPS reorientations used for display only."""

    name: str
    image: Volume
    labels: Volume | None = None
    image_lps: Volume = field(init=False)
    labels_lps: Volume | None = field(init=False)

    def __post_init__(self) -> None:
        self.image_lps = self.image.reorient("LPS")
        self.set_labels(self.labels)

    def set_labels(self, labels: Volume | None) -> None:
        if labels is not None:
            labels = labels.conform_to(self.image)
        self.labels = labels
        self.labels_lps = labels.reorient("LPS") if labels is not None else None

    def readout(self, ijk_lps: tuple[int, int, int]) -> dict[str, object]:
        """Voxel index (file grid and display grid), LPS/RAS mm and intensity at a cursor."""
        ijk = np.asarray(ijk_lps)
        world = self.image_lps.index_to_world(ijk)
        file_ijk = np.rint(self.image.world_to_index(world)).astype(int)
        value = self.image_lps.array[tuple(ijk)]
        out: dict[str, object] = {
            "voxel": [int(x) for x in file_ijk],
            "lps_mm": [round(float(x), 2) for x in world],
            "ras_mm": [round(float(x), 2) for x in world * [-1, -1, 1]],
            "value": float(value),
        }
        if self.labels_lps is not None and self.labels_lps.labels is not None:
            lab = int(self.labels_lps.array[tuple(ijk)])
            out["label"] = self.labels_lps.labels.get(lab, "background") if lab else "background"
        return out


def _is_dicom_file(path: Path) -> bool:
    """Whether ``path`` is one DICOM file (the ``DICM`` magic at byte 128)."""
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        head = fh.read(132)
    return head[128:132] == b"DICM"


def read_reference(path: Path, image: Volume, roots: tuple[Path, ...]) -> Volume:
    """A case's reference labels, reading only inside ``roots``: a label map file (through
    :mod:`app.reading`), or a DICOM-SEG / RTSTRUCT placed on ``image``
    (:func:`medseg.export.read_mask`; one self-contained file, checked inside ``roots``)."""
    resolved = resolve_inside(path, roots)
    if _is_dicom_file(resolved):
        from medseg.export import read_mask

        return read_mask(resolved, reference=image)
    return read_volume(path, roots, label=True)


def open_case(name: str, image_path: Path, labels_path: Path | None = None,
              series: str | int | None = None, *, roots: tuple[Path, ...]) -> Case:
    """Read an image (and its reference labels on its grid) into a :class:`Case`, reading
    only inside ``roots`` (see :mod:`app.reading`)."""
    image = read_volume(image_path, roots, series=series, label=False)
    labels = read_reference(labels_path, image, roots) if labels_path is not None else None
    return Case(name, image, labels)
