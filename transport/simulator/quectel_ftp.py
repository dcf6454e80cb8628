"""The simulated module's FTP(S) client: AT+QFTPCFG/QFTPOPEN/QFTPCWD/QFTPPWD/QFTPSIZE/QFTPMDTM/
QFTPGET/QFTPPUT/QFTPDEL/QFTPMKDIR/QFTPRMDIR/QFTPRENAME/QFTPSTAT/QFTPLEN/QFTPCLOSE
(at-protocol.md §5, from the BG96 FTP(S) manual; field quirks §9.14, §9.16).

Two parts, as for the module's other network services:

* :class:`FtpCommands`, a mixin of :class:`transport.simulator.quectel.QuectelModule`, is the
  pure interpreter: the manual's syntax and ranges, ``OK`` then the ``+QFTPxxx: <err>,<...>``
  URC, one session and one operation at a time (603 "busy" otherwise, also while an
  AT+QFTPCLOSE is under way, §9.14), a download written into the module's storage as it
  arrives (what came before a failure stays there), ``<err>`` codes 601-631 with the server's
  reply as ``<protocol_error>``. Each operation becomes an action for the network.
* :class:`FtpNetwork` carries the actions out with ``ftplib`` against the real server, one
  worker thread per session (the control connection), and hands back events that the module
  takes at its next :meth:`~transport.simulator.quectel.QuectelModule.tick`: while an
  operation is out, the module asks to be ticked every :data:`POLL` seconds. (The shell,
  :mod:`transport.simulator.shell`, does not know FTP: given an ``FtpOperation`` branch beside
  its ``HttpRequest`` one, the threads could hand their events to the loop directly.)

Not modelled, and answered with an error: the ``"COM:"`` forms of QFTPGET/QFTPPUT and the
listings (their data-mode output has no length, §9.16, and no driver here uses them), implicit
FTPS (``"ssltype"`` 1: ``ftplib`` speaks only AUTH TLS), and the read form ``AT+QFTPCFG?``
(not in the manual). Also not confirmed by any manual, and chosen here: an operation without a
session answers ``+CME ERROR: 606``; a download into a module file writes the file anew from
``<startpos>`` on; a module file that cannot take the data ends the download with 613.
"""

from __future__ import annotations

import contextlib
import enum
import ftplib
import io
import logging
import queue
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from transport.simulator.module_storage import FileError, ModuleStorage
from transport.simulator.tls import TlsFailure, TlsSettings, check_peer, client_context

log = logging.getLogger(__name__)

POLL = 0.005  # seconds between looks at the network's events while an operation is out
READ_SIZE = 32 * 1024

FTP_ERROR_TEXT = {
    601: "Unknown error",
    602: "FTP(S) server blocked",
    603: "FTP(S) server busy",
    604: "DNS parse failed",
    605: "Network error",
    606: "Control connection closed",
    607: "Data connection closed",
    608: "Socket closed by peer",
    609: "Timeout error",
    610: "Invalid parameter",
    611: "Failed to open file",
    612: "File position invalid",
    613: "File error",
    614: "Service not available, closing control connection",
    615: "Open data connection failed",
    616: "Connection closed; transfer aborted",
    617: "Requested file action not taken",
    618: "Requested action aborted: local error in processing",
    619: "Requested action not taken: insufficient system storage",
    620: "Syntax error, command unrecognized",
    621: "Syntax error in parameters or arguments",
    622: "Command not implemented",
    623: "Bad sequence of commands",
    624: "Command parameter not implemented",
    625: "Not logged in",
    626: "Need account for storing files",
    627: "Requested action not taken",
    628: "Requested action aborted: page type unknown",
    629: "Requested file action aborted",
    630: "Requested file name invalid",
    631: "SSL authentication failed",
}
# The server replies the 614-630 codes stand for (§5.5: the table follows RFC 959's replies).
REPLY_ERRORS = {
    421: 614,
    425: 615,
    426: 616,
    450: 617,
    451: 618,
    452: 619,
    500: 620,
    501: 621,
    502: 622,
    503: 623,
    504: 624,
    530: 625,
    532: 626,
    550: 627,
    551: 628,
    552: 629,
    553: 630,
}
BUSY = 603
NO_SESSION = 606
INVALID = 610
OPEN_FAILED = 611
FILE_ERROR = 613
ABORTED = 616

