"""The module families the daemon can drive, by the name ``modem.type`` gives them.

The composition root, the operator commands and the demo reach a family only through this
table and the plain settings below, so nothing above :mod:`transport.modems` knows which
module it drives: adding a family is a driver in this package and one entry in
:data:`FAMILIES`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from transport.at import AtChannel
from transport.link import Link
from transport.modems.quectel import QuectelLink, open_quectel, quectel_channel
from transport.modems.quectel_ftp import FtpSettings
from transport.modems.quectel_http import HttpSettings
from transport.modems.quectel_settings import (
    AccessMode,
    PdpAuth,
    QuectelSettings,
    hex_send_default,
)
from transport.modems.simplelink import SimpleLinkLink, describe_simplelink, simplelink_channel
from transport.modems.simplelink_settings import SimpleLinkSettings


@dataclass(frozen=True, slots=True)
class WifiSettings:
    """The network a Wi-Fi module joins (``[wifi]`` of the configuration file)."""

    ssid: str | None
    security: str = "wpa_wpa2"  # open | wep | wpa_wpa2 | wpa_ent
    key: str | None = None
    eap_method: str | None = None
    user: str | None = None
    anonymous_user: str | None = None
    provisioning: str = "profile"  # profile | connect | stored
    join_timeout: float = 30.0

    def __repr__(self) -> str:  # the key never reaches a log
        return f"WifiSettings(ssid={self.ssid!r}, security={self.security!r})"


@dataclass(frozen=True, slots=True)
class ModuleSettings:
    """What the configuration says about the module, whatever its family; each family takes
    the part that concerns it (a cellular module the APN, a Wi-Fi module the network)."""

    port: str
    baudrate: int = 115200
    apn: str = ""
    username: str = ""
    password: str = field(default="", repr=False)  # never in a log or a traceback
    auth: str = "pap_or_chap"  # none | pap | chap | pap_or_chap
    context_id: int = 1
    sim_pin: str | None = field(default=None, repr=False)
    registration_timeout: float = 90.0
    access_mode: str = "push"  # push | buffer (Quectel sockets)
    hex_send_max: int | None = None  # Quectel TCP: AT+QISENDEX up to this; None: by baud rate
    wifi: WifiSettings | None = None
    files_ca: Path | None = None  # CA of HTTPS/FTPS file servers (firmware.ca_file)
    piece_size: int = 128 * 1024  # bytes per HTTP Range request
    chunk: int = 8192  # bytes per module file read/write: the longest the line is held
    scratch_drive: str = "RAM"


@dataclass(frozen=True, slots=True)
class Family:
    """One module family: how to build its link, read its identity, and talk AT to it."""

    name: str
    summary: str  # for check-config: "Quectel cellular module"
    describe: Callable[[ModuleSettings], str]  # the link line of check-config
    link: Callable[[ModuleSettings], Link]
    info: Callable[[ModuleSettings], Awaitable[list[tuple[str, str]]]]  # `modem info` rows
    channel: Callable[[ModuleSettings], AtChannel]  # `modem at`; not started
    # Commands the AT console must not send: they hand the line to a data phase the daemon
    # drives (">" or CONNECT, then bytes)...
    data_phase: tuple[str, ...] = ()
    # ...or block the module, with nothing able to interrupt them, until data comes.
    unbounded: tuple[str, ...] = ()
    # Commands whose first OK only says "accepted": the console waits for their result.
    blocked: tuple[str, ...] = ()
    # The file transfer protocols its commands carry (SupportedFileTransferProtocols, §8).
    transfer_protocols: tuple[str, ...] = ("FTP", "FTPS", "HTTP", "HTTPS")
    # What the driver refuses in these settings, in words for the configuration's reader
    # (check-config and the daemon ask before building anything).
    problems: Callable[[ModuleSettings], list[str]] = lambda _: []


def _refusals(build: Callable[[], object], table: str) -> list[str]:
    """The driver's own checks of its settings (its dataclass refuses what it cannot use)."""
    try:
        build()
    except ValueError as refused:
        return [f"{table}: {refused}"]
    return []


# --- Quectel ---------------------------------------------------------------------------------


def _quectel_settings(settings: ModuleSettings) -> QuectelSettings:
    return QuectelSettings(
        apn=settings.apn,
        username=settings.username,
        password=settings.password,
        auth={"none": PdpAuth.NONE, "pap": PdpAuth.PAP, "chap": PdpAuth.CHAP}.get(
            settings.auth, PdpAuth.PAP_OR_CHAP
        ),
        context_id=settings.context_id,
        sim_pin=settings.sim_pin,
        registration_timeout=settings.registration_timeout,
        access_mode=AccessMode.BUFFER if settings.access_mode == "buffer" else AccessMode.PUSH,
        hex_send_max=(
            hex_send_default(settings.baudrate)
            if settings.hex_send_max is None
            else settings.hex_send_max
        ),
    )


