"""A simulated charger: connectors, cables, locks, contactors, meters and faults in software.

Its meter integrates the delivered power over (monotonic) time, so the register advances as a
real one does. Its whole physical state (cable in the socket, EV connected, lock, EV pause,
faults of each connector and of the charge point, meter register) is kept in the state
database as the hardware would keep it: a daemon restart or a power cut does not unplug a
cable, clear a fault or wind a meter back. People act on it through :meth:`plug`,
:meth:`present` and friends, which the control socket (``chargepoint ctl``) exposes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from ocpp.v16.enums import ChargePointErrorCode

from chargepoint.hardware.charger import (
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
    Rating,
    TamperDetected,
    Unplugged,
)

VOLTAGE = 230.0
PHASES = 3
MAX_CURRENT = 16.0  # A per phase: 11 kW
BATTERY_WH = 60_000.0


class SimulatedConnector:
    def __init__(self, number: int, charger: SimulatedCharger, *, fixed_cable: bool) -> None:
        self.number = number
        self._charger = charger
        self._fixed_cable = fixed_cable
        self._energy_wh = 0.0
        self._cable = False
        self._ev = False
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
    def cable_plugged(self) -> bool:
        return self._cable

    @property
    def ev_connected(self) -> bool:
        return self._ev

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
        self._charger.save(self)
        return True

    async def unlock(self) -> bool:
        if self.unlock_fails:
            return False
        self.locked = False
        self._charger.save(self)
        return True

    def start_energy(self) -> None:
        self._advance()
        self.delivering = True
        self._charger.save(self)

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
            soc_percent=round(self.soc, 1) if self._ev else None,
        )

    # -- physics --

    def _offered(self) -> float:
        if not self.delivering or self._charger.fault is not None:
            return 0.0
        return MAX_CURRENT if self.limit_a is None else max(0.0, min(MAX_CURRENT, self.limit_a))

    def _current(self) -> float:
        if not (self.delivering and self._ev and not self._suspended and self._fault is None):
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

    def set_plugged(self, ev: bool, *, cable: bool | None = None) -> None:
        """``ev``: an EV at the cable's end; ``cable``: the cable in the socket (a socket
        charger's cable goes in with the EV, and stays when only the EV side is unplugged)."""
        self._advance()
        if ev and not self._ev:
            self.soc = 20.0
        self._ev = ev
        if not self._fixed_cable:
            self._cable = ev or (self._cable if cable is None else cable)
        if not self._cable and not self._fixed_cable:
            self.locked = False  # no cable, nothing to hold
        self._charger.save(self)

    def set_suspended(self, suspended: bool) -> None:
        self._advance()
        self._suspended = suspended
        self._charger.save(self)

    def set_fault(self, fault: Fault | None) -> None:
        self._advance()
        self._fault = fault
        self._charger.save(self)

    # -- durable state --

    def state(self) -> dict[str, Any]:
        return {
            "wh": self._energy_wh,
            "cable": self._cable,
            "ev": self._ev,
            "locked": self.locked,
            "delivering": self.delivering,
            "suspended": self._suspended,
            "fault": _fault_json(self._fault),
            "lock_fails": self.lock_fails,
            "unlock_fails": self.unlock_fails,
            "soc": self.soc,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._energy_wh = float(state.get("wh", 0.0))
        self._ev = bool(state.get("ev", False))
        self._cable = bool(state.get("cable", self._ev)) and not self._fixed_cable
        self.locked = bool(state.get("locked", False))
        # Power came back: the contactor opened when it went; the controller decides again.
        self.delivering = False
        self._suspended = bool(state.get("suspended", False))
        self._fault = _fault_from(state.get("fault"))
        self.lock_fails = bool(state.get("lock_fails", False))
        self.unlock_fails = bool(state.get("unlock_fails", False))
        self.soc = float(state.get("soc", 20.0))

    def status(self) -> dict[str, object]:
        reading = self.read_meter()
        return {
            "connector": self.number,
            "cable_plugged": self._cable,
            "ev_connected": self._ev,
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
        self._fault: Fault | None = None
        self._connectors = [
            SimulatedConnector(n, self, fixed_cable=fixed_cable) for n in range(1, connectors + 1)
        ]
        self._listeners: list[Listener] = []
        self._loading = True
        for number, state in self._stored().items():
            if number == 0:
                self._fault = _fault_from(state.get("fault"))
            elif number <= connectors:
                self._connectors[number - 1].restore(state)
        self._loading = False

    def _stored(self) -> dict[int, dict[str, Any]]:
        if self._db is None:
            return {}
        rows = self._db.execute("SELECT connector, state FROM simulated_hardware").fetchall()
        if rows:
            return {number: json.loads(state) for number, state in rows}
        # A state directory from before the whole physical state was kept: meter and cable.
        old = self._db.execute("SELECT connector, wh, plugged FROM simulated_connectors")
        return {n: {"wh": wh, "ev": bool(plugged)} for n, wh, plugged in old}

    @property
    def connectors(self) -> list[SimulatedConnector]:
        return self._connectors

    @property
    def measurands(self) -> tuple[str, ...]:
        return MEASURANDS

    @property
    def rating(self) -> Rating:
        return Rating(MAX_CURRENT, VOLTAGE, PHASES)

    @property
    def fault(self) -> Fault | None:
        return self._fault

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def save(self, connector: SimulatedConnector | None = None) -> None:
        if self._db is None or self._loading:
            return
        number, state = (
            (0, {"fault": _fault_json(self._fault)})
            if connector is None
            else (connector.number, connector.state())
        )
        self._db.execute(
            "INSERT INTO simulated_hardware (connector, state) VALUES (?, ?) "
            "ON CONFLICT(connector) DO UPDATE SET state = excluded.state",
            (number, json.dumps(state)),
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

    def unplug(self, number: int, *, ev_side: bool = False) -> None:
        """The cable comes out: of the socket (and the EV), or with ``ev_side`` of the EV only
        (the cable stays in the socket). A fixed cable has only an EV side."""
        connector = self.connector(number)
        socket_side = not ev_side and not connector.fixed_cable
        connector.set_plugged(False, cable=False if socket_side else None)
        self._emit(Unplugged(number, socket_side=socket_side))

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
        if number == 0:
            self._meter_to_now()  # energy flowed until this instant
            self._fault = fault
            self.save()
        else:
            self.connector(number).set_fault(fault)
        self._emit(FaultRaised(number, fault))

    def clear_fault(self, number: int) -> None:
        if number == 0:
            self._meter_to_now()
            self._fault = None
            self.save()
        else:
            self.connector(number).set_fault(None)
        self._emit(FaultCleared(number))

    def set_lock_fails(self, number: int, fails: bool) -> None:
        """The cable lock of ``number`` will fail (or work again) from now on."""
        connector = self.connector(number)
        connector.lock_fails = fails
        self.save(connector)

    def set_unlock_fails(self, number: int, fails: bool) -> None:
        connector = self.connector(number)
        connector.unlock_fails = fails
        self.save(connector)

    def suspend(self, number: int, suspended: bool) -> None:
        self.connector(number).set_suspended(suspended)
        self._emit(EvSuspended(number, suspended))

    def power_failing(self) -> None:
        """Mains lost, on the back-up supply: the controller is told and has time to act."""
        self._emit(PowerFailing())

    def tamper(self, info: str | None = None) -> None:
        """Someone opened the enclosure: the tamper sensor trips (nothing else changes)."""
        self._emit(TamperDetected(info))

    def power_cut(self) -> None:
        """The power goes with no warning. Nothing is told; the hardware's own memory keeps
        what it knows (the meter register to this instant, cable, lock, faults)."""
        self._meter_to_now()

    def _meter_to_now(self) -> None:
        for connector in self._connectors:
            connector.read_meter()  # brings the register up to now and saves it

    def status(self) -> dict[str, object]:
        return {
            "fault": self._fault.code.value if self._fault else None,
            "connectors": [c.status() for c in self._connectors],
        }


def _fault_json(fault: Fault | None) -> dict[str, str | None] | None:
    if fault is None:
        return None
    return {"code": fault.code.value, "info": fault.info, "vendor": fault.vendor_error_code}


def _fault_from(value: Any) -> Fault | None:
    if not isinstance(value, dict):
        return None
    try:
        return Fault(ChargePointErrorCode(value["code"]), value.get("info"), value.get("vendor"))
    except (KeyError, ValueError):
        # A fault we cannot read is still a fault: charging on it is the unsafe reading.
        return Fault(ChargePointErrorCode.other_error, "unreadable stored fault")