# AT+QFTPCFG options with a single number: (allowed, default) (§5.1).
FTP_NUMBERS = {
    "filetype": (range(2), 0),
    "transmode": (range(2), 0),
    "contextid": (range(1, 17), 1),
    "rsptimeout": (range(20, 181), 90),
    "ssltype": (range(3), 0),
    "sslctxid": (range(6), 0),
    "data_address": (range(2), 0),
}
MAX_ACCOUNT = 255
MAX_REMOTE_NAME = 255
MAX_LOCAL_NAME = 60


class FtpState(enum.IntEnum):
    """``<ftpstat>`` of AT+QFTPSTAT (§5.2)."""

    OPENING = 0
    IDLE = 1
    TRANSFERRING = 2
    CLOSING = 3
    CLOSED = 4


# --- actions for the network and its events back --------------------------------------------


@dataclass(frozen=True, slots=True)
class FtpConnect:
    """Open the control connection, log in, set the modes (AT+QFTPOPEN)."""

    session: int
    request_id: int
    host: str
    port: int
    user: str = ""
    password: str = ""
    tls: TlsSettings | None = None  # explicit FTPS ("ssltype" 2)
    passive: bool = True
    server_pasv_address: bool = True  # "data_address" 0
    binary: bool = True
    timeout: float = 90.0  # "rsptimeout"


@dataclass(frozen=True, slots=True)
class FtpOperation:
    """One operation of an open session: ``kind`` is cwd, pwd, size, mdtm, dele, mkd, rmd,
    rename, retr or stor."""

    session: int
    request_id: int
    kind: str
    name: str = ""
    other: str = ""  # rename's new name
    offset: int = 0  # REST for retr and stor
    data: bytes = b""  # what stor sends


@dataclass(frozen=True, slots=True)
class FtpQuit:
    session: int
    request_id: int


FtpAction = FtpConnect | FtpOperation | FtpQuit


@dataclass(frozen=True, slots=True)
class FtpEvent:
    """What became of request ``request_id``: ``data`` pieces of a download, then ``done``
    (``value``: the answer) or ``failed`` (``error`` 6xx, ``reply`` the server's code or 0)."""

    session: int
    request_id: int
    kind: str  # "data", "done" or "failed"
    value: str = ""
    data: bytes = b""
    error: int = 0
    reply: int = 0


# --- the interpreter ------------------------------------------------------------------------


@dataclass
class _Request:
    request_id: int
    urc: str  # "+QFTPGET", ...
    transfer: bool = False
    local: str | None = None  # the module file a download goes into
    count: int = 0  # bytes moved so far


