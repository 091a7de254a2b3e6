"""Box-prompted accuracy of the shipped lite model on structures never used in training.

Protocol (issue 7, "Must show"): slices (array axis 2) with >= 50 px of the structure; the
prompt is the tight ground-truth box with independent uniform integer jitter of +-5 px per side
(seeded); 2D Dice per slice. Paired baseline in the same run on the same boxes: OpenCV GrabCut
(``cv2.grabCut``, rectangle init, 5 iterations) on the slice windowed exactly as the model sees
it. 3D: one key slice (largest area) with a jittered box, then
:class:`medseg.engine.propagate.Propagator` through the volume; the classical 3D baseline
propagates GrabCut slice by slice (box = previous mask's bbox + 4 px, stop on an empty slice).

Structures (none used in training, see configs/lite_sam_train.yaml): the two BRATS 2015 test
cases (FLAIR, whole tumour = OTMultiClass > 0; skipped when ../shared/data is absent;
non-commercial data, evaluation only), pyradiomics brain2 and breast1 lesions, and the
held-out CT kidneys (TotalSegmentator example CT and the DICOM-series CT).

    .venv/bin/python bench/prompt_accuracy.py [--threads 2] [--max-slices N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from medseg import io as mio
from medseg.engine.prompt import PromptSession
from medseg.engine.propagate import PropagationConfig, Propagator
from medseg.io.atomic import write_text_atomic
from medseg.volume import Volume

ROOT = Path(__file__).resolve().parent.parent
BRATS_ROOT = ROOT.parent / "shared" / "data" / "deepmedic_brats2015"
BRATS = BRATS_ROOT / "test"
BRATS_VAL = BRATS_ROOT / "validation"  # tumour validation: read, never trained on
#: BRATS "train" cases: nothing in medseg's promptable training reads BRATS (non-commercial
#: data), so since 2026-12-05 they are tumour validation cases too (four instead of two)
BRATS_TRAIN = BRATS_ROOT / "train"
DS = ROOT / "data_samples"
OUT = ROOT / "bench" / "results"
AXIS, MIN_AREA, JITTER, SEED = 2, 50, 5, 0


@dataclass
class Case:
    name: str
    group: str  # "tumour" or "organ"
    image: Volume
    mask: np.ndarray  # bool [I, J, K], same grid as image


#: validation organs of the RoI-decoder stage (configs/lite_sam_train_roi.yaml excludes them);
#: for choosing between models without looking at the held-out test structures
VALIDATION = ("spleen", "gallbladder", "urinary_bladder")


def _cases(which: str = "test") -> list[Case]:
    if which == "validation":  # organs first: their boxes do not depend on BRATS's presence
        return _organ_cases(VALIDATION, "val_organ", "val_organ_mr") + \
            _brats_cases(BRATS_VAL, "brats_val", "val_tumour") + \
            _brats_cases(BRATS_TRAIN, "brats_train", "val_tumour")
    out = _brats_cases(BRATS, "brats_test", "tumour")
    for name in ("brain2", "breast1"):
        img = mio.read(DS / "pyradiomics" / f"{name}_image.nrrd")
        img.modality = "MR"
        lab = mio.read(DS / "pyradiomics" / f"{name}_label.nrrd").conform_to(img)
        out.append(Case(f"pyradiomics/{name}", "tumour", img, np.asarray(lab.array) > 0))
    return out + _organ_cases(("kidney_left", "kidney_right"), "organ", "organ_mr")


def _brats_cases(folder: Path, tag: str, group: str) -> list[Case]:
    """FLAIR + whole tumour (OTMultiClass > 0) of the BRATS cases in ``folder`` (none when
    ../shared/data is absent; non-commercial data: benchmarks only, never training)."""
    out: list[Case] = []
    for d in sorted(folder.glob("*")) if folder.is_dir() else []:
        img = mio.read(d / "Flair_subtrMeanDivStd.nii.gz")
        img.modality = "MR"
        lab = mio.read(d / "OTMultiClass.nii.gz").conform_to(img)
        out.append(Case(f"{tag}/{d.name}", group, img, np.asarray(lab.array) > 0))
    return out


def _organ_cases(organs: tuple[str, ...], ct_group: str, mr_group: str) -> list[Case]:
    """``organs`` in the TotalSegmentator CTs (group ``ct_group``) and MR (``mr_group``)."""
    out: list[Case] = []
    ts = DS / "totalsegmentator"
    for img_path, lab_path, tag, group, mod in (
            (ts / "example_ct.nii.gz", ts / "example_seg_fast_force_split.nii.gz",
             "example_ct", ct_group, "CT"),
            (ts / "example_ct_dicom", ts / "example_seg_dicom.nii.gz", "dicom_ct", ct_group,
             "CT"),
            (ts / "example_mr_sm.nii.gz", ts / "example_seg_mr.nii.gz", "example_mr",
             mr_group, "MR")):
        img = mio.read(img_path)
        img.modality = mod
        lab = mio.read(lab_path).conform_to(img, atol_mm=1e-2)
        names = {v: k for k, v in (lab.labels or {}).items()}
        for organ in organs:
            if organ not in names:
                continue
            m = np.asarray(lab.array) == names[organ]
            if (m.sum(axis=(0, 1)) >= MIN_AREA).any():  # the DICOM CT ends above the kidneys
                out.append(Case(f"{tag}/{organ}", group, img, m))
    return out


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s


def _jittered_box(m2: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Tight box of ``m2 [x, y]`` (inclusive voxel indices) with +-JITTER px per side."""
    xs, ys = np.nonzero(m2)
    d = rng.integers(-JITTER, JITTER + 1, size=4)
    x0, y0 = int(xs.min()) + d[0], int(ys.min()) + d[1]
    x1, y1 = int(xs.max()) + d[2], int(ys.max()) + d[3]
    x0, x1 = sorted((int(np.clip(x0, 0, m2.shape[0] - 1)), int(np.clip(x1, 0, m2.shape[0] - 1))))
    y0, y1 = sorted((int(np.clip(y0, 0, m2.shape[1] - 1)), int(np.clip(y1, 0, m2.shape[1] - 1))))
    return x0, y0, x1, y1


