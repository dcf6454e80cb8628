"""The simulated charger keeps its whole physical state as the hardware would (issue 14 item
2): a daemon restart or a power cut does not unplug a cable, take an EV away from a cable still
in its socket, release a lock, clear a fault (of a connector or of the whole charge point,
connector 0) or wind a meter back. Only the contactor opens with the power.
"""

from __future__ import annotations

import asyncio
from typing import Any

from chargepoint.hardware.simulated import SimulatedCharger
from chargepoint.storage import open_state
from tests.harness import fresh_state, reported_after_boot, rig


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _without(status: dict[str, Any], *parts: str) -> dict[str, Any]:
    connectors = [{k: v for k, v in c.items() if k not in parts} for c in status["connectors"]]
    return {**status, "connectors": connectors}


async def test_every_part_of_the_physical_state_survives_a_restart() -> None:
    state = fresh_state()
    clock = Clock()
    charger = SimulatedCharger(4, open_state(state), clock=clock)
    charger.plug(1)
    assert await charger.connector(1).lock()
    charger.connector(1).start_energy()
    charger.plug(2)
    charger.unplug(2, ev_side=True)  # the cable stays in the socket
    charger.set_unlock_fails(2, True)
    charger.raise_fault(3, "GroundFailure", "RCD tripped")
    charger.set_lock_fails(3, True)
    charger.plug(4)
    charger.suspend(4, True)  # the EV pauses
    clock.now = 3600.0  # an hour of charging at 11 kW
    charger.raise_fault(0, "PowerSwitchFailure")  # which stops the energy from here on
    clock.now = 7200.0
    before = charger.status()

    again = SimulatedCharger(4, open_state(state), clock=clock)  # restarted: same state dir
    after = again.status()

    assert before["connectors"][0]["delivering"] and not after["connectors"][0]["delivering"]
    assert _without(after, "delivering", "power_w") == _without(before, "delivering", "power_w")
    assert after["fault"] == "PowerSwitchFailure"
    one, two, three, four = after["connectors"]
    assert (one["cable_plugged"], one["ev_connected"], one["locked"]) == (True, True, True)
    assert one["energy_wh"] == 11040.0  # 16 A x 230 V x 3 phases for an hour
    assert (two["cable_plugged"], two["ev_connected"], two["unlock_fails"]) == (True, False, True)
    assert (three["fault"], three["lock_fails"]) == ("GroundFailure", True)
    assert (four["ev_connected"], four["ev_suspended"]) == (True, True)


async def test_the_charge_point_reports_the_same_statuses_after_a_daemon_restart() -> None:
    async with rig("python", connectors=3) as r:
        r.charger.plug(1)
        r.charger.unplug(1, ev_side=True)  # cable left in the socket, the EV gone
        r.charger.raise_fault(2, "GroundFailure", "RCD tripped")
        r.charger.raise_fault(0, "PowerSwitchFailure")
        r.charger.plug(3)
        await r.wait_status(2, "Faulted")
        await r.wait_status(0, "Faulted")
        await r.station.wait_until(r.station.availability.all_reported)
        before = {n: r.station.availability.status_of(n) for n in range(4)}
        hardware = r.charger.status()

        await r.restart()
        await r.peer.wait_for(lambda events: reported_after_boot(events, 2, 3))
        assert _without(r.charger.status(), "power_w") == _without(hardware, "power_w")
        calls = r.peer.calls()
        boot = [i for i, c in enumerate(calls) if c["method"] == "BootNotification"][1]
        reported = {
            c["params"]["connectorId"]: (c["params"]["status"], c["params"]["errorCode"])
            for c in calls[boot:]
            if c["method"] == "StatusNotification"
        }
        assert reported == {
            n: (status.status.value, status.error_code.value) for n, status in before.items()
        }
        assert reported[0] == ("Faulted", "PowerSwitchFailure")
        assert reported[2] == ("Faulted", "GroundFailure")


async def test_a_fault_ends_an_authorization_still_waiting_for_the_cable() -> None:
    # A card was accepted on connector 1, then the connector faulted before the cable came:
    # plugging in afterwards must not start a transaction on a Faulted connector.
    async with rig("python") as r:
        r.charger.present("TAG-1", 1)
        await r.wait_status(1, "Preparing")
        r.charger.raise_fault(1, "GroundFailure", "RCD tripped")
        await r.wait_status(1, "Faulted")
        r.charger.plug(1)
        async with asyncio.timeout(30):
            await r.station.wait_until(lambda: r.station.transactions.pending_id_tag(1) is None)
        assert r.station.transactions.active(1) is None
        r.charger.clear_fault(1)
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Preparing")  # cable in
        assert r.station.transactions.active(1) is None
        assert r.calls("StartTransaction") == []
