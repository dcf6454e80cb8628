"""Diagnostics functional block: GetDiagnostics (OCPP 1.6 §5.9, §4.4, errata §3.31; OCTT
TC_045_1/2) and GetLog (security whitepaper N01; OCTT TC_079_CS): one file, uploaded.

The archive (tar.gz) holds what a support engineer asks for first:

* ``logs/``: the daemon's log files (``diagnostics.log_files`` globs), only the lines between
  ``startTime`` and ``stopTime`` when given (a line without a timestamp goes with the one
  before it), the newest ``max_log_bytes`` of each;
* ``ocpp-frames.jsonl``: the OCPP frame trace for the same window;
* ``configuration.toml`` with every secret replaced by ``***``, and ``ocpp-keys.json`` (the
  keys GetConfiguration shows: AuthorizationKey never);
* ``module.json``: the module's identity (manufacturer, model, firmware, IMEI, ICCID, IMSI).

It is uploaded through the link's client for the location's scheme (through the module on a
cellular charger): an http(s) location gets a multipart/form-data POST, an ftp(s) location
names the directory the archive is stored in (OCPP 1.6 §6.27); ``retries`` more attempts
``retryInterval`` apart: DiagnosticsStatusNotification Uploading, then Uploaded or
UploadFailed. Another scheme is UploadFailed at once, with a log line naming the four that
work. A password in the location is used, never logged, and hidden in the archive's frames.
TriggerMessage(DiagnosticsStatusNotification) gets Uploading while busy, otherwise Idle.

GetLog uploads the same way: DiagnosticsLog is the archive above (N01.FR.04), SecurityLog the
security log's JSON lines (:mod:`chargepoint.security_log`, N01.FR.03), both for the window
[oldestTimestamp, latestTimestamp]. GetLog.conf says Accepted and the file name (N01.FR.01),
AcceptedCanceled when it cancels an upload still running (N01.FR.11; the cancelled one sends
nothing more), Rejected for a SecurityLog when this charge point keeps none. Then
LogStatusNotification Uploading (N01.FR.08), Uploaded (N01.FR.09) or UploadFailure after the
retries (N01.FR.10), each with the request's requestId (N01.FR.07). A location of another
scheme, or of a protocol SupportedFileTransferProtocols does not name, is BadMessage at once
with no Uploading (no upload started); one the link refuses when asked for its client (FTP
on the Wi-Fi module) is BadMessage after Uploading, with no retries: none could change that.
ExtendedTriggerMessage(LogStatusNotification) gets :meth:`log_status`.
"""

from __future__ import annotations

import asyncio
import glob
import io
import json
import logging
import re
import tarfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ocpp.exceptions import PropertyConstraintViolationError
from ocpp.routing import after, on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, DiagnosticsStatus, Log, LogStatus, UploadLogStatus

from chargepoint.blocks.context import Context
from chargepoint.blocks.transfer_retries import (
    DEFAULT_RETRIES,
    DEFAULT_RETRY_INTERVAL,
    ocpp_datetime,
    with_retries,
)
from chargepoint.protocol.frame_trace import FrameTrace
from chargepoint.security_log import SecurityLog
from transport.errors import UnsupportedLocation
from transport.ftp import FtpClient, FtpLocation, parse_location
from transport.http import HttpClient, Location, redact_url
from transport.link import TransferClients

log = logging.getLogger(__name__)

_LOG_TIME = re.compile(r"(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)")
_SECRET = r"[A-Za-z0-9_.]*(?:password|passwd|secret|token|sim_pin|pin|key)"
# A secret's line (dotted keys too: csms.password = ...), and one inside an inline table.
_SECRET_LINE = re.compile(rf"^(\s*[\"']?{_SECRET}[\"']?\s*=\s*).*$", re.IGNORECASE | re.MULTILINE)
_SECRET_INLINE = re.compile(
    rf"([{{,]\s*[\"']?{_SECRET}[\"']?\s*=\s*)(\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^,}}\s]+)",
    re.IGNORECASE,
)
NOTIFY_RETRY = 10.0  # s between two tries of a final LogStatusNotification the CSMS did not answer
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]")
_PROTOCOLS = "SupportedFileTransferProtocols"


