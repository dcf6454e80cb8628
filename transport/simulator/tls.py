"""TLS terminated in the simulated module, as AT+QSSLCFG configures it (at-protocol.md §3.1,
§3.2, §9.12, §9.13; cited as §n).

One reading of an SSL context serves both users, so that AT+QSSLOPEN and HTTPS (AT+QHTTP*)
agree: :func:`module_settings` takes the context's options and the files they name from the
module's storage (pure, on the module's side); :func:`client_context` turns them into an
``ssl`` context and :func:`check_peer` adds the checks OpenSSL cannot make the module's way
(dates against the module's clock, the host name without SNI); :class:`TlsStream` runs TLS over
a TCP connection the shell opened, plaintext above, records on the wire.

Every failure is a :class:`TlsFailure` whose message says exactly why, for the simulator's log,
and whose :class:`~transport.simulator.open_failure.FailureKind` says which check failed: a
Quectel module only ever says 566 (§3.2, [EG800K] bad CA → ``+QSSLOPEN: 4,566``), a SimpleLink
module a different SimpleLink error number for each (SPEC §5).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from transport.simulator.module_storage import FileError, ModuleStorage
from transport.simulator.open_failure import FailureKind

# AT+QSSLCFG="ciphersuite" ids (§3.1) and the GCM ids of newer firmware, as OpenSSL names. A
# suite restricts TLS 1.2 only; TLS 1.3 keeps its own suites.
CIPHER_SUITES = {
    "0X0035": "AES256-SHA",
    "0X002F": "AES128-SHA",
    "0X0005": "RC4-SHA",
    "0X0004": "RC4-MD5",
    "0X000A": "DES-CBC3-SHA",
    "0X003D": "AES256-SHA256",
    "0XC011": "ECDHE-RSA-RC4-SHA",
    "0XC012": "ECDHE-RSA-DES-CBC3-SHA",
    "0XC013": "ECDHE-RSA-AES128-SHA",
    "0XC014": "ECDHE-RSA-AES256-SHA",
    "0XC027": "ECDHE-RSA-AES128-SHA256",
    "0XC028": "ECDHE-RSA-AES256-SHA384",
    "0XC02F": "ECDHE-RSA-AES128-GCM-SHA256",
    "0XC02B": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "0XC02C": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "0XC030": "ECDHE-RSA-AES256-GCM-SHA384",
    "0X009C": "AES128-GCM-SHA256",
    "0X009D": "AES256-GCM-SHA384",
}
ALL_SUITES = "0XFFFF"
# "sslversion" 0-2 (SSL 3.0, TLS 1.0, TLS 1.1) are refused: this Python's OpenSSL will not
# speak them, so the open fails as it would against a server that does not either.
OLD_VERSIONS = {0: "SSL 3.0", 1: "TLS 1.0", 2: "TLS 1.1"}

# OpenSSL's X509_V_FLAG_NO_CHECK_TIME: the chain is verified without looking at any date.
# The module's dates are checked by check_peer against the module's clock instead.
NO_CHECK_TIME = 0x200000

# TLS record and handshake numbers seen through ssl's message hook (RFC 8446 §4, §5.1).
HANDSHAKE = 22
CERTIFICATE_REQUEST = 13
NEW_SESSION_TICKET = 4
READ_SIZE = 65536


def cipher_suite_id(text: str) -> str | None:
    """The canonical ``0X....`` form of a "ciphersuite" value (either case of the prefix and the
    digits), or None when the module does not know the suite."""
    upper = text.strip().upper()
    if upper == ALL_SUITES or upper in CIPHER_SUITES:
        return upper
    return None


class TlsFailure(Exception):
    """The TLS connection cannot be made; the message is the reason, for the simulator's log,
    ``kind`` the check that failed."""

    def __init__(self, message: str, kind: FailureKind = FailureKind.TLS_HANDSHAKE) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class ModuleFile:
    """A certificate or key file an SSL context names: ``name`` as configured ("" when not
    configured) and its content, None when the module's storage does not hold it."""

    name: str
    data: bytes | None


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """What one SSL context (AT+QSSLCFG, §3.1) says about one connection to ``host``."""

    host: str  # as given to AT+QSSLOPEN or in the URL: sent as SNI, checked by "checkhost"
    seclevel: int  # 0 no verification, 1 verify the server, 2 also present a client certificate
    version: int  # "sslversion": 3 TLS 1.2 only, 4 TLS 1.2 and 1.3
    cipher_suite: str  # canonical id, ALL_SUITES for the defaults
    cacert: ModuleFile
    clientcert: ModuleFile
    clientkey: ModuleFile
    sni: bool
    checkhost: bool
    module_time: float | None  # the module clock (UTC epoch) if dates are checked, else None
    negotiate_time: float  # "negotiatetime", seconds
    # An OpenSSL cipher list offered instead of ``cipher_suite`` (SimpleLink's SECURE_MASK).
    ciphers: str | None = None
    # A certificate outside its dates at the module clock does not stop the connection: it is
    # made, and the failure reported beside it (SimpleLink's -461 warning, SPEC §5).
    date_is_warning: bool = False


