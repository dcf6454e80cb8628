"""What a transaction writes, each time in one SQLite transaction: its record with its
StartTransaction, and its end (the Transaction.End value, the record closed, the
StopTransaction queued). A power cut at any instant leaves either the whole write or none of
it, so there is never an open record without its StartTransaction, nor a closed one without
its StopTransaction (OCPP 1.6 §3.16 transaction messages are delivered, §4.10).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ocpp.v16.enums import Reason

from chargepoint.blocks.context import Context
from chargepoint.hardware.charger import MeterReading
from chargepoint.model.metering import meter_value
from chargepoint.model.transactions import Transaction, timestamp
from chargepoint.storage import atomic


class TransactionJournal:
    def __init__(self, context: Context) -> None:
        self._context = context
        self._keys = context.keys

    def begin(
        self,
        connector: int,
        id_tag: str,
        parent_id_tag: str | None,
        reading: MeterReading,
        when: datetime,
        reservation_id: int | None = None,
    ) -> Transaction:
        meter_start = int(reading.energy_wh)
        payload: dict[str, Any] = {
            "connectorId": connector,
            "idTag": id_tag,
            "meterStart": meter_start,
            "timestamp": timestamp(when),
        }
        if reservation_id is not None:
            payload["reservationId"] = reservation_id  # §5.13: the reservation it ends
        with atomic(self._context.db):
            tx = self._context.transactions.start(
                connector, id_tag, parent_id_tag, meter_start, when
            )
            self._add_stop_value(tx, reading, "Transaction.Begin", when)
            self._context.send_durable("StartTransaction", payload, tx.local_id)
            if reservation_id is not None:
                # §5.13: the transaction ends the reservation, in the same write, so a power
                # cut cannot leave it standing once StartTransaction has named it.
                self._context.db.execute("DELETE FROM reservations WHERE id = ?", (reservation_id,))
        return tx

    def end(
        self,
        tx: Transaction,
        reason: Reason,
        when: datetime,
        *,
        reading: MeterReading | None = None,
        meter: int | None = None,
        id_tag: str | None = None,
    ) -> int:
        """Close ``tx`` with its StopTransaction; the meter is ``reading`` (with its End value)
        or, after a power cut, the last ``meter`` on disk. Returns meterStop."""
        with atomic(self._context.db):
            if reading is not None:
                meter = int(reading.energy_wh)
                self._add_stop_value(tx, reading, "Transaction.End", when)
            assert meter is not None
            payload: dict[str, Any] = {
                "meterStop": meter,
                "timestamp": timestamp(when),
                "reason": reason.value,
            }
            if id_tag is not None:
                payload["idTag"] = id_tag
            if tx.stop_data and self._stop_measurands():
                payload["transactionData"] = tx.stop_data
            self._context.transactions.mark_stopped(tx)
            self._context.send_durable("StopTransaction", payload, tx.local_id)
        return meter

    def _stop_measurands(self) -> list[str]:
        keys = self._keys
        return keys.items("StopTxnSampledData") or keys.items("StopTxnAlignedData")

    def _add_stop_value(
        self, tx: Transaction, reading: MeterReading, context: str, when: datetime
    ) -> None:
        measurands = self._stop_measurands()
        if not measurands:
            return
        value = meter_value(reading, measurands, context, when)
        if value is not None:
            self._context.transactions.add_stop_value(tx, value)
