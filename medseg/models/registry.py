"""Name -> builder registry over MONAI segmentation networks, 2D or 3D.

``build_network("unet", spatial_dims=3, in_channels=1, out_channels=4, channels=(8, 16, 32))``
returns a plain ``torch.nn.Module`` mapping ``(B, in_channels, *spatial)`` float tensors to
``(B, out_channels, *spatial)`` logits. Defaults are small, sensible U-Net settings; every
keyword given overrides them and is passed to the MONAI constructor unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from medseg.errors import ConfigError, UnknownNetworkError

__all__ = ["available_networks", "build_network", "network_defaults"]

Builder = Callable[[int, int, int, dict[str, Any]], nn.Module]


def _unet(nd: int, cin: int, cout: int, kw: dict[str, Any]) -> nn.Module:
    from monai.networks.nets import UNet

    channels = kw.pop("channels", (16, 32, 64, 128, 256))
    strides = kw.pop("strides", (2,) * (len(channels) - 1))
    kw.setdefault("num_res_units", 2)
    kw.setdefault("norm", "instance")
    return UNet(nd, cin, cout, channels=channels, strides=strides, **kw)


def _attention_unet(nd: int, cin: int, cout: int, kw: dict[str, Any]) -> nn.Module:
    from monai.networks.nets import AttentionUnet

    channels = kw.pop("channels", (16, 32, 64, 128))
    strides = kw.pop("strides", (2,) * (len(channels) - 1))
    return AttentionUnet(nd, cin, cout, channels=channels, strides=strides, **kw)


def _basic_unet(nd: int, cin: int, cout: int, kw: dict[str, Any]) -> nn.Module:
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=nd, in_channels=cin, out_channels=cout, **kw)


def _dynunet(nd: int, cin: int, cout: int, kw: dict[str, Any]) -> nn.Module:
    from monai.networks.nets import DynUNet

    levels = int(kw.pop("levels", 5))
    kernel = kw.pop("kernel_size", [3] * levels)
    strides = kw.pop("strides", [1] + [2] * (len(kernel) - 1))
    up = kw.pop("upsample_kernel_size", strides[1:])
    return DynUNet(nd, cin, cout, kernel_size=kernel, strides=strides, upsample_kernel_size=up,
                   **kw)


def _segresnet(nd: int, cin: int, cout: int, kw: dict[str, Any]) -> nn.Module:
    from monai.networks.nets import SegResNet

    kw.setdefault("init_filters", 8)
    return SegResNet(spatial_dims=nd, in_channels=cin, out_channels=cout, **kw)


def _swinunetr(nd: int, cin: int, cout: int, kw: dict[str, Any]) -> nn.Module:
    from monai.networks.nets import SwinUNETR

    kw.setdefault("feature_size", 24)
    return SwinUNETR(in_channels=cin, out_channels=cout, spatial_dims=nd, **kw)


_REGISTRY: dict[str, Builder] = {
    "unet": _unet,
    "attention_unet": _attention_unet,
    "basic_unet": _basic_unet,
    "dynunet": _dynunet,
    "segresnet": _segresnet,
    "swinunetr": _swinunetr,
}

#: Minimal input size divisor per network: spatial sizes of the ROI should be multiples.
_DIVISOR = {"swinunetr": 32}


def available_networks() -> list[str]:
    """Registered network names (lower case)."""
    return sorted(_REGISTRY)


def network_defaults(name: str) -> dict[str, Any]:
    """Constructor keywords the builder fills in when they are not given (for docs)."""
    table: dict[str, dict[str, Any]] = {
        "unet": {"channels": (16, 32, 64, 128, 256), "strides": (2, 2, 2, 2),
                 "num_res_units": 2, "norm": "instance"},
        "dynunet": {"levels": 5}, "segresnet": {"init_filters": 8},
        "swinunetr": {"feature_size": 24},
    }
    return dict(table.get(name.lower(), {}))


def build_network(name: str, spatial_dims: int, in_channels: int, out_channels: int,
                  **kwargs: Any) -> nn.Module:
    """Build the MONAI network registered as ``name``.

    Raises:
        UnknownNetworkError: ``name`` is not registered (the message lists the names).
        ConfigError: the keyword arguments do not fit the network's constructor.
    """
    key = name.lower()
    if key not in _REGISTRY:
        raise UnknownNetworkError(
            f"unknown network {name!r}; available: {', '.join(available_networks())}. "
            "Set model.name to one of them."
        )
    if spatial_dims not in (2, 3):
        raise ConfigError(f"model.spatial_dims must be 2 or 3, got {spatial_dims}")
    try:
        return _REGISTRY[key](spatial_dims, in_channels, out_channels, dict(kwargs))
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(
            f"network {key!r} does not accept model.kwargs {kwargs}: {exc}. "
            "Check the keyword names against the MONAI class of that network."
        ) from exc
