"""A Quectel cellular module as a pure object: bytes from the host in; bytes for the host and
network actions out. Time is passed in (``now``), never read, so every behaviour is testable
without sleeping.

This is a second reading of the manuals, deliberately independent of the driver: it shares no
parsing or formatting code with :mod:`transport.at` or :mod:`transport.modems.quectel`, so that
a misreading in one shows up as a failing test instead of cancelling out.

Behaviour follows docs/at-protocol.md (§n): V.25ter framing with echo on at boot (§1.1), the
``> `` prompt and fixed/variable-length QISEND (§2.7), buffer-mode QIRD with one "recv" URC
until the buffer is drained (§2.8, §9.2), "closed"/"pdpdeact" URCs (§2.13), socket error codes
kept for AT+QIGETERROR (§2.12), +CME ERROR per AT+CMEE (§1.1, §7), boot URCs (§7); the SSL
sockets (AT+QSSLOPEN/QSSLSEND/QSSLRECV/QSSLCLOSE/QSSLSTATE, §3.2-§3.6) share the TCP socket
table and its rules, TLS being run by the shell (:mod:`transport.simulator.tls`); the module
clock (AT+CCLK, AT+CTZU, AT+QLTS, §7) runs from the shell's ``now``. The FILE,
SSL-configuration and HTTP(S) commands are in :mod:`transport.simulator.quectel_http`, the
FTP(S) commands (§5) in :mod:`transport.simulator.quectel_ftp`.
What it does not model says so with an ERROR and a comment, never silently.
"""

from __future__ import annotations

import enum
import heapq
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from transport.simulator.module_storage import ModuleStorage
from transport.simulator.network_actions import CloseTcp, OpenSsl, OpenTcp, SendTcp
from transport.simulator.open_failure import FailureKind, OpenFailure
from transport.simulator.quectel_ftp import POLL as FTP_POLL
from transport.simulator.quectel_ftp import FtpCommands
from transport.simulator.quectel_http import HttpBody, HttpCommands, HttpRequest

CTRL_Z = 0x1A
ESC = 0x1B
MAX_SEND = 1460
MAX_HEX_SEND = 512  # AT+QISENDEX: at most 512 bytes, 1024 hex digits (§2.9)
_HEX = re.compile(r"[0-9A-Fa-f]+")
MAX_READ = 1500
SOCKET_IDS = range(12)
SSL_CONTEXT_IDS = range(6)

# The module clock (§7; 3GPP TS 27.007 §8.15). Unset, it starts at the GPS epoch and reads
# "80/01/06,00:00:00+00"; a network time (NITZ) or AT+CCLK sets it.
CLOCK_AT_POWER_ON = datetime(1980, 1, 6, tzinfo=UTC)
# The network's UTC at the shell's time 0 when no shell says otherwise (the shell passes the
# real one), so a module driven directly by a test is deterministic.
DEFAULT_NETWORK_EPOCH = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
_CCLK_TIME = re.compile(r"(\d\d)/(\d\d)/(\d\d),(\d\d):(\d\d):(\d\d)([+-])(\d\d)")


class SimState(enum.Enum):
    ABSENT = "absent"
    PIN = "pin"
    PUK = "puk"
    READY = "ready"


# 27.007 §9.2 CME error texts for the codes this module gives (shown with AT+CMEE=2).
CME_TEXT = {
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    16: "incorrect password",
    30: "no network service",
    50: "Incorrect parameters",
}

# TCP/IP error codes and descriptions for AT+QIGETERROR (§2.12). The description wording of
# code 0 is the one seen on a real BG770A ("operate successfully").
QI_ERROR_TEXT = {
    0: "operate successfully",
    550: "unknown error",
    552: "invalid parameters",
    555: "operation not supported",
    561: "open PDP context failed",
    563: "socket identity has been used",
    565: "DNS parse failed",
    566: "socket connect failed",
    567: "socket has been closed",
    569: "operation timeout",
    570: "PDP context broken down",
    571: "cancel send",
    572: "operation not allowed",
}


@dataclass
class ModuleProfile:
    """Who the simulated module is and how its network behaves."""

    manufacturer: str = "Quectel"
    model: str = "EC200U"
    revision: str = "EC200UCNAAR03A06M08"
    imei: str = "869710030002906"
    iccid: str = "89860025128306012474"
    imsi: str = "460023210226023"
    sim: SimState = SimState.READY
    sim_pin: str = "1234"
    sim_busy_for: float = 0.0  # after boot, AT+CPIN? answers "SIM busy" this long
    registration_stat: int = 1  # what the network grants: 1 home, 5 roaming, 3 denied
    registered_after: float = 0.0  # seconds from boot/CFUN=1 to registration
    access_technology: int = 7
    operator: str = "SIMNET"
    rssi: int = 24
    ber: int = 99
    ip_address: str = "10.64.23.7"
    max_context: int = 7  # EC200U: contexts 1-7; BG96/EC2x: 1-16
    required_apn: str | None = None  # activation fails with any other APN
    pdp_activation_time: float = 0.0
    boot_time: float = 0.0  # power-on or reset until RDY
    send_buffer: int = 10240  # EC200U's send buffer (<Freesize> range, §2.7)
    receive_buffer: int = 64 * 1024
    send_input_timeout: float = 5.0  # EC200U "qisend/timeout" default (§2.11)
    ufs_size: int = 14 * 1024 * 1024  # UFS capacity (AT+QFLDS="UFS", §4.1)
    ram_size: int = 512 * 1024  # RAM disk capacity
    checkhost_option: bool = True  # AT+QSSLCFG="checkhost" exists (newer firmware, §3.1)
    nitz: bool = True  # the network sends its time at registration (AT+QLTS, AT+CTZU)
    # Direct push (<access_mode> 1, §2.4, §2.13): "supported"; "refused", firmware that answers
    # the argument with ERROR (552); "ignored", firmware that takes it and behaves as in
    # buffer mode ("recv" without data, AT+QIRD).
    direct_push: Literal["supported", "refused", "ignored"] = "supported"
    # AT+QISENDEX (§2.9); False: firmware without it, which answers it with ERROR.
    hex_send: bool = True


# Status URCs real modules volunteer (§7 boot URCs, +QIND indications) that answer no command
# the driver sends; the chatter knob puts them where they hurt most, between a command's echo
# and its final result and right after the data prompt (§9.1, §10).
CHATTER_URCS = ('+QIND: "csq",24,99', "+QIND: SMS DONE", "+QUSIM: 1", '+QIND: "act","LTE"')


# Commands that print one field of the profile (at-protocol.md §7).
IDENTITY_COMMANDS = {
    "GMI": "manufacturer",
    "CGMI": "manufacturer",
    "GMM": "model",
    "CGMM": "model",
    "GMR": "revision",
    "CGMR": "revision",
    "QGMR": "revision",
    "GSN": "imei",
    "CGSN": "imei",
}


# --- actions for the shell ------------------------------------------------------------------


Action = OpenTcp | OpenSsl | SendTcp | CloseTcp | HttpRequest | HttpBody
SocketKind = Literal["TCP", "SSL"]


