"""Firmware management functional block: UpdateFirmware (OCPP 1.6 §5.19, §4.5; OCTT
TC_044_1/2/3): download, wait, install, reboot.

The update is one row in the state database, so it survives a restart at any point:

* ``waiting``: not yet downloaded. At ``retrieveDate`` (a date in the past runs at once) the
  image is fetched into ``<state>/firmware/`` through the link's client for the location's
  scheme — HTTP(S) in Range pieces, FTP(S) from the last good byte (REST) — resuming a partial
  file either way, with ``retries`` further attempts ``retryInterval`` apart; another scheme
  fails at once with a log line naming the four that work. A password in the location is
  used, never logged.
  FirmwareStatusNotification Downloading, then Downloaded or DownloadFailed.
* ``downloaded``: the connectors not charging become Unavailable and the update waits for the
  running transactions to end (§5.19 "Waiting for transactions to finish"), then Installing:
  the installer command runs with the image path as an argument (argv, never a shell).
* ``installed``: the installer succeeded; the reboot hook runs (default: the daemon restarts
  itself). After the next accepted BootNotification and the connector statuses, Installed is
  reported (TC_044_1 steps 9-13) and the row goes. The new version is read from
  ``firmware.version_file`` for that BootNotification.
* ``failed``: the installer failed: InstallationFailed is reported (after the next boot if it
  could not be sent), the old firmware stays, the connectors are Available again.

TriggerMessage(FirmwareStatusNotification) gets the current status, or Idle (§4.5).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.triggers.date import DateTrigger
from ocpp.routing import after, on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, FirmwareStatus

from chargepoint.blocks.availability import Availability
from chargepoint.blocks.context import Context
from chargepoint.blocks.transactions import Transactions
from chargepoint.blocks.transfer_retries import (
    DEFAULT_RETRIES,
    DEFAULT_RETRY_INTERVAL,
    ocpp_datetime,
    with_retries,
)
from transport.errors import UnsupportedLocation
from transport.ftp import FtpClient, FtpLocation, parse_location
from transport.http import FetchResult, HttpClient, Location, redact_url
from transport.link import TransferClients

log = logging.getLogger(__name__)

JOB_ID = "firmware update"
NOTIFY_RETRY = 10.0


@dataclass(frozen=True, slots=True)
class FirmwareSettings:
    directory: Path  # where images are downloaded (<storage>/firmware)
    install_command: tuple[str, ...] | None = None
    reboot_command: tuple[str, ...] | None = None
    install_timeout: float = 600.0
    sha256: str | None = None  # only for tests: UpdateFirmware carries no checksum


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


def read_version(version_file: Path | None) -> str | None:
    """The firmware version the installer left in ``version_file`` (first line), if any."""
    if version_file is None:
        return None
    try:
        text = version_file.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    return text.splitlines()[0][:50] if text else None


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
    ) -> None:
        self._context = context
        self._availability = availability
        self._transactions = transactions
        self.db = context.db
        self.scheduler = context.scheduler
        self.transfers = TransferClients(http, ftp)
        self.settings = settings
        self.reboot = reboot
        self.status: FirmwareStatus | None = None  # None: idle
        self._task: asyncio.Task[None] | None = None

    # -- life cycle --

    def start(self) -> None:
        """Pick up an update the last run left (after a reboot, a power cut or a restart)."""
        row = self._row()
        if row is None:
            return
        phase = row["phase"]
        if phase in ("installed", "failed"):
            report = (
                FirmwareStatus.installed
                if phase == "installed"
                else FirmwareStatus.installation_failed
            )
            self._context.after_boot(lambda: self._spawn(self._report_final(report)))
        elif phase == "downloaded":
            self._spawn(self._install_when_free(Path(row["image"])))
        else:
            self._schedule(datetime.fromisoformat(row["retrieve_date"]))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.scheduler.remove_job(JOB_ID)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    # -- UpdateFirmware --

    def update(
        self, location: str, retrieve_date: datetime, retries: int, retry_interval: int
    ) -> None:
        """Take a new update (replacing one not yet installing), to run at ``retrieve_date``."""
        if self._task is not None and not self._task.done():
            log.warning("UpdateFirmware replaces the update in progress")
            self._task.cancel()
        self._availability.set_blocked(False)
        self.status = None
        self.db.execute(
            "INSERT OR REPLACE INTO firmware_update "
            "(id, location, retrieve_date, retries, retry_interval, attempts, phase, image) "
            "VALUES (1, ?, ?, ?, ?, 0, 'waiting', NULL)",
            (location, retrieve_date.isoformat(), retries, retry_interval),
        )
        log.info(
            "firmware update from %s scheduled for %s",
            redact_url(location),
            retrieve_date.isoformat(),
        )
        self._schedule(retrieve_date)

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

    # -- the steps --

    def _schedule(self, when: datetime) -> None:
        when = max(when, datetime.now(UTC))
        self.scheduler.add_job(
            self._due,
            DateTrigger(when),
            id=JOB_ID,
            replace_existing=True,
            misfire_grace_time=None,  # a date already past runs at once (architecture.md)
        )

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

        self._task = asyncio.create_task(run(), name="firmware update")

    async def _download_and_install(self) -> None:
        row = self._row()
        if row is None:
            return
        location: str = row["location"]
        image = await self._download(location, row["retries"], row["retry_interval"])
        if image is None:
            self.db.execute("DELETE FROM firmware_update")
            await self._notify(FirmwareStatus.download_failed)
            self.status = None
            return
        self.db.execute(
            "UPDATE firmware_update SET phase = 'downloaded', image = ? WHERE id = 1", (str(image),)
        )
        await self._notify(FirmwareStatus.downloaded)
        await self._install_when_free(image)

    async def _download(self, location: str, retries: int, retry_interval: int) -> Path | None:
        self.status = FirmwareStatus.downloading
        await self._notify(FirmwareStatus.downloading)
        try:
            where = image_location(location)
        except UnsupportedLocation as error:
            log.error("firmware download impossible: %s", error)
            return None
        dest = self.settings.directory / where.file_name

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

    async def _install_when_free(self, image: Path) -> None:
        self.status = FirmwareStatus.downloaded
        self._availability.set_blocked(True)  # free connectors Unavailable, no new starts
        transactions = self._transactions
        busy = transactions.charging_connectors()
        if busy:
            log.warning("firmware ready: waiting for the transactions on connectors %s", busy)
            await self._context.wait_until(lambda: not transactions.charging_connectors())
        self.status = FirmwareStatus.installing
        await self._notify(FirmwareStatus.installing)
        if await self._run_installer(image):
            self.db.execute("UPDATE firmware_update SET phase = 'installed' WHERE id = 1")
            log.warning("firmware installed from %s: rebooting", image.name)
            await self.reboot()
            return
        self.db.execute("UPDATE firmware_update SET phase = 'failed' WHERE id = 1")
        self._availability.set_blocked(False)
        await self._report_final(FirmwareStatus.installation_failed)

    async def _run_installer(self, image: Path) -> bool:
        command = self.settings.install_command
        if command is None:
            log.error("no firmware.install_command configured: cannot install %s", image)
            return False
        argv = install_argv(command, image)
        log.warning("installing firmware: %s", " ".join(argv))
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
        except OSError as error:
            log.error("firmware installer %s could not be started: %s", argv[0], error)
            return False
        try:
            async with asyncio.timeout(self.settings.install_timeout):
                output, _ = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            log.error("firmware installer killed after %g s", self.settings.install_timeout)
            return False
        for line in output.decode(errors="replace").splitlines()[-20:]:
            log.info("installer: %s", line)
        if process.returncode != 0:
            log.error("firmware installer exited with %d", process.returncode)
            return False
        return True

    async def _report_final(self, status: FirmwareStatus) -> None:
        self.status = None
        if await self._notify(status, wait=True):
            self.db.execute("DELETE FROM firmware_update")

    async def _notify(self, status: FirmwareStatus, *, wait: bool = False) -> bool:
        """FirmwareStatusNotification; with ``wait``, until the CSMS has it (final statuses)."""
        context = self._context
        while True:
            if wait and not context.online:
                await context.wait_until(lambda: context.online)
            answer = await context.send("FirmwareStatusNotification", {"status": status.value})
            if answer is not None or not wait:
                return answer is not None
            await asyncio.sleep(NOTIFY_RETRY)

    def _row(self) -> sqlite3.Row | None:
        cursor = self.db.execute("SELECT * FROM firmware_update WHERE id = 1")
        cursor.row_factory = sqlite3.Row
        row: sqlite3.Row | None = cursor.fetchone()
        return row
