"""``pacs://SERVER/UID`` inputs: the one resolver every command that reads an input calls.

Forms (``SERVER`` is a name from the servers file):

* ``pacs://SERVER/SERIES_UID``: that series;
* ``pacs://SERVER/STUDY_UID``: the study's only image series, or the one ``series`` names
  (its Series Instance UID, or its number in the study's list, 1-based, as
  ``medseg pacs search --study`` shows it);
* ``pacs://SERVER/STUDY_UID/SERIES_UID``: that series of that study.

:func:`resolve_input` returns a local path for anything else unchanged, and for a PACS input
the cache folder of the complete series (:mod:`medseg.pacs.cache`; a cache hit needs no
network), so the series is then read by the same DICOM reader as any folder, with the same
geometry checks and refusals. (``pathlib`` turns ``pacs://`` into ``pacs:/``; both are
accepted.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from medseg.errors import MedsegError, PacsError, PacsNotFoundError, SeriesSelectionError
from medseg.pacs.cache import CachedSeries, Progress, SeriesCache
from medseg.pacs.dicomweb import DicomWeb
from medseg.pacs.records import SearchFilters, SeriesRecord, check_uid
from medseg.pacs.servers import PacsServer, cache_root, load_server
from medseg.volume import Volume

__all__ = ["PacsUri", "is_pacs_uri", "locate_series", "parse_pacs_uri", "pull",
           "read_series", "resolve_input"]

PathLike = str | os.PathLike[str]
S = TypeVar("S", bound=str | int)
#: Modalities that are not image series (chosen only when named explicitly).
NON_IMAGE = frozenset({"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "SR", "PR", "KO", "REG", "DOC"})


@dataclass(frozen=True)
class PacsUri:
    server: str
    uid: str
    series: str | None = None

    def __str__(self) -> str:
        tail = f"/{self.series}" if self.series else ""
        return f"pacs://{self.server}/{self.uid}{tail}"


def is_pacs_uri(value: object) -> bool:
    """True for ``pacs://...`` (or ``pacs:/...`` as a ``Path`` prints it)."""
    return isinstance(value, str | os.PathLike) and str(value).startswith("pacs:/")


def parse_pacs_uri(value: PathLike) -> PacsUri:
    """Split ``pacs://SERVER/UID[/SERIES_UID]``; a typed error saying the form otherwise."""
    text = str(value)
    rest = text[len("pacs:"):].lstrip("/")
    parts = [p for p in rest.split("/") if p]
    if len(parts) not in (2, 3):
        raise PacsError(f"{text!r}: a PACS input is pacs://SERVER/SERIES_UID, "
                        "pacs://SERVER/STUDY_UID (with --series) or "
                        "pacs://SERVER/STUDY_UID/SERIES_UID.")
    uid = check_uid(parts[1])
    return PacsUri(parts[0], uid, check_uid(parts[2]) if len(parts) == 3 else None)


def _table(records: list[SeriesRecord]) -> str:
    return "; ".join(f"{n} = {r.series_uid} ({r.modality or '-'}, "
                     f"{r.description or 'no description'!r}, {r.n_instances or '?'} "
                     "instance(s))" for n, r in enumerate(records, start=1))


def locate_series(pacs: DicomWeb, uri: PacsUri, series: str | int | None = None
                  ) -> SeriesRecord:
    """The series a PACS input names (see the module docstring), asking the PACS."""
    if uri.series is None:
        found = pacs.find_series(uri.uid)
        if found is not None:
            return found
    study = uri.uid
    records = pacs.search_series(SearchFilters(study_uid=study))
    if not records:
        raise PacsNotFoundError(f"{uri}: {pacs.server.label()} has no series or study with "
                                f"UID {uri.uid}. Find the UID with `medseg pacs search "
                                f"{uri.server}`.")
    wanted = uri.series or (None if series is None else str(series).strip())
    if wanted is not None:
        for n, r in enumerate(records, start=1):
            if wanted in (r.series_uid, str(n)):
                return r
        raise SeriesSelectionError(f"{uri}: study {study} has no series {wanted!r}; its series "
                                   f"are: {_table(records)}.")
    images = [r for r in records if r.modality.upper() not in NON_IMAGE]
    if len(images) == 1:
        return images[0]
    raise SeriesSelectionError(
        f"{uri}: study {study} holds {len(records)} series: {_table(records)}. Choose one: "
        "pass --series N or --series UID, or use pacs://SERVER/STUDY_UID/SERIES_UID.")


def pull(uri: PacsUri | PathLike, series: str | int | None = None, *,
         servers: PathLike | None = None, cache: PathLike | None = None,
         progress: Progress | None = None, refresh: bool = False,
         server: PacsServer | None = None) -> CachedSeries:
    """The complete series a PACS input names, in the cache (``cache`` or
    :func:`~medseg.pacs.servers.cache_root`): a cache hit without any request when a series UID
    is named and already complete, else located and retrieved (resuming earlier tries)."""
    parsed = uri if isinstance(uri, PacsUri) else parse_pacs_uri(uri)
    chosen = server or load_server(parsed.server, servers)
    store = SeriesCache(cache_root(cache))
    named = parsed.series or (str(series) if series is not None and
                              not str(series).isdigit() else None) or parsed.uid
    if not refresh:
        hit = store.find(chosen.name, named)
        if hit is not None:
            return hit
    pacs = DicomWeb(chosen)
    record = locate_series(pacs, parsed, series)
    return store.retrieve(pacs, record.study_uid, record.series_uid, progress=progress,
                          refresh=refresh)


def read_series(cached: CachedSeries, *, label: bool | None = False) -> Volume:
    """Read a cached series with medseg's DICOM reader, reading nothing outside its folder;
    a refusal keeps its type and says which PACS series it is about."""
    from medseg import io

    try:
        return io.read(cached.path, label=label, roots=(cached.path,))
    except MedsegError as exc:
        raise type(exc)(f"pacs://{cached.server}/{cached.series_uid}: {exc}") from exc


def resolve_input(value: PathLike, series: S | None = None, *,
                  servers: PathLike | None = None, cache: PathLike | None = None,
                  progress: Progress | None = None) -> tuple[Path, S | None]:
    """``(path to read, series to pass to the reader)`` for a command's input.

    A local path comes back unchanged with ``series``. A PACS input is pulled into the cache
    and comes back as the series folder with ``None`` (the series is chosen already); a series
    of one non-image object (a SEG or RTSTRUCT) comes back as that file.
    """
    if not is_pacs_uri(value):
        return Path(value), series
    cached = pull(value, series, servers=servers, cache=cache, progress=progress)
    files = sorted(cached.path.iterdir())
    if len(files) == 1 and _is_export(files[0]):
        return files[0], None
    return cached.path, None


def _is_export(path: Path) -> bool:
    import pydicom

    from medseg.pacs.send import EXPORT_SOP_CLASSES

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:
        return False
    return str(ds.get("SOPClassUID", "")) in EXPORT_SOP_CLASSES
