"""Security events (OCPP 1.6 security whitepaper §8, use case A04): what happened, in the
local security log (A04.FR.04, :mod:`chargepoint.security_log`) and to the CSMS as a
SecurityEventNotification (A04.FR.01) queued in the durable outbox, so it is delivered in
order after the boot, through outages and restarts, and retried like a transaction message
(A04.FR.02), at most ``BURST`` at once and ``PER_HOUR`` an hour of each type (the rest
is in the log, and the next notification says how many). Every event of
:class:`SecurityEvent` is notified, not only the ones §8 marks critical: issue 18 lists all
eighteen, and a CSMS that keeps a fleet's audit trail wants the failed authentications and
invalid certificates most of all.

The block also watches for two events no other block sees:

* TamperDetectionActivated, when the hardware reports :class:`TamperDetected`;
* MemoryExhaustion, from a daily check of the free space where the state lives (the SQLite
  database with the outbox, the security log, firmware images): under ``min_free_bytes``
  (16 MiB unless told, room for the outbox to grow through a long outage and for the log to
  rotate) it is recorded once, and again only after the space has recovered and run low anew;
* SettingSystemTime, when the controller's clock moved (NTP after a boot with an empty RTC,
  an operator's ``timedatectl``): every ``CLOCK_CHECK`` the wall clock's progress is compared
  with the monotonic clock's, and a difference over ``CLOCK_JUMP`` is the clock being set. The
  daemon never sets the system time itself; this is what it can see of whoever does;
* SecurityLogWasCleared, at start, when the state database says a security log was written
  before and none is there any more.
"""

from __future__ import annotations

import enum
import logging
import shutil
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from apscheduler.triggers.interval import IntervalTrigger

from chargepoint.hardware.charger import TamperDetected
from chargepoint.model.transactions import timestamp
from chargepoint.security_log import TECH_INFO_MAX, SecurityLog

if TYPE_CHECKING:
    from chargepoint.blocks.context import Context

logger = logging.getLogger(__name__)

NOTIFICATION = "SecurityEventNotification"
MIN_FREE_BYTES = 16 * 1024 * 1024
CHECK_JOB = "security free space"
CLOCK_JOB = "security clock watch"
CLOCK_CHECK = 600.0  # seconds between two looks at the clock (144 wake-ups a day)
CLOCK_JUMP = 60.0  # seconds the wall clock may drift from the monotonic one between looks
BURST = 10  # notifications of one event type queued at once at most...
PER_HOUR = 10  # ...and this many an hour after that (the log keeps every one)
SCHEMA = """
CREATE TABLE IF NOT EXISTS security_log_written (
    id INTEGER PRIMARY KEY CHECK (id = 1)  -- a row: this charge point's log had lines
);
"""
_MIB = 1024 * 1024


class SecurityEvent(enum.StrEnum):
    """The whitepaper's §8 list, by its exact names."""

    FIRMWARE_UPDATED = "FirmwareUpdated"
    FAILED_TO_AUTHENTICATE_AT_CENTRAL_SYSTEM = "FailedToAuthenticateAtCentralSystem"
    CENTRAL_SYSTEM_FAILED_TO_AUTHENTICATE = "CentralSystemFailedToAuthenticate"
    SETTING_SYSTEM_TIME = "SettingSystemTime"
    STARTUP_OF_THE_DEVICE = "StartupOfTheDevice"
    RESET_OR_REBOOT = "ResetOrReboot"
    SECURITY_LOG_WAS_CLEARED = "SecurityLogWasCleared"
    RECONFIGURATION_OF_SECURITY_PARAMETERS = "ReconfigurationOfSecurityParameters"
    MEMORY_EXHAUSTION = "MemoryExhaustion"
    INVALID_MESSAGES = "InvalidMessages"
    ATTEMPTED_REPLAY_ATTACKS = "AttemptedReplayAttacks"
    TAMPER_DETECTION_ACTIVATED = "TamperDetectionActivated"
    INVALID_FIRMWARE_SIGNATURE = "InvalidFirmwareSignature"
    INVALID_FIRMWARE_SIGNING_CERTIFICATE = "InvalidFirmwareSigningCertificate"
    INVALID_CENTRAL_SYSTEM_CERTIFICATE = "InvalidCentralSystemCertificate"
    INVALID_CHARGE_POINT_CERTIFICATE = "InvalidChargePointCertificate"
    INVALID_TLS_VERSION = "InvalidTLSVersion"
    INVALID_TLS_CIPHER_SUITE = "InvalidTLSCipherSuite"


# Record one event: its type and a technical detail for the CSMS (techInfo, at most 255
# characters; never a secret). Blocks take this callable, not the class, so they can be built
# and tested without the log.
SecurityEventSink = Callable[[SecurityEvent, str | None], None]


class FreeSpace(Protocol):
    @property
    def free(self) -> int: ...


class DiskUsage(NamedTuple):
    """What :func:`shutil.disk_usage` gives (tests make their own)."""

    total: int
    used: int
    free: int


class _Budget:
    """How many notifications of one event type may be queued: ``PER_HOUR`` an hour, up to
    ``BURST`` at once (a token bucket). A flapping tamper switch or a CSMS sending bad
    certificates in a loop must not fill the flash through a weeks-long outage; every event
    stays in the (bounded) security log."""

    def __init__(self, now: float) -> None:
        self.tokens = float(BURST)
        self.since = now
        self.held = 0

    def take(self, now: float) -> int | None:
        """None: not queued (counted); else the number held back since the last one queued."""
        self.tokens = min(BURST, self.tokens + (now - self.since) * PER_HOUR / 3600)
        self.since = now
        if self.tokens < 1:
            self.held += 1
            return None
        self.tokens -= 1
        held, self.held = self.held, 0
        return held


