"""Box-aligned mask decoder of the lite promptable model (the mask head of Mask R-CNN, prompted).

SAM decodes every object on the fixed embedding grid (stride 8 of the working resolution), so a
small structure gets a few embedding cells and a coarse boundary whatever the decoder learns: a
kidney on a 3 mm CT spans ~35 model pixels, ~4 cells. This decoder instead resamples everything
into a square region of interest (RoI) around the prompt box, at ``roi_size`` pixels whatever
the box size, and decodes there with a small U-Net:

- the image itself (kept in the cached embedding, see :func:`pack_image`) sampled into the RoI,
  plus the same RoI normalised by its own mean/std (contrast that does not depend on the
  modality's window);
- the box as an inside-box indicator, clicks as Gaussian heat maps, the mask prompt (sigmoid of
  its logits) and a has-mask flag, all on the RoI grid;
- the cached image embedding (the image encoder's semantic features) sampled into the RoI at
  half its resolution and joined at that U-Net level.

The RoI logits are pasted back onto the square model-input grid (``image_size`` pixels; outside
the RoI: background), so the runtime's resize-to-slice path is unchanged. Work per prompt is
independent of the slice size and runs on the cached embedding only (no image-encoder pass).

Coordinates: boxes/points are model-input pixels (x = column), pixel ``i`` spans ``[i, i+1)``.
RoI pixel ``u`` has its centre at ``x0 + (u + 0.5) * side / roi_size``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["IMAGE_STRIDE", "RoiDecoder", "pack_image", "roi_boxes", "unpack_image"]

#: the image rides in the cached embedding as ``pixel_unshuffle(image, IMAGE_STRIDE)`` channels
IMAGE_STRIDE = 8
#: RoI side = ``ROI_SCALE * longest box side + ROI_PAD`` model-input pixels
ROI_SCALE, ROI_PAD, ROI_MIN = 1.5, 12.0, 24.0
_OUTSIDE = -20.0  # logit pasted outside the RoI


def pack_image(image: torch.Tensor) -> torch.Tensor:
    """``(B, C, S, S)`` model input -> ``(B, 64, S/8, S/8)`` (its first channel, unshuffled)."""
    return F.pixel_unshuffle(image[:, :1], IMAGE_STRIDE)


def unpack_image(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_image`: ``(B, 64, e, e)`` -> ``(B, 1, 8e, 8e)``."""
    return F.pixel_shuffle(packed, IMAGE_STRIDE)


