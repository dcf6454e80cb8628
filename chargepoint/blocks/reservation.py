"""Reservation functional block (OCPP 1.6 §3.11, §5.1 CancelReservation, §5.13 ReserveNow) on
the decisions of :mod:`chargepoint.model.reservations`.

Reservations live in SQLite and each has an ``apscheduler`` job at its expiryDate; one that
expired while the charge point was off is dropped at start. After every unit of work the block
looks again at the connectors: it ends the reservations a Faulted or Unavailable connector
ends, and tells the availability block which connectors show Reserved. The card reader and
the remote start ask it who may charge where (:meth:`Reservations.may_charge`); a transaction
that uses a reservation carries its reservationId in StartTransaction.req and ends it.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime

from apscheduler.jobstores.base import JobLookupError
from apscheduler.triggers.date import DateTrigger
from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import (
    Action,
    CancelReservationStatus,
    ChargePointStatus,
    ReservationStatus,
)

from chargepoint.blocks.availability import Availability
from chargepoint.blocks.context import Context
from chargepoint.blocks.events import ConnectorReserved, TransactionStarted
from chargepoint.blocks.transactions import Transactions
from chargepoint.model.reservations import (
    ConnectorState,
    Reservation,
    ReservationBook,
    Snapshot,
    parse_expiry,
)

log = logging.getLogger(__name__)


def _job(reservation_id: int) -> str:
    return f"reservation-{reservation_id}"


class Reservations:
    def __init__(
        self, context: Context, availability: Availability, transactions: Transactions
    ) -> None:
        self._context = context
        self._availability = availability
        self._transactions = transactions
        self.book = ReservationBook(context.db)
        self._shown: dict[int, bool] = {}
        context.on_settled(self._on_settled)
        context.events.subscribe(TransactionStarted, self._on_transaction_started)

    def start(self) -> None:
        """Drop what expired while the charge point was off; wait for the rest."""
        now = datetime.now(UTC)
        for reservation in self.book.expired(now):
            self.book.remove(reservation.reservation_id)
            log.info(
                "reservation %d expired while the charge point was off",
                reservation.reservation_id,
            )
        for reservation in self.book.all():
            self._schedule(reservation)
        self._context.settle()

    # -- what the card reader and the remote start ask --

    def needs_parent(self, number: int, id_tag: str) -> bool:
        return self.book.needs_parent(number, id_tag)

    def refuses_at_once(self, number: int, id_tag: str) -> bool:
        """Connector ``number`` is reserved for someone else whatever ``id_tag``'s parent."""
        if self.book.blocks_without_asking(number, id_tag):
            log.info("idTag %s refused: connector %d is reserved for another idTag", id_tag, number)
            return True
        return False

    def may_charge(
        self, number: int, id_tag: str, parent_id_tag: str | None
    ) -> tuple[bool, int | None]:
        """Whether ``id_tag`` (whose parent is ``parent_id_tag``) may charge on connector
        ``number``, and the reservationId its transaction uses."""
        allowed, reservation = self.book.matching(number, id_tag, parent_id_tag, self.snapshot())
        if not allowed:
            log.info(
                "idTag %s (parent %s) may not charge on connector %d: it is reserved",
                id_tag,
                parent_id_tag,
                number,
            )
        return allowed, None if reservation is None else reservation.reservation_id

    def preferred(self, id_tag: str, candidates: list[int]) -> list[int]:
        """``candidates`` in the order a card should take them: a connector reserved for it
        first, connectors reserved for others left out."""
        mine = [
            n
            for n in candidates
            if (r := self.book.on_connector(n)) is not None and r.for_tag(id_tag, None)
        ]
        others = [
            n
            for n in candidates
            if n not in mine and not self.book.blocks_without_asking(n, id_tag)
        ]
        return mine + others

    def snapshot(self) -> Snapshot:
        availability = self._availability
        transactions = self._transactions
        charger = self._context.charger
        connectors = {}
        for number in self._context.connectors:
            status = availability.status_of(number).status
            hardware = charger.connectors[number - 1]
            connectors[number] = ConnectorState(
                faulted=status is ChargePointStatus.faulted,
                unavailable=status is ChargePointStatus.unavailable,
                in_use=transactions.active(number) is not None
                or transactions.pending_id_tag(number) is not None
                or transactions.held(number) is not None
                or hardware.ev_connected
                or status is ChargePointStatus.finishing,
            )
        whole = ConnectorState(
            faulted=charger.fault is not None,
            unavailable=not availability.operative(0),
            in_use=False,
        )
        return Snapshot(whole, connectors)

    # -- ReserveNow (§5.13) and CancelReservation (§5.1) --

    @on(Action.reserve_now)  # type: ignore[untyped-decorator]
    def _on_reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None = None,
    ) -> call_result.ReserveNow:
        expiry = parse_expiry(expiry_date)
        if expiry is None:
            log.warning("ReserveNow %d: expiryDate %r is no date", reservation_id, expiry_date)
            return call_result.ReserveNow(ReservationStatus.rejected)
        request = Reservation(reservation_id, connector_id, id_tag, parent_id_tag, expiry)
        status = self.book.answer(
            request,
            self.snapshot(),
            zero_supported=self._context.keys.boolean("ReserveConnectorZeroSupported"),
            now=datetime.now(UTC),
        )
        if status is ReservationStatus.accepted:
            replaced = self.book.get(reservation_id) is not None
            if replaced:
                self._transactions.forget_reservation(reservation_id)
            self.book.put(request)
            self._schedule(request)
            log.info(
                "reservation %d %s: connector %d for %s%s until %s",
                reservation_id,
                "replaced" if replaced else "made",
                connector_id,
                id_tag,
                f" (parent {parent_id_tag})" if parent_id_tag else "",
                expiry.isoformat(),
            )
            self._context.settle()
        else:
            log.info(
                "ReserveNow %d for connector %d: %s", reservation_id, connector_id, status.value
            )
        return call_result.ReserveNow(status)

    @on(Action.cancel_reservation)  # type: ignore[untyped-decorator]
    def _on_cancel_reservation(self, reservation_id: int) -> call_result.CancelReservation:
        if not self._end(reservation_id, "cancelled by the CSMS"):
            log.info("CancelReservation %d: no such reservation", reservation_id)
            return call_result.CancelReservation(CancelReservationStatus.rejected)
        self._context.settle()
        return call_result.CancelReservation(CancelReservationStatus.accepted)

    # -- how reservations end --

    def _schedule(self, reservation: Reservation) -> None:
        self._context.scheduler.add_job(
            self._expire,
            DateTrigger(max(reservation.expiry, datetime.now(UTC))),
            args=(reservation.reservation_id, reservation.expiry),
            id=_job(reservation.reservation_id),
            replace_existing=True,
            misfire_grace_time=None,
        )

    async def _expire(self, reservation_id: int, expiry: datetime) -> None:
        async with self._context.work():
            reservation = self.book.get(reservation_id)
            if reservation is not None and reservation.expiry == expiry:
                self._end(reservation_id, "expired")

    def _end(self, reservation_id: int, why: str, *, removed: bool = False) -> bool:
        """End the reservation (``removed``: its row is already gone) and its expiry job."""
        if not self.book.remove(reservation_id) and not removed:
            return False
        self._transactions.forget_reservation(reservation_id)
        with contextlib.suppress(JobLookupError):
            self._context.scheduler.remove_job(_job(reservation_id))
        log.info("reservation %d ended: %s", reservation_id, why)
        return True

    def _on_transaction_started(self, event: TransactionStarted) -> None:
        if event.reservation_id is not None:
            used = f"used by the transaction on connector {event.connector}"
            self._end(event.reservation_id, used, removed=True)  # the journal deleted it

    def _on_settled(self) -> None:
        snapshot = self.snapshot()
        for reservation in self.book.ended_by(snapshot):
            where = "the charge point" if reservation.connector == 0 else "its connector"
            self._end(reservation.reservation_id, f"{where} is Faulted or Unavailable")
        shown = self.book.shown_reserved(snapshot)
        changed = False
        for number in self._context.connectors:
            reserved = number in shown
            if self._shown.get(number) != reserved or reserved:
                # Re-asserted while it holds: an idTag that came and went took it off (G2).
                self._shown[number] = reserved
                self._context.events.publish(ConnectorReserved(number, reserved))
                changed = True
        if changed:
            self._availability.refresh()
