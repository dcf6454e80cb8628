"""The charge point's behaviour: connectors, transactions, authorization and metering.

The station lives as long as the daemon, across connections: the OCPP session only lends it a
way to send requests while the CSMS has accepted the charge point (:meth:`Station.serve`).
It reacts to the hardware (:mod:`chargepoint.charger` events) and to CSMS commands, and keeps
everything that must survive a power cut on disk (transactions, outbox, availability, cache).

Concurrency: hardware events and the work CSMS commands start run as tasks, one at a time,
under ``self._lock``. CSMS handlers themselves never take the lock and never send a request:
they decide from the current state and hand the work to a task (the library reads the next
frame only when a handler returns; waiting there for an answer would wait for itself).

Connector status (OCPP 1.6 §4.9 with errata v4.0) is derived from the state, never set by
hand, and reported once it has been stable for MinimumStatusDuration.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from ocpp.v16.enums import (
    AvailabilityStatus,
    ChargePointErrorCode,
    ChargePointStatus,
    MessageTrigger,
    Reason,
    RemoteStartStopStatus,
    ResetType,
    TriggerMessageStatus,
    UnlockStatus,
)

from chargepoint.authorization import AuthorizationCache, Authorizer, IdTagInfo
from chargepoint.charger import (
    Charger,
    ConnectorHardware,
    EvSuspended,
    FaultCleared,
    FaultRaised,
    HardwareEvent,
    IdTagPresented,
    Plugged,
    PowerFailing,
    Unplugged,
)
from chargepoint.metering import ClockAlignedTrigger, aligned_at_or_before, meter_value
from chargepoint.outbox import Item, Outbox, RetryPolicy
from chargepoint.request import REQUEST_FAILURES, Request, describe_failure
from chargepoint.storage import atomic
from chargepoint.transactions import Transaction, TransactionStore, timestamp
from config.ocpp_keys import ConfigurationKeys

if TYPE_CHECKING:
    from chargepoint.diagnostics import DiagnosticsUploader
    from chargepoint.firmware import FirmwareUpdater

log = logging.getLogger(__name__)

ResetHook = Callable[[ResetType], Awaitable[None]]

STATUS_RETRY = 5.0  # after a StatusNotification that got no answer
SOFT_RESET_GRACE = 30.0  # how long a soft reset waits for StopTransactions to be delivered


class PowerLossPolicy(enum.Enum):
    STOP = "stop"  # stop interrupted transactions with reason PowerLoss (TC_032_2_CS)
    RESUME = "resume"  # carry on charging if the EV is still plugged in


@dataclass(frozen=True, slots=True)
class Status:
    status: ChargePointStatus
    error_code: ChargePointErrorCode = ChargePointErrorCode.no_error
    info: str | None = None
    vendor_error_code: str | None = None


@dataclass
class Authorized:
    """An idTag accepted for a connector that has no transaction yet (status Preparing)."""

    id_tag: str
    parent_id_tag: str | None
    expires: asyncio.TimerHandle | None = None
    confirmed: bool = True  # False: a remote start still waiting for its Authorize


@dataclass
class ConnectorState:
    number: int
    hardware: ConnectorHardware
    operative: bool = True  # the availability the CSMS asked for (persisted)
    transaction: Transaction | None = None
    authorized: Authorized | None = None
    finishing: bool = False  # a transaction ended while the cable is still plugged
    lock_failure: bool = False
    energy_cap: float | None = None  # MaxEnergyOnInvalidId reached at this register value
    sample_job: str | None = None
    starting: asyncio.Future[None] | None = None  # a start waiting for the cable lock


@dataclass
class Reported:
    """What the CSMS was last told about a connector, and since when the state differs."""

    sent: Status | None = None
    desired: Status | None = None
    since: float = 0.0
    since_wall: datetime = field(default_factory=lambda: datetime.now(UTC))


class Station:
    def __init__(
        self,
        *,
        charger: Charger,
        keys: ConfigurationKeys,
        db: sqlite3.Connection,
        scheduler: AsyncIOScheduler,
        power_loss: PowerLossPolicy = PowerLossPolicy.STOP,
        reset_hook: ResetHook | None = None,
        no_answer_retry: float = 30.0,
    ) -> None:
        self.charger = charger
        self.keys = keys
        self.db = db
        self.scheduler = scheduler
        self.power_loss = power_loss
        self.reset_hook = reset_hook
        self.no_answer_retry = no_answer_retry
        self._changed = asyncio.Event()
        self.transactions = TransactionStore(db)
        self.outbox = Outbox(db, self.transactions, on_change=self._changed.set)
        self.authorizer = Authorizer(keys, AuthorizationCache(db))
        self.connectors = [
            ConnectorState(n, hardware) for n, hardware in enumerate(charger.connectors, start=1)
        ]
        self.operative0 = True
        self.resetting: ResetType | None = None
        self.updating_firmware = False  # an update waits to install: nothing new may start
        self.firmware: FirmwareUpdater | None = None  # set by the daemon
        self.diagnostics: DiagnosticsUploader | None = None
        self._after_boot: list[Callable[[], None]] = []
        self._request: Request | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reported = {n: Reported() for n in range(len(self.connectors) + 1)}
        self._status_wake = asyncio.Event()

    # -- life cycle --

    @property
    def online(self) -> bool:
        return self._request is not None

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; it is checked after every change of state."""
        while not predicate():
            self._changed.clear()
            await self._changed.wait()

    async def start(self) -> None:
        """Load what the last run left and pick up interrupted transactions."""
        for number, operative in self.db.execute("SELECT connector, operative FROM availability"):
            if number == 0:
                self.operative0 = bool(operative)
            elif 1 <= number <= len(self.connectors):
                self.connectors[number - 1].operative = bool(operative)
        self.charger.listen(self._on_hardware)
        self.keys.subscribe(self._on_key_changed)
        self._schedule_aligned()
        async with self._lock:
            for tx in self.transactions.open():
                await self._recover(tx)
        self._refresh()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _recover(self, tx: Transaction) -> None:
        last = datetime.fromisoformat(tx.last_seen.replace("Z", "+00:00"))
        if not 1 <= tx.connector <= len(self.connectors):
            # The configuration lost a connector since: stop the transaction all the same.
            log.error(
                "transaction %d on unknown connector %d: stopping it", tx.local_id, tx.connector
            )
            self._queue_stop(tx, Reason.other, tx.meter_last, last)
            return
        connector = self.connectors[tx.connector - 1]
        connector.transaction = tx
        plugged = connector.hardware.plugged
        if self.power_loss is PowerLossPolicy.RESUME and plugged:
            log.warning(
                "resuming transaction %s on connector %d after a restart",
                tx.transaction_id or f"(local {tx.local_id})",
                tx.connector,
            )
            await connector.hardware.lock()
            if not tx.deauthorized:
                connector.hardware.start_energy()
            self._schedule_sampling(connector)
            return
        # The power cut ended the session: the last reading on disk is its end.
        log.warning(
            "transaction %s on connector %d was interrupted by a power loss: stopping it",
            tx.transaction_id or f"(local {tx.local_id})",
            tx.connector,
        )
        self._stop(connector, Reason.power_loss, meter=tx.meter_last, when=last)

    # -- the connection --

    async def serve(self, request: Request, *, booted: bool) -> None:
        """Run the online duties (statuses, then the outbox) until cancelled.

        ``booted``: a BootNotification was just accepted, so every connector's status is
        reported again (errata v4.0 §3.22); otherwise only what changed while offline.
        """
        if booted:
            for reported in self._reported.values():
                reported.sent = None
        self._request = request
        self._refresh()
        try:
            await self._report_statuses(until_idle=True)
            if booted:
                hooks, self._after_boot = self._after_boot, []
                for hook in hooks:
                    hook()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._report_statuses(until_idle=False), name="status reports")
                tasks.create_task(
                    self.outbox.deliver(request, self._retry_policy, self._on_delivered),
                    name="outbox",
                )
        finally:
            self._request = None
            self._changed.set()

    def after_boot(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` once, when the next accepted boot has reported the connectors."""
        self._after_boot.append(hook)

    def set_updating_firmware(self, updating: bool) -> None:
        """While a downloaded firmware waits to install, free connectors are Unavailable and no
        transaction starts (§5.19); running ones go on to their end."""
        self.updating_firmware = updating
        self._refresh()
        self._changed.set()

    def charging_connectors(self) -> list[int]:
        return [c.number for c in self.connectors if c.transaction is not None]

    def _retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            self.keys.integer("TransactionMessageAttempts"),
            float(self.keys.integer("TransactionMessageRetryInterval")),
            self.no_answer_retry,
        )

    async def send(self, action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """A request that is not transaction-related: sent now if online, else dropped."""
        request = self._request
        if request is None:
            log.info("offline: %s not sent", action)
            return None
        try:
            return await request(action, payload)
        except REQUEST_FAILURES as exc:
            log.warning("%s failed: %s", action, describe_failure(exc))
            return None

    # -- status (§4.9) --

    def status_of(self, number: int) -> Status:
        if number == 0:
            return Status(
                ChargePointStatus.available if self.operative0 else ChargePointStatus.unavailable
            )
        connector = self.connectors[number - 1]
        hardware = connector.hardware
        fault = hardware.fault
        if fault is not None:
            return Status(
                ChargePointStatus.faulted, fault.code, fault.info, fault.vendor_error_code
            )
        if connector.lock_failure:
            return Status(ChargePointStatus.faulted, ChargePointErrorCode.connector_lock_failure)
        tx = connector.transaction
        if tx is not None:
            if tx.deauthorized or connector.energy_cap is not None:
                return Status(ChargePointStatus.suspended_evse)
            if not hardware.plugged:
                return Status(ChargePointStatus.suspended_ev, info="EV side disconnected")
            if hardware.ev_suspended:
                return Status(ChargePointStatus.suspended_ev)
            return Status(ChargePointStatus.charging)
        if (
            not (connector.operative and self.operative0)
            or self.resetting is not None
            or self.updating_firmware
        ):
            return Status(ChargePointStatus.unavailable)
        if hardware.plugged and connector.finishing:
            return Status(ChargePointStatus.finishing)
        if connector.authorized is not None or hardware.plugged:
            return Status(ChargePointStatus.preparing)
        return Status(ChargePointStatus.available)

    def _refresh(self) -> None:
        """Note status changes (call after every change of state)."""
        loop = asyncio.get_running_loop()
        for number, reported in self._reported.items():
            status = self.status_of(number)
            if status != reported.desired:
                reported.desired = status
                reported.since = loop.time()
                reported.since_wall = datetime.now(UTC)
        self._status_wake.set()
        self._changed.set()

    async def _report_statuses(self, *, until_idle: bool) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._status_wake.clear()
            minimum = self.keys.integer("MinimumStatusDuration")
            wait: float | None = None
            for number, reported in self._reported.items():
                status = reported.desired
                if status is None or status == reported.sent:
                    continue
                stable_for = loop.time() - reported.since
                if stable_for < minimum:
                    wait = min(wait or minimum, minimum - stable_for)
                    continue
                if await self._send_status(number, status, reported.since_wall):
                    reported.sent = status
                else:
                    wait = STATUS_RETRY
            if until_idle:
                return
            if wait is None:
                await self._status_wake.wait()
            else:
                try:
                    async with asyncio.timeout(wait):
                        await self._status_wake.wait()
                except TimeoutError:
                    pass

    async def _send_status(self, number: int, status: Status, since: datetime) -> bool:
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
        return await self.send("StatusNotification", payload) is not None

    # -- hardware events --

    def _on_hardware(self, event: HardwareEvent) -> None:
        self._spawn(self._handle(event), f"hardware {type(event).__name__}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    async def _handle(self, event: HardwareEvent) -> None:
        if isinstance(event, IdTagPresented):
            await self._on_id_tag(event.id_tag, event.connector)
            return
        async with self._lock:
            match event:
                case Plugged(number):
                    await self._on_plugged(self.connectors[number - 1])
                case Unplugged(number):
                    await self._on_unplugged(self.connectors[number - 1])
                case FaultRaised(number, fault):
                    log.warning(
                        "connector %d fault: %s %s", number, fault.code.value, fault.info or ""
                    )
                case FaultCleared(number):
                    log.info("connector %d fault cleared", number)
                case EvSuspended(number, suspended):
                    log.info("connector %d: EV %s", number, "suspends" if suspended else "resumes")
                case PowerFailing():
                    self._stop_all(Reason.power_loss)
            self._refresh()

    async def _on_plugged(self, connector: ConnectorState) -> None:
        connector.finishing = False
        if connector.transaction is not None:
            log.info("connector %d: EV plugged in again", connector.number)
            return
        if connector.authorized is not None and connector.authorized.confirmed:
            await self._start(connector, connector.authorized)

    async def _on_unplugged(self, connector: ConnectorState) -> None:
        connector.finishing = False
        connector.lock_failure = False
        tx = connector.transaction
        if tx is None:
            return
        if self.keys.boolean("StopTransactionOnEVSideDisconnect"):
            self._stop(connector, Reason.ev_disconnected)
            if self.keys.boolean("UnlockConnectorOnEVSideDisconnect"):
                await connector.hardware.unlock()
        else:
            # §9.1.23 false: the transaction goes on, suspended, until the EV comes back.
            log.info("connector %d: EV unplugged; transaction continues", connector.number)

    def _connector_for_tag(self, id_tag: str, number: int | None) -> ConnectorState | None:
        if number is not None:
            return self.connectors[number - 1]
        for connector in self.connectors:
            tx = connector.transaction
            authorized = connector.authorized
            if (tx is not None and tx.id_tag == id_tag) or (
                authorized is not None and authorized.id_tag == id_tag
            ):
                return connector
        free = [c for c in self.connectors if c.transaction is None and c.authorized is None]
        plugged = [c for c in free if c.hardware.plugged and not c.finishing]
        candidates = plugged or [c for c in free if self._can_start(c)]
        return candidates[0] if candidates else None

    def _can_start(self, connector: ConnectorState) -> bool:
        return (
            connector.transaction is None
            and connector.operative
            and self.operative0
            and self.resetting is None
            and not self.updating_firmware
            and connector.hardware.fault is None
            and not connector.lock_failure
        )

    async def _on_id_tag(self, id_tag: str, number: int | None) -> None:
        connector = self._connector_for_tag(id_tag, number)
        if connector is None:
            log.info("idTag %s presented, but no connector can take it", id_tag)
            return
        tx = connector.transaction
        if tx is not None:
            await self._on_stop_tag(connector, tx, id_tag)
            return
        authorized = connector.authorized
        if authorized is not None and authorized.id_tag == id_tag:
            # The same card again before the cable: the driver changed their mind.
            async with self._lock:
                if connector.authorized is authorized:
                    log.info("idTag %s presented again: authorization withdrawn", id_tag)
                    if authorized.expires is not None:
                        authorized.expires.cancel()
                    connector.authorized = None
                    self._refresh()
            return
        if not self._can_start(connector):
            log.info(
                "idTag %s presented on connector %d, which is %s: ignored",
                id_tag,
                connector.number,
                self.status_of(connector.number).status.value,
            )
            return
        info = await self.authorizer.authorize(id_tag, self._request)
        async with self._lock:
            if not info.accepted:
                log.info("idTag %s not accepted (%s): no transaction", id_tag, info.status.value)
                return
            if not self._can_start(connector) or connector.authorized is not None:
                return
            await self._authorized(connector, Authorized(id_tag, info.parent_id_tag))
            self._refresh()

    async def _on_stop_tag(self, connector: ConnectorState, tx: Transaction, id_tag: str) -> None:
        if id_tag != tx.id_tag:
            # §3.10 / TC_069_CS: another card of the same account (parentIdTag) may stop it.
            info = await self.authorizer.authorize(id_tag, self._request)
            if not (
                info.accepted
                and info.parent_id_tag is not None
                and info.parent_id_tag == tx.parent_id_tag
            ):
                log.info(
                    "idTag %s may not stop the transaction of %s on connector %d",
                    id_tag,
                    tx.id_tag,
                    connector.number,
                )
                return
        async with self._lock:
            if connector.transaction is tx:
                self._stop(connector, Reason.local, id_tag=id_tag)
                await connector.hardware.unlock()
                self._refresh()

    async def _authorized(self, connector: ConnectorState, authorized: Authorized) -> None:
        if connector.hardware.plugged:
            await self._start(connector, authorized)
            return
        timeout = self.keys.integer("ConnectionTimeOut")
        log.info(
            "idTag %s authorized on connector %d; waiting %d s for the cable",
            authorized.id_tag,
            connector.number,
            timeout,
        )
        authorized.expires = asyncio.get_running_loop().call_later(
            timeout, self._connection_timeout, connector, authorized
        )
        connector.authorized = authorized

    def _connection_timeout(self, connector: ConnectorState, authorized: Authorized) -> None:
        if connector.authorized is authorized and connector.transaction is None:
            log.info("connector %d: no cable within ConnectionTimeOut", connector.number)
            connector.authorized = None
            self._refresh()

    # -- transactions --

    async def _start(self, connector: ConnectorState, authorized: Authorized) -> None:
        if authorized.expires is not None:
            authorized.expires.cancel()
        connector.authorized = None
        starting = asyncio.get_running_loop().create_future()
        connector.starting = starting
        try:
            await self._start_locked(connector, authorized)
        finally:
            connector.starting = None
            starting.set_result(None)

    async def _start_locked(self, connector: ConnectorState, authorized: Authorized) -> None:
        hardware = connector.hardware
        if not hardware.fixed_cable and not await hardware.lock():
            # TC_024_CS: no transaction; the connector is Faulted (ConnectorLockFailure).
            log.error("connector %d: the cable lock failed; not starting", connector.number)
            connector.lock_failure = True
            return
        now = datetime.now(UTC)
        reading = hardware.read_meter()
        meter_start = int(reading.energy_wh)
        with atomic(self.db):  # a transaction on disk always has its StartTransaction queued
            tx = self.transactions.start(
                connector.number, authorized.id_tag, authorized.parent_id_tag, meter_start, now
            )
            self._add_stop_value(tx, "Transaction.Begin", now)
            self.outbox.put(
                "StartTransaction",
                {
                    "connectorId": connector.number,
                    "idTag": authorized.id_tag,
                    "meterStart": meter_start,
                    "timestamp": timestamp(now),
                },
                tx.local_id,
            )
        connector.transaction = tx
        connector.finishing = False
        hardware.start_energy()
        self._schedule_sampling(connector)
        log.info(
            "transaction started on connector %d for %s (meter %d Wh)",
            connector.number,
            authorized.id_tag,
            meter_start,
        )

    def _stop(
        self,
        connector: ConnectorState,
        reason: Reason,
        *,
        id_tag: str | None = None,
        meter: int | None = None,
        when: datetime | None = None,
    ) -> None:
        tx = connector.transaction
        assert tx is not None
        hardware = connector.hardware
        hardware.stop_energy()
        when = when or datetime.now(UTC)
        if meter is None:
            meter = int(hardware.read_meter().energy_wh)
            self._add_stop_value(tx, "Transaction.End", when)
        self._cancel_sampling(connector)
        self._queue_stop(tx, reason, meter, when, id_tag)
        connector.transaction = None
        connector.energy_cap = None
        connector.finishing = hardware.plugged
        log.info(
            "transaction %s on connector %d stopped (%s), %d Wh",
            tx.transaction_id or f"(local {tx.local_id})",
            connector.number,
            reason.value,
            meter - tx.meter_start,
        )

    def _queue_stop(
        self,
        tx: Transaction,
        reason: Reason,
        meter: int,
        when: datetime,
        id_tag: str | None = None,
    ) -> None:
        payload: dict[str, Any] = {
            "meterStop": meter,
            "timestamp": timestamp(when),
            "reason": reason.value,
        }
        if id_tag is not None:
            payload["idTag"] = id_tag
        if tx.stop_data and (
            self.keys.items("StopTxnSampledData") or self.keys.items("StopTxnAlignedData")
        ):
            payload["transactionData"] = tx.stop_data
        with atomic(self.db):
            self.transactions.mark_stopped(tx)
            self.outbox.put("StopTransaction", payload, tx.local_id)

    def _stop_all(self, reason: Reason) -> None:
        for connector in self.connectors:
            if connector.transaction is not None:
                self._stop(connector, reason)

    def _on_delivered(self, item: Item, answer: dict[str, Any]) -> None:
        """The CSMS answered a queued message (the outbox has stored the id already)."""
        self._changed.set()
        if item.local_tx is None or "idTagInfo" not in answer:
            return
        info = IdTagInfo.from_json(answer["idTagInfo"])
        id_tag = item.payload.get("idTag")
        if id_tag:
            self.authorizer.remember(id_tag, info)
        if item.action != "StartTransaction":
            return
        for connector in self.connectors:
            tx = connector.transaction
            if tx is None or tx.local_id != item.local_tx:
                continue
            tx.transaction_id = answer["transactionId"]
            tx.id_tag_status = info.status.value
            if info.accepted:
                return
            self._spawn(self._deauthorized(connector, tx, info), "deauthorized")

    async def _deauthorized(
        self, connector: ConnectorState, tx: Transaction, info: IdTagInfo
    ) -> None:
        async with self._lock:
            if connector.transaction is not tx:
                return
            tx.deauthorized = True
            if self.keys.boolean("StopTransactionOnInvalidId"):
                log.warning(
                    "CSMS says %s is %s: stopping transaction %s",
                    tx.id_tag,
                    info.status.value,
                    tx.transaction_id,
                )
                self._stop(connector, Reason.de_authorized)
                await connector.hardware.unlock()
            else:
                limit = self.keys.integer("MaxEnergyOnInvalidId")
                log.warning(
                    "CSMS says %s is %s: transaction %s goes on, at most %d Wh more",
                    tx.id_tag,
                    info.status.value,
                    tx.transaction_id,
                    limit,
                )
                reading = connector.hardware.read_meter()
                connector.energy_cap = reading.energy_wh + limit
                self._enforce_energy_cap(connector, reading.energy_wh)
            self._refresh()

    def _enforce_energy_cap(self, connector: ConnectorState, energy_wh: float) -> None:
        if connector.energy_cap is not None and energy_wh >= connector.energy_cap:
            connector.hardware.stop_energy()

    # -- metering (§3.16) --

    def _schedule_sampling(self, connector: ConnectorState) -> None:
        self._cancel_sampling(connector)
        interval = self.keys.integer("MeterValueSampleInterval")
        if interval <= 0:
            return
        job = self.scheduler.add_job(
            self._sample,
            IntervalTrigger(seconds=interval, timezone=UTC),
            args=[connector.number],
            id=f"sample-{connector.number}",
            replace_existing=True,
            misfire_grace_time=None,
            coalesce=True,
        )
        connector.sample_job = job.id

    def _cancel_sampling(self, connector: ConnectorState) -> None:
        if connector.sample_job is not None:
            if self.scheduler.get_job(connector.sample_job) is not None:
                self.scheduler.remove_job(connector.sample_job)
            connector.sample_job = None

    async def _sample(self, number: int) -> None:
        async with self._lock:
            connector = self.connectors[number - 1]
            tx = connector.transaction
            if tx is None:
                return
            now = datetime.now(UTC)
            reading = connector.hardware.read_meter()
            value = meter_value(
                reading, self.keys.items("MeterValuesSampledData"), "Sample.Periodic", now
            )
            stop_value = meter_value(
                reading, self.keys.items("StopTxnSampledData"), "Sample.Periodic", now
            )
            if stop_value is not None:
                self.transactions.add_stop_value(tx, stop_value)
            # The sample and the transaction's "last seen" together: a StopTransaction after a
            # power cut is then never older than a MeterValues already queued.
            with atomic(self.db):
                if value is not None:
                    self.outbox.put(
                        "MeterValues", {"connectorId": number, "meterValue": [value]}, tx.local_id
                    )
                self.transactions.note_meter(tx, int(reading.energy_wh), now)
            self._enforce_energy_cap(connector, reading.energy_wh)

    def _add_stop_value(self, tx: Transaction, context: str, when: datetime) -> None:
        connector = self.connectors[tx.connector - 1]
        measurands = self.keys.items("StopTxnSampledData") or self.keys.items("StopTxnAlignedData")
        if not measurands:
            return
        value = meter_value(connector.hardware.read_meter(), measurands, context, when)
        if value is not None:
            self.transactions.add_stop_value(tx, value)

    def _schedule_aligned(self) -> None:
        if self.scheduler.get_job("aligned") is not None:
            self.scheduler.remove_job("aligned")
        interval = self.keys.integer("ClockAlignedDataInterval")
        if interval > 0:
            self.scheduler.add_job(
                self._aligned,
                ClockAlignedTrigger(interval),
                id="aligned",
                misfire_grace_time=None,
                coalesce=True,
            )

    async def _aligned(self) -> None:
        # §9.1.5: sent at the end of each interval, "bearing the interval start time timestamp".
        interval = self.keys.integer("ClockAlignedDataInterval")
        if interval <= 0:
            return
        end = aligned_at_or_before(datetime.now(UTC), interval)
        now = end - timedelta(seconds=interval)
        for connector in self.connectors:
            async with self._lock:
                reading = connector.hardware.read_meter()
                tx = connector.transaction
                value = meter_value(
                    reading, self.keys.items("MeterValuesAlignedData"), "Sample.Clock", now
                )
                payload = {"connectorId": connector.number, "meterValue": [value]}
                if tx is not None:
                    stop_value = meter_value(
                        reading, self.keys.items("StopTxnAlignedData"), "Sample.Clock", now
                    )
                    if stop_value is not None:
                        self.transactions.add_stop_value(tx, stop_value)
                    with atomic(self.db):
                        if value is not None:
                            self.outbox.put("MeterValues", payload, tx.local_id)
                        self.transactions.note_meter(tx, int(reading.energy_wh), end)
                    continue
            if value is not None and self.online:
                # Outside a transaction, clock-aligned values are not transaction-related.
                await self.send("MeterValues", payload)

    def _on_key_changed(self, name: str, value: str) -> None:
        if name == "MeterValueSampleInterval":
            for connector in self.connectors:
                if connector.transaction is not None:
                    self._schedule_sampling(connector)
        elif name == "ClockAlignedDataInterval":
            self._schedule_aligned()
        elif name == "MinimumStatusDuration":
            self._status_wake.set()

    # -- CSMS commands (decide now, act in a task) --

    def remote_start(self, id_tag: str, connector_id: int | None) -> RemoteStartStopStatus:
        """RemoteStartTransaction (§5.11)."""
        if connector_id is not None:
            if not 1 <= connector_id <= len(self.connectors):
                # TC_027_CS: connector 0 (or one that does not exist) cannot start a transaction.
                return RemoteStartStopStatus.rejected
            connector = self.connectors[connector_id - 1]
        else:
            free = [c for c in self.connectors if self._can_start(c) and c.authorized is None]
            plugged = [c for c in free if c.hardware.plugged]
            connector = (plugged or free or [self.connectors[0]])[0]
        if not self._can_start(connector) or connector.authorized is not None:
            return RemoteStartStopStatus.rejected
        # Claim the connector now, so a second request for it is rejected.
        claim = Authorized(id_tag, None, confirmed=False)
        connector.authorized = claim
        self._refresh()
        self._spawn(self._remote_start(connector, claim), "remote start")
        return RemoteStartStopStatus.accepted

    async def _remote_start(self, connector: ConnectorState, claim: Authorized) -> None:
        info = IdTagInfo.from_json({"status": "Accepted"})
        if self.keys.boolean("AuthorizeRemoteTxRequests"):
            info = await self.authorizer.authorize(claim.id_tag, self._request)
        async with self._lock:
            if connector.authorized is not claim:
                return
            connector.authorized = None
            if info.accepted and self._can_start(connector):
                await self._authorized(connector, Authorized(claim.id_tag, info.parent_id_tag))
            else:
                log.info("remote start for %s not authorized: %s", claim.id_tag, info.status.value)
            self._refresh()

    def remote_stop(self, transaction_id: int) -> RemoteStartStopStatus:
        """RemoteStopTransaction (§5.12)."""
        for connector in self.connectors:
            tx = connector.transaction
            if tx is not None and tx.transaction_id == transaction_id:
                self._spawn(self._remote_stop(connector, tx), "remote stop")
                return RemoteStartStopStatus.accepted
        return RemoteStartStopStatus.rejected

    async def _remote_stop(self, connector: ConnectorState, tx: Transaction) -> None:
        async with self._lock:
            if connector.transaction is tx:
                self._stop(connector, Reason.remote)
                await connector.hardware.unlock()
                self._refresh()

    def change_availability(self, connector_id: int, operative: bool) -> AvailabilityStatus:
        """ChangeAvailability (§5.2): Scheduled while a transaction runs on the connector."""
        if not 0 <= connector_id <= len(self.connectors):
            return AvailabilityStatus.rejected
        targets = self.connectors if connector_id == 0 else [self.connectors[connector_id - 1]]
        rows = [(c.number, int(operative)) for c in targets]
        if connector_id == 0:
            self.operative0 = operative
            rows.append((0, int(operative)))
        for connector in targets:
            connector.operative = operative
        self.db.executemany(
            "INSERT INTO availability (connector, operative) VALUES (?, ?) "
            "ON CONFLICT(connector) DO UPDATE SET operative = excluded.operative",
            rows,
        )
        self._refresh()
        busy = any(c.transaction is not None for c in targets)
        return (
            AvailabilityStatus.scheduled if busy and not operative else AvailabilityStatus.accepted
        )

    async def unlock(self, connector_id: int) -> UnlockStatus:
        """UnlockConnector (§5.18): stop the transaction first, then unlock."""
        if not 1 <= connector_id <= len(self.connectors):
            return UnlockStatus.not_supported
        connector = self.connectors[connector_id - 1]
        if connector.hardware.fixed_cable:
            return UnlockStatus.not_supported
        if connector.starting is not None:
            # A start is locking the cable right now: let it finish, then stop what it began.
            # (It sends nothing, so waiting here cannot wait for the reader.)
            await asyncio.shield(connector.starting)
        if connector.transaction is not None:
            self._stop(connector, Reason.unlock_command)
        unlocked = await connector.hardware.unlock()
        connector.lock_failure = False
        self._refresh()
        return UnlockStatus.unlocked if unlocked else UnlockStatus.unlock_failed

    def clear_cache(self) -> None:
        self.authorizer.cache.clear()
        log.info("authorization cache cleared")

    def reset(self, kind: ResetType) -> None:
        """Reset (§5.14), after the answer has been sent."""
        self._spawn(self._reset(kind), "reset")

    async def _reset(self, kind: ResetType) -> None:
        async with self._lock:
            self.resetting = kind
            self._stop_all(Reason.soft_reset if kind is ResetType.soft else Reason.hard_reset)
            self._refresh()
        if kind is ResetType.soft and self.online:
            # A soft reset is graceful: let the StopTransactions reach the CSMS first.
            try:
                async with asyncio.timeout(SOFT_RESET_GRACE):
                    await self.outbox.wait_empty()
            except TimeoutError:
                log.warning(
                    "soft reset: %d messages still queued; kept for later", len(self.outbox)
                )
        log.warning("%s reset requested by the CSMS", kind.value)
        if self.reset_hook is not None:
            await self.reset_hook(kind)

    def trigger(self, requested: MessageTrigger, connector_id: int | None) -> TriggerMessageStatus:
        """TriggerMessage (Remote Trigger profile, §5.17)."""
        if connector_id is not None and not 0 <= connector_id <= len(self.connectors):
            return TriggerMessageStatus.rejected
        if requested is MessageTrigger.meter_values and connector_id == 0:
            return TriggerMessageStatus.rejected
        return TriggerMessageStatus.accepted

    async def send_triggered_meter_values(self, connector_id: int | None) -> None:
        numbers = [connector_id] if connector_id else range(1, len(self.connectors) + 1)
        for number in numbers:
            connector = self.connectors[number - 1]
            value = meter_value(
                connector.hardware.read_meter(),
                self.keys.items("MeterValuesSampledData"),
                "Trigger",
                datetime.now(UTC),
            )
            if value is None:
                continue
            payload: dict[str, Any] = {"connectorId": number, "meterValue": [value]}
            tx = connector.transaction
            if tx is not None and tx.transaction_id is not None:
                payload["transactionId"] = tx.transaction_id
            await self.send("MeterValues", payload)

    async def send_triggered_status(self, connector_id: int | None) -> None:
        numbers = [connector_id] if connector_id is not None else range(len(self.connectors) + 1)
        for number in numbers:
            status = self.status_of(number)
            if await self._send_status(number, status, datetime.now(UTC)):
                self._reported[number].sent = status

    # -- what `chargepoint ctl status` shows --

    def describe(self) -> dict[str, Any]:
        connectors = []
        for connector in self.connectors:
            status = self.status_of(connector.number)
            tx = connector.transaction
            reading = connector.hardware.read_meter()
            connectors.append(
                {
                    "connector": connector.number,
                    "status": status.status.value,
                    "error_code": status.error_code.value,
                    "plugged": connector.hardware.plugged,
                    "operative": connector.operative,
                    "authorized": connector.authorized.id_tag if connector.authorized else None,
                    "energy_wh": int(reading.energy_wh),
                    "power_w": round(reading.power_w),
                    "transaction": None
                    if tx is None
                    else {
                        "local_id": tx.local_id,
                        "transaction_id": tx.transaction_id,
                        "id_tag": tx.id_tag,
                        "meter_start": tx.meter_start,
                        "energy_wh": int(reading.energy_wh) - tx.meter_start,
                        "started": tx.start_time,
                    },
                }
            )
        return {
            "online": self.online,
            "status": self.status_of(0).status.value,
            "queued_messages": len(self.outbox),
            "delivered_messages": self.outbox.delivered,
            "connectors": connectors,
        }
