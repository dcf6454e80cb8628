"""The AT command engine: a sans-I/O response parser and the asyncio channel around it.

:class:`AtParser` is fed the bytes the module sends, in chunks of any size, and returns events:
echoed command lines, information lines, final result codes, the data prompt ``>``, ``CONNECT``,
unsolicited result codes (URCs), and length-delimited binary payloads. It knows no serial port,
no clock and no asyncio, so it is tested by feeding it byte strings split at every position.

:class:`AtChannel` moves bytes between a serial port and the parser and turns events into
command results: one command in flight at a time, a timeout on every command, URCs handed to
subscribers by prefix, raw payload written after the prompt, and a probe with ``AT`` when the
module stops answering.

Framing follows V.25ter with ATV1 (the factory default): results are ``<CR><LF>text<CR><LF>``;
the data prompt is ``<CR><LF>> `` with no line ending after it (Quectel TCP/IP manual §2.1.7,
seen on a BG96 in the ST trace of at-protocol.md §9.22).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import enum
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from transport.errors import (
    AtCommandFailed,
    AtError,
    AtTimeout,
    ModemNotResponding,
    SerialPortError,
)

log = logging.getLogger(__name__)

CR = 0x0D
LF = 0x0A
SPACE = 0x20
PROMPT_CHAR = 0x3E  # '>'

_TERMINATOR = re.compile(rb"[\r\n]")


# --- events --------------------------------------------------------------------------------


class ResultKind(enum.Enum):
    OK = "OK"
    ERROR = "ERROR"
    CME_ERROR = "+CME ERROR"
    CMS_ERROR = "+CMS ERROR"
    SEND_OK = "SEND OK"
    SEND_FAIL = "SEND FAIL"
    NO_CARRIER = "NO CARRIER"
    BUSY = "BUSY"
    NO_ANSWER = "NO ANSWER"
    NO_DIALTONE = "NO DIALTONE"


_EXACT_FINALS = {
    "OK": ResultKind.OK,
    "ERROR": ResultKind.ERROR,
    "SEND OK": ResultKind.SEND_OK,
    "SEND FAIL": ResultKind.SEND_FAIL,
    "NO CARRIER": ResultKind.NO_CARRIER,
    "BUSY": ResultKind.BUSY,
    "NO ANSWER": ResultKind.NO_ANSWER,
    "NO DIALTONE": ResultKind.NO_DIALTONE,
}
# "ERROR:" is how TI's Wi-Fi AT firmware words its errors ("ERROR: process command,-111").
_PREFIX_FINALS = (
    ("+CME ERROR:", ResultKind.CME_ERROR),
    ("+CMS ERROR:", ResultKind.CMS_ERROR),
    ("ERROR:", ResultKind.ERROR),
)


@dataclass(frozen=True, slots=True)
class FinalResult:
    """A final result code: the end of a command's response."""

    kind: ResultKind
    text: str

    @property
    def success(self) -> bool:
        return self.kind in (ResultKind.OK, ResultKind.SEND_OK)

    @property
    def detail(self) -> str:
        """What follows the colon of ``+CME ERROR: <detail>``; empty for plain codes."""
        _, sep, rest = self.text.partition(":")
        return rest.strip() if sep else ""

    @property
    def code(self) -> int | None:
        """The numeric error of ``+CME ERROR: 10`` (``None`` when verbose or absent)."""
        detail = self.detail
        return int(detail) if detail.isdigit() else None


@dataclass(frozen=True, slots=True)
class Echo:
    """The module echoing a command line back (``ATE1``, the factory default)."""

    text: str


@dataclass(frozen=True, slots=True)
class Line:
    """An information line, with the binary payload that followed it if it announced one."""

    text: str
    payload: bytes | None = None


@dataclass(frozen=True, slots=True)
class Urc:
    """A line whose prefix marks it as unsolicited (``+QIURC:``, ``RDY``, ...)."""

    text: str
    payload: bytes | None = None


@dataclass(frozen=True, slots=True)
class Prompt:
    """The ``>`` data prompt: the module now takes raw bytes."""


@dataclass(frozen=True, slots=True)
class Connect:
    """``CONNECT`` or ``CONNECT <n>``: the module enters data mode."""

    text: str
    length: int | None
    payload: bytes | None = None


@dataclass(frozen=True, slots=True)
class Noise:
    """Bytes that cannot be a line: a run longer than the longest line the parser accepts."""

    data: bytes


AtEvent = FinalResult | Echo | Line | Urc | Prompt | Connect | Noise

PROMPT = Prompt()


