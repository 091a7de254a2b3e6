"""Box-prompted accuracy of a promptable model on structures never used in training.

For every axial slice (array axis 2) with >= 50 px of a structure (``bench/prompt_cases.py``),
the prompt is the structure's tight box with independent uniform integer jitter per side,
under two protocols in the same run:

* ``px``: +-5 voxels per side (issue 7's protocol; on a 3 mm kidney of ~15 voxels a side moves
  by up to a third of the organ);
* ``rel``: +-10 % of the box's side per edge, at least 1 voxel (issue 20's: relative to the
  structure).

2D: Dice per slice, and the *in-box ceiling* (the Dice of the ground truth cut to the jittered
box: the best a segmenter that marks nothing outside the box can reach). Paired baseline on
the same boxes: GrabCut on the slice windowed as the model sees it. 3D: one jittered box on the
key slice (largest section), then :class:`medseg.engine.propagate.Propagator` (defaults);
classical 3D baseline: GrabCut slice by slice. Targets (issue 20) in the last table.

    .venv/bin/python bench/prompt_accuracy.py [--structures test|validation] [--draws 5]
        [--threads 2] [--max-slices N] [--model lite] [--recipe mask_threshold=1.5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prompt_cases as pc
import prompt_report

from medseg.engine.prompt import PromptSession
from medseg.engine.propagate import PropagationConfig, Propagator
from medseg.io.atomic import write_text_atomic

SEED, PX_JITTER, REL_JITTER = 0, 5, 0.10
Jitter = Callable[[np.ndarray, np.random.Generator], pc.Box]


def _clip_sorted(m2: np.ndarray, box: tuple[int, int, int, int]) -> pc.Box:
    x0, y0, x1, y1 = box
    x0, x1 = sorted((int(np.clip(x0, 0, m2.shape[0] - 1)), int(np.clip(x1, 0, m2.shape[0] - 1))))
    y0, y1 = sorted((int(np.clip(y0, 0, m2.shape[1] - 1)), int(np.clip(y1, 0, m2.shape[1] - 1))))
    return x0, y0, x1, y1


def px_box(m2: np.ndarray, rng: np.random.Generator) -> pc.Box:
    """Tight box of ``m2 [x, y]`` (inclusive voxel indices), +-5 voxels per side."""
    x0, y0, x1, y1 = pc.tight_box(m2)
    d = rng.integers(-PX_JITTER, PX_JITTER + 1, size=4)
    return _clip_sorted(m2, (x0 + d[0], y0 + d[1], x1 + d[2], y1 + d[3]))


def rel_box(m2: np.ndarray, rng: np.random.Generator) -> pc.Box:
    """Tight box of ``m2``, each edge moved by up to 10 % of its side (at least 1 voxel)."""
    x0, y0, x1, y1 = pc.tight_box(m2)
    jx = max(1, round(REL_JITTER * (x1 - x0 + 1)))
    jy = max(1, round(REL_JITTER * (y1 - y0 + 1)))
    d = [int(rng.integers(-j, j + 1)) for j in (jx, jy, jx, jy)]
    return _clip_sorted(m2, (x0 + d[0], y0 + d[1], x1 + d[2], y1 + d[3]))


PROTOCOLS: dict[str, Jitter] = {"px": px_box, "rel": rel_box}
DESCRIBE = {"px": "tight box +-5 voxels per side",
            "rel": "tight box +-10 % of its side per edge (>= 1 voxel)"}


def in_box_ceiling(m2: np.ndarray, box: pc.Box) -> float:
    """Dice of ``m2`` cut to ``box``: the best a segmenter that marks nothing outside the box
    can reach on this slice (a property of the protocol's jitter, no model involved)."""
    x0, y0, x1, y1 = box
    inside = np.zeros_like(m2, dtype=bool)
    inside[x0:x1 + 1, y0:y1 + 1] = True
    return pc.dice(np.logical_and(m2, inside), m2)


def slices_2d(case: pc.Case, session: PromptSession, jitter: Jitter,
              rng: np.random.Generator, max_slices: int | None) -> list[dict[str, float]]:
    areas = case.mask.sum(axis=(0, 1))
    ks = [int(k) for k in np.flatnonzero(areas >= pc.MIN_AREA)]
    if max_slices and len(ks) > max_slices:
        ks = [ks[i] for i in np.linspace(0, len(ks) - 1, max_slices).round().astype(int)]
    rows = []
    for k in ks:
        gt = case.mask[..., k]
        box = jitter(gt, rng)
        pred, score = session.predict(k, box=box)
        base = pc.grabcut(pc.u8(session, k), box)
        rows.append({"slice": k, "area": int(gt.sum()), "lite": pc.dice(pred, gt),
                     "grabcut": pc.dice(base, gt), "score": score,
                     "in_box_ceiling": in_box_ceiling(gt, box)})
    return rows


def propagated(session: PromptSession, case: pc.Case, box: pc.Box,
               config: PropagationConfig) -> tuple[np.ndarray, float]:
    """3D mask of a key-slice box + propagation, and the propagation's seconds."""
    key = pc.key_slice(case)
    mask, score = session.predict(key, box=box)
    t0 = time.perf_counter()
    res = Propagator(session, config).propagate({key: mask}, key_scores={key: score})
    return np.asarray(res.mask.array) > 0, time.perf_counter() - t0


def case_3d(case: pc.Case, session: PromptSession, jitter: Jitter, rng: np.random.Generator,
            config: PropagationConfig, extra: list[pc.Box]) -> dict[str, object]:
    key = pc.key_slice(case)
    box = jitter(case.mask[..., key], rng)
    pred, dt = propagated(session, case, box, config)
    t1 = time.perf_counter()
    base = pc.grabcut_3d(session, key, box)
    dtb = time.perf_counter() - t1
    n_lite = max(1, int(pred.any(axis=(0, 1)).sum()))
    n_base = max(1, int(base.any(axis=(0, 1)).sum()))
    draws = [pc.dice(pred, case.mask)] + [
        pc.dice(propagated(session, case, b, config)[0], case.mask) for b in extra]
    return {"key_slice": key, "dice_lite": draws[0], "dice_grabcut": pc.dice(base, case.mask),
            "slices_segmented_lite": n_lite, "slices_segmented_grabcut": n_base,
            "s_per_100_slices_lite": 100 * dt / n_lite,
            "s_per_100_slices_grabcut": 100 * dtb / n_base,
            "draws_lite": draws, "dice_lite_mean_draws": float(np.mean(draws))}


def extra_boxes(case: pc.Case, index: int, n: int, protocol: str) -> list[pc.Box]:
    """``n`` more key-slice boxes of structure number ``index`` from a generator of their own,
    so the published one-box figures keep their boxes."""
    rng = np.random.default_rng([SEED, (1000 if protocol == "px" else 2000) + index])
    return [PROTOCOLS[protocol](case.mask[..., pc.key_slice(case)], rng) for _ in range(n)]


def latency(session: PromptSession, case: pc.Case) -> dict[str, float]:
    k = pc.key_slice(case)
    x = session.model_input(k)
    emb_t, dec_t = [], []
    for _ in range(7):
        t = time.perf_counter()
        emb = session.model.embed(x)
        emb_t.append(time.perf_counter() - t)
    box = session.resize.box_to_model(px_box(case.mask[..., k], np.random.default_rng(1)))
    for _ in range(15):
        t = time.perf_counter()
        session.model.decode(emb, box=box)
        dec_t.append(time.perf_counter() - t)
    return {"embed_ms": 1000 * statistics.median(emb_t),
            "prompt_to_mask_ms": 1000 * statistics.median(dec_t)}


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-slices", type=int, default=None, help="per structure (2D)")
    ap.add_argument("--model", default="lite")
    ap.add_argument("--structures", choices=("test", "validation"), default="test")
    ap.add_argument("--out-stem", default=None, help="bench/results/<stem>.json/.md")
    ap.add_argument("--draws", type=int, default=1,
                    help="3D: key-slice boxes per structure; a structure's 3D figure is also "
                         "given as the mean over them")
    ap.add_argument("--recipe", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a recipe field of the model (JSON value), e.g. "
                         "mask_threshold=1.5 (calibration on the validation structures)")
    args = ap.parse_args()
    if args.draws < 1:
        raise SystemExit("--draws must be >= 1")
    return args


def main() -> None:
    args = _args()
    torch.set_num_threads(args.threads)
    session = PromptSession(args.model)
    if args.recipe:
        fields = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.recipe)}
        session.model.recipe = session.model.recipe.with_overrides(fields)
    prop = PropagationConfig()
    cases = pc.cases(args.structures)
    rngs = {p: np.random.default_rng(SEED if p == "px" else [SEED, 1]) for p in PROTOCOLS}
    results: dict[str, dict[str, dict]] = {p: {} for p in PROTOCOLS}
    for i, case in enumerate(cases):
        session.set_volume(case.image, axis=pc.AXIS)
        for p, jitter in PROTOCOLS.items():
            rows = slices_2d(case, session, jitter, rngs[p], args.max_slices)
            d3 = case_3d(case, session, jitter, rngs[p], prop,
                         extra_boxes(case, i, args.draws - 1, p))
            results[p][case.name] = {"group": case.group, "slices": rows,
                                     **prompt_report.summary(rows), "3d": d3}
        print(prompt_report.case_line(case.name, results), flush=True)
    session.set_volume(cases[0].image, axis=pc.AXIS)
    model = session.model
    doc = {"model": args.model, "name": model.name, "version": model.version,
           "recipe": model.recipe.to_dict(), "structure_set": args.structures,
           "propagation": dataclasses.asdict(prop), "draws_3d": args.draws, "seed": SEED,
           "baseline": "cv2.grabCut rect init, 5 iterations (Otsu in box if empty)",
           "threads": args.threads, "cpu": platform.processor(),
           "brats_present": pc.BRATS.is_dir(), "latency": latency(session, cases[0]),
           "protocols": {p: prompt_report.protocol_doc(r, DESCRIBE[p])
                         for p, r in results.items()}}
    stem = args.out_stem or ("prompt_accuracy" if args.structures == "test"
                             else "prompt_validation")
    pc.OUT.mkdir(parents=True, exist_ok=True)
    write_text_atomic(pc.OUT / f"{stem}.json", json.dumps(doc, indent=1) + "\n")
    md = prompt_report.markdown(doc)
    write_text_atomic(pc.OUT / f"{stem}.md", md)
    print(md)


if __name__ == "__main__":
    main()
