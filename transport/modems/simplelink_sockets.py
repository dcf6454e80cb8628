"""The SimpleLink module's sockets: its sixteen descriptors as the driver holds them, and the TCP
(or TLS, ``SEC``) streams on them ([guide] Tables 14-26, SPEC §2 and §5).

The module tells the host nothing when data arrives: there is no "data waiting" event for TCP
(at-protocol §8.3). Whoever wants data asks: AT+Select (blocked: OK at once, ``+select:`` when
a socket is readable or the timeout ends) over every open socket, then AT+Recv (blocked) on the
readable ones only, since AT+Recv on an empty socket blocks the whole module until data comes.
One receive pump per module does this for all streams, so an idle line costs one Select per
timeout, not one per socket:

* after traffic the timeout is ``select_min`` (20 ms), doubling on each empty Select up to
  ``select_max`` (250 ms): a blocked Select holds the line, so outgoing data waits at most
  that long for it;
* while another command waits for the line (``AtChannel.waiting``: a send, a bulk HTTP read)
  the pump uses a zero timeout and pauses longer than the engine's ``BULK_GRACE`` before its
  next Select, so the waiting command (and a firmware download) gets the line.

A descriptor belongs to the module from its AT+Socket to its AT+Close (or an NWP stop or chip
reset, after which every descriptor is gone and an old one answers -9):

* AT+Socket runs to its answer even when the caller is cancelled, so the descriptor is known
  and closed (:func:`~transport.shielding.shielded`);
* every failure after it (options, connect, cancellation) closes it before the error leaves;
* every socket gets RCVTIMEO (``recv_timeout``): should an AT+Recv ever meet an empty socket,
  the module answers -11 (nothing yet) instead of blocking for good;
* an AT+Close that got no answer leaves the descriptor UNCLOSED, closed again before any new
  AT+Socket, so a CSMS never sees the old connection beside the new one;
* the pump never names a descriptor in a Select once its stream began closing: an unknown
  descriptor (-9) means the chip reset, and all streams end with ModuleRebooted.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import ipaddress
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from transport.at import BULK, BULK_GRACE, AtChannel, Response
from transport.errors import (
    AtTimeout,
    ModemNotResponding,
    ModuleRebooted,
    NetworkLost,
    PeerClosed,
    SerialPortError,
    ServerRefused,
    SocketOpenError,
    SocketsExhausted,
    StreamBroken,
    StreamClosed,
    TlsHandshakeFailed,
    TlsRefusal,
    TlsSetupFailed,
    TransportError,
)
from transport.modems.simplelink_files import CLIENT_CERT_FILE, CLIENT_KEY_FILE, CSMS_CA_FILE
from transport.modems.simplelink_protocol import (
    DNS_FAILED,
    EAGAIN,
    EBADF,
    ECONNREFUSED,
    ECONNRESET,
    ENETUNREACH,
    ENOTCONN,
    ENSOCK,
    ESEC_ASN_NO_SIGNER,
    ESEC_BADCAFILE,
    ESEC_BADCERTFILE,
    ESEC_BADPRIVATEFILE,
    ESEC_DATE_ERROR,
    ESEC_DOMAIN_NAME_MISMATCH,
    ESEC_HANDSHAKE_FAILURE,
    ESEC_HANDSHAKE_TIMEOUT,
    ESEC_NOCAFILE,
    ESEC_UNKNOWN_ROOT_CA,
    ETIMEDOUT,
    MAX_RECV,
    MAX_SEND,
    NOT_STARTED,
    SEC_SOCKETS_EXHAUSTED,
    DataError,
    data_field,
    decode_data,
    describe_error,
    error_code,
    parse_error,
    quote,
    values,
)
from transport.modems.simplelink_settings import SimpleLinkSettings
from transport.shielding import shielded

log = logging.getLogger(__name__)

DESCRIPTORS = range(16)  # sd 0..15 (SPEC §5)
YIELD_PAUSE = 2 * BULK_GRACE  # the pump's pause while another command waits for the line
_SAFE_HOST = re.compile(r"[A-Za-z0-9._\-]{1,253}")
_SELECTED = re.compile(r"\d+")


class SocketState(enum.Enum):
    OPENING = "opening"  # AT+Socket answered; options and AT+Connect under way
    OPEN = "open"  # a stream uses the descriptor
    CLOSING = "closing"  # the stream is closing: the pump no longer selects it
    UNCLOSED = "unclosed"  # AT+Close got no answer: the module may still hold the connection


@dataclass(eq=False)
class _Slot:
    sd: int
    where: str
    secure: bool
    state: SocketState = SocketState.OPENING
    stream: SimpleLinkStream | None = None


def connect_error(where: str, host: str, code: int | None, result: str) -> TransportError:
    """The exception for a failed AT+Connect (or a TLS failure reported by it), in a sentence a
    technician can act on (SPEC §5 codes)."""
    said = f"{parse_error(result).described}" if code is not None else result
    if code == ECONNREFUSED:
        return ServerRefused(
            f"{where} refused the connection ({said}): the CSMS is down or does not listen "
            "on that port",
            code,
        )
    if code in (ETIMEDOUT, ENETUNREACH, ECONNRESET):
        return SocketOpenError(
            f"cannot connect to {where} ({said}): check the Wi-Fi's internet access, the "
            "address and any firewall on the way",
            code,
        )
    if code == ESEC_ASN_NO_SIGNER:
        return TlsHandshakeFailed(
            f"TLS with {where}: the CSMS certificate is not signed by the configured CA "
            f"({said}); check the CSMS CA file (on the module as {CSMS_CA_FILE})",
            code,
            TlsRefusal.CSMS_CERTIFICATE,
        )
    if code == ESEC_DOMAIN_NAME_MISMATCH:
        return TlsHandshakeFailed(
            f"TLS with {where}: the CSMS certificate does not name {host} ({said}); check the "
            "host name of the CSMS URL against the certificate's subjectAltName",
            code,
            TlsRefusal.CSMS_CERTIFICATE,
        )
    if code == ESEC_HANDSHAKE_FAILURE:
        return TlsHandshakeFailed(
            f"TLS with {where}: the CSMS refused the handshake ({said}); it may want a client "
            "certificate (security profile 3), refuse the charge point's "
            "(csms.client_certificate), or share no cipher suite with csms.cipher_suite",
            code,
        )
    if code == ESEC_HANDSHAKE_TIMEOUT:
        return TlsHandshakeFailed(
            f"TLS with {where}: the handshake did not finish ({said}); the CSMS accepted the "
            "connection but does not complete TLS on that port",
            code,
        )
    if code == ESEC_DATE_ERROR:
        return TlsHandshakeFailed(
            f"TLS with {where}: certificate date ({said}); a certificate in the chain is "
            "expired or not yet valid at the module's clock (set from the CSMS's time, or "
            "the controller's): check its validity dates and the controller's clock",
            code,
            TlsRefusal.CSMS_CERTIFICATE,
        )
    if code in (ESEC_NOCAFILE, ESEC_BADCAFILE):
        what = "is not on the module" if code == ESEC_NOCAFILE else "is not a certificate"
        return TlsSetupFailed(
            f"TLS with {where}: the CA file {CSMS_CA_FILE} {what} ({said}); check the CSMS CA "
            "file (PEM or DER)"
        )
    if code in (ESEC_BADCERTFILE, ESEC_BADPRIVATEFILE):
        name = CLIENT_CERT_FILE if code == ESEC_BADCERTFILE else CLIENT_KEY_FILE
        return TlsSetupFailed(
            f"TLS with {where}: the module cannot use {name} ({said}); check the charge point "
            "certificate and its key (PEM, the key unencrypted)"
        )
    if code == EBADF:
        return ModuleRebooted(f"connecting to {where}: {said}")
    return SocketOpenError(f"cannot connect to {where}: {said}", code)


def parse_select(text: str) -> list[int]:
    """The descriptors of ``+select:<sd>|<sd>...`` (SPEC §5; the guide shows them separated by
    spaces, [guide] Table 20: both are taken)."""
    _, _, rest = text.partition(":")
    return [int(sd) for sd in _SELECTED.findall(rest)]


def interactive() -> contextvars.Context:
    """A context for the stream's own tasks: never BULK, even when the stream was opened from
    a task that moves bulk data, since OCPP's reads and writes must go first."""
    context = contextvars.copy_context()
    context.run(BULK.set, False)
    return context


