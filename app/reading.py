"""What the app reads, and from where: every reader call of the app goes through here.

Each call names the folders (``roots``) its bytes may come from; :mod:`medseg.io` enforces them
for every byte it reads (the path itself, symlinks followed, the detached data file of an
``.mhd``/``.mha``/``.nhdr``/``.nrrd``/``.hdr`` header, each file of a DICOM folder) and refuses
with :class:`~medseg.errors.PathOutsideRootsError` before reading anything outside them. The app
passes:

* a server file or folder: the operator's data roots (``MEDSEG_DATA_ROOTS``);
* an upload: that upload's own workspace folder (``uploads/<sha256[:16]>/``), nothing else;
* a bundled sample: the ``data_samples`` folder it ships in;
* the app's own workspace files (saved labels, conflict copies): the case's workspace folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medseg import io
from medseg.io.dicom_source import SeriesInfo
from medseg.volume import Volume

__all__ = ["list_series", "read_volume"]


def read_volume(path: Path, roots: Sequence[Path], *, series: str | int | None = None,
                label: bool | None = None) -> Volume:
    """``medseg.io.read(path, series, label=label)`` reading only inside ``roots``."""
    return io.read(path, series, label=label, roots=tuple(roots))


def list_series(path: Path, roots: Sequence[Path]) -> list[SeriesInfo]:
    """The DICOM series of ``path`` (empty for other formats), reading only inside ``roots``."""
    return io.list_series(path, roots=tuple(roots))
