"""``medseg pacs`` and PACS inputs/outputs of other commands, as a user runs them (the
installed command in a subprocess) against a real Orthanc: search, pull, predict from
``pacs://`` with ``--send``, the SEG read back from Orthanc equal to the predicted mask and
valid for dciodvfy, the same through DIMSE C-STORE, one-line errors, and no credential in
anything the run wrote or printed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from medseg import io
from tests.cli.clirun import Run, accepted, medseg, refused
from tests.conftest import require_tool
from tests.pacs.conftest import use_server
from tests.pacs.orthanc import DCMQI_SERIES, DCMQI_STUDY, Orthanc, orthanc_server, seed_series
from tests.pacs.stub import Answer, stub_pacs

pytestmark = pytest.mark.external
TOKEN = "tok-" + "9f8e7d6c5b4a"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    seeds = seed_series(tmp_path_factory.mktemp("seeds"))
    with orthanc_server(tmp_path_factory.mktemp("orthanc")) as orthanc:
        orthanc.upload(seeds["dcmqi"])
        yield orthanc


def _stored(run: Run, server: str, via: str) -> list[str]:
    """SOP Instance UIDs of the ``stored in SERVER (VIA): ...`` lines."""
    lines = [ln for ln in run.out.splitlines() if ln.startswith(f"stored in {server} ({via})")]
    return [ln.split("SOP Instance UID ")[1].split()[0] for ln in lines]


def _orthanc_id(server: Orthanc, sop: str) -> str:
    found = json.loads(server.request("POST", "/tools/lookup", sop.encode()))
    return str(found[0]["ID"])


def test_search_pull_predict_send_and_read_back(server: Orthanc, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from medseg.export import read_mask
    from medseg.pacs import resolve_input
    from tests.io.export_fixtures import dciodvfy

    tool = require_tool("dciodvfy")
    use_server(server, tmp_path, monkeypatch)
    runs: list[Run] = []
    search = medseg("pacs", "search", "orthanc", "--patient-id", "99000")
    accepted(search)
    header, row = search.out.splitlines()[:2]
    assert header.split()[:4] == ["PATIENT", "ID", "PATIENT", "NAME"]
    assert "JANCT000" in row and DCMQI_SERIES in row and DCMQI_STUDY in row
    assert row.split()[4] == "3"  # instances (the series has no description)

    pull = medseg("pacs", "pull", "orthanc", DCMQI_SERIES, "--out", tmp_path / "pulled")
    accepted(pull)
    assert len(list((tmp_path / "pulled" / DCMQI_SERIES).glob("*.dcm"))) == 3

    out = tmp_path / "out"
    predict = medseg("predict", "default", f"pacs://orthanc/{DCMQI_SERIES}", "--out", out,
                     "--send", "orthanc")
    accepted(predict)
    (sop,) = _stored(predict, "orthanc", "STOW-RS")
    runs += [search, pull, predict]

    # the SEG as Orthanc returns it: exactly the predicted mask on the source grid
    ct = io.read(tmp_path / "pulled" / DCMQI_SERIES)
    mask = io.read(out / f"{DCMQI_SERIES}.nii.gz", label=True)
    series = json.loads(server.request("GET", f"/instances/{_orthanc_id(server, sop)}"
                                              "/tags?simplify"))["SeriesInstanceUID"]
    seg_file, _ = resolve_input(f"pacs://orthanc/{DCMQI_STUDY}/{series}")
    assert seg_file.is_file() and seg_file.name == f"{sop}.dcm"
    back = read_mask(seg_file, ct)
    assert back.grid_differences(ct) == [] and back.grid_differences(mask) == []
    names = {v: n for v, n in (back.labels or {}).items()}
    assert set(names.values()) == {n for v, n in (mask.labels or {}).items()
                                   if v and np.any(mask.array == v)}
    inverse = {n: v for v, n in (mask.labels or {}).items()}
    remapped = np.zeros_like(mask.array)
    for v, n in names.items():
        remapped[back.array == v] = inverse[n]
    np.testing.assert_array_equal(remapped, mask.array)
    errors, _ = dciodvfy(seg_file, tool)
    assert errors == []

    # the same export made and sent twice (highdicom gives each write fresh random UIDs) is
    # one object in Orthanc
    twice = [medseg("export", out / f"{DCMQI_SERIES}.nii.gz", "-r",
                    f"pacs://orthanc/{DCMQI_SERIES}", "-o", tmp_path / f"again{i}.dcm",
                    "--send", "orthanc") for i in (1, 2)]
    for run in twice:
        accepted(run)
    (sop1,), (sop2,) = (_stored(run, "orthanc", "STOW-RS") for run in twice)
    assert sop1 == sop2 and sop1 != sop
    seg_sops = [json.loads(server.request("GET", f"/instances/{i}/tags?simplify"))
                .get("SOPInstanceUID") for i in server.instances()]
    assert seg_sops.count(sop1) == 1 and seg_sops.count(sop) == 1
    # the same through DIMSE C-STORE: removed from Orthanc, sent again, read back again
    server.request("DELETE", f"/instances/{_orthanc_id(server, sop)}")
    dimse = medseg("pacs", "send", "orthanc-dimse", out / f"{DCMQI_SERIES}.seg.dcm")
    accepted(dimse)
    assert _stored(dimse, "orthanc-dimse", "C-STORE") == [sop]
    cache2 = tmp_path / "cache2"
    monkeypatch.setenv("MEDSEG_PACS_CACHE", str(cache2))
    seg_file2, _ = resolve_input(f"pacs://orthanc/{DCMQI_STUDY}/{series}")
    np.testing.assert_array_equal(read_mask(seg_file2, ct).array, back.array)
    assert dciodvfy(seg_file2, tool)[0] == []
    rt = medseg("export", out / f"{DCMQI_SERIES}.nii.gz", "-r", f"pacs://orthanc/{DCMQI_SERIES}",
                "-f", "rtstruct", "-o", tmp_path / "rt.dcm", "--send", "orthanc-dimse")
    accepted(rt)
    (rt_sop,) = _stored(rt, "orthanc-dimse", "C-STORE")
    assert _orthanc_id(server, rt_sop)
    report = medseg("evaluate", "--pred", out / f"{DCMQI_SERIES}.nii.gz", "--ref",
                    out / f"{DCMQI_SERIES}.nii.gz", "--image", f"pacs://orthanc/{DCMQI_SERIES}",
                    "--out", tmp_path / "report")
    accepted(report)
    assert (tmp_path / "report" / "report.json").is_file()
    runs += [*twice, dimse, rt, report]
    _no_secret(tmp_path, runs, server.password)


def test_cli_errors_are_one_line(server: Orthanc, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    use_server(server, tmp_path, monkeypatch)
    refused(medseg("pacs", "search", "nosuch"), "no PACS server named 'nosuch'")
    refused(medseg("info", "pacs://orthanc/1.2.3.4.5"), "no series or study with UID 1.2.3.4.5")
    refused(medseg("info", "pacs://orthanc/not-a-uid"), "is not a DICOM UID")
    refused(medseg("pacs", "search", "orthanc", "--date", "2024"), "study date '2024'")
    ct = Path(__file__).resolve().parents[2] / "data_samples/totalsegmentator/example_ct.nii.gz"
    nosend = medseg("predict", "default", ct, "--out", tmp_path / "ns", "--send", "orthanc")
    refused(nosend, "nothing was sent")  # a NIfTI input has no series for a SEG to reference
    assert (tmp_path / "ns" / "example_ct.nii.gz").is_file()  # the mask is kept and named
    ok = medseg("info", f"pacs://orthanc/{DCMQI_SERIES}")
    accepted(ok)
    assert "[512, 512, 3]" in ok.out and DCMQI_SERIES in ok.out
    monkeypatch.setenv("MEDSEG_TEST_ORTHANC_PW", "wrong-" + server.password)
    bad = medseg("pacs", "pull", "orthanc", DCMQI_SERIES, "--out", tmp_path / "p",
                 "--refresh")
    line = refused(bad, "refused the credentials")
    assert server.password not in line and "wrong-" not in line
    assert not (tmp_path / "p").exists()
    hit = medseg("pacs", "pull", "orthanc", DCMQI_SERIES, "--out", tmp_path / "p")
    accepted(hit)  # the failed refresh kept the complete cached copy; a cache hit needs no login
    assert "(from the cache)" in hit.out
    (tmp_path / "mask.nii.gz").write_bytes(b"")
    refused(medseg("export", tmp_path / "mask.nii.gz", "-f", "stl", "-o", tmp_path / "m",
                   "--send", "orthanc"), "--send stores DICOM-SEG or RTSTRUCT")


def test_bearer_token_never_shows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bearer token reaches the server as a header and nowhere else: not in the messages
    of a refused request, not in any file medseg wrote."""
    seen: list[str] = []

    with stub_pacs(lambda _: Answer(status=401, body=b"no")) as stub:
        cfg = {"servers": {"tok": {"dicomweb": stub.url, "auth": "bearer",
                                   "token_env": "MEDSEG_TEST_TOKEN", "retries": 0}}}
        (tmp_path / "servers.yaml").write_text(json.dumps(cfg))
        monkeypatch.setenv("MEDSEG_PACS_SERVERS", str(tmp_path / "servers.yaml"))
        monkeypatch.setenv("MEDSEG_PACS_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("MEDSEG_TEST_TOKEN", TOKEN)
        runs = [medseg("pacs", "search", "tok"),
                medseg("pacs", "pull", "tok", "1.2.3", "--out", tmp_path / "o"),
                medseg("pacs", "servers")]
        seen = list(stub.requests)
    refused(runs[0], "refused the credentials")
    refused(runs[1], "refused the credentials")
    accepted(runs[2])
    assert "auth bearer" in runs[2].out and seen
    _no_secret(tmp_path, runs, TOKEN)


def _no_secret(folder: Path, runs: list[Run], secret: str) -> None:
    """Neither the printed output nor any file written under ``folder`` holds ``secret``."""
    for run in runs:
        assert secret not in run.out and secret not in run.err
    checked = 0
    for f in folder.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
            checked += 1
    assert checked > 0