def _recv_data(fields: list[str]) -> bytes:
    """The bytes of ``+recv:<sd>,1,<length>,<base64>`` (SPEC §5)."""
    if len(fields) < 4:
        raise DataError(f"{len(fields)} fields where 4 were expected")
    return decode_data(fields[2], fields[3])


class SimpleLinkSockets:
    """The socket table of one module on one :class:`AtChannel`, and its receive pump.

    ``on_module_lost`` is called when a socket command shows the network processor has gone
    (a descriptor the module no longer knows: -9 after a chip reset; -2018: the NWP stopped):
    the modem fails every stream and restarts the NWP before the next open.
    """

    def __init__(
        self,
        channel: AtChannel,
        settings: SimpleLinkSettings,
        on_module_lost: Callable[[StreamClosed], None] | None = None,
    ) -> None:
        self._at = channel
        self._s = settings
        self._table: dict[int, _Slot] = {}
        self._on_module_lost = on_module_lost or self.lose_all
        self._pump: asyncio.Task[None] | None = None
        self._pump_wake = asyncio.Event()
        self.wlan_down: str | None = None  # why the network is gone, while it is
        # Whether an HTTP exchange holds one of the module's clients, and so a socket whose
        # descriptor the module does not tell (the modem sets it with its HTTP client).
        self.http_live: Callable[[], bool] = lambda: False
        self.selects = 0
        self.recvs = 0

    @property
    def channel(self) -> AtChannel:
        return self._at

    @property
    def settings(self) -> SimpleLinkSettings:
        return self._s

    def table(self) -> dict[int, SocketState]:
        """The descriptors the driver holds, and how (for logs, tests and ``modem info``)."""
        return {sd: slot.state for sd, slot in sorted(self._table.items())}

    def streams(self) -> list[SimpleLinkStream]:
        return [slot.stream for slot in self._table.values() if slot.stream is not None]

    # -- opening --

    async def resolve(self, host: str) -> str:
        """The IPv4 address of ``host``: itself when it is one, else the module's DNS
        (AT+NetAPPGetHostByName, blocked: [guide] Table 48, SPEC §5)."""
        with contextlib.suppress(ValueError):
            return str(ipaddress.IPv4Address(host))
        response = await self._at.command(
            f"AT+NetAPPGetHostByName={quote(host)},INET",
            blocked=True,
            timeout=self._s.dns_timeout,
            expect=("+netappgethostbyname:",),
            check=False,
        )
        if not response.result.success:
            code = error_code(response.result)
            said = parse_error(response.result.text).described
            self.check_module(code, f"resolving {host}")
            if code == DNS_FAILED:
                raise SocketOpenError(
                    f"the module's DNS could not resolve {host} ({said}): check the host name "
                    "and that the Wi-Fi network gives a working DNS server",
                    code,
                )
            raise SocketOpenError(f"cannot resolve {host}: {said}", code)
        fields = values(response.value("+netappgethostbyname:"))
        try:
            return str(ipaddress.IPv4Address(fields[-1]))
        except ValueError:
            raise SocketOpenError(
                f"the module's DNS answered {fields!r} for {host}, not an IPv4 address"
            ) from None

    async def open(
        self,
        host: str,
        port: int,
        *,
        secure: bool = False,
        options: Callable[[int], Sequence[str]] = lambda sd: (),
        dates_checked: bool = True,
    ) -> SimpleLinkStream:
        """A connected stream to ``host:port``; with ``secure`` a SEC socket, set up by the
        AT+SetSockOpt commands ``options(sd)`` before AT+Connect. ``dates_checked`` says the
        module clock is right: otherwise a certificate date warning (-461) is only logged."""
        if not _SAFE_HOST.fullmatch(host):
            raise ValueError(f"not a host name or IPv4 address: {host!r}")
        if not 0 < port < 65536:
            raise ValueError(f"not a TCP port: {port}")
        where = f"{host}:{port}"
        address = await self.resolve(host)
        await self._close_unclosed()
        slot = await self._create(where, secure)
        try:
            await self._set_options(slot, [self._receive_timeout(slot.sd), *options(slot.sd)])
            date_warning = await self._connect(slot, host, address, port, dates_checked)
        except BaseException:
            await shielded(self.give_back(slot))
            raise
        stream = SimpleLinkStream(self, slot)
        stream.date_warning = date_warning
        slot.state, slot.stream = SocketState.OPEN, stream
        stream.start()
        self._start_pump()
        log.info(
            "socket %d connected to %s%s (%s)",
            slot.sd,
            where,
            "" if address == host else f" at {address}",
            "TLS" if secure else "TCP",
        )
        return stream

    def _receive_timeout(self, sd: int) -> str:
        """RCVTIMEO on every socket, TCP and SEC: a stray AT+Recv on an empty socket ends with
        -11 (EAGAIN) instead of blocking the whole module for good (SPEC §5)."""
        seconds = int(self._s.recv_timeout)
        micros = round((self._s.recv_timeout - seconds) * 1_000_000)
        return f"AT+SetSockOpt={sd},SOCKET,RCVTIMEO,{seconds},{micros}"

    async def _set_options(self, slot: _Slot, commands: Sequence[str]) -> None:
        for command in commands:
            response = await self._at.command(command, check=False)
            if not response.result.success:
                code = error_code(response.result)
                self.check_module(code, f"setting up socket {slot.sd}")
                option = command.split(",")[2] if command.count(",") >= 2 else command
                said = parse_error(response.result.text).described
                text = f"the module refused socket option {option} for {slot.where}: {said}"
                raise TlsSetupFailed(text) if slot.secure else SocketOpenError(text, code)

    async def _create(self, where: str, secure: bool) -> _Slot:
        """AT+Socket, run to its answer whatever cancels the caller: its descriptor enters the
        table at once, and is closed if the caller has gone meanwhile."""
        command = f"AT+Socket=INET,STREAM,{'SEC' if secure else 'TCP'}"
        for attempt in (1, 2):
            creating = asyncio.ensure_future(
                self._at.command(command, expect=("+socket:",), check=False)
            )
            try:
                response = await shielded(creating)
            except asyncio.CancelledError:
                if creating.done() and not creating.cancelled() and creating.exception() is None:
                    self._reused(creating.result())
                    slot = self._claim(creating.result(), where, secure)
                    if slot is not None:
                        await shielded(self.give_back(slot))
                raise
            if response.result.success:
                reused = self._reused(response)
                slot = self._claim(response, where, secure)
                if slot is None:
                    raise StreamBroken(f"{command} answered {response.lines!r}: no descriptor")
                if reused is not None:
                    # Every descriptor we held is gone with the NWP's reset: close the new one
                    # and let the next open restart the NWP (as a -9 does).
                    await shielded(self.give_back(slot))
                    raise reused
                return slot
            code = error_code(response.result)
            self.check_module(code, f"opening a socket to {where}")
            exhausted = code in (ENSOCK, SEC_SOCKETS_EXHAUSTED)
            if exhausted and attempt == 1 and await self._close_strangers():
                continue
            if code in (ENSOCK, SEC_SOCKETS_EXHAUSTED):
                held = ", ".join(f"{sd} to {s.where}" for sd, s in self._table.items())
                raise SocketsExhausted(
                    f"the module has no {'TLS ' if secure else ''}socket free "
                    f"({describe_error(code)}), all held by this driver ({held}): something "
                    "keeps connections open without closing them"
                )
            raise SocketOpenError(
                f"the module refused to open a socket to {where}: "
                f"{parse_error(response.result.text).described}",
                code,
            )
        raise AssertionError("unreachable")

    def _reused(self, response: Response) -> ModuleRebooted | None:
        """When AT+Socket gave out a descriptor the table still holds, the module forgot
        ours (a chip reset nobody saw): the module is lost, every stream ends, and the error
        to raise. None when the descriptor is new to us."""
        found = response.values("+socket:")
        if not found or not found[0].isdigit() or int(found[0]) not in self._table:
            return None
        sd = int(found[0])
        old = self._table[sd]
        log.warning("the module gave out socket %d, which %s still held", sd, old.where)
        error = ModuleRebooted(
            f"the module gave out socket {sd} again, which the connection to {old.where} "
            "held: the chip has reset"
        )
        self._on_module_lost(error)
        return error

    def _claim(self, response: Response, where: str, secure: bool) -> _Slot | None:
        found = response.values("+socket:")
        if not found or not found[0].isdigit():
            return None
        sd = int(found[0])
        old = self._table.get(sd)
        if old is not None:  # a reset nobody saw (see _reused): forgotten with its stream
            self._forget(old, ModuleRebooted(f"socket {sd}: the module no longer holds it"))
        slot = _Slot(sd, where, secure)
        self._table[sd] = slot
        return slot

    async def _connect(
        self, slot: _Slot, host: str, address: str, port: int, dates_checked: bool
    ) -> bool:
        """AT+Connect; whether the module warned of the certificate's dates (-461, let through
        when ``dates_checked`` is False: the connection is up)."""
        response = await self._at.command(
            f"AT+Connect={slot.sd},INET,{port},{address}",
            blocked=True,
            # The module's own limit (its -110, or a TLS handshake timeout) comes first: an AT
            # timeout racing it would desynchronise the line for nothing.
            timeout=self._s.connect_timeout + self._s.command_timeout,
            expect=("+connect:",),
            check=False,
        )
        if response.result.success:
            return False
        code = error_code(response.result)
        said = parse_error(response.result.text).described
        if code == ESEC_UNKNOWN_ROOT_CA:
            # A warning on the real module: the connection is established (SPEC §5).
            log.warning("TLS with %s: %s; the connection is up", slot.where, said)
            return False
        if code == ESEC_DATE_ERROR and not dates_checked:
            log.warning("TLS with %s: %s; the connection is up", slot.where, said)
            return True
        self.check_module(code, f"connecting to {slot.where}")
        raise connect_error(slot.where, host, code, response.result.text)

    def check_module(self, code: int | None, doing: str) -> None:
        """Raise (and tell the modem) when ``code`` says the NWP is gone."""
        if code == EBADF:
            error: StreamClosed = ModuleRebooted(
                f"{doing}: the module no longer knows its sockets (-9): the chip has reset"
            )
        elif code == NOT_STARTED:
            error = ModuleRebooted(f"{doing}: the network processor is not running (-2018)")
        else:
            return
        self._on_module_lost(error)
        raise error

    # -- giving descriptors back --

    async def give_back(self, slot: _Slot) -> None:
        """AT+Close the slot's descriptor and take it out of the table. Nothing is sent for a
        descriptor that is no longer the slot's (the module restarted). Callers run this
        shielded from their own cancellation."""
        if self._table.get(slot.sd) is not slot:
            return
        if slot.state is not SocketState.UNCLOSED:
            slot.state = SocketState.CLOSING  # out of the pump's Select from now on
        try:
            response = await self._at.command(
                f"AT+Close={slot.sd}", expect=("+close:",), check=False
            )
        except TransportError as error:  # no answer, or the port is gone
            if self._table.get(slot.sd) is slot and not self._at.failed:
                slot.state, slot.stream = SocketState.UNCLOSED, None
                log.warning(
                    "socket %d to %s: AT+Close not confirmed (%s); it is closed again before "
                    "another socket opens",
                    slot.sd,
                    slot.where,
                    error,
                )
                return
        else:
            if not response.result.success:
                log.info(
                    "AT+Close=%d answered %s: the module no longer held it",
                    slot.sd,
                    response.result.text,
                )
                if error_code(response.result) == EBADF and slot.state is not SocketState.UNCLOSED:
                    # A descriptor we held is unknown: the chip reset, and every socket is gone.
                    self._on_module_lost(
                        ModuleRebooted(
                            f"closing socket {slot.sd}: the module no longer knows it (-9): "
                            "the chip has reset"
                        )
                    )
        if self._table.get(slot.sd) is slot:
            del self._table[slot.sd]
        self._pump_wake.set()  # the pump ends once no stream is left

    async def _close_unclosed(self) -> None:
        for slot in [s for s in self._table.values() if s.state is SocketState.UNCLOSED]:
            log.info("closing socket %d to %s before opening another", slot.sd, slot.where)
            await shielded(self.give_back(slot))
            if self._table.get(slot.sd) is slot:
                raise SocketOpenError(
                    f"socket {slot.sd} to {slot.where} could not be closed at the module; no "
                    "new connection is opened beside it"
                )

    async def _close_strangers(self) -> bool:
        """Close every descriptor the module may hold for no slot of ours (a daemon that died
        without closing them; the module has no command that lists its sockets). Whether any
        was closed."""
        if self.http_live():
            log.warning(
                "the module has no socket free, but a file transfer's HTTP client holds one "
                "whose descriptor is not known: no descriptor is closed"
            )
            return False
        closed = False
        for sd in DESCRIPTORS:
            if sd in self._table:
                continue
            response = await self._at.command(f"AT+Close={sd}", expect=("+close:",), check=False)
            if response.result.success:
                log.warning("closed socket %d, which no connection of this driver held", sd)
                closed = True
        return closed

    def _forget(self, slot: _Slot, error: StreamClosed) -> None:
        if self._table.get(slot.sd) is slot:
            del self._table[slot.sd]
        if slot.stream is not None:
            slot.stream.fail(error)

    # -- what the modem says --

    def lose_all(self, error: StreamClosed) -> None:
        """The NWP stopped or the chip reset: every descriptor is gone, with its stream."""
        for slot in list(self._table.values()):
            self._forget(slot, error)
        self._pump_wake.set()

    def network_lost(self, why: str) -> None:
        """Wi-Fi or the IP address is gone: every connection is dead (SPEC §4), though the
        module still holds the descriptors until AT+Close."""
        self.wlan_down = why
        for stream in self.streams():
            stream.fail(NetworkLost(f"socket {stream.sd} to {stream.where}: {why}"))
        self._pump_wake.set()

    def network_back(self) -> None:
        self.wlan_down = None

    # -- the receive pump --

    def _start_pump(self) -> None:
        self._pump_wake.set()
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(
                self._pump_loop(), name="simplelink receive pump", context=interactive()
            )

    def wake_pump(self) -> None:
        self._pump_wake.set()

    async def aclose(self) -> None:
        """Stop the receive pump and fail every open stream (the channel is about to close:
        nothing would ever fill or drain them again, and a reader would wait for good)."""
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        self.lose_all(StreamBroken(f"the link to the module was closed ({self._at.port_name})"))

    def _watched(self) -> list[SimpleLinkStream]:
        return [
            slot.stream
            for slot in self._table.values()
            if slot.state is SocketState.OPEN and slot.stream is not None and slot.stream.wants_data
        ]

    async def _pump_loop(self) -> None:
        try:
            await self._pump_steps()
        except Exception as error:  # a bug: end the streams loudly rather than hang them
            log.exception("the receive pump failed")
            for stream in self.streams():
                stream.fail(StreamBroken(f"socket {stream.sd}: the receive pump failed: {error}"))

    async def _pump_steps(self) -> None:
        timeout = self._s.select_min
        while True:
            if not self._watched():
                if not any(slot.stream is not None for slot in self._table.values()):
                    return  # no stream left: the next open starts a new pump
                self._pump_wake.clear()
                await self._pump_wake.wait()
                timeout = self._s.select_min
                continue
            wait = timeout
            if any(stream.sending for stream in self.streams()):
                # Our own sends wait: poll at once. The lock is first come, first served, so
                # sends and polls alternate, and what the peer answers is read as fast as it
                # comes (a module whose receive buffer fills while AT+Send blocks for room in
                # its send buffer would hold the line for good).
                wait = 0.0
            elif self._at.waiting:
                # Another command wants the line (a bulk HTTP read): hold it no longer than a
                # poll, and pause first, since a bulk command only gets the line once it has
                # been free of others for BULK_GRACE.
                await asyncio.sleep(YIELD_PAUSE)
                wait = 0.0
            try:
                readable = await self._select(wait)
            except SerialPortError:
                return  # the modem fails the streams (its port-lost listener)
            if readable is None:
                continue
            if readable:
                timeout = self._s.select_min
                for stream in readable:
                    await self._receive(stream)
            elif wait:
                timeout = min(timeout * 2, self._s.select_max)

    async def _select(self, wait: float) -> list[SimpleLinkStream] | None:
        """One AT+Select over the watched streams; the readable ones (None: nothing to act on,
        the streams were failed or are gone)."""
        # The set is taken right before the command is queued, with no await in between: a
        # stream closing after this point has its AT+Close queued after this Select.
        watched = {stream.sd: stream for stream in self._watched()}
        if not watched:
            return None
        sds = sorted(watched)
        seconds, micros = int(wait), round((wait - int(wait)) * 1_000_000)
        self.selects += 1
        try:
            response = await self._at.command(
                f"AT+Select={sds[-1] + 1},{'|'.join(map(str, sds))},{seconds},{micros}",
                blocked=True,
                timeout=wait + self._s.command_timeout,
                expect=("+select:",),
                check=False,
            )
        except (AtTimeout, ModemNotResponding) as error:
            for stream in watched.values():
                stream.fail(StreamBroken(f"socket {stream.sd} to {stream.where}: {error}"))
            return None
        if not response.result.success:
            code = error_code(response.result)
            with contextlib.suppress(StreamClosed):
                self.check_module(code, "AT+Select")
            if code not in (EBADF, NOT_STARTED):
                for stream in watched.values():
                    stream.fail(
                        StreamBroken(
                            f"socket {stream.sd} to {stream.where}: AT+Select failed: "
                            f"{parse_error(response.result.text).described}"
                        )
                    )
            return None
        found = response.values("+select:")
        ready = parse_select(":" + found[0]) if found else []
        return [watched[sd] for sd in ready if sd in watched]

    async def _receive(self, stream: SimpleLinkStream) -> None:
        """One AT+Recv on a socket Select found readable."""
        slot = self._table.get(stream.sd)
        if slot is None or slot.stream is not stream or slot.state is not SocketState.OPEN:
            return  # closed since the Select
        self.recvs += 1
        try:
            response = await self._at.command(
                f"AT+Recv={stream.sd},1,{MAX_RECV}",
                blocked=True,
                # Past the socket's RCVTIMEO, so the module's -11 wins over an AT timeout.
                timeout=self._s.recv_timeout
                + self._s.command_timeout
                + self._at.wire_time(2 * MAX_RECV),
                expect=("+recv:",),
                check=False,
            )
        except (AtTimeout, ModemNotResponding) as error:
            stream.fail(StreamBroken(f"socket {stream.sd} to {stream.where}: {error}"))
            return
        except SerialPortError:
            return
        if not response.result.success:
            code = error_code(response.result)
            if code == EAGAIN:
                log.debug("AT+Recv on socket %d: nothing came within RCVTIMEO (-11)", stream.sd)
                return  # nothing yet (SPEC §5: RCVTIMEO), not a failure
            with contextlib.suppress(StreamClosed):
                self.check_module(code, f"AT+Recv on socket {stream.sd}")
            stream.fail(stream.failure("receiving", response.result.text, code))
            return
        try:
            data = _recv_data(values(response.value("+recv:")))
        except DataError as error:
            stream.fail(
                StreamBroken(f"socket {stream.sd} to {stream.where}: unreadable +recv ({error})")
            )
            return
        if data:
            stream.deliver(data)
        else:
            stream.fail(PeerClosed(f"socket {stream.sd}: {stream.where} closed the connection"))