def in_box_ceiling(m2: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Dice of ``m2`` cut to ``box``: the best a segmenter that marks nothing outside the box
    can reach on this slice (a property of the protocol's jitter, no model involved)."""
    x0, y0, x1, y1 = box
    inside = np.zeros_like(m2, dtype=bool)
    inside[x0:x1 + 1, y0:y1 + 1] = True
    return _dice(np.logical_and(m2, inside), m2)


def _u8(session: PromptSession, k: int) -> np.ndarray:
    """Slice ``k`` ``[x, y]`` windowed to uint8 as the model's preprocessing does."""
    lo, hi = session._window
    s = np.asarray(session.slice_image(k), dtype=np.float32)
    return (np.clip((s - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def grabcut(img_u8: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """GrabCut of ``img_u8 [x, y]`` initialised with the inclusive box; bool ``[x, y]``."""
    x0, y0, x1, y1 = box
    if x1 - x0 < 2 or y1 - y0 < 2:
        out = np.zeros(img_u8.shape, bool)
        out[x0:x1 + 1, y0:y1 + 1] = True
        return out
    pad = 20
    a0, b0 = max(0, x0 - pad), max(0, y0 - pad)
    a1, b1 = min(img_u8.shape[0], x1 + pad + 1), min(img_u8.shape[1], y1 + pad + 1)
    crop = np.ascontiguousarray(img_u8[a0:a1, b0:b1].T)  # rows = y, cols = x
    bgr = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    gc = np.zeros(crop.shape, np.uint8)
    rect = (x0 - a0, y0 - b0, x1 - x0 + 1, y1 - y0 + 1)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(bgr, gc, rect, bgd, fgd, 5, cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        gc[:] = cv2.GC_PR_FGD
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).T
    out = np.zeros(img_u8.shape, bool)
    out[a0:a1, b0:b1] = fg
    return out if out.any() else otsu_in_box(img_u8, box)


def otsu_in_box(img_u8: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Fallback when GrabCut collapses to background: Otsu threshold inside the box, keeping
    the class (bright or dark) of the box centre; bool ``[x, y]``."""
    x0, y0, x1, y1 = box
    roi = np.ascontiguousarray(img_u8[x0:x1 + 1, y0:y1 + 1])
    t, _ = cv2.threshold(roi, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bright = roi > t
    cx, cy = roi.shape[0] // 2, roi.shape[1] // 2
    fg = bright if bright[cx, cy] else ~bright
    out = np.zeros(img_u8.shape, bool)
    out[x0:x1 + 1, y0:y1 + 1] = fg
    return out


def _bbox_margin(m2: np.ndarray, margin: int) -> tuple[int, int, int, int] | None:
    xs, ys = np.nonzero(m2)
    if xs.size == 0:
        return None
    return (max(0, int(xs.min()) - margin), max(0, int(ys.min()) - margin),
            min(m2.shape[0] - 1, int(xs.max()) + margin),
            min(m2.shape[1] - 1, int(ys.max()) + margin))


def grabcut_3d(session: PromptSession, key: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Classical 3D baseline: GrabCut on the key box, then slice by slice with the previous
    mask's bbox + 4 px as box, stopping at the first slice with fewer than 10 px."""
    n = session.n_slices
    out = np.zeros((*session.slice_shape, n), bool)
    out[..., key] = first = grabcut(_u8(session, key), box)
    for step in (1, -1):
        prev, k = first, key + step
        while 0 <= k < n:
            b = _bbox_margin(prev, 4)
            if b is None:
                break
            m = grabcut(_u8(session, k), b)
            if m.sum() < 10:
                break
            out[..., k] = prev = m
            k += step
    return out


def _slices_2d(case: Case, session: PromptSession, rng: np.random.Generator,
               max_slices: int | None) -> list[dict[str, float]]:
    areas = case.mask.sum(axis=(0, 1))
    ks = [int(k) for k in np.flatnonzero(areas >= MIN_AREA)]
    if max_slices and len(ks) > max_slices:
        ks = [ks[i] for i in np.linspace(0, len(ks) - 1, max_slices).round().astype(int)]
    rows = []
    for k in ks:
        gt = case.mask[..., k]
        box = _jittered_box(gt, rng)
        pred, score = session.predict(k, box=box, record=False)
        base = grabcut(_u8(session, k), box)
        rows.append({"slice": k, "area": int(gt.sum()), "lite": _dice(pred, gt),
                     "grabcut": _dice(base, gt), "score": score,
                     "in_box_ceiling": in_box_ceiling(gt, box)})
    return rows


def _case_3d(case: Case, session: PromptSession, rng: np.random.Generator,
             config: PropagationConfig | None = None) -> dict[str, float]:
    key = key_slice(case)
    box = _jittered_box(case.mask[..., key], rng)
    session.objects = {}
    session.predict(key, box=box, object_id=1)
    t0 = time.perf_counter()
    res = Propagator(session, config).propagate(1)
    dt = time.perf_counter() - t0
    pred = np.asarray(res.mask.array) > 0
    t1 = time.perf_counter()
    base = grabcut_3d(session, key, box)
    dtb = time.perf_counter() - t1
    n = session.n_slices
    # per slice actually segmented (a run that stops early has done less work, not faster work)
    n_lite = max(1, int(pred.any(axis=(0, 1)).sum()))
    n_base = max(1, int(base.any(axis=(0, 1)).sum()))
    return {"key_slice": key, "dice_lite": _dice(pred, case.mask),
            "dice_grabcut": _dice(base, case.mask), "n_slices": n,
            "slices_segmented_lite": n_lite, "slices_segmented_grabcut": n_base,
            "s_per_100_slices_lite": 100 * dt / n_lite,
            "s_per_100_slices_grabcut": 100 * dtb / n_base}


def key_slice(case: Case) -> int:
    """The 3D protocol's key slice: the structure's largest section."""
    return int(np.argmax(case.mask.sum(axis=(0, 1))))


def extra_boxes(case: Case, index: int, n: int) -> list[tuple[int, int, int, int]]:
    """``n`` more jittered boxes on the key slice of structure number ``index``, from a
    generator of their own (``[SEED, 1000 + index]``), so every box of the published protocol
    stays as it is; shared by every bench that uses several key-slice boxes."""
    rng = np.random.default_rng([SEED, 1000 + index])
    return [_jittered_box(case.mask[..., key_slice(case)], rng) for _ in range(n)]


def propagated_dice(session: PromptSession, case: Case, box: tuple[int, int, int, int],
                    config: PropagationConfig | None = None) -> float:
    """Volumetric Dice of a fresh object prompted with ``box`` on the key slice, propagated."""
    session.objects = {}
    session.predict(key_slice(case), box=box, object_id=1)
    res = Propagator(session, config).propagate(1)
    return _dice(np.asarray(res.mask.array) > 0, case.mask)


def _latency(session: PromptSession, case: Case) -> dict[str, float]:
    k = key_slice(case)
    x, _ = session.model.preprocess(np.asarray(session.slice_image(k)).T, "MR",
                                    window=session._window)
    emb_t, dec_t = [], []
    for _ in range(7):
        t = time.perf_counter()
        emb = session.model.embed(x)
        emb_t.append(time.perf_counter() - t)
    box = session.resize.box_to_model(_jittered_box(case.mask[..., k],
                                                    np.random.default_rng(1)))
    for _ in range(15):
        t = time.perf_counter()
        session.model.decode(emb, box=box)
        dec_t.append(time.perf_counter() - t)
    return {"embed_ms": 1000 * statistics.median(emb_t),
            "prompt_to_mask_ms": 1000 * statistics.median(dec_t)}


def _summary(rows: list[dict[str, float]]) -> dict[str, float]:
    lite = [r["lite"] for r in rows]
    base = [r["grabcut"] for r in rows]
    return {"n_slices": len(rows), "median_dice_lite": float(np.median(lite)),
            "median_dice_grabcut": float(np.median(base)),
            "mean_dice_lite": float(np.mean(lite)), "mean_dice_grabcut": float(np.mean(base)),
            "slices_lite_better": int(sum(a > b for a, b in zip(lite, base, strict=True))),
            "median_in_box_ceiling": float(np.median([r["in_box_ceiling"] for r in rows]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-slices", type=int, default=None, help="per structure (2D)")
    ap.add_argument("--model", default="lite")
    ap.add_argument("--structures", choices=("test", "validation"), default="test",
                    help="test: the held-out structures of issue 7; validation: "
                         f"{', '.join(VALIDATION)} + the BRATS validation tumours (for "
                         "choosing between models)")
    ap.add_argument("--out-stem", default=None, help="bench/results/<stem>.json/.md")
    ap.add_argument("--draws", type=int, default=1,
                    help="3D: key-slice boxes per structure (each with its own jitter); a "
                         "structure's 3D figure is then the mean over the draws (1: the "
                         "published one-box protocol)")
    ap.add_argument("--mask-threshold", type=float, default=None,
                    help="override the model's mask threshold (a logit; for calibration "
                         "sweeps on the validation set)")
    ap.add_argument("--coords", choices=("indices", "edges"), default=None,
                    help="override the model's prompt-coordinate convention (spec.coords; "
                         "for the validation A/B of 2026-12-05)")
    ap.add_argument("--margin-px", type=int, default=None,
                    help="propagation box margin (voxels) instead of the default's")
    args = ap.parse_args()
    if args.draws < 1:
        raise SystemExit("--draws must be >= 1")
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(SEED)
    session = PromptSession(args.model)
    if args.mask_threshold is not None:
        session.model.sam.mask_threshold = args.mask_threshold
    if args.coords is not None:
        session.model.spec = dataclasses.replace(session.model.spec, coords=args.coords)
    prop = PropagationConfig() if args.margin_px is None else \
        PropagationConfig(margin_px=args.margin_px)
    results: dict[str, dict] = {}
    cases = _cases(args.structures)
    groups = tuple(g for g in (("val_organ", "val_organ_mr", "val_tumour")
                               if args.structures == "validation" else
                               ("tumour", "organ", "organ_mr"))
                   if any(c.group == g for c in cases))
    for i, case in enumerate(cases):
        session.set_volume(case.image, axis=AXIS)
        rows = _slices_2d(case, session, rng, args.max_slices)
        results[case.name] = {"group": case.group, "slices": rows, **_summary(rows),
                              "3d": _case_3d(case, session, rng, prop)}
        r = results[case.name]
        r["3d"]["draws_lite"] = [r["3d"]["dice_lite"], *(
            propagated_dice(session, case, b, prop) for b in extra_boxes(case, i, args.draws - 1))]
        r["3d"]["dice_lite_mean_draws"] = float(np.mean(r["3d"]["draws_lite"]))
        print(f"{case.name}: 2D median Dice lite {r['median_dice_lite']:.3f} vs GrabCut "
              f"{r['median_dice_grabcut']:.3f} ({r['slices_lite_better']}/{r['n_slices']} "
              f"slices better); 3D Dice {r['3d']['dice_lite']:.3f} vs "
              f"{r['3d']['dice_grabcut']:.3f}", flush=True)
    session.set_volume(cases[0].image, axis=AXIS)
    latency = _latency(session, cases[0])
    pooled = {g: _summary([s for r in results.values() if r["group"] == g
                           for s in r["slices"]]) for g in groups}
    vol = {g: {"median_dice_lite": float(np.median([r["3d"]["dice_lite"] for r in
                                                    results.values() if r["group"] == g])),
               "median_dice_grabcut": float(np.median([r["3d"]["dice_grabcut"] for r in
                                                       results.values() if r["group"] == g])),
               "median_of_draw_means_lite": float(np.median(
                   [r["3d"]["dice_lite_mean_draws"] for r in results.values()
                    if r["group"] == g]))}
           for g in groups}
    all3d = [r["3d"] for r in results.values()]
    doc = {"protocol": {"axis": AXIS, "min_area_px": MIN_AREA, "box_jitter_px": JITTER,
                        "seed": SEED,
                        "baseline": "cv2.grabCut rect init, 5 iterations (Otsu in box if empty)",
                        "propagation": dataclasses.asdict(prop)},
           "model": args.model, "mask_threshold": session.model.mask_threshold,
           "coords": session.model.spec.coords,
           "threads": args.threads, "cpu": platform.processor(),
           "brats_present": BRATS.is_dir(), "draws_3d": args.draws, "pooled_2d": pooled,
           "volumetric": vol,
           "volumetric_all_median_lite": float(np.median([r["dice_lite"] for r in all3d])),
           "s_per_100_slices_lite_median": float(np.median(
               [r["s_per_100_slices_lite"] for r in all3d])),
           "latency": latency, "structures": results}
    doc["structure_set"] = args.structures
    if args.structures == "test":  # issue 7's 3D structures: tumours + held-out CT organs
        doc["volumetric_must_show_median_lite"] = float(np.median(
            [r["3d"]["dice_lite"] for r in results.values() if r["group"] in ("tumour", "organ")]))
    # the selection score of bench/notes/lite_model_selection.md: mean over the groups of
    # (2D pooled median + 3D median of the structures' draw means) / 2
    doc["score"] = float(np.mean([(pooled[g]["median_dice_lite"] +
                                   vol[g]["median_of_draw_means_lite"]) / 2 for g in groups]))
    stem = "prompt_accuracy" if args.structures == "test" else "prompt_validation"
    if args.out_stem:
        stem = args.out_stem
    OUT.mkdir(parents=True, exist_ok=True)
    write_text_atomic(OUT / f"{stem}.json", json.dumps(doc, indent=1) + "\n")
    write_text_atomic(OUT / f"{stem}.md", _markdown(doc))
    print(_markdown(doc))


def _prop_text(p: dict) -> str:
    prompt = "previous mask + box" if p.get("use_mask_prompt") else "box only"
    return (f"{prompt}, margin {p.get('margin_px')} px, drift "
            f"{p.get('max_intensity_drift')}")


def _ceiling_cell(summary: dict, shown: bool) -> str:
    if not shown:
        return ""
    return f"{summary['median_in_box_ceiling']:.3f} | "


def _markdown(doc: dict) -> str:
    # result files written before 2026-12-05 (second session) have no in-box ceiling
    ceiling = all("median_in_box_ceiling" in p for p in doc["pooled_2d"].values())
    lines = ["# Box-prompted accuracy on held-out structures (lite model vs GrabCut)", "",
             f"Model `{doc['model']}` (mask threshold {doc.get('mask_threshold', 0.0):g}, "
             f"prompt coordinates `{doc.get('coords', 'indices')}`), "
             f"{doc['threads']} CPU threads. Protocol: axial slices "
             f"with >= {MIN_AREA} px, tight GT box with +-{JITTER} px jitter per side "
             f"(seed {SEED}); baseline {doc['protocol']['baseline']} on the same boxes. "
             "(GrabCut sometimes labels a whole small box background; then Otsu inside the box "
             "is used.) " + (
                 "Groups: tumours (BRATS test FLAIR, pyradiomics brain2/breast1), organs = "
                 "held-out CT kidneys, organ_mr = held-out MR kidneys (extra). "
                 if doc.get("structure_set", "test") == "test" else
                 f"VALIDATION set ({', '.join(VALIDATION)}; never sampled since stage 3, seen "
                 "by stages 1-2): val_organ = CT, val_organ_mr = MR; val_tumour = the BRATS "
                 "validation and train cases present (FLAIR, whole tumour; never trained "
                 "on). ") +
             "3D: one jittered key-slice box (largest slice) + propagation "
             f"(`medseg.engine.propagate`, {_prop_text(doc['protocol']['propagation'])}) vs "
             "slice-by-slice GrabCut." + (
                 " In-box ceiling: median over the slices of the Dice of the ground truth cut "
                 "to the jittered box, the best a segmenter that marks nothing outside the "
                 "box can reach (no model involved)." if ceiling else ""), "",
             "| structure | slices | 2D median Dice lite | GrabCut | lite better | "
             + ("in-box ceiling | " if ceiling else "") +
             "3D Dice lite | 3D GrabCut | s / 100 segmented slices lite |",
             "|---|---|---|---|---|---|---|---|" + ("---|" if ceiling else "")]
    for name, r in doc["structures"].items():
        d = r["3d"]
        lines.append(f"| {name} | {r['n_slices']} | {r['median_dice_lite']:.3f} | "
                     f"{r['median_dice_grabcut']:.3f} | {r['slices_lite_better']}/"
                     f"{r['n_slices']} | " + _ceiling_cell(r, ceiling) +
                     f"{d['dice_lite']:.3f} | {d['dice_grabcut']:.3f} | "
                     f"{d['s_per_100_slices_lite']:.2f} |")
    lines += ["", "| pooled | slices | 2D median Dice lite | GrabCut | lite better | "
              + ("in-box ceiling | " if ceiling else "") +
              "3D median Dice lite | 3D GrabCut |",
              "|---|---|---|---|---|---|---|" + ("---|" if ceiling else "")]
    for g, p in doc["pooled_2d"].items():
        v = doc["volumetric"][g]
        lines.append(f"| {g}s | {p['n_slices']} | {p['median_dice_lite']:.3f} | "
                     f"{p['median_dice_grabcut']:.3f} | {p['slices_lite_better']}/"
                     f"{p['n_slices']} | " + _ceiling_cell(p, ceiling) +
                     f"{v['median_dice_lite']:.3f} | {v['median_dice_grabcut']:.3f} |")
    lat = doc["latency"]
    if doc.get("structure_set", "test") == "test":
        lines += ["", "Median volumetric Dice (lite) over issue 7's 3D structures (tumours + "
                  f"held-out CT kidneys, MR kidneys left out): "
                  f"{doc['volumetric_must_show_median_lite']:.3f}"]
    lines += ["", f"All structures: median volumetric Dice (lite) "
              f"{doc['volumetric_all_median_lite']:.3f}; propagation "
              f"{doc['s_per_100_slices_lite_median']:.2f} s per 100 segmented slices (median). "
              f"Latency: slice embedding {lat['embed_ms']:.1f} ms, prompt-to-mask "
              f"{lat['prompt_to_mask_ms']:.1f} ms (median).", ""]
    if doc.get("draws_3d", 1) > 1:
        lines += [f"3D over {doc['draws_3d']} key-slice boxes per structure (the first is the "
                  "3D column above; the others jitter the same tight box again): mean "
                  "volumetric Dice per structure, then the median over a group's structures.",
                  "", "| structure | 3D Dice per draw | mean |", "|---|---|---|"]
        for name, r in doc["structures"].items():
            d = r["3d"]
            lines.append(f"| {name} | {' / '.join(f'{x:.3f}' for x in d['draws_lite'])} | "
                         f"{d['dice_lite_mean_draws']:.3f} |")
        lines += ["", "| group | median of the structures' means |", "|---|---|"]
        lines += [f"| {g}s | {v['median_of_draw_means_lite']:.3f} |"
                  for g, v in doc["volumetric"].items()]
        lines.append("")
    if "score" in doc and doc.get("structure_set") == "validation":
        lines += [f"Selection score (mean over the groups of (2D pooled median + 3D median of "
                  f"the draw means) / 2): **{doc['score']:.4f}**", ""]
    if "runtime_patch" in doc:  # a candidate run through a throwaway runner (see bench/notes)
        lines += [f"Runtime patch (not in medseg): {doc['runtime_patch']}", ""]
    if not doc["brats_present"]:
        lines.append("BRATS test cases absent (../shared/data): tumour rows exclude them.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
