"""Evaluate the demo CT-organ model on the held-out sample case.

Training (configs/demo.yaml) sees only data_samples/totalsegmentator/example_ct.nii.gz. This
script segments the *other* real CT in data_samples (the 20-slice JPEG 2000 DICOM series
example_ct_dicom, 512x512x20 @ 0.98x0.98x2 mm) and compares with TotalSegmentator's labels for it
(example_seg_dicom.nii.gz, pseudo ground truth: model predictions, stored LAS; compared through
world coordinates). Kidneys are absent from that slab, so only spleen and liver are scored.

    .venv/bin/python bench/demo_model.py runs/demo/best.safetensors
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
TS = ROOT / "data_samples/totalsegmentator"
#: demo label value -> TotalSegmentator value
TS_VALUE = {1: 1, 2: 2, 3: 3, 4: 5}


def main(bundle: str) -> None:
    from medseg import io
    from medseg.engine.infer import Segmenter
    from medseg.io.atomic import write_text_atomic

    image = io.read(TS / "example_ct_dicom")
    ref = io.read(TS / "example_seg_dicom.nii.gz", label=True)
    ijk = np.indices(image.shape).reshape(3, -1).T
    ref_on_image = ndimage.map_coordinates(
        ref.array, ref.world_to_index(image.index_to_world(ijk)).T, order=0, cval=0
    ).reshape(image.shape)
    seg = Segmenter(bundle, device="cpu")
    t0 = time.perf_counter()
    pred = seg.predict(image)
    seconds = time.perf_counter() - t0
    assert not isinstance(pred, tuple)
    scores = {}
    for value, name in seg.labels.items():
        a, b = pred.array == value, ref_on_image == TS_VALUE[value]
        if b.sum() == 0:
            continue
        scores[name] = round(float(2 * (a & b).sum() / (a.sum() + b.sum())), 4)
    res = {"bundle": str(bundle), "bundle_bytes": Path(bundle).stat().st_size,
           "case": "example_ct_dicom (held out)", "dice": scores,
           "predict_seconds_cpu": round(seconds, 2)}
    out = ROOT / "bench/results"
    write_text_atomic(out / "demo_model.json", json.dumps(res, indent=1))
    md = ("# Demo CT-organ model on the held-out sample CT\n\n"
          "Trained by `medseg train --config configs/demo.yaml` on example_ct.nii.gz only; "
          "scored against TotalSegmentator's labels (pseudo ground truth) of the other sample CT "
          "(20-slice DICOM series).\n\n| label | Dice |\n|---|---|\n"
          + "".join(f"| {k} | {v:.3f} |\n" for k, v in scores.items())
          + f"\nBundle size {res['bundle_bytes'] / 1e6:.2f} MB; prediction "
            f"{seconds:.1f} s on this CPU.\n")
    write_text_atomic(out / "demo_model.md", md)
    print(md)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "runs/demo/best.safetensors"))
