"""Annotation effort measured the way annotators work: a simulated annotator per 3D structure.

On every held-out structure (``bench/prompt_cases.py``, ``--structures test``) the annotator
works through the app's own prompt code (:class:`app.prompt_state.PromptState` on an
:class:`app.annotation.Annotation`, what the prompt panel calls):

1. interaction 1: one box on the key slice (the largest section; the tight box with the
   ``rel`` jitter of ``bench/prompt_accuracy.py``: each edge +-10 % of its side), then
   Propagate;
2. then, until the 3D Dice reaches 0.90 or 20 interactions: it looks at the slice with the
   most wrong voxels and, on it, the largest connected wrong region, and gives the correction
   an annotator would: a new box on that slice when its mask is missing or poor (2D Dice below
   0.5) while the structure is there, or when the largest wrong region is a rim thinner than
   2 voxels (a click cannot point at it) or when a click there did not fix it; else a
   positive click in the middle (distance-transform maximum) of the largest missed region or
   a negative click in the middle of the largest false region (past the structure's ends,
   where a box cannot be drawn, up to two negative clicks). A slice gets at most two boxes;
   then the next worst slice is taken. After
   a propagation the app re-propagates from a corrected slice, so each correction is one
   interaction.

Methods, same annotator and same code: the promptable model (``--model``, the shipped lite
model by default) and the classical baseline, GrabCut per slice (``bench/grabcut_model.py``)
with the same propagation. Reported per structure and pooled (median over a group's
structures): 3D Dice after 1, 3, 5 and 10 interactions, interactions to reach 0.85 and 0.90
(NoC@85, NoC@90; 20 = not reached) and wall time of the model's work.

    .venv/bin/python bench/prompt_robot.py [--threads 2] [--only kidney] [--out-stem NAME]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import prompt_accuracy as pa
import prompt_cases as pc
from grabcut_model import GrabCutModel

from app.annotation import Annotation
from app.prompt_state import PromptState
from medseg.io.atomic import write_text_atomic
from medseg.models.promptable import PromptModel, load_promptable

MAX_STEPS, GOAL, POOR_2D, THIN = 20, 0.90, 0.5, 2.0
AT = (1, 3, 5, 10)


def _interior(region: np.ndarray) -> tuple[int, int, float]:
    """The pixel of ``region`` ``[x, y]`` farthest from its border, and that distance."""
    depth = ndimage.distance_transform_edt(region)
    x, y = np.unravel_index(np.argmax(depth), region.shape)
    return int(x), int(y), float(depth[x, y])


def _largest(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = ndimage.sum(mask, lab, range(1, n + 1))
    return np.asarray(lab == 1 + int(np.argmax(sizes)))


def correction(gt: np.ndarray, pred: np.ndarray, rng: np.random.Generator,
               given: dict[int, list[str]]) -> tuple[int, dict[str, Any]] | None:
    """The annotator's next correction ``(slice, prompt kwargs)`` (module docstring), or None
    when nothing is left to correct. ``given`` lists the prompts given per slice so far: a
    slice that already had a click gets a box next; one with two boxes is left alone."""
    wrong = (gt ^ pred).sum(axis=(0, 1))
    for k in np.argsort(-wrong, kind="stable"):
        k = int(k)
        if wrong[k] == 0:
            return None
        g, p, before = gt[..., k], pred[..., k], given.setdefault(k, [])
        fn, fp = _largest(g & ~p), _largest(p & ~g)
        positive = int(fn.sum()) >= int(fp.sum())
        x, y, depth = _interior(fn if positive else fp)
        poor = not p.any() or pc.dice(p, g) < POOR_2D or depth < THIN or "click" in before
        if g.any() and poor:
            if before.count("box") >= 2:
                continue
            before.append("box")
            return k, {"box": pa.rel_box(g, rng)}
        if before.count("click") >= 2 and not g.any():
            continue
        before.append("click")
        return k, {"point": (x, y, positive)}
    return None


def annotate(model: PromptModel, case: pc.Case, rng: np.random.Generator) -> dict[str, Any]:
    """One simulated annotation of ``case``: Dice after each interaction and the seconds."""
    ann = Annotation.empty(case.image.shape)
    ann.add_label("structure")
    state = PromptState.open(model, "bench", case.image, pc.AXIS)
    key = pc.key_slice(case)
    t0 = time.perf_counter()
    state.prompt(ann, 1, key, box=pa.rel_box(case.mask[..., key], rng))
    state.propagate(ann, 1)
    seconds = time.perf_counter() - t0
    dice, kinds = [], ["box + propagate"]
    given: dict[int, list[str]] = {key: ["box"]}
    while True:
        pred = ann.proposal_mask(1)
        pred = np.zeros(case.mask.shape, bool) if pred is None else pred
        dice.append(pc.dice(pred, case.mask))
        if dice[-1] >= GOAL or len(dice) >= MAX_STEPS:
            break
        nxt = correction(case.mask, pred, rng, given)
        if nxt is None:
            break
        k, prompt = nxt
        t0 = time.perf_counter()
        state.prompt(ann, 1, k, **prompt)
        seconds += time.perf_counter() - t0
        kinds.append("box" if "box" in prompt else
                     "positive click" if prompt["point"][2] else "negative click")
    return {"dice": dice, "interactions": kinds, "seconds": seconds,
            **{f"dice_at_{n}": dice[min(n, len(dice)) - 1] for n in AT},
            **{f"noc_{int(t * 100)}": next((i + 1 for i, d in enumerate(dice) if d >= t),
                                          MAX_STEPS) for t in (0.85, 0.90)}}


def pooled(rows: dict[str, dict[str, Any]], groups: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for g in dict.fromkeys(groups.values()):
        mine = [r for n, r in rows.items() if groups[n] == g]
        out[g] = {**{f"dice_at_{n}": float(np.median([r[f"dice_at_{n}"] for r in mine]))
                     for n in AT},
                  **{f"noc_{t}_mean": float(np.mean([r[f"noc_{t}"] for r in mine]))
                     for t in (85, 90)},
                  **{f"noc_{t}_median": float(np.median([r[f"noc_{t}"] for r in mine]))
                     for t in (85, 90)},
                  "seconds_median": float(np.median([r["seconds"] for r in mine])),
                  "structures": len(mine)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="lite")
    ap.add_argument("--structures", choices=("test", "validation"), default="test")
    ap.add_argument("--only", default=None, help="structures whose name contains this")
    ap.add_argument("--out-stem", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lite = load_promptable(args.model)
    cases = [c for c in pc.cases(args.structures) if not args.only or args.only in c.name]
    rows: dict[str, dict[str, dict[str, Any]]] = {"lite": {}, "grabcut": {}}
    for i, case in enumerate(cases):
        methods = {"lite": lite, "grabcut": GrabCutModel(lite.recipe, case.image.shape[:2])}
        for m, model in methods.items():  # the same boxes for both: one generator each
            rows[m][case.name] = annotate(model, case, np.random.default_rng([pa.SEED, i]))
        print(case.name + ": " + "; ".join(
            f"{m} Dice@1 {r[case.name]['dice_at_1']:.3f} NoC@90 {r[case.name]['noc_90']}"
            for m, r in rows.items()), flush=True)
    groups = {c.name: c.group for c in cases}
    doc = {"model": args.model, "name": lite.name, "version": lite.version,
           "structure_set": args.structures, "threads": args.threads,
           "cpu": platform.processor(), "max_interactions": MAX_STEPS, "goal": GOAL,
           "brats_present": pc.BRATS.is_dir(), "structures": rows,
           "groups": groups, "pooled": {m: pooled(r, groups) for m, r in rows.items()}}
    stem = args.out_stem or f"prompt_robot{'' if args.structures == 'test' else '_val'}"
    write_text_atomic(pc.OUT / f"{stem}.json", json.dumps(doc, indent=1) + "\n")
    md = markdown(doc)
    write_text_atomic(pc.OUT / f"{stem}.md", md)
    print(md)


def markdown(doc: dict[str, Any]) -> str:
    cols = " | ".join(f"Dice@{n}" for n in AT)
    lines = [f"# Simulated annotator, {doc['structure_set']} structures", "",
             f"`bench/prompt_robot.py`: box + propagate, then corrections (box, positive or "
             f"negative click) on the worst slice until 3D Dice >= {doc['goal']} or "
             f"{doc['max_interactions']} interactions, through the app's prompt code; "
             f"{doc['name']} {doc['version']} against GrabCut per slice with the same "
             f"propagation (baseline, same run, same boxes), {doc['threads']} CPU threads.",
             "", f"| structure | method | {cols} | NoC@85 | NoC@90 | interactions | s |",
             "|---|---|" + "---|" * (len(AT) + 4)]
    for name in doc["groups"]:
        for m, rows in doc["structures"].items():
            r = rows[name]
            lines.append(f"| {name} | {m} | " + " | ".join(f"{r[f'dice_at_{n}']:.3f}"
                                                          for n in AT)
                         + f" | {r['noc_85']} | {r['noc_90']} | {len(r['dice'])} | "
                         f"{r['seconds']:.1f} |")
    lines += ["", f"| group | method | {cols} | NoC@85 mean / median | NoC@90 mean / median "
              "| s (median) |", "|---|---|" + "---|" * (len(AT) + 3)]
    for g in dict.fromkeys(doc["groups"].values()):
        for m, p in doc["pooled"].items():
            q = p[g]
            lines.append(f"| {g} ({q['structures']}) | {m} | " + " | ".join(
                f"{q[f'dice_at_{n}']:.3f}" for n in AT) + f" | {q['noc_85_mean']:.1f} / "
                f"{q['noc_85_median']:.0f} | {q['noc_90_mean']:.1f} / "
                f"{q['noc_90_median']:.0f} | {q['seconds_median']:.1f} |")
    lines += ["", "Targets (issue 20): median Dice@1 >= 0.85 and Dice@3 >= 0.90 per group; "
              "mean NoC@90 below GrabCut's on every group:", ""]
    lite, base = doc["pooled"]["lite"], doc["pooled"]["grabcut"]
    for g in lite:
        lines.append(f"- {g}: Dice@1 {lite[g]['dice_at_1']:.3f} "
                     f"({'met' if lite[g]['dice_at_1'] >= 0.85 else 'not met'}), Dice@3 "
                     f"{lite[g]['dice_at_3']:.3f} "
                     f"({'met' if lite[g]['dice_at_3'] >= 0.90 else 'not met'}), NoC@90 "
                     f"{lite[g]['noc_90_mean']:.1f} vs GrabCut {base[g]['noc_90_mean']:.1f} "
                     f"({'met' if lite[g]['noc_90_mean'] < base[g]['noc_90_mean'] else 'not met'})")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
