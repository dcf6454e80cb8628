"""A real HTTP(S) file server, the peer of the module's HTTP commands in the demo, the tests and
the benchmarks: serves files from memory with or without ``Range`` support (RFC 9110 §14),
takes multipart/form-data uploads, and can be told to fail: drop a response part-way, answer
uploads with 500.

It runs in its own thread (``http.server``), so the event loop under test never serves it.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import re
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class Upload:
    path: str
    field: str
    file_name: str
    data: bytes


@dataclass
class FileServer:
    files: dict[str, bytes] = field(default_factory=dict)  # path -> content
    ranges: bool = True
    tls: ssl.SSLContext | None = None
    uploads: list[Upload] = field(default_factory=list)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range
    drop_after: list[int | None] = field(default_factory=list)  # next GETs: cut after n bytes
    fail_uploads: int = 0  # answer this many uploads with 500
    # Set: uploads are answered; clear: an upload waits for it (a test holds one in flight).
    uploads_open: threading.Event = field(default_factory=threading.Event)
    posted: threading.Event = field(default_factory=threading.Event)  # an upload came in
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.uploads_open.set()

    def start(self) -> FileServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def gets(self) -> list[tuple[str, str | None]]:
        with self.lock:
            return [(p, r) for m, p, r in self.requests if m == "GET"]


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            wanted = self.headers.get("Range")
            with server.lock:
                server.requests.append(("GET", self.path, wanted))
                drop = server.drop_after.pop(0) if server.drop_after else None
            content = server.files.get(self.path)
            if content is None:
                self._reply(404, b"not found\n")
                return
            etag = '"' + hashlib.sha256(content).hexdigest()[:16] + '"'
            first, last, status = 0, len(content) - 1, 200
            match = _RANGE.fullmatch(wanted or "")
            if_range = self.headers.get("If-Range")
            if server.ranges and match and (if_range is None or if_range == etag):
                first = int(match.group(1))
                last = min(int(match.group(2) or last), len(content) - 1)
                if first >= len(content):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(content)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            body = content[first : last + 1]
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            if server.ranges:
                self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {first}-{last}/{len(content)}")
            self.end_headers()
            if drop is not None:
                self.wfile.write(body[:drop])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(body)

        def _read_chunked(self) -> bytes:
            """A ``Transfer-Encoding: chunked`` body (RFC 9112 §7.1), trailer fields skipped."""
            body = bytearray()
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                body += self.rfile.read(size)
                self.rfile.readline()  # the CRLF after the chunk's data
            while self.rfile.readline().strip():
                pass  # trailer fields, up to the empty line
            return bytes(body)

        def do_POST(self) -> None:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                raw = self._read_chunked()  # a SimpleLink upload (SPEC §7)
            else:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with server.lock:
                server.requests.append(("POST", self.path, None))
            server.posted.set()
            server.uploads_open.wait(120)
            with server.lock:
                failing = server.fail_uploads > 0
                if failing:
                    server.fail_uploads -= 1
            if failing:
                self._reply(500, b"upload refused\n")
                return
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: "
                + self.headers.get("Content-Type", "").encode()
                + b"\r\n\r\n"
                + raw
            )
            if not message.is_multipart():
                self._reply(400, b"multipart/form-data expected\n")
                return
            for part in message.iter_parts():
                payload = part.get_payload(decode=True)
                with server.lock:
                    server.uploads.append(
                        Upload(
                            self.path,
                            str(part.get_param("name", header="content-disposition")),
                            part.get_filename() or "",
                            payload if isinstance(payload, bytes) else b"",
                        )
                    )
            self._reply(201, b"stored\n")

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
