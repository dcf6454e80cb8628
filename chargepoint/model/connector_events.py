"""What a connector's status is made of: the :class:`Status` a StatusNotification.req reports
(OCPP 1.6 §6.47) and the events that feed a
:class:`~chargepoint.model.connector_status.ConnectorStatusMachine` (§4.9).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from ocpp.v16.enums import ChargePointErrorCode, ChargePointStatus

EV_SIDE_DISCONNECTED = "EV side disconnected"  # the info OCTT TC_005_3 checks for


@dataclass(frozen=True, slots=True)
class Status:
    """What a StatusNotification.req reports for a connector (§6.47)."""

    status: ChargePointStatus
    error_code: ChargePointErrorCode = ChargePointErrorCode.no_error
    info: str | None = None
    vendor_error_code: str | None = None


# -- events: each is about one connector, the machine's own --


@dataclass(frozen=True, slots=True)
class EvConnected:
    """The EV is connected: the cable is in at both ends."""


@dataclass(frozen=True, slots=True)
class EvDisconnected:
    """The EV side is unplugged; on a socket charger the cable can stay in the socket."""


@dataclass(frozen=True, slots=True)
class CableRemoved:
    """The cable is out of the socket, so out of the EV too (socket chargers only)."""


@dataclass(frozen=True, slots=True)
class Authorized:
    """An idTag was accepted, or a remote start claimed the connector; no transaction yet."""


@dataclass(frozen=True, slots=True)
class AuthorizationEnded:
    """The authorization was withdrawn, refused, or timed out (ConnectionTimeOut, errata §3.21).

    The ConnectionTimeOut that ends a wait for an idTag after the cable went in
    (errata §3.20, B6) is this event too, although nothing was authorized.
    """


@dataclass(frozen=True, slots=True)
class TransactionStarted:
    pass


@dataclass(frozen=True, slots=True)
class TransactionEnded:
    pass


@dataclass(frozen=True, slots=True)
class EvSuspended:
    """The EV pauses (or resumes) taking energy: state B2 counts too (errata §3.55)."""

    suspended: bool


@dataclass(frozen=True, slots=True)
class EvseSuspended:
    """The EVSE does (or again does not) withhold energy (errata §3.64): a deauthorized
    transaction, an energy cap, a charging profile at zero, a fault of the whole charge point."""

    suspended: bool


@dataclass(frozen=True, slots=True)
class FaultRaised:
    """A fault that prevents charging (A9, B9, ...); a later one replaces it."""

    error_code: ChargePointErrorCode
    info: str | None = None
    vendor_error_code: str | None = None


@dataclass(frozen=True, slots=True)
class FaultCleared:
    """The fault is resolved: the status returns to what the other inputs say (I1-I8)."""


@dataclass(frozen=True, slots=True)
class LockFailure:
    """The cable lock failed (True), or a later unlock succeeded (False). Taking the cable out
    clears it as well."""

    failed: bool


@dataclass(frozen=True, slots=True)
class Availability:
    """The availability the CSMS set (ChangeAvailability, §5.2), for this connector and the
    charge point combined: operative only if both are."""

    operative: bool


@dataclass(frozen=True, slots=True)
class Blocked:
    """The charge point takes the connector out of use itself (§4.9 allows using Unavailable
    internally), e.g. while a firmware update waits to install (errata §3.49)."""

    blocked: bool


@dataclass(frozen=True, slots=True)
class Reserved:
    """A reservation holds the connector (§5.13), or no longer does."""

    reserved: bool


ConnectorEvent: TypeAlias = (
    EvConnected
    | EvDisconnected
    | CableRemoved
    | Authorized
    | AuthorizationEnded
    | TransactionStarted
    | TransactionEnded
    | EvSuspended
    | EvseSuspended
    | FaultRaised
    | FaultCleared
    | LockFailure
    | Availability
    | Blocked
    | Reserved
)
