"""nnU-Net v2 trained-model folders -> :class:`NnUnetModel` (recipe, network, provenance).

A model folder is what ``nnUNetv2_train`` writes and what TotalSegmentator downloads:
``DatasetXXX_Name/Trainer__Plans__configuration/`` with ``plans.json``, ``dataset.json`` and
``fold_N/checkpoint_final.pth`` (or ``checkpoint_best.pth``). :func:`find_model_folders` also
accepts the ``DatasetXXX_Name`` folder (or any folder holding model folders, such as
TotalSegmentator's weights folder) and lists what it holds.

What is refused (``ForeignModelError``, one line naming the file and the fix): a cascade
configuration (it needs the previous stage's segmentation), a preprocessor, resampling function
or label manager other than nnU-Net's defaults, an architecture that is not a plain or
residual-encoder U-Net, weights that do not load strictly into the architecture of the plans.
Region-based models (``regions_class_order``) are run: sigmoid per region, painted in order.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.errors import ForeignModelError
from medseg.models.nnunet.checkpoint import NnUnetCheckpoint, load_checkpoint
from medseg.models.nnunet.network import (
    NnUnetEnsemble,
    build_ensemble,
    canonical_state_dict,
)
from medseg.models.nnunet.recipe import ChannelNorm, NnUnetRecipe, Resampling

__all__ = ["NnUnetModel", "find_model_folders", "is_model_folder", "read_model_folder"]

_CKPTS = ("checkpoint_final.pth", "checkpoint_best.pth")
_MR = re.compile(r"(^|[^a-z])(mr|mri|t1|t2|flair|adc|dwi|pd)([^a-z]|$)|t1c|t1ce|t1gd", re.I)


def is_model_folder(path: Path) -> bool:
    """``path`` holds ``plans.json``, ``dataset.json`` and at least one ``fold_*`` folder."""
    return (path / "plans.json").is_file() and (path / "dataset.json").is_file() and any(
        p.is_dir() and p.name.startswith("fold_") for p in path.iterdir())


def find_model_folders(path: str | Path, max_depth: int = 3) -> list[Path]:
    """Every nnU-Net model folder at or below ``path`` (sorted)."""
    root = Path(path)
    if not root.is_dir():
        return []
    if is_model_folder(root):
        return [root]
    found: list[Path] = []
    if max_depth > 0:
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            found += find_model_folders(sub, max_depth - 1)
    return found


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ForeignModelError(f"{path}: not readable JSON ({str(exc)[:120]}). The model "
                                "folder is damaged; copy it again.") from None
    if not isinstance(data, dict):
        raise ForeignModelError(f"{path}: expected a JSON object.")
    return data


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _resolve_configuration(plans: dict[str, Any], name: str, path: Path,
                           seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The configuration with ``inherits_from`` resolved, as nnU-Net's PlansManager does."""
    configs = plans.get("configurations", {})
    if name not in configs:
        raise ForeignModelError(f"{path}: configuration {name!r} is not in plans.json "
                                f"(it has {', '.join(configs) or 'none'}).")
    cfg = dict(configs[name])
    parent = cfg.get("inherits_from")
    if parent:
        if parent in seen:
            raise ForeignModelError(f"{path}: configurations inherit in a circle ({seen}).")
        base = _resolve_configuration(plans, parent, path, (*seen, name))
        base.update(cfg)
        cfg = base
    return cfg


