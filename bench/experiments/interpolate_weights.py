"""Interpolate two lite checkpoints of one lineage: theta = a * A + (1 - a) * B (WiSE-FT).

Every tensor is interpolated (BatchNorm running statistics included; integer tensors such as
``num_batches_tracked`` are taken from B). The JSON (architecture, spec) is B's, with a
``training.interpolation`` record. Used to trade the stage-8 weights' organ gains against
stage 5's tumour accuracy (bench/experiments/notes/lite_model_selection.md).

    .venv/bin/python bench/interpolate_weights.py A.safetensors B.safetensors --a 0.5 \
        --out OUT.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from medseg.io.atomic import atomic_path, write_text_atomic


def interpolate(a_path: Path, b_path: Path, a: float, out: Path) -> Path:
    sa, sb = load_file(str(a_path)), load_file(str(b_path))
    if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
        raise SystemExit(f"{a_path} and {b_path} are not the same architecture")
    mixed = {k: (a * sa[k].double() + (1 - a) * sb[k].double()).to(sb[k].dtype)
             if sb[k].is_floating_point() else sb[k] for k in sb}
    out = out.with_suffix(".safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        save_file({k: v.contiguous() for k, v in mixed.items()}, str(tmp),
                  metadata=load_safetensors_metadata(b_path))
    doc = json.loads(b_path.with_suffix(".json").read_text(encoding="utf-8"))
    doc.setdefault("training", {})["interpolation"] = {
        "a": a, "A": str(a_path), "B": str(b_path), "formula": "a * A + (1 - a) * B"}
    write_text_atomic(out.with_suffix(".json"), json.dumps(doc, indent=1) + "\n")
    return out


def load_safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a_path", type=Path)
    ap.add_argument("b_path", type=Path)
    ap.add_argument("--a", type=float, required=True, help="weight of the first checkpoint")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(interpolate(args.a_path, args.b_path, args.a, args.out))


if __name__ == "__main__":
    main()
