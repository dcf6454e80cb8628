"""The status of one connector, derived from what is known about it (OCPP 1.6 edition 2 §4.9,
with errata sheet v4.0 §3.20, §3.55 and §3.64; status meanings in §7.7).

A :class:`ConnectorStatusMachine` holds the inputs that decide a connector's status (what is
plugged in where, the authorization, the transaction, suspensions, faults, availability and
reservation) and derives the status from them after every event; the caller sends a
StatusNotification.req whenever :meth:`ConnectorStatusMachine.apply` returns a different
:class:`Status`. Nothing here waits, talks or logs: the station feeds events in, in order.

The derivation, first match wins:

1. Faulted: a fault, else a failed cable lock (ConnectorLockFailure, OCTT TC_024).
2. In a transaction: SuspendedEVSE (it has precedence over SuspendedEV, §4.9 note), SuspendedEV
   "EV side disconnected" (StopTransactionOnEVSideDisconnect false, OCTT TC_005_3), SuspendedEV,
   else Charging.
3. Finishing: the usage is over but the cable is still in (C6, D6, E6, errata B6), until the
   connector is free (F1, F8) or the user starts again (F2). It outranks Unavailable: F8 makes
   the unavailability wait for the user (OCTT TC_016 expects Finishing after a soft reset).
4. Unavailable: set inoperative by the CSMS (§5.2), or blocked by the charge point itself.
5. Preparing: an idTag was accepted.
6. Reserved.
7. Preparing: a cable is in (A2).
8. Available.

The §4.9 table has no B7 (Preparing → Reserved), B8 (Preparing → Unavailable), F7 (Finishing →
Reserved), H6 (Unavailable → Finishing) or H7 (Unavailable → Reserved). Two rules keep the
derivation out of them:

* A Preparing connector with a cable in goes to Finishing (errata B6) when its usage ends
  without a transaction. That happens when ConnectionTimeOut or a refusal ends the authorization
  (:class:`AuthorizationEnded`), and when the connector becomes inoperative. The user must take
  the cable out, and F8 then reaches Unavailable. Only Preparing does this, so Unavailable
  never turns into Finishing.
* An accepted idTag uses up the connector's reservation (G2). An Unavailable connector loses
  its reservation (§5.13 ends a reservation when its connector is set Unavailable).

One case is left. A Preparing connector with no cable in (an idTag accepted, the cable still
awaited) has no path to Unavailable but through Available (B1, then A8). No transaction is in
progress, so the station accepts the change at once (§5.2) and ends the authorization first
(:class:`AuthorizationEnded`, then :class:`Availability`); with both in one unit of work the
CSMS may see Preparing then Unavailable, as MinimumStatusDuration can make it see any time.
"""

from __future__ import annotations

from typing import assert_never

from ocpp.v16.enums import ChargePointErrorCode, ChargePointStatus

