"""LiteSAM: a small SAM-compatible promptable model for CPU use (the default backend).

The module has the attributes of ``segment_anything.modeling.Sam`` that a prompt runtime
uses (``image_encoder``, ``prompt_encoder``, ``mask_decoder``, ``image_format``) and reuses
SAM's own
``PromptEncoder``, ``MaskDecoder`` and ``TwoWayTransformer``. New are the image encoder, a
compact residual CNN (strides 2..16) with two self-attention layers at stride 16 and an
FPN-style neck giving a stride-8 embedding, and one addition to the prompt encoder (a subclass
with the same call signature): the box and clicks are also rasterised on the embedding grid and
added to the dense prompt embedding, which lets a small model trained briefly on CPU learn to
respect the box (SAM learns it from sparse tokens alone, with far more data).

Shapes at the default working resolution ``image_size=256``:

- input image: ``(B, 3, 256, 256)`` float32, already normalised by the recipe
  (:meth:`medseg.models.prompt_recipe.PromptRecipe.model_input`);
- image embedding: ``(B, embed_dim, 32, 32)``;
- boxes/points: ``XYXY`` / ``XY`` pixel coordinates of the 256x256 input (x = column);
- low-resolution mask logits: ``(B, M, 128, 128)``; upsample 2x to the input size; with the
  RoI decoder (``roi_decoder: true``, the shipped weights) ``(B, 1, 256, 256)``.

The preprocessing, prompt convention, mask threshold and click settings are the model's
recipe (:mod:`medseg.models.prompt_recipe`), stored with the weights; weights are read and
written by :mod:`medseg.models.promptable` (the shipped model: ``load_promptable("lite")``).
This module imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medseg.errors import PromptModelError
from medseg.models.roi_decoder import RoiDecoder, pack_image, unpack_image
from medseg.models.sam_modules import decode_aligned, sam_modeling
from medseg.models.strict import from_mapping

__all__ = ["LiteImageEncoder", "LiteSam", "LiteSamConfig", "build_lite_sam"]


@dataclass(frozen=True)
class LiteSamConfig:
    """Network hyper-parameters (the ``arch`` of the weights JSON)."""

    image_size: int = 256
    embed_dim: int = 128
    widths: tuple[int, int, int, int] = (24, 48, 96, 192)
    attn_layers: int = 2
    attn_heads: int = 4
    decoder_depth: int = 2
    decoder_mlp_dim: int = 512
    decoder_heads: int = 4
    mask_in_chans: int = 16
    #: box-aligned RoI decoder (medseg.models.roi_decoder) for box/click/mask prompts; the
    #: embedding then also carries the model input (64 extra channels)
    roi_decoder: bool = False
    roi_size: int = 64
    roi_width: int = 32

    def __post_init__(self) -> None:
        if self.roi_decoder and (self.roi_size < 8 or self.roi_size % 8 or self.roi_width < 1):
            raise PromptModelError(
                f"lite model config: roi_size must be a positive multiple of 8 and roi_width "
                f">= 1, got roi_size={self.roi_size}, roi_width={self.roi_width}")

    @property
    def embedding_size(self) -> int:
        """Side of the (square) image embedding grid (stride 8)."""
        return self.image_size // 8

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LiteSamConfig:
        """Build from a JSON dict; unknown keys raise :class:`PromptModelError`."""
        return from_mapping(cls, data, "lite model config")


def _conv_bn(cin: int, cout: int, stride: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                               nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(ch, ch), _conv_bn(ch, ch, act=False))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class _AttnLayer(nn.Module):
    """Pre-norm transformer layer over the flattened ``(B, C, H, W)`` grid."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim))

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        q = self.norm1(t) + pos
        t = t + self.attn(q, q, self.norm1(t), need_weights=False)[0]
        t = t + self.mlp(self.norm2(t))
        return t.transpose(1, 2).reshape(b, c, h, w)


