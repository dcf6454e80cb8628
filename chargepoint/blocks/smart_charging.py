"""Smart Charging functional block (OCPP 1.6 §3.13, §5.5 ClearChargingProfile, §5.7
GetCompositeSchedule, §5.16 SetChargingProfile, §9.4 keys; errata v4.0), on the pure
:mod:`chargepoint.model.smart_charging`.

Profiles are kept in SQLite (``charging_profiles``, one row per chargingProfileId with the
connectorId it was set for) and survive a restart; a TxProfile goes with its transaction.

The hardware interface: the limit in force on each connector is handed to the charger as a
current per phase, :meth:`ConnectorHardware.set_current_limit` (None: no profile limits it, the
hardware's maximum applies). It is worked out again at every change the profiles can make —
an ``apscheduler`` job at the next period boundary, validFrom/validTo or recurrence
(:func:`~chargepoint.model.smart_charging.next_change_after`), no polling — and whenever a
profile is set or cleared or a transaction starts or ends. A ChargePointMaxProfile limits the
charge point as a whole: the connectors in a transaction share it equally.
"""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

from apscheduler.jobstores.base import JobLookupError
from apscheduler.triggers.date import DateTrigger
from ocpp.charge_point import snake_to_camel_case
from ocpp.exceptions import PropertyConstraintViolationError
from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import (
    Action,
    ChargingProfileStatus,
    ClearChargingProfileStatus,
    GetCompositeScheduleStatus,
)

from chargepoint.blocks.context import Context
from chargepoint.blocks.events import TransactionEnded, TransactionStarted
from chargepoint.blocks.transactions import Transactions
from chargepoint.model.smart_charging import (
    ActiveTransaction,
    ChargingLimit,
    ChargingProfile,
    ChargingProfileError,
    ChargingProfilePurpose,
    ChargingRateUnit,
    InstalledProfile,
    ProfileLimits,
    cleared_ids,
    composite_schedule,
    expired_ids,
    limit_at,
    next_change_after,
    rejection_reason,
    remote_start_rejection,
    replaced_ids,
    tx_profile_ids,
)
from chargepoint.model.transactions import timestamp
from chargepoint.storage import atomic

log = logging.getLogger(__name__)

JOB_ID = "smart-charging"