from chargepoint.model.connector_events import (
    EV_SIDE_DISCONNECTED,
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

# -- the §4.9 table --

# The order of the table's rows (A-I) and columns (1-9), so that a cell id reads as in the
# specification. Spelled out: the library's enum lists SuspendedEVSE before SuspendedEV.
_TABLE_ORDER = (
    ChargePointStatus.available,
    ChargePointStatus.preparing,
    ChargePointStatus.charging,
    ChargePointStatus.suspended_ev,
    ChargePointStatus.suspended_evse,
    ChargePointStatus.finishing,
    ChargePointStatus.reserved,
    ChargePointStatus.unavailable,
    ChargePointStatus.faulted,
)
_ROW_STATUS = dict(zip("ABCDEFGHI", _TABLE_ORDER, strict=True))
_COLUMN_STATUS = dict(zip("123456789", _TABLE_ORDER, strict=True))
_TABLE_CELLS = (
    "A2 A3 A4 A5 A7 A8 A9",
    "B1 B3 B4 B5 B6 B9",  # B6: errata §3.20
    "C1 C4 C5 C6 C8 C9",
    "D1 D3 D5 D6 D8 D9",
    "E1 E3 E4 E6 E8 E9",
    "F1 F2 F8 F9",
    "G1 G2 G8 G9",
    "H1 H2 H3 H4 H5 H9",
    "I1 I2 I3 I4 I5 I6 I7 I8",
)

ALLOWED_TRANSITIONS: frozenset[tuple[ChargePointStatus, ChargePointStatus]] = frozenset(
    (_ROW_STATUS[cell[0]], _COLUMN_STATUS[cell[1]]) for row in _TABLE_CELLS for cell in row.split()
)
"""(from, to) for every cell of the §4.9 table, with errata B6; for connectors > 0."""


def transition_allowed(before: ChargePointStatus, after: ChargePointStatus) -> bool:
    """Whether the §4.9 table allows the change; staying in a status is no change at all."""
    return before is after or (before, after) in ALLOWED_TRANSITIONS


def charge_point_status(*, operative: bool, fault: FaultRaised | None) -> Status:
    """The status of connector 0, the charge point as a whole: §4.9 allows it only Available,
    Unavailable and Faulted, with no tie to the connectors' statuses."""
    if fault is not None:
        return Status(
            ChargePointStatus.faulted, fault.error_code, fault.info, fault.vendor_error_code
        )
    return Status(ChargePointStatus.available if operative else ChargePointStatus.unavailable)


class ConnectorStatusMachine:
    """One connector's status (connectorId > 0), derived from its inputs after every event.

    The keyword arguments describe the connector at start-up: after a reboot the cable may still
    be in, and a connector set Unavailable stays so across reboots (§4.9, §5.2). On a fixed
    cable there is no socket and ``cable_in_socket`` is ignored; on a socket charger a connected
    EV means the cable is in the socket too.
    """

    __slots__ = (
        "_authorized",
        "_blocked",
        "_cable_in_socket",
        "_ev_connected",
        "_ev_suspended",
        "_evse_suspended",
        "_fault",
        "_finishing",
        "_fixed_cable",
        "_in_transaction",
        "_lock_failed",
        "_operative",
        "_reserved",
        "_status",
    )

    def __init__(
        self,
        *,
        fixed_cable: bool = False,
        ev_connected: bool = False,
        cable_in_socket: bool = False,
        operative: bool = True,
    ) -> None:
        self._fixed_cable = fixed_cable
        self._ev_connected = ev_connected
        self._cable_in_socket = not fixed_cable and (cable_in_socket or ev_connected)
        self._operative = operative
        self._blocked = False
        self._authorized = False
        self._in_transaction = False
        self._finishing = False
        self._ev_suspended = False
        self._evse_suspended = False
        self._fault: FaultRaised | None = None
        self._lock_failed = False
        self._reserved = False
        self._status = self._derive()

    # -- what is held --

    @property
    def status(self) -> Status:
        return self._status

    @property
    def fixed_cable(self) -> bool:
        return self._fixed_cable

    @property
    def ev_connected(self) -> bool:
        return self._ev_connected

    @property
    def cable_in_socket(self) -> bool:
        """Always False on a fixed cable."""
        return self._cable_in_socket

    @property
    def occupied(self) -> bool:
        """A cable is in: in the socket or at the EV (for a fixed cable: at the EV)."""
        if self._fixed_cable:
            return self._ev_connected
        return self._cable_in_socket or self._ev_connected

    @property
    def in_transaction(self) -> bool:
        return self._in_transaction

    @property
    def authorized(self) -> bool:
        """An idTag accepted and waiting for its transaction."""
        return self._authorized

    @property
    def finishing(self) -> bool:
        """The usage is over, and the user still has to take the cable out."""
        return self._finishing

    @property
    def operative(self) -> bool:
        """The availability the CSMS set (not counting :attr:`blocked`)."""
        return self._operative

    @property
    def blocked(self) -> bool:
        return self._blocked

    @property
    def reserved(self) -> bool:
        """False again once an accepted idTag used the reservation (G2) or the connector became
        Unavailable (§5.13)."""
        return self._reserved

    @property
    def ev_suspended(self) -> bool:
        return self._ev_suspended

    @property
    def evse_suspended(self) -> bool:
        return self._evse_suspended

    @property
    def fault(self) -> FaultRaised | None:
        return self._fault

    @property
    def lock_failed(self) -> bool:
        return self._lock_failed

    # -- events --

    def apply(self, event: ConnectorEvent) -> Status:
        """Take in one event; return the connector's status after it."""
        before = self._status.status
        was_available = self._available
        match event:
            case EvConnected():
                self._ev_connected = True
                self._cable_in_socket = not self._fixed_cable
                self._finishing = False  # F2: the user reconnects, a new session may start
            case EvDisconnected():
                self._ev_connected = False
            case CableRemoved():
                self._ev_connected = False
                self._cable_in_socket = False
                self._lock_failed = False  # nothing left in the lock to fail
            case Authorized():
                if not self._in_transaction:  # an idTag during a transaction is about stopping
                    self._authorized = True
                    self._finishing = False  # F2: the user presents an idTag again
                    self._reserved = False  # G2: only the reservation's own idTag gets here
            case AuthorizationEnded():
                if not self._in_transaction:
                    self._authorized = False
                    # B6 (errata §3.20): with the cable still in, Preparing would let the next
                    # idTag start charging on it; Finishing asks for the cable to come out.
                    if before is ChargePointStatus.preparing and self.occupied:
                        self._finishing = True
            case TransactionStarted():
                self._in_transaction = True
                self._authorized = False
                self._finishing = False
                self._reserved = False  # §5.13: the transaction ends the reservation
            case TransactionEnded():
                self._in_transaction = False
                self._ev_suspended = False
                self._evse_suspended = False
                # C6/D6/E6: the user must still take the cable out; C1/D1/E1: nothing left to do.
                self._finishing = self.occupied
            case EvSuspended(suspended):
                self._ev_suspended = suspended
            case EvseSuspended(suspended):
                self._evse_suspended = suspended
            case FaultRaised():
                self._fault = event
            case FaultCleared():
                self._fault = None
            case LockFailure(failed):
                self._lock_failed = failed
            case Availability(operative):
                self._operative = operative
            case Blocked(blocked):
                self._blocked = blocked
            case Reserved(reserved):
                self._reserved = reserved
            case _:
                assert_never(event)
        if (
            was_available
            and not self._available
            and before is ChargePointStatus.preparing
            and self.occupied
        ):
            # No B8: a usage that can no longer start ends as B6 does, and F8 follows once the
            # cable is out. Its authorization goes with it; F2 needs a new one.
            self._finishing = True
            self._authorized = False
        if not self.occupied:
            self._finishing = False  # F1/F8: the user has finished
        status = self._derive()
        if status.status is ChargePointStatus.unavailable:
            self._reserved = False  # §5.13; and the table has no H7 to come back by
        self._status = status
        return status

    @property
    def _available(self) -> bool:
        return self._operative and not self._blocked

    def _derive(self) -> Status:
        fault = self._fault
        if fault is not None:
            return Status(
                ChargePointStatus.faulted, fault.error_code, fault.info, fault.vendor_error_code
            )
        if self._lock_failed:
            return Status(ChargePointStatus.faulted, ChargePointErrorCode.connector_lock_failure)
        if self._in_transaction:
            # TC_005_3 accepts SuspendedEV and/or SuspendedEVSE with this info; keep telling the
            # CSMS that the EV is gone even when the EVSE suspends as well.
            info = None if self._ev_connected else EV_SIDE_DISCONNECTED
            if self._evse_suspended:  # precedence over SuspendedEV (§4.9 note)
                return Status(ChargePointStatus.suspended_evse, info=info)
            if not self._ev_connected or self._ev_suspended:
                return Status(ChargePointStatus.suspended_ev, info=info)
            return Status(ChargePointStatus.charging)
        if self._finishing:
            return Status(ChargePointStatus.finishing)
        if not self._available:
            return Status(ChargePointStatus.unavailable)
        if self._authorized:
            return Status(ChargePointStatus.preparing)
        if self._reserved:
            return Status(ChargePointStatus.reserved)
        if self.occupied:
            return Status(ChargePointStatus.preparing)
        return Status(ChargePointStatus.available)