class FtpCommands:
    """AT+QFTP* handlers; see the module docstring."""

    # Provided by QuectelModule.
    _reply: list[str]
    _after_reply: Callable[[float], None] | None
    storage: ModuleStorage

    def _urc(self, text: str, raw: bytes = b"") -> None:
        raise NotImplementedError

    def _error(self, code: int) -> str:
        raise NotImplementedError

    def _context_active(self, context_id: int) -> bool:
        raise NotImplementedError

    def ssl_settings(self, ssl_context: int, host: str) -> TlsSettings:
        raise NotImplementedError

    def _init_ftp(self) -> None:
        self.ftp_network: FtpNetwork | None = None  # made at the first AT+QFTPOPEN
        self.ftp_actions: list[FtpAction] = []
        self._ftp_session = 0
        self._ftp_seq = 0
        self._reset_ftp()

    def _reset_ftp(self) -> None:
        """Power on, reset: configuration back to defaults, no session."""
        self.ftp_cfg: dict[str, int] = {name: default for name, (_, default) in FTP_NUMBERS.items()}
        self.ftp_account = ("", "")
        self._drop_ftp_session()

    def _drop_ftp_session(self) -> None:
        if self.ftp_network is not None:
            self.ftp_network.abort(self._ftp_session)
        self.ftp_state = FtpState.CLOSED
        self._ftp_request: _Request | None = None
        self._ftp_context = 0
        self.ftp_transferred = 0  # AT+QFTPLEN

    # -- the module's side of the network --

    @property
    def ftp_waiting(self) -> bool:
        """An operation is out: the network's events must be looked at soon."""
        return self._ftp_request is not None

    def take_ftp_actions(self) -> None:
        """Hand the operations decided since the last call to the network."""
        if not self.ftp_actions:
            return
        if self.ftp_network is None:
            self.ftp_network = FtpNetwork()
        for action in self.ftp_actions:
            self.ftp_network.submit(action)
        self.ftp_actions = []

    def poll_ftp(self) -> None:
        if self.ftp_network is None:
            return
        for event in self.ftp_network.events():
            self._ftp_event(event)

    def ftp_network_lost(self, context_id: int) -> None:
        """The PDP context went: the control connection with it (605, "Network error")."""
        if self.ftp_state is FtpState.CLOSED or self._ftp_context != context_id:
            return
        request = self._ftp_request
        self._drop_ftp_session()
        if request is not None:
            self._urc(f"{request.urc}: 605,0")

    # -- commands --

    def _cmd_qftpcfg(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply += [
                '+QFTPCFG: "account",<username>,<password>',
                '+QFTPCFG: "filetype",(0,1)',
                '+QFTPCFG: "transmode",(0,1)',
                '+QFTPCFG: "contextid",(1-16)',
                '+QFTPCFG: "rsptimeout",(20-180)',
                '+QFTPCFG: "ssltype",(0-2)',
                '+QFTPCFG: "sslctxid",(0-5)',
                '+QFTPCFG: "data_address",(0,1)',
            ]
            return "OK"
        if form != "write" or not args:
            return self._error(INVALID)  # the read form is not in the manual
        option = args[0].lower()
        if option == "account":
            if len(args) == 1:
                user, password = self.ftp_account
                self._reply.append(f'+QFTPCFG: "account","{user}","{password}"')
                return "OK"
            if len(args) != 3 or any(len(a.encode()) > MAX_ACCOUNT for a in args[1:]):
                return self._error(INVALID)
            self.ftp_account = (args[1], args[2])
            return "OK"
        if option not in FTP_NUMBERS or len(args) > 2:
            return self._error(INVALID)
        if len(args) == 1:
            self._reply.append(f'+QFTPCFG: "{option}",{self.ftp_cfg[option]}')
            return "OK"
        allowed, _ = FTP_NUMBERS[option]
        if not args[1].isdigit() or int(args[1]) not in allowed:
            return self._error(INVALID)
        self.ftp_cfg[option] = int(args[1])
        return "OK"

    def _cmd_qftpopen(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append('+QFTPOPEN: "<hostname>",(1-65535)')
            return "OK"
        if form != "write" or not 1 <= len(args) <= 2 or not args[0]:
            return self._error(INVALID)
        if len(args) == 2 and not (args[1].isdigit() and 1 <= int(args[1]) <= 65535):
            return self._error(INVALID)
        if self.ftp_state is not FtpState.CLOSED:
            return self._error(BUSY)  # a session is open, opening or closing (§9.14)
        cfg = self.ftp_cfg
        if not self._context_active(cfg["contextid"]):
            return self._error(605)
        if cfg["ssltype"] == 1:
            # Implicit FTPS is not modelled (ftplib speaks AUTH TLS only): said, not faked.
            log.warning("simulated AT+QFTPOPEN: implicit FTPS (ssltype 1) is not modelled")
            return self._error(601)
        host, port = args[0], int(args[1]) if len(args) == 2 else 21
        tls = self.ssl_settings(cfg["sslctxid"], host) if cfg["ssltype"] == 2 else None
        self._ftp_session += 1
        self._ftp_context = cfg["contextid"]
        self.ftp_state = FtpState.OPENING
        request = self._new_request("+QFTPOPEN")
        user, password = self.ftp_account
        action = FtpConnect(
            self._ftp_session,
            request.request_id,
            host,
            port,
            user,
            password,
            tls,
            passive=cfg["transmode"] == 1,
            server_pasv_address=cfg["data_address"] == 0,
            binary=cfg["filetype"] == 0,
            timeout=float(cfg["rsptimeout"]),
        )
        self._after_reply = lambda _t: self.ftp_actions.append(action)
        return "OK"

    def _cmd_qftpclose(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            return "OK"
        if form != "exec":
            return self._error(INVALID)
        if self.ftp_state is FtpState.CLOSED:
            return self._error(NO_SESSION)
        if self.ftp_state is FtpState.CLOSING:
            return self._error(BUSY)
        session = self._ftp_session
        abandoned = self._ftp_request
        if abandoned is not None and abandoned.urc == "+QFTPOPEN":
            # Closing while still opening: the attempt is given up.
            self._drop_ftp_session()

            def given_up(_t: float) -> None:
                self._urc(f"+QFTPOPEN: {ABORTED},0")
                self._urc("+QFTPCLOSE: 0,0")

            self._after_reply = given_up
            return "OK"
        if abandoned is not None and self.ftp_network is not None:
            self.ftp_network.abort_transfer(session)
        self.ftp_state = FtpState.CLOSING
        request = self._new_request("+QFTPCLOSE")

        def close(_t: float) -> None:
            if abandoned is not None:
                self._urc(f"{abandoned.urc}: {ABORTED},0")
            self.ftp_actions.append(FtpQuit(session, request.request_id))

        self._after_reply = close
        return "OK"

    def _cmd_qftpstat(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            return "OK"
        if form != "exec":
            return self._error(INVALID)
        self._reply.append(f"+QFTPSTAT: 0,{int(self.ftp_state)}")
        return "OK"

    def _cmd_qftplen(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            return "OK"
        if form != "exec":
            return self._error(INVALID)
        request = self._ftp_request
        moved = request.count if request is not None and request.transfer else self.ftp_transferred
        self._reply.append(f"+QFTPLEN: 0,{moved}")
        return "OK"

    def _cmd_qftpcwd(self, form: str, args: list[str], now: float) -> str:
        return self._simple(form, args, "+QFTPCWD", "cwd", '"<path_name>"')

    def _cmd_qftpsize(self, form: str, args: list[str], now: float) -> str:
        return self._simple(form, args, "+QFTPSIZE", "size", '"<file_name>"')

    def _cmd_qftpmdtm(self, form: str, args: list[str], now: float) -> str:
        return self._simple(form, args, "+QFTPMDTM", "mdtm", '"<file_name>"')

    def _cmd_qftpdel(self, form: str, args: list[str], now: float) -> str:
        return self._simple(form, args, "+QFTPDEL", "dele", '"<file_name>"')

    def _cmd_qftpmkdir(self, form: str, args: list[str], now: float) -> str:
        return self._simple(form, args, "+QFTPMKDIR", "mkd", '"<folder_name>"')

    def _cmd_qftprmdir(self, form: str, args: list[str], now: float) -> str:
        return self._simple(form, args, "+QFTPRMDIR", "rmd", '"<folder_name>"')

    def _cmd_qftprename(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append('+QFTPRENAME: "<old_name>","<new_name>"')
            return "OK"
        if form != "write" or len(args) != 2 or not all(_remote_name(a) for a in args):
            return self._error(INVALID)
        return self._operation("+QFTPRENAME", "rename", args[0], other=args[1])

    def _cmd_qftppwd(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            return "OK"
        if form != "exec":
            return self._error(INVALID)
        return self._operation("+QFTPPWD", "pwd", "")

    def _simple(self, form: str, args: list[str], urc: str, kind: str, shape: str) -> str:
        if form == "test":
            self._reply.append(f"{urc}: {shape}")
            return "OK"
        if form != "write" or len(args) != 1 or not _remote_name(args[0]):
            return self._error(INVALID)
        return self._operation(urc, kind, args[0])

    def _cmd_qftpget(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append("+QFTPGET: <file_name>,<local_name>,<startpos>,<downloadlen>")
            return "OK"
        if form != "write" or not 2 <= len(args) <= 4 or not _remote_name(args[0]):
            return self._error(INVALID)
        if not all(a.isdigit() for a in args[2:]):
            return self._error(INVALID)
        local = args[1]
        if local.upper() == "COM:":
            return "ERROR"  # data-mode output to the UART is not modelled (§9.16)
        if len(args) == 4 or len(local) > MAX_LOCAL_NAME:
            return self._error(INVALID)  # <downloadlen> belongs to the COM: form only
        refused = self._refused()
        if refused is not None:
            return refused
        try:
            key = self.storage.key(local)
            self.storage.write_file(local, b"", overwrite=True)
        except FileError:
            return self._error(OPEN_FAILED)
        offset = int(args[2]) if len(args) == 3 else 0
        return self._operation("+QFTPGET", "retr", args[0], offset=offset, local=key)

    def _cmd_qftpput(self, form: str, args: list[str], now: float) -> str:
        if form == "test":
            self._reply.append("+QFTPPUT: <file_name>,<local_name>,<startpos>,<uploadlen>,<beof>")
            return "OK"
        if form != "write" or not 2 <= len(args) <= 5 or not _remote_name(args[0]):
            return self._error(INVALID)
        if not all(a.isdigit() for a in args[2:]):
            return self._error(INVALID)
        if args[1].upper() == "COM:":
            return "ERROR"  # data mode from the UART is not modelled (§5.3)
        if len(args) > 3:
            return self._error(INVALID)  # <uploadlen>,<beof> belong to the COM: form only
        refused = self._refused()
        if refused is not None:
            return refused
        try:
            data = self.storage.read_file(args[1])
        except FileError:
            return self._error(OPEN_FAILED)
        offset = int(args[2]) if len(args) == 3 else 0
        return self._operation("+QFTPPUT", "stor", args[0], offset=offset, data=data[offset:])

    # -- operations --

    def _refused(self) -> str | None:
        """The error that stops an operation now, if any."""
        if self.ftp_state in (FtpState.CLOSED, FtpState.OPENING):
            return self._error(NO_SESSION)
        if self.ftp_state is FtpState.CLOSING or self._ftp_request is not None:
            return self._error(BUSY)
        return None

    def _operation(
        self,
        urc: str,
        kind: str,
        name: str,
        *,
        other: str = "",
        offset: int = 0,
        data: bytes = b"",
        local: str | None = None,
    ) -> str:
        refused = self._refused()
        if refused is not None:
            return refused
        transfer = kind in ("retr", "stor")
        request = self._new_request(urc, transfer=transfer, local=local)
        if transfer:
            self.ftp_state = FtpState.TRANSFERRING
        action = FtpOperation(
            self._ftp_session, request.request_id, kind, name, other, offset, data
        )
        self._after_reply = lambda _t: self.ftp_actions.append(action)
        return "OK"

    def _new_request(
        self, urc: str, *, transfer: bool = False, local: str | None = None
    ) -> _Request:
        self._ftp_seq += 1
        self._ftp_request = _Request(self._ftp_seq, urc, transfer, local)
        return self._ftp_request

    def _ftp_event(self, event: FtpEvent) -> None:
        request = self._ftp_request
        if (
            request is None
            or event.session != self._ftp_session
            or event.request_id != request.request_id
        ):
            return  # of an operation given up (QFTPCLOSE, reboot)
        if event.kind == "data":
            self._downloaded(request, event.data)
            return
        self._ftp_request = None
        if request.transfer:
            self.ftp_transferred = request.count
        urc = request.urc
        if request.urc == "+QFTPCLOSE":
            self.ftp_state = FtpState.CLOSED
            self._urc("+QFTPCLOSE: 0,0")
            return
        if event.kind == "failed":
            if urc == "+QFTPOPEN":
                self.ftp_state = FtpState.CLOSED
            elif self.ftp_state is FtpState.TRANSFERRING:
                self.ftp_state = FtpState.IDLE
            self._urc(f"{urc}: {event.error},{event.reply}")
            return
        self.ftp_state = FtpState.IDLE
        if urc in ("+QFTPGET", "+QFTPPUT"):
            self._urc(f"{urc}: 0,{request.count if urc == '+QFTPGET' else event.value}")
        elif urc in ("+QFTPMDTM", "+QFTPPWD"):
            self._urc(f'{urc}: 0,"{event.value}"')
        elif urc == "+QFTPSIZE":
            self._urc(f"{urc}: 0,{event.value}")
        else:
            self._urc(f"{urc}: 0,0")

    def _downloaded(self, request: _Request, data: bytes) -> None:
        assert request.local is not None
        try:
            self.storage.append(request.local, data)
        except FileError:
            # The file was deleted meanwhile or the drive is full: the download ends, what
            # arrived before stays.
            self._ftp_request = None
            self.ftp_transferred = request.count
            self.ftp_state = FtpState.IDLE
            if self.ftp_network is not None:
                self.ftp_network.abort_transfer(self._ftp_session)
            self._urc(f"+QFTPGET: {FILE_ERROR},0")
            return
        request.count += len(data)


def _remote_name(name: str) -> bool:
    return 0 < len(name.encode()) <= MAX_REMOTE_NAME


# --- the network ----------------------------------------------------------------------------


class FtpNetwork:
    """The module's FTP client on the host's network: one worker thread per session."""

    def __init__(self) -> None:
        self._events: queue.SimpleQueue[FtpEvent] = queue.SimpleQueue()
        self._workers: dict[int, _Worker] = {}

    def submit(self, action: FtpAction) -> None:
        if isinstance(action, FtpConnect):
            started = _Worker(action, self._events.put)
            self._workers[action.session] = started
            started.start()
            return
        worker = self._workers.get(action.session)
        if worker is None:
            self._events.put(FtpEvent(action.session, action.request_id, "failed", error=606))
            return
        worker.orders.put(action)
        if isinstance(action, FtpQuit):
            self._workers.pop(action.session, None)

    def events(self) -> list[FtpEvent]:
        found = []
        with contextlib.suppress(queue.Empty):
            while True:
                found.append(self._events.get_nowait())
        return found

    def abort_transfer(self, session: int) -> None:
        """End the data connection under way (the control connection stays)."""
        worker = self._workers.get(session)
        if worker is not None:
            worker.abort_data()

    def abort(self, session: int) -> None:
        """Drop the session's connections at once (a reboot, a lost PDP context)."""
        worker = self._workers.pop(session, None)
        if worker is not None:
            worker.abort()


class _SniFtpTls(ftplib.FTP_TLS):
    """FTP_TLS sending SNI only when the SSL context says "sni" 1 (§9.12), on the control and
    the data connections alike."""

    def __init__(self, *, sni: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sni = sni

    def auth(self) -> str:
        response = self.voidcmd("AUTH TLS")
        assert self.sock is not None
        self.sock = self.context.wrap_socket(self.sock, server_hostname=self._sni)
        self.file = self.sock.makefile(mode="r", encoding=self.encoding)
        return response

    def ntransfercmd(
        self, cmd: str, rest: int | str | None = None
    ) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if getattr(self, "_prot_p", False):
            conn = self.context.wrap_socket(conn, server_hostname=self._sni)
        return conn, size


class _Worker(threading.Thread):
    """One session's control connection, doing its orders one after the other."""

    def __init__(self, connect: FtpConnect, post: Callable[[FtpEvent], None]) -> None:
        super().__init__(name=f"sim ftp {connect.session}", daemon=True)
        self._connect = connect
        self._post = post
        self.orders: queue.SimpleQueue[FtpOperation | FtpQuit] = queue.SimpleQueue()
        self._ftp: ftplib.FTP | None = None
        self._data: socket.socket | None = None
        self._aborted = False

    def run(self) -> None:
        c = self._connect
        try:
            self._open()
        except Exception as error:
            self._fail(c.request_id, error, connecting=True)
            self._close()
            return
        self._post(FtpEvent(c.session, c.request_id, "done"))
        while True:
            order = self.orders.get()
            if isinstance(order, FtpQuit):
                self._close(polite=not self._aborted)
                self._post(FtpEvent(c.session, order.request_id, "done"))
                return
            try:
                value = self._do(order)
            except Exception as error:
                self._fail(order.request_id, error, connecting=False)
            else:
                self._post(FtpEvent(c.session, order.request_id, "done", value=value))

    def _open(self) -> None:
        c = self._connect
        if c.tls is None:
            ftp = ftplib.FTP(timeout=c.timeout)
        else:
            context = client_context(c.tls)
            sni = c.tls.host if c.tls.sni else None
            ftp = _SniFtpTls(sni=sni, context=context, timeout=c.timeout)
        self._ftp = ftp
        ftp.connect(c.host, c.port, timeout=c.timeout)
        if isinstance(ftp, ftplib.FTP_TLS) and c.tls is not None:
            ftp.auth()
            check_peer(cast(ssl.SSLObject, ftp.sock), c.tls)
        ftp.login(c.user or "anonymous", c.password)
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.prot_p()
        ftp.set_pasv(c.passive)
        # Since Python 3.9 ftplib ignores the PASV address unless told to trust it.
        setattr(ftp, "trust_server_pasv_ipv4_address", c.server_pasv_address)  # noqa: B010
        ftp.voidcmd("TYPE I" if c.binary else "TYPE A")

    def _do(self, order: FtpOperation) -> str:
        ftp = self._ftp
        assert ftp is not None
        if order.kind == "retr":
            return self._retrieve(ftp, order)
        if order.kind == "stor":
            ftp.storbinary(
                f"STOR {order.name}", io.BytesIO(order.data), READ_SIZE, rest=order.offset or None
            )
            return str(len(order.data))
        if order.kind == "size":
            size = ftp.size(order.name)
            if size is None:
                raise ftplib.error_reply("601 no size in the answer")
            return str(size)
        if order.kind == "mdtm":
            return ftp.voidcmd(f"MDTM {order.name}")[4:].strip()
        if order.kind == "cwd":
            ftp.cwd(order.name)
        elif order.kind == "pwd":
            return ftp.pwd()
        elif order.kind == "dele":
            ftp.delete(order.name)
        elif order.kind == "mkd":
            ftp.mkd(order.name)
        elif order.kind == "rmd":
            ftp.rmd(order.name)
        elif order.kind == "rename":
            ftp.rename(order.name, order.other)
        return ""

    def _retrieve(self, ftp: ftplib.FTP, order: FtpOperation) -> str:
        conn = ftp.transfercmd(f"RETR {order.name}", rest=order.offset or None)
        self._data = conn
        total = 0
        try:
            while data := conn.recv(READ_SIZE):
                total += len(data)
                self._post(FtpEvent(order.session, order.request_id, "data", data=data))
            if isinstance(conn, ssl.SSLSocket):
                with contextlib.suppress(OSError):
                    conn.unwrap()
        except OSError as error:
            raise _DataClosed(str(error)) from error
        finally:
            self._data = None
            conn.close()
        ftp.voidresp()
        return str(total)

    def _fail(self, request_id: int, error: Exception, *, connecting: bool) -> None:
        code, reply = _codes(error, connecting)
        log.info(
            "simulated FTP request %d to %s:%d failed (%d,%d): %r",
            request_id,
            self._connect.host,
            self._connect.port,
            code,
            reply,
            error,
        )
        self._post(FtpEvent(self._connect.session, request_id, "failed", error=code, reply=reply))

    def abort_data(self) -> None:
        data = self._data
        if data is not None:
            with contextlib.suppress(OSError):
                data.shutdown(socket.SHUT_RDWR)

    def abort(self) -> None:
        self._aborted = True
        self.abort_data()
        ftp = self._ftp
        if ftp is not None and ftp.sock is not None:
            with contextlib.suppress(OSError):
                ftp.sock.shutdown(socket.SHUT_RDWR)
        self.orders.put(FtpQuit(self._connect.session, 0))

    def _close(self, *, polite: bool = False) -> None:
        ftp = self._ftp
        if ftp is None:
            return
        if polite:
            with contextlib.suppress(OSError, EOFError, ftplib.Error):
                if ftp.sock is not None:
                    ftp.quit()
        ftp.close()


class _DataClosed(Exception):
    """The data connection failed under a transfer (607)."""


def _codes(error: Exception, connecting: bool) -> tuple[int, int]:
    """``<err>,<protocol_error>`` for what ftplib raised (§5.5)."""
    if isinstance(error, ftplib.error_reply | ftplib.error_temp | ftplib.error_perm):
        text = str(error)[:3]
        reply = int(text) if text.isdigit() else 0
        return REPLY_ERRORS.get(reply, 601), reply
    if isinstance(error, TlsFailure | ssl.SSLError):
        return 631, 0
    if isinstance(error, socket.gaierror):
        return 604, 0
    if isinstance(error, TimeoutError):
        return 609, 0
    if isinstance(error, _DataClosed):
        return 607, 0
    if isinstance(error, EOFError):
        return 606, 0  # the server closed the control connection
    if isinstance(error, OSError):
        return (605 if connecting else 608), 0
    return 601, 0