def _old_plans_architecture(cfg: dict[str, Any]) -> dict[str, Any]:
    """nnU-Net's own conversion of pre-2.4 plans (``UNet_class_name`` ...) to ``architecture``
    (``ConfigurationManager.__init__``)."""
    cls = cfg["UNet_class_name"]
    n = len(cfg["n_conv_per_stage_encoder"])
    nd = len(cfg["patch_size"])
    key = "n_conv_per_stage" if cls == "PlainConvUNet" else "n_blocks_per_stage"
    return {"network_class_name": cls, "arch_kwargs": {
        "n_stages": n,
        "features_per_stage": [min(cfg["UNet_base_num_features"] * 2 ** i,
                                   cfg["unet_max_num_features"]) for i in range(n)],
        "conv_op": f"torch.nn.modules.conv.Conv{nd}d", "kernel_sizes": cfg["conv_kernel_sizes"],
        "strides": cfg["pool_op_kernel_sizes"], key: cfg["n_conv_per_stage_encoder"],
        "n_conv_per_stage_decoder": cfg["n_conv_per_stage_decoder"], "conv_bias": True,
        "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{nd}d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
        "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True}}}


def _labels(ds: dict[str, Any], path: Path) -> tuple[dict[int, str], tuple[int, ...] | None]:
    labels = {k: v for k, v in ds.get("labels", {}).items() if k != "ignore"}
    order = ds.get("regions_class_order")
    if any(isinstance(v, (list, tuple)) for v in labels.values()):
        if not order:
            raise ForeignModelError(f"{path}: region labels without regions_class_order.")
        regions = [k for k, v in labels.items()
                   if not (isinstance(v, (list, tuple)) and set(v) == {0}) and v != 0]
        if len(regions) != len(order):
            raise ForeignModelError(f"{path}: {len(regions)} regions but regions_class_order "
                                    f"has {len(order)} entries.")
        return {int(c): str(k) for k, c in zip(regions, order, strict=True)}, tuple(
            int(c) for c in order)
    try:
        values = {int(v): str(k) for k, v in labels.items()}
    except (TypeError, ValueError):
        raise ForeignModelError(f"{path}: labels must map names to integers.") from None
    if sorted(values) != list(range(len(values))) or 0 not in values:
        raise ForeignModelError(f"{path}: label values {sorted(values)} are not 0..N "
                                "(nnU-Net requires consecutive values).")
    return {v: n for v, n in values.items() if v != 0}, None


def _channels(plans: dict[str, Any], cfg: dict[str, Any], path: Path) -> tuple[ChannelNorm, ...]:
    props = plans.get("foreground_intensity_properties_per_channel", {})
    out = []
    for c, scheme in enumerate(cfg.get("normalization_schemes", [])):
        p = props.get(str(c), {})
        if scheme == "CTNormalization" and not {"mean", "std", "percentile_00_5",
                                                "percentile_99_5"} <= set(p):
            raise ForeignModelError(f"{path}: CT normalisation of channel {c} without its "
                                    "intensity properties in plans.json.")
        out.append(ChannelNorm(scheme=scheme, use_mask=bool(cfg["use_mask_for_norm"][c]),
                               mean=p.get("mean"), std=p.get("std"),
                               lower=p.get("percentile_00_5"), upper=p.get("percentile_99_5")))
    return tuple(out)


def _check_defaults(cfg: dict[str, Any], plans: dict[str, Any], path: Path) -> None:
    wanted = {"preprocessor_name": "DefaultPreprocessor",
              "resampling_fn_data": "resample_data_or_seg_to_shape",
              "resampling_fn_probabilities": "resample_data_or_seg_to_shape"}
    for key, value in wanted.items():
        if cfg.get(key, value) != value:
            raise ForeignModelError(f"{path}: {key} {cfg.get(key)!r} is not nnU-Net's default "
                                    f"({value}); medseg runs only the default.")
    if plans.get("label_manager", "LabelManager") != "LabelManager":
        raise ForeignModelError(f"{path}: label manager {plans['label_manager']!r} is not "
                                "nnU-Net's default LabelManager.")
    if cfg.get("previous_stage"):
        raise ForeignModelError(f"{path}: a cascade configuration needs the segmentation of "
                                f"{cfg['previous_stage']!r} as input; run 3d_lowres or "
                                "3d_fullres instead.")


@dataclass
class NnUnetModel:
    """A trained nnU-Net configuration: recipe, architecture, checkpoints and provenance."""

    folder: Path
    recipe: NnUnetRecipe
    arch_class: str
    arch_kwargs: dict[str, Any]
    in_channels: int
    checkpoints: list[Path]
    modality: str | None
    provenance: dict[str, Any] = field(default_factory=dict)

    def load_network(self) -> NnUnetEnsemble:
        """The ensemble of the checkpoints' networks, weights loaded strictly, eval mode."""
        try:
            net = build_ensemble(self.arch_class, self.arch_kwargs, self.in_channels,
                                 self.recipe.num_heads, len(self.checkpoints))
        except (ValueError, TypeError, KeyError) as exc:
            raise ForeignModelError(f"{self.folder / 'plans.json'}: cannot build its network: "
                                    f"{exc}.") from None
        for fold_net, path in zip(net.folds, self.checkpoints, strict=True):
            load_weights(fold_net, load_checkpoint(path), self.folder)
        return net.eval()


def load_weights(net: Any, ckpt: NnUnetCheckpoint, folder: Path) -> None:
    """``ckpt``'s weights into ``net``, strictly (names, shapes, aliases)."""
    try:
        net.load_state_dict(canonical_state_dict(net, ckpt.weights), strict=True)
    except (RuntimeError, ValueError) as exc:
        first = " ".join(str(exc).split())[:240]
        raise ForeignModelError(
            f"{ckpt.path}: weights do not fit the architecture in {folder / 'plans.json'} "
            f"(trainer {ckpt.trainer_name or '?'} may build a different network): {first}"
        ) from None


def _pick_checkpoints(folder: Path, folds: list[str] | None, name: str | None
                      ) -> tuple[list[Path], list[str]]:
    avail = sorted(p.name[len("fold_"):] for p in folder.iterdir()
                   if p.is_dir() and p.name.startswith("fold_"))
    use = [str(f) for f in folds] if folds else avail
    paths = []
    for f in use:
        cands = [name] if name else list(_CKPTS)
        hit = next((folder / f"fold_{f}" / c for c in cands
                    if (folder / f"fold_{f}" / c).is_file()), None)
        if hit is None:
            raise ForeignModelError(f"{folder}: fold {f} has no {' or '.join(cands)} (folds "
                                    f"with checkpoints: {', '.join(avail) or 'none'}).")
        paths.append(hit)
    if not paths:
        raise ForeignModelError(f"{folder}: no fold_N folder with a checkpoint.")
    return paths, use


def read_model_folder(path: str | Path, *, folds: list[str] | None = None,
                      checkpoint: str | None = None) -> NnUnetModel:
    """Parse a model folder (see module docstring); checkpoints are opened later, safely.

    ``folds``: which ``fold_N`` to ensemble (default: all present). ``checkpoint``: file name
    (default ``checkpoint_final.pth``, else ``checkpoint_best.pth`` per fold).
    """
    folder = Path(path)
    hits = find_model_folders(folder)
    if len(hits) != 1:
        found = ", ".join(str(h.relative_to(folder)) for h in hits) or "none"
        raise ForeignModelError(
            f"{folder}: {'no' if not hits else 'several'} nnU-Net model folder(s) found "
            f"({found}). Pass one Trainer__Plans__configuration folder (with plans.json, "
            "dataset.json and fold_N/); medseg predict runs a folder of several as parts, merged "
            "by label name.")
    folder = hits[0]
    plans, ds = _json(folder / "plans.json"), _json(folder / "dataset.json")
    ckpts, used = _pick_checkpoints(folder, folds, checkpoint)
    first = load_checkpoint(ckpts[0])
    cname = first.configuration or folder.name.rsplit("__", 1)[-1]
    cfg = _resolve_configuration(plans, cname, folder / "plans.json")
    _check_defaults(cfg, plans, folder / "plans.json")
    arch = cfg.get("architecture") or _old_plans_architecture(cfg)
    labels, order = _labels(ds, folder / "dataset.json")
    names = [str(v) for _, v in sorted(ds.get("channel_names", ds.get("modality", {})).items(),
                                       key=lambda kv: int(kv[0]))]
    channels = _channels(plans, cfg, folder / "plans.json")
    if len(names) != len(channels):
        raise ForeignModelError(f"{folder}: {len(names)} channel names in dataset.json but "
                                f"{len(channels)} normalisation schemes in plans.json.")
    rkw = {k: cfg.get(f"resampling_fn_{k}_kwargs", {}) for k in ("data", "probabilities")}
    recipe = NnUnetRecipe(
        configuration=cname, spatial_dims=2 if len(cfg["patch_size"]) == 2 else 3,
        patch_size=tuple(cfg["patch_size"]), spacing=tuple(cfg["spacing"]),
        transpose_forward=tuple(plans.get("transpose_forward", (0, 1, 2))),
        transpose_backward=tuple(plans.get("transpose_backward", (0, 1, 2))),
        channels=channels, channel_names=tuple(names),
        resample_data=Resampling(**{k: v for k, v in rkw["data"].items() if k != "is_seg"}),
        resample_probabilities=Resampling(**{k: v for k, v in rkw["probabilities"].items()
                                             if k != "is_seg"}),
        mirror_axes=first.mirror_axes, labels=labels, regions_class_order=order)
    ct_names = names and all(n.strip().upper() == "CT" for n in names)
    modality = ("CT" if ct_names or all(c.scheme == "CTNormalization" for c in channels)
                else "MR" if names and all(_MR.search(n) for n in names) else None)
    dataset_name = plans.get("dataset_name", folder.parent.name)
    provenance = {
        "source_format": "nnU-Net v2 model folder", "dataset": dataset_name,
        "trainer": first.trainer_name, "plans": plans.get("plans_name", ""),
        "configuration": cname, "folds": used, "checkpoint": ckpts[0].name,
        "epoch": first.epoch, "source_path": str(folder),
        "licence": ds.get("licence") or ds.get("license") or ds.get("reference"),
        "files": {str(p.relative_to(folder)): sha256(p)
                  for p in [folder / "plans.json", folder / "dataset.json", *ckpts]}}
    return NnUnetModel(folder=folder, recipe=recipe, arch_class=arch["network_class_name"],
                       arch_kwargs=dict(arch["arch_kwargs"]), in_channels=len(channels),
                       checkpoints=ckpts, modality=modality, provenance=provenance)
