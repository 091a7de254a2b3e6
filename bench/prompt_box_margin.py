"""How the lite model's 2D Dice depends on how tightly the user draws the box.

For every validation slice with >= 50 px of the structure (bench/prompt_cases.py's
validation set: CT and MR spleen, gallbladder, urinary bladder; the BRATS validation and train
tumours when ../shared/data is present), the box is the structure's tight box grown by ``g``
voxels on every side (negative: shrunk into it), clipped to the slice; median 2D Dice per
group and ``g``. No jitter, no model choice rests on it: it is the guidance in
docs/prompting.md ("Drawing a box").

    .venv/bin/python bench/prompt_box_margin.py [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prompt_cases as pc

from medseg.engine.prompt import PromptSession
from medseg.io.atomic import write_text_atomic

GROWS = (-2, -1, 0, 1, 2, 4, 8)
STEM = "prompt_box_margin_val"


def grown_box(m2: np.ndarray, g: int) -> tuple[int, int, int, int]:
    """Tight box of ``m2 [x, y]`` grown by ``g`` voxels per side (inclusive indices, clipped;
    a side never crosses the structure's centre line)."""
    xs, ys = np.nonzero(m2)
    nx, ny = m2.shape
    cx, cy = int((xs.min() + xs.max()) // 2), int((ys.min() + ys.max()) // 2)
    return (int(np.clip(xs.min() - g, 0, cx)), int(np.clip(ys.min() - g, 0, cy)),
            int(np.clip(xs.max() + g, cx, nx - 1)), int(np.clip(ys.max() + g, cy, ny - 1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    session = PromptSession("lite")
    dice: dict[str, list[list[float]]] = {}
    for case in pc.cases("validation"):
        session.set_volume(case.image, axis=pc.AXIS)
        for k in np.flatnonzero(case.mask.sum(axis=(0, 1)) >= pc.MIN_AREA):
            gt = case.mask[..., int(k)]
            row = [pc.dice(session.predict(int(k), box=grown_box(gt, g))[0], gt)
                   for g in GROWS]
            dice.setdefault(case.group, []).append(row)
        print(case.name, flush=True)
    doc = {"model": "lite", "mask_threshold": session.model.mask_threshold,
           "threads": args.threads, "grow_voxels": list(GROWS),
           "brats_present": pc.BRATS_VAL.is_dir(),
           "groups": {g: {"n_slices": len(rows),
                          "median_dice": [float(x) for x in np.median(np.array(rows), axis=0)]}
                      for g, rows in dice.items()}}
    pc.OUT.mkdir(parents=True, exist_ok=True)
    write_text_atomic(pc.OUT / f"{STEM}.json", json.dumps(doc, indent=1) + "\n")
    md = markdown(doc)
    write_text_atomic(pc.OUT / f"{STEM}.md", md)
    print(md)


def markdown(doc: dict) -> str:
    grows = doc["grow_voxels"]
    lines = ["# Box tightness: 2D Dice of the lite model against the box's margin (validation)",
             "", f"Model `{doc['model']}` (mask threshold {doc['mask_threshold']:g}). Box = the "
             "structure's tight box grown by the margin on every side (negative: cut into "
             "it); median Dice over the slices with >= 50 px. Validation structures of "
             "bench/prompt_cases.py (val_organ = CT, val_organ_mr = MR, val_tumour = BRATS "
             "validation + train FLAIR).", "",
             "| group | slices | " + " | ".join(f"{g:+d} voxels" for g in grows) + " |",
             "|---|---|" + "---|" * len(grows)]
    for g, r in doc["groups"].items():
        lines.append(f"| {g} | {r['n_slices']} | "
                     + " | ".join(f"{x:.3f}" for x in r["median_dice"]) + " |")
    if not doc["brats_present"]:
        lines += ["", "BRATS cases absent (../shared/data): no tumour row."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
