"""Driver for Quectel modules on the QI* TCP/IP AT command set (EC2x, EG9x, BG9x, EC200U).

References are the Quectel manuals as distilled in ``docs/at-protocol.md`` (cited as §n):
bring-up order and time limits from the TCP/IP manual's chapter 1 flow chart (§1.3, §7),
sockets in buffer access mode (§2.4-§2.8), URCs (§2.13), error codes (§2.12), and the field
quirks of §9.

Sockets use buffer access mode: the module keeps received bytes and says ``+QIURC: "recv",<id>``
once; the host then reads with ``AT+QIRD`` until ``+QIRD: 0``, because no further "recv" URC
comes until the buffer has been drained (§2.8, §9.2). Writes go as ``AT+QISEND=<id>,<len>`` with
at most 1460 bytes, the fixed-length form being the only one that can carry 0x1A/0x1B (§9.7).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from transport.at import AtChannel, AtParser, PayloadRule, Response, Urc
from transport.errors import (
    AtCommandFailed,
    AtError,
    AtTimeout,
    ModemNotResponding,
    ModuleRebooted,
    NetworkLost,
    PdpActivationError,
    PeerClosed,
    RegistrationError,
    SendStalled,
    SerialPortError,
    SimError,
    SocketOpenError,
    StreamBroken,
    StreamClosed,
    TransportError,
)
from transport.link import RecoveryStep
from transport.modem import (
    LinkInfo,
    ModemIdentity,
    Registration,
    RegistrationStatus,
    SignalQuality,
)
from transport.modems.quectel_http import HTTP_URCS, HttpSettings, QuectelHttp
from transport.serial_port import SerialPort

log = logging.getLogger(__name__)

MAX_SEND = 1460  # AT+QISEND data length limit (§2.7)
MAX_READ = 1500  # AT+QIRD read length limit (§2.8)
CONNECT_IDS = range(12)  # <connectID> 0-11 (§2.4)

# Status URCs the driver only logs: boot progress (§7), SIM, registration.
STATUS_URCS = ("APP RDY", "+CPIN:", "+CFUN:", "+QUSIM:", "+QIND:", "+CREG:", "+CGREG:", "+CEREG:")
URC_PREFIXES = ("+QIURC:", "+QIOPEN:", "RDY", "POWERED DOWN", *STATUS_URCS, *HTTP_URCS)

PAYLOAD_RULES = (
    # +QIRD: <n> then exactly n bytes (TCP); +QIRD: <n>,"<ip>",<port> then n bytes (UDP service).
    # The query form "+QIRD: <total>,<read>,<unread>" announces nothing and matches neither.
    PayloadRule(re.compile(r'\+QIRD: (?P<length>\d+)(,"[^"]*",\d+)?')),
    # AT+QFREAD: CONNECT <n> then exactly n bytes of the file (§4.7).
    PayloadRule(re.compile(r"CONNECT (?P<length>\d+)")),
)

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
_SAFE_FIELD = re.compile(r"[\x20-\x7e]*")


def describe_socket_error(code: int) -> str:
    return f"{code} {SOCKET_ERRORS.get(code, 'unlisted error')}"


class PdpAuth(enum.IntEnum):
    """``<authentication>`` of AT+QICSGP (§2.1)."""

    NONE = 0
    PAP = 1
    CHAP = 2
    PAP_OR_CHAP = 3


@dataclass(frozen=True, slots=True)
class QuectelSettings:
    """How to bring the link up, and the time limits of the manual's flow chart (§1.3)."""

    apn: str = ""
    username: str = ""
    password: str = ""
    auth: PdpAuth = PdpAuth.NONE
    context_id: int = 1
    sim_pin: str | None = None
    command_timeout: float = 5.0
    sync_timeout: float = 30.0
    sim_timeout: float = 20.0
    registration_timeout: float = 90.0
    registration_poll: float = 2.0
    pdp_activate_timeout: float = 150.0
    pdp_deactivate_timeout: float = 40.0
    pdp_attempts: int = 3
    open_timeout: float = 150.0
    close_timeout: int = 10
    reboot_timeout: float = 60.0
    cfun_timeout: float = 15.0
    send_stall_timeout: float = 120.0
    send_retry_delay: float = 0.05  # first back-off after SEND FAIL, doubling up to 1 s
    idle_poll_interval: float = 10.0
    rx_high_water: int = 64 * 1024
    tx_high_water: int = 4 * MAX_SEND

    def __post_init__(self) -> None:
        # These go inside quoted AT command arguments: a quote or a control character would
        # end the argument early and let the rest be read as more command.
        for name in ("apn", "username", "password"):
            value = getattr(self, name)
            if '"' in value or not _SAFE_FIELD.fullmatch(value):
                raise ValueError(f"modem {name} may only hold printable ASCII without '\"'")
        if self.sim_pin is not None and not re.fullmatch(r"\d{4,8}", self.sim_pin):
            raise ValueError("modem sim_pin must be 4 to 8 digits")
        if not 1 <= self.context_id <= 16:
            raise ValueError("modem context_id must be 1..16")