def module_settings(
    options: Mapping[str, str], storage: ModuleStorage, host: str, module_time: float
) -> TlsSettings:
    """The settings of one SSL context's ``options`` (AT+QSSLCFG values as strings), with the
    files they name read from ``storage`` now, as the module reads them when it connects."""

    def file(option: str) -> ModuleFile:
        name = options.get(option, "")
        if not name:
            return ModuleFile("", None)
        try:
            return ModuleFile(name, storage.read_file(name))
        except FileError:
            return ModuleFile(name, None)

    return TlsSettings(
        host=host,
        seclevel=int(options["seclevel"]),
        version=int(options["sslversion"]),
        cipher_suite=options["ciphersuite"],
        cacert=file("cacert"),
        clientcert=file("clientcert"),
        clientkey=file("clientkey"),
        sni=options.get("sni") == "1",
        checkhost=options.get("checkhost") == "1",
        module_time=None if options["ignorelocaltime"] == "1" else module_time,
        negotiate_time=float(options["negotiatetime"]),
    )


def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """An ``ssl`` client context doing what ``settings`` say, or :class:`TlsFailure` when the
    module could not even start the handshake (old version, unknown suite, missing CA file)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # The host name is checked by check_peer, because on the module "sni" and "checkhost" are
    # separate options and Python's check_hostname cannot go without SNI.
    context.check_hostname = False
    if settings.version in OLD_VERSIONS:
        raise TlsFailure(
            f'"sslversion" {settings.version} ({OLD_VERSIONS[settings.version]}) is not '
            "available in the simulator: use 3 (TLS 1.2) or 4 (all)"
        )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = (
        ssl.TLSVersion.TLSv1_2 if settings.version == 3 else ssl.TLSVersion.TLSv1_3
    )
    if settings.ciphers is not None:
        try:
            context.set_ciphers(settings.ciphers)
        except ssl.SSLError as error:
            raise TlsFailure(
                f"none of the cipher suites {settings.ciphers} is available in this OpenSSL: "
                f"{error}"
            ) from error
    elif settings.cipher_suite != ALL_SUITES:
        name = CIPHER_SUITES[settings.cipher_suite]
        try:
            context.set_ciphers(name)
        except ssl.SSLError as error:
            raise TlsFailure(
                f"cipher suite {settings.cipher_suite} ({name}) is not available in this "
                f"OpenSSL: {error}"
            ) from error
    if settings.seclevel == 0:
        context.verify_mode = ssl.CERT_NONE
        return context
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= NO_CHECK_TIME
    ca = settings.cacert
    if ca.data is None:
        raise TlsFailure(
            f'"seclevel" {settings.seclevel} verifies the server, but the "cacert" file '
            + (f"{ca.name!r} is not in the module's storage" if ca.name else "is not configured"),
            FailureKind.TLS_NO_CA_FILE,
        )
    try:
        context.load_verify_locations(cadata=ca.data.decode("latin-1"))
    except (ssl.SSLError, ValueError) as error:
        raise TlsFailure(
            f"the cacert file {ca.name!r} holds no usable certificate: {error}",
            FailureKind.TLS_BAD_CA_FILE,
        ) from error
    if settings.seclevel == 2:
        _load_client_certificate(context, settings)
    return context


def _load_client_certificate(context: ssl.SSLContext, settings: TlsSettings) -> None:
    cert, key = settings.clientcert, settings.clientkey
    for option, found, kind in (
        ("clientcert", cert, FailureKind.TLS_BAD_CLIENT_CERT),
        ("clientkey", key, FailureKind.TLS_BAD_CLIENT_KEY),
    ):
        if found.data is None:
            where = f"{found.name!r} is not in the module's storage" if found.name else "is unset"
            raise TlsFailure(
                f'"seclevel" 2 presents a client certificate, but "{option}" {where}', kind
            )
    assert cert.data is not None and key.data is not None
    # load_cert_chain takes paths only: the files live in a private directory for this call.
    with tempfile.TemporaryDirectory(prefix="sim-tls-") as directory:
        cert_path, key_path = Path(directory, "cert.pem"), Path(directory, "key.pem")
        cert_path.write_bytes(cert.data)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key.data)
        try:
            context.load_cert_chain(cert_path, key_path)
        except (ssl.SSLError, ValueError) as error:
            # Which file is at fault: a certificate file holds a PEM certificate at least.
            kind = (
                FailureKind.TLS_BAD_CLIENT_KEY
                if b"-----BEGIN CERTIFICATE-----" in cert.data
                else FailureKind.TLS_BAD_CLIENT_CERT
            )
            raise TlsFailure(
                f"client certificate {cert.name!r} with key {key.name!r} unusable: {error}", kind
            ) from error


def check_peer(connection: ssl.SSLObject, settings: TlsSettings) -> None:
    """After the handshake: the server certificate's dates against the module's clock
    ("ignorelocaltime" 0, §9.13) and its name against the host ("checkhost"). With "seclevel" 0
    nothing is verified, so nothing is checked."""
    if settings.seclevel == 0:
        return
    peer = connection.getpeercert()
    if not peer:
        raise TlsFailure("the server sent no certificate")
    if settings.date_is_warning:
        # A warning is reported only for a connection that passed every other check.
        _check_host(peer, settings)
        _check_dates(peer, settings)
    else:
        _check_dates(peer, settings)
        _check_host(peer, settings)


def _check_dates(peer: Mapping[str, object], settings: TlsSettings) -> None:
    if settings.module_time is not None:
        start = ssl.cert_time_to_seconds(str(peer["notBefore"]))
        end = ssl.cert_time_to_seconds(str(peer["notAfter"]))
        if not start <= settings.module_time <= end:
            raise TlsFailure(
                f"the server certificate is valid from {peer['notBefore']} to {peer['notAfter']},"
                f" and the module clock says {_utc(settings.module_time)} "
                '("ignorelocaltime" 0)',
                FailureKind.TLS_DATE,
            )


def _check_host(peer: Mapping[str, object], settings: TlsSettings) -> None:
    if settings.checkhost and not _names_host(peer, settings.host):
        raise TlsFailure(
            f"the server certificate does not name {settings.host!r} "
            f'("checkhost" 1): it names {_names(peer)}',
            FailureKind.TLS_HOSTNAME,
        )


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _names(peer: Mapping[str, object]) -> list[str]:
    found: list[str] = []
    alt = peer.get("subjectAltName", ())
    if isinstance(alt, tuple):
        found += [str(value) for kind, value in alt if kind in ("DNS", "IP Address")]
    if not found:
        for rdn in peer.get("subject", ()):  # type: ignore[attr-defined]
            found += [str(value) for key, value in rdn if key == "commonName"]
    return found


def _names_host(peer: Mapping[str, object], host: str) -> bool:
    """RFC 6125 matching: an IP address against the IP entries, a name against the DNS ones
    (one leftmost ``*`` label), the common name only when the certificate has no such entry."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    alt = peer.get("subjectAltName", ())
    entries = [(str(kind), str(value)) for kind, value in alt] if isinstance(alt, tuple) else []
    if address is not None:
        for kind, value in entries:
            if kind == "IP Address":
                try:
                    if ipaddress.ip_address(value.strip()) == address:
                        return True
                except ValueError:
                    continue
        return False
    dns = [value for kind, value in entries if kind == "DNS"]
    if not dns:
        dns = _names(peer)
    return any(_dns_match(pattern, host) for pattern in dns)


