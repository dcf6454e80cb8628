"""A card on the reader (OCPP 1.6 §3.5 local authorization, §3.10 parent idTags): which
connector it is for, and whether it starts, withdraws or stops a charging session. It decides
through the authorization block and acts through the transaction block's public operations.
"""

from __future__ import annotations

import logging

from ocpp.v16.enums import ChargePointStatus, Reason

from chargepoint.blocks.authorization import Authorization
from chargepoint.blocks.availability import Availability
from chargepoint.blocks.context import Context
from chargepoint.blocks.reservation import Reservations
from chargepoint.blocks.transactions import Transactions
from chargepoint.hardware.charger import IdTagPresented
from chargepoint.model.transactions import Transaction

log = logging.getLogger(__name__)


class CardReader:
    def __init__(
        self,
        context: Context,
        availability: Availability,
        authorization: Authorization,
        transactions: Transactions,
        reservations: Reservations | None = None,
    ) -> None:
        self._context = context
        self._availability = availability
        self._authorization = authorization
        self._transactions = transactions
        self._reservations = reservations  # None: the Reservation profile is off
        context.on_hardware(IdTagPresented, self._on_id_tag)

    def _connector_for(self, id_tag: str, number: int | None) -> int | None:
        if number is not None:
            return number
        transactions = self._transactions
        mine = transactions.connectors_of(id_tag)
        if mine:
            return mine[0]
        free = [
            n
            for n in self._context.connectors
            if transactions.active(n) is None and transactions.pending_id_tag(n) is None
        ]
        hardware = self._context.charger.connectors
        # A cable left in after a transaction (Finishing) is not an invitation to start one
        # on it (errata v4.0 §3.20).
        plugged = [
            n
            for n in free
            if hardware[n - 1].ev_connected
            and self._availability.status_of(n).status is not ChargePointStatus.finishing
        ]
        candidates = plugged or [n for n in free if transactions.can_start(n)]
        if self._reservations is not None:
            candidates = self._reservations.preferred(id_tag, candidates)
        return candidates[0] if candidates else None

    async def _on_id_tag(self, event: IdTagPresented) -> None:
        id_tag = event.id_tag
        transactions = self._transactions
        number = self._connector_for(id_tag, event.connector)
        if number is None:
            log.info("idTag %s presented, but no connector can take it", id_tag)
            return
        tx = transactions.active(number)
        if tx is not None:
            await self._on_stop_tag(number, tx, id_tag)
            return
        held = transactions.held(number)
        if held is not None:
            if await self._same_owner(number, held, id_tag, "take the cable of"):
                async with self._context.work():
                    if transactions.held(number) is held:
                        log.info("connector %d: cable released to %s", number, id_tag)
                        await transactions.release_cable(number)
            return
        if transactions.pending_id_tag(number) == id_tag:
            # The same card again before the cable: the driver changed their mind.
            async with self._context.work():
                if transactions.withdraw(number, id_tag):
                    log.info("idTag %s presented again: authorization withdrawn", id_tag)
            return
        if not transactions.can_start(number):
            log.info(
                "idTag %s presented on connector %d, which is %s: ignored",
                id_tag,
                number,
                self._availability.status_of(number).status.value,
            )
            return
        reservations = self._reservations
        if reservations is not None and reservations.refuses_at_once(number, id_tag):
            return
        info = await self._authorization.authorize(id_tag)
        async with self._context.work():
            if not info.accepted:
                log.info("idTag %s not accepted (%s): no transaction", id_tag, info.status.value)
                return
            if not transactions.can_start(number) or transactions.pending_id_tag(number):
                return
            reservation_id = None
            if reservations is not None:
                allowed, reservation_id = reservations.may_charge(
                    number, id_tag, info.parent_id_tag
                )
                if not allowed:
                    return
            await transactions.authorized(number, id_tag, info.parent_id_tag, reservation_id)

    async def _on_stop_tag(self, number: int, tx: Transaction, id_tag: str) -> None:
        if await self._same_owner(number, tx, id_tag, "stop the transaction of"):
            async with self._context.work():
                await self._transactions.stop_and_unlock(number, tx, Reason.local, id_tag)

    async def _same_owner(self, number: int, tx: Transaction, id_tag: str, what: str) -> bool:
        """Whether ``id_tag`` is ``tx``'s own card or a card of the same parent (§3.10)."""
        if id_tag == tx.id_tag:
            return True
        # Another card may act for the transaction only as a card of the same account, which
        # only a known parentIdTag can show; without one there is nothing to compare, so no
        # Authorize.req is sent (OCTT TC_068_CS step 1; TC_069_CS with a parent).
        if tx.parent_id_tag is None:
            log.info("idTag %s may not %s %s on connector %d", id_tag, what, tx.id_tag, number)
            return False
        info = await self._authorization.authorize(id_tag)
        if info.accepted and info.parent_id_tag == tx.parent_id_tag:
            return True
        log.info(
            "idTag %s (parent %s) may not %s %s (parent %s)",
            id_tag,
            info.parent_id_tag,
            what,
            tx.id_tag,
            tx.parent_id_tag,
        )
        return False
