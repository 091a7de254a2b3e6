"""Batch commands (``medseg predict`` over several inputs): go on past a failing case, say per
case what was written and what failed, and end with one ``error:`` line (exit code 2).

A case that fails with a :class:`~medseg.errors.MedsegError` is reported on stdout as
``failed: CASE: MESSAGE`` (one line, next to the ``IN -> OUT`` lines of the cases written)
and the next case runs; stderr gets only the final ``error:`` line. An :class:`OutputError`
caused by the output folder itself (read-only, full, no permission) stops the batch: every
later case would fail the same way, so they are listed as not attempted. A run of a single
case raises its error unchanged.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path

import typer

from medseg.errors import MedsegError, OutputError

#: errno values of an output error that every later case would hit as well.
FOLDER_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM}
#: Failures named in the final line (all are listed on their own lines before it).
SHOWN = 3


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _listing(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (", ..." if len(names) > SHOWN else "")


def stops_batch(exc: MedsegError) -> bool:
    """True for an output error caused by the output folder (not by one case's file)."""
    cause = exc.__cause__
    while isinstance(cause, OutputError):
        cause = cause.__cause__
    return isinstance(exc, OutputError) and getattr(cause, "errno", None) in FOLDER_ERRNOS


class Batch:
    """What a batch wrote and what failed, case by case (cases are named by their input)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.written: dict[str, list[Path]] = {}
        self.failed: list[tuple[str, str]] = []
        self.not_attempted: list[str] = []
        self.stopped = False
        self.total = 0

    def wrote(self, case: str, path: Path) -> None:
        """Record a file written for ``case``."""
        self.written.setdefault(case, []).append(path)

    def skip(self, case: str) -> None:
        """Record a case not attempted because the batch stopped."""
        self.total += 1
        self.not_attempted.append(case)

    @contextlib.contextmanager
    def case(self, case: str, *, alone: bool = False) -> Iterator[None]:
        """Run one case; a :class:`MedsegError` is recorded and reported (raised if ``alone``)."""
        self.total += 1
        try:
            yield
        except MedsegError as exc:
            if alone:
                raise
            msg = _one_line(exc)
            self.failed.append((case, msg))
            kept = self.written.get(case)
            note = f" (written before the failure: {', '.join(map(str, kept))})" if kept else ""
            typer.echo(f"failed: {msg if case in msg else f'{case}: {msg}'}{note}")
            self.stopped = stops_batch(exc)

    def finish(self, out: Path) -> None:
        """Return when every case succeeded; else raise one :class:`MedsegError` summing up."""
        if not self.failed and not self.not_attempted:
            return
        shown = "; ".join(m if c in m else f"{c}: {m}" for c, m in self.failed[:SHOWN])
        more = f"; and {len(self.failed) - SHOWN} more" if len(self.failed) > SHOWN else ""
        text = f"{len(self.failed)} of {self.total} cases failed ({shown}{more})"
        if self.not_attempted:
            text += (f"; stopped before {len(self.not_attempted)} case(s) "
                     f"({_listing(self.not_attempted)})")
        done = [c for c in self.written if c not in dict(self.failed)]
        listed = f": {_listing(done)}" if done else ""
        text += (f". {len(done)} case(s) complete in {out}{listed}. Fix the failed inputs and "
                 "run them again.")
        raise MedsegError(text)
