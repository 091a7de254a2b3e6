"""segment_anything's network modules without its package ``__init__`` (so without torchvision).

``import segment_anything`` runs the package ``__init__``, which imports the automatic mask
generator and through it torchvision; the PyPI torchvision wheel does not load beside a CPU-only
torch build. The network itself (``segment_anything.modeling``) needs only torch and numpy, so
:func:`sam_modeling` registers a bare ``segment_anything`` package module (its ``__path__`` is the
installed folder, its ``__init__`` is never executed) and imports ``segment_anything.modeling``
through it. Builders of official checkpoints are re-created here from the state-dict shapes
(:func:`infer_vit_arch`, :func:`build_sam_vit`), with the same constructor calls as
``segment_anything/build_sam.py``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from medseg.errors import PromptModelError

_PKG = "segment_anything"


def sam_modeling() -> types.ModuleType:
    """Return ``segment_anything.modeling`` without executing ``segment_anything/__init__.py``.

    If the real package was already imported (e.g. on a GPU install with torchvision) it is
    reused as is. Raises :class:`PromptModelError` when segment-anything is not installed.
    """
    if "segment_anything.modeling" in sys.modules:
        return sys.modules["segment_anything.modeling"]
    if _PKG not in sys.modules:
        spec = importlib.util.find_spec(_PKG)
        if spec is None or not spec.submodule_search_locations:
            raise PromptModelError(
                "The SAM backend needs the 'segment-anything' package: "
                "pip install segment-anything==1.0 (it is a medseg dependency)."
            )
        bare = types.ModuleType(_PKG)
        bare.__path__ = list(spec.submodule_search_locations)
        bare.__file__ = None
        bare.__package__ = _PKG
        bare.__spec__ = importlib.util.spec_from_loader(_PKG, loader=None, is_package=True)
        if bare.__spec__ is not None:
            bare.__spec__.submodule_search_locations = list(spec.submodule_search_locations)
        sys.modules[_PKG] = bare
    return importlib.import_module("segment_anything.modeling")


@dataclass(frozen=True)
class VitArch:
    """Architecture of a SAM ViT image encoder + prompt encoder + mask decoder.

    Official values: ViT-B (768, 12, 12, [2, 5, 8, 11]), ViT-L (1024, 24, 16, [5, 11, 17, 23]),
    ViT-H (1280, 32, 16, [7, 15, 23, 31]); image 1024, patch 16, window 14, prompt dim 256.
    """

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_dim: int = 256
    mlp_ratio: float = 4.0
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    mask_in_chans: int = 16

    @property
    def embed_size(self) -> int:
        """Side of the image embedding grid (64 for the official 1024 / 16)."""
        return self.image_size // self.patch_size

    @property
    def name(self) -> str:
        official = {(768, 12): "vit_b", (1024, 24): "vit_l", (1280, 32): "vit_h"}
        return official.get((self.embed_dim, self.depth), f"vit_{self.embed_dim}x{self.depth}")


VIT_B = VitArch(768, 12, 12, (2, 5, 8, 11))
VIT_L = VitArch(1024, 24, 16, (5, 11, 17, 23))
VIT_H = VitArch(1280, 32, 16, (7, 15, 23, 31))

#: Keys every SAM-layout state dict has; their absence means "not a SAM checkpoint".
REQUIRED_KEYS = (
    "image_encoder.patch_embed.proj.weight",
    "image_encoder.pos_embed",
    "image_encoder.blocks.0.attn.rel_pos_h",
    "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
    "mask_decoder.iou_token.weight",
    "mask_decoder.transformer.layers.0.mlp.lin1.weight",
)


def _count(state: dict[str, torch.Tensor], prefix: str) -> int:
    idx = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}
    return max(idx) + 1 if idx else 0


def infer_vit_arch(state: dict[str, torch.Tensor], what: str) -> VitArch:
    """Read a :class:`VitArch` off the tensor shapes of a SAM-layout state dict.

    Head counts of the mask decoder leave no trace in the shapes: the official 8 is assumed.

    Raises :class:`PromptModelError` naming the expected layout when ``state`` is not one.
    """
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        sample = ", ".join(sorted(state)[:4]) or "no tensors"
        raise PromptModelError(
            f"{what} is not a SAM ViT-B/L/H or MedSAM checkpoint: expected the official "
            f"segment-anything state-dict layout (keys such as {', '.join(missing[:3])}), found "
            f"{len(state)} tensors ({sample}, ...). Pass an official sam_vit_*.pth / "
            "medsam_vit_b.pth file, or 'lite' for medseg's shipped model."
        )
    embed_dim, _, patch, _ = state["image_encoder.patch_embed.proj.weight"].shape
    grid = state["image_encoder.pos_embed"].shape[1]
    depth = _count(state, "image_encoder.blocks.")
    head_dim = state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
    rel_rows = [state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0] for i in range(depth)]
    global_idx = tuple(i for i, rows in enumerate(rel_rows) if rows == 2 * grid - 1)
    window_rows = min(rel_rows)
    mlp_hidden = state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0]
    prompt_dim = state["mask_decoder.iou_token.weight"].shape[1]
    return VitArch(
        embed_dim=int(embed_dim), depth=depth, num_heads=int(embed_dim // head_dim),
        global_attn_indexes=global_idx, image_size=int(grid * patch), patch_size=int(patch),
        window_size=int((window_rows + 1) // 2) if window_rows < 2 * grid - 1 else 0,
        prompt_dim=int(prompt_dim), mlp_ratio=float(mlp_hidden / embed_dim),
        decoder_depth=_count(state, "mask_decoder.transformer.layers."),
        decoder_mlp_dim=int(state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]),
        mask_in_chans=int(state["prompt_encoder.mask_downscaling.3.weight"].shape[0])
        if "prompt_encoder.mask_downscaling.3.weight" in state else 16,
    )


def build_prompt_parts(prompt_dim: int, embed_size: int, image_size: int, *,
                       decoder_depth: int = 2, decoder_mlp_dim: int = 2048,
                       decoder_heads: int = 8, mask_in_chans: int = 16) -> tuple[Any, Any]:
    """segment_anything's ``(PromptEncoder, MaskDecoder)`` as ``build_sam.py`` builds them."""
    m = sam_modeling()
    prompt_encoder = m.PromptEncoder(
        embed_dim=prompt_dim, image_embedding_size=(embed_size, embed_size),
        input_image_size=(image_size, image_size), mask_in_chans=mask_in_chans)
    mask_decoder = m.MaskDecoder(
        num_multimask_outputs=3,
        transformer=m.TwoWayTransformer(depth=decoder_depth, embedding_dim=prompt_dim,
                                        mlp_dim=decoder_mlp_dim, num_heads=decoder_heads),
        transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=256)
    return prompt_encoder, mask_decoder


