"""What every module family's driver offers the layers above, and the values it reports.

A driver brings the data link up (SIM, network registration, packet data context), reports the
module's identity and health (for BootNotification and the logs), and opens TCP byte streams
(:class:`transport.stream.ByteStream`). Everything module-specific stays in its driver under
:mod:`transport.modems`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from transport.stream import ByteStream


class RegistrationStatus(enum.IntEnum):
    """``<stat>`` of ``+CREG/+CGREG/+CEREG`` (3GPP TS 27.007 §7.2)."""

    NOT_SEARCHING = 0
    HOME = 1
    SEARCHING = 2
    DENIED = 3
    UNKNOWN = 4
    ROAMING = 5

    @property
    def registered(self) -> bool:
        return self in (RegistrationStatus.HOME, RegistrationStatus.ROAMING)


@dataclass(frozen=True, slots=True)
class Registration:
    """The registration state of each domain the module reported (absent when unsupported)."""

    cs: RegistrationStatus | None  # +CREG: circuit switched
    gprs: RegistrationStatus | None  # +CGREG: packet switched, 2G/3G
    eps: RegistrationStatus | None  # +CEREG: packet switched, LTE / LTE-M / NB-IoT

    @property
    def packet_registered(self) -> bool:
        return any(s is not None and s.registered for s in (self.gprs, self.eps))

    @property
    def denied(self) -> bool:
        known = [s for s in (self.gprs, self.eps) if s is not None]
        return bool(known) and all(s is RegistrationStatus.DENIED for s in known)

    def describe(self) -> str:
        parts = []
        for name, status in (("CREG", self.cs), ("CGREG", self.gprs), ("CEREG", self.eps)):
            if status is not None:
                parts.append(f"{name} {status.value} {status.name.lower().replace('_', ' ')}")
        return ", ".join(parts) or "no registration information"


@dataclass(frozen=True, slots=True)
class SignalQuality:
    """``+CSQ: <rssi>,<ber>`` (27.007 §8.5): rssi 0..31 or 99 (unknown)."""

    rssi: int
    ber: int

    @property
    def dbm(self) -> int | None:
        if self.rssi == 99:
            return None
        return -113 + 2 * self.rssi

    def describe(self) -> str:
        dbm = self.dbm
        return "unknown" if dbm is None else f"{dbm} dBm (CSQ {self.rssi})"


@dataclass(frozen=True, slots=True)
class ModemIdentity:
    manufacturer: str
    model: str
    revision: str
    imei: str
    iccid: str | None
    imsi: str | None
    mac: str | None = None  # Wi-Fi modules: the station's MAC address


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """What bring-up found: who the module is, how it is registered, and its address."""

    identity: ModemIdentity
    registration: Registration
    signal: SignalQuality
    ip_address: str


class Modem(Protocol):
    """The driver seam: one implementation per module family (and one for the host's stack)."""

    async def bring_up(self) -> LinkInfo: ...

    async def identity(self) -> ModemIdentity: ...

    async def signal(self) -> SignalQuality: ...

    async def open_tcp(self, host: str, port: int) -> ByteStream: ...
