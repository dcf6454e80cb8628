"""FTP(S) through the module's own client: Quectel AT+QFTP* (at-protocol.md §5, from the BG96
FTP(S) AT manual; quirks §9.14 and §9.16), a :class:`transport.ftp.FtpClient`.

The serial line is shared with the OCPP socket, so nothing here holds it for long:

* **Downloads** go through :func:`transport.ftp.fetch_resuming`. AT+QFTPGET writes the file,
  from the last good byte on (``<startpos>``, the module's REST), into a scratch file of the
  module's RAM disk (or UFS when the rest does not fit the RAM disk); the module downloads on
  its own while the line stays free for OCPP, and says ``+QFTPGET: <err>,<n>`` at the end. The
  host then pulls the file with AT+QFREAD in ``chunk``-byte reads (``CONNECT <n>``: binary-safe,
  §4.7), appending to ``<dest>.part``, whatever the outcome: bytes that arrived before a broken
  connection are good, and the next attempt starts after them.
  The ``"COM:"`` form, whose ``<downloadlen>`` would bound each piece, is not used: its output
  carries no length and ends with ``OK`` and the URC, which a binary image may contain, and a
  connection that breaks mid-piece leaves the host unable to tell data from the result (§5.4,
  §9.16); the file form is binary-safe in every failure. Its limit: the rest of the image must
  fit the module's UFS (a clear error says so otherwise).
* **Uploads** (diagnostics) are written to a UFS file (AT+QFUPL with its checksum when the
  archive fits one ``chunk``, otherwise AT+QFWRITE pieces) and sent with AT+QFTPPUT.
* Every session is AT+QFTPCFG (context, account, binary, passive, response time, and for
  ``ftps://`` explicit TLS on its own SSL context with the CA uploaded), AT+QFTPOPEN, AT+QFTPCWD,
  the operations, AT+QFTPCLOSE, whose ``+QFTPCLOSE:`` is awaited before anything else is sent
  to the FTP client (EG800K answers 603 until then, §9.14). A session a previous run left open
  (603 at AT+QFTPOPEN) is closed and opened again.

Errors: a server's refusal (``<protocol_error>`` 4xx/5xx in the URC) is the same
:class:`~transport.errors.FtpReplyError` the host link raises (530 is
:class:`~transport.errors.FtpLoginFailed`, 550 :class:`~transport.errors.FtpFileUnavailable`);
the module's own ``<err>`` without a server reply is a :class:`ModuleFtpError` with the
manual's meaning and what to check. The account's password is never logged (``log_as``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from transport.at import BULK, AtChannel, Urc, split_fields
from transport.errors import (
    AtCommandFailed,
    FtpReplyError,
    TransferCorrupt,
    TransferError,
    TransferInterrupted,
    TransportError,
    UnsupportedLocation,
    ftp_reply_error,
)
from transport.ftp import FtpLocation, RemoteFile, fetch_resuming, store_in_directory
from transport.http import FetchResult, Progress
from transport.modems.quectel_files import QuectelFiles, error_code
from transport.modems.quectel_tls import file_server_context
from transport.shielding import shielded

log = logging.getLogger(__name__)

FTP_URCS = (
    "+QFTPOPEN:",
    "+QFTPCLOSE:",
    "+QFTPCWD:",
    "+QFTPPWD:",
    "+QFTPSIZE:",
    "+QFTPMDTM:",
    "+QFTPGET:",
    "+QFTPPUT:",
    "+QFTPDEL:",
    "+QFTPMKDIR:",
    "+QFTPRMDIR:",
    "+QFTPRENAME:",
)
BUSY = 603
TRANSFERRING = 2  # AT+QFTPSTAT <ftpstat>
UNSUPPORTED = (500, 502, 504)  # SIZE not known to the server

# <err> codes (§5.5): meaning, what to check, whether the manual's answer is "try again".
# 614-630 stand for server replies, which come with the reply as <protocol_error> and are
# raised as FtpReplyError; here only for the rare URC without one.
FTP_ERRORS: dict[int, tuple[str, str, bool]] = {
    601: ("Unknown error", "retry; if it persists, re-activate the PDP context", False),
    602: ("FTP(S) server blocked", "the server refused the connection: check host and port", False),
    603: ("FTP(S) server busy", "the module's FTP client is still busy: wait for it", False),
    604: (
        "DNS parse failed",
        "check the host name, that the PDP context is active (AT+QIACT?) and the module's DNS "
        "servers (AT+QIDNSCFG)",
        False,
    ),
    605: (
        "Network error",
        "the data link failed: check registration and the PDP context (AT+QIACT?)",
        False,
    ),
    606: ("Control connection closed", "the server went away: the transfer resumes", True),
    607: ("Data connection closed", "the data connection broke: the transfer resumes", True),
    608: ("Socket closed by peer", "the server closed the connection: the transfer resumes", True),
    609: ("Timeout error", 'the server did not answer in time ("rsptimeout")', True),
    610: ("Invalid parameter", "the module refused a parameter: a bug in the driver", False),
    611: ("Failed to open file", "the module file cannot be opened: check its storage", False),
    612: ("File position invalid", "the start position is past the end of the file", False),
    613: ("File error", "the module's storage failed or is full (AT+QFLDS)", False),
    614: ("Service not available, closing control connection", "try again later", True),
    615: ("Open data connection failed", "a firewall or NAT blocks passive mode", True),
    616: ("Connection closed; transfer aborted", "the transfer resumes", True),
    617: ("Requested file action not taken", "the file is busy on the server", True),
    618: ("Requested action aborted: local error in processing", "a server failure", True),
    619: ("Requested action not taken: insufficient system storage", "the server is full", False),
    620: ("Syntax error, command unrecognized", "the server lacks a command", False),
    621: ("Syntax error in parameters or arguments", "check the path", False),
    622: ("Command not implemented", "the server lacks a command", False),
    623: ("Bad sequence of commands", "the session state is unexpected", False),
    624: ("Command parameter not implemented", "the server lacks a transfer mode", False),
    625: ("Not logged in", "check the user and password in the location URL", False),
    626: ("Need account for storing files", "the account may not upload", False),
    627: ("Requested action not taken", "no such file or directory, or no access", False),
    628: ("Requested action aborted: page type unknown", "the server refused the type", False),
    629: ("Requested file action aborted", "the account's quota is full", False),
    630: ("Requested file name invalid", "the server refuses this file name", False),
    631: (
        "SSL authentication failed",
        "TLS failed: check firmware.ca_file (uploaded as the SSL context's cacert), that the "
        "certificate names the host, the module clock, and that the server speaks AUTH TLS",
        False,
    ),
}
FTP_MEANINGS = {code: meaning for code, (meaning, _, _) in FTP_ERRORS.items()}


class ModuleFtpError(TransferError):
    """The module's FTP client reported ``<err>`` (``+CME ERROR`` or in a URC) with no server
    reply behind it."""

    def __init__(self, code: int, doing: str, where: str) -> None:
        meaning, advice, retry = FTP_ERRORS.get(code, ("FTP(S) error", "", False))
        text = f"{where}: {doing}: module FTP error {code} ({meaning})"
        super().__init__(text + (f": {advice}" if advice else ""))
        self.code = code
        self.retry_now = retry


@dataclass(frozen=True, slots=True)
class FtpSettings:
    context_id: int = 1  # the PDP context the module's FTP client uses
    ssl_context_id: int = 3  # beside HTTP's (1) and the CSMS socket's (2)
    ca_file: Path | None = None  # PEM; uploaded to the module, then FTPS servers are verified
    chunk: int = 4096  # bytes per AT+QFREAD / AT+QFWRITE: the longest the line is held
    scratch_drive: str = "RAM"  # where downloads land ("UFS" on modules without a RAM disk)
    response_time: int = 60  # "rsptimeout", 20-180 s: the longest silence of the server


class QuectelFtp:
    """The module's FTP(S) client (a :class:`transport.ftp.FtpClient`)."""

    SCRATCH = "cpftp.bin"
    UPLOAD = "UFS:cpftpup.bin"
    CA = "UFS:cpftpca.pem"

    def __init__(self, channel: AtChannel, settings: FtpSettings | None = None) -> None:
        self._at = channel
        self.settings = settings or FtpSettings()
        if not 20 <= self.settings.response_time <= 180:
            raise ValueError("FtpSettings.response_time: the module takes 20-180 s")
        self.files = QuectelFiles(channel, chunk=self.settings.chunk)
        self._busy = asyncio.Lock()  # one session at a time: the module has one FTP client
        self._waiting: dict[str, asyncio.Future[list[str]]] = {}
        self._ca_uploaded = False
        for prefix in FTP_URCS:
            channel.subscribe(prefix, self._on_urc)

    # -- the FtpClient interface --

    async def fetch(
        self, url: str, dest: Path, *, sha256: str | None = None, progress: Progress | None = None
    ) -> FetchResult:
        token = BULK.set(True)  # this task's commands let OCPP's go first
        try:
            return await fetch_resuming(self, url, dest, sha256=sha256, progress=progress)
        finally:
            BULK.reset(token)

    async def upload(self, url: str, file_name: str, data: bytes) -> int:
        token = BULK.set(True)
        try:
            return await store_in_directory(self, url, file_name, data)
        finally:
            BULK.reset(token)

    def lost(self, error: TransportError) -> None:
        """The module restarted or the port went: no URC will come for what is waiting."""
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(
                    TransferInterrupted(f"the module's FTP session ended: {error}")
                )

    # -- FtpCarrier --

    @contextlib.asynccontextmanager
    async def session(self, where: FtpLocation, directory: str) -> AsyncIterator[QuectelFtpSession]:
        _check_writable(where, directory)
        async with self._busy:
            await self._configure(where)
            await self._open(where)
            try:
                if directory:
                    await self.request(
                        "+QFTPCWD", f'AT+QFTPCWD="{directory}"', f"CWD {directory}", where
                    )
                yield QuectelFtpSession(self, where)
            finally:
                await shielded(self._close())

    # -- steps --

    async def _configure(self, where: FtpLocation) -> None:
        s = self.settings
        await self._cfg(f'AT+QFTPCFG="contextid",{s.context_id}', where)
        await self._cfg(
            f'AT+QFTPCFG="account","{where.user}","{where.password}"',
            where,
            log_as=f'AT+QFTPCFG="account","{where.user}","***"',
        )
        await self._cfg('AT+QFTPCFG="filetype",0', where)  # binary
        await self._cfg('AT+QFTPCFG="transmode",1', where)  # passive: works behind NAT
        await self._cfg(f'AT+QFTPCFG="rsptimeout",{s.response_time}', where)
        if where.secure:
            await self._cfg('AT+QFTPCFG="ssltype",2', where)  # explicit: AUTH TLS
            await self._cfg(f'AT+QFTPCFG="sslctxid",{s.ssl_context_id}', where)
            await self._configure_tls()
        else:
            await self._cfg('AT+QFTPCFG="ssltype",0', where)

    async def _cfg(self, command: str, where: FtpLocation, log_as: str | None = None) -> None:
        try:
            await self._at.command(command, log_as=log_as)
        except AtCommandFailed as error:
            raise self._command_error(error, log_as or command, where) from error

    async def _configure_tls(self) -> None:
        s = self.settings
        ctx = s.ssl_context_id
        self._ca_uploaded = await file_server_context(
            self._at,
            self.files,
            ctx,
            s.ca_file,
            self.CA,
            ca_uploaded=self._ca_uploaded,
            scheme="ftps",
        )

    async def _open(self, where: FtpLocation) -> None:
        command = f'AT+QFTPOPEN="{where.host}",{where.port}'
        try:
            await self.request("+QFTPOPEN", command, "login", where)
        except ModuleFtpError as error:
            if error.code != BUSY:
                raise
            # A session left open (a run that ended mid-transfer, a cancelled one): close it
            # and wait for +QFTPCLOSE, then open ours.
            log.info("the module's FTP client still holds a session: closing it first")
            await self._close()
            await self.request("+QFTPOPEN", command, "login", where)

    async def _close(self) -> None:
        """AT+QFTPCLOSE and its URC (it is asynchronous, §9.14); a failure is only logged."""
        waiter = self._expect("+QFTPCLOSE")
        try:
            response = await self._at.command("AT+QFTPCLOSE", check=False)
            if not response.result.success:
                code = response.result.code
                if code is None:
                    code = error_code(
                        AtCommandFailed("AT+QFTPCLOSE", response.result.text), FTP_MEANINGS
                    )
                if code != BUSY:  # busy: a close is already under way, its URC will come
                    return
            async with asyncio.timeout(self.settings.response_time + 10.0):
                await asyncio.shield(waiter)
        except (TransportError, TimeoutError) as error:
            log.warning("AT+QFTPCLOSE: %s", error or "no +QFTPCLOSE in time")
        finally:
            self._waiting.pop("+QFTPCLOSE", None)

    async def request(
        self, urc: str, command: str, doing: str, where: FtpLocation, *, transfer: bool = False
    ) -> list[str]:
        """``command``, ``OK``, then its URC's fields after ``<err>`` 0; any ``<err>`` raised."""
        waiter = self._expect(urc)
        try:
            try:
                await self._at.command(command)
            except AtCommandFailed as error:
                raise self._command_error(error, doing, where) from error
            fields = await self._result(urc, waiter, doing, where, transfer=transfer)
        finally:
            self._waiting.pop(urc, None)
        err = int(fields[0]) if fields and fields[0].isdigit() else -1
        if err != 0:
            reply = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
            if 400 <= reply < 600:
                raise ftp_reply_error(where.shown, reply, doing, f"module error {err}")
            raise ModuleFtpError(err, doing, where.shown)
        return fields[1:]

    async def _result(
        self,
        urc: str,
        waiter: asyncio.Future[list[str]],
        doing: str,
        where: FtpLocation,
        *,
        transfer: bool,
    ) -> list[str]:
        """The URC's fields. The module ends an operation whose server stays silent for
        "rsptimeout"; a transfer may take longer as long as data moves, so while AT+QFTPSTAT
        says "transferring" the wait goes on."""
        limit = self.settings.response_time + 10.0
        while True:
            try:
                async with asyncio.timeout(limit):
                    return await asyncio.shield(waiter)
            except TimeoutError:
                if transfer and await self._state() == TRANSFERRING:
                    continue
                raise TransferInterrupted(
                    f"{where.shown}: {doing}: no {urc} from the module within {limit:g} s"
                ) from None

    async def _state(self) -> int | None:
        response = await self._at.command("AT+QFTPSTAT", expect=("+QFTPSTAT:",), check=False)
        values = response.values("+QFTPSTAT:")
        if not response.result.success or not values:
            return None
        fields = split_fields(values[0])
        return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None

    def _command_error(
        self, error: AtCommandFailed, doing: str, where: FtpLocation
    ) -> TransferError:
        code = error_code(error, FTP_MEANINGS)
        if code is None:
            return TransferError(f"{where.shown}: {doing} failed: {error.result}")
        return ModuleFtpError(code, doing, where.shown)

    def _expect(self, urc: str) -> asyncio.Future[list[str]]:
        waiter: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._waiting[urc] = waiter
        return waiter

    def _on_urc(self, urc: Urc) -> None:
        name, _, rest = urc.text.partition(":")
        waiter = self._waiting.get(name)
        if waiter is None or waiter.done():
            log.debug("FTP URC nobody waits for: %s", urc.text)
            return
        waiter.set_result(split_fields(rest.strip()))

    # -- module files --

    async def scratch_for(self, left: int | None, where: FtpLocation) -> str:
        """The module file a download of ``left`` bytes goes into: the RAM disk if it fits,
        else UFS; a clear error if neither can take it."""
        drive = self.settings.scratch_drive
        name = f"{drive}:{self.SCRATCH}"
        await self.files.delete(name)  # the last download's, if a run ended before deleting
        if left is None or left <= await self.files.free(drive):
            return name
        if drive != "UFS":
            ufs = f"UFS:{self.SCRATCH}"
            await self.files.delete(ufs)
            if left <= await self.files.free("UFS"):
                return ufs
        free = await self.files.free("UFS")
        raise TransferError(
            f"{where.shown}: {left} bytes to fetch do not fit the module's storage ({free} bytes "
            "free on UFS): the module's FTP client downloads into a file; use an http(s) "
            "location (fetched in Range pieces) or free the module's UFS (AT+QFLST, AT+QFDEL)"
        )

    async def pull(self, name: str, out: BinaryIO, counted: Callable[[int], None]) -> int:
        """Append module file ``name`` to ``out`` in ``chunk``-byte AT+QFREADs; its size."""
        size = await self.files.size(name) or 0
        left = size
        if left:
            async with self.files.opened(name, 2) as handle:
                while left > 0:
                    chunk = await self.files.read(handle, min(self.settings.chunk, left))
                    if not chunk:
                        raise TransferCorrupt(f"{name}: the module file ended {left} bytes early")
                    out.write(chunk)
                    counted(len(chunk))
                    left -= len(chunk)
        return size

    async def delete_quietly(self, name: str) -> None:
        try:
            await self.files.delete(name)
        except TransportError as error:
            log.warning("could not delete module file %s: %s", name, error)

    async def put_file(self, name: str, data: bytes, where: FtpLocation) -> None:
        """``data`` as module file ``name``: one AT+QFUPL (checksum checked) when it fits one
        chunk, else AT+QFWRITE pieces, so the line is never held for more than a chunk."""
        free = await self.files.free("UFS")
        if len(data) > free:
            raise TransferError(
                f"{where.shown}: {len(data)} bytes to upload do not fit the module's UFS "
                f"({free} bytes free)"
            )
        if len(data) <= self.settings.chunk:
            await self.files.upload(name, data)
            return
        async with self.files.opened(name, 1) as handle:
            await self.files.write(handle, data)
        if await self.files.size(name) != len(data):
            raise TransferCorrupt(f"{name}: the module file does not hold the {len(data)} bytes")


