"""Pack a finetune config's training volumes into one ``.npz`` for a GPU machine.

The lent GPU machine has torch but not SimpleITK/nibabel (and no package index), so the volumes
are read here, with medseg's readers and the same label conforming as ``medseg finetune``
(:func:`medseg.engine.prompt_train.load_sources`), and shipped as arrays;
``bench/gpu/finetune_packed.py`` trains from them there. Integral images are stored as int16
(exact), others as float32.

    .venv/bin/python bench/gpu/pack_sources.py --config configs/lite_sam/06_gpu_encoder.yaml \\
        --out .gpu/sources.npz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from medseg.engine.prompt_config import load_finetune_config
from medseg.engine.prompt_train import load_sources
from medseg.io.atomic import atomic_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    sources = load_sources(load_finetune_config(args.config))
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for i, v in enumerate(sources):
        img = v.image
        exact = bool(np.all(img == np.round(img))) and img.min() >= -32768 and img.max() < 32768
        arrays[f"image{i}"] = img.astype(np.int16) if exact else img
        arrays[f"label{i}"] = v.label.astype(np.uint8 if v.label.max() < 256 else np.int32)
        meta.append({"name": v.name, "labels": {str(k): n for k, n in v.labels.items()},
                     "modality": v.modality, "spacing": list(v.spacing), "weight": v.weight,
                     "axes": list(v.axes)})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, meta=np.array(json.dumps(meta)), **arrays)
    print(f"{len(sources)} sources -> {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
