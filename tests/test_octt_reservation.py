"""OCTT for OCPP 1.6 (FINAL 2024-04) section 2.20, Reservation: TC_046_1, TC_046_2, TC_047,
TC_048_1/2/3, TC_049, TC_050_1/2/3, TC_051, TC_052 and TC_053 (TC_048_4 and TC_050_4, the
profile not offered: tests/test_feature_profiles.py), through the daemon, the simulated Quectel
module and both CSMSs (ocpp-rpc in strict mode validates every message against the schemas).
The reusable states of the cases (SetConnectorUnavailable, SetConnectorFaulted, ...) are made
the way a CSMS or the hardware makes them: ChangeAvailability, a fault on the simulated charger,
a transaction. After the cases: what §5.13 asks beyond them (replacement, restart, expiry while
off).
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chargepoint.app.describe import describe
from tests.harness import STACKS, LogWatch, Rig, Stack, rig, strict_failures
from tests.test_octt_core import wire

RESERVER = "RESERVER"


@pytest.fixture(params=STACKS, ids=str)
def peer_kind(request: pytest.FixtureRequest) -> Stack:
    """Both CSMS peers and both module families, paired (tests/harness.py)."""
    stack: Stack = request.param
    return stack


def later(seconds: float = 3600) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


async def reserve(
    r: Rig,
    connector: int,
    reservation_id: int = 1,
    id_tag: str = RESERVER,
    expiry: str | None = None,
    **more: str,
) -> str:
    answer = await r.peer.call(
        "ReserveNow",
        {
            "connectorId": connector,
            "expiryDate": expiry or later(),
            "idTag": id_tag,
            "reservationId": reservation_id,
            **more,
        },
    )
    return str(answer["status"])


async def unavailable(r: Rig, connector: int) -> None:
    """Reusable state SetConnectorUnavailable (connector 0: SetChargePointUnavailable)."""
    answer = await r.peer.call(
        "ChangeAvailability", {"connectorId": connector, "type": "Inoperative"}
    )
    assert answer == {"status": "Accepted"}
    await r.wait_status(connector, "Unavailable")


async def started(r: Rig, count: int = 1) -> dict[str, Any]:
    return dict((await r.wait_calls("StartTransaction", count))[count - 1])


async def refused(r: Rig, id_tag: str, connector: int) -> None:
    """``id_tag`` may not charge on ``connector``: the reservation block said so."""
    with LogWatch(f"idTag {id_tag} (parent None) may not charge on connector {connector}") as said:
        r.charger.present(id_tag, connector)
        async with asyncio.timeout(30):
            await said.seen.wait()
    assert r.station.transactions.pending_id_tag(connector) is None
    assert r.station.transactions.active(connector) is None


# -- 2.20.1 Reservation of a Connector --


async def test_tc_046_1_cs_reserved_connector_local_start(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        await unavailable(r, 2)
        mark = len(wire(r))
        assert await reserve(r, 1, 11) == "Accepted"  # step 2
        await r.wait_status(1, "Reserved")  # step 3
        # Another card first: refused on the reserved connector, nothing starts.
        with LogWatch("idTag SOMEONE refused: connector 1 is reserved") as said:
            r.charger.present("SOMEONE", 1)
            async with asyncio.timeout(30):
                await said.seen.wait()
        r.charger.present(RESERVER, 1)  # step 5: Authorize for it
        await r.wait_status(1, "Preparing")  # step 7
        r.charger.plug(1)
        start = await started(r)  # step 9
        assert (start["connectorId"], start["idTag"], start["reservationId"]) == (1, RESERVER, 11)
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Charging")  # step 11
        messages = wire(r)[mark:]
        authorized = [m.payload["idTag"] for m in messages if m.is_("Authorize")]
        assert authorized == [RESERVER]  # step 5: the reserved idTag's, no other
        assert [
            s for c, s in (m.status() for m in messages if m.is_("StatusNotification")) if c == 1
        ] == [
            "Reserved",
            "Preparing",
            "Charging",
        ]
        # The transaction used up the reservation.
        assert r.station.reservations is not None and r.station.reservations.book.all() == []
        assert strict_failures(r.peer) == []


async def test_tc_046_2_cs_reserved_connector_remote_start(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        assert await reserve(r, 1, 12) == "Accepted"
        await r.wait_status(1, "Reserved")
        # A remote start for another idTag on the reserved connector is refused at once.
        answer = await r.peer.call("RemoteStartTransaction", {"idTag": "OTHER", "connectorId": 1})
        assert answer == {"status": "Rejected"}
        answer = await r.peer.call("RemoteStartTransaction", {"idTag": RESERVER, "connectorId": 1})
        assert answer == {"status": "Accepted"}
        r.charger.plug(1)
        start = await started(r)  # step 5
        assert (start["idTag"], start["reservationId"]) == (RESERVER, 12)
        assert strict_failures(r.peer) == []


def expire_now(r: Rig, reservation_id: int) -> None:
    """The clock reaches the reservation's expiryDate: its apscheduler job runs now (the job,
    not a wait on the wall clock, is what ends it)."""
    r.station.context.scheduler.modify_job(
        f"reservation-{reservation_id}", next_run_time=datetime.now(UTC)
    )


async def test_tc_047_cs_reservation_expires(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        await unavailable(r, 2)
        assert await reserve(r, 1, 13) == "Accepted"  # step 2
        await r.wait_status(1, "Reserved")  # step 3
        expire_now(r, 13)
        # Step 5: at expiryDate the connector is Available again.
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-2:] == ["Reserved", "Available"])
        # Step 7: another idTag charges there; its StartTransaction names no reservation.
        await r.charging(1, "SOMEONE")
        assert "reservationId" not in (await started(r))
        assert strict_failures(r.peer) == []


async def test_an_idtag_waiting_for_the_cable_when_its_reservation_ends_names_none(
    peer_kind: Stack,
) -> None:
    """The reservation expired between the card and the cable: StartTransaction carries no
    reservationId (§5.13: it tells the CSMS which reservation the transaction ended)."""
    async with rig(peer_kind) as r:
        assert await reserve(r, 1, 14) == "Accepted"
        await r.wait_status(1, "Reserved")
        r.charger.present(RESERVER, 1)
        await r.wait_status(1, "Preparing")
        expire_now(r, 14)
        reservations = r.station.reservations
        assert reservations is not None
        async with asyncio.timeout(30):
            await r.station.wait_until(lambda: reservations.book.all() == [])
        r.charger.plug(1)
        start = await started(r)
        assert start["idTag"] == RESERVER and "reservationId" not in start


async def test_tc_048_1_cs_faulted_connector(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        r.charger.raise_fault(1, "GroundFailure")
        await r.wait_status(1, "Faulted")
        assert await reserve(r, 1) == "Faulted"
        r.charger.clear_fault(1)
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Available")
        await r.charging(1)  # "continues normal operation"


async def test_tc_048_2_cs_occupied_connector(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        await r.charging(1)
        assert await reserve(r, 1) == "Occupied"
        # Reserved for someone already counts as occupied too (§5.13).
        assert await reserve(r, 2, 2) == "Accepted"
        assert await reserve(r, 2, 3, id_tag="OTHER") == "Occupied"
        assert strict_failures(r.peer) == []


async def test_tc_048_3_cs_unavailable_connector(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        await unavailable(r, 1)
        assert await reserve(r, 1) == "Unavailable"
        assert strict_failures(r.peer) == []


# -- 2.20.2 Reservation of a Charge Point --


async def test_tc_049_cs_reserve_the_charge_point(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        await unavailable(r, 2)
        assert await reserve(r, 0, 21) == "Accepted"  # step 2
        # Step 3: one connector must stay free for the idTag, and connector 1 is the only one.
        await r.wait_status(1, "Reserved")
        await refused(r, "SOMEONE", 1)
        r.charger.plug(1)
        r.charger.present(RESERVER, 1)
        start = await started(r)  # step 5
        assert (start["idTag"], start["reservationId"]) == (RESERVER, 21)
        assert strict_failures(r.peer) == []


async def test_a_charge_point_reservation_keeps_one_connector_free(peer_kind: Stack) -> None:
    """With two free connectors nothing shows Reserved, but another idTag may take only one."""
    async with rig(peer_kind) as r:
        assert await reserve(r, 0, 22) == "Accepted"
        await r.charging(1, "SOMEONE")
        await r.wait_status(2, "Reserved")  # now the last free one
        r.charger.plug(2)
        await refused(r, "ANOTHER", 2)
        r.charger.present(RESERVER, 2)
        start = await started(r, 2)
        assert (start["connectorId"], start["reservationId"]) == (2, 22)
        assert "Reserved" not in r.status_sequence(1)


async def test_tc_050_1_cs_faulted_charge_point(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        r.charger.raise_fault(0, "OtherError", "whole charge point")
        await r.wait_status(0, "Faulted")
        assert await reserve(r, 0) == "Faulted"


async def test_tc_050_2_cs_occupied_charge_point(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        await r.charging(1, "A")
        await r.charging(2, "B")
        assert await reserve(r, 0) == "Occupied"


async def test_tc_050_3_cs_unavailable_charge_point(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        await unavailable(r, 0)
        assert await reserve(r, 0) == "Unavailable"


async def test_connector_zero_reservations_need_the_key(peer_kind: Stack) -> None:
    async with rig(peer_kind, keys={"ReserveConnectorZeroSupported": False}) as r:
        answer = await r.peer.call("GetConfiguration", {"key": ["ReserveConnectorZeroSupported"]})
        assert answer["configurationKey"] == [
            {"key": "ReserveConnectorZeroSupported", "readonly": True, "value": "false"}
        ]
        assert await reserve(r, 0) == "Rejected"


# -- 2.20.3 Cancel Reservation --


async def test_tc_051_cs_cancel_reservation(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        assert await reserve(r, 1, 31) == "Accepted"  # reusable state Reserved
        await r.wait_status(1, "Reserved")
        answer = await r.peer.call("CancelReservation", {"reservationId": 31})
        assert answer == {"status": "Accepted"}  # step 2
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Available")  # step 3
        await r.charging(1, "TAG-2")  # step 5
        assert "reservationId" not in (await started(r))
        assert strict_failures(r.peer) == []


async def test_tc_052_cs_cancel_reservation_rejected(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        assert await reserve(r, 1, 32) == "Accepted"
        await r.wait_status(1, "Reserved")
        answer = await r.peer.call("CancelReservation", {"reservationId": 33})
        assert answer == {"status": "Rejected"}
        assert r.station.reservations is not None
        assert [x.reservation_id for x in r.station.reservations.book.all()] == [32]
        assert r.status_sequence(1)[-1] == "Reserved"


# -- 2.20.4 Use a reserved Connector with parentIdTag --


async def test_tc_053_cs_reserved_connector_used_with_the_parent(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        await r.peer.configure(
            id_tags={
                "FAMILY-2": {"status": "Accepted", "parentIdTag": "FAMILY"},
                "STRANGER": {"status": "Accepted", "parentIdTag": "OTHERS"},
            }
        )
        await unavailable(r, 2)
        assert await reserve(r, 1, 41, id_tag="FAMILY-1", parentIdTag="FAMILY") == "Accepted"
        await r.wait_status(1, "Reserved")
        # Another parent: Authorize tells, and the connector stays reserved.
        with LogWatch("idTag STRANGER (parent OTHERS) may not charge on connector 1") as said:
            r.charger.present("STRANGER", 1)
            async with asyncio.timeout(30):
                await said.seen.wait()
        r.charger.present("FAMILY-2", 1)  # step 5: Authorized with idTag 2
        await r.wait_status(1, "Preparing")
        r.charger.plug(1)  # step 6
        start = await started(r)  # step 7
        assert (start["idTag"], start["reservationId"]) == ("FAMILY-2", 41)
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Charging")  # step 9
        assert strict_failures(r.peer) == []


# -- beyond the cases --


async def test_a_reservation_with_the_same_id_is_replaced(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        assert await reserve(r, 1, 51) == "Accepted"
        await r.wait_status(1, "Reserved")
        assert await reserve(r, 2, 51, id_tag="MOVED") == "Accepted"
        await r.wait_status(2, "Reserved")
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Available")
        assert r.station.reservations is not None
        [moved] = r.station.reservations.book.all()
        assert (moved.connector, moved.id_tag) == (2, "MOVED")
        shown = describe(r.station)["connectors"]  # chargepoint ctl status
        assert shown[0]["reservation"] is None
        assert shown[1]["reservation"]["reservation_id"] == 51


async def test_a_reservation_survives_a_restart_unless_it_expired_meanwhile(
    peer_kind: Stack,
) -> None:
    async with rig(peer_kind) as r:
        assert await reserve(r, 1, 61) == "Accepted"
        assert await reserve(r, 2, 62, id_tag="SHORT") == "Accepted"
        await r.wait_status(2, "Reserved")
        boots = len(r.calls("BootNotification"))
        await r.stop()
        # The charge point stays off past 62's expiryDate: on disk, its expiry is behind us.
        db = sqlite3.connect(r.config.storage_directory / "state.db")
        with db:
            past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
            db.execute("UPDATE reservations SET expiry = ? WHERE id = 62", (past,))
        db.close()
        await r.restart()
        await r.booted(boots + 1)
        after_boot = r.calls("StatusNotification")
        reported = {p["connectorId"]: p["status"] for p in after_boot}
        assert reported[1] == "Reserved" and reported[2] == "Available"
        assert r.station.reservations is not None
        assert [x.reservation_id for x in r.station.reservations.book.all()] == [61]
