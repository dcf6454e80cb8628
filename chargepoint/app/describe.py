"""The charge point as `chargepoint ctl status` (and the demo) shows it."""

from __future__ import annotations

from typing import Any

from chargepoint.station import Station


def describe(station: Station) -> dict[str, Any]:
    """What `chargepoint ctl status` shows of the charge point and each connector."""
    connectors = []
    for number in station.context.connectors:
        status = station.availability.status_of(number)
        tx = station.transactions.active(number)
        hardware = station.context.charger.connectors[number - 1]
        reading = hardware.read_meter()
        connectors.append(
            {
                "connector": number,
                "status": status.status.value,
                "error_code": status.error_code.value,
                "cable_plugged": hardware.cable_plugged,
                "ev_connected": hardware.ev_connected,
                "locked": hardware.locked,
                "operative": station.availability.operative(number),
                "authorized": station.transactions.pending_id_tag(number),
                "energy_wh": int(reading.energy_wh),
                "power_w": round(reading.power_w),
                # Smart Charging's limit per phase (None: no profile limits it).
                "current_limit_a": None
                if station.smart_charging is None
                else station.smart_charging.limit_of(number),
                "reservation": None
                if station.reservations is None
                or (reservation := station.reservations.book.on_connector(number)) is None
                else {
                    "reservation_id": reservation.reservation_id,
                    "id_tag": reservation.id_tag,
                    "expiry": reservation.expiry.isoformat(),
                },
                "transaction": None
                if tx is None
                else {
                    "local_id": tx.local_id,
                    "transaction_id": tx.transaction_id,
                    "id_tag": tx.id_tag,
                    "meter_start": tx.meter_start,
                    "energy_wh": int(reading.energy_wh) - tx.meter_start,
                    "started": tx.start_time,
                },
            }
        )
    return {
        "online": station.online,
        "status": station.availability.status_of(0).status.value,
        "feature_profiles": sorted(station.context.profiles),
        "local_list_version": None
        if station.authorization.local_list is None
        else station.authorization.local_list.version,
        "queued_messages": len(station.context.outbox),
        "delivered_messages": station.context.outbox.delivered,
        "dropped_messages": station.context.outbox.dropped,
        "queued_since_start": dict(station.context.outbox.queued),
        "connectors": connectors,
    }
