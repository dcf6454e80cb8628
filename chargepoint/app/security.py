"""Security profiles (OCPP 1.6 security whitepaper §2; use cases A01 and A05): which endpoint
and which credentials the next connection uses, and raising the profile without ever losing
the CSMS.

* The profile in use is the ``SecurityProfile`` configuration key. It starts as the
  configuration file's ``csms.security_profile``; the CSMS may raise it with
  ChangeConfiguration, never lower it (A05.FR.01, A00.FR.005). The prerequisites of A05.FR.02-04
  are checked before Accepted, and a profile without an endpoint is Rejected as well.
* A raised profile takes effect by reconnecting. If ``csms.upgrade_attempts`` connections in a
  row fail with it (TLS refused, HTTP 401, the port closed), the charge point falls back to the
  last profile a connection succeeded with (A05.FR.08) and says so in the log.
* The file wins over what the CSMS set only when the installer changed the file's profile:
  lowering a profile is done on the charge point, not over OCPP (A00.FR.005).
* The Basic-auth password (profiles 1 and 2) is the AuthorizationKey the CSMS set, else the
  file's ``csms.password``; profile 3 authenticates with the charge point certificate.
* The certificates come from the certificate store (:mod:`chargepoint.certificate_store`):
  the CSMS roots of the file plus those the CSMS installed (M05), and the newest charge point
  certificate (A02.FR.08/09). A new charge point certificate that fails ``csms.upgrade_attempts``
  connections in a row is suspended for the one before it; if that one connects, the new one
  is dropped with an InvalidChargePointCertificate security event (A02.FR.10 keeps the old
  one as fallback), and if it fails as often, the new one is tried again.
* Changes of the profile or the AuthorizationKey are security events
  (ReconfigurationOfSecurityParameters, whitepaper §8).
"""

from __future__ import annotations

import logging
import sqlite3
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from chargepoint.blocks.security_events import SecurityEvent, SecurityEventSink
from chargepoint.certificate_store import CertificateStore, Fallback
from config.loader import Config
from config.ocpp_keys import AUTHORIZATION_KEY, SECURITY_PROFILE, ConfigurationKeys
from transport.tls import TlsSettings

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS security_profile (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    proven      INTEGER NOT NULL,  -- the last profile a connection succeeded with
    configured  INTEGER NOT NULL   -- csms.security_profile of the file when this was written
);
"""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how the next connection goes."""

    profile: int
    url: str
    password: bytes | None = field(repr=False)
    tls: TlsSettings | None


