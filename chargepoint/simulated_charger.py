"""A simulated charger: connectors, cable locks, contactors and energy meters in software.

Its meter integrates the delivered power over (monotonic) time, so the register advances as a
real one does, and it keeps the register in the state database: like a real meter, it does not
go back to zero when the controller loses power. People act on it through :meth:`plug`,
:meth:`present` and friends, which the control socket (``chargepoint ctl``) exposes.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from ocpp.v16.enums import ChargePointErrorCode

from chargepoint.charger import (
    MEASURANDS,
    EvSuspended,
    Fault,
    FaultCleared,
    FaultRaised,
    HardwareEvent,
    IdTagPresented,
    Listener,
    MeterReading,
    Plugged,
    PowerFailing,
    Unplugged,
)

VOLTAGE = 230.0
PHASES = 3
MAX_CURRENT = 16.0  # A per phase: 11 kW
BATTERY_WH = 60_000.0


class SimulatedConnector:
    def __init__(
        self,
        number: int,
        charger: SimulatedCharger,
        *,
        energy_wh: float,
        fixed_cable: bool,
    ) -> None:
        self.number = number
        self._charger = charger
        self._fixed_cable = fixed_cable
        self._energy_wh = energy_wh
        self._plugged = False
        self._suspended = False
        self._fault: Fault | None = None
        self.delivering = False
        self.locked = False
        self.lock_fails = False
        self.unlock_fails = False
        self.limit_a: float | None = None
        self.soc = 20.0
        self._since = charger.clock()

    # -- the hardware interface --

    @property
    def fixed_cable(self) -> bool:
        return self._fixed_cable

    @property
    def energy_wh(self) -> float:
        return self._energy_wh

    @property
    def plugged(self) -> bool:
        return self._plugged

    @property
    def ev_suspended(self) -> bool:
        return self._suspended

    @property
    def fault(self) -> Fault | None:
        return self._fault

    async def lock(self) -> bool:
        if self.lock_fails or self._fixed_cable:
            return self._fixed_cable  # a fixed cable needs no lock
        self.locked = True
        return True

    async def unlock(self) -> bool:
        if self.unlock_fails:
            return False
        self.locked = False
        return True

    def start_energy(self) -> None:
        self._advance()
        self.delivering = True

    def stop_energy(self) -> None:
        self._advance()
        self.delivering = False
        self._charger.save(self)

    def set_current_limit(self, amps: float | None) -> None:
        self._advance()
        self.limit_a = amps

    def read_meter(self) -> MeterReading:
        self._advance()
        self._charger.save(self)
        current = self._current()
        return MeterReading(
            energy_wh=self._energy_wh,
            power_w=current * VOLTAGE * PHASES,
            current_a=current,
            current_offered_a=self._offered(),
            voltage_v=VOLTAGE,
            soc_percent=round(self.soc, 1) if self._plugged else None,
        )

    # -- physics --

    def _offered(self) -> float:
        if not self.delivering:
            return 0.0
        return MAX_CURRENT if self.limit_a is None else max(0.0, min(MAX_CURRENT, self.limit_a))

    def _current(self) -> float:
        if not (self.delivering and self._plugged and not self._suspended and self._fault is None):
            return 0.0
        if self.soc >= 100.0:
            return 0.0
        return self._offered()

    def _advance(self) -> None:
        now = self._charger.clock()
        elapsed, self._since = now - self._since, now
        energy = self._current() * VOLTAGE * PHASES * elapsed / 3600.0
        self._energy_wh += energy
        self.soc = min(100.0, self.soc + 100.0 * energy / BATTERY_WH)

    # -- what people and cars do --

    def set_plugged(self, plugged: bool) -> None:
        self._advance()
        self._plugged = plugged
        if plugged:
            self.soc = 20.0
        self._charger.save(self)

    def set_suspended(self, suspended: bool) -> None:
        self._advance()
        self._suspended = suspended

    def set_fault(self, fault: Fault | None) -> None:
        self._advance()
        self._fault = fault

    def status(self) -> dict[str, object]:
        reading = self.read_meter()
        return {
            "connector": self.number,
            "plugged": self._plugged,
            "locked": self.locked,
            "delivering": self.delivering,
            "ev_suspended": self._suspended,
            "fault": self._fault.code.value if self._fault else None,
            "lock_fails": self.lock_fails,
            "unlock_fails": self.unlock_fails,
            "energy_wh": round(reading.energy_wh, 1),
            "power_w": round(reading.power_w, 1),
            "soc_percent": reading.soc_percent,
        }


class SimulatedCharger:
    def __init__(
        self,
        connectors: int,
        db: sqlite3.Connection | None = None,
        *,
        fixed_cable: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self._db = db
        stored: dict[int, tuple[float, int]] = {}
        if db is not None:
            rows = db.execute("SELECT connector, wh, plugged FROM simulated_connectors")
            stored = {number: (wh, plugged) for number, wh, plugged in rows}
        self._connectors = []
        for n in range(1, connectors + 1):
            wh, plugged = stored.get(n, (0.0, 0))
            connector = SimulatedConnector(n, self, energy_wh=wh, fixed_cable=fixed_cable)
            connector.set_plugged(bool(plugged))  # the car is still there after a reboot
            self._connectors.append(connector)
        self._listeners: list[Listener] = []

    @property
    def connectors(self) -> list[SimulatedConnector]:
        return self._connectors

    @property
    def measurands(self) -> tuple[str, ...]:
        return MEASURANDS

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def save(self, connector: SimulatedConnector) -> None:
        if self._db is not None:
            self._db.execute(
                "INSERT INTO simulated_connectors (connector, wh, plugged) VALUES (?, ?, ?) "
                "ON CONFLICT(connector) DO UPDATE SET wh = excluded.wh, plugged = excluded.plugged",
                (connector.number, connector.energy_wh, int(connector.plugged)),
            )

    def connector(self, number: int) -> SimulatedConnector:
        if not 1 <= number <= len(self._connectors):
            raise ValueError(f"no connector {number} (this charger has 1..{len(self._connectors)})")
        return self._connectors[number - 1]

    def _emit(self, event: HardwareEvent) -> None:
        for listener in self._listeners:
            listener(event)

    # -- the control interface --

    def plug(self, number: int) -> None:
        self.connector(number).set_plugged(True)
        self._emit(Plugged(number))

    def unplug(self, number: int) -> None:
        self.connector(number).set_plugged(False)
        self._emit(Unplugged(number))

    def present(self, id_tag: str, number: int | None = None) -> None:
        if number is not None:
            self.connector(number)
        if not 1 <= len(id_tag) <= 20:
            raise ValueError("an idTag is 1 to 20 characters (CiString20)")
        self._emit(IdTagPresented(id_tag, number))

    def raise_fault(self, number: int, code: str, info: str | None = None) -> None:
        try:
            error = ChargePointErrorCode(code)
        except ValueError:
            names = ", ".join(c.value for c in ChargePointErrorCode if c.value != "NoError")
            raise ValueError(f"unknown OCPP error code {code!r}; one of: {names}") from None
        if error is ChargePointErrorCode.no_error:
            raise ValueError("NoError is not a fault; use clear-fault")
        fault = Fault(error, info)
        self.connector(number).set_fault(fault)
        self._emit(FaultRaised(number, fault))

    def clear_fault(self, number: int) -> None:
        self.connector(number).set_fault(None)
        self._emit(FaultCleared(number))

    def suspend(self, number: int, suspended: bool) -> None:
        self.connector(number).set_suspended(suspended)
        self._emit(EvSuspended(number, suspended))

    def power_failing(self) -> None:
        self._emit(PowerFailing())

    def status(self) -> list[dict[str, object]]:
        return [c.status() for c in self._connectors]
