"""Frozen dataclasses from JSON/YAML mappings, strictly: the one reader of model settings
(a lite model's ``arch``, a promptable model's recipe)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

from medseg.errors import PromptModelError

T = TypeVar("T")


def from_mapping(cls: type[T], data: dict[str, Any], what: str) -> T:
    """``cls(**data)`` with lists as tuples; unknown keys, or arguments ``cls`` refuses, raise
    one :class:`PromptModelError` naming ``what`` (and the allowed keys)."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    extra = sorted(set(data) - names)
    if extra:
        raise PromptModelError(f"{what} has unknown keys {extra}; allowed: {sorted(names)}")
    kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise PromptModelError(f"{what}: {exc}") from None
