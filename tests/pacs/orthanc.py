"""A real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) for tests, demos and benches.

:func:`orthanc_server` starts ``Orthanc`` on free local ports (HTTP and DICOM) with a
temporary storage folder, HTTP basic authentication on (a random password per server) and the
DICOMweb plugin, waits until it answers, and stops it afterwards. :func:`seed_series` prepares
the bundled DICOM series for it (the TotalSegmentator CT blanks its study/series/instance UIDs,
which a PACS needs: they are filled with fixed UIDs in copies).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.app.browser import free_port
from tests.conftest import SAMPLES, require_tool

PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER = "medseg"
AET = "ORTHANCTEST"
TS_CT = SAMPLES / "totalsegmentator/example_ct_dicom"
DCMQI_CT = SAMPLES / "dcmqi/ct-3slice"
#: Fixed UIDs given to the TotalSegmentator CT (its files blank them) when it is seeded.
TS_STUDY = "1.2.826.0.1.3680043.8.498.10000000000000000000000000000000001"
TS_SERIES = "1.2.826.0.1.3680043.8.498.10000000000000000000000000000000002"
DCMQI_STUDY = "1.2.392.200103.20080913.113635.0.2009.6.22.21.43.10.22941.1"
DCMQI_SERIES = "1.2.392.200103.20080913.113635.1.2009.6.22.21.43.10.23430.1"


@dataclass
class Orthanc:
    """A running Orthanc: its ports, folder, credentials and process."""

    folder: Path
    http_port: int
    dicom_port: int
    password: str
    auth: bool = True
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def log(self) -> Path:
        return self.folder / "orthanc.log"

    def config(self) -> dict[str, object]:
        return {
            "Name": "medseg-test", "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "storage"), "HttpPort": self.http_port,
            "DicomPort": self.dicom_port, "DicomAet": AET, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": self.auth,
            "RegisteredUsers": {USER: self.password} if self.auth else {},
            "Plugins": [str(PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False,
            "StorageCompression": False, "SaveJobs": False, "HttpThreadsCount": 8,
            "StableAge": 1, "ConcurrentJobs": 1, "HttpTimeout": 30,
        }

    def start(self) -> None:
        """Start (or restart) the server on the same ports and storage; wait until ready."""
        cfg = self.folder / "orthanc.json"
        cfg.write_text(json.dumps(self.config(), indent=1))
        cfg.chmod(0o600)
        log = open(self.log, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen([require_tool("Orthanc"), str(cfg)], stdout=log,
                                     stderr=subprocess.STDOUT, cwd=self.folder)
        log.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                self.request("GET", "/system")
                return
            except (OSError, urllib.error.URLError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("Orthanc did not start:\n"
                                       + self.log.read_text(errors="replace")[-3000:]) from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Stop the server at once (SIGKILL), as a crash or a pulled cable would."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def request(self, method: str, path: str, data: bytes | None = None,
                headers: dict[str, str] | None = None) -> bytes:
        """An authenticated request to Orthanc's own REST API."""
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers=dict(headers or {}))
        if self.auth:
            token = base64.b64encode(f"{USER}:{self.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=30) as r:
            return bytes(r.read())

    def upload(self, folder: Path) -> int:
        """POST every file of ``folder`` to /instances; returns how many were stored."""
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        for f in files:
            self.request("POST", "/instances", f.read_bytes(),
                         {"Content-Type": "application/dicom"})
        return len(files)

    def instances(self) -> list[str]:
        return list(json.loads(self.request("GET", "/instances")))

    def servers_file(self, path: Path, *, password_env: str = "MEDSEG_TEST_ORTHANC_PW",
                     extra: dict[str, object] | None = None) -> Path:
        """A medseg servers file: ``orthanc`` (DICOMweb + DIMSE, basic auth from
        ``password_env``) and ``orthanc-dimse`` (DIMSE only). The caller sets the variable."""
        base: dict[str, object] = {
            "dicomweb": self.dicomweb, "timeout_s": 10, "retries": 2, "backoff_s": 0.05,
            "dimse": {"ae_title": AET, "host": "127.0.0.1", "port": self.dicom_port,
                      "timeout_s": 10}}
        if self.auth:
            base.update(auth="basic", username=USER, password_env=password_env)
        base.update(extra or {})
        servers = {"servers": {"orthanc": base, "orthanc-dimse": {"dimse": base["dimse"]}}}
        path.write_text(json.dumps(servers, indent=1))  # JSON is YAML
        return path


@contextlib.contextmanager
def orthanc_server(folder: Path, *, auth: bool = True) -> Iterator[Orthanc]:
    """A fresh Orthanc in ``folder`` on free ports; stopped (and its files left) after."""
    require_tool("Orthanc")
    if not PLUGIN.exists():
        require_tool("orthanc-dicomweb-plugin-missing")  # skip (fail under CI)
    folder.mkdir(parents=True, exist_ok=True)
    server = Orthanc(folder, free_port(), free_port(), secrets.token_urlsafe(18), auth)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def seed_series(dest: Path) -> dict[str, Path]:
    """Copies of the bundled series ready for a PACS: ``{"ts": folder, "dcmqi": folder}``.

    The TotalSegmentator CT (20 JPEG 2000 slices) gets :data:`TS_STUDY` / :data:`TS_SERIES`,
    its SOP Class/Instance UIDs from its file meta, a patient ID, name, accession number and
    study description; the dcmqi CT (3 slices) is copied as it is.
    """
    import pydicom

    ts = dest / "ts"
    if not ts.is_dir():
        tmp = dest / ".ts-tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for f in sorted(TS_CT.iterdir()):
            ds = pydicom.dcmread(f)
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
            ds.StudyInstanceUID, ds.SeriesInstanceUID = TS_STUDY, TS_SERIES
            ds.PatientID, ds.PatientName = "TS-EXAMPLE", "Example^TotalSegmentator"
            ds.AccessionNumber, ds.StudyDescription = "ACC-TS-1", "CT abdomen example"
            ds.SeriesNumber = 2
            ds.save_as(tmp / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
        os.replace(tmp, ts)
    dcmqi = dest / "dcmqi"
    if not dcmqi.is_dir():
        shutil.copytree(DCMQI_CT, dcmqi)
    return {"ts": ts, "dcmqi": dcmqi}


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.pacs.orthanc``: a local Orthanc to try medseg's PACS features.

    Starts Orthanc (authentication on) in ``--folder``, seeds it with the bundled series,
    writes a servers file for medseg and prints how to use it; stops on Ctrl-C.
    """
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])  # type: ignore
    parser.add_argument("--folder", type=Path, default=Path("out/orthanc"))
    args = parser.parse_args(argv)
    folder = args.folder.resolve()
    seeds = seed_series(folder / "seed")
    with orthanc_server(folder / "server") as server:
        server.upload(seeds["ts"])
        server.upload(seeds["dcmqi"])
        pw_file = folder / "orthanc.password"
        pw_file.write_text(server.password + "\n")
        pw_file.chmod(0o600)
        servers = server.servers_file(folder / "pacs.yaml")
        text = servers.read_text().replace('"password_env": "MEDSEG_TEST_ORTHANC_PW"',
                                           f'"password_file": "{pw_file}"')
        servers.write_text(text)
        print(f"Orthanc is running: DICOMweb {server.dicomweb} (user {USER}, password in "
              f"{pw_file}), DIMSE {AET}@127.0.0.1:{server.dicom_port}, Orthanc Explorer "
              f"{server.url}/app/explorer.html\n\nexport MEDSEG_PACS_SERVERS={servers}\n"
              "medseg pacs search orthanc\n"
              f"medseg predict default pacs://orthanc/{TS_SERIES} --out out/pacs --send "
              "orthanc\n\nCtrl-C stops it (its files stay in the folder).", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