class LiteImageEncoder(nn.Module):
    """Image ``(B, 3, S, S)`` -> embedding ``(B, embed_dim, S/8, S/8)``."""

    def __init__(self, cfg: LiteSamConfig) -> None:
        super().__init__()
        w0, w1, w2, w3 = cfg.widths
        self.img_size = cfg.image_size
        self.emit_image = cfg.roi_decoder
        self.stem = _conv_bn(3, w0, 2)                                          # /2
        self.stage1 = nn.Sequential(_conv_bn(w0, w1, 2), _conv_bn(w1, w1))      # /4
        self.stage2 = nn.Sequential(_conv_bn(w1, w2, 2), _ResBlock(w2))         # /8
        self.stage3 = nn.Sequential(_conv_bn(w2, w3, 2), _ResBlock(w3))         # /16
        n16 = (cfg.image_size // 16) ** 2
        self.pos16 = nn.Parameter(torch.zeros(1, n16, w3))
        nn.init.trunc_normal_(self.pos16, std=0.02)
        self.attn = nn.ModuleList(_AttnLayer(w3, cfg.attn_heads) for _ in range(cfg.attn_layers))
        self.lat8 = nn.Conv2d(w2, cfg.embed_dim, 1)
        self.lat4 = nn.Conv2d(w1, cfg.embed_dim, 1, stride=2)
        self.top = nn.Conv2d(w3, cfg.embed_dim, 1)
        self.neck = nn.Sequential(
            nn.Conv2d(cfg.embed_dim, cfg.embed_dim, 3, padding=1, groups=cfg.embed_dim // 8),
            nn.GroupNorm(8, cfg.embed_dim), nn.GELU(),
            nn.Conv2d(cfg.embed_dim, cfg.embed_dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f4 = self.stage1(self.stem(x))
        f8 = self.stage2(f4)
        f16 = self.stage3(f8)
        for layer in self.attn:
            f16 = layer(f16, self.pos16)
        up = F.interpolate(self.top(f16), size=f8.shape[-2:], mode="nearest")
        out: torch.Tensor = self.neck(up + self.lat8(f8) + self.lat4(f4))
        if self.emit_image:  # the RoI decoder samples the image itself from the embedding
            out = torch.cat([out, pack_image(x)], 1)
        return out


def _box_point_maps(boxes: torch.Tensor | None, points: tuple[torch.Tensor, torch.Tensor] | None,
                    size: int, grid: int, batch: int) -> torch.Tensor:
    """Dense prompt maps ``(B, 4, grid, grid)`` on the embedding grid (cell centres in input
    pixels): soft inside-box indicator, box-centred ``1 - Chebyshev distance`` (0 outside),
    positive and negative click heat maps (Gaussian, sigma = one cell)."""
    cell = size / grid
    c = (torch.arange(grid, dtype=torch.float32, device=_dev(boxes, points)) + 0.5) * cell
    out = torch.zeros(batch, 4, grid, grid, device=c.device)
    if boxes is not None:
        b = boxes.float().reshape(-1, 4)
        x0, y0, x1, y1 = (b[:, i, None] for i in range(4))
        t = cell / 2
        ix = torch.sigmoid((c - x0) / t) * torch.sigmoid((x1 - c) / t)  # (B, grid) along x
        iy = torch.sigmoid((c - y0) / t) * torch.sigmoid((y1 - c) / t)
        out[:, 0] = iy[:, :, None] * ix[:, None, :]
        u = ((c - (x0 + x1) / 2) / ((x1 - x0).clamp(min=1) / 2)).abs()
        v = ((c - (y0 + y1) / 2) / ((y1 - y0).clamp(min=1) / 2)).abs()
        out[:, 1] = (1 - torch.maximum(v[:, :, None], u[:, None, :])).clamp(min=0)
    if points is not None:
        xy, lab = points[0].float(), points[1]
        dx = (c[None, None, :] - xy[..., 0:1]) / cell  # (B, N, grid)
        dy = (c[None, None, :] - xy[..., 1:2]) / cell
        g = torch.exp(-0.5 * (dy[..., :, None] ** 2 + dx[..., None, :] ** 2))  # (B,N,g,g)
        out[:, 2] = (g * (lab == 1)[..., None, None]).amax(1)
        out[:, 3] = (g * (lab == 0)[..., None, None]).amax(1)
    return out


def _dev(boxes: torch.Tensor | None, points: tuple[torch.Tensor, torch.Tensor] | None
         ) -> torch.device:
    if boxes is not None:
        return boxes.device
    return points[0].device if points is not None else torch.device("cpu")


def _prompt_encoder_class() -> type[nn.Module]:
    base: Any = sam_modeling().PromptEncoder

    class DensePromptEncoder(base):  # type: ignore[misc, valid-type]
        """SAM's ``PromptEncoder`` (same call signature and sparse tokens) whose dense
        embedding also carries the box and clicks rasterised on the embedding grid
        (:func:`_box_point_maps` -> 1x1 conv), so the decoder sees where the box is."""

        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self.dense_maps = nn.Sequential(nn.Conv2d(4, 32, 3, padding=1), nn.GELU(),
                                            nn.Conv2d(32, kw["embed_dim"], 1))

        def forward(self, points: tuple[torch.Tensor, torch.Tensor] | None,
                    boxes: torch.Tensor | None,
                    masks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
            sparse, dense = super().forward(points, boxes, masks)
            if boxes is None and points is None:
                return sparse, dense
            maps = _box_point_maps(boxes, points, self.input_image_size[0],
                                   self.image_embedding_size[0], sparse.shape[0])
            return sparse, dense + self.dense_maps(maps.to(dense.dtype))

    return DensePromptEncoder


class LiteSam(nn.Module):
    """SAM-compatible container; see the module docstring for shapes."""

    image_format: str = "RGB"

    def __init__(self, cfg: LiteSamConfig) -> None:
        super().__init__()
        mod = sam_modeling()
        self.config = cfg
        e = cfg.embedding_size
        self.image_encoder = LiteImageEncoder(cfg)
        self.prompt_encoder = _prompt_encoder_class()(
            embed_dim=cfg.embed_dim, image_embedding_size=(e, e),
            input_image_size=(cfg.image_size, cfg.image_size), mask_in_chans=cfg.mask_in_chans)
        self.mask_decoder = mod.MaskDecoder(
            num_multimask_outputs=3,
            transformer=mod.TwoWayTransformer(depth=cfg.decoder_depth,
                                              embedding_dim=cfg.embed_dim,
                                              mlp_dim=cfg.decoder_mlp_dim,
                                              num_heads=cfg.decoder_heads),
            transformer_dim=cfg.embed_dim, iou_head_depth=3, iou_head_hidden_dim=cfg.embed_dim)
        self.roi_decoder = RoiDecoder(cfg.embed_dim, cfg.image_size, cfg.roi_size,
                                      cfg.roi_width) if cfg.roi_decoder else None

    def split_embedding(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(features (B, embed_dim, e, e), image (B, 1, S, S) or None)`` of an embedding."""
        d = self.config.embed_dim
        if self.roi_decoder is None:
            return embedding, None
        return embedding[:, :d], unpack_image(embedding[:, d:])

    def roi_decode(self, embedding: torch.Tensor, boxes: torch.Tensor,
                   points: tuple[torch.Tensor, torch.Tensor] | None = None,
                   mask_input: torch.Tensor | None = None,
                   has_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The RoI decoder on a batch: logits ``(B, 1, S, S)`` on the model input, IoU
        ``(B, 1)`` (``points`` labels: 1 positive, 0 negative, -1 padding)."""
        if self.roi_decoder is None:
            raise PromptModelError("this lite model has no RoI decoder (arch roi_decoder false)")
        feats, image = self.split_embedding(embedding)
        pts, lab = points if points is not None else (None, None)
        out: tuple[torch.Tensor, torch.Tensor] = self.roi_decoder(
            feats, image, boxes, pts, lab, mask_input, has_mask)
        return out

    def _prompt_box(self, points: tuple[torch.Tensor, torch.Tensor] | None,
                    mask_input: torch.Tensor | None, batch: int, device: torch.device,
                    click_square: float) -> torch.Tensor:
        """A box for prompts without one: the mask prompt's extent, else a square of
        ``click_square`` of the input side centred on the positive clicks' extent; grown to
        cover every positive click + 2 px (negative clicks only say what is not the object,
        and padding clicks, label -1, are ignored); else the whole input."""
        s = float(self.config.image_size)
        out = torch.empty(batch, 4, device=device)
        for i in range(batch):
            box = None
            ext = None if mask_input is None else _extent(mask_input[i, 0])
            if ext is not None and mask_input is not None:
                box = ext * (s / mask_input.shape[-1])
            pos = _positive_clicks(points, i)
            if box is None and pos is not None:
                c = (pos.amin(0) + pos.amax(0)) / 2
                half = s * click_square / 2
                box = torch.cat([c - half, c + half])
            if box is None:
                box = torch.tensor([0.0, 0.0, s, s], device=device)
            out[i] = _cover_clicks(box, pos)
        return out

    @staticmethod
    def _refined_box(logits: torch.Tensor, boxes: torch.Tensor,
                     points: tuple[torch.Tensor, torch.Tensor] | None, threshold: float,
                     grow: float) -> torch.Tensor:
        """Boxes of a first pass's masks (``logits (B, 1, S, S)`` above ``threshold``, the
        returned masks' threshold), grown by ``grow`` of their size per side + 2 px and
        covering the positive clicks; ``boxes`` where a mask is empty."""
        out = boxes.clone()
        for i in range(logits.shape[0]):
            b = _extent(logits[i, 0], threshold)
            if b is None:
                continue
            w, h = b[2] - b[0], b[3] - b[1]
            b = b + torch.stack([-w, -h, w, h]) * grow \
                + torch.tensor([-2.0, -2.0, 2.0, 2.0], device=b.device)
            out[i] = _cover_clicks(b, _positive_clicks(points, i))
        return out

    def decode(self, embedding: torch.Tensor, boxes: torch.Tensor | None = None,
               points: tuple[torch.Tensor, torch.Tensor] | None = None,
               mask_input: torch.Tensor | None = None, multimask: bool = False, *,
               threshold: float = 0.0, click_square: float = 1 / 6,
               click_grow: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompted decoding of a batch of embeddings.

        ``embedding``: ``(B, C, e, e)``; ``boxes``: ``(B, 4)`` XYXY input pixels; ``points``:
        coords ``(B, N, 2)`` XY and labels ``(B, N)`` (1 positive, 0 negative, -1 padding);
        ``mask_input``: ``(B, 1, 4e, 4e)`` logits. Without the RoI decoder: SAM's decoder,
        low-res logits ``(B, M, 4e, 4e)`` and IoU ``(B, M)``, ``M = 3`` if ``multimask`` else 1.

        With the RoI decoder: one mask ``(B, 1, S, S)`` on the model input; prompts without a
        box get one from :meth:`_prompt_box` (``click_square``), and a click-only prompt is
        decoded once more in the box of the first mask cut at ``threshold`` and grown by
        ``click_grow`` (:meth:`_refined_box`). The three values are the model's recipe.
        """
        if self.roi_decoder is not None:
            if boxes is not None:
                return self.roi_decode(embedding, boxes.float().reshape(-1, 4), points,
                                       mask_input)
            boxes = self._prompt_box(points, mask_input, embedding.shape[0], embedding.device,
                                     click_square)
            out = self.roi_decode(embedding, boxes, points, mask_input)
            if mask_input is None and points is not None:  # click-only: re-fit the RoI
                boxes = self._refined_box(out[0], boxes, points, threshold, click_grow)
                out = self.roi_decode(embedding, boxes, points, mask_input)
            return out
        pe_mod: Any = self.prompt_encoder
        dec: Any = self.mask_decoder
        sparse, dense = pe_mod(points=points, boxes=boxes, masks=mask_input)
        return decode_aligned(dec, embedding, pe_mod.get_dense_pe(), sparse, dense, multimask)

    def n_parameters(self) -> int:
        """Number of parameters (all trainable tensors)."""
        return sum(p.numel() for p in self.parameters())


def _extent(logits: torch.Tensor, threshold: float = 0.0) -> torch.Tensor | None:
    """XYXY float box ``[x0, y0, x1 + 1, y1 + 1]`` of ``logits (H, W) > threshold``; None if
    empty."""
    ys, xs = torch.nonzero(logits > threshold, as_tuple=True)
    if not xs.numel():
        return None
    return torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()


def _positive_clicks(points: tuple[torch.Tensor, torch.Tensor] | None,
                     i: int) -> torch.Tensor | None:
    """``(n, 2)`` positive clicks (label 1) of batch item ``i``; None when there are none."""
    if points is None:
        return None
    pos = points[0][i][points[1][i] == 1].float()
    return pos if pos.numel() else None


def _cover_clicks(box: torch.Tensor, clicks: torch.Tensor | None) -> torch.Tensor:
    """``box`` XYXY grown to contain every given click (+ 2 px)."""
    if clicks is None or not clicks.numel():
        return box
    return torch.cat([torch.minimum(box[:2], clicks.amin(0) - 2),
                      torch.maximum(box[2:], clicks.amax(0) + 2)])


def build_lite_sam(cfg: LiteSamConfig | None = None, **arch: Any) -> LiteSam:
    """A randomly initialised :class:`LiteSam` from ``cfg`` or from ``arch`` keyword fields
    (the builder named in the weights JSON: ``medseg.models.lite_sam:build_lite_sam``)."""
    if cfg is not None and arch:
        raise TypeError("pass either cfg or arch keywords, not both")
    return LiteSam(cfg or LiteSamConfig.from_dict(arch))
