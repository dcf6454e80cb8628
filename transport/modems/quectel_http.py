"""HTTP(S) through the module's own client: Quectel AT+QHTTP* (at-protocol.md §6; EC20 HTTP
manual, seed 000; BG95 HTTP(S) application note, seed 001).

The serial line is shared with the OCPP socket, so nothing here holds it for long:

* **Downloads** go through :func:`transport.http.fetch_in_pieces`. Each piece is one GET with a
  custom request header (AT+QHTTPCFG="requestheader",1) carrying ``Range``; the module stores
  the response in a scratch file (AT+QHTTPREADFILE, response header included), and the host
  pulls it with AT+QFREAD in ``chunk``-byte reads. Between two commands the OCPP socket's
  AT+QISEND/AT+QIRD get the line, so a CSMS call waits at most one chunk.
* A server that ignores ``Range`` answers 200 with the whole file. If it fits the module's UFS
  it is stored there and pulled the same way; otherwise it is read with one AT+QHTTPREAD,
  binary-safe only because ``Content-Length`` says how long it is, holding the line for the
  whole transfer — logged as a warning, because OCPP waits meanwhile.
* **Uploads** (diagnostics) are one multipart/form-data POST. A small one is written straight
  after AT+QHTTPPOST's ``CONNECT``; a larger one is first written to a UFS file in AT+QFWRITE
  pieces and sent with AT+QHTTPPOSTFILE.

Every ``<err>`` (``+CME ERROR`` or in the URC) becomes the specific exception of
:mod:`transport.modems.quectel_http_errors`, carrying the manual's advice.

What an operation takes from the module is given back however it ends, a cancellation
included: file handles are closed (:meth:`QuectelFiles.opened`), scratch files deleted, and
an operation that ends in an exception leaves the module's HTTP client free with
AT+QHTTPSTOP, instead of busy (703) until the server answers a request nobody waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from transport.at import BULK, AtChannel, Response, Urc
from transport.errors import (
    AtCommandFailed,
    HttpStatusError,
    TransferCorrupt,
    TransferError,
    TransportError,
)
from transport.http import (
    MAX_HEAD,
    Consume,
    FetchResult,
    Location,
    Progress,
    ResponseHead,
    fetch_in_pieces,
    multipart_request,
    request_head,
)
from transport.modems.quectel_files import QuectelFiles, error_code
from transport.modems.quectel_http_errors import HTTP_ERRORS, module_http_error
from transport.modems.quectel_tls import file_server_context
from transport.shielding import shielded

log = logging.getLogger(__name__)

T = TypeVar("T")

HTTP_URCS = ("+QHTTPGET:", "+QHTTPPOST:", "+QHTTPPOSTFILE:", "+QHTTPREAD:", "+QHTTPREADFILE:")
MAX_URL = 700  # AT+QHTTPURL (§6)
MAX_CUSTOM_GET = 2048  # AT+QHTTPGET <data_length> with a custom header
HTTP_MEANINGS = {code: cls.meaning for code, cls in HTTP_ERRORS.items()}


@dataclass(frozen=True, slots=True)
class HttpSettings:
    context_id: int = 1  # the PDP context the module's HTTP client uses
    ssl_context_id: int = 1
    ca_file: Path | None = None  # PEM; uploaded to the module, then servers are verified
    piece_size: int = 128 * 1024  # bytes per Range request
    chunk: int = 4096  # bytes per AT+QFREAD / AT+QFWRITE: the longest the line is held
    scratch_drive: str = "RAM"  # where pieces land ("UFS" on modules without a RAM disk)
    response_time: int = 60  # <rsptime> of GET/POST, seconds
    direct_post_max: int = 4096  # larger uploads go through a UFS file


class QuectelHttp:
    """The module's HTTP(S) client (a :class:`transport.http.HttpClient`)."""

    SCRATCH = "cphttp.bin"
    WHOLE = "UFS:cpwhole.bin"
    UPLOAD = "UFS:cpupload.req"
    CA = "UFS:cpca.pem"

    def __init__(self, channel: AtChannel, settings: HttpSettings | None = None) -> None:
        self._at = channel
        self.settings = settings or HttpSettings()
        self.files = QuectelFiles(channel, chunk=self.settings.chunk)
        self._busy = asyncio.Lock()  # the module runs one HTTP operation at a time (703)
        self._waiting: dict[str, asyncio.Future[list[int]]] = {}
        self._ca_uploaded = False
        for prefix in HTTP_URCS:
            channel.subscribe(prefix, self._on_urc)

    @property
    def scratch(self) -> str:
        return f"{self.settings.scratch_drive}:{self.SCRATCH}"

    # -- the HttpClient interface --

    async def fetch(
        self, url: str, dest: Path, *, sha256: str | None = None, progress: Progress | None = None
    ) -> FetchResult:
        token = BULK.set(True)  # this task's commands let OCPP's go first
        try:
            return await fetch_in_pieces(
                self,
                url,
                dest,
                piece_size=self.settings.piece_size,
                sha256=sha256,
                progress=progress,
            )
        finally:
            BULK.reset(token)

    async def upload(self, url: str, file_name: str, data: bytes, *, field: str = "file") -> int:
        token = BULK.set(True)
        try:
            return await self._upload(url, file_name, data, field)
        finally:
            BULK.reset(token)

    async def _upload(self, url: str, file_name: str, data: bytes, field: str) -> int:
        where = Location.parse(url)
        request = multipart_request(where, field, file_name, data)
        async with self._operation():
            await self._configure(where, response_header=False)
            if len(request) <= self.settings.direct_post_max:
                codes = await self._request_with_data("+QHTTPPOST", "AT+QHTTPPOST", request)
            else:
                codes = await self._post_file(request)
        status = codes[1] if len(codes) > 1 else 0
        if not 200 <= status < 300:
            raise HttpStatusError(where.shown, status)
        return status

    async def fetch_whole(self, url: str, dest: Path) -> int:
        """The naive way, for comparison (``bench.firmware``): one GET and one AT+QHTTPREAD of
        the whole body, holding the serial line for all of it."""
        where = Location.parse(url)
        async with self._operation():
            await self._configure(where, response_header=False)
            codes = await self._request_with_data(
                "+QHTTPGET", "AT+QHTTPGET", request_head("GET", where)
            )
            if codes[1] != 200 or len(codes) < 3:
                raise HttpStatusError(where.shown, codes[1])
            size = 0
            with dest.open("wb") as out:
                async for chunk in self._read_stream(codes[2]):
                    out.write(chunk)
                    size += len(chunk)
            return size

    # -- PieceSource --

    async def exchange(self, where: Location, head: bytes, consume: Consume[T]) -> T:
        async with self._operation():
            await self._configure(where, response_header=True)
            codes = await self._request_with_data("+QHTTPGET", "AT+QHTTPGET", head)
            status = codes[1]
            length = codes[2] if len(codes) > 2 else None
            if (
                status != 200
                or length is None
                or length <= await self.files.free(self.settings.scratch_drive)
            ):
                name = self.scratch
            elif length + MAX_HEAD <= await self.files.free("UFS"):
                log.info(
                    "%s ignores Range: taking the whole %d bytes into the module's UFS",
                    where.shown,
                    length,
                )
                name = self.WHOLE
            else:
                return await self._consume_stream(where, head, length, consume)
            try:
                size = await self._response_into(name, where.shown)
                async with self.files.opened(name, 2) as handle:
                    start = await self._read_head(handle)
                    end = start.find(b"\r\n\r\n") + 4
                    if end < 4:
                        raise TransferCorrupt(
                            f"{where.shown}: no complete response header in {name}"
                        )
                    response = ResponseHead.parse(start[:end])
                    body = self._file_body(handle, start[end:], size - len(start))
                    return await consume(response, body)
            finally:
                await shielded(self._delete_quietly(name))

    # -- steps --

    @contextlib.asynccontextmanager
    async def _operation(self) -> AsyncIterator[None]:
        """One operation of the module's HTTP client, which does one at a time (703). Ended by
        an exception (a cancellation too), the module may still be waiting for the server or
        holding a response: AT+QHTTPSTOP frees it for the next one."""
        async with self._busy:
            try:
                yield
            except BaseException:
                await shielded(self._stop())
                raise

    async def _stop(self) -> None:
        try:
            response = await self._at.command("AT+QHTTPSTOP", check=False)
        except TransportError as error:
            log.warning("AT+QHTTPSTOP: %s", error)
            return
        if not response.result.success:
            # BG95/BG96 do not have it (at-protocol.md §6); their client frees itself when the
            # server answers or its <rsptime> ends.
            log.info("AT+QHTTPSTOP answered %s", response.result.text)

    async def _delete_quietly(self, name: str) -> None:
        try:
            await self.files.delete(name)
        except TransportError as error:
            log.warning("could not delete module file %s: %s", name, error)

    async def _configure(self, where: Location, *, response_header: bool) -> None:
        s = self.settings
        await self._http_command(f'AT+QHTTPCFG="contextid",{s.context_id}', "AT+QHTTPCFG")
        await self._http_command('AT+QHTTPCFG="requestheader",1', "AT+QHTTPCFG")
        await self._http_command(
            f'AT+QHTTPCFG="responseheader",{int(response_header)}', "AT+QHTTPCFG"
        )
        if where.secure:
            await self._configure_tls()
        url = where.url.encode("latin-1")  # the module needs the credentials
        if len(url) > MAX_URL:
            raise TransferError(f"{where.shown}: longer than the module's {MAX_URL}-byte URL limit")
        response = await self._at.command_with_data(
            f"AT+QHTTPURL={len(url)},30", url, timeout=35.0, log_as="AT+QHTTPURL"
        )
        self._check(response, "AT+QHTTPURL")

    async def _configure_tls(self) -> None:
        s = self.settings
        ctx = s.ssl_context_id
        await self._http_command(f'AT+QHTTPCFG="sslctxid",{ctx}', "AT+QHTTPCFG")
        self._ca_uploaded = await file_server_context(
            self._at,
            self.files,
            ctx,
            s.ca_file,
            self.CA,
            ca_uploaded=self._ca_uploaded,
            scheme="https",
        )

    async def _http_command(self, command: str, doing: str) -> Response:
        try:
            return await self._at.command(command)
        except AtCommandFailed as error:
            raise self._error(error, doing) from error

    def _error(self, error: AtCommandFailed, doing: str) -> TransferError:
        code = error_code(error, HTTP_MEANINGS)
        if code is None:
            return TransferError(f"{doing} failed: {error.result}")
        return module_http_error(code, doing)

    def _check(self, response: Response, doing: str) -> None:
        if not response.result.success:
            raise self._error(
                AtCommandFailed(response.command, response.result.text, response.result.code),
                doing,
            )

    async def _request_with_data(self, urc: str, command: str, request: bytes) -> list[int]:
        """Send a request whose bytes follow ``CONNECT``; wait for its URC; ``[0, status, ...]``."""
        s = self.settings
        if command == "AT+QHTTPGET":
            if len(request) > MAX_CUSTOM_GET:
                raise TransferError(f"GET request of {len(request)} bytes: the module takes 2048")
            line = f"{command}={s.response_time},{len(request)},30"
        else:
            line = f"{command}={len(request)},60,{s.response_time}"
        waiter = self._expect(urc)
        try:
            # CONNECT comes once the server connection is up, up to 125 s (seed 000 §2.3).
            response = await self._at.command_with_data(line, request, timeout=130.0)
            self._check(response, command)
            return await self._result(urc, waiter)
        finally:
            self._waiting.pop(urc, None)

    async def _post_file(self, request: bytes) -> list[int]:
        free = await self.files.free("UFS")
        if len(request) > free:
            raise TransferError(
                f"upload of {len(request)} bytes does not fit the module's UFS ({free} free)"
            )
        try:
            async with self.files.opened(self.UPLOAD, 1) as handle:
                await self.files.write(handle, request)
            waiter = self._expect("+QHTTPPOSTFILE")
            try:
                await self._http_command(
                    f'AT+QHTTPPOSTFILE="{self.UPLOAD}",{self.settings.response_time}',
                    "AT+QHTTPPOSTFILE",
                )
                return await self._result("+QHTTPPOSTFILE", waiter)
            finally:
                self._waiting.pop("+QHTTPPOSTFILE", None)
        finally:
            await shielded(self._delete_quietly(self.UPLOAD))

    async def _response_into(self, name: str, url: str) -> int:
        """The response (header and body) into module file ``name``; its size."""
        await self.files.delete(name)
        waiter = self._expect("+QHTTPREADFILE")
        try:
            await self._http_command(
                f'AT+QHTTPREADFILE="{name}",{self.settings.response_time}', "AT+QHTTPREADFILE"
            )
            await self._result("+QHTTPREADFILE", waiter)
        finally:
            self._waiting.pop("+QHTTPREADFILE", None)
        size = await self.files.size(name)
        if size is None:
            raise TransferCorrupt(f"{url}: the module stored no response in {name}")
        return size

    async def _read_head(self, handle: int) -> bytes:
        """Read until the end of the response header (or the file, or MAX_HEAD)."""
        head = b""
        while b"\r\n\r\n" not in head and len(head) <= MAX_HEAD:
            chunk = await self.files.read(handle, self.settings.chunk)
            if not chunk:
                break
            head += chunk
        return head

    async def _file_body(self, handle: int, first: bytes, left: int) -> AsyncIterator[bytes]:
        if first:
            yield first
        while left > 0:
            chunk = await self.files.read(handle, min(self.settings.chunk, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk

    async def _consume_stream(
        self, where: Location, head: bytes, length: int, consume: Consume[T]
    ) -> T:
        """Last resort: one AT+QHTTPREAD of the whole body, without the response header so that
        its length is the ``Content-Length`` (the GET is repeated for that)."""
        log.warning(
            "%s ignores Range and its %d bytes do not fit the module's file system: reading them "
            "in one AT+QHTTPREAD, which holds the serial line for about %.0f s (OCPP waits)",
            where.shown,
            length,
            self._at.wire_time(length),
        )
        await self._http_command('AT+QHTTPCFG="responseheader",0', "AT+QHTTPCFG")
        codes = await self._request_with_data("+QHTTPGET", "AT+QHTTPGET", head)
        if len(codes) < 3:
            raise TransferError(f"{where.shown}: no Content-Length, so no binary-safe read")
        response = ResponseHead(codes[1], {"content-length": str(codes[2])})
        body = self._read_stream(codes[2])
        try:
            return await consume(response, body)
        finally:
            await body.aclose()

    async def _read_stream(self, length: int) -> AsyncGenerator[bytes, None]:
        """AT+QHTTPREAD of ``length`` body bytes, handed on as they arrive."""
        chunks: deque[bytes] = deque()
        arrived = asyncio.Event()

        def sink(data: bytes) -> None:
            chunks.append(bytes(data))
            arrived.set()

        waiter = self._expect("+QHTTPREAD")
        read = asyncio.create_task(
            self._at.command_reading(
                f"AT+QHTTPREAD={self.settings.response_time}", length, sink=sink, timeout=30.0
            )
        )
        try:
            while chunks or not read.done():
                if chunks:
                    yield chunks.popleft()
                    continue
                arrived.clear()
                wake = asyncio.ensure_future(arrived.wait())
                await asyncio.wait([read, wake], return_when=asyncio.FIRST_COMPLETED)
                wake.cancel()
            try:
                read.result()
            except AtCommandFailed as error:
                raise self._error(error, "AT+QHTTPREAD") from error
            await self._result("+QHTTPREAD", waiter)
        finally:
            self._waiting.pop("+QHTTPREAD", None)
            if not read.done():
                read.cancel()
                with contextlib.suppress(BaseException):
                    await read

    # -- URCs --

    def _expect(self, urc: str) -> asyncio.Future[list[int]]:
        waiter: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._waiting[urc] = waiter
        return waiter

    async def _result(self, urc: str, waiter: asyncio.Future[list[int]]) -> list[int]:
        """The URC's numbers; its ``<err>`` raised as the specific exception."""
        async with asyncio.timeout(self.settings.response_time + 10.0):
            codes = await waiter
        if codes[0] != 0:
            raise module_http_error(codes[0], urc.lstrip("+"))
        return codes

    def _on_urc(self, urc: Urc) -> None:
        name, _, rest = urc.text.partition(":")
        waiter = self._waiting.get(name)
        try:
            codes = [int(v) for v in rest.split(",") if v.strip()]
        except ValueError:
            log.warning("unreadable HTTP URC %r", urc.text)
            return
        if waiter is None or waiter.done() or not codes:
            log.debug("HTTP URC nobody waits for: %s", urc.text)
            return
        waiter.set_result(codes)
