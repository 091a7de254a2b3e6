"""Tiny promptable models for fast tests: a random-init Sam and a deterministic fake backend."""

from __future__ import annotations

import numpy as np
import torch

from medseg.models.prompt_recipe import PromptRecipe
from medseg.models.promptable import PromptModel
from medseg.models.sam_modules import VitArch, assemble_sam

#: A reduced ViT with the official state-dict key layout (2 blocks, 1 global), 64 px input.
TINY_VIT = VitArch(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), image_size=64,
                   patch_size=8, window_size=4, prompt_dim=32, decoder_mlp_dim=64,
                   decoder_heads=8, mask_in_chans=4)


class TinyEncoder(torch.nn.Module):
    """Conv encoder ``[B, 3, S, S]`` -> ``[B, dim, S/8, S/8]``."""

    def __init__(self, dim: int = 32, img_size: int = 64) -> None:
        super().__init__()
        self.img_size = img_size  # read by Sam.preprocess
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 4, stride=4), torch.nn.GELU(),
            torch.nn.Conv2d(16, dim, 2, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def tiny_prompt_model(image_size: int = 64, seed: int = 0) -> PromptModel:
    """Random-init Sam (conv encoder + segment_anything prompt encoder/decoder), 64 px input."""
    torch.manual_seed(seed)
    sam = assemble_sam(TinyEncoder(32, image_size), image_size=image_size,
                       embed_size=image_size // 8, prompt_dim=32, decoder_mlp_dim=64,
                       decoder_heads=2, mask_in_chans=4)
    return PromptModel(sam, PromptRecipe(image_size), name="tiny", version="test")


class ThresholdModel(PromptModel):
    """Deterministic fake backend: mask = (intensity > ``level``) inside the box prompt.

    The "embedding" is the preprocessed slice itself (``[1, 1, S, S]``, intensities 0..255:
    its recipe normalises with mean 0 and std 1); the score is the mean intensity of the
    mask / 255, so dim structures score low. ``decoded`` counts decode calls.
    """

    def __init__(self, image_size: int = 128, level: float = 100.0,
                 recipe: PromptRecipe | None = None) -> None:
        recipe = recipe or PromptRecipe(image_size, pixel_mean=(0.0, 0.0, 0.0),
                                        pixel_std=(1.0, 1.0, 1.0))
        super().__init__(torch.nn.Identity(), recipe, name="threshold", version="fake")
        self.level = level
        self.decoded = 0

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1].clone()

    def decode(self, embedding: torch.Tensor, *, box: np.ndarray | None = None,
               points: np.ndarray | None = None, point_labels: np.ndarray | None = None,
               mask_input: torch.Tensor | None = None,
               multimask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        self.decoded += 1
        img = embedding[0, 0]
        size = img.shape[-1]
        inside = torch.zeros_like(img, dtype=torch.bool)
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
            ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
            inside = (xs >= np.floor(x0)) & (xs <= np.ceil(x1)) & (ys >= np.floor(y0)) \
                & (ys <= np.ceil(y1))
        mask = inside & (img > self.level)
        score = float(img[mask].mean() / 255.0) if mask.any() else 0.0
        logits = torch.where(mask, 10.0, -10.0)[None, None]
        return logits, torch.tensor([[score]])
