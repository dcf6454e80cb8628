"""OCTT for OCPP 1.6 (FINAL 2024-04) section 2.22, Smart Charging: TC_056, TC_057, TC_058_1,
TC_058_2, TC_082, TC_066, TC_067, TC_072, TC_059 and TC_060, through the daemon, the simulated
Quectel module and both CSMSs (ocpp-rpc in strict mode validates every message against the
official schemas). The cases' configured values: connectorId 1, chargingRateUnit A,
numberPhases 3, duration 300, stackLevel 0.

The composite schedules of TC_066/067/072 are checked period by period. "x", the seconds
between the profiles' start and the answer's scheduleStart, is read from the answer, so the
check holds however slow the machine is. After the cases: the limit reaching the hardware
(the simulated charger's current follows it, at the period boundary), and the rest of §3.13.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chargepoint.app.describe import describe
from tests.harness import STACKS, Rig, Stack, rig, strict_failures
from tests.peers import CsmsCallError

CONNECTOR = 1


@pytest.fixture(params=STACKS, ids=str)
def peer_kind(request: pytest.FixtureRequest) -> Stack:
    """Both CSMS peers and both module families, paired (tests/harness.py)."""
    stack: Stack = request.param
    return stack


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def profile(
    profile_id: int,
    purpose: str,
    periods: list[tuple[int, float]],
    *,
    stack_level: int = 0,
    duration: int | None = 300,
    start: datetime | None = None,
    valid_to: datetime | None = None,
    valid_from: datetime | None = None,
    transaction_id: int | None = None,
    unit: str = "A",
) -> dict[str, Any]:
    schedule: dict[str, Any] = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [
            {"startPeriod": s, "limit": limit, "numberPhases": 3} for s, limit in periods
        ],
    }
    if duration is not None:
        schedule["duration"] = duration
    if start is not None:
        schedule["startSchedule"] = iso(start)
    body: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": schedule,
    }
    if valid_from is not None:
        body["validFrom"] = iso(valid_from)
    if valid_to is not None:
        body["validTo"] = iso(valid_to)
    if transaction_id is not None:
        body["transactionId"] = transaction_id
    return body


async def set_profile(r: Rig, connector: int, body: dict[str, Any]) -> str:
    answer = await r.peer.call(
        "SetChargingProfile", {"connectorId": connector, "csChargingProfiles": body}
    )
    return str(answer["status"])


async def composite(r: Rig, duration: int, connector: int = CONNECTOR) -> dict[str, Any]:
    answer: dict[str, Any] = await r.peer.call(
        "GetCompositeSchedule",
        {"connectorId": connector, "duration": duration, "chargingRateUnit": "A"},
    )
    assert answer["status"] == "Accepted"
    assert answer["connectorId"] == connector
    schedule = answer["chargingSchedule"]
    assert (schedule["duration"], schedule["chargingRateUnit"]) == (duration, "A")
    return answer


def periods(answer: dict[str, Any]) -> list[tuple[int, float]]:
    return [
        (p["startPeriod"], p["limit"]) for p in answer["chargingSchedule"]["chargingSchedulePeriod"]
    ]


def x_of(answer: dict[str, Any], start: datetime) -> int:
    """The case's x: whole seconds from the profiles' start to the answer's scheduleStart."""
    schedule_start = datetime.fromisoformat(answer["scheduleStart"].replace("Z", "+00:00"))
    return int((schedule_start - start).total_seconds())


def charging_start(r: Rig) -> datetime:
    tx = r.station.transactions.active(CONNECTOR)
    assert tx is not None
    return datetime.fromisoformat(tx.start_time.replace("Z", "+00:00")).replace(microsecond=0)


def six_amps_for_300_s(answer: dict[str, Any], origin: datetime | None) -> None:
    """The cases' one-period profile (6 A, duration 300, no startSchedule). Without a
    startSchedule it counts from the start of charging (§7.13), so with a transaction running
    for x seconds the last x seconds of the 300 are the charger's own limit again."""
    x = 0 if origin is None else x_of(answer, origin)
    assert 0 <= x < 60
    assert periods(answer) == ([(0, 6)] if x == 0 else [(0, 6), (300 - x, 16)])


def near_now(answer: dict[str, Any]) -> None:
    """ "Between startSchedule and the current time should be equal or fewer seconds than
    <Configured Max Time Deviation>": the answer is about now, not another instant."""
    start = datetime.fromisoformat(answer["scheduleStart"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - start).total_seconds()) < 60


# -- 2.22.1 Central Smart Charging --


