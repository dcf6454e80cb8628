"""File transfers over FTP and FTPS, whatever carries them: the seam and the shared algorithm
(RFC 959; SIZE, MDTM and REST from RFC 3659; explicit TLS, ``AUTH TLS``, from RFC 4217).

An :class:`FtpClient` fetches a file to a host path and stores one in a directory, with the
signatures of :class:`transport.http.HttpClient`, so the firmware and diagnostics blocks treat
both alike once :func:`parse_location` has told the schemes apart. The Quectel driver implements
it on the module's AT+QFTP* commands (:mod:`transport.modems.quectel_ftp`), the host link with
``ftplib`` (:mod:`transport.modems.host_ftp`); each gives an :class:`FtpSession` (logged in, in
the right directory) and both fetch through :func:`fetch_resuming`:

* the file is appended to ``<dest>.part`` and synced; ``<dest>.part.json`` remembers the URL
  (password hidden), the size the server gave (SIZE) and its modification time (MDTM), in the
  :class:`~transport.http.PartialFile` the HTTP transfers use;
* a broken transfer (426, a dropped connection, a server that went away) is taken up again
  from the last good byte with REST, at once as long as it makes progress (``retry_now``
  errors; the fetch gives up once ``RETRIES_NOW`` attempts in a row brought nothing), and
  after a restart by the next fetch, when SIZE and MDTM still say the same;
* the result is checked against SIZE, and against a SHA-256 when one is given.

The weakness, said plainly: FTP has no ETag, and SIZE with MDTM is a weak validator. A file
replaced on the server by another of the same size within the same second (MDTM has a
resolution of one second), or on a server without MDTM by any file of the same size, is not
noticed, and the image is spliced from the two; only a SHA-256 would catch that, and
UpdateFirmware carries none. A server with neither SIZE nor MDTM gets no resume at all: the
fetch starts over rather than splice blindly.

Locations follow RFC 1738 §3.2: ``ftp://[user[:password]@]host[:port]/path``, the path relative
to the login directory (``%2F`` for an absolute one), percent-escapes decoded, no user meaning
anonymous. ``ftps://`` is explicit FTPS (AUTH TLS on the control port, 21 by default, and
``PROT P`` for the data); implicit FTPS (TLS from the first byte, port 990) is not supported.
A GetDiagnostics location names the directory the archive goes into (OCPP 1.6 §6.27).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from transport.errors import (
    TransferCorrupt,
    TransferError,
    TransferInterrupted,
    UnsupportedLocation,
)
from transport.http import (
    RETRIES_NOW,
    FetchResult,
    Location,
    PartialFile,
    Progress,
    file_sha256,
    redact_url,
)

log = logging.getLogger(__name__)

FTP_SCHEMES = ("ftp", "ftps")
HTTP_SCHEMES = ("http", "https")
DEFAULT_PORT = 21
ANONYMOUS = ("anonymous", "anonymous@")  # RFC 1738 §3.2.1: the password an e-mail address
_FORBIDDEN = ("\r", "\n", "\0")  # would end an FTP command early (command injection)


@dataclass(frozen=True, slots=True)
class FtpLocation:
    """An ftp(s) URL taken apart the way a session needs it; its password never shows in a
    repr or a message (:attr:`shown`)."""

    url: str = field(repr=False)
    secure: bool  # ftps://: explicit TLS (AUTH TLS), data protected (PROT P)
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    path: str  # decoded, relative to the login directory unless it starts with "/"

    @property
    def shown(self) -> str:
        return redact_url(self.url)

    @property
    def directory(self) -> str:
        """The directory of the file the path names ("" for the login directory)."""
        head, sep, _ = self.path.rpartition("/")
        return (head or "/") if sep else ""

    @property
    def name(self) -> str:
        """The last segment of the path: the file to fetch ("" when the path ends with "/")."""
        return self.path.rpartition("/")[2]

    @property
    def file_name(self) -> str:
        """A local name for what the location fetches."""
        return self.name or "download"

    @property
    def upload_directory(self) -> str:
        """The whole path as a directory: where GetDiagnostics puts its archive."""
        return self.path.rstrip("/") or ("/" if self.path.startswith("/") else "")

    @classmethod
    def parse(cls, url: str) -> FtpLocation:
        shown = redact_url(url)
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in FTP_SCHEMES:
            raise UnsupportedLocation(
                f"{shown}: the FTP client takes ftp:// and ftps:// locations, "
                f"not {scheme or 'a bare path'}"
            )
        if not parts.hostname:
            raise UnsupportedLocation(f"{shown}: no host in the URL")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise UnsupportedLocation(
                f"{shown}: the port is not a number from 1 to 65535"
            ) from None
        if parts.query or parts.fragment:
            raise UnsupportedLocation(f"{shown}: an ftp location has no query or fragment")
        raw_path = parts.path
        if ";type=" in raw_path.lower():  # RFC 1738 §3.2.2 typecode: transfers are binary anyway
            raw_path = raw_path[: raw_path.lower().rindex(";type=")]
        path = unquote(raw_path[1:] if raw_path.startswith("/") else raw_path)
        if parts.username is None:
            user, password = ANONYMOUS
        else:
            user, password = unquote(parts.username), unquote(parts.password or "")
        if any(c in text for text in (user, password, path) for c in _FORBIDDEN):
            raise UnsupportedLocation(f"{shown}: a line break or NUL in the user, password or path")
        return cls(url, scheme == "ftps", parts.hostname, port, user, password, path)


def parse_location(url: str) -> Location | FtpLocation:
    """An http(s) or ftp(s) location taken apart; any other is an :class:`UnsupportedLocation`
    naming the four schemes this charge point transfers files with."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in HTTP_SCHEMES:
        return Location.parse(url)
    if scheme in FTP_SCHEMES:
        return FtpLocation.parse(url)
    raise UnsupportedLocation(
        f"{redact_url(url)}: files are transferred over http, https, ftp and ftps, "
        f"not {scheme or 'a bare path'}"
    )


