"""Certificate management functional block (OCPP 1.6 security whitepaper A02/A03, M03-M05):
the CSMS's InstallCertificate, GetInstalledCertificateIds, DeleteCertificate and
CertificateSigned, and the charge point's SignCertificate.

The handlers translate payloads to :class:`chargepoint.certificate_store.CertificateStore`
calls and back. Security events are recorded after the answer has gone (``@after``), so the
CSMS sees InstallCertificate.conf before the SecurityEventNotification (OCTT TC_078).

How the composition root uses it:

* ``request_certificate()`` for ExtendedTriggerMessage(SignChargePointCertificate) (call it
  from an ``@after`` handler: it makes the key and the CSR in a thread and sends
  SignCertificate.req from a task);
* ``start()`` once the scheduler runs: a daily check (and one a minute after start) renews the
  charge point certificate 30 days before it expires, under security profile 3 (A03.FR.02);
* after CertificateSigned Accepted the block asks the session to reconnect (profile 3), so the
  next connection presents ``store.client_files()``; the connection's outcome goes to the store
  from the security profiles (:mod:`chargepoint.app.security`): ``client_proven()``, or, when
  the CSMS keeps refusing the new certificate, ``client_failed()`` and the
  InvalidChargePointCertificate event.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from cryptography import x509
from ocpp.routing import after, on
from ocpp.v16 import call_result
from ocpp.v16.enums import (
    Action,
    CertificateSignedStatus,
    CertificateStatus,
    DeleteCertificateStatus,
    GetInstalledCertificateStatus,
)

from chargepoint.blocks.context import Context
from chargepoint.blocks.security_events import SecurityEvent, SecurityEventSink
from chargepoint.certificate_store import (
    CertificateStore,
    Deletion,
    Installed,
    RootType,
    StoreFull,
)
from chargepoint.model.certificates import (
    KEY_TYPES,
    MAX_CHAIN_SIZE,
    CertificateProblem,
    HashData,
    PrivateKey,
    generate_key,
    make_csr,
)

log = logging.getLogger(__name__)

CPO_NAME = "CpoName"
MAX_CHAIN_KEY = "CertificateSignedMaxChainSize"
RENEW_BEFORE = timedelta(days=30)  # A03: a new certificate a month before the old one expires
PENDING_WAIT = timedelta(hours=24)  # a renewal leaves a CSR this young to the CA
FIRST_CHECK = timedelta(minutes=1)  # after start: the clock is valid, the connection likely up
RENEWAL_JOB = "certificate renewal"
SWITCH_JOB = "certificate switch"


class CertificateManagement:
    def __init__(
        self,
        context: Context,
        store: CertificateStore,
        events: SecurityEventSink,
        *,
        charge_point_id: str,
        key_type: str,
        security_profile: Callable[[], int],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if key_type not in KEY_TYPES:
            raise ValueError(f"key type {key_type!r}: expected one of {', '.join(KEY_TYPES)}")
        self._context = context
        self._store = store
        self._events = events
        self._charge_point_id = charge_point_id
        self._key_type = key_type
        self._security_profile = security_profile
        self._clock = clock
        self._requesting = False
        self._to_record: list[tuple[SecurityEvent, str | None]] = []  # for the @after handlers
        self._signed: x509.Certificate | None = None  # accepted by the last CertificateSigned

    # -- InstallCertificate (M05) --

    @on(Action.install_certificate)  # type: ignore[untyped-decorator]
    def _on_install_certificate(
        self, certificate_type: str, certificate: str
    ) -> call_result.InstallCertificate:
        use = RootType(certificate_type)
        try:
            outcome = self._store.install(use, certificate, self._clock())
        except StoreFull as exc:
            log.warning("InstallCertificate %s rejected: %s", use.value, exc)
            return call_result.InstallCertificate(CertificateStatus.rejected)  # M05.FR.03
        except CertificateProblem as exc:
            log.warning("InstallCertificate %s rejected: %s", use.value, exc)
            if use is RootType.CSMS:  # OCTT TC_078
                self._record_after(SecurityEvent.INVALID_CENTRAL_SYSTEM_CERTIFICATE, str(exc))
            return call_result.InstallCertificate(CertificateStatus.rejected)  # M05.FR.06
        except (OSError, sqlite3.Error) as exc:
            log.error("InstallCertificate %s failed: %s", use.value, exc)
            return call_result.InstallCertificate(CertificateStatus.failed)  # M05.FR.04
        if outcome is Installed.ADDED and use is RootType.CSMS:
            # The next connection checks the CSMS against it too.
            self._record_after(
                SecurityEvent.RECONFIGURATION_OF_SECURITY_PARAMETERS,
                "CentralSystemRootCertificate installed",
            )
        return call_result.InstallCertificate(CertificateStatus.accepted)

    @after(Action.install_certificate)  # type: ignore[untyped-decorator]
    def _after_install_certificate(self, certificate_type: str, certificate: str) -> None:
        self._record_now()

    # -- GetInstalledCertificateIds (M03) --

    @on(Action.get_installed_certificate_ids)  # type: ignore[untyped-decorator]
    def _on_get_installed_certificate_ids(
        self, certificate_type: str
    ) -> call_result.GetInstalledCertificateIds:
        found = self._store.hash_data(RootType(certificate_type))
        if not found:
            return call_result.GetInstalledCertificateIds(
                GetInstalledCertificateStatus.not_found  # M03.FR.02
            )
        return call_result.GetInstalledCertificateIds(
            GetInstalledCertificateStatus.accepted,  # M03.FR.03/04
            certificate_hash_data=[data.to_ocpp() for data in found],
        )

    # -- DeleteCertificate (M04) --

    @on(Action.delete_certificate)  # type: ignore[untyped-decorator]
    def _on_delete_certificate(
        self, certificate_hash_data: dict[str, Any]
    ) -> call_result.DeleteCertificate:
        try:
            data = HashData.from_ocpp(certificate_hash_data)
        except CertificateProblem as exc:
            log.warning("DeleteCertificate: %s", exc)
            return call_result.DeleteCertificate(DeleteCertificateStatus.not_found)
        csms_roots = len(self._store.csms_roots())
        try:
            outcome = self._store.delete(data, security_profile=self._security_profile())
        except (OSError, sqlite3.Error) as exc:
            log.error("DeleteCertificate failed: %s", exc)
            return call_result.DeleteCertificate(DeleteCertificateStatus.failed)  # M04.FR.03
        if outcome is Deletion.ACCEPTED and len(self._store.csms_roots()) < csms_roots:
            self._record_after(
                SecurityEvent.RECONFIGURATION_OF_SECURITY_PARAMETERS,
                "CentralSystemRootCertificate deleted",
            )
        return call_result.DeleteCertificate(DeleteCertificateStatus(outcome.value))

    @after(Action.delete_certificate)  # type: ignore[untyped-decorator]
    def _after_delete_certificate(self, certificate_hash_data: dict[str, Any]) -> None:
        self._record_now()

    # -- CertificateSigned (A02/A03) --

    @on(Action.certificate_signed)  # type: ignore[untyped-decorator]
    def _on_certificate_signed(self, certificate_chain: str) -> call_result.CertificateSigned:
        self._signed = None
        try:
            chain = self._store.accept_chain(
                certificate_chain,
                charge_point_id=self._charge_point_id,
                cpo_name=self._cpo_name(),
                now=self._clock(),
                max_chain_size=self._max_chain_size(),
            )
        except CertificateProblem as exc:
            # A02.FR.07: the certificate is discarded, and the CSMS hears why.
            log.warning("CertificateSigned rejected: %s", exc)
            self._record_after(SecurityEvent.INVALID_CHARGE_POINT_CERTIFICATE, str(exc))
            return call_result.CertificateSigned(CertificateSignedStatus.rejected)
        except (OSError, sqlite3.Error) as exc:
            log.error("CertificateSigned: the certificate could not be stored: %s", exc)
            return call_result.CertificateSigned(CertificateSignedStatus.rejected)
        self._signed = chain[0]
        self._record_after(
            SecurityEvent.RECONFIGURATION_OF_SECURITY_PARAMETERS,
            f"new charge point certificate, serial {chain[0].serial_number:X}",
        )
        return call_result.CertificateSigned(CertificateSignedStatus.accepted)

    @after(Action.certificate_signed)  # type: ignore[untyped-decorator]
    def _after_certificate_signed(self, certificate_chain: str) -> None:
        self._record_now()
        leaf, self._signed = self._signed, None
        if leaf is None:
            return
        if self._security_profile() != 3:
            log.info("the new charge point certificate is used with security profile 3")
            return
        not_before = leaf.not_valid_before_utc
        if not_before > self._clock():
            # A02.FR.08: switch as soon as it is valid, not before.
            log.info("the new charge point certificate is valid from %s", not_before.isoformat())
            self._schedule_switch(not_before)
            return
        self._reconnect("a new charge point certificate")

    def _schedule_switch(self, not_before: datetime) -> None:
        self._context.scheduler.add_job(
            self._switch,
            DateTrigger(not_before),
            id=SWITCH_JOB,
            replace_existing=True,
            misfire_grace_time=None,  # a date already past runs at once
        )

    async def _switch(self) -> None:
        if self._security_profile() == 3:
            self._reconnect("the new charge point certificate is valid now")

    def _reconnect(self, why: str) -> None:
        session = self._context.session
        if session is not None:
            session.spawn(session.reconnect(why), "reconnect for a new certificate")

    # -- SignCertificate (A02.FR.02/03, A03.FR.02/03) --

    def request_certificate(self) -> None:
        """A new key pair and CSR, sent in SignCertificate.req (from a task). One request at a
        time; a refusal or no answer is logged, and the daily check tries again."""
        if self._requesting:
            log.info("a certificate signing request is already being made")
            return
        self._requesting = True
        self._context.spawn(self._request(), "SignCertificate")

    async def _request(self) -> None:
        try:
            cpo_name = self._cpo_name()
            if not cpo_name:
                log.error("no CpoName configured: no certificate signing request (A02.FR.13)")
                return
            key, csr = await asyncio.to_thread(self._make_csr, cpo_name)
            self._store.store_pending_key(
                key, self._clock(), organization=cpo_name, common_name=self._charge_point_id
            )
            answer = await self._context.send("SignCertificate", {"csr": csr})
            if answer is None:
                log.warning("SignCertificate not answered: the request is made again later")
            elif answer.get("status") != "Accepted":
                log.warning("the CSMS refused SignCertificate: %s", answer.get("status"))
            else:
                log.info("SignCertificate accepted: waiting for CertificateSigned")
        finally:
            self._requesting = False

    def _make_csr(self, cpo_name: str) -> tuple[PrivateKey, str]:
        key = generate_key(self._key_type)  # ~100 ms for RSA: off the event loop
        return key, make_csr(key, charge_point_id=self._charge_point_id, cpo_name=cpo_name)

    # -- renewal (A03) --

    def start(self) -> None:
        """The daily renewal check, the first a minute from now; and the switch to a
        certificate accepted before a restart whose notBefore is still to come (A02.FR.08:
        the job lives in memory only, the candidate on disk)."""
        not_before = self._store.candidate_not_before()
        if not_before is not None and not_before > self._clock():
            self._schedule_switch(not_before)
        self._context.scheduler.add_job(
            self._check_renewal,
            IntervalTrigger(days=1, start_date=self._clock() + FIRST_CHECK, timezone=UTC),
            id=RENEWAL_JOB,
            replace_existing=True,
            misfire_grace_time=None,
        )

    async def _check_renewal(self) -> None:
        self.renew_if_due()

    def renew_if_due(self) -> bool:
        """Under security profile 3, a certificate that expires within 30 days is renewed
        (A03.FR.02). True if a request was started."""
        if self._security_profile() != 3:
            return False
        expires = self._store.client_expires()
        if expires is None or expires - self._clock() > RENEW_BEFORE:
            return False
        since = self._store.pending_since()
        if since is not None and self._clock() - since < PENDING_WAIT:
            # The CA may still be signing it (A02.FR.04): a new CSR would only add a key.
            log.info("a certificate signing request of %s is pending", since.isoformat())
            return False
        log.info("the charge point certificate expires on %s: renewing it", expires.isoformat())
        self.request_certificate()
        return True

    # -- helpers --

    def _cpo_name(self) -> str:
        keys = self._context.keys
        return keys.get(CPO_NAME) if CPO_NAME in keys else ""

    def _max_chain_size(self) -> int:
        keys = self._context.keys
        size = keys.integer(MAX_CHAIN_KEY) if MAX_CHAIN_KEY in keys else MAX_CHAIN_SIZE
        return min(size, MAX_CHAIN_SIZE)

    def _record_after(self, event: SecurityEvent, tech_info: str | None) -> None:
        self._to_record.append((event, tech_info))

    def _record_now(self) -> None:
        pending, self._to_record = self._to_record, []
        for event, tech_info in pending:
            self._record(event, tech_info)

    def _record(self, event: SecurityEvent, tech_info: str | None) -> None:
        self._events(event, tech_info)  # SecurityEvents.record cuts techInfo to its 255
