"""Foreign models at the border: nnU-Net model folders and MONAI bundles become medseg bundles.

:func:`convert` turns a source (an nnU-Net ``Trainer__Plans__configuration`` folder, a
TotalSegmentator/nnU-Net results folder holding exactly one, or a MONAI bundle folder/zip) into
``(network, BundleMeta)`` in memory: what ``Segmenter`` runs when given the source directly.
:func:`import_model` writes the same pair once as a ``.safetensors`` bundle (weights, the full
recipe in ``BundleMeta.recipe``, label names and ``BundleMeta.provenance``: source format,
dataset, trainer, plans, configuration, folds, file SHA-256s, licence where the source states
one), which every command and the app then load like a native model.
:func:`build_recipe_network` rebuilds an imported bundle's network (``load_bundle`` calls it).

Bundles with a recipe are written with ``format_version`` 2, so an older medseg refuses them
with its "upgrade medseg" message instead of running them with the wrong pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from torch import nn

from medseg.config import InferenceConfig, IntensityConfig, PreprocessConfig
from medseg.errors import ForeignModelError, InputNotFoundError
from medseg.models.bundle import BundleMeta, NetworkSpec, save_bundle

__all__ = ["build_recipe_network", "convert", "import_model", "source_kind"]

#: format version of bundles that carry a recipe (see the module docstring)
RECIPE_FORMAT_VERSION = 2
SourceKind = Literal["nnunet", "monai_bundle"]


def source_kind(path: str | Path) -> SourceKind | None:
    """``"nnunet"`` for a folder holding nnU-Net model folder(s), ``"monai_bundle"`` for a
    MONAI bundle folder or zip, else ``None`` (e.g. a medseg ``.safetensors`` bundle)."""
    from medseg.models.monai_bundle import is_monai_bundle
    from medseg.models.nnunet import find_model_folders

    p = Path(path)
    if p.is_dir() and find_model_folders(p):
        return "nnunet"
    if (p.is_dir() or p.suffix.lower() == ".zip") and is_monai_bundle(p):
        return "monai_bundle"
    return None


def _version() -> str:
    from medseg import __version__

    return __version__


def _from_nnunet(path: Path, folds: list[str] | None, checkpoint: str | None
                 ) -> tuple[nn.Module, BundleMeta]:
    from medseg.models.nnunet import read_model_folder

    model = read_model_folder(path, folds=folds, checkpoint=checkpoint)
    r = model.recipe
    if r.regions_class_order is not None:
        raise ForeignModelError(
            f"{model.folder}: a region-based nnU-Net model (regions_class_order in "
            "dataset.json); medseg runs label-based models only.")
    net = model.load_network()
    meta = BundleMeta(
        format_version=RECIPE_FORMAT_VERSION, medseg_version=_version(),
        network=NetworkSpec(name="nnunet", spatial_dims=r.spatial_dims,  # 2 or 3
                            in_channels=model.in_channels, out_channels=r.num_heads,
                            kwargs={"architecture": model.arch_class,
                                    "arch_kwargs": model.arch_kwargs,
                                    "folds": len(model.checkpoints)}),
        labels=dict(r.labels), modality=model.modality,
        preprocess=PreprocessConfig(spacing=None, intensity=IntensityConfig(mode="none")),
        inference=InferenceConfig(roi_size=tuple(r.patch_size), overlap=1 - r.tile_step_size,
                                  sw_batch_size=1, mode="gaussian"),
        recipe=r.model_dump(mode="json"), provenance=model.provenance)
    return net, meta


def _from_monai(path: Path) -> tuple[nn.Module, BundleMeta]:
    from medseg.models.monai_bundle import read_monai_bundle

    b = read_monai_bundle(path)
    net = b.load_network()
    meta = BundleMeta(
        format_version=RECIPE_FORMAT_VERSION, medseg_version=_version(),
        network=NetworkSpec(name=f"monai.{b.network.name}",
                            spatial_dims=2 if b.spatial_dims == 2 else 3,
                            in_channels=b.in_channels, out_channels=b.out_channels,
                            kwargs=dict(b.network.args)),
        labels=b.labels, modality=b.modality,
        preprocess=PreprocessConfig(orientation=b.orientation,
                                    spacing=None if b.spacing is None else tuple(b.spacing[:3]),  # type: ignore[arg-type]
                                    intensity=IntensityConfig(mode="none")),
        inference=InferenceConfig(**b.inferer),
        recipe={"kind": "monai_bundle", "network": b.network.name, "intensity": b.intensity,
                "invert": b.invert, "softmax": b.softmax},
        provenance=b.provenance)
    return net, meta


def convert(path: str | Path, *, folds: list[str] | None = None,
            checkpoint: str | None = None) -> tuple[nn.Module, BundleMeta]:
    """``(network in eval mode, BundleMeta)`` of a foreign model (see the module docstring).

    Raises:
        InputNotFoundError: ``path`` does not exist.
        ForeignModelError: not an nnU-Net folder or MONAI bundle, or one medseg refuses.
        UnsafeModelError: loading it would run code outside the allow-lists.
    """
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such file or folder.")
    kind = source_kind(p)
    if kind == "nnunet":
        return _from_nnunet(p, folds, checkpoint)
    if kind == "monai_bundle":
        if folds or checkpoint:
            raise ForeignModelError(f"{p}: --folds/--checkpoint apply to nnU-Net folders only.")
        return _from_monai(p)
    raise ForeignModelError(
        f"{p}: neither an nnU-Net model folder (plans.json, dataset.json, fold_N/) nor a MONAI "
        "bundle (configs/metadata.json). Pass one of those, or a medseg .safetensors bundle.")


def import_model(path: str | Path, out: str | Path, **kw: Any) -> Path:
    """Convert ``path`` (see :func:`convert`) and write it as the medseg bundle ``out``
    (``.safetensors``, written atomically). Returns ``out``."""
    target = Path(out)
    if target.suffix != ".safetensors":
        raise ForeignModelError(f"{target}: the bundle file name must end in .safetensors.")
    net, meta = convert(path, **kw)
    return save_bundle(target, net, meta)


def build_recipe_network(meta: BundleMeta) -> nn.Module:
    """The (weight-less) network of an imported bundle, from its ``network`` and ``recipe``."""
    kind = (meta.recipe or {}).get("kind")
    spec = meta.network
    if kind == "nnunet":
        from medseg.models.nnunet.network import build_ensemble

        try:
            return build_ensemble(spec.kwargs["architecture"], spec.kwargs["arch_kwargs"],
                                  spec.in_channels, spec.out_channels,
                                  int(spec.kwargs.get("folds", 1)))
        except (KeyError, ValueError, TypeError) as exc:
            raise ForeignModelError(f"bundle network {spec.name}: {exc}") from None
    if kind == "monai_bundle":
        from medseg.models.monai_bundle import build_monai_network

        return build_monai_network(spec.name.removeprefix("monai."), dict(spec.kwargs))
    raise ForeignModelError(f"bundle recipe kind {kind!r} is not one this medseg runs; "
                            "upgrade medseg.")
