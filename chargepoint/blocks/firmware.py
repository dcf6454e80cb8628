"""Firmware management functional block: UpdateFirmware (OCPP 1.6 §5.19, §4.5; OCTT
TC_044_1/2/3) and SignedUpdateFirmware (security whitepaper L01; OCTT TC_080_CS, TC_081_CS):
download, verify, wait, install, reboot.

The update is one row in the state database, so it survives a restart at any point:

* ``waiting``: not yet downloaded. At ``retrieveDate`` (a date in the past runs at once) the
  image is fetched into ``<state>/firmware/`` through the link's client for the location's
  scheme — HTTP(S) in Range pieces, FTP(S) from the last good byte (REST) — resuming a partial
  file either way, with ``retries`` further attempts ``retryInterval`` apart; another scheme
  fails at once with a log line naming the four that work. A password in the location is
  used, never logged.
  FirmwareStatusNotification Downloading, then Downloaded or DownloadFailed.
* ``downloaded``: a signed image has its signature checked (below); an unsigned one goes on
  at once. The connectors not charging become Unavailable and the update waits for the
  running transactions to end (§5.19 "Waiting for transactions to finish", L01.FR.06/07),
  then Installing: the installer command runs with the image path as an argument (argv,
  never a shell).
* ``verified`` (signed only): the signature is good (SignatureVerified); at
  ``installDateTime`` when that is in the future (InstallScheduled, L01.FR.16), else at once,
  the installation goes on as above.
* ``installed``: the installer succeeded; the reboot hook runs (default: the daemon restarts
  itself). After the next accepted BootNotification and the connector statuses, the
  FirmwareUpdated security event is recorded (the phase becomes ``booted``, so a restart
  does not record it twice) and Installed is reported (TC_044_1 steps 9-13, TC_080_CS steps
  11-17) and the row goes. The new version is read from ``firmware.version_file`` for that
  BootNotification.
* ``failed``: the installer failed: InstallationFailed is reported (after the next boot if it
  could not be sent), the old firmware stays, the connectors are Available again.
  ``rejected``: the installer exited with :data:`IMAGE_REJECTED_EXIT` (65, ``EX_DATAERR`` of
  sysexits.h: "the image does not verify"): InstallVerificationFailed for a signed update,
  InstallationFailed for an unsigned one (OCPP 1.6 has no other status for it).
  ``invalid_signature``: the signature did not verify: InvalidSignature, the
  InvalidFirmwareSignature security event (L01.FR.03), the image deleted, nothing else
  changes (the connectors were never made Unavailable).

A signed update keeps what UpdateFirmware has no field for in a table of its own,
``signed_firmware_update`` (created here, so an existing state database gets it):
requestId, installDateTime, the signing certificate and signature, and the last status
sent. Its row stays after the update ends, for ExtendedTriggerMessage (:meth:`signed_status`,
L01.FR.28/29); an UpdateFirmware removes it.

SignedUpdateFirmware's signing certificate is checked before the answer (L01.FR.23, see
:mod:`chargepoint.model.firmware_signature`): InvalidCertificate and the
InvalidFirmwareSigningCertificate event (L01.FR.24, L01.FR.02) start nothing. An update not yet
installing is cancelled by a new one: AcceptedCanceled (L01.FR.26). One whose installer runs
(or ran, the reboot pending) cannot be: Rejected (L01.FR.27). Every status of a signed update
is a SignedFirmwareStatusNotification with its requestId (L01.FR.10/21). InstallRebooting is
not sent: the reboot is part of the installation here (§6.8 lets it be omitted), and the
OCTT's TC_080_CS expects Installing and then the BootNotification.

UpdateFirmware itself is refused with a CallError NotSupported (L01.FR.20) when
``FirmwareSettings.unsigned_updates`` says so: ``refused``, or ``without-security-profile``
while the security profile is above 0.

TriggerMessage(FirmwareStatusNotification) gets the current status, or Idle (§4.5).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.jobstores.base import JobLookupError
from apscheduler.triggers.date import DateTrigger
from cryptography import x509
from ocpp.exceptions import NotSupportedError
from ocpp.routing import after, on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, FirmwareStatus, UpdateFirmwareStatus

from chargepoint.blocks.availability import Availability
from chargepoint.blocks.context import Context
from chargepoint.blocks.security_events import SecurityEvent, SecurityEventSink
from chargepoint.blocks.transactions import Transactions
from chargepoint.blocks.transfer_retries import (
    DEFAULT_RETRIES,
    DEFAULT_RETRY_INTERVAL,
    ocpp_datetime,
    with_retries,
)
from chargepoint.model.firmware_signature import (
    FirmwareSignatureProblem,
    SigningCertificateProblem,
    check_signing_certificate,
    verify_image,
)
from chargepoint.storage import atomic
from transport.errors import UnsupportedLocation
from transport.ftp import FtpClient, FtpLocation, parse_location
from transport.http import FetchResult, HttpClient, Location, redact_url
from transport.link import TransferClients

log = logging.getLogger(__name__)

JOB_ID = "firmware update"
INSTALL_JOB_ID = "firmware install"  # installDateTime of a signed update (L01.FR.16)
NOTIFY_RETRY = 10.0
IMAGE_REJECTED_EXIT = 65  # the installer's "the image does not verify" (EX_DATAERR)
HASH_CHUNK = 1024 * 1024
TECH_INFO = 255  # SecurityEventNotification.techInfo's length

SIGNED_TABLE = """
CREATE TABLE IF NOT EXISTS signed_firmware_update (  -- SignedUpdateFirmware (see firmware.py)
    id                   INTEGER PRIMARY KEY CHECK (id = 1),
    request_id           INTEGER NOT NULL,
    install_date         TEXT,            -- installDateTime, ISO 8601; NULL: at once
    signing_certificate  TEXT NOT NULL,   -- PEM
    signature            TEXT NOT NULL,   -- base64
    last_status          TEXT             -- the last SignedFirmwareStatusNotification status
)
"""

# The phases in which the update only has its final status left to report, and that status
# (for a signed update; an unsigned one has InstallationFailed for a rejected image).
FINAL_REPORTS = {
    "installed": FirmwareStatus.installed,
    "booted": FirmwareStatus.installed,
    "failed": FirmwareStatus.installation_failed,
    "rejected": FirmwareStatus.install_verification_failed,
    "invalid_signature": FirmwareStatus.invalid_signature,
}
CANCELLABLE = ("waiting", "downloaded", "verified")  # not yet installing (L01.FR.26)


class UnsignedUpdates(enum.StrEnum):
    """``firmware.unsigned_updates``: when the original UpdateFirmware is taken."""

    ALLOWED = "allowed"
    REFUSED = "refused"
    WITHOUT_SECURITY_PROFILE = "without-security-profile"


@dataclass(frozen=True, slots=True)
class FirmwareSettings:
    directory: Path  # where images are downloaded (<storage>/firmware)
    install_command: tuple[str, ...] | None = None
    reboot_command: tuple[str, ...] | None = None
    install_timeout: float = 600.0
    sha256: str | None = None  # only for tests: UpdateFirmware carries no checksum
    unsigned_updates: str = UnsignedUpdates.WITHOUT_SECURITY_PROFILE


@dataclass(frozen=True, slots=True)
class SignedUpdate:
    """What SignedUpdateFirmware adds to an update (whitepaper §5.21, §6.9)."""

    request_id: int
    install_date: datetime | None
    certificate: str  # PEM: the signing certificate, then any intermediates
    signature: str  # base64


class InstallOutcome(enum.Enum):
    DONE = "done"
    FAILED = "failed"
    IMAGE_REJECTED = "rejected"  # exit code IMAGE_REJECTED_EXIT


def install_argv(command: tuple[str, ...], image: Path) -> list[str]:
    """The installer's argv: ``{image}`` replaced by the image path and ``{image_name}`` by its
    file name (e.g. ``chargepoint-firmware@{image_name}.service``), else the path appended.
    Each is one argument; nothing is ever interpreted by a shell."""
    if any("{image}" in part or "{image_name}" in part for part in command):
        return [
            part.replace("{image_name}", image.name).replace("{image}", str(image))
            for part in command
        ]
    return [*command, str(image)]


def image_location(location: str) -> Location | FtpLocation:
    """UpdateFirmware's location taken apart: http(s) or ftp(s), naming a file."""
    where = parse_location(location)
    if isinstance(where, FtpLocation) and not where.name:
        raise UnsupportedLocation(f"{where.shown}: names a directory, not an image")
    return where