def roi_boxes(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Square RoIs ``(B, 4)`` (x0, y0, side, side) centred on the prompt boxes ``(B, 4)``."""
    b = boxes.float()
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    side = torch.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]).clamp(min=1)
    side = (ROI_SCALE * side + ROI_PAD).clamp(min=ROI_MIN, max=2.0 * size)
    return torch.stack([cx - side / 2, cy - side / 2, side, side], 1)


def _roi_grid(rois: torch.Tensor, n: int, size: int) -> torch.Tensor:
    """``grid_sample`` grid ``(B, n, n, 2)`` of the RoI pixel centres on an ``size`` image."""
    u = (torch.arange(n, device=rois.device, dtype=torch.float32) + 0.5) / n  # (n,)
    x = rois[:, 0, None] + u[None] * rois[:, 2, None]  # (B, n) model pixels
    y = rois[:, 1, None] + u[None] * rois[:, 3, None]
    gx = (x / size * 2 - 1)[:, None, :].expand(-1, n, -1)
    gy = (y / size * 2 - 1)[:, :, None].expand(-1, -1, n)
    return torch.stack([gx, gy], -1)


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class RoiDecoder(nn.Module):
    """Prompted RoI U-Net: ``forward(features, image, boxes, ...) -> (logits, iou)``."""

    n_inputs = 7  # image, RoI-normalised image, box, +click, -click, mask prompt, has-mask

    def __init__(self, feat_dim: int, image_size: int, roi_size: int = 64,
                 width: int = 32) -> None:
        super().__init__()
        if roi_size % 8:
            raise ValueError(f"roi_size must be a multiple of 8, got {roi_size}")
        w = width
        self.image_size, self.roi_size = image_size, roi_size
        self.enc1 = _block(self.n_inputs, w)
        self.enc2 = _block(w, 2 * w, 2)
        self.feat = nn.Sequential(nn.Conv2d(feat_dim, 2 * w, 1), nn.ReLU(True))
        self.enc3 = _block(4 * w, 4 * w, 2)
        self.enc4 = _block(4 * w, 4 * w, 2)
        self.dec3 = _block(8 * w, 2 * w)
        self.dec2 = _block(4 * w, w)
        self.dec1 = _block(2 * w, w)
        self.head = nn.Conv2d(w, 1, 1)
        self.iou = nn.Sequential(nn.Linear(8 * w, 64), nn.ReLU(True), nn.Linear(64, 1))

    def inputs(self, image: torch.Tensor, grid: torch.Tensor, rois: torch.Tensor,
               boxes: torch.Tensor, points: torch.Tensor | None,
               point_labels: torch.Tensor | None, mask_input: torch.Tensor | None,
               has_mask: torch.Tensor | None) -> torch.Tensor:
        """The ``(B, 7, R, R)`` RoI input stack (see the module docstring)."""
        b, n = boxes.shape[0], self.roi_size
        img = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border",
                            align_corners=False)
        mu = img.mean((2, 3), keepdim=True)
        sd = img.std((2, 3), keepdim=True).clamp(min=0.05)
        local = ((img - mu) / sd).clamp(-4, 4)
        cell = rois[:, 2] / n  # model pixels per RoI pixel
        c = torch.arange(n, device=boxes.device, dtype=torch.float32) + 0.5
        bx0 = (boxes[:, 0] - rois[:, 0]) / cell
        bx1 = (boxes[:, 2] - rois[:, 0]) / cell
        by0 = (boxes[:, 1] - rois[:, 1]) / cell
        by1 = (boxes[:, 3] - rois[:, 1]) / cell
        ix = ((c[None] >= bx0[:, None]) & (c[None] <= bx1[:, None])).float()  # (B, n)
        iy = ((c[None] >= by0[:, None]) & (c[None] <= by1[:, None])).float()
        box = (iy[:, :, None] * ix[:, None, :])[:, None]
        clicks = torch.zeros(b, 2, n, n, device=boxes.device)
        if points is not None and point_labels is not None and points.numel():
            px = (points[..., 0].float() - rois[:, None, 0]) / cell[:, None]  # (B, N)
            py = (points[..., 1].float() - rois[:, None, 1]) / cell[:, None]
            g = torch.exp(-((c[None, None, :, None] - py[..., None, None]) ** 2
                            + (c[None, None, None, :] - px[..., None, None]) ** 2) / 8.0)
            clicks[:, 0] = (g * (point_labels == 1)[..., None, None]).amax(1)
            clicks[:, 1] = (g * (point_labels == 0)[..., None, None]).amax(1)
        mask = torch.zeros(b, 1, n, n, device=boxes.device)
        flag = torch.zeros(b, 1, n, n, device=boxes.device)
        if mask_input is not None:
            m = torch.sigmoid(F.grid_sample(mask_input.float(), grid, mode="bilinear",
                                            padding_mode="border", align_corners=False))
            on = torch.ones(b, device=boxes.device) if has_mask is None else \
                has_mask.to(boxes.device).float()
            mask = m * on[:, None, None, None]
            flag = flag + on[:, None, None, None]
        return torch.cat([img, local, box, clicks, mask, flag], 1)

    def forward(self, features: torch.Tensor, image: torch.Tensor, boxes: torch.Tensor,
                points: torch.Tensor | None = None, point_labels: torch.Tensor | None = None,
                mask_input: torch.Tensor | None = None, has_mask: torch.Tensor | None = None,
                out_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``features (B, D, e, e)``, ``image (B, 1, S, S)``, ``boxes (B, 4)`` XYXY model
        pixels, ``points (B, N, 2)`` / ``point_labels (B, N)`` (-1 = padding), ``mask_input
        (B, 1, m, m)`` logits covering the model input (used where ``has_mask``).

        Returns logits ``(B, 1, out, out)`` on the model-input grid (``out`` defaults to
        ``image_size``) and the predicted IoU ``(B, 1)``.
        """
        size, n = self.image_size, self.roi_size
        rois = roi_boxes(boxes, size)
        grid = _roi_grid(rois, n, size)
        x = self.inputs(image, grid, rois, boxes.float(), points, point_labels, mask_input,
                        has_mask)
        f = F.grid_sample(features.float(), _roi_grid(rois, n // 2, size), mode="bilinear",
                          padding_mode="border", align_corners=False)
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(torch.cat([e2, self.feat(f)], 1))
        e4 = self.enc4(e3)
        up = F.interpolate(e4, scale_factor=2.0, mode="bilinear", align_corners=False)
        d3 = self.dec3(torch.cat([up, e3], 1))
        d2 = self.dec2(torch.cat([F.interpolate(d3, scale_factor=2.0, mode="bilinear",
                                                align_corners=False), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0, mode="bilinear",
                                                align_corners=False), e1], 1))
        logits = self.head(d1)
        iou = self.iou(torch.cat([e4.mean((2, 3)), e4.amax((2, 3))], 1))
        return paste(logits, rois, out_size or size, size), iou


def paste(logits: torch.Tensor, rois: torch.Tensor, out: int, size: int) -> torch.Tensor:
    """RoI logits ``(B, 1, R, R)`` -> ``(B, 1, out, out)`` on the model-input grid (``size``
    model pixels across); background (``-20``) outside the RoI."""
    c = (torch.arange(out, device=logits.device, dtype=torch.float32) + 0.5) * (size / out)
    u = (c[None] - rois[:, 0, None]) / rois[:, 2, None] * 2 - 1  # (B, out) along x
    v = (c[None] - rois[:, 1, None]) / rois[:, 3, None] * 2 - 1
    n = u.shape[1]
    grid = torch.stack([u[:, None, :].expand(-1, n, -1), v[:, :, None].expand(-1, -1, n)], -1)
    up = F.grid_sample(logits, grid, mode="bilinear", padding_mode="border", align_corners=False)
    inside = ((u.abs() <= 1)[:, None, :] & (v.abs() <= 1)[:, :, None])[:, None]
    return torch.where(inside, up, torch.full_like(up, _OUTSIDE))
