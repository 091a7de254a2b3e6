"""Keyword builders of SAM ViT models, named in the JSON of fine-tuned SAM checkpoints.

``medseg finetune`` saves a fine-tuned SAM/MedSAM model as ``NAME.safetensors`` (official
state-dict layout) plus ``NAME.json`` in the :mod:`medseg.models.promptable` format, whose
``builder`` is ``medseg.models.sam_builders:build_sam_vit_kwargs`` and ``arch`` the fields of
:class:`medseg.models.sam_modules.VitArch`; ``load_promptable(path)`` then rebuilds it.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from medseg.errors import PromptModelError
from medseg.models.sam_modules import VitArch, build_sam_vit

__all__ = ["build_sam_vit_kwargs"]


def build_sam_vit_kwargs(**arch: Any) -> nn.Module:
    """A randomly initialised ``segment_anything`` ``Sam`` with ViT encoder ``VitArch(**arch)``."""
    try:
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in arch.items()}
        spec = VitArch(**kwargs)
    except TypeError as exc:
        raise PromptModelError(f"SAM architecture {arch}: {exc}") from None
    return build_sam_vit(spec)