def _dns_match(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        first, _, rest = host.partition(".")
        return bool(first) and rest == pattern[2:]
    return pattern == host


class TlsStream:
    """TLS over a TCP connection (``reader``/``writer``), as the module runs it: the host's
    plaintext goes in with :meth:`write` and comes out of :meth:`read`; only records travel."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, settings: TlsSettings
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._settings = settings
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._certificate_requested = False
        self._ticket = False
        self._early = bytearray()  # plaintext that came while waiting for the server's verdict
        self.close_notify_received = False  # the server ended TLS in order (not just TCP)
        context = client_context(settings)
        _watch_messages(context, self._on_message)
        self._tls = context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_hostname=settings.host if settings.sni else None,
        )

    def _on_message(self, direction: str, content_type: int, message_type: int) -> None:
        if direction == "read" and content_type == HANDSHAKE:
            if message_type == CERTIFICATE_REQUEST:
                self._certificate_requested = True
            elif message_type == NEW_SESSION_TICKET:
                self._ticket = True

    async def handshake(self) -> None:
        """The handshake and :func:`check_peer`; :class:`TlsFailure` if either fails."""
        try:
            while True:
                try:
                    self._tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self._flush()
                    if not await self._fill():
                        raise TlsFailure(
                            "the server closed the connection during the handshake: it "
                            "refused what was offered (version, suites or certificate)"
                        ) from None
        except ssl.SSLCertVerificationError as error:
            raise TlsFailure(f"handshake failed: {error}", FailureKind.TLS_UNKNOWN_CA) from error
        except ssl.SSLError as error:
            raise TlsFailure(f"handshake failed: {error}") from error
        finally:
            self._flush()
        check_peer(self._tls, self._settings)

    @property
    def verdict_pending(self) -> bool:
        """TLS 1.3 and the server asked for a certificate: the client's handshake ended before
        the server judged the certificate (or its absence), RFC 8446 §4.4.2, so the open is
        not known to have succeeded until the server's next record (:meth:`await_verdict`)."""
        return self._certificate_requested and self._tls.version() == "TLSv1.3"

    async def await_verdict(self) -> None:
        """Until the server accepts (session ticket or data) or refuses (alert, close): a
        refusal is a :class:`TlsFailure`, as a TLS 1.2 module would see it in the handshake."""
        while not self._ticket_received():
            try:
                data = self._tls.read(READ_SIZE)
            except ssl.SSLWantReadError:
                self._flush()
                if self._ticket_received():
                    return
                if not await self._fill():
                    raise TlsFailure(
                        "the server asked for a client certificate and closed the connection "
                        "after the handshake: it refused the certificate (or its absence)"
                    ) from None
                continue
            except ssl.SSLError as error:
                raise TlsFailure(
                    f"the server asked for a client certificate and refused it: {error}"
                ) from error
            if data:
                self._early += data
                return

    def _ticket_received(self) -> bool:
        return self._ticket  # set by the message hook while ssl reads

    async def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of plaintext; b"" when the server has closed."""
        if self._early:
            data = bytes(self._early[:size])
            del self._early[:size]
            return data
        while True:
            try:
                data = self._tls.read(size)
            except ssl.SSLWantReadError:
                self._flush()
                if not await self._fill():
                    return b""  # the TCP connection ended without close_notify
                continue
            except ssl.SSLZeroReturnError:
                self.close_notify_received = True
                return b""  # close_notify
            self._flush()  # a TLS 1.3 KeyUpdate may want an answer
            return data

    def write(self, data: bytes) -> None:
        self._tls.write(data)
        self._flush()

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        """close_notify, then FIN (AT+QSSLCLOSE)."""
        # SSLWantReadError: the server's close_notify is not awaited.
        with contextlib.suppress(ssl.SSLError):
            self._tls.unwrap()
        self._flush()
        self._writer.close()

    def abort(self) -> None:
        self._writer.transport.abort()

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending and not self._writer.is_closing():
            self._writer.write(pending)

    async def _fill(self) -> bool:
        data = await self._reader.read(READ_SIZE)
        if not data:
            self._incoming.write_eof()
            return False
        self._incoming.write(data)
        return True


def _watch_messages(context: ssl.SSLContext, seen: Callable[[str, int, int], None]) -> None:
    """Tell ``seen`` (direction, content type, message type) of every TLS message. ssl's
    debugging hook (CPython 3.8+) is the only way to see a TLS 1.3 CertificateRequest, which
    travels encrypted."""

    def callback(
        _conn: object,
        direction: str,
        _version: object,
        content_type: int,
        message_type: int,
        _data: bytes,
    ) -> None:
        seen(direction, int(content_type), int(message_type))

    setattr(context, "_msg_callback", callback)  # noqa: B010 (not in typeshed)