@dataclass(frozen=True, slots=True)
class PayloadRule:
    """A line that announces exactly ``length`` raw bytes after its own ``<CR><LF>``.

    ``pattern`` is matched against the whole (stripped) line and must have a group named
    ``length``. A length of 0 announces nothing.
    """

    pattern: re.Pattern[str]

    def length(self, text: str) -> int | None:
        match = self.pattern.fullmatch(text)
        return int(match.group("length")) if match else None


# --- the parser ----------------------------------------------------------------------------


class AtParser:
    """Bytes from the module in, events out. Any split of the input gives the same events.

    * Lines end at ``<CR>``, ``<LF>`` or ``<CR><LF>``; empty lines are skipped.
    * ``>`` at the start of a line is the data prompt, emitted at once (nothing follows it until
      the host writes); one space after it is part of the prompt.
    * A line matching a :class:`PayloadRule` is held back until exactly the announced number of
      bytes has arrived after its ``<CR><LF>``, then emitted with them attached; those bytes are
      never parsed, whatever they contain.
    * Runs longer than ``max_line`` without a line ending are cut into :class:`Noise`.
    """

    def __init__(
        self,
        *,
        urc_prefixes: Iterable[str] = (),
        payload_rules: Iterable[PayloadRule] = (),
        max_line: int = 4096,
        max_payload: int = 65536,
        normalise: Callable[[str], str] | None = None,
    ) -> None:
        self._urc_prefixes = tuple(urc_prefixes)
        # Rewrites each line before it is classified: a family whose results vary in case or
        # spacing ("+Socket: 3" in TI's guide, "+socket:3" from TI's code) gets one spelling.
        self._normalise = normalise
        self._payload_rules = tuple(payload_rules)
        self._max_line = max_line
        self._max_payload = max_payload
        self._acc = bytearray()
        self._swallow_lf = False
        self._skip_space = False
        self._pending: Line | Urc | Connect | None = None
        self._payload = bytearray()
        self._payload_left = 0
        self._armed: int | None = None
        self._armed_sink: Callable[[bytes], None] | None = None
        self._sink: Callable[[bytes], None] | None = None
        # Bytes announced by URCs that carry data (a direct push), counted when the header is
        # read: the line is busy with them, not with the answer a command waits for.
        self.unsolicited_bytes = 0

    def reset(self) -> None:
        """Forget any partial line or payload (after a timeout or a module reboot)."""
        self._acc.clear()
        self._swallow_lf = False
        self._skip_space = False
        self._pending = None
        self._payload.clear()
        self._payload_left = 0
        self.disarm()
        self._sink = None

    def arm_connect(self, length: int, sink: Callable[[bytes], None] | None = None) -> None:
        """The next bare ``CONNECT`` line is followed by exactly ``length`` raw bytes.

        For data-mode reads whose output carries no length of its own (``AT+QHTTPREAD``: the
        body ends with ``<CR><LF>OK``, which a binary body may contain too) but whose length
        the host knows from elsewhere (the ``Content-Length`` of ``+QHTTPGET``). With ``sink``
        the bytes are handed over as they come instead of being collected.
        """
        self._armed = length
        self._armed_sink = sink

    def disarm(self) -> None:
        self._armed = None
        self._armed_sink = None

    @property
    def in_payload(self) -> bool:
        return self._payload_left > 0

    def feed(self, data: bytes) -> list[AtEvent]:
        events: list[AtEvent] = []
        i, n = 0, len(data)
        while i < n:
            if self._swallow_lf:
                # The <LF> of a <CR><LF> pair: it belongs to the line just ended, and for a
                # payload header it must not be counted as the payload's first byte.
                self._swallow_lf = False
                if data[i] == LF:
                    i += 1
                    continue
            if self._payload_left:
                take = min(self._payload_left, n - i)
                if self._sink is not None:
                    self._sink(data[i : i + take])
                else:
                    self._payload += data[i : i + take]
                i += take
                self._payload_left -= take
                if not self._payload_left:
                    events.append(self._complete_payload())
                continue
            if self._skip_space:
                self._skip_space = False
                if data[i] == SPACE:
                    i += 1
                    continue
            if not self._acc and data[i] == PROMPT_CHAR:
                events.append(PROMPT)
                self._skip_space = True
                i += 1
                continue
            match = _TERMINATOR.search(data, i)
            if match is None:
                self._acc += data[i:]
                self._cut_overlong(events)
                break
            end = match.start()
            self._acc += data[i:end]
            self._cut_overlong(events)
            self._swallow_lf = data[end] == CR
            i = end + 1
            raw = bytes(self._acc)
            self._acc.clear()
            self._end_line(raw, events)
        return events

    def _cut_overlong(self, events: list[AtEvent]) -> None:
        while len(self._acc) > self._max_line:
            events.append(Noise(bytes(self._acc[: self._max_line])))
            del self._acc[: self._max_line]

    def _end_line(self, raw: bytes, events: list[AtEvent]) -> None:
        # latin-1 maps every byte to one character, so no line can fail to decode.
        text = raw.decode("latin-1").strip()
        if not text:
            return
        if self._normalise is not None:
            text = self._normalise(text)
        event = self._classify(text)
        if isinstance(event, Connect) and event.length is None and self._armed is not None:
            length, self._sink = self._armed, self._armed_sink
            self.disarm()
            if length:
                self._pending = event
                self._payload_left = length
                return
            self._sink = None
        elif isinstance(event, Line | Urc | Connect):
            announced = self._announced_length(text)
            if announced:
                self._pending = event
                self._payload_left = announced
                if isinstance(event, Urc):
                    self.unsolicited_bytes += len(raw) + 4 + announced
                return
        events.append(event)

    def _classify(self, text: str) -> AtEvent:
        kind = _EXACT_FINALS.get(text)
        if kind is not None:
            return FinalResult(kind, text)
        for prefix, kind in _PREFIX_FINALS:
            if text.startswith(prefix):
                return FinalResult(kind, text)
        if text == "CONNECT" or text.startswith("CONNECT "):
            rest = text[len("CONNECT") :].strip()
            return Connect(text, int(rest) if rest.isdigit() else None)
        if text[:2].upper() == "AT":
            return Echo(text)
        if text.startswith(self._urc_prefixes):
            return Urc(text)
        return Line(text)

    def _announced_length(self, text: str) -> int | None:
        for rule in self._payload_rules:
            length = rule.length(text)
            if length is not None:
                if length > self._max_payload:
                    log.warning(
                        "ignoring payload header %r: longer than %d", text, self._max_payload
                    )
                    return None
                return length
        return None

    def _complete_payload(self) -> Line | Urc | Connect:
        header = self._pending
        assert header is not None
        payload = bytes(self._payload)
        self._payload.clear()
        self._pending = None
        self._sink = None
        if isinstance(header, Line):
            return Line(header.text, payload)
        if isinstance(header, Urc):
            return Urc(header.text, payload)
        return Connect(header.text, header.length, payload)


