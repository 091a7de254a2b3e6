"""Promptable-model training and fine-tuning (the MedSAM recipe), for both backends.

:func:`run_finetune` loads the volumes of a :class:`FinetuneConfig`, builds the label table
(:class:`medseg.data.prompt_slices.SliceTable`), and trains with 2D slices, jittered
ground-truth boxes (and optional point / previous-slice mask prompts), Dice + BCE on the
upsampled mask logits plus an MSE on the predicted IoU, AdamW with warmup + cosine decay, the
prompt encoder frozen (and optionally the image encoder), AMP only on CUDA and DDP under
``torchrun``. Samples are prepared by the model's recipe
(:class:`medseg.models.prompt_recipe.PromptRecipe`), exactly as the runtime prepares a slice;
checkpoints are written by :func:`medseg.models.promptable.save_promptable` (safetensors + the
JSON with the recipe; SAM models keep the official state-dict layout).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medseg.config import config_hash
from medseg.data.prompt_slices import (
    AugmentSettings,
    LabelledVolume,
    PromptBatch,
    PromptSampler,
    SliceTable,
)
from medseg.engine.distributed import all_reduce_mean, init_distributed
from medseg.engine.prompt_config import FinetuneConfig
from medseg.errors import ConfigError, DatasetError, PromptModelError
from medseg.io.atomic import write_text_atomic
from medseg.modality import decide_modality
from medseg.models.lite_sam import LiteSam, LiteSamConfig, build_lite_sam
from medseg.models.prompt_recipe import PromptRecipe, lite_recipe
from medseg.models.promptable import PromptModel, load_promptable, save_promptable
from medseg.volume import present_values

__all__ = ["FinetuneResult", "build_model", "dice_bce_loss", "load_sources", "prompt_forward",
           "run_finetune"]


@dataclass
class FinetuneResult:
    checkpoint: Path
    iterations: int
    losses: list[float]
    seconds: float


def load_sources(cfg: FinetuneConfig) -> list[LabelledVolume]:
    """Read every configured image/label pair into memory (label grid must match the image)."""
    from medseg import io as mio

    out = []
    for src in cfg.data.sources:
        for p in (src.image, src.label):
            if not p.exists():
                raise DatasetError(f"{p}: data source not found; fix data.sources in the config")
        img, lab = mio.read(src.image), mio.read(src.label)
        lab = lab.conform_to(img, atol_mm=1e-2)  # exact permutation/flip or a clear error
        labels = src.labels or lab.labels
        if not labels:
            raise DatasetError(f"{src.label}: no label names; add 'labels: {{1: name}}' to the "
                               "source in the config")
        present = set(present_values(np.asarray(lab.array)))
        labels = {int(k): v for k, v in labels.items() if int(k) in present}
        out.append(LabelledVolume(
            name=str(src.image), image=np.asarray(img.array, dtype=np.float32),
            label=np.asarray(lab.array).astype(np.int32), labels=labels,
            modality=decide_modality(img, src.modality).modality,
            spacing=tuple(float(s) for s in img.spacing),  # type: ignore[arg-type]
            weight=src.weight, axes=tuple(src.axes or ())))
    return out


def build_model(cfg: FinetuneConfig) -> PromptModel:
    """The trainable model: a :class:`LiteSam` or a segment-anything ``Sam`` with the recipe
    it trains and is saved with (the checkpoint's or the lite default, with
    ``model.recipe`` applied), named ``model.name`` (default: the checkpoint's)."""
    m = cfg.model
    if m.checkpoint is not None:
        pm = load_promptable(m.checkpoint)
        if (m.backend == "lite") != isinstance(pm.sam, LiteSam):
            raise ConfigError(f"model.checkpoint {m.checkpoint}: holds a "
                              f"{type(pm.sam).__name__}, but model.backend is {m.backend!r}")
        net = _extend_lite(pm.sam, m.arch, m.checkpoint) \
            if m.arch and isinstance(pm.sam, LiteSam) else pm.sam
        base, name = pm.recipe, pm.name
    else:
        try:
            net = build_lite_sam(LiteSamConfig.from_dict(m.arch))
        except (TypeError, PromptModelError) as exc:
            raise ConfigError(f"model.arch: {exc}") from exc
        base, name = lite_recipe(net.config.image_size), "medseg-lite-sam"
    encoder: Any = net.image_encoder
    recipe = _recipe(base, m.recipe, int(encoder.img_size))
    version = m.version or f"ft-{config_hash(cfg)[:8]}"
    return PromptModel(net, recipe, name=m.name or name, version=version)


def _recipe(base: PromptRecipe, overrides: dict[str, Any], input_size: int) -> PromptRecipe:
    try:
        recipe = base.with_overrides(overrides)
    except PromptModelError as exc:
        raise ConfigError(f"model.recipe: {exc}") from None
    if recipe.image_size != input_size:
        raise ConfigError(f"model.recipe: image_size {recipe.image_size} differs from the "
                          f"network's input size {input_size}; leave image_size out")
    return recipe


def _extend_lite(net: LiteSam, arch: dict[str, Any], source: Path) -> LiteSam:
    """``net`` rebuilt with ``arch`` overriding its config (e.g. ``roi_decoder: true``): every
    tensor of the checkpoint is kept; only modules the new fields add start from random."""
    try:
        cfg = LiteSamConfig.from_dict({**asdict(net.config), **arch})
    except TypeError as exc:
        raise ConfigError(f"model.arch: {exc}") from exc
    new = build_lite_sam(cfg)
    state = net.state_dict()
    target = new.state_dict()
    clash = [k for k in state if k not in target or target[k].shape != state[k].shape]
    if clash:
        raise ConfigError(f"model.arch {arch} changes tensors of {source} ({clash[:3]}); only "
                          "fields that add modules (roi_decoder, roi_size, roi_width) can "
                          "extend a checkpoint")
    new.load_state_dict(state, strict=False)
    return new


class _PromptForward(nn.Module):
    """``forward(batch) -> (logits (B,1,S,S), iou (B,1))``; a module so DDP can wrap it."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, boxes: torch.Tensor, points: torch.Tensor | None,
                point_labels: torch.Tensor | None, mask_input: torch.Tensor,
                has_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return prompt_forward(self.net, image, boxes, points, point_labels, mask_input, has_mask)


def prompt_forward(net: Any, image: torch.Tensor, boxes: torch.Tensor,
                   points: torch.Tensor | None = None, point_labels: torch.Tensor | None = None,
                   mask_input: torch.Tensor | None = None,
                   has_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed ``image (B,3,S,S)`` and decode one single-mask prediction per sample.

    ``boxes (B,4)`` XYXY; ``points (B,N,2)`` with ``point_labels (B,N)`` (-1 = padding, dropped
    per sample); ``mask_input (B,1,m,m)`` used where ``has_mask``. Returns logits upsampled to
    ``(B,1,S,S)`` and the predicted IoU ``(B,1)``.
    """
    emb = net.image_encoder(image)
    if getattr(net, "roi_decoder", None) is not None:  # lite model with the RoI decoder
        pts = (points, point_labels) if points is not None and point_labels is not None \
            else None
        out: tuple[torch.Tensor, torch.Tensor] = net.roi_decode(emb, boxes.float(), pts,
                                                                mask_input, has_mask)
        return out
    pe = net.prompt_encoder.get_dense_pe()
    logits, ious = [], []
    for i in range(image.shape[0]):
        pts = None
        if points is not None and point_labels is not None:
            keep = point_labels[i] >= 0
            if bool(keep.any()):
                pts = (points[i:i + 1, keep], point_labels[i:i + 1, keep])
        mk = mask_input[i:i + 1] if mask_input is not None and has_mask is not None \
            and bool(has_mask[i]) else None
        sparse, dense = net.prompt_encoder(points=pts, boxes=boxes[i:i + 1], masks=mk)
        lo, iou = net.mask_decoder(image_embeddings=emb[i:i + 1], image_pe=pe,
                                   sparse_prompt_embeddings=sparse,
                                   dense_prompt_embeddings=dense, multimask_output=False)
        logits.append(lo)
        ious.append(iou)
    low = torch.cat(logits)
    up = F.interpolate(low, size=image.shape[-2:], mode="bilinear", align_corners=False)
    return up, torch.cat(ious)


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of soft Dice loss + BCE; ``logits``/``target`` ``(B,1,H,W)``."""
    prob = torch.sigmoid(logits.float())
    inter = (prob * target).sum((1, 2, 3))
    dice = 1 - (2 * inter + 1) / (prob.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
    bce = F.binary_cross_entropy_with_logits(logits.float(), target)
    return dice.mean() + bce


def _hard_iou(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.0
              ) -> torch.Tensor:
    """IoU of the mask the runtime returns (``logits > threshold``, the recipe's) per sample."""
    pred = (logits.detach() > threshold).float()
    inter = (pred * target).sum((1, 2, 3))
    union = ((pred + target) > 0).float().sum((1, 2, 3))
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return iou.unsqueeze(1)  # empty prediction of an empty target: IoU 1


def _sampler(cfg: FinetuneConfig, model: PromptModel, sources: list[LabelledVolume],
             rank: int) -> PromptSampler:
    t, a = cfg.train, cfg.train.augment
    table = SliceTable(sources, cfg.data.min_area, tuple(cfg.data.exclude))
    aug = AugmentSettings(a.flip, a.scale, a.aspect, a.rotate_deg, a.elastic, a.intensity,
                          a.noise, a.lut, a.lesion) if a.enabled else None
    return PromptSampler(table, model.recipe, model.low_res_size, t.box_jitter,
                         t.box_jitter_rel, t.box_shrink, t.point_prob, t.mask_prompt_prob, aug,
                         seed=t.seed + 1000 * rank, box_jitter_slice_px=t.box_jitter_slice_px,
                         propagate_prob=t.propagate_prob, propagate_margin=t.propagate_margin_px,
                         propagate_mask_prompt=t.propagate_mask_prompt)


class _SamplerStream(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """Endless batches from a :class:`PromptSampler`; each loader worker reseeds its copy
    (``seed``, worker id) so workers never draw the same samples."""

    def __init__(self, sampler: PromptSampler, batch_size: int, seed: int) -> None:
        self.sampler, self.batch_size, self.seed = sampler, batch_size, seed

    def __iter__(self) -> Iterator[PromptBatch]:
        info = torch.utils.data.get_worker_info()
        if info is not None:
            torch.set_num_threads(1)
            self.sampler.rng = np.random.default_rng([self.seed, info.id])
        while True:
            yield self.sampler.batch(self.batch_size)


def _batches(sampler: PromptSampler, batch_size: int, workers: int,
             seed: int) -> Iterator[PromptBatch]:
    """Training batches: drawn in the loop (``workers == 0``, reproducible with the seed) or
    by ``workers`` processes ahead of the step (a GPU step outruns one CPU sampler)."""
    if workers == 0:
        while True:
            yield sampler.batch(batch_size)
    loader = torch.utils.data.DataLoader(_SamplerStream(sampler, batch_size, seed),
                                         batch_size=None, num_workers=workers,
                                         prefetch_factor=4, persistent_workers=True)
    yield from loader


def _freeze(net: Any, cfg: FinetuneConfig) -> list[dict[str, Any]]:
    """Freeze per config; the trainable parameters as optimizer groups (the image encoder's
    learning rate scaled by ``train.encoder_lr_scale``)."""
    for part, frozen in ((net.prompt_encoder, cfg.train.freeze_prompt_encoder),
                         (net.image_encoder, cfg.train.freeze_image_encoder)):
        for p in part.parameters():
            p.requires_grad_(not frozen)
        if frozen:
            part.eval()
    enc = {id(p) for p in net.image_encoder.parameters()}
    groups = []
    for scale, sel in ((cfg.train.encoder_lr_scale, True), (1.0, False)):
        ps = [p for p in net.parameters() if p.requires_grad and (id(p) in enc) == sel]
        if ps:
            groups.append({"params": ps, "lr_scale": scale})
    if not groups:
        raise ConfigError("every parameter is frozen; set train.freeze_image_encoder: false")
    return groups


def _lr_factor(it: int, progress: float, warmup: int) -> float:
    """Linear warmup over ``warmup`` iterations, then cosine decay to 5 % over ``progress``
    (fraction of the iteration or wall-time budget, whichever is further along)."""
    if it < warmup:
        return (it + 1) / warmup
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _step(model: nn.Module, b: PromptBatch, dev: torch.device, use_amp: bool,
          iou_w: float, threshold: float) -> tuple[torch.Tensor, float]:
    def to(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x.to(dev, non_blocking=True)

    target = b.mask.to(dev)
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_amp):
        logits, iou = model(to(b.image), to(b.boxes), to(b.points), to(b.point_labels),
                            to(b.mask_input), b.has_mask_input)
    loss = dice_bce_loss(logits, target)
    true_iou = _hard_iou(logits, target, threshold)
    loss = loss + iou_w * F.mse_loss(iou.float(), true_iou)
    return loss, float(true_iou.mean())


def run_finetune(cfg: FinetuneConfig, log: Callable[[str], None] = print,
                 sources: list[LabelledVolume] | None = None) -> FinetuneResult:
    """Train per ``cfg``; returns the final checkpoint path (rank 0 writes it). ``sources``
    replaces reading ``cfg.data.sources`` (volumes already in memory)."""
    t = cfg.train
    cuda = t.device == "cuda" or (t.device == "auto" and torch.cuda.is_available())
    if t.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is visible; use 'auto'")
    ctx = init_distributed("cuda" if cuda else "cpu")
    dev = torch.device(f"cuda:{ctx.local_rank}" if cuda else "cpu")
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed + ctx.rank)
    pm = build_model(cfg)
    net = pm.sam.to(dev).train()
    sampler = _sampler(cfg, pm, load_sources(cfg) if sources is None else sources, ctx.rank)
    groups = _freeze(net, cfg)
    params = [p for g in groups for p in g["params"]]
    model: nn.Module = _PromptForward(net)
    if ctx.enabled:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if cuda else None, find_unused_parameters=True)
    opt = torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)
    batches = _batches(sampler, t.batch_size, t.workers, t.seed + 1000 * ctx.rank)
    out_dir = Path(t.output_dir)
    name = "lite_sam.safetensors" if isinstance(net, LiteSam) else "sam_finetuned.safetensors"
    extra = {"config_hash": config_hash(cfg), "held_out": list(cfg.data.exclude),
             "structures": sampler.table.names()}
    losses: list[float] = []
    t0 = time.perf_counter()
    it = 0
    use_amp = cuda and t.amp
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        log(f"{len(sampler.table.entries)} slice samples, {len(sampler.table.structures)} "
            f"structures; {sum(p.numel() for p in params)} trainable parameters on {dev}")
    for it in range(t.iterations):
        progress = it / t.iterations
        if t.max_minutes is not None:
            progress = max(progress, (time.perf_counter() - t0) / (60 * t.max_minutes))
        for g in opt.param_groups:
            g["lr"] = t.lr * g["lr_scale"] * _lr_factor(it, progress, t.warmup)
        loss, miou = _step(model, next(batches), dev, use_amp, t.iou_loss_weight,
                           pm.mask_threshold)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(all_reduce_mean(float(loss.detach()), ctx))
        elapsed = time.perf_counter() - t0
        stop = t.max_minutes is not None and elapsed > 60 * t.max_minutes
        if ctx.is_main and ((it + 1) % t.log_every == 0 or stop):
            rec = {"iteration": it + 1, "loss": float(np.mean(losses[-t.log_every:])),
                   "train_iou": miou, "seconds": round(elapsed, 1)}
            log(json.dumps(rec))
            with (out_dir / "train_log.jsonl").open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
        if ctx.is_main and ((it + 1) % t.checkpoint_every == 0 or stop):
            save_promptable(pm, out_dir / name, {**extra, "iteration": it + 1})
        if stop:
            break
    final = out_dir / name
    if ctx.is_main:
        save_promptable(pm, final, {**extra, "iteration": it + 1,
                                    "final_loss": float(np.mean(losses[-20:]))})
        write_text_atomic(out_dir / "finished.json",
                          json.dumps({"iterations": it + 1, "seconds": time.perf_counter() - t0}))
    if ctx.owns_group:
        torch.distributed.destroy_process_group()
    return FinetuneResult(final, it + 1, losses, time.perf_counter() - t0)
