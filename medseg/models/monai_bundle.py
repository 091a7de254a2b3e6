"""MONAI model-zoo bundles (folder or zip) -> a medseg recipe, without running their code.

Layout: ``configs/metadata.json``, ``configs/inference.json`` (or ``.yaml``) and
``models/model.pt`` (a ``state_dict``, read with ``torch.load(weights_only=True)``); a zip may
hold them under one top folder. :func:`read_monai_bundle` resolves the inference config with
:class:`~medseg.models.monai_config.SafeConfig` and translates it into medseg's lean path:

* ``network_def``: a ``monai.networks.nets`` class from :data:`NETWORKS` and its arguments;
* ``preprocessing``: ``LoadImaged``/``EnsureChannelFirstd`` (medseg reads the image),
  ``Orientationd`` and ``Spacingd`` (bilinear) -> medseg's orientation and target spacing, then
  the intensity transforms of :data:`INTENSITY` (run as MONAI's own classes);
  ``EnsureTyped``/``ToTensord``/``CastToTyped`` are no-ops here;
* ``inferer``: ``SlidingWindowInferer`` (ROI, window batch, overlap, blending mode);
* ``postprocessing``: ``Activationsd(softmax)``, ``Invertd``, ``AsDiscreted(argmax)``,
  ``SaveImaged``: probabilities inverted then argmax (``nearest_interp=False``), or labels
  resampled nearest (argmax first, or ``nearest_interp=True``);
* label names from ``metadata.json`` (``network_data_format.outputs.pred.channel_def``),
  modality from its input description.

A target outside these lists is refused: :class:`~medseg.errors.UnsafeModelError` if it is not
a MONAI component at all (it could run any code), :class:`~medseg.errors.ForeignModelError` if
it is a MONAI component the lean path does not run. ``--trust-code`` (:func:`run_trusted`) runs
the bundle's own config through MONAI's ``ConfigParser`` instead.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from medseg.errors import ForeignModelError, UnsafeModelError
from medseg.models.monai_config import Component, SafeConfig

__all__ = ["INTENSITY", "NETWORKS", "MonaiBundleModel", "build_monai_network",
           "is_monai_bundle", "read_monai_bundle"]

NETWORKS = ("UNet", "BasicUNet", "AttentionUnet", "DynUNet", "SegResNet", "SegResNetDS",
            "SwinUNETR", "UNETR", "VNet", "HighResNet")
INTENSITY = ("ScaleIntensityRanged", "ScaleIntensityRangePercentilesd", "NormalizeIntensityd",
             "ScaleIntensityd", "ThresholdIntensityd", "ClipIntensityPercentilesd")
_NOOP = ("LoadImaged", "EnsureChannelFirstd", "EnsureTyped", "ToTensord", "CastToTyped",
         "AddChanneld")
_SPATIAL = ("Orientationd", "Spacingd")
_POST = ("Activationsd", "Invertd", "AsDiscreted", "SaveImaged", "EnsureTyped", "ToTensord")
_MAX_MEMBER = 4 << 30


def _is_monai(target: str, names: tuple[str, ...], package: str) -> bool:
    short = target.rsplit(".", 1)[-1]
    return short in names and ("." not in target or target.startswith(package + "."))


class _Files:
    """A bundle's files, from a folder or a zip (members read with a size cap)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        self.prefix = ""
        if path.is_file():
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise ForeignModelError(f"{path}: not a readable zip ({exc}).") from None
            names = [n for n in self.zip.namelist() if n.endswith("configs/metadata.json")]
            if not names:
                raise ForeignModelError(f"{path}: no configs/metadata.json in the zip; not a "
                                        "MONAI bundle.")
            self.prefix = min(names, key=len)[: -len("configs/metadata.json")]

    def exists(self, rel: str) -> bool:
        if self.zip is None:
            return (self.path / rel).is_file()
        return self.prefix + rel in self.zip.namelist()

    def read(self, rel: str) -> bytes:
        if self.zip is None:
            return (self.path / rel).read_bytes()
        info = self.zip.getinfo(self.prefix + rel)
        if info.file_size > _MAX_MEMBER:
            raise ForeignModelError(f"{self.path}: member {rel} is larger than 4 GiB.")
        return self.zip.read(info)

    def config(self, rel: str) -> dict[str, Any]:
        try:
            text = self.read(rel).decode("utf-8")
            data = json.loads(text) if rel.endswith(".json") else yaml.safe_load(text)
        except (OSError, KeyError, UnicodeDecodeError, json.JSONDecodeError,
                yaml.YAMLError) as exc:
            raise ForeignModelError(f"{self.path}/{rel}: not readable ({str(exc)[:120]}).") \
                from None
        if not isinstance(data, dict):
            raise ForeignModelError(f"{self.path}/{rel}: expected a mapping.")
        return data