# --- the channel ---------------------------------------------------------------------------


class SerialIO(Protocol):
    """What the channel needs from a serial port (see :mod:`transport.serial_port`): received
    bytes pushed to a callback, writes queued whole."""

    @property
    def name(self) -> str: ...

    @property
    def baudrate(self) -> int: ...

    def start(
        self, on_data: Callable[[bytes], None], on_lost: Callable[[Exception], None]
    ) -> None: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Response:
    """A command's information lines and its final result."""

    command: str
    lines: tuple[Line, ...]
    result: FinalResult

    def values(self, prefix: str) -> list[str]:
        """The text after ``prefix`` of every line that starts with it, stripped."""
        return [ln.text[len(prefix) :].strip() for ln in self.lines if ln.text.startswith(prefix)]

    def value(self, prefix: str) -> str:
        """The text after ``prefix`` of the first line starting with it; a clear error if none."""
        found = self.values(prefix)
        if not found:
            texts = [ln.text for ln in self.lines]
            raise AtError(f"{self.command}: expected a {prefix!r} line, got {texts!r}")
        return found[0]

    @property
    def payload(self) -> bytes:
        for ln in self.lines:
            if ln.payload is not None:
                return ln.payload
        return b""


def split_fields(text: str) -> list[str]:
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


UrcHandler = Callable[[Urc], None]

# Set in a task that moves bulk data (a firmware download) through the channel: its commands
# wait while any other command is waiting, so the OCPP socket's AT+QIRD/AT+QISEND are never
# queued behind more than the one bulk command on the line.
BULK: contextvars.ContextVar[bool] = contextvars.ContextVar("at_bulk", default=False)
BULK_GRACE = 0.015  # seconds
# A command's timer that fires this late found the event loop held up, not the module silent.
STALL = 0.5  # seconds
STALL_GRACE = 1.0  # seconds
BULK_MAX_YIELD = 0.1  # seconds