class QuectelFtpSession:
    """An open session of the module's FTP client (an :class:`transport.ftp.FtpSession`)."""

    def __init__(self, ftp: QuectelFtp, where: FtpLocation) -> None:
        self._ftp = ftp
        self._where = where
        self._sizes: dict[str, int | None] = {}

    async def stat(self, name: str) -> RemoteFile:
        ftp, where = self._ftp, self._where
        size: int | None = None
        try:
            answer = await ftp.request("+QFTPSIZE", f'AT+QFTPSIZE="{name}"', f"SIZE {name}", where)
        except FtpReplyError as error:
            if error.reply not in UNSUPPORTED:
                raise  # 550: no such file, said before anything is downloaded
        else:
            size = int(answer[0]) if answer and answer[0].isdigit() else None
        try:
            answer = await ftp.request("+QFTPMDTM", f'AT+QFTPMDTM="{name}"', f"MDTM {name}", where)
            modified = answer[0] or None
        except TransferError as error:
            log.debug("no MDTM for %s: %s", name, error)
            modified = None
        self._sizes[name] = size
        return RemoteFile(size, modified)

    async def retrieve(
        self, name: str, offset: int, out: BinaryIO, counted: Callable[[int], None]
    ) -> None:
        ftp, where = self._ftp, self._where
        size = self._sizes.get(name)
        scratch = await ftp.scratch_for(None if size is None else size - offset, where)
        failure: TransferError | None = None
        reported = None
        try:
            try:
                answer = await ftp.request(
                    "+QFTPGET",
                    f'AT+QFTPGET="{name}","{scratch}",{offset}',
                    f"RETR {name}",
                    where,
                    transfer=True,
                )
                reported = int(answer[0])
            except TransferError as error:
                failure = error  # what arrived before is in the file: pulled all the same
            pulled = await ftp.pull(scratch, out, counted)
        finally:
            await shielded(ftp.delete_quietly(scratch))
        if failure is not None:
            raise failure
        if reported is not None and pulled != reported:
            raise TransferCorrupt(
                f"{where.shown}: the module reported {reported} bytes, its file held {pulled}"
            )

    async def store(self, name: str, data: bytes) -> int:
        ftp, where = self._ftp, self._where
        try:
            await ftp.put_file(ftp.UPLOAD, data, where)
            answer = await ftp.request(
                "+QFTPPUT",
                f'AT+QFTPPUT="{name}","{ftp.UPLOAD}",0',
                f"STOR {name}",
                where,
                transfer=True,
            )
        finally:
            await shielded(ftp.delete_quietly(ftp.UPLOAD))
        return int(answer[0])


def _check_writable(where: FtpLocation, directory: str) -> None:
    """What goes into an AT command's quotes: no double quote (AT strings have no escape) and
    printable ASCII only (the module's command line is not UTF-8)."""
    for part, text in (
        ("host", where.host),
        ("user", where.user),
        ("password", where.password),
        ("path", where.path),
        ("directory", directory),
    ):
        if any(c == '"' or not " " <= c <= "~" for c in text):
            raise UnsupportedLocation(
                f"{where.shown}: the module's AT commands cannot carry the {part} (a double "
                "quote, or a character outside printable ASCII)"
            )
