"""Driver for Quectel modules on the QI* TCP/IP AT command set (EC2x, EG9x, BG9x, EC200U).

References are the Quectel manuals as distilled in ``docs/at-protocol.md`` (cited as §n):
bring-up order and time limits from the TCP/IP manual's chapter 1 flow chart (§1.3, §7),
sockets in buffer access mode (§2.4-§2.8), URCs (§2.13), error codes (§2.12), and the field
quirks of §9. The socket table and the TCP streams are in :mod:`transport.modems.quectel_sockets`;
this driver routes their URCs and tells them when the module restarts or the network drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from transport.at import (
    AtChannel,
    AtParser,
    ChannelStats,
    PayloadRule,
    Response,
    Urc,
    split_fields,
)
from transport.errors import (
    AtCommandFailed,
    ModemNotResponding,
    ModuleRebooted,
    PdpActivationError,
    RegistrationError,
    SerialPortError,
    ServerRefused,
    SimError,
    SocketOpenError,
    StreamClosed,
    TlsHandshakeFailed,
    TlsSetupFailed,
    TransferError,
)
from transport.link import RecoveryStep
from transport.modem import (
    LinkInfo,
    ModemIdentity,
    Registration,
    RegistrationStatus,
    SignalQuality,
)
from transport.modems.quectel_files import QuectelFiles
from transport.modems.quectel_ftp import FTP_URCS, FtpSettings, QuectelFtp
from transport.modems.quectel_http import HTTP_URCS, HttpSettings, QuectelHttp
from transport.modems.quectel_settings import AccessMode, QuectelSettings
from transport.modems.quectel_sockets import (
    QuectelSockets,
    QuectelTcpStream,
    last_socket_error,
    with_socket_error,
)
from transport.modems.quectel_tls import CA_FILE, NEGOTIATE_TIME, QuectelTls
from transport.serial_port import SerialPort
from transport.tls import TlsSettings

log = logging.getLogger(__name__)

DIAGNOSIS_KEPT = 600.0  # s: how long a TLS failure's diagnosis (TCP probe) is reused

# Status URCs the driver only logs: boot progress (§7), SIM, registration.
STATUS_URCS = ("APP RDY", "+CPIN:", "+CFUN:", "+QUSIM:", "+QIND:", "+CREG:", "+CGREG:", "+CEREG:")
URC_PREFIXES = (
    "+QIURC:",
    "+QIOPEN:",
    "+QSSLURC:",
    "+QSSLOPEN:",
    "RDY",
    "POWERED DOWN",
    *STATUS_URCS,
    *HTTP_URCS,
    *FTP_URCS,
)

PAYLOAD_RULES = (
    # +QIRD: <n> then exactly n bytes (TCP); +QIRD: <n>,"<ip>",<port> then n bytes (UDP service).
    # The query form "+QIRD: <total>,<read>,<unread>" announces nothing and matches neither.
    PayloadRule(re.compile(r'\+QIRD: (?P<length>\d+)(,"[^"]*",\d+)?')),
    # AT+QSSLRECV: +QSSLRECV: <n> then exactly n bytes (§3.4).
    PayloadRule(re.compile(r"\+QSSLRECV: (?P<length>\d+)")),
    # AT+QFREAD: CONNECT <n> then exactly n bytes of the file (§4.7).
    PayloadRule(re.compile(r"CONNECT (?P<length>\d+)")),
)
# Direct push (§2.13, §3.6): +QIURC: "recv",<id>,<n> then exactly n bytes (and a <CR><LF>,
# an empty line to the parser). Only for sockets opened in push mode: in buffer mode the
# same shape is AT+QICFG="recvind",1's announcement, which carries no data.
PUSH_RULES = (
    PayloadRule(re.compile(r'\+QIURC: "recv",\d+,(?P<length>\d+)')),
    PayloadRule(re.compile(r'\+QSSLURC: "recv",\d+,(?P<length>\d+)')),
)


class QuectelModem:
    """A Quectel module on an :class:`AtChannel` (the channel must be started)."""

    def __init__(self, channel: AtChannel, settings: QuectelSettings | None = None) -> None:
        self._at = channel
        self._settings = settings or QuectelSettings()
        self.sockets = QuectelSockets(channel, self._settings)
        self.tls = QuectelTls(channel, QuectelFiles(channel))
        self._booted = asyncio.Event()
        # A +CPIN or +CxREG URC came: the SIM or registration waits look again at once
        # instead of at their next poll.
        self._status_changed = asyncio.Event()
        self._link_up = False
        self._http: QuectelHttp | None = None
        self._ftp: QuectelFtp | None = None
        self.reboots = 0
        channel.subscribe("+QIURC:", self._on_qiurc)
        channel.subscribe("+QIOPEN:", self.sockets.on_qiopen)
        channel.subscribe("+QSSLOPEN:", self.sockets.on_qiopen)
        channel.subscribe("+QSSLURC:", self._on_qsslurc)
        channel.subscribe("RDY", self._on_ready)
        channel.subscribe("POWERED DOWN", self._on_powered_down)
        channel.when_lost(self._on_port_lost)
        for prefix in STATUS_URCS:
            channel.subscribe(prefix, self._on_status)

    @staticmethod
    def parser(*, direct_push: bool = True) -> AtParser:
        """An AT parser that knows Quectel's URCs and length-prefixed payloads; with
        ``direct_push``, the data a "recv" URC carries (the driver never turns "recvind" on,
        so a buffer-mode URC never has the length field)."""
        rules = PAYLOAD_RULES + (PUSH_RULES if direct_push else ())
        return AtParser(urc_prefixes=URC_PREFIXES, payload_rules=rules)

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

    def ftp(self, settings: FtpSettings | None = None) -> QuectelFtp:
        """The module's FTP(S) client (for ftp:// and ftps:// locations), on this channel."""
        if self._ftp is None:
            self._ftp = QuectelFtp(self._at, settings)
        return self._ftp

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
        # Registration changes as URCs (n=1: "+CEREG: <stat>"), so the wait below and a
        # technician reading the log see them when they happen; modules without a domain
        # (no LTE: no CEREG) answer ERROR, which is fine.
        for name in ("CREG", "CGREG", "CEREG"):
            await self._at.command(f"AT+{name}=1", check=False)
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
        await self.sockets.reconcile()  # sockets a previous run left open (§9.11, §9.21)
        await self.tls.clock.follow_network()  # certificate dates need a set clock (§9.13)
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
            self._status_changed.clear()
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
            await self._nap(1.0)

    async def registration(self) -> Registration:
        """Query +CREG/+CGREG/+CEREG; a domain the module does not know is reported as None."""
        statuses: list[RegistrationStatus | None] = []
        for name in ("CREG", "CGREG", "CEREG"):
            response = await self._at.command(f"AT+{name}?", expect=(f"+{name}:",), check=False)
            # "<n>,<stat>...": a "+CEREG: <stat>" URC (n=1) that came inside the answer is
            # one field, and not the answer.
            answered = response.values(f"+{name}:") if response.result.success else []
            values = [v for v in answered if "," in v]
            statuses.append(_registration_status(values[0]) if values else None)
        return Registration(*statuses)

    async def _wait_for_registration(self) -> Registration:
        s = self._settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.registration_timeout
        denied_polls = 0
        while True:
            self._status_changed.clear()
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
            await self._nap(s.registration_poll)

    async def _nap(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the module reports a SIM or registration change."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._status_changed.wait()

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
                last = with_socket_error(response.result.text, await last_socket_error(self._at))
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
            fields = split_fields(value)
            if (
                len(fields) >= 4
                and fields[0] == str(self._settings.context_id)
                and fields[1] == "1"
            ):
                return fields[3]
        return None

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

    # -- recovery steps, mildest first (architecture: reopen → PDP → CFUN → reboot) --

    async def reactivate_pdp(self) -> str:
        s = self._settings
        await self._at.command(
            f"AT+QIDEACT={s.context_id}", timeout=s.pdp_deactivate_timeout, check=False
        )
        self.sockets.network_lost(f"PDP context {s.context_id} deactivated for recovery")
        return await self._activate_pdp()

    async def radio_cycle(self) -> LinkInfo:
        """AT+CFUN=0 then AT+CFUN=1: detach and re-register, then bring the link up again."""
        s = self._settings
        await self._at.command("AT+CFUN=0", timeout=s.cfun_timeout)
        self.sockets.network_lost("radio switched off for recovery (AT+CFUN=0)")
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
        """Open a TCP connection (see :meth:`QuectelSockets.open_tcp`)."""
        return await self.sockets.open_tcp(host, port, timeout=timeout, connect_id=connect_id)

    # -- URCs --

    def _on_qiurc(self, urc: Urc) -> None:
        fields = split_fields(urc.text[len("+QIURC:") :].strip())
        kind = fields[0] if fields else ""
        if kind in ("recv", "closed") and len(fields) >= 2 and fields[1].isdigit():
            self.sockets.on_socket_urc(kind, int(fields[1]), urc)
        elif kind == "pdpdeact" and len(fields) >= 2:
            log.warning("the network deactivated PDP context %s", fields[1])
            if fields[1] == str(self._settings.context_id):
                self._link_up = False
                self.sockets.network_lost(
                    f'the network deactivated PDP context {fields[1]} (+QIURC: "pdpdeact")'
                )
        else:
            log.info("unhandled %s", urc.text)

    def _on_qsslurc(self, urc: Urc) -> None:
        # "recv" and "closed" as for TCP; a PDP loss still comes as +QIURC: "pdpdeact" (§3.6).
        fields = split_fields(urc.text[len("+QSSLURC:") :].strip())
        if len(fields) >= 2 and fields[0] in ("recv", "closed") and fields[1].isdigit():
            self.sockets.on_socket_urc(fields[0], int(fields[1]), urc)
        else:
            log.info("unhandled %s", urc.text)

    def _on_ready(self, urc: Urc) -> None:
        if self._link_up or self.sockets.table():
            self.reboots += 1
            log.warning(
                "module on %s restarted (%s): its sockets and PDP context are gone",
                self._at.port_name,
                urc.text,
            )
        else:
            log.info("module on %s booted (%s)", self._at.port_name, urc.text)
        self._link_up = False
        self.tls.forget()
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
        self.sockets.lose_all(error)
        if self._ftp is not None:
            self._ftp.lost(error)  # its session went with the module: no URC will come

    def _on_status(self, urc: Urc) -> None:
        log.info("module status: %s", urc.text)
        if urc.text.startswith(("+CPIN:", "+CREG:", "+CGREG:", "+CEREG:")):
            self._status_changed.set()


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
        ftp: FtpSettings | None = None,
    ) -> None:
        self._path = path
        self._baudrate = baudrate
        self._settings = settings or QuectelSettings()
        self._http_settings = http or HttpSettings(context_id=self._settings.context_id)
        # Unless told otherwise, FTP(S) takes what the HTTP(S) transfers were given: the same
        # context, CA file (firmware.ca_file), chunk and scratch drive.
        self._ftp_settings = ftp or FtpSettings(
            context_id=self._http_settings.context_id,
            ca_file=self._http_settings.ca_file,
            chunk=self._http_settings.chunk,
            scratch_drive=self._http_settings.scratch_drive,
        )
        self._channel: AtChannel | None = None
        self._modem: QuectelModem | None = None
        self._info: LinkInfo | None = None
        self._csms_time: Callable[[], datetime | None] = lambda: None
        self._tls_diagnosis: dict[tuple[str, int, TlsSettings], tuple[SocketOpenError, float]] = {}

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

    @property
    def at_stats(self) -> ChannelStats | None:
        """What crossed the serial line since the port was opened (None while it is not)."""
        return self._channel.stats if self._channel is not None else None

    def use_csms_time(self, now: Callable[[], datetime | None]) -> None:
        self._csms_time = now

    async def open(self, host: str, port: int, *, tls: TlsSettings | None) -> QuectelTcpStream:
        modem = await self._modem_brought_up()
        if tls is None:
            return await modem.open_tcp(host, port)
        try:
            await modem.tls.prepare(tls, self._csms_time)
        except OSError as error:
            raise TlsSetupFailed(f"the TLS files cannot be read: {error}") from error
        except (AtCommandFailed, TransferError) as error:
            raise TlsSetupFailed(f"the module refused the TLS set-up: {error}") from error
        where = (host, port, tls)
        try:
            # The module's own limit: 150 s for TCP plus the TLS negotiation time (§3.2).
            stream = await modem.sockets.open_tls(
                host, port, modem.tls.context_id, timeout=150.0 + NEGOTIATE_TIME + 10.0
            )
        except ServerRefused as refused:
            # Told apart once per streak of failures (and every 10 min of it): the probe
            # costs an open, and some firmware degrades after many (§9.11).
            now = asyncio.get_running_loop().time()
            known, since = self._tls_diagnosis.get(where, (None, 0.0))
            if known is None or now - since > DIAGNOSIS_KEPT:
                known = await _why_tls_failed(modem, host, port, tls, refused)
                self._tls_diagnosis[where] = (known, now)
            raise known from refused
        self._tls_diagnosis.pop(where, None)
        return stream

    async def http_client(self) -> QuectelHttp:
        modem = await self._modem_brought_up()
        return modem.http(self._http_settings)

    async def ftp_client(self) -> QuectelFtp:
        modem = await self._modem_brought_up()
        return modem.ftp(self._ftp_settings)

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


