"""The machinery of the simulated TI SimpleLink CC3220 (SPEC §1-§2): who it is, line framing,
the blocked commands, output units and events, the clock, the NWP's state, the socket table
and the network's answers about it.

The command handlers are mixins on :class:`ModuleCore` (:mod:`.simplelink_sockets`,
:mod:`.simplelink_wlan`, :mod:`.simplelink_files`, :mod:`.simplelink_http`), composed by
:class:`transport.simulator.simplelink.SimpleLinkModule`. "SPEC" is
transport/modems/simplelink_wire.md, the wire contract shared with the driver; "[guide] Table
n" the TI SimpleLink Wi-Fi AT Command User's Guide (seed 002). Nothing here is shared with
:mod:`transport.at` or :mod:`transport.modems`: this is a second reading of the guide.
"""

from __future__ import annotations

import base64
import binascii
import enum
import heapq
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from transport.simulator.network_actions import CloseTcp, OpenSsl, OpenTcp, Resolve, SendTcp
from transport.simulator.open_failure import FailureKind, OpenFailure

Action = OpenTcp | OpenSsl | SendTcp | CloseTcp | Resolve

# Results ([guide] §5.2; SPEC §1): "ERROR:<description>,<code>".
PARSE_ERROR = "ERROR:parse parameters,-1"  # SPEC §5: -1 for every parse failure
# A command the AT core has no entry for. The guide does not print one; TI's core answers with
# its "command not exist" description (at-protocol §8.1), and -1 (SL_ERROR_BSD_SOC_ERROR,
# "Failure") is the code here, as for the parse errors.
UNKNOWN_COMMAND = "ERROR:command not exist,-1"


def process_error(code: int) -> str:
    """A failure of the SimpleLink call behind a command (SPEC §1)."""
    return f"ERROR:process command,{code}"


# What the guide describes but this simulator does not model: an ERROR, never a silent OK.
# The code is SimpleLink's generic "Failure" (-1), so a driver that meets it fails loudly.
NOT_MODELLED = process_error(-1)

# SimpleLink error numbers (TI's errors.h; SPEC §3-§7 chose which command gives which).
EBADF = -9  # not a socket of the host's
ENSOCK = -10  # 16 sockets open
EAGAIN = -11  # RCVTIMEO passed
ENOMEM = -12  # no HTTP client left
EINVAL = -22
ENETUNREACH = -101  # no Wi-Fi link or no IP address
ENOBUFS = -105
EISCONN = -106
ENOTCONN = -107
ETIMEDOUT = -110
ECONNREFUSED = -111
DNS_FAILED = -159  # SPEC §5: the DNS query failed
ESEC_HANDSHAKE_FAILURE = -340
ESECSNOVERIFY = -453  # a warning: connected without verifying the server (no CA file set)
ESECNOCAFILE = -454
ESECBADCAFILE = -456
ESECBADCERTFILE = -457
ESECBADPRIVATEFILE = -458
ESECT00MANYSSLOPENED = -460
ESECDATEERROR = -461  # a warning on the real NWP: connected, certificate dates wrong
ESECHANDSHAKETIMEDOUT = -462
ESEC_ASN_NO_SIGNER = -688
ESEC_DOMAIN_NAME_MISMATCH = -722
NWP_NOT_RUNNING = -2018  # SPEC §3: stopped, dead, or started twice

# How each network failure reads on this module (SPEC §5, §7).
FAILURE_CODES = {
    FailureKind.DNS: DNS_FAILED,
    FailureKind.REFUSED: ECONNREFUSED,
    FailureKind.TIMEOUT: ETIMEDOUT,
    FailureKind.UNREACHABLE: ENETUNREACH,
    FailureKind.TLS_UNKNOWN_CA: ESEC_ASN_NO_SIGNER,
    FailureKind.TLS_HOSTNAME: ESEC_DOMAIN_NAME_MISMATCH,
    FailureKind.TLS_HANDSHAKE: ESEC_HANDSHAKE_FAILURE,
    FailureKind.TLS_DATE: ESECDATEERROR,
    FailureKind.TLS_TIMEOUT: ESECHANDSHAKETIMEDOUT,
    FailureKind.TLS_NO_CA_FILE: ESECNOCAFILE,
    FailureKind.TLS_BAD_CA_FILE: ESECBADCAFILE,
    FailureKind.TLS_BAD_CLIENT_CERT: ESECBADCERTFILE,
    FailureKind.TLS_BAD_CLIENT_KEY: ESECBADPRIVATEFILE,
}

