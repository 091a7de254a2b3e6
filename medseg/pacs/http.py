"""HTTP for DICOMweb: one configured session per server, typed errors, retries with backoff.

* :func:`make_session` gives a ``requests.Session`` with the server's authentication (HTTP
  basic or a bearer token, read when the session is made), TLS verification (on unless the
  servers file turns it off; ``ca_bundle`` for a private CA) and nothing else.
* :func:`translate` turns what ``requests`` / ``dicomweb-client`` raise into a
  :class:`~medseg.errors.PacsError` subclass whose one-line message names the server and its
  URL and says what to do. It never includes a request's headers, so credentials cannot leak.
* :func:`with_retries` runs an idempotent read again after a connection failure, a time-out,
  a dropped transfer or HTTP 429/502/503/504, waiting ``backoff_s``, then twice that, ...
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import requests
from requests.auth import AuthBase, HTTPBasicAuth

from medseg.errors import (
    MedsegError,
    PacsAuthError,
    PacsConnectionError,
    PacsError,
    PacsNotFoundError,
    PacsResponseError,
)
from medseg.io.atomic import output_error
from medseg.io.quiet import one_line
from medseg.pacs.servers import PacsServer

__all__ = ["RETRY_STATUS", "is_retriable", "make_session", "translate", "with_retries"]

T = TypeVar("T")
#: HTTP answers that say "try again later".
RETRY_STATUS = frozenset({408, 429, 502, 503, 504})


class BearerAuth(AuthBase):
    """``Authorization: Bearer <token>`` on every request (the token stays out of repr)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r

    def __repr__(self) -> str:
        return "BearerAuth(***)"


def make_session(server: PacsServer) -> requests.Session:
    """A session for ``server``: its authentication, TLS verification, a connection pool
    sized for its parallel retrievals, and uncompressed answers unless ``http_compression``
    (a PACS such as Orthanc otherwise gzips each instance on the fly: 66 ms instead of 5 ms
    per 512 KiB CT slice on localhost)."""
    session = requests.Session()
    if server.auth == "basic":
        assert server.username is not None
        session.auth = HTTPBasicAuth(server.username, server.password().reveal())
    elif server.auth == "bearer":
        session.auth = BearerAuth(server.token().reveal())
    session.verify = str(server.ca_bundle.expanduser()) if server.ca_bundle else \
        server.verify_tls
    if not server.http_compression:  # DICOM is sent as is: no on-the-fly gzip by the PACS
        session.headers["Accept-Encoding"] = "identity"
    adapter = requests.adapters.HTTPAdapter(pool_connections=1,
                                            pool_maxsize=max(4, server.workers))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def is_retriable(exc: BaseException) -> bool:
    """True for failures worth another try: no connection, a time-out, a dropped transfer,
    or an HTTP answer that asks to come back later."""
    if isinstance(exc, PacsConnectionError):
        return True
    if isinstance(exc, requests.HTTPError):
        return _status(exc) in RETRY_STATUS
    return isinstance(exc, (requests.ConnectionError, requests.Timeout,
                            requests.exceptions.ChunkedEncodingError,
                            requests.exceptions.ContentDecodingError))


def translate(exc: BaseException, server: PacsServer, doing: str) -> PacsError:
    """A typed one-line error for ``exc`` raised while ``doing`` (e.g. "searching series")."""
    if isinstance(exc, PacsError):
        return exc
    where = f"{server.label()}, {doing}"
    status = _status(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return PacsConnectionError(
            f"{where}: the TLS certificate could not be verified. Give the PACS's CA "
            "certificate as ca_bundle in the servers file (turning verify_tls off is unsafe).")
    if isinstance(exc, requests.Timeout):
        return PacsConnectionError(
            f"{where}: no answer within {server.timeout_s:g} s. Check that the PACS is up and "
            "reachable, or raise timeout_s in the servers file.")
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError,
                        requests.exceptions.ContentDecodingError)):
        return PacsConnectionError(
            f"{where}: the connection was dropped in the middle of the transfer. Try again; "
            "what was retrieved completely is kept and not fetched twice.")
    if isinstance(exc, requests.ConnectionError):
        return PacsConnectionError(
            f"{where}: cannot connect. Check that the PACS is running and that the URL "
            "(host, port, path) in the servers file is right.")
    if status in (401, 403):
        word = "refused the credentials" if status == 401 else "denied access"
        return PacsAuthError(
            f"{where}: the server {word} (HTTP {status}). Check the username and the "
            "password/token the servers file names, and the account's rights on the PACS.")
    if status == 404:
        return PacsNotFoundError(
            f"{where}: not found (HTTP 404). Check the UID, and that the servers file's "
            "dicomweb URL is the DICOMweb root (e.g. http://host:8042/dicom-web).")
    if status is not None:
        return PacsResponseError(
            f"{where}: the server answered HTTP {status}. Try again later or ask the PACS "
            "administrator.")
    if isinstance(exc, ValueError):  # JSON, multipart or DICOM decoding of an answer
        return PacsResponseError(
            f"{where}: the answer is not valid DICOMweb ({type(exc).__name__}: "
            f"{one_line(exc, 120)}). Check that the URL points at a DICOMweb service.")
    return PacsResponseError(f"{where}: unexpected failure ({type(exc).__name__}: "
                             f"{one_line(exc, 120)}).")


def with_retries(call: Callable[[], T], server: PacsServer, doing: str, *,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """``call()``, tried again on retriable failures (``server.retries`` more times, waiting
    ``backoff_s * 2**n`` between); any failure ends as a typed :class:`PacsError`."""
    attempt = 0
    while True:
        try:
            return call()
        except Exception as exc:
            if isinstance(exc, OSError) and not isinstance(exc, requests.RequestException):
                raise output_error(exc, exc.filename or "the PACS cache") from exc  # local disk
            if isinstance(exc, MedsegError) and not isinstance(exc, PacsConnectionError):
                raise
            if attempt >= server.retries or not is_retriable(exc):
                raise translate(exc, server, doing) from exc
            sleep(server.backoff_s * (2 ** attempt))
            attempt += 1
