"""The simulator's I/O: a pseudo-terminal for the UART, real TCP connections for the sockets.

:class:`SimulatorShell` owns one simulated module (any :class:`SimulatedModule`: the Quectel
:class:`~transport.simulator.quectel.QuectelModule` by default, or the TI
:class:`~transport.simulator.simplelink.SimpleLinkModule`) and moves bytes: host ⇄ pty master ⇄
module ⇄ asyncio TCP connections ⇄ real servers. A TLS socket's connection carries TLS run here
(:class:`~transport.simulator.tls.TlsStream`), so the host's plaintext never crosses the
network, as in a module that terminates TLS (at-protocol.md §3, SPEC §5). It paces the pty at
a UART baud rate in both directions (10 bits a byte: start, 8 data, stop), delays network
traffic by a fixed latency, and exposes the faults a test injects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pty
import socket
import time
import tty
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, cast

from transport.fd_ready import wait_readable, wait_writable
from transport.simulator.http_exchange import HttpFailure, exchange
from transport.simulator.network_actions import CloseTcp, OpenSsl, OpenTcp, Resolve, SendTcp
from transport.simulator.open_failure import FailureKind, OpenFailure
from transport.simulator.quectel import QuectelModule
from transport.simulator.quectel_http import HttpBody, HttpRequest
from transport.simulator.simplelink import SimpleLinkModule
from transport.simulator.tls import TlsFailure, TlsStream

ModuleAction = OpenTcp | OpenSsl | SendTcp | CloseTcp | Resolve | HttpRequest | HttpBody


class SimulatedModule(Protocol):
    """What the shell asks of a module: a pure command interpreter fed with the host's bytes,
    the clock and the network's events, giving output units and network actions back."""

    log: list[str]  # the commands it received, in order
    muted: bool  # a hung module: hears nothing, says nothing
    response_delay: float  # every answer this much late, the module busy meanwhile
    send_result_delay: float  # the next send's result this much late (once)
    refused_sends: set[int]  # sockets whose data the radio no longer takes

    @property
    def booted(self) -> bool: ...
    def power_on(self, now: float) -> None: ...
    def reboot(self, now: float) -> None: ...
    def receive(self, data: bytes, now: float) -> None: ...
    def tick(self, now: float) -> None: ...
    def next_deadline(self) -> float | None: ...
    def take_output(self) -> list[bytes]: ...
    def take_actions(self) -> Sequence[ModuleAction]: ...
    def tcp_opened(self, socket_id: int, local_port: int) -> None: ...
    def connect_failed(self, socket_id: int, failure: OpenFailure) -> str: ...
    def tcp_received(self, socket_id: int, data: bytes) -> None: ...
    def receive_room(self, socket_id: int) -> int: ...
    def tcp_sent(self, socket_id: int, count: int) -> None: ...
    def tcp_closed(self, socket_id: int, *, close_notify: bool = False) -> None: ...
    def drop_connection(self, socket_id: int) -> None: ...
    def set_coverage(self, covered: bool, now: float) -> None: ...
    def network_deactivates_pdp(self, context_id: int) -> None: ...


if TYPE_CHECKING:
    # A shell whose module is not named is a Quectel one, as it always was (PEP 696 default).
    from typing_extensions import TypeVar

    M = TypeVar("M", bound=SimulatedModule, default=QuectelModule)
else:
    from typing import TypeVar

    M = TypeVar("M")

log = logging.getLogger(__name__)

PIECE_TIME = 0.01  # line time moved per pacing step on a throttled UART (115 bytes at 115200)
MAX_CREDIT = 0.05  # how far back a busy line may be caught up after the loop overslept


class _Pacer:
    """Holds a direction of the UART to ``baud`` (10 bits per byte)."""

    def __init__(self, baud: int | None) -> None:
        self.byte_time = 10.0 / baud if baud else 0.0
        self.piece = max(1, round(PIECE_TIME / self.byte_time)) if baud else 65536
        self._free_at = 0.0

    async def pace(self, count: int, *, waiting: bool) -> None:
        """Sleep until ``count`` bytes have crossed the line.

        ``waiting`` says the bytes were already queued when the line became free: a UART with
        a full FIFO sends them back to back, so they start where the last byte ended even if
        the event loop overslept (up to ``MAX_CREDIT``), instead of losing that time.
        """
        if not self.byte_time:
            return
        now = asyncio.get_running_loop().time()
        start = max(self._free_at, now - MAX_CREDIT) if waiting else max(now, self._free_at)
        self._free_at = start + count * self.byte_time
        delay = self._free_at - now
        if delay > 0:
            await asyncio.sleep(delay)


