"""A transaction whose idTag the CSMS did not accept in StartTransaction.conf (OCPP 1.6 §4.8
as the errata v4.0 §3.18 moved it there, §9.1.24 StopTransactionOnInvalidId, §9.1.14
MaxEnergyOnInvalidId; OCTT TC_037_2_CS and TC_037_3_CS).

Either the transaction stops at once with reason DeAuthorized, its cable kept locked until
the same idTag (or one of the same parent) is presented again, or it goes on with at most
MaxEnergyOnInvalidId more Wh, after which the EVSE withholds energy (SuspendedEVSE) until the
driver ends it. The allowance is checked every second, and at every meter sample.
"""

from __future__ import annotations

import asyncio
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

CAP_CHECK = 1.0  # s between two looks at the meter while an energy allowance runs


class InvalidIdPolicy:
    def __init__(self, context: Context, transactions: Transactions) -> None:
        self._context = context
        self._transactions = transactions
        self._energy_caps: dict[int, float] = {}  # connector → register value not to pass
        self._withheld: set[int] = set()  # connectors whose allowance is used up
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
                self._transactions.stop_and_hold(number, tx, Reason.de_authorized)
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
            self._enforce(number, reading.energy_wh)
        self._context.spawn(self._watch(number), f"energy allowance {number}")

    async def _watch(self, number: int) -> None:
        while number in self._energy_caps and number not in self._withheld:
            await asyncio.sleep(CAP_CHECK)
            async with self._context.work():
                if number in self._energy_caps:
                    reading = self._context.charger.connectors[number - 1].read_meter()
                    self._enforce(number, reading.energy_wh)

    def _on_transaction_ended(self, event: TransactionEnded) -> None:
        self._energy_caps.pop(event.connector, None)
        self._withheld.discard(event.connector)

    def _on_meter_sampled(self, event: MeterSampled) -> None:
        self._enforce(event.connector, event.energy_wh)

    def _enforce(self, number: int, energy_wh: float) -> None:
        """Inside a unit of work: withhold energy once the allowance is used up."""
        cap = self._energy_caps.get(number)
        if cap is None or energy_wh < cap or number in self._withheld:
            return
        log.warning("connector %d: MaxEnergyOnInvalidId used up; no more energy", number)
        self._context.charger.connectors[number - 1].stop_energy()
        self._withheld.add(number)
        self._context.events.publish(EnergyWithheld(number, True))