SOCKETS = 16  # sd 0..15 (SPEC §5)
SECURE_SOCKETS = 6  # a 7th SEC socket is refused (SPEC §5)
MAX_PAYLOAD = 1460  # decoded bytes per AT+Send / AT+Recv (SPEC §5, at-protocol §8.2)
# The module clock at power-on (SPEC §3): certificates are judged against it (-461).
CLOCK_AT_POWER_ON = datetime(2013, 1, 1, tzinfo=UTC).timestamp()


@dataclass
class AccessPoint:
    """A Wi-Fi network the module can see: the site's (which it can join) or a neighbour's
    (which only AT+WlanScan shows)."""

    ssid: str = "SiteNet"
    security: str = "WPA_WPA2"  # OPEN | WEP | WEP_SHARED | WPA_WPA2 | WPA_ENT ([guide] Table 27)
    key: str = "charge-point-wifi"  # the passphrase (WPA_ENT: the user's password)
    enterprise_user: str = "chargepoint"  # WPA_ENT only
    bssid: str = "a0:b1:c2:d3:e4:f5"
    rssi: int = -52  # dBm
    channel: int = 6
    hidden: bool = False
    in_range: bool = True  # at power-on; set_coverage() moves the site's in and out of range


@dataclass
class WifiProfile:
    """Who the simulated CC3220 is and the site network it lives in."""

    access_point: AccessPoint = field(default_factory=AccessPoint)
    neighbours: tuple[AccessPoint, ...] = (
        AccessPoint("Workshop-Guest", "OPEN", "", bssid="a0:b1:c2:00:11:22", rssi=-71, channel=1),
    )
    mac: str = "d4:36:39:5a:3c:11"  # a TI OUI
    ip_address: str = "192.168.50.23"  # what DHCP gives
    netmask: str = "255.255.255.0"
    gateway: str = "192.168.50.1"
    dns_server: str = "192.168.50.1"
    # AT+Get=General,Version ([guide] Table 11; SPEC §3).
    chip_id: str = "0x31100019"
    fw_version: str = "3.7.0.1"
    phy_version: str = "2.2.0.7"
    nwp_version: str = "3.7.0.1"
    rom_version: str = "0x2222"
    boot_time: float = 0.0  # power-on or reset until the AT application takes commands
    connect_time: float = 0.0  # WlanConnect (or auto-connect) until +eventwlan:connect/disconnect
    dhcp_time: float = 0.0  # +eventwlan:connect until +eventnetapp:ipv4_acquired
    dhcp_renew_after: float = 1.0  # after ipv4_lost (deactivate_pdp) until the address is back
    send_buffer: int = 8 * 1024  # the NWP's TCP send buffer per socket (SPEC §5)
    receive_buffer: int = 16 * 1024  # per socket; the shell stops reading when it is full
    # SPEC is silent on these: how long the module waits before it gives up.
    send_block_timeout: float = 60.0  # a full send buffer that never drains: -110
    tls_handshake_timeout: float = 30.0  # -462 ESECHANDSHAKETIMEDOUT
    http_timeout: float = 30.0  # a server that does not answer an HTTP request: -110


class Nwp(enum.Enum):
    """The network processor, as the AT application sees it (SPEC §3)."""

    RUNNING = "running"
    STOPPED = "stopped"  # AT+Stop
    DEAD = "dead"  # after +eventfatalerror, until AT+Stop and AT+Start


class SocketState(enum.Enum):
    OPEN = "open"  # AT+Socket, not connected
    CONNECTING = "connecting"  # AT+Connect is blocked on it
    CONNECTED = "connected"
    PEER_CLOSED = "peer closed"  # the server closed: the rest is readable, then 0 bytes
    DEAD = "dead"  # RST, Wi-Fi or IP lost, failed connect: -107 until AT+Close


