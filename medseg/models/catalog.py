"""The models a user can pick: shipped bundles, imported ones, and their descriptions.

``list_models()`` lists the shipped bundles (``medseg/weights``), the bundles in the folder named
by ``MEDSEG_MODELS_DIR`` (where an operator keeps ``medseg import-model`` outputs) and any
folders given, reading only each bundle's description (no weights). :func:`model_identity`
gives the name and version exports record as the algorithm (DICOM-SEG/RTSTRUCT).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.errors import MedsegError
from medseg.models.bundle import BundleMeta, read_bundle_meta, shipped_bundles

__all__ = ["ModelEntry", "describe_bundle", "list_models", "model_identity", "models_dir"]


def models_dir(env: dict[str, str] | None = None) -> Path | None:
    """The folder of imported bundles (``MEDSEG_MODELS_DIR``), or ``None`` when unset."""
    value = (os.environ if env is None else env).get("MEDSEG_MODELS_DIR", "")
    return Path(value).expanduser() if value else None


def model_identity(meta: BundleMeta, path: Path) -> tuple[str, str]:
    """``(name, version)`` of a model for the algorithm identification of exports:
    nnU-Net: dataset and ``trainer__plans__configuration`` with its folds; MONAI: the bundle's
    name and version; native: ``medseg <file stem>`` and the medseg version that wrote it."""
    prov = meta.provenance
    kind = (meta.recipe or {}).get("kind")
    if kind == "nnunet":
        folds = ",".join(str(f) for f in prov.get("folds", []))
        return (f"nnU-Net {prov.get('dataset', path.stem)}",
                f"{prov.get('trainer')}__{prov.get('plans')}__{prov.get('configuration')} "
                f"folds {folds}"[:64])
    if kind == "monai_bundle":
        return str(prov.get("name") or path.stem)[:64], str(prov.get("version") or "")[:64]
    return f"medseg {path.stem}"[:64], meta.medseg_version


@dataclass
class ModelEntry:
    """One listed model; ``error`` is set (and the rest empty) for a file that is not a
    readable bundle."""

    path: Path
    origin: str
    name: str = ""
    version: str = ""
    kind: str = ""
    labels: dict[int, str] = field(default_factory=dict)
    modality: str | None = None
    spacing: list[float | None] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def describe_bundle(path: Path, origin: str = "file") -> ModelEntry:
    """The description of one bundle file (never raises for a bad file: ``error`` says why)."""
    try:
        meta = read_bundle_meta(path)
    except MedsegError as exc:
        return ModelEntry(path=path, origin=origin, error=str(exc))
    recipe = meta.recipe or {}
    kind = recipe.get("kind", "medseg")
    spacing = recipe.get("spacing") if kind == "nnunet" else meta.preprocess.spacing
    name, version = model_identity(meta, path)
    return ModelEntry(path=path, origin=origin, name=name, version=version, kind=kind,
                      labels=dict(meta.labels), modality=meta.modality,
                      spacing=None if spacing is None else list(spacing),
                      provenance=dict(meta.provenance))


def list_models(folders: Sequence[Path] = (), env: dict[str, str] | None = None
                ) -> list[ModelEntry]:
    """Shipped bundles, then ``MEDSEG_MODELS_DIR``'s, then each folder's (``*.safetensors``,
    sorted); a file named twice is listed once."""
    seen: set[Path] = set()
    out: list[ModelEntry] = []
    sources: list[tuple[str, list[Path]]] = [("shipped", list(shipped_bundles().values()))]
    mdir = models_dir(env)
    for origin, folder in [("imported", mdir), *[("folder", f) for f in folders]]:
        if folder is not None and folder.is_dir():
            sources.append((origin, sorted(folder.glob("*.safetensors"))))
    for origin, paths in sources:
        for p in paths:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                out.append(describe_bundle(p, origin))
    return out