class QuectelModem:
    """A Quectel module on an :class:`AtChannel` (the channel must be started)."""

    def __init__(self, channel: AtChannel, settings: QuectelSettings | None = None) -> None:
        self._at = channel
        self._settings = settings or QuectelSettings()
        self._streams: dict[int, QuectelTcpStream] = {}
        self._opening: dict[int, asyncio.Future[int]] = {}
        self._booted = asyncio.Event()
        self._link_up = False
        self._http: QuectelHttp | None = None
        self.reboots = 0
        channel.subscribe("+QIURC:", self._on_qiurc)
        channel.subscribe("+QIOPEN:", self._on_qiopen)
        channel.subscribe("RDY", self._on_ready)
        channel.subscribe("POWERED DOWN", self._on_powered_down)
        channel.when_lost(self._on_port_lost)
        for prefix in STATUS_URCS:
            channel.subscribe(prefix, self._on_status)

    @staticmethod
    def parser() -> AtParser:
        """An AT parser that knows Quectel's URCs and length-prefixed payloads."""
        return AtParser(urc_prefixes=URC_PREFIXES, payload_rules=PAYLOAD_RULES)

    @property
    def channel(self) -> AtChannel:
        return self._at

    @property
    def settings(self) -> QuectelSettings:
        return self._settings

    def http(self, settings: HttpSettings | None = None) -> QuectelHttp:
        """The module's HTTP(S) client (for firmware and diagnostics), on this channel."""
        if self._http is None:
            self._http = QuectelHttp(self._at, settings)
        return self._http

    @property
    def link_up(self) -> bool:
        """The PDP context is active as far as the driver knows (no RDY, no pdpdeact since)."""
        return self._link_up

    # -- bring-up --

    async def bring_up(self) -> LinkInfo:
        """From power-on (or unknown state) to an active PDP context with an IP address."""
        s = self._settings
        await self._sync()
        await self._at.command("ATE0")
        await self._at.command("AT+CMEE=2")
        # Payload echo after the QISEND prompt would come back as noise (§2.15, §9.8).
        response = await self._at.command("AT+QISDE=0", check=False)
        if not response.result.success:
            log.info(
                "module does not know AT+QISDE (%s); assuming no payload echo", response.result.text
            )
        await self._wait_for_sim()
        identity = await self.identity()
        log.info(
            "module %s %s, firmware %s, IMEI %s, ICCID %s, IMSI %s",
            identity.manufacturer,
            identity.model,
            identity.revision,
            identity.imei,
            identity.iccid,
            identity.imsi,
        )
        registration = await self._wait_for_registration()
        signal = await self.signal()
        log.info("registered (%s), signal %s", registration.describe(), signal.describe())
        await self._close_leftover_sockets()
        await self._at.command(
            f'AT+QICSGP={s.context_id},1,"{s.apn}","{s.username}","{s.password}",{int(s.auth)}',
            log_as=f'AT+QICSGP={s.context_id},1,"{s.apn}","{s.username}","***",{int(s.auth)}',
        )
        ip_address = await self._activate_pdp()
        log.info("PDP context %d active with APN %r, address %s", s.context_id, s.apn, ip_address)
        self._link_up = True
        return LinkInfo(identity, registration, signal, ip_address)

    async def _sync(self) -> None:
        """Send AT until the module answers: it may still be booting (§7, 'AT (repeat)')."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.sync_timeout
        while True:
            try:
                await self._at.probe()
            except ModuleRebooted:
                continue  # RDY while probing: the probe went to a booting module; ask again
            except ModemNotResponding:
                if loop.time() >= deadline:
                    raise
                continue
            return

    async def _wait_for_sim(self) -> None:
        s = self._settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.sim_timeout
        pin_sent = False
        while True:
            response = await self._at.command("AT+CPIN?", expect=("+CPIN:",), check=False)
            if response.result.success:
                state = response.value("+CPIN:")
                if state == "READY":
                    return
                if state == "SIM PIN":
                    if s.sim_pin is None:
                        raise SimError(
                            "the SIM asks for its PIN: set the PIN in the modem configuration"
                        )
                    if pin_sent:
                        raise SimError("the SIM still asks for its PIN after it was given")
                    result = await self._at.command(
                        f'AT+CPIN="{s.sim_pin}"', log_as='AT+CPIN="****"', check=False
                    )
                    if not result.result.success:
                        # Never retry a rejected PIN: three wrong tries lock the SIM behind its PUK.
                        raise SimError(
                            f"the SIM rejected the configured PIN ({result.result.text}); "
                            "check it before trying again: a third wrong PIN locks the SIM"
                        )
                    pin_sent = True
                    continue
                if state.startswith("SIM PUK") or state.startswith("PH-"):
                    raise SimError(f"the SIM is locked ({state}): unlock it in a phone")
                log.info("SIM state %s, waiting", state)
            else:
                fault = _sim_fault(response.result.text, response.result.code)
                if fault is not None:
                    raise SimError(fault)
                log.info("SIM not ready yet (%s)", response.result.text)
            if loop.time() >= deadline:
                raise SimError(
                    f"the SIM was not ready within {s.sim_timeout:g} s; the manual advises a "
                    "module reboot (AT+CFUN=1,1)"
                )
            await asyncio.sleep(1.0)

    async def registration(self) -> Registration:
        """Query +CREG/+CGREG/+CEREG; a domain the module does not know is reported as None."""
        statuses: list[RegistrationStatus | None] = []
        for name in ("CREG", "CGREG", "CEREG"):
            response = await self._at.command(f"AT+{name}?", expect=(f"+{name}:",), check=False)
            values = response.values(f"+{name}:") if response.result.success else []
            statuses.append(_registration_status(values[0]) if values else None)
        return Registration(*statuses)

    async def _wait_for_registration(self) -> Registration:
        s = self._settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.registration_timeout
        denied_polls = 0
        while True:
            registration = await self.registration()
            if registration.packet_registered:
                return registration
            denied_polls = denied_polls + 1 if registration.denied else 0
            if denied_polls >= 3:
                raise RegistrationError(
                    f"the network denies registration ({registration.describe()}): check the SIM "
                    "is activated for data and allowed to roam on this network"
                )
            if loop.time() >= deadline:
                signal = await self.signal()
                raise RegistrationError(
                    f"not registered for data after {s.registration_timeout:g} s "
                    f"({registration.describe()}; signal {signal.describe()}): check the antenna, "
                    "the coverage and the SIM's network settings"
                )
            await asyncio.sleep(s.registration_poll)

    async def _activate_pdp(self) -> str:
        """AT+QIACT with AT+QIDEACT and retry on failure (HTTP manual §1.4.2; §1.3)."""
        s = self._settings
        last = ""
        for attempt in range(1, s.pdp_attempts + 1):
            address = await self.ip_address()
            if address is not None:
                return address
            response = await self._at.command(
                f"AT+QIACT={s.context_id}", timeout=s.pdp_activate_timeout, check=False
            )
            if response.result.success:
                address = await self.ip_address()
                if address is not None:
                    return address
                last = "activated but no address reported"
            else:
                last = await self._error_detail(response.result.text)
            log.warning("PDP activation %d/%d failed: %s", attempt, s.pdp_attempts, last)
            await self._at.command(
                f"AT+QIDEACT={s.context_id}", timeout=s.pdp_deactivate_timeout, check=False
            )
        attached = await self._at.command("AT+CGATT?", expect=("+CGATT:",), check=False)
        state = {"1": "yes", "0": "no"}.get("".join(attached.values("+CGATT:")), "unknown")
        raise PdpActivationError(
            f"could not activate PDP context {s.context_id} with APN {s.apn!r} after "
            f"{s.pdp_attempts} attempts (last: {last}; packet domain attached: {state}): "
            "check the APN, user and password with the SIM provider; the manual advises a "
            "module reboot if this persists"
        )

    async def ip_address(self) -> str | None:
        """The address of our PDP context, or None when it is not active (AT+QIACT?, §2.2)."""
        response = await self._at.command("AT+QIACT?", expect=("+QIACT:",))
        for value in response.values("+QIACT:"):
            fields = _split_fields(value)
            if (
                len(fields) >= 4
                and fields[0] == str(self._settings.context_id)
                and fields[1] == "1"
            ):
                return fields[3]
        return None

    async def _close_leftover_sockets(self) -> None:
        """Close sockets a previous run left open, or their ids stay taken (§9.11, §9.21)."""
        response = await self._at.command("AT+QISTATE?", expect=("+QISTATE:",), check=False)
        if not response.result.success:
            return
        for value in response.values("+QISTATE:"):
            connect_id = int(_split_fields(value)[0])
            if connect_id not in self._streams:
                log.info("closing socket %d left open by an earlier session", connect_id)
                await self._at.command(f"AT+QICLOSE={connect_id},0", timeout=15.0, check=False)

    # -- identity and health --

    async def identity(self) -> ModemIdentity:
        info = await self._at.command("ATI")
        lines = [ln.text for ln in info.lines]
        revision = next(
            (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Revision:")), ""
        )
        names = [ln for ln in lines if not ln.startswith("Revision:")]
        # EC2x print "Quectel" then the model; BG96 manuals show only the model (§7).
        manufacturer, model = (
            (names[0], names[1]) if len(names) >= 2 else ("Quectel", names[0] if names else "")
        )
        if not revision:
            gmr = await self._at.command("AT+GMR")
            revision = gmr.lines[0].text if gmr.lines else ""
        imei = _digits_line(await self._at.command("AT+GSN"), 15) or ""
        iccid = None
        ccid = await self._at.command("AT+QCCID", expect=("+QCCID:",), check=False)
        if ccid.result.success and ccid.values("+QCCID:"):
            iccid = ccid.value("+QCCID:")
        cimi = await self._at.command("AT+CIMI", check=False)
        imsi = _digits_line(cimi, None) if cimi.result.success else None
        return ModemIdentity(manufacturer, model, revision, imei, iccid, imsi)

    async def signal(self) -> SignalQuality:
        response = await self._at.command("AT+CSQ", expect=("+CSQ:",))
        rssi, ber = (int(x) for x in response.value("+CSQ:").split(",")[:2])
        return SignalQuality(rssi, ber)

    async def last_socket_error(self) -> tuple[int, str] | None:
        """What AT+QIGETERROR says about the last TCP/IP command (§2.12)."""
        response = await self._at.command("AT+QIGETERROR", expect=("+QIGETERROR:",), check=False)
        values = response.values("+QIGETERROR:")
        match = _QIGETERROR.fullmatch(values[0]) if values else None
        return (int(match["code"]), match["text"].strip()) if match else None

    async def _error_detail(self, result: str) -> str:
        error = await self.last_socket_error()
        if error is None or error[0] == 0:
            return result
        return f"{result}, {describe_socket_error(error[0])}"

    # -- recovery steps, mildest first (architecture: reopen → PDP → CFUN → reboot) --

    async def reactivate_pdp(self) -> str:
        s = self._settings
        await self._at.command(
            f"AT+QIDEACT={s.context_id}", timeout=s.pdp_deactivate_timeout, check=False
        )
        for stream in list(self._streams.values()):
            stream.network_lost(f"PDP context {s.context_id} deactivated for recovery")
        return await self._activate_pdp()

    async def radio_cycle(self) -> LinkInfo:
        """AT+CFUN=0 then AT+CFUN=1: detach and re-register, then bring the link up again."""
        s = self._settings
        await self._at.command("AT+CFUN=0", timeout=s.cfun_timeout)
        for stream in list(self._streams.values()):
            stream.network_lost("radio switched off for recovery (AT+CFUN=0)")
        await self._at.command("AT+CFUN=1", timeout=s.cfun_timeout)
        return await self.bring_up()

    async def restart(self) -> LinkInfo:
        """AT+CFUN=1,1: reset the module, wait for RDY, bring the link up again."""
        s = self._settings
        self._booted.clear()
        await self._at.command("AT+CFUN=1,1", timeout=s.cfun_timeout)
        try:
            async with asyncio.timeout(s.reboot_timeout):
                await self._booted.wait()
        except TimeoutError:
            raise ModemNotResponding(self._at.port_name, 1, s.reboot_timeout) from None
        return await self.bring_up()

    # -- sockets --

    async def open_tcp(
        self, host: str, port: int, *, timeout: float | None = None, connect_id: int | None = None
    ) -> QuectelTcpStream:
        """Open a TCP connection in buffer access mode; the module resolves host names.

        ``connect_id`` picks the module's socket id (0-11); by default the lowest free one.
        """
        if not _SAFE_HOST.fullmatch(host):
            raise ValueError(f"not a host name or address: {host!r}")
        if not 0 < port < 65536:
            raise ValueError(f"not a TCP port: {port}")
        s = self._settings
        open_timeout = s.open_timeout if timeout is None else timeout
        if connect_id is None:
            connect_id = self._free_connect_id()
        elif (
            connect_id not in CONNECT_IDS
            or connect_id in self._streams
            or connect_id in self._opening
        ):
            raise SocketOpenError(f"socket id {connect_id} is not free")
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[int] = loop.create_future()
        self._opening[connect_id] = opened
        where = f"{host}:{port}"
        try:
            response = await self._at.command(
                f'AT+QIOPEN={s.context_id},{connect_id},"TCP","{host}",{port},0,0', check=False
            )
            if not response.result.success:
                detail = await self._error_detail(response.result.text)
                raise SocketOpenError(f"module refused to open {where}: {detail}")
            try:
                async with asyncio.timeout(open_timeout):
                    code = await opened
            except TimeoutError:
                await self._at.command(f"AT+QICLOSE={connect_id},0", timeout=15.0, check=False)
                raise SocketOpenError(f"no +QIOPEN for {where} within {open_timeout:g} s") from None
        finally:
            self._opening.pop(connect_id, None)
        if code != 0:
            # A failed open still occupies the id until QICLOSE (§2.4).
            await self._at.command(f"AT+QICLOSE={connect_id},0", timeout=15.0, check=False)
            raise SocketOpenError(f"cannot connect to {where}: {describe_socket_error(code)}", code)
        stream = QuectelTcpStream(self, connect_id, where)
        self._streams[connect_id] = stream
        stream.start()
        log.info("socket %d connected to %s", connect_id, where)
        return stream

    def _free_connect_id(self) -> int:
        for connect_id in CONNECT_IDS:
            if connect_id not in self._streams and connect_id not in self._opening:
                return connect_id
        raise SocketOpenError("all 12 module sockets are in use")

    def _release(self, connect_id: int) -> None:
        self._streams.pop(connect_id, None)

    # -- URCs --

    def _on_qiurc(self, urc: Urc) -> None:
        fields = _split_fields(urc.text[len("+QIURC:") :].strip())
        kind = fields[0] if fields else ""
        if kind in ("recv", "closed") and len(fields) >= 2 and fields[1].isdigit():
            stream = self._streams.get(int(fields[1]))
            if stream is None:
                log.warning("%s for socket %s, which is not ours", urc.text, fields[1])
            elif kind == "recv":
                stream.data_announced()
            else:
                stream.peer_closed()
        elif kind == "pdpdeact" and len(fields) >= 2:
            log.warning("the network deactivated PDP context %s", fields[1])
            if fields[1] == str(self._settings.context_id):
                self._link_up = False
                for stream in list(self._streams.values()):
                    stream.network_lost(
                        f'the network deactivated PDP context {fields[1]} (+QIURC: "pdpdeact")'
                    )
        else:
            log.info("unhandled %s", urc.text)

    def _on_qiopen(self, urc: Urc) -> None:
        fields = _split_fields(urc.text[len("+QIOPEN:") :].strip())
        if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
            opened = self._opening.get(int(fields[0]))
            if opened is not None and not opened.done():
                opened.set_result(int(fields[1]))
                return
        log.warning("unexpected %s", urc.text)

    def _on_ready(self, urc: Urc) -> None:
        if self._link_up or self._streams:
            self.reboots += 1
            log.warning(
                "module on %s restarted (%s): its sockets and PDP context are gone",
                self._at.port_name,
                urc.text,
            )
        else:
            log.info("module on %s booted (%s)", self._at.port_name, urc.text)
        self._link_up = False
        self._booted.set()
        self._lost_everything(
            ModuleRebooted(
                f"the module on {self._at.port_name} restarted (RDY); its sockets are gone"
            )
        )

    def _on_powered_down(self, urc: Urc) -> None:
        log.error("module on %s powered down", self._at.port_name)
        self._lost_everything(ModuleRebooted(f"the module on {self._at.port_name} powered down"))

    def _on_port_lost(self, error: Exception) -> None:
        # Without a port no socket can be read or closed: every session ends now, not at
        # its next keepalive.
        self._link_up = False
        self._lost_everything(StreamClosed(f"the serial port {self._at.port_name} is gone"))

    def _lost_everything(self, error: StreamClosed) -> None:
        self._at.abort(error)
        for stream in list(self._streams.values()):
            stream.fail(error)
        for opened in self._opening.values():
            if not opened.done():
                opened.set_exception(error)

    def _on_status(self, urc: Urc) -> None:
        log.info("module status: %s", urc.text)


class QuectelTcpStream:
    """A TCP connection through a Quectel socket: a :class:`transport.stream.ByteStream`.

    Two tasks owned by the stream move the bytes: one drains the module's receive buffer when
    it announces data, one sends queued bytes in chunks of at most 1460. Both share the single
    AT channel with everything else, one command at a time.
    """

    def __init__(self, modem: QuectelModem, connect_id: int, where: str) -> None:
        self._modem = modem
        self._at = modem.channel
        self._s = modem.settings
        self.connect_id = connect_id
        self.where = where
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
        self._closed = False
        self._tasks: list[asyncio.Task[None]] = []
        self.bytes_sent = 0
        self.bytes_received = 0
        self.send_fails = 0

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._receive_loop(), name=f"qird {self.connect_id}"),
            asyncio.create_task(self._send_loop(), name=f"qisend {self.connect_id}"),
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
        if self._closed:
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
        if self._closed:
            return
        self._closed = True
        if self._tx and self._error is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush_timeout):
                    await self._tx_empty.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if not isinstance(self._end, ModuleRebooted):
            # QICLOSE also frees the id after a "closed" URC or a failure (§2.5).
            try:
                await self._at.command(
                    f"AT+QICLOSE={self.connect_id},{self._s.close_timeout}",
                    timeout=self._s.close_timeout + 5.0,
                    check=False,
                )
            except TransportError as exc:  # an AT error, or the port is gone
                log.warning("closing socket %d: %s", self.connect_id, exc)
        self._modem._release(self.connect_id)
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
        self._announced.set()

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
                try:
                    async with asyncio.timeout(self._s.idle_poll_interval):
                        await self._announced.wait()
                except TimeoutError:
                    # No URC for a while: read anyway, in case one was lost in line noise
                    # (the module would not send another until its buffer is drained, §9.2).
                    pass
                self._announced.clear()
                await self._drain_module()
                if self._peer_closed:
                    raise PeerClosed(
                        f"socket {self.connect_id}: {self.where} closed the connection"
                    )
                if self._lost is not None:
                    raise self._lost
        except StreamClosed as exc:
            self.fail(exc)
        except AtError as exc:
            self.fail(self._broken("reading", exc))

    async def _drain_module(self) -> None:
        while True:
            while len(self._rx) >= self._s.rx_high_water:
                self._rx_space.clear()
                await self._rx_space.wait()
            try:
                # The answer may carry 1500 bytes: at 9600 baud that alone takes 1.6 s.
                response = await self._at.command(
                    f"AT+QIRD={self.connect_id},{MAX_READ}",
                    expect=("+QIRD:",),
                    timeout=self._s.command_timeout + self._at.wire_time(MAX_READ + 32),
                )
            except AtCommandFailed:
                if self._lost is not None:
                    raise self._lost from None
                raise
            announced = int(response.value("+QIRD:").split(",")[0])
            if announced == 0:
                return
            data = response.payload
            if len(data) != announced:
                raise StreamBroken(
                    f"socket {self.connect_id}: +QIRD announced {announced} bytes, got {len(data)}"
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
        except AtError as exc:
            self.fail(self._broken("sending", exc))

    async def _send_chunk(self, chunk: bytes) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._s.send_stall_timeout
        backoff = self._s.send_retry_delay
        while True:
            if self._error is not None:
                raise self._error
            response = await self._at.command_with_data(
                f"AT+QISEND={self.connect_id},{len(chunk)}", chunk
            )
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
            detail = await self._modem._error_detail(response.result.text)
            raise StreamBroken(
                f"socket {self.connect_id} to {self.where}: AT+QISEND failed: {detail}"
            )

    def _broken(self, doing: str, exc: AtError) -> StreamClosed:
        if isinstance(exc, AtTimeout | ModemNotResponding):
            return StreamBroken(
                f"socket {self.connect_id} to {self.where} broken while {doing}: {exc}"
            )
        return StreamBroken(f"socket {self.connect_id} to {self.where} failed while {doing}: {exc}")


class QuectelLink:
    """The daemon's handle on a Quectel module (see :class:`transport.link.Link`).

    It opens the serial port and brings the module up when a stream is needed, and maps each
    recovery step onto the driver. When the port or the module is gone (unplugged, hung), the
    channel is dropped and the next attempt opens the port again.
    """

    def __init__(
        self,
        path: str,
        baudrate: int = 115200,
        settings: QuectelSettings | None = None,
        http: HttpSettings | None = None,
    ) -> None:
        self._path = path
        self._baudrate = baudrate
        self._settings = settings or QuectelSettings()
        self._http_settings = http or HttpSettings(context_id=self._settings.context_id)
        self._channel: AtChannel | None = None
        self._modem: QuectelModem | None = None
        self._info: LinkInfo | None = None

    @property
    def description(self) -> str:
        model = (
            f"{self._info.identity.manufacturer} {self._info.identity.model}"
            if self._info
            else "Quectel module"
        )
        return f"{model} on {self._path}"

    @property
    def identity(self) -> ModemIdentity | None:
        return self._info.identity if self._info else None

    @property
    def modem(self) -> QuectelModem | None:
        return self._modem

    async def open(self, host: str, port: int, *, tls: bool) -> QuectelTcpStream:
        if tls:
            raise SocketOpenError(
                "wss:// through the Quectel module needs its TLS commands (AT+QSSL*), which this "
                "version does not drive yet: use ws:// on a private APN, or a host link"
            )
        modem = await self._modem_brought_up()
        return await modem.open_tcp(host, port)

    async def http_client(self) -> QuectelHttp:
        modem = await self._modem_brought_up()
        return modem.http(self._http_settings)

    async def recover(self, step: RecoveryStep) -> None:
        if step is RecoveryStep.REOPEN:
            return
        modem = await self._modem_on_port()
        try:
            if step is RecoveryStep.REACTIVATE_PDP:
                log.warning("recovery: re-activating the PDP context")
                await modem.reactivate_pdp()
            elif step is RecoveryStep.RADIO_CYCLE:
                log.warning("recovery: switching the radio off and on (AT+CFUN=0, AT+CFUN=1)")
                self._info = await modem.radio_cycle()
            else:
                log.warning("recovery: restarting the module (AT+CFUN=1,1)")
                self._info = await modem.restart()
        except (ModemNotResponding, SerialPortError):
            await self._drop_channel()
            raise

    async def close(self) -> None:
        await self._drop_channel()

    async def _modem_on_port(self) -> QuectelModem:
        if self._channel is not None and self._channel.failed:
            # The port died under us (USB modem re-enumerated, pty gone): start afresh,
            # closing the dead one so its descriptor is not leaked.
            await self._drop_channel()
        if self._modem is None:
            channel = quectel_channel(self._path, self._baudrate, self._settings)
            channel.start()
            self._channel, self._modem = channel, QuectelModem(channel, self._settings)
        return self._modem

    async def _modem_brought_up(self) -> QuectelModem:
        modem = await self._modem_on_port()
        if not modem.link_up:
            try:
                self._info = await modem.bring_up()
            except (ModemNotResponding, SerialPortError):
                await self._drop_channel()
                raise
        return modem

    async def _drop_channel(self) -> None:
        channel, self._channel, self._modem = self._channel, None, None
        if channel is not None:
            await channel.close()


@contextlib.asynccontextmanager
async def open_quectel(
    path: str, baudrate: int = 115200, settings: QuectelSettings | None = None
) -> AsyncIterator[QuectelModem]:
    """Open the serial port and an AT channel on it, and give a driver (not yet brought up)."""
    settings = settings or QuectelSettings()
    async with quectel_channel(path, baudrate, settings) as channel:
        yield QuectelModem(channel, settings)


def quectel_channel(path: str, baudrate: int, settings: QuectelSettings) -> AtChannel:
    """An AT channel (not started) on ``path`` that knows Quectel's URCs and payloads."""
    port = SerialPort.open(path, baudrate)
    return AtChannel(port, QuectelModem.parser(), default_timeout=settings.command_timeout)


# --- response parsing ----------------------------------------------------------------------


def _split_fields(text: str) -> list[str]:
    """Split an AT parameter list on commas outside quotes; quotes are removed."""
    fields: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    fields.append("".join(current).strip())
    return fields


def _registration_status(value: str) -> RegistrationStatus | None:
    # The read form is "<n>,<stat>[,...]" (§7); the <stat> is the second field.
    fields = _split_fields(value)
    if len(fields) < 2 or not fields[1].isdigit():
        return None
    try:
        return RegistrationStatus(int(fields[1]))
    except ValueError:
        return RegistrationStatus.UNKNOWN


def _digits_line(response: Response, length: int | None) -> str | None:
    for line in response.lines:
        text = line.text
        if text.isdigit() and (length is None or len(text) == length):
            return text
    return None


def _sim_fault(result: str, code: int | None) -> str | None:
    """A SIM error that waiting will not cure, in words a technician can act on."""
    text = result.lower()
    if code == 10 or "not inserted" in text:
        return "no SIM card: check the SIM is inserted and its holder closed"
    if code == 13 or "sim failure" in text:
        return "the SIM failed: check its contacts or replace it"
    if code == 15 or "sim wrong" in text:
        return "the module rejects this SIM (wrong SIM)"
    return None
