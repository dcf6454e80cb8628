"""A transaction whose idTag the CSMS did not accept in StartTransaction.conf (OCPP 1.6 §4.8,
§9.1.25 StopTransactionOnInvalidId, §9.1.14 MaxEnergyOnInvalidId; OCTT TC_034).

Either the transaction stops at once with reason DeAuthorized and the cable is released, or it
goes on with at most MaxEnergyOnInvalidId more Wh, after which the EVSE withholds energy
(SuspendedEVSE) until the driver ends it.
"""

from __future__ import annotations

import logging

from ocpp.v16.enums import Reason

from chargepoint.blocks.context import Context
from chargepoint.blocks.events import (
    EnergyWithheld,
    MeterSampled,
    TransactionDeauthorized,
    TransactionEnded,
)
from chargepoint.blocks.transactions import Transactions

log = logging.getLogger(__name__)


class InvalidIdPolicy:
    def __init__(self, context: Context, transactions: Transactions) -> None:
        self._context = context
        self._transactions = transactions
        self._energy_caps: dict[int, float] = {}  # connector → register value not to pass
        context.events.subscribe(TransactionDeauthorized, self._on_deauthorized)
        context.events.subscribe(MeterSampled, self._on_meter_sampled)
        context.events.subscribe(TransactionEnded, self._on_transaction_ended)

    def _on_deauthorized(self, event: TransactionDeauthorized) -> None:
        self._context.spawn(self._deauthorized(event), "deauthorized")

    async def _deauthorized(self, event: TransactionDeauthorized) -> None:
        number = event.connector
        async with self._context.work():
            tx = self._transactions.active(number)
            if tx is None or tx.local_id != event.local_id:
                return  # it ended meanwhile
            if self._context.keys.boolean("StopTransactionOnInvalidId"):
                log.warning(
                    "CSMS says %s is %s: stopping transaction %s",
                    tx.id_tag,
                    event.status,
                    tx.transaction_id,
                )
                await self._transactions.stop_and_unlock(number, tx, Reason.de_authorized)
                return
            limit = self._context.keys.integer("MaxEnergyOnInvalidId")
            log.warning(
                "CSMS says %s is %s: transaction %s goes on, at most %d Wh more",
                tx.id_tag,
                event.status,
                tx.transaction_id,
                limit,
            )
            reading = self._context.charger.connectors[number - 1].read_meter()
            self._energy_caps[number] = reading.energy_wh + limit
            self._context.events.publish(EnergyWithheld(number, True))
            self._enforce(number, reading.energy_wh)

    def _on_transaction_ended(self, event: TransactionEnded) -> None:
        self._energy_caps.pop(event.connector, None)

    def _on_meter_sampled(self, event: MeterSampled) -> None:
        self._enforce(event.connector, event.energy_wh)

    def _enforce(self, number: int, energy_wh: float) -> None:
        cap = self._energy_caps.get(number)
        if cap is not None and energy_wh >= cap:
            self._context.charger.connectors[number - 1].stop_energy()
