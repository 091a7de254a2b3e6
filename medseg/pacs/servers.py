"""PACS servers, configured once in a YAML servers file, and their credentials.

The file (``MEDSEG_PACS_SERVERS``, default ``~/.config/medseg/pacs.yaml``)::

    servers:
      orthanc:
        dicomweb: https://pacs.example.org/dicom-web   # QIDO/WADO/STOW root
        auth: basic                 # none | basic | bearer
        username: medseg
        password_env: ORTHANC_PASSWORD        # or password_file: ~/.config/medseg/orthanc.pw
        verify_tls: true            # the default; ca_bundle: /path/ca.pem for a private CA
        timeout_s: 30
        dimse: {ae_title: ORTHANC, host: pacs.example.org, port: 4242, calling_ae: MEDSEG}

Secrets are never written in the servers file: a password or token comes from an environment
variable (``*_env``) or from a file only its owner may read (``*_file``, mode 600 or 400).
A literal secret (``password:``, ``token:``, ``user:pass@`` in a URL) is refused without
echoing it. :class:`Secret` keeps the value out of ``repr``/``str``, so it cannot reach a
log line, a message, the workspace or a report by accident.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medseg.config import read_yaml, validate_config
from medseg.errors import ConfigError, PacsError

__all__ = ["DimseConfig", "PacsServer", "Secret", "ServersFile", "cache_root", "load_server",
           "load_servers", "servers_path"]

#: Environment variable naming the servers file, and its default location.
SERVERS_ENV = "MEDSEG_PACS_SERVERS"
DEFAULT_SERVERS = Path("~/.config/medseg/pacs.yaml")
#: Environment variable naming the retrieval cache, and its default location.
CACHE_ENV = "MEDSEG_PACS_CACHE"
DEFAULT_CACHE = Path("~/.cache/medseg/pacs")
#: Keys that would hold a secret in clear; refused wherever they appear.
LITERAL_SECRETS = ("password", "token", "secret", "api_key", "apikey", "bearer")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class Secret:
    """A credential: its value only through :meth:`reveal`, never in ``repr``/``str``."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source  # "environment variable X" / "file F": safe to show

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(from {self.source})"

    __str__ = __repr__


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DimseConfig(_Strict):
    """A DIMSE peer: the PACS's AE title, host and port, and the AE title medseg calls from."""

    ae_title: str = Field(min_length=1, max_length=16)
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    calling_ae: str = Field(default="MEDSEG", min_length=1, max_length=16)
    timeout_s: float = Field(default=30.0, gt=0)


class PacsServer(_Strict):
    """One PACS. ``name`` is the key in the servers file (what users type)."""

    name: str = ""
    dicomweb: str | None = Field(default=None, description="DICOMweb root URL")
    auth: Literal["none", "basic", "bearer"] = "none"
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    token_env: str | None = None
    token_file: Path | None = None
    verify_tls: bool = True
    ca_bundle: Path | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10, description="extra tries of idempotent reads")
    backoff_s: float = Field(default=0.5, ge=0, description="first wait between tries")
    workers: int = Field(default=4, ge=1, le=32, description="parallel instance retrievals")
    http_compression: bool = Field(
        default=False, description="ask for gzip-compressed answers (slow links only: the "
        "PACS then compresses every instance on the fly, ~13x slower on a LAN with Orthanc)")
    dimse: DimseConfig | None = None

    @model_validator(mode="after")
    def _consistent(self) -> PacsServer:
        if self.dicomweb is None and self.dimse is None:
            raise ValueError("give a dicomweb URL, a dimse peer, or both")
        if self.dicomweb is not None:
            parts = urlsplit(self.dicomweb)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("dicomweb must be an http:// or https:// URL")
        if self.auth == "basic" and (not self.username or
                                     (self.password_env is None) == (self.password_file is None)):
            raise ValueError("auth: basic needs username and one of password_env, password_file")
        if self.auth == "bearer" and (self.token_env is None) == (self.token_file is None):
            raise ValueError("auth: bearer needs one of token_env, token_file")
        return self

    @property
    def address(self) -> str:
        """Where the server is, for messages: its DICOMweb URL or AE@host:port (no secrets)."""
        if self.dicomweb is not None:
            return self.dicomweb.rstrip("/")
        assert self.dimse is not None
        return f"{self.dimse.ae_title}@{self.dimse.host}:{self.dimse.port}"

    def label(self) -> str:
        """``PACS 'name' (address)``: how messages name this server."""
        return f"PACS {self.name!r} ({self.address})"

    def password(self) -> Secret:
        return _secret(self, "password", self.password_env, self.password_file)

    def token(self) -> Secret:
        return _secret(self, "token", self.token_env, self.token_file)


