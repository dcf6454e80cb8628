"""The charge point's certificates on disk (OCPP 1.6 security whitepaper A02/A03, M03-M05):
the root certificates it trusts and its own client certificate with its private key.

Where things are:

* metadata and the root certificates' PEM in the state database (tables below), so a change
  is one SQLite transaction: after a power cut it happened entirely or not at all;
* files in ``directory`` (mode 0700): the charge point's private keys (``client-<digest>.key``,
  mode 0600, written to a temporary file created 0600 by ``os.open``, fsynced, renamed), its
  certificate chains (``client-<digest>.pem``) and one bundle of the CSMS roots
  (``csms-roots-<digest>.pem``). Names are content-addressed: a change of content is a change
  of path, which is how the module drivers know to upload the file again. A file is written
  before the row that names it and removed after the row that named it is gone, so the
  certificate that worked is never lost half-way.

Roots: the configuration file's roots (``csms.ca_file``, ``firmware.manufacturer_ca_file``; a
file may hold several) count as installed: GetInstalledCertificateIds lists them and
DeleteCertificate may delete them, like the ones InstallCertificate added; a deleted factory
root is remembered so that the next start does not bring it back from the file. The limit
(``max_roots``, CertificateStoreMaxLength) counts the roots of both types.

The charge point certificate's life (A02.FR.08-10)::

    store_pending_key(key)   the key of a CSR just sent (the last MAX_PENDING stay)  (pending)
    accept_chain(...)        CertificateSigned for one of them passed A02.FR.06
                                                                         (pending → candidate)
    client_files()           the candidate once its notBefore has come, else the current
                             certificate, else the factory one from the configuration
    client_proven()          a connection with client_files() worked     (candidate → current,
                                                                          current → previous)
    client_failed()          connections with the candidate keep failing: it is suspended
                             (candidate → suspended) and client_files() gives the one before;
                             if that one fails too, the candidate is restored (→ candidate)
    client_proven()          with a suspended candidate: the one before works, so the
                             candidate was the cause and is dropped

One candidate at a time: a newer accepted chain replaces one not yet proven (A02.FR.09). The
previous certificate is kept as the fallback the whitepaper recommends (A02.FR.10) until the
next one is proven.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import logging
import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from chargepoint.model.certificates import (
    DEFAULT_HASH_ALGORITHM,
    MAX_CHAIN_SIZE,
    CertificateProblem,
    HashData,
    PrivateKey,
    certificate_pem,
    check_root,
    check_signed_chain,
    describe,
    find_issuer,
    fingerprint,
    hash_data,
    load_pem_certificate,
    load_pem_chain,
    load_private_key,
    private_key_pem,
    public_key_digest,
    same_key,
)

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS root_certificates (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    use         TEXT NOT NULL,      -- CentralSystemRootCertificate | ManufacturerRootCertificate
    fingerprint TEXT NOT NULL,      -- SHA-256 of the DER
    pem         TEXT NOT NULL,
    factory     INTEGER NOT NULL,   -- 1: from the configuration file
    deleted     INTEGER NOT NULL DEFAULT 0,  -- a factory root the CSMS deleted (M04)
    UNIQUE (use, fingerprint)
);
CREATE TABLE IF NOT EXISTS client_certificates (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    state       TEXT NOT NULL,      -- pending | candidate | suspended | current | previous
    key_file    TEXT NOT NULL,      -- a name in the certificates directory
    cert_file   TEXT,               -- the chain, once signed
    not_before  TEXT,               -- ISO 8601 UTC, the leaf's
    not_after   TEXT,
    since       TEXT NOT NULL       -- when it entered its state
);
"""
# Columns added after the first release: (name, declaration), added to an older database.
CLIENT_COLUMNS = (
    ("csr_organization", "TEXT"),  # the CSR's subject O (CpoName then) and CN, which the
    ("csr_common_name", "TEXT"),  # leaf must carry (A02.FR.06, A02.FR.13)
)

KEY_MODE = 0o600
CERT_MODE = 0o644
DIRECTORY_MODE = 0o700
DIGEST_LENGTH = 16  # hex characters of SHA-256 in a file name
# The store's own file names (content-addressed); nothing else in the directory is touched.
_HEX = rf"[0-9a-f]{{{DIGEST_LENGTH}}}"
_CLIENT = re.compile(rf"client-{_HEX}\.(?:key|pem)")
_OWN = re.compile(rf"client-{_HEX}\.(?:key|pem)|csms-roots-{_HEX}\.pem")
_TEMPORARY = re.compile(r"\.(.+)\.tmp")  # _write_once's
MAX_PENDING = 3  # CSRs whose certificate may still come (review H2: a slow CA)


