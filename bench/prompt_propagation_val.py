"""Choose the propagation settings on the VALIDATION organs only.

The 3D protocol of bench/prompt_accuracy.py (one jittered box on the largest slice, then
:class:`medseg.engine.propagate.Propagator`) on the validation organs
(``prompt_accuracy.VALIDATION``: excluded from the lite model's training since stage 3; the
held-out test structures are not read here), for a grid of the previous mask as mask prompt
(on/off) x the box margin around it (slice pixels) x ``max_intensity_drift``, ``min_score``
at its default (an earlier sweep of it tied). The baseline in the same run is the current
default :class:`PropagationConfig`. Writes ``bench/results/prompt_propagation_val.{json,md}``.

``--grid stops --draws 5``: box prompt only, margin x drift thresholds, five key-slice boxes
per structure (the validation protocol since 2026-11-23, bench/notes/lite_model_selection.md),
chosen by the mean over the validation groups of their median structure.

    .venv/bin/python bench/prompt_propagation_val.py [--model lite] [--threads 2]
        [--draws 5 --grid stops --out-stem prompt_propagation_val_stops5]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prompt_accuracy as pa

from medseg.engine.prompt import PromptSession
from medseg.engine.propagate import PropagationConfig

MASK_PROMPT = (True, False)
MARGINS = (0, 1, 2, 3, 4)
DRIFTS = (0.15, None)
STOP_MARGINS = (1, 2, 3)
STOP_DRIFTS = (0.15, 0.2, 0.25, 0.3, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lite")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-stem", default="prompt_propagation_val")
    ap.add_argument("--draws", type=int, default=1,
                    help="key-slice boxes per structure (the first as before, the others "
                         "jittered again as in prompt_accuracy.py --draws); a structure's "
                         "figure is the mean over them")
    ap.add_argument("--grid", choices=("prompt", "stops"), default="prompt",
                    help="prompt: mask prompt x margin x drift (the first sweeps); stops: "
                         "box only, margin x drift thresholds")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    session = PromptSession(args.model)
    default = PropagationConfig()
    if args.grid == "prompt":
        grid = [PropagationConfig(use_mask_prompt=mk, margin_px=m, max_intensity_drift=d)
                for mk in MASK_PROMPT for m in MARGINS for d in DRIFTS]
    else:
        grid = [PropagationConfig(margin_px=m, max_intensity_drift=d)
                for m in STOP_MARGINS for d in STOP_DRIFTS]
    rows: dict[str, dict[str, float]] = {}
    group: dict[str, str] = {}
    for i, case in enumerate(pa._cases("validation")):
        group[case.name] = case.group
        session.set_volume(case.image, axis=pa.AXIS)
        first = pa._jittered_box(case.mask[..., pa.key_slice(case)],
                                 np.random.default_rng(pa.SEED))
        boxes = [first, *pa.extra_boxes(case, i, args.draws - 1)]
        rows[case.name] = {
            _name(cfg): float(np.mean([pa.propagated_dice(session, case, b, cfg)
                                       for b in boxes])) for cfg in grid}
        print(case.name, {k: round(v, 3) for k, v in rows[case.name].items()}, flush=True)
    medians = {_name(c): float(np.median([r[_name(c)] for r in rows.values()])) for c in grid}
    groups = {"CT": "val_organ", "MR": "val_organ_mr", "tumour": "val_tumour"}
    by_mod = {mod: {_name(c): float(np.median([r[_name(c)] for n, r in rows.items()
                                              if group[n] == g]))
                    for c in grid} for mod, g in groups.items() if g in group.values()}
    group_mean = {_name(c): float(np.mean([v[_name(c)] for v in by_mod.values()]))
                  for c in grid}
    score = medians if args.grid == "prompt" else group_mean
    best = max(score, key=lambda k: (score[k], k == _name(default)))  # ties: the default
    doc = {"model": args.model, "draws": args.draws, "structures": rows,
           "median_volumetric_dice": medians, "median_by_modality": by_mod,
           "mean_of_group_medians": group_mean,
           "score": "median over structures" if args.grid == "prompt" else
           "mean of group medians",
           "default": _name(default), "best": best, "default_config": asdict(default)}
    out = pa.OUT / args.out_stem
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = ["# Propagation thresholds on the validation organs", "",
             f"Model `{args.model}`; validation organs {', '.join(pa.VALIDATION)} (CT + MR) "
             "and BRATS validation tumours; 3D protocol of bench/prompt_accuracy.py with "
             f"{args.draws} key-slice box(es) per structure (mean over them). Median "
             f"volumetric Dice over {len(rows)} structures, per group, and the mean of the "
             f"group medians; chosen by: {doc['score']}; default config: "
             f"`{_name(default)}`.", "",
             "| mask prompt | margin px | max_intensity_drift | median 3D Dice (all) | "
             + " | ".join(by_mod) + " | mean of groups |", "|---" * (5 + len(by_mod)) + "|"]
    for c in grid:
        n = _name(c)
        lines.append(f"| {c.use_mask_prompt} | {c.margin_px} | {c.max_intensity_drift} | "
                     f"{medians[n]:.3f} | " + " | ".join(f"{v[n]:.3f}" for v in by_mod.values())
                     + f" | {group_mean[n]:.3f} |")
    lines += ["", f"Best: `{best}` ({score[best]:.3f}); default "
              f"{score.get(_name(default), float('nan')):.3f}.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


def _name(cfg: PropagationConfig) -> str:
    return (f"mask_prompt={cfg.use_mask_prompt},margin_px={cfg.margin_px},"
            f"drift={cfg.max_intensity_drift}")


if __name__ == "__main__":
    main()
