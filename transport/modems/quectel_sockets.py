"""The Quectel module's sockets: its twelve connect ids as the driver holds them, and the TCP
streams on them (at-protocol.md §2.4-§2.13, cited as §n), plain (AT+QI*) or with the TLS in the
module (AT+QSSL*, §3.2-§3.6: the same id space, the same buffer access mode, other names).

Sockets open in direct push mode by default (``<access_mode>`` 1, §2.4): the module hands
over what arrives on the URC itself, ``+QIURC: "recv",<id>,<n>`` and exactly n bytes (§2.13), so
an arrival costs the host one read of the line and nothing else. In buffer access mode (the
setting ``access_mode``, or when the module refuses the push argument) the module keeps received
bytes and says ``+QIURC: "recv",<id>`` once; the host then reads with ``AT+QIRD`` until
``+QIRD: 0``, because no further "recv" URC comes until the buffer has been drained (§2.8,
§9.2). A push-mode socket that gets a "recv" URC without data (firmware that kept buffer mode)
is read the buffer-mode way. Writes go as ``AT+QISEND=<id>,<len>`` with at most 1460 bytes, the
fixed-length form being the only one that can carry 0x1A/0x1B (§9.7); a chunk of at most
``hex_send_max`` bytes on a TCP socket goes as ``AT+QISENDEX=<id>,"<hex>"`` instead (§2.9), one
command with no prompt to wait for, and the module that answers it with ERROR while AT+QISEND
works gets AT+QISEND only.

An id belongs to the module, not to us: AT+QIOPEN takes it, and it stays taken (after a
``+QIURC: "closed"``, a failed connect, an open that never answered) until AT+QICLOSE or a
module restart (§2.4, §2.5). The driver's table follows the module exactly:

* an id enters the table before its AT+QIOPEN is written, and leaves it only when the module
  has answered AT+QICLOSE, has restarted (RDY), or lists it free in AT+QISTATE?;
* giving an id back runs to its end whatever cancels the task that began it
  (:func:`~transport.shielding.shielded`): no cancelled open or close leaves an id behind;
* an AT+QICLOSE that got no answer (an AT timeout, a hung module) leaves the id UNCLOSED, and
  it is closed before any new AT+QIOPEN, so a CSMS never sees the old connection beside the
  new one;
* ``+QIOPEN: <id>,563`` (the module holds the id for a socket we do not know) closes that
  socket and opens again once; with no id free, AT+QISTATE? is asked which ids the module
  really holds before :class:`~transport.errors.SocketsExhausted` is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
from dataclasses import dataclass

from transport.at import AtChannel, Response, ResultKind, Urc, split_fields
from transport.errors import (
    AtCommandFailed,
    AtTimeout,
    ModemNotResponding,
    NetworkLost,
    PeerClosed,
    SendStalled,
    ServerRefused,
    SocketOpenError,
    SocketsExhausted,
    StreamBroken,
    StreamClosed,
    TransportError,
)
from transport.modems.quectel_settings import MAX_READ, MAX_SEND, AccessMode, QuectelSettings
from transport.shielding import shielded

log = logging.getLogger(__name__)

CONNECT_IDS = range(12)  # <connectID> 0-11 (§2.4)
ID_IN_USE = 563
INVALID_PARAMETERS = 552  # for QSSLOPEN, after many opens: a degraded TLS stack (§9.11)
CONNECT_FAILED = 566  # the server refused or is unreachable; for QSSLOPEN also a TLS failure

# Socket error codes of §2.12, with what to check where there is something to check.
SOCKET_ERRORS = {
    550: "unknown error",
    551: "operation blocked",
    552: "invalid parameters",
    553: "memory not enough",
    554: "create socket failed",
    555: "operation not supported",
    556: "socket bind failed",
    557: "socket listen failed",
    558: "socket write failed",
    559: "socket read failed",
    560: "socket accept failed",
    561: "open PDP context failed: check the APN",
    562: "close PDP context failed",
    563: "socket identity has been used",
    564: "DNS busy: retry shortly",
    565: "DNS parse failed: check the host name and that the APN provides a DNS server",
    566: "socket connect failed: the server refused or is unreachable; "
    "check host, port and firewall",
    567: "socket has been closed",
    568: "operation busy",
    569: "operation timeout",
    570: "PDP context broken down: the data link must be re-activated",
    571: "cancel send",
    572: "operation not allowed",
    573: "APN not configured",
    574: "port busy",
}

_QIGETERROR = re.compile(r"(?P<code>\d+)\s*,\s*(?P<text>.*)")
_SAFE_HOST = re.compile(r"[A-Za-z0-9._\-:\[\]]{1,255}")


def describe_socket_error(code: int) -> str:
    return f"{code} {SOCKET_ERRORS.get(code, 'unlisted error')}"


async def last_socket_error(at: AtChannel) -> tuple[int, str] | None:
    """What AT+QIGETERROR says about the last TCP/IP command (§2.12)."""
    response = await at.command("AT+QIGETERROR", expect=("+QIGETERROR:",), check=False)
    values = response.values("+QIGETERROR:")
    match = _QIGETERROR.fullmatch(values[0]) if values else None
    return (int(match["code"]), match["text"].strip()) if match else None


def with_socket_error(result: str, error: tuple[int, str] | None) -> str:
    """A failed command's result with what AT+QIGETERROR added to it."""
    if error is None or error[0] == 0:
        return result
    return f"{result}, {describe_socket_error(error[0])}"


