"""HTTP(S) through the module's own client: Quectel AT+QHTTP* (at-protocol.md §6; EC20 HTTP
manual, seed 000; BG95 HTTP(S) application note, seed 001).

The serial line is shared with the OCPP socket, so nothing here holds it for long:

* **Downloads** go through :func:`transport.http.fetch_in_pieces`. Each piece is one GET with a
  custom request header (AT+QHTTPCFG="requestheader",1) carrying ``Range``; the module stores
  the response in a scratch file (AT+QHTTPREADFILE, response header included), and the host
  pulls it with AT+QFREAD in ``chunk``-byte reads. Between two commands the OCPP socket's
  AT+QISEND/AT+QIRD get the line, so a CSMS call waits at most a chunk or two.
* The pieces are pipelined (:class:`_Download`): once a piece is in its file, the next one's
  GET goes out, and its AT+QHTTPREADFILE into the other scratch file once its URC has come,
  between two reads of this one. Both commands answer OK at once and report with a URC (seed
  000 §2.3, §2.7), so the AT port is free while the module waits for the network, and the
  line carries image bytes instead of waiting for the server. The URL and AT+QHTTPCFG are set
  once per download: they hold until another operation changes them.
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
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
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
    NextPiece,
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
    # Bytes per Range request. With room for two on the scratch drive, the next piece is
    # written there while one is read; otherwise it is written in its turn.
    piece_size: int = 128 * 1024
    # Bytes per AT+QFREAD / AT+QFWRITE: the longest the line is held (8 KiB: 0.71 s at 115200
    # baud). A CSMS call that comes during a download waits for the rest of the read on the
    # line and for the next one, whose command has already gone (up to ~1.45 s); each read also
    # costs its command, its CONNECT and OK lines and a turnaround, ~5 ms (bench.firmware).
    chunk: int = 8192
    scratch_drive: str = "RAM"  # where pieces land ("UFS" on modules without a RAM disk)
    response_time: int = 60  # <rsptime> of GET/POST, seconds
    direct_post_max: int = 4096  # larger uploads go through a UFS file


class QuectelHttp:
    """The module's HTTP(S) client (a :class:`transport.http.HttpClient`)."""

    SCRATCH = ("cphttp.bin", "cphttp2.bin")  # a piece being read, the next one coming in
    WHOLE = "UFS:cpwhole.bin"
    UPLOAD = "UFS:cpupload.req"
    CA = "UFS:cpca.pem"

    def __init__(self, channel: AtChannel, settings: HttpSettings | None = None) -> None:
        self._at = channel
        self.settings = settings or HttpSettings()
        self.files = QuectelFiles(channel, chunk=self.settings.chunk)
        self._busy = asyncio.Lock()  # the module runs one HTTP operation at a time (703)
        self._queued = 0  # operations waiting for it
        self._waiting: dict[str, asyncio.Future[list[int]]] = {}
        self._ca_uploaded = False
        for prefix in HTTP_URCS:
            channel.subscribe(prefix, self._on_urc)

    @property
    def scratch(self) -> tuple[str, str]:
        drive = self.settings.scratch_drive
        return (f"{drive}:{self.SCRATCH[0]}", f"{drive}:{self.SCRATCH[1]}")

    # -- the HttpClient interface --

    async def fetch(
        self, url: str, dest: Path, *, sha256: str | None = None, progress: Progress | None = None
    ) -> FetchResult:
        token = BULK.set(True)  # this task's commands let OCPP's go first
        try:
            async with self._client():
                download = _Download(self)
                try:
                    return await fetch_in_pieces(
                        download,
                        url,
                        dest,
                        piece_size=self.settings.piece_size,
                        sha256=sha256,
                        progress=progress,
                    )
                finally:
                    await shielded(download.close())
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

    # -- steps --

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[None]:
        """The module's HTTP client, which does one operation at a time (703), for this task."""
        self._queued += 1
        try:
            await self._busy.acquire()
        finally:
            self._queued -= 1
        try:
            yield
        finally:
            self._busy.release()

    @contextlib.asynccontextmanager
    async def _operation(self) -> AsyncIterator[None]:
        """One operation of the module's HTTP client. Ended by an exception (a cancellation
        too), the module may still be waiting for the server or holding a response:
        AT+QHTTPSTOP frees it for the next one."""
        async with self._client():
            try:
                yield
            except BaseException:
                await shielded(self._stop())
                raise

    async def _let_others_go(self) -> bool:
        """Between two pieces of a download, which holds the client from its first piece to its
        last, an operation waiting for it (an upload) goes first; True if one did."""
        if not self._queued:
            return False
        self._busy.release()
        await shielded(self._busy.acquire())  # FIFO: behind those waiting
        return True

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
        return await self._outcome(urc, await self._send_request(urc, command, request))

    async def _send_request(
        self, urc: str, command: str, request: bytes
    ) -> asyncio.Future[list[int]]:
        """Send a request whose bytes follow ``CONNECT``; what its URC will say."""
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
        except BaseException:
            self._forget(urc, waiter)
            raise
        return waiter

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
        await self._outcome("+QHTTPREADFILE", await self._store(name))
        return await self._stored_size(name, url)

    async def _store(self, name: str) -> asyncio.Future[list[int]]:
        """Have the module write the response it holds to file ``name``; what the URC will say
        when it is written (seed 000 §2.7)."""
        await self.files.delete(name)
        waiter = self._expect("+QHTTPREADFILE")
        try:
            await self._http_command(
                f'AT+QHTTPREADFILE="{name}",{self.settings.response_time}', "AT+QHTTPREADFILE"
            )
        except BaseException:
            self._forget("+QHTTPREADFILE", waiter)
            raise
        return waiter

    async def _stored_size(self, name: str, url: str) -> int:
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

    @staticmethod
    def _split_head(start: bytes, url: str, name: str) -> tuple[ResponseHead, bytes]:
        """The response head at the start of a response file, and the body bytes after it."""
        end = start.find(b"\r\n\r\n") + 4
        if end < 4:
            raise TransferCorrupt(f"{url}: no complete response header in {name}")
        return ResponseHead.parse(start[:end]), start[end:]

    async def _file_body(
        self,
        handle: int,
        first: bytes,
        left: int,
        between: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncIterator[bytes]:
        """The rest of a response file, ``chunk`` bytes per AT+QFREAD; ``between`` runs before
        each read (the next piece's commands take their turn there)."""
        if first:
            yield first
        while left > 0:
            if between is not None:
                await between()
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

    def _forget(self, urc: str, waiter: asyncio.Future[list[int]]) -> None:
        if self._waiting.get(urc) is waiter:
            del self._waiting[urc]

    async def _result(self, urc: str, waiter: asyncio.Future[list[int]]) -> list[int]:
        """The URC's numbers; its ``<err>`` raised as the specific exception."""
        async with asyncio.timeout(self.settings.response_time + 10.0):
            codes = await waiter
        if codes[0] != 0:
            raise module_http_error(codes[0], urc.lstrip("+"))
        return codes

    async def _outcome(self, urc: str, waiter: asyncio.Future[list[int]]) -> list[int]:
        """:meth:`_result`, after which nobody waits for that URC any more."""
        try:
            return await self._result(urc, waiter)
        finally:
            self._forget(urc, waiter)

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


@dataclass(eq=False)
class _Ahead:
    """The next piece's GET, sent while the current piece is being read."""

    url: str
    head: bytes
    file: str  # the scratch file it goes into
    got: asyncio.Future[list[int]]  # what +QHTTPGET says
    stored: asyncio.Future[list[int]] | None = None  # what +QHTTPREADFILE says, once asked
    looked_at: bool = False  # its +QHTTPGET URC has been seen to: the rest is for its turn
    failure: TransferError | None = None  # met asking for the file: the piece's failure


class _Download:
    """The pieces of one :meth:`QuectelHttp.fetch` (a :class:`transport.http.PipelinedSource`),
    which holds the module's HTTP client from its first piece to its last; an operation that
    waits for the client meanwhile (an upload) goes between two pieces, none being asked ahead.

    A piece's response is in its scratch file before the host reads it; then the next piece's
    GET goes out, and once its ``+QHTTPGET`` URC has come, its AT+QHTTPREADFILE into the other
    scratch file, between two AT+QFREADs of this one. What goes wrong ahead (an ``<err>`` in a
    URC, no room on the drive) is met in that piece's turn, as if it had been asked for then,
    so a failure counts against the piece it belongs to. Whatever ends a piece in an exception
    gives up the piece ahead too: AT+QHTTPSTOP, its file deleted.
    """

    def __init__(self, http: QuectelHttp) -> None:
        self._http = http
        self._ahead: _Ahead | None = None
        self._configured = False  # AT+QHTTPCFG and AT+QHTTPURL hold for this download

    async def exchange(self, where: Location, head: bytes, consume: Consume[T]) -> T:
        return await self.exchange_ahead(where, head, consume, lambda _response: None)

    async def exchange_ahead(
        self, where: Location, head: bytes, consume: Consume[T], following: NextPiece
    ) -> T:
        http = self._http
        ahead, self._ahead = self._ahead, None
        if ahead is not None and (ahead.url, ahead.head) != (where.url, head):
            await shielded(self._give_up(ahead))  # another piece is asked for (a retry)
            ahead = None
        name: str | None = None
        try:
            if ahead is None:
                codes = await self._get(where, head)
                name = await self._place(where, codes, http.scratch[0])
            else:
                name = ahead.file  # deleted below however the piece ends
                codes = await self._adopt(ahead)
                if ahead.stored is None:
                    name = await self._place(where, codes, ahead.file)
            if name is None:
                self._configured = False  # the stream reads it without the header
                return await http._consume_stream(where, head, codes[2], consume)
            if ahead is not None and ahead.stored is not None:
                size = await http._stored_size(name, where.shown)
            else:
                size = await http._response_into(name, where.shown)
            async with http.files.opened(name, 2) as handle:
                start = await http._read_head(handle)
                response, first = http._split_head(start, where.shown, name)
                if name in http.scratch:
                    await self._ask_ahead(where, following(response), name)
                body = http._file_body(handle, first, size - len(start), self._advance)
                return await consume(response, body)
        except BaseException:
            self._configured = False
            await shielded(self.close())
            await shielded(http._stop())
            raise
        finally:
            if name is not None:
                await shielded(http._delete_quietly(name))

    async def close(self) -> None:
        """Give up the piece fetched ahead, if any (the download ends, or a piece failed)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            await self._give_up(ahead)

    # -- steps --

    async def _get(self, where: Location, head: bytes) -> list[int]:
        http = self._http
        if await http._let_others_go():
            self._configured = False  # the other operation set its own URL and options
        if not self._configured:
            await http._configure(where, response_header=True)
            self._configured = True
        return await http._request_with_data("+QHTTPGET", "AT+QHTTPGET", head)

    async def _place(self, where: Location, codes: list[int], scratch: str) -> str | None:
        """Where the response goes: ``scratch``, the UFS for a whole file that does not fit
        there, or None when it fits nowhere and must be streamed."""
        http = self._http
        status = codes[1]
        length = codes[2] if len(codes) > 2 else None
        if (
            status != 200
            or length is None
            or length <= await http.files.free(http.settings.scratch_drive)
        ):
            return scratch
        if length + MAX_HEAD <= await http.files.free("UFS"):
            log.info(
                "%s ignores Range: taking the whole %d bytes into the module's UFS",
                where.shown,
                length,
            )
            return http.WHOLE
        return None

    async def _ask_ahead(self, where: Location, head: bytes | None, current: str) -> None:
        """Send the next piece's GET now, unless there is none or another operation waits for
        the client (it goes first, between this piece and the next)."""
        http = self._http
        if head is None or http._queued:
            return
        other = http.scratch[1] if current == http.scratch[0] else http.scratch[0]
        try:
            got = await http._send_request("+QHTTPGET", "AT+QHTTPGET", head)
        except TransferError as error:
            log.info("the next piece could not be asked for ahead (%s): asking in its turn", error)
            return
        self._ahead = _Ahead(where.url, head, other, got)

    async def _advance(self) -> None:
        """Between two reads: once the piece ahead has its ``+QHTTPGET`` URC, have it written
        to its file, if it is the piece asked for and it fits beside the one being read."""
        http = self._http
        ahead = self._ahead
        if ahead is None or ahead.looked_at or not ahead.got.done():
            return
        ahead.looked_at = True
        codes = ahead.got.result()
        if codes[0] != 0 or len(codes) < 3 or codes[1] != 206:
            return  # an error, or not a piece: its turn deals with it as with any response
        try:
            if codes[2] + MAX_HEAD > await http.files.free(http.settings.scratch_drive):
                return  # written in its turn, once this piece's file is gone
            ahead.stored = await http._store(ahead.file)
        except TransferError as error:
            ahead.failure = error

    async def _adopt(self, ahead: _Ahead) -> list[int]:
        """The piece fetched ahead, now that its turn has come: its ``+QHTTPGET`` numbers,
        and its file written if it was asked for ahead."""
        http = self._http
        codes = await http._outcome("+QHTTPGET", ahead.got)
        if ahead.failure is not None:
            raise ahead.failure
        if ahead.stored is not None:
            await http._outcome("+QHTTPREADFILE", ahead.stored)
        return codes

    async def _give_up(self, ahead: _Ahead) -> None:
        http = self._http
        http._forget("+QHTTPGET", ahead.got)
        if ahead.stored is not None:
            http._forget("+QHTTPREADFILE", ahead.stored)
        if ahead.stored is None or not ahead.stored.done():
            await http._stop()  # the module may still wait for the server, or write the file
        await http._delete_quietly(ahead.file)
