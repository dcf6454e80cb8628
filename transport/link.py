"""The daemon's handle on its way out to the network: open a byte stream, recover when that
keeps failing.

One implementation per module family (Quectel, TI Wi-Fi) and one for chargers on
Ethernet (the host's own TCP/IP stack). The daemon never learns which one it holds.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from transport.errors import UnsupportedLocation
from transport.ftp import FtpClient, FtpLocation
from transport.http import HttpClient, Location
from transport.modem import ModemIdentity
from transport.stream import ByteStream
from transport.tls import TlsSettings


class RecoveryStep(enum.IntEnum):
    """Escalating recovery, mildest first (architecture: reopen → PDP → CFUN → reboot)."""

    REOPEN = 0  # just open a new socket
    REACTIVATE_PDP = 1  # tear down and re-activate the packet data context
    RADIO_CYCLE = 2  # AT+CFUN=0 / AT+CFUN=1: detach and re-register
    RESTART_MODULE = 3  # reset the module (AT+CFUN=1,1) and bring it up again


class Link(Protocol):
    @property
    def description(self) -> str:
        """For logs: what this link is ("Quectel EC200U on /dev/ttyUSB2", "host TCP/IP")."""
        ...

    @property
    def identity(self) -> ModemIdentity | None:
        """The module's identity once known (ICCID and IMSI go into BootNotification)."""
        ...

    async def open(self, host: str, port: int, *, tls: TlsSettings | None) -> ByteStream:
        """A byte stream to ``host:port``, TLS-secured when ``tls`` is given. Failures the
        module cannot cure are :class:`~transport.errors.ServerRefused` (the CSMS is down)
        and :class:`~transport.errors.TlsHandshakeFailed` (a certificate was refused)."""
        ...

    def use_csms_time(self, now: Callable[[], datetime | None]) -> None:
        """Where the CSMS's time can be had (None until a session gave it): a module that
        checks certificate dates needs a set clock, and the network may not give one."""
        ...

    async def http_client(self) -> HttpClient:
        """The HTTP(S) client for file transfers (firmware, diagnostics) on this link."""
        ...

    async def ftp_client(self) -> FtpClient:
        """The FTP(S) client for ftp:// and ftps:// locations on this link."""
        ...

    async def recover(self, step: RecoveryStep) -> None: ...

    async def close(self) -> None: ...


class TransferClients:
    """A link's file-transfer clients, picked by a location's scheme (the firmware and
    diagnostics blocks, ``chargepoint fetch``): http(s) to ``http``, ftp(s) to ``ftp`` (None:
    this link transfers no FTP, and an ftp(s) location is refused)."""

    def __init__(
        self,
        http: Callable[[], Awaitable[HttpClient]],
        ftp: Callable[[], Awaitable[FtpClient]] | None = None,
    ) -> None:
        self.http = http
        self.ftp = ftp

    async def client_for(self, where: Location | FtpLocation) -> HttpClient | FtpClient:
        if not isinstance(where, FtpLocation):
            return await self.http()
        if self.ftp is None:
            raise UnsupportedLocation(f"{where.shown}: this link has no FTP client")
        return await self.ftp()
