"""Dataset manifests (Decathlon, folder pairs, nnU-Net raw) and patient-level splits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medseg.config import DataConfig
from medseg.data import Case, load_dataset, patient_id, split_cases
from medseg.errors import ConfigError, DatasetError
from tests.engine.fixtures import LABELS, make_dataset


@pytest.fixture(scope="module")
def decathlon(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("dec"))


def test_decathlon(decathlon: Path) -> None:
    ds = load_dataset(DataConfig(root=decathlon))
    assert [c.id for c in ds.cases] == ["case0", "case1", "case2"]
    assert ds.labels == LABELS and ds.modality == "CT"
    assert ds.cases[0].images[0].is_file() and ds.cases[0].label.is_file()
    assert ds.cases[0].as_dict()["image"].endswith("imagesTr/case0.nii.gz")


def test_folder_pairs_need_names_and_matching_labels(decathlon: Path, tmp_path: Path) -> None:
    root = tmp_path / "pairs"
    shutil.copytree(decathlon.parent / "imagesTr", root / "img")
    shutil.copytree(decathlon.parent / "labelsTr", root / "lab")
    cfg = DataConfig(format="folders", root=root, images_dir="img", labels_dir="lab")
    with pytest.raises(DatasetError, match="Set data.labels"):
        load_dataset(cfg)
    cfg.labels = LABELS
    assert len(load_dataset(cfg).cases) == 3
    (root / "lab/case2.nii.gz").unlink()
    with pytest.raises(DatasetError, match=r"case case2: no label file"):
        load_dataset(cfg)
    with pytest.raises(DatasetError, match=r"data.images_dir"):
        load_dataset(DataConfig(format="folders", root=root, images_dir="x", labels=LABELS))


def test_nnunet_raw_layout(decathlon: Path, tmp_path: Path) -> None:
    root = tmp_path / "Dataset001_Tiny"
    (root / "imagesTr").mkdir(parents=True)
    shutil.copytree(decathlon.parent / "labelsTr", root / "labelsTr")
    for f in (decathlon.parent / "imagesTr").iterdir():
        shutil.copy(f, root / "imagesTr" / f.name.replace(".nii.gz", "_0000.nii.gz"))
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "file_ending": ".nii.gz", "numTraining": 3,
        "labels": {"background": 0, "spleen": 1, "kidney_left": 2, "liver": 3}}))
    ds = load_dataset(DataConfig(format="nnunet", root=root))
    assert [c.id for c in ds.cases] == ["case0", "case1", "case2"] and ds.labels == LABELS


def test_label_values_must_be_consecutive(decathlon: Path) -> None:
    with pytest.raises(DatasetError, match="1..N without gaps"):
        load_dataset(DataConfig(root=decathlon, labels={1: "a", 3: "c"}))


def test_keep_labels_renumbers(decathlon: Path) -> None:
    ds = load_dataset(DataConfig(root=decathlon, keep_labels={3: "liver", 1: "spleen"}))
    assert ds.labels == {1: "liver", 2: "spleen"}


def test_keep_labels_sharing_a_name_merge(decathlon: Path) -> None:
    """{1: tumour, 2: tumour, ...} trains 'label > 0' as one class (BRATS whole tumour)."""
    import nibabel as nib
    import numpy as np

    from medseg.transforms import load_transforms

    cfg = DataConfig(root=decathlon, keep_labels={2: "fg", 9: "other", 1: "fg"})
    assert cfg.label_mapping() == {2: 1, 9: 2, 1: 1}
    ds = load_dataset(cfg)
    assert ds.labels == {1: "fg", 2: "other"}
    case = ds.cases[0]
    raw = np.asarray(nib.load(str(case.label)).dataobj)
    assert {1, 2} <= set(np.unique(raw).tolist())
    d = {"image": str(case.images[0]), "label": str(case.label)}
    for t in load_transforms(("image", "label"), cfg.label_mapping()):
        d = t(d)
    lab = np.asarray(d["label"])[0]
    assert np.array_equal(lab == 1, np.isin(raw, (1, 2))) and not (lab == 2).any()


def _cases(ids: list[str]) -> list[Case]:
    return [Case(i, (Path(f"{i}.nii.gz"),), Path(f"{i}_seg.nii.gz")) for i in ids]


def test_patient_level_split_and_kfold() -> None:
    ids = [f"pat{p}_scan{s}" for p in range(6) for s in range(2)]
    cfg = DataConfig(root=Path("."), patient_id_pattern=r"^(pat\d+)_", val_fraction=0.34)
    assert patient_id("pat3_scan1", cfg.patient_id_pattern) == "pat3"
    train, val = split_cases(_cases(ids), cfg)
    tp = {patient_id(c.id, cfg.patient_id_pattern) for c in train}
    vp = {patient_id(c.id, cfg.patient_id_pattern) for c in val}
    assert len(vp) == 2 and not tp & vp and len(train) + len(val) == 12
    seen: list[str] = []
    for fold in range(3):
        kcfg = DataConfig(root=Path("."), patient_id_pattern=r"^(pat\d+)_", n_folds=3, fold=fold)
        _, v = split_cases(_cases(ids), kcfg)
        assert len(v) == 4
        seen += [c.id for c in v]
    assert sorted(seen) == sorted(ids)  # every case validated exactly once
    with pytest.raises(ConfigError, match="n_folds=20"):
        split_cases(_cases(ids), DataConfig(root=Path("."), n_folds=20))
    with pytest.raises(ValueError, match="fold 3 must be < n_folds 3"):
        DataConfig(root=Path("."), n_folds=3, fold=3)
