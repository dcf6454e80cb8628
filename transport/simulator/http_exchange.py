"""The simulated module's HTTP(S) client on the host's network: it sends the request bytes the
module holds to the real server and reads the response, failing with the module's own error
codes (at-protocol.md §6) so the driver sees what a real module would say."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from transport.simulator.quectel_http import HttpRequest
from transport.simulator.tls import TlsFailure, TlsSettings, check_peer, client_context

MAX_HEADER = 64 * 1024


class HttpFailure(Exception):
    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


@dataclass(frozen=True, slots=True)
class HttpResult:
    status: int
    header: bytes  # status line and headers, up to and including the empty line
    body: bytes  # de-chunked
    content_length: int | None


async def exchange(
    request: HttpRequest,
    *,
    hosts: dict[str, str],
    dns_failures: set[str],
    latency: float,
    connect_timeout: float,
    connected: Callable[[], None] = lambda: None,
    body: Awaitable[bytes | None] | None = None,
) -> HttpResult:
    """Connect to the URL's server, send the request and read the response. ``connected`` is
    called once the connection is up (TLS included); with ``body``, the request's bytes are
    awaited only then, as the module takes them after its ``CONNECT`` (None: never sent)."""
    parts = urlsplit(request.url)
    name = parts.hostname or ""
    secure = parts.scheme.lower() == "https"
    port = parts.port or (443 if secure else 80)
    if name in dns_failures:
        raise HttpFailure(714, f"simulated DNS failure for {name}")
    address = hosts.get(name, name)
    context = _tls_context(request.tls, name) if secure else None
    try:
        async with asyncio.timeout(request.timeout):
            if latency:
                await asyncio.sleep(2 * latency)  # SYN, SYN-ACK
            try:
                async with asyncio.timeout(connect_timeout):
                    reader, writer = await asyncio.open_connection(
                        address,
                        port,
                        ssl=context,
                        # "" sends no SNI ("sni" 0, §9.12); None would send the address.
                        server_hostname=(name if request.tls and request.tls.sni else "")
                        if context
                        else None,
                    )
            except socket.gaierror as error:
                raise HttpFailure(714, f"DNS: {error}") from error
            except ssl.SSLError as error:
                raise HttpFailure(
                    701, f"TLS handshake with {name}:{port} failed: {error}"
                ) from error
            except (OSError, TimeoutError) as error:
                raise HttpFailure(716, f"connect to {name}:{port} failed: {error}") from error
            if context is not None and request.tls is not None:
                try:
                    check_peer(writer.get_extra_info("ssl_object"), request.tls)
                except TlsFailure as failure:
                    writer.transport.abort()
                    raise HttpFailure(701, f"TLS with {name}:{port} refused: {failure}") from None
            try:
                connected()
                raw = request.raw if body is None else await body
                if raw is None:
                    raise HttpFailure(726, "the host did not send the request after CONNECT")
                writer.write(raw)
                await writer.drain()
                if latency:
                    await asyncio.sleep(2 * latency)  # the request out, the first byte back
                return await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                raise HttpFailure(717, f"reading the response failed: {error}") from error
            finally:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError):
                    await writer.wait_closed()
    except TimeoutError:
        raise HttpFailure(728, f"no response within {request.timeout:g} s") from None


def _tls_context(tls: TlsSettings | None, name: str) -> ssl.SSLContext:
    """The context of the request's SSL context (the same reading as AT+QSSLOPEN's); a module
    that cannot even start the handshake answers 701 like any other TLS failure."""
    if tls is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return client_context(tls)
    except TlsFailure as failure:
        raise HttpFailure(701, f"TLS with {name} impossible: {failure}") from None


async def _read_response(reader: asyncio.StreamReader) -> HttpResult:
    header = await reader.readuntil(b"\r\n\r\n")
    if len(header) > MAX_HEADER:
        raise ValueError("response header too long")
    lines = header.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise ValueError(f"bad status line {lines[0]!r}")
    status = int(status_line[1])
    fields: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
    length: int | None = None
    if "content-length" in fields and fields["content-length"].isdigit():
        length = int(fields["content-length"])
    if fields.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    elif length is not None:
        body = await reader.readexactly(length)
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        body = await reader.read()
    return HttpResult(status, header, body, length)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # trailer end (no trailers expected)
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)
