"""What one functional block tells the others, without knowing who listens.

Blocks publish these on the context's :class:`Events`; a block that must react (availability
re-deriving a connector's status, metering starting its samples) subscribes. Handlers run
synchronously, inside the publisher's unit of work, so nothing is observed half-done.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from chargepoint.model.smart_charging import ChargingProfile


@dataclass(frozen=True, slots=True)
class TransactionStarted:
    connector: int
    reservation_id: int | None = None  # the reservation it ends (§5.13)
    charging_profile: ChargingProfile | None = None  # its RemoteStartTransaction's TxProfile


@dataclass(frozen=True, slots=True)
class ConnectorReserved:
    """Whether the connector shows Reserved (the reservation block decides)."""

    connector: int
    reserved: bool


@dataclass(frozen=True, slots=True)
class TransactionEnded:
    connector: int


@dataclass(frozen=True, slots=True)
class AuthorizationPending:
    """An idTag (or a remote start) holds the connector until the cable comes, or not any more."""

    connector: int
    pending: bool


@dataclass(frozen=True, slots=True)
class EnergyWithheld:
    """The EVSE does not offer energy to the running transaction (deauthorized, energy cap)."""

    connector: int
    withheld: bool


@dataclass(frozen=True, slots=True)
class TransactionDeauthorized:
    """StartTransaction.conf said the transaction's idTag is not Accepted (§4.8)."""

    connector: int
    local_id: int
    status: str


@dataclass(frozen=True, slots=True)
class OutOfService:
    """The connector may start no new transaction (set Inoperative, or blocked by the charge
    point): an authorization still waiting for the cable there is void (§5.2)."""

    connector: int


@dataclass(frozen=True, slots=True)
class LockFailed:
    connector: int
    failed: bool


@dataclass(frozen=True, slots=True)
class LocalListConflict:
    """The CSMS judged a listed idTag otherwise than the Local Authorization List (§3.5.2)."""

    id_tag: str


@dataclass(frozen=True, slots=True)
class MeterSampled:
    connector: int
    energy_wh: float


E = TypeVar("E")


class Events:
    def __init__(self) -> None:
        self._handlers: defaultdict[type[Any], list[Callable[[Any], None]]] = defaultdict(list)

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> None:
        self._handlers[kind].append(handler)

    def publish(self, event: object) -> None:
        for handler in self._handlers[type(event)]:
            handler(event)
