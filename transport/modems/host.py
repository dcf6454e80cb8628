"""The host's own TCP/IP stack as a link: for chargers on Ethernet, and for tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from datetime import datetime

from transport.errors import (
    PeerClosed,
    ServerRefused,
    SocketOpenError,
    StreamBroken,
    StreamClosed,
    TlsHandshakeFailed,
    TlsRefusal,
    TlsSetupFailed,
)
from transport.link import RecoveryStep
from transport.modem import ModemIdentity
from transport.modems.host_ftp import HostFtp
from transport.modems.host_http import HostHttp
from transport.shielding import shielded
from transport.tls import TlsSettings, host_context

log = logging.getLogger(__name__)


class HostTcpStream:
    """A :class:`transport.stream.ByteStream` on an asyncio TCP (or TLS) connection."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, where: str
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._where = where
        self._closed = False
        self._closing: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, host: str, port: int, *, tls: ssl.SSLContext | None = None, timeout: float = 30.0
    ) -> HostTcpStream:
        where = f"{host}:{port}"
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            raise SocketOpenError(f"no TCP connection to {where} within {timeout:g} s") from None
        except ssl.SSLCertVerificationError as exc:
            raise TlsHandshakeFailed(
                f"TLS with {where} failed: the CSMS certificate was rejected "
                f"({exc.verify_message}): check csms.ca_file, that the certificate names "
                f"{host}, and this computer's clock",
                refused=TlsRefusal.CSMS_CERTIFICATE,
            ) from exc
        except ssl.SSLError as exc:
            raise TlsHandshakeFailed(
                f"TLS with {where} failed: {exc.reason or exc}; if the CSMS asks for a client "
                "certificate, check csms.client_certificate",
                refused=_refusal(exc.reason),
            ) from exc
        except (ConnectionRefusedError, ConnectionResetError) as exc:
            raise ServerRefused(f"cannot connect to {where}: {exc}") from exc
        except OSError as exc:
            raise SocketOpenError(f"cannot connect to {where}: {exc}") from exc
        return cls(reader, writer, where)

    async def read(self, max_bytes: int = 65536) -> bytes:
        if self._closed:
            raise StreamClosed(f"connection to {self._where} is closed")
        try:
            data = await self._reader.read(max_bytes)
        except OSError as exc:
            raise StreamBroken(f"connection to {self._where} failed: {exc}") from exc
        if not data:
            raise PeerClosed(f"{self._where} closed the connection")
        return data

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise StreamClosed(f"connection to {self._where} is closed")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:
            raise StreamBroken(f"connection to {self._where} failed: {exc}") from exc

    async def close(self) -> None:
        """Close the connection; later and concurrent calls (and cancelled callers) wait for
        the first to finish, as with every ByteStream."""
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.create_task(self._close(), name=f"close {self._where}")
        await shielded(self._closing)

    async def _close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(5.0):
                await self._writer.wait_closed()


class HostLink:
    """Connections straight from this computer; there is nothing to recover but the socket."""

    description = "host TCP/IP"
    identity: ModemIdentity | None = None

    def __init__(
        self,
        connect_timeout: float = 30.0,
        http: HostHttp | None = None,
        ftp: HostFtp | None = None,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._http = http or HostHttp()
        self._ftp = ftp or HostFtp()

    async def http_client(self) -> HostHttp:
        return self._http

    async def ftp_client(self) -> HostFtp:
        return self._ftp

    def use_csms_time(self, now: Callable[[], datetime | None]) -> None:
        return  # the host's own clock is what ssl checks certificate dates against

    async def open(self, host: str, port: int, *, tls: TlsSettings | None) -> HostTcpStream:
        try:
            context = host_context(tls) if tls is not None else None
        except (OSError, ssl.SSLError) as exc:
            raise TlsSetupFailed(f"the TLS files cannot be used: {exc}") from exc
        return await HostTcpStream.open(host, port, tls=context, timeout=self._connect_timeout)

    async def recover(self, step: RecoveryStep) -> None:
        if step > RecoveryStep.REOPEN:
            log.info("host TCP/IP has no module to recover (%s): reconnecting", step.name)

    async def close(self) -> None:
        return


# OpenSSL's reasons for a server that offers only old versions, or no suite we offer
# (whitepaper A00.FR.312/318: TLS 1.2 or above, AES-GCM suites).
_VERSION_REASONS = ("UNSUPPORTED_PROTOCOL", "WRONG_VERSION_NUMBER", "TLSV1_ALERT_PROTOCOL_VERSION")
_CIPHER_REASONS = ("NO_SHARED_CIPHER", "NO_CIPHERS_AVAILABLE", "NO_SUITABLE_CIPHER")


def _refusal(reason: str | None) -> TlsRefusal:
    if reason in _VERSION_REASONS:
        return TlsRefusal.VERSION
    if reason in _CIPHER_REASONS:
        return TlsRefusal.CIPHER_SUITE
    return TlsRefusal.UNKNOWN