class RootType(enum.StrEnum):
    """CertificateUseEnumType (whitepaper §6)."""

    CSMS = "CentralSystemRootCertificate"
    MANUFACTURER = "ManufacturerRootCertificate"


class Installed(enum.Enum):
    ADDED = "added"
    ALREADY_INSTALLED = "already installed"  # M05: Accepted, and no second copy


class Deletion(enum.StrEnum):
    """DeleteCertificateStatusEnumType."""

    ACCEPTED = "Accepted"
    FAILED = "Failed"
    NOT_FOUND = "NotFound"


class Fallback(enum.Enum):
    """What a connection's outcome did to a new charge point certificate (review M1)."""

    NONE = "none"
    SUSPENDED = "suspended"  # the candidate failed: the one before it is tried
    RESTORED = "restored"  # the one before failed too: the candidate is tried again
    DROPPED = "dropped"  # the one before works: the candidate was the cause


class StoreFull(Exception):
    """CertificateStoreMaxLength roots are installed already (M05.FR.03)."""


@dataclass(frozen=True, slots=True)
class InstalledRoot:
    use: RootType
    certificate: x509.Certificate
    factory: bool


@dataclass(frozen=True, slots=True)
class _Pending:
    """A CSR waiting for its certificate."""

    ident: int
    key: PrivateKey
    organization: str | None
    common_name: str | None


