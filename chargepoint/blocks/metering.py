"""Meter values functional block (OCPP 1.6 §3.16, §9.1.5 ClockAlignedDataInterval,
MeterValueSampleInterval, §5.17 triggered MeterValues).

Sampled values run for each transaction from its start to its stop; clock-aligned values run
always, transaction-related while a transaction runs. Transaction-related values go through
the durable outbox together with the transaction's "last seen" reading, so a StopTransaction
after a power cut is never older than a MeterValues already queued.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.interval import IntervalTrigger

from chargepoint.blocks.context import Context
from chargepoint.blocks.events import MeterSampled, TransactionEnded, TransactionStarted
from chargepoint.blocks.transactions import Transactions
from chargepoint.model.metering import ClockAlignedTrigger, aligned_at_or_before, meter_value
from chargepoint.storage import atomic

log = logging.getLogger(__name__)


class Metering:
    def __init__(self, context: Context, transactions: Transactions) -> None:
        self._context = context
        self._keys = context.keys
        self._transactions = transactions
        context.events.subscribe(TransactionStarted, lambda e: self._schedule(e.connector))
        context.events.subscribe(TransactionEnded, lambda e: self._cancel(e.connector))
        context.keys.subscribe(self._on_key_changed)

    def start(self) -> None:
        self._schedule_aligned()

    # -- sampled (MeterValueSampleInterval) --

    def _schedule(self, number: int) -> None:
        self._cancel(number)
        interval = self._keys.integer("MeterValueSampleInterval")
        if interval <= 0:
            return
        self._context.scheduler.add_job(
            self._sample,
            IntervalTrigger(seconds=interval, timezone=UTC),
            args=[number],
            id=_job(number),
            replace_existing=True,
            misfire_grace_time=None,
            coalesce=True,
        )

    def _cancel(self, number: int) -> None:
        scheduler = self._context.scheduler
        if scheduler.get_job(_job(number)) is not None:
            scheduler.remove_job(_job(number))

    async def _sample(self, number: int) -> None:
        context = self._context
        async with context.work():
            tx = self._transactions.active(number)
            if tx is None:
                return
            now = datetime.now(UTC)
            reading = context.charger.connectors[number - 1].read_meter()
            value = meter_value(
                reading, self._keys.items("MeterValuesSampledData"), "Sample.Periodic", now
            )
            stop_value = meter_value(
                reading, self._keys.items("StopTxnSampledData"), "Sample.Periodic", now
            )
            if stop_value is not None:
                context.transactions.add_stop_value(tx, stop_value)
            with atomic(context.db):
                if value is not None:
                    context.send_durable(
                        "MeterValues", {"connectorId": number, "meterValue": [value]}, tx.local_id
                    )
                context.transactions.note_meter(tx, int(reading.energy_wh), now)
            context.events.publish(MeterSampled(number, reading.energy_wh))

    # -- clock-aligned (ClockAlignedDataInterval) --

    def _schedule_aligned(self) -> None:
        scheduler = self._context.scheduler
        if scheduler.get_job("aligned") is not None:
            scheduler.remove_job("aligned")
        interval = self._keys.integer("ClockAlignedDataInterval")
        if interval > 0:
            scheduler.add_job(
                self._aligned,
                ClockAlignedTrigger(interval),
                id="aligned",
                misfire_grace_time=None,
                coalesce=True,
            )

    async def _aligned(self) -> None:
        # §9.1.5: sent at the end of each interval, "bearing the interval start time timestamp".
        interval = self._keys.integer("ClockAlignedDataInterval")
        if interval <= 0:
            return
        context = self._context
        end = aligned_at_or_before(datetime.now(UTC), interval)
        now = end - timedelta(seconds=interval)
        for number in context.connectors:
            async with context.work():
                reading = context.charger.connectors[number - 1].read_meter()
                tx = self._transactions.active(number)
                value = meter_value(
                    reading, self._keys.items("MeterValuesAlignedData"), "Sample.Clock", now
                )
                payload = {"connectorId": number, "meterValue": [value]}
                if tx is not None:
                    stop_value = meter_value(
                        reading, self._keys.items("StopTxnAlignedData"), "Sample.Clock", now
                    )
                    if stop_value is not None:
                        context.transactions.add_stop_value(tx, stop_value)
                    with atomic(context.db):
                        if value is not None:
                            context.send_durable("MeterValues", payload, tx.local_id)
                        context.transactions.note_meter(tx, int(reading.energy_wh), end)
                    continue
            if value is not None and context.online:
                # Outside a transaction, clock-aligned values are not transaction-related.
                await context.send("MeterValues", payload)

    # -- on request --

    async def send_now(self, connector_id: int | None) -> None:
        """MeterValues on request (TriggerMessage, context Trigger)."""
        context = self._context
        numbers = [connector_id] if connector_id else list(context.connectors)
        for number in numbers:
            value = meter_value(
                context.charger.connectors[number - 1].read_meter(),
                self._keys.items("MeterValuesSampledData"),
                "Trigger",
                datetime.now(UTC),
            )
            if value is None:
                continue
            payload: dict[str, Any] = {"connectorId": number, "meterValue": [value]}
            tx = self._transactions.active(number)
            if tx is not None and tx.transaction_id is not None:
                payload["transactionId"] = tx.transaction_id
            await context.send("MeterValues", payload)

    def _on_key_changed(self, name: str, value: str) -> None:
        if name == "MeterValueSampleInterval":
            for number in self._transactions.charging_connectors():
                self._schedule(number)
        elif name == "ClockAlignedDataInterval":
            self._schedule_aligned()


def _job(number: int) -> str:
    return f"sample-{number}"
