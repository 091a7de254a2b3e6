"""CUDA check and timings of the promptable runtime on a lent GPU machine.

Runs the prompt session (box prompt, 3D propagation) with the shipped lite weights on CPU and on
CUDA over the same 100 axial slices of the TotalSegmentator example CT (read from the volumes
packed by ``bench/gpu/pack_sources.py``: the GPU machine has no SimpleITK/nibabel) and reports
the Dice between the CPU and CUDA masks, plus CUDA latencies: slice embedding, prompt-to-mask,
propagation through all 100 slices (cold cache, every stop rule off), and SAM ViT-B's
embedding (random weights in the official layout) as the baseline. Medians of several runs.

    python3 bench/gpu/cuda_check.py --sources .gpu/sources.npz --out $OUT/cuda_check.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from finetune_packed import unpack  # same folder (run as a script)

from medseg.engine.prompt import PromptSession
from medseg.engine.propagate import Propagator
from medseg.models.promptable import load_promptable
from medseg.volume import Volume

KEY, N = 6, 100
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from prompt_latency import no_stop_config  # noqa: E402  (bench/, the CPU latency bench)

NO_STOP = no_stop_config()


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _ms(fn: Callable[[int], object], n: int) -> float:
    out = []
    for i in range(n):
        _sync()
        t = time.perf_counter()
        fn(i)
        _sync()
        out.append(time.perf_counter() - t)
    return round(1000 * statistics.median(out), 2)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of this script")
    ap.add_argument("--model", default="lite",
                    help="lite (the weights in medseg/weights/) or a .safetensors path")
    args = ap.parse_args()
    dev_t = args.device
    src = next(v for v in unpack(args.sources) if v.name.endswith("example_ct.nii.gz"))
    liver_value = next(k for k, n in src.labels.items() if n == "liver")
    img = src.image[:, :, KEY:KEY + N].copy()
    liver = src.label[:, :, KEY:KEY + N] == liver_value
    key = int(np.argmax(liver.sum(axis=(0, 1))))
    xs, ys = np.nonzero(liver[:, :, key])
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    vol = Volume(img, src.spacing, (0.0, 0.0, 0.0), np.eye(3), modality="CT")
    gpu = torch.cuda.get_device_name(0) if dev_t == "cuda" else "none"
    res: dict[str, object] = {"model": args.model, "gpu": gpu, "torch": torch.__version__,
                              "slices": N, "key_slice": key, "box": box}
    masks = {}
    for dev in ("cpu", dev_t):
        s = PromptSession(load_promptable(args.model, device=dev), cache_bytes=2**31)
        s.set_volume(vol)
        mask2d, score = s.predict(key, box=box)
        volume = Propagator(s, NO_STOP).propagate({key: mask2d}).mask.array > 0
        masks[dev] = (np.asarray(mask2d, bool), volume, float(score))
        if dev == dev_t:
            s.cache.clear()
            res["cuda_embed_ms"] = _ms(lambda i, s=s: s.embedding((key + 1 + i) % N), 20)
            res["cuda_prompt_to_mask_ms"] = _ms(
                lambda i, s=s: s.predict(key, box=box), 20)

            def prop(i: int, s: PromptSession = s) -> None:
                s.set_volume(vol)
                Propagator(s, NO_STOP).propagate({key: s.predict(key, box=box)[0]})
            res["cuda_propagate_100_ms"] = _ms(prop, 5)
    res["key_slice_dice_cpu_vs_cuda"] = round(_dice(masks["cpu"][0], masks[dev_t][0]), 4)
    res["volume_dice_cpu_vs_cuda"] = round(_dice(masks["cpu"][1], masks[dev_t][1]), 4)
    res["score_cpu_cuda"] = [round(masks["cpu"][2], 4), round(masks[dev_t][2], 4)]
    res["liver_dice_cuda_no_stop_rules"] = round(_dice(masks[dev_t][1], liver), 4)
    from medseg.models.sam_modules import VIT_B, build_sam_vit
    with tempfile.TemporaryDirectory() as tmp:
        if dev_t == "cpu":  # dry run: ViT-B takes ~27 s per slice on this CPU
            args.out.write_text(json.dumps(res, indent=1) + "\n")
            print(json.dumps(res))
            return
        torch.manual_seed(0)
        path = Path(tmp) / "sam_vit_b_random.pth"
        torch.save(build_sam_vit(VIT_B).state_dict(), path)
        s = PromptSession(load_promptable(path, device=dev_t), cache_bytes=2**31)
        s.set_volume(vol)
        res["cuda_sam_vit_b_embed_ms"] = _ms(lambda i: s.embedding(i), 10)
        s.cache.clear()
        s.embedding(key)
        res["cuda_sam_vit_b_prompt_to_mask_ms"] = _ms(
            lambda i: s.predict(key, box=box), 20)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
