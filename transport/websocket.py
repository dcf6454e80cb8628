"""A WebSocket client (RFC 6455) over any :class:`~transport.stream.ByteStream`.

The protocol state machine is the sans-I/O ``websockets.client.ClientProtocol``: it builds and
checks the opening handshake (``Sec-WebSocket-Accept``), masks every frame we send, answers
pings, enforces the message size limit and runs the closing handshake. This module only pumps
bytes between it and the stream, reassembles fragmented messages, sends our own pings every
``ping_interval`` seconds and declares the link dead when a pong does not come back in time.

What it adds for OCPP-J 1.6 (§3): the connection URL is the CSMS endpoint with ``/<charge point
id>`` appended, percent-encoded; the subprotocol ``ocpp1.6`` must be selected by the server;
HTTP Basic authentication uses the charge point id as user name (§6.2.2).

:class:`WebSocket` is the connection object the ``ocpp`` library's ChargePoint expects:
``await recv() -> str`` and ``await send(str)``; both raise :class:`WebSocketClosed` once the
connection is over.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import logging
import os
from dataclasses import dataclass
from urllib.parse import quote

from websockets.client import ClientProtocol
from websockets.exceptions import (
    InvalidHandshake,
    InvalidHeaderValue,
    InvalidStatus,
    InvalidURI,
    PayloadTooBig,
)
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import WebSocketURI, parse_uri

from transport.errors import StreamClosed, TransportError
from transport.shielding import shielded
from transport.stream import ByteStream

log = logging.getLogger(__name__)

# The protocol object logs the handshake headers (Authorization included) and every frame at
# debug level. Frames are logged once, by the OCPP layer; the password never.
_protocol_log = logging.getLogger("transport.websocket.protocol")
_protocol_log.setLevel(logging.WARNING)

OCPP16 = Subprotocol("ocpp1.6")


class WebSocketError(TransportError):
    """The WebSocket could not be opened."""


class HandshakeRejected(WebSocketError):
    """The CSMS answered the upgrade with an HTTP error."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class NotAnOcppServer(WebSocketError):
    """The server answered the upgrade, but not as an OCPP 1.6-J server does."""