def build_sam_vit(arch: VitArch) -> torch.nn.Module:
    """An eval-mode segment_anything ``Sam`` with a ViT encoder of ``arch`` (random init)."""
    m = sam_modeling()
    encoder = m.ImageEncoderViT(
        depth=arch.depth, embed_dim=arch.embed_dim, img_size=arch.image_size,
        mlp_ratio=arch.mlp_ratio, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=arch.num_heads, patch_size=arch.patch_size, qkv_bias=True, use_rel_pos=True,
        global_attn_indexes=arch.global_attn_indexes, window_size=arch.window_size,
        out_chans=arch.prompt_dim)
    prompt_encoder, mask_decoder = build_prompt_parts(
        arch.prompt_dim, arch.embed_size, arch.image_size, decoder_depth=arch.decoder_depth,
        decoder_mlp_dim=arch.decoder_mlp_dim, decoder_heads=arch.decoder_heads,
        mask_in_chans=arch.mask_in_chans)
    sam = m.Sam(image_encoder=encoder, prompt_encoder=prompt_encoder, mask_decoder=mask_decoder,
                pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    sam.eval()
    return sam


def assemble_sam(image_encoder: torch.nn.Module, *, image_size: int, embed_size: int,
                 prompt_dim: int = 256, pixel_mean: tuple[float, ...] = (123.675, 116.28, 103.53),
                 pixel_std: tuple[float, ...] = (58.395, 57.12, 57.375), decoder_depth: int = 2,
                 decoder_mlp_dim: int = 2048, decoder_heads: int = 8,
                 mask_in_chans: int = 16) -> torch.nn.Module:
    """A ``Sam`` around any image encoder mapping ``[B, C, S, S]`` -> ``[B, prompt_dim, E, E]``.

    ``C = len(pixel_mean)``; ``S = image_size``; ``E = embed_size``. The prompt encoder and
    mask decoder are segment_anything's (random init), so the result has the official key
    layout outside ``image_encoder.*``.
    """
    prompt_encoder, mask_decoder = build_prompt_parts(
        prompt_dim, embed_size, image_size, decoder_depth=decoder_depth,
        decoder_mlp_dim=decoder_mlp_dim, decoder_heads=decoder_heads, mask_in_chans=mask_in_chans)
    sam = sam_modeling().Sam(image_encoder=image_encoder, prompt_encoder=prompt_encoder,
                             mask_decoder=mask_decoder, pixel_mean=list(pixel_mean),
                             pixel_std=list(pixel_std))
    sam.eval()
    return sam


def decode_aligned(decoder: Any, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                   sparse: torch.Tensor, dense: torch.Tensor,
                   multimask_output: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM ``MaskDecoder`` for a batch of *different* images, one prompt set each.

    The official ``MaskDecoder.forward`` takes one image and repeats its embedding for every
    prompt (``B`` embeddings with ``B`` prompts would give ``B * B`` predictions), so batched
    training used to call it once per sample. This is the same computation as
    ``predict_masks`` with sample ``i``'s prompts on image ``i``: ``image_embeddings``
    ``(B, C, h, w)``, ``image_pe`` ``(1, C, h, w)``, ``sparse`` ``(B, N, C)``, ``dense``
    ``(B, C, h, w)``. Returns masks ``(B, M, 4h, 4w)`` and IoU ``(B, M)`` as ``forward`` does.
    """
    out_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat((out_tokens.unsqueeze(0).expand(sparse.size(0), -1, -1), sparse), dim=1)
    src = image_embeddings + dense
    pos_src = image_pe.expand(src.shape[0], -1, -1, -1)
    b, c, h, w = src.shape
    hs, src = decoder.transformer(src, pos_src, tokens)
    iou_token_out = hs[:, 0, :]
    mask_tokens_out = hs[:, 1:(1 + decoder.num_mask_tokens), :]
    up = decoder.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    hyper = torch.stack([decoder.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :])
                         for i in range(decoder.num_mask_tokens)], dim=1)
    b, c, h, w = up.shape
    masks = (hyper @ up.view(b, c, h * w)).view(b, -1, h, w)
    iou = decoder.iou_prediction_head(iou_token_out)
    sel = slice(1, None) if multimask_output else slice(0, 1)
    return masks[:, sel], iou[:, sel]