class _Stream(Protocol):
    """What a socket's connection is to the shell: TCP as it is, or TLS over it."""

    async def read(self, size: int) -> bytes: ...
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class _PlainStream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, size: int) -> bytes:
        return await self._reader.read(size)

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        self._writer.close()

    def abort(self) -> None:
        self._writer.transport.abort()


@dataclass
class _Connection:
    socket_id: int
    stream: _Stream
    outgoing: deque[tuple[float, bytes]] = field(default_factory=deque)
    wake_sender: asyncio.Event = field(default_factory=asyncio.Event)
    wake_reader: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    in_flight: int = 0  # received from the network, not yet handed to the module


@dataclass
class Transcript:
    """What crossed the UART, in order: ("host", bytes) written by the host, ("module", bytes)."""

    entries: list[tuple[str, bytes]] = field(default_factory=list)

    def add(self, direction: str, data: bytes) -> None:
        if self.entries and self.entries[-1][0] == direction:
            self.entries[-1] = (direction, self.entries[-1][1] + data)
        else:
            self.entries.append((direction, data))

    def bytes(self, direction: str) -> bytes:
        return b"".join(data for d, data in self.entries if d == direction)


class SimulatorShell(Generic[M]):
    """Run a simulated module on a pty. Use as an async context manager; :attr:`path` is the
    device the host opens. ``module`` is a Quectel module unless another is given."""

    def __init__(
        self,
        module: M | None = None,
        *,
        baud: int | None = None,
        latency: float = 0.0,
        uplink_rate: float | None = None,
        hosts: dict[str, str] | None = None,
        dns_failures: set[str] | None = None,
        connect_timeout: float = 10.0,
        tls_time_scale: float = 1.0,
        link: str | None = None,
        record: bool = False,
    ) -> None:
        self.module: M = module if module is not None else cast(M, QuectelModule())
        self.latency = latency
        # Multiplies the module's "negotiatetime" (10-300 s, §3.1): a test of a server that
        # never finishes the handshake need not wait 10 s.
        self.tls_time_scale = tls_time_scale
        self.uplink_rate = (
            uplink_rate  # bytes/s leaving the module's send buffer; None: as fast as TCP takes them
        )
        self.hosts = dict(hosts or {})  # names resolved by the simulated network's DNS
        self.dns_failures = set(dns_failures or ())  # names its DNS cannot resolve
        self.connect_timeout = connect_timeout
        self.link = link
        self.transcript: Transcript | None = Transcript() if record else None
        self.bytes_from_host = 0
        self.bytes_to_host = 0
        self._rx_pacer = _Pacer(baud)
        self._tx_pacer = _Pacer(baud)
        self._master = -1
        self._slave = -1
        self.path = ""
        self._out: deque[bytes] = deque()
        self._out_ready = asyncio.Event()
        self._timer_wake = asyncio.Event()
        self._booted = asyncio.Event()
        self._activity = asyncio.Event()  # set whenever the module has done something
        self._tasks: list[asyncio.Task[None]] = []
        self._connections: dict[int, _Connection] = {}
        self._blackholed: set[int] = set()
        self._opening: dict[int, asyncio.Task[None]] = {}
        # Requests connected to their server, waiting for the bytes the host sends after CONNECT.
        self._http_bodies: dict[int, asyncio.Future[bytes | None]] = {}

    # -- lifecycle --

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> str:
        self._master, self._slave = pty.openpty()
        # Raw mode at once: a pty echoes and translates CR by default, and the module's own
        # output would come straight back to it as input.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)
            os.symlink(self.path, self.link)
        if isinstance(self.module, QuectelModule):
            # The simulated network's time is true UTC (NITZ, AT+QLTS); the module's clock
            # stays its own until NITZ or AT+CCLK sets it. Wi-Fi has no network time.
            self.module.network_epoch = time.time() - self._now()
        self.module.power_on(self._now())
        self._tasks = [
            self._spawn(self._uart_receive(), "sim uart rx"),
            self._spawn(self._uart_transmit(), "sim uart tx"),
            self._spawn(self._timers(), "sim timers"),
        ]
        self._service()
        return self.path

    async def stop(self) -> None:
        for task in self._tasks + list(self._opening.values()):
            task.cancel()
        for conn in list(self._connections.values()):
            self._drop(conn, abort=True)
        await asyncio.gather(*self._tasks, *self._opening.values(), return_exceptions=True)
        self._tasks = []
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1

    @staticmethod
    def _spawn(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(_report_crash)
        return task

    async def wait_for_command(self, command: str) -> None:
        """Until the module has received ``command`` (as it appears in ``module.log``)."""
        while command not in self.module.log:
            self._activity.clear()
            await self._activity.wait()

    async def wait_until_booted(self) -> None:
        """Until the module has said RDY and takes commands."""
        await self._booted.wait()

    # -- faults --

    def drop_connection(self, socket_id: int) -> None:
        """The network loses the TCP connection: the module says "closed" (Quectel); the server
        has closed, reads give the rest and then 0 bytes (SimpleLink, SPEC §8)."""
        self.module.drop_connection(socket_id)
        self._service()

    def deactivate_pdp(self, context_id: int = 1) -> None:
        """The network tears down the PDP context: "pdpdeact", all its sockets dead (Quectel);
        the IP address is lost and comes back by DHCP later (SimpleLink, SPEC §8)."""
        if isinstance(self.module, SimpleLinkModule):
            self.module.lose_ip(self._now())  # its DHCP renewal is timed from now
        else:
            self.module.network_deactivates_pdp(context_id)
        self._service()

    def set_coverage(self, covered: bool) -> None:
        """Into a coverage hole (registration lost, PDP deactivated) or out of it (Quectel);
        the Wi-Fi access point out of range or back (SimpleLink, SPEC §8)."""
        self.module.set_coverage(covered, self._now())
        self._service()

    def reboot(self) -> None:
        """The module resets by itself (brown-out, watchdog) and comes back with RDY
        (Quectel); the chip resets and the NWP starts again (SimpleLink, SPEC §3)."""
        self.module.reboot(self._now())
        self._service()

    def fatal_error(self, event: str = "device_abort,1,0") -> None:
        """The SimpleLink NWP dies: ``+eventfatalerror:<event>``, and every command but
        AT+Test/AT+Stop/AT+Start fails until the host restarts it (SPEC §3, §8). A Quectel
        module has no network processor to lose apart from itself: use :meth:`reboot` or
        :meth:`set_muted` for its faults."""
        self._simplelink("fatal_error()").fatal_error(self._now(), event)
        self._service()

    def refuse_sends(self, socket_id: int) -> None:
        """The radio takes nothing more for this socket: every AT+QISEND gets SEND FAIL until
        the socket is closed (Quectel, §9.4); the send buffer never drains, so AT+Send holds
        its OK once it is full (SimpleLink, SPEC §5)."""
        self.module.refused_sends.add(socket_id)

    def delay_next_send_result(self, seconds: float) -> None:
        """The next AT+QISEND's SEND OK (or SEND FAIL), or AT+Send's OK, comes ``seconds``
        late, the module busy meanwhile: longer than the host's command timeout, it is an AT
        timeout mid-send."""
        self.module.send_result_delay = seconds

    def blackhole(self, socket_id: int) -> None:
        """The radio link goes silent for this socket: nothing arrives, nothing leaves, and
        neither end is told (no FIN, no RST): a half-open connection."""
        self._blackholed.add(socket_id)

    def inject_garbage(self, data: bytes) -> None:
        """Put ``data`` on the UART towards the host, between two responses."""
        self._out.append(data)
        self._out_ready.set()

    def set_muted(self, muted: bool) -> None:
        """A hung module: it hears nothing and says nothing."""
        self.module.muted = muted

    def set_response_delay(self, seconds: float) -> None:
        self.module.response_delay = seconds

    # -- the UART --

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _uart_receive(self) -> None:
        waiting = False
        while True:
            try:
                data = os.read(self._master, self._rx_pacer.piece)
            except BlockingIOError:
                await wait_readable(self._master)
                waiting = False
                continue
            except OSError:
                await asyncio.sleep(0.05)  # no host has the pty open: nothing to read yet
                continue
            await self._rx_pacer.pace(len(data), waiting=waiting)
            waiting = True  # if more is there at once, it was queued behind these bytes
            self.bytes_from_host += len(data)
            if self.transcript is not None:
                self.transcript.add("host", data)
            self.module.receive(data, self._now())
            self._service()

    async def _uart_transmit(self) -> None:
        waiting = False
        while True:
            if not self._out:
                waiting = False
                while not self._out:
                    self._out_ready.clear()
                    await self._out_ready.wait()
            unit = self._out.popleft()
            if self.transcript is not None:
                self.transcript.add("module", unit)
            step = self._tx_pacer.piece
            for i in range(0, len(unit), step):
                piece = unit[i : i + step]
                await self._tx_pacer.pace(len(piece), waiting=waiting)
                waiting = True
                view = memoryview(piece)
                while view:
                    try:
                        written = os.write(self._master, view)
                    except BlockingIOError:
                        await wait_writable(self._master)
                        continue
                    view = view[written:]
                self.bytes_to_host += len(piece)

    async def _timers(self) -> None:
        while True:
            deadline = self.module.next_deadline()
            self._timer_wake.clear()
            if deadline is None:
                await self._timer_wake.wait()
                continue
            delay = deadline - self._now()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._timer_wake.wait()
                continue
            self.module.tick(self._now())
            self._service()

    def _service(self) -> None:
        """Carry out what the module asked for and queue what it said."""
        for action in self.module.take_actions():
            if isinstance(action, OpenTcp | OpenSsl):
                task = self._spawn(self._open(action), f"sim open {action.socket_id}")
                self._opening[action.socket_id] = task
            elif isinstance(action, SendTcp):
                conn = self._connections.get(action.socket_id)
                if conn is not None:
                    conn.outgoing.append((self._now() + self.latency, action.data))
                    conn.wake_sender.set()
            elif isinstance(action, HttpRequest):
                quectel = self._quectel("an HTTP request action")
                self._spawn(self._http(quectel, action), f"sim http {action.request_id}")
            elif isinstance(action, HttpBody):
                body = self._http_bodies.pop(action.request_id, None)
                if body is not None and not body.done():
                    body.set_result(action.raw)
            elif isinstance(action, Resolve):
                simplelink = self._simplelink("a name lookup action")
                self._spawn(self._resolve(simplelink, action), f"sim dns {action.request_id}")
            elif isinstance(action, CloseTcp):
                opening = self._opening.pop(action.socket_id, None)
                if opening is not None:
                    opening.cancel()
                conn = self._connections.get(action.socket_id)
                if conn is not None:
                    self._drop(conn, abort=action.abort)
        self._activity.set()
        if self.module.booted:
            self._booted.set()
        else:
            self._booted.clear()
        units = self.module.take_output()
        if units:
            self._out.extend(units)
            self._out_ready.set()
        for conn in self._connections.values():
            if self.module.receive_room(conn.socket_id) > conn.in_flight:
                conn.wake_reader.set()
        self._timer_wake.set()

    # -- the network --

    async def _open(self, action: OpenTcp | OpenSsl) -> None:
        host = self.hosts.get(action.host, action.host)
        try:
            self._resolve_check(action.host)
            if self.latency:
                await asyncio.sleep(2 * self.latency)  # SYN, SYN-ACK
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(host, action.port)
        except socket.gaierror as error:
            self._open_failed(action, OpenFailure(FailureKind.DNS, f"DNS: {error}"))
        except (OSError, TimeoutError) as error:
            if isinstance(error, TimeoutError):
                kind = FailureKind.TIMEOUT
            elif isinstance(error, ConnectionRefusedError):
                kind = FailureKind.REFUSED
            else:
                kind = FailureKind.UNREACHABLE
            self._open_failed(action, OpenFailure(kind, f"TCP connect failed: {error!r}"))
        else:
            local_port: int = writer.get_extra_info("sockname")[1]
            stream: _Stream | None = _PlainStream(reader, writer)
            warning: OpenFailure | None = None
            if isinstance(action, OpenSsl):
                try:
                    opened = await self._handshake(action, reader, writer)
                except BaseException:
                    writer.transport.abort()  # cancelled (AT+QSSLCLOSE, reboot) mid-handshake
                    raise
                stream, warning = opened if opened is not None else (None, None)
            if stream is not None:
                conn = _Connection(action.socket_id, stream)
                self._connections[action.socket_id] = conn
                conn.tasks = [
                    self._spawn(self._network_receive(conn), f"sim net rx {action.socket_id}"),
                    self._spawn(self._network_send(conn), f"sim net tx {action.socket_id}"),
                ]
                if warning is None:
                    self.module.tcp_opened(action.socket_id, local_port)
                else:
                    log.info(
                        "simulated connection of socket %d to %s:%d made with a warning: %s",
                        action.socket_id,
                        action.host,
                        action.port,
                        warning.detail,
                    )
                    self._simplelink("a TLS warning").tcp_opened(
                        action.socket_id, local_port, warning
                    )
        finally:
            self._opening.pop(action.socket_id, None)
        self._service()

    async def _handshake(
        self, action: OpenSsl, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[TlsStream, OpenFailure | None] | None:
        """TLS as the settings say (at-protocol.md §3.1, SPEC §5): the stream and, when the
        settings take a date failure as a warning (SimpleLink's -461), that warning; None when
        it failed, which the module reports by its own code (566, or SPEC §5's)."""
        deadline = self._now() + action.tls.negotiate_time * self.tls_time_scale
        warning: OpenFailure | None = None
        try:
            stream = TlsStream(reader, writer, action.tls)
            async with asyncio.timeout_at(deadline):
                try:
                    await stream.handshake()
                except TlsFailure as failure:
                    if failure.kind is not FailureKind.TLS_DATE or not action.tls.date_is_warning:
                        raise
                    warning = OpenFailure(failure.kind, f"TLS: {failure}")
            if stream.verdict_pending:
                await self._verdict(action, stream, deadline)
        except TlsFailure as failure:
            kind, why = failure.kind, str(failure)
        except TimeoutError:
            kind = FailureKind.TLS_TIMEOUT
            why = f'no TLS handshake within "negotiatetime" {action.tls.negotiate_time:g} s'
        else:
            return stream, warning
        writer.transport.abort()
        self._open_failed(action, OpenFailure(kind, f"TLS: {why}"))
        return None

    async def _verdict(self, action: OpenSsl, stream: TlsStream, deadline: float) -> None:
        try:
            async with asyncio.timeout_at(deadline):
                await stream.await_verdict()
        except TimeoutError:
            # The server asked for a certificate and has said nothing since: it did not
            # refuse, and the client's handshake is over.
            log.info(
                "simulated AT+QSSLOPEN %d: no word from %s after the TLS 1.3 handshake; taken "
                "as accepted",
                action.socket_id,
                action.host,
            )

    def _open_failed(self, action: OpenTcp | OpenSsl, failure: OpenFailure) -> None:
        said = self.module.connect_failed(action.socket_id, failure)
        log.info(
            "simulated %s connection of socket %d to %s:%d failed (%s): %s",
            "TLS" if isinstance(action, OpenSsl) else "TCP",
            action.socket_id,
            action.host,
            action.port,
            said,
            failure.detail,
        )

    def _quectel(self, what: str) -> QuectelModule:
        if not isinstance(self.module, QuectelModule):
            raise TypeError(f"{what} is for a Quectel module, not {type(self.module).__name__}")
        return self.module

    def _simplelink(self, what: str) -> SimpleLinkModule:
        if not isinstance(self.module, SimpleLinkModule):
            raise TypeError(f"{what} is for a SimpleLink module, not {type(self.module).__name__}")
        return self.module

    async def _resolve(self, module: SimpleLinkModule, request: Resolve) -> None:
        """The simulated network's DNS: ``hosts``, ``dns_failures``, then the real resolver."""
        try:
            self._resolve_check(request.name)
            name = self.hosts.get(request.name, request.name)
            if self.latency:
                await asyncio.sleep(2 * self.latency)  # query, answer
            async with asyncio.timeout(self.connect_timeout):
                found = await asyncio.get_running_loop().getaddrinfo(
                    name, None, family=socket.AF_INET, type=socket.SOCK_STREAM
                )
            address = str(found[0][4][0])
        except (OSError, TimeoutError) as error:
            log.info("simulated DNS lookup of %s failed: %r", request.name, error)
            module.name_resolved(request.request_id, None)
        else:
            module.name_resolved(request.request_id, address)
        self._service()

    async def _http(self, module: QuectelModule, request: HttpRequest) -> None:
        body: asyncio.Future[bytes | None] | None = None
        if request.raw is None:
            body = asyncio.get_running_loop().create_future()
            self._http_bodies[request.request_id] = body

        def connected() -> None:
            module.http_connected(request.request_id, self._now())
            self._service()

        try:
            result = await exchange(
                request,
                hosts=self.hosts,
                dns_failures=self.dns_failures,
                latency=self.latency,
                connect_timeout=self.connect_timeout,
                connected=connected,
                body=body,
            )
        except HttpFailure as failure:
            log.info(
                "simulated HTTP request to %s failed (%d): %s", request.url, failure.code, failure
            )
            module.http_failed(request.request_id, failure.code)
        else:
            module.http_response(
                request.request_id,
                result.status,
                result.header,
                result.body,
                result.content_length,
            )
        self._http_bodies.pop(request.request_id, None)
        self._service()

    def _resolve_check(self, name: str) -> None:
        if name in self.dns_failures:
            raise socket.gaierror(socket.EAI_NONAME, f"simulated DNS failure for {name}")

    async def _network_receive(self, conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                room = self.module.receive_room(conn.socket_id) - conn.in_flight
                if room <= 0:
                    # The module's buffer is full: stop reading and let TCP flow control
                    # push back on the server.
                    conn.wake_reader.clear()
                    await conn.wake_reader.wait()
                    continue
                data = await conn.stream.read(min(room, 65536))
                if not data:
                    break
                conn.in_flight += len(data)
                loop.call_later(self.latency, self._deliver, conn, data)
        except (ConnectionError, OSError):
            pass
        loop.call_later(self.latency, self._peer_closed, conn)

    def _deliver(self, conn: _Connection, data: bytes) -> None:
        conn.in_flight -= len(data)
        if conn.socket_id in self._blackholed:
            return
        if self._connections.get(conn.socket_id) is conn:
            self.module.tcp_received(conn.socket_id, data)
            self._service()

    def _peer_closed(self, conn: _Connection) -> None:
        if conn.socket_id in self._blackholed:
            return  # on a dead radio link the module never hears of it
        if self._connections.get(conn.socket_id) is conn:
            self._connections.pop(conn.socket_id)
            close_notify = isinstance(conn.stream, TlsStream) and conn.stream.close_notify_received
            self.module.tcp_closed(conn.socket_id, close_notify=close_notify)
            self._drop(conn, abort=False)
            self._service()

    async def _network_send(self, conn: _Connection) -> None:
        pacer = _Pacer(int(self.uplink_rate * 10)) if self.uplink_rate else None
        try:
            while True:
                waiting = bool(conn.outgoing)
                while not conn.outgoing:
                    conn.wake_sender.clear()
                    await conn.wake_sender.wait()
                due, data = conn.outgoing[0]
                delay = due - self._now()
                if delay > 0:
                    await asyncio.sleep(delay)
                conn.outgoing.popleft()
                if conn.socket_id in self._blackholed:
                    continue  # lost on the air: never acknowledged, so it stays "unacked"
                if pacer is not None:
                    await pacer.pace(len(data), waiting=waiting)
                conn.stream.write(data)
                await conn.stream.drain()
                self.module.tcp_sent(conn.socket_id, len(data))
        except (ConnectionError, OSError):
            pass

    def _drop(self, conn: _Connection, *, abort: bool) -> None:
        self._blackholed.discard(conn.socket_id)
        if self._connections.get(conn.socket_id) is conn:
            self._connections.pop(conn.socket_id)
        for task in conn.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        if abort:
            conn.stream.abort()
        else:
            conn.stream.close()


def _report_crash(task: asyncio.Task[None]) -> None:
    """A simulator task must only end by cancellation; say loudly if one crashed."""
    if not task.cancelled() and task.exception() is not None:
        log.error("simulator task %r crashed", task.get_name(), exc_info=task.exception())