async def test_tc_056_cs_tx_default_profile(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        body = profile(1, "TxDefaultProfile", [(0, 6)])
        assert await set_profile(r, CONNECTOR, body) == "Accepted"  # step 2
        answer = await composite(r, 300)  # step 4
        near_now(answer)
        six_amps_for_300_s(answer, None)
        assert strict_failures(r.peer) == []


async def test_tc_057_cs_tx_profile(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        transaction_id = await r.charging(CONNECTOR)  # reusable state Charging
        body = profile(2, "TxProfile", [(0, 6)], transaction_id=transaction_id)
        assert await set_profile(r, CONNECTOR, body) == "Accepted"
        answer = await composite(r, 300)
        near_now(answer)
        six_amps_for_300_s(answer, charging_start(r))
        assert strict_failures(r.peer) == []


async def test_tc_058_1_cs_tx_profile_without_a_transaction(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        body = profile(3, "TxProfile", [(0, 6)], transaction_id=1234)
        assert await set_profile(r, CONNECTOR, body) == "Rejected"
        assert strict_failures(r.peer) == []


async def test_tc_058_2_cs_tx_profile_with_another_transaction_id(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        transaction_id = await r.charging(CONNECTOR)
        body = profile(4, "TxProfile", [(0, 6)], transaction_id=transaction_id + 1)
        assert await set_profile(r, CONNECTOR, body) == "Rejected"
        assert strict_failures(r.peer) == []


async def test_tc_082_cs_tx_default_profile_with_a_transaction(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        await r.charging(CONNECTOR)
        assert await set_profile(r, CONNECTOR, profile(5, "TxDefaultProfile", [(0, 6)])) == (
            "Accepted"
        )
        answer = await composite(r, 300)
        near_now(answer)
        six_amps_for_300_s(answer, charging_start(r))
        # The running transaction follows it: the charger offers 6 A.
        await r.station.wait_until(lambda: r.charger.connector(CONNECTOR).limit_a == 6)
        assert strict_failures(r.peer) == []


# -- 2.22.2 Get Composite Schedule --


async def test_tc_066_cs_get_composite_schedule(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        await r.charging(CONNECTOR)  # before the memory states (the case's note)
        start = datetime.now(UTC).replace(microsecond=0)
        valid_to = start + timedelta(seconds=401)
        assert (
            await set_profile(
                r, 0, profile(1, "ChargePointMaxProfile", [(0, 10)], duration=86400, start=start)
            )
            == "Accepted"
        )
        tx_default = profile(
            2,
            "TxDefaultProfile",
            [(0, 6), (60, 10), (120, 8), (180, 15), (260, 8)],
            duration=300,
            start=start,
            valid_from=start,
            valid_to=valid_to,
        )
        assert await set_profile(r, CONNECTOR, tx_default) == "Accepted"
        tx_profile = profile(
            3,
            "TxProfile",
            [(0, 8), (50, 11), (140, 16), (200, 6), (240, 12)],
            duration=260,
            start=start,
            valid_from=start,
            valid_to=valid_to,
        )
        assert await set_profile(r, CONNECTOR, tx_profile) == "Accepted"
        answer = await composite(r, 400)  # step 2
        x = x_of(answer, start)
        assert 0 <= x < 50
        expected = [(0, 8), (50 - x, 10), (200 - x, 6), (240 - x, 10)]
        assert periods(answer) == expected
        assert strict_failures(r.peer) == []


# -- 2.22.3 Clear Charging Profile --


async def test_tc_067_cs_clear_charging_profile(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        start = datetime.now(UTC).replace(microsecond=0)
        valid_to = start + timedelta(seconds=401)
        first = profile(
            1,
            "TxDefaultProfile",
            [(0, 6), (60, 8), (200, 10)],
            stack_level=1,
            duration=400,
            start=start,
        )
        second = profile(
            2,
            "TxDefaultProfile",
            [(0, 7), (100, 9)],
            duration=400,
            start=start,
            valid_from=start,
            valid_to=valid_to,
        )
        third = profile(
            3,
            "ChargePointMaxProfile",
            [(0, 11), (200, 12)],
            duration=86400,
            start=start,
            valid_from=start,
            valid_to=valid_to,
        )
        assert await set_profile(r, CONNECTOR, first) == "Accepted"
        assert await set_profile(r, CONNECTOR, second) == "Accepted"
        assert await set_profile(r, 0, third) == "Accepted"
        # Steps 1-4: the first profile by id, all other fields omitted.
        assert await r.peer.call("ClearChargingProfile", {"id": 1}) == {"status": "Accepted"}
        answer = await composite(r, 350)
        x = x_of(answer, start)
        assert periods(answer) == [(0, 7), (100 - x, 9)]
        # Steps 5-8: purpose and stack level of the second.
        answer = await r.peer.call(
            "ClearChargingProfile",
            {"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 0},
        )
        assert answer == {"status": "Accepted"}
        answer = await composite(r, 350)
        x = x_of(answer, start)
        assert periods(answer) == [(0, 11), (200 - x, 12)]
        # Steps 9-12: everything; the charging station's local limit remains.
        assert await r.peer.call("ClearChargingProfile", {}) == {"status": "Accepted"}
        answer = await composite(r, 350)
        assert periods(answer) == [(0, r.charger.rating.max_current_a)]
        # Nothing left to clear: Unknown (§5.5).
        assert await r.peer.call("ClearChargingProfile", {"id": 2}) == {"status": "Unknown"}
        assert strict_failures(r.peer) == []


# -- 2.22.4 Stacking Charging Profiles --


async def test_tc_072_cs_stacking_charging_profiles(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        start = datetime.now(UTC).replace(microsecond=0)
        valid_to = start + timedelta(seconds=401)
        common: dict[str, Any] = {"start": start, "valid_from": start, "valid_to": valid_to}
        lower = profile(
            1, "TxDefaultProfile", [(0, 6), (100, 8), (200, 10)], duration=400, **common
        )
        upper = profile(
            2, "TxDefaultProfile", [(0, 7), (100, 9)], stack_level=1, duration=150, **common
        )
        assert await set_profile(r, CONNECTOR, lower) == "Accepted"
        assert await set_profile(r, CONNECTOR, upper) == "Accepted"
        answer = await composite(r, 350)
        x = x_of(answer, start)
        assert 0 <= x < 100
        assert periods(answer) == [(0, 7), (100 - x, 9), (150 - x, 8), (200 - x, 10)]
        assert strict_failures(r.peer) == []


# -- 2.22.5 Remote Start Transaction with Charging Profile --


async def test_tc_059_cs_remote_start_with_a_charging_profile(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        body = profile(7, "TxProfile", [(0, 6)])
        answer = await r.peer.call(
            "RemoteStartTransaction",
            {"idTag": "REMOTE", "connectorId": CONNECTOR, "chargingProfile": body},
        )
        assert answer == {"status": "Accepted"}
        r.charger.plug(CONNECTOR)
        await r.wait_calls("StartTransaction")
        await r.transaction_id(CONNECTOR)
        answer = await composite(r, 300)  # steps 2-3
        near_now(answer)
        six_amps_for_300_s(answer, charging_start(r))
        # "The profile sent by the Central System is followed by the Charge Point."
        await r.station.wait_until(lambda: r.charger.connector(CONNECTOR).limit_a == 6)
        assert r.charger.connector(CONNECTOR).read_meter().current_a == 6
        assert strict_failures(r.peer) == []


async def test_tc_060_cs_remote_start_with_another_purpose_is_rejected(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        body = profile(8, "TxDefaultProfile", [(0, 6)])
        answer = await r.peer.call(
            "RemoteStartTransaction",
            {"idTag": "REMOTE", "connectorId": CONNECTOR, "chargingProfile": body},
        )
        assert answer == {"status": "Rejected"}
        assert r.station.transactions.pending_id_tag(CONNECTOR) is None
        assert strict_failures(r.peer) == []


# -- beyond the cases: the hardware, and the rest of §3.13 --


async def test_the_limit_follows_each_period_boundary(peer_kind: Stack) -> None:
    """The charger's current changes at the instants the schedule names (an apscheduler job,
    no polling) and not before, and the meter's power follows it."""
    async with rig(peer_kind) as r:
        transaction_id = await r.charging(CONNECTOR)
        connector = r.charger.connector(CONNECTOR)
        assert connector.limit_a is None  # no profile: the charger's maximum
        handed: list[tuple[float | None, datetime]] = []
        hand = connector.set_current_limit

        def recorded(amps: float | None) -> None:
            handed.append((amps, datetime.now(UTC)))
            hand(amps)

        connector.set_current_limit = recorded  # type: ignore[method-assign]
        # Starts 5 s from now: none until then, 10 A for 3 s, then 6 A.
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
        body = profile(
            9,
            "TxProfile",
            [(0, 10), (3, 6)],
            duration=None,
            start=start,
            transaction_id=transaction_id,
        )
        assert await set_profile(r, CONNECTOR, body) == "Accepted"
        async with asyncio.timeout(60):
            await r.station.wait_until(lambda: connector.limit_a == 6)
        amps = [a for a, _ in handed]
        assert amps[-1] == 6 and set(amps) <= {10, 6}
        for limit, when in handed:  # never early
            assert when >= start + timedelta(seconds=0 if limit == 10 else 3)
        reading = connector.read_meter()
        assert reading.current_a == 6 and reading.power_w == 6 * 230 * 3
        shown = describe(r.station)["connectors"][CONNECTOR - 1]  # chargepoint ctl status
        assert (shown["current_limit_a"], shown["power_w"]) == (6, 6 * 230 * 3)
        # The transaction ends: its TxProfile goes, and the limit with it.
        await r.peer.call("RemoteStopTransaction", {"transactionId": transaction_id})
        await r.wait_calls("StopTransaction")
        async with asyncio.timeout(30):
            await r.station.wait_until(lambda: connector.limit_a is None)
        assert r.station.smart_charging is not None
        assert r.station.smart_charging.installed() == []


async def test_a_remote_start_profile_goes_with_its_authorization(peer_kind: Stack) -> None:
    """A remote start that never becomes a transaction leaves its TxProfile to no one (errata
    §3.42: it is the newly started transaction's)."""
    async with rig(peer_kind) as r:
        await r.peer.configure(id_tags={"NOBODY": {"status": "Invalid"}})
        answer = await r.peer.call(
            "RemoteStartTransaction",
            {
                "idTag": "NOBODY",
                "connectorId": CONNECTOR,
                "chargingProfile": profile(14, "TxProfile", [(0, 6)]),
            },
        )
        assert answer == {"status": "Accepted"}
        await r.wait_calls("Authorize")
        async with asyncio.timeout(30):
            await r.station.wait_until(
                lambda: r.station.transactions.pending_id_tag(CONNECTOR) is None
            )
        await r.charging(CONNECTOR, "SOMEONE")
        assert r.charger.connector(CONNECTOR).limit_a is None
        assert r.station.smart_charging is not None
        assert r.station.smart_charging.installed() == []


async def test_a_tx_profile_does_not_outlive_a_power_cut(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        transaction_id = await r.charging(CONNECTOR)
        body = profile(15, "TxProfile", [(0, 6)], transaction_id=transaction_id)
        assert await set_profile(r, CONNECTOR, body) == "Accepted"
        await r.restart()  # the transaction is stopped (PowerLoss) at boot
        await r.booted(2)
        assert r.station.smart_charging is not None
        assert r.station.smart_charging.installed() == []
        assert r.charger.connector(CONNECTOR).limit_a is None


async def test_a_charge_point_maximum_is_shared_by_the_charging_connectors(
    peer_kind: Stack,
) -> None:
    async with rig(peer_kind) as r:
        await r.charging(1, "A")
        await r.charging(2, "B")
        body = profile(
            10,
            "ChargePointMaxProfile",
            [(0, 20)],
            duration=None,
            start=datetime.now(UTC) - timedelta(seconds=5),
        )
        assert await set_profile(r, 0, body) == "Accepted"
        for number in (1, 2):
            connector = r.charger.connector(number)
            await r.station.wait_until(lambda c=connector: c.limit_a == 10)


async def test_power_limits_are_converted_with_the_phases_and_profiles_survive_a_restart(
    peer_kind: Stack,
) -> None:
    async with rig(peer_kind) as r:
        body = profile(11, "TxDefaultProfile", [(0, 6900)], unit="W", duration=None)
        assert await set_profile(r, 0, body) == "Accepted"  # connector 0: every connector
        answer = await composite(r, 60)
        assert periods(answer) == [(0, 10)]  # 6900 W / (230 V x 3 phases)
        await r.restart()
        await r.booted(2)
        answer = await composite(r, 60, connector=2)
        assert periods(answer) == [(0, 10)]
        # Connector 0, no ChargePointMaxProfile: what the charge point may draw, both
        # connectors at their maximum (errata v4.0 §3.30).
        answer = await composite(r, 60, connector=0)
        assert periods(answer) == [(0, 2 * r.charger.rating.max_current_a)]


async def test_a_connector_that_does_not_exist_is_a_property_constraint_violation(
    peer_kind: Stack,
) -> None:
    """Errata v4.0 §3.39: a CALLERROR PropertyConstraintViolation; GetCompositeSchedule for it
    is Rejected."""
    async with rig(peer_kind) as r:
        with pytest.raises(CsmsCallError) as refused:
            await set_profile(r, 7, profile(12, "TxDefaultProfile", [(0, 6)]))
        assert refused.value.code == "PropertyConstraintViolation"
        answer = await r.peer.call("GetCompositeSchedule", {"connectorId": 7, "duration": 60})
        assert answer == {"status": "Rejected"}
        # The limits in the keys are kept: a stack level above ChargeProfileMaxStackLevel.
        body = profile(13, "TxDefaultProfile", [(0, 6)], stack_level=11)
        assert await set_profile(r, CONNECTOR, body) == "Rejected"
