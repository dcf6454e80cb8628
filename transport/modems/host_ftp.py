"""FTP and FTPS on the host's own TCP/IP stack with ``ftplib``: the
:class:`transport.ftp.FtpClient` of chargers on Ethernet (and of tests). Same resume, same
checks as through a module (:func:`transport.ftp.fetch_resuming`).

``ftplib`` blocks, so every call runs in a worker thread with a socket timeout on each wait
(connect, every reply, every read of the data connection): a stalled server fails the transfer
within ``timeout`` instead of hanging it. A cancelled caller shuts the sockets down, which ends
the thread's wait at once, and waits for the thread before going on, so that nothing writes to
the ``.part`` file after the caller has let go of it. ``ftps://`` is explicit TLS (``AUTH TLS``,
then ``PBSZ 0``/``PROT P`` for the data connections), the server verified against ``ca_file`` or
the system's store.
"""

from __future__ import annotations

import asyncio
import contextlib
import ftplib
import io
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

from transport.errors import (
    TransferError,
    TransferInterrupted,
    ftp_reply_error,
)
from transport.ftp import FtpLocation, RemoteFile, fetch_resuming, store_in_directory
from transport.http import FetchResult, Progress
from transport.shielding import shielded

log = logging.getLogger(__name__)

T = TypeVar("T")
READ_SIZE = 64 * 1024
UNSUPPORTED = (500, 502, 504)  # SIZE/MDTM unknown to the server: no validator from it


class HostFtp:
    def __init__(
        self, *, ca_file: Path | None = None, timeout: float = 60.0, passive: bool = True
    ) -> None:
        self._ca_file = ca_file
        self._timeout = timeout
        self._passive = passive

    async def fetch(
        self, url: str, dest: Path, *, sha256: str | None = None, progress: Progress | None = None
    ) -> FetchResult:
        return await fetch_resuming(self, url, dest, sha256=sha256, progress=progress)

    async def upload(self, url: str, file_name: str, data: bytes) -> int:
        return await store_in_directory(self, url, file_name, data)

    @contextlib.asynccontextmanager
    async def session(self, where: FtpLocation, directory: str) -> AsyncIterator[HostFtpSession]:
        context = None
        if where.secure:
            context = ssl.create_default_context(
                cafile=str(self._ca_file) if self._ca_file else None
            )
        session = HostFtpSession(where, context, self._timeout, self._passive)
        try:
            await session.open(directory)
            yield session
        finally:
            await shielded(session.close())


