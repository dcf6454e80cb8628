"""HTTP(S) on the host's own TCP/IP stack: the :class:`transport.http.HttpClient` of chargers
on Ethernet (and of tests). Same pieces, same resume, same checks as through a module."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

from transport.errors import HttpStatusError, TransferError, TransferInterrupted
from transport.http import (
    MAX_HEAD,
    Consume,
    FetchResult,
    Location,
    Progress,
    ResponseHead,
    fetch_in_pieces,
    multipart_request,
)

T = TypeVar("T")
READ_SIZE = 64 * 1024


class HostHttp:
    def __init__(
        self,
        *,
        ca_file: Path | None = None,
        piece_size: int = 1024 * 1024,
        timeout: float = 60.0,
    ) -> None:
        self._ca_file = ca_file
        self._piece_size = piece_size
        self._timeout = timeout

    async def fetch(
        self, url: str, dest: Path, *, sha256: str | None = None, progress: Progress | None = None
    ) -> FetchResult:
        return await fetch_in_pieces(
            self, url, dest, piece_size=self._piece_size, sha256=sha256, progress=progress
        )

    async def upload(self, url: str, file_name: str, data: bytes, *, field: str = "file") -> int:
        where = Location.parse(url)

        async def status(response: ResponseHead, body: AsyncIterator[bytes]) -> int:
            async for _ in body:
                pass
            return response.status

        code = await self.exchange(where, multipart_request(where, field, file_name, data), status)
        if not 200 <= code < 300:
            raise HttpStatusError(where.shown, code)
        return code

    async def exchange(self, where: Location, head: bytes, consume: Consume[T]) -> T:
        context: ssl.SSLContext | None = None
        if where.secure:
            context = ssl.create_default_context(
                cafile=str(self._ca_file) if self._ca_file else None
            )
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await asyncio.open_connection(
                    where.host,
                    where.port,
                    ssl=context,
                    server_hostname=where.host if context else None,
                    limit=MAX_HEAD,
                )
        except socket.gaierror as error:
            raise TransferError(f"{where.shown}: cannot resolve {where.host}: {error}") from error
        except (OSError, TimeoutError) as error:
            raise TransferError(f"{where.shown}: cannot connect: {error}") from error
        try:
            writer.write(head)
            await writer.drain()
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
                raise TransferInterrupted(f"{where.shown}: no complete response header") from error
            response = ResponseHead.parse(raw)
            return await consume(response, _body(reader, response.content_length, where.shown))
        except OSError as error:
            raise TransferInterrupted(f"{where.shown}: {error}") from error
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()


async def _body(reader: asyncio.StreamReader, length: int | None, url: str) -> AsyncIterator[bytes]:
    left = length
    while left is None or left > 0:
        chunk = await reader.read(READ_SIZE if left is None else min(READ_SIZE, left))
        if not chunk:
            if left:
                raise TransferInterrupted(f"{url}: the connection closed {left} bytes early")
            return
        if left is not None:
            left -= len(chunk)
        yield chunk
