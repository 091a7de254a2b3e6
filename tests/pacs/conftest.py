"""PACS fixtures: a real Orthanc seeded with the bundled series, and a servers file for it.

``orthanc`` is one server per test module (seeded with the TotalSegmentator CT and the dcmqi
CT, authentication on); tests that stop or break their server start their own with
:func:`tests.pacs.orthanc.orthanc_server`. ``pacs_env`` points medseg at it: a servers file
(``MEDSEG_PACS_SERVERS``), the password in ``MEDSEG_TEST_ORTHANC_PW`` and a fresh cache
(``MEDSEG_PACS_CACHE``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pacs.orthanc import Orthanc, orthanc_server, seed_series


@pytest.fixture(scope="session")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return seed_series(tmp_path_factory.mktemp("pacs-seeds"))


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, seeds: dict[str, Path]
            ) -> Iterator[Orthanc]:
    with orthanc_server(tmp_path_factory.mktemp("orthanc")) as server:
        server.upload(seeds["ts"])
        server.upload(seeds["dcmqi"])
        yield server


def use_server(server: Orthanc, folder: Path, monkeypatch: pytest.MonkeyPatch,
               extra: dict[str, object] | None = None) -> Path:
    """Point medseg at ``server``: servers file, password variable, a fresh cache."""
    servers = server.servers_file(folder / "servers.yaml", extra=extra)
    monkeypatch.setenv("MEDSEG_PACS_SERVERS", str(servers))
    monkeypatch.setenv("MEDSEG_TEST_ORTHANC_PW", server.password)
    monkeypatch.setenv("MEDSEG_PACS_CACHE", str(folder / "cache"))
    return servers


@pytest.fixture
def pacs_env(orthanc: Orthanc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return use_server(orthanc, tmp_path, monkeypatch)
