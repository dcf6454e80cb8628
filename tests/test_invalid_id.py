"""A transaction whose idTag StartTransaction.conf does not accept, and
StopTransactionOnInvalidId false (OCPP 1.6 §4.8 as moved there by errata v4.0 §3.18; §9.1.14
MaxEnergyOnInvalidId): the EV may take its allowance, then the EVSE withholds energy
(SuspendedEVSE, §4.9) and the transaction goes on until the driver ends it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from tests.harness import LogWatch, rig

ALLOWANCE = 5  # Wh: under two seconds at the simulated 11 kW


async def test_max_energy_on_invalid_id_is_delivered_then_withheld() -> None:
    keys = {
        "AuthorizeRemoteTxRequests": False,  # so only StartTransaction.conf judges the idTag
        "StopTransactionOnInvalidId": False,
        "MaxEnergyOnInvalidId": ALLOWANCE,
        "MeterValueSampleInterval": 0,  # the allowance is watched without meter samples
    }
    async with rig("python", keys=keys) as r:
        await r.peer.configure(id_tags={"STOLEN": {"status": "Blocked"}})
        r.charger.plug(1)
        await r.wait_status(1, "Preparing")
        answer = await r.peer.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "STOLEN"})
        assert answer == {"status": "Accepted"}
        await r.wait_status(1, "SuspendedEVSE")
        hardware = r.charger.connector(1)
        (start,) = r.calls("StartTransaction")
        assert hardware.energy_wh >= start["meterStart"] + ALLOWANCE
        assert not hardware.delivering
        # SuspendedEVSE came only once the allowance was used: at 11.04 kW that takes 1.63 s
        # after the start (the charge point's own timestamps; load can only make it later).
        suspended = await r.wait_status(1, "SuspendedEVSE")
        taken = _instant(suspended["timestamp"]) - _instant(start["timestamp"])
        assert taken.total_seconds() >= ALLOWANCE / 11_040 * 3600 - 0.002
        assert r.calls("StopTransaction") == []
        async with asyncio.timeout(30):
            await r.station.wait_until(lambda: r.station.transactions.active(1) is not None)

        r.charger.unplug(1)  # the driver leaves: the transaction ends
        (stop,) = await r.wait_calls("StopTransaction")
        assert stop["reason"] == "EVDisconnected"
        assert stop["meterStop"] >= start["meterStart"] + ALLOWANCE


def _instant(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def test_a_deauthorized_transaction_keeps_its_cable_until_its_owner_comes_back() -> None:
    # StopTransactionOnInvalidId true: stopped with reason DeAuthorized; the cable stays locked
    # until the same idTag, or one with the same parentIdTag, is presented (errata v4.0 §3.18).
    keys = {"AuthorizeRemoteTxRequests": False, "StopTransactionOnInvalidId": True}
    async with rig("python", keys=keys) as r:
        await r.peer.configure(
            id_tags={
                "STOLEN": {"status": "Blocked", "parentIdTag": "FAMILY"},
                "SPOUSE": {"status": "Accepted", "parentIdTag": "FAMILY"},
                "NEIGHBOUR": {"status": "Accepted", "parentIdTag": "OTHERS"},
            }
        )
        for owner in ("STOLEN", "SPOUSE"):  # the same card, then a card of the same parent
            r.charger.plug(1)
            answer = await r.peer.call(
                "RemoteStartTransaction", {"connectorId": 1, "idTag": "STOLEN"}
            )
            assert answer == {"status": "Accepted"}
            stops = len(r.calls("StopTransaction"))
            (stop, *_) = (await r.wait_calls("StopTransaction", stops + 1))[stops:]
            assert stop["reason"] == "DeAuthorized"
            async with asyncio.timeout(30):
                await r.station.wait_until(lambda: r.station.transactions.held(1) is not None)
            hardware = r.charger.connector(1)
            assert hardware.locked
            assert r.status_sequence(1)[-1] != "Available"

            authorizes = len(r.calls("Authorize"))
            with LogWatch("idTag NEIGHBOUR (parent OTHERS) may not take the cable") as refused:
                r.charger.present("NEIGHBOUR", 1)  # another account's card: the cable stays
                async with asyncio.timeout(30):  # decided on its Authorize.conf
                    await refused.seen.wait()
            assert hardware.locked
            r.charger.present(owner, 1)
            async with asyncio.timeout(30):
                await r.station.wait_until(lambda h=hardware: not h.locked)
            assert r.station.transactions.held(1) is None
            assert [a["idTag"] for a in r.calls("Authorize")[authorizes:]] == [
                "NEIGHBOUR",
                *(["SPOUSE"] if owner == "SPOUSE" else []),
            ]
            r.charger.unplug(1)
            await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Available")
        assert [s["reason"] for s in r.calls("StopTransaction")] == ["DeAuthorized"] * 2
        assert r.calls("StartTransaction")[-1]["idTag"] == "STOLEN"