class SecurityProfiles:
    def __init__(self, config: Config, db: sqlite3.Connection, store: CertificateStore) -> None:
        self._csms = config.csms
        self._store = store
        self._events: SecurityEventSink | None = None
        self._client_failures = 0
        self._suspended_why = ""  # the last failure of a suspended new certificate
        self._host_link = config.modem.type == "host"
        self._db = db
        self._keys: ConfigurationKeys | None = None
        self._failures = 0
        self._previous_key: str | None = None  # before an AuthorizationKey change not yet proven
        self._key_now = ""
        self._auth_failures = 0
        db.executescript(SCHEMA)
        configured = self._csms.security_profile
        row = db.execute("SELECT proven, configured FROM security_profile").fetchone()
        if row is None or row[1] != configured:
            if row is not None:
                log.warning(
                    "csms.security_profile changed in the configuration file (%d → %d): it "
                    "replaces the profile the CSMS set",
                    row[1],
                    configured,
                )
            # Before the keys are read: the file's profile is the key's value from now on.
            db.execute("DELETE FROM configuration WHERE key = ?", (SECURITY_PROFILE,))
            self._save(configured)
        else:
            self.proven = int(row[0])

    def bind(self, keys: ConfigurationKeys) -> None:
        self._keys = keys
        self._key_now = keys.get(AUTHORIZATION_KEY)
        keys.subscribe(self._on_key)

    def report_to(self, events: SecurityEventSink) -> None:
        self._events = events

    def _record(self, event: SecurityEvent, tech_info: str) -> None:
        if self._events is not None:
            self._events(event, tech_info)

    def _on_key(self, name: str, value: str) -> None:
        if name == AUTHORIZATION_KEY:
            if self._previous_key is None:
                self._previous_key = self._key_now  # until a connection proves the new one
            self._key_now = value
            self._record(SecurityEvent.RECONFIGURATION_OF_SECURITY_PARAMETERS, "AuthorizationKey")
        elif name == SECURITY_PROFILE:
            self._record(
                SecurityEvent.RECONFIGURATION_OF_SECURITY_PARAMETERS, f"SecurityProfile {value}"
            )

    @property
    def keys(self) -> ConfigurationKeys:
        assert self._keys is not None, "bind() the configuration keys first"
        return self._keys

    @property
    def active(self) -> int:
        return self.keys.integer(SECURITY_PROFILE)

    @property
    def upgrading(self) -> bool:
        """A profile the CSMS raised is being tried and has not worked yet."""
        return self.active != self.proven

    def password(self) -> bytes | None:
        """The Basic-auth password: the AuthorizationKey the CSMS set, else the file's."""
        key = self.keys.get(AUTHORIZATION_KEY)
        return bytes.fromhex(key) if key else self._csms.password

    def endpoint(self) -> Endpoint:
        profile = self.active
        url = self._csms.url_for(profile)
        if url is None:  # only a bug could get here: a profile is accepted with a URL
            log.error("no endpoint for security profile %d: using csms.url", profile)
            url = self._csms.url
        csms = self._csms
        tls = None
        if profile >= 2:
            client = self._store.client_files() if profile == 3 else None
            tls = TlsSettings(
                ca_file=self._store.csms_roots_file(),
                client_cert=client[0] if client else None,
                client_key=client[1] if client else None,
                cipher_suite=csms.cipher_suite,
            )
        password = self.password() if profile in (1, 2) else None
        return Endpoint(profile, url, password, tls)

    def check(self, value: str) -> str | None:
        """Why ChangeConfiguration(SecurityProfile) must be Rejected, or None (A05.FR.01-05)."""
        new, current, csms = int(value), self.active, self._csms
        if new <= current:
            return f"not above the profile in use ({current}): a profile is only raised"
        password = self.password()
        if new in (1, 2) and (password is None or not 16 <= len(password) <= 20):
            return "no AuthorizationKey of 16 to 20 bytes to authenticate with (A05.FR.02)"
        if new == 1 and 1 not in dict(csms.upgrade_urls):
            # The password would travel in clear: only where the installer said so.
            return "profile 1 (a password over ws://) needs csms.upgrade_urls.1"
        roots = self._store.csms_roots_file()
        if new >= 2 and roots is None and not self._host_link:
            return (
                "no CSMS root certificate installed (csms.ca_file or InstallCertificate, A05.FR.03)"
            )
        client = self._store.client_files() if new == 3 else None
        if new == 3 and client is None:
            return (
                "no charge point certificate installed (csms.client_certificate or "
                "SignCertificate, A05.FR.04)"
            )
        if csms.url_for(new) is None:
            return f"no endpoint for profile {new} (csms.upgrade_urls.{new})"
        return _unusable_files(roots, *(client or (None, None)))

    def connected(self) -> None:
        """A connection with the active profile succeeded: it is the one to fall back to."""
        self._failures = 0
        self._auth_failures = 0
        self._client_failures = 0
        if self.active == 3 and self._store.client_proven() is Fallback.DROPPED:
            # The previous certificate works where the new one kept failing: the CSMS
            # refused the new one (A02.FR.10), now known rather than guessed.
            log.error(
                "the CSMS refused the new charge point certificate (last failure: %s): back "
                "to the previous one, which works",
                self._suspended_why,
            )
            self._record(
                SecurityEvent.INVALID_CHARGE_POINT_CERTIFICATE,
                f"the CSMS refused the new certificate: {self._suspended_why}",
            )
        self._previous_key = None  # the new AuthorizationKey, if any, works
        if self.active != self.proven:
            log.warning(
                "connected with security profile %d (raised by the CSMS from %d)",
                self.active,
                self.proven,
            )
            self._save(self.active)

    def failed(self, why: str, *, unauthorized: bool = False, handshake: bool = False) -> None:
        """A connection attempt failed (``unauthorized``: HTTP 401; ``handshake``: the TLS
        handshake, where the CSMS may have refused the charge point certificate)."""
        if unauthorized and self._previous_key is not None:
            self._unproven_key_refused(why)
        if self.active == 3 and (handshake or unauthorized):
            self._client_certificate_refused(why)
        active = self.active
        if active == self.proven:
            return
        self._failures += 1
        attempts = self._csms.upgrade_attempts
        if self._failures < attempts:
            log.warning(
                "security profile %d: attempt %d of %d failed: %s",
                active,
                self._failures,
                attempts,
                why,
            )
            return
        log.error(
            "security profile %d failed %d times (last: %s): back to profile %d, the last "
            "one that worked (security whitepaper A05.FR.08)",
            active,
            self._failures,
            why,
            self.proven,
        )
        self._failures = 0
        self.keys.store(SECURITY_PROFILE, str(self.proven))

    def _client_certificate_refused(self, why: str) -> None:
        # A02.FR.10, review M1: a failed handshake does not say whether the CSMS refused the
        # new certificate or was simply down (a module reports "failed"). After
        # csms.upgrade_attempts failures the new certificate is suspended and the previous
        # one tried: if that one connects, the new one was the cause (connected() drops it);
        # if it fails as often, the fault is elsewhere and the new one is tried again. Every
        # attempt goes through the daemon's reconnect backoff.
        self._client_failures += 1
        if self._client_failures < self._csms.upgrade_attempts:
            return
        self._client_failures = 0
        outcome = self._store.client_failed()
        if outcome is Fallback.SUSPENDED:
            self._suspended_why = why
            log.warning(
                "the new charge point certificate failed %d connections (last: %s): the "
                "previous one is tried, to tell a refused certificate from a CSMS that is down",
                self._csms.upgrade_attempts,
                why,
            )
        elif outcome is Fallback.RESTORED:
            log.warning(
                "the previous charge point certificate failed %d connections as well (last: "
                "%s): the fault is not the new certificate, which is tried again",
                self._csms.upgrade_attempts,
                why,
            )

    def _unproven_key_refused(self, why: str) -> None:
        # A01.FR.04: a CSMS that never saw our Accepted (the answer was lost) keeps the old
        # password. Rather than be locked out for good, go back to the one that worked.
        self._auth_failures += 1
        if self._auth_failures < self._csms.upgrade_attempts:
            return
        previous, self._previous_key = self._previous_key, None
        self._auth_failures = 0
        log.error(
            "the CSMS refuses the new AuthorizationKey %d times (last: %s): back to the "
            "previous password, which worked",
            self._csms.upgrade_attempts,
            why,
        )
        self.keys.store(AUTHORIZATION_KEY, previous or "")
        self._previous_key = None  # the listener saw our own change

    def _save(self, proven: int) -> None:
        self.proven = proven
        self._db.execute(
            "INSERT INTO security_profile (id, proven, configured) VALUES (1, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET proven = excluded.proven, "
            "configured = excluded.configured",
            (proven, self._csms.security_profile),
        )


def _unusable_files(ca: Path | None, cert: Path | None, key: Path | None) -> str | None:
    """Why the CA, certificate or key cannot be used (A05.FR.03/04: a valid one installed)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if ca is not None:
            context.load_verify_locations(str(ca))
        if cert is not None and key is not None:
            context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as error:
        return f"the TLS files cannot be used: {error}"
    return None
