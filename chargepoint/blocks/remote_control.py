"""Remote transaction control functional block: RemoteStartTransaction (§5.11),
RemoteStopTransaction (§5.12) and UnlockConnector (§5.18), on the transaction block's public
operations. The handlers decide from the current state and leave the work to a task.
"""

from __future__ import annotations

import logging
from typing import Any

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, Reason, RemoteStartStopStatus, UnlockStatus

from chargepoint.blocks.authorization import Authorization
from chargepoint.blocks.context import Context
from chargepoint.blocks.reservation import Reservations
from chargepoint.blocks.smart_charging import SmartCharging
from chargepoint.blocks.transactions import Transactions
from chargepoint.model.authorization import IdTagInfo
from chargepoint.model.smart_charging import ChargingProfile

log = logging.getLogger(__name__)


class RemoteControl:
    def __init__(
        self,
        context: Context,
        transactions: Transactions,
        authorization: Authorization,
        reservations: Reservations | None = None,
        smart_charging: SmartCharging | None = None,
    ) -> None:
        self._context = context
        self._transactions = transactions
        self._authorization = authorization
        self._reservations = reservations  # None: the Reservation profile is off
        self._smart_charging = smart_charging  # None: the Smart Charging profile is off

    @on(Action.remote_start_transaction)  # type: ignore[untyped-decorator]
    def _on_remote_start(
        self,
        id_tag: str,
        connector_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
    ) -> call_result.RemoteStartTransaction:
        return call_result.RemoteStartTransaction(
            self.remote_start(id_tag, connector_id, charging_profile)
        )

    def remote_start(
        self,
        id_tag: str,
        connector_id: int | None,
        charging_profile: dict[str, Any] | None = None,
    ) -> RemoteStartStopStatus:
        transactions = self._transactions
        numbers = list(self._context.connectors)
        if connector_id is not None:
            if connector_id not in numbers:
                # TC_027_CS: connector 0 (or one that does not exist) cannot start a transaction.
                return RemoteStartStopStatus.rejected
            number = connector_id
        else:
            free = [
                n
                for n in numbers
                if transactions.can_start(n) and not transactions.pending_id_tag(n)
            ]
            hardware = self._context.charger.connectors
            plugged = [n for n in free if hardware[n - 1].ev_connected]
            candidates = plugged or free
            if self._reservations is not None:
                candidates = self._reservations.preferred(id_tag, candidates)
            number = (candidates or [1])[0]
        if self._reservations is not None and self._reservations.refuses_at_once(number, id_tag):
            return RemoteStartStopStatus.rejected
        profile: ChargingProfile | None = None
        if charging_profile is not None:
            if self._smart_charging is None:
                log.info("RemoteStartTransaction with a charging profile: Smart Charging is off")
            else:
                profile = self._smart_charging.remote_start_profile(charging_profile)
                if profile is None:
                    return RemoteStartStopStatus.rejected  # OCTT TC_060_CS
        # Claim the connector now, so a second request for it is rejected.
        if not transactions.claim(number, id_tag):
            return RemoteStartStopStatus.rejected
        self._context.spawn(self._remote_start(number, id_tag, profile), "remote start")
        return RemoteStartStopStatus.accepted

    async def _remote_start(
        self, number: int, id_tag: str, profile: ChargingProfile | None
    ) -> None:
        info = IdTagInfo.from_json({"status": "Accepted"})
        reservations = self._reservations
        # §5.13: a reservation with a parentIdTag needs the idTag's parent, which only the
        # list, the cache or an Authorize.req can give, whatever AuthorizeRemoteTxRequests says.
        if self._context.keys.boolean("AuthorizeRemoteTxRequests") or (
            reservations is not None and reservations.needs_parent(number, id_tag)
        ):
            info = await self._authorization.authorize(id_tag)
        async with self._context.work():
            if not self._transactions.release(number, id_tag):
                return
            if not info.accepted or not self._transactions.can_start(number):
                log.info("remote start for %s not authorized: %s", id_tag, info.status.value)
                return
            reservation_id = None
            if self._reservations is not None:
                allowed, reservation_id = self._reservations.may_charge(
                    number, id_tag, info.parent_id_tag
                )
                if not allowed:
                    return
            await self._transactions.authorized(
                number, id_tag, info.parent_id_tag, reservation_id, profile
            )

    @on(Action.remote_stop_transaction)  # type: ignore[untyped-decorator]
    def _on_remote_stop(self, transaction_id: int) -> call_result.RemoteStopTransaction:
        for number in self._context.connectors:
            tx = self._transactions.active(number)
            if tx is not None and tx.transaction_id == transaction_id:
                self._context.spawn(self._remote_stop(number, transaction_id), "remote stop")
                return call_result.RemoteStopTransaction(RemoteStartStopStatus.accepted)
        return call_result.RemoteStopTransaction(RemoteStartStopStatus.rejected)

    async def _remote_stop(self, number: int, transaction_id: int) -> None:
        async with self._context.work():
            tx = self._transactions.active(number)
            if tx is not None and tx.transaction_id == transaction_id:
                self._transactions.stop(number, Reason.remote)
                await self._context.charger.connectors[number - 1].unlock()

    @on(Action.unlock_connector)  # type: ignore[untyped-decorator]
    async def _on_unlock_connector(self, connector_id: int) -> call_result.UnlockConnector:
        return call_result.UnlockConnector(await self.unlock(connector_id))

    async def unlock(self, connector_id: int) -> UnlockStatus:
        if connector_id not in self._context.connectors:
            return UnlockStatus.not_supported
        if self._context.charger.connectors[connector_id - 1].fixed_cable:
            return UnlockStatus.not_supported
        unlocked = await self._transactions.unlock(connector_id)
        return UnlockStatus.unlocked if unlocked else UnlockStatus.unlock_failed
