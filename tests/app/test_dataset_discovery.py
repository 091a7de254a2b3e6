"""Dataset mode in the page (AppTest): the cases it lists, their references, and one status for
a case however it was opened."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.steps import open_sample_and_paint
from tests.conftest import ROOT, SAMPLES
from tests.data.test_discovery import EXPECTED_SAMPLES

APP = str(ROOT / "app" / "main.py")


def _frame(at: AppTest):  # type: ignore[no-untyped-def]
    """The dataset table (the page's dataframe with a status column)."""
    return next(d.value for d in at.dataframe if "status" in d.value.columns)


def _table(at: AppTest) -> dict[str, tuple[str, str]]:
    frame = _frame(at)
    return {c: (r, s) for c, r, s in zip(frame["case"], frame["reference"], frame["status"],
                                          strict=True)}


def test_data_samples_cases_and_one_status_however_opened(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv("MEDSEG_DATA_ROOTS", str(SAMPLES))
    at = AppTest.from_file(APP, default_timeout=180).run()
    table = _table(at)
    assert {c: r for c, (r, _) in table.items()} == EXPECTED_SAMPLES
    assert {s for _, s in table.values()} == {"to do"}
    # annotate the MR sample opened from *Sample*: dataset mode shows it in progress
    open_sample_and_paint(at, "MR abdomen, NIfTI 3 mm")
    at.radio(key="panel").set_value("Dataset").run()
    assert not at.exception
    table = _table(at)
    assert table["totalsegmentator/example_mr_sm"][1] == "in progress"
    assert [c for c, (_, s) in table.items() if s != "to do"] == ["totalsegmentator/example_mr_sm"]
    frame = _frame(at)
    opened = [c for c, o in zip(frame["case"], frame["open"], strict=True) if o]
    assert opened == ["totalsegmentator/example_mr_sm"]


def test_decathlon_folder_lists_its_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    root = tmp_path / "data" / "Task05_Tumour"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True)
    py = SAMPLES / "pyradiomics"
    shutil.copy(py / "brain1_image.nrrd", root / "imagesTr/brain1_0000.nrrd")
    shutil.copy(py / "brain1_label.nrrd", root / "labelsTr/brain1.nrrd")
    shutil.copy(py / "breast1_image.nrrd", root / "imagesTr/breast1_0000.nrrd")
    shutil.copy(py / "breast1_label.nrrd", root / "labelsTr/breast1.nrrd")
    shutil.copy(py / "brain2_image.nrrd", root / "imagesTs/brain2_0000.nrrd")
    monkeypatch.setenv("MEDSEG_DATA_ROOTS", str(tmp_path / "data"))
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert _table(at) == {
        "Task05_Tumour/imagesTr/brain1_0000": ("brain1.nrrd", "to do"),
        "Task05_Tumour/imagesTr/breast1_0000": ("breast1.nrrd", "to do"),
        "Task05_Tumour/imagesTs/brain2_0000": ("", "to do")}
    at.button(key="next_case").click().run()
    assert not at.exception
    assert at.session_state["case"].name == "brain1_0000.nrrd"