class SocketState(enum.IntEnum):
    """``<socket_state>`` of AT+QISTATE (§2.6)."""

    INITIAL = 0
    OPENING = 1
    CONNECTED = 2
    LISTENING = 3
    CLOSING = 4


@dataclass
class _Socket:
    socket_id: int
    context_id: int
    host: str
    remote_port: int
    access_mode: int
    kind: SocketKind = "TCP"
    ssl_context: int = 0  # the AT+QSSLCFG context of an SSL socket
    state: SocketState = SocketState.OPENING
    local_port: int = 0
    rx: bytearray = field(default_factory=bytearray)
    total_received: int = 0
    total_read: int = 0
    recv_reported: bool = False  # a "recv" URC is out and the buffer has not been drained since
    total_sent: int = 0
    acked: int = 0

    @property
    def unacked(self) -> int:
        return self.total_sent - self.acked


@dataclass
class _Context:
    context_type: int = 1
    apn: str = ""
    username: str = ""
    password: str = ""
    auth: int = 0
    active: bool = False


@dataclass
class _SendInput:
    """Raw data being taken after the ``>`` prompt of AT+QISEND."""

    socket_id: int
    length: int | None  # None: variable length, ends with Ctrl-Z
    deadline: float
    data: bytearray = field(default_factory=bytearray)