@dataclass
class SecureOptions:
    """A SEC socket's AT+SetSockOpt settings ([guide] Table 21)."""

    method: str = "SSLV3_TLSV1_2"  # the NWP's default: the highest it can
    ciphers: tuple[str, ...] = ()  # SECURE_MASK names; () = all the NWP knows
    ca_file: str = ""
    certificate_file: str = ""
    private_key_file: str = ""
    domain: str = ""  # SECURE_DOMAIN_NAME_VERIFICATION


@dataclass
class Socket:
    sd: int
    secure: bool
    owner: str = "host"  # "host", or "http": the connection of an HTTP client (SPEC §7)
    state: SocketState = SocketState.OPEN
    address: str = ""
    port: int = 0
    tls: SecureOptions = field(default_factory=SecureOptions)
    rcvtimeo: float | None = None  # seconds; None blocks for ever
    rx: bytearray = field(default_factory=bytearray)
    sent: int = 0  # bytes taken by AT+Send
    acked: int = 0  # of those, bytes the network has taken (tcp_sent)
    # The result lines of a blocked AT+Connect (or HTTP connect), once the network answered.
    connect_result: list[str] | None = None
    failure: int = 0  # the error code of a failed connect

    @property
    def unsent(self) -> int:
        """Bytes in the module's send buffer (SPEC §5)."""
        return self.sent - self.acked


@dataclass
class Blocked:
    """A command that holds the module: no other command runs until ``attempt`` gives the
    lines that end it (SPEC §2). ``early_ok``: the command said ``OK`` first (the blocked
    commands of SPEC §2); otherwise its one answer is held (a full send buffer, HTTP)."""

    attempt: Callable[[float], list[str] | None]
    early_ok: bool
    deadline: float | None = None
    expire: Callable[[float], list[str]] | None = None


Reply = list[str] | Blocked


def split_parameters(text: str) -> list[str] | None:
    """SPEC §1, [guide] §5.1: commas separate; ``"`` protects commas and spaces (and cannot be
    inside); spaces around an unquoted parameter are dropped. None for an open quote or text
    after a closing one."""
    found, _ = _split(text, None)
    return found


def split_with_data(text: str, count: int) -> tuple[list[str], str] | None:
    """The first ``count`` parameters, and everything after the comma that ends them, as it
    is: the data of AT+Send, AT+FileWrite, AT+HttpSendReq... (at-protocol §8.2: "data = the
    rest of the command buffer"). None when there are fewer parameters."""
    found, rest = _split(text, count)
    if found is None or rest is None:
        return None
    return found, rest


def _split(text: str, count: int | None) -> tuple[list[str] | None, str | None]:
    params: list[str] = []
    i, n = 0, len(text)
    while True:
        if count is not None and len(params) == count:
            return params, text[i:]
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] == '"':
            close = text.find('"', i + 1)
            if close < 0:
                return None, None
            value = text[i + 1 : close]
            i = close + 1
            while i < n and text[i] == " ":
                i += 1
            if i < n and text[i] != ",":
                return None, None
        else:
            comma = text.find(",", i)
            end = n if comma < 0 else comma
            value = text[i:end].strip(" ")
            i = end
        params.append(value)
        if i >= n:
            return params, None
        i += 1  # the comma


def number(text: str, low: int = 0, high: int = 2**31) -> int | None:
    """A numeric parameter: decimal, or hexadecimal with 0x ([guide] §5.1)."""
    value: int | None = None
    stripped = text.strip()
    if stripped.lower().startswith("0x") and len(stripped) > 2:
        try:
            value = int(stripped[2:], 16)
        except ValueError:
            return None
    elif stripped.isdigit():
        value = int(stripped)
    if value is None or not low <= value <= high:
        return None
    return value


def ipv4(text: str) -> str | None:
    """An IPv4 address, with or without square brackets ([guide] §5.1)."""
    stripped = text.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        stripped = stripped[1:-1]
    try:
        return str(ipaddress.IPv4Address(stripped))
    except ValueError:
        return None


def bitmask(text: str) -> list[str]:
    """A bitmask parameter: names joined by ``|``, with or without ``[]`` ([guide] §5.1)."""
    stripped = text.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        stripped = stripped[1:-1]
    return [part.strip().lower() for part in stripped.split("|") if part.strip()]


