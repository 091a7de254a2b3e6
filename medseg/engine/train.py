"""``Trainer``: config-driven 3D patch / 2D slice training on MONAI.

Outputs in ``train.output_dir``: ``last.pt`` (resumable checkpoint, ``weights_only``-loadable),
``best.safetensors`` and ``last.safetensors`` (self-describing bundles for ``medseg predict``),
``metrics.csv`` (one row per epoch), ``config.json`` (the validated config) and, with
``train.tensorboard``, TensorBoard event files in ``tensorboard/``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader
from monai.losses import DiceCELoss, DiceFocalLoss
from monai.metrics import compute_dice
from monai.networks.utils import one_hot
from monai.utils import set_determinism
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from medseg.config import MedsegConfig, config_hash
from medseg.data import Case, load_dataset, split_cases
from medseg.engine.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from medseg.engine.distributed import all_reduce_mean, barrier, init_distributed
from medseg.engine.infer import pick_device
from medseg.engine.window import sliding_logits
from medseg.errors import ConfigError, DatasetError
from medseg.io.atomic import write_text_atomic
from medseg.models.bundle import BundleMeta, NetworkSpec, save_bundle
from medseg.models.registry import build_network
from medseg.transforms import build_train_transforms, build_val_transforms

__all__ = ["TrainResult", "Trainer", "train"]


@dataclass
class TrainResult:
    output_dir: Path
    best_bundle: Path
    last_bundle: Path
    history: list[dict[str, Any]] = field(default_factory=list)


def _estimate_case_bytes(case: Case, cfg: MedsegConfig) -> int:
    """Preprocessed size of a case (image channels + label, float32) from its NIfTI header;
    64 MiB when the header cannot be read cheaply."""
    try:
        import nibabel as nib

        img = nib.load(str(case.images[0]))
        shape = np.asarray(img.shape[:3], dtype=np.float64)  # type: ignore[attr-defined]
        zooms = np.linalg.norm(img.affine[:3, :3], axis=0)  # type: ignore[attr-defined]
        spacing = cfg.preprocess.spacing or (None, None, None)
        target = np.asarray([z if s is None else s for s, z in zip(spacing, zooms, strict=True)],
                            dtype=np.float64)
        voxels = float(np.prod(np.ceil(shape * zooms / target)))
        return int(voxels * 4 * (len(case.images) + 1))
    except Exception:
        return 64 << 20


def _cache_num(cases: list[Case], cfg: MedsegConfig) -> int:
    """How many cases fit ``train.cache_memory_gb`` once preprocessed."""
    if not cases:
        return 0
    per_case = max(_estimate_case_bytes(c, cfg) for c in cases[: min(len(cases), 8)])
    return int(min(len(cases), (cfg.train.cache_memory_gb * (1 << 30)) // max(per_case, 1)))


class Trainer:
    """Build data, network, loss, optimiser and scheduler from ``cfg``; :meth:`fit` trains."""

    def __init__(self, cfg: MedsegConfig, *, progress: bool = True) -> None:
        self.cfg = cfg
        device = pick_device(cfg.train.device)
        self.ctx = init_distributed(device.type)
        if self.ctx.enabled and device.type == "cuda":
            device = torch.device("cuda", self.ctx.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        self.progress = progress and self.ctx.is_main
        self.amp = cfg.train.amp and self.device.type == "cuda"
        set_determinism(seed=cfg.train.seed)
        torch.use_deterministic_algorithms(cfg.train.deterministic, warn_only=True)
        torch.backends.cudnn.benchmark = not cfg.train.deterministic
        self.dataset = load_dataset(cfg.data)
        self.train_cases, self.val_cases = split_cases(self.dataset.cases, cfg.data)
        if not self.train_cases:
            raise DatasetError(f"{cfg.data.root}: no training cases after the split.")
        self.labels = self.dataset.labels
        self.n_classes = len(self.labels) + 1
        m = cfg.model
        self.net = build_network(m.name, m.spatial_dims, cfg.data.channels, self.n_classes,
                                 **m.kwargs).to(self.device)
        #: what the training step calls: the network, wrapped in DDP across processes
        self.model: torch.nn.Module = self.net
        if self.ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.net, device_ids=ids)
        self.loss_fn = self._loss()
        self.optimizer = self._optimizer()
        self.scheduler = self._scheduler()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.train_tf = build_train_transforms(cfg)
        self.train_tf.set_random_state(seed=cfg.train.seed)
        self.out_dir = Path(cfg.train.output_dir)
        self.epoch = 0
        self.step = 0
        self.best_metric = -math.inf
        self.history: list[dict[str, Any]] = []
        self._pending_rng: dict[str, Any] | None = None
        self.sampler: DistributedSampler | None = None

    # ------------------------------------------------------------------ builders
    def _loss(self) -> torch.nn.Module:
        bg = self.cfg.loss.include_background
        if self.cfg.loss.name == "dice_focal":
            return DiceFocalLoss(to_onehot_y=True, softmax=True, include_background=bg)
        return DiceCELoss(to_onehot_y=True, softmax=True, include_background=bg)

    def _optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg.optimizer
        params = self.net.parameters()
        if o.name == "sgd":
            return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum,
                                   weight_decay=o.weight_decay, nesterov=True)
        cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
        return cls(params, lr=o.lr, weight_decay=o.weight_decay)

    def _scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        s, epochs = self.cfg.scheduler, self.cfg.train.epochs
        main_epochs = max(epochs - s.warmup_epochs, 1)
        sched: torch.optim.lr_scheduler.LRScheduler
        if s.name == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=main_epochs)
        elif s.name == "poly":
            sched = torch.optim.lr_scheduler.PolynomialLR(self.optimizer, total_iters=main_epochs,
                                                          power=0.9)
        else:
            sched = torch.optim.lr_scheduler.ConstantLR(self.optimizer, factor=1.0, total_iters=0)
        if s.warmup_epochs == 0:
            return sched
        warm = torch.optim.lr_scheduler.LinearLR(self.optimizer, start_factor=0.1,
                                                 total_iters=s.warmup_epochs)
        return torch.optim.lr_scheduler.SequentialLR(self.optimizer, [warm, sched],
                                                     milestones=[s.warmup_epochs])

    def _loaders(self) -> tuple[DataLoader, list[Case]]:
        """Training loader (a ``DistributedSampler`` shards cases across processes) and the
        validation cases (validated on rank 0 only)."""
        t = self.cfg.train
        data = [c.as_dict() for c in self.train_cases]
        ds = CacheDataset(data, self.train_tf, cache_num=_cache_num(self.train_cases, self.cfg),
                          num_workers=1, progress=False, copy_cache=True)
        self.sampler = (DistributedSampler(ds, num_replicas=self.ctx.world_size,
                                           rank=self.ctx.rank, shuffle=True, seed=t.seed)
                        if self.ctx.enabled else None)
        loader = DataLoader(ds, batch_size=t.batch_size, shuffle=self.sampler is None,
                            sampler=self.sampler, num_workers=t.num_workers, drop_last=False)
        if self.ctx.rank > 0:  # the loader seeded the transforms identically on every rank
            self.train_tf.set_random_state(seed=t.seed + 1000 * self.ctx.rank)
        return loader, self.val_cases if self.ctx.is_main else []

    def _new_iter(self, loader: DataLoader, restarts: int) -> Any:
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch * 10_000 + restarts)
        return iter(loader)

    # ------------------------------------------------------------------ steps
    def _train_epoch(self, loader: DataLoader) -> float:
        self.model.train()
        n_iter = self.cfg.train.iterations_per_epoch or len(loader)
        losses: list[float] = []
        restarts = 0
        it = self._new_iter(loader, restarts)
        for _ in tqdm(range(n_iter), desc=f"epoch {self.epoch + 1}", leave=False,
                      disable=not self.progress):
            try:
                batch = next(it)
            except StopIteration:
                restarts += 1
                it = self._new_iter(loader, restarts)
                batch = next(it)
            x = batch["image"].to(self.device)
            y = batch["label"].to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
                loss = self.loss_fn(self.model(x), y)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            losses.append(float(loss.detach()))
            self.step += 1
        return all_reduce_mean(float(np.mean(losses)), self.ctx)

    @torch.no_grad()
    def _val_data(self, cases: list[Case]) -> Any:
        """Preprocessed validation volumes, cached (within the memory budget) on first use."""
        key = tuple(c.id for c in cases)
        if getattr(self, "_val_key", None) != key:
            self._val_key = key
            self._val_ds = CacheDataset([c.as_dict() for c in cases],
                                        build_val_transforms(self.cfg),
                                        cache_num=_cache_num(cases, self.cfg), num_workers=1,
                                        progress=False)
        return self._val_ds

    def validate(self, cases: list[Case]) -> dict[str, float]:
        """Sliding-window Dice per label on preprocessed validation volumes: the mean over the
        cases whose reference holds the label (NaN when none does)."""
        self.net.eval()
        data = self._val_data(cases)
        per_case = []
        for i in range(len(cases)):
            d = data[i]
            logits = sliding_logits(
                self.net, d["image"].as_tensor()[None], roi=self.cfg.roi_size,
                spatial_dims=self.cfg.model.spatial_dims, overlap=self.cfg.inference.overlap,
                sw_batch_size=self.cfg.inference.sw_batch_size, mode=self.cfg.inference.mode,
                device=self.device, amp=self.amp)
            pred = one_hot(logits.argmax(1, keepdim=True), self.n_classes)
            ref = one_hot(d["label"].as_tensor()[None].round().long(), self.n_classes)
            per_case.append(compute_dice(pred, ref, include_background=False,
                                         ignore_empty=True)[0].cpu().numpy())
        scores = np.nanmean(np.stack(per_case), axis=0) if per_case else np.full(
            len(self.labels), np.nan)
        return {f"dice_{self.labels[i + 1]}": float(s) for i, s in enumerate(scores)}

    # ------------------------------------------------------------------ persistence
    def bundle_meta(self, extra: dict[str, Any] | None = None) -> BundleMeta:
        """The description stored with the weights (everything ``medseg predict`` needs)."""
        from medseg import __version__

        cfg = self.cfg
        inference = cfg.inference.model_copy(update={"roi_size": cfg.roi_size})
        return BundleMeta(
            medseg_version=__version__,
            network=NetworkSpec(name=cfg.model.name, spatial_dims=cfg.model.spatial_dims,
                                in_channels=cfg.data.channels, out_channels=self.n_classes,
                                kwargs=json.loads(json.dumps(cfg.model.kwargs))),
            labels=self.labels, modality=self.dataset.modality, body_region=cfg.data.body_region,
            preprocess=cfg.preprocess,
            inference=inference, config_hash=config_hash(cfg),
            training={"config_name": cfg.name, "epoch": self.epoch, "step": self.step,
                      **(extra or {})})

    def _state(self) -> dict[str, Any]:
        return {"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "epoch": self.epoch, "step": self.step, "best_metric": self.best_metric,
                "rng": capture_rng(self.train_tf), "config_hash": config_hash(self.cfg)}

    def resume(self, path: str | Path | None = None) -> None:
        """Restore model, optimiser, scheduler, scaler, epoch, step, best score and RNG."""
        ck = load_checkpoint(path or self.out_dir / "last.pt")
        self.net.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.epoch, self.step = int(ck["epoch"]), int(ck["step"])
        self.best_metric = float(ck["best_metric"])
        self._pending_rng = ck["rng"]  # applied once the data loader exists (it reseeds)
        self.history = _read_csv(self.out_dir / "metrics.csv")[: self.epoch]

    def _write_csv(self) -> None:
        keys: list[str] = []
        for row in self.history:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, restval="")
        w.writeheader()
        w.writerows(self.history)
        write_text_atomic(self.out_dir / "metrics.csv", buf.getvalue())

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainResult:
        """Train until ``train.epochs`` (continuing from :meth:`resume` if called)."""
        t = self.cfg.train
        main = self.ctx.is_main
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.out_dir / "config.json", self.cfg.model_dump_json(indent=2))
        loader, val_cases = self._loaders()
        if self._pending_rng is not None:  # MONAI's DataLoader reseeds transforms and torch
            restore_rng(self._pending_rng, self.train_tf)
            self._pending_rng = None
        best, last = self.out_dir / "best.safetensors", self.out_dir / "last.safetensors"
        writer = _open_tensorboard(self.out_dir / "tensorboard") if main and t.tensorboard else None
        try:
            self._epochs(loader, val_cases, best, last, writer)
        finally:
            if writer is not None:
                writer.close()
        barrier(self.ctx)
        return TrainResult(self.out_dir, best, last, self.history)

    def _epochs(self, loader: DataLoader, val_cases: list[Case], best: Path, last: Path,
                writer: Any) -> None:
        t, main = self.cfg.train, self.ctx.is_main
        bar = tqdm(range(self.epoch, t.epochs), desc="training", disable=not self.progress)
        for _ in bar:
            t0 = time.perf_counter()
            loss = self._train_epoch(loader)
            lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            self.epoch += 1
            row: dict[str, Any] = {"epoch": self.epoch, "step": self.step, "train_loss": loss,
                                   "lr": lr}
            if val_cases and (self.epoch % t.val_every == 0 or self.epoch == t.epochs):
                dice = self.validate(val_cases)
                mean = float(np.nanmean(list(dice.values()))) if dice else float("nan")
                row |= {"val_dice_mean": mean, **dice}
                if not math.isnan(mean) and mean > self.best_metric:
                    self.best_metric = mean
                    save_bundle(best, self.net, self.bundle_meta({"val_dice_mean": mean}))
            row["seconds"] = round(time.perf_counter() - t0, 3)
            self.history.append(row)
            if main:
                self._save_epoch(best, last, bool(val_cases))
            if writer is not None:
                _log_scalars(writer, row)
            bar.set_postfix(loss=f"{loss:.4f}",
                            dice=f"{row.get('val_dice_mean', float('nan')):.3f}")

    def _save_epoch(self, best: Path, last: Path, validated: bool) -> None:
        save_bundle(last, self.net, self.bundle_meta())
        if not validated or not best.exists():
            save_bundle(best, self.net, self.bundle_meta())
        save_checkpoint(self.out_dir / "last.pt", self._state())
        self._write_csv()


def _open_tensorboard(log_dir: Path) -> Any:
    """A ``SummaryWriter`` on ``log_dir`` (the ``tensorboard`` package is a dependency)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # pragma: no cover - tensorboard is a declared dependency
        raise ConfigError(f"train.tensorboard is true but TensorBoard cannot be imported ({exc}); "
                          "pip install tensorboard or set train.tensorboard=false.") from exc
    return SummaryWriter(log_dir=str(log_dir))


def _log_scalars(writer: Any, row: dict[str, Any]) -> None:
    """One epoch row as TensorBoard scalars at ``step = epoch``: ``train/loss``, ``train/lr``,
    ``val/dice_mean`` and ``val/dice_<label>`` (validation epochs only; NaN skipped)."""
    epoch = int(row["epoch"])
    writer.add_scalar("train/loss", float(row["train_loss"]), epoch)
    writer.add_scalar("train/lr", float(row["lr"]), epoch)
    writer.add_scalar("train/epoch_seconds", float(row["seconds"]), epoch)
    for key, value in row.items():
        if key.startswith(("val_dice_mean", "dice_")) and not math.isnan(float(value)):
            writer.add_scalar(f"val/{key.removeprefix('val_')}", float(value), epoch)
    writer.flush()


def _read_csv(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def train(cfg: MedsegConfig, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train ``cfg`` end to end (the library twin of ``medseg train``)."""
    trainer = Trainer(cfg, progress=progress)
    try:
        if resume:
            trainer.resume()
        return trainer.fit()
    finally:
        if trainer.ctx.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
