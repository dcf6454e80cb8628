"""The module's file system through Quectel's FILE AT commands (at-protocol.md §4).

Files are addressed as ``UFS:<name>`` (flash) or ``RAM:<name>`` (RAM disk, EC2x family). Bulk
data moves in bounded pieces (AT+QFREAD / AT+QFWRITE of ``chunk`` bytes), so that other users of
the serial line (the OCPP socket) get a turn between pieces; AT+QFUPL/AT+QFDWL move a small file
at once and are verified with the manual's 16-bit XOR checksum (§4.6).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator

from transport.at import AtChannel, Response
from transport.errors import AtCommandFailed, TransferCorrupt, TransferError, TransportError
from transport.shielding import shielded

log = logging.getLogger(__name__)

# +CME ERROR codes of the FILE commands (§4.8), by the text AT+CMEE=2 prints.
FILE_ERRORS = {
    400: "Invalid input value",
    401: "Larger than the size of the file",
    402: "Read zero byte",
    403: "Drive full",
    405: "File not found",
    406: "Invalid file name",
    407: "File already existed",
    409: "Fail to write the file",
    410: "Fail to open the file",
    411: "Fail to read the file",
    413: "Reach the max number of file allowed to be opened",
    414: "The file read-only",
    416: "Invalid file descriptor",
    417: "Fail to list the file",
    418: "Fail to delete the file",
    419: "Fail to get disk info",
    420: "No space",
    421: "Time out",
    423: "File too large",
    425: "Invalid parameter",
    426: "File already opened",
}
NOT_FOUND = 405
EXISTS = 407
READ_ZERO = 402

_NAME = re.compile(r"(?:(?:UFS|RAM):)?[A-Za-z0-9_.\-]{1,80}")
_TRANSFER = re.compile(r"(?P<size>\d+),(?P<checksum>[0-9A-Fa-f]+)")


def checksum(data: bytes) -> int:
    """AT+QFUPL/AT+QFDWL's checksum (§4.6): byte pairs as big-endian 16-bit words XORed; an odd
    last byte is the high half of a word whose low half is 0."""
    value = 0
    even = len(data) & ~1
    for i in range(0, even, 2):
        value ^= data[i] << 8 | data[i + 1]
    if len(data) & 1:
        value ^= data[-1] << 8
    return value


def error_code(error: AtCommandFailed, known: dict[int, str]) -> int | None:
    """The numeric code of a ``+CME ERROR``, also when AT+CMEE=2 printed its text."""
    if error.code is not None:
        return error.code
    text = error.result.partition(":")[2].strip().lower()
    for code, meaning in known.items():
        if meaning.lower() == text:
            return code
    return None


class FileFailed(TransferError):
    def __init__(self, doing: str, code: int | None, result: str) -> None:
        meaning = FILE_ERRORS.get(code or 0, result)
        super().__init__(f"{doing}: {meaning}" + (f" ({code})" if code else ""))
        self.code = code


class QuectelFiles:
    """UFS/RAM files on a started :class:`AtChannel`."""

    def __init__(self, channel: AtChannel, *, chunk: int = 4096) -> None:
        self._at = channel
        self.chunk = chunk

    @staticmethod
    def check_name(name: str) -> str:
        if not _NAME.fullmatch(name):
            raise ValueError(f"module file name {name!r}: use [UFS:|RAM:] and [A-Za-z0-9_.-]")
        return name

    async def _run(self, command: str, doing: str, **kwargs: object) -> Response:
        try:
            return await self._at.command(command, **kwargs)  # type: ignore[arg-type]
        except AtCommandFailed as error:
            raise FileFailed(doing, error_code(error, FILE_ERRORS), error.result) from error

    async def free(self, drive: str = "UFS") -> int:
        """Free bytes on ``drive`` (AT+QFLDS="UFS": ``+QFLDS: <free>,<total>``)."""
        response = await self._run(f'AT+QFLDS="{drive}"', f"AT+QFLDS {drive}", expect=("+QFLDS:",))
        free, _, _ = response.value("+QFLDS:").partition(",")
        return int(free)

    async def size(self, name: str) -> int | None:
        """The size of ``name``, or None when there is no such file (405 or an empty list)."""
        self.check_name(name)
        try:
            response = await self._run(
                f'AT+QFLST="{name}"', f"AT+QFLST {name}", expect=("+QFLST:",)
            )
        except FileFailed as error:
            if error.code == NOT_FOUND:
                return None
            raise
        for value in response.values("+QFLST:"):
            listed, _, size = value.rpartition(",")
            if listed.strip('"').rpartition(":")[2] == name.rpartition(":")[2]:
                return int(size)
        return None

    async def delete(self, name: str) -> None:
        """Delete ``name``; a file that is not there is fine."""
        self.check_name(name)
        try:
            await self._run(f'AT+QFDEL="{name}"', f"AT+QFDEL {name}")
        except FileFailed as error:
            if error.code != NOT_FOUND:
                raise

    async def upload(self, name: str, data: bytes, *, timeout: int = 20) -> None:
        """Write ``data`` to a new file ``name`` in one AT+QFUPL (for small files such as a CA
        certificate), replacing an existing one, and check the module's checksum."""
        self.check_name(name)
        await self.delete(name)  # AT+QFUPL will not overwrite (407)
        response = await self._at.command_with_data(
            f'AT+QFUPL="{name}",{len(data)},{timeout}', data, timeout=timeout + 5.0
        )
        if not response.result.success:
            code = error_code(
                AtCommandFailed(response.command, response.result.text, response.result.code),
                FILE_ERRORS,
            )
            raise FileFailed(f"AT+QFUPL {name}", code, response.result.text)
        self._check_transfer(response, "+QFUPL:", data, name)

    async def download(self, name: str) -> bytes:
        """The whole of ``name`` in one AT+QFDWL, checksum checked. Its size is asked first: the
        output carries no length and binary data may contain the result lines (§4.5)."""
        size = await self.size(name)
        if size is None:
            raise FileFailed(f"AT+QFDWL {name}", NOT_FOUND, "File not found")
        try:
            response = await self._at.command_reading(
                f'AT+QFDWL="{name}"', size, expect=("+QFDWL:",)
            )
        except AtCommandFailed as error:
            raise FileFailed(
                f"AT+QFDWL {name}", error_code(error, FILE_ERRORS), error.result
            ) from error
        data = next((ln.payload for ln in response.lines if ln.payload is not None), b"")
        self._check_transfer(response, "+QFDWL:", data, name)
        return data

    @staticmethod
    def _check_transfer(response: Response, prefix: str, data: bytes, name: str) -> None:
        match = _TRANSFER.fullmatch(response.value(prefix))
        if match is None:
            raise TransferCorrupt(f"{name}: unreadable {prefix} line")
        size, value = int(match.group("size")), int(match.group("checksum"), 16)
        if size != len(data) or value != checksum(data):
            raise TransferCorrupt(
                f"{name}: the module counted {size} bytes with checksum {value:x}, "
                f"the host {len(data)} with {checksum(data):x}"
            )

    # -- handles (§4.7) --

    @contextlib.asynccontextmanager
    async def opened(self, name: str, mode: int) -> AsyncIterator[int]:
        """A handle on ``name`` (see :meth:`open`), closed when the block ends, however it ends.

        The module allows a few handles at a time (413 after that), and a handle whose number
        the host never learnt can never be closed: so AT+QFOPEN runs to its answer even if the
        caller is cancelled meanwhile, and the handle it gave is then closed at once.
        """
        opening = asyncio.ensure_future(self.open(name, mode))
        try:
            handle = await shielded(opening)
        except asyncio.CancelledError:
            if opening.done() and not opening.cancelled() and opening.exception() is None:
                await shielded(self.close_quietly(opening.result()))
            raise
        try:
            yield handle
        finally:
            await shielded(self.close_quietly(handle))

    async def close_quietly(self, handle: int) -> None:
        """AT+QFCLOSE, for clean-up: a failure is logged, not raised."""
        try:
            await self.close(handle)
        except TransportError as error:
            log.warning("could not close module file handle %d: %s", handle, error)

    async def open(self, name: str, mode: int) -> int:
        """0: create or open read/write; 1: create or truncate; 2: read-only, must exist."""
        self.check_name(name)
        response = await self._run(
            f'AT+QFOPEN="{name}",{mode}', f"AT+QFOPEN {name}", expect=("+QFOPEN:",)
        )
        return int(response.value("+QFOPEN:"))

    async def read(self, handle: int, length: int) -> bytes:
        """Up to ``length`` bytes from the handle's position; b"" at the end of the file (the
        module says ``CONNECT 0`` or error 402, depending on the firmware)."""
        try:
            response = await self._at.command(f"AT+QFREAD={handle},{length}")
        except AtCommandFailed as error:
            if error_code(error, FILE_ERRORS) == READ_ZERO:
                return b""
            raise FileFailed("AT+QFREAD", error_code(error, FILE_ERRORS), error.result) from error
        return response.payload

    async def write(self, handle: int, data: bytes, *, timeout: int = 5) -> None:
        """Write ``data`` at the handle's position, in pieces of ``chunk`` bytes."""
        for start in range(0, len(data), self.chunk):
            piece = data[start : start + self.chunk]
            response = await self._at.command_with_data(
                f"AT+QFWRITE={handle},{len(piece)},{timeout}", piece
            )
            written = response.values("+QFWRITE:")
            if not response.result.success or not written:
                raise FileFailed("AT+QFWRITE", response.result.code, response.result.text)
            if int(written[0].partition(",")[0]) != len(piece):
                raise TransferCorrupt(f"AT+QFWRITE wrote {written[0]} of {len(piece)} bytes")

    async def seek(self, handle: int, offset: int) -> None:
        await self._run(f"AT+QFSEEK={handle},{offset},0", "AT+QFSEEK")

    async def close(self, handle: int) -> None:
        await self._run(f"AT+QFCLOSE={handle}", "AT+QFCLOSE")
