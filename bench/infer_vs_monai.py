"""Benchmark: ``medseg predict`` (Segmenter) against a plain MONAI recipe, same weights, same run.

Input: the real sample CT (data_samples/totalsegmentator/example_ct.nii.gz, 122x101x112 @ 3 mm)
resampled trilinearly (scipy.ndimage.zoom, order 1) to SHAPE (default 512x512x300) and saved as
an int16 RAS NIfTI. Model: the default MONAI 3D U-Net of the registry (4.8M parameters), CT
window [-200, 300], target spacing 1.5 mm, ROI 96^3, gaussian, sw_batch_size 2, overlap 0.5 (the
value our configs ship) unless --overlap. Weights (--weights):

* ``trained`` (default): the medseg Trainer, configs/demo.yaml with the overrides in TRAIN_SET
  (3D, 4.8M U-Net, 1.5 mm, 96^3 patches, 60 iterations, about 70 s here) on the sample CT: a briefly
  trained network whose output is smooth organ-like regions, as a real model's is;
* ``random``: fixed random weights (seed 0), 4 classes. Their output is voxel-scale noise
  (99% of voxels sit on a label boundary), a worst case for inversion and compression.

Baseline ("plain MONAI"): LoadImaged -> EnsureChannelFirstd -> Orientationd(RAS) ->
Spacingd(1.5) -> ScaleIntensityRanged -> sliding_window_inference -> softmax -> Invertd ->
argmax -> SaveImage, all MONAI defaults otherwise.

Each side runs as its own process (imports included in wall time and peak RSS, measured with
os.wait4); the in-process pipeline time excludes imports, and the network-forward time is summed
by a forward hook. Median of --repeats runs. Writes bench/results/infer_vs_monai.{json,md}.

    .venv/bin/python bench/infer_vs_monai.py --shape 512 512 300 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench/.cache"
RESULTS = ROOT / "bench/results"
SPACING = (1.5, 1.5, 1.5)
WINDOW = (-200.0, 300.0)
ROI = (96, 96, 96)
SW_BATCH = 2
TRAIN_SET = ["data.root=bench/.cache/demo_data/dataset_a.json", "model.spatial_dims=3",
             "model.kwargs={}", "preprocess.spacing=[1.5,1.5,1.5]", "augment.num_samples=2",
             "train.patch_size=[96,96,96]", "train.batch_size=1", "train.epochs=6",
             "train.iterations_per_epoch=10", "train.output_dir=bench/.cache/infer_unet",
             "inference.roi_size=[96,96,96]", "inference.sw_batch_size=2"]


def trained_bundle(overlap: float) -> Path:
    """The briefly trained 4.8M U-Net (cached), its bundle's overlap set to ``overlap``."""
    from medseg.config import load_config
    from medseg.demo import prepare_training_data
    from medseg.engine.train import train

    prepare_training_data(CACHE / "demo_data")  # the sample CTs as configs/demo.yaml reads them
    cfg = load_config(ROOT / "configs/demo.yaml", [*TRAIN_SET, f"inference.overlap={overlap}"])
    best = ROOT / cfg.train.output_dir / "best.safetensors"
    if not best.exists():
        train(cfg, progress=False)
    return best


