"""TLS in the Quectel module for the CSMS connection (security profiles 2 and 3): the
certificates in its file system, its clock, and one SSL context (at-protocol.md §3.1, §4, §7,
§9.12-§9.13, cited as §n).

The module verifies the CSMS's certificate itself, so it needs the CA file in its own file
system and a clock it can trust: with ``ignorelocaltime`` 0 it checks validity dates against
its clock, which after power-on reads 1980 until the network's time (NITZ, ``AT+CTZU=1``) or
the host sets it (``AT+CCLK``). The driver checks the clock before every TLS open; when it is
not set, it asks the network (``AT+QLTS``), then takes the CSMS's time if a session gave one,
and only when neither is known opens with the dates unchecked, saying so in the log.

Certificates are uploaded with AT+QFUPL (whose checksum the file layer verifies) only when they
differ from what the module holds: beside each file the module keeps a small file with the
SHA-256 of its content, compared before anything is uploaded again. The private key's bytes
are never logged (the AT layer logs only the length of data it sends).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from transport.at import AtChannel
from transport.errors import AtCommandFailed, TransportError
from transport.modems.quectel_files import QuectelFiles
from transport.tls import TlsSettings

log = logging.getLogger(__name__)

CA_FILE = "UFS:csms-ca.pem"
CLIENT_CERT_FILE = "UFS:cp-cert.pem"
CLIENT_KEY_FILE = "UFS:cp-key.pem"
TLS_1_2 = 3  # AT+QSSLCFG="sslversion": 3 is TLS 1.2 (§3.1); the whitepaper forbids older ones
NEGOTIATE_TIME = 60  # s, AT+QSSLCFG="negotiatetime" (10-300; the default 300 is a long hang)
OLDEST_VALID_CLOCK = 2025  # a module clock before this year has not been set

_CCLK = re.compile(r'"?(?P<yy>\d\d)/(?P<mo>\d\d)/(?P<dd>\d\d),(?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)')
_QLTS = re.compile(
    r'"(?P<y>\d{4})/(?P<mo>\d\d)/(?P<dd>\d\d),(?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)[+-]\d+'
)


def _utc(year: int, match: re.Match[str]) -> datetime:
    """A UTC time from a match with month, day, hour, minute and second groups."""
    month, day, hour, minute, second = (int(match[g]) for g in ("mo", "dd", "h", "m", "s"))
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def _digest_name(name: str) -> str:
    return name.rpartition(".")[0] + ".sha"


class ModuleClock:
    """The module's real-time clock (AT+CCLK, AT+QLTS, AT+CTZU)."""

    def __init__(self, channel: AtChannel) -> None:
        self._at = channel

    async def follow_network(self) -> None:
        """Let the network's time (NITZ) set the clock whenever it is sent (AT+CTZU=1)."""
        response = await self._at.command("AT+CTZU=1", check=False)
        if not response.result.success:
            log.info("module does not take the network's time (AT+CTZU: %s)", response.result.text)

    async def now(self) -> datetime | None:
        """The module's time (UTC), or None when its clock has not been set."""
        response = await self._at.command("AT+CCLK?", expect=("+CCLK:",), check=False)
        values = response.values("+CCLK:")
        match = _CCLK.search(values[0]) if values and response.result.success else None
        if match is None:
            return None
        yy = int(match["yy"])
        # 27.007 §8.15: two-digit years; the power-on value is 80/01/06, i.e. 1980.
        when = _utc((1900 if yy >= 80 else 2000) + yy, match)
        return when if when.year >= OLDEST_VALID_CLOCK else None

    async def network_time(self) -> datetime | None:
        """The time the network last sent (AT+QLTS=1, UTC), if it sent any."""
        response = await self._at.command("AT+QLTS=1", expect=("+QLTS:",), check=False)
        values = response.values("+QLTS:")
        match = _QLTS.search(values[0]) if values and response.result.success else None
        return None if match is None else _utc(int(match["y"]), match)

    async def set(self, when: datetime) -> None:
        utc = when.astimezone(UTC)
        await self._at.command(f'AT+CCLK="{utc:%y/%m/%d,%H:%M:%S}+00"')

    async def ensure(self, fallback: Callable[[], datetime | None]) -> bool:
        """Whether the clock can be trusted for certificate dates, setting it first from the
        network or from ``fallback`` (the CSMS's time) when it is not."""
        if await self.now() is not None:
            return True
        when, source = await self.network_time(), "the network"
        if when is None:
            when, source = fallback(), "the CSMS"
        if when is None or when.year < OLDEST_VALID_CLOCK:
            return False
        try:
            await self.set(when)
        except AtCommandFailed as error:
            log.warning("could not set the module clock: %s", error)
            return False
        log.info("module clock set from %s's time: %s", source, f"{when:%Y-%m-%d %H:%M:%S}")
        return True