class SimpleLinkStream:
    """A TCP (or TLS) connection through a SimpleLink socket: a
    :class:`transport.stream.ByteStream`.

    The module's receive pump fills the stream; a task of the stream's own sends queued bytes in
    AT+Send commands of at most 1092 bytes (1456 base64 characters).
    """

    def __init__(self, sockets: SimpleLinkSockets, slot: _Slot) -> None:
        self._sockets = sockets
        self._slot = slot
        self._at = sockets.channel
        self._s = sockets.settings
        self.sd = slot.sd
        self.where = slot.where
        self._rx = bytearray()
        self._rx_available = asyncio.Event()
        self._tx = bytearray()
        self._tx_pending = asyncio.Event()
        self._tx_space = asyncio.Event()
        self._tx_space.set()
        self._tx_empty = asyncio.Event()
        self._tx_empty.set()
        self.date_warning = False  # the module warned of the certificate's dates (-461)
        self._end: StreamClosed | None = None  # reading ends once _rx is empty
        self._error: StreamClosed | None = None  # writing is no longer possible
        self._closing: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self.bytes_sent = 0
        self.bytes_received = 0

    def start(self) -> None:
        self._sender = asyncio.create_task(
            self._send_loop(), name=f"send {self.sd}", context=interactive()
        )

    # -- ByteStream --

    async def read(self, max_bytes: int = 65536) -> bytes:
        while not self._rx:
            if self._end is not None:
                raise self._end
            self._rx_available.clear()
            await self._rx_available.wait()
        was_full = len(self._rx) >= self._s.rx_high_water
        data = bytes(self._rx[:max_bytes])
        del self._rx[:max_bytes]
        if was_full and len(self._rx) < self._s.rx_high_water:
            self._sockets.wake_pump()
        return data

    async def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._closing is not None:
            raise StreamClosed(f"socket {self.sd} to {self.where} is closed")
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

    async def close(self) -> None:
        """Send what is queued (for at most ``close_flush_timeout``), stop sending, AT+Close
        the socket and give its descriptor back. The first call does this in a task of its
        own; every call, a concurrent one or one whose caller is cancelled, waits for it."""
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(), name=f"close {self.sd}")
        await shielded(self._closing)

    async def _close(self) -> None:
        try:
            if self._tx and self._error is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._s.close_flush_timeout):
                        await self._tx_empty.wait()
            if self._sender is not None:
                self._sender.cancel()
                await asyncio.gather(self._sender, return_exceptions=True)
        finally:
            await self._sockets.give_back(self._slot)
            self.fail(StreamClosed(f"socket {self.sd} to {self.where} was closed locally"))
            log.info(
                "socket %d to %s closed (%d bytes sent, %d received)",
                self.sd,
                self.where,
                self.bytes_sent,
                self.bytes_received,
            )

    # -- the pump's side --

    @property
    def sending(self) -> bool:
        """Bytes are queued or on their way to the module."""
        return bool(self._tx) and self._error is None

    @property
    def wants_data(self) -> bool:
        return self._end is None and self._closing is None and len(self._rx) < self._s.rx_high_water

    def deliver(self, data: bytes) -> None:
        self._rx += data
        self.bytes_received += len(data)
        self._rx_available.set()

    def fail(self, error: StreamClosed) -> None:
        """End the stream: what was received stays readable, then ``error`` is raised."""
        if self._end is None:
            self._end = error
        if self._error is None:
            self._error = error
        self._rx_available.set()
        self._tx_space.set()
        self._tx_empty.set()

    def failure(self, doing: str, result: str, code: int | None) -> StreamClosed:
        """What a failed AT+Send or AT+Recv means for this stream."""
        said = parse_error(result).described
        if code == ENOTCONN:
            why = self._sockets.wlan_down
            if why is not None:
                return NetworkLost(f"socket {self.sd} to {self.where}: {why}")
            return NetworkLost(
                f"socket {self.sd} to {self.where}: the connection died while {doing} ({said})"
            )
        if code in (EBADF, NOT_STARTED):
            return ModuleRebooted(f"socket {self.sd} to {self.where}: {said}")
        return StreamBroken(f"socket {self.sd} to {self.where}: {doing} failed: {said}")

    # -- sending --

    async def _send_loop(self) -> None:
        try:
            while True:
                await self._tx_pending.wait()
                chunk = bytes(self._tx[:MAX_SEND])
                await self._send(chunk)
                del self._tx[: len(chunk)]
                self.bytes_sent += len(chunk)
                if len(self._tx) <= self._s.tx_high_water:
                    self._tx_space.set()
                if not self._tx:
                    self._tx_pending.clear()
                    self._tx_empty.set()
        except StreamClosed as error:
            self.fail(error)
        except TransportError as error:  # no answer, or the port is gone
            self.fail(
                StreamBroken(f"socket {self.sd} to {self.where} failed while sending: {error}")
            )
        except Exception as error:  # a bug: end the stream loudly, or the pump spins on it
            log.exception("socket %d to %s: the sender failed", self.sd, self.where)
            self.fail(StreamBroken(f"socket {self.sd} to {self.where}: the sender failed: {error}"))

    async def _send(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        head = f"AT+Send={self.sd},"
        line = head + data_field(chunk)
        # The OK is held while the module's send buffer is full (sl_Send blocks, SPEC §5), at
        # most send_timeout before the module's -110: the AT timeout comes a margin after it.
        response = await self._at.command(
            line,
            timeout=self._s.send_timeout + self._s.command_timeout + self._at.wire_time(len(line)),
            log_as=f"{head}1,<{len(chunk)} bytes>",
            check=False,
        )
        if response.result.success:
            return
        code = error_code(response.result)
        with contextlib.suppress(StreamClosed):
            self._sockets.check_module(code, f"AT+Send on socket {self.sd}")
        if self._error is not None:
            raise self._error
        raise self.failure("sending", response.result.text, code)