def is_monai_bundle(path: str | Path) -> bool:
    """A folder with ``configs/metadata.json``, or a zip holding one."""
    p = Path(path)
    if p.is_dir():
        return (p / "configs/metadata.json").is_file()
    if p.is_file() and zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as z:
            return any(n.endswith("configs/metadata.json") for n in z.namelist())
    return False


@dataclass
class MonaiBundleModel:
    """A bundle translated to medseg's lean path (see the module docstring)."""

    path: Path
    network: Component
    spatial_dims: int
    in_channels: int
    out_channels: int
    orientation: str
    spacing: tuple[float, ...] | None
    intensity: list[dict[str, Any]]
    inferer: dict[str, Any]
    invert: str
    softmax: bool
    labels: dict[int, str]
    modality: str | None
    weights: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def load_network(self) -> nn.Module:
        """The network with the bundle's weights, loaded strictly, eval mode."""
        net = build_monai_network(self.network.name, self.network.args)
        try:
            net.load_state_dict(self.weights, strict=True)
        except RuntimeError as exc:
            raise ForeignModelError(f"{self.path}: models/model.pt does not fit network_def "
                                    f"{self.network.name}: {' '.join(str(exc).split())[:200]}"
                                    ) from None
        return net.eval()


def build_monai_network(name: str, args: dict[str, Any]) -> nn.Module:
    """An allow-listed ``monai.networks.nets`` class built from literal arguments."""
    import monai.networks.nets as nets

    if name not in NETWORKS:
        raise ForeignModelError(f"network {name!r} is not one medseg builds "
                                f"({', '.join(NETWORKS)}).")
    try:
        return getattr(nets, name)(**args)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ForeignModelError(f"network {name} does not accept {args}: {exc}") from None


