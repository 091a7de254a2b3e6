"""Self-describing model bundles: one ``.safetensors`` file, weights plus a JSON description.

The safetensors header metadata holds one key, ``"medseg"``, whose value is the JSON of
:class:`BundleMeta`: network name and constructor arguments, label names, preprocessing,
sliding-window defaults (ROI size...), modality, training config hash and medseg version.
``medseg predict`` needs nothing else. Loading never unpickles: safetensors stores raw tensors.

**What a model is for.** ``modality`` (a DICOM modality code: ``CT``, ``MR``...) and
``body_region`` (free text, e.g. ``abdomen``) say which images a model was made for:
trained models take the training data's modality, imported nnU-Net models their
``dataset.json`` channel names / CT normalisation, MONAI bundles ``metadata.json``'s input
modality; the shipped default model is ``CT`` / ``abdomen``. :func:`modality_mismatch`
compares them with an image's modality decision (:mod:`medseg.modality`); the app asks
before running on a mismatch and ``medseg predict`` prints a warning. ``body_region`` is
written only when set, so bundles without it stay readable by older medseg versions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from medseg.config import InferenceConfig, PreprocessConfig
from medseg.errors import (
    BundleError,
    ConfigError,
    IncompatibleBundleError,
    InputNotFoundError,
    UnknownNetworkError,
)
from medseg.io.atomic import atomic_path
from medseg.models.registry import build_network

if TYPE_CHECKING:
    from medseg.modality import ModalityDecision

__all__ = ["BUNDLE_FORMAT_VERSION", "DEFAULT_BUNDLE", "BundleMeta", "NetworkSpec", "load_bundle",
           "modality_mismatch", "read_bundle_meta", "resolve_bundle", "save_bundle",
           "shipped_bundles"]

#: Increment when a bundle written by this version cannot be read by older code.
#: 2: imported foreign models (``recipe`` and ``provenance``, medseg.models.importer).
BUNDLE_FORMAT_VERSION = 2
_META_KEY = "medseg"
#: folder of the model bundles installed with medseg
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights"
#: the shipped auto-segmentation model that ``"default"`` names (configs/demo.yaml)
DEFAULT_BUNDLE = "ct_organs_2d"


def shipped_bundles() -> dict[str, Path]:
    """``{name: path}`` of the auto-segmentation bundles installed with medseg
    (``medseg/weights/*.safetensors`` except the promptable lite model)."""
    if not SHIPPED_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.safetensors"))
            if not p.name.startswith("lite_sam")}


def resolve_bundle(ref: str | Path) -> Path:
    """A bundle path from a file path, a shipped model's name, or ``"default"``."""
    try:
        p = Path(ref).expanduser()
    except RuntimeError as exc:  # "~user/..." of an unknown user
        raise InputNotFoundError(f"{ref}: {exc}. Give the bundle's full path.") from exc
    if p.is_file():
        return p
    shipped = shipped_bundles()
    name = DEFAULT_BUNDLE if str(ref) == "default" else str(ref)
    if name in shipped:
        return shipped[name]
    if str(ref) == "default" or (p.suffix == "" and len(p.parts) == 1):
        raise InputNotFoundError(
            f"{ref}: no such model bundle file and no shipped model of that name (shipped: "
            f"{', '.join(shipped) or 'none'}). Pass a .safetensors file from `medseg train`.")
    return p  # a missing file: read_bundle_meta says so


class NetworkSpec(BaseModel):
    """Everything :func:`medseg.models.registry.build_network` needs."""

    model_config = ConfigDict(extra="forbid")
    name: str
    spatial_dims: Literal[2, 3]
    in_channels: int = Field(ge=1)
    out_channels: int = Field(ge=2)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class BundleMeta(BaseModel):
    """The JSON description stored in a bundle. ``labels`` maps channel index -> name for
    every foreground output channel (1..out_channels-1); channel 0 is background."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["medseg-bundle"] = "medseg-bundle"
    format_version: int = 1
    medseg_version: str
    network: NetworkSpec
    labels: dict[int, str]
    modality: str | None = None
    #: the body region the model was made for (e.g. "abdomen"); None: not stated
    body_region: str | None = None
    preprocess: PreprocessConfig
    inference: InferenceConfig
    config_hash: str = ""
    training: dict[str, Any] = Field(default_factory=dict)
    #: imported nnU-Net / MONAI models: how they run (medseg.models.importer); None: native
    recipe: dict[str, Any] | None = None
    #: where an imported model came from (format, dataset, trainer, folds, file hashes...)
    provenance: dict[str, Any] = Field(default_factory=dict)

    @property
    def roi_size(self) -> tuple[int, ...]:
        roi = self.inference.roi_size
        if roi is None:
            raise BundleError("bundle has no inference.roi_size; re-save it with one.")
        return tuple(roi)

    def made_for(self) -> str:
        """``CT abdomen``, ``MR``, or ``any modality`` when the bundle names none."""
        parts = [p for p in (self.modality, self.body_region) if p]
        return " ".join(parts) if parts else "any modality"


def modality_mismatch(meta: BundleMeta, decision: ModalityDecision,
                      model_name: str = "This model") -> str | None:
    """One line saying that an image is not of the modality ``meta`` was made for, or None.

    None when the bundle names no modality, when the image's modality is the bundle's, or
    when the image's modality is unknown and the bundle is not a CT model (an unknown
    modality is known only not to be CT, :mod:`medseg.modality`)."""
    from medseg.modality import normalize_modality

    want = normalize_modality(meta.modality)
    got = decision.modality
    if want is None or got == want or (got is None and want != "CT"):
        return None
    return (f"{model_name} was made for {meta.made_for()} images, but this image is "
            f"{decision.describe()}: its result will likely be wrong. Use a model made for "
            "this modality, or check every label it adds.")


def _current_version() -> str:
    from medseg import __version__

    return __version__


def save_bundle(path: str | Path, model: nn.Module, meta: BundleMeta) -> Path:
    """Write ``model``'s weights and ``meta`` to ``path`` (``.safetensors``), atomically."""
    from safetensors.torch import save_file

    p = Path(path)
    if meta.inference.roi_size is None:
        raise BundleError("BundleMeta.inference.roi_size must be set before saving a bundle.")
    if len(meta.labels) != meta.network.out_channels - 1:
        raise BundleError(f"bundle has {meta.network.out_channels} output channels but "
                          f"{len(meta.labels)} label names (expected one per foreground channel)")
    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    described = meta.model_dump(mode="json")
    if described.get("body_region") is None:
        described.pop("body_region", None)  # readable by medseg versions without the field
    with atomic_path(p) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(described)})
    return p


def _check_compatible(raw: dict[str, Any], path: Path) -> None:
    if raw.get("format") != "medseg-bundle":
        raise BundleError(f"{path}: not a medseg model bundle (format={raw.get('format')!r}).")
    version = raw.get("format_version")
    if not isinstance(version, int) or version > BUNDLE_FORMAT_VERSION or version < 1:
        raise IncompatibleBundleError(
            f"{path}: bundle format version {version!r} (written by medseg "
            f"{raw.get('medseg_version', '?')}) is not supported by medseg {_current_version()}, "
            f"which reads format versions 1..{BUNDLE_FORMAT_VERSION}. Upgrade medseg or "
            "re-export the model with this version."
        )
    theirs = str(raw.get("medseg_version", "0")).split(".")[0]
    ours = _current_version().split(".")[0]
    if theirs != ours:
        raise IncompatibleBundleError(
            f"{path}: written by medseg {raw.get('medseg_version')}, major version differs from "
            f"this medseg {_current_version()}. Use a matching medseg version."
        )


def read_bundle_meta(path: str | Path) -> BundleMeta:
    """Read and check a bundle's description without loading its weights."""
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"{p}: model bundle not found. Pass a .safetensors file "
                                 "written by `medseg train` (e.g. runs/NAME/best.safetensors).")
    try:
        with safe_open(str(p), framework="pt") as fh:
            header = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"{p}: not a readable safetensors file ({exc}).") from exc
    if _META_KEY not in header:
        raise BundleError(f"{p}: safetensors file without a medseg description; it holds only "
                          "weights. Save models with medseg.models.save_bundle.")
    try:
        raw = json.loads(header[_META_KEY])
    except json.JSONDecodeError as exc:
        raise BundleError(f"{p}: bundle description is not valid JSON ({exc}).") from exc
    if not isinstance(raw, dict):
        raise BundleError(f"{p}: bundle description is not a JSON object.")
    _check_compatible(raw, p)
    try:
        return BundleMeta.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'description'}: {e['msg']}"
                             for e in exc.errors()[:5])
        raise BundleError(f"{p}: invalid bundle description ({problems}). Re-save the model "
                          "with this medseg's save_bundle.") from None


def load_bundle(path: str | Path, device: str | torch.device = "cpu"
                ) -> tuple[nn.Module, BundleMeta]:
    """Build the bundle's network, load its weights (no unpickling) and put it in eval mode."""
    from safetensors.torch import load_file

    meta = read_bundle_meta(path)
    spec = meta.network
    try:
        if meta.recipe is not None:  # an imported nnU-Net / MONAI model
            from medseg.models.importer import build_recipe_network

            net = build_recipe_network(meta)
        else:
            net = build_network(spec.name, spec.spatial_dims, spec.in_channels,
                                spec.out_channels, **spec.kwargs)
    except UnknownNetworkError as exc:
        raise UnknownNetworkError(f"{path}: the bundle needs {exc} A newer medseg may know "
                                  "this network.") from exc
    except ConfigError as exc:
        raise BundleError(f"{path}: the bundle's network settings do not build: {exc}") from exc
    from safetensors import SafetensorError

    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"{path}: the weights cannot be read "
                          f"({' '.join(str(exc).split())[:200]}); the file is damaged. Copy it "
                          "again or re-save the model.") from None
    mismatch = _state_mismatch(net, state)
    if mismatch:
        raise BundleError(f"{path}: weights do not fit network {spec.name} {spec.kwargs} "
                          f"({mismatch}). The description and the weights come from different "
                          "models; re-save the bundle with save_bundle.")
    net.load_state_dict(state, strict=True)
    return net.to(device).eval(), meta


def _state_mismatch(net: nn.Module, state: dict[str, torch.Tensor]) -> str:
    """One line naming missing, unexpected and wrongly shaped tensors ("" when they fit)."""
    expected = net.state_dict()
    groups = {
        "missing": sorted(set(expected) - set(state)),
        "unexpected": sorted(set(state) - set(expected)),
        "wrong shape": [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
                        for k in sorted(set(expected) & set(state))
                        if expected[k].shape != state[k].shape],
    }
    return "; ".join(f"{name}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                     for name, keys in groups.items() if keys)
