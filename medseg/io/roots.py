"""Allowed folders ("roots"): the one place that decides whether a path may be read.

The app passes its data roots (or an upload's own workspace folder) to every reader; the CLI
passes none and reads what its user names. A path is inside a root when it resolves there
*after following every symlink*; ``..`` and links that leave the root are refused.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from medseg.errors import PathOutsideRootsError

__all__ = ["Roots", "as_roots", "is_inside", "resolve_inside", "root_of"]

#: Folders a reader may touch; ``None`` means "no restriction" (the CLI).
Roots = tuple[Path, ...] | None


def as_roots(roots: Sequence[str | os.PathLike[str]] | None) -> Roots:
    """Normalise user-given roots (resolved, symlinks followed); ``None`` stays ``None``."""
    if roots is None:
        return None
    return tuple(Path(r).expanduser().resolve() for r in roots)


def is_inside(path: str | os.PathLike[str], roots: Roots) -> bool:
    """True when ``path`` resolves (symlinks followed) inside one of ``roots`` (or no roots)."""
    if roots is None:
        return True
    resolved = Path(path).expanduser().resolve()
    return any(resolved == r or r in resolved.parents for r in roots)


def root_of(path: str | os.PathLike[str], roots: tuple[Path, ...]) -> Path | None:
    """The root that ``path`` resolves inside (symlinks followed), ``None`` when none does.

    When roots are nested, the innermost one is returned (the tightest allowed folder).
    """
    resolved = Path(path).expanduser().resolve()
    inside = [r for r in roots if resolved == r or r in resolved.parents]
    return max(inside, key=lambda r: len(r.parts)) if inside else None


def resolve_inside(path: str | os.PathLike[str], roots: Roots, *,
                   what: str | None = None) -> Path:
    """``path`` resolved (every symlink followed); refuse it unless it lies inside ``roots``.

    A relative ``path`` is taken relative to the first root. ``what`` names the file in the
    message when it is not the path the user gave (e.g. "the data file of header.mhd").
    """
    p = Path(path).expanduser()
    if roots is None:
        return p.resolve()
    resolved = p.resolve() if p.is_absolute() else (roots[0] / p).resolve()
    if any(resolved == r or r in resolved.parents for r in roots):
        return resolved
    subject = f"{what} ({p})" if what else str(p)
    raise PathOutsideRootsError(
        f"{subject}: outside the data folders this app may read ({', '.join(map(str, roots))}); "
        "nothing was read. Put the file (with its data files) inside a data folder, or ask "
        "the administrator to add its folder to MEDSEG_DATA_ROOTS."
    )
