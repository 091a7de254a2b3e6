"""Choose the propagation stop thresholds on the VALIDATION organs only.

The 3D protocol of bench/prompt_accuracy.py (one jittered box on the largest slice, then
:class:`medseg.engine.propagate.Propagator`) on the validation organs
(``prompt_accuracy.VALIDATION``: excluded from the RoI-decoder training; the held-out test
structures are not read here), for a grid of ``min_score`` x ``max_intensity_drift``. The
baseline in the same run is the current default :class:`PropagationConfig`. Writes
``bench/results/prompt_propagation_val.{json,md}``.

    .venv/bin/python bench/prompt_propagation_val.py [--model lite] [--threads 2]
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
from medseg.engine.propagate import PropagationConfig, Propagator

MIN_SCORES = (0.3, 0.5)
DRIFTS = (0.15, 0.25, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lite")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    session = PromptSession(args.model)
    default = PropagationConfig()
    grid = [PropagationConfig(min_score=s, max_intensity_drift=d)
            for s in MIN_SCORES for d in DRIFTS]
    rows: dict[str, dict[str, float]] = {}
    for case in pa._cases("validation"):
        session.set_volume(case.image, axis=pa.AXIS)
        rng = np.random.default_rng(pa.SEED)
        key = int(np.argmax(case.mask.sum(axis=(0, 1))))
        box = pa._jittered_box(case.mask[..., key], rng)
        rows[case.name] = {}
        for cfg in grid:
            session.objects = {}
            session.predict(key, box=box, object_id=1)
            res = Propagator(session, cfg).propagate(1)
            rows[case.name][_name(cfg)] = pa._dice(np.asarray(res.mask.array) > 0, case.mask)
        print(case.name, {k: round(v, 3) for k, v in rows[case.name].items()}, flush=True)
    medians = {_name(c): float(np.median([r[_name(c)] for r in rows.values()])) for c in grid}
    best = max(medians, key=lambda k: medians[k])
    doc = {"model": args.model, "structures": rows, "median_volumetric_dice": medians,
           "default": _name(default), "best": best, "default_config": asdict(default)}
    out = pa.OUT / "prompt_propagation_val"
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = ["# Propagation thresholds on the validation organs", "",
             f"Model `{args.model}`; validation organs {', '.join(pa.VALIDATION)} (CT + MR); "
             "3D protocol of bench/prompt_accuracy.py. Median volumetric Dice over "
             f"{len(rows)} structures; default config: `{_name(default)}`.", "",
             "| min_score \\ max_intensity_drift | " + " | ".join(map(str, DRIFTS)) + " |",
             "|---" * (len(DRIFTS) + 1) + "|"]
    for s in MIN_SCORES:
        cells = [f"{medians[_name(PropagationConfig(min_score=s, max_intensity_drift=d))]:.3f}"
                 for d in DRIFTS]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines += ["", f"Best: `{best}` ({medians[best]:.3f}); default "
              f"{medians.get(_name(default), float('nan')):.3f}.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


def _name(cfg: PropagationConfig) -> str:
    return f"min_score={cfg.min_score},drift={cfg.max_intensity_drift}"


if __name__ == "__main__":
    main()
