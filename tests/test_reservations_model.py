"""The reservation decisions of :mod:`chargepoint.model.reservations` (OCPP 1.6 §5.13) on a
real SQLite database (in memory, with the state's schema): the ReserveNow answers in the order
§5.13 gives them, and the property that no idTag but the reserved one (or one of its parent)
ever gets a reserved connector, and that connector-0 reservations always keep a connector free.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ocpp.v16.enums import ReservationStatus

from chargepoint.model.reservations import (
    ConnectorState,
    Reservation,
    ReservationBook,
    Snapshot,
    parse_expiry,
)
from chargepoint.storage import SCHEMA

NOW = datetime(2030, 1, 1, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
FREE = ConnectorState(faulted=False, unavailable=False, in_use=False)
BUSY = ConnectorState(faulted=False, unavailable=False, in_use=True)
FAULTED = ConnectorState(faulted=True, unavailable=False, in_use=False)
OFF = ConnectorState(faulted=False, unavailable=True, in_use=False)


def snapshot(*states: ConnectorState, whole: ConnectorState = FREE) -> Snapshot:
    return Snapshot(whole, dict(enumerate(states, start=1)))


def book(*reservations: Reservation) -> ReservationBook:
    db = sqlite3.connect(":memory:", isolation_level=None)  # the state's schema, in memory
    db.executescript(SCHEMA)
    the_book = ReservationBook(db)
    for reservation in reservations:
        the_book.put(reservation)
    return the_book


def res(rid: int, connector: int, tag: str = "A", parent: str | None = None) -> Reservation:
    return Reservation(rid, connector, tag, parent, LATER)


def answer(the_book: ReservationBook, request: Reservation, snap: Snapshot) -> ReservationStatus:
    return the_book.answer(request, snap, zero_supported=True, now=NOW)


def test_answers_in_the_order_of_5_13() -> None:
    empty = book()
    assert answer(empty, res(1, 3), snapshot(FREE, FREE)) is ReservationStatus.rejected
    assert answer(empty, res(1, 1), snapshot(FAULTED, FREE)) is ReservationStatus.faulted
    assert answer(empty, res(1, 1), snapshot(OFF, FREE)) is ReservationStatus.unavailable
    assert answer(empty, res(1, 1), snapshot(BUSY, FREE)) is ReservationStatus.occupied
    assert answer(empty, res(1, 1), snapshot(FREE, FREE)) is ReservationStatus.accepted
    # The charge point as a whole decides before the connector.
    assert (
        answer(empty, res(1, 1), snapshot(FREE, FREE, whole=FAULTED)) is ReservationStatus.faulted
    )
    past = Reservation(1, 1, "A", None, NOW - timedelta(seconds=1))
    assert answer(empty, past, snapshot(FREE, FREE)) is ReservationStatus.rejected
    refused = empty.answer(res(1, 0), snapshot(FREE), zero_supported=False, now=NOW)
    assert refused is ReservationStatus.rejected


def test_connector_zero_answers() -> None:
    empty = book()
    assert answer(empty, res(1, 0), snapshot(FAULTED, FAULTED)) is ReservationStatus.faulted
    assert answer(empty, res(1, 0), snapshot(OFF, FAULTED)) is ReservationStatus.unavailable
    assert answer(empty, res(1, 0), snapshot(BUSY, BUSY)) is ReservationStatus.occupied
    assert answer(empty, res(1, 0), snapshot(BUSY, FREE)) is ReservationStatus.accepted
    one = book(res(1, 0))
    # One free connector, already promised to reservation 1.
    assert answer(one, res(2, 0, "B"), snapshot(BUSY, FREE)) is ReservationStatus.occupied
    assert answer(one, res(2, 2, "B"), snapshot(BUSY, FREE)) is ReservationStatus.occupied
    # Replacing reservation 1 itself is not in its own way.
    assert answer(one, res(1, 0, "B"), snapshot(BUSY, FREE)) is ReservationStatus.accepted


def test_reserved_for_anyone_is_occupied_and_shown() -> None:
    the_book = book(res(1, 1))
    assert answer(the_book, res(2, 1, "B"), snapshot(FREE, FREE)) is ReservationStatus.occupied
    assert the_book.shown_reserved(snapshot(FREE, FREE)) == {1}
    zero = book(res(1, 0))
    assert zero.shown_reserved(snapshot(FREE, FREE)) == set()
    assert zero.shown_reserved(snapshot(BUSY, FREE)) == {2}


def test_parent_matching_is_case_insensitive() -> None:
    reservation = res(1, 1, "Card-A", "Family")
    assert reservation.for_tag("CARD-a", None)
    assert reservation.for_tag("other", "FAMILY")
    assert not reservation.for_tag("other", None)
    assert not reservation.for_tag("other", "strangers")
    assert not res(1, 1, "A").for_tag("B", "A")  # no parent on the reservation


def test_expiry_dates() -> None:
    assert parse_expiry("2030-01-01T00:00:00Z") == NOW
    assert parse_expiry("2030-01-01T01:00:00+01:00") == NOW
    assert parse_expiry("2030-01-01T00:00:00") == NOW  # no offset: UTC
    assert parse_expiry("next tuesday") is None


# -- the property --

tags = st.sampled_from(["A", "a", "B", "C"])
parents = st.sampled_from([None, "P", "p", "Q"])
states = st.sampled_from([FREE, FREE, BUSY, FAULTED, OFF])


@st.composite
def scenes(draw: st.DrawFn) -> tuple[ReservationBook, Snapshot, list[Reservation]]:
    count = draw(st.integers(min_value=1, max_value=4))
    snap = snapshot(*draw(st.lists(states, min_size=count, max_size=count)))
    the_book = book()
    made = []
    for rid in range(draw(st.integers(min_value=0, max_value=4))):
        request = Reservation(
            rid,
            draw(st.integers(min_value=0, max_value=count)),
            draw(tags),
            draw(parents),
            LATER,
        )
        if answer(the_book, request, snap) is ReservationStatus.accepted:
            the_book.put(request)
            made.append(request)
    return the_book, snap, made


@pytest.mark.property
@pytest.mark.timeout(1200)  # make fuzz: 20,000 examples take minutes
@given(scenes(), st.integers(min_value=1, max_value=4), tags, parents)
def test_no_other_idtag_ever_gets_a_reserved_connector(
    scene: tuple[ReservationBook, Snapshot, list[Reservation]],
    number: int,
    id_tag: str,
    parent: str | None,
) -> None:
    the_book, snap, made = scene
    if number not in snap.connectors:
        return
    allowed, used = the_book.matching(number, id_tag, parent, snap)
    own = [r for r in made if r.connector == number]
    if own:
        # A reserved connector: only its idTag, or one of its parent, and with it.
        assert allowed == own[0].for_tag(id_tag, parent)
        assert used == (own[0] if allowed else None)
        return
    if used is not None:
        assert used.connector == 0 and used.for_tag(id_tag, parent)
        return
    if allowed:
        # Another idTag took a connector: every connector-0 reservation keeps a free one.
        specific = {r.connector for r in made if r.connector}
        free_after = [
            n for n in snap.connectors if snap.free(n) and n not in specific and n != number
        ]
        assert len(free_after) >= sum(1 for r in made if r.connector == 0)
    # Whatever was decided, the book still holds every reservation on its own connector.
    assert {r.connector for r in the_book.all() if r.connector} == {
        r.connector for r in made if r.connector
    }


def test_what_ends_reservations() -> None:
    """§5.13 (3): the charge point Faulted or Unavailable ends every reservation; a connector,
    its own; a connector-0 reservation ends when no connector could serve it."""
    the_book = book(res(1, 1), res(2, 2, "B"), res(3, 0, "C"))
    ended = the_book.ended_by
    assert ended(snapshot(FREE, FREE)) == []
    assert [r.reservation_id for r in ended(snapshot(FAULTED, FREE))] == [1]
    assert [r.reservation_id for r in ended(snapshot(FAULTED, OFF))] == [1, 2, 3]
    assert len(ended(snapshot(FREE, FREE, whole=FAULTED))) == 3
    assert len(ended(snapshot(BUSY, BUSY, whole=OFF))) == 3
    # Busy connectors may still serve it later: a connector-0 reservation stays.
    assert [r.reservation_id for r in ended(snapshot(BUSY, BUSY))] == []


def test_which_decisions_need_the_parent() -> None:
    the_book = book(res(1, 1, "A", "FAMILY"), res(2, 0, "B"))
    assert the_book.needs_parent(1, "OTHER")
    assert not the_book.needs_parent(1, "a")  # the reservation's own idTag
    assert not the_book.needs_parent(2, "OTHER")  # connector 0's has no parent
