"""Availability functional block: connector statuses and what the CSMS allows (OCPP 1.6 §4.9
StatusNotification with errata v4.0, §5.2 ChangeAvailability).

Each connector's status comes from a pure :class:`ConnectorStatusMachine` fed with the hardware
and with what the other blocks announce (transaction started or ended, an idTag waiting for the
cable, energy withheld, a lock failure); it is never set by hand. A status is reported once it
has been stable for MinimumStatusDuration, and again to a CSMS that has just accepted a boot.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import (
    Action,
    AvailabilityStatus,
    AvailabilityType,
    ChargePointErrorCode,
    ChargePointStatus,
)

from chargepoint.blocks.context import Context
from chargepoint.blocks.events import (
    AuthorizationPending,
    ConnectorReserved,
    EnergyWithheld,
    LocalListConflict,
    LockFailed,
    OutOfService,
    TransactionEnded,
    TransactionStarted,
)
from chargepoint.hardware.charger import (
    EvSuspended,
    Fault,
    FaultCleared,
    FaultRaised,
    Plugged,
    Unplugged,
)
from chargepoint.model import connector_events as cs
from chargepoint.model.connector_events import Status
from chargepoint.model.connector_status import ConnectorStatusMachine, charge_point_status
from chargepoint.model.transactions import timestamp

log = logging.getLogger(__name__)

STATUS_RETRY = 5.0  # after a StatusNotification that got no answer


@dataclass
class Reported:
    """What the CSMS was last told about a connector, and since when the state differs."""

    sent: Status | None = None
    desired: Status | None = None
    since: float = 0.0
    since_wall: datetime = field(default_factory=lambda: datetime.now(UTC))


class Availability:
    def __init__(self, context: Context) -> None:
        self._context = context
        self._keys = context.keys
        charger = context.charger
        stored = dict(context.db.execute("SELECT connector, operative FROM availability"))
        self._operative = {n: bool(stored.get(n, 1)) for n in range(len(charger.connectors) + 1)}
        self._blocked = False  # a firmware update waits to install
        self._refusing: set[str] = set()  # reasons no transaction may start (a reset)
        self._machines = {
            n: ConnectorStatusMachine(
                fixed_cable=hardware.fixed_cable,
                ev_connected=hardware.ev_connected,
                cable_in_socket=hardware.cable_plugged,
                operative=self._operative[0] and self._operative[n],
            )
            for n, hardware in enumerate(charger.connectors, start=1)
        }
        for n, hardware in enumerate(charger.connectors, start=1):
            if (fault := _fault_event(hardware.fault)) is not None:
                self._apply(n, fault)
            if hardware.ev_suspended:
                self._apply(n, cs.EvSuspended(True))
        self._reported = {n: Reported() for n in range(len(charger.connectors) + 1)}
        self._wake = asyncio.Event()
        context.on_settled(self.refresh)
        context.on_hardware(Plugged, self._on_plugged)
        context.on_hardware(Unplugged, self._on_unplugged)
        context.on_hardware(EvSuspended, self._on_ev_suspended)
        context.on_hardware(FaultRaised, self._on_fault)
        context.on_hardware(FaultCleared, self._on_fault_cleared)
        events = context.events
        events.subscribe(
            TransactionStarted, lambda e: self._apply(e.connector, cs.TransactionStarted())
        )
        events.subscribe(
            TransactionEnded, lambda e: self._apply(e.connector, cs.TransactionEnded())
        )
        events.subscribe(AuthorizationPending, self._on_pending)
        events.subscribe(LocalListConflict, self._on_local_list_conflict)
        events.subscribe(
            ConnectorReserved, lambda e: self._apply(e.connector, cs.Reserved(e.reserved))
        )
        events.subscribe(
            EnergyWithheld, lambda e: self._apply(e.connector, cs.EvseSuspended(e.withheld))
        )
        events.subscribe(LockFailed, lambda e: self._apply(e.connector, cs.LockFailure(e.failed)))
        context.keys.subscribe(self._on_key_changed)

    # -- what others may ask --

    def status_of(self, number: int) -> Status:
        if number == 0:
            return charge_point_status(
                operative=self._operative[0], fault=_fault_event(self._context.charger.fault)
            )
        status = self._machines[number].status
        if status.status in _ENERGY_STATUSES and self._context.charger.fault is not None:
            # A fault of the whole charge point withholds energy from every connector.
            return Status(ChargePointStatus.suspended_evse)
        return status

    def accepts_new_transaction(self, number: int) -> bool:
        machine = self._machines[number]
        return (
            not self._refusing
            and not self._blocked
            and machine.operative
            and self._context.charger.fault is None
            and machine.status.status
            not in (ChargePointStatus.faulted, ChargePointStatus.unavailable)
        )

    def refuse_new_transactions(self, reason: str) -> None:
        """No transaction may start from now on (a reset is under way); statuses stay."""
        self._refusing.add(reason)

    def set_blocked(self, blocked: bool) -> None:
        """While a downloaded firmware waits to install, free connectors are Unavailable and no
        transaction starts (§5.19); running ones go on to their end."""
        self._blocked = blocked
        for number in self._machines:
            if blocked:
                self._context.events.publish(OutOfService(number))
            self._apply(number, cs.Blocked(blocked))
        self._context.settle()

    # -- ChangeAvailability (§5.2) --

    @on(Action.change_availability)  # type: ignore[untyped-decorator]
    def _on_change_availability(
        self, connector_id: int, type: str
    ) -> call_result.ChangeAvailability:
        operative = AvailabilityType(type) is AvailabilityType.operative
        return call_result.ChangeAvailability(self.change(connector_id, operative))

    def change(self, connector_id: int, operative: bool) -> AvailabilityStatus:
        """Scheduled while a transaction runs on the connector; persistent across reboots."""
        if connector_id not in self._operative:
            return AvailabilityStatus.rejected
        targets = list(self._machines) if connector_id == 0 else [connector_id]
        changed = [*targets, 0] if connector_id == 0 else targets
        for number in changed:
            self._operative[number] = operative
        self._context.db.executemany(
            "INSERT INTO availability (connector, operative) VALUES (?, ?) "
            "ON CONFLICT(connector) DO UPDATE SET operative = excluded.operative",
            [(n, int(operative)) for n in changed],
        )
        for number in self._machines:
            available = self._operative[0] and self._operative[number]
            if not available:
                self._context.events.publish(OutOfService(number))
            self._apply(number, cs.Availability(available))
        self._context.settle()
        busy = any(self._machines[n].in_transaction for n in targets)
        return (
            AvailabilityStatus.scheduled if busy and not operative else AvailabilityStatus.accepted
        )

    # -- feeding the machines --

    def _apply(self, number: int, event: cs.ConnectorEvent) -> None:
        if number in self._machines:
            self._machines[number].apply(event)

    async def _on_plugged(self, event: Plugged) -> None:
        self._apply(event.connector, cs.EvConnected())

    async def _on_unplugged(self, event: Unplugged) -> None:
        self._apply(
            event.connector, cs.CableRemoved() if event.socket_side else cs.EvDisconnected()
        )

    async def _on_ev_suspended(self, event: EvSuspended) -> None:
        log.info(
            "connector %d: EV %s", event.connector, "suspends" if event.suspended else "resumes"
        )
        self._apply(event.connector, cs.EvSuspended(event.suspended))

    async def _on_fault(self, event: FaultRaised) -> None:
        fault = event.fault
        log.warning(
            "connector %d fault: %s %s", event.connector, fault.code.value, fault.info or ""
        )
        self._apply(
            event.connector, cs.FaultRaised(fault.code, fault.info, fault.vendor_error_code)
        )

    async def _on_fault_cleared(self, event: FaultCleared) -> None:
        log.info("connector %d fault cleared", event.connector)
        self._apply(event.connector, cs.FaultCleared())

    def _on_pending(self, event: AuthorizationPending) -> None:
        self._apply(event.connector, cs.Authorized() if event.pending else cs.AuthorizationEnded())

    def _on_local_list_conflict(self, event: LocalListConflict) -> None:
        # §3.5.2: "StatusNotification with ConnectorId set to 0, and ErrorCode set to
        # 'LocalListConflict'". A notice, not a state: connector 0 keeps its status.
        status = self.status_of(0)
        notice = Status(status.status, ChargePointErrorCode.local_list_conflict, event.id_tag)
        self._context.spawn(self._notify(notice), "StatusNotification LocalListConflict")

    async def _notify(self, notice: Status) -> None:
        await self._send(0, notice, datetime.now(UTC))

    def _on_key_changed(self, name: str, value: str) -> None:
        if name == "MinimumStatusDuration":
            self._wake.set()

    # -- reporting (§4.9) --

    def refresh(self) -> None:
        """Note status changes (the context calls this after every unit of work)."""
        loop = asyncio.get_running_loop()
        for number, reported in self._reported.items():
            status = self.status_of(number)
            if status != reported.desired:
                reported.desired = status
                reported.since = loop.time()
                reported.since_wall = datetime.now(UTC)
        self._wake.set()

    def all_reported(self) -> bool:
        """The CSMS has answered the current status of every connector."""
        return all(r.desired is None or r.desired == r.sent for r in self._reported.values())

    def forget_reported(self) -> None:
        """A boot was accepted: every status is reported again (errata v4.0 §3.22)."""
        for reported in self._reported.values():
            reported.sent = None

    async def report(self, *, until_idle: bool) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            minimum = self._keys.integer("MinimumStatusDuration")
            wait: float | None = None
            for number, reported in self._reported.items():
                status = reported.desired
                if status is None or status == reported.sent:
                    continue
                stable_for = loop.time() - reported.since
                if stable_for < minimum:
                    wait = min(wait or minimum, minimum - stable_for)
                    continue
                if await self._send(number, status, reported.since_wall):
                    reported.sent = status
                    self._context.changed()
                else:
                    wait = STATUS_RETRY
            if until_idle:
                return
            if wait is None:
                await self._wake.wait()
            else:
                try:
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def send_now(self, connector_id: int | None) -> None:
        """StatusNotification on request (TriggerMessage), whatever was sent before."""
        numbers = [connector_id] if connector_id is not None else list(self._reported)
        for number in numbers:
            status = self.status_of(number)
            if await self._send(number, status, datetime.now(UTC)):
                self._reported[number].sent = status

    async def _send(self, number: int, status: Status, since: datetime) -> bool:
        payload: dict[str, Any] = {
            "connectorId": number,
            "errorCode": status.error_code.value,
            "status": status.status.value,
            "timestamp": timestamp(since),
        }
        if status.info:
            payload["info"] = status.info[:50]
        if status.vendor_error_code:
            payload["vendorErrorCode"] = status.vendor_error_code[:50]
        return await self._context.send("StatusNotification", payload) is not None

    def operative(self, number: int) -> bool:
        return self._operative[number]


_ENERGY_STATUSES = (
    ChargePointStatus.charging,
    ChargePointStatus.suspended_ev,
)


def _fault_event(fault: Fault | None) -> cs.FaultRaised | None:
    if fault is None:
        return None
    return cs.FaultRaised(fault.code, fault.info, fault.vendor_error_code)
