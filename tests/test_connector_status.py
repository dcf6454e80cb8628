"""The connector status machine against OCPP 1.6 edition 2 §4.9, errata sheet v4.0 (§3.20
B6, §3.55/§3.64 SuspendedEV and SuspendedEVSE) and the OCTT cases that check statuses.

The table test has one row per cell of the §4.9 table: the events that take a fresh connector
to the row's status, the event(s) that trigger the change, and the status expected after them.

Eight cells take more than one event in this model. §4.9 lets a charge point skip a status
that lasts less than MinimumStatusDuration (§9.1.20), so the CSMS still sees the cell:

* A3, A4, A5 and H3, H4, H5 describe a charger with no authorization means. Such a charger
  still passes Preparing here: cable in, then its own implicit authorization, then the
  transaction.
* C1 and C8 end a Charging session with nothing left for the user to do. A Charging EV is
  connected, so the EV-side disconnect (SuspendedEV) comes before the stop.

Errata B6 does arise: Preparing with the cable in goes to Finishing when ConnectionTimeOut
ends the wait for an idTag. It also does so when the connector becomes inoperative.

The property tests drive the machine only with events the hardware and the charge point can
produce (:func:`feasible_events`) and check that every status change is in the table. One
feasibility rule is a requirement on the station, because the table has no B8
(Preparing → Unavailable). When an idTag was accepted and the cable is not in yet, the station
answers ChangeAvailability(Inoperative) with Scheduled and holds back a block of its own. It
applies either once the connector has left that Preparing.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise, product

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st
from ocpp.v16.enums import ChargePointErrorCode, ChargePointStatus

from chargepoint.model.connector_events import (
    AuthorizationEnded,
    Authorized,
    Availability,
    Blocked,
    CableRemoved,
    ConnectorEvent,
    EvConnected,
    EvDisconnected,
    EvseSuspended,
    EvSuspended,
    FaultCleared,
    FaultRaised,
    LockFailure,
    Reserved,
    Status,
    TransactionEnded,
    TransactionStarted,
)
from chargepoint.model.connector_status import (
    ALLOWED_TRANSITIONS,
    ConnectorStatusMachine,
    charge_point_status,
    transition_allowed,
)

S = ChargePointStatus

# The table's rows A-I and columns 1-9, written out here rather than taken from the module.
TABLE_ORDER = (
    S.available,
    S.preparing,
    S.charging,
    S.suspended_ev,
    S.suspended_evse,
    S.finishing,
    S.reserved,
    S.unavailable,
    S.faulted,
)
TABLE_ROWS = (
    "A2 A3 A4 A5 A7 A8 A9",
    "B1 B3 B4 B5 B6 B9",
    "C1 C4 C5 C6 C8 C9",
    "D1 D3 D5 D6 D8 D9",
    "E1 E3 E4 E6 E8 E9",
    "F1 F2 F8 F9",
    "G1 G2 G8 G9",
    "H1 H2 H3 H4 H5 H9",
    "I1 I2 I3 I4 I5 I6 I7 I8",
)
TABLE_CELLS = [cell for row in TABLE_ROWS for cell in row.split()]
MULTI_EVENT_CELLS = {"A3", "A4", "A5", "C1", "C8", "H3", "H4", "H5"}


def cell_of(cell: str) -> tuple[ChargePointStatus, ChargePointStatus]:
    return TABLE_ORDER["ABCDEFGHI".index(cell[0])], TABLE_ORDER[int(cell[1]) - 1]


def cell_id(before: ChargePointStatus, after: ChargePointStatus) -> str:
    return "ABCDEFGHI"[TABLE_ORDER.index(before)] + str(TABLE_ORDER.index(after) + 1)


def drive(machine: ConnectorStatusMachine, events: Iterable[ConnectorEvent]) -> list[Status]:
    """Apply the events in order; the status after each one."""
    return [machine.apply(event) for event in events]


FAULT = FaultRaised(ChargePointErrorCode.ground_failure, info="RCD tripped")

# Ways to reach each status from a fresh connector (a socket charger unless a row says fixed).
FRESH: tuple[ConnectorEvent, ...] = ()
PLUGGED = (EvConnected(),)
CHARGING = (EvConnected(), Authorized(), TransactionStarted())
SUSPENDED_EV = (*CHARGING, EvSuspended(True))
SUSPENDED_EVSE = (*CHARGING, EvseSuspended(True))
FINISHING = (*CHARGING, TransactionEnded())
RESERVED = (Reserved(True),)
UNAVAILABLE = (Availability(False),)


@dataclass(frozen=True)
class Cell:
    cell: str
    reach: tuple[ConnectorEvent, ...]  # from a fresh connector to the row's status
    trigger: tuple[ConnectorEvent, ...]  # what the cell describes
    fixed_cable: bool = False
    why: str = ""  # where the input model needs more than one event, or reads the cell its way


CELLS = [
    # A: Available
    Cell("A2", FRESH, (EvConnected(),)),  # "insert plug"
    Cell(
        "A3",
        FRESH,
        (EvConnected(), Authorized(), TransactionStarted()),
        why="no authorization means: the charger authorizes the plug itself; Preparing lasts "
        "less than MinimumStatusDuration",
    ),
    Cell(
        "A4",
        FRESH,
        (EvConnected(), EvSuspended(True), Authorized(), TransactionStarted()),
        why="as A3, the EV not asking for energy (state B2, errata §3.55)",
    ),
    Cell(
        "A5",
        FRESH,
        (EvConnected(), EvseSuspended(True), Authorized(), TransactionStarted()),
        why="as A3, the EVSE offering no energy (a charging profile at 0)",
    ),
    Cell("A7", FRESH, (Reserved(True),)),  # ReserveNow
    Cell("A8", FRESH, (Availability(False),)),  # ChangeAvailability(Inoperative)
    Cell("A9", FRESH, (FAULT,)),
    # B: Preparing
    Cell("B1", (Authorized(),), (AuthorizationEnded(),)),  # ConnectionTimeOut, OCTT TC_004_2
    Cell("B3", (EvConnected(), Authorized()), (TransactionStarted(),)),
    Cell("B4", (EvConnected(), EvSuspended(True), Authorized()), (TransactionStarted(),)),
    Cell("B5", (EvConnected(), EvseSuspended(True), Authorized()), (TransactionStarted(),)),
    Cell("B6", PLUGGED, (AuthorizationEnded(),)),  # no idTag within ConnectionTimeOut
    Cell("B9", PLUGGED, (FAULT,)),
    # C: Charging
    Cell(
        "C1",
        CHARGING,
        (EvDisconnected(), TransactionEnded()),
        fixed_cable=True,
        why="the fixed cable leaves the EV (SuspendedEV), then StopTransactionOnEVSideDisconnect",
    ),
    Cell("C4", CHARGING, (EvSuspended(True),)),  # S2 opened
    Cell("C5", CHARGING, (EvseSuspended(True),)),  # smart charging, or the transaction deauthorized
    Cell("C6", CHARGING, (TransactionEnded(),)),  # stopped by idTag or RemoteStop, cable still in
    Cell(
        "C8",
        (*CHARGING, Availability(False)),  # ChangeAvailability answered Scheduled
        (EvDisconnected(), TransactionEnded()),
        fixed_cable=True,
        why="as C1, on a connector scheduled to become Unavailable",
    ),
    Cell("C9", CHARGING, (FAULT,)),
    # D: SuspendedEV
    Cell("D1", (*CHARGING, EvDisconnected()), (TransactionEnded(),), fixed_cable=True),
    Cell("D3", SUSPENDED_EV, (EvSuspended(False),)),  # S2 closed
    Cell("D5", SUSPENDED_EV, (EvseSuspended(True),)),
    Cell("D6", SUSPENDED_EV, (TransactionEnded(),)),
    Cell(
        "D8",
        (*CHARGING, Availability(False), EvDisconnected()),
        (TransactionEnded(),),
        fixed_cable=True,
    ),
    Cell("D9", SUSPENDED_EV, (FAULT,)),
    # E: SuspendedEVSE
    Cell(
        "E1",
        (*CHARGING, EvseSuspended(True), EvDisconnected()),
        (TransactionEnded(),),
        fixed_cable=True,
    ),
    Cell("E3", SUSPENDED_EVSE, (EvseSuspended(False),)),
    Cell("E4", (*SUSPENDED_EVSE, EvSuspended(True)), (EvseSuspended(False),)),
    Cell("E6", SUSPENDED_EVSE, (TransactionEnded(),)),
    Cell(
        "E8",
        (*CHARGING, Availability(False), EvseSuspended(True), EvDisconnected()),
        (TransactionEnded(),),
        fixed_cable=True,
    ),
    Cell("E9", SUSPENDED_EVSE, (FAULT,)),
    # F: Finishing
    Cell("F1", FINISHING, (CableRemoved(),)),
    Cell("F2", FINISHING, (Authorized(),)),  # presents an idTag again
    Cell("F8", (*FINISHING, Availability(False)), (CableRemoved(),)),
    Cell("F9", FINISHING, (FAULT,)),
    # G: Reserved
    Cell("G1", RESERVED, (Reserved(False),)),  # expired or CancelReservation
    Cell("G2", RESERVED, (Authorized(),)),  # the reservation's idTag
    Cell(
        "G8",
        RESERVED,
        (Availability(False),),
        why="§5.13 ends a reservation when its connector is set Unavailable, so the change comes "
        "with the ChangeAvailability rather than after the reservation",
    ),
    Cell("G9", RESERVED, (FAULT,)),
    # H: Unavailable
    Cell("H1", UNAVAILABLE, (Availability(True),)),
    Cell("H2", (*UNAVAILABLE, EvConnected()), (Availability(True),)),  # the cable went in
    Cell(
        "H3",
        (*UNAVAILABLE, EvConnected()),
        (Availability(True), Authorized(), TransactionStarted()),
        why="no authorization means: as A3, once the connector is operative",
    ),
    Cell(
        "H4",
        (*UNAVAILABLE, EvConnected(), EvSuspended(True)),
        (Availability(True), Authorized(), TransactionStarted()),
        why="as H3, the EV not asking for energy",
    ),
    Cell(
        "H5",
        (*UNAVAILABLE, EvConnected(), EvseSuspended(True)),
        (Availability(True), Authorized(), TransactionStarted()),
        why="as H3, the EVSE offering no energy",
    ),
    Cell("H9", UNAVAILABLE, (FAULT,)),
    # I: Faulted, back to the status before the fault
    Cell("I1", (FAULT,), (FaultCleared(),)),
    Cell("I2", (*PLUGGED, FAULT), (FaultCleared(),)),
    Cell("I3", (*CHARGING, FAULT), (FaultCleared(),)),
    Cell("I4", (*SUSPENDED_EV, FAULT), (FaultCleared(),)),
    Cell("I5", (*SUSPENDED_EVSE, FAULT), (FaultCleared(),)),
    Cell("I6", (*FINISHING, FAULT), (FaultCleared(),)),
    Cell(
        "I7",
        (*RESERVED, FAULT),
        (FaultCleared(),),
        why="a charger that keeps the reservation through the fault; §5.13 would end it, and "
        "Reserved(False) then leads to I1",
    ),
    Cell("I8", (*UNAVAILABLE, FAULT), (FaultCleared(),)),
]


def test_the_table_has_every_cell_of_section_4_9_and_errata_b6() -> None:
    assert {cell_of(cell) for cell in TABLE_CELLS} == ALLOWED_TRANSITIONS
    assert len(ALLOWED_TRANSITIONS) == 53
    assert (S.preparing, S.finishing) in ALLOWED_TRANSITIONS  # B6, errata §3.20
    assert [row.cell for row in CELLS] == TABLE_CELLS  # one row per cell, in the table's order


@pytest.mark.parametrize("row", CELLS, ids=[row.cell for row in CELLS])
def test_table_cell(row: Cell) -> None:
    before, after = cell_of(row.cell)
    machine = ConnectorStatusMachine(fixed_cable=row.fixed_cable)
    drive(machine, row.reach)
    assert machine.status.status is before
    statuses = drive(machine, row.trigger)
    assert statuses[-1].status is after
    # The steps of a multi-event cell are themselves cells of the table.
    steps = [before, *(status.status for status in statuses)]
    assert all(transition_allowed(a, b) for a, b in pairwise(steps))
    # Only the cells listed in the docstring take more than one event, and each says why.
    assert (len(row.trigger) > 1) == (row.cell in MULTI_EVENT_CELLS)
    assert row.why or row.cell not in MULTI_EVENT_CELLS


def test_transition_allowed_reads_the_table_and_allows_no_change() -> None:
    assert transition_allowed(S.charging, S.charging)
    assert transition_allowed(S.preparing, S.finishing)  # B6
    assert not transition_allowed(S.preparing, S.unavailable)  # no B8
    assert not transition_allowed(S.finishing, S.charging)  # no F3: a new transaction needs F2
    assert not transition_allowed(S.unavailable, S.reserved)  # no H7


# -- every feasible sequence stays inside the table --

FAULTS = (
    FAULT,
    FaultRaised(ChargePointErrorCode.over_current_failure),
    FaultRaised(ChargePointErrorCode.other_error, vendor_error_code="E42"),
)


def feasible_events(machine: ConnectorStatusMachine) -> list[ConnectorEvent]:
    """The events that can come next on this connector: what the driver and the EV can do to
    the hardware, and what the charge point and the CSMS can decide."""
    status = machine.status.status
    events: list[ConnectorEvent] = []
    # The driver: plug in, unplug at the EV, take the cable out of the socket. During a
    # transaction the lock holds the cable while the EV is still connected.
    events.append(EvDisconnected() if machine.ev_connected else EvConnected())
    if machine.cable_in_socket and not (machine.in_transaction and machine.ev_connected):
        events.append(CableRemoved())
    if machine.ev_connected:
        events.append(EvSuspended(not machine.ev_suspended))
    events.append(EvseSuspended(not machine.evse_suspended))
    # Authorization and transactions: an idTag is taken only where charging could start,
    # ConnectionTimeOut or a refusal ends a Preparing with or without one, and the transaction
    # starts on an authorized connector with a cable in.
    can_start = (
        machine.operative
        and not machine.blocked
        and machine.fault is None
        and not machine.lock_failed
    )
    if not machine.in_transaction and not machine.authorized and can_start:
        events.append(Authorized())
    if not machine.in_transaction and (machine.authorized or status is S.preparing):
        events.append(AuthorizationEnded())
    if status is S.preparing and machine.authorized and machine.occupied:
        events.append(TransactionStarted())
    if machine.in_transaction:
        events.append(TransactionEnded())
    # Faults, and the cable lock (only a socket has one).
    events.extend(FAULTS)
    if machine.fault is not None:
        events.append(FaultCleared())
    if machine.cable_in_socket:
        events.append(LockFailure(not machine.lock_failed))
    # ChangeAvailability and the charge point's own blocks, except where the station must
    # schedule them: no B8 leaves a Preparing that waits for the cable (see the docstring).
    waiting_for_cable = status is S.preparing and not machine.occupied
    if not machine.operative or not waiting_for_cable:
        events.append(Availability(not machine.operative))
    if machine.blocked or not waiting_for_cable:
        events.append(Blocked(not machine.blocked))
    # ReserveNow is accepted only on an Available connector (§5.13: else Occupied, Faulted,
    # Unavailable); the reservation expires or is cancelled at any time.
    if status is S.available:
        events.append(Reserved(True))
    if machine.reserved:
        events.append(Reserved(False))
    return events


start_ups = st.fixed_dictionaries(
    {
        "fixed_cable": st.booleans(),
        "ev_connected": st.booleans(),
        "cable_in_socket": st.booleans(),
        "operative": st.booleans(),
    }
)


@pytest.mark.property
@settings(max_examples=500, deadline=None)
@given(start=start_ups, data=st.data())
def test_feasible_events_change_the_status_only_as_the_table_allows(
    start: dict[str, bool], data: st.DataObject
) -> None:
    machine = ConnectorStatusMachine(**start)
    for _ in range(data.draw(st.integers(min_value=1, max_value=60), label="steps")):
        event = data.draw(st.sampled_from(feasible_events(machine)))
        before = machine.status.status
        after = machine.apply(event).status
        note(f"{event} -> {after.value}")
        assert transition_allowed(before, after), f"{before.value} -> {after.value} on {event}"


def inputs(machine: ConnectorStatusMachine) -> tuple[object, ...]:
    return (
        machine.fixed_cable,
        machine.ev_connected,
        machine.cable_in_socket,
        machine.authorized,
        machine.in_transaction,
        machine.finishing,
        machine.ev_suspended,
        machine.evse_suspended,
        machine.fault,
        machine.lock_failed,
        machine.operative,
        machine.blocked,
        machine.reserved,
        machine.status,
    )


def test_every_reachable_connector_changes_status_only_as_the_table_allows() -> None:
    """All states the feasible events reach from any start-up (about 2,000): no change outside
    the table, and every cell but the multi-event ones arises from a single event."""
    seen: dict[tuple[object, ...], ConnectorStatusMachine] = {}
    for fixed, ev, cable, operative in product((False, True), repeat=4):
        machine = ConnectorStatusMachine(
            fixed_cable=fixed, ev_connected=ev, cable_in_socket=cable, operative=operative
        )
        seen.setdefault(inputs(machine), machine)
    todo = list(seen.values())
    changes: dict[tuple[ChargePointStatus, ChargePointStatus], str] = {}
    while todo:
        machine = todo.pop()
        for event in feasible_events(machine):
            after = copy.deepcopy(machine)
            change = (machine.status.status, after.apply(event).status)
            if change[0] is not change[1]:
                changes.setdefault(change, f"{inputs(machine)} + {event}")
            if inputs(after) not in seen:
                seen[inputs(after)] = after
                todo.append(after)
    outside = {cell_id(*c): how for c, how in changes.items() if c not in ALLOWED_TRANSITIONS}
    assert outside == {}
    assert {cell_id(*change) for change in changes} == set(TABLE_CELLS) - MULTI_EVENT_CELLS


# -- the rules, one by one --


def test_suspended_evse_has_precedence_over_suspended_ev() -> None:
    machine = ConnectorStatusMachine()
    drive(machine, CHARGING)
    assert machine.apply(EvSuspended(True)).status is S.suspended_ev
    assert machine.apply(EvseSuspended(True)).status is S.suspended_evse  # §4.9 note
    assert machine.apply(EvseSuspended(False)).status is S.suspended_ev  # E4
    assert machine.apply(EvSuspended(False)).status is S.charging  # D3


def test_a_suspended_evse_still_says_the_ev_side_is_disconnected() -> None:
    """TC_005_3 accepts SuspendedEV and/or SuspendedEVSE, with info "EV side disconnected"."""
    machine = ConnectorStatusMachine()
    drive(machine, (*CHARGING, EvseSuspended(True)))
    assert machine.apply(EvDisconnected()) == Status(S.suspended_evse, info="EV side disconnected")


def test_finishing_has_precedence_over_unavailable_after_a_soft_reset() -> None:
    """TC_016: a soft reset stops the transaction; the connector reports Finishing, and F8
    makes it Unavailable only once the cable is out."""
    machine = ConnectorStatusMachine()
    drive(machine, CHARGING)
    assert machine.apply(Blocked(True)).status is S.charging  # the reset waits for the stop
    assert machine.apply(TransactionEnded()) == Status(S.finishing)
    assert machine.apply(CableRemoved()).status is S.unavailable  # F8


def test_change_availability_during_a_transaction_waits_for_the_user() -> None:
    """§5.2 Scheduled: the transaction goes on, then Finishing, then Unavailable (F8)."""
    machine = ConnectorStatusMachine()
    drive(machine, CHARGING)
    assert machine.apply(Availability(False)).status is S.charging
    assert machine.apply(TransactionEnded()).status is S.finishing
    assert machine.apply(EvDisconnected()).status is S.finishing  # the cable is still in
    assert machine.apply(CableRemoved()).status is S.unavailable


def test_ev_side_disconnect_then_socket_side_removal() -> None:
    """TC_005: SuspendedEV "EV side disconnected" (the transaction kept, TC_005_3), Finishing
    once it stops (TC_005_1), Available once the cable leaves the socket."""
    machine = ConnectorStatusMachine()
    drive(machine, CHARGING)
    assert machine.apply(EvDisconnected()) == Status(S.suspended_ev, info="EV side disconnected")
    assert machine.in_transaction and machine.cable_in_socket
    assert machine.apply(TransactionEnded()) == Status(S.finishing)
    assert machine.apply(CableRemoved()) == Status(S.available)


def test_ev_reconnected_during_a_kept_transaction_charges_again() -> None:
    machine = ConnectorStatusMachine()
    drive(machine, (*CHARGING, EvDisconnected()))
    assert machine.apply(EvConnected()) == Status(S.charging)  # D3


def test_fixed_cable_goes_straight_to_available_when_the_ev_has_left() -> None:
    """TC_005_3: "Finishing (OR Available in case of a fixed cable)"."""
    machine = ConnectorStatusMachine(fixed_cable=True)
    drive(machine, CHARGING)
    assert machine.apply(EvDisconnected()) == Status(S.suspended_ev, info="EV side disconnected")
    assert machine.apply(TransactionEnded()) == Status(S.available)  # D1, no Finishing


def test_fixed_cable_finishes_until_the_ev_disconnects() -> None:
    machine = ConnectorStatusMachine(fixed_cable=True)
    drive(machine, CHARGING)
    assert machine.apply(TransactionEnded()).status is S.finishing  # C6
    assert machine.apply(EvDisconnected()).status is S.available  # F1


def test_a_reconnected_ev_starts_a_new_session_from_finishing() -> None:
    machine = ConnectorStatusMachine()
    drive(machine, (*CHARGING, EvDisconnected(), TransactionEnded()))
    assert machine.apply(EvConnected()).status is S.preparing  # F2 "reconnects cable"
    assert machine.apply(Authorized()).status is S.preparing
    assert machine.apply(TransactionStarted()).status is S.charging


def test_lock_failure_then_cable_removal() -> None:
    """TC_024: a remote start, the cable half in, the lock fails: Faulted with
    ConnectorLockFailure and no transaction; the connector is Available once the cable is out."""
    machine = ConnectorStatusMachine()
    assert machine.apply(Authorized()).status is S.preparing
    assert machine.apply(EvConnected()).status is S.preparing
    assert machine.apply(LockFailure(True)) == Status(
        S.faulted, ChargePointErrorCode.connector_lock_failure
    )
    assert machine.apply(AuthorizationEnded()).status is S.faulted  # ConnectionTimeOut
    assert machine.apply(CableRemoved()) == Status(S.available)  # I1
    assert not machine.lock_failed


def test_a_successful_unlock_clears_a_lock_failure() -> None:
    machine = ConnectorStatusMachine()
    drive(machine, (EvConnected(), LockFailure(True)))
    assert machine.apply(LockFailure(False)).status is S.preparing  # I2, the cable still in


def test_a_fault_reports_its_own_code_and_outranks_a_lock_failure() -> None:
    machine = ConnectorStatusMachine()
    drive(machine, (EvConnected(), LockFailure(True)))
    fault = FaultRaised(ChargePointErrorCode.other_error, info="contactor", vendor_error_code="K1")
    assert machine.apply(fault) == Status(
        S.faulted, ChargePointErrorCode.other_error, "contactor", "K1"
    )
    assert machine.apply(FaultCleared()).error_code is ChargePointErrorCode.connector_lock_failure


def test_no_idtag_within_connection_timeout_asks_for_the_cable_back() -> None:
    """Errata §3.20 (B6): with the cable left in, Finishing keeps the next idTag off it."""
    machine = ConnectorStatusMachine()
    drive(machine, PLUGGED)
    assert machine.apply(AuthorizationEnded()).status is S.finishing
    assert machine.apply(CableRemoved()).status is S.available


def test_connection_timeout_without_a_cable_makes_the_connector_available() -> None:
    """TC_004_2 and TC_011_2: identification (or a remote start) first, no cable in time."""
    machine = ConnectorStatusMachine()
    assert machine.apply(Authorized()).status is S.preparing
    assert machine.apply(AuthorizationEnded()).status is S.available  # B1


def test_a_connector_set_inoperative_while_preparing_with_a_cable_finishes_first() -> None:
    """No B8 in the table: the usage ends as B6, and F8 follows once the cable is out."""
    machine = ConnectorStatusMachine()
    drive(machine, PLUGGED)
    assert machine.apply(Availability(False)).status is S.finishing
    assert not machine.authorized
    assert machine.apply(Authorized()).status is S.unavailable  # F8: no new usage here
    assert machine.apply(CableRemoved()).status is S.unavailable


def test_inoperative_while_an_idtag_waits_for_a_cable_leaves_the_table() -> None:
    """Nothing is left for the user, so no table path leads to Unavailable: the station
    schedules the change (see the module docstring). If it applies it anyway, the status
    tells the truth."""
    machine = ConnectorStatusMachine()
    machine.apply(Authorized())
    assert machine.apply(Availability(False)).status is S.unavailable
    assert not transition_allowed(S.preparing, S.unavailable)


def test_authorization_has_no_effect_during_a_transaction() -> None:
    machine = ConnectorStatusMachine()
    drive(machine, CHARGING)
    assert machine.apply(Authorized()).status is S.charging
    assert not machine.authorized
    assert machine.apply(AuthorizationEnded()).status is S.charging
    assert machine.apply(TransactionEnded()).status is S.finishing  # not Preparing: no C2


def test_the_reservation_idtag_uses_up_the_reservation() -> None:
    """G2, and no B7 to go back by: once its idTag came, the reservation no longer shows."""
    machine = ConnectorStatusMachine()
    drive(machine, RESERVED)
    assert machine.apply(Authorized()).status is S.preparing
    assert not machine.reserved
    assert machine.apply(AuthorizationEnded()).status is S.available


def test_a_cable_in_a_reserved_connector_waits_for_the_reservation() -> None:
    machine = ConnectorStatusMachine()
    drive(machine, RESERVED)
    assert machine.apply(EvConnected()).status is S.reserved
    assert machine.apply(Reserved(False)).status is S.preparing  # expired: the cable's A2


def test_an_unavailable_connector_loses_its_reservation() -> None:
    """§5.13 ends a reservation when its connector is set Unavailable; no H7 brings it back."""
    machine = ConnectorStatusMachine()
    drive(machine, RESERVED)
    assert machine.apply(Blocked(True)).status is S.unavailable
    assert not machine.reserved
    assert machine.apply(Blocked(False)).status is S.available


def test_start_up_state_after_a_reboot() -> None:
    assert ConnectorStatusMachine().status == Status(S.available)
    assert ConnectorStatusMachine(cable_in_socket=True).status.status is S.preparing
    assert ConnectorStatusMachine(fixed_cable=True, ev_connected=True).status.status is S.preparing
    assert ConnectorStatusMachine(fixed_cable=True, cable_in_socket=True).status.status is (
        S.available  # a fixed cable has no socket
    )
    # §5.2: Unavailable persists across reboots, and outranks a cable left in.
    assert ConnectorStatusMachine(ev_connected=True, operative=False).status.status is (
        S.unavailable
    )
    machine = ConnectorStatusMachine(ev_connected=True)
    assert machine.cable_in_socket and machine.occupied


def test_connector_zero_is_only_available_unavailable_or_faulted() -> None:
    """§4.9 note: connector 0 has three statuses, not tied to the connectors'."""
    assert charge_point_status(operative=True, fault=None) == Status(S.available)
    assert charge_point_status(operative=False, fault=None) == Status(S.unavailable)
    fault = FaultRaised(
        ChargePointErrorCode.power_meter_failure, info="no answer", vendor_error_code="M3"
    )
    assert charge_point_status(operative=False, fault=fault) == Status(
        S.faulted, ChargePointErrorCode.power_meter_failure, "no answer", "M3"
    )
