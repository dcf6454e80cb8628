"""The simulated module's FILE, SSL-configuration and HTTP(S) commands (at-protocol.md §3.1,
§4, §6; EC20 HTTP manual, seed 000; BG95 HTTP(S) application note, seed 001).

A mixin of :class:`transport.simulator.quectel.QuectelModule`: the handlers answer exactly as
the manuals show (``CONNECT`` data mode, ``OK`` then the ``+QHTTPGET:`` URC, ``CONNECT <n>`` for
AT+QFREAD, the XOR checksum of AT+QFUPL/QFDWL), and an HTTP request becomes an
:class:`HttpRequest` action that the shell carries out against a real server, answering with
:meth:`HttpCommands.http_response` or :meth:`HttpCommands.http_failed`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from transport.simulator.module_storage import FILE_ERROR_TEXT, FileError, ModuleStorage, checksum
from transport.simulator.quectel_ftp import FTP_ERROR_TEXT
from transport.simulator.tls import (
    ALL_SUITES,
    CIPHER_SUITES,
    TlsSettings,
    cipher_suite_id,
    module_settings,
)

HTTP_ERROR_TEXT = {
    701: "HTTP(S) unknown error",
    702: "HTTP(S) timeout",
    703: "HTTP(S) busy",
    704: "HTTP(S) UART busy",
    705: "HTTP(S) no GET/POST requests",
    706: "HTTP(S) network busy",
    707: "HTTP(S) network open failed",
    708: "HTTP(S) network no configuration",
    709: "HTTP(S) network deactivated",
    710: "HTTP(S) network error",
    711: "HTTP(S) URL error",
    712: "HTTP(S) empty URL",
    713: "HTTP(S) IP address error",
    714: "HTTP(S) DNS error",
    715: "HTTP(S) socket create error",
    716: "HTTP(S) socket connect error",
    717: "HTTP(S) socket read error",
    718: "HTTP(S) socket write error",
    719: "HTTP(S) socket closed",
    720: "HTTP(S) data encode error",
    721: "HTTP(S) data decode error",
    722: "HTTP(S) read timeout",
    723: "HTTP(S) response failed",
    724: "Incoming call busy",
    725: "Voice call busy",
    726: "Input timeout",
    727: "Wait data timeout",
    728: "Wait HTTP(S) response timeout",
    729: "Memory allocation failed",
    730: "Invalid parameter",
}

HTTP_OPTIONS = {  # AT+QHTTPCFG option: (allowed values, default) (§6)
    "contextid": (range(1, 17), 1),
    "requestheader": (range(2), 0),
    "responseheader": (range(2), 0),
    "sslctxid": (range(6), 1),
    "contenttype": (range(4), 0),
}
CONTENT_TYPES = (
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/octet-stream",
    "multipart/form-data",
)
SSL_DEFAULTS = {
    "sslversion": "4",
    "ciphersuite": "0XFFFF",
    "cacert": "",
    "clientcert": "",
    "clientkey": "",
    "seclevel": "0",
    "ignorelocaltime": "1",
    "negotiatetime": "300",
    "sni": "0",
    "checkhost": "0",  # newer firmware (§3.1 "others"); older firmware answers ERROR
}
SSL_FILE_OPTIONS = ("cacert", "clientcert", "clientkey")
MAX_URL = 700
MAX_GET_REQUEST = 2048
MAX_POST = 1024000


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """The module sends ``raw`` (request line, headers, body) to the URL's server and waits up
    to ``timeout`` seconds for the response. With ``raw`` None the bytes come from the host
    after ``CONNECT``, which the module says only once the server is connected (seed 000 §2.3,
    §2.4): the shell tells it (``http_connected``) and gets them in an :class:`HttpBody`."""

    request_id: int
    url: str
    raw: bytes | None
    timeout: float
    tls: TlsSettings | None


@dataclass(frozen=True, slots=True)
class HttpBody:
    """The bytes of request ``request_id`` the host sent after ``CONNECT``; None when it did
    not send them in time (the module answered an error; the connection is dropped)."""

    request_id: int
    raw: bytes | None


@dataclass(frozen=True, slots=True)
class _Awaiting:
    """A request whose ``CONNECT`` waits for the server connection: the host's input then."""

    length: int
    input_time: float
    complete: Callable[[bytes, bool], None]


