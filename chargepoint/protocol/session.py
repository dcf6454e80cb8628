"""One OCPP session: a WebSocket connection from its first frame until it ends.

Per OCPP 1.6 §4.2 and OCPP-J 1.6 §5.4:

* BootNotification first, and no other request until the CSMS has answered Accepted or
  Pending. After Pending or Rejected the next BootNotification waits ``interval`` seconds (or
  our own retry delay when the CSMS gives 0). While Pending, CSMS requests are answered;
  while Rejected they are not.
* After Accepted: the heartbeat interval is the CSMS's (stored as HeartbeatInterval); the
  station reports every connector's status (errata v4.0 §3.22) and delivers its outbox; a
  Heartbeat goes out whenever nothing was sent for a heartbeat interval (§4.6 lets a charge
  point skip it when other PDUs went out).
* On a reconnect, BootNotification is not sent again unless one of its fields changed
  (OCPP-J 1.6 §5.4): the CSMS already knows the charge point by its connection.

The session ends when the connection does: :meth:`Session.run` returns the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ocpp.exceptions import OCPPError
from ocpp.v16 import call
from ocpp.v16.enums import RegistrationStatus

from chargepoint.protocol.charge_point import ChargePoint, OcppConnection
from chargepoint.protocol.frame_trace import FrameTrace
from chargepoint.protocol.request import Online, SessionHooks, describe_failure
from config.ocpp_keys import ConfigurationKeys
from transport.websocket import WebSocketClosed

log = logging.getLogger(__name__)

DEFAULT_BOOT_RETRY = 60.0  # when the CSMS says interval 0 after Pending/Rejected


@dataclass(frozen=True, slots=True)
class BootFields:
    """What BootNotification.req says about this charge point (OCPP 1.6 §6.2)."""

    vendor: str
    model: str
    serial_number: str | None = None
    charge_box_serial_number: str | None = None
    firmware_version: str | None = None
    iccid: str | None = None
    imsi: str | None = None
    meter_type: str | None = None
    meter_serial_number: str | None = None

    def request(self) -> call.BootNotification:
        return call.BootNotification(
            charge_point_vendor=self.vendor,
            charge_point_model=self.model,
            charge_point_serial_number=self.serial_number,
            charge_box_serial_number=self.charge_box_serial_number,
            firmware_version=self.firmware_version,
            iccid=self.iccid,
            imsi=self.imsi,
            meter_type=self.meter_type,
            meter_serial_number=self.meter_serial_number,
        )


@dataclass
class Registration:
    """What the charge point knows about its standing with the CSMS, across connections."""

    accepted_with: BootFields | None = None  # the fields of the last Accepted BootNotification
    status: RegistrationStatus | None = None
    clock_offset: float | None = None  # CSMS time minus ours, seconds
    boots_sent: int = 0


@dataclass(frozen=True, slots=True)
class SessionSettings:
    charge_point_id: str
    call_timeout: float
    boot_retry: float = DEFAULT_BOOT_RETRY
    error_retry: float = 30.0  # after a timeout or CallError on BootNotification


class Duties(Protocol):
    """What the charge point does on an accepted connection (the station)."""

    @property
    def keys(self) -> ConfigurationKeys: ...

    @property
    def routes(self) -> dict[str, dict[str, Any]]: ...

    async def serve(self, online: Online, *, booted: bool) -> None: ...

    def attach(self, session: SessionHooks | None) -> None:
        """The session on the connection now open (None: it ended)."""
        ...

    def invalid_message(self, why: str) -> None:
        """The CSMS sent something that is not valid OCPP (a security event)."""
        ...

    def replayed_message(self, why: str) -> None:
        """The CSMS used a message id a second time on one connection (a security event)."""
        ...


class Reconnect(WebSocketClosed):
    """The charge point ends the connection on purpose, to connect again (new password)."""


class Session:
    def __init__(
        self,
        connection: OcppConnection,
        settings: SessionSettings,
        registration: Registration,
        fields: BootFields,
        station: Duties,
        trace: FrameTrace | None = None,
    ) -> None:
        self._settings = settings
        self._registration = registration
        self._fields = fields
        self._station = station
        self._keys = station.keys
        self._tasks: asyncio.TaskGroup | None = None
        self.charge_point = ChargePoint(
            settings.charge_point_id,
            connection,
            call_timeout=settings.call_timeout,
            routes=station.routes,
            trace=trace,
            on_invalid=station.invalid_message,
            on_replay=station.replayed_message,
        )

    async def run(self) -> WebSocketClosed:
        """Serve the connection until it ends; return how it ended."""
        ended: list[WebSocketClosed] = []
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                self._station.attach(self)
                tasks.create_task(self.charge_point.start(), name="ocpp receive")
                tasks.create_task(self._lifecycle(), name="ocpp lifecycle")
        except* WebSocketClosed as group:
            # The connection ended; the TaskGroup has already cancelled the other tasks, and
            # with them any request still waiting for an answer: it fails at once, not after
            # its timeout.
            ended += [exc for exc in group.exceptions if isinstance(exc, WebSocketClosed)]
        finally:
            self._tasks = None
            self._station.attach(None)
            self.charge_point.connection_ended(str(ended[0]) if ended else "session ended")
        if not ended:
            raise AssertionError("an OCPP session only ends with its connection")
        return ended[0]

    # -- SessionHooks: what CSMS requests may ask of the session --

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        if self._tasks is None:
            work.close()
            return
        self._tasks.create_task(work, name=name)

    async def boot(self) -> None:
        """A BootNotification on request (TriggerMessage)."""
        try:
            conf = await self._request(self._fields.request())
        except (OCPPError, TimeoutError) as exc:
            log.warning("triggered BootNotification failed: %s", describe_failure(exc))
            return
        self._note_clock(conf.current_time)
        if conf.status == RegistrationStatus.accepted and conf.interval > 0:
            self._keys.store("HeartbeatInterval", str(conf.interval))

    async def heartbeat(self) -> None:
        try:
            conf = await self._request(call.Heartbeat())
        except (OCPPError, TimeoutError) as exc:
            # The WebSocket ping notices a dead link; a Heartbeat failure alone is logged.
            log.warning("Heartbeat failed: %s", describe_failure(exc))
            return
        self._note_clock(conf.current_time)

    async def reconnect(self, why: str) -> None:
        raise Reconnect(f"reconnecting: {why}", 1000)

    # -- the life of a connection --

    async def _lifecycle(self) -> None:
        registration = self._registration
        booted = registration.accepted_with != self._fields
        if booted:
            await self._boot()
        else:
            log.info("reconnected; already accepted, so no BootNotification (OCPP-J 1.6 §5.4)")
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                self._station.serve(Online(self.charge_point.send_request, self), booted=booted),
                name="station online",
            )
            tasks.create_task(self._heartbeats(), name="heartbeats")

    async def _boot(self) -> None:
        registration = self._registration
        charge_point = self.charge_point
        while True:
            try:
                conf = await self._request(self._fields.request())
            except (OCPPError, TimeoutError) as exc:
                log.warning(
                    "BootNotification failed (%s); trying again in %g s",
                    describe_failure(exc),
                    self._settings.error_retry,
                )
                await asyncio.sleep(self._settings.error_retry)
                continue
            registration.boots_sent += 1
            registration.status = RegistrationStatus(conf.status)
            self._note_clock(conf.current_time)
            if registration.status is RegistrationStatus.accepted:
                if conf.interval > 0:
                    self._keys.store("HeartbeatInterval", str(conf.interval))
                registration.accepted_with = self._fields
                charge_point.answer_requests = True
                log.info(
                    "CSMS accepted the charge point; heartbeat every %d s",
                    self._keys.integer("HeartbeatInterval"),
                )
                return
            wait = float(conf.interval) if conf.interval > 0 else self._settings.boot_retry
            if registration.status is RegistrationStatus.rejected:
                # §4.2: no message at all to the CSMS until the interval has passed.
                charge_point.answer_requests = False
                log.warning("CSMS rejected the charge point; next BootNotification in %g s", wait)
            else:
                log.info(
                    "CSMS registration pending; answering its requests, "
                    "next BootNotification in %g s",
                    wait,
                )
            await asyncio.sleep(wait)
            charge_point.answer_requests = True

    async def _heartbeats(self) -> None:
        loop = asyncio.get_running_loop()
        charge_point = self.charge_point
        while True:
            due = charge_point.last_sent + self._keys.integer("HeartbeatInterval")
            if loop.time() < due:
                # HeartbeatInterval takes effect at once when the CSMS changes it.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(due - loop.time()):
                        await self._keys.changed()
                continue
            await self.heartbeat()

    async def _request(self, payload: Any) -> Any:
        return await self.charge_point.request(payload)

    def _note_clock(self, current_time: str) -> None:
        try:
            csms_time = datetime.fromisoformat(current_time.replace("Z", "+00:00"))
        except ValueError:
            log.warning("CSMS sent an unreadable currentTime %r", current_time)
            return
        if csms_time.tzinfo is None:
            csms_time = csms_time.replace(tzinfo=UTC)
        offset = (csms_time - datetime.now(UTC)).total_seconds()
        if (
            self._registration.clock_offset is None
            or abs(offset - self._registration.clock_offset) > 2
        ):
            log.info("CSMS clock is %+.1f s from ours", offset)
        self._registration.clock_offset = offset