async def _why_tls_failed(
    modem: QuectelModem, host: str, port: int, tls: TlsSettings, refused: ServerRefused
) -> SocketOpenError:
    """``+QSSLOPEN: <id>,566`` says the TCP connection or the TLS handshake failed, not which
    (§3.2, §9.13). A plain TCP connection to the same port tells them apart, for the log line
    a technician acts on."""
    try:
        probe = await modem.open_tcp(host, port, timeout=30.0)
    except ServerRefused:
        return refused  # TCP is refused too: the CSMS is down or filtered
    await probe.close()
    ca = tls.ca_file.name if tls.ca_file is not None else "?"
    theirs = (
        "the CSMS refused the charge point certificate (csms.client_certificate)"
        if tls.mutual
        else "the CSMS wants a client certificate (security profile 3)"
    )
    return TlsHandshakeFailed(
        f"TLS with {host}:{port} failed although TCP reaches it (the module does not say which "
        f"side refused): the module rejected the CSMS certificate (check the CA file {ca}, "
        f"installed on the module as {CA_FILE}, that the certificate names {host}, and the "
        f"module clock), or {theirs}, or no common TLS 1.2 cipher suite (csms.cipher_suite)",
        refused.code,
    )


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
    parser = QuectelModem.parser(direct_push=settings.access_mode is AccessMode.PUSH)
    return AtChannel(port, parser, default_timeout=settings.command_timeout)


# --- response parsing ----------------------------------------------------------------------


def _registration_status(value: str) -> RegistrationStatus | None:
    # The read form is "<n>,<stat>[,...]" (§7); the <stat> is the second field.
    fields = split_fields(value)
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
