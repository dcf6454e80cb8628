"""HTTP(S) through the SimpleLink module's own client (AT+HttpCreate ... AT+HttpDestroy,
[guide] Tables 76-83; SPEC §7), interleaved with the OCPP socket on one serial line.

* **Downloads** go through :func:`transport.http.fetch_in_pieces`: each ``Range`` piece is one
  GET. The module writes the request itself, so the head the algorithm built is turned back
  into method, URI and the module's header options (``Range`` → ``req_range``, ``If-Range`` →
  ``req_if_range``, ...); the module sets ``Host``. The response head is rebuilt from the
  status and AT+HttpGetHeader, and the body read with AT+HttpReadResBody (base64, at most
  1460 bytes a command).
* **Uploads** (diagnostics) are one multipart/form-data POST, its body sent in chunked
  transfer encoding: ``chunk_start`` with the first piece, then the others, ``chunk_end`` with
  the last (SPEC §7), each AT+HttpSendReq carrying at most 1092 bytes.
* Every command runs with :data:`transport.at.BULK` set, so a waiting OCPP command (the receive
  pump's Select, a send) goes first: a CSMS call waits at most one body read.

The module has four clients (SPEC §7): each exchange creates one and destroys it however the
exchange ends, a cancellation included (AT+HttpCreate runs to its answer, so its index is known).
A client whose AT+HttpDestroy got no answer is destroyed again before the next is created; when
all four are taken (-12) by none of this driver's exchanges, they are destroyed once and the
create tried again. While an exchange holds a client, socket exhaustion closes no descriptor
the table does not know (the client's socket is one, and the module does not tell which).
There is no FTP on this module ([guide] §6 has no FTP commands).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from transport.at import BULK, AtChannel, Response
from transport.errors import (
    HttpStatusError,
    TlsSetupFailed,
    TransferCorrupt,
    TransferError,
    TransferInterrupted,
    TransportError,
)
from transport.http import (
    Consume,
    FetchResult,
    Location,
    Progress,
    ResponseHead,
    fetch_in_pieces,
    multipart_request,
)
from transport.modems.simplelink_files import FILES_CA_FILE, SimpleLinkFiles
from transport.modems.simplelink_protocol import (
    BASE64,
    DNS_FAILED,
    EBADF,
    ECONNREFUSED,
    ECONNRESET,
    ENETUNREACH,
    ENOMEM,
    ENOTCONN,
    ESEC_ASN_NO_SIGNER,
    ESEC_DATE_ERROR,
    ESEC_DOMAIN_NAME_MISMATCH,
    ESEC_HANDSHAKE_FAILURE,
    ESEC_NOCAFILE,
    ETIMEDOUT,
    MAX_SEND,
    NOT_STARTED,
    DataError,
    b64,
    data_field,
    decode_data,
    error_code,
    padded,
    parse_error,
    pieces,
    quote,
    values,
)
from transport.modems.simplelink_settings import SimpleLinkSettings
from transport.shielding import shielded

log = logging.getLogger(__name__)

T = TypeVar("T")

# Request headers and the AT+HttpSetHeader option that carries each ([guide] Table 82).
REQUEST_OPTIONS = {
    "accept": "req_accept",
    "accept-charset": "req_accept_charset",
    "accept-encoding": "req_accept_encoding",
    "accept-language": "req_accept_language",
    "authorization": "req_auth",
    "cache-control": "req_cache_control",
    "content-encoding": "req_content_encoding",
    "content-language": "req_content_language",
    "content-type": "req_content_type",
    "cookie": "req_cookie",
    "date": "req_date",
    "expect": "req_expect",
    "from": "req_from",
    "if-match": "req_if_match",
    "if-modified-since": "req_if_modified_since",
    "if-none-match": "req_if_none_match",
    "if-range": "req_if_range",
    "if-unmodified-since": "req_if_unmodified_since",
    "origin": "req_origin",
    "proxy-authorization": "req_proxy_auth",
    "range": "req_range",
    "te": "req_te",
    "user-agent": "req_user_agent",
    "via": "req_via",
    "warning": "req_warning",
}
# Headers the module writes itself (Host from AT+HttpConnect, Content-Length or chunked
# encoding from AT+HttpSendReq) or that say nothing a request needs: "Connection: close"
# (each exchange disconnects anyway) and "Accept: */*" (what no Accept means).
MODULE_HEADERS = ("host", "content-length", "transfer-encoding", "connection")
# Response headers the rebuilt head carries, and their AT+HttpGetHeader options.
RESPONSE_OPTIONS = {
    "content-length": "res_content_length",
    "content-range": "res_content_range",
    "etag": "res_etag",
    "last-modified": "res_last_modified",
    "content-type": "res_content_type",
}
MAX_HEADER = 1024  # <max length> of AT+HttpGetHeader (SPEC-silent; values are short)
INTERRUPTED = (ENOTCONN, ECONNRESET, ETIMEDOUT)
CLIENTS = 4  # HTTP clients of the module, indices 0..3 (SPEC §7)


def parse_request_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Method, target and headers (names lower case) of a request head built by
    :func:`transport.http.request_head`."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise TransferError(f"not an HTTP request line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], headers


def header_options(headers: dict[str, str], where: Location) -> list[tuple[str, str]]:
    """The (option, value) pairs of AT+HttpSetHeader for a request's headers; a header the
    module cannot send is a :class:`TransferError` (a request that would silently go out
    without it could fetch the wrong bytes). Credentials in the URL become ``req_auth``."""
    options: list[tuple[str, str]] = []
    for name, value in headers.items():
        if name in MODULE_HEADERS or (name == "accept" and value == "*/*"):
            continue
        option = REQUEST_OPTIONS.get(name)
        if option is None:
            raise TransferError(
                f"{where.shown}: the module's HTTP client cannot send the header {name!r}"
            )
        options.append((option, value))
    auth = basic_auth(where.url)
    if auth is not None and "authorization" not in headers:
        options.append(("req_auth", auth))
    return options


def basic_auth(url: str) -> str | None:
    """``Basic <credentials>`` for a URL with user information (RFC 7617), or None."""
    parts = urlsplit(url)
    if parts.username is None:
        return None
    credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return "Basic " + b64(credentials.encode("utf-8"))


def server_address(where: Location) -> str:
    """The ``<host>`` of AT+HttpConnect: scheme, host and port (SPEC §7)."""
    host = f"[{where.host}]" if ":" in where.host else where.host
    return f"{'https' if where.secure else 'http'}://{host}:{where.port}"


def http_error(where: Location, doing: str, result: str) -> TransferError:
    """The exception for a failed HTTP command, in words a technician can act on."""
    code = parse_error(result).code
    said = parse_error(result).described
    shown = where.shown
    if code in INTERRUPTED:
        return TransferInterrupted(f"{shown}: {doing}: the connection broke ({said})")
    if code == ECONNREFUSED:
        return TransferError(f"{shown}: the file server refused the connection ({said})")
    if code == DNS_FAILED:
        return TransferError(
            f"{shown}: the module's DNS could not resolve {where.host} ({said}): check the host "
            "name of the location"
        )
    if code == ENETUNREACH:
        return TransferError(f"{shown}: no network ({said}): the Wi-Fi link is down")
    if code in (ESEC_ASN_NO_SIGNER, ESEC_NOCAFILE):
        return TransferError(
            f"{shown}: the file server's certificate is not signed by the files CA "
            f"(firmware.ca_file, on the module as {FILES_CA_FILE}) ({said})"
        )
    if code == ESEC_DOMAIN_NAME_MISMATCH:
        return TransferError(f"{shown}: the file server's certificate does not name {where.host}")
    if code == ESEC_DATE_ERROR:
        return TransferError(
            f"{shown}: the file server's certificate is not valid at the module's clock ({said})"
        )
    if code == ESEC_HANDSHAKE_FAILURE:
        return TransferError(f"{shown}: the file server refused the TLS handshake ({said})")
    if code == ENOMEM:
        return TransferError(
            f"{shown}: {doing}: all 4 HTTP clients of the module are in use ({said})"
        )
    if code in (EBADF, NOT_STARTED):
        return TransferInterrupted(f"{shown}: {doing}: the module's network processor restarted")
    return TransferError(f"{shown}: {doing} failed: {said}")


class SimpleLinkHttp:
    """The module's HTTP(S) client (a :class:`transport.http.HttpClient`)."""

    def __init__(
        self,
        channel: AtChannel,
        settings: SimpleLinkSettings,
        files: SimpleLinkFiles,
        set_clock: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._at = channel
        self._s = settings
        self._files = files
        self._set_clock = set_clock
        self.clients: set[int] = set()  # created and not destroyed yet (tests, logs)
        # Clients whose release failed (AT+HttpDestroy unanswered): the module may still hold
        # them, so they are destroyed before the next client is created.
        self.stale: set[int] = set()
        self._generation = 0  # counts NWP restarts: an older client is gone with its NWP

    def lost(self) -> None:
        """The NWP restarted: its HTTP clients are gone."""
        self.clients.clear()
        self.stale.clear()
        self._generation += 1

    def live(self) -> bool:
        """An exchange of this driver holds a client (and so one of the module's sockets, whose
        descriptor the module does not tell)."""
        return bool(self.clients - self.stale)

    # -- the HttpClient interface --

    async def fetch(
        self, url: str, dest: Path, *, sha256: str | None = None, progress: Progress | None = None
    ) -> FetchResult:
        token = BULK.set(True)  # this task's commands let OCPP's go first
        try:
            return await fetch_in_pieces(
                self, url, dest, piece_size=self._s.piece_size, sha256=sha256, progress=progress
            )
        finally:
            BULK.reset(token)

    async def upload(self, url: str, file_name: str, data: bytes, *, field: str = "file") -> int:
        token = BULK.set(True)
        try:
            return await self._upload(url, file_name, data, field)
        finally:
            BULK.reset(token)

    # -- PieceSource --

    async def exchange(self, where: Location, head: bytes, consume: Consume[T]) -> T:
        method, target, headers = parse_request_head(head)
        async with self._client(where) as index:
            await self._set_headers(index, where, header_options(headers, where))
            status = await self._request(
                index, where, f"AT+HttpSendReq={index},{method},{quote(target)},,{BASE64},0,"
            )
            response = ResponseHead(status, await self._response_headers(index, where))
            body = self._body(index, where)
            try:
                return await consume(response, body)
            finally:
                await body.aclose()

    async def _upload(self, url: str, file_name: str, data: bytes, field: str) -> int:
        where = Location.parse(url)
        request = multipart_request(where, field, file_name, data)
        head, _, body = request.partition(b"\r\n\r\n")
        method, target, headers = parse_request_head(head + b"\r\n\r\n")
        chunks = pieces(body, MAX_SEND) or [b""]
        if len(chunks) == 1:
            chunks.append(b"")  # chunk_start cannot also be chunk_end
        async with self._client(where) as index:
            await self._set_headers(index, where, header_options(headers, where))
            prefix = f"AT+HttpSendReq={index},{method},{quote(target)},"
            status = 0
            for number, chunk in enumerate(chunks):
                flag = (
                    "chunk_start"
                    if number == 0
                    else "chunk_end"
                    if number == len(chunks) - 1
                    else ""
                )
                command = f"{prefix}{flag},{data_field(chunk)}"
                shown = f"{prefix}{flag},{BASE64},<{len(chunk)} bytes>"
                if flag == "chunk_end":
                    status = await self._request(index, where, command, shown)
                else:
                    await self._command(index, where, command, "sending the upload", shown)
        if not 200 <= status < 300:
            raise HttpStatusError(where.shown, status)
        log.info("uploaded %d bytes to %s: HTTP %d", len(data), where.shown, status)
        return status

    # -- steps --

    @contextlib.asynccontextmanager
    async def _client(self, where: Location) -> AsyncIterator[int]:
        """A client connected to ``where``'s server, disconnected and destroyed however the
        block ends."""
        ca = await self._files_ca(where)
        await shielded(self._destroy_stale())
        index, generation = await self._create(where)
        try:
            await self._command(
                index,
                where,
                f"AT+HttpConnect={index},{quote(server_address(where))},,,,{ca}",
                "connecting",
                # a margin after the module's own limit, so its error (not an AT timeout) wins
                timeout=self._s.connect_timeout + self._s.command_timeout,
            )
            yield index
        finally:
            await shielded(self._release(index, generation))

    async def _create(self, where: Location) -> tuple[int, int]:
        """AT+HttpCreate, run to its answer whatever cancels the caller: the new index and the
        NWP generation it belongs to. When all four clients are taken (-12) by none of this
        driver's exchanges (leftovers of a release that never came, or of an earlier run of
        the daemon), they are destroyed once and the create tried again."""
        for attempt in (1, 2):
            generation = self._generation
            creating = asyncio.ensure_future(
                self._at.command("AT+HttpCreate", expect=("+httpcreate:",), check=False)
            )
            try:
                response = await shielded(creating)
            except asyncio.CancelledError:
                if creating.done() and not creating.cancelled() and creating.exception() is None:
                    index = self._created(creating.result())
                    if index is not None:
                        await shielded(self._release(index, generation))
                raise
            if response.result.success:
                index = self._created(response)
                if index is None:
                    raise TransferError(
                        f"AT+HttpCreate answered {response.lines!r}: no client index"
                    )
                return index, generation
            if error_code(response.result) == ENOMEM and attempt == 1:
                await shielded(self._destroy_strangers())
                continue
            raise http_error(where, "AT+HttpCreate", response.result.text)
        raise AssertionError("unreachable")

    def _created(self, response: Response) -> int | None:
        found = response.values("+httpcreate:")
        if not found or not found[0].isdigit():
            return None
        index = int(found[0])
        self.clients.add(index)
        return index

    async def _release(self, index: int, generation: int) -> None:
        """AT+HttpDisconnect then AT+HttpDestroy (the destroy even when the disconnect got no
        answer); a client whose destroy got none is left stale, destroyed before the next."""
        if generation != self._generation or index not in self.clients:
            return  # gone with the NWP that held it
        try:
            await self._at.command(f"AT+HttpDisconnect={index}", check=False)
        except TransportError as error:
            log.warning(
                "AT+HttpDisconnect=%d got no answer (%s); destroying it anyway", index, error
            )
        if not await self._destroy(index, generation):
            self.stale.add(index)
            log.warning("the module's HTTP client %d is destroyed again before the next", index)

    async def _destroy(self, index: int, generation: int) -> bool:
        """AT+HttpDestroy; whether the module answered (an error answer too: it no longer
        holds the client)."""
        try:
            response = await self._at.command(f"AT+HttpDestroy={index}", check=False)
        except TransportError as error:
            log.warning("could not destroy the module's HTTP client %d: %s", index, error)
            return False
        if not response.result.success:
            log.info("AT+HttpDestroy=%d answered %s", index, response.result.text)
        if generation == self._generation:
            self.clients.discard(index)
            self.stale.discard(index)
        return True

    async def _destroy_stale(self) -> None:
        generation = self._generation
        for index in sorted(self.stale):
            log.info("destroying the module's HTTP client %d, left by a failed release", index)
            await self._destroy(index, generation)

    async def _destroy_strangers(self) -> None:
        """AT+HttpDestroy on every index no exchange of this driver holds, errors ignored."""
        generation = self._generation
        log.warning(
            "all %d HTTP clients of the module are in use: destroying those no transfer of "
            "this driver holds",
            CLIENTS,
        )
        for index in range(CLIENTS):
            if index in self.clients and index not in self.stale:
                continue  # a live exchange of ours
            await self._destroy(index, generation)

    async def _files_ca(self, where: Location) -> str:
        """The CA file name for AT+HttpConnect: https verifies against the transfer settings'
        CA, installed as /cert/files-ca.pem (SPEC §6)."""
        if not where.secure:
            return ""
        if self._set_clock is not None and not await self._set_clock():
            # HttpConnect fails on a certificate date error (-461), unlike a SEC socket.
            log.warning(
                "%s: the module clock is not set: the server's dates may be refused", where.shown
            )
        ca_file = self._s.files_ca_file
        if ca_file is None:
            log.warning("%s without a files CA: the module cannot verify the server", where.shown)
            return ""
        try:
            data = await asyncio.to_thread(ca_file.read_bytes)
        except OSError as error:
            raise TransferError(f"the files CA cannot be read: {error}") from error
        try:
            await self._files.install(FILES_CA_FILE, data)
        except TlsSetupFailed as error:
            raise TransferError(str(error)) from error
        return FILES_CA_FILE

    async def _set_headers(
        self, index: int, where: Location, options: list[tuple[str, str]]
    ) -> None:
        for option, value in options:
            head = f"AT+HttpSetHeader={index},{option},not_persistent,"
            secret = option in ("req_auth", "req_proxy_auth")
            await self._command(
                index,
                where,
                head + data_field(value.encode("latin-1")),
                f"setting {option}",
                head + "***" if secret else None,
            )

    async def _command(
        self,
        index: int,
        where: Location,
        command: str,
        doing: str,
        log_as: str | None = None,
        *,
        timeout: float | None = None,
    ) -> Response:
        response = await self._at.command(
            command,
            check=False,
            log_as=log_as,
            timeout=(timeout or self._s.command_timeout) + self._at.wire_time(len(command)),
        )
        if not response.result.success:
            raise http_error(where, doing, response.result.text)
        return response

    async def _request(
        self, index: int, where: Location, command: str, log_as: str | None = None
    ) -> int:
        """AT+HttpSendReq that ends a request: the server's status (SPEC §7)."""
        response = await self._at.command(
            command,
            expect=("+httpsendreq:",),
            check=False,
            log_as=log_as,
            timeout=self._s.http_timeout + self._at.wire_time(len(command)),
        )
        if not response.result.success:
            raise http_error(where, "sending the request", response.result.text)
        found = values(response.value("+httpsendreq:"))
        if not found or not found[0].isdigit():
            raise TransferCorrupt(f"{where.shown}: no status in +httpsendreq:{found!r}")
        return int(found[0])

    async def _response_headers(self, index: int, where: Location) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, option in RESPONSE_OPTIONS.items():
            response = await self._at.command(
                f"AT+HttpGetHeader={index},{option},{BASE64},{MAX_HEADER}",
                expect=("+httpgetheader:",),
                check=False,
            )
            if not response.result.success:
                log.debug("AT+HttpGetHeader %s: %s", option, response.result.text)
                continue
            fields = values(response.value("+httpgetheader:"))
            try:
                value = decode_data(fields[2], fields[3]) if len(fields) >= 4 else b""
            except DataError as error:
                raise TransferCorrupt(f"{where.shown}: unreadable {option}: {error}") from error
            if value:
                headers[name] = value.decode("latin-1").strip()
        return headers

    async def _body(self, index: int, where: Location) -> AsyncGenerator[bytes, None]:
        """The response body, ``read_chunk`` bytes a command, until ``<more>`` is 0."""
        chunk = self._s.read_chunk
        while True:
            response = await self._at.command(
                f"AT+HttpReadResBody={index},{BASE64},{chunk}",
                expect=("+httpreadresbody:",),
                check=False,
                timeout=self._s.http_timeout + self._at.wire_time(2 * chunk),
            )
            if not response.result.success:
                if error_code(response.result) in INTERRUPTED:
                    raise TransferInterrupted(
                        f"{where.shown}: the connection broke while reading the body "
                        f"({parse_error(response.result.text).described})"
                    )
                raise http_error(where, "reading the body", response.result.text)
            fields = values(response.value("+httpreadresbody:"))
            try:
                data = decode_data(*padded(fields, 5)[3:5])
            except DataError as error:
                raise TransferCorrupt(f"{where.shown}: unreadable body chunk: {error}") from error
            if data:
                yield data
            if fields[1] != "1":
                return