class ServersFile(_Strict):
    """The whole servers file: ``servers: {name: PacsServer}``."""

    servers: dict[str, PacsServer] = Field(default_factory=dict)


def servers_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The servers file: ``path``, else ``$MEDSEG_PACS_SERVERS``, else the default."""
    chosen = path if path is not None else os.environ.get(SERVERS_ENV) or DEFAULT_SERVERS
    return Path(chosen).expanduser()


def cache_root(path: str | os.PathLike[str] | None = None) -> Path:
    """The retrieval cache folder: ``path``, else ``$MEDSEG_PACS_CACHE``, else the default."""
    chosen = path if path is not None else os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(chosen).expanduser()


def _refuse_literal_secrets(raw: Any, where: str, source: Path) -> None:
    """Refuse secrets written in clear (keys or URLs), naming the key but never the value."""
    if isinstance(raw, dict):
        for key, value in raw.items():
            k = str(key).lower()
            if k in LITERAL_SECRETS or (k.endswith(("password", "token")) and
                                        not k.endswith(("_env", "_file"))):
                raise PacsError(
                    f"{source}: {where}{key} holds a secret in clear; remove it and name an "
                    f"environment variable ({key}_env: VAR) or a file only you can read "
                    f"({key}_file: PATH, chmod 600) instead.")
            if isinstance(value, str) and "://" in value and "@" in urlsplit(value).netloc:
                raise PacsError(
                    f"{source}: {where}{key} is a URL with credentials in it (user:password@); "
                    "remove them and use username with password_env or password_file.")
            _refuse_literal_secrets(value, f"{where}{key}.", source)


def load_servers(path: str | os.PathLike[str] | None = None) -> dict[str, PacsServer]:
    """Every server of the servers file (validated), by name.

    Raises :class:`~medseg.errors.PacsError` when the file is missing or holds a secret in
    clear, :class:`~medseg.errors.ConfigError` naming each invalid key otherwise.
    """
    p = servers_path(path)
    if not p.is_file():
        raise PacsError(
            f"{p}: no PACS servers file. Create it (see docs/pacs.md: servers: NAME: dicomweb: "
            f"URL ...) or point {SERVERS_ENV} at one.")
    raw = read_yaml(p, example="a PACS servers file (docs/pacs.md)")
    _refuse_literal_secrets(raw, "", p)
    parsed = validate_config(ServersFile, raw, str(p), what="PACS servers file")
    out: dict[str, PacsServer] = {}
    for name, server in parsed.servers.items():
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{p}: server name {name!r}: use letters, digits, '.', '_' or "
                              "'-' (at most 64), starting with a letter or digit.")
        out[name] = server.model_copy(update={"name": name})
    return out


def load_server(name: str, path: str | os.PathLike[str] | None = None) -> PacsServer:
    """The server called ``name`` in the servers file; a typed error listing the names."""
    servers = load_servers(path)
    if name not in servers:
        known = ", ".join(sorted(servers)) or "none"
        raise PacsError(f"no PACS server named {name!r} in {servers_path(path)} (servers: "
                        f"{known}). Add it there or use one of those names.")
    return servers[name]


def _secret(server: PacsServer, what: str, env: str | None, file: Path | None) -> Secret:
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise PacsError(f"{server.label()}: the {what} is read from the environment "
                            f"variable {env}, which is not set. Set it before running medseg.")
        return Secret(value, f"environment variable {env}")
    assert file is not None
    return Secret(_read_secret_file(server, what, file.expanduser()), f"file {file}")


def _read_secret_file(server: PacsServer, what: str, path: Path) -> str:
    """The first line of a secret file that only its owner (this user) may read."""
    try:
        st = path.stat()
    except OSError:
        raise PacsError(f"{server.label()}: the {what} file {path} does not exist or cannot "
                        "be read. Create it (one line) and chmod 600 it.") from None
    if not stat.S_ISREG(st.st_mode):
        raise PacsError(f"{server.label()}: the {what} file {path} is not a regular file.")
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PacsError(
            f"{server.label()}: the {what} file {path} may be read by other users (mode "
            f"{stat.S_IMODE(st.st_mode):o}, owner uid {st.st_uid}); medseg reads secrets only "
            f"from files its own user owns and nobody else can read: chmod 600 {path}.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise PacsError(f"{server.label()}: the {what} file {path} cannot be read as UTF-8 "
                        "text.") from None
    value = text.splitlines()[0].strip() if text.strip() else ""
    if not value:
        raise PacsError(f"{server.label()}: the {what} file {path} is empty.")
    return value