def upload_name(file_name: str) -> str:
    """``file_name`` checked as one path segment a server can store."""
    if not file_name or "/" in file_name or any(c in file_name for c in _FORBIDDEN):
        raise UnsupportedLocation(f"{file_name!r} cannot be stored as one FTP file name")
    return file_name


# --- what a carrier provides -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """What the server says about a file: SIZE and MDTM, None where it does not know them."""

    size: int | None
    modified: str | None  # MDTM's YYYYMMDDHHMMSS[.sss], UTC


class FtpSession(Protocol):
    """A logged-in session, in the directory it was opened for. Server refusals are
    :class:`~transport.errors.FtpReplyError`; broken connections ``retry_now`` errors."""

    async def stat(self, name: str) -> RemoteFile: ...

    async def retrieve(
        self, name: str, offset: int, out: BinaryIO, counted: Callable[[int], None]
    ) -> None:
        """Write the file from byte ``offset`` (REST) to its end into ``out``, calling
        ``counted`` with each piece's length. What was written before a failure stays."""
        ...

    async def store(self, name: str, data: bytes) -> int:
        """Store ``data`` as ``name``; the number of bytes the transfer carried."""
        ...


class FtpCarrier(Protocol):
    def session(
        self, where: FtpLocation, directory: str
    ) -> contextlib.AbstractAsyncContextManager[FtpSession]:
        """Open, log in, change to ``directory`` ("" stays in the login directory); close
        however the block ends."""
        ...


class FtpClient(Protocol):
    async def fetch(
        self, url: str, dest: Path, *, sha256: str | None = None, progress: Progress | None = None
    ) -> FetchResult: ...

    async def upload(self, url: str, file_name: str, data: bytes) -> int:
        """Store ``data`` as ``file_name`` in the directory the location names; the number of
        bytes stored."""
        ...


