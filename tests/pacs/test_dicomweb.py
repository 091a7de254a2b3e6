"""DICOMweb against a real Orthanc: search, retrieve into the cache, read like a folder,
cache hits without the network, and stores that are idempotent."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import pytest

from medseg import io
from medseg.errors import InconsistentSeriesError, PacsNotFoundError, SeriesSelectionError
from medseg.pacs import DicomWeb, SearchFilters, load_server, pull, read_series, resolve_input
from medseg.pacs.send import send_files
from tests.pacs.conftest import use_server
from tests.pacs.orthanc import (
    DCMQI_SERIES,
    DCMQI_STUDY,
    TS_SERIES,
    TS_STUDY,
    Orthanc,
    orthanc_server,
)

pytestmark = pytest.mark.external


@pytest.mark.parametrize(("filters", "found"), [
    ({}, {TS_SERIES, DCMQI_SERIES}),
    ({"patient_id": "TS*"}, {TS_SERIES}),
    ({"patient_name": "example*"}, {TS_SERIES}),
    ({"study_date": "20200101-"}, {TS_SERIES}),
    ({"study_date": "20030101-20031231"}, {DCMQI_SERIES}),
    ({"modality": "CT"}, {TS_SERIES, DCMQI_SERIES}),
    ({"modality": "MR"}, set()),
    ({"accession_number": "03086212"}, {DCMQI_SERIES}),
    ({"description": "*Body*"}, {TS_SERIES}),
    ({"study_uid": DCMQI_STUDY}, {DCMQI_SERIES}),
])
def test_search_finds_the_seeded_series(pacs_env: Path, filters: dict[str, str],
                                        found: set[str]) -> None:
    pacs = DicomWeb(load_server("orthanc"))
    records = pacs.search_series(SearchFilters(**filters))
    assert {r.series_uid for r in records} == found
    for r in records:
        n = 20 if r.series_uid == TS_SERIES else 3
        assert r.n_instances == n and r.modality == "CT"
    if TS_SERIES in found:
        ts = next(r for r in records if r.series_uid == TS_SERIES)
        assert (ts.patient_id, ts.study_date, ts.description, ts.study_uid) == \
            ("TS-EXAMPLE", "20221208", "CT Body 3.0", TS_STUDY)


def test_study_search(pacs_env: Path) -> None:
    pacs = DicomWeb(load_server("orthanc"))
    studies = pacs.search_studies(SearchFilters(patient_id="99000"))
    assert [(s.study_uid, s.patient_name, s.n_series) for s in studies] == \
        [(DCMQI_STUDY, "JANCT000", 1)]


def test_pull_reads_like_the_folder_and_hits_the_cache_offline(
        tmp_path: Path, seeds: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    with orthanc_server(tmp_path / "o") as server:
        server.upload(seeds["ts"])
        use_server(server, tmp_path, monkeypatch)
        seen: list[tuple[int, int]] = []
        got = pull(f"pacs://orthanc/{TS_SERIES}", progress=lambda d, t: seen.append((d, t)))
        assert not got.hit and got.fetched == got.n_instances == 20
        assert seen[-1] == (20, 20)
        server.kill()  # the PACS is gone: a repeated open is served from the cache
        again = pull(f"pacs://orthanc/{TS_SERIES}")
    assert again.hit and again.path == got.path and again.fetched == 0
    # the cached files are the PACS's objects, byte for byte (no transcoding)
    names = sorted(p.name for p in got.path.iterdir())
    assert names == sorted(p.name for p in seeds["ts"].iterdir())
    assert all(filecmp.cmp(got.path / n, seeds["ts"] / n, shallow=False) for n in names)
    manifest = json.loads(got.path.with_name(got.path.name + ".json").read_text())
    assert manifest["series_uid"] == TS_SERIES and len(manifest["instances"]) == 20
    vol, disk = read_series(got), io.read(seeds["ts"])
    assert vol.grid_differences(disk) == []
    np.testing.assert_array_equal(vol.array, disk.array)
    assert vol.meta["dicom"].series_uid == TS_SERIES


def test_study_uid_resolves_to_its_series(pacs_env: Path) -> None:
    path, series = resolve_input(f"pacs://orthanc/{DCMQI_STUDY}", "1")
    assert series is None and path.name == DCMQI_SERIES and len(list(path.iterdir())) == 3
    path2, _ = resolve_input(f"pacs:/orthanc/{DCMQI_STUDY}/{DCMQI_SERIES}")  # as Path prints
    assert path2 == path
    local, kept = resolve_input(Path("some/file.nii.gz"), "2")
    assert (local, kept) == (Path("some/file.nii.gz"), "2")
    with pytest.raises(SeriesSelectionError, match="has no series '7'"):
        resolve_input(f"pacs://orthanc/{DCMQI_STUDY}", "7")
    with pytest.raises(PacsNotFoundError, match="no series or study with UID 1.2.3.4"):
        resolve_input("pacs://orthanc/1.2.3.4")


def test_study_with_several_series_asks_which(orthanc: Orthanc, pacs_env: Path,
                                              tmp_path: Path, seeds: dict[str, Path]) -> None:
    """A second image series in the dcmqi study: the study UID alone is ambiguous."""
    import pydicom

    extra = tmp_path / "extra"
    extra.mkdir()
    for i, f in enumerate(sorted(seeds["dcmqi"].iterdir())):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID, ds.SeriesNumber = "1.2.3.4.5.6.7.1", 9
        ds.SOPInstanceUID = f"1.2.3.4.5.6.7.1.{i + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(extra / f"{i}.dcm")
    orthanc.upload(extra)
    with pytest.raises(SeriesSelectionError, match=r"holds 2 series: 1 = .*2 = 1\.2\.3\.4"):
        resolve_input(f"pacs://orthanc/{DCMQI_STUDY}")
    path, _ = resolve_input(f"pacs://orthanc/{DCMQI_STUDY}", "1.2.3.4.5.6.7.1")
    assert path.name == "1.2.3.4.5.6.7.1"


def test_instances_that_disagree_are_refused_by_the_reader(
        orthanc: Orthanc, pacs_env: Path, tmp_path: Path, seeds: dict[str, Path]) -> None:
    """One slice of a series with another pixel spacing: the same refusal as from a folder,
    naming the PACS series."""
    import pydicom

    bad = tmp_path / "bad"
    bad.mkdir()
    uid = "1.2.3.4.5.6.8"
    for i, f in enumerate(sorted(seeds["dcmqi"].iterdir())):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, f"{uid}.{i + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if i == 1:
            ds.PixelSpacing = [0.5, 0.5]
        ds.save_as(bad / f"{i}.dcm")
    orthanc.upload(bad)
    cached = pull(f"pacs://orthanc/{uid}")
    with pytest.raises(InconsistentSeriesError, match=f"pacs://orthanc/{uid}: .*spacing"):
        read_series(cached)


def test_storing_the_same_export_twice_makes_one_object(
        orthanc: Orthanc, pacs_env: Path, tmp_path: Path) -> None:
    """Two exports of one mask (each written with fresh random UIDs by highdicom) are sent:
    content-derived UIDs make them the same object, and Orthanc holds it once."""
    from medseg.export import export

    path, _ = resolve_input(f"pacs://orthanc/{DCMQI_SERIES}")
    ct = io.read(path)
    arr = np.zeros(ct.shape, np.uint8)
    arr[200:260, 220:300, :] = 1
    mask = ct.with_array(arr, labels={1: "liver"})
    files = [tmp_path / "a.dcm", tmp_path / "b.dcm"]
    for f in files:
        export(mask, ct, "seg", f)
    server = load_server("orthanc")
    first, second = send_files(server, [files[0]]), send_files(server, [files[1]])
    assert first[0].sop_instance_uid == second[0].sop_instance_uid
    assert first[0].via == "STOW-RS" and first[0].study_uid == DCMQI_STUDY
    segs = DicomWeb(server).search_series(SearchFilters(modality="SEG", study_uid=DCMQI_STUDY))
    uids = [r.series_uid for r in segs]
    assert uids.count(first[0].series_uid) == 1
    assert DicomWeb(server).instance_uids(DCMQI_STUDY, first[0].series_uid) == \
        [first[0].sop_instance_uid]
    # another mask is another object
    arr[200:210, 220:230, 0] = 0
    export(ct.with_array(arr, labels={1: "liver"}), ct, "seg", tmp_path / "c.dcm")
    third = send_files(server, [tmp_path / "c.dcm"])
    assert third[0].sop_instance_uid != first[0].sop_instance_uid