@dataclass(frozen=True, slots=True)
class _Request:
    command: str
    data: bytes | None  # written after the prompt
    timeout: float | None
    expect: tuple[str, ...]
    log_as: str | None
    check: bool
    read_length: int | None = None  # raw bytes announced by a bare CONNECT
    sink: Callable[[bytes], None] | None = None
    bulk: bool = False
    probe: bool = False  # a bare AT sent to find out whether the module is back in step
    # A command the module acknowledges with OK at once and ends with a second final result
    # once the operation is over (the "blocked" commands of TI's Wi-Fi AT firmware: AT+Connect,
    # AT+Recv, AT+Select...: OK, then "+recv:..." and OK, or "ERROR:process command,<code>").
    blocked: bool = False
    secret_answer: bool = False  # the answer carries a secret: logs show its size only

    @property
    def shown(self) -> str:
        """The command as logs may show it."""
        return self.log_as or self.command


@dataclass(eq=False)
class _Pending:
    """The command in flight. It holds the channel's lock until it is settled."""

    request: _Request
    result: asyncio.Future[FinalResult]
    owns_lock: bool
    lines: list[Line] = field(default_factory=list)
    prompted: bool = False  # the data has been written after the prompt
    acknowledged: bool = False  # a blocked command's first OK has come
    finished: bool = False  # the final result (or a failure) has come
    abandoned: bool = False  # the caller was cancelled; the reader settles it
    settled: bool = False
    expiry: asyncio.TimerHandle | None = None
    deadline: float = 0.0
    scope: asyncio.Timeout | None = None  # the caller's wait for the final result


@dataclass
class ChannelStats:
    bytes_in: int = 0
    bytes_out: int = 0
    commands: int = 0
    urcs: int = 0
    noise_lines: int = 0
    timeouts: int = 0