class QuectelModule(HttpCommands, FtpCommands):
    """The command interpreter. Feed it with :meth:`receive` and the network event methods;
    collect :meth:`take_output` (units of bytes never to be split by injected noise) and
    :meth:`take_actions`; call :meth:`tick` at :meth:`next_deadline`."""

    def __init__(
        self, profile: ModuleProfile | None = None, *, now: float = 0.0, seed: int = 0
    ) -> None:
        self.profile = profile or ModuleProfile()
        self.rng = random.Random(seed)
        # Knobs a test may turn at any time.
        self.response_delay = 0.0
        self.muted = False
        self.send_fail_rate = 0.0
        self.pdp_failures = 0
        self.chatter = 0.0  # chance of a status URC between a command's echo and its answer
        # Texts, or (text, raw bytes after it) for a URC carrying data such as a direct push.
        self.chatter_urcs: tuple[str | tuple[str, bytes], ...] = CHATTER_URCS
        self.refused_sends: set[int] = set()  # sockets whose every QISEND gets SEND FAIL
        self.send_result_delay = 0.0  # the next QISEND's result comes this much later (once)
        self.most_sockets_held = 0  # the most socket ids taken at one time, ever (TCP and SSL)
        # After this many AT+QSSLOPENs since power-on every one answers 552 until a reboot:
        # the EG800K's degraded SSL stack (§3.2, §9.11).
        self.ssl_degrade_after: int | None = None
        self.network_time_offset = 0.0  # seconds the network's clock is ahead of true UTC
        self.network_epoch = DEFAULT_NETWORK_EPOCH  # the network's UTC at now == 0
        self.ctzu = 0  # AT+CTZU, saved to NV by the module itself, so it survives reboots
        self._last_now = now
        self.log: list[str] = []  # commands as received, for transcripts
        self._output: list[bytes] = []
        self._actions: list[Action] = []
        self._timers: list[tuple[float, int, Callable[[float], None]]] = []
        self._timer_seq = 0
        self._reply: list[str] = []
        self._reply_raw: bytes | None = None
        self._extra_delay = 0.0
        self._after_reply: Callable[[float], None] | None = None
        self._init_http(ModuleStorage(self.profile.ufs_size, self.profile.ram_size))
        self._init_ftp()
        self._set_clock(CLOCK_AT_POWER_ON.timestamp(), 0, now)
        self._power_on(now)

    # -- power --

    def power_on(self, now: float) -> None:
        """Switch the module on at ``now`` (the shell's clock): RDY after the boot time. The
        clock starts unset; a reset (:meth:`reboot`) keeps it, as the RTC is kept "until the
        module is fully disconnected from power" (EC2x AT manual, AT+CCLK)."""
        self._timers.clear()
        self._set_clock(CLOCK_AT_POWER_ON.timestamp(), 0, now)
        self._power_on(now)

    def _power_on(self, now: float) -> None:
        self.echo = True
        self.cmee = 1
        self.payload_echo = False
        self.recvind = False
        self.cfun = 1
        self.reg_urc = {"CREG": 0, "CGREG": 0, "CEREG": 0}
        self.in_coverage = True  # False: a coverage hole (tunnel, basement car park)
        self.sim_state = self.profile.sim
        self.pin_attempts = 3
        self.contexts: dict[int, _Context] = {}
        self.sockets: dict[int, _Socket] = {}
        self.refused_sends.clear()
        self.ssl_opens = 0  # AT+QSSLOPENs since power-on, for ssl_degrade_after
        self._was_registered = False
        self._nitz: tuple[float, float] | None = None  # (network UTC, now) of the last NITZ
        self.last_error = 0
        self._inbuf = bytearray()
        self._input: _SendInput | None = None
        self._reset_http()
        self._reset_ftp()
        self._busy_until = now
        self._booting = True
        self._powered = True
        self._booted_at = now + self.profile.boot_time
        self._radio_on_at = self._booted_at
        self._at(self._booted_at, self._announce_boot)

    def _announce_boot(self, now: float) -> None:
        self._booting = False
        for urc in ("RDY", "+CFUN: 1"):
            self._urc(urc)
        if self.sim_state is SimState.READY:
            self._urc("+CPIN: READY")
        elif self.sim_state is SimState.PIN:
            self._urc("+CPIN: SIM PIN")
        if self.sim_state is not SimState.ABSENT:
            self._urc("+QUSIM: 1")
            self._urc("+QIND: SMS DONE")
            self._urc("+QIND: PB DONE")
        self._expect_registration()

    @property
    def booted(self) -> bool:
        """Powered, past RDY, and taking commands."""
        return self._powered and not self._booting

    def reboot(self, now: float) -> None:
        """The module resets (AT+CFUN=1,1, a watchdog, a brown-out): everything is lost."""
        for sock in self.sockets.values():
            if sock.state in (SocketState.OPENING, SocketState.CONNECTED):
                self._actions.append(CloseTcp(sock.socket_id, abort=True))
        self._timers.clear()
        self._power_on(now)

    def power_down(self, now: float) -> None:
        """AT+QPOWD: the module says POWERED DOWN and then nothing at all."""
        for sock in self.sockets.values():
            self._actions.append(CloseTcp(sock.socket_id, abort=True))
        self.sockets.clear()
        self._timers.clear()
        self._drop_ftp_session()
        self._urc("POWERED DOWN")
        self._powered = False

    # -- host side --

    def receive(self, data: bytes, now: float) -> None:
        if self.muted or not self._powered or self._booting:
            return  # a hung, unpowered or booting module hears nothing
        self._last_now = now
        self._inbuf += data
        self._process(now)

    def tick(self, now: float) -> None:
        self._last_now = now
        self.poll_ftp()
        while self._timers and self._timers[0][0] <= now:
            _, _, callback = heapq.heappop(self._timers)
            callback(now)
        if self._input is not None and now >= self._input.deadline:
            self._input_timed_out()
        if self.data_input is not None and now >= self.data_input.deadline:
            self.data_input_timed_out()
        self._process(now)

    def next_deadline(self) -> float | None:
        # A busy module always has a timer for the end of its busy time, so that is covered.
        times = [t for t, _, _ in self._timers[:1]]
        if self._input is not None:
            times.append(self._input.deadline)
        if self.data_input is not None:
            times.append(self.data_input.deadline)
        if self.ftp_waiting:
            times.append(self._last_now + FTP_POLL)  # the FTP network's events (quectel_ftp)
        return min(times) if times else None

    def take_output(self) -> list[bytes]:
        out, self._output = self._output, []
        return [] if self.muted else out

    def take_actions(self) -> list[Action]:
        self.take_ftp_actions()
        actions: list[Action] = [*self._actions, *self.http_actions]
        self._actions, self.http_actions = [], []
        return actions

    def _at(self, when: float, callback: Callable[[float], None]) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, callback))

    def _process(self, now: float) -> None:
        while (
            self._inbuf
            and now >= self._busy_until
            and self._powered
            and not self._booting
            and self.http_connecting is None
        ):
            if self._input is not None:
                self._take_send_data(now)
                continue
            if self.data_input is not None:
                self.take_data_input(self._inbuf, now)
                continue
            cr = self._inbuf.find(b"\r")
            if cr < 0:
                return
            raw = bytes(self._inbuf[: cr + 1])
            del self._inbuf[: cr + 1]
            if self.echo:
                self._output.append(raw)
            self._chatter()
            self._command_line(raw[:-1], now)

    # -- command lines --

    def _command_line(self, raw: bytes, now: float) -> None:
        # The module ignores what comes before "AT" (a stray Ctrl-Z or LF after a payload, §9.7)
        # and ignores a line with no "AT" in it at all.
        text = raw.decode("latin-1")
        start = text.upper().find("AT")
        if start < 0:
            return
        body = text[start + 2 :].strip()
        self.log.append("AT" + body)
        self._check_registration(now)
        self._reply = []
        self._reply_raw = None
        self._extra_delay = 0.0
        self._after_reply = None
        final = self._execute(body, now)
        self._finish(final, now)

    def _finish(self, final: str | None, now: float) -> None:
        unit = b""
        if self._reply:
            unit += b"\r\n" + "\r\n".join(self._reply).encode("latin-1") + b"\r\n"
        if self._reply_raw is not None:
            unit += self._reply_raw
        if final is not None:
            unit += b"\r\n" + final.encode("latin-1") + b"\r\n"
        after = self._after_reply
        delay = self.response_delay + self._extra_delay
        if delay <= 0:
            self._emit(unit)
            if after is not None:
                after(now)
            return
        self._busy_until = now + delay

        def deliver(at: float) -> None:
            self._emit(unit)
            if after is not None:
                after(at)

        self._at(now + delay, deliver)

    def _emit(self, unit: bytes) -> None:
        if unit:
            self._output.append(unit)

    def _urc(self, text: str, raw: bytes = b"") -> None:
        self._output.append(b"\r\n" + text.encode("latin-1") + b"\r\n" + raw)

    def _chatter(self) -> None:
        if self.chatter and self.rng.random() < self.chatter:
            # A URC's text, or its text and the raw bytes that follow it (a direct push).
            chosen = self.rng.choice(self.chatter_urcs)
            text, raw = (chosen, b"") if isinstance(chosen, str) else chosen
            self._urc(text, raw)

    def _cme(self, code: int) -> str:
        if self.cmee == 0:
            return "ERROR"
        if self.cmee == 1:
            return f"+CME ERROR: {code}"
        return f"+CME ERROR: {CME_TEXT.get(code, 'unknown')}"

    def _qi_error(self, code: int) -> str:
        self.last_error = code
        return "ERROR"

    def _execute(self, body: str, now: float) -> str | None:
        if body == "":
            return "OK"
        upper = body.upper()
        if not upper.startswith("+"):
            return self._basic(upper)
        name_end = len(body)
        for i, char in enumerate(body):
            if char in "=?":
                name_end = i
                break
        name = upper[1:name_end]
        rest = body[name_end:]
        args: list[str] = []
        if rest == "=?":
            form = "test"
        elif rest == "?":
            form = "read"
        elif rest.startswith("="):
            parsed = _arguments(rest[1:])
            if parsed is None:
                return self._syntax_error(name)
            form, args = "write", parsed
        elif rest == "":
            form = "exec"
        else:
            return self._syntax_error(name)
        field_name = IDENTITY_COMMANDS.get(name)
        if field_name is not None:
            # Execute (and, for AT+GSN=<n>, write) forms print one identity value (§7).
            if form in ("exec", "write"):
                self._reply.append(getattr(self.profile, field_name))
            return "OK"
        handler = getattr(self, f"_cmd_{name.lower().replace('&', '_')}", None)
        if handler is None:
            return "ERROR"
        result: str | None = handler(form, args, now)
        return result

    def _syntax_error(self, name: str) -> str:
        return "ERROR" if name.startswith("QI") else self._cme(50)

    def _basic(self, upper: str) -> str:
        # V.25ter basic commands this module gets asked for.
        if upper in ("E0", "E1", "E"):
            self.echo = upper == "E1"
            return "OK"
        if upper in ("I", "I0"):
            self._reply += [
                self.profile.manufacturer,
                self.profile.model,
                f"Revision: {self.profile.revision}",
            ]
            return "OK"
        if upper in ("Z", "Z0", "&F", "&F0", "&W", "&W0", "V1", "Q0", "&D2", "&C1"):
            return "OK"
        return "ERROR"  # ATV0 (numeric results) and the rest are not modelled

    # -- identity, SIM, network (§7) --

    def _sim_busy(self, now: float) -> bool:
        return now < self._booted_at + self.profile.sim_busy_for

    def _sim_error(self, now: float) -> str | None:
        if self.sim_state is SimState.ABSENT:
            return self._cme(10)
        if self._sim_busy(now):
            return self._cme(14)
        if self.sim_state is SimState.PIN:
            return self._cme(11)
        if self.sim_state is SimState.PUK:
            return self._cme(12)
        return None

    def _cmd_cimi(self, form: str, args: list[str], now: float) -> str:
        error = self._sim_error(now)
        if error is not None:
            return error
        if form == "exec":
            self._reply.append(self.profile.imsi)
        return "OK"

    def _cmd_qccid(self, form: str, args: list[str], now: float) -> str:
        if self.sim_state is SimState.ABSENT:
            return self._cme(10)
        if form == "exec":
            self._reply.append(f"+QCCID: {self.profile.iccid}")
        return "OK"

    def _cmd_cmee(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append("+CMEE: (0-2)")
        elif form == "read":
            self._reply.append(f"+CMEE: {self.cmee}")
        elif form == "write":
            if len(args) != 1 or args[0] not in ("0", "1", "2"):
                return self._cme(50)
            self.cmee = int(args[0])
        return "OK"

    def _cmd_cpin(self, form: str, args: list[str], now: float) -> str:
        if form == "read":
            if self.sim_state is SimState.ABSENT:
                return self._cme(10)
            if self._sim_busy(now):
                return self._cme(14)
            code = {SimState.READY: "READY", SimState.PIN: "SIM PIN", SimState.PUK: "SIM PUK"}[
                self.sim_state
            ]
            self._reply.append(f"+CPIN: {code}")
            return "OK"
        if form == "write":
            if self.sim_state is not SimState.PIN:
                return self._cme(3)
            if len(args) < 1:
                return self._cme(50)
            if args[0] == self.profile.sim_pin:
                self.sim_state = SimState.READY
                self._after_reply = lambda _t: self._urc("+CPIN: READY")
                return "OK"
            self.pin_attempts -= 1
            if self.pin_attempts <= 0:
                self.sim_state = SimState.PUK
            return self._cme(16)
        return "OK"

    def _cmd_csq(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append("+CSQ: (0-31,99),(0-7,99)")
        elif form == "exec":
            rssi, ber = (self.profile.rssi, self.profile.ber) if self.cfun == 1 else (99, 99)
            self._reply.append(f"+CSQ: {rssi},{ber}")
        return "OK"

    def _registration(self, now: float) -> int:
        if self.cfun != 1 or self.sim_state is not SimState.READY:
            return 0
        if now < self._radio_on_at + self.profile.registered_after or not self.in_coverage:
            return 2  # not registered, searching
        return self.profile.registration_stat

    def _registered(self, now: float) -> bool:
        return self._registration(now) in (1, 5)

    def _reg_query(self, name: str, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append(f"+{name}: (0-2)")
        elif form == "read":
            n = self.reg_urc[name]
            stat = self._registration(now)
            line = f"+{name}: {n},{stat}"
            if n == 2 and stat in (1, 5):
                line += f',"1A2B","0C3D4E5",{self.profile.access_technology}'
            self._reply.append(line)
        elif form == "write":
            if len(args) != 1 or args[0] not in ("0", "1", "2"):
                return self._cme(50)
            self.reg_urc[name] = int(args[0])
        return "OK"

    def _cmd_creg(self, form: str, args: list[str], now: float) -> str:
        return self._reg_query("CREG", form, args, now)

    def _cmd_cgreg(self, form: str, args: list[str], now: float) -> str:
        return self._reg_query("CGREG", form, args, now)

    def _cmd_cereg(self, form: str, args: list[str], now: float) -> str:
        return self._reg_query("CEREG", form, args, now)

    def _cmd_cops(self, form: str, args: list[str], now: float) -> str:
        if form == "read":
            if self._registered(now):
                self._reply.append(
                    f'+COPS: 0,0,"{self.profile.operator}",{self.profile.access_technology}'
                )
            else:
                self._reply.append("+COPS: 0")
        return "OK"

    def _cmd_cgatt(self, form: str, args: list[str], now: float) -> str:
        if form == "read":
            self._reply.append(f"+CGATT: {1 if self._registered(now) else 0}")
        return "OK"

    def _cmd_cfun(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append("+CFUN: (0,1,4),(0,1)")
            return "OK"
        if form == "read":
            self._reply.append(f"+CFUN: {self.cfun}")
            return "OK"
        if form != "write" or not args or args[0] not in ("0", "1", "4"):
            return self._cme(50)
        fun = int(args[0])
        if len(args) > 1 and args[1] == "1":
            if fun != 1:
                return self._cme(50)
            self._after_reply = self.reboot
            return "OK"
        if fun != 1:
            for ctx_id, ctx in self.contexts.items():
                if ctx.active:
                    self._deactivate(ctx_id)
        elif self.cfun != 1:
            self._radio_on_at = now
        self.cfun = fun
        if fun == 1:
            self._expect_registration()
        return "OK"

    def _cmd_qpowd(self, form: str, args: list[str], now: float) -> str:
        self._after_reply = self.power_down
        return "OK"

    def _cmd_qurccfg(self, form: str, args: list[str], now: float) -> str:
        if form == "write" and args and args[0] == "urcport":
            if len(args) == 1:
                self._reply.append('+QURCCFG: "urcport","uart1"')
            return "OK"
        return self._cme(50)

    # -- the module clock (§7, §9.13; 3GPP TS 27.007 §8.15) --

    def _set_clock(self, utc: float, quarters: int, now: float) -> None:
        self._clock_utc = utc  # UTC epoch seconds at now
        self._clock_set_at = now
        self._clock_zone = quarters  # local time = UTC + quarters x 15 min (+CCLK's ±zz)

    def clock_utc(self, now: float) -> datetime:
        """What the module clock says at ``now`` (the shell's clock), as UTC."""
        return datetime.fromtimestamp(self._clock_utc + (now - self._clock_set_at), UTC)

    def network_utc(self, now: float) -> float:
        """The network's time at ``now`` (UTC epoch), shifted by :attr:`network_time_offset`."""
        return self.network_epoch + now + self.network_time_offset

    def _module_time(self) -> float:
        return self.clock_utc(self._last_now).timestamp()

    def _checkhost_supported(self) -> bool:
        return self.profile.checkhost_option

    def _expect_registration(self) -> None:
        """Look again when registration is due, so NITZ arrives on time (not at the next
        command)."""
        self._at(
            self._radio_on_at + self.profile.registered_after,
            lambda now: self._check_registration(now, announce=True),
        )

    def _check_registration(self, now: float, *, announce: bool = False) -> None:
        registered = self._registered(now)
        if announce and registered and not self._was_registered:
            self._announce_registration(self._registration(now))
        if registered and not self._was_registered and self.profile.nitz:
            # The network sends its time (NITZ) at registration; with AT+CTZU on, the module
            # sets its clock from it (§7).
            self._nitz = (self.network_utc(now), now)
            if self.ctzu:
                self._set_clock(self.network_utc(now), 0, now)
        self._was_registered = registered

    def _cmd_cclk(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            return "OK"
        if form == "read":
            local = self.clock_utc(now) + timedelta(minutes=15 * self._clock_zone)
            sign = "-" if self._clock_zone < 0 else "+"
            self._reply.append(
                f'+CCLK: "{local:%y/%m/%d,%H:%M:%S}{sign}{abs(self._clock_zone):02d}"'
            )
            return "OK"
        parsed = _cclk_time(args[0]) if form == "write" and len(args) == 1 else None
        if parsed is None:
            return self._cme(50)
        utc, quarters = parsed
        self._set_clock(utc, quarters, now)
        return "OK"

    def _cmd_ctzu(self, form: str, args: list[str], now: float) -> str:
        # EC2x AT manual: 0 off, 1 on, 3 on and the local time written to the RTC; the
        # simulator's clock is UTC-only (+00), so 1 and 3 both set it.
        if form == "test":
            self._reply.append("+CTZU: (0,1,3)")
            return "OK"
        if form == "read":
            self._reply.append(f"+CTZU: {self.ctzu}")
            return "OK"
        if form != "write" or args not in (["0"], ["1"], ["3"]):
            return self._cme(50)
        self.ctzu = int(args[0])
        if self.ctzu and self.profile.nitz and self._registered(now):
            self._set_clock(self.network_utc(now), 0, now)
        return "OK"

    def _cmd_qlts(self, form: str, args: list[str], now: float) -> str:
        # Mode 0 (and the bare command): the time the network last sent; 1 the current UTC
        # and 2 the current local time computed from it (EC2x AT manual) - UTC here, +00.
        # Nothing received since power-on: +QLTS: "".
        if form == "test":
            self._reply.append("+QLTS: (0-2)")
            return "OK"
        if form == "exec":
            mode = 0
        elif form == "write" and args in (["0"], ["1"], ["2"]):
            mode = int(args[0])
        else:
            return self._cme(50)
        if self._nitz is None:
            self._reply.append('+QLTS: ""')
            return "OK"
        sent, at = self._nitz
        when = datetime.fromtimestamp(sent if mode == 0 else sent + (now - at), UTC)
        self._reply.append(f'+QLTS: "{when:%Y/%m/%d,%H:%M:%S}+00,0"')
        return "OK"

    # -- PDP contexts (§2.1-§2.3) --

    def _context_active(self, context_id: int) -> bool:
        ctx = self.contexts.get(context_id)
        return ctx is not None and ctx.active

    def _context_id(self, value: str) -> int | None:
        if value.isdigit() and 1 <= int(value) <= self.profile.max_context:
            return int(value)
        return None

    def _cmd_qicsgp(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append(
                f'+QICSGP: (1-{self.profile.max_context}),(1-3),"APN","UserName","Password",(0-3)'
            )
            return "OK"
        if form != "write" or not args:
            return "ERROR"
        ctx_id = self._context_id(args[0])
        if ctx_id is None:
            return "ERROR"
        ctx = self.contexts.setdefault(ctx_id, _Context())
        if len(args) == 1:
            self._reply.append(
                f'+QICSGP: {ctx.context_type},"{ctx.apn}","{ctx.username}",'
                f'"{ctx.password}",{ctx.auth}'
            )
            return "OK"
        if args[1] not in ("1", "2", "3") or len(args) not in (3, 5, 6):
            return "ERROR"
        if len(args) == 6 and args[5] not in ("0", "1", "2", "3"):
            return "ERROR"
        ctx.context_type = int(args[1])
        ctx.apn = args[2]
        ctx.username, ctx.password = (args[3], args[4]) if len(args) >= 5 else ("", "")
        ctx.auth = int(args[5]) if len(args) == 6 else 0
        return "OK"

    def _cmd_qiact(self, form: str, args: list[str], now: float) -> str | None:
        if form == "test":
            self._reply.append(f"+QIACT: (1-{self.profile.max_context})")
            return "OK"
        if form == "read":
            for active_id in sorted(self.contexts):
                active = self.contexts[active_id]
                if active.active:
                    self._reply.append(
                        f'+QIACT: {active_id},1,{active.context_type},"{self.profile.ip_address}"'
                    )
            return "OK"
        if form != "write" or len(args) != 1:
            return "ERROR"
        ctx_id = self._context_id(args[0])
        if ctx_id is None:
            return self._qi_error(552)
        ctx = self.contexts.setdefault(ctx_id, _Context())
        if ctx.active:
            # Activating an active context fails on real units (at-protocol.md §2.2).
            return self._qi_error(561)
        self._extra_delay = self.profile.pdp_activation_time
        failed = (
            not self._registered(now)
            or self.pdp_failures > 0
            or (self.profile.required_apn is not None and ctx.apn != self.profile.required_apn)
        )
        if failed:
            self.pdp_failures = max(0, self.pdp_failures - 1)
            return self._qi_error(561)
        ctx.active = True
        self.last_error = 0
        return "OK"

    def _cmd_qideact(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append(f"+QIDEACT: (1-{self.profile.max_context})")
            return "OK"
        if form != "write" or len(args) != 1:
            return "ERROR"
        ctx_id = self._context_id(args[0])
        if ctx_id is None:
            return self._qi_error(552)
        self._deactivate(ctx_id)
        return "OK"

    def _deactivate(self, ctx_id: int) -> None:
        ctx = self.contexts.get(ctx_id)
        if ctx is not None:
            ctx.active = False
        self.ftp_network_lost(ctx_id)
        # AT+QIDEACT "closes all sockets of that context" (§2.3).
        for sock_id in [s.socket_id for s in self.sockets.values() if s.context_id == ctx_id]:
            sock = self.sockets.pop(sock_id)
            self.refused_sends.discard(sock_id)
            if sock.state in (SocketState.OPENING, SocketState.CONNECTED):
                self._actions.append(CloseTcp(sock_id, abort=True))

    # -- sockets (§2.4-§2.12) --

    def _socket_arg(self, value: str) -> int | None:
        if value.isdigit() and int(value) in SOCKET_IDS:
            return int(value)
        return None

    def _cmd_qiopen(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append(
                f"+QIOPEN: (1-{self.profile.max_context}),(0-11),"
                '"TCP/UDP/TCP LISTENER/UDP SERVICE","<IP_address>/<domain_name>",'
                "<remote_port>,<local_port>,(0-2)"
            )
            return "OK"
        if form != "write" or not 5 <= len(args) <= 7:
            return self._qi_error(552)
        ctx_id = self._context_id(args[0])
        sock_id = self._socket_arg(args[1])
        if ctx_id is None or sock_id is None or not args[4].isdigit():
            return self._qi_error(552)
        if args[2].upper() != "TCP":
            return self._qi_error(555)  # UDP and listeners are not modelled
        mode = args[6] if len(args) == 7 else "0"
        if mode not in ("0", "1"):
            return self._qi_error(555)  # transparent mode is not modelled
        taken = self._push_support(mode)
        if taken is None:
            return self._qi_error(552)
        mode = taken
        ctx = self.contexts.get(ctx_id)
        if ctx is None or not ctx.active:
            return self._qi_error(572)
        if sock_id in self.sockets:
            # The id is still taken (open, or closed by the peer but not yet by AT+QICLOSE):
            # real modules accept the command and refuse by URC (field logs of EC2x/BG9x
            # drivers match "OK" then "+QIOPEN: <id>,563").
            self.last_error = 563
            self._after_reply = lambda _t: self._urc(f"+QIOPEN: {sock_id},563")
            return "OK"
        sock = _Socket(sock_id, ctx_id, args[3], int(args[4]), int(mode))
        self.sockets[sock_id] = sock
        self.most_sockets_held = max(self.most_sockets_held, len(self.sockets))
        self.last_error = 0
        self._after_reply = lambda _t: self._actions.append(
            OpenTcp(sock_id, sock.host, sock.remote_port)
        )
        return "OK"

    def _push_support(self, mode: str) -> str | None:
        """The access mode the firmware really uses; None when it refuses the argument."""
        if mode != "1" or self.profile.direct_push == "supported":
            return mode
        return None if self.profile.direct_push == "refused" else "0"

    def _cmd_qiclose(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append("+QICLOSE: (0-11),(0-65535)")
            return "OK"
        return self._close(form, args, "TCP")

    def _close(self, form: str, args: list[str], kind: SocketKind) -> str:
        """AT+QICLOSE / AT+QSSLCLOSE (§2.5, §3.5): the id is free again, whatever its state."""
        if form != "write" or not 1 <= len(args) <= 2:
            return self._qi_error(552)
        sock_id = self._socket_arg(args[0])
        if sock_id is None or (len(args) == 2 and not _in_range(args[1], 0, 65535)):
            return self._qi_error(552)
        sock = self._socket_of(sock_id, kind)
        if isinstance(sock, str):
            return sock
        self.sockets.pop(sock_id, None)
        if sock is not None and sock.state in (SocketState.OPENING, SocketState.CONNECTED):
            self._actions.append(CloseTcp(sock_id, abort=False))
        self.refused_sends.discard(sock_id)
        self.last_error = 0
        return "OK"

    def _socket_of(self, sock_id: int | None, kind: SocketKind) -> _Socket | str | None:
        """The socket ``sock_id`` if it is of ``kind``; None if the id is free; "ERROR" (552)
        if the id is a socket of the other kind. The manuals do not say what QISEND on an SSL
        id answers; 552 "invalid parameters" names the mistake (the wrong command family for
        the id) better than 567 "socket has been closed", which a driver takes for a peer
        close."""
        sock = self.sockets.get(sock_id) if sock_id is not None else None
        if sock is not None and sock.kind != kind:
            return self._qi_error(552)
        return sock

    def _cmd_qistate(self, form: str, args: list[str], now: float) -> str:
        # TCP sockets only: SSL sockets are listed by AT+QSSLSTATE (§2.6, §3.5).
        if form == "test":
            return "OK"
        chosen = [s for s in self.sockets.values() if s.kind == "TCP"]
        if form == "write":
            if len(args) != 2 or args[0] not in ("0", "1") or not args[1].isdigit():
                return self._qi_error(552)
            key = int(args[1])
            chosen = [s for s in chosen if (s.context_id if args[0] == "0" else s.socket_id) == key]
        for sock in sorted(chosen, key=lambda s: s.socket_id):
            self._reply.append(
                f'+QISTATE: {sock.socket_id},"TCP","{sock.host}",{sock.remote_port},'
                f"{sock.local_port},{int(sock.state)},{sock.context_id},0,{sock.access_mode},"
                '"uart1"'
            )
        return "OK"

    def _cmd_qigeterror(self, form: str, args: list[str], now: float) -> str:
        self._reply.append(
            f"+QIGETERROR: {self.last_error},{QI_ERROR_TEXT.get(self.last_error, 'unknown error')}"
        )
        return "OK"

    def _cmd_qisde(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append("+QISDE: (0,1)")
        elif form == "read":
            self._reply.append(f"+QISDE: {int(self.payload_echo)}")
        elif form == "write":
            if args not in (["0"], ["1"]):
                return "ERROR"
            self.payload_echo = args == ["1"]
        return "OK"

    def _cmd_qicfg(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply += ['+QICFG: "recvind",(0,1)', '+QICFG: "transpktsize",(1-1460)']
            return "OK"
        if form != "write" or not args:
            return "ERROR"
        if args[0] == "recvind":
            if len(args) == 1:
                self._reply.append(f'+QICFG: "recvind",{int(self.recvind)}')
            elif args[1] in ("0", "1"):
                self.recvind = args[1] == "1"
            else:
                return "ERROR"
            return "OK"
        return "ERROR"  # other options are not modelled

    def _cmd_qisend(self, form: str, args: list[str], now: float) -> str | None:
        if form == "test":
            self._reply.append("+QISEND: (0-11),(0-1460)")
            return "OK"
        if form != "write" or not 1 <= len(args) <= 2:
            return self._qi_error(552)
        sock_id = self._socket_arg(args[0])
        if sock_id is None:
            return self._qi_error(552)
        sock = self._socket_of(sock_id, "TCP")
        if isinstance(sock, str):
            return sock
        if len(args) == 2 and args[1] == "0":
            # Query form: +QISEND: <total_send_length>,<ackedbytes>,<unackedbytes>
            if sock is None:
                return self._qi_error(567)
            self._reply.append(f"+QISEND: {sock.total_sent},{sock.acked},{sock.unacked}")
            return "OK"
        return self._send_prompt(sock, args)

    def _cmd_qisendex(self, form: str, args: list[str], now: float) -> str | None:
        """AT+QISENDEX=<connectID>,"<hex_string>" (§2.9): the data in the command line as hex
        digits, at most 512 bytes; no prompt, the result as AT+QISEND's."""
        if not self.profile.hex_send:
            return "ERROR"
        if form == "test":
            self._reply.append("+QISENDEX: (0-11),<hex_string>")
            return "OK"
        if form != "write" or len(args) != 2:
            return self._qi_error(552)
        sock_id, digits = self._socket_arg(args[0]), args[1]
        bad_digits = len(digits) % 2 or len(digits) > 2 * MAX_HEX_SEND or not _HEX.fullmatch(digits)
        if sock_id is None or bad_digits:
            return self._qi_error(552)
        if isinstance(wrong_kind := self._socket_of(sock_id, "TCP"), str):
            return wrong_kind
        # The result is this command's final result, after the same delays as AT+QISEND's.
        self._extra_delay += self.send_result_delay
        self.send_result_delay = 0.0
        return self._send_result(sock_id, bytes.fromhex(digits))

    def _send_prompt(self, sock: _Socket | None, args: list[str]) -> str | None:
        """The ``> `` prompt of AT+QISEND / AT+QSSLSEND (§2.7, §3.3), or why not."""
        if sock is None or sock.state is not SocketState.CONNECTED:
            return self._qi_error(567)
        length: int | None = None
        if len(args) == 2:
            if not _in_range(args[1], 1, MAX_SEND):
                return self._qi_error(552)
            length = int(args[1])
        self._reply_raw = b"\r\n> "
        sock_id = sock.socket_id

        def open_input(at: float) -> None:
            self._input = _SendInput(sock_id, length, at + self.profile.send_input_timeout)
            self._chatter()

        self._after_reply = open_input
        return None

    def _take_send_data(self, now: float) -> None:
        pending = self._input
        assert pending is not None
        if pending.length is not None:
            take = min(pending.length - len(pending.data), len(self._inbuf))
            chunk = bytes(self._inbuf[:take])
            del self._inbuf[:take]
            pending.data += chunk
            if self.payload_echo:
                self._output.append(chunk)
            if len(pending.data) == pending.length:
                self._input = None
                self._send_data(pending, now)
            return
        # Variable length: data ends at Ctrl-Z (send) or ESC (cancel), which is why it cannot
        # carry binary WebSocket frames (§2.7, §9.7).
        for i, byte in enumerate(self._inbuf):
            if byte in (CTRL_Z, ESC):
                chunk = bytes(self._inbuf[:i])
                del self._inbuf[: i + 1]
                pending.data += chunk
                if self.payload_echo:
                    self._output.append(chunk)
                self._input = None
                if byte == ESC:
                    self.last_error = 571
                    self._output.append(b"\r\nERROR\r\n")
                elif len(pending.data) > MAX_SEND:
                    self.last_error = 552
                    self._output.append(b"\r\nERROR\r\n")
                else:
                    self._send_data(pending, now)
                return
        pending.data += self._inbuf
        if self.payload_echo:
            self._output.append(bytes(self._inbuf))
        self._inbuf.clear()

    def _send_result(self, socket_id: int, data: bytes) -> str:
        """What the module does with data to send (AT+QISEND's or AT+QISENDEX's) and its
        result: SEND OK (taken into the send buffer), SEND FAIL (buffer full), ERROR."""
        sock = self.sockets.get(socket_id)
        if sock is None or sock.state is not SocketState.CONNECTED:
            self.last_error = 567
            return "ERROR"
        if (
            sock.unacked + len(data) > self.profile.send_buffer
            or sock.socket_id in self.refused_sends
            or (self.send_fail_rate and self.rng.random() < self.send_fail_rate)
        ):
            return "SEND FAIL"
        sock.total_sent += len(data)
        self._actions.append(SendTcp(sock.socket_id, data))
        return "SEND OK"

    def _send_data(self, pending: _SendInput, now: float) -> None:
        result = self._send_result(pending.socket_id, bytes(pending.data))
        delay = self.response_delay + self.send_result_delay
        self.send_result_delay = 0.0
        if delay > 0:
            self._busy_until = now + delay
            self._at(now + delay, lambda _t: self._output.append(f"\r\n{result}\r\n".encode()))
        else:
            self._output.append(f"\r\n{result}\r\n".encode())

    def _input_timed_out(self) -> None:
        # The host promised bytes after the prompt and stopped short.
        self._input = None
        self.last_error = 569
        self._output.append(b"\r\nERROR\r\n")

    def _cmd_qird(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append("+QIRD: (0-11),(0-1500)")
            return "OK"
        if form != "write" or not 1 <= len(args) <= 2:
            return self._qi_error(552)
        sock = self._socket_of(self._socket_arg(args[0]), "TCP")
        if isinstance(sock, str):
            return sock
        if sock is None or sock.state in (SocketState.INITIAL, SocketState.OPENING):
            return self._qi_error(567)
        if len(args) == 2 and args[1] == "0":
            self._reply.append(f"+QIRD: {sock.total_received},{sock.total_read},{len(sock.rx)}")
            return "OK"
        want = MAX_READ
        if len(args) == 2:
            if not _in_range(args[1], 1, MAX_READ):
                return self._qi_error(552)
            want = int(args[1])
        return self._read(sock, want, "+QIRD")

    def _read(self, sock: _Socket, want: int, prefix: str) -> str:
        """``<prefix>: <n>`` and n bytes of the receive buffer, or ``<prefix>: 0`` (§2.8, §3.4)."""
        data = bytes(sock.rx[:want])
        del sock.rx[:want]
        sock.total_read += len(data)
        if data:
            self._reply_raw = f"\r\n{prefix}: {len(data)}\r\n".encode() + data + b"\r\n"
        else:
            self._reply.append(f"{prefix}: 0")
            sock.recv_reported = False  # drained: the next data gets a new URC (§2.8)
        return "OK"

    # -- SSL sockets (§3.2-§3.6): the TCP table, other names --

    def _cmd_qsslopen(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append(
                f"+QSSLOPEN: (1-{self.profile.max_context}),(0-5),(0-11),<serveraddr>,"
                "<server_port>[,(0-2)]"
            )
            return "OK"
        if form != "write" or len(args) not in (5, 6):
            return self._qi_error(552)
        ctx_id = self._context_id(args[0])
        ssl_ctx = int(args[1]) if _in_range(args[1], 0, len(SSL_CONTEXT_IDS) - 1) else None
        sock_id = self._socket_arg(args[2])
        host = args[3]
        if ctx_id is None or ssl_ctx is None or sock_id is None or not host:
            return self._qi_error(552)
        if not _in_range(args[4], 0, 65535):
            return self._qi_error(552)
        mode = args[5] if len(args) == 6 else "0"
        if mode == "2":
            return self._qi_error(555)  # transparent mode (CONNECT) is not modelled
        if mode not in ("0", "1"):
            return self._qi_error(552)
        taken = self._push_support(mode)
        if taken is None:
            return self._qi_error(552)
        mode = taken
        if not self._context_active(ctx_id):
            return self._qi_error(572)
        if sock_id in self.sockets:
            # The id space is QIOPEN's: an id taken by either kind is refused by URC (§3.2).
            self.last_error = 563
            self._after_reply = lambda _t: self._urc(f"+QSSLOPEN: {sock_id},563")
            return "OK"
        port = int(args[4])
        sock = _Socket(sock_id, ctx_id, host, port, int(mode), kind="SSL", ssl_context=ssl_ctx)
        self.sockets[sock_id] = sock
        self.most_sockets_held = max(self.most_sockets_held, len(self.sockets))
        self.last_error = 0
        self.ssl_opens += 1
        if self.ssl_degrade_after is not None and self.ssl_opens > self.ssl_degrade_after:
            # The degraded stack fails every open; the id stays taken until AT+QSSLCLOSE.
            sock.state = SocketState.CLOSING
            self._after_reply = lambda _t: self._urc(f"+QSSLOPEN: {sock_id},552")
            return "OK"
        tls = self.ssl_settings(ssl_ctx, host)
        self._after_reply = lambda _t: self._actions.append(OpenSsl(sock_id, host, port, tls))
        return "OK"

    def _cmd_qsslsend(self, form: str, args: list[str], now: float) -> str | None:
        if form == "test":
            self._reply.append("+QSSLSEND: (0-11),(1-1460)")
            return "OK"
        if form != "write" or not 1 <= len(args) <= 2:
            return self._qi_error(552)
        sock_id = self._socket_arg(args[0])
        if sock_id is None or (len(args) == 2 and args[1] == "0"):
            # No acked-bytes query "=<id>,0" in the BG96 SSL manual (§3.3, §11).
            return self._qi_error(552)
        sock = self._socket_of(sock_id, "SSL")
        if isinstance(sock, str):
            return sock
        return self._send_prompt(sock, args)

    def _cmd_qsslrecv(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append("+QSSLRECV: (0-11),(1-1500)")
            return "OK"
        # <readlen> 1-1500 is required; the "=<id>,0" query is firmware-dependent and absent
        # from the BG96 SSL manual (§3.4, §9.17), so ERROR here: a driver must not need it.
        if form != "write" or len(args) != 2 or not _in_range(args[1], 1, MAX_READ):
            return self._qi_error(552)
        sock = self._socket_of(self._socket_arg(args[0]), "SSL")
        if isinstance(sock, str):
            return sock
        if sock is None or sock.state in (SocketState.INITIAL, SocketState.OPENING):
            return self._qi_error(567)
        return self._read(sock, int(args[1]), "+QSSLRECV")

    def _cmd_qsslclose(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append("+QSSLCLOSE: (0-11),(0-65535)")
            return "OK"
        return self._close(form, args, "SSL")

    def _cmd_qsslstate(self, form: str, args: list[str], now: float) -> str:
        # AT+QSSLSTATE (all SSL sockets) or AT+QSSLSTATE=<clientID> (§3.5); TCP sockets are
        # AT+QISTATE's.
        if form == "test":
            return "OK"
        chosen = [s for s in self.sockets.values() if s.kind == "SSL"]
        if form == "write":
            sock_id = self._socket_arg(args[0]) if len(args) == 1 else None
            if sock_id is None:
                return self._qi_error(552)
            chosen = [s for s in chosen if s.socket_id == sock_id]
        for sock in sorted(chosen, key=lambda s: s.socket_id):
            self._reply.append(
                f'+QSSLSTATE: {sock.socket_id},"SSLClient","{sock.host}",{sock.remote_port},'
                f"{sock.local_port},{int(sock.state)},{sock.context_id},{sock.socket_id},"
                f'{sock.access_mode},"uart1",{sock.ssl_context}'
            )
        return "OK"

    # -- network side (called by the shell) --

    def tcp_opened(self, socket_id: int, local_port: int) -> None:
        """The connection is up (for an SSL socket: the TLS handshake is done too)."""
        sock = self.sockets.get(socket_id)
        if sock is None or sock.state is not SocketState.OPENING:
            return
        sock.state = SocketState.CONNECTED
        sock.local_port = local_port
        self._urc(f"{_open_urc(sock)}: {socket_id},0")

    def tcp_open_failed(self, socket_id: int, code: int) -> None:
        sock = self.sockets.get(socket_id)
        if sock is None or sock.state is not SocketState.OPENING:
            return
        # The id stays taken until the host closes it (§2.4: "if no URC, AT+QICLOSE").
        sock.state = SocketState.CLOSING
        self._urc(f"{_open_urc(sock)}: {socket_id},{code}")

    def connect_failed(self, socket_id: int, failure: OpenFailure) -> str:
        """The connection (or its TLS handshake) failed: 565 for a name the network cannot
        resolve, 566 for everything else, TLS included (§2.4, §3.2, §9.13). Returns the code
        said, for the shell's log."""
        code = 565 if failure.kind is FailureKind.DNS else 566
        self.tcp_open_failed(socket_id, code)
        return str(code)

    def tcp_received(self, socket_id: int, data: bytes) -> None:
        sock = self.sockets.get(socket_id)
        if sock is None or sock.state is not SocketState.CONNECTED or not data:
            return
        sock.total_received += len(data)
        urc = _socket_urc(sock)
        if sock.access_mode == 1:
            # Direct push: the data rides on the URC, at most 1500 bytes each (§2.13, §3.6).
            for i in range(0, len(data), MAX_READ):
                piece = data[i : i + MAX_READ]
                sock.total_read += len(piece)
                self._urc(f'{urc}: "recv",{socket_id},{len(piece)}', piece + b"\r\n")
            return
        was_empty = not sock.rx
        sock.rx += data
        if not sock.recv_reported:
            sock.recv_reported = True
            # "recvind" is an AT+QICFG option: it lengthens +QIURC only (§2.11).
            shows_length = self.recvind and was_empty and sock.kind == "TCP"
            self._urc(f'{urc}: "recv",{socket_id}' + (f",{len(data)}" if shows_length else ""))

    def receive_room(self, socket_id: int) -> int:
        sock = self.sockets.get(socket_id)
        if sock is None:
            return 0
        return max(0, self.profile.receive_buffer - len(sock.rx))

    def tcp_sent(self, socket_id: int, count: int) -> None:
        sock = self.sockets.get(socket_id)
        if sock is not None:
            sock.acked = min(sock.total_sent, sock.acked + count)

    def tcp_closed(self, socket_id: int, *, close_notify: bool = False) -> None:
        """The peer closed (FIN or RST) or the network dropped the connection. A TLS peer's
        close_notify (``close_notify``) makes no difference: "closed" either way (§3.6)."""
        sock = self.sockets.get(socket_id)
        if sock is None or sock.state is not SocketState.CONNECTED:
            return
        sock.state = SocketState.CLOSING  # buffered data stays readable until AT+QICLOSE
        self._urc(f'{_socket_urc(sock)}: "closed",{socket_id}')

    # -- faults a test injects --

    def drop_connection(self, socket_id: int) -> None:
        sock = self.sockets.get(socket_id)
        if sock is not None and sock.state is SocketState.CONNECTED:
            self._actions.append(CloseTcp(socket_id, abort=True))
            self.tcp_closed(socket_id)

    def _announce_registration(self, stat: int) -> None:
        """The +CxREG URCs the host enabled (AT+CREG=1 or 2...) for a change of status."""
        for name, n in self.reg_urc.items():
            if n == 2 and stat in (1, 5):
                self._urc(f'+{name}: {stat},"1A2B","0C3D4E5",{self.profile.access_technology}')
            elif n:
                self._urc(f"+{name}: {stat}")

    def set_coverage(self, covered: bool, now: float) -> None:
        """Drive into (or out of) a coverage hole: registration is lost ("searching", with the
        +CxREG URCs the host enabled), the network drops the PDP contexts and their sockets
        ("pdpdeact"), and AT+QIACT fails until the cell is back."""
        if covered == self.in_coverage:
            return
        self.in_coverage = covered
        self._check_registration(now)
        self._announce_registration(self._registration(now))
        if not covered:
            for context_id in list(self.contexts):
                self.network_deactivates_pdp(context_id)

    def network_deactivates_pdp(self, context_id: int) -> None:
        ctx = self.contexts.get(context_id)
        if ctx is None or not ctx.active:
            return
        ctx.active = False
        self.ftp_network_lost(context_id)
        for sock in self.sockets.values():
            if sock.context_id == context_id and sock.state in (
                SocketState.OPENING,
                SocketState.CONNECTED,
            ):
                self._actions.append(CloseTcp(sock.socket_id, abort=True))
                sock.state = SocketState.CLOSING
        self._urc(f'+QIURC: "pdpdeact",{context_id}')


def _open_urc(sock: _Socket) -> str:
    return "+QSSLOPEN" if sock.kind == "SSL" else "+QIOPEN"


def _socket_urc(sock: _Socket) -> str:
    return "+QSSLURC" if sock.kind == "SSL" else "+QIURC"


def _in_range(text: str, low: int, high: int) -> bool:
    return text.isdigit() and low <= int(text) <= high


def _cclk_time(text: str) -> tuple[float, int] | None:
    """``yy/MM/dd,hh:mm:ss±zz`` (local time, zone in quarter hours -48..+56) as (UTC epoch,
    zone), or None if it is not a valid time."""
    match = _CCLK_TIME.fullmatch(text)
    if match is None:
        return None
    yy, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    quarters = int(match[8]) * (-1 if match[7] == "-" else 1)
    if not -48 <= quarters <= 56:
        return None
    try:
        # Two-digit years: 80-99 are the 1900s (the unset clock reads 80/01/06), the rest 2000s.
        local = datetime(
            (1900 if yy >= 80 else 2000) + yy, month, day, hour, minute, second, tzinfo=UTC
        )
    except ValueError:
        return None
    return (local - timedelta(minutes=15 * quarters)).timestamp(), quarters


def _arguments(text: str) -> list[str] | None:
    """Split an AT argument list: commas separate, double quotes protect, spaces around
    arguments are dropped (the seed 004 log sends ``"", "",1``). None when a quote is open."""
    args: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] == '"':
            close = text.find('"', i + 1)
            if close < 0:
                return None
            value = text[i + 1 : close]
            i = close + 1
            while i < n and text[i] == " ":
                i += 1
            if i < n and text[i] != ",":
                return None
        else:
            comma = text.find(",", i)
            end = n if comma < 0 else comma
            value = text[i:end].strip()
            i = end
        args.append(value)
        if i >= n:
            return args
        i += 1  # the comma