class SecurityEvents:
    """Records security events: a line in the security log and a queued notification."""

    def __init__(
        self,
        context: Context,
        log: SecurityLog,
        *,
        storage: Path | None = None,
        min_free_bytes: int = MIN_FREE_BYTES,
        disk_usage: Callable[[Path], FreeSpace] = shutil.disk_usage,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._context = context
        self.log = log
        self._monotonic = monotonic
        self._clock_mark = (clock(), monotonic())
        self._written = False
        # Read before this run writes anything: whether an earlier run's log had lines.
        self._written_before = self._log_written_before()
        # The directory watched for free space: the state directory (the security log's).
        self.storage = storage or (log.path.parent if log.path is not None else None)
        self.min_free_bytes = min_free_bytes
        self._disk_usage = disk_usage
        self._clock = clock
        self._low_on_space = False
        self._budget: dict[SecurityEvent, _Budget] = {}
        context.on_hardware(TamperDetected, self._on_tamper)

    def record(self, event: SecurityEvent, tech_info: str | None = None) -> None:
        """Log ``event`` and queue its SecurityEventNotification (synchronous; never raises:
        a caller's own work must not fail because the disk is full)."""
        when = self._clock()
        info = tech_info[:TECH_INFO_MAX] if tech_info else None
        logger.info("security event %s%s", event.value, f": {info}" if info else "")
        self.log.write(event.value, info, when)
        self._note_written()
        budget = self._budget.setdefault(event, _Budget(self._monotonic()))
        held = budget.take(self._monotonic())
        if held is None:
            return  # logged here; the CSMS hears of it with the next one let through
        if held:
            note = f" ({held} more in the security log)"
            info = (info or "")[: TECH_INFO_MAX - len(note)] + note
        payload = {"type": event.value, "timestamp": timestamp(when.astimezone(UTC))}
        if info:
            payload["techInfo"] = info.strip()
        try:
            self._context.outbox.put(NOTIFICATION, payload, None)
        except sqlite3.Error as error:
            logger.error("security event %s not queued for the CSMS: %s", event.value, error)

    # -- what the block watches itself --

    def _note_written(self) -> None:
        if self._written or self.log.path is None:
            return
        try:
            self._context.db.execute("INSERT OR IGNORE INTO security_log_written VALUES (1)")
            self._written = True
        except sqlite3.Error as error:
            logger.error("cannot note that the security log was written: %s", error)

    def start(self) -> None:
        """The daily free-space check (the first one now), the clock watch, and whether the
        security log was cleared since the last run."""
        self._check_cleared()
        self._context.scheduler.add_job(
            self._clock_check,
            IntervalTrigger(seconds=CLOCK_CHECK, timezone=UTC),
            id=CLOCK_JOB,
            replace_existing=True,
            coalesce=True,
            misfire_grace_time=None,
        )
        if self.storage is None:
            return
        self._context.scheduler.add_job(
            self._daily_check,
            IntervalTrigger(days=1, timezone=UTC),
            id=CHECK_JOB,
            replace_existing=True,
            next_run_time=datetime.now(UTC),
            coalesce=True,
            misfire_grace_time=None,
        )

    async def _daily_check(self) -> None:  # async: apscheduler runs it on the event loop
        self.check_free_space()

    async def _clock_check(self) -> None:
        self.check_clock()

    def check_clock(self) -> float:
        """How far the wall clock moved beyond the time that passed since the last check; past
        ``CLOCK_JUMP`` either way, SettingSystemTime is recorded."""
        then_wall, then_mono = self._clock_mark
        now_wall, now_mono = self._clock(), self._monotonic()
        self._clock_mark = (now_wall, now_mono)
        jump = (now_wall - then_wall).total_seconds() - (now_mono - then_mono)
        if abs(jump) > CLOCK_JUMP:
            self.record(
                SecurityEvent.SETTING_SYSTEM_TIME,
                f"the controller's clock was set {jump:+.0f} s (now {timestamp(now_wall)})",
            )
        return jump

    def _log_written_before(self) -> bool:
        if self.log.path is None:
            return False
        try:
            self._context.db.executescript(SCHEMA)
            row = self._context.db.execute("SELECT 1 FROM security_log_written").fetchone()
        except sqlite3.Error as error:
            logger.error("cannot tell whether the security log was written before: %s", error)
            return False
        return row is not None

    def _check_cleared(self) -> None:
        if self.log.path is None or self.log.found:
            return
        if self._written_before:
            self._written_before = False  # told once
            self.record(
                SecurityEvent.SECURITY_LOG_WAS_CLEARED,
                f"{self.log.path.name} was written before and is gone",
            )

    def check_free_space(self) -> bool:
        """Whether the storage directory has less than ``min_free_bytes`` free; the first time
        it has, MemoryExhaustion is recorded."""
        if self.storage is None:
            return False
        try:
            usage = self._disk_usage(self.storage)
        except OSError as error:
            logger.warning("free space of %s unknown: %s", self.storage, error)
            return self._low_on_space
        low = usage.free < self.min_free_bytes
        if low and not self._low_on_space:
            self.record(
                SecurityEvent.MEMORY_EXHAUSTION,
                f"{usage.free / _MIB:.1f} MiB free in the state directory "
                f"(under {self.min_free_bytes / _MIB:g} MiB)",
            )
        self._low_on_space = low
        return low

    async def _on_tamper(self, event: TamperDetected) -> None:
        self.record(SecurityEvent.TAMPER_DETECTION_ACTIVATED, event.info)
