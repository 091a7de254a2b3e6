"""GrabCut behind the promptable-model interface: the classical baseline of the simulated
annotator (``bench/prompt_robot.py``), driven by the app's own session code.

:class:`GrabCutModel` is a :class:`medseg.models.promptable.PromptModel` whose "embedding" is
the model input itself (the slice by the lite model's recipe: same window and prompt
coordinates, normalisation left at 0..255, and an input size equal to the volume's longest
slice side, so GrabCut sees the slice at its own resolution) and whose ``decode`` runs OpenCV
GrabCut on it (5 iterations):

* a box: ``bench/prompt_cases.grabcut`` in the rectangle (the accuracy bench's baseline, with
  its Otsu fallback when GrabCut keeps nothing);
* clicks: positive clicks are sure foreground and negative clicks sure background (discs of
  3 px), on the mask prompt when given (a refinement: inside probable foreground, outside
  probable background), else on the box's GrabCut result, else on a square of the recipe's
  ``click_square`` around the positive clicks (as the lite model places its first RoI).

It answers logits +-10 on the model input (``[1, 1, S, S]``) and an IoU of 1 (GrabCut has no
confidence, so propagation runs stop on the area and intensity rules only).
"""

from __future__ import annotations

import contextlib

import cv2
import numpy as np
import prompt_cases as pc
import torch

from medseg.models.prompt_recipe import PromptRecipe
from medseg.models.promptable import PromptModel

ITERATIONS, SEED_RADIUS = 5, 3


class GrabCutModel(PromptModel):
    """GrabCut answering box and click prompts (module docstring)."""

    def __init__(self, recipe: PromptRecipe, slice_shape: tuple[int, int]) -> None:
        plain = PromptRecipe.from_dict({**recipe.to_dict(), "pixel_mean": [0.0] * 3,
                                        "pixel_std": [1.0] * 3, "normalize": "mean_std",
                                        "image_size": max(slice_shape), "resize": "longest"})
        super().__init__(torch.nn.Identity(), plain, name="grabcut", version=cv2.__version__)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1].clone()

    def decode(self, embedding: torch.Tensor, *, box: np.ndarray | None = None,
               points: np.ndarray | None = None, point_labels: np.ndarray | None = None,
               mask_input: torch.Tensor | None = None,
               multimask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        img = embedding[0, 0].clamp(0, 255).numpy().astype(np.uint8)  # rows = y, cols = x
        size = img.shape[0]
        pts = np.zeros((0, 2)) if points is None else np.asarray(points, float).reshape(-1, 2)
        labels = np.ones(len(pts)) if point_labels is None else np.asarray(point_labels)
        if mask_input is not None:
            start = mask_input[0, 0].numpy() > 0
        else:
            start = pc.grabcut(np.ascontiguousarray(img.T),
                               self._rect(box, pts[labels == 1], size)).T
        if not len(pts):
            return self._logits(start)
        gc = np.ascontiguousarray(np.where(start, cv2.GC_PR_FGD, cv2.GC_PR_BGD), np.uint8)
        for (x, y), lab in zip(pts, labels, strict=True):
            cv2.circle(gc, (round(x), round(y)), SEED_RADIUS,
                       int(cv2.GC_FGD if lab == 1 else cv2.GC_BGD), -1)
        return self._logits(self._run(img, gc))

    @staticmethod
    def _logits(fg: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        logits = torch.where(torch.from_numpy(np.asarray(fg)), 10.0, -10.0)[None, None]
        return logits.float(), torch.ones(1, 1)

    def _rect(self, box: np.ndarray | None, positives: np.ndarray, size: int
              ) -> tuple[int, int, int, int]:
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
        else:
            c = (positives.min(0) + positives.max(0)) / 2 if len(positives) else \
                np.array([size / 2, size / 2])
            half = size * self.recipe.click_square / 2
            x0, y0, x1, y1 = c[0] - half, c[1] - half, c[0] + half, c[1] + half
        clip = lambda v: int(np.clip(round(v), 0, size - 1))  # noqa: E731
        return clip(x0), clip(y0), clip(x1), clip(y1)

    @staticmethod
    def _run(img: np.ndarray, gc: np.ndarray) -> np.ndarray:
        """GrabCut from the label map ``gc``; bool foreground (probable or sure)."""
        if not ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).any():
            return np.zeros(img.shape, bool)
        if not ((gc == cv2.GC_BGD) | (gc == cv2.GC_PR_BGD)).any():
            return gc != cv2.GC_BGD
        bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)  # as prompt_cases.grabcut: independent of earlier calls
        with contextlib.suppress(cv2.error):  # too few samples of a class: initial labels
            cv2.grabCut(bgr, gc, None, bgd, fgd, ITERATIONS, cv2.GC_INIT_WITH_MASK)
        return (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
