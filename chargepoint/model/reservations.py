"""Reservations (OCPP 1.6 §3.11, §5.1 Cancel Reservation, §5.13 Reserve Now, §9.3.1
ReserveConnectorZeroSupported): which reservations hold, what a ReserveNow.req is answered,
who may charge where, and which connectors show Reserved. Pure decisions over a snapshot of
the connectors, plus the reservations' table on disk.

The rules, from §5.13:

* a reservation with a reservationId already held replaces it;
* otherwise ReserveNow is ``Rejected`` for a connector that does not exist, for connector 0
  without ReserveConnectorZeroSupported, and for an expiryDate already past; ``Faulted`` or
  ``Unavailable`` when the connector (or the charge point) is; ``Occupied`` when it is in use
  or already reserved; else ``Accepted``;
* on a reserved connector only the reservation's idTag, or an idTag with the reservation's
  parentIdTag, may charge;
* a reservation of connector 0 reserves no connector, but "one connector remains available
  for the reserved idTag" at any time: another idTag may take a free connector only while more
  free connectors remain than connector-0 reservations; when no more are free than there are
  such reservations, the free ones show Reserved;
* a reservation ends when a transaction starts with it (its reservationId goes into
  StartTransaction.req), at its expiryDate, when it is cancelled, and when its connector (for
  connector 0: the charge point) becomes Faulted or Unavailable.

IdTags are CiString20 (§7.30): compared without regard to case.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from ocpp.v16.enums import ReservationStatus


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: int
    connector: int  # 0: any connector of the charge point
    id_tag: str
    parent_id_tag: str | None
    expiry: datetime

    def for_tag(self, id_tag: str, parent_id_tag: str | None) -> bool:
        """Whether ``id_tag`` (with the parent it is known to have) may use this reservation."""
        if id_tag.casefold() == self.id_tag.casefold():
            return True
        return (
            self.parent_id_tag is not None
            and parent_id_tag is not None
            and parent_id_tag.casefold() == self.parent_id_tag.casefold()
        )


@dataclass(frozen=True, slots=True)
class ConnectorState:
    """What a reservation decision needs to know of one connector (1..N), or of the charge
    point as a whole (0)."""

    faulted: bool
    unavailable: bool
    in_use: bool  # a transaction, a cable in, an idTag waiting, a cable held: not free


@dataclass(frozen=True, slots=True)
class Snapshot:
    charge_point: ConnectorState
    connectors: Mapping[int, ConnectorState]

    def free(self, number: int) -> bool:
        state = self.connectors[number]
        return not (state.faulted or state.unavailable or state.in_use)


def parse_expiry(value: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


class ReservationBook:
    """The reservations in force (table ``reservations``), and the decisions on them."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def all(self) -> list[Reservation]:
        return [
            Reservation(row[0], row[1], row[2], row[3], datetime.fromisoformat(row[4]))
            for row in self._db.execute(
                "SELECT id, connector, id_tag, parent, expiry FROM reservations ORDER BY id"
            )
        ]

    def get(self, reservation_id: int) -> Reservation | None:
        row = self._db.execute(
            "SELECT id, connector, id_tag, parent, expiry FROM reservations WHERE id = ?",
            (reservation_id,),
        ).fetchone()
        if row is None:
            return None
        return Reservation(row[0], row[1], row[2], row[3], datetime.fromisoformat(row[4]))

    def put(self, reservation: Reservation) -> None:
        self._db.execute(
            "INSERT INTO reservations (id, connector, id_tag, parent, expiry) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET connector = excluded.connector, "
            "id_tag = excluded.id_tag, parent = excluded.parent, expiry = excluded.expiry",
            (
                reservation.reservation_id,
                reservation.connector,
                reservation.id_tag,
                reservation.parent_id_tag,
                reservation.expiry.astimezone(UTC).isoformat(),
            ),
        )

    def remove(self, reservation_id: int) -> bool:
        cursor = self._db.execute("DELETE FROM reservations WHERE id = ?", (reservation_id,))
        return cursor.rowcount > 0

    # -- decisions --

    def answer(
        self,
        request: Reservation,
        snapshot: Snapshot,
        *,
        zero_supported: bool,
        now: datetime,
    ) -> ReservationStatus:
        """ReserveNow.conf's status for ``request`` (§5.13); only Accepted stores it."""
        if request.connector != 0 and request.connector not in snapshot.connectors:
            return ReservationStatus.rejected
        if request.connector == 0 and not zero_supported:
            return ReservationStatus.rejected
        if request.expiry <= now:
            return ReservationStatus.rejected
        # The reservation it replaces is not in its way.
        others = [r for r in self.all() if r.reservation_id != request.reservation_id]
        whole = snapshot.charge_point
        if request.connector == 0:
            numbers = list(snapshot.connectors)
            states = [snapshot.connectors[n] for n in numbers]
            if whole.faulted or all(s.faulted for s in states):
                return ReservationStatus.faulted
            if whole.unavailable or all(s.faulted or s.unavailable for s in states):
                return ReservationStatus.unavailable
            taken = {r.connector for r in others if r.connector != 0}
            free = [n for n in numbers if snapshot.free(n) and n not in taken]
            zero = sum(1 for r in others if r.connector == 0)
            return ReservationStatus.accepted if len(free) > zero else ReservationStatus.occupied
        state = snapshot.connectors[request.connector]
        if whole.faulted or state.faulted:
            return ReservationStatus.faulted
        if whole.unavailable or state.unavailable:
            return ReservationStatus.unavailable
        if state.in_use or any(r.connector == request.connector for r in others):
            return ReservationStatus.occupied
        if not self._zero_kept(others, snapshot, taking=request.connector):
            # The last free connector is what a connector-0 reservation counts on.
            return ReservationStatus.occupied
        return ReservationStatus.accepted

    def on_connector(self, number: int) -> Reservation | None:
        return next((r for r in self.all() if r.connector == number), None)

    def matching(
        self, number: int, id_tag: str, parent_id_tag: str | None, snapshot: Snapshot
    ) -> tuple[bool, Reservation | None]:
        """May ``id_tag`` charge on connector ``number``, and with which reservation?"""
        reservations = self.all()
        own = next((r for r in reservations if r.connector == number), None)
        if own is not None:
            return (True, own) if own.for_tag(id_tag, parent_id_tag) else (False, None)
        zero = next(
            (r for r in reservations if r.connector == 0 and r.for_tag(id_tag, parent_id_tag)),
            None,
        )
        if zero is not None:
            return True, zero
        return self._zero_kept(reservations, snapshot, taking=number), None

    def blocks_without_asking(self, number: int, id_tag: str) -> bool:
        """Connector ``number`` is reserved for another idTag and no parentIdTag could make
        ``id_tag`` match: refused before any Authorize.req."""
        own = self.on_connector(number)
        return (
            own is not None
            and own.parent_id_tag is None
            and own.id_tag.casefold() != id_tag.casefold()
        )

    def needs_parent(self, number: int, id_tag: str) -> bool:
        """Whether deciding ``id_tag`` on connector ``number`` needs its parentIdTag: a
        reservation there (or of connector 0) has one, and is not ``id_tag``'s own."""
        return any(
            r.parent_id_tag is not None
            and r.connector in (0, number)
            and r.id_tag.casefold() != id_tag.casefold()
            for r in self.all()
        )

    def shown_reserved(self, snapshot: Snapshot) -> set[int]:
        """The connectors whose status is Reserved."""
        reservations = self.all()
        specific = {r.connector for r in reservations if r.connector != 0}
        zero = sum(1 for r in reservations if r.connector == 0)
        shown = {n for n in specific if n in snapshot.connectors}
        free = [n for n in snapshot.connectors if snapshot.free(n) and n not in specific]
        if zero and len(free) <= zero:
            shown.update(free)
        return shown

    def ended_by(self, snapshot: Snapshot) -> list[Reservation]:
        """Reservations a Faulted or Unavailable charge point or connector ends (§5.13 (3)):
        the charge point's ends them all; a connector's, its own; and a reservation of
        connector 0 ends when no connector is left that could serve it."""
        whole = snapshot.charge_point
        if whole.faulted or whole.unavailable:
            return self.all()
        usable = [
            n
            for n, state in snapshot.connectors.items()
            if not (state.faulted or state.unavailable)
        ]
        ended = []
        for reservation in self.all():
            if reservation.connector == 0:
                gone = not usable
            else:
                state = snapshot.connectors.get(reservation.connector)
                gone = state is None or state.faulted or state.unavailable
            if gone:
                ended.append(reservation)
        return ended

    def expired(self, now: datetime) -> list[Reservation]:
        return [r for r in self.all() if r.expiry <= now]

    @staticmethod
    def _zero_kept(reservations: Iterable[Reservation], snapshot: Snapshot, *, taking: int) -> bool:
        """Whether taking connector ``taking`` still leaves a free connector for every
        connector-0 reservation."""
        listed = list(reservations)
        zero = sum(1 for r in listed if r.connector == 0)
        if zero == 0:
            return True
        specific = {r.connector for r in listed if r.connector != 0}
        free = [
            n for n in snapshot.connectors if snapshot.free(n) and n not in specific and n != taking
        ]
        return len(free) >= zero
