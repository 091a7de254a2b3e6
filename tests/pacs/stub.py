"""A small real HTTP server (stdlib ``http.server`` in a thread) that answers like a broken
PACS: garbage, malformed JSON, non-DICOM parts, 404/401/503, slow or cut-off answers.

``answer(path)`` (given by the test) returns an :class:`Answer` for each request; every
request path is recorded in ``StubPacs.requests``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BOUNDARY = "stub-boundary-7d3"
MULTIPART = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/dicom+json"
    delay_s: float = 0.0
    cut_after: int | None = None  # send only this many body bytes, then close


def multipart(part: bytes, closed: bool = True) -> bytes:
    """One DICOM part wrapped as a WADO-RS multipart answer (optionally without its end)."""
    head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    return head + part + (f"\r\n--{BOUNDARY}--\r\n".encode() if closed else b"")


@dataclass
class StubPacs:
    answer: Callable[[str], Answer]
    requests: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"


@contextlib.contextmanager
def stub_pacs(answer: Callable[[str], Answer]) -> Iterator[StubPacs]:
    stub = StubPacs(answer)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            return

        def _reply(self) -> None:
            stub.requests.append(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            a = stub.answer(self.path)
            time.sleep(a.delay_s)
            self.send_response(a.status)
            self.send_header("Content-Type", a.content_type)
            self.send_header("Content-Length", str(len(a.body)))
            if a.cut_after is not None:
                self.send_header("Connection", "close")
            self.end_headers()
            body = a.body if a.cut_after is None else a.body[: a.cut_after]
            with contextlib.suppress(OSError):
                self.wfile.write(body)
                self.wfile.flush()
            if a.cut_after is not None:
                self.close_connection = True

        do_GET = do_POST = _reply

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    stub.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