class _LinkRefused(Exception):
    """The link has no client for the location's scheme (the Wi-Fi module and FTP)."""


@dataclass(frozen=True, slots=True)
class LogRequest:
    """One GetLog.req, as the upload task needs it."""

    request_id: int
    log_type: Log
    location: str
    retries: int
    retry_interval: int
    start: datetime | None
    stop: datetime | None
    name: str


@dataclass(frozen=True, slots=True)
class DiagnosticsSettings:
    log_files: tuple[str, ...] = ()  # glob patterns
    config_file: Path | None = None
    max_log_bytes: int = 2 * 1024 * 1024


def redact_config(text: str) -> str:
    """The configuration file with every secret's value replaced (passwords, PIN, keys)."""
    text = _SECRET_LINE.sub(lambda m: m.group(1) + '"***"', text)
    text = _SECRET_INLINE.sub(lambda m: m.group(1) + '"***"', text)
    return redact_url(text)


def _line_time(line: str) -> datetime | None:
    match = _LOG_TIME.match(line)
    if match is None:
        return None
    try:
        local = datetime.fromisoformat(match.group(1).replace(" ", "T"))
    except ValueError:
        return None
    return local.astimezone(UTC)  # log lines are written in local time


def _truncated(start: datetime | None, unit: int) -> datetime | None:
    """``start`` at the resolution of the stamps it is compared with (``unit`` microseconds):
    they are truncated, so a line from the same second (a frame from the same millisecond) as
    a startTime with microseconds is inside the window, not before it."""
    return start.replace(microsecond=start.microsecond // unit * unit) if start else None


def select_lines(lines: Iterable[str], start: datetime | None, stop: datetime | None) -> list[str]:
    """The lines stamped between ``start`` and ``stop``; unstamped lines follow their stamped
    predecessor (a traceback stays with its message)."""
    kept: list[str] = []
    keep = start is None
    start = _truncated(start, 1_000_000)  # log lines are read to the second
    for line in lines:
        stamp = _line_time(line)
        if stamp is not None:
            keep = (start is None or stamp >= start) and (stop is None or stamp <= stop)
        if keep:
            kept.append(line)
    return kept


class DiagnosticsUploader:
    def __init__(
        self,
        *,
        charge_point_id: str,
        context: Context,
        http: Callable[[], Awaitable[HttpClient]],
        settings: DiagnosticsSettings,
        trace: FrameTrace | None,
        identity: Callable[[], dict[str, Any]],
        ftp: Callable[[], Awaitable[FtpClient]] | None = None,
        security_log: SecurityLog | None = None,
    ) -> None:
        self.charge_point_id = charge_point_id
        self._context = context
        self._name = ""
        self.transfers = TransferClients(http, ftp)
        self.settings = settings
        self.trace = trace
        self.identity = identity
        self.status: DiagnosticsStatus | None = None
        self._task: asyncio.Task[None] | None = None
        self.security_log = security_log
        self._log_name = ""
        self._log_window: tuple[datetime | None, datetime | None] = (None, None)
        self._log_task: asyncio.Task[None] | None = None
        self._log_job: LogRequest | None = None  # the GetLog whose upload is under way
        self._finishing: set[asyncio.Task[None]] = set()  # uploaded, telling the CSMS

    def file_name(self) -> str:
        """The name of the archive a request now will upload (GetDiagnostics.conf): one path
        segment whatever the identity holds ("CP/1" gives "CP_1"), so an FTP server stores it
        in the location's directory, not in a subdirectory."""
        return self._upload_name("diagnostics", "tar.gz")

    def log_file_name(self, log_type: Log) -> str:
        """The name GetLog.conf announces: the diagnostics archive's, or one for the security
        log's JSON lines; one path segment, as :meth:`file_name`."""
        if log_type is Log.diagnostics_log:
            return self.file_name()
        return self._upload_name("securitylog", "jsonl")

    def _upload_name(self, what: str, suffix: str) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        station = _UNSAFE_IN_NAME.sub("_", self.charge_point_id)
        return f"{what}-{station}-{stamp}.{suffix}"

    def request(
        self,
        location: str,
        retries: int,
        retry_interval: int,
        start: datetime | None,
        stop: datetime | None,
        name: str,
    ) -> None:
        """Start collecting and uploading (after GetDiagnostics.conf has gone out)."""
        if self._task is not None and not self._task.done():
            log.warning("GetDiagnostics replaces the upload in progress")
            self._task.cancel()
        self._task = asyncio.create_task(
            self._run(location, retries, retry_interval, start, stop, name), name="diagnostics"
        )

    def trigger_status(self) -> DiagnosticsStatus:
        return self.status or DiagnosticsStatus.idle

    @on(Action.get_diagnostics)  # type: ignore[untyped-decorator]
    def _on_get_diagnostics(
        self,
        location: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        start_time: str | None = None,
        stop_time: str | None = None,
    ) -> call_result.GetDiagnostics:
        self._name = self.file_name()
        return call_result.GetDiagnostics(file_name=self._name)

    @after(Action.get_diagnostics)  # type: ignore[untyped-decorator]
    def _after_get_diagnostics(
        self,
        location: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        start_time: str | None = None,
        stop_time: str | None = None,
    ) -> None:
        self.request(
            location,
            DEFAULT_RETRIES if retries is None else retries,
            DEFAULT_RETRY_INTERVAL if retry_interval is None else retry_interval,
            ocpp_datetime(start_time) if start_time else None,
            ocpp_datetime(stop_time) if stop_time else None,
            self._name,
        )

    # -- GetLog (security whitepaper N01) --

    def log_status(self) -> dict[str, Any]:
        """The LogStatusNotification an ExtendedTriggerMessage asks for: Uploading with the
        requestId while an upload runs, otherwise Idle and no requestId (N01.FR.12)."""
        job = self._log_job
        if job is None:
            return {"status": UploadLogStatus.idle.value}
        return {"status": UploadLogStatus.uploading.value, "requestId": job.request_id}

    def request_log(self, request: LogRequest) -> None:
        """Start collecting and uploading (after GetLog.conf has gone out); an upload still
        running is cancelled first (N01.FR.11)."""
        previous = self._log_task
        if previous is not None and not previous.done() and self._log_job is not None:
            log.warning("GetLog %d cancels the log upload in progress", request.request_id)
            previous.cancel()
        else:
            if previous is not None and not previous.done():
                # Uploaded already; only its final LogStatusNotification is on its way.
                self._finishing.add(previous)
                previous.add_done_callback(self._finishing.discard)
            previous = None
        self._log_job = request  # busy from now on: a GetLog after this one cancels it
        self._log_task = asyncio.create_task(self._run_log(request, previous), name="log upload")

    @on(Action.get_log)  # type: ignore[untyped-decorator]
    def _on_get_log(
        self,
        log: dict[str, Any],
        log_type: str,
        request_id: int,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> call_result.GetLog:
        kind = Log(log_type)
        self._log_window = _window(log)  # a date that is none is a CallError, no upload
        if kind is Log.security_log and self.security_log is None:
            return call_result.GetLog(status=LogStatus.rejected)  # no such log here
        self._log_name = self.log_file_name(kind)
        # Busy while the upload runs; once it is over (the final LogStatusNotification may
        # still wait for its answer) a new GetLog cancels nothing (N01.FR.11).
        busy = self._log_job is not None
        status = LogStatus.accepted_canceled if busy else LogStatus.accepted
        return call_result.GetLog(status=status, filename=self._log_name)

    @after(Action.get_log)  # type: ignore[untyped-decorator]
    def _after_get_log(
        self,
        log: dict[str, Any],
        log_type: str,
        request_id: int,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> None:
        kind = Log(log_type)
        if kind is Log.security_log and self.security_log is None:
            return
        start, stop = self._log_window
        self.request_log(
            LogRequest(
                request_id=request_id,
                log_type=kind,
                location=log["remote_location"],
                retries=DEFAULT_RETRIES if retries is None else retries,
                retry_interval=DEFAULT_RETRY_INTERVAL if retry_interval is None else retry_interval,
                start=start,
                stop=stop,
                name=self._log_name,
            )
        )

    async def _run_log(self, request: LogRequest, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            # The cancelled upload lets go of the module's transfer client before this one.
            await asyncio.gather(previous, return_exceptions=True)
        try:
            try:
                final = await self._upload_log(request)
            except Exception:
                log.exception("log upload %d failed unexpectedly", request.request_id)
                final = UploadLogStatus.upload_failure
        finally:
            if self._log_job is request:
                self._log_job = None
        await self._notify_log(final, request, wait=True)

    async def _notify_log(
        self, status: UploadLogStatus, request: LogRequest, *, wait: bool = False
    ) -> None:
        """LogStatusNotification; with ``wait`` (the final Uploaded, UploadFailure...) until
        the CSMS has it: once over, the upload is Idle to ExtendedTriggerMessage, and its
        outcome would be lost with an outage (N01.FR.09/10 SHALL send it)."""
        payload = {"status": status.value, "requestId": request.request_id}
        context = self._context
        while True:
            if wait and not context.online:
                await context.wait_until(lambda: context.online)
            answer = await context.send("LogStatusNotification", payload)
            if answer is not None or not wait:
                return
            await asyncio.sleep(NOTIFY_RETRY)

    async def _upload_log(self, request: LogRequest) -> UploadLogStatus:
        what = f"{request.log_type.value} {request.name}"
        try:
            where = self._destination(request.location)
        except UnsupportedLocation as error:
            log.error("%s not uploaded: %s", what, error)
            return UploadLogStatus.bad_message
        await self._notify_log(UploadLogStatus.uploading, request)
        identity = self.identity() if request.log_type is Log.diagnostics_log else {}
        data = await asyncio.to_thread(self._log_content, request, identity)
        log.info("%s (request %d): %d bytes", what, request.request_id, len(data))

        async def attempt(_number: int) -> int:
            try:
                client = await self.transfers.client_for(where)
            except UnsupportedLocation as error:
                raise _LinkRefused(error) from error  # no retry can change the link
            return await client.upload(request.location, request.name, data)

        try:
            outcome = await with_retries(
                "log upload", request.retries, request.retry_interval, attempt
            )
        except _LinkRefused as refused:
            log.error("%s not uploaded: %s", what, refused.args[0])
            return UploadLogStatus.bad_message
        if outcome is None:
            return UploadLogStatus.upload_failure
        detail = f"{outcome} bytes stored" if isinstance(where, FtpLocation) else f"HTTP {outcome}"
        log.info("%s uploaded to %s (%s)", what, where.shown, detail)
        return UploadLogStatus.uploaded

    def _destination(self, location: str) -> Location | FtpLocation:
        """Where an upload goes, if this link can take it there: the protocols the
        charge point names in SupportedFileTransferProtocols (the Wi-Fi module has no FTP)."""
        where = parse_location(location)
        if isinstance(where, FtpLocation) and self.transfers.ftp is None:
            raise UnsupportedLocation(f"{where.shown}: this link has no FTP client")
        keys = self._context.keys
        if _PROTOCOLS in keys:
            supported = keys.items(_PROTOCOLS)
            ftp = isinstance(where, FtpLocation)
            protocol = ("FTP" if ftp else "HTTP") + ("S" if where.secure else "")
            if protocol not in supported:
                raise UnsupportedLocation(
                    f"{where.shown}: this charge point transfers files over "
                    f"{', '.join(supported)} only ({_PROTOCOLS})"
                )
        return where

    def _log_content(self, request: LogRequest, identity: dict[str, Any]) -> bytes:
        """The file GetLog uploads (runs in a worker thread)."""
        if request.log_type is Log.diagnostics_log:
            return self.archive(request.start, request.stop, identity)
        assert self.security_log is not None  # GetLog(SecurityLog) was rejected otherwise
        return "".join(self.security_log.lines(request.start, request.stop)).encode()

    async def wait_done(self) -> None:
        """Wait until the request in hand (upload and its final status) is over."""
        if self._task is not None:
            await asyncio.gather(asyncio.shield(self._task), return_exceptions=True)

    async def close(self) -> None:
        for task in (self._task, self._log_task, *self._finishing):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _run(
        self,
        location: str,
        retries: int,
        retry_interval: int,
        start: datetime | None,
        stop: datetime | None,
        name: str,
    ) -> None:
        self.status = DiagnosticsStatus.uploading
        try:
            await self._context.send("DiagnosticsStatusNotification", {"status": "Uploading"})
            uploaded = await self._upload(location, retries, retry_interval, start, stop, name)
        except Exception:
            log.exception("diagnostics upload failed unexpectedly")
            uploaded = False
        finally:
            self.status = None
        final = DiagnosticsStatus.uploaded if uploaded else DiagnosticsStatus.upload_failed
        await self._context.send("DiagnosticsStatusNotification", {"status": final.value})

    async def _upload(
        self,
        location: str,
        retries: int,
        retry_interval: int,
        start: datetime | None,
        stop: datetime | None,
        name: str,
    ) -> bool:
        try:
            where = parse_location(location)
        except UnsupportedLocation as error:
            log.error("diagnostics not uploaded: %s", error)
            return False
        identity = self.identity()
        data = await asyncio.to_thread(self.archive, start, stop, identity)
        log.info("diagnostics archive %s: %d bytes", name, len(data))

        async def attempt(_number: int) -> int:
            client = await self.transfers.client_for(where)
            return await client.upload(location, name, data)

        outcome = await with_retries("diagnostics upload", retries, retry_interval, attempt)
        if outcome is None:
            return False
        detail = f"{outcome} bytes stored" if isinstance(where, FtpLocation) else f"HTTP {outcome}"
        log.info("diagnostics %s uploaded to %s (%s)", name, where.shown, detail)
        return True

    def archive(
        self, start: datetime | None, stop: datetime | None, identity: dict[str, Any]
    ) -> bytes:
        """The tar.gz (see the module docstring)."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for pattern in self.settings.log_files:
                for name in sorted(glob.glob(pattern)):
                    path = Path(name)
                    _add(tar, f"logs/{path.name}", self._log_excerpt(path, start, stop))
            if self.trace is not None:
                frames: list[str] = []
                for path in self.trace.files():
                    frames += _frames_between(path, start, stop)
                _add(tar, "ocpp-frames.jsonl", "".join(frames).encode())
            if self.settings.config_file is not None:
                try:
                    text = self.settings.config_file.read_text(encoding="utf-8")
                except OSError as error:
                    text = f"# cannot read {self.settings.config_file}: {error}\n"
                _add(tar, "configuration.toml", redact_config(text).encode())
            keys = {kv.key: kv.value for kv in self._context.keys.read(None)[0]}
            _add(tar, "ocpp-keys.json", json.dumps(keys, indent=2).encode())
            _add(tar, "module.json", json.dumps(identity, indent=2).encode())
        return buffer.getvalue()

    def _log_excerpt(self, path: Path, start: datetime | None, stop: datetime | None) -> bytes:
        try:
            with path.open(encoding="utf-8", errors="replace") as f:
                lines = select_lines(f, start, stop)
        except OSError as error:
            return f"cannot read {path}: {error}\n".encode()
        data = "".join(lines).encode()
        limit = self.settings.max_log_bytes
        return data[-limit:] if len(data) > limit else data


def _window(log: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """GetLog's [oldestTimestamp, latestTimestamp] (LogParametersType, whitepaper §6.14)."""
    bounds = []
    for key, name in (
        ("oldest_timestamp", "oldestTimestamp"),
        ("latest_timestamp", "latestTimestamp"),
    ):
        text = log.get(key)
        try:
            bounds.append(ocpp_datetime(text) if text else None)
        except ValueError:
            raise PropertyConstraintViolationError(
                description=f"log.{name}: {text!r} is not a dateTime"
            ) from None
    return bounds[0], bounds[1]


def _frames_between(path: Path, start: datetime | None, stop: datetime | None) -> list[str]:
    kept = []
    start = _truncated(start, 1000)  # the trace keeps milliseconds
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    when = datetime.fromisoformat(json.loads(line)["time"])
                except (ValueError, KeyError, TypeError):
                    continue
                if (start is None or when >= start) and (stop is None or when <= stop):
                    kept.append(redact_url(line))  # an ftp:// location's password
    except OSError:
        pass
    return kept


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