@dataclass
class DataInput:
    """Raw bytes the host sends after ``CONNECT`` (QHTTPURL, QHTTPGET with a custom header,
    QHTTPPOST, QFUPL, QFWRITE)."""

    length: int
    deadline: float
    idle_timeout: float  # reset by every byte (QFUPL, QFWRITE) or fixed (0)
    complete: Callable[[bytes, bool], None]  # (data, timed_out)
    ack_every: int = 0  # QFUPL ACK mode: an "A" after each 1024 bytes
    data: bytearray = field(default_factory=bytearray)


@dataclass
class _Response:
    status: int
    header: bytes
    body: bytes
    content_length: int | None


class HttpCommands:
    """FILE, QSSLCFG and QHTTP* handlers; see the module docstring."""

    # Provided by QuectelModule.
    _reply: list[str]
    _reply_raw: bytes | None
    _after_reply: Callable[[float], None] | None
    _output: list[bytes]
    cmee: int

    def _urc(self, text: str, raw: bytes = b"") -> None:
        raise NotImplementedError

    def _context_active(self, context_id: int) -> bool:
        raise NotImplementedError

    def _checkhost_supported(self) -> bool:
        raise NotImplementedError

    def _module_time(self) -> float:
        """The module clock now, UTC epoch seconds."""
        raise NotImplementedError

    def _init_http(self, storage: ModuleStorage) -> None:
        self.storage = storage
        self.http_cfg = {name: default for name, (_, default) in HTTP_OPTIONS.items()}
        self.ssl_cfg: dict[int, dict[str, str]] = {}
        self.http_url: str | None = None
        self.http_actions: list[HttpRequest | HttpBody] = []
        self.data_input: DataInput | None = None
        self._http_op: str | None = None  # the URC name of the request in flight
        # The command (QHTTPGET with a custom header, QHTTPPOST) holding the line until the
        # server is connected: the module reads no input meanwhile.
        self.http_connecting: _Awaiting | None = None
        self._http_seq = 0
        self._http_response: _Response | None = None

    @property
    def http_busy(self) -> bool:
        """A request is out and the module waits for the server (a new request gets 703)."""
        return self._http_op is not None

    def _error(self, code: int) -> str:
        if self.cmee == 0:
            return "ERROR"
        if self.cmee == 2:
            text = (
                HTTP_ERROR_TEXT.get(code)
                or FTP_ERROR_TEXT.get(code)
                or FILE_ERROR_TEXT.get(code, "unknown")
            )
            return f"+CME ERROR: {text}"
        return f"+CME ERROR: {code}"

    def _open_input(
        self,
        length: int,
        timeout: float,
        complete: Callable[[bytes, bool], None],
        *,
        prompt: bytes = b"\r\nCONNECT\r\n",
        idle: bool = False,
        ack: bool = False,
    ) -> None:
        self._reply_raw = prompt

        def start(at: float) -> None:
            self.data_input = DataInput(
                length, at + timeout, timeout if idle else 0.0, complete, 1024 if ack else 0
            )

        self._after_reply = start

    def take_data_input(self, inbuf: bytearray, now: float) -> None:
        pending = self.data_input
        assert pending is not None
        take = min(pending.length - len(pending.data), len(inbuf))
        before = len(pending.data)
        pending.data += inbuf[:take]
        del inbuf[:take]
        if take and pending.idle_timeout:
            pending.deadline = now + pending.idle_timeout
        if pending.ack_every:
            crossed = len(pending.data) // pending.ack_every - before // pending.ack_every
            if len(pending.data) < pending.length:
                self._output.extend([b"A"] * crossed)
        if len(pending.data) >= pending.length:
            self.data_input = None
            pending.complete(bytes(pending.data), False)

    def data_input_timed_out(self) -> None:
        pending = self.data_input
        assert pending is not None
        self.data_input = None
        pending.complete(bytes(pending.data), True)

    # -- FILE (§4) --

    def _cmd_qflds(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            return "OK"
        if form == "exec":
            used = self.storage.used("UFS")
            count = sum(1 for k in self.storage.files if k.startswith("UFS:"))
            self._reply.append(f"+QFLDS: {used},{count}")
            return "OK"
        if form != "write" or len(args) != 1 or args[0].upper() not in ("UFS", "RAM"):
            return self._error(400)
        drive = args[0].upper()
        self._reply.append(f"+QFLDS: {self.storage.free(drive)},{self.storage.size(drive)}")
        return "OK"

    def _cmd_qflst(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            return "OK"
        pattern = "*" if form == "exec" else (args[0] if args else "")
        if form not in ("exec", "write") or not pattern:
            return self._error(400)
        for name, size in self.storage.listing(pattern):
            self._reply.append(f'+QFLST: "{name}",{size}')
        return "OK"

    def _cmd_qfdel(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append("+QFDEL: <filename>")
            return "OK"
        if form != "write" or len(args) != 1:
            return self._error(400)
        try:
            self.storage.delete(args[0])
        except FileError as error:
            return self._error(error.code)
        return "OK"

    def _cmd_qfupl(self, form: str, args: list[str], now: float) -> str | None:
        if form == "test":
            self._reply.append(f"+QFUPL: <filename>,(1-{self.storage.free('UFS')}),(1-65535),(0,1)")
            return "OK"
        if form != "write" or not 1 <= len(args) <= 4 or not all(a.isdigit() for a in args[1:]):
            return self._error(400)
        name = args[0]
        size = int(args[1]) if len(args) > 1 else 10240
        timeout = int(args[2]) if len(args) > 2 else 5
        ack = len(args) > 3 and args[3] == "1"
        try:
            key = self.storage.key(name)
        except FileError as error:
            return self._error(error.code)
        if key in self.storage.files:
            return self._error(407)
        if size > self.storage.free(key[:3]):
            return self._error(403)

        def complete(data: bytes, timed_out: bool) -> None:
            if timed_out and not data:
                self._output.append(f"\r\n{self._error(421)}\r\n".encode())
                return
            # Data received before a timeout or +++ is kept (§4.4).
            self.storage.write_file(name, data, overwrite=False)
            self._output.append(
                f"\r\n+QFUPL: {len(data)},{checksum(data):x}\r\n\r\nOK\r\n".encode()
            )

        self._open_input(size, timeout, complete, idle=True, ack=ack)
        return None

    def _cmd_qfdwl(self, form: str, args: list[str], now: float) -> str | None:
        if form == "test":
            self._reply.append("+QFDWL: <filename>")
            return "OK"
        if form != "write" or len(args) != 1:
            return self._error(400)
        try:
            data = self.storage.read_file(args[0])
        except FileError as error:
            return self._error(error.code)
        self._reply_raw = (
            b"\r\nCONNECT\r\n"
            + data
            + f"\r\n+QFDWL: {len(data)},{checksum(data):x}\r\n\r\nOK\r\n".encode()
        )
        return None

    def _cmd_qfopen(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append("+QFOPEN: <filename>,(0-2)")
            return "OK"
        if form == "read":
            for handle, h in sorted(self.storage.handles.items()):
                self._reply.append(f'+QFOPEN: "{h.key}",{handle},{h.mode}')
            return "OK"
        if form != "write" or not 1 <= len(args) <= 2:
            return self._error(400)
        mode = args[1] if len(args) == 2 else "0"
        if mode not in ("0", "1", "2"):
            return self._error(400)
        try:
            handle = self.storage.open(args[0], int(mode))
        except FileError as error:
            return self._error(error.code)
        self._reply.append(f"+QFOPEN: {handle}")
        return "OK"

    def _handle_args(self, args: list[str], most: int) -> list[int] | None:
        if not 1 <= len(args) <= most or not all(a.isdigit() for a in args):
            return None
        return [int(a) for a in args]

    def _cmd_qfread(self, form: str, args: list[str], now: float) -> str | None:
        values = self._handle_args(args, 2) if form == "write" else None
        if values is None:
            return self._error(400)
        try:
            data = self.storage.read(values[0], values[1] if len(values) == 2 else None)
        except FileError as error:
            return self._error(error.code)
        self._reply_raw = f"\r\nCONNECT {len(data)}\r\n".encode() + data + b"\r\nOK\r\n"
        return None

    def _cmd_qfwrite(self, form: str, args: list[str], now: float) -> str | None:
        values = self._handle_args(args, 3) if form == "write" else None
        if values is None:
            return self._error(400)
        handle = values[0]
        length = values[1] if len(values) > 1 else 10240
        timeout = values[2] if len(values) > 2 else 5
        if handle not in self.storage.handles:
            return self._error(416)

        def complete(data: bytes, timed_out: bool) -> None:
            try:
                total = self.storage.write(handle, data)
            except FileError as error:
                self._output.append(f"\r\n{self._error(error.code)}\r\n".encode())
                return
            self._output.append(f"\r\n+QFWRITE: {len(data)},{total}\r\n\r\nOK\r\n".encode())

        self._open_input(length, timeout, complete, idle=True)
        return None

    def _cmd_qfseek(self, form: str, args: list[str], now: float) -> str:
        values = self._handle_args(args, 3) if form == "write" and len(args) >= 2 else None
        if values is None:
            return self._error(400)
        try:
            self.storage.seek(values[0], values[1], values[2] if len(values) == 3 else 0)
        except FileError as error:
            return self._error(error.code)
        return "OK"

    def _cmd_qfposition(self, form: str, args: list[str], now: float) -> str:
        values = self._handle_args(args, 1) if form == "write" else None
        if values is None:
            return self._error(400)
        try:
            self._reply.append(f"+QFPOSITION: {self.storage.position(values[0])}")
        except FileError as error:
            return self._error(error.code)
        return "OK"

    def _cmd_qfclose(self, form: str, args: list[str], now: float) -> str:
        values = self._handle_args(args, 1) if form == "write" else None
        if values is None:
            return self._error(400)
        try:
            self.storage.close(values[0])
        except FileError as error:
            return self._error(error.code)
        return "OK"

    # -- SSL contexts (§3.1) --

    def _ssl_options(self) -> list[str]:
        return [o for o in SSL_DEFAULTS if o != "checkhost" or self._checkhost_supported()]

    def _cmd_qsslcfg(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            # The BG96 test response (§3.1) and the options of newer firmware.
            suites = ",".join([*CIPHER_SUITES, ALL_SUITES])
            ranges = {
                "sslversion": "(0-4)",
                "ciphersuite": f"({suites})",
                "cacert": "<cacertpath>",
                "clientcert": "<client_cert_path>",
                "clientkey": "<client_key_path>",
                "seclevel": "(0-2)",
                "ignorelocaltime": "(0,1)",
                "negotiatetime": "(10-300)",
                "sni": "(0,1)",
                "checkhost": "(0,1)",
            }
            for option in self._ssl_options():
                self._reply.append(f'+QSSLCFG: "{option}",(0-5),{ranges[option]}')
            return "OK"
        if form != "write" or len(args) not in (2, 3) or args[0] not in self._ssl_options():
            return "ERROR"
        if not args[1].isdigit() or int(args[1]) > 5:
            return "ERROR"
        ctx = self.ssl_cfg.setdefault(int(args[1]), dict(SSL_DEFAULTS))
        option = args[0]
        if len(args) == 2:
            value = ctx[option]
            shown = f'"{value}"' if option in SSL_FILE_OPTIONS else value
            self._reply.append(f'+QSSLCFG: "{option}",{args[1]},{shown}')
            return "OK"
        value = args[2]
        if option == "ciphersuite":
            suite = cipher_suite_id(value)
            if suite is None:
                return "ERROR"  # a suite this firmware does not know
            value = suite
        valid = {
            "sslversion": value in ("0", "1", "2", "3", "4"),
            "seclevel": value in ("0", "1", "2"),
            "ignorelocaltime": value in ("0", "1"),
            "sni": value in ("0", "1"),
            "checkhost": value in ("0", "1"),
            "negotiatetime": value.isdigit() and 10 <= int(value) <= 300,
        }.get(option, True)
        if not valid:
            return "ERROR"
        ctx[option] = value
        return "OK"

    def ssl_settings(self, ssl_context: int, host: str) -> TlsSettings:
        """What SSL context ``ssl_context`` says about a connection to ``host`` now."""
        options = self.ssl_cfg.get(ssl_context, SSL_DEFAULTS)
        return module_settings(options, self.storage, host, self._module_time())

    def _tls_for(self, url: str) -> TlsSettings | None:
        if not url.lower().startswith("https://"):
            return None
        return self.ssl_settings(self.http_cfg["sslctxid"], urlsplit(url).hostname or "")

    # -- HTTP(S) (§6) --

    def _cmd_qhttpcfg(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            for name, (values, _) in HTTP_OPTIONS.items():
                self._reply.append(f'+QHTTPCFG: "{name}",({values.start}-{values.stop - 1})')
            return "OK"
        if form == "read":
            for name, value in self.http_cfg.items():
                self._reply.append(f'+QHTTPCFG: "{name}",{value}')
            return "OK"
        if form != "write" or len(args) not in (1, 2) or args[0] not in HTTP_OPTIONS:
            return self._error(730)
        name = args[0]
        if len(args) == 1:
            self._reply.append(f'+QHTTPCFG: "{name}",{self.http_cfg[name]}')
            return "OK"
        allowed, _ = HTTP_OPTIONS[name]
        if not args[1].isdigit() or int(args[1]) not in allowed:
            return self._error(730)
        self.http_cfg[name] = int(args[1])
        return "OK"

    def _cmd_qhttpurl(self, form: str, args: list[str], now: float) -> str | None:
        if form == "test":
            self._reply.append(f"+QHTTPURL: (1-{MAX_URL}),(1-65535)")
            return "OK"
        if form == "read":
            if self.http_url is not None:
                self._reply.append(f"+QHTTPURL: {self.http_url}")
            return "OK"
        numbers = self._numbers(args, 1, 2)
        if form != "write" or numbers is None or not 1 <= numbers[0] <= MAX_URL:
            return self._error(730)
        if self._http_op is not None:
            return self._error(703)

        def complete(data: bytes, timed_out: bool) -> None:
            text = data.decode("latin-1")
            if timed_out:
                result = self._error(726)
            elif (
                not text.lower().startswith(("http://", "https://")) or not urlsplit(text).hostname
            ):
                result = self._error(711)
            else:
                self.http_url = text
                result = "OK"
            self._output.append(f"\r\n{result}\r\n".encode())

        self._open_input(numbers[0], numbers[1] if len(numbers) == 2 else 60, complete)
        return None

    def _numbers(self, args: list[str], least: int, most: int) -> list[int] | None:
        if not least <= len(args) <= most or not all(a.isdigit() for a in args):
            return None
        return [int(a) for a in args]

    def _http_ready(self) -> str | None:
        """The error that stops a new request now, if any."""
        if self._http_op is not None:
            return self._error(703)
        if self.http_url is None:
            return self._error(712)
        if not self._context_active(self.http_cfg["contextid"]):
            return self._error(709)
        return None

    def _cmd_qhttpget(self, form: str, args: list[str], now: float) -> str | None:
        if form == "test":
            self._reply.append(f"+QHTTPGET: (1-65535),(1-{MAX_GET_REQUEST}),(1-65535)")
            return "OK"
        numbers = self._numbers(args, 0, 3) if form in ("exec", "write") else None
        if numbers is None:
            return self._error(730)
        refused = self._http_ready()
        if refused is not None:
            return refused
        rsptime = numbers[0] if numbers else 60
        if not self.http_cfg["requestheader"]:
            self._send_http("+QHTTPGET", self._request("GET", b""), rsptime)
            return "OK"
        if len(numbers) < 2 or not 1 <= numbers[1] <= MAX_GET_REQUEST:
            return self._error(730)

        self._connect_first(
            "+QHTTPGET",
            numbers[1],
            numbers[2] if len(numbers) == 3 else 60,
            rsptime,
            lambda data: data,
        )
        return None

    def _cmd_qhttppost(self, form: str, args: list[str], now: float) -> str | None:
        if form == "test":
            self._reply.append(f"+QHTTPPOST: (1-{MAX_POST}),(1-65535),(1-65535)")
            return "OK"
        numbers = self._numbers(args, 1, 3) if form == "write" else None
        if numbers is None or not 1 <= numbers[0] <= MAX_POST:
            return self._error(730)
        refused = self._http_ready()
        if refused is not None:
            return refused
        input_time = numbers[1] if len(numbers) > 1 else 60
        rsptime = numbers[2] if len(numbers) > 2 else 60
        header = bool(self.http_cfg["requestheader"])
        self._connect_first(
            "+QHTTPPOST",
            numbers[0],
            input_time,
            rsptime,
            lambda data: data if header else self._request("POST", data),
        )
        return None

    def _connect_first(
        self, op: str, length: int, input_time: float, rsptime: int, raw: Callable[[bytes], bytes]
    ) -> None:
        """A request whose bytes the host sends after ``CONNECT``: the module connects to the
        server first and holds the line until then; ``CONNECT`` (or ``+CME ERROR``) follows
        (seed 000 §2.3: "CONNECT may be outputted in 125s to indicate that the connection is
        successful"; §2.4 likewise)."""
        self._send_http(op, None, rsptime)
        request_id = self._http_seq

        def complete(data: bytes, timed_out: bool) -> None:
            if timed_out:
                self._http_op = None
                self.http_actions.append(HttpBody(request_id, None))
                self._output.append(f"\r\n{self._error(726)}\r\n".encode())
                return
            self._output.append(b"\r\nOK\r\n")
            self.http_actions.append(HttpBody(request_id, raw(data)))

        self.http_connecting = _Awaiting(length, input_time, complete)

    def http_connected(self, request_id: int, now: float) -> None:
        """The shell connected request ``request_id`` to its server: ``CONNECT``, then input."""
        awaiting = self.http_connecting
        if awaiting is None or request_id != self._http_seq or self._http_op is None:
            return
        self.http_connecting = None
        self._output.append(b"\r\nCONNECT\r\n")
        self.data_input = DataInput(
            awaiting.length, now + awaiting.input_time, 0.0, awaiting.complete
        )

    def _cmd_qhttppostfile(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append("+QHTTPPOSTFILE: <file_name>,(1-65535)")
            return "OK"
        if form != "write" or not 1 <= len(args) <= 2 or not all(a.isdigit() for a in args[1:]):
            return self._error(730)
        refused = self._http_ready()
        if refused is not None:
            return refused
        try:
            data = self.storage.read_file(args[0])
        except FileError as error:
            return self._error(error.code)
        raw = data if self.http_cfg["requestheader"] else self._request("POST", data)
        self._send_http("+QHTTPPOSTFILE", raw, int(args[1]) if len(args) == 2 else 60)
        return "OK"

    def _cmd_qhttpread(self, form: str, args: list[str], now: float) -> str | None:
        if form == "test":
            self._reply.append("+QHTTPREAD: (1-65535)")
            return "OK"
        if self._numbers(args, 0, 1) is None or form not in ("exec", "write"):
            return self._error(730)
        response = self._http_response
        if response is None:
            return self._error(705)
        self._http_response = None
        self._reply_raw = b"\r\nCONNECT\r\n" + self._response_bytes(response) + b"\r\nOK\r\n"
        self._after_reply = lambda _at: self._urc("+QHTTPREAD: 0")
        return None

    def _cmd_qhttpreadfile(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append("+QHTTPREADFILE: <file_name>,(1-65535)")
            return "OK"
        if form != "write" or not 1 <= len(args) <= 2 or not all(a.isdigit() for a in args[1:]):
            return self._error(730)
        response = self._http_response
        if response is None:
            return self._error(705)
        try:
            self.storage.key(args[0])
        except FileError as error:
            return self._error(error.code)
        self._http_response = None
        name, data = args[0], self._response_bytes(response)

        def write(_at: float) -> None:
            try:
                self.storage.write_file(name, data, overwrite=True)
            except FileError as error:
                self._urc(f"+QHTTPREADFILE: {error.code}")
            else:
                self._urc("+QHTTPREADFILE: 0")

        self._after_reply = write
        return "OK"

    def _cmd_qhttpstop(self, form: str, args: list[str], now: float) -> str:
        self._http_op = None
        self._http_response = None
        return "OK"

    def _response_bytes(self, response: _Response) -> bytes:
        if self.http_cfg["responseheader"]:
            return response.header + response.body
        return response.body

    def _request(self, method: str, body: bytes) -> bytes:
        """The request the module writes itself when "requestheader" is 0 (seed 000 §1.2.1)."""
        assert self.http_url is not None
        parts = urlsplit(self.http_url)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: {parts.netloc.rpartition('@')[2]}",
            "Accept: */*",
            "User-Agent: QUECTEL_MODULE",
            "Connection: Keep-Alive",
        ]
        if method == "POST":
            lines.append(f"Content-Type: {CONTENT_TYPES[self.http_cfg['contenttype']]}")
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def _send_http(self, op: str, raw: bytes | None, rsptime: int) -> None:
        assert self.http_url is not None
        self._http_seq += 1
        self._http_op = op
        self._http_response = None
        url = self.http_url
        self.http_actions.append(
            HttpRequest(self._http_seq, url, raw, float(rsptime), self._tls_for(url))
        )

    def http_response(
        self, request_id: int, status: int, header: bytes, body: bytes, content_length: int | None
    ) -> None:
        """The shell got the server's response to request ``request_id``."""
        if request_id != self._http_seq or self._http_op is None:
            return  # stopped or superseded
        op, self._http_op = self._http_op, None
        self._http_response = _Response(status, header, body, content_length)
        length = "" if content_length is None else f",{content_length}"
        if op == "+QHTTPPOSTFILE" and content_length is None:
            length = ",0"  # "+QHTTPPOSTFILE: <err>[,<httprspcode>,<content_length>]"
        self._urc(f"{op}: 0,{status}{length}")

    def http_failed(self, request_id: int, code: int) -> None:
        if request_id != self._http_seq or self._http_op is None:
            return
        op, self._http_op = self._http_op, None
        if self.http_connecting is not None:  # no CONNECT yet: the command itself fails
            self.http_connecting = None
            self._output.append(f"\r\n{self._error(code)}\r\n".encode())
            return
        self._urc(f"{op}: {code}")

    def _reset_http(self) -> None:
        self.http_cfg = {name: default for name, (_, default) in HTTP_OPTIONS.items()}
        self.http_url = None
        self.data_input = None
        self.http_connecting = None
        self._http_op = None
        self._http_response = None
        self.storage.lose_ram()