def prepare(shape: tuple[int, int, int], overlap: float) -> tuple[Path, Path]:
    """Write the resampled CT and the bundle (cached)."""
    import nibabel as nib
    import numpy as np
    import torch
    from scipy import ndimage

    from medseg.config import InferenceConfig, PreprocessConfig
    from medseg.models.bundle import BundleMeta, NetworkSpec, save_bundle
    from medseg.models.registry import build_network

    CACHE.mkdir(parents=True, exist_ok=True)
    ct_path = CACHE / f"ct_{'x'.join(map(str, shape))}.nii.gz"
    if not ct_path.exists():
        src = nib.load(str(ROOT / "data_samples/totalsegmentator/example_ct.nii.gz"))
        arr = np.asarray(src.dataobj, dtype=np.float32)
        factors = [t / s for t, s in zip(shape, arr.shape, strict=True)]
        big = ndimage.zoom(arr, factors, order=1).astype(np.int16)
        aff = src.affine.copy()
        aff[:3, :3] = src.affine[:3, :3] @ np.diag([1 / f for f in factors])
        nib.save(nib.Nifti1Image(big, aff), str(ct_path))
    bundle = CACHE / f"unet_random_overlap{overlap}.safetensors"
    if not bundle.exists():
        torch.manual_seed(0)
        net = build_network("unet", 3, 1, 4)
        meta = BundleMeta(
            medseg_version="0.1.0",
            network=NetworkSpec(name="unet", spatial_dims=3, in_channels=1, out_channels=4),
            labels={1: "a", 2: "b", 3: "c"}, modality="CT",
            preprocess=PreprocessConfig(spacing=SPACING, intensity={"mode": "ct",
                                                                    "window": WINDOW}),
            inference=InferenceConfig(roi_size=ROI, overlap=overlap, sw_batch_size=SW_BATCH))
        save_bundle(bundle, net, meta)
    return ct_path, bundle


def _forward_timer(net):  # type: ignore[no-untyped-def]
    acc = {"s": 0.0, "t0": 0.0}
    net.register_forward_pre_hook(lambda *_: acc.__setitem__("t0", time.perf_counter()))
    net.register_forward_hook(
        lambda *_: acc.__setitem__("s", acc["s"] + time.perf_counter() - acc["t0"]))
    return acc


def run_ours(ct: Path, bundle: Path, out: Path) -> dict[str, float]:
    import torch

    from medseg import io
    from medseg.engine.infer import Segmenter

    t0 = time.perf_counter()
    seg = Segmenter(bundle, device="cpu")
    acc = _forward_timer(seg.net)
    image = io.read(ct)
    mask = seg.predict(image)
    io.write(mask, out, reference=image)
    return {"pipeline_s": time.perf_counter() - t0, "forward_s": acc["s"],
            "threads": torch.get_num_threads()}


def run_monai(ct: Path, bundle: Path, out: Path) -> dict[str, float]:
    import torch
    from monai import transforms as mt
    from monai.inferers import sliding_window_inference

    from medseg.models.bundle import load_bundle

    t0 = time.perf_counter()
    net, meta = load_bundle(bundle)
    acc = _forward_timer(net)
    pre = mt.Compose([
        mt.LoadImaged("image"), mt.EnsureChannelFirstd("image"),
        mt.Orientationd("image", axcodes="RAS"),
        mt.Spacingd("image", pixdim=SPACING, mode="bilinear"),
        mt.ScaleIntensityRanged("image", WINDOW[0], WINDOW[1], 0.0, 1.0, clip=True)])
    d = pre({"image": str(ct)})
    with torch.no_grad():
        logits = sliding_window_inference(d["image"][None], ROI, SW_BATCH, net,
                                          overlap=meta.inference.overlap,
                                          mode="gaussian")
    d["pred"] = torch.softmax(logits[0], 0)
    post = mt.Compose([
        mt.Invertd("pred", transform=pre, orig_keys="image", nearest_interp=False),
        mt.AsDiscreted("pred", argmax=True),
        mt.SaveImaged("pred", output_dir=str(out.parent / "monai_out"), output_postfix="seg",
                      separate_folder=False, output_dtype="uint8", resample=False)])
    post(d)
    saved = out.parent / "monai_out" / f"{ct.name[:-7]}_seg.nii.gz"
    saved.replace(out)
    return {"pipeline_s": time.perf_counter() - t0, "forward_s": acc["s"],
            "threads": torch.get_num_threads()}


def _child(side: str, ct: Path, bundle: Path, out: Path) -> dict[str, float]:
    """Run one side in a fresh process; wall time and peak RSS of that process."""
    cmd = [sys.executable, __file__, "--child", side, str(ct), str(bundle), str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    text = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise RuntimeError(f"{side} failed with status {status}")
    stats = json.loads(text.strip().splitlines()[-1])
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, **stats}


