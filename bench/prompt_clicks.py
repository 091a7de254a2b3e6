"""Click-only prompts (no box) of the lite model: shipped decoding against baselines.

Structures of bench/prompt_cases.py (``--structures validation``: spleen, gallbladder,
urinary bladder, never sampled in training, used to choose the recipe's click settings;
``test``: the held-out structures). Every axial slice with >= 50 px of the structure; prompts:
1 click at its most interior pixel (maximum of the distance transform), or that click + 2
random positive pixels (seeded). Compared in the same run on the same clicks:

* ``shipped``: ``PromptSession.predict(points=...)`` (a square RoI of the recipe's
  ``click_square`` of the input around the clicks, then a pass on the first mask's box grown
  by ``click_grow``);
* ``square only``: the first pass alone;
* ``GrabCut``: cv2.grabCut initialised with the same square (the classical in-box baseline of
  bench/prompt_accuracy.py). It never sees more than the square, while the shipped path
  grows its box: a weak baseline for structures larger than the square.

    .venv/bin/python bench/prompt_clicks.py [--structures validation|test] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prompt_cases as pc

from medseg.engine.prompt import PromptSession
from medseg.io.atomic import write_text_atomic
from medseg.models.lite_sam import LiteSam


def _clicks(gt: np.ndarray, n: int, seed: int) -> list[tuple[int, int, bool]]:
    x, y = np.unravel_index(np.argmax(ndimage.distance_transform_edt(gt)), gt.shape)
    out = [(int(x), int(y), True)]
    if n > 1:
        xs, ys = np.nonzero(gt)
        for j in np.random.default_rng(seed).choice(len(xs), n - 1, replace=False):
            out.append((int(xs[j]), int(ys[j]), True))
    return out


def _square_only(session: PromptSession, k: int, clicks: list[tuple[int, int, bool]]
                 ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The first pass alone, and its square box in slice voxels (for GrabCut)."""
    net = session.model.sam
    assert isinstance(net, LiteSam)
    xy = np.array([(x, y) for x, y, _ in clicks], float)
    mp = torch.as_tensor(session.resize.points_to_model(xy), dtype=torch.float32)[None]
    pts = (mp, torch.ones(1, len(clicks)))
    emb = session.embedding(k)
    with torch.inference_mode():
        box = net._prompt_box(pts, None, 1, emb.device, session.model.recipe.click_square)
        low, _ = net.roi_decode(emb, box, pts)
    sx, sy = session.resize.scale_xy
    b = (box[0].numpy() / np.array([sx, sy, sx, sy])).round().astype(int)
    nx, ny = session.slice_shape
    vbox = (int(np.clip(b[0], 0, nx - 1)), int(np.clip(b[1], 0, ny - 1)),
            int(np.clip(b[2], 0, nx - 1)), int(np.clip(b[3], 0, ny - 1)))
    return session.low_res_to_mask(low[0, 0]), vbox


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--structures", choices=("validation", "test"), default="validation")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    session = PromptSession("lite")
    rows: dict[str, dict[str, list[float]]] = {}
    for case in pc.cases(args.structures):
        session.set_volume(case.image, axis=pc.AXIS)
        areas = case.mask.sum(axis=(0, 1))
        for n in (1, 3):
            r = rows.setdefault(f"{n} click{'s' if n > 1 else ''}", {})
            for k in np.flatnonzero(areas >= pc.MIN_AREA):
                gt = case.mask[..., k]
                clicks = _clicks(gt, n, int(k))
                shipped, _ = session.predict(int(k), points=clicks)
                first, vbox = _square_only(session, int(k), clicks)
                base = pc.grabcut(pc.u8(session, int(k)), vbox)
                for name, m in (("shipped", shipped), ("square only", first),
                                ("GrabCut in the square", base)):
                    r.setdefault(name, []).append(pc.dice(m, gt))
        print(case.name, flush=True)
    summary = {p: {m: {"median_dice": float(np.median(v)), "slices": len(v)}
                   for m, v in r.items()} for p, r in rows.items()}
    better = {p: int(np.sum(np.array(r["shipped"]) > np.array(r["GrabCut in the square"])))
              for p, r in rows.items()}
    doc = {"structures": args.structures, "summary": summary, "shipped_better_than_grabcut":
           better, "dice": rows}
    stem = pc.OUT / f"prompt_clicks_{args.structures}"
    write_text_atomic(stem.with_suffix(".json"), json.dumps(doc, indent=1) + "\n")
    lines = [f"# Click-only prompts, {args.structures} structures", "",
             "`bench/prompt_clicks.py`: every axial slice with >= 50 px; pooled median 2D Dice.",
             "", "| prompt | slices | shipped | square only | GrabCut in the square | "
             "shipped better than GrabCut |", "|---|---|---|---|---|---|"]
    for p, s in summary.items():
        lines.append(f"| {p} | {s['shipped']['slices']} | {s['shipped']['median_dice']:.3f} | "
                     f"{s['square only']['median_dice']:.3f} | "
                     f"{s['GrabCut in the square']['median_dice']:.3f} | "
                     f"{better[p]}/{s['shipped']['slices']} |")
    write_text_atomic(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