class CertificateStore:
    def __init__(
        self,
        directory: Path,
        db: sqlite3.Connection,
        *,
        factory_csms_roots: Path | None,
        factory_client: tuple[Path, Path] | None,
        factory_manufacturer_roots: Path | None = None,
        max_roots: int = 10,
    ) -> None:
        self.directory = directory
        self._db = db
        self._factory_client = factory_client
        self.max_roots = max_roots
        self._offered: int | None = None  # the client_certificates row client_files() gave
        self._unlisted: set[str] = set()  # fingerprints warned about as without an issuer
        directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        directory.chmod(DIRECTORY_MODE)  # also when it existed, or the umask narrowed mkdir's
        db.executescript(SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(client_certificates)")}
        for column, declaration in CLIENT_COLUMNS:
            if column not in columns:
                db.execute(f"ALTER TABLE client_certificates ADD COLUMN {column} {declaration}")
        self._sync_factory(RootType.CSMS, factory_csms_roots)
        self._sync_factory(RootType.MANUFACTURER, factory_manufacturer_roots)
        self._remove_orphans()

    # -- roots --

    def roots(self, use: RootType | None = None) -> list[InstalledRoot]:
        """The installed roots (of one type), oldest first."""
        rows = self._db.execute(
            "SELECT use, pem, factory FROM root_certificates WHERE deleted = 0 "
            "AND (? IS NULL OR use = ?) ORDER BY id",
            (use, use),
        ).fetchall()
        return [
            InstalledRoot(RootType(row[0]), load_pem_certificate(row[1]), bool(row[2]))
            for row in rows
        ]

    def csms_roots(self) -> list[x509.Certificate]:
        return [root.certificate for root in self.roots(RootType.CSMS)]

    def manufacturer_roots(self) -> list[x509.Certificate]:
        return [root.certificate for root in self.roots(RootType.MANUFACTURER)]

    def hash_data(self, use: RootType, algorithm: str = DEFAULT_HASH_ALGORITHM) -> list[HashData]:
        """GetInstalledCertificateIds (M03.FR.04): the hash data of each certificate of
        ``use``, intermediates from a factory file included (whitepaper M03 lists the
        installed certificates, and the CSMS can only delete what it has seen listed)."""
        return [data for root, data in self._hashed(algorithm) if root.use is use]

    def _hashed(self, algorithm: str) -> list[tuple[InstalledRoot, HashData]]:
        """Each stored certificate with its hash data (§6.1). The hash data of a certificate
        that is not self-issued (an intermediate in a factory file) needs its issuer's key:
        the issuer is looked for among the stored certificates; one whose issuer is not
        there is left out (one warning), never the whole listing."""
        roots = self.roots()
        stored = [root.certificate for root in roots]
        hashed: list[tuple[InstalledRoot, HashData]] = []
        for root in roots:
            issuer = find_issuer(root.certificate, stored)
            if issuer is None:
                key = fingerprint(root.certificate)
                if key not in self._unlisted:
                    self._unlisted.add(key)
                    log.warning(
                        "%s %s is not listed: its issuer is not installed, so its hash data "
                        "cannot be computed",
                        root.use.value,
                        describe(root.certificate),
                    )
                continue
            hashed.append((root, hash_data(root.certificate, algorithm, issuer)))
        return hashed

    def install(self, use: RootType, pem: str, now: datetime) -> Installed:
        """InstallCertificate (M05): CertificateProblem when the certificate is not a valid
        root (M05.FR.06), StoreFull at CertificateStoreMaxLength (M05.FR.03); an OSError or
        sqlite3.Error is a failed installation (M05.FR.04)."""
        cert = load_pem_certificate(pem)
        check_root(cert, now)
        key = fingerprint(cert)
        row = self._db.execute(
            "SELECT deleted FROM root_certificates WHERE use = ? AND fingerprint = ?",
            (use, key),
        ).fetchone()
        if row is not None and not row[0]:
            return Installed.ALREADY_INSTALLED
        if len(self.roots()) >= self.max_roots:
            raise StoreFull(
                f"{self.max_roots} root certificates installed (CertificateStoreMaxLength)"
            )
        if row is not None:  # a factory root the CSMS deleted, installed again
            self._db.execute(
                "UPDATE root_certificates SET deleted = 0 WHERE use = ? AND fingerprint = ?",
                (use, key),
            )
        else:
            self._db.execute(
                "INSERT INTO root_certificates (use, fingerprint, pem, factory) "
                "VALUES (?, ?, ?, 0)",
                (use, key, certificate_pem(cert)),
            )
        log.info("installed %s %s", use.value, describe(cert))
        return Installed.ADDED

    def delete(self, data: HashData, *, security_profile: int) -> Deletion:
        """DeleteCertificate (M04). The last Central System root cannot be deleted while the
        security profile in use (2 or 3) needs it to check the CSMS (M04.FR.06): the module
        checks the server against the whole bundle, so the last one is the one in use."""
        matches = [
            (root, fingerprint(root.certificate))
            for root, hashed in self._hashed(data.hash_algorithm)
            if hashed == data
        ]
        if not matches:
            return Deletion.NOT_FOUND
        csms_left = len(self.roots(RootType.CSMS)) - sum(
            root.use is RootType.CSMS for root, _ in matches
        )
        if csms_left == 0 and security_profile >= 2:
            log.warning(
                "DeleteCertificate refused: %s is the last Central System root and security "
                "profile %d needs it (whitepaper M04.FR.06)",
                describe(matches[0][0].certificate),
                security_profile,
            )
            return Deletion.FAILED
        with _transaction(self._db):
            for root, key in matches:
                if root.factory:
                    self._db.execute(
                        "UPDATE root_certificates SET deleted = 1 WHERE use = ? "
                        "AND fingerprint = ?",
                        (root.use, key),
                    )
                else:
                    self._db.execute(
                        "DELETE FROM root_certificates WHERE use = ? AND fingerprint = ?",
                        (root.use, key),
                    )
        for root, _ in matches:
            log.info("deleted %s %s", root.use.value, describe(root.certificate))
        return Deletion.ACCEPTED

    def csms_roots_file(self) -> Path | None:
        """One PEM bundle of every Central System root (factory and installed), named by its
        content; None when there is none. Bundles of earlier contents are removed."""
        roots = self.csms_roots()
        keep: set[str] = set()
        path: Path | None = None
        if roots:
            content = "".join(certificate_pem(cert) for cert in roots).encode()
            path = self.directory / f"csms-roots-{_digest(content)}.pem"
            _write_once(path, content, CERT_MODE)
            keep.add(path.name)
        for stale in self.directory.glob("csms-roots-*.pem"):
            if stale.name not in keep and _OWN.fullmatch(stale.name):
                stale.unlink(missing_ok=True)
        return path

    def _sync_factory(self, use: RootType, path: Path | None) -> None:
        """The configuration file's roots: new ones are added, ones the installer took out of
        the file are forgotten, ones the CSMS deleted stay deleted."""
        certs: list[x509.Certificate] = []
        if path is not None:
            try:
                certs = load_pem_chain(path.read_bytes())
            except (OSError, CertificateProblem) as exc:
                log.error("cannot read the %s file %s: %s", use.value, path, exc)
                return  # leave the rows as they are rather than forget the roots
        keys = {fingerprint(cert): cert for cert in certs}
        now = _now()
        for cert in certs:
            try:
                check_root(cert, now)
            except CertificateProblem as exc:
                # L2: the installer put it there (an intermediate the module needs in its
                # bundle, say), so it stays; but it is not a valid root, and that is worth a look.
                log.warning("%s file %s: %s (kept)", use.value, path, exc)
        with _transaction(self._db):
            known = {
                row[0]: bool(row[1])
                for row in self._db.execute(
                    "SELECT fingerprint, factory FROM root_certificates WHERE use = ?", (use,)
                )
            }
            for key, factory in known.items():
                if factory and key not in keys:
                    self._db.execute(
                        "DELETE FROM root_certificates WHERE use = ? AND fingerprint = ?",
                        (use, key),
                    )
            for key, cert in keys.items():
                if key not in known:
                    self._db.execute(
                        "INSERT INTO root_certificates (use, fingerprint, pem, factory) "
                        "VALUES (?, ?, ?, 1)",
                        (use, key, certificate_pem(cert)),
                    )

    # -- the charge point certificate --

    def store_pending_key(
        self,
        key: PrivateKey,
        now: datetime | None = None,
        *,
        organization: str | None = None,
        common_name: str | None = None,
    ) -> None:
        """Keep the private key of the CSR just made (mode 0600). The keys of the last
        MAX_PENDING requests stay: the CA may still be signing an earlier CSR (A02.FR.04)
        when a renewal or a second SignChargePointCertificate makes another; older ones go.
        ``organization`` and ``common_name`` are the CSR's subject: the certificate is checked
        against them, not against a CpoName changed since (review M3)."""
        name = f"client-{public_key_digest(key)[:DIGEST_LENGTH]}.key"
        _write_once(self.directory / name, private_key_pem(key), KEY_MODE)
        with _transaction(self._db):
            self._db.execute(
                "INSERT INTO client_certificates (state, key_file, since, csr_organization, "
                "csr_common_name) VALUES ('pending', ?, ?, ?, ?)",
                (name, (now or _now()).isoformat(), organization, common_name),
            )
            stale = "SELECT id FROM client_certificates WHERE state = 'pending' " + (
                "ORDER BY id DESC LIMIT -1 OFFSET ?"
            )
            old = self._files(
                f"SELECT key_file, cert_file FROM client_certificates WHERE id IN ({stale})",
                MAX_PENDING,
            )
            self._db.execute(
                f"DELETE FROM client_certificates WHERE id IN ({stale})", (MAX_PENDING,)
            )
        self._unlink_unreferenced(old)

    def pending_key(self) -> PrivateKey | None:
        """The key of the newest CSR still waiting for its certificate."""
        pending = self._pending()
        return pending[0].key if pending else None

    def pending_since(self) -> datetime | None:
        """When the newest CSR still waiting for its certificate was made."""
        row = self._db.execute(
            "SELECT since FROM client_certificates WHERE state = 'pending' ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else datetime.fromisoformat(row[0])

    def _pending(self) -> list[_Pending]:
        """The pending rows that have a readable key, newest first."""
        pending: list[_Pending] = []
        for ident, key_file, organization, common_name in self._db.execute(
            "SELECT id, key_file, csr_organization, csr_common_name FROM client_certificates "
            "WHERE state = 'pending' ORDER BY id DESC"
        ).fetchall():
            try:
                key = load_private_key((self.directory / key_file).read_bytes())
                pending.append(_Pending(ident, key, organization, common_name))
            except (OSError, ValueError, CertificateProblem) as exc:
                log.error("the pending private key %s cannot be read: %s", key_file, exc)
        return pending

    def accept_chain(
        self,
        text: str,
        *,
        charge_point_id: str,
        cpo_name: str,
        now: datetime,
        max_chain_size: int = MAX_CHAIN_SIZE,
    ) -> list[x509.Certificate]:
        """CertificateSigned (A02.FR.06): check the chain against the pending key whose public
        key the leaf carries and the Central System roots; if it passes, that request's
        certificate becomes the candidate (the other requests stay pending). CertificateProblem
        otherwise (the certificate is discarded, A02.FR.07; the keys stay pending, so the
        CSMS may still send a right chain for the same request)."""
        pending = self._pending()
        if not pending:
            raise CertificateProblem("no certificate signing request is pending")
        try:
            leaf = load_pem_chain(text[: max_chain_size + 1])[0]
        except CertificateProblem:
            leaf = None  # check_signed_chain says why
        request = next(
            (p for p in pending if leaf is not None and same_key(leaf, p.key)), pending[0]
        )
        ident = request.ident
        chain = check_signed_chain(
            text,
            key=request.key,
            # The subject the CSR asked for; the caller's for a request stored without it.
            charge_point_id=request.common_name or charge_point_id,
            cpo_name=request.organization if request.organization is not None else cpo_name,
            roots=self.csms_roots(),
            now=now,
            max_chain_size=max_chain_size,
        )
        content = "".join(certificate_pem(cert) for cert in chain).encode()
        name = f"client-{_digest(content)}.pem"
        _write_once(self.directory / name, content, CERT_MODE)
        leaf = chain[0]
        with _transaction(self._db):
            old = self._files(
                "SELECT key_file, cert_file FROM client_certificates "
                "WHERE state IN ('candidate', 'suspended')"
            )
            self._db.execute(
                "DELETE FROM client_certificates WHERE state IN ('candidate', 'suspended')"
            )
            self._db.execute(
                "UPDATE client_certificates SET state = 'candidate', cert_file = ?, "
                "not_before = ?, not_after = ?, since = ? WHERE id = ?",
                (
                    name,
                    leaf.not_valid_before_utc.isoformat(),
                    leaf.not_valid_after_utc.isoformat(),
                    now.isoformat(),
                    ident,
                ),
            )
        self._unlink_unreferenced(old)
        log.info("new charge point certificate %s accepted", describe(leaf))
        return chain

    def candidate_not_before(self) -> datetime | None:
        """The notBefore of the accepted certificate not yet proven, if there is one."""
        row = self._db.execute(
            "SELECT not_before FROM client_certificates WHERE state = 'candidate'"
        ).fetchone()
        return None if row is None else datetime.fromisoformat(row[0])

    def client_files(self, now: datetime | None = None) -> tuple[Path, Path] | None:
        """The certificate chain and private key to present now: the candidate once its
        notBefore has come (A02.FR.08), else the current one, else the configuration's."""
        now = now or _now()
        for row in self._db.execute(
            "SELECT id, state, cert_file, key_file, not_before, not_after "
            "FROM client_certificates WHERE state IN ('candidate', 'current') "
            "ORDER BY state = 'candidate' DESC"
        ).fetchall():
            ident, state, cert_file, key_file, not_before, not_after = row
            if state == "candidate" and not (
                datetime.fromisoformat(not_before) <= now <= datetime.fromisoformat(not_after)
            ):
                continue
            self._offered = ident
            return self.directory / cert_file, self.directory / key_file
        self._offered = None
        return self._factory_client

    def client_proven(self) -> Fallback:
        """A connection with client_files() worked: a candidate becomes the current
        certificate, and the current one the fallback (A02.FR.10). If a suspended candidate
        is waiting, the one before it just worked where the candidate kept failing: the
        candidate was the cause, and it is dropped (Fallback.DROPPED)."""
        offered = self._offered
        if offered is not None and self._is("candidate", offered):
            with _transaction(self._db):
                old = self._files(
                    "SELECT key_file, cert_file FROM client_certificates WHERE state = 'previous'"
                )
                self._db.execute("DELETE FROM client_certificates WHERE state = 'previous'")
                self._db.execute(
                    "UPDATE client_certificates SET state = 'previous', since = ? "
                    "WHERE state = 'current'",
                    (_now().isoformat(),),
                )
                self._db.execute(
                    "UPDATE client_certificates SET state = 'current', since = ? WHERE id = ?",
                    (_now().isoformat(), offered),
                )
            self._unlink_unreferenced(old)
            log.info("the new charge point certificate works: it is the current one")
            return Fallback.NONE
        with _transaction(self._db):
            old = self._files(
                "SELECT key_file, cert_file FROM client_certificates WHERE state = 'suspended'"
            )
            self._db.execute("DELETE FROM client_certificates WHERE state = 'suspended'")
        if not old:
            return Fallback.NONE
        self._unlink_unreferenced(old)
        log.warning(
            "the previous charge point certificate works where the new one failed: the new "
            "one is dropped"
        )
        return Fallback.DROPPED

    def client_failed(self) -> Fallback:
        """Connections with client_files() keep failing, for a cause the module does not say
        (the CSMS refusing the certificate, or the CSMS or the network down):

        * with the candidate: it is suspended, and client_files() gives the certificate
          before it; whether that one works tells which it was (Fallback.SUSPENDED);
        * with the one before a suspended candidate: the fault is elsewhere, and the
          candidate is restored to be tried again (Fallback.RESTORED).

        Each flip needs the caller's run of failed connections, which the daemon's reconnect
        backoff paces: it never spins."""
        offered, self._offered = self._offered, None
        if offered is not None and self._is("candidate", offered):
            self._db.execute(
                "UPDATE client_certificates SET state = 'suspended', since = ? WHERE id = ?",
                (_now().isoformat(), offered),
            )
            log.warning("the new charge point certificate keeps failing: the previous one is tried")
            return Fallback.SUSPENDED
        restored = self._db.execute(
            "UPDATE client_certificates SET state = 'candidate', since = ? "
            "WHERE state = 'suspended'",
            (_now().isoformat(),),
        ).rowcount
        if not restored:
            return Fallback.NONE
        log.warning(
            "the previous charge point certificate fails as well: the fault is not the new "
            "one, which is tried again"
        )
        return Fallback.RESTORED

    def client_expires(self) -> datetime | None:
        """When the newest charge point certificate (candidate, current, else the
        configuration's) expires; None without one."""
        row = self._db.execute(
            "SELECT not_after FROM client_certificates WHERE state IN ('candidate', 'current') "
            "ORDER BY state = 'candidate' DESC LIMIT 1"
        ).fetchone()
        if row is not None:
            return datetime.fromisoformat(row[0])
        if self._factory_client is None:
            return None
        try:
            leaf = load_pem_chain(self._factory_client[0].read_bytes())[0]
        except (OSError, CertificateProblem) as exc:
            log.error(
                "cannot read the charge point certificate %s: %s", self._factory_client[0], exc
            )
            return None
        return leaf.not_valid_after_utc

    # -- files --

    def _is(self, state: str, ident: int) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM client_certificates WHERE id = ? AND state = ?", (ident, state)
        ).fetchone()
        return row is not None

    def _files(self, query: str, *args: object) -> set[str]:
        names: set[str] = set()
        for key_file, cert_file in self._db.execute(query, args):
            names.add(key_file)
            if cert_file:
                names.add(cert_file)
        return names

    def _referenced(self) -> set[str]:
        return self._files("SELECT key_file, cert_file FROM client_certificates")

    def _unlink_unreferenced(self, names: set[str]) -> None:
        for name in names - self._referenced():
            (self.directory / name).unlink(missing_ok=True)

    def _remove_orphans(self) -> None:
        """Files a power cut left behind: temporary files, and client files no row names
        (written before their row, which never came). Only files of the store's own naming
        are touched: an installer's file in the directory stays (review L7). Key files get
        mode 0600 again, in case a restore from a backup widened it (review L6)."""
        referenced = self._referenced()
        for path in self.directory.iterdir():
            temporary = _TEMPORARY.fullmatch(path.name)
            own_temporary = temporary is not None and _OWN.fullmatch(temporary[1]) is not None
            client = _CLIENT.fullmatch(path.name) is not None
            if own_temporary or (client and path.name not in referenced):
                path.unlink(missing_ok=True)
            elif client and path.suffix == ".key":
                path.chmod(KEY_MODE)


def _now() -> datetime:
    return datetime.now(UTC)


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:DIGEST_LENGTH]


def _write_once(path: Path, content: bytes, mode: int) -> None:
    """Write ``content`` to ``path`` atomically, unless a file of that (content-addressed)
    name is there already. The temporary file has ``mode`` from its creation: a private
    key is never readable by others, not even for an instant."""
    if path.exists():
        return
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # exactly ``mode``, whatever the umask
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself reaches the disk before the row naming it
    finally:
        os.close(directory)


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One SQLite transaction (the state database is in autocommit mode)."""
    if db.in_transaction:  # inside a caller's transaction: part of it
        yield
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