class HostFtpSession:
    """One control connection (an :class:`transport.ftp.FtpSession`)."""

    def __init__(
        self, where: FtpLocation, tls: ssl.SSLContext | None, timeout: float, passive: bool
    ) -> None:
        self._where = where
        self._timeout = timeout
        self._passive = passive
        self._ftp: ftplib.FTP = (
            ftplib.FTP_TLS(context=tls, timeout=timeout)
            if tls is not None
            else ftplib.FTP(timeout=timeout)
        )
        self._data: socket.socket | None = None

    async def open(self, directory: str) -> None:
        await self._blocking(self._connect, "connect", connecting=True)
        await self._blocking(self._login, "login")
        if directory:
            await self._blocking(lambda: self._ftp.cwd(directory), f"CWD {directory}")

    def _connect(self) -> None:
        self._ftp.connect(self._where.host, self._where.port, timeout=self._timeout)

    def _login(self) -> None:
        ftp = self._ftp
        ftp.login(self._where.user, self._where.password)  # FTP_TLS: AUTH TLS first
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.prot_p()
        ftp.set_pasv(self._passive)
        ftp.voidcmd("TYPE I")

    async def stat(self, name: str) -> RemoteFile:
        return await self._blocking(lambda: self._stat(name), f"SIZE {name}")

    def _stat(self, name: str) -> RemoteFile:
        try:
            size = self._ftp.size(name)
        except ftplib.error_perm as error:
            if _reply(error) not in UNSUPPORTED:
                raise
            size = None
        try:
            modified: str | None = self._ftp.voidcmd(f"MDTM {name}")[4:].strip() or None
        except ftplib.error_perm:
            modified = None  # not supported, or refused for this file: SIZE alone then
        return RemoteFile(size, modified)

    async def retrieve(
        self, name: str, offset: int, out: BinaryIO, counted: Callable[[int], None]
    ) -> None:
        loop = asyncio.get_running_loop()

        def count(length: int) -> None:
            loop.call_soon_threadsafe(counted, length)

        await self._blocking(lambda: self._retrieve(name, offset, out, count), f"RETR {name}")

    def _retrieve(
        self, name: str, offset: int, out: BinaryIO, count: Callable[[int], None]
    ) -> None:
        conn = self._ftp.transfercmd(f"RETR {name}", rest=offset or None)
        self._data = conn
        try:
            while data := conn.recv(READ_SIZE):
                out.write(data)
                count(len(data))
            if isinstance(conn, ssl.SSLSocket):
                with contextlib.suppress(OSError):
                    conn.unwrap()  # the TLS close_notify the server waits for (RFC 4217 §12)
        finally:
            self._data = None
            conn.close()
        self._ftp.voidresp()

    async def store(self, name: str, data: bytes) -> int:
        return await self._blocking(lambda: self._store(name, data), f"STOR {name}")

    def _store(self, name: str, data: bytes) -> int:
        self._ftp.storbinary(f"STOR {name}", io.BytesIO(data), READ_SIZE)
        return len(data)

    async def close(self) -> None:
        def quit_quietly() -> None:
            with contextlib.suppress(OSError, EOFError, ftplib.Error):
                if self._ftp.sock is not None:
                    self._ftp.quit()
            self._ftp.close()

        await asyncio.to_thread(quit_quietly)

    # -- running ftplib --

    async def _blocking(self, work: Callable[[], T], doing: str, *, connecting: bool = False) -> T:
        job = asyncio.ensure_future(asyncio.to_thread(work))
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            self._abort()
            with contextlib.suppress(Exception):
                await shielded(job)
            raise
        except Exception as error:
            raise self._translate(error, doing, connecting) from error

    def _abort(self) -> None:
        """End whatever the worker thread waits for (a reply, a data read)."""
        for sock in (self._data, self._ftp.sock):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _translate(self, error: Exception, doing: str, connecting: bool) -> TransferError:
        where = self._where
        shown = where.shown
        if isinstance(error, ftplib.error_reply | ftplib.error_temp | ftplib.error_perm):
            text = str(error)
            return ftp_reply_error(shown, _reply(error), doing, text[4:].strip()[:120])
        if isinstance(error, ftplib.error_proto):
            return TransferError(f"{shown}: the server does not answer as an FTP server: {error}")
        if isinstance(error, ssl.SSLCertVerificationError):
            return TransferError(
                f"{shown}: TLS with {where.host}:{where.port} failed: the server certificate "
                f"was rejected ({error.verify_message}): check firmware.ca_file, that the "
                f"certificate names {where.host}, and this computer's clock"
            )
        if isinstance(error, socket.gaierror):
            return TransferError(f"{shown}: cannot resolve {where.host}: {error}")
        if connecting and isinstance(error, OSError):
            return TransferError(f"{shown}: cannot connect to {where.host}:{where.port}: {error}")
        if isinstance(error, ssl.SSLError) and doing == "login":
            return TransferError(f"{shown}: TLS with {where.host}:{where.port} failed: {error}")
        if isinstance(error, OSError | EOFError):
            # A reset, a timeout, the server gone (EOFError: the control connection ended).
            return TransferInterrupted(f"{shown}: {doing} broke off: {error!r}")
        if isinstance(error, TransferError):
            return error
        return TransferError(f"{shown}: {doing} failed: {error!r}")


def _reply(error: ftplib.Error) -> int:
    code = str(error)[:3]
    return int(code) if code.isdigit() else 0