@dataclass(frozen=True, slots=True)
class SocketCommands:
    """The AT commands of one kind of socket: the SSL set mirrors the TCP one (§3)."""

    name: str
    open_urc: str
    send: str
    read: str
    read_answer: str
    close: str


HEX_SEND = "AT+QISENDEX"  # TCP only: the SSL set has no hex form (§2.9)
TCP = SocketCommands("TCP", "+QIOPEN:", "AT+QISEND", "AT+QIRD", "+QIRD:", "AT+QICLOSE")
SSL = SocketCommands(
    "TLS", "+QSSLOPEN:", "AT+QSSLSEND", "AT+QSSLRECV", "+QSSLRECV:", "AT+QSSLCLOSE"
)


class SocketState(enum.Enum):
    OPENING = "opening"  # AT+QIOPEN is under way
    OPEN = "open"  # a stream uses the id
    UNCLOSED = "unclosed"  # AT+QICLOSE got no answer: the module may still hold the connection


@dataclass(eq=False)
class _Slot:
    """One connect id held by the driver, from its AT+QIOPEN to its AT+QICLOSE."""

    connect_id: int
    where: str
    kind: SocketCommands = TCP
    mode: AccessMode = AccessMode.BUFFER  # what the open asked for and the module took
    state: SocketState = SocketState.OPENING
    opened: asyncio.Future[int] | None = None  # the <err> of the +QIOPEN URC waited for
    stream: QuectelTcpStream | None = None


