"""CPU latency of the promptable backends: slice embedding, prompt-to-mask, 3D propagation.

Backends: the lite default (shipped weights when medseg/weights/lite_sam.* exists, else the
same architecture with random weights, which has the same latency) and, as the named baseline,
SAM ViT-B (random weights saved in the official sam_vit_b layout, loaded through
load_promptable, 1024 input). Input: data_samples/totalsegmentator/example_ct.nii.gz
(122 x 101 x 112 CT, 3 mm), axial slices 6..105 (axis 2), key slice = largest liver section,
box = its bounding box (example_seg_fast_force_split label 5).

* embedding: preprocess + image encoder of one slice, median of >= 5 (distinct slices).
* prompt-to-mask: box prompt -> mask at full slice resolution on a cached embedding, median of 20.
* propagation: all 100 slices (key slice + 99 propagated both ways; no stopping rule but an
  empty mask)
  from a cold cache, median of 5 for the lite model. For ViT-B one such run would take minutes,
  so it is the propagation time with a pre-filled cache (measured, median of 3) plus
  100 x its embedding median (stated as "estimated" in the table).

    .venv/bin/python bench/prompt_latency.py [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CT = ROOT / "data_samples/totalsegmentator/example_ct.nii.gz"
SEG = ROOT / "data_samples/totalsegmentator/example_seg_fast_force_split.nii.gz"
KEY, N_PROP = 6, 100

if TYPE_CHECKING:
    from medseg.engine.propagate import PropagationConfig


def no_stop_config() -> PropagationConfig:
    """Propagation with every stop rule off but an empty mask (all slices segmented)."""
    from medseg.engine.propagate import PropagationConfig

    return PropagationConfig(min_score=-1e9, min_area_px=1, min_area_ratio=0.0,
                             max_area_ratio=1e9, max_intensity_drift=None)


def _median(fn: Callable[[int], object], n: int) -> dict[str, object]:
    """Run ``fn(i)`` n times: median wall and process-CPU seconds plus the raw wall times."""
    wall, cpu = [], []
    for i in range(n):
        w0, c0 = time.perf_counter(), time.process_time()
        fn(i)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return {"wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu),
            "runs_wall_s": [round(t, 4) for t in wall], "n": n}


def _load_lite() -> tuple[object, str]:
    from medseg.models.promptable import LITE_STEM, PromptModel, load_promptable

    if LITE_STEM.with_suffix(".safetensors").exists():
        return load_promptable("lite"), f"shipped weights {LITE_STEM.name}.safetensors"
    from medseg.models.lite_sam import build_lite_sam
    from medseg.models.prompt_recipe import lite_recipe

    return (PromptModel(build_lite_sam(), lite_recipe(), name="medseg-lite-sam",
                        version="random", optimize=True),
            "medseg/weights/lite_sam.* not found: lite ARCHITECTURE with random weights "
            "(latency only)")


def _load_vit_b(tmp: Path) -> tuple[object, str]:
    from medseg.models.promptable import load_promptable
    from medseg.models.sam_modules import VIT_B, build_sam_vit

    torch.manual_seed(0)
    path = tmp / "sam_vit_b_random.pth"
    torch.save(build_sam_vit(VIT_B).state_dict(), path)
    return load_promptable(path), "random weights, official sam_vit_b layout, 1024 input"


def bench_backend(model: object, n_embed: int, full_propagation: bool) -> dict[str, object]:
    from medseg import io
    from medseg.engine.prompt import PromptSession
    from medseg.engine.propagate import Propagator
    from medseg.volume import Volume

    image = io.read(CT)
    liver = io.read(SEG).array[:, :, KEY:KEY + N_PROP] == 5
    key = int(np.argmax(liver.sum(axis=(0, 1))))
    xs, ys = np.nonzero(liver[:, :, key])
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    origin = image.index_to_world((0, 0, KEY))  # the same grid, cut to 100 slices
    sub = Volume(image.array[:, :, KEY:KEY + N_PROP].copy(), image.spacing, tuple(origin),
                 image.direction, modality="CT")
    s = PromptSession(model, cache_bytes=2**31)  # type: ignore[arg-type]
    s.set_volume(sub)
    emb = _median(lambda i: s.embedding((key + 1 + i) % N_PROP), n_embed)
    s.embedding(key)
    ptm = _median(lambda i: s.predict(key, box=box), 20)
    click = ((box[0] + box[2]) // 2, (box[1] + box[3]) // 2, True)  # one click, no box
    ptm_click = _median(lambda i: s.predict(key, points=[click]), 20)
    no_stop = no_stop_config()
    reached: list[int] = []

    def propagate(fresh: bool) -> None:
        if fresh:
            s.set_volume(sub)
        mask, _ = s.predict(key, box=box)
        reached.append(len(Propagator(s, no_stop).propagate({key: mask}).masks))

    out: dict[str, object] = {"embed": emb, "prompt_to_mask": ptm,
                              "click_to_mask": ptm_click,
                              "slice_shape": list(s.slice_shape), "key_slice": KEY + key}
    if full_propagation:
        out["propagate_100"] = {**_median(lambda i: propagate(True), 5),
                                "kind": "measured, cold cache"}
    else:
        for k in range(N_PROP):  # pre-fill the cache with one real embedding per slice slot
            s.cache.put((s.epoch, s.axis, k), s.embedding(key))
        warm = _median(lambda i: propagate(False), 3)
        out["propagate_warm"] = warm
        out["propagate_100"] = {
            "wall_s": warm["wall_s"] + N_PROP * emb["wall_s"],  # type: ignore[operator]
            "cpu_s": warm["cpu_s"] + N_PROP * emb["cpu_s"],  # type: ignore[operator]
            "kind": "estimated: warm-cache propagation + 100 x embedding"}
    out["slices_reached"] = reached
    return out


def main() -> None:
    from medseg.io.atomic import write_text_atomic

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lite-only", action="store_true",
                    help="skip the ViT-B baseline (minutes); writes prompt_latency_lite_<N>t.*")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        lite, lite_note = _load_lite()
        results = {"lite": {"note": lite_note, **bench_backend(lite, 7, True)}}
        if not args.lite_only:
            vit, vit_note = _load_vit_b(Path(tmp))
            results["sam_vit_b"] = {"note": vit_note, **bench_backend(vit, 5, False)}
    key = results["lite"]["key_slice"]
    meta = {"input": f"{CT.name} axial slices {KEY}..{KEY + N_PROP - 1} (100), liver box "
                     f"(TotalSegmentator label) on slice {key}",
            "threads": args.threads, "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(), "torch": torch.__version__}
    meta["load_average_end"] = os.getloadavg()
    res = {"meta": meta, "results": results}
    (ROOT / "bench/results").mkdir(exist_ok=True)
    stem = f"prompt_latency_lite_{args.threads}t" if args.lite_only else "prompt_latency"
    write_text_atomic(ROOT / f"bench/results/{stem}.json", json.dumps(res, indent=1))
    write_text_atomic(ROOT / f"bench/results/{stem}.md", _markdown(res))
    print(_markdown(res))


def _markdown(res: dict) -> str:  # type: ignore[type-arg]
    r, m = res["results"], res["meta"]
    lite, vit = r["lite"], r.get("sam_vit_b")
    if vit is None:  # --lite-only
        out = [f"# Lite promptable model: CPU latency, {m['threads']} threads\n",
               f"Input: {m['input']}; torch {m['torch']}, {m['cpu_count']} cores, load "
               f"average {m['load_average'][0]:.1f} -> {m['load_average_end'][0]:.1f}; "
               f"{lite['note']}. Medians.\n", "| step | wall | process CPU |", "|---|---|---|"]
        for name, key, scale in (("slice embedding (ms)", "embed", 1e3),
                                 ("prompt-to-mask, box (ms)", "prompt_to_mask", 1e3),
                                 ("prompt-to-mask, one click (ms)", "click_to_mask", 1e3),
                                 ("propagation, 100 slices (s)", "propagate_100", 1.0)):
            out.append(f"| {name} | {lite[key]['wall_s'] * scale:.1f} | "
                       f"{lite[key]['cpu_s'] * scale:.1f} |")
        return "\n".join(out) + "\n"
    rows = [("slice embedding (ms)", "embed", 1e3),
            ("prompt-to-mask, box (ms)", "prompt_to_mask", 1e3),
            ("prompt-to-mask, one click (ms)", "click_to_mask", 1e3),
            ("propagation, 100 slices (s)", "propagate_100", 1.0)]
    lines = ["# Promptable segmentation: CPU latency\n",
             f"Input: {m['input']}; torch {m['torch']}, {m['threads']} threads on "
             f"{m['cpu_count']} cores. Load average at start {m['load_average'][0]:.1f}, at end "
             f"{m['load_average_end'][0]:.1f}: other jobs shared the CPU, so wall times are "
             "inflated; process CPU time (all threads of this process) is the steadier figure. "
             "Medians; baseline = SAM ViT-B.\n",
             f"- lite: {lite['note']}", f"- SAM ViT-B: {vit['note']}\n",
             "| step | lite wall | lite CPU | ViT-B wall | ViT-B CPU | ViT-B / lite (CPU) |",
             "|---|---|---|---|---|---|"]
    for name, key, scale in rows:
        a, b = lite[key], vit[key]
        lines.append(f"| {name} | {a['wall_s'] * scale:.1f} | {a['cpu_s'] * scale:.1f} | "
                     f"{b['wall_s'] * scale:.1f} | {b['cpu_s'] * scale:.1f} | "
                     f"{b['cpu_s'] / a['cpu_s']:.0f}x |")
    lines += ["", f"Lite propagation: {lite['propagate_100']['kind']}, wall runs "
              f"{lite['propagate_100']['runs_wall_s']} s, slices segmented "
              f"{lite['slices_reached']}. ViT-B propagation: {vit['propagate_100']['kind']} "
              f"(warm part {vit['propagate_warm']['wall_s']:.2f} s wall).",
              f"Slice {lite['slice_shape']} voxels; lite input 256 x 256, ViT-B 1024 x 1024.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