class SmartCharging:
    def __init__(self, context: Context, transactions: Transactions) -> None:
        self._context = context
        self._transactions = transactions
        self._rating = context.charger.rating
        self._applied: dict[int, float | None] = {}
        context.events.subscribe(TransactionStarted, self._on_transaction_started)
        context.events.subscribe(TransactionEnded, self._on_transaction_ended)

    def start(self) -> None:
        """After the transactions a restart interrupted are resumed or stopped: a TxProfile
        whose transaction is gone (a power cut between its end and this) goes too."""
        self._drop_expired()
        stale = [
            item.profile.id
            for item in self.installed()
            if item.profile.purpose is ChargingProfilePurpose.TX
            and not self._runs(item.connector_id, item.profile.transaction_id)
        ]
        if stale:
            self._remove(stale)
            log.info("TxProfiles %s outlived their transaction: removed", stale)
        self.apply()

    def _runs(self, connector_id: int, transaction_id: int | None) -> bool:
        running = self._transaction(connector_id)
        return running is not None and (
            transaction_id is None
            or running.transaction_id is None
            or running.transaction_id == transaction_id
        )

    async def close(self) -> None:
        with contextlib.suppress(JobLookupError):
            self._context.scheduler.remove_job(JOB_ID)

    # -- the store --

    def installed(self) -> list[InstalledProfile]:
        return [
            InstalledProfile(connector, ChargingProfile.from_json(json.loads(profile)))
            for connector, profile in self._context.db.execute(
                "SELECT connector, profile FROM charging_profiles ORDER BY id"
            )
        ]

    def _remove(self, ids: list[int]) -> None:
        self._context.db.executemany(
            "DELETE FROM charging_profiles WHERE id = ?", [(i,) for i in ids]
        )

    def _install(self, connector_id: int, profile: ChargingProfile) -> list[int]:
        replaced = replaced_ids(self.installed(), connector_id, profile)
        with atomic(self._context.db) as db:
            db.executemany("DELETE FROM charging_profiles WHERE id = ?", [(i,) for i in replaced])
            db.execute(
                "INSERT INTO charging_profiles (id, connector, profile) VALUES (?, ?, ?)",
                (profile.id, connector_id, json.dumps(profile.to_json())),
            )
        return replaced

    # -- what the model needs to know --

    def _limits(self) -> ProfileLimits:
        keys = self._context.keys
        return ProfileLimits.from_keys(
            max_stack_level=keys.integer("ChargeProfileMaxStackLevel"),
            max_periods=keys.integer("ChargingScheduleMaxPeriods"),
            allowed_units=keys.get("ChargingScheduleAllowedChargingRateUnit"),
            max_installed=keys.integer("MaxChargingProfilesInstalled"),
        )

    def _transaction(self, connector_id: int) -> ActiveTransaction | None:
        if connector_id not in self._context.connectors:
            return None
        tx = self._transactions.active(connector_id)
        if tx is None:
            return None
        start = datetime.fromisoformat(tx.start_time.replace("Z", "+00:00"))
        return ActiveTransaction(tx.transaction_id, start)

    def _local_limit(self, connector_id: int) -> ChargingLimit:
        """The charger's own maximum: a connector's, or for connector 0 (what the charge point
        may draw from the grid, errata v4.0 §3.30) all connectors' together."""
        rating = self._rating
        count = len(self._context.connectors) if connector_id == 0 else 1
        return ChargingLimit(rating.max_current_a * count, ChargingRateUnit.A, rating.phases)

    # -- SetChargingProfile (§5.16) --

    @on(Action.set_charging_profile)  # type: ignore[untyped-decorator]
    def _on_set_charging_profile(
        self, connector_id: int, cs_charging_profiles: dict[str, Any]
    ) -> call_result.SetChargingProfile:
        if connector_id != 0 and connector_id not in self._context.connectors:
            # Errata v4.0 §3.39: an invalid connectorId is a CALLERROR.
            raise PropertyConstraintViolationError(
                description=f"connectorId {connector_id} does not exist"
            )
        try:
            profile = ChargingProfile.from_json(snake_to_camel_case(cs_charging_profiles))
        except ChargingProfileError as exc:
            log.warning("SetChargingProfile rejected: %s", exc)
            return call_result.SetChargingProfile(ChargingProfileStatus.rejected)
        installed = self.installed()
        transaction = self._transaction(connector_id)
        if (
            transaction is not None
            and transaction.transaction_id is None
            and profile.transaction_id is not None
        ):
            # The CSMS may send the TxProfile right behind StartTransaction.conf, before the
            # charge point has recorded the id that answer gave: the CSMS's id is the one.
            transaction = ActiveTransaction(profile.transaction_id, transaction.start)
        reason = rejection_reason(
            connector_id, profile, self._limits(), transaction=transaction, installed=installed
        )
        if reason is not None:
            log.warning(
                "SetChargingProfile %d (%s) on connector %d rejected: %s",
                profile.id,
                profile.purpose.value,
                connector_id,
                reason,
            )
            return call_result.SetChargingProfile(ChargingProfileStatus.rejected)
        replaced = self._install(connector_id, profile)
        log.info(
            "charging profile %d (%s, stack level %d) set on connector %d%s",
            profile.id,
            profile.purpose.value,
            profile.stack_level,
            connector_id,
            f"; replaces {replaced}" if replaced else "",
        )
        self.apply()
        return call_result.SetChargingProfile(ChargingProfileStatus.accepted)

    # -- ClearChargingProfile (§5.5) --

    @on(Action.clear_charging_profile)  # type: ignore[untyped-decorator]
    def _on_clear_charging_profile(
        self,
        id: int | None = None,
        connector_id: int | None = None,
        charging_profile_purpose: str | None = None,
        stack_level: int | None = None,
    ) -> call_result.ClearChargingProfile:
        ids = cleared_ids(
            self.installed(),
            profile_id=id,
            connector_id=connector_id,
            purpose=None
            if charging_profile_purpose is None
            else ChargingProfilePurpose(charging_profile_purpose),
            stack_level=stack_level,
        )
        if not ids:
            log.info("ClearChargingProfile: no profile matches")
            return call_result.ClearChargingProfile(ClearChargingProfileStatus.unknown)
        self._remove(ids)
        log.info("charging profiles %s cleared", ids)
        self.apply()
        return call_result.ClearChargingProfile(ClearChargingProfileStatus.accepted)

    # -- GetCompositeSchedule (§5.7) --

    @on(Action.get_composite_schedule)  # type: ignore[untyped-decorator]
    def _on_get_composite_schedule(
        self, connector_id: int, duration: int, charging_rate_unit: str | None = None
    ) -> call_result.GetCompositeSchedule:
        if connector_id != 0 and connector_id not in self._context.connectors:
            return call_result.GetCompositeSchedule(GetCompositeScheduleStatus.rejected)
        now = datetime.now(UTC)
        schedule = composite_schedule(
            self.installed(),
            connector_id,
            now,
            duration,
            local_limit=self._local_limit(connector_id),
            unit=None if charging_rate_unit is None else ChargingRateUnit(charging_rate_unit),
            transaction=self._transaction(connector_id),
            voltage=self._rating.voltage_v,
        )
        assert schedule.start_schedule is not None
        return call_result.GetCompositeSchedule(
            status=GetCompositeScheduleStatus.accepted,
            connector_id=connector_id,
            # Errata v4.0 §3.57: the start goes in scheduleStart, not in the schedule.
            schedule_start=timestamp(schedule.start_schedule),
            charging_schedule=schedule.to_json(with_start=False),
        )

    # -- RemoteStartTransaction with a chargingProfile (§5.11) --

    def remote_start_profile(self, profile_json: dict[str, Any]) -> ChargingProfile | None:
        """The TxProfile of a RemoteStartTransaction.req, to travel with its authorization
        and be set when its transaction starts; None when the request must be refused (OCTT
        TC_060_CS: a purpose other than TxProfile)."""
        try:
            profile = ChargingProfile.from_json(snake_to_camel_case(profile_json))
        except ChargingProfileError as exc:
            log.warning("RemoteStartTransaction's charging profile refused: %s", exc)
            return None
        reason = remote_start_rejection(profile, self._limits())
        if reason is not None:
            log.warning("RemoteStartTransaction's charging profile refused: %s", reason)
            return None
        return profile

    def _on_transaction_started(self, event: TransactionStarted) -> None:
        profile = event.charging_profile
        if profile is not None:
            self._install(event.connector, profile)
            log.info(
                "charging profile %d of the remote start set on connector %d",
                profile.id,
                event.connector,
            )
        self.apply()

    def _on_transaction_ended(self, event: TransactionEnded) -> None:
        # §3.13.1: a TxProfile is the transaction's only.
        ids = tx_profile_ids(self.installed(), event.connector)
        if ids:
            self._remove(ids)
            log.info(
                "transaction on connector %d ended: TxProfiles %s removed", event.connector, ids
            )
        self.apply()

    # -- the hardware --

    def apply(self) -> None:
        """Hand each connector its limit now, and wait for the next instant it can change."""
        now = datetime.now(UTC)
        self._drop_expired(now)
        installed = self.installed()
        voltage = self._rating.voltage_v
        charge_point = limit_at(installed, 0, now, voltage=voltage)
        charging = [n for n in self._context.connectors if self._transactions.active(n)]
        for number in self._context.connectors:
            limit = limit_at(
                installed, number, now, transaction=self._transaction(number), voltage=voltage
            )
            amps = None if limit is None else limit.limit
            if charge_point is not None and len(charging) > 1 and number in charging:
                share = charge_point.limit / len(charging)
                amps = share if amps is None else min(amps, share)
            if self._applied.get(number, "unset") != amps:
                self._applied[number] = amps
                self._context.charger.connectors[number - 1].set_current_limit(amps)
                log.info(
                    "connector %d: current limit %s",
                    number,
                    "none (no charging profile)" if amps is None else f"{amps:g} A per phase",
                )
        self._schedule_next(installed, now)

    def limit_of(self, number: int) -> float | None:
        """The current per phase last handed to connector ``number`` (None: no limit)."""
        return self._applied.get(number)

    def _schedule_next(self, installed: list[InstalledProfile], now: datetime) -> None:
        changes = [
            change
            for number in [0, *self._context.connectors]
            if (
                change := next_change_after(
                    installed, number, now, transaction=self._transaction(number)
                )
            )
            is not None
        ]
        scheduler = self._context.scheduler
        if not changes:
            with contextlib.suppress(JobLookupError):
                scheduler.remove_job(JOB_ID)
            return
        scheduler.add_job(
            self._due,
            DateTrigger(min(changes)),
            id=JOB_ID,
            replace_existing=True,
            misfire_grace_time=None,
        )

    async def _due(self) -> None:
        async with self._context.work():
            self.apply()

    def _drop_expired(self, now: datetime | None = None) -> None:
        ids = expired_ids(self.installed(), now or datetime.now(UTC))
        if ids:
            self._remove(ids)
            log.info("charging profiles %s are past their validTo: removed", ids)
