"""TLS in the SimpleLink module for the CSMS connection (security profiles 2 and 3): the
certificates in its file system, its clock, and the options of a SEC socket ([guide] Tables 11,
12 and 21; SPEC §3, §5 and §6).

The network processor verifies the CSMS's certificate itself: against the CA file named by
SECURE_FILES_CA_FILE_NAME, for the host name given in SECURE_DOMAIN_NAME_VERIFICATION
(whitepaper A00.FR.308), with dates checked against the module clock, which reads 2013 after
power-on (SPEC §3). Before each TLS open the clock is set from the CSMS's time when a session
gave one, else from the controller's clock when it reads a plausible year (Wi-Fi has no network
time); a certificate date error (-461) then refuses the CSMS (whitepaper A00.FR.310). Only
when neither time is known is -461 let through with a log line, as the Quectel driver opens
with dates unchecked then.

A controller clock can be plausible and wrong: a charger switched off for a season boots with
systemd's saved shutdown time, and a CSMS certificate renewed meanwhile is "not yet valid" at
it; Wi-Fi gives no other time. So a date warning under the controller's clock is put to the
CSMS itself: the module keeps such a connection up (SPEC §5), with the CA signature and the host
name verified, and the CSMS's HTTP ``Date`` header (RFC 9110 §6.6.1) over it says what time it
is. If the CSMS's clock agrees with the controller's, the certificate really is outside its
dates and is refused (whitepaper A00.FR.310) before anything else is sent; if not, the
controller's clock is wrong, the module clock is set from the CSMS's and the connection opened
again with the dates checked. No WebSocket or OCPP ever runs over a certificate whose dates
were not checked at a right clock.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from transport.at import AtChannel
from transport.errors import AtCommandFailed, StreamClosed, TlsSetupFailed
from transport.modems.simplelink_files import (
    CLIENT_CERT_FILE,
    CLIENT_KEY_FILE,
    CSMS_CA_FILE,
    SimpleLinkFiles,
)
from transport.modems.simplelink_protocol import quote, ti_cipher, values
from transport.stream import ByteStream
from transport.tls import TlsSettings

log = logging.getLogger(__name__)

OLDEST_VALID_CLOCK = 2025  # a module clock before this year has not been set
CLOCK_AGREES = timedelta(minutes=5)  # the CSMS's Date and the controller's clock agree
DATE_QUESTION_TIMEOUT = 10.0  # s for the CSMS to answer the HEAD request
MAX_HEAD = 16 * 1024
_DIGITS = re.compile(r"\d+")
_DATE = re.compile(rb"^date:[ \t]*(.+?)[ \t]*$", re.IGNORECASE | re.MULTILINE)


class ClockTrust:
    """Which time set the module clock last, and how far the controller's clock is off when a
    CSMS's Date header showed it. A link keeps one across channels."""

    def __init__(self) -> None:
        self.source: str | None = None  # "the CSMS", "the controller", ...; None: not set
        self.correction: timedelta | None = None  # CSMS's Date minus the controller's clock


