"""Sliding-window prediction shared by :class:`~medseg.engine.infer.Segmenter` and validation.

A 2D network runs on single slices of a 3D grid: its ROI ``(h, w)`` becomes ``(h, w, 1)`` and
the predictor squeezes/unsqueezes the slice axis, so one code path serves 2D and 3D models.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from monai.inferers import sliding_window_inference
from torch import nn

__all__ = ["roi_3d", "sliding_logits", "window_predictor"]


def roi_3d(roi: Sequence[int], spatial_dims: int) -> tuple[int, int, int]:
    """The 3D window of a 2D (``(h, w)`` -> ``(h, w, 1)``) or 3D ROI."""
    r = tuple(int(v) for v in roi)
    return (r[0], r[1], 1) if spatial_dims == 2 else (r[0], r[1], r[2])


def window_predictor(net: nn.Module, spatial_dims: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap ``net`` to take ``(B, C, X, Y, Z)`` windows (``Z == 1`` for a 2D network)."""
    if spatial_dims == 3:
        return net

    def predict_slices(x: torch.Tensor) -> torch.Tensor:
        return net(x[..., 0])[..., None]

    return predict_slices


@torch.no_grad()
def sliding_logits(net: nn.Module, image: torch.Tensor, *, roi: Sequence[int], spatial_dims: int,
                   overlap: float = 0.5, sw_batch_size: int = 4, mode: str = "gaussian",
                   device: torch.device | str = "cpu", amp: bool = False,
                   flip_dims: Sequence[int] = ()) -> torch.Tensor:
    """Logits of ``net`` over a whole preprocessed image by sliding windows.

    Args:
        image: ``(1, C, X, Y, Z)`` float32, on the CPU (stitching stays on the CPU) or device.
        roi: the network's window, 2 or 3 ints (voxels of the preprocessed grid). An image
            smaller than the ROI along an axis is zero-padded by MONAI and cropped back.
        flip_dims: tensor dims to flip before and after the network (test-time augmentation).
        amp: fp16 autocast, honoured only on CUDA.

    Returns:
        ``(1, K, X, Y, Z)`` float32 logits on ``image``'s device.
    """
    dev = torch.device(device)
    predictor = window_predictor(net, spatial_dims)
    x = torch.flip(image, dims=list(flip_dims)) if flip_dims else image
    use_amp = amp and dev.type == "cuda"
    ctx = torch.autocast("cuda", dtype=torch.float16) if use_amp else contextlib.nullcontext()
    with ctx:
        out = sliding_window_inference(x, roi_3d(roi, spatial_dims), sw_batch_size, predictor,
                                       overlap=overlap, mode=mode, sw_device=dev,
                                       device=image.device)
    assert isinstance(out, torch.Tensor)
    out = out.float()
    return torch.flip(out, dims=list(flip_dims)) if flip_dims else out
