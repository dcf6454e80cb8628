"""A real FTP(S) server for the tests (pyftpdlib on 127.0.0.1, a random port, its own thread and
IO loop): the peer of the module's AT+QFTP* commands and of the host's ftplib client.

Files live in a temporary directory (``files[path] = data`` writes one); the server records
the commands it is sent (PASS masked), the files it received, and can be told to fail the next
downloads part-way: cut the data connection after n bytes (``426``), or drop every connection
of the session as a killed server would (:class:`Cut`). With ``tls`` it speaks explicit FTPS
(AUTH TLS, RFC 4217) and requires it on both connections; that needs pyOpenSSL, pyftpdlib's
TLS dependency (:data:`TLS_AVAILABLE`).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import DTPHandler, FTPHandler
from pyftpdlib.handlers.ftp.producers import FileProducer
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.log import logger
from pyftpdlib.servers import FTPServer

try:
    from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler
except ImportError:  # pyOpenSSL missing
    TLS_AVAILABLE = False
else:
    TLS_AVAILABLE = True

USER = "cp-test"
PASSWORD = "s3cret-ftp-pw"  # distinctive, so a test can grep logs for it


@dataclass(frozen=True)
class Cut:
    """How the next RETR fails: after ``after`` bytes the data connection is closed and the
    server answers ``426`` (``kill=False``), or every connection of the session is dropped
    with no answer at all, as when the server process dies (``kill=True``)."""

    after: int
    kill: bool = False


@dataclass
class Received:
    path: str  # where it was stored, from the server's root ("/upload/diag/x.tar.gz")
    file_name: str
    data: bytes


@dataclass
class TlsFiles:
    cert: Path  # certificate chain, PEM
    key: Path


class _Tree:
    """The server's files by absolute path: ``tree["/fw/a.bin"] = data``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / name.lstrip("/")

    def __setitem__(self, name: str, data: bytes) -> None:
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def __getitem__(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.path(name).is_file()


@dataclass
class FtpServer:
    tls: TlsFiles | None = None
    anonymous: bool = False
    port: int = 0  # 0: any free port (the same one again to "restart" a server)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ftp-root-")))
    cuts: list[Cut | None] = field(default_factory=list)  # the next RETRs, in order
    commands: list[str] = field(default_factory=list)  # "RETR fw.bin", "PASS ***", ...
    uploads: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: FTPServer | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _own_root: bool = True

    @property
    def files(self) -> _Tree:
        return _Tree(self.root)

    def mkdir(self, name: str) -> None:
        self.files.path(name).mkdir(parents=True, exist_ok=True)

    def start(self) -> FtpServer:
        handler = _handler_class(self)
        self._server = FTPServer(("127.0.0.1", self.port), handler, ioloop=IOLoop())
        self.port = int(self._server.address[1])
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="ftp server", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._server is not None
        # One poll at a time (a new connection or data ends it at once), so that stop() is
        # seen within 50 ms; serve_forever() would log a start line at every call.
        while not self._stop.is_set():
            self._server.ioloop.loop(0.05, blocking=False)
        self._server.close_all()

    def stop(self) -> None:
        """Stop serving and drop every connection (the files stay, for a restart)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> FtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(
        self,
        path: str,
        *,
        user: str | None = USER,
        password: str = PASSWORD,
        host: str = "127.0.0.1",
    ) -> str:
        scheme = "ftps" if self.tls else "ftp"
        auth = "" if user is None else f"{quote(user, safe='')}:{quote(password, safe='')}@"
        return f"{scheme}://{auth}{host}:{self.port}{path}"

    def sent(self, verb: str) -> list[str]:
        """The arguments of every command ``verb`` (upper case) received so far."""
        with self.lock:
            return [c[len(verb) + 1 :] for c in self.commands if c.split(" ")[0] == verb]

    def _next_cut(self) -> Cut | None:
        with self.lock:
            return self.cuts.pop(0) if self.cuts else None


class _CutProducer:
    """Hands on the file's data up to ``cut.after`` bytes, then says it is done; the data
    channel then fails the transfer instead of completing it (``Cutting.handle_close``)."""

    def __init__(self, inner: Any, cut: Cut) -> None:
        self._inner = inner
        self.cut = cut
        self._given = 0
        self.reached = False

    def more(self) -> bytes:
        # asynchat asks for more only once what it was given has gone to the socket.
        data: bytes = self._inner.more()[: self.cut.after - self._given]
        self._given += len(data)
        if not data:
            self.reached = True
        return data


def _handler_class(server: FtpServer) -> type[FTPHandler]:
    authorizer = DummyAuthorizer()
    authorizer.add_user(USER, PASSWORD, str(server.root), perm="elradfmwMT")
    if server.anonymous:
        authorizer.add_anonymous(str(server.root))

    class Cutting:
        cutting: _CutProducer | None = None

        def push_with_producer(self, producer: Any) -> None:
            cut = server._next_cut() if isinstance(producer, FileProducer) else None
            if cut is not None:
                producer = self.cutting = _CutProducer(producer, cut)
            super().push_with_producer(producer)  # type: ignore[misc]

        def handle_close(self) -> None:
            # Reached when the producer is exhausted (or the client closed): a cut transfer
            # ends here with 426, or with every connection dropped and no answer at all.
            cutting = self.cutting
            if cutting is None or not cutting.reached:
                super().handle_close()  # type: ignore[misc]
            elif cutting.cut.kill:
                self.cmd_channel.close()  # type: ignore[attr-defined]
            else:
                self._resp = ("426 Connection cut by the test; transfer aborted.", logger.debug)
                self.close()  # type: ignore[attr-defined]

    class Recording:
        owner = server

        def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
            with server.lock:
                server.commands.append("PASS ***" if cmd == "PASS" else f"{cmd} {arg}".strip())
            super().pre_process_command(line, cmd, arg)  # type: ignore[misc]

        def on_file_received(self, file: str) -> None:
            path = Path(file)
            with server.lock:
                server.uploads.append(
                    Received("/" + str(path.relative_to(server.root)), path.name, path.read_bytes())
                )

    if server.tls is None:

        class Data(Cutting, DTPHandler):  # type: ignore[misc]
            pass

        class Handler(Recording, FTPHandler):  # type: ignore[misc]
            dtp_handler = Data
            use_sendfile = False  # every byte through the producer, so cuts are exact

    else:

        class TlsData(Cutting, TLS_DTPHandler):  # type: ignore[misc]
            pass

        class Handler(Recording, TLS_FTPHandler):  # type: ignore[misc, no-redef]
            dtp_handler = TlsData
            use_sendfile = False
            certfile = str(server.tls.cert)
            keyfile = str(server.tls.key)
            ssl_context = None  # this server's own, not one cached from another test
            tls_control_required = True
            tls_data_required = True

    Handler.authorizer = authorizer
    Handler.auth_failed_timeout = 0  # pyftpdlib slows password guessers down by 3 s
    Handler.banner = "test FTP server ready."
    Handler.passive_ports = None
    return Handler
