"""The servers file: validation, credentials only from the environment or an owner-only file,
and secrets that never show in a repr or a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.errors import ConfigError, PacsError
from medseg.pacs.http import make_session
from medseg.pacs.servers import cache_root, load_server, load_servers

SECRET = "s3cr3t-Pa55-w0rd"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "pacs.yaml"
    p.write_text(text)
    return p


def test_servers_load_with_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _write(tmp_path, """
servers:
  main:
    dicomweb: https://pacs.example.org/dicom-web
    auth: basic
    username: medseg
    password_env: PACS_PW
    dimse: {ae_title: MAIN, host: pacs.example.org, port: 104}
  open:
    dicomweb: http://localhost:8042/dicom-web
""")
    servers = load_servers(p)
    assert sorted(servers) == ["main", "open"]
    main = servers["main"]
    assert main.name == "main" and main.verify_tls and main.dimse and main.dimse.port == 104
    assert main.label() == "PACS 'main' (https://pacs.example.org/dicom-web)"
    monkeypatch.setenv("PACS_PW", SECRET)
    secret = main.password()
    assert secret.reveal() == SECRET
    assert SECRET not in repr(secret) and SECRET not in str(secret)
    assert "PACS_PW" in repr(secret)
    session = make_session(main)
    assert session.verify is True and SECRET not in repr(session.auth.__dict__.keys())
    monkeypatch.setenv("MEDSEG_PACS_SERVERS", str(p))
    assert load_server("open").auth == "none"
    monkeypatch.setenv("MEDSEG_PACS_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"


def test_missing_env_variable_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _write(tmp_path, "servers:\n  s:\n    dicomweb: http://h/dw\n    auth: bearer\n"
                         "    token_env: MEDSEG_NO_SUCH_TOKEN\n")
    monkeypatch.delenv("MEDSEG_NO_SUCH_TOKEN", raising=False)
    with pytest.raises(PacsError, match="MEDSEG_NO_SUCH_TOKEN, which is not set"):
        load_server("s", p).token()


def test_secret_file_must_be_owner_only(tmp_path: Path) -> None:
    pw = tmp_path / "pw.txt"
    pw.write_text(SECRET + "\n")
    p = _write(tmp_path, f"servers:\n  s:\n    dicomweb: http://h/dw\n    auth: basic\n"
                         f"    username: u\n    password_file: {pw}\n")
    server = load_server("s", p)
    pw.chmod(0o644)
    with pytest.raises(PacsError, match="chmod 600") as err:
        server.password()
    assert SECRET not in str(err.value) and "mode 644" in str(err.value)
    pw.chmod(0o600)
    assert server.password().reveal() == SECRET
    pw.unlink()
    with pytest.raises(PacsError, match="does not exist"):
        server.password()


@pytest.mark.parametrize("text", [
    f"servers:\n  s:\n    dicomweb: http://h/dw\n    password: {SECRET}\n",
    f"servers:\n  s:\n    dicomweb: http://h/dw\n    token: {SECRET}\n",
    f"servers:\n  s:\n    dicomweb: http://u:{SECRET}@h/dw\n",
    f"servers:\n  s:\n    dicomweb: http://h/dw\n    dimse: {{ae_title: A, host: h, port: 1, "
    f"api_key: {SECRET}}}\n",
])
def test_secret_in_clear_is_refused_without_echoing_it(tmp_path: Path, text: str) -> None:
    with pytest.raises(PacsError) as err:
        load_servers(_write(tmp_path, text))
    msg = str(err.value)
    assert SECRET not in msg and ("_env" in msg or "password_env" in msg)


@pytest.mark.parametrize(("text", "expected"), [
    ("servers:\n  s:\n    dicomweb: http://h/dw\n    verify: false\n", "unknown key"),
    ("servers:\n  s:\n    auth: none\n", "dicomweb URL, a dimse peer"),
    ("servers:\n  s:\n    dicomweb: ftp://h/dw\n", "http:// or https://"),
    ("servers:\n  s:\n    dicomweb: http://h/dw\n    auth: basic\n    username: u\n",
     "password_env, password_file"),
    ("servers:\n  s:\n    dimse: {ae_title: A, host: h, port: 70000}\n", "port"),
    ("servers:\n  'bad name':\n    dicomweb: http://h/dw\n", "server name"),
])
def test_invalid_servers_file_names_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_servers(_write(tmp_path, text))


def test_unknown_server_and_missing_file(tmp_path: Path) -> None:
    p = _write(tmp_path, "servers:\n  a:\n    dicomweb: http://h/dw\n")
    with pytest.raises(PacsError, match=r"no PACS server named 'b' .*\(servers: a\)"):
        load_server("b", p)
    with pytest.raises(PacsError, match="no PACS servers file"):
        load_servers(tmp_path / "none.yaml")
