"""``medseg finetune`` from volumes packed by ``bench/gpu/pack_sources.py`` (GPU machine).

Same config, same training loop (:func:`medseg.engine.prompt_train.run_finetune`); only the
volumes come from the ``.npz`` instead of the image/label files. ``--set`` overrides as in the
CLI (e.g. ``train.output_dir=$OUT/run``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from medseg.data.prompt_slices import LabelledVolume
from medseg.engine.prompt_config import load_finetune_config
from medseg.engine.prompt_train import run_finetune


def unpack(path: Path) -> list[LabelledVolume]:
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        return [LabelledVolume(
            name=m["name"], image=z[f"image{i}"].astype(np.float32),
            label=z[f"label{i}"].astype(np.int32),
            labels={int(k): n for k, n in m["labels"].items()}, modality=m["modality"],
            spacing=tuple(m["spacing"]), weight=m["weight"], axes=tuple(m["axes"]))
            for i, m in enumerate(meta)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--sources", type=Path, required=True)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    cfg = load_finetune_config(args.config, args.overrides)
    res = run_finetune(cfg, sources=unpack(args.sources))
    print(json.dumps({"checkpoint": str(res.checkpoint), "iterations": res.iterations,
                      "seconds": round(res.seconds, 1)}))


if __name__ == "__main__":
    main()
