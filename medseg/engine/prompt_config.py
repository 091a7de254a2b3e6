"""Typed config of ``medseg finetune`` (promptable-model training), validated once.

Same conventions as :mod:`medseg.config`: every model forbids unknown keys (a typo names
itself and the allowed keys), ``--set key=value`` overrides use dotted keys and YAML values
(:func:`medseg.config.apply_overrides`), relative paths are relative to the working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medseg.config import read_yaml, validate_config

__all__ = ["FinetuneConfig", "PromptAugmentConfig", "PromptDataConfig", "PromptModelConfig",
           "PromptSourceConfig", "PromptTrainConfig", "load_finetune_config",
           "parse_finetune_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PromptModelConfig(_Strict):
    """``lite``: medseg's small model (``checkpoint`` null = random init, ``arch`` = its
    LiteSamConfig fields); ``sam``: a SAM/MedSAM checkpoint in the official layout.

    ``recipe`` overrides fields of the model's recipe (:class:`medseg.models.prompt_recipe.
    PromptRecipe`: the checkpoint's, or the lite default), which the training sampler uses and
    the saved model carries; ``name``/``version`` are what the trained model is called (what
    provenance records): by default the checkpoint's name (``medseg-lite-sam`` from random
    init) and ``ft-<config hash>``."""

    backend: Literal["lite", "sam"] = "lite"
    checkpoint: Path | None = None
    arch: dict[str, Any] = Field(default_factory=dict,
                                 description="lite only: LiteSamConfig fields (random init), "
                                             "or fields adding modules to a checkpoint")
    recipe: dict[str, Any] = Field(default_factory=dict,
                                   description="PromptRecipe fields replacing the model's")
    name: str | None = None
    version: str | None = None

    @model_validator(mode="after")
    def _needs_checkpoint(self) -> PromptModelConfig:
        if self.backend == "sam" and self.checkpoint is None:
            raise ValueError("backend 'sam' needs model.checkpoint (a sam_vit_*.pth or "
                             "medsam_vit_b.pth path)")
        if self.recipe:
            from medseg.errors import PromptModelError
            from medseg.models.prompt_recipe import lite_recipe

            try:
                lite_recipe().with_overrides(self.recipe)
            except PromptModelError as exc:
                raise ValueError(str(exc)) from None
        return self


class PromptSourceConfig(_Strict):
    """One labelled volume. ``labels`` overrides the label names read from the file."""

    image: Path
    label: Path
    modality: str | None = None
    labels: dict[int, str] | None = None
    weight: float = Field(default=1.0, gt=0)
    axes: list[int] | None = Field(default=None, description="slice axes; null = automatic")

    @model_validator(mode="after")
    def _axes_ok(self) -> PromptSourceConfig:
        if self.axes is not None and (not self.axes or any(a not in (0, 1, 2)
                                                           for a in self.axes)):
            raise ValueError(f"axes must be a non-empty list of 0, 1, 2 (got {self.axes})")
        return self


class PromptDataConfig(_Strict):
    """Volumes and the label table: one structure per sample, slices with >= ``min_area``."""

    sources: list[PromptSourceConfig] = Field(min_length=1)
    exclude: list[str] = Field(default_factory=list,
                               description="structure names never sampled (held out)")
    min_area: int = Field(default=30, ge=1)


class PromptAugmentConfig(_Strict):
    flip: float = Field(default=0.5, ge=0, le=1)
    scale: tuple[float, float] = (0.75, 1.4)
    aspect: float = Field(default=0.2, ge=0)
    rotate_deg: float = Field(default=15.0, ge=0)
    elastic: float = Field(default=0.3, ge=0, le=1)
    intensity: float = Field(default=0.8, ge=0, le=1)
    noise: float = Field(default=0.3, ge=0, le=1)
    lut: float = Field(default=0.0, ge=0, le=1,
                       description="probability of a random non-monotonic intensity curve")
    lesion: float = Field(default=0.0, ge=0, le=1,
                          description="probability that a (non-propagation) sample becomes a "
                                      "synthetic lesion with a soft rim, the target")
    enabled: bool = True


class PromptTrainConfig(_Strict):
    """MedSAM's training scheme: jittered GT boxes, Dice + BCE, frozen prompt encoder, AdamW."""

    output_dir: Path = Path("runs/finetune")
    iterations: int = Field(default=1000, ge=1)
    max_minutes: float | None = Field(default=None, gt=0,
                                      description="stop (and save) after this wall time")
    batch_size: int = Field(default=8, ge=1)
    lr: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup: int = Field(default=50, ge=0)
    freeze_image_encoder: bool = False
    freeze_prompt_encoder: bool = True
    box_jitter: float = Field(default=20.0, ge=0, description="max outward px per side")
    box_jitter_rel: float = Field(default=0.3, ge=0, description="outward cap, x box side")
    box_shrink: float = Field(default=0.12, ge=0, lt=0.5, description="max inward, x side")
    box_jitter_slice_px: float = Field(
        default=0.0, ge=0, description="> 0: half the boxes get U(-J, J) slice pixels per side")
    point_prob: float = Field(default=0.3, ge=0, le=1)
    mask_prompt_prob: float = Field(default=0.2, ge=0, le=1)
    propagate_prob: float = Field(
        default=0.0, ge=0, le=1,
        description="samples laid out as a propagation step: target = a neighbour slice "
                    "(possibly past the structure's end, then empty), box = the key slice's "
                    "mask bbox + margin, mask prompt = the key slice's mask")
    propagate_margin_px: tuple[float, float] = Field(
        default=(2.0, 6.0), description="propagation-step box: key mask bbox + U(lo, hi) slice "
                                        "pixels per side")
    propagate_mask_prompt: bool = Field(
        default=True, description="propagation steps also get the key slice's mask as mask "
                                  "prompt (the runtime's propagation prompts with the box "
                                  "only: false matches it)")
    iou_loss_weight: float = Field(default=1.0, ge=0)
    amp: bool = Field(default=True, description="mixed precision; used only on CUDA")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(default=None, ge=1)
    workers: int = Field(default=0, ge=0,
                         description="data-loading processes drawing batches ahead of the "
                                     "training step (0 = drawn in the training loop)")
    encoder_lr_scale: float = Field(default=1.0, gt=0,
                                    description="image-encoder learning rate = lr x this "
                                                "(when it is not frozen)")
    seed: int = 0
    log_every: int = Field(default=20, ge=1)
    checkpoint_every: int = Field(default=200, ge=1)
    augment: PromptAugmentConfig = Field(default_factory=PromptAugmentConfig)

    @model_validator(mode="after")
    def _margin_ok(self) -> PromptTrainConfig:
        lo, hi = self.propagate_margin_px
        if not 0 <= lo <= hi:
            raise ValueError(f"propagate_margin_px must be [lo, hi] with 0 <= lo <= hi, got "
                             f"{list(self.propagate_margin_px)}")
        return self


class FinetuneConfig(_Strict):
    model: PromptModelConfig = Field(default_factory=PromptModelConfig)
    data: PromptDataConfig
    train: PromptTrainConfig = Field(default_factory=PromptTrainConfig)


def parse_finetune_config(raw: Any, source: str = "config") -> FinetuneConfig:
    """Validate a raw dict; :class:`ConfigError` names the offending keys."""
    return validate_config(FinetuneConfig, raw, source, what="finetune config")


def load_finetune_config(path: str | Path,
                         overrides: list[str] | tuple[str, ...] = ()) -> FinetuneConfig:
    """Read ``path`` (YAML), apply dotted ``overrides`` and validate."""
    raw = read_yaml(path, overrides, example="configs/medsam_finetune.yaml")
    return parse_finetune_config(raw, source=str(path))