def _quectel_link(settings: ModuleSettings) -> Link:
    quectel = _quectel_settings(settings)
    http = HttpSettings(
        context_id=settings.context_id,
        ca_file=settings.files_ca,
        piece_size=settings.piece_size,
        chunk=settings.chunk,
        scratch_drive=settings.scratch_drive,
    )
    ftp = FtpSettings(
        context_id=settings.context_id,
        ca_file=settings.files_ca,
        chunk=settings.chunk,
        scratch_drive=settings.scratch_drive,
    )
    return QuectelLink(settings.port, settings.baudrate, quectel, http, ftp)


async def _quectel_info(settings: ModuleSettings) -> list[tuple[str, str]]:
    quectel = _quectel_settings(settings)
    async with open_quectel(settings.port, settings.baudrate, quectel) as modem:
        info = await modem.bring_up()
    identity = info.identity
    return [
        ("module", f"{identity.manufacturer} {identity.model} on {settings.port}"),
        ("firmware", identity.revision),
        ("IMEI", identity.imei),
        ("SIM ICCID", identity.iccid or "unknown"),
        ("SIM IMSI", identity.imsi or "unknown"),
        ("registration", info.registration.describe()),
        ("signal", info.signal.describe()),
        ("PDP context", f"{quectel.context_id}, APN {quectel.apn!r}, address {info.ip_address}"),
    ]


def _quectel_channel(settings: ModuleSettings) -> AtChannel:
    quectel = _quectel_settings(settings)
    return quectel_channel(settings.port, settings.baudrate, quectel)


QUECTEL = Family(
    name="quectel",
    summary="Quectel cellular module (EC2x, EG9x, BG9x, EC200U)",
    describe=lambda s: f"Quectel module on {s.port} at {s.baudrate} baud, APN {s.apn!r}",
    link=_quectel_link,
    info=_quectel_info,
    channel=_quectel_channel,
    problems=lambda s: _refusals(lambda: _quectel_settings(s), "modem"),
    data_phase=(
        "AT+QISEND",
        "AT+QFUPL",
        "AT+QFWRITE",
        "AT+QHTTPURL",
        "AT+QHTTPPOST",
        "AT+QHTTPPUT",
        "AT+QSSLSEND",
        "AT+CMGS",
    ),
)


# --- TI SimpleLink -----------------------------------------------------------------------------


def _simplelink_settings(settings: ModuleSettings) -> SimpleLinkSettings:

    wifi = settings.wifi or WifiSettings(ssid=None, provisioning="stored")
    return SimpleLinkSettings(
        ssid=wifi.ssid,
        security=wifi.security,  # type: ignore[arg-type]  # checked by the config loader
        key=wifi.key or "",
        eap_method=wifi.eap_method or "",
        user=wifi.user or "",
        anonymous_user=wifi.anonymous_user or "",
        provisioning=wifi.provisioning,  # type: ignore[arg-type]
        join_timeout=wifi.join_timeout,
        files_ca_file=settings.files_ca,
        piece_size=settings.piece_size,
    )


def _simplelink_link(settings: ModuleSettings) -> Link:
    simplelink = _simplelink_settings(settings)
    return SimpleLinkLink(settings.port, settings.baudrate, simplelink)


async def _simplelink_info(settings: ModuleSettings) -> list[tuple[str, str]]:
    simplelink = _simplelink_settings(settings)
    return await describe_simplelink(settings.port, settings.baudrate, simplelink)


def _simplelink_channel(settings: ModuleSettings) -> AtChannel:
    simplelink = _simplelink_settings(settings)
    return simplelink_channel(settings.port, settings.baudrate, simplelink)


def _simplelink_describe(settings: ModuleSettings) -> str:
    wifi = settings.wifi
    network = (
        "the Wi-Fi network provisioned on the module"
        if wifi is None or wifi.ssid is None
        else f"Wi-Fi {wifi.ssid!r} ({wifi.security}, provisioning {wifi.provisioning})"
    )
    return f"TI SimpleLink Wi-Fi module on {settings.port} at {settings.baudrate} baud, {network}"


SIMPLELINK = Family(
    name="simplelink",
    summary="TI SimpleLink Wi-Fi network processor (CC3220, CC3235)",
    describe=_simplelink_describe,
    link=_simplelink_link,
    info=_simplelink_info,
    channel=_simplelink_channel,
    problems=lambda s: _refusals(lambda: _simplelink_settings(s), "wifi"),
    # Blocked commands end with a second result the console would take for noise (SPEC §2).
    transfer_protocols=("HTTP", "HTTPS"),  # no FTP commands in TI's AT application
    # AT+Recv, AT+RecvFrom and AT+Accept on a socket with nothing waiting block the module,
    # AT+Stop included, until data comes: the daemon asks AT+Select first; a console cannot.
    unbounded=("AT+RECV=", "AT+RECVFROM", "AT+ACCEPT"),
    blocked=(
        "AT+CONNECT",
        "AT+RECV",
        "AT+RECVFROM",
        "AT+SELECT",
        "AT+ACCEPT",
        "AT+NETAPPGETHOSTBYNAME",
        "AT+NETAPPPING",
    ),
)

FAMILIES: dict[str, Family] = {family.name: family for family in (QUECTEL, SIMPLELINK)}


def family(name: str) -> Family:
    """The family ``modem.type`` names; KeyError for one this build does not have."""
    return FAMILIES[name]
