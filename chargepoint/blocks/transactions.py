"""Transaction functional block: a charging session from the card (or the remote start) to the
StopTransaction (OCPP 1.6 §4.8 Start Transaction, §4.10 Stop Transaction, §3.10 parent idTags,
§9.1 StopTransactionOnEVSideDisconnect, StopTransactionOnInvalidId, ConnectionTimeOut).

It owns, per connector, the authorization waiting for a cable and the running transaction; it
asks :class:`~chargepoint.blocks.availability.Availability` whether a connector may start one
and :class:`~chargepoint.blocks.authorization.Authorization` who may charge, and tells the others
what happened through events. Start- and StopTransaction are written with the transaction
record by the :class:`~chargepoint.blocks.transaction_journal.TransactionJournal`, so a power
cut at any point leaves either an open transaction to resume or stop, or a queued message.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ocpp.v16.enums import Reason

from chargepoint.blocks.authorization import Authorization
from chargepoint.blocks.availability import Availability
from chargepoint.blocks.context import Context
from chargepoint.blocks.events import (
    AuthorizationPending,
    LockFailed,
    OutOfService,
    TransactionDeauthorized,
    TransactionEnded,
    TransactionStarted,
)
from chargepoint.blocks.transaction_journal import TransactionJournal
from chargepoint.hardware.charger import (
    ConnectorHardware,
    Plugged,
    PowerFailing,
    Unplugged,
)
from chargepoint.model.authorization import IdTagInfo
from chargepoint.model.smart_charging import ChargingProfile
from chargepoint.model.transactions import Transaction
from chargepoint.protocol.outbox import Item

log = logging.getLogger(__name__)


@dataclass
class Authorized:
    """An idTag accepted for a connector that has no transaction yet (status Preparing)."""

    id_tag: str
    parent_id_tag: str | None
    expires: asyncio.TimerHandle | None = None
    confirmed: bool = True  # False: a remote start still waiting for its Authorize
    reservation_id: int | None = None  # the reservation its transaction will end (§5.13)
    charging_profile: ChargingProfile | None = None  # a remote start's TxProfile (§5.11)


@dataclass
class Connector:
    number: int
    hardware: ConnectorHardware
    transaction: Transaction | None = None
    authorized: Authorized | None = None
    starting: asyncio.Future[None] | None = None  # a start waiting for the cable lock
    held: Transaction | None = None  # stopped DeAuthorized: its owner's card frees the cable


class Transactions:
    def __init__(
        self,
        context: Context,
        availability: Availability,
        authorization: Authorization,
    ) -> None:
        self._context = context
        self._keys = context.keys
        self._availability = availability
        self._authorization = authorization
        self._journal = TransactionJournal(context)
        self.connectors = [
            Connector(n, hardware) for n, hardware in enumerate(context.charger.connectors, 1)
        ]
        context.on_hardware(Plugged, self._on_plugged)
        context.on_hardware(Unplugged, self._on_unplugged)
        context.on_hardware(PowerFailing, self._on_power_failing)
        context.events.subscribe(OutOfService, self._on_out_of_service)

    # -- what others may ask --

    def active(self, number: int) -> Transaction | None:
        return self.connectors[number - 1].transaction

    def charging_connectors(self) -> list[int]:
        return [c.number for c in self.connectors if c.transaction is not None]

    def pending_id_tag(self, number: int) -> str | None:
        authorized = self.connectors[number - 1].authorized
        return None if authorized is None else authorized.id_tag

    def connectors_of(self, id_tag: str) -> list[int]:
        """The connectors whose transaction, held cable or waiting authorization is
        ``id_tag``'s."""
        return [
            c.number
            for c in self.connectors
            if (c.transaction is not None and c.transaction.id_tag == id_tag)
            or (c.held is not None and c.held.id_tag == id_tag)
            or (c.authorized is not None and c.authorized.id_tag == id_tag)
        ]

    def held(self, number: int) -> Transaction | None:
        """The ended transaction whose cable connector ``number`` keeps locked, if any."""
        return self.connectors[number - 1].held

    def can_start(self, number: int) -> bool:
        connector = self.connectors[number - 1]
        return (
            connector.transaction is None
            and connector.held is None
            and self._availability.accepts_new_transaction(number)
        )

    # -- after a restart --

    def adopt(self, tx: Transaction) -> ConnectorHardware | None:
        """Take back a transaction a restart interrupted; None when its connector is gone."""
        if not 1 <= tx.connector <= len(self.connectors):
            return None
        connector = self.connectors[tx.connector - 1]
        connector.transaction = tx
        self._context.events.publish(TransactionStarted(connector.number))
        return connector.hardware

    # -- the hardware --

    async def _on_plugged(self, event: Plugged) -> None:
        connector = self.connectors[event.connector - 1]
        if connector.transaction is not None:
            log.info("connector %d: EV plugged in again", connector.number)
            return
        authorized = connector.authorized
        if authorized is None or not authorized.confirmed:
            return
        if not self.can_start(connector.number):
            # A fault, a reset under way: the connector can take no transaction now.
            log.info(
                "connector %d cannot start a transaction now (%s): the authorization of %s ends",
                connector.number,
                self._availability.status_of(connector.number).status.value,
                authorized.id_tag,
            )
            self._withdraw(connector)
            return
        await self._start(connector, authorized)

    async def _on_unplugged(self, event: Unplugged) -> None:
        connector = self.connectors[event.connector - 1]
        if event.socket_side:
            connector.held = None
            self._context.events.publish(LockFailed(connector.number, False))
        tx = connector.transaction
        if tx is None:
            return
        if self._keys.boolean("StopTransactionOnEVSideDisconnect"):
            self.stop(connector.number, Reason.ev_disconnected)
            if self._keys.boolean("UnlockConnectorOnEVSideDisconnect"):
                await connector.hardware.unlock()
        else:
            # §9.1.23 false: the transaction goes on, suspended, until the EV comes back.
            log.info("connector %d: EV unplugged; transaction continues", connector.number)

    async def _on_power_failing(self, event: PowerFailing) -> None:
        self.stop_all(Reason.power_loss)

    # -- an authorized idTag waits for the cable (§9.1 ConnectionTimeOut) --

    def claim(self, number: int, id_tag: str) -> bool:
        """Hold a free connector for a remote start until its Authorize is decided. Nothing
        shows yet: Preparing comes once the idTag is authorized (OCTT TC_011_1_CS: the
        Authorize.req, step 5, before the StatusNotification Preparing, step 7)."""
        connector = self.connectors[number - 1]
        if not self.can_start(number) or connector.authorized is not None:
            return False
        connector.authorized = Authorized(id_tag, None, confirmed=False)
        return True

    def release(self, number: int, id_tag: str) -> bool:
        """End a remote start's claim; False when something else took the connector since."""
        connector = self.connectors[number - 1]
        claim = connector.authorized
        if claim is None or claim.confirmed or claim.id_tag != id_tag:
            return False
        self._withdraw(connector)
        return True

    async def authorized(
        self,
        number: int,
        id_tag: str,
        parent_id_tag: str | None,
        reservation_id: int | None = None,
        charging_profile: ChargingProfile | None = None,
    ) -> None:
        """``id_tag`` may charge on connector ``number`` (using reservation
        ``reservation_id``, with a remote start's ``charging_profile``): start now if the EV is
        there, else wait ConnectionTimeOut for it. Call inside a unit of work."""
        connector = self.connectors[number - 1]
        authorized = Authorized(
            id_tag,
            parent_id_tag,
            reservation_id=reservation_id,
            charging_profile=charging_profile,
        )
        if connector.hardware.ev_connected:
            await self._start(connector, authorized)
            return
        timeout = self._keys.integer("ConnectionTimeOut")
        log.info(
            "idTag %s authorized on connector %d; waiting %d s for the cable",
            id_tag,
            number,
            timeout,
        )
        authorized.expires = asyncio.get_running_loop().call_later(
            timeout, self._connection_timeout, connector, authorized
        )
        connector.authorized = authorized
        self._context.events.publish(AuthorizationPending(number, True))

    def forget_reservation(self, reservation_id: int) -> None:
        """Reservation ``reservation_id`` ended (expired, cancelled, replaced): an idTag still
        waiting for the cable starts without it (its StartTransaction names no reservation)."""
        for connector in self.connectors:
            authorized = connector.authorized
            if authorized is not None and authorized.reservation_id == reservation_id:
                authorized.reservation_id = None

    def _on_out_of_service(self, event: OutOfService) -> None:
        connector = self.connectors[event.connector - 1]
        if connector.authorized is not None:
            log.info(
                "connector %d out of service: the authorization of %s waiting there ends",
                connector.number,
                connector.authorized.id_tag,
            )
            self._withdraw(connector)

    def _connection_timeout(self, connector: Connector, authorized: Authorized) -> None:
        if connector.authorized is authorized and connector.transaction is None:
            log.info("connector %d: no cable within ConnectionTimeOut", connector.number)
            self._withdraw(connector)
            self._context.settle()

    def withdraw(self, number: int, id_tag: str) -> bool:
        """The driver presented the card of an authorization again: it is withdrawn."""
        connector = self.connectors[number - 1]
        if connector.authorized is None or connector.authorized.id_tag != id_tag:
            return False
        self._withdraw(connector)
        return True

    def _withdraw(self, connector: Connector) -> None:
        authorized = connector.authorized
        if authorized is not None and authorized.expires is not None:
            authorized.expires.cancel()
        connector.authorized = None
        if authorized is not None and authorized.confirmed:  # a claim was never shown
            self._context.events.publish(AuthorizationPending(connector.number, False))

    # -- start and stop --

    async def _start(self, connector: Connector, authorized: Authorized) -> None:
        self._withdraw(connector)
        starting = asyncio.get_running_loop().create_future()
        connector.starting = starting
        try:
            await self._start_locked(connector, authorized)
        finally:
            connector.starting = None
            starting.set_result(None)

    async def _start_locked(self, connector: Connector, authorized: Authorized) -> None:
        hardware = connector.hardware
        if not hardware.fixed_cable and not await hardware.lock():
            # TC_024_CS: no transaction; the connector is Faulted (ConnectorLockFailure).
            log.error("connector %d: the cable lock failed; not starting", connector.number)
            self._context.events.publish(LockFailed(connector.number, True))
            return
        reading = hardware.read_meter()
        tx = self._journal.begin(
            connector.number,
            authorized.id_tag,
            authorized.parent_id_tag,
            reading,
            datetime.now(UTC),
            authorized.reservation_id,
        )
        connector.transaction = tx
        hardware.start_energy()
        self._context.events.publish(
            TransactionStarted(
                connector.number, authorized.reservation_id, authorized.charging_profile
            )
        )
        log.info(
            "transaction started on connector %d for %s (meter %d Wh)",
            connector.number,
            authorized.id_tag,
            tx.meter_start,
        )

    async def stop_and_unlock(
        self, number: int, tx: Transaction, reason: Reason, id_tag: str | None = None
    ) -> None:
        """Stop ``tx`` if it still runs on ``number`` (call inside a unit of work), then let the
        driver take the cable."""
        connector = self.connectors[number - 1]
        if connector.transaction is tx:
            self.stop(number, reason, id_tag=id_tag)
            await connector.hardware.unlock()

    def stop(
        self,
        number: int,
        reason: Reason,
        *,
        id_tag: str | None = None,
        meter: int | None = None,
        when: datetime | None = None,
    ) -> None:
        """Stop connector ``number``'s transaction; its StopTransaction is queued durably."""
        connector = self.connectors[number - 1]
        tx = connector.transaction
        assert tx is not None
        hardware = connector.hardware
        hardware.stop_energy()
        meter = self._journal.end(
            tx,
            reason,
            when or datetime.now(UTC),
            reading=hardware.read_meter() if meter is None else None,
            meter=meter,
            id_tag=id_tag,
        )
        connector.transaction = None
        self._context.events.publish(TransactionEnded(number))
        log.info(
            "transaction %s on connector %d stopped (%s), %d Wh",
            tx.transaction_id or f"(local {tx.local_id})",
            number,
            reason.value,
            meter - tx.meter_start,
        )

    def stop_and_hold(self, number: int, tx: Transaction, reason: Reason) -> None:
        """Stop ``tx`` (call inside a unit of work) and keep its cable locked until the same
        idTag, or one with the same parent, is presented (§4.8, errata v4.0 §3.18)."""
        connector = self.connectors[number - 1]
        if connector.transaction is not tx:
            return
        self.stop(number, reason)
        if not connector.hardware.fixed_cable and connector.hardware.locked:
            connector.held = tx
            log.info(
                "connector %d: the cable stays locked until %s (or a card of its parent %s)"
                " is presented",
                number,
                tx.id_tag,
                tx.parent_id_tag,
            )

    async def release_cable(self, number: int) -> None:
        """The held cable's owner presented their card: let them take it."""
        connector = self.connectors[number - 1]
        connector.held = None
        if not await connector.hardware.unlock():
            self._context.events.publish(LockFailed(number, True))

    def stop_all(self, reason: Reason) -> None:
        for connector in self.connectors:
            if connector.transaction is not None:
                self.stop(connector.number, reason)

    async def unlock(self, number: int) -> bool:
        """UnlockConnector (§5.18): stop the transaction first, then unlock."""
        connector = self.connectors[number - 1]
        if connector.starting is not None:
            # A start is locking the cable right now: let it finish, then stop what it began.
            # (It sends nothing, so waiting here cannot wait for the reader.)
            await asyncio.shield(connector.starting)
        if connector.transaction is not None:
            self.stop(number, Reason.unlock_command)
        connector.held = None
        unlocked = await connector.hardware.unlock()
        self._context.events.publish(LockFailed(number, False))
        self._context.settle()
        return unlocked

    # -- what the CSMS says of a transaction --

    def on_delivered(self, item: Item, answer: dict[str, Any]) -> None:
        """The CSMS answered a queued message (the outbox has stored the id already)."""
        if item.local_tx is None or "idTagInfo" not in answer:
            return
        info = IdTagInfo.from_json(answer["idTagInfo"])
        id_tag = item.payload.get("idTag")
        if id_tag:
            self._authorization.remember(id_tag, info)
        if item.action != "StartTransaction":
            return
        for connector in self.connectors:
            tx = connector.transaction
            if tx is None or tx.local_id != item.local_tx:
                continue
            tx.transaction_id = answer["transactionId"]
            tx.id_tag_status = info.status.value
            if info.parent_id_tag is not None:
                tx.parent_id_tag = info.parent_id_tag
            if not info.accepted:
                tx.deauthorized = True
                self._context.events.publish(
                    TransactionDeauthorized(connector.number, tx.local_id, info.status.value)
                )