def decode_data(data_format: str, length: str, data: str) -> bytes | None:
    """Data of format 1 (base64: ``length`` is its number of characters, SPEC §1) or 0
    (binary: ``length`` bytes after the comma, the line still ends at CR/LF, SPEC §1)."""
    count = number(length)
    if count is None:
        return None
    if data_format == "1":
        text = data.strip(" ")
        if len(text) != count:
            return None
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None
    if data_format == "0":
        raw = data.encode("latin-1")
        return raw[:count] if len(raw) >= count else None
    return None


def encode_data(data_format: str, data: bytes) -> str:
    """``<length>,<data>`` of a result: base64 characters and their count, or raw bytes."""
    if data_format == "1":
        text = base64.b64encode(data).decode("ascii")
        return f"{len(text)},{text}"
    return f"{len(data)},{data.decode('latin-1')}"


class ModuleCore:
    """Framing, blocked commands, output, timers, the NWP's state and the socket table. See
    the module docstring; the handlers are ``_cmd_<name>(params, now)`` on the mixins, with
    ``params`` the text after ``=`` (None for a command without one)."""

    profile: WifiProfile
    # Commands of the guide this simulator does not model: they answer NOT_MODELLED.
    NOT_MODELLED_COMMANDS: frozenset[str] = frozenset()

    def _init_core(self, profile: WifiProfile, now: float) -> None:
        self.profile = profile
        # Knobs a test (or the shell's faults) may turn at any time.
        self.muted = False
        self.response_delay = 0.0
        self.send_result_delay = 0.0
        self.refused_sends: set[int] = set()  # the network takes nothing more from these
        self.log: list[str] = []  # command lines as received
        self.most_sockets_held = 0
        self._output: list[bytes] = []
        self._actions: list[Action] = []
        self._timers: list[tuple[float, int, Callable[[float], None]]] = []
        self._timer_seq = 0
        self._last_now = now
        self._clock = (CLOCK_AT_POWER_ON, now)  # (module UTC, shell time) when last set
        self._powered = False
        self._booting = False
        self.nwp = Nwp.STOPPED
        self._inbuf = bytearray()
        self._pending: Blocked | None = None
        self._busy_until = now
        self._after_reply: Callable[[float], None] | None = None
        self._extra_delay = 0.0
        self.sockets: dict[int, Socket] = {}
        self.has_ip = False  # DHCP gave an address (sockets need it: -101 otherwise)

    # -- the shell's side --

    @property
    def booted(self) -> bool:
        """Powered and past boot: the AT application takes commands."""
        return self._powered and not self._booting

    def receive(self, data: bytes, now: float) -> None:
        if self.muted or not self.booted:
            return  # a hung or booting module hears nothing
        self._last_now = now
        self._inbuf += data
        self._process(now)

    def tick(self, now: float) -> None:
        self._last_now = now
        while self._timers and self._timers[0][0] <= now:
            _, _, callback = heapq.heappop(self._timers)
            callback(now)
        self._poll(now)
        self._process(now)

    def next_deadline(self) -> float | None:
        times = [t for t, _, _ in self._timers[:1]]
        if self._pending is not None and self._pending.deadline is not None:
            times.append(self._pending.deadline)
        return min(times) if times else None

    def take_output(self) -> list[bytes]:
        out, self._output = self._output, []
        return [] if self.muted else out

    def take_actions(self) -> list[Action]:
        actions, self._actions = self._actions, []
        return actions

    def _at(self, when: float, callback: Callable[[float], None]) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, callback))

    # -- the clock (SPEC §3: AT+Get/AT+Set=General,Time) --

    def module_time(self, now: float) -> float:
        utc, at = self._clock
        return utc + (now - at)

    def set_module_time(self, utc: float, now: float) -> None:
        self._clock = (utc, now)

    # -- lines in, results out --

    def _process(self, now: float) -> None:
        while (
            self._inbuf
            and self._pending is None
            and now >= self._busy_until
            and self.booted
            and not self.muted
        ):
            line = self._next_line()
            if line is None:
                return
            self._command(line, now)

    def _next_line(self) -> bytes | None:
        """One command line: CR, LF or CRLF end it; empty lines are skipped (SPEC §1)."""
        while True:
            ends = [i for i in (self._inbuf.find(b"\r"), self._inbuf.find(b"\n")) if i >= 0]
            if not ends:
                return None
            end = min(ends)
            line = bytes(self._inbuf[:end])
            del self._inbuf[: end + 1]
            if line.strip(b" "):
                return line

    def _command(self, line: bytes, now: float) -> None:
        text = line.decode("latin-1").strip(" ")
        self.log.append(text)
        name, equals, params = text.partition("=")
        key = name.strip(" ").lower()
        self._after_reply = None
        self._extra_delay = 0.0
        handler = None
        if key.startswith("at+") and key[3:].isalnum():
            handler = getattr(self, f"_cmd_{key[3:]}", None)
        if handler is None and key[3:] in self.NOT_MODELLED_COMMANDS:
            reply: Reply = [NOT_MODELLED]
        elif handler is None:
            reply = [UNKNOWN_COMMAND]
        elif key not in ("at+test", "at+start", "at+stop") and self.nwp is not Nwp.RUNNING:
            reply = [process_error(NWP_NOT_RUNNING)]  # SPEC §3
        else:
            reply = handler(params if equals else None, now)
        self._finish(reply, now)

    def _finish(self, reply: Reply, now: float) -> None:
        after = self._after_reply
        lines = (["OK"] if reply.early_ok else []) if isinstance(reply, Blocked) else reply

        def deliver(at: float) -> None:
            self._emit(lines)
            if after is not None:
                after(at)
            if isinstance(reply, Blocked):
                self._pending = reply
                self._poll(at, resume=False)

        delay = self.response_delay + self._extra_delay
        if delay <= 0:
            deliver(now)
            return
        self._busy_until = now + delay

        def late(at: float) -> None:
            deliver(at)
            self._process(at)

        self._at(now + delay, late)

    def _poll(self, now: float, *, resume: bool = True) -> None:
        """Try to end the command the module is blocked in; then take the queued input."""
        pending = self._pending
        if pending is None:
            return
        lines = pending.attempt(now)
        if lines is None and pending.deadline is not None and now >= pending.deadline:
            assert pending.expire is not None
            lines = pending.expire(now)
        if lines is None:
            return
        self._pending = None
        self._emit(lines)
        if resume:
            self._process(now)

    def _abandon_blocked(self, lines: list[str]) -> None:
        """End the blocked command at once with ``lines`` (the NWP died under it)."""
        if self._pending is not None:
            self._pending = None
            self._emit(lines)

    def _emit(self, lines: list[str]) -> None:
        if lines:
            self._output.append("".join(f"{line}\r\n" for line in lines).encode("latin-1"))

    def _event(self, text: str) -> None:
        """An asynchronous event ([guide] §5.3): a line of its own, at any time (SPEC §3)."""
        self._output.append(f"{text}\r\n".encode("latin-1"))

    def _network_event(self) -> None:
        """Something happened on the network: a blocked command may be able to end."""
        self._poll(self._last_now)

    # -- the socket table --

    def _free_sd(self) -> int | None:
        for sd in range(SOCKETS):
            if sd not in self.sockets:
                return sd
        return None

    def _secure_count(self) -> int:
        return sum(1 for sock in self.sockets.values() if sock.secure)

    def _add_socket(self, sock: Socket) -> None:
        self.sockets[sock.sd] = sock
        self.most_sockets_held = max(self.most_sockets_held, len(self.sockets))

    def _host_socket(self, sd: int | None) -> Socket | None:
        """The host's socket ``sd``: an HTTP client's connection is not one (-9)."""
        sock = self.sockets.get(sd) if sd is not None else None
        return sock if sock is not None and sock.owner == "host" else None

    def _readable(self, sock: Socket) -> bool:
        """What AT+Select reports (SPEC §5): data, the peer's close, or a dead connection."""
        return bool(sock.rx) or sock.state in (SocketState.PEER_CLOSED, SocketState.DEAD)

    def _send_on(self, sock: Socket, data: bytes) -> bool:
        """Queue ``data`` in the socket's send buffer if it fits (SPEC §5: 8 KiB); False when
        it does not (the caller holds its answer until :meth:`tcp_sent` makes room)."""
        if sock.unsent and sock.unsent + len(data) > self.profile.send_buffer:
            return False
        sock.sent += len(data)
        if sock.sd not in self.refused_sends:
            self._actions.append(SendTcp(sock.sd, data))
        return True

    def _close_connection(self, sock: Socket, *, abort: bool) -> None:
        if sock.state in (SocketState.CONNECTING, SocketState.CONNECTED):
            self._actions.append(CloseTcp(sock.sd, abort=abort))

    def _kill_connections(self) -> None:
        """Wi-Fi or the IP address is gone: every connection is dead (SPEC §4, §8)."""
        for sock in self.sockets.values():
            if sock.state in (SocketState.CONNECTING, SocketState.CONNECTED):
                self._actions.append(CloseTcp(sock.sd, abort=True))
            if sock.state is SocketState.CONNECTING:
                sock.connect_result = [process_error(ENETUNREACH)]
                sock.failure = ENETUNREACH
            if sock.state is not SocketState.OPEN:
                sock.state = SocketState.DEAD
                sock.rx.clear()  # the NWP drops what the host had not read

    def _forget_sockets(self, *, abort: bool) -> None:
        """The NWP stops or resets: no socket survives (SPEC §3)."""
        for sock in self.sockets.values():
            self._close_connection(sock, abort=abort)
        self.sockets.clear()
        self.refused_sends.clear()

    # -- the network's answers (called by the shell) --

    def tcp_opened(
        self, socket_id: int, local_port: int, warning: OpenFailure | None = None
    ) -> None:
        """The connection is up (TLS included); ``warning``: a TLS warning, SimpleLink's -461,
        the connection made all the same (SPEC §5)."""
        sock = self.sockets.get(socket_id)
        if sock is None or sock.state is not SocketState.CONNECTING:
            return
        sock.state = SocketState.CONNECTED
        if warning is not None:
            sock.connect_result = [process_error(FAILURE_CODES[warning.kind])]
            sock.failure = FAILURE_CODES[warning.kind]
        elif sock.secure and not sock.tls.ca_file:
            # Nothing to verify the server with: connected, and said so (ESECSNOVERIFY).
            sock.connect_result = [process_error(ESECSNOVERIFY)]
            sock.failure = ESECSNOVERIFY
        else:
            sock.connect_result = [f"+connect:{sock.port},{sock.address}", "OK"]
        self._network_event()

    def connect_failed(self, socket_id: int, failure: OpenFailure) -> str:
        """The connection or its TLS handshake failed; the socket is dead until AT+Close.
        Returns the code said, for the shell's log."""
        code = FAILURE_CODES[failure.kind]
        sock = self.sockets.get(socket_id)
        if sock is not None and sock.state is SocketState.CONNECTING:
            sock.state = SocketState.DEAD
            sock.failure = code
            sock.connect_result = [process_error(code)]
            self._network_event()
        return str(code)

    def tcp_received(self, socket_id: int, data: bytes) -> None:
        sock = self.sockets.get(socket_id)
        if sock is None or sock.state is not SocketState.CONNECTED or not data:
            return
        sock.rx += data
        self._network_event()

    def receive_room(self, socket_id: int) -> int:
        sock = self.sockets.get(socket_id)
        if sock is None:
            return 0
        return max(0, self.profile.receive_buffer - len(sock.rx))

    def tcp_sent(self, socket_id: int, count: int) -> None:
        sock = self.sockets.get(socket_id)
        if sock is not None:
            sock.acked = min(sock.sent, sock.acked + count)
            self._network_event()

    def tcp_closed(self, socket_id: int, *, close_notify: bool = False) -> None:
        """The server closed (FIN, RST) or the network dropped the connection: what was
        received stays readable, then reads give 0 bytes (SPEC §5, §8). A TLS server's
        close_notify is announced by ``other_side_close_ssl`` (SPEC §5)."""
        sock = self.sockets.get(socket_id)
        if sock is None or sock.state is not SocketState.CONNECTED:
            return
        sock.state = SocketState.PEER_CLOSED
        if close_notify and sock.owner == "host":
            self._event(f"+eventsock:async_event,{socket_id},other_side_close_ssl,0")
        self._network_event()

    def drop_connection(self, socket_id: int) -> None:
        """The server closes or resets the connection (SPEC §8)."""
        sock = self.sockets.get(socket_id)
        if sock is not None and sock.state is SocketState.CONNECTED:
            self._actions.append(CloseTcp(socket_id, abort=True))
            self.tcp_closed(socket_id)