class ModuleClock:
    """The network processor's clock (AT+Get/AT+Set=General,Time, [guide] Tables 11-12)."""

    def __init__(self, channel: AtChannel, trust: ClockTrust | None = None) -> None:
        self._at = channel
        self.trust = trust or ClockTrust()

    async def now(self) -> datetime | None:
        """The module's time (taken as UTC), or None when it has not been set."""
        response = await self._at.command("AT+Get=General,Time", expect=("+get:",), check=False)
        found = response.values("+get:") if response.result.success else []
        fields = values(found[0]) if found else []
        if len(fields) < 6 or not all(_DIGITS.fullmatch(f) for f in fields[:6]):
            return None
        hour, minute, second, day, month, year = (int(f) for f in fields[:6])
        try:
            when = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:
            return None
        return when if when.year >= OLDEST_VALID_CLOCK else None

    async def set(self, when: datetime) -> None:
        utc = when.astimezone(UTC)
        await self._at.command(
            f"AT+Set=General,Time,{utc.hour},{utc.minute},{utc.second},"
            f"{utc.day},{utc.month},{utc.year}"
        )

    async def ensure(
        self,
        csms_time: Callable[[], datetime | None],
        host_time: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> bool:
        """Set the clock from the CSMS's time when it is known, else from the controller's own
        clock when that is plausible (a Wi-Fi network gives no time, unlike a cell's NITZ);
        whether the clock can be trusted for certificate dates."""
        controller = host_time()
        corrected = None if self.trust.correction is None else controller + self.trust.correction
        for source, when in (
            ("the CSMS", csms_time()),
            ("the CSMS's Date header", corrected),
            ("the controller", controller),
        ):
            if when is None or when.year < OLDEST_VALID_CLOCK:
                continue
            try:
                await self.set(when)
            except AtCommandFailed as error:
                log.warning("could not set the module clock: %s", error)
                break
            if self.trust.source != source:
                log.info("module clock set from %s: %s", source, f"{when:%Y-%m-%d %H:%M:%S}")
            self.trust.source = source
            return True
        self.trust.source = None
        return await self.now() is not None


class SimpleLinkTls:
    """Everything a SEC socket to the CSMS needs from the module."""

    def __init__(
        self, channel: AtChannel, files: SimpleLinkFiles, trust: ClockTrust | None = None
    ) -> None:
        self._files = files
        self.clock = ModuleClock(channel, trust)
        self.host_time: Callable[[], datetime] = lambda: datetime.now(UTC)  # the controller's

    async def prepare(
        self, settings: TlsSettings, csms_time: Callable[[], datetime | None]
    ) -> bool:
        """Certificates on the module, the clock set when it can be; whether dates are checked.
        Cheap when nothing changed (the clock command only)."""
        if settings.ca_file is None:
            raise TlsSetupFailed("TLS through the module needs the CSMS's CA file (csms.ca_file)")
        cipher_name(settings)  # refused before anything is written
        try:
            ca = await asyncio.to_thread(settings.ca_file.read_bytes)
            client = None
            if settings.client_cert is not None and settings.client_key is not None:
                client = (
                    await asyncio.to_thread(settings.client_cert.read_bytes),
                    await asyncio.to_thread(settings.client_key.read_bytes),
                )
        except OSError as error:
            raise TlsSetupFailed(f"the TLS files cannot be read: {error}") from error
        await self._files.install(CSMS_CA_FILE, ca)
        if client is not None:
            await self._files.install(CLIENT_CERT_FILE, client[0])
            await self._files.install(CLIENT_KEY_FILE, client[1], secret=True)
        dated = await self.clock.ensure(csms_time, self.host_time)
        if not dated:
            log.warning(
                "the module clock is not set (no CSMS time yet, and the controller's clock "
                "reads before %d): a certificate date warning is let through until it is",
                OLDEST_VALID_CLOCK,
            )
        return dated


def cipher_name(settings: TlsSettings) -> str:
    """TI's SECURE_MASK name of the configured suite, or a clear :class:`TlsSetupFailed`."""
    name = ti_cipher(settings.cipher_suite)
    if name is None:
        raise TlsSetupFailed(
            f"cipher suite {settings.cipher_suite} is not one the SimpleLink module offers "
            "(AT+SetSockOpt SECURE_MASK): choose an AES-GCM suite of csms.cipher_suite"
        )
    return name


def socket_options(sd: int, settings: TlsSettings, host: str) -> list[str]:
    """The AT+SetSockOpt commands of a SEC socket to ``host`` ([guide] Table 21): TLS 1.2 only
    (whitepaper A00.FR.312), the configured suite, the CA file, the host name the certificate
    must carry, and for security profile 3 the charge point's certificate and key."""
    prefix = f"AT+SetSockOpt={sd},SOCKET,"
    options = [
        f"{prefix}SECMETHOD,TLSV1_2",
        f"{prefix}SECURE_MASK,{cipher_name(settings)}",
        f"{prefix}SECURE_FILES_CA_FILE_NAME,{CSMS_CA_FILE}",
        f"{prefix}SECURE_DOMAIN_NAME_VERIFICATION,{quote(host)}",
    ]
    if settings.mutual:
        options += [
            f"{prefix}SECURE_FILES_CERTIFICATE_FILE_NAME,{CLIENT_CERT_FILE}",
            f"{prefix}SECURE_FILES_PRIVATE_KEY_FILE_NAME,{CLIENT_KEY_FILE}",
        ]
    return options


async def server_date(stream: ByteStream, host: str) -> datetime | None:
    """The CSMS's own time: the ``Date`` header of its answer to a HEAD request on ``stream``
    (which is closed afterwards, whatever happens); None if it gives none in time."""
    head = b""
    try:
        await stream.write(f"HEAD / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        async with asyncio.timeout(DATE_QUESTION_TIMEOUT):
            while b"\r\n\r\n" not in head and len(head) < MAX_HEAD:
                head += await stream.read(MAX_HEAD)
    except (StreamClosed, TimeoutError):
        pass
    finally:
        await stream.close()
    found = _DATE.search(head.partition(b"\r\n\r\n")[0].replace(b"\r\n", b"\n"))
    if found is None:
        return None
    try:
        when = parsedate_to_datetime(found.group(1).decode("latin-1"))
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