def _dice(a_path: Path, b_path: Path) -> dict[str, float]:
    import nibabel as nib
    import numpy as np

    a = np.asarray(nib.load(str(a_path)).dataobj).squeeze()
    b = np.asarray(nib.load(str(b_path)).dataobj).squeeze()
    out = {}
    for c in sorted((set(np.unique(a)) | set(np.unique(b))) - {0}):
        x, y = a == c, b == c
        s = x.sum() + y.sum()
        out[str(c)] = float(2 * (x & y).sum() / s) if s else 1.0
    out["identical_voxels"] = float((a == b).mean())
    return out


def _table(res: dict) -> str:  # type: ignore[type-arg]
    o, m = res["ours"], res["monai"]
    rows = [
        "| | medseg Segmenter | plain MONAI | ratio |", "|---|---|---|---|",
        f"| wall time, whole process (s) | {o['wall_s']:.1f} | {m['wall_s']:.1f} | "
        f"{res['ratio_wall']:.2f} |",
        f"| peak RSS, whole process (MB) | {o['peak_rss_mb']:.0f} | {m['peak_rss_mb']:.0f} | "
        f"{res['ratio_rss']:.2f} |",
        f"| in-process pipeline (s) | {o['pipeline_s']:.1f} | {m['pipeline_s']:.1f} | |",
        f"| network forward (s) | {o['forward_s']:.1f} | {m['forward_s']:.1f} | |",
        f"| forward share of pipeline | {res['forward_share_ours']:.0%} | "
        f"{m['forward_s'] / m['pipeline_s']:.0%} | |",
    ]
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", type=int, nargs=3, default=[512, 512, 300])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", nargs=4)
    ap.add_argument("--weights", choices=("trained", "random"), default="trained")
    ap.add_argument("--overlap", type=float, default=0.5)
    args = ap.parse_args()
    from medseg.io.atomic import write_text_atomic
    if args.child:
        side, ct, bundle, out = args.child
        fn = run_ours if side == "ours" else run_monai
        print(json.dumps(fn(Path(ct), Path(bundle), Path(out))))
        return
    shape = tuple(args.shape)
    ct, bundle = prepare(shape, args.overlap)  # type: ignore[arg-type]
    if args.weights == "trained":
        bundle = trained_bundle(args.overlap)
    runs: dict[str, list[dict[str, float]]] = {"ours": [], "monai": []}
    outs = {s: CACHE / f"mask_{s}.nii.gz" for s in runs}
    for _ in range(args.repeats):
        for side in ("monai", "ours"):
            runs[side].append(_child(side, ct, bundle, outs[side]))
    med = {s: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for s, rs in runs.items()}
    res = {
        "input": f"example_ct.nii.gz resampled to {shape} (int16 NIfTI, RAS)",
        "model": f"MONAI UNet 4.8M params, {args.weights} weights, ROI 96^3, "
                 f"overlap {args.overlap}",
        "weights": args.weights, "overlap": args.overlap,
        "cpu_threads": med["ours"]["threads"], "repeats": args.repeats,
        "ours": med["ours"], "monai": med["monai"], "runs": runs,
        "ratio_wall": med["ours"]["wall_s"] / med["monai"]["wall_s"],
        "ratio_rss": med["ours"]["peak_rss_mb"] / med["monai"]["peak_rss_mb"],
        "forward_share_ours": med["ours"]["forward_s"] / med["ours"]["pipeline_s"],
        "dice_ours_vs_monai": _dice(outs["ours"], outs["monai"]),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "infer_vs_monai" if args.weights == "trained" else "infer_vs_monai_random"
    write_text_atomic(RESULTS / f"{stem}.json", json.dumps(res, indent=1))
    md = (f"# medseg predict vs plain MONAI recipe\n\n{res['input']}; {res['model']}; "
          f"median of {args.repeats} runs, {res['cpu_threads']} torch threads.\n\n"
          f"{_table(res)}\n\nMask agreement (Dice per class): {res['dice_ours_vs_monai']}\n")
    write_text_atomic(RESULTS / f"{stem}.md", md)
    print(md)


if __name__ == "__main__":
    main()