def _weights(files: _Files) -> tuple[dict[str, torch.Tensor], str]:
    rel = "models/model.pt"
    if not files.exists(rel):
        hint = " (only model.ts: a TorchScript file, which medseg does not run)" if files.exists(
            "models/model.ts") else ""
        raise ForeignModelError(f"{files.path}: no models/model.pt{hint}. Use a bundle with "
                                "its PyTorch weights.")
    raw = files.read(rel)
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many exception types for hostile pickles
        text = " ".join(str(exc).split())
        if "Unsupported global" in text or "weights_only" in text.lower():
            raise UnsafeModelError(
                f"{files.path}/{rel}: refused: the file asks to rebuild Python objects outside "
                "the tensor allow-list, which could run code. Get the bundle from a source you "
                "trust.") from None
        raise ForeignModelError(f"{files.path}/{rel}: not readable weights ({text[:160]}).") \
            from None
    for key in ("state_dict", "model", "network"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ForeignModelError(f"{files.path}/{rel}: not a state_dict of tensors.")
    return state, hashlib.sha256(raw).hexdigest()


def _transforms(value: Any) -> list[Component]:
    if isinstance(value, Component) and value.name == "Compose":
        value = value.args.get("transforms", [])
    if not isinstance(value, list) or not all(isinstance(t, Component) for t in value):
        raise ForeignModelError("expected a Compose of transforms")
    return value


def _check_target(c: Component, allowed: tuple[str, ...], what: str, where: str) -> None:
    if _is_monai(c.target, allowed, "monai.transforms") or _is_monai(
            c.target, allowed, "monai.inferers"):
        return
    import monai.inferers
    import monai.transforms

    short = c.target.rsplit(".", 1)[-1]
    known = ("." not in c.target or c.target.startswith("monai.")) and (
        hasattr(monai.transforms, short) or hasattr(monai.inferers, short))
    if not known:
        raise UnsafeModelError(f"{where}: {what} target {c.target!r} is not a MONAI component; "
                               "medseg does not import it. Use --trust-code only if you trust "
                               "the bundle's source.")
    raise ForeignModelError(f"{where}: {what} {c.name} is not one medseg's lean path runs "
                            f"({', '.join(allowed)}); use --trust-code to run the bundle's "
                            "own pipeline.")


def _keys(c: Component) -> list[str]:
    k = c.args.get("keys", [])
    return [k] if isinstance(k, str) else list(k)


def _preprocessing(steps: list[Component], where: str
                   ) -> tuple[str, tuple[float, ...] | None, list[dict[str, Any]], str]:
    """Orientation, spacing and intensity steps of the lean path, and the image key."""
    orientation: str | None = None
    spacing: tuple[float, ...] | None = None
    intensity: list[dict[str, Any]] = []
    key = "image"
    for c in steps:
        _check_target(c, (*_NOOP, *_SPATIAL, *INTENSITY), "preprocessing", where)
        if c.name == "LoadImaged":
            key = _keys(c)[0]
        if c.name in _NOOP:
            continue
        if key not in _keys(c):
            continue
        if intensity and c.name in _SPATIAL:
            raise ForeignModelError(f"{where}: {c.name} after an intensity transform is not "
                                    "supported by the lean path; use --trust-code.")
        if c.name == "Orientationd":
            orientation = str(c.args.get("axcodes", "RAS"))
        elif c.name == "Spacingd":
            mode = c.args.get("mode", "bilinear")
            mode = mode[0] if isinstance(mode, (list, tuple)) else mode
            extra = set(c.args) - {"keys", "pixdim", "mode", "dtype", "allow_missing_keys"}
            if str(mode) != "bilinear" or extra:
                raise ForeignModelError(f"{where}: Spacingd with {mode!r} {sorted(extra)} is not "
                                        "supported by the lean path; use --trust-code.")
            pix = c.args["pixdim"]
            pix = pix if isinstance(pix, (list, tuple)) else [pix] * 3
            spacing = tuple(float(p) for p in pix)
        else:
            intensity.append({"name": c.name, "args": {k: v for k, v in c.args.items()
                                                       if k not in ("keys",)}})
    if orientation is None:
        raise ForeignModelError(f"{where}: preprocessing has no Orientationd; the lean path "
                                "needs one (use --trust-code).")
    return orientation, spacing, intensity, key


def _inferer(c: Any, where: str) -> dict[str, Any]:
    if not isinstance(c, Component):
        raise ForeignModelError(f"{where}: inferer is not a component.")
    _check_target(c, ("SlidingWindowInferer",), "inferer", where)
    defaults = {"sigma_scale": 0.125, "padding_mode": "constant", "cval": 0.0}
    odd = [k for k, v in defaults.items() if k in c.args and c.args[k] != v]
    odd += [k for k in c.args if k not in (*defaults, "roi_size", "sw_batch_size", "overlap",
                                           "mode", "progress", "cache_roi_weight_map")]
    if odd:
        raise ForeignModelError(f"{where}: SlidingWindowInferer {odd} not supported by the lean "
                                "path; use --trust-code.")
    roi = c.args["roi_size"]
    return {"roi_size": tuple(int(r) for r in roi), "overlap": float(c.args.get("overlap", 0.25)),
            "sw_batch_size": int(c.args.get("sw_batch_size", 1)),
            "mode": str(c.args.get("mode", "constant"))}


def _postprocessing(steps: list[Component], where: str) -> tuple[str, bool]:
    """``(invert, softmax)``: how probabilities or labels go back to the input grid."""
    softmax, argmax_first, nearest = False, None, None
    for c in steps:
        _check_target(c, _POST, "postprocessing", where)
        if c.name == "Activationsd":
            if c.args.get("sigmoid") or not c.args.get("softmax"):
                raise ForeignModelError(f"{where}: only Activationsd(softmax=True) is supported.")
            softmax = True
        elif c.name == "AsDiscreted":
            if not c.args.get("argmax") or set(c.args) - {"keys", "argmax", "dim", "keepdim"}:
                raise ForeignModelError(f"{where}: only AsDiscreted(argmax=True) is supported.")
            argmax_first = nearest is None
        elif c.name == "Invertd":
            nearest = bool(c.args.get("nearest_interp", True))
    invert = "labels" if (argmax_first or nearest) else "probabilities"
    return invert, softmax


def _labels(meta: dict[str, Any], k: int) -> dict[int, str]:
    outputs = meta.get("network_data_format", {}).get("outputs", {})
    pred: Any = outputs.get("pred") or next(iter(outputs.values()), {})
    channel_def = pred.get("channel_def", {}) if isinstance(pred, dict) else {}
    names = {int(i): str(n) for i, n in channel_def.items() if str(i).isdigit()}
    return {i: names.get(i, f"label_{i}") for i in range(1, k)}


def read_monai_bundle(path: str | Path) -> MonaiBundleModel:
    """Translate a bundle for medseg's lean path (see the module docstring)."""
    files = _Files(Path(path))
    meta = files.config("configs/metadata.json")
    rel = next((r for r in ("configs/inference.json", "configs/inference.yaml",
                            "configs/inference.yml") if files.exists(r)), None)
    if rel is None:
        raise ForeignModelError(f"{path}: no configs/inference.json or .yaml.")
    where = f"{path}/{rel}"
    cfg = SafeConfig(files.config(rel), where, lambda f: files.config(f"configs/{f}"))
    net = cfg.get("network_def") if cfg.has("network_def") else cfg.get("network")
    if not isinstance(net, Component) or not _is_monai(net.target, NETWORKS,
                                                       "monai.networks.nets"):
        target = net.target if isinstance(net, Component) else type(net).__name__
        raise UnsafeModelError(f"{where}: network_def {target!r} is not one of the MONAI "
                               f"networks medseg builds ({', '.join(NETWORKS)}); use "
                               "--trust-code only if you trust the bundle's source.")
    orientation, spacing, intensity, _ = _preprocessing(_transforms(cfg.get("preprocessing")),
                                                        where)
    inferer = _inferer(cfg.get("inferer"), where)
    invert, softmax = _postprocessing(_transforms(cfg.get("postprocessing")), where)
    args = net.args
    nd = int(args.get("spatial_dims", args.get("dimensions", 3)))
    cin, cout = int(args.get("in_channels", 1)), int(args.get("out_channels", 2))
    weights, digest = _weights(files)
    image = meta.get("network_data_format", {}).get("inputs", {}).get("image", {})
    modality = image.get("modality") if isinstance(image, dict) else None
    provenance = {
        "source_format": "MONAI bundle", "name": meta.get("name", Path(path).stem),
        "version": meta.get("version"), "monai_version": meta.get("monai_version"),
        "licence": meta.get("license") or meta.get("licence") or meta.get("copyright"),
        "source_path": str(path), "files": {"models/model.pt": digest,
                                             rel: hashlib.sha256(files.read(rel)).hexdigest()}}
    return MonaiBundleModel(
        path=Path(path), network=net, spatial_dims=nd, in_channels=cin, out_channels=cout,
        orientation=orientation, spacing=spacing, intensity=intensity, inferer=inferer,
        invert=invert, softmax=softmax, labels=_labels(meta, cout),
        modality=str(modality).upper() if modality else None, weights=weights,
        provenance=provenance)


class TrustedBundle:
    """``--trust-code``: the bundle's own config parsed and instantiated by MONAI's
    ``ConfigParser`` (its ``$`` expressions and ``_target_`` s run as written): its
    ``network_def``, ``preprocessing``, ``inferer`` and ``postprocessing`` (``SaveImaged``
    left out; medseg writes the output). Never used unless asked for explicitly; the app never
    offers it. Weights still load with ``weights_only=True``."""

    def __init__(self, path: str | Path, device: torch.device) -> None:
        import tempfile

        from monai.bundle import ConfigParser

        src = Path(path)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        root = src
        if src.is_file():  # a zip: MONAI reads from a folder
            self._tmp = tempfile.TemporaryDirectory(prefix="medseg-bundle-")
            files = _Files(src)
            root = Path(self._tmp.name)
            for rel in ("configs/metadata.json", "models/model.pt", *[
                    n[len(files.prefix):] for n in files.zip.namelist()  # type: ignore[union-attr]
                    if n.startswith(files.prefix + "configs/")]):
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(files.read(rel))
        files = _Files(root)
        rel = next(r for r in ("configs/inference.json", "configs/inference.yaml",
                               "configs/inference.yml") if files.exists(r))
        self.parser = ConfigParser()
        self.parser.read_meta(str(root / "configs/metadata.json"))
        self.parser.read_config(str(root / rel))
        self.parser["bundle_root"] = str(root)
        self.device = device
        self.net = self.parser.get_parsed_content("network_def").to(device).eval()
        weights, _ = _weights(files)
        self.net.load_state_dict(weights, strict=True)
        self.pre = self.parser.get_parsed_content("preprocessing")
        self.inferer = self.parser.get_parsed_content("inferer")
        post = self.parser.get_parsed_content("postprocessing")
        from monai import transforms as mt

        steps = [t for t in getattr(post, "transforms", [post])
                 if not isinstance(t, mt.SaveImaged)]
        self.post = mt.Compose(steps)
        meta = files.config("configs/metadata.json")
        self.out_channels = int(getattr(self.net, "out_channels", 0) or meta.get(
            "network_data_format", {}).get("outputs", {}).get("pred", {}).get("num_channels", 2))
        self.labels = _labels(meta, self.out_channels)

    @torch.no_grad()
    def predict_labels(self, nifti: Path) -> Any:
        """Labels of the image file ``nifti`` on its own grid (``(X, Y, Z)`` integer array)."""
        data = self.pre({"image": str(nifti)})
        pred: Any = self.inferer(data["image"][None].to(self.device), self.net)
        data["pred"] = pred[0]
        out = self.post(data)["pred"]
        return out.detach().cpu().numpy()[0]
