"""OCTT for OCPP 1.6 (FINAL 2024-04) section 2.17, Local Authorization List: TC_042_1,
TC_042_2, TC_043, TC_043_1, TC_043_2, TC_043_3 and TC_008 (2.17.3), through the daemon, the
simulated Quectel module and both CSMSs (ocpp-rpc in strict mode validates every message
against the official schemas). Each test follows the case's steps and asserts what its tool
validations name; the rest of the file holds what the spec asks beyond the cases (offline
authorization from the list, LocalListConflict, the list across a restart, a list of 10,000).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.harness import STACKS, LogWatch, Rig, Stack, rig, strict_failures
from tests.peers import CsmsCallError
from tests.test_octt_core import wire

PROFILES_WITHOUT_LIST = ["Core", "FirmwareManagement", "RemoteTrigger"]


@pytest.fixture(params=STACKS, ids=str)
def peer_kind(request: pytest.FixtureRequest) -> Stack:
    """Both CSMS peers and both module families, paired (tests/harness.py)."""
    stack: Stack = request.param
    return stack


def entry(id_tag: str, status: str = "Accepted", **more: str) -> dict[str, Any]:
    return {"idTag": id_tag, "idTagInfo": {"status": status, **more}}


async def send_list(
    r: Rig, version: int, update_type: str, entries: list[dict[str, Any]] | None = None
) -> str:
    request: dict[str, Any] = {"listVersion": version, "updateType": update_type}
    if entries is not None:
        request["localAuthorizationList"] = entries
    answer = await r.peer.call("SendLocalList", request)
    return str(answer["status"])


async def list_version(r: Rig) -> int:
    return int((await r.peer.call("GetLocalListVersion", {}))["listVersion"])


async def refused_offline(r: Rig, id_tag: str, connector: int = 1) -> None:
    """``id_tag`` presented while offline is refused (and nothing starts)."""
    with LogWatch(f"idTag {id_tag} not accepted") as refused:
        r.charger.present(id_tag, connector)
        async with asyncio.timeout(30):
            await refused.seen.wait()
    assert r.station.transactions.active(connector) is None


# -- 2.17.1 Get Local List Version --


async def test_tc_042_1_cs_list_disabled_answers_minus_1(peer_kind: Stack) -> None:
    """TC_042_1, "LocalAuthListEnabled is false": listVersion -1 (§5.10). A SendLocalList
    meanwhile is NotSupported, and the list kept from before is not consulted."""
    async with rig(peer_kind) as r:
        assert await send_list(r, 3, "Full", [entry("LISTED")]) == "Accepted"
        answer = await r.peer.call(
            "ChangeConfiguration", {"key": "LocalAuthListEnabled", "value": "false"}
        )
        assert answer == {"status": "Accepted"}
        assert await list_version(r) == -1  # step 2
        assert await send_list(r, 4, "Full", [entry("OTHER")]) == "NotSupported"
        r.offline()
        await r.wait_offline()
        r.charger.plug(1)
        await refused_offline(r, "LISTED")
        # Enabled again, the list of version 3 is back, untouched.
        r.online()
        await r.wait_online()
        answer = await r.peer.call(
            "ChangeConfiguration", {"key": "LocalAuthListEnabled", "value": "true"}
        )
        assert answer == {"status": "Accepted"}
        assert await list_version(r) == 3
        assert strict_failures(r.peer) == []


async def test_tc_042_1_and_tc_043_1_cs_profile_not_offered(peer_kind: Stack) -> None:
    """A deployment without the profile: both actions get the CallError NotSupported (the
    cases accept it), and a list sent cannot authorize anyone."""
    async with rig(peer_kind, charge_point={"feature_profiles": PROFILES_WITHOUT_LIST}) as r:
        answer = await r.peer.call("GetConfiguration", {"key": ["SupportedFeatureProfiles"]})
        [key] = answer["configurationKey"]
        assert "LocalAuthListManagement" not in key["value"].split(",")
        for action, payload in (
            ("GetLocalListVersion", {}),
            (
                "SendLocalList",
                {
                    "listVersion": 1,
                    "updateType": "Full",
                    "localAuthorizationList": [entry("LISTED")],
                },
            ),
        ):
            with pytest.raises(CsmsCallError) as refused:
                await r.peer.call(action, payload)
            assert refused.value.code == "NotSupported", action
        # The profile's keys are not there either (§9.2 keys belong to the profile).
        answer = await r.peer.call("GetConfiguration", {"key": ["LocalAuthListEnabled"]})
        assert answer.get("unknownKey") == ["LocalAuthListEnabled"]
        r.offline()
        await r.wait_offline()
        r.charger.plug(1)
        await refused_offline(r, "LISTED")


async def test_tc_042_2_cs_get_local_list_version_empty(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        # Step 1: listVersion 1, localAuthorizationList omitted, updateType Full.
        assert await send_list(r, 1, "Full") == "Accepted"  # step 2
        assert await list_version(r) == 0  # step 4: the list is empty
        assert strict_failures(r.peer) == []


# -- 2.17.2 Send Local Authorization List --


async def test_tc_043_cs_send_local_list_full_then_differential(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        full = [entry("DRIVER-1"), entry("DRIVER-2"), entry("GONE")]
        assert await send_list(r, 1, "Full", full) == "Accepted"  # steps 1-2
        changes = [entry("DRIVER-3"), {"idTag": "GONE"}, entry("DRIVER-2", "Blocked")]
        assert await send_list(r, 2, "Differential", changes) == "Accepted"  # steps 3-4
        assert await list_version(r) == 2
        # Expected behaviour: drivers on the list are authorized by it — offline too.
        r.offline()
        await r.wait_offline()
        r.charger.plug(1)
        r.charger.present("DRIVER-3", 1)
        async with asyncio.timeout(30):
            await r.station.wait_until(lambda: r.station.transactions.active(1) is not None)
        r.charger.plug(2)
        await refused_offline(r, "DRIVER-2", 2)  # Blocked on the list
        await refused_offline(r, "GONE", 2)  # deleted: unknown, and unknown is not allowed
        r.online()
        await r.wait_calls("StartTransaction")
        [start] = r.calls("StartTransaction")
        assert start["idTag"] == "DRIVER-3"
        assert r.calls("Authorize") == []  # the list decided: nothing was asked
        assert strict_failures(r.peer) == []


async def test_tc_043_2_cs_send_local_list_version_mismatch(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        assert await send_list(r, 2, "Full", [entry("A")]) == "Accepted"  # steps 1-2
        assert await list_version(r) == 2  # step 4
        assert await send_list(r, 5, "Differential", [entry("B")]) == "Accepted"  # step 6
        assert await list_version(r) == 5  # step 8
        assert await send_list(r, 4, "Differential", [entry("C")]) == "VersionMismatch"
        assert await list_version(r) == 5  # step 12
        assert strict_failures(r.peer) == []


async def test_tc_043_3_cs_send_local_list_failed(peer_kind: Stack) -> None:
    """ "A state in which it will fail to set a Local List": this charger's list holds two
    idTags (LocalAuthListMaxLength 2 from the deployment's file), the CSMS sends three."""
    async with rig(peer_kind, keys={"LocalAuthListMaxLength": 2}) as r:
        assert await send_list(r, 1, "Full", [entry("A")]) == "Accepted"
        with LogWatch("local list: Full update to version 2 refused (Failed)") as logged:
            status = await send_list(r, 2, "Full", [entry("A"), entry("B"), entry("C")])
        assert status == "Failed"  # step 2
        assert logged.seen.is_set()
        assert await list_version(r) == 1  # the list as it was
        assert strict_failures(r.peer) == []


# -- 2.17.3 Regular Start Charging Session - Id in Local Authorization List --


async def test_tc_008_cs_remote_start_with_an_id_on_the_local_list(peer_kind: Stack) -> None:
    keys = {
        "LocalPreAuthorize": True,
        "AuthorizationCacheEnabled": False,
        "LocalAuthListEnabled": True,
        "AuthorizeRemoteTxRequests": True,
    }
    async with rig(peer_kind, keys=keys) as r:
        mark = len(wire(r))
        assert await list_version(r) == 0  # steps 1-2
        assert await send_list(r, 1, "Full", [entry("VALID-TAG")]) == "Accepted"  # steps 3-4
        r.charger.plug(1)
        await r.wait_status(1, "Preparing")  # step 5
        answer = await r.peer.call(
            "RemoteStartTransaction", {"idTag": "VALID-TAG", "connectorId": 1}
        )
        assert answer == {"status": "Accepted"}  # step 8
        await r.wait_calls("StartTransaction")  # step 9
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Charging")  # step 11
        sent = [
            m.action if m.action != "StatusNotification" else m.status()
            for m in wire(r)[mark:]
            if m.from_cp and m.kind == "req"
        ]
        # Pre-authorized from the list: no Authorize.req between the remote start and the
        # transaction.
        assert sent == [(1, "Preparing"), "StartTransaction", (1, "Charging")] or sent == [
            (1, "Preparing"),
            (1, "Charging"),
            "StartTransaction",
        ]
        start = r.calls("StartTransaction")[0]
        assert (start["connectorId"], start["idTag"]) == (1, "VALID-TAG")
        assert strict_failures(r.peer) == []


# -- beyond the cases: what §3.5 asks --


async def test_a_listed_id_the_csms_refuses_is_a_local_list_conflict(peer_kind: Stack) -> None:
    """§3.5.2: the CSMS's validity differs from the list's: StatusNotification, connectorId 0,
    errorCode LocalListConflict; and the CSMS's answer decides this session."""
    async with rig(peer_kind) as r:
        assert await send_list(r, 1, "Full", [entry("STALE")]) == "Accepted"
        await r.peer.configure(id_tags={"STALE": {"status": "Blocked"}})
        mark = len(wire(r))
        r.charger.plug(1)
        with LogWatch("idTag STALE not accepted") as refused:
            r.charger.present("STALE", 1)
            async with asyncio.timeout(30):
                await refused.seen.wait()

        def conflict(_: object) -> Any:
            return [
                m
                for m in wire(r)[mark:]
                if m.is_("StatusNotification", connectorId=0, errorCode="LocalListConflict")
            ]

        [notice] = await r.peer.wait_for(conflict)
        assert notice.payload["status"] == "Available"
        assert [m.payload for m in wire(r)[mark:] if m.is_("Authorize")] == [{"idTag": "STALE"}]
        assert r.station.transactions.active(1) is None
        # The list is the CSMS's to change: still there, still Accepted.
        assert await list_version(r) == 1
        assert strict_failures(r.peer) == []


async def test_the_list_survives_a_restart(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        assert await send_list(r, 6, "Full", [entry("KEPT")]) == "Accepted"
        await r.restart()
        await r.booted(2)
        assert await list_version(r) == 6
        r.offline()
        await r.wait_offline()
        r.charger.plug(1)
        r.charger.present("KEPT", 1)
        async with asyncio.timeout(30):
            await r.station.wait_until(lambda: r.station.transactions.active(1) is not None)


async def test_a_full_list_of_10000_entries_crosses_the_module_and_is_applied(
    peer_kind: Stack,
) -> None:
    """The longest list this charger takes (SendLocalListMaxLength 10,000), each entry at its
    longest, in one WebSocket message through the simulated module."""
    entries = [
        entry(
            f"DRIVER-{n:013}",  # 20 characters, the most a CiString20 holds
            "ConcurrentTx" if n % 2 else "Accepted",
            expiryDate="2030-12-31T23:59:59.000+01:00",
            parentIdTag=f"FLEET-{n % 97:014}",
        )
        for n in range(10_000)
    ]
    async with rig(peer_kind) as r:
        with LogWatch("local list: Full update of 10000 entries applied") as applied:
            assert await send_list(r, 42, "Full", entries) == "Accepted"
        assert applied.seen.is_set()
        assert await list_version(r) == 42
        local = r.station.authorization.local_list
        assert local is not None and len(local) == 10_000
        assert strict_failures(r.peer) == []