# As chargepoint/blocks/diagnostics.py's _UNSAFE_IN_NAME: what a file name may hold.
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]")
FALLBACK_IMAGE_NAME = "firmware.bin"


def image_file_name(name: str) -> str:
    """The local file name for an image whose location ends in ``name`` (review L9): no path
    separator, no "..", no hidden file, at most 100 characters; else a fixed name."""
    safe = _UNSAFE_IN_NAME.sub("_", name)
    while ".." in safe:
        safe = safe.replace("..", ".")
    safe = safe.lstrip(".")[:100]
    return safe or FALLBACK_IMAGE_NAME


def read_version(version_file: Path | None) -> str | None:
    """The firmware version the installer left in ``version_file`` (first line), if any."""
    if version_file is None:
        return None
    try:
        text = version_file.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    return text.splitlines()[0][:50] if text else None


def read_chunks(path: Path, size: int = HASH_CHUNK) -> Iterator[bytes]:
    """The file's bytes, ``size`` at a time (opened on the first read: in the thread that
    iterates)."""
    with path.open("rb") as file:
        while chunk := file.read(size):
            yield chunk


def _no_roots() -> list[x509.Certificate]:
    return []


def _no_security_profile() -> int:
    return 0


class FirmwareUpdater:
    def __init__(
        self,
        *,
        context: Context,
        availability: Availability,
        transactions: Transactions,
        http: Callable[[], Awaitable[HttpClient]],
        settings: FirmwareSettings,
        reboot: Callable[[], Awaitable[None]],
        ftp: Callable[[], Awaitable[FtpClient]] | None = None,
        events: SecurityEventSink | None = None,
        manufacturer_roots: Callable[[], list[x509.Certificate]] = _no_roots,
        security_profile: Callable[[], int] = _no_security_profile,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._context = context
        self._availability = availability
        self._transactions = transactions
        self.db = context.db
        self.scheduler = context.scheduler
        self.transfers = TransferClients(http, ftp)
        self.settings = settings
        self.reboot = reboot
        self._events = events
        self._manufacturer_roots = manufacturer_roots
        self._security_profile = security_profile
        self._clock = clock  # judges the signing certificate's validity (review L18)
        self.status: FirmwareStatus | None = None  # None: idle
        self._task: asyncio.Task[None] | None = None
        # DownloadScheduled announcements: owned here, not by ``_task``, which the download
        # the scheduler starts replaces (review L17; style.md: every task has an owner).
        self._announcing: set[asyncio.Task[None]] = set()
        # SignedUpdateFirmware's answer, for its @after handler: (requestId, status, why).
        self._answered: tuple[int, UpdateFirmwareStatus, str | None] | None = None
        self.db.execute(SIGNED_TABLE)

    # -- life cycle --

    def start(self) -> None:
        """Pick up an update the last run left (after a reboot, a power cut or a restart)."""
        row = self._row()
        if row is None:
            return
        phase = row["phase"]
        signed = self._signed()
        if phase == "invalid_signature" and signed is not None:
            # Stopped before the status reached the CSMS: the event was not recorded yet.
            event = (
                SecurityEvent.INVALID_FIRMWARE_SIGNATURE,
                f"SignedUpdateFirmware {signed.request_id}: {Path(row['image']).name}: "
                "the signature did not verify",
            )
            self._context.after_boot(
                lambda: self._spawn(
                    self._report_final(FirmwareStatus.invalid_signature, signed, event=event)
                )
            )
        elif phase in FINAL_REPORTS:
            hook = self._booted_on_new_firmware if phase == "installed" else self._report_final
            report = self._final_status(phase, signed)
            self._context.after_boot(lambda: self._spawn(hook(report, signed)))
        elif phase == "downloaded" and signed is not None:
            self._spawn(self._verify_and_install(Path(row["image"]), signed))
        elif phase == "downloaded" or (phase == "verified" and signed is None):
            self._spawn(self._install_when_free(Path(row["image"]), None))
        elif phase == "verified" and signed is not None:
            self._spawn(self._install_at(Path(row["image"]), signed, announce=False))
        else:
            self._schedule(datetime.fromisoformat(row["retrieve_date"]))

    async def close(self) -> None:
        for job in (JOB_ID, INSTALL_JOB_ID):
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(job)
        tasks = [*self._announcing, *([self._task] if self._task is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- UpdateFirmware --

    def update(
        self, location: str, retrieve_date: datetime, retries: int, retry_interval: int
    ) -> None:
        """Take a new update (replacing one not yet installing), to run at ``retrieve_date``."""
        if self._cancel():
            log.warning("UpdateFirmware replaces the update in progress")
        with atomic(self.db):
            self._store(location, retrieve_date, retries, retry_interval)
            self.db.execute("DELETE FROM signed_firmware_update")
        log.info(
            "firmware update from %s scheduled for %s",
            redact_url(location),
            retrieve_date.isoformat(),
        )
        self._schedule(retrieve_date)

    def unsigned_refused(self) -> str | None:
        """Why UpdateFirmware is not taken now (whitepaper L01.FR.20), or None."""
        policy = self.settings.unsigned_updates
        if policy == UnsignedUpdates.REFUSED:
            return "UpdateFirmware is not supported: firmware must come with SignedUpdateFirmware"
        if policy == UnsignedUpdates.WITHOUT_SECURITY_PROFILE:
            profile = self._security_profile()
            if profile > 0:
                return (
                    f"UpdateFirmware is not supported under security profile {profile}: "
                    "firmware must come with SignedUpdateFirmware"
                )
        return None

    def trigger_status(self) -> FirmwareStatus:
        return self.status or FirmwareStatus.idle

    @on(Action.update_firmware)  # type: ignore[untyped-decorator]
    def _on_update_firmware(
        self,
        location: str,
        retrieve_date: str,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> call_result.UpdateFirmware:
        refused = self.unsigned_refused()
        if refused is not None:
            # A CallError, and nothing starts: the @after handler runs only after an answer.
            log.warning(
                "%s (firmware.unsigned_updates = %s)", refused, self.settings.unsigned_updates
            )
            raise NotSupportedError(refused)
        return call_result.UpdateFirmware()

    @after(Action.update_firmware)  # type: ignore[untyped-decorator]
    def _after_update_firmware(
        self,
        location: str,
        retrieve_date: str,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> None:
        # After the answer, so Downloading never overtakes UpdateFirmware.conf (§5.19).
        self.update(
            location,
            ocpp_datetime(retrieve_date),
            DEFAULT_RETRIES if retries is None else retries,
            DEFAULT_RETRY_INTERVAL if retry_interval is None else retry_interval,
        )

    # -- SignedUpdateFirmware --

    def decide_signed(self, signing_certificate: str) -> tuple[UpdateFirmwareStatus, str | None]:
        """SignedUpdateFirmware's answer, and why when it is InvalidCertificate or Rejected."""
        try:
            check_signing_certificate(
                signing_certificate, self._manufacturer_roots(), self._clock()
            )
        except SigningCertificateProblem as problem:
            return UpdateFirmwareStatus.invalid_certificate, str(problem)
        if self.status is FirmwareStatus.installing:
            return UpdateFirmwareStatus.rejected, "the installation in progress cannot be cancelled"
        row = self._row()
        if row is not None and row["phase"] in CANCELLABLE:
            return UpdateFirmwareStatus.accepted_canceled, None
        return UpdateFirmwareStatus.accepted, None

    def update_signed(
        self,
        request_id: int,
        location: str,
        retrieve_date: datetime,
        install_date: datetime | None,
        signing_certificate: str,
        signature: str,
        retries: int,
        retry_interval: int,
    ) -> None:
        """Take a signed update (its certificate checked), replacing one not yet installing."""
        if self._cancel():
            log.warning("SignedUpdateFirmware %d cancels the update in progress", request_id)
        signed = SignedUpdate(request_id, install_date, signing_certificate, signature)
        with atomic(self.db):
            self._store(location, retrieve_date, retries, retry_interval)
            self.db.execute(
                "INSERT OR REPLACE INTO signed_firmware_update "
                "(id, request_id, install_date, signing_certificate, signature, last_status) "
                "VALUES (1, ?, ?, ?, ?, NULL)",
                (
                    request_id,
                    install_date.isoformat() if install_date is not None else None,
                    signing_certificate,
                    signature,
                ),
            )
        log.info(
            "signed firmware update %d from %s scheduled for %s%s",
            request_id,
            redact_url(location),
            retrieve_date.isoformat(),
            f", to install at {install_date.isoformat()}" if install_date is not None else "",
        )
        self._schedule(retrieve_date)
        if retrieve_date > datetime.now(UTC):
            announcement = asyncio.create_task(
                self._announce(FirmwareStatus.download_scheduled, signed),  # L01.FR.13
                name="firmware announcement",
            )
            self._announcing.add(announcement)
            announcement.add_done_callback(self._announcing.discard)

    def signed_status(self) -> dict[str, Any]:
        """The SignedFirmwareStatusNotification for ExtendedTriggerMessage: the last status
        the signed update reached (sent, or dropped while offline: the CSMS asks because it
        may have missed it), with its requestId, or Idle when there is none or it was Installed
        (L01.FR.28/29, L01.FR.21)."""
        cursor = self.db.execute(
            "SELECT request_id, last_status FROM signed_firmware_update WHERE id = 1"
        )
        row = cursor.fetchone()
        if row is None or row[1] is None or row[1] == FirmwareStatus.installed:
            return {"status": FirmwareStatus.idle.value}
        return {"status": row[1], "requestId": row[0]}

    @on(Action.signed_update_firmware)  # type: ignore[untyped-decorator]
    def _on_signed_update_firmware(
        self,
        request_id: int,
        firmware: dict[str, Any],
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> call_result.SignedUpdateFirmware:
        # The certificate is checked before the answer (L01.FR.23).
        status, why = self.decide_signed(firmware["signing_certificate"])
        self._answered = (request_id, status, why)
        if why is not None:
            log.error("SignedUpdateFirmware %d: %s: %s", request_id, status.value, why)
        return call_result.SignedUpdateFirmware(status)

    @after(Action.signed_update_firmware)  # type: ignore[untyped-decorator]
    def _after_signed_update_firmware(
        self,
        request_id: int,
        firmware: dict[str, Any],
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> None:
        answered, self._answered = self._answered, None
        if answered is None or answered[0] != request_id:
            return
        _, status, why = answered
        if status is UpdateFirmwareStatus.invalid_certificate:
            # After the answer: the event's notification never overtakes it (L01.FR.02).
            self._record(
                SecurityEvent.INVALID_FIRMWARE_SIGNING_CERTIFICATE,
                f"SignedUpdateFirmware {request_id}: {why}",
            )
            return
        if status not in (UpdateFirmwareStatus.accepted, UpdateFirmwareStatus.accepted_canceled):
            return
        install = firmware.get("install_date_time")
        self.update_signed(
            request_id,
            firmware["location"],
            ocpp_datetime(firmware["retrieve_date_time"]),
            ocpp_datetime(install) if install is not None else None,
            firmware["signing_certificate"],
            firmware["signature"],
            DEFAULT_RETRIES if retries is None else retries,
            DEFAULT_RETRY_INTERVAL if retry_interval is None else retry_interval,
        )

    # -- the steps --

    def _store(self, location: str, retrieve_date: datetime, retries: int, interval: int) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO firmware_update "
            "(id, location, retrieve_date, retries, retry_interval, attempts, phase, image) "
            "VALUES (1, ?, ?, ?, ?, 0, 'waiting', NULL)",
            (location, retrieve_date.isoformat(), retries, interval),
        )

    def _cancel(self) -> bool:
        """Stop the update in progress, if any (its partial download stays for a resume);
        True if one was running."""
        running = self._task is not None and not self._task.done()
        if self._task is not None:
            self._task.cancel()
        for job in (JOB_ID, INSTALL_JOB_ID):
            with contextlib.suppress(JobLookupError):
                self.scheduler.remove_job(job)
        self._availability.set_blocked(False)
        self.status = None
        return running

    def _schedule(self, when: datetime) -> None:
        when = max(when, datetime.now(UTC))
        self.scheduler.add_job(
            self._due,
            DateTrigger(when),
            id=JOB_ID,
            replace_existing=True,
            misfire_grace_time=None,  # a date already past runs at once (architecture.md)
        )

    async def _announce(self, status: FirmwareStatus, signed: SignedUpdate) -> None:
        try:
            await self._notify(status, signed)
        except Exception:  # a task of its own: said here, not lost
            log.exception("SignedFirmwareStatusNotification %s failed", status.value)

    async def _due(self) -> None:
        self._spawn(self._download_and_install())

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("firmware update failed unexpectedly")

        task = asyncio.create_task(run(), name="firmware update")
        if inspect.iscoroutine(work):
            # Cancelled before it ran (a new update at once): ``work`` is closed, not leaked.
            task.add_done_callback(lambda _: work.close())
        self._task = task

    async def _download_and_install(self) -> None:
        row = self._row()
        if row is None:
            return
        signed = self._signed()
        location: str = row["location"]
        image = await self._download(location, row["retries"], row["retry_interval"], signed)
        if image is None:
            self.db.execute("DELETE FROM firmware_update")
            await self._notify(FirmwareStatus.download_failed, signed)
            self.status = None
            return
        self.db.execute(
            "UPDATE firmware_update SET phase = 'downloaded', image = ? WHERE id = 1", (str(image),)
        )
        await self._notify(FirmwareStatus.downloaded, signed)
        if signed is None:
            await self._install_when_free(image, None)
        else:
            await self._verify_and_install(image, signed)

    async def _download(
        self, location: str, retries: int, retry_interval: int, signed: SignedUpdate | None
    ) -> Path | None:
        self.status = FirmwareStatus.downloading
        await self._notify(FirmwareStatus.downloading, signed)
        try:
            where = image_location(location)
        except UnsupportedLocation as error:
            log.error("firmware download impossible: %s", error)
            return None
        dest = self.settings.directory / image_file_name(where.file_name)

        async def attempt(number: int) -> FetchResult:
            self.db.execute("UPDATE firmware_update SET attempts = ? WHERE id = 1", (number,))
            client = await self.transfers.client_for(where)
            return await client.fetch(location, dest, sha256=self.settings.sha256)

        result = await with_retries("firmware download", retries, retry_interval, attempt)
        if result is None:
            return None
        log.info(
            "firmware %s downloaded: %d bytes in %d requests, SHA-256 %s%s",
            dest.name,
            result.size,
            result.pieces,
            result.sha256,
            f" (resumed at byte {result.resumed_from})" if result.resumed_from else "",
        )
        return dest

    async def _verify_and_install(self, image: Path, signed: SignedUpdate) -> None:
        """Check the image's signature (L01.FR.04) before anything else changes."""
        self.status = FirmwareStatus.downloaded
        try:
            scheme = await _verified(image, signed)
        except (FirmwareSignatureProblem, OSError) as problem:
            await self._signature_rejected(image, signed, problem)
            return
        log.info("firmware %s: signature verified (%s)", image.name, scheme)
        self.db.execute("UPDATE firmware_update SET phase = 'verified' WHERE id = 1")
        await self._notify(FirmwareStatus.signature_verified, signed)
        await self._install_at(image, signed, announce=True)

    async def _signature_rejected(
        self, image: Path, signed: SignedUpdate, problem: Exception
    ) -> None:
        log.error("firmware %s rejected: %s", image.name, problem)
        # Never out of here: the phase must move on, or every restart verifies again.
        with contextlib.suppress(OSError):
            await asyncio.to_thread(image.unlink, missing_ok=True)
        self.db.execute("UPDATE firmware_update SET phase = 'invalid_signature' WHERE id = 1")
        self._availability.set_blocked(False)
        await self._report_final(
            FirmwareStatus.invalid_signature,
            signed,
            event=(
                SecurityEvent.INVALID_FIRMWARE_SIGNATURE,
                f"SignedUpdateFirmware {signed.request_id}: {image.name}: {problem}",
            ),
        )

    async def _install_at(self, image: Path, signed: SignedUpdate, *, announce: bool) -> None:
        """Install at installDateTime if it is still to come (L01.FR.16), else now."""
        self.status = FirmwareStatus.downloaded
        when = signed.install_date
        if when is None or when <= datetime.now(UTC):
            await self._install_when_free(image, signed)
            return
        log.info("firmware %s: installation scheduled for %s", image.name, when.isoformat())

        async def due() -> None:
            self._spawn(self._install_when_free(image, signed))

        self.scheduler.add_job(
            due,
            DateTrigger(when),
            id=INSTALL_JOB_ID,
            replace_existing=True,
            misfire_grace_time=None,
        )
        if announce:  # not again after a restart: the state was entered once
            await self._notify(FirmwareStatus.install_scheduled, signed)

    async def _install_when_free(self, image: Path, signed: SignedUpdate | None) -> None:
        self.status = FirmwareStatus.downloaded
        self._availability.set_blocked(True)  # free connectors Unavailable, no new starts
        transactions = self._transactions
        busy = transactions.charging_connectors()
        if busy:
            log.warning("firmware ready: waiting for the transactions on connectors %s", busy)
            await self._context.wait_until(lambda: not transactions.charging_connectors())
        if signed is not None:
            # Again right before installing: that may be days after the check (installDateTime,
            # a restart), and the image has lain on writable flash meanwhile.
            try:
                await _verified(image, signed)
            except (FirmwareSignatureProblem, OSError) as problem:
                await self._signature_rejected(image, signed, problem)
                return
        self.status = FirmwareStatus.installing
        await self._notify(FirmwareStatus.installing, signed)
        outcome = await self._run_installer(image)
        if outcome is InstallOutcome.DONE:
            self.db.execute("UPDATE firmware_update SET phase = 'installed' WHERE id = 1")
            log.warning("firmware installed from %s: rebooting", image.name)
            await self.reboot()
            return
        phase = "rejected" if outcome is InstallOutcome.IMAGE_REJECTED else "failed"
        self.db.execute("UPDATE firmware_update SET phase = ? WHERE id = 1", (phase,))
        self._availability.set_blocked(False)
        await self._report_final(self._final_status(phase, signed), signed)

    async def _run_installer(self, image: Path) -> InstallOutcome:
        command = self.settings.install_command
        if command is None:
            log.error("no firmware.install_command configured: cannot install %s", image)
            return InstallOutcome.FAILED
        argv = install_argv(command, image)
        log.warning("installing firmware: %s", " ".join(argv))
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
        except OSError as error:
            log.error("firmware installer %s could not be started: %s", argv[0], error)
            return InstallOutcome.FAILED
        try:
            async with asyncio.timeout(self.settings.install_timeout):
                output, _ = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            log.error("firmware installer killed after %g s", self.settings.install_timeout)
            return InstallOutcome.FAILED
        for line in output.decode(errors="replace").splitlines()[-20:]:
            log.info("installer: %s", line)
        if process.returncode == IMAGE_REJECTED_EXIT:
            log.error("firmware installer found that %s does not verify", image.name)
            return InstallOutcome.IMAGE_REJECTED
        if process.returncode != 0:
            log.error("firmware installer exited with %d", process.returncode)
            return InstallOutcome.FAILED
        return InstallOutcome.DONE

    @staticmethod
    def _final_status(phase: str, signed: SignedUpdate | None) -> FirmwareStatus:
        if signed is None and phase == "rejected":
            return FirmwareStatus.installation_failed  # OCPP 1.6 has nothing finer
        return FINAL_REPORTS[phase]

    async def _booted_on_new_firmware(
        self, status: FirmwareStatus, signed: SignedUpdate | None
    ) -> None:
        """The first accepted boot on the installed firmware: FirmwareUpdated, once."""
        self.db.execute("UPDATE firmware_update SET phase = 'booted' WHERE id = 1")
        self._record(
            SecurityEvent.FIRMWARE_UPDATED,
            f"SignedUpdateFirmware {signed.request_id}" if signed else "UpdateFirmware",
        )
        await self._report_final(status, signed)

    async def _report_final(
        self,
        status: FirmwareStatus,
        signed: SignedUpdate | None,
        *,
        event: tuple[SecurityEvent, str] | None = None,
    ) -> None:
        """The final status, until the CSMS has it; then ``event`` is recorded (queued after
        the status, as for TC_077/TC_078: OCTT TC_081 step 7 follows step 5; review L14) and
        the row goes (a restart in between reports and records again: at least once)."""
        self.status = None
        if await self._notify(status, signed, wait=True):
            if event is not None:
                self._record(*event)
            # Only this update's row: a new one may have replaced it meanwhile.
            marks = ", ".join("?" * len(FINAL_REPORTS))
            self.db.execute(
                f"DELETE FROM firmware_update WHERE phase IN ({marks})", tuple(FINAL_REPORTS)
            )

    async def _notify(
        self, status: FirmwareStatus, signed: SignedUpdate | None, *, wait: bool = False
    ) -> bool:
        """(Signed)FirmwareStatusNotification; with ``wait``, until the CSMS has it (final
        statuses). A signed update's carries its requestId (L01.FR.10)."""
        context = self._context
        if signed is None:
            action, payload = "FirmwareStatusNotification", {"status": status.value}
        else:
            action = "SignedFirmwareStatusNotification"
            payload = {"status": status.value, "requestId": signed.request_id}
            self.db.execute(
                "UPDATE signed_firmware_update SET last_status = ? WHERE request_id = ?",
                (status.value, signed.request_id),
            )
        while True:
            if wait and not context.online:
                await context.wait_until(lambda: context.online)
            answer = await context.send(action, payload)
            if answer is not None or not wait:
                return answer is not None
            await asyncio.sleep(NOTIFY_RETRY)

    def _record(self, event: SecurityEvent, tech_info: str) -> None:
        if self._events is None:  # the sink logs what it records
            log.warning("security event %s: %s", event.value, tech_info)
            return
        self._events(event, tech_info[:TECH_INFO])

    def _row(self) -> sqlite3.Row | None:
        cursor = self.db.execute("SELECT * FROM firmware_update WHERE id = 1")
        cursor.row_factory = sqlite3.Row
        row: sqlite3.Row | None = cursor.fetchone()
        return row

    def _signed(self) -> SignedUpdate | None:
        """The signed part of the update in the firmware_update row, if it is signed."""
        cursor = self.db.execute(
            "SELECT request_id, install_date, signing_certificate, signature "
            "FROM signed_firmware_update WHERE id = 1"
        )
        row = cursor.fetchone()
        if row is None:
            return None
        install = datetime.fromisoformat(row[1]) if row[1] is not None else None
        return SignedUpdate(row[0], install, row[2], row[3])


async def _verified(image: Path, signed: SignedUpdate) -> str:
    """The scheme the image's signature verified with (L01.FR.04). Images are megabytes:
    hashed in a thread, so the OCPP session goes on meanwhile."""
    return await asyncio.to_thread(
        verify_image, signed.certificate, signed.signature, read_chunks(image)
    )