class QuectelSockets:
    """The socket table of one module on one :class:`AtChannel`; the modem driver routes the
    socket URCs here and tells it when the module restarted or the network dropped."""

    def __init__(self, channel: AtChannel, settings: QuectelSettings) -> None:
        self._at = channel
        self._s = settings
        self._table: dict[int, _Slot] = {}
        # The module refused the push argument once (an ERROR with 552): buffer mode from then
        # on, for this driver's life (a module does not learn push mode by restarting).
        self._push_refused = False
        # The largest chunk sent as AT+QISENDEX; 0 once the module has refused the command
        # (firmware without it), for this driver's life like the push refusal.
        self.hex_send_max = settings.hex_send_max

    @property
    def channel(self) -> AtChannel:
        return self._at

    @property
    def settings(self) -> QuectelSettings:
        return self._s

    def table(self) -> dict[int, SocketState]:
        """The ids the driver holds, and how (for logs, tests and ``modem info``)."""
        return {connect_id: slot.state for connect_id, slot in sorted(self._table.items())}

    def streams(self) -> list[QuectelTcpStream]:
        return [slot.stream for slot in self._table.values() if slot.stream is not None]

    # -- opening --

    async def open_tcp(
        self, host: str, port: int, *, timeout: float | None = None, connect_id: int | None = None
    ) -> QuectelTcpStream:
        """Open a TCP connection in the configured access mode; the module resolves host names.

        ``connect_id`` picks the module's socket id (0-11); by default the lowest free one.
        """
        return await self._open_stream(TCP, host, port, timeout, connect_id)

    async def open_tls(
        self,
        host: str,
        port: int,
        ssl_context_id: int,
        *,
        timeout: float | None = None,
        connect_id: int | None = None,
    ) -> QuectelTcpStream:
        """Open a TLS connection in the module with SSL context ``ssl_context_id`` (configured
        beforehand with AT+QSSLCFG), in the configured access mode (§3.2). The module's time
        limit is 150 s plus the context's negotiation time; the caller's ``timeout`` should
        allow it."""
        if not 0 <= ssl_context_id <= 5:
            raise ValueError(f"not an SSL context id: {ssl_context_id}")
        return await self._open_stream(SSL, host, port, timeout, connect_id, ssl_context_id)

    async def _open_stream(
        self,
        kind: SocketCommands,
        host: str,
        port: int,
        timeout: float | None,
        connect_id: int | None,
        ssl_context_id: int = 0,
    ) -> QuectelTcpStream:
        if not _SAFE_HOST.fullmatch(host):
            raise ValueError(f"not a host name or address: {host!r}")
        if not 0 < port < 65536:
            raise ValueError(f"not a TCP port: {port}")
        open_timeout = self._s.open_timeout if timeout is None else timeout
        where = f"{host}:{port}"
        await self._close_unclosed()
        slot = await self._claim(where, connect_id, kind)
        try:
            await self._connect(slot, host, port, open_timeout, ssl_context_id)
        except BaseException:
            # A failed, timed-out or cancelled open still holds the id at the module (§2.4).
            await shielded(self.give_back(slot))
            raise
        stream = QuectelTcpStream(self, slot)
        slot.state, slot.stream, slot.opened = SocketState.OPEN, stream, None
        stream.start()
        log.info("socket %d connected to %s (%s)", slot.connect_id, where, kind.name)
        return stream

    async def _connect(
        self, slot: _Slot, host: str, port: int, timeout: float, ssl_context_id: int
    ) -> None:
        code = await self._open(slot, host, port, timeout, ssl_context_id)
        if code == ID_IN_USE:
            log.warning(
                "socket %d is held at the module by a connection this driver does not know "
                "(%s %d,563): closing it and opening again",
                slot.connect_id,
                slot.kind.open_urc,
                slot.connect_id,
            )
            await self._force_close(slot.connect_id, None)
            code = await self._open(slot, host, port, timeout, ssl_context_id)
        if code == CONNECT_FAILED:
            raise ServerRefused(
                f"cannot connect to {slot.where}: {describe_socket_error(code)}", code
            )
        if code == INVALID_PARAMETERS and slot.kind is SSL:
            raise SocketOpenError(
                f"cannot connect to {slot.where}: the module's TLS stack refuses every open "
                "(+QSSLOPEN 552, a firmware fault after many opens); a module restart clears it",
                code,
            )
        if code != 0:
            raise SocketOpenError(
                f"cannot connect to {slot.where}: {describe_socket_error(code)}", code
            )

    async def _open(
        self, slot: _Slot, host: str, port: int, timeout: float, ssl_context_id: int
    ) -> int:
        """AT+QIOPEN (or AT+QSSLOPEN) on the slot's id and the ``<err>`` of its URC."""
        slot.opened = asyncio.get_running_loop().create_future()
        slot.mode = AccessMode.BUFFER if self._push_refused else self._s.access_mode
        command = self._open_command(slot, host, port, ssl_context_id)
        response = await self._at.command(command, check=False)
        if not response.result.success:
            error = await last_socket_error(self._at)
            push = slot.mode is AccessMode.PUSH
            if push and error is not None and error[0] == INVALID_PARAMETERS:
                log.warning(
                    "the module refused direct push mode for %s (%s): trying buffer access "
                    "mode (AT+QIRD), kept for every socket if it works",
                    slot.where,
                    with_socket_error(response.result.text, error),
                )
                slot.mode = AccessMode.BUFFER
                response = await self._at.command(
                    self._open_command(slot, host, port, ssl_context_id), check=False
                )
                error = None if response.result.success else await last_socket_error(self._at)
                # Only an open that buffer mode gets through shows push mode was the problem
                # (552 is also a degraded stack's answer to everything, §9.11).
                self._push_refused = response.result.success
        if not response.result.success:
            if error is not None and error[0] == ID_IN_USE:
                return ID_IN_USE  # firmware that says so at once rather than by URC
            raise SocketOpenError(
                f"module refused to open {slot.where}: "
                f"{with_socket_error(response.result.text, error)}"
            )
        try:
            async with asyncio.timeout(timeout):
                return await slot.opened
        except TimeoutError:
            raise SocketOpenError(
                f"no {slot.kind.open_urc} for {slot.where} within {timeout:g} s"
            ) from None

    def _open_command(self, slot: _Slot, host: str, port: int, ssl_context_id: int) -> str:
        pdp, connect_id, mode = self._s.context_id, slot.connect_id, int(slot.mode)
        if slot.kind is SSL:
            return f'AT+QSSLOPEN={pdp},{ssl_context_id},{connect_id},"{host}",{port},{mode}'
        return f'AT+QIOPEN={pdp},{connect_id},"TCP","{host}",{port},0,{mode}'

    async def _claim(self, where: str, connect_id: int | None, kind: SocketCommands) -> _Slot:
        if connect_id is not None:
            if connect_id not in CONNECT_IDS or connect_id in self._table:
                raise SocketOpenError(f"socket id {connect_id} is not free")
        else:
            connect_id = self._free_id()
            if connect_id is None:
                await self.reconcile()
                connect_id = self._free_id()
            if connect_id is None:
                held = ", ".join(
                    f"{i} {slot.state.value} to {slot.where}" for i, slot in self._table.items()
                )
                log.error("all 12 module sockets are held by this driver: %s", held)
                raise SocketsExhausted(
                    f"all 12 module sockets are held by this driver ({held}), and the module "
                    "agrees: something keeps connections open without closing them"
                )
        slot = _Slot(connect_id, where, kind)
        self._table[connect_id] = slot
        return slot

    def _free_id(self) -> int | None:
        return next((i for i in CONNECT_IDS if i not in self._table), None)

    # -- giving ids back --

    async def give_back(self, slot: _Slot) -> None:
        """AT+QICLOSE (or AT+QSSLCLOSE) the slot's id and take it out of the table (§2.5, §3.5).
        Nothing is sent for an
        id that is no longer the slot's (the module restarted, or AT+QISTATE showed it free).
        Callers run this shielded from their own cancellation."""
        if self._table.get(slot.connect_id) is not slot:
            return
        s = self._s
        try:
            response = await self._at.command(
                f"{slot.kind.close}={slot.connect_id},{s.close_timeout}",
                timeout=s.close_timeout + 5.0,
                check=False,
            )
        except TransportError as exc:  # no answer, or the port is gone
            if self._table.get(slot.connect_id) is slot:
                slot.state, slot.stream = SocketState.UNCLOSED, None
                log.warning(
                    "socket %d to %s: %s not confirmed (%s); the module may still hold "
                    "the connection, so it is closed again before another socket opens",
                    slot.connect_id,
                    slot.where,
                    slot.kind.close,
                    exc,
                )
            return
        if not response.result.success:
            log.info(
                "%s=%d answered %s: the module no longer held it",
                slot.kind.close,
                slot.connect_id,
                response.result.text,
            )
        if self._table.get(slot.connect_id) is slot:
            del self._table[slot.connect_id]

    async def _close_unclosed(self) -> None:
        for slot in [s for s in self._table.values() if s.state is SocketState.UNCLOSED]:
            log.info("closing socket %d to %s before opening another", slot.connect_id, slot.where)
            await shielded(self.give_back(slot))
            if self._table.get(slot.connect_id) is slot:
                raise SocketOpenError(
                    f"socket {slot.connect_id} to {slot.where} could not be closed at the "
                    "module; no new connection is opened beside it"
                )

    async def _force_close(self, connect_id: int, kind: SocketCommands | None) -> None:
        """Close a socket the module holds for no slot of ours, at once (``<timeout>`` 0).
        Of unknown kind (a 563 answer), both closes are sent: the wrong one is an ERROR."""
        for commands in (kind,) if kind is not None else (TCP, SSL):
            await self._at.command(f"{commands.close}={connect_id},0", timeout=15.0, check=False)

    async def reconcile(self) -> None:
        """Make the table agree with the module (AT+QISTATE? and AT+QSSLSTATE, §2.6, §3.5):
        ids the module no longer holds leave the table (their streams end), and sockets it
        holds for no slot of ours (left by an earlier run, or by a close that was lost) are
        closed (§9.11, §9.21)."""
        held: dict[int, SocketCommands] = {}
        listed = {TCP}
        for kind, command, prefix in (
            (TCP, "AT+QISTATE?", "+QISTATE:"),
            (SSL, "AT+QSSLSTATE", "+QSSLSTATE:"),
        ):
            response = await self._at.command(command, expect=(prefix,), check=False)
            if not response.result.success:
                if kind is TCP:
                    return  # without the TCP list, the table cannot be judged at all
                continue  # no SSL list (firmware variants): SSL slots cannot be judged
            listed.add(kind)
            for value in response.values(prefix):
                fields = split_fields(value)
                if fields and fields[0].isdigit():
                    held[int(fields[0])] = kind
        for connect_id, slot in list(self._table.items()):
            if (
                connect_id not in held
                and slot.state is not SocketState.OPENING
                and slot.kind in listed
            ):
                log.warning(
                    "socket %d to %s (%s) is not held at the module any more",
                    connect_id,
                    slot.where,
                    slot.state.value,
                )
                self._forget(slot, StreamBroken(f"socket {connect_id}: the module dropped it"))
        for connect_id, kind in sorted(held.items()):
            if connect_id not in self._table:
                log.info(
                    "closing %s socket %d, which no connection of this driver holds",
                    kind.name,
                    connect_id,
                )
                await self._force_close(connect_id, kind)

    def _forget(self, slot: _Slot, error: StreamClosed) -> None:
        if self._table.get(slot.connect_id) is slot:
            del self._table[slot.connect_id]
        if slot.stream is not None:
            slot.stream.fail(error)
        if slot.opened is not None and not slot.opened.done():
            slot.opened.set_exception(error)
            slot.opened.exception()  # seen here; raised to the open if it still waits

    # -- what the module says --

    def lose_all(self, error: StreamClosed) -> None:
        """The module restarted, powered down or its port is gone: every id is free again."""
        for slot in list(self._table.values()):
            self._forget(slot, error)

    def network_lost(self, why: str) -> None:
        for stream in self.streams():
            stream.network_lost(why)

    def on_socket_urc(self, kind: str, connect_id: int, urc: Urc) -> None:
        """``+QIURC:`` / ``+QSSLURC:`` ``"recv"`` (with the pushed data in direct push mode)
        or ``"closed"`` for ``connect_id``."""
        slot = self._table.get(connect_id)
        stream = slot.stream if slot is not None else None
        if stream is None:
            # Not ours: a socket closed before it connected, or one an earlier run of the
            # daemon left open (the module keeps it across our restart, §9.11); reconcile()
            # closes the latter at bring-up. Nothing to act on, nothing to warn about.
            log.debug("%s for socket %d, which no stream uses", urc.text, connect_id)
        elif kind == "recv" and urc.payload is not None:
            stream.pushed(urc.payload)
        elif kind == "recv":
            stream.data_announced()
        else:
            stream.peer_closed()

    def on_qiopen(self, urc: Urc) -> None:
        """``+QIOPEN: <id>,<err>`` or ``+QSSLOPEN: <id>,<err>``."""
        prefix, _, rest = urc.text.partition(":")
        fields = split_fields(rest.strip())
        if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
            slot = self._table.get(int(fields[0]))
            # A late +QIOPEN for an id now opening with QSSLOPEN (or back) is not its answer.
            matches = slot is not None and slot.kind.open_urc == prefix + ":"
            opened = slot.opened if slot is not None and matches else None
            if opened is not None and not opened.done():
                opened.set_result(int(fields[1]))
                return
        log.info("%s for an open no longer waited for", urc.text)


