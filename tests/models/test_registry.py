"""Network registry: every name builds in 2D and 3D and maps shapes as documented."""

from __future__ import annotations

import pytest
import torch

from medseg.errors import ConfigError, UnknownNetworkError
from medseg.models.registry import available_networks, build_network

torch.set_num_threads(1)

SMALL = {
    "unet": {"channels": (4, 8, 16), "strides": (2, 2), "num_res_units": 0},
    "attention_unet": {"channels": (4, 8, 16), "strides": (2, 2)},
    "basic_unet": {"features": (4, 4, 8, 8, 16, 4)},
    "dynunet": {"levels": 3, "filters": (4, 8, 16)},
    "segresnet": {"init_filters": 8, "blocks_down": (1, 1), "blocks_up": (1,)},
    "swinunetr": {"feature_size": 12, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)},
}


def test_registry_lists_the_monai_networks() -> None:
    assert set(SMALL) == set(available_networks())


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("dims", [2, 3])
def test_build_and_forward(name: str, dims: int) -> None:
    net = build_network(name, dims, 2, 3, **SMALL[name]).eval()
    size = {"swinunetr": 64, "basic_unet": 32}.get(name, 16)
    x = torch.randn((1, 2) + (size,) * dims)
    with torch.no_grad():
        y = net(x)
    assert tuple(y.shape) == (1, 3) + (size,) * dims


def test_unknown_network() -> None:
    with pytest.raises(UnknownNetworkError, match=r"'vnet9'.*available: .*unet"):
        build_network("vnet9", 3, 1, 2)
    assert issubclass(UnknownNetworkError, ConfigError)


def test_bad_kwargs_name_the_network() -> None:
    with pytest.raises(ConfigError, match=r"network 'unet' does not accept model.kwargs"):
        build_network("unet", 3, 1, 2, chanels=(4, 8))
    with pytest.raises(ConfigError, match="spatial_dims must be 2 or 3"):
        build_network("unet", 4, 1, 2)