# --- the algorithm ---------------------------------------------------------------------------


async def fetch_resuming(
    carrier: FtpCarrier,
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    progress: Progress | None = None,
) -> FetchResult:
    """Fetch ``url`` to ``dest`` (see the module docstring). Raises
    :class:`~transport.errors.TransferError` subclasses; what arrived stays in ``<dest>.part``
    for the next call to resume."""
    where = FtpLocation.parse(url)
    shown = where.shown
    if not where.name:
        raise UnsupportedLocation(f"{shown}: names a directory, not a file to fetch")
    partial = PartialFile.resume(dest, url)
    resumed_from = partial.size
    if resumed_from:
        log.info("resuming %s at byte %d of %s", shown, resumed_from, partial.total or "?")
    sessions = 0
    failures = 0
    while True:
        sessions += 1
        before = partial.size
        try:
            async with carrier.session(where, where.directory) as session:
                _same_file(partial, await session.stat(where.name), shown)
                if partial.total is None or partial.size < partial.total:
                    await _retrieve(session, partial, where.name, progress)
            if partial.total is None or partial.size >= partial.total:
                break
            # The data connection ended early with the server's blessing (226): a server that
            # was cut off from its file, or a proxy that dropped the connection cleanly.
            raise TransferInterrupted(
                f"{shown}: the transfer ended after {partial.size} of {partial.total} bytes"
            )
        except TransferError as error:
            failures = 0 if partial.size > before else failures + 1
            if not error.retry_now or failures >= RETRIES_NOW:
                raise
            log.warning("%s broke off at byte %d (%s): resuming", shown, partial.size, error)
    size, total = partial.size, partial.total
    if total is not None and size != total:
        partial.restart()
        raise TransferCorrupt(f"{shown}: got {size} bytes, the server said {total}")
    digest = file_sha256(partial.part)
    if sha256 is not None and digest != sha256.lower():
        partial.restart()
        raise TransferCorrupt(f"{shown}: SHA-256 {digest} does not match the expected {sha256}")
    partial.finish()
    return FetchResult(dest, size, digest, resumed_from, sessions, ranged=True)


def _same_file(partial: PartialFile, remote: RemoteFile, shown: str) -> None:
    """Keep ``<dest>.part`` only if SIZE and MDTM still say what they said when it was begun."""
    current = (remote.size, remote.modified)
    if partial.size:
        if current == (None, None):
            log.warning("%s: the server gives neither SIZE nor MDTM: starting over", shown)
            partial.restart()
        elif (partial.total, partial.validator) != current:
            log.warning(
                "%s changed on the server (size %s, modified %s; was %s, %s): starting over",
                shown,
                remote.size,
                remote.modified,
                partial.total,
                partial.validator,
            )
            partial.restart()
        elif partial.total is not None and partial.size > partial.total:
            log.warning("%s: more bytes kept than the file has: starting over", shown)
            partial.restart()
    if (partial.total, partial.validator) != current:
        partial.total, partial.validator = current
        partial.save()


async def _retrieve(
    session: FtpSession, partial: PartialFile, name: str, progress: Progress | None
) -> None:
    with partial.part.open("ab") as out:
        got = partial.size

        def counted(length: int) -> None:
            nonlocal got
            got += length
            if progress is not None:
                progress(got, partial.total)

        try:
            await session.retrieve(name, partial.size, out, counted)
        finally:
            out.flush()
            os.fsync(out.fileno())


async def store_in_directory(carrier: FtpCarrier, url: str, file_name: str, data: bytes) -> int:
    """Store ``data`` as ``file_name`` in the directory ``url`` names; the bytes stored."""
    where = FtpLocation.parse(url)
    name = upload_name(file_name)
    async with carrier.session(where, where.upload_directory) as session:
        stored = await session.store(name, data)
    if stored != len(data):
        raise TransferCorrupt(f"{where.shown}: {stored} of {len(data)} bytes of {name} stored")
    return stored
