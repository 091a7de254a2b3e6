"""GPU check (prepared, not yet run: no GPU was lent when it was written): an nnU-Net fixture and
the MONAI bundle fixture through medseg and through their own predictors on CUDA, AMP as each
tool does it (nnUNetPredictor: autocast on CUDA; medseg: fp16 autocast for the network, stitching
on the CPU; monai.bundle: the bundle's ``amp`` setting, false in the fixture), labels compared,
times and peak GPU memory recorded.

Needs the tool venvs on the GPU machine (``make tools-nnunet tools-monai``: their torch must be a
CUDA build there; on a CUDA machine ``pip install torch==2.13.0`` takes one) and runs each tool in
its own process:

    .venv/bin/python bench/gpu/foreign_models_gpu.py [--repeats 3]

Writes bench/results/foreign_models_gpu.{json,md}. Input: the 512x512x300 resampled sample CT
(bench/nnunet_vs_predictor.py's recipe). This is medseg's first sliding-window run on a GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.nnunet_vs_predictor import MODEL, TOOL, agreement, resampled_ct  # noqa: E402
from tests.fixtures.monai_bundle.make_bundle import (  # noqa: E402
    BUNDLE,
    MONAI_PY,
    MONAI_RUN,
    monai_run_args,
)

# each snippet prints one JSON line: wall seconds (in-process) and peak GPU memory
_PEAK = "torch.cuda.max_memory_allocated() / 2**20"
MEDSEG = f"""
import json, sys, time, torch
from medseg import io
from medseg.engine.infer import Segmenter
t = time.perf_counter()
seg = Segmenter(sys.argv[1], device="cuda", folds=["0"] if sys.argv[4] == "nnunet" else None)
img = io.read(sys.argv[2]); io.write(seg.predict(img), sys.argv[3], reference=img)
torch.cuda.synchronize()
print(json.dumps({{"s": time.perf_counter() - t, "peak_gpu_mb": {_PEAK}}}))
"""
NNUNET = f"""
import json, sys, time, torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
t = time.perf_counter()
p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                    device=torch.device("cuda"), verbose=False, allow_tqdm=False)
p.initialize_from_trained_model_folder(sys.argv[1], use_folds=(0,),
                                       checkpoint_name="checkpoint_final.pth")
p.predict_from_files_sequential([[sys.argv[2]]], [sys.argv[3]], save_probabilities=False)
torch.cuda.synchronize()
print(json.dumps({{"s": time.perf_counter() - t, "peak_gpu_mb": {_PEAK}}}))
"""
BUNDLE_RUN = MONAI_RUN.replace("run(", "import json, time, torch; t = time.perf_counter(); run(") \
    + f"; print(json.dumps({{'s': time.perf_counter() - t, 'peak_gpu_mb': {_PEAK}}}))"


def _run(cmd: list[str]) -> dict[str, float]:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    ct = resampled_ct((512, 512, 300))
    py = str(ROOT / ".venv/bin/python")
    res: dict[str, object] = {"input": ct.name}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        ours = [_run([py, "-c", MEDSEG, str(MODEL), str(ct), str(t / "m.nii.gz"), "nnunet"])
                for _ in range(args.repeats)]
        theirs = [_run([str(TOOL), "-c", NNUNET, str(MODEL), str(ct), str(t / "n")])
                   for _ in range(args.repeats)]
        res["nnunet"] = {"medseg": _median(ours), "nnUNetPredictor": _median(theirs),
                         "agreement": agreement(t / "m.nii.gz", t / "n.nii.gz")}
        ours = [_run([py, "-c", MEDSEG, str(BUNDLE), str(ct), str(t / "b.nii.gz"), "monai"])
                for _ in range(args.repeats)]
        theirs = [_run([str(MONAI_PY), "-c", BUNDLE_RUN, *monai_run_args(ct, t / "own")])
                  for _ in range(args.repeats)]
        own = next((t / "own").glob("*_seg.nii.gz"))
        res["monai_bundle"] = {"medseg": _median(ours), "monai.bundle": _median(theirs),
                               "agreement": agreement(t / "b.nii.gz", own)}
    out = ROOT / "bench/results/foreign_models_gpu"
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    rows = ["| model | tool | seconds (in-process) | peak GPU MB |", "|---|---|---|---|"]
    for model in ("nnunet", "monai_bundle"):
        for tool, v in res[model].items():  # type: ignore[attr-defined]
            if tool != "agreement":
                rows.append(f"| {model} | {tool} | {v['s']} | {v['peak_gpu_mb']} |")
        rows.append(f"| {model} | agreement | {res[model]['agreement']} | |")  # type: ignore[index]
    out.with_suffix(".md").write_text("# Foreign models on CUDA\n\n" + "\n".join(rows) + "\n")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
