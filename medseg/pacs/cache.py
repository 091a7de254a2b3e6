"""The local cache of retrieved series, keyed by server and UIDs; resumable, never half.

Layout under the cache root (``MEDSEG_PACS_CACHE``, the app: ``<workspace>/pacs-cache``)::

    <server>/<study_uid>/<series_uid>/<sop_uid>.dcm     a complete series (only these files)
    <server>/<study_uid>/<series_uid>.json              what was retrieved, when, how many bytes
    <server>/<study_uid>/.<series_uid>.incoming/        instances retrieved so far (resume)
    <server>/<study_uid>/.<series_uid>.lock             flock'ed while the series is retrieved

Instances are fetched in parallel (``workers`` per server), each written under a hidden
temporary name and renamed to ``<sop_uid>.dcm`` only when complete and checked to be the
instance asked for. The series folder appears (one rename of the ``.incoming`` folder) only
when every instance the PACS lists is there, so a folder named after a series is always the
whole series: an interrupted retrieval leaves only ``.incoming``, and the next one fetches
just what is missing. A later open of a complete series touches no network (a *cache hit*).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from medseg.io.atomic import make_dirs, output_error, write_text_atomic
from medseg.pacs.dicomweb import DicomWeb
from medseg.pacs.records import check_uid

__all__ = ["CachedSeries", "Progress", "SeriesCache"]

#: ``progress(done, total)`` after each instance (called from the caller's thread).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class CachedSeries:
    """A complete series in the cache. ``hit``: no network was used to open it."""

    server: str
    study_uid: str
    series_uid: str
    path: Path
    n_instances: int
    bytes: int
    hit: bool
    fetched: int  # instances fetched by this call (0 on a hit)
    seconds: float


class SeriesCache:
    """One cache root (created on first use)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()

    def series_dir(self, server: str, study_uid: str, series_uid: str) -> Path:
        return self.root / server / check_uid(study_uid) / check_uid(series_uid)

    def _manifest(self, folder: Path) -> Path:
        return folder.with_name(folder.name + ".json")

    def complete(self, folder: Path) -> bool:
        """True when ``folder`` holds every instance its manifest lists (nothing more)."""
        try:
            manifest = json.loads(self._manifest(folder).read_text(encoding="utf-8"))
            names = {p.name for p in folder.iterdir()}
        except (OSError, ValueError):
            return False
        wanted = {f"{u}.dcm" for u in manifest.get("instances", [])}
        return bool(wanted) and names == wanted

    def find(self, server: str, series_uid: str) -> CachedSeries | None:
        """The complete cached series with this UID (any study), or ``None``."""
        uid = check_uid(series_uid, "Series Instance UID")
        base = self.root / server
        for folder in sorted(base.glob(f"*/{uid}")) if base.is_dir() else []:
            if folder.is_dir() and self.complete(folder):
                return self._hit(server, folder, 0.0)
        return None

    def _hit(self, server: str, folder: Path, seconds: float, *, hit: bool = True,
             fetched: int = 0) -> CachedSeries:
        manifest = json.loads(self._manifest(folder).read_text(encoding="utf-8"))
        return CachedSeries(server, folder.parent.name, folder.name, folder,
                            len(manifest["instances"]), int(manifest.get("bytes", 0)),
                            hit, fetched, seconds)

    @contextlib.contextmanager
    def _locked(self, folder: Path) -> Iterator[None]:
        make_dirs(folder.parent)
        lock = folder.with_name(f".{folder.name}.lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise output_error(exc, lock) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def retrieve(self, pacs: DicomWeb, study_uid: str, series_uid: str, *,
                 progress: Progress | None = None, refresh: bool = False) -> CachedSeries:
        """The complete series in the cache: a hit when it is there already (unless
        ``refresh``), else every missing instance is fetched from ``pacs``. On any failure the
        instances fetched completely stay in ``.incoming`` for the next try, and no series
        folder appears."""
        start = time.perf_counter()
        server = pacs.server.name
        folder = self.series_dir(server, study_uid, series_uid)
        with self._locked(folder):
            if folder.is_dir() and not refresh and self.complete(folder):
                return self._hit(server, folder, time.perf_counter() - start)
            incoming = folder.with_name(f".{folder.name}.incoming")
            _reuse(folder, incoming, refresh)
            uids = pacs.instance_uids(study_uid, series_uid)
            fetched = self._fetch_missing(pacs, study_uid, series_uid, uids, incoming,
                                          progress)
            self._commit(pacs, folder, incoming, uids)
        return self._hit(server, folder, time.perf_counter() - start, hit=False,
                         fetched=fetched)

    def _fetch_missing(self, pacs: DicomWeb, study: str, series: str, uids: list[str],
                       incoming: Path, progress: Progress | None) -> int:
        wanted = {f"{u}.dcm" for u in uids}
        for p in list(incoming.iterdir()):  # partial files and instances no longer listed
            if p.name not in wanted:
                p.unlink()
        missing = [u for u in uids if not (incoming / f"{u}.dcm").is_file()]
        done = len(uids) - len(missing)
        if progress:
            progress(done, len(uids))

        def one(sop: str) -> None:
            tmp = incoming / f".{sop}.part"
            try:
                pacs.retrieve_instance(study, series, sop, tmp)
                tmp.replace(incoming / f"{sop}.dcm")
            finally:
                tmp.unlink(missing_ok=True)

        with ThreadPoolExecutor(max_workers=pacs.server.workers) as pool:
            pending: set[Future[None]] = {pool.submit(one, u) for u in missing}
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        f.result()  # the first failure stops the retrieval
                        done += 1
                        if progress:
                            progress(done, len(uids))
            except BaseException:
                for f in pending:
                    f.cancel()
                raise
        return len(missing)

    def _commit(self, pacs: DicomWeb, folder: Path, incoming: Path, uids: list[str]) -> None:
        size = sum((incoming / f"{u}.dcm").stat().st_size for u in uids)
        manifest = {"server": pacs.server.name, "address": pacs.server.address,
                    "study_uid": folder.parent.name, "series_uid": folder.name,
                    "instances": uids, "bytes": size,
                    "retrieved_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        aside = folder.with_name(f".{folder.name}.old")
        try:
            shutil.rmtree(aside, ignore_errors=True)
            if folder.exists():  # a refresh: the old copy stays until the new one is whole
                folder.rename(aside)
            write_text_atomic(self._manifest(folder), json.dumps(manifest, indent=1) + "\n")
            incoming.rename(folder)
        except OSError as exc:
            raise output_error(exc, folder, want_dir=True) from exc
        shutil.rmtree(aside, ignore_errors=True)


def _reuse(folder: Path, incoming: Path, refresh: bool) -> None:
    """Prepare ``incoming``: an incomplete series folder (files removed by hand) becomes the
    resume point; ``refresh`` starts afresh (an existing complete copy is replaced only
    when the new one is complete)."""
    try:
        if refresh:  # start afresh, keeping the complete copy until the new one is whole
            shutil.rmtree(incoming, ignore_errors=True)
        elif folder.is_dir() and not incoming.exists():
            folder.rename(incoming)
        elif folder.is_dir():
            shutil.rmtree(folder)
        incoming.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, incoming, want_dir=True) from exc

