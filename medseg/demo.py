"""The headless pipeline that ``make run`` starts on the bundled sample data.

Reads the bundled JPEG 2000 CT DICOM series, lists it, converts it to NIfTI, puts the organ
label map that belongs to it on the exact same grid, writes both, then exports the organs as a
DICOM-SEG and the liver as an STL mesh, then auto-segments the series with the shipped default
model and scores it against those labels, printing what it did.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from medseg import io
from medseg.errors import MedsegError
from medseg.volume import Volume

SAMPLES = Path(__file__).resolve().parent.parent / "data_samples"
CT_DICOM = SAMPLES / "totalsegmentator" / "example_ct_dicom"
CT_LABELS = SAMPLES / "totalsegmentator" / "example_seg_dicom.nii.gz"


def run(out: Path) -> None:
    """Run the pipeline, writing into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    print(f"1. series in {CT_DICOM.relative_to(SAMPLES.parent)}:")
    for s in io.list_series(CT_DICOM):
        print(f"   {s.number}: {s.modality} {s.n_images} images {s.columns}x{s.rows} uid={s.uid}")
    ct = io.read(CT_DICOM)
    d = ct.describe()
    print(f"2. read CT: shape {d['shape']}, spacing {d['spacing_mm']} mm, orientation "
          f"{d['orientation']}, HU range {d['value_range']}")
    ct_path = io.write(ct, out / "example_ct.nii.gz")
    print(f"3. wrote {ct_path}")
    raw = io.read(CT_LABELS, label=True)
    labels = raw.conform_to(ct)
    if labels is not raw:
        print(f"   {CT_LABELS.name} is stored {raw.orientation} (as dcm2niix writes it), the "
              f"series {ct.orientation}: same voxel centres, re-indexed exactly (no resampling)")
    seg_path = io.write(labels, out / "example_ct_labels.nii.gz", reference=ct)
    present = labels.describe().get("labels", {})
    print(f"4. wrote {seg_path} on the DICOM grid: {len(present)} organs "
          f"({', '.join(list(present.values())[:6])}, ...)")
    back = io.read(seg_path)
    liver = [k for k, v in (back.labels or {}).items() if v == "liver"]
    ijk = np.argwhere(back.array == liver[0])[0] if liver else np.array(ct.shape) // 2
    world = back.index_to_world(ijk)
    raw_ijk = np.rint(raw.world_to_index(world)).astype(int)
    print(f"5. check: voxel {ijk.tolist()} of the written mask is at LPS "
          f"{np.round(world, 2).tolist()} mm; the original label file has label "
          f"{int(raw.array[tuple(raw_ijk)])} there and the written mask "
          f"{int(back.array[tuple(ijk)])} (liver = {liver[0] if liver else '-'})")
    export_clinical(ct, labels, out)
    auto_segment(ct, labels, out)


def export_clinical(ct: Volume, labels: Volume, out: Path) -> None:
    """DICOM-SEG of every organ and an STL mesh of the liver, referencing the source series."""
    from medseg.export import export

    seg = export(labels, ct, "seg", out / "example_ct_organs.seg.dcm")
    print(f"6. wrote {out / 'example_ct_organs.seg.dcm'}: DICOM-SEG referencing the source "
          f"series, {len(seg.get('segments', []))} segments")
    mesh = export(labels, ct, "stl", out / "meshes", labels=["liver"])
    for row in mesh["labels"]:
        print(f"7. wrote {out / 'meshes' / row['file']} ({mesh['frame']} mm): "
              f"{row['volume_ml']:.1f} mL enclosed vs {row['voxel_volume_ml']:.1f} mL of voxels, "
              f"{row['surface_area_mm2']:.0f} mm2, watertight={row['watertight']}")


def auto_segment(ct: Volume, labels: Volume, out: Path) -> None:
    """The shipped default model on the series: a mask on the series grid and its Dice."""
    from medseg.engine.infer import Segmenter
    from medseg.metrics import binary_metrics

    seg = Segmenter("default", device="auto")
    pred = seg.predict(ct)
    assert not isinstance(pred, tuple)
    path = io.write(pred, out / "example_ct_auto.nii.gz", reference=ct)
    st = seg.last_stats
    took = sum(v for k, v in st.items() if k.endswith("_s"))
    print(f"8. default model {seg.path.name} on {seg.device}: {took:.1f} s, wrote {path}")
    ref_by_name = {v: k for k, v in (labels.labels or {}).items()}
    scores = []
    for value, name in seg.labels.items():
        if name in ref_by_name and (labels.array == ref_by_name[name]).any():
            m = binary_metrics(pred.array == value, labels.array == ref_by_name[name],
                               ct.spacing, name=name)
            scores.append(f"{name} Dice {m.dice:.3f}, HD95 {m.hd95:.1f} mm")
    print(f"   vs the TotalSegmentator labels: {'; '.join(scores)} (this series is one of "
          "the model's two training CTs; held-out figures: bench/results/demo_model.md)")


#: (image, labels) of the two licence-clean sample CTs configs/demo.yaml trains on
TRAINING_CASES = {"a": ("example_ct.nii.gz", "example_seg_fast_force_split.nii.gz"),
                  "b": ("ts_b_ct.nii.gz", "ts_b_seg.nii.gz")}
TRAINING_SETS = {"a": ["a"], "b": ["b"], "ab": ["a", "b"]}


def prepare_training_data(out: Path) -> Path:
    """Write what ``configs/demo.yaml`` trains on into ``out`` (default ``runs/demo_data``):
    patient B (the DICOM series) as NIfTI with its labels conformed to its grid, and one
    Decathlon ``dataset_{a,b,ab}.json`` (absolute paths) per training set. Returns ``out``."""
    import json

    from medseg.io.atomic import write_text_atomic

    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    ct = io.read(CT_DICOM)
    io.write(ct, out / "ts_b_ct.nii.gz")
    io.write(io.read(CT_LABELS, label=True).conform_to(ct), out / "ts_b_seg.nii.gz", reference=ct)
    where = {"a": SAMPLES / "totalsegmentator", "b": out}
    for name, cases in TRAINING_SETS.items():
        doc = {"name": f"medseg demo, TotalSegmentator sample CT(s) {'+'.join(cases)}",
               "description": "TotalSegmentator sample CTs (Apache-2.0); labels are model "
                              "predictions. Written by python -m medseg.demo "
                              "--prepare-training.",
               "modality": {"0": "CT"},
               "labels": {"0": "background", "1": "spleen", "2": "kidney_right",
                          "3": "kidney_left", "5": "liver"},
               "training": [{"image": str(where[c] / TRAINING_CASES[c][0]),
                             "label": str(where[c] / TRAINING_CASES[c][1])} for c in cases]}
        write_text_atomic(out / f"dataset_{name}.json", json.dumps(doc, indent=1) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--prepare-training", type=Path, metavar="DIR", default=None,
                        help="only write the training data of configs/demo.yaml into DIR "
                             "(runs/demo_data) and exit")
    args = parser.parse_args(argv)
    try:
        if args.prepare_training is not None:
            print(f"wrote {prepare_training_data(args.prepare_training)}")
            return 0
        run(args.out)
    except MedsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
