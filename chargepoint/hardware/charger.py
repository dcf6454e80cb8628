"""The interface between the OCPP logic and the charger's hardware.

The charge point asks the hardware to lock, unlock, deliver energy and read its meter; the
hardware tells the charge point what people and cars do (cable in, cable out, a card on the
reader, a fault, an EV that pauses) through :class:`HardwareEvent`s. A real charger implements
this against its I/O; :class:`~chargepoint.hardware.simulated.SimulatedCharger` is the default.

Connector numbers are OCPP's: 1..N (connector 0 is the charge point as a whole).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ocpp.v16.enums import ChargePointErrorCode


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One reading of a connector's meter (OCPP 1.6 §7.31 measurands)."""

    energy_wh: float  # Energy.Active.Import.Register
    power_w: float  # Power.Active.Import
    current_a: float  # Current.Import, per phase
    current_offered_a: float  # Current.Offered
    voltage_v: float  # Voltage, phase to neutral
    soc_percent: float | None  # SoC, when the EV reports it


# The measurands a meter reading can give, as MeterValuesSampledData names them.
MEASURANDS = (
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Current.Import",
    "Current.Offered",
    "Voltage",
    "SoC",
)


@dataclass(frozen=True, slots=True)
class Rating:
    """What each connector can deliver: the Smart Charging block converts limits in W to A
    with it (W = A x voltage x phases) and reports the maximum where no profile applies."""

    max_current_a: float  # per phase
    voltage_v: float  # phase to neutral
    phases: int


@dataclass(frozen=True, slots=True)
class Fault:
    code: ChargePointErrorCode
    info: str | None = None
    vendor_error_code: str | None = None


class ConnectorHardware(Protocol):
    @property
    def fixed_cable(self) -> bool: ...

    @property
    def cable_plugged(self) -> bool:
        """A cable is in the socket (always False for a fixed cable: there is no socket)."""
        ...

    @property
    def ev_connected(self) -> bool:
        """An EV is at the other end of the cable (control pilot state B or C)."""
        ...

    @property
    def ev_suspended(self) -> bool: ...

    @property
    def fault(self) -> Fault | None: ...

    @property
    def locked(self) -> bool: ...

    async def lock(self) -> bool:
        """Lock the cable; False when the lock did not engage."""
        ...

    async def unlock(self) -> bool:
        """Unlock the cable; False when it stayed locked."""
        ...

    def start_energy(self) -> None: ...

    def stop_energy(self) -> None: ...

    def set_current_limit(self, amps: float | None) -> None:
        """Limit the current offered to the EV (None: the hardware's maximum)."""
        ...

    def read_meter(self) -> MeterReading: ...


@dataclass(frozen=True, slots=True)
class Plugged:
    """An EV is connected: the cable is in at both ends."""

    connector: int


@dataclass(frozen=True, slots=True)
class Unplugged:
    """The EV side is unplugged; with ``socket_side`` the cable is out of the socket too."""

    connector: int
    socket_side: bool = True


@dataclass(frozen=True, slots=True)
class IdTagPresented:
    id_tag: str
    connector: int | None = None  # None: the reader is shared, the charge point chooses


@dataclass(frozen=True, slots=True)
class FaultRaised:
    connector: int  # 0: the charge point as a whole
    fault: Fault


@dataclass(frozen=True, slots=True)
class FaultCleared:
    connector: int


@dataclass(frozen=True, slots=True)
class EvSuspended:
    connector: int
    suspended: bool


@dataclass(frozen=True, slots=True)
class PowerFailing:
    """Mains power is gone and the controller runs on its back-up supply (TC_032_1_CS)."""


@dataclass(frozen=True, slots=True)
class TamperDetected:
    """The enclosure's tamper sensor tripped (security whitepaper §8 TamperDetectionActivated).
    ``info``: which sensor, for the CSMS's techInfo; nothing secret."""

    info: str | None = None


HardwareEvent = (
    Plugged
    | Unplugged
    | IdTagPresented
    | FaultRaised
    | FaultCleared
    | EvSuspended
    | PowerFailing
    | TamperDetected
)
Listener = Callable[[HardwareEvent], None]


class Charger(Protocol):
    @property
    def connectors(self) -> Sequence[ConnectorHardware]:
        """Connector 1 first."""
        ...

    @property
    def measurands(self) -> tuple[str, ...]: ...

    @property
    def rating(self) -> Rating: ...

    @property
    def fault(self) -> Fault | None:
        """A fault of the charge point as a whole (connector 0): no connector may charge."""
        ...

    def listen(self, listener: Listener) -> None:
        """Deliver every hardware event to ``listener`` (called on the event loop)."""
        ...