class QuectelTcpStream:
    """A TCP connection through a Quectel socket: a :class:`transport.stream.ByteStream`.

    Two tasks owned by the stream move the bytes: one drains the module's receive buffer when
    it announces data, one sends queued bytes in chunks of at most 1460. Both share the single
    AT channel with everything else, one command at a time.
    """

    def __init__(self, sockets: QuectelSockets, slot: _Slot) -> None:
        self._sockets = sockets
        self._slot = slot
        self._at = sockets.channel
        self._s = sockets.settings
        self.connect_id = slot.connect_id
        self.where = slot.where
        self._kind = slot.kind
        self._push = slot.mode is AccessMode.PUSH
        self._read_needed = not self._push  # a buffer-mode announcement waits to be read
        self._rx = bytearray()
        self._rx_available = asyncio.Event()
        self._rx_space = asyncio.Event()
        self._rx_space.set()
        self._announced = asyncio.Event()
        self._tx = bytearray()
        self._tx_pending = asyncio.Event()
        self._tx_space = asyncio.Event()
        self._tx_space.set()
        self._tx_empty = asyncio.Event()
        self._tx_empty.set()
        self._peer_closed = False
        self._lost: NetworkLost | None = None
        self._end: StreamClosed | None = None  # reading ends once _rx is empty
        self._error: StreamClosed | None = None  # writing is no longer possible
        self._closing: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.bytes_sent = 0
        self.bytes_received = 0
        self.send_fails = 0

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._receive_loop(), name=f"receive {self.connect_id}"),
            asyncio.create_task(self._send_loop(), name=f"send {self.connect_id}"),
        ]

    # -- ByteStream --

    async def read(self, max_bytes: int = 65536) -> bytes:
        while not self._rx:
            if self._end is not None:
                raise self._end
            self._rx_available.clear()
            await self._rx_available.wait()
        data = bytes(self._rx[:max_bytes])
        del self._rx[:max_bytes]
        if len(self._rx) < self._s.rx_high_water:
            self._rx_space.set()
        return data

    async def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._closing is not None:
            raise StreamClosed(f"socket {self.connect_id} to {self.where} is closed")
        if not data:
            return
        self._tx += data
        self._tx_empty.clear()
        self._tx_pending.set()
        while len(self._tx) > self._s.tx_high_water and self._error is None:
            self._tx_space.clear()
            await self._tx_space.wait()
        if self._error is not None:
            raise self._error

    async def close(self, *, flush_timeout: float = 10.0) -> None:
        """Send what is queued (for at most ``flush_timeout``), stop the stream's tasks,
        AT+QICLOSE the socket and give its id back.

        The first call does this in a task of its own; every call, a second one or one made
        while the first runs, waits for that task to finish, and so does a caller cancelled
        meanwhile (its cancellation is raised afterwards).
        """
        if self._closing is None:
            self._closing = asyncio.create_task(
                self._close(flush_timeout), name=f"close {self.connect_id}"
            )
        await shielded(self._closing)

    async def _close(self, flush_timeout: float) -> None:
        try:
            if self._tx and self._error is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(flush_timeout):
                        await self._tx_empty.wait()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            # QICLOSE also frees the id after a "closed" URC or a failure (§2.5).
            await self._sockets.give_back(self._slot)
            self.fail(StreamClosed(f"socket {self.connect_id} to {self.where} was closed locally"))
            log.info(
                "socket %d to %s closed (%d bytes sent, %d received, %d SEND FAIL)",
                self.connect_id,
                self.where,
                self.bytes_sent,
                self.bytes_received,
                self.send_fails,
            )

    # -- events from the modem's URC handlers --

    def data_announced(self) -> None:
        if self._push:
            # Firmware that took the push argument and kept buffer mode: read it that way,
            # idle poll included (a lost "recv" is followed by no other until it is drained).
            log.info(
                "socket %d: the module announces data without pushing it; reading it with %s",
                self.connect_id,
                self._kind.read,
            )
            self._push = False
        self._read_needed = True
        self._announced.set()

    def pushed(self, data: bytes) -> None:
        """Direct push: the bytes a "recv" URC carried, in the order the module sent them.
        The module cannot be held back in this mode (its only brake is the UART); the
        reader keeps up, and a reader that stops makes the buffer grow, said in the log."""
        if self._end is not None:
            return
        self._rx += data
        self.bytes_received += len(data)
        self._rx_available.set()
        if len(self._rx) >= self._s.rx_high_water and self._rx_space.is_set():
            self._rx_space.clear()
            log.warning(
                "socket %d to %s: %d bytes pushed and not read yet; the module cannot be held "
                "back in direct push mode",
                self.connect_id,
                self.where,
                len(self._rx),
            )

    def peer_closed(self) -> None:
        self._peer_closed = True
        self._announced.set()

    def network_lost(self, why: str) -> None:
        self._lost = NetworkLost(f"socket {self.connect_id} to {self.where}: {why}")
        self._announced.set()
        if self._error is None:
            self._error = self._lost
            self._wake_writers()

    def fail(self, error: StreamClosed) -> None:
        """End the stream at once: unread data is dropped only if the module lost it too."""
        if self._end is None:
            self._end = error
        if self._error is None:
            self._error = error
        self._rx_available.set()
        self._wake_writers()

    def _wake_writers(self) -> None:
        self._tx_space.set()
        self._tx_empty.set()

    # -- the tasks --

    async def _receive_loop(self) -> None:
        try:
            while True:
                if self._push:
                    # Pushed data never waits at the module, so there is nothing to poll for:
                    # this task wakes only for a "closed", a lost network, or a "recv" that
                    # came without its data.
                    await self._announced.wait()
                else:
                    try:
                        async with asyncio.timeout(self._s.idle_poll_interval):
                            await self._announced.wait()
                    except TimeoutError:
                        # No URC for a while: read anyway, in case one was lost in line noise
                        # (the module would not send another until its buffer is drained, §9.2).
                        self._read_needed = True
                self._announced.clear()
                if self._read_needed:
                    self._read_needed = not self._push
                    await self._drain_module()
                if self._peer_closed:
                    raise PeerClosed(
                        f"socket {self.connect_id}: {self.where} closed the connection"
                    )
                if self._lost is not None:
                    raise self._lost
        except StreamClosed as exc:
            self.fail(exc)
        except TransportError as exc:  # the AT conversation failed, or the port is gone
            self.fail(self._broken("reading", exc))

    async def _drain_module(self) -> None:
        while True:
            while len(self._rx) >= self._s.rx_high_water:
                self._rx_space.clear()
                await self._rx_space.wait()
            try:
                # The answer may carry 1500 bytes: at 9600 baud that alone takes 1.6 s.
                response = await self._at.command(
                    f"{self._kind.read}={self.connect_id},{MAX_READ}",
                    expect=(self._kind.read_answer,),
                    timeout=self._s.command_timeout + self._at.wire_time(MAX_READ + 32),
                )
            except AtCommandFailed:
                if self._lost is not None:
                    raise self._lost from None
                raise
            announced = int(response.value(self._kind.read_answer).split(",")[0])
            if announced == 0:
                return
            data = response.payload
            if len(data) != announced:
                raise StreamBroken(
                    f"socket {self.connect_id}: {self._kind.read_answer} announced {announced} "
                    f"bytes, got {len(data)}"
                )
            self._rx += data
            self.bytes_received += len(data)
            self._rx_available.set()

    async def _send_loop(self) -> None:
        try:
            while True:
                await self._tx_pending.wait()
                chunk = bytes(self._tx[:MAX_SEND])
                await self._send_chunk(chunk)
                del self._tx[: len(chunk)]
                self.bytes_sent += len(chunk)
                if len(self._tx) <= self._s.tx_high_water:
                    self._tx_space.set()
                if not self._tx:
                    self._tx_pending.clear()
                    self._tx_empty.set()
        except StreamClosed as exc:
            self.fail(exc)
        except TransportError as exc:  # the AT conversation failed, or the port is gone
            self.fail(self._broken("sending", exc))

    async def _send_chunk(self, chunk: bytes) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._s.send_stall_timeout
        backoff = self._s.send_retry_delay
        while True:
            if self._error is not None:
                raise self._error
            response = await self._send_once(chunk)
            if response.result.success:
                return
            if response.result.text == "SEND FAIL":
                # The module's send buffer is full: the peer or the radio is not keeping up.
                # Not fatal; wait and offer the same bytes again (§2.7, §9.4).
                self.send_fails += 1
                if loop.time() + backoff > deadline:
                    raise SendStalled(
                        f"socket {self.connect_id} to {self.where}: the module refused data "
                        f"(SEND FAIL) for {self._s.send_stall_timeout:g} s; the link is "
                        "considered dead"
                    )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            if self._peer_closed:
                raise PeerClosed(f"socket {self.connect_id}: {self.where} closed the connection")
            if self._lost is not None:
                raise self._lost
            if self._error is not None:
                raise self._error
            error = await last_socket_error(self._at)
            command = response.command.split("=", 1)[0]  # AT+QISEND, AT+QISENDEX, AT+QSSLSEND
            raise StreamBroken(
                f"socket {self.connect_id} to {self.where}: {command} failed: "
                f"{with_socket_error(response.result.text, error)}"
            )

    async def _send_once(self, chunk: bytes) -> Response:
        """One AT+QISEND (or, for a small chunk on a TCP socket, one AT+QISENDEX) of ``chunk``;
        its result unchecked, as :meth:`AtChannel.command_with_data` gives it."""
        hex_refused = False
        if self._kind is TCP and len(chunk) <= self._sockets.hex_send_max:
            response = await self._at.command(
                f'{HEX_SEND}={self.connect_id},"{chunk.hex().upper()}"',
                log_as=f"{HEX_SEND}={self.connect_id},<{len(chunk)} bytes as hex>",
                check=False,
            )
            hex_refused = response.result.kind in (ResultKind.ERROR, ResultKind.CME_ERROR)
            gone = self._peer_closed or self._lost is not None or self._error is not None
            if not hex_refused or gone:
                return response
            # ERROR on a socket nothing has said is gone: firmware without AT+QISENDEX, or a
            # socket that is broken after all. AT+QISEND tells which; if it works, the module
            # lacks the hex form and gets AT+QISEND only from now on.
        response = await self._at.command_with_data(
            f"{self._kind.send}={self.connect_id},{len(chunk)}", chunk
        )
        if hex_refused and response.result.success and self._sockets.hex_send_max:
            log.warning(
                "the module answered %s with ERROR but took the same bytes with %s: "
                "sending with %s only from now on",
                HEX_SEND,
                self._kind.send,
                self._kind.send,
            )
            self._sockets.hex_send_max = 0
        return response

    def _broken(self, doing: str, exc: TransportError) -> StreamClosed:
        if isinstance(exc, AtTimeout | ModemNotResponding):
            return StreamBroken(
                f"socket {self.connect_id} to {self.where} broken while {doing}: {exc}"
            )
        return StreamBroken(f"socket {self.connect_id} to {self.where} failed while {doing}: {exc}")