class WebSocketClosed(TransportError):
    """The WebSocket connection is over; ``code`` and ``reason`` say how (RFC 6455 §7.4)."""

    def __init__(self, message: str, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class PingTimeout(WebSocketClosed):
    """No pong came back in time: the link is considered dead (half-open)."""


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    ping_interval: float = 60.0  # WebSocketPingInterval (OCPP-J §7); 0 disables our pings
    pong_timeout: float = 10.0
    max_message_size: int = 2 * 1024 * 1024  # a SendLocalList of 10,000 long entries
    handshake_timeout: float = 60.0
    close_timeout: float = 10.0


def connection_url(endpoint: str, charge_point_id: str) -> str:
    """The endpoint with ``/<id>`` appended, the id percent-encoded (OCPP-J 1.6 §3.1.1)."""
    return endpoint.rstrip("/") + "/" + quote(charge_point_id, safe="")


def parse_endpoint(url: str) -> WebSocketURI:
    try:
        return parse_uri(url)
    except InvalidURI as exc:
        raise WebSocketError(f"not a ws:// or wss:// URL: {url!r} ({exc})") from exc


def basic_authorization(user: str, password: bytes) -> str:
    """``Authorization`` header value; the password may be binary (OCPP-J 1.6 §6.2.2)."""
    return "Basic " + base64.b64encode(user.encode() + b":" + password).decode("ascii")


class WebSocket:
    """An open WebSocket on a byte stream. Create with :meth:`connect`."""

    def __init__(
        self, stream: ByteStream, protocol: ClientProtocol, settings: WebSocketSettings
    ) -> None:
        self._stream = stream
        self._protocol = protocol
        self._settings = settings
        self._messages: collections.deque[str] = collections.deque()
        self._reader: asyncio.Future[None] | None = None  # set while recv() waits
        self._fragments: list[bytes] = []
        self._fragment_opcode: Opcode | None = None
        self._closed: WebSocketClosed | None = None
        self._closed_event = asyncio.Event()
        self._pongs: dict[bytes, asyncio.Future[None]] = {}
        self._write_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._pinger: asyncio.Task[None] | None = None
        self._eof: asyncio.Task[None] | None = None  # closes the stream after the handshake
        self._closing_by_us = False
        self.subprotocol = protocol.subprotocol

    # -- opening --

    @classmethod
    async def connect(
        cls,
        stream: ByteStream,
        url: str,
        *,
        user: str | None = None,
        password: bytes | None = None,
        settings: WebSocketSettings | None = None,
    ) -> WebSocket:
        """Perform the opening handshake on ``stream`` (already connected to the URL's host).

        ``url`` is the full connection URL (see :func:`connection_url`). With a ``password``,
        HTTP Basic authentication is sent with ``user`` as user name. The stream belongs to
        the WebSocket from here on: it is closed if the handshake fails.
        """
        settings = settings or WebSocketSettings()
        try:
            return await cls._handshake(stream, url, user, password, settings)
        except BaseException:
            await stream.close()
            raise

    @classmethod
    async def _handshake(
        cls,
        stream: ByteStream,
        url: str,
        user: str | None,
        password: bytes | None,
        settings: WebSocketSettings,
    ) -> WebSocket:
        uri = parse_endpoint(url)
        protocol = ClientProtocol(
            uri, subprotocols=[OCPP16], max_size=settings.max_message_size, logger=_protocol_log
        )
        request = protocol.connect()
        if password is not None:
            request.headers["Authorization"] = basic_authorization(user or "", password)
        protocol.send_request(request)
        log.info(
            "WebSocket upgrade: GET %s%s", uri.resource_name, " (Basic auth)" if password else ""
        )
        try:
            async with asyncio.timeout(settings.handshake_timeout):
                await _write_all(stream, protocol)
                response, early = await _read_response(stream, protocol)
        except TimeoutError:
            raise WebSocketError(
                f"no answer to the WebSocket upgrade from {uri.host}:{uri.port} within "
                f"{settings.handshake_timeout:g} s"
            ) from None
        except StreamClosed as exc:
            raise WebSocketError(
                f"the connection closed during the WebSocket upgrade: {exc}"
            ) from exc
        _check_handshake(protocol, response, uri)
        ws = cls(stream, protocol, settings)
        # Frames may have come in the same read as the handshake response.
        for frame in early:
            ws._handle_frame(frame)
        ws._start()
        log.info("WebSocket open, subprotocol %s", protocol.subprotocol)
        return ws

    def _start(self) -> None:
        self._tasks = [asyncio.create_task(self._receive_loop(), name="websocket receive")]
        if self._settings.ping_interval > 0:
            self._pinger = asyncio.create_task(self._ping_loop(), name="websocket ping")
            self._tasks.append(self._pinger)

    def set_ping_interval(self, seconds: float) -> None:
        """Change how often we ping (WebSocketPingInterval takes effect at once); 0: never."""
        self._settings = dataclasses.replace(self._settings, ping_interval=seconds)
        if self._pinger is not None:
            self._pinger.cancel()
            self._tasks.remove(self._pinger)
            self._pinger = None
        if seconds > 0 and self._closed is None:
            self._pinger = asyncio.create_task(self._ping_loop(), name="websocket ping")
            self._tasks.append(self._pinger)
        log.info("WebSocket ping interval now %g s", seconds)

    # -- the OCPP connection interface --

    async def recv(self) -> str:
        """The next complete text message."""
        while not self._messages:
            if self._closed is not None:
                raise self._closed
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader  # woken by a message or by the end of the connection
            finally:
                self._reader = None
        return self._messages.popleft()

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    async def send(self, message: str) -> None:
        """Send ``message`` as one masked text frame."""
        if self._closed is not None:
            raise self._closed
        self._protocol.send_text(message.encode())
        try:
            await self._flush()
        except StreamClosed as exc:
            closed = WebSocketClosed(f"the connection under the WebSocket ended: {exc}", 1006)
            self._mark_closed(closed)
            raise closed from exc

    # -- closing --

    @property
    def closed(self) -> WebSocketClosed | None:
        return self._closed

    async def wait_closed(self) -> WebSocketClosed:
        await self._closed_event.wait()
        assert self._closed is not None
        return self._closed

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake (bounded by ``close_timeout``) and close the stream.

        The owner of the WebSocket calls this. The WebSocket's own tasks never close the
        stream, so cancelling them here never cuts a stream's close short; the one close they
        may begin (the TCP end after the closing handshake) runs in a task of its own that is
        awaited here. A connection already over (the stream ended, a pong missing) gets no
        close frame: nothing would read it.
        """
        try:
            if self._protocol.state is State.OPEN and self._closed is None:
                self._closing_by_us = True
                self._protocol.send_close(code, reason)
                with contextlib.suppress(TransportError):
                    await self._flush()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._settings.close_timeout):
                        await self._closed_event.wait()
            self._mark_closed(
                WebSocketClosed(
                    f"WebSocket closed by us ({_close_text(code, reason)})", code, reason
                )
            )
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            if self._eof is not None:
                await asyncio.gather(shielded(self._eof), return_exceptions=True)
            await self._stream.close()

    # -- pumping --

    async def _flush(self) -> None:
        async with self._write_lock:
            for data in self._protocol.data_to_send():
                if data:
                    await self._stream.write(data)
                elif self._eof is None:
                    # b"": the closing handshake is over and the client closes its side of
                    # TCP too (RFC 6455 §7.1.1), in a task that close() awaits, never cancels.
                    self._eof = asyncio.create_task(self._stream.close(), name="websocket eof")

    async def _receive_loop(self) -> None:
        try:
            while True:
                data = await self._stream.read()
                self._protocol.receive_data(data)
                await self._flush()
                self._handle_events()
                if self._protocol.state is State.CLOSED:
                    return
        except StreamClosed as exc:
            # Say why in the stream's own words before the protocol calls it an unexpected EOF.
            self._mark_closed(
                WebSocketClosed(f"the connection under the WebSocket ended: {exc}", 1006)
            )
            self._protocol.receive_eof()
            self._handle_events()
            with contextlib.suppress(TransportError):
                await self._flush()
        except TransportError as exc:
            self._mark_closed(
                WebSocketClosed(f"the connection under the WebSocket failed: {exc}", 1006)
            )

    def _handle_events(self) -> None:
        for event in self._protocol.events_received():
            if isinstance(event, Frame):
                self._handle_frame(event)
        failure = self._protocol.parser_exc
        if failure is not None and self._closed is None:
            if isinstance(failure, PayloadTooBig):
                text = f"message larger than {self._settings.max_message_size} bytes"
            else:
                text = str(failure) or type(failure).__name__
            sent = self._protocol.close_sent
            self._mark_closed(
                WebSocketClosed(f"WebSocket failed: {text}", sent.code if sent else 1006, text)
            )
        elif self._protocol.close_rcvd is not None and self._closed is None:
            close = self._protocol.close_rcvd
            who = "we" if self._closing_by_us else "the CSMS"
            self._mark_closed(
                WebSocketClosed(
                    f"{who} closed the WebSocket ({_close_text(close.code, close.reason)})",
                    close.code,
                    close.reason,
                )
            )

    def _handle_frame(self, frame: Frame) -> None:
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            self._fragment_opcode = frame.opcode
            self._fragments = [bytes(frame.data)]
        elif frame.opcode is Opcode.CONT:
            self._fragments.append(bytes(frame.data))
        elif frame.opcode is Opcode.PONG:
            waiter = self._pongs.pop(bytes(frame.data), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        else:
            return  # pings are answered and close handled by the protocol object
        if not frame.fin:
            return
        data = b"".join(self._fragments)
        opcode, self._fragments, self._fragment_opcode = self._fragment_opcode, [], None
        if opcode is Opcode.BINARY:
            # OCPP-J messages are JSON text (§4.1.2); a binary frame is not one.
            log.warning("ignoring a binary WebSocket message of %d bytes", len(data))
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._protocol.fail(1007, "invalid UTF-8 in a text message")
            self._mark_closed(WebSocketClosed(f"the CSMS sent invalid UTF-8: {exc}", 1007))
            return
        self._messages.append(text)
        self._wake_reader()

    async def _ping_loop(self) -> None:
        settings = self._settings
        while self._closed is None:
            await asyncio.sleep(settings.ping_interval)
            payload = os.urandom(4)
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._pongs[payload] = waiter
            try:
                self._protocol.send_ping(payload)
                await self._flush()
                async with asyncio.timeout(settings.pong_timeout):
                    await waiter
            except TimeoutError:
                self._pongs.pop(payload, None)
                # Nothing will come back on a dead link: the owner, woken from recv(), closes
                # the stream at once (no closing handshake).
                self._mark_closed(
                    PingTimeout(
                        f"no pong within {settings.pong_timeout:g} s of a ping: the link is dead",
                        1006,
                    )
                )
                return
            except TransportError:
                return

    def _mark_closed(self, closed: WebSocketClosed) -> None:
        if self._closed is None:
            self._closed = closed
            log.info("%s", closed)
            self._closed_event.set()
            self._wake_reader()
            for waiter in self._pongs.values():
                waiter.cancel()
            self._pongs.clear()


def _close_text(code: int, reason: str) -> str:
    return f"{code} {reason}" if reason else str(code)


async def _write_all(stream: ByteStream, protocol: ClientProtocol) -> None:
    """The opening handshake's request (it never asks for the end of the stream)."""
    for data in protocol.data_to_send():
        if data:
            await stream.write(data)


async def _read_response(
    stream: ByteStream, protocol: ClientProtocol
) -> tuple[Response, list[Frame]]:
    """The handshake response, and any frames that arrived right behind it."""
    while True:
        protocol.receive_data(await stream.read())
        events = protocol.events_received()
        for i, event in enumerate(events):
            if isinstance(event, Response):
                return event, [e for e in events[i + 1 :] if isinstance(e, Frame)]
        if protocol.handshake_exc is not None:
            raise WebSocketError(
                f"the CSMS's answer to the upgrade is not HTTP: {protocol.handshake_exc}"
            )


def _check_handshake(protocol: ClientProtocol, response: Response, uri: WebSocketURI) -> None:
    error = protocol.handshake_exc
    where = f"{uri.host}:{uri.port}{uri.resource_name}"
    if isinstance(error, InvalidStatus):
        status = error.response.status_code
        advice = {
            401: "the CSMS refused the charge point's credentials: "
            "check the charge point id and password",
            403: "the CSMS forbids this charge point",
            404: "the CSMS does not know this URL or charge point id: check csms.url and the id",
        }.get(status, "the CSMS refused the WebSocket upgrade")
        raise HandshakeRejected(
            f"{advice} (HTTP {status} {error.response.reason_phrase} from {where})", status
        )
    if isinstance(error, InvalidHeaderValue) and "Accept" in str(error):
        raise NotAnOcppServer(
            f"wrong Sec-WebSocket-Accept from {where}: "
            "not a WebSocket server, or a proxy in the way"
        )
    if isinstance(error, InvalidHandshake):
        raise WebSocketError(f"WebSocket upgrade to {where} failed: {error}")
    if error is not None:
        raise WebSocketError(f"WebSocket upgrade to {where} failed: {error!r}")
    if protocol.subprotocol != OCPP16:
        # OCPP-J 1.6 §3.2: a CSMS that does not agree answers without the header and closes.
        chosen = protocol.subprotocol or "none"
        raise NotAnOcppServer(
            f"the CSMS at {where} did not select the ocpp1.6 subprotocol (it answered: {chosen}); "
            "check that the URL is the CSMS's OCPP 1.6-J endpoint"
        )
    del response
