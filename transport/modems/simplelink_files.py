"""Certificates in the SimpleLink module's file system, for its TLS sockets and its HTTP client
(AT+FileOpen/FileWrite/FileRead/FileClose, [guide] Tables 38-45; names and limits of SPEC §6).

The network processor's serial flash wears on writes, not reads, and a certificate seldom
changes: before a file is written, what the module holds under that name is read back
(AT+FileGetInfo for the size, then AT+FileRead) and the file is written only when it is
missing or differs, so a restarted daemon writes nothing. Within a process, a file already
written or found current is not read again (:class:`WrittenFiles`, kept by the link so it
outlives a channel dropped after a port failure).

Writes go in base64 pieces of at most 1024 bytes; the command lines of a private key are logged
with the data replaced by ``***``, and its read-back answers by their size only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator

from transport.at import AtChannel
from transport.errors import AtCommandFailed, TlsSetupFailed, TransportError
from transport.modems.simplelink_protocol import (
    FILE_NOT_FOUND,
    MAX_FILE_WRITE,
    DataError,
    b64,
    decode_data,
    error_code,
    padded,
    parse_error,
    pieces,
    quote,
    values,
)
from transport.shielding import shielded

log = logging.getLogger(__name__)

CSMS_CA_FILE = "/cert/csms-ca.pem"
CLIENT_CERT_FILE = "/cert/client.pem"
CLIENT_KEY_FILE = "/cert/client-key.pem"
FILES_CA_FILE = "/cert/files-ca.pem"
ALLOCATION = 4096  # SPEC-silent: <max size> of AT+FileOpen rounded up to a flash block


class WrittenFiles:
    """What this process wrote, or found current, under each module file name: the SHA-256 of
    the content."""

    def __init__(self) -> None:
        self._digests: dict[str, str] = {}

    def current(self, name: str, data: bytes) -> bool:
        return self._digests.get(name) == hashlib.sha256(data).hexdigest()

    def record(self, name: str, data: bytes) -> None:
        self._digests[name] = hashlib.sha256(data).hexdigest()

    def forget(self, name: str) -> None:
        self._digests.pop(name, None)


class SimpleLinkFiles:
    """The module's file system, as far as certificates need it."""

    def __init__(self, channel: AtChannel, written: WrittenFiles | None = None) -> None:
        self._at = channel
        self.written = written or WrittenFiles()

    async def install(self, name: str, data: bytes, *, secret: bool = False) -> bool:
        """Make module file ``name`` hold ``data``, writing only if this process has not
        written exactly that already; whether it wrote. Failures are
        :class:`~transport.errors.TlsSetupFailed` (a file the module refuses is a setting to
        fix, not a module to reset)."""
        if self.written.current(name, data):
            return False
        if await self.holds(name, data, secret=secret):
            self.written.record(name, data)
            log.debug("%s on the module is current", name)
            return False
        try:
            await self.write(name, data, secret=secret)
        except AtCommandFailed as error:
            self.written.forget(name)
            raise TlsSetupFailed(
                f"the module refused to store {name}: {parse_error(error.result).described}"
            ) from error
        self.written.record(name, data)
        log.info("installed %s on the module (%d bytes)", name, len(data))
        return True

    async def write(self, name: str, data: bytes, *, secret: bool = False) -> None:
        """Create or overwrite ``name`` with ``data``; the file is visible once closed."""
        size = max(ALLOCATION, -(-len(data) // ALLOCATION) * ALLOCATION)
        async with self._opened(name, f"CREATE|OVERWRITE,{size}") as handle:
            offset = 0
            for piece in pieces(data, MAX_FILE_WRITE):
                encoded = b64(piece)
                head = f"AT+FileWrite={handle},{offset},1,{len(encoded)},"
                response = await self._at.command(
                    head + encoded,
                    expect=("+filewrite:",),
                    log_as=head + ("***" if secret else f"<{len(piece)} bytes>"),
                )
                written = values(response.value("+filewrite:"))
                if not written or written[0] != str(len(piece)):
                    raise TlsSetupFailed(
                        f"AT+FileWrite on {name} wrote {written[:1]} of {len(piece)} bytes"
                    )
                offset += len(piece)

    async def holds(self, name: str, data: bytes, *, secret: bool = False) -> bool:
        """Whether module file ``name`` holds exactly ``data`` (read back in pieces, stopping
        at the first difference); False when it is missing or cannot be read."""
        try:
            if await self.size(name) != len(data):
                return False
            async with self._opened(name, "READ") as handle:
                for offset in range(0, len(data), MAX_FILE_WRITE):
                    expected = data[offset : offset + MAX_FILE_WRITE]
                    if await self.read(handle, offset, len(expected), secret=secret) != expected:
                        return False
        except AtCommandFailed as error:
            log.info("could not read %s back (%s): writing it", name, error.result)
            return False
        return True

    async def read(self, handle: str, offset: int, length: int, *, secret: bool = False) -> bytes:
        """Up to ``length`` bytes at ``offset`` (AT+FileRead in base64, SPEC §6)."""
        response = await self._at.command(
            f"AT+FileRead={handle},{offset},1,{length}",
            expect=("+fileread:",),
            secret_answer=secret,
        )
        fields = values(response.value("+fileread:"))
        try:
            return decode_data(*padded(fields, 3)[1:3])
        except DataError:
            return b""  # unreadable: taken as different, so the file is written again

    async def size(self, name: str) -> int | None:
        """The file's size (AT+FileGetInfo), or None when there is no such file."""
        try:
            response = await self._at.command(
                f"AT+FileGetInfo={quote(name)},", expect=("+filegetinfo:",)
            )
        except AtCommandFailed as error:
            if error_code(error) == FILE_NOT_FOUND:
                return None
            raise
        fields = values(response.value("+filegetinfo:"))
        return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None

    async def delete(self, name: str) -> None:
        """AT+FileDel; a missing file is not an error."""
        self.written.forget(name)
        try:
            await self._at.command(f"AT+FileDel={quote(name)},")
        except AtCommandFailed as error:
            if error_code(error) != FILE_NOT_FOUND:
                raise

    @contextlib.asynccontextmanager
    async def _opened(self, name: str, options: str) -> AsyncIterator[str]:
        """A file handle, closed when the block ends however it ends; AT+FileOpen runs to its
        answer even when the caller is cancelled, so no handle is left open unknown."""
        opening = asyncio.ensure_future(
            self._at.command(f"AT+FileOpen={quote(name)},{options}", expect=("+fileopen:",))
        )
        try:
            response = await shielded(opening)
        except asyncio.CancelledError:
            if opening.done() and not opening.cancelled() and opening.exception() is None:
                handle = values(opening.result().value("+fileopen:"))[0]
                await shielded(self._close_quietly(handle))
            raise
        handle = values(response.value("+fileopen:"))[0]
        try:
            yield handle
        except BaseException:
            await shielded(self._close_quietly(handle))
            raise
        # The file exists for sockets only once closed (SPEC §6): a failed close fails the write.
        await shielded(self._at.command(f"AT+FileClose={handle},,"))

    async def _close_quietly(self, handle: str) -> None:
        try:
            await self._at.command(f"AT+FileClose={handle},,")
        except TransportError as error:
            log.warning("could not close module file handle %s: %s", handle, error)
