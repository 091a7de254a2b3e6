"""``Segmenter``: one loaded model bundle, ``predict(Volume) -> Volume`` on the input's grid.

Pipeline (see docs/inference.md):

1. the bundle's preprocessing (:func:`medseg.transforms.build_infer_transforms`, built once)
   on a channel-first float32 copy of the input with its RAS affine;
2. MONAI sliding-window inference (bundle ROI, overlap, gaussian blending, window batch), optional
   flip test-time augmentation (softmax probabilities averaged over all axis-flip combinations);
3. inversion to the native grid. ``invert="probabilities"`` (default) resamples each class's
   probability map back (linear, like MONAI ``Invertd``) and takes a *running* argmax, so only
   two full-resolution arrays exist at a time (best probability float32 + label uint8), never
   one per class. ``invert="labels"`` takes the argmax on the model grid and resamples the label
   map (nearest): cheaper, slightly blockier edges;
4. post-processing (:class:`~medseg.engine.postprocess.PostProcess`), uint8/uint16 output.

Imported models (docs/models.md): MONAI bundles take this path with the bundle's intensity
steps, inferer settings and inversion; nnU-Net models take nnUNetPredictor's own recipe
(:class:`~medseg.engine.nnunet_predict.NnUnetRunner`) for steps 1-3; several nnU-Net model
folders (TotalSegmentator's parts) run one after the other, merged by label name.

Device policy: CUDA when present (fp16 autocast for the network, stitching buffer on the CPU),
otherwise CPU float32.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from monai import transforms as mt
from monai.data import MetaTensor
from monai.transforms.utils import convert_applied_interp_mode

from medseg.engine.invert import (
    AxisMap,
    axis_mapping,
    first_argmax_,
    iter_native_labels,
    iter_native_slabs,
    resample_axis_aligned,
)
from medseg.engine.model_source import load_model
from medseg.engine.nnunet_predict import NnUnetRunner
from medseg.engine.postprocess import PostProcess, postprocess_labels
from medseg.engine.runtime import Clock, as_tensor, norm_modality, peak_rss_mb, pick_device
from medseg.engine.window import sliding_logits
from medseg.errors import ModelInputError
from medseg.models.bundle import BundleMeta
from medseg.models.catalog import model_identity
from medseg.models.nnunet.recipe import NnUnetRecipe
from medseg.transforms import (
    build_infer_transforms,
    bundle_intensity_transforms,
    intensity_transform,
    spatial_transforms,
)
from medseg.volume import Volume

__all__ = ["PostProcess", "Segmenter", "peak_rss_mb", "pick_device"]

class Segmenter:
    """Loads a model bundle once and segments volumes with it.

    Args:
        bundle: path of a ``.safetensors`` bundle (``medseg train`` or ``medseg import-model``),
            the name of a shipped bundle, ``"default"`` (the shipped CT-organ model), or a
            foreign model source used directly: an nnU-Net v2 model folder (TotalSegmentator's
            weights are such folders) or a MONAI bundle folder/zip, converted in memory as
            ``medseg import-model`` would (see docs/models.md).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        overlap, sw_batch_size, mode: override the bundle's sliding-window defaults
            (``sw_batch_size``: windows per forward pass, also for nnU-Net models).
        invert: ``"probabilities"`` (resample class probabilities, then argmax) or
            ``"labels"`` (argmax on the model grid, then nearest-neighbour resampling);
            default: the bundle's own (MONAI bundles) or ``"probabilities"``.
        amp: fp16 autocast on CUDA (ignored on the CPU).
        folds, checkpoint: nnU-Net folders: which ``fold_N`` to ensemble (default all) and the
            checkpoint file name (default ``checkpoint_final.pth``, else ``checkpoint_best.pth``).
        trust_code: MONAI bundles: run the bundle's own config with MONAI's parser (its
            expressions run as written). Never the default.
    """

    def __init__(self, bundle: str | Path, *, device: str | torch.device = "auto",
                 overlap: float | None = None, sw_batch_size: int | None = None,
                 mode: str | None = None,
                 invert: Literal["probabilities", "labels"] | None = None,
                 amp: bool = True, folds: list[str] | None = None,
                 checkpoint: str | None = None, trust_code: bool = False) -> None:
        self.device = pick_device(device)
        loaded = load_model(bundle, self.device, folds=folds, checkpoint=checkpoint,
                            trust_code=trust_code)
        self.path, self.net, self.meta, self.kind = (loaded.path, loaded.net, loaded.meta,
                                                     loaded.kind)
        self._trusted = loaded.trusted
        self._parts = [Segmenter(f, device=self.device, sw_batch_size=sw_batch_size, amp=amp,
                                 folds=folds, checkpoint=checkpoint)
                       for f in loaded.trusted] if self.kind == "parts" else []
        recipe = self.meta.recipe or {}
        inf = self.meta.inference
        self.overlap = inf.overlap if overlap is None else overlap
        self.sw_batch_size = sw_batch_size or inf.sw_batch_size
        if self.kind == "monai_bundle" and sw_batch_size is None and inf.roi_size:
            # a bundle's window batch is a speed setting, not part of its result: batch up to
            # 2M input voxels per forward (faster on a CPU), never fewer than the bundle asks
            per = int(np.prod(inf.roi_size)) * self.meta.network.in_channels
            self.sw_batch_size = max(inf.sw_batch_size, (1 << 21) // per)
        self.mode = mode or inf.mode
        invert = invert or recipe.get("invert", "probabilities")
        if invert not in ("probabilities", "labels"):
            raise ValueError(f"invert must be 'probabilities' or 'labels', got {invert!r}")
        self.invert = invert
        self.amp = amp and self.device.type == "cuda"
        self._softmax = bool(recipe.get("softmax", True))
        self._nnunet = NnUnetRunner(
            self.net, NnUnetRecipe.model_validate(recipe), device=self.device, amp=amp,
            batch=sw_batch_size) if self.kind == "nnunet" else None
        intensity = (bundle_intensity_transforms(recipe["intensity"])
                     if self.kind == "monai_bundle"
                     else intensity_transform(self.meta.preprocess.intensity))
        self.pipeline = mt.Compose([*spatial_transforms(self.meta.preprocess), *intensity])
        if self.meta.preprocess.foreground_crop:
            self.pipeline = build_infer_transforms(self.meta.preprocess)
        # fast path (no foreground crop): MONAI's orientation + spacing run lazily, only to give
        # the model grid, which the separable resampler fills; then the same intensity step
        self._lazy_spatial = None if self.meta.preprocess.foreground_crop else (
            spatial_transforms(self.meta.preprocess, lazy=True))
        self._intensity = mt.Compose(intensity)
        #: seconds per step of the last ``predict`` and the process's peak RSS (MB) after it
        self.last_stats: dict[str, float] = {}

    @property
    def default_tta(self) -> bool:
        """Test-time augmentation when ``predict(tta=None)``: on for nnU-Net models whose
        trainer allows mirroring (as ``nnUNetPredictor``), off otherwise."""
        if self._parts:
            return any(p.default_tta for p in self._parts)
        return bool(self._nnunet is not None and self._nnunet.recipe.mirror_axes)

    @property
    def name(self) -> str:
        """The model's name as exports record it (:func:`medseg.models.catalog.model_identity`)."""
        return model_identity(self.meta, self.path)[0]

    @property
    def version(self) -> str:
        """The model's version as exports record it (nnU-Net: trainer, plans, configuration,
        folds; MONAI: the bundle's version; native: the medseg version that wrote it)."""
        return model_identity(self.meta, self.path)[1]

    @property
    def labels(self) -> dict[int, str]:
        """``{value: name}`` of the label map ``predict`` returns."""
        return dict(self.meta.labels)

    # ------------------------------------------------------------------ checks
    def _check(self, vols: list[Volume]) -> None:
        meta: BundleMeta = self.meta
        name = vols[0].meta.get("path", "input volume")
        if len(vols) != meta.network.in_channels:
            raise ModelInputError(
                f"{name}: the model {self.path.name} takes {meta.network.in_channels} "
                f"image channel(s), got {len(vols)} volume(s). Pass one co-registered volume "
                "per channel, in training order.")
        want = norm_modality(meta.modality)
        for v in vols:
            got = norm_modality(v.modality)
            if want and got and got != want:
                raise ModelInputError(
                    f"{v.meta.get('path', 'input volume')}: modality {v.modality} does not match "
                    f"the model {self.path.name}, trained on {meta.modality}. Use a {meta.modality}"
                    " image or a model trained for this modality.")
        if meta.network.spatial_dims == 3 and 1 in vols[0].shape:
            raise ModelInputError(
                f"{name}: a 2D image (shape {vols[0].shape}) cannot go to the 3D model "
                f"{self.path.name}. Use a 2D model (model.spatial_dims: 2) or a 3D volume.")
        for v in vols[1:]:
            v.check_same_grid(vols[0], what="channel volume", reference="first channel")
        if any(v.array.dtype.kind == "c" or v.array.dtype == bool for v in vols):
            raise ModelInputError(f"{name}: image dtype {vols[0].array.dtype} is not numeric.")

    # ------------------------------------------------------------------ steps
    def preprocess(self, vols: list[Volume]) -> MetaTensor:
        """Channel-first preprocessed image ``(C, X, Y, Z)`` float32 on the model grid.

        Axis-aligned grids (any orientation, no foreground crop) take the separable path: the
        model grid is MONAI's own (orientation and spacing applied lazily), filled by
        :func:`~medseg.engine.invert.resample_axis_aligned` straight from the stored dtype, then
        the bundle's intensity step. Otherwise the MONAI pipeline runs and the result carries the
        ``applied_operations`` that invert it."""
        fast = self._preprocess_axis_aligned(vols)
        if fast is not None:
            return fast
        return self._preprocess_monai(vols)

    def _preprocess_axis_aligned(self, vols: list[Volume]) -> MetaTensor | None:
        if self._lazy_spatial is None:
            return None
        native = torch.as_tensor(vols[0].affine_ras, dtype=torch.float64)
        shape = tuple(int(s) for s in vols[0].shape)
        probe = MetaTensor(torch.zeros((1, 1, 1, 1)).expand(1, *shape), affine=native)
        data = {"image": probe}
        for step in self._lazy_spatial:  # one by one: a Compose would execute them at its end
            data = step(data)
        lazy = data["image"]
        model_affine = lazy.peek_pending_affine().to(torch.float64)
        out_shape = tuple(int(s) for s in lazy.peek_pending_shape())
        mapping = axis_mapping(model_affine.numpy(), native.numpy())
        if mapping is None or len(out_shape) != 3:
            return None
        chans = [as_tensor(np.asarray(v.array)) for v in vols]
        if len({c.dtype for c in chans}) > 1 or chans[0].dtype in (
                torch.uint16, torch.uint32, torch.uint64, torch.float64):
            chans = [c.to(torch.float32) for c in chans]  # one dtype that index_select takes
        src = chans[0][None] if len(chans) == 1 else torch.stack(chans)
        res = resample_axis_aligned(src, mapping, out_shape)  # type: ignore[arg-type]
        out = self._intensity({"image": MetaTensor(res, affine=model_affine)})["image"]
        assert isinstance(out, MetaTensor)
        return out

    def _preprocess_monai(self, vols: list[Volume]) -> MetaTensor:
        chans = [v.array.astype(np.float32, copy=False) for v in vols]
        # one channel: a view, keeping the reader's memory order (nibabel gives Fortran order;
        # np.stack would transpose all voxels into a C-ordered copy)
        arr = chans[0][None] if len(chans) == 1 else np.stack(chans)
        img = MetaTensor(torch.from_numpy(arr),
                         affine=torch.as_tensor(vols[0].affine_ras, dtype=torch.float64))
        out = self.pipeline({"image": img})["image"]
        assert isinstance(out, MetaTensor)
        return out

    def probabilities(self, image: torch.Tensor, tta: bool = False) -> torch.Tensor:
        """Softmax probabilities ``(K, X, Y, Z)`` float32 (CPU) for a preprocessed image
        ``(C, X, Y, Z)``; with ``tta`` averaged over every combination of axis flips."""
        nd = self.meta.network.spatial_dims
        axes = [2, 3, 4] if nd == 3 else [2, 3]
        flips: list[tuple[int, ...]] = [()]
        if tta:
            flips += [c for r in range(1, len(axes) + 1) for c in itertools.combinations(axes, r)]
        x = torch.as_tensor(image, dtype=torch.float32)[None]
        if x.device != torch.device("cpu"):
            x = x.cpu()
        acc: torch.Tensor | None = None
        for dims in flips:
            logits = sliding_logits(
                self.net, x, roi=self.meta.roi_size, spatial_dims=nd, overlap=self.overlap,
                sw_batch_size=self.sw_batch_size, mode=self.mode, device=self.device,
                amp=self.amp, flip_dims=dims)[0]
            probs = torch.softmax(logits, dim=0) if self._softmax else logits
            acc = probs if acc is None else acc.add_(probs)
        assert acc is not None
        return acc.div_(len(flips)) if len(flips) > 1 else acc

    def _inverse(self, data: torch.Tensor, like: MetaTensor, nearest: bool) -> np.ndarray:
        """Map one channel ``(1, X, Y, Z)`` on the model grid back to the input grid."""
        ops = copy.deepcopy(like.applied_operations)  # inverse pops nested entries
        if nearest:
            ops = convert_applied_interp_mode(ops, mode="nearest", align_corners=None)
        meta = dict(like.meta)
        meta["affine"] = like.affine.clone()
        ch = MetaTensor(data, meta=meta, applied_operations=ops)
        out = self.pipeline.inverse({"image": ch})["image"]
        return np.asarray(out.detach().cpu().numpy()[0])

    def _to_native_slabs(self, probs: torch.Tensor, mapping: AxisMap,
                         shape: tuple[int, int, int], keep_probs: bool
                         ) -> tuple[np.ndarray, np.ndarray | None]:
        """Fast path: separable resampling slab by slab (see :mod:`medseg.engine.invert`)."""
        k = probs.shape[0]
        labels = np.empty(shape, dtype=np.uint8 if k <= 256 else np.uint16)
        out = torch.from_numpy(labels.view(np.int16) if k > 256 else labels)  # shares memory
        all_p = np.empty((k, *shape), dtype=np.float32) if keep_probs else None
        if self.invert == "labels":
            lab = probs.argmax(0, keepdim=True).to(torch.float32)
            for i0, i1, v in iter_native_slabs(lab, mapping, shape, nearest=True):
                out[i0:i1] = v[0].to(out.dtype)
        elif k <= 128 and not keep_probs:
            for i0, i1, lab in iter_native_labels(probs, mapping, shape):
                out[i0:i1] = lab
            return labels, None
        if self.invert == "probabilities" or keep_probs:
            for i0, i1, v in iter_native_slabs(probs, mapping, shape):
                if self.invert == "probabilities":
                    first_argmax_(v, out[i0:i1])
                if all_p is not None:
                    all_p[:, i0:i1] = v.numpy()
        return labels, all_p

    def _to_native(self, probs: torch.Tensor, like: MetaTensor, keep_probs: bool,
                   native_affine: np.ndarray, shape: tuple[int, int, int]
                   ) -> tuple[np.ndarray, np.ndarray | None]:
        """Model-grid probabilities ``(K, X, Y, Z)`` -> labels (and probabilities) on the input
        grid. Axis-aligned maps (always, without a foreground crop) take the slab path; others
        MONAI's own ``Compose.inverse``, one class at a time."""
        mapping = None if self.meta.preprocess.foreground_crop else axis_mapping(
            native_affine, like.affine.numpy())
        if mapping is not None:
            return self._to_native_slabs(probs, mapping, shape, keep_probs)
        k = probs.shape[0]
        dtype = np.uint8 if k <= 256 else np.uint16
        if self.invert == "labels":
            lab = probs.argmax(0, keepdim=True).to(torch.float32)
            native = np.rint(self._inverse(lab, like, nearest=True)).astype(dtype)
            all_p = (np.stack([self._inverse(probs[c:c + 1], like, False) for c in range(k)])
                     if keep_probs else None)
            return native, all_p
        best_p: np.ndarray | None = None
        best_k: np.ndarray | None = None
        stack: list[np.ndarray] = []
        for c in range(k):
            p = self._inverse(probs[c:c + 1], like, nearest=False).astype(np.float32, copy=False)
            if keep_probs:
                stack.append(p)
            if best_p is None:
                best_p, best_k = p.copy() if keep_probs else p, np.zeros(p.shape, dtype=dtype)
                continue
            better = p > best_p
            best_k[better] = c  # type: ignore[index]
            np.maximum(best_p, p, out=best_p)
        assert best_k is not None
        return best_k, (np.stack(stack) if keep_probs else None)

    # ------------------------------------------------------------------ public
    def predict(self, volume: Volume | Sequence[Volume], *, tta: bool | None = None,
                return_probabilities: bool = False,
                postprocess: PostProcess | None = None) -> Volume | tuple[Volume, np.ndarray]:
        """Segment ``volume`` (or one co-registered volume per model input channel).

        ``tta``: average over axis flips; ``None`` = the model's default
        (:attr:`default_tta`). nnU-Net models mirror each window on the trainer's allowed axes
        (nnU-Net's ``--disable_tta`` is ``tta=False``); they and ``trust_code`` bundles return
        no probabilities.

        Returns:
            A label map on exactly the input's grid (``array`` uint8, or uint16 beyond 255
            labels; ``labels`` = the bundle's names). With ``return_probabilities`` also the
            per-class probabilities ``(K, I, J, K)`` float32 on the input grid (channel 0 is
            background; memory: one full-resolution float array per class).

        An input smaller than the ROI along an axis is zero-padded (in normalised intensity)
        for the windows and cropped back; the output still has the input's shape.
        """
        vols = [volume] if isinstance(volume, Volume) else list(volume)
        self._check(vols)
        tta = self.default_tta if tta is None else tta
        if self.kind in ("nnunet", "trusted_bundle", "parts"):
            if return_probabilities:
                raise ModelInputError(f"{self.path}: probabilities are not available for this "
                                      "model; ask for labels only.")
            return self._finish(vols, self._foreign_labels(vols, tta), postprocess, Clock())
        clock = Clock()
        pre = self.preprocess(vols)
        clock.lap("preprocess")
        probs = self.probabilities(pre.as_tensor(), tta=tta)
        clock.lap("sliding_window")
        labels, all_p = self._to_native(probs, pre, return_probabilities, vols[0].affine_ras,
                                        vols[0].shape)
        clock.lap("invert")
        del probs
        out = self._finish(vols, labels, postprocess, clock)
        return (out, all_p) if return_probabilities and all_p is not None else out

    def _foreign_labels(self, vols: list[Volume], tta: bool) -> np.ndarray:
        if self._parts:
            from medseg.engine.merge import merge_by_name

            outs = [(np.asarray(part._foreign_labels(vols, tta)), part.labels)
                    for part in self._parts]
            self.last_stats = {k: sum(p.last_stats.get(k, 0.0) for p in self._parts)
                               for k in self._parts[0].last_stats}
            return merge_by_name(outs)[0]
        if self._nnunet is not None:
            labels = self._nnunet.predict_labels(vols, tta=tta)
            self.last_stats = dict(self._nnunet.last_stats)
            return labels
        import tempfile

        from medseg import io

        with tempfile.TemporaryDirectory(prefix="medseg-trusted-") as tmp:
            path = Path(tmp) / "image.nii.gz"
            io.write(vols[0], path)
            out = np.asarray(self._trusted.predict_labels(path))
        dtype = np.uint8 if len(self.labels) < 256 else np.uint16
        return np.rint(out).astype(dtype)

    def _finish(self, vols: list[Volume], labels: np.ndarray,
                postprocess: PostProcess | None, clock: Clock) -> Volume:
        if labels.shape != vols[0].shape:  # a transform that is not invertible slipped in
            raise ModelInputError(f"internal: inverted shape {labels.shape} != input shape "
                                  f"{vols[0].shape}; please report this with the input file.")
        stats = dict(self.last_stats) if self.kind in ("nnunet", "trusted_bundle", "parts") \
            else {}
        if postprocess is not None:
            labels = postprocess_labels(labels, postprocess)
            clock.lap("postprocess")
        self.last_stats = {**stats, **clock.laps, "peak_rss_mb": peak_rss_mb()}
        return vols[0].with_array(labels, labels=self.labels)
