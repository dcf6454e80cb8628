"""Meter values as OCPP 1.6 wants them (§3.16, §7.31 MeterValue, errata v4.0 §3.14).

:func:`meter_value` turns a reading into a MeterValue with one SampledValue per configured
measurand, each with its context, measurand, unit and location; :class:`ClockAlignedTrigger`
fires at the clock-aligned instants of ClockAlignedDataInterval, counted from midnight every
day (an apscheduler interval trigger would drift whenever the interval does not divide a day).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from apscheduler.triggers.base import BaseTrigger

from chargepoint.hardware.charger import MeterReading
from chargepoint.model.transactions import timestamp

# measurand -> (unit, how to read it)
_UNITS = {
    "Energy.Active.Import.Register": "Wh",
    "Power.Active.Import": "W",
    "Current.Import": "A",
    "Current.Offered": "A",
    "Voltage": "V",
    "SoC": "Percent",
}


def _value(measurand: str, reading: MeterReading) -> float | None:
    match measurand:
        case "Energy.Active.Import.Register":
            return reading.energy_wh
        case "Power.Active.Import":
            return reading.power_w
        case "Current.Import":
            return reading.current_a
        case "Current.Offered":
            return reading.current_offered_a
        case "Voltage":
            return reading.voltage_v
        case "SoC":
            return reading.soc_percent
    return None


def _format(measurand: str, value: float) -> str:
    if measurand == "Energy.Active.Import.Register":
        return str(int(value))  # whole Wh, as meterStart/meterStop
    return f"{value:.1f}"


def meter_value(
    reading: MeterReading, measurands: list[str], context: str, when: datetime
) -> dict[str, Any] | None:
    """A MeterValue (camelCase JSON) or None when no measurand has a value."""
    sampled = []
    for measurand in measurands:
        value = _value(measurand, reading)
        if value is None:
            continue  # SoC without an EV that reports it
        entry = {
            "value": _format(measurand, value),
            "context": context,
            "measurand": measurand,
            "unit": _UNITS[measurand],
            "location": "EV" if measurand == "SoC" else "Outlet",
        }
        if measurand == "Energy.Active.Import.Register":
            entry["format"] = "Raw"
        sampled.append(entry)
    if not sampled:
        return None
    return {"timestamp": timestamp(when), "sampledValue": sampled}


def aligned_at_or_before(now: datetime, interval: int) -> datetime:
    """The last clock-aligned instant at or before ``now``."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = (now - midnight).total_seconds()
    return midnight + timedelta(seconds=int(elapsed // interval) * interval)


def aligned_after(now: datetime, interval: int) -> datetime:
    """The first clock-aligned instant strictly after ``now`` (intervals restart at midnight)."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = (now - midnight).total_seconds()
    candidate = midnight + timedelta(seconds=(int(elapsed // interval) + 1) * interval)
    next_midnight = midnight + timedelta(days=1)
    return min(candidate, next_midnight)


class ClockAlignedTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires at midnight + k * interval, k = 1, 2, ..., and at every midnight."""

    def __init__(self, interval: int) -> None:
        if interval <= 0:
            raise ValueError("a clock-aligned interval is a positive number of seconds")
        self.interval = interval

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        after = now if previous_fire_time is None else max(now, previous_fire_time)
        return aligned_after(after, self.interval)

    def __str__(self) -> str:
        return f"clock-aligned[{self.interval} s]"