class QuectelTls:
    """One SSL context of the module, set up for the CSMS connection (§3.1)."""

    def __init__(self, channel: AtChannel, files: QuectelFiles, context_id: int = 2) -> None:
        self._at = channel
        self._files = files
        self.context_id = context_id
        self.clock = ModuleClock(channel)
        self._configured: tuple[TlsSettings, bool] | None = None
        self._warned_checkhost = False

    def forget(self) -> None:
        """The module restarted: its SSL contexts are back to their defaults."""
        self._configured = None

    async def prepare(
        self, settings: TlsSettings, csms_time: Callable[[], datetime | None]
    ) -> None:
        """Everything AT+QSSLOPEN on :attr:`context_id` needs: certificates on the module,
        the clock checked, the context configured. Cheap when nothing changed (one AT+CCLK?)."""
        if settings.ca_file is None:
            raise ValueError("TLS through the module needs the CSMS's CA file (csms.ca_file)")
        dated = await self.clock.ensure(csms_time)
        if self._configured == (settings, dated):
            return
        if not dated:
            log.warning(
                "the module clock is not set (no network time, no CSMS time yet): the CSMS "
                "certificate's validity dates are not checked until it is"
            )
        await self._install(CA_FILE, settings.ca_file)
        if settings.client_cert is not None and settings.client_key is not None:
            await self._install(CLIENT_CERT_FILE, settings.client_cert)
            await self._install(CLIENT_KEY_FILE, settings.client_key)
        else:
            for name in (CLIENT_CERT_FILE, CLIENT_KEY_FILE):
                await self._remove(name)
        await self._configure(settings, dated)
        self._configured = (settings, dated)

    async def _configure(self, settings: TlsSettings, dated: bool) -> None:
        ctx = self.context_id
        commands = [
            f'AT+QSSLCFG="sslversion",{ctx},{TLS_1_2}',
            f'AT+QSSLCFG="ciphersuite",{ctx},{settings.cipher_suite.upper()}',
            f'AT+QSSLCFG="cacert",{ctx},"{CA_FILE}"',
            f'AT+QSSLCFG="seclevel",{ctx},{2 if settings.mutual else 1}',
            f'AT+QSSLCFG="ignorelocaltime",{ctx},{0 if dated else 1}',
            f'AT+QSSLCFG="negotiatetime",{ctx},{NEGOTIATE_TIME}',
        ]
        if settings.mutual:
            commands += [
                f'AT+QSSLCFG="clientcert",{ctx},"{CLIENT_CERT_FILE}"',
                f'AT+QSSLCFG="clientkey",{ctx},"{CLIENT_KEY_FILE}"',
            ]
        for command in commands:
            await self._at.command(command)
        # Newer firmware: SNI (off by default, §9.12) and the host-name check of the CSMS's
        # certificate (whitepaper A00.FR.308). Older firmware answers ERROR to both.
        response = await self._at.command(f'AT+QSSLCFG="sni",{ctx},1', check=False)
        if not response.result.success:
            log.info("this module firmware has no SNI option: virtual-hosted CSMSs may fail")
        response = await self._at.command(f'AT+QSSLCFG="checkhost",{ctx},1', check=False)
        if not response.result.success and not self._warned_checkhost:
            self._warned_checkhost = True
            log.warning(
                "this module firmware cannot check the CSMS certificate's host name "
                '(AT+QSSLCFG="checkhost" answered %s): only its chain is verified',
                response.result.text,
            )

    async def _install(self, name: str, source: Path) -> None:
        """Make the module's ``name`` hold ``source``'s bytes, uploading only on a change."""
        data = source.read_bytes()  # noqa: ASYNC240 (a few KB of PEM from local storage)
        digest = hashlib.sha256(data).hexdigest().encode()
        if await self._files.size(name) == len(data):
            try:
                if await self._files.download(_digest_name(name)) == digest:
                    log.debug("%s on the module is current", name)
                    return
            except TransportError:
                pass  # no digest file (or an unreadable one): upload again
        await self._files.upload(name, data)
        await self._files.upload(_digest_name(name), digest)
        log.info("installed %s on the module (%d bytes, from %s)", name, len(data), source)

    async def _remove(self, name: str) -> None:
        if await self._files.size(name) is not None:
            await self._files.delete(name)
            await self._files.delete(_digest_name(name))
            log.info("removed %s from the module", name)


async def file_server_context(
    at: AtChannel,
    files: QuectelFiles,
    context_id: int,
    ca_file: Path | None,
    ca_name: str,
    *,
    ca_uploaded: bool,
    scheme: str,
) -> bool:
    """SSL context ``context_id`` for a file server (https://, ftps://): TLS 1.2 or later, any
    suite the module has, the server verified against ``ca_file`` (uploaded once as
    ``ca_name``) with SNI where the firmware has it, or not verified without a CA file (a
    warning says so). Returns whether the CA file is on the module now."""
    await at.command(f'AT+QSSLCFG="sslversion",{context_id},4')
    await at.command(f'AT+QSSLCFG="ciphersuite",{context_id},0XFFFF')
    if ca_file is None:
        log.warning("%s without a CA file: the server's certificate is not verified", scheme)
        await at.command(f'AT+QSSLCFG="seclevel",{context_id},0')
        return ca_uploaded
    if not ca_uploaded:
        await files.upload(ca_name, await asyncio.to_thread(ca_file.read_bytes))
    await at.command(f'AT+QSSLCFG="cacert",{context_id},"{ca_name}"')
    await at.command(f'AT+QSSLCFG="seclevel",{context_id},1')
    try:
        await at.command(f'AT+QSSLCFG="sni",{context_id},1')  # newer firmware (§3.1, §9.12)
    except AtCommandFailed:
        log.debug("this firmware has no SNI option")
    return True