class AtChannel:
    """One conversation with one module over one serial port.

    Use as an async context manager (it starts and stops reading the port)::

        async with AtChannel(port, AtParser(urc_prefixes=("+QIURC:",))) as at:
            at.subscribe("+QIURC:", on_urc)
            response = await at.command("AT+CSQ", expect=("+CSQ:",))

    Everything the module says is parsed in the port's read callback, so an answer costs one
    turn of the event loop: the data after a ``>`` prompt is written right there, and the
    waiting caller is woken once, with the final result.
    """

    def __init__(
        self,
        port: SerialIO,
        parser: AtParser,
        *,
        default_timeout: float = 5.0,
        probe_attempts: int = 3,
        probe_timeout: float = 2.0,
        quiet_time: float = 0.3,
        probe_command: str = "AT",
        input_timeout: float = 10.0,
    ) -> None:
        self._port = port
        self._probe_command = probe_command
        self._parser = parser
        self._default_timeout = default_timeout
        self._probe_attempts = probe_attempts
        self._probe_timeout = probe_timeout
        self._quiet_time = quiet_time
        # A prompt for a command that timed out: the module now takes whatever is written as
        # that command's data, until it has the announced length or its input timeout ends
        # the command with a final result (Quectel: 5 s by default, §2.7). A probe written
        # then is swallowed, and may even go out to the peer as data; probes wait for the end.
        self._input_timeout = input_timeout
        self._taking_input: asyncio.Event | None = None
        self._prompts_owed = 0  # data commands given up on before their prompt came
        self._last_rx = 0.0
        self._lock = asyncio.Lock()
        self._interactive_waiting = 0  # commands not marked BULK waiting for the lock
        self._bulk_waiting = 0
        self._no_interactive = asyncio.Event()
        self._last_interactive = 0.0
        self._pending: _Pending | None = None
        self._handlers: list[tuple[str, UrcHandler]] = []
        self._lost_listeners: list[Callable[[Exception], None]] = []
        self._started = False
        self._failure: BaseException | None = None
        self._desynced = False
        self._owed = 0  # answers that may still come for commands nobody waits for any more
        self._answered = False  # the module has given a command its final result
        self._secret_owed = False  # a secret answer may still come late
        self.stats = ChannelStats()

    @property
    def port_name(self) -> str:
        return self._port.name

    @property
    def failed(self) -> bool:
        """The port is gone or the channel was closed: nothing more can be sent on it."""
        return self._failure is not None

    @property
    def waiting(self) -> int:
        """Commands waiting for the line (interactive and bulk): a driver that would hold the
        line for a while (a blocking wait for socket data) makes it short when others wait."""
        return self._interactive_waiting + self._bulk_waiting

    def wire_time(self, count: int) -> float:
        """Seconds ``count`` bytes take on the line (start bit, 8 data bits, stop bit)."""
        return count * 10 / self._port.baudrate

    async def __aenter__(self) -> AtChannel:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._port.start(self._on_data, self._on_lost)

    async def close(self) -> None:
        if self._failure is None:
            self._failure = SerialPortError(f"AT channel on {self.port_name} closed")
        self._fail_pending(self._failure)
        self._port.close()

    # -- URCs --

    def subscribe(self, prefix: str, handler: UrcHandler) -> Callable[[], None]:
        """Call ``handler`` (synchronously, from the read callback) for each URC with ``prefix``.

        Returns a function that removes the subscription. Handlers must not block; an exception
        in one is logged and does not disturb the channel.
        """
        entry = (prefix, handler)
        self._handlers.append(entry)

        def unsubscribe() -> None:
            if entry in self._handlers:
                self._handlers.remove(entry)

        return unsubscribe

    # -- commands --

    async def command(
        self,
        command: str,
        *,
        timeout: float | None = None,
        expect: tuple[str, ...] = (),
        log_as: str | None = None,
        check: bool = True,
        blocked: bool = False,
        secret_answer: bool = False,
    ) -> Response:
        """Send ``command`` and wait for its final result.

        ``expect`` lists the prefixes of this command's information lines that would otherwise
        be taken for URCs (``+CPIN:`` for ``AT+CPIN?``). ``log_as`` replaces the command in logs
        when it carries a secret. With ``check`` (the default) an error result raises
        :class:`AtCommandFailed`. A ``blocked`` command's first OK only says it was accepted:
        its result is the final result after it (the line stays held until then). With
        ``secret_answer`` (reading back a private key) logs show how much came, not what.
        """
        request = _Request(
            command,
            None,
            timeout,
            expect,
            log_as,
            check,
            blocked=blocked,
            secret_answer=secret_answer,
        )
        return await self._run(request)

    async def command_with_data(
        self,
        command: str,
        data: bytes,
        *,
        timeout: float | None = None,
        log_as: str | None = None,
    ) -> Response:
        """Send ``command``, write ``data`` at the ``>`` prompt, wait for the result.

        The result is returned unchecked: ``SEND OK``, ``SEND FAIL`` and ``ERROR`` all mean
        something different to the caller. If the module answers before prompting, ``data`` is
        not written. The time the data takes on the wire at the port's baud rate is added to
        ``timeout``.
        """
        return await self._run(_Request(command, data, timeout, (), log_as, False))

    async def command_reading(
        self,
        command: str,
        length: int,
        *,
        sink: Callable[[bytes], None] | None = None,
        timeout: float | None = None,
        expect: tuple[str, ...] = (),
    ) -> Response:
        """Send ``command``, whose answer is ``CONNECT`` and then exactly ``length`` raw bytes
        (see :meth:`AtParser.arm_connect`), and wait for its final result.

        The bytes are the payload of the response (or go to ``sink``). The time they take on the
        wire is added to ``timeout``. An error result raises :class:`AtCommandFailed`.
        """
        return await self._run(
            _Request(command, None, timeout, expect, None, True, read_length=length, sink=sink)
        )

    async def probe(self) -> None:
        """Check the module answers ``AT``; raise :class:`ModemNotResponding` if it does not."""
        await self._lock.acquire()
        try:
            self._desynced = True
            await self._ensure_synced()
        finally:
            self._lock.release()

    def abort(self, error: BaseException, *, grace: float = 1.0) -> None:
        """The module restarted: fail the command in flight unless it is answered within
        ``grace`` seconds.

        RDY alone cannot tell whether the module rebooted after it read the command (then no
        answer will come) or booted, said RDY and then read the command (then the answer is on
        its way behind RDY). Failing at once in the second case would leave that answer to be
        taken for the next command's.
        """
        self._owed = 0  # a restarted module owes nothing
        self._prompts_owed = 0
        pending = self._pending
        if pending is None:
            return
        self._parser.reset()

        def expire() -> None:
            if self._pending is pending:
                self._fail_pending(error)

        asyncio.get_running_loop().call_later(grace, expire)

    async def _run(self, request: _Request) -> Response:
        request = dataclasses.replace(request, bulk=BULK.get())
        if request.bulk:
            self._bulk_waiting += 1
            try:
                await self._acquire_bulk()
            finally:
                self._bulk_waiting -= 1
        else:
            self._interactive_waiting += 1
            try:
                await self._lock.acquire()  # cancelled here: nothing was sent
            finally:
                self._interactive_waiting -= 1
                if not self._interactive_waiting:
                    self._no_interactive.set()
        try:
            await self._ensure_synced()
        except BaseException:
            self._lock.release()
            raise
        return await self._exchange(request, owns_lock=True)

    async def _acquire_bulk(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._after_interactive()
            await self._lock.acquire()
            # Queued before the interactive command that just ended: check again now.
            if not self._interactive_waiting and loop.time() >= self._last_interactive + BULK_GRACE:
                return
            self._lock.release()

    async def _after_interactive(self) -> None:
        """A bulk command lets every interactive command waiting go first, and leaves the line
        free for ``BULK_GRACE`` after one: the next step of an exchange (AT+QIRD until empty,
        then the answer's AT+QISEND) follows within milliseconds and must not wait a chunk."""
        loop = asyncio.get_running_loop()
        while True:
            if self._interactive_waiting:
                self._no_interactive.clear()
                await self._no_interactive.wait()
                continue
            remaining = self._last_interactive + BULK_GRACE - loop.time()
            if remaining <= 0:
                return
            await asyncio.sleep(remaining)

    async def _ensure_synced(self) -> None:
        if self._failure is not None:
            raise SerialPortError(f"serial port {self.port_name} is gone: {self._failure}")
        if not self._desynced:
            return
        # Probe with a bare AT until the module answers. Only OK answers a probe: a late SEND OK
        # or ERROR is the straggler of an earlier command. While an answer is owed (a command
        # timed out, a probe was cut short by a cancelled caller), the line must fall quiet
        # before the probe, so a straggler arrives with nothing in flight and is discarded, and
        # again after it: the OK taken may have been an owed one, and the probe's own must not
        # be taken for the next command's answer. With nothing owed, nothing is waited for.
        if self._owed:
            await self._wait_for_quiet_line()
        for attempt in range(1, self._probe_attempts + 1):
            await self._wait_for_input_end()
            try:
                request = _Request(
                    self._probe_command, None, self._probe_timeout, (), None, False, probe=True
                )
                await self._exchange(request, owns_lock=False)
                if self._owed:
                    await self._wait_for_quiet_line()
                    self._owed = 0  # what has not come by now is lost
            except AtTimeout:
                self._log_silence(attempt)
                continue
            self._desynced = False
            self._secret_owed = False
            self._prompts_owed = 0  # answered in order: no earlier prompt can still come
            log.info("modem on %s answers AT", self.port_name)
            return
        raise ModemNotResponding(self.port_name, self._probe_attempts, self._probe_timeout)

    def _log_silence(self, attempt: int) -> None:
        """A probe went unanswered. A module at power-on sleeps through the first AT it is
        sent (it is still booting, §7 'AT (repeat)'): that one silence, the channel's first
        timeout, before the module has answered anything and with attempts left, is expected.
        Any other (a probe out of attempts, a module that answered before) is a warning."""
        expected = (
            not self._answered and self.stats.timeouts == 1 and attempt < self._probe_attempts
        )
        log.log(
            logging.INFO if expected else logging.WARNING,
            "probe %d/%d: no answer to AT on %s%s",
            attempt,
            self._probe_attempts,
            self.port_name,
            " yet (the module may still be starting)" if expected else "",
        )

    async def _wait_for_input_end(self) -> None:
        """After a stray prompt, wait (at most ``input_timeout``) for the final result that
        ends the module's data input before writing anything."""
        taking = self._taking_input
        if taking is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._input_timeout):
                await taking.wait()
        if self._taking_input is taking:
            self._taking_input = None

    async def _wait_for_quiet_line(self) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._probe_timeout
        while True:
            now = loop.time()
            quiet_since = max(self._last_rx, now - self._quiet_time)
            remaining = quiet_since + self._quiet_time - now
            if remaining <= 0 or now >= give_up:
                return
            await asyncio.sleep(min(remaining, give_up - now))

    async def _exchange(self, request: _Request, *, owns_lock: bool) -> Response:
        """Send one command and wait for its final result; the lock is held by our caller.

        With ``owns_lock`` the lock is released when the exchange is over. If the caller is
        cancelled after the command went out, the exchange is not abandoned half-way (the
        module would be left waiting for promised data, and would read the next command as
        payload): the read callback finishes it and releases the lock at the final result, or
        at the deadline.
        """
        loop = asyncio.get_running_loop()
        limit = self._default_timeout if request.timeout is None else request.timeout
        if request.data is not None:
            limit += self.wire_time(len(request.data))
        if request.read_length is not None:
            limit += self.wire_time(request.read_length)
        # The deadline also allows for the command line's own time on the wire (an AT+QISENDEX
        # with 1,024 hex digits takes over a second at 9600 baud); the message names ``limit``.
        deadline = loop.time() + limit + self.wire_time(len(request.command) + 1)
        pending = _Pending(request, loop.create_future(), owns_lock, deadline=deadline)
        self._pending = pending
        self.stats.commands += 1
        shown = request.shown
        if log.isEnabledFor(logging.DEBUG):
            extra = f" [+{len(request.data)} bytes]" if request.data is not None else ""
            log.debug("→ %s%s", shown, extra)
        try:
            if request.read_length is not None:
                self._parser.arm_connect(request.read_length, request.sink)
            self._write(request.command.encode() + b"\r")
            result = await self._answer(pending)
        except TimeoutError:
            self.stats.timeouts += 1
            self._desynced = True
            self._owe(pending)
            self._parser.reset()
            self._settle(pending)
            raise AtTimeout(shown, limit, self.port_name) from None
        except asyncio.CancelledError:
            if pending.finished or not owns_lock:
                self._settle(pending)
                if not pending.finished:
                    self._desynced = True  # a probe cut short: resync before the next command
                    self._owe(pending)
            else:
                pending.abandoned = True
                pending.scope = None
                pending.expiry = loop.call_at(pending.deadline, self._expire, pending)
            raise
        except BaseException:
            self._settle(pending)
            raise
        self._settle(pending)
        response = Response(shown, tuple(pending.lines), result)
        if log.isEnabledFor(logging.DEBUG):
            if request.secret_answer or self._secret_owed:
                hidden = sum(len(line.text) for line in response.lines)
                log.debug("← [%d characters not shown] | %s", hidden, result.text)
            else:
                log.debug("← %s", _summarise(response))
        if request.check and not result.success:
            raise AtCommandFailed(shown, result.text, result.code)
        return response

    async def _answer(self, pending: _Pending) -> FinalResult:
        """The command's final result, by its deadline (which pushes may move, see
        :meth:`_extend`). A deadline that passed while the event loop itself was held up (a
        multi-megabyte SendLocalList validated on a slow controller) says nothing about the
        module: the command then gets ``STALL_GRACE`` more, once, to be read."""
        loop = asyncio.get_running_loop()
        graced = False
        while True:
            try:
                async with asyncio.timeout_at(pending.deadline) as pending.scope:
                    return await pending.result
            except TimeoutError:
                result = pending.result
                if result.done() and not result.cancelled():
                    return result.result()  # read in the same turn as the timer fired
                late = loop.time() - pending.deadline
                if late < 0:  # a push moved the deadline as the timer was firing
                    pending.result = loop.create_future()
                    continue
                if graced or late < STALL:
                    raise
                graced = True
                pending.result = loop.create_future()  # the timeout cancelled the first
                log.info(
                    "%s: the event loop was held up %.1f s past the command's deadline; "
                    "waiting %g s more before calling it unanswered",
                    pending.request.shown,
                    late,
                    STALL_GRACE,
                )
                pending.deadline = loop.time() + STALL_GRACE

    def _settle(self, pending: _Pending) -> None:
        if pending.settled:
            return
        pending.settled = True
        if not pending.request.bulk:
            self._last_interactive = asyncio.get_running_loop().time()
        if pending.request.read_length is not None:
            self._parser.disarm()  # an error came instead of CONNECT
        if pending.expiry is not None:
            pending.expiry.cancel()
        if self._pending is pending:
            self._pending = None
        if pending.owns_lock:
            self._lock.release()

    def _expire(self, pending: _Pending) -> None:
        # An abandoned command got no answer by its deadline.
        self.stats.timeouts += 1
        self._desynced = True
        self._owe(pending)
        self._parser.reset()
        self._settle(pending)

    def _owe(self, pending: _Pending) -> None:
        if pending.request.data is not None and not pending.prompted:
            self._prompts_owed += 1  # its prompt may still come, and open data input
        """A command given up on before its final result: the module may still answer it. While
        a secret answer is owed, no line the module says is shown in a log until the channel is
        back in step (a late AT+FileRead of a private key must not land in a warning)."""
        request = pending.request
        self._owed += 1
        if request.secret_answer:
            self._secret_owed = True

    def _write(self, data: bytes) -> None:
        if self._failure is not None:
            raise SerialPortError(f"serial port {self.port_name} is gone: {self._failure}")
        self._port.write(data)
        self.stats.bytes_out += len(data)

    # -- reading --

    def _on_data(self, data: bytes) -> None:
        self._last_rx = asyncio.get_running_loop().time()
        self.stats.bytes_in += len(data)
        unsolicited = self._parser.unsolicited_bytes
        for event in self._parser.feed(data):
            self._dispatch(event)
        pushed = self._parser.unsolicited_bytes - unsolicited
        if pushed and self._pending is not None and not self._pending.finished:
            self._extend(self._pending, self.wire_time(pushed))

    def _extend(self, pending: _Pending, seconds: float) -> None:
        """Give the command in flight the line time a push took: its answer queues behind
        the pushed bytes (1,500 of them take 1.6 s at 9600 baud)."""
        pending.deadline += seconds
        if pending.scope is not None and not pending.scope.expired():
            pending.scope.reschedule(pending.deadline)
        if pending.expiry is not None:
            pending.expiry.cancel()
            loop = asyncio.get_running_loop()
            pending.expiry = loop.call_at(pending.deadline, self._expire, pending)

    def when_lost(self, listener: Callable[[Exception], None]) -> None:
        """Call ``listener(error)`` if the port goes away (EOF, I/O error, USB unplugged)."""
        self._lost_listeners.append(listener)

    def _on_lost(self, error: Exception) -> None:
        log.error("%s", error)
        self._failure = error
        self._fail_pending(error)
        for listener in self._lost_listeners:
            listener(error)

    def _dispatch(self, event: AtEvent) -> None:
        pending = self._pending
        if isinstance(event, FinalResult):
            if self._taking_input is not None:
                self._taking_input.set()  # a module in data input answers nothing: it is over
            if pending is not None and pending.request.probe and event.kind is not ResultKind.OK:
                self._paid(f"late final result {event.text!r} while probing with AT")
            elif pending is not None and not pending.finished:
                if (
                    pending.request.blocked
                    and not pending.acknowledged
                    and event.kind is ResultKind.OK
                ):
                    pending.acknowledged = True  # accepted; the result comes when it is over
                else:
                    self._finish(pending, event)
            else:
                self._paid(f"final result {event.text!r} with no command waiting")
        elif isinstance(event, Prompt):
            if not self._prompted(pending):
                self._noise("data prompt '>' with no command waiting for it")
                if self._prompts_owed:  # a late prompt: the module now takes input
                    self._prompts_owed -= 1
                    self._desynced = True
                    if self._taking_input is None or self._taking_input.is_set():
                        self._taking_input = asyncio.Event()
        elif isinstance(event, Echo):
            log.debug("echo %s", event.text)
        elif isinstance(event, Urc):
            if pending is not None and event.text.startswith(pending.request.expect):
                pending.lines.append(Line(event.text, event.payload))
            else:
                self._deliver(event)
        elif isinstance(event, Line):
            if pending is not None:
                pending.lines.append(event)
            elif not self._deliver(Urc(event.text, event.payload)):
                self._noise(f"unsolicited line {self._shown(event.text)}")
        elif isinstance(event, Connect):
            if not self._prompted(pending):
                if pending is not None:
                    pending.lines.append(Line(event.text, event.payload))
                else:
                    self._noise(f"{event.text!r} with no command waiting")
        else:
            self._noise(f"{len(event.data)} bytes without a line ending")

    def _prompted(self, pending: _Pending | None) -> bool:
        """Write the data a command promised, now that the module asks for it."""
        if pending is None or pending.request.data is None or pending.prompted or pending.finished:
            return False
        pending.prompted = True
        try:
            self._write(pending.request.data)
        except SerialPortError as error:
            self._fail_pending(error)
        return True

    def _finish(self, pending: _Pending, result: FinalResult) -> None:
        pending.finished = True
        self._answered = True
        if pending.abandoned:
            log.debug("← %s (for a caller that gave up)", result.text)
            self._settle(pending)
        elif not pending.result.done():
            pending.result.set_result(result)

    def _deliver(self, urc: Urc) -> bool:
        delivered = False
        for prefix, handler in list(self._handlers):
            if urc.text.startswith(prefix):
                delivered = True
                try:
                    handler(urc)
                except Exception:
                    log.exception("URC handler for %r failed on %r", prefix, urc.text)
        if delivered:
            self.stats.urcs += 1
            log.debug("urc %s", urc.text)
        return delivered

    def _shown(self, text: str) -> str:
        """A line the module said, as a log may show it (not while a secret answer is owed)."""
        if self._secret_owed:
            return f"[{len(text)} characters not shown: a secret answer is owed]"
        return repr(text)

    def _paid(self, what: str) -> None:
        """A final result nobody waits for: most likely an owed answer, now come."""
        self._owed = max(0, self._owed - 1)
        self._noise(what)

    def _noise(self, what: str) -> None:
        self.stats.noise_lines += 1
        log.warning("ignoring noise on %s: %s", self.port_name, what)

    def _fail_pending(self, error: BaseException) -> None:
        pending = self._pending
        if pending is None or pending.finished:
            return
        pending.finished = True
        if pending.abandoned:
            self._settle(pending)
        elif not pending.result.done():
            pending.result.set_exception(error)


def _summarise(response: Response) -> str:
    parts = []
    for line in response.lines:
        parts.append(
            line.text if line.payload is None else f"{line.text} [{len(line.payload)} bytes]"
        )
    parts.append(response.result.text)
    return " | ".join(parts)
