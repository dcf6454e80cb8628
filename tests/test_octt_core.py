"""The OCA compliance cases (OCTT for OCPP 1.6, FINAL 2024-04, section 2) that apply to this
charge point: Core profile 2.1-2.16, Remote Trigger 2.21, DataTransfer 2.23.

Each test is named by its case id and follows the case's scenario: the CSMS side is one of the
two test peers (the Python `ocpp` CSMS, or `ocpp-rpc` in strict mode, which also validates every
message against the official schemas), the charge point runs on the simulated Quectel module,
and the "manual actions" of the cases (plug in, swipe a card, cut the power) are done on the
simulated charger. Cases that need hardware we do not have are noted where they would be.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from tests.harness import STACKS, Rig, Stack, rig, strict_failures
from tests.peers import PythonCsms


@pytest.fixture(params=STACKS, ids=str)
def peer_kind(request: pytest.FixtureRequest) -> Stack:
    """Both CSMS peers and both module families, paired (tests/harness.py)."""
    stack: Stack = request.param
    return stack


def no_strict_failures(r: Rig) -> None:
    assert strict_failures(r.peer) == []


@dataclass(frozen=True)
class Wire:
    """One OCPP message as the CSMS saw it, in the order it crossed the WebSocket."""

    action: str
    kind: str  # "req", "conf" or "error"
    payload: dict[str, Any]
    from_cp: bool
    connection: int  # 1 for the first WebSocket connection, 2 after a reconnection, ...

    def is_(self, action: str, kind: str = "req", **fields: Any) -> bool:
        return (
            self.action == action
            and self.kind == kind
            and all(self.payload.get(k) == v for k, v in fields.items())
        )

    def status(self) -> tuple[int, str]:
        return (self.payload["connectorId"], self.payload["status"])


def wire(r: Rig) -> list[Wire]:
    """Every CALL, CALLRESULT and CALLERROR both ways, in wire order, answers named by action."""
    messages = []
    actions: dict[tuple[bool, str], str] = {}  # (sent by the charge point, message id) -> action
    connection = 0
    for event in r.peer.events:
        if event["event"] == "connect":
            connection += 1
        if event["event"] != "frame":
            continue
        try:
            frame = json.loads(event["text"])
        except ValueError:
            continue
        from_cp = not event["outbound"]
        if frame[0] == 2:
            actions[(from_cp, frame[1])] = frame[2]
            messages.append(Wire(frame[2], "req", frame[3], from_cp, connection))
        elif frame[0] in (3, 4):
            action = actions.get((not from_cp, frame[1]), "?")
            kind, payload = ("conf", frame[2]) if frame[0] == 3 else ("error", {"code": frame[2]})
            messages.append(Wire(action, kind, payload, from_cp, connection))
    return messages


def index(messages: list[Wire], match: Callable[[Wire], bool], start: int = 0) -> int:
    """Where the first message from ``start`` on that ``match``es is (an assertion if none)."""
    found = [i for i, m in enumerate(messages) if i >= start and match(m)]
    assert found, f"no such message after #{start}: {messages[start:]}"
    return found[0]


def statuses_in(messages: list[Wire]) -> list[tuple[int, str]]:
    return [m.status() for m in messages if m.is_("StatusNotification")]


ALL_AVAILABLE = [
    (0, "Available", "NoError"),
    (1, "Available", "NoError"),
    (2, "Available", "NoError"),
]


def reported_from(messages: list[Wire], start: int) -> list[tuple[int, str, str]]:
    """(connectorId, status, errorCode) of every StatusNotification from ``start`` on, sorted."""
    return sorted(
        (m.payload["connectorId"], m.payload["status"], m.payload["errorCode"])
        for m in messages[start:]
        if m.is_("StatusNotification")
    )


def instant(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def settle(r: Rig) -> None:
    """Let the charge point send what it has to send (a Heartbeat round trip is the marker)."""
    before = len(r.calls("Heartbeat"))
    await r.peer.call("TriggerMessage", {"requestedMessage": "Heartbeat"})
    await r.wait_calls("Heartbeat", before + 1)


# -- 2.1 Cold boot --


async def test_tc_001_cs_cold_boot(peer_kind: Stack) -> None:
    # Step 2 is Rejected (retry after 1 s), step 4 Accepted with a heartbeat interval of 1 s.
    async with rig(peer_kind, boots="Rejected:1,Accepted:1") as r:
        await r.booted(2)
        await r.wait_calls("Heartbeat", 2)
        messages = wire(r)
        requests = [m for m in messages if m.from_cp and m.kind == "req"]
        # Steps 1-4: nothing at all while Rejected (§4.2), then the BootNotification again.
        assert [m.action for m in requests[:2]] == ["BootNotification", "BootNotification"]
        for boot in requests[:2]:
            assert boot.payload["chargePointVendor"] == "TestVendor"
            assert boot.payload["chargePointModel"] == "TestModel"
        rejected = index(messages, lambda m: m.is_("BootNotification", "conf"))
        assert messages[rejected].payload["status"] == "Rejected"
        assert index(messages, lambda m: m.from_cp, rejected) == index(
            messages, lambda m: m.is_("BootNotification"), rejected
        )
        accepted = index(messages, lambda m: m.is_("BootNotification", "conf"), rejected + 1)
        assert messages[accepted].payload["status"] == "Accepted"
        assert messages[accepted].payload["interval"] == 1
        # Step 5: one StatusNotification per connector and connectorId 0, all Available, all
        # after the Accepted BootNotification.conf.
        assert statuses_in(messages[:accepted]) == []
        assert reported_from(messages, accepted) == ALL_AVAILABLE
        # Step 7: Heartbeats at the interval of step 4 (the interval itself is wall-clock
        # time, which these tests do not measure), never before the Accepted.
        assert index(messages, lambda m: m.is_("Heartbeat")) > accepted
        answer = await r.peer.call("GetConfiguration", {"key": ["HeartbeatInterval"]})
        assert answer["configurationKey"][0]["value"] == "1"
        no_strict_failures(r)


async def test_tc_002_cs_cold_boot_pending(peer_kind: Stack) -> None:
    # Step 2 is Pending for 5 s: time for the CSMS's steps 3 to 6 even on a loaded machine.
    async with rig(peer_kind, boots="Pending:5,Accepted:1") as r:
        await r.peer.wait_for(lambda _: any(m.is_("BootNotification", "conf") for m in wire(r)))
        # Steps 3 and 4: the key omitted, every key comes back.
        answer = await r.peer.call("GetConfiguration", {})
        assert "unknownKey" not in answer
        keys = {k["key"] for k in answer["configurationKey"]}
        assert {"MeterValueSampleInterval", "HeartbeatInterval"} <= keys
        # Steps 5 and 6.
        answer = await r.peer.call(
            "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "30"}
        )
        assert answer == {"status": "Accepted"}
        await r.booted(2)  # steps 7 to 10
        await r.wait_calls("Heartbeat", 2)  # steps 11 and 12
        messages = wire(r)
        pending = index(messages, lambda m: m.is_("BootNotification", "conf"))
        assert messages[pending].payload["status"] == "Pending"
        accepted = index(messages, lambda m: m.is_("BootNotification", "conf"), pending + 1)
        assert messages[accepted].payload["status"] == "Accepted"
        # The CSMS's requests were answered while Pending (else this run did not test it).
        answered = [m.action for m in messages[pending:accepted] if m.from_cp and m.kind == "conf"]
        assert answered == ["GetConfiguration", "ChangeConfiguration"]
        # §4.2: while Pending the charge point sends no request but the next BootNotification
        # (a TriggerMessage could ask for more; none came).
        while_pending = [
            m.action for m in messages[pending:accepted] if m.from_cp and m.kind == "req"
        ]
        assert while_pending == ["BootNotification"]
        # Step 9: one StatusNotification per connector and connectorId 0, all Available.
        assert reported_from(messages, accepted) == ALL_AVAILABLE
        assert index(messages, lambda m: m.is_("Heartbeat")) > accepted
        answer = await r.peer.call("GetConfiguration", {"key": ["MeterValueSampleInterval"]})
        assert answer["configurationKey"][0]["value"] == "30"
        no_strict_failures(r)


# -- 2.2 Start charging session --


async def test_tc_003_cs_plugin_first(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        r.charger.plug(1)
        await r.wait_status(1, "Preparing")
        r.charger.present("TAG-1", 1)
        authorize = await r.wait_calls("Authorize")
        assert authorize[0] == {"idTag": "TAG-1"}
        start = (await r.wait_calls("StartTransaction"))[0]
        assert (start["connectorId"], start["idTag"]) == (1, "TAG-1")
        await r.wait_status(1, "Charging")
        assert r.charger.connector(1).locked and r.charger.connector(1).delivering
        no_strict_failures(r)


async def test_tc_004_1_cs_identification_first(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        r.charger.present("TAG-1", 1)
        await r.wait_calls("Authorize")
        await r.wait_status(1, "Preparing")
        assert r.calls("StartTransaction") == []
        r.charger.plug(1)
        await r.wait_calls("StartTransaction")
        await r.wait_status(1, "Charging")
        no_strict_failures(r)


async def test_tc_004_2_cs_identification_first_connection_timeout(peer_kind: Stack) -> None:
    async with rig(peer_kind, keys={"ConnectionTimeOut": 1}) as r:
        r.charger.present("TAG-1", 1)
        await r.wait_status(1, "Preparing")
        await r.wait_calls("StatusNotification", 5)
        assert r.status_sequence(1) == ["Available", "Preparing", "Available"]
        assert r.calls("StartTransaction") == []


# -- 2.3 Stop charging session --


async def test_tc_068_cs_stop_with_the_same_id_tag(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        transaction_id = await r.charging(1, "TAG-1")
        authorizes = len(r.calls("Authorize"))
        # Step 1: another card, and TAG-1 has no parentIdTag to compare: no Authorize.req,
        # no StopTransaction.req (§3.10).
        r.charger.present("TAG-2", 1)
        await settle(r)
        assert len(r.calls("Authorize")) == authorizes
        assert r.calls("StopTransaction") == []
        # Steps 3 and 5: the card that started it stops it; the connector is Finishing.
        r.charger.present("TAG-1", 1)
        stop = (await r.wait_calls("StopTransaction"))[0]
        assert stop["transactionId"] == transaction_id
        assert (stop["idTag"], stop["reason"]) == ("TAG-1", "Local")
        await r.wait_status(1, "Finishing")
        assert r.status_sequence(1)[-1] == "Finishing"
        assert not r.charger.connector(1).locked  # the driver can take the cable
        r.charger.unplug(1)
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Available")
        no_strict_failures(r)


async def test_tc_069_cs_stop_with_a_card_of_the_same_parent(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        family = {"status": "Accepted", "parentIdTag": "FAMILY"}
        await r.peer.configure(id_tags={"TAG-1": family, "TAG-2": family})
        transaction_id = await r.charging(1, "TAG-1")
        await r.wait_status(1, "Charging")
        mark = len(wire(r))
        r.charger.present("TAG-2", 1)
        await r.wait_calls("StopTransaction")
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Finishing")
        messages = wire(r)[mark:]
        # Steps 1 and 2: a different idTag; the CSMS gives it the parent of the first.
        authorize = index(messages, lambda m: m.is_("Authorize"))
        assert messages[authorize].payload == {"idTag": "TAG-2"}
        conf = messages[index(messages, lambda m: m.is_("Authorize", "conf"), authorize)]
        assert conf.payload["idTagInfo"] == family
        # Steps 3 and 5 after it, in either order (§1.2); the stop names the idTag of step 1.
        after = [
            m.action if m.action != "StatusNotification" else m.status()
            for m in messages[authorize + 1 :]
            if m.from_cp and m.kind == "req"
        ]
        assert sorted(after, key=str) == sorted(["StopTransaction", (1, "Finishing")], key=str)
        stop = next(m.payload for m in messages if m.is_("StopTransaction"))
        assert (stop["transactionId"], stop["idTag"]) == (transaction_id, "TAG-2")
        assert [a["idTag"] for a in r.calls("Authorize")] == ["TAG-1", "TAG-2"]
        no_strict_failures(r)


async def test_a_stranger_cannot_stop_a_transaction(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        await r.peer.configure(id_tags={"TAG-1": {"status": "Accepted", "parentIdTag": "A"}})
        await r.charging(1, "TAG-1")
        r.charger.present("STRANGER", 1)
        await r.wait_calls("Authorize", 2)
        await settle(r)
        assert r.calls("StopTransaction") == []
        assert r.station.transactions.connectors[0].transaction is not None


@pytest.mark.parametrize(
    ("case", "unlock", "locked_after"),
    [("TC_005_1_CS", True, False), ("TC_005_2_CS", False, True)],
)
async def test_tc_005_1_and_2_cs_ev_side_disconnected_stops(
    peer_kind: Stack, case: str, unlock: bool, locked_after: bool
) -> None:
    keys = {"StopTransactionOnEVSideDisconnect": True, "UnlockConnectorOnEVSideDisconnect": unlock}
    async with rig(peer_kind, keys=keys) as r:
        await r.charging(1)
        r.charger.unplug(1, ev_side=True)  # the cable stays in the socket
        stop = (await r.wait_calls("StopTransaction"))[0]
        assert stop["reason"] == "EVDisconnected", case
        # Step 3: Finishing, not Available: the cable is still in the socket.
        await r.wait_status(1, "Finishing")
        assert r.status_sequence(1)[-2:] == ["Charging", "Finishing"], case
        assert r.charger.connector(1).locked is locked_after
        answer = await r.peer.call("UnlockConnector", {"connectorId": 1})
        assert answer == {"status": "Unlocked"}
        assert not r.charger.connector(1).locked
        r.charger.unplug(1)  # now out of the socket too
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Available")
        assert r.status_sequence(1)[-2:] == ["Finishing", "Available"], case
        no_strict_failures(r)


@pytest.mark.parametrize("fixed_cable", [False, True])
async def test_tc_005_3_cs_ev_side_disconnected_does_not_stop(
    peer_kind: Stack, fixed_cable: bool
) -> None:
    keys = {"StopTransactionOnEVSideDisconnect": False, "UnlockConnectorOnEVSideDisconnect": False}
    charger = {"fixed_cable": fixed_cable}
    async with rig(peer_kind, keys=keys, charger=charger) as r:
        transaction_id = await r.charging(1)
        r.charger.unplug(1, ev_side=True)
        suspended = await r.wait_status(1, "SuspendedEV")
        assert suspended["info"] == "EV side disconnected"
        assert r.calls("StopTransaction") == []
        answer = await r.peer.call("RemoteStopTransaction", {"transactionId": transaction_id})
        assert answer == {"status": "Accepted"}
        stop = (await r.wait_calls("StopTransaction"))[0]
        assert stop["reason"] == "Remote"
        # Step 5: Finishing while the cable is in the socket; Available with a fixed cable.
        after_stop = "Available" if fixed_cable else "Finishing"
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == after_stop)
        assert r.status_sequence(1)[-2:] == ["SuspendedEV", after_stop]
        no_strict_failures(r)


# -- 2.4 Cache --


async def cache_id_tag(r: Rig, id_tag: str, connector: int = 1) -> None:
    """Memory state IdTagCached: the card is authorized online (Authorize.conf Accepted goes
    into the cache), then withdrawn by presenting it again; the connector is Available."""
    r.charger.present(id_tag, connector)
    await r.wait_status(connector, "Preparing")
    r.charger.present(id_tag, connector)
    await r.peer.wait_for(lambda _: r.status_sequence(connector)[-1] == "Available")
    assert [a["idTag"] for a in r.calls("Authorize")] == [id_tag]


async def test_tc_007_cs_start_with_a_cached_id(peer_kind: Stack) -> None:
    keys = {
        "AuthorizationCacheEnabled": True,
        "AuthorizeRemoteTxRequests": True,
        "LocalPreAuthorize": True,
    }
    async with rig(peer_kind, keys=keys) as r:
        await cache_id_tag(r, "TAG-1")
        mark = len(wire(r))
        r.charger.plug(1)  # step 1
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Preparing")
        answer = await r.peer.call("RemoteStartTransaction", {"idTag": "TAG-1", "connectorId": 1})
        assert answer == {"status": "Accepted"}  # step 4
        await r.wait_calls("StartTransaction")
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Charging")
        messages = wire(r)[mark:]
        remote = index(messages, lambda m: m.is_("RemoteStartTransaction", "conf"))
        # Step 1 before the remote start; steps 5 and 7 after it, in either order.
        assert statuses_in(messages[:remote]) == [(1, "Preparing")]
        tail = [
            m.action if m.action != "StatusNotification" else m.status()
            for m in messages[remote + 1 :]
            if m.from_cp and m.kind == "req"
        ]
        assert sorted(tail, key=str) == sorted(["StartTransaction", (1, "Charging")], key=str)
        start = next(m.payload for m in messages if m.is_("StartTransaction"))
        assert (start["connectorId"], start["idTag"]) == (1, "TAG-1")
        assert isinstance(start["meterStart"], int) and "reservationId" not in start
        conf = next(m.payload for m in messages if m.is_("StartTransaction", "conf"))
        assert conf["idTagInfo"]["status"] == "Accepted"  # step 6
        # The id came from the cache (LocalPreAuthorize): no Authorize.req this time.
        assert len(r.calls("Authorize")) == 1
        no_strict_failures(r)


async def test_tc_061_cs_clear_authorization_cache(peer_kind: Stack) -> None:
    keys = {"LocalPreAuthorize": True, "AuthorizationCacheEnabled": True}
    async with rig(peer_kind, keys=keys) as r:
        r.charger.present("TAG-1", 1)
        await r.wait_status(1, "Preparing")
        r.charger.present("TAG-1", 1)
        await r.peer.wait_for(
            lambda _: r.status_sequence(1) == ["Available", "Preparing", "Available"]
        )
        assert len(r.station.authorization.cache) == 1
        assert await r.peer.call("ClearCache", {}) == {"status": "Accepted"}
        assert len(r.station.authorization.cache) == 0
        r.charger.present("TAG-1", 1)
        await r.wait_calls("Authorize", 2)  # not known any more: asked again
        no_strict_failures(r)


# -- 2.5 Remote actions --


async def test_tc_010_cs_remote_start_cable_plugged_first(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        r.charger.plug(1)
        await r.wait_status(1, "Preparing")
        answer = await r.peer.call("RemoteStartTransaction", {"idTag": "REMOTE", "connectorId": 1})
        assert answer == {"status": "Accepted"}
        await r.wait_calls("Authorize")  # AuthorizeRemoteTxRequests is true by default
        start = (await r.wait_calls("StartTransaction"))[0]
        assert (start["connectorId"], start["idTag"]) == (1, "REMOTE")
        await r.wait_status(1, "Charging")
        no_strict_failures(r)


@pytest.mark.parametrize("authorize_remote", [True, False])
@pytest.mark.parametrize("connector_id", [1, None])
async def test_tc_011_1_cs_remote_start_first(
    peer_kind: Stack, authorize_remote: bool, connector_id: int | None
) -> None:
    async with rig(peer_kind, keys={"AuthorizeRemoteTxRequests": authorize_remote}) as r:
        # Steps 1 and 2.
        answer = await r.peer.call("GetConfiguration", {"key": ["AuthorizeRemoteTxRequests"]})
        [key] = answer["configurationKey"]
        assert key["key"] == "AuthorizeRemoteTxRequests"
        assert key["value"] == str(authorize_remote).lower()
        mark = len(wire(r))
        request: dict[str, Any] = {"idTag": "REMOTE"}
        if connector_id is not None:
            request["connectorId"] = connector_id
        answer = await r.peer.call("RemoteStartTransaction", request)
        assert answer == {"status": "Accepted"}  # step 4
        # Step 7: the connector the charge point chose (or was given) is Preparing.
        preparing = await r.peer.wait_for(
            lambda _: [m for m in wire(r)[mark:] if m.is_("StatusNotification", status="Preparing")]
        )
        connector = preparing[0].payload["connectorId"]
        if connector_id is not None:
            assert connector == connector_id
        r.charger.plug(connector)
        await r.wait_calls("StartTransaction")
        await r.peer.wait_for(lambda _: r.status_sequence(connector)[-1] == "Charging")
        messages = wire(r)[mark:]
        sent = [
            m.action if m.action != "StatusNotification" else m.status()
            for m in messages
            if m.from_cp and m.kind == "req"
        ]
        # Step 5 only with AuthorizeRemoteTxRequests, before step 7; then steps 9 and 11 (in
        # either order, §1.2).
        authorize = ["Authorize"] if authorize_remote else []
        assert sent[: len(authorize) + 1] == [*authorize, (connector, "Preparing")]
        assert sorted(sent[len(authorize) + 1 :], key=str) == sorted(
            ["StartTransaction", (connector, "Charging")], key=str
        )
        if authorize_remote:
            assert next(m for m in messages if m.is_("Authorize")).payload == {"idTag": "REMOTE"}
        start = next(m.payload for m in messages if m.is_("StartTransaction"))
        assert (start["connectorId"], start["idTag"]) == (connector, "REMOTE")
        conf = next(m.payload for m in messages if m.is_("StartTransaction", "conf"))
        assert conf["idTagInfo"]["status"] == "Accepted"  # step 10
        no_strict_failures(r)


async def test_tc_011_2_cs_remote_start_time_out(peer_kind: Stack) -> None:
    async with rig(peer_kind, keys={"ConnectionTimeOut": 1}) as r:
        await r.peer.call("RemoteStartTransaction", {"idTag": "REMOTE", "connectorId": 1})
        await r.wait_status(1, "Preparing")
        await r.peer.wait_for(
            lambda _: r.status_sequence(1) == ["Available", "Preparing", "Available"]
        )
        assert r.calls("StartTransaction") == []


async def test_tc_012_cs_remote_stop(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        transaction_id = await r.charging(1)
        answer = await r.peer.call("RemoteStopTransaction", {"transactionId": transaction_id})
        assert answer == {"status": "Accepted"}
        stop = (await r.wait_calls("StopTransaction"))[0]
        assert (stop["transactionId"], stop["reason"]) == (transaction_id, "Remote")
        await r.wait_status(1, "Finishing")
        r.charger.unplug(1)
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Available")
        no_strict_failures(r)


# -- 2.6 Reset --


@pytest.mark.parametrize(("case", "kind"), [("TC_013_CS", "Hard"), ("TC_014_CS", "Soft")])
async def test_tc_013_and_014_cs_reset_without_transaction(
    peer_kind: Stack, case: str, kind: str
) -> None:
    async with rig(peer_kind) as r:
        mark = len(wire(r))
        # Steps 1 to 4: connector 1 (the configured one) Inoperative, and only it Unavailable.
        answer = await r.peer.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
        assert answer == {"status": "Accepted"}, case
        await r.wait_status(1, "Unavailable")
        # Steps 5 and 6.
        assert await r.peer.call("Reset", {"type": kind}) == {"status": "Accepted"}, case
        await r.wait_stopped()
        assert r.daemon.reset_requested is not None
        assert r.daemon.reset_requested.value == kind
        await r.restart()  # what the reset hook does on a controller
        await r.booted(2)  # steps 7 to 10
        # Steps 11 to 14: back to Operative, only connector 1 reports, Available.
        before_operative = len(wire(r))
        answer = await r.peer.call("ChangeAvailability", {"connectorId": 1, "type": "Operative"})
        assert answer == {"status": "Accepted"}, case
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Available")
        await settle(r)  # anything else it would send is sent by now
        messages = wire(r)
        first = messages[mark:before_operative]
        unavailable = index(first, lambda m: m.is_("ChangeAvailability", "conf"))
        reset = index(first, lambda m: m.is_("Reset"))
        assert statuses_in(first[:unavailable]) == [], case
        assert statuses_in(first[unavailable:reset]) == [(1, "Unavailable")], case
        boot = index(first, lambda m: m.is_("BootNotification"), reset)
        # Nothing between the Reset.conf and the BootNotification (no transaction to stop).
        assert [m.action for m in first[reset:boot] if m.from_cp and m.kind == "req"] == []
        accepted = index(first, lambda m: m.is_("BootNotification", "conf"), boot)
        assert first[accepted].payload["status"] == "Accepted", case
        # Step 9: connector 1 still Unavailable (§5.2: persistent over a reset), the others
        # and connectorId 0 Available; one each.
        assert sorted(statuses_in(first[accepted:])) == [
            (0, "Available"),
            (1, "Unavailable"),
            (2, "Available"),
        ], case
        second = messages[before_operative:]
        operative = index(second, lambda m: m.is_("ChangeAvailability", "conf"))
        assert statuses_in(second[:operative]) == [], case
        assert statuses_in(second[operative:]) == [(1, "Available")], case
        assert r.calls("StopTransaction") == []
        no_strict_failures(r)


@pytest.mark.parametrize(("case", "kind"), [("TC_015_CS", "Hard"), ("TC_016_CS", "Soft")])
async def test_tc_015_and_016_cs_reset_with_transaction(
    peer_kind: Stack, case: str, kind: str
) -> None:
    async with rig(peer_kind) as r:
        transaction_id = await r.charging(1)
        await r.wait_status(1, "Charging")
        before = len(r.calls("StatusNotification"))
        await r.peer.call("Reset", {"type": kind})
        await r.wait_stopped()
        # Steps 3 and 5, answered before the connection went: StopTransaction with the
        # reset's reason, and Finishing (the cable is still in), never Unavailable.
        stop = (await r.wait_calls("StopTransaction"))[0]
        assert (stop["transactionId"], stop["reason"]) == (transaction_id, f"{kind}Reset"), case
        during = r.calls("StatusNotification")[before:]
        assert [(s["connectorId"], s["status"]) for s in during] == [(1, "Finishing")], case
        await r.restart()
        await r.booted(2)
        # Step 9: after the boot, every connector and connector 0: the one with the cable in
        # is Preparing (or Finishing), the others Available. The stop is not sent again.
        calls = r.peer.calls()
        boot = [i for i, c in enumerate(calls) if c["method"] == "BootNotification"][1]
        after = [c["params"] for c in calls[boot:] if c["method"] == "StatusNotification"]
        assert {s["connectorId"]: s["status"] for s in after} == {
            0: "Available",
            1: "Preparing",
            2: "Available",
        }, case
        await settle(r)
        assert len(r.calls("StopTransaction")) == 1
        no_strict_failures(r)


# -- 2.7 Unlock connector --


async def test_tc_017_1_cs_unlock_without_transaction(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        assert await r.peer.call("UnlockConnector", {"connectorId": 1}) == {"status": "Unlocked"}


async def test_tc_017_2_cs_unlock_fixed_cable(peer_kind: Stack) -> None:
    async with rig(peer_kind, charger={"fixed_cable": True}) as r:
        answer = await r.peer.call("UnlockConnector", {"connectorId": 1})
        assert answer == {"status": "NotSupported"}


async def test_tc_018_1_cs_unlock_with_transaction(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        transaction_id = await r.charging(1)
        assert await r.peer.call("UnlockConnector", {"connectorId": 1}) == {"status": "Unlocked"}
        stop = (await r.wait_calls("StopTransaction"))[0]
        assert (stop["transactionId"], stop["reason"]) == (transaction_id, "UnlockCommand")
        await r.wait_status(1, "Finishing")
        r.charger.unplug(1)
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Available")
        no_strict_failures(r)


async def test_tc_018_2_cs_unlock_fixed_cable_with_transaction(peer_kind: Stack) -> None:
    async with rig(peer_kind, charger={"fixed_cable": True}) as r:
        await r.charging(1)
        answer = await r.peer.call("UnlockConnector", {"connectorId": 1})
        assert answer == {"status": "NotSupported"}
        assert r.station.transactions.connectors[0].transaction is not None


# -- 2.8 Configuration --


CORE_KEYS = {
    "AuthorizeRemoteTxRequests": None,
    "ClockAlignedDataInterval": False,
    "ConnectionTimeOut": False,
    "ConnectorPhaseRotation": False,
    "GetConfigurationMaxKeys": True,
    "HeartbeatInterval": False,
    "LocalAuthorizeOffline": False,
    "LocalPreAuthorize": False,
    "MeterValuesAlignedData": False,
    "MeterValuesSampledData": False,
    "MeterValueSampleInterval": False,
    "NumberOfConnectors": True,
    "ResetRetries": False,
    "StopTransactionOnEVSideDisconnect": False,
    "StopTransactionOnInvalidId": False,
    "StopTxnAlignedData": False,
    "StopTxnSampledData": False,
    "SupportedFeatureProfiles": True,
    "TransactionMessageAttempts": False,
    "TransactionMessageRetryInterval": False,
    "UnlockConnectorOnEVSideDisconnect": False,
}


async def test_tc_019_cs_retrieve_configuration(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        answer = await r.peer.call("GetConfiguration", {"key": ["SupportedFeatureProfiles"]})
        assert "unknownKey" not in answer
        assert answer["configurationKey"] == [
            {
                "key": "SupportedFeatureProfiles",
                "readonly": True,
                "value": "Core,FirmwareManagement,LocalAuthListManagement,Reservation,"
                "SmartCharging,RemoteTrigger",
            }
        ]
        everything = (await r.peer.call("GetConfiguration", {}))["configurationKey"]
        readonly = {k["key"]: k["readonly"] for k in everything}
        for key, expected in CORE_KEYS.items():
            assert key in readonly, key
            assert expected is None or readonly[key] is expected, key
        assert "AuthorizationKey" not in readonly  # write-only
        maximum = await r.peer.call("GetConfiguration", {"key": ["GetConfigurationMaxKeys"]})
        limit = int(maximum["configurationKey"][0]["value"])
        picked = [k["key"] for k in everything][: min(limit, len(everything))]
        answer = await r.peer.call("GetConfiguration", {"key": picked})
        assert [k["key"] for k in answer["configurationKey"]] == picked
        no_strict_failures(r)


async def test_tc_021_cs_change_configuration(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        answer = await r.peer.call(
            "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "17"}
        )
        assert answer == {"status": "Accepted"}
        answer = await r.peer.call("GetConfiguration", {"key": ["MeterValueSampleInterval"]})
        assert answer["configurationKey"][0]["value"] == "17"
        await r.restart()  # kept across a restart
        await r.booted(2)
        answer = await r.peer.call("GetConfiguration", {"key": ["MeterValueSampleInterval"]})
        assert answer["configurationKey"][0]["value"] == "17"
        no_strict_failures(r)


# -- 2.9 Meter values --


async def configured_measurands(r: Rig, key: str) -> list[str]:
    """Reusable state "GetConfiguration for key ...": the measurands the case expects."""
    answer = await r.peer.call("GetConfiguration", {"key": [key]})
    [entry] = answer["configurationKey"]
    return [m for m in entry["value"].split(",") if m] or ["Energy.Active.Import.Register"]


def assert_measurands(value: dict[str, Any], context: str, measurands: list[str]) -> None:
    """One sampledValue per configured measurand, all of ``context`` (schema defaults apply)."""
    sampled = value["sampledValue"]
    assert {s.get("context", "Sample.Periodic") for s in sampled} == {context}, value
    reported = [s.get("measurand", "Energy.Active.Import.Register") for s in sampled]
    assert sorted(reported) == sorted(measurands), value


async def test_tc_070_cs_sampled_meter_values(peer_kind: Stack) -> None:
    interval = 1
    keys = {
        "MeterValueSampleInterval": interval,
        "ClockAlignedDataInterval": 0,
        "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import,SoC",
    }
    async with rig(peer_kind, keys=keys) as r:
        measurands = await configured_measurands(r, "MeterValuesSampledData")
        assert measurands == ["Energy.Active.Import.Register", "Power.Active.Import", "SoC"]
        transaction_id = await r.charging(1)
        await r.peer.wait_for(lambda _: len(transaction_values(r, transaction_id)) >= 3)
        for message in r.calls("MeterValues"):
            assert (message["connectorId"], message["transactionId"]) == (1, transaction_id)
        values = transaction_values(r, transaction_id)
        for value in values:
            assert_measurands(value, "Sample.Periodic", measurands)
            by_measurand = {s["measurand"]: s for s in value["sampledValue"]}
            assert by_measurand["Energy.Active.Import.Register"]["unit"] == "Wh"
            assert by_measurand["Power.Active.Import"]["unit"] == "W"
            assert by_measurand["SoC"]["unit"] == "Percent"
        start = r.calls("StartTransaction")[0]["timestamp"]
        assert_sampled_spacing(values, start, interval)
        energies = [
            int(s["value"])
            for value in values
            for s in value["sampledValue"]
            if s["measurand"] == "Energy.Active.Import.Register"
        ]
        assert energies == sorted(energies)
        no_strict_failures(r)


async def test_tc_071_cs_clock_aligned_meter_values(peer_kind: Stack) -> None:
    interval = 2
    keys = {
        "MeterValueSampleInterval": 0,
        "ClockAlignedDataInterval": interval,
        "MeterValuesAlignedData": "Energy.Active.Import.Register",
    }
    async with rig(peer_kind, keys=keys) as r:
        measurands = await configured_measurands(r, "MeterValuesAlignedData")
        assert measurands == ["Energy.Active.Import.Register"]
        transaction_id = await r.charging(1)
        await r.peer.wait_for(lambda _: len(transaction_values(r, transaction_id)) >= 3)
        values = transaction_values(r, transaction_id)
        stamps = []
        for value in values:
            assert_measurands(value, "Sample.Clock", measurands)
            stamp = instant(value["timestamp"])
            # Clock-aligned: a whole multiple of the interval from midnight, no fraction.
            midnight = stamp.replace(hour=0, minute=0, second=0, microsecond=0)
            assert (stamp - midnight) % timedelta(seconds=interval) == timedelta(0), stamp
            stamps.append(stamp)
        # An interval of x seconds between them, on the charge point's own timestamps: each
        # the next aligned instant (a delay of more than an interval on a loaded machine may
        # skip one; none is ever repeated or out of order).
        for earlier, later in pairwise(stamps):
            gap = later - earlier
            assert gap >= timedelta(seconds=interval), (earlier, later)
            assert gap % timedelta(seconds=interval) == timedelta(0), (earlier, later)
        # Connector 2 has no transaction: its clock-aligned values go out without one.
        idle = [m for m in r.calls("MeterValues") if m["connectorId"] == 2]
        assert idle and all("transactionId" not in m for m in idle)
        no_strict_failures(r)


# -- 2.10 Basic actions, non-happy --


async def test_tc_023_cs_authorize_invalid(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        await r.peer.configure(id_tags={"BAD": {"status": "Invalid"}})
        r.charger.plug(1)
        await r.wait_status(1, "Preparing")
        r.charger.present("BAD", 1)
        await r.wait_calls("Authorize")
        await settle(r)
        assert r.calls("StartTransaction") == []
        assert not r.charger.connector(1).delivering


async def test_tc_024_cs_lock_failure(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        answer = await r.peer.call("GetConfiguration", {"key": ["AuthorizeRemoteTxRequests"]})
        assert answer["configurationKey"][0]["key"] == "AuthorizeRemoteTxRequests"
        r.charger.set_lock_fails(1, True)
        await r.peer.call("RemoteStartTransaction", {"idTag": "REMOTE", "connectorId": 1})
        await r.wait_calls("Authorize")
        await r.wait_status(1, "Preparing")
        r.charger.plug(1)
        faulted = await r.wait_status(1, "Faulted")
        assert faulted["errorCode"] == "ConnectorLockFailure"
        await settle(r)
        assert r.calls("StartTransaction") == []
        no_strict_failures(r)


# -- 2.11 Remote actions, non-happy --


async def test_tc_026_cs_remote_start_rejected_while_charging(peer_kind: Stack) -> None:
    async with rig(peer_kind, keys={"LocalPreAuthorize": False}) as r:
        await r.charging(1)
        answer = await r.peer.call("RemoteStartTransaction", {"idTag": "OTHER", "connectorId": 1})
        assert answer == {"status": "Rejected"}


async def test_tc_027_cs_remote_start_on_connector_0(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        answer = await r.peer.call("RemoteStartTransaction", {"idTag": "REMOTE", "connectorId": 0})
        assert answer == {"status": "Rejected"}
        await settle(r)
        assert r.calls("StartTransaction") == []


async def test_tc_028_cs_remote_stop_unknown_transaction(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        await r.charging(1)
        answer = await r.peer.call("RemoteStopTransaction", {"transactionId": 424242})
        assert answer == {"status": "Rejected"}
        assert r.station.transactions.connectors[0].transaction is not None


# -- 2.12 Unlock, non-happy --


async def test_tc_030_cs_unlock_failure(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        r.charger.set_unlock_fails(1, True)
        answer = await r.peer.call("UnlockConnector", {"connectorId": 1})
        assert answer == {"status": "UnlockFailed"}


async def test_tc_031_cs_unlock_unknown_connector(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        answer = await r.peer.call("UnlockConnector", {"connectorId": 3})
        assert answer == {"status": "NotSupported"}


# -- 2.13 Power failure --


async def test_tc_032_1_cs_power_failure_stops_transactions_before_going_down(
    peer_kind: Stack,
) -> None:
    async with rig(peer_kind) as r:
        transaction_id = await r.charging(1)
        r.charger.power_failing()  # on back-up power: stop first
        stop = (await r.wait_calls("StopTransaction"))[0]
        assert (stop["transactionId"], stop["reason"]) == (transaction_id, "PowerLoss")
        await r.wait_status(1, "Finishing")
        await r.restart()  # power back
        await r.booted(2)
        after = r.calls("StatusNotification")[-3:]
        by_connector = {p["connectorId"]: p["status"] for p in after}
        assert by_connector[1] in ("Finishing", "Preparing")  # the cable is still in
        assert (by_connector[0], by_connector[2]) == ("Available", "Available")
        assert len(r.calls("StopTransaction")) == 1
        no_strict_failures(r)


async def test_tc_032_2_cs_power_failure_stops_transactions_after_boot(peer_kind: Stack) -> None:
    async with rig(peer_kind, keys={"MeterValueSampleInterval": 1}) as r:
        transaction_id = await r.charging(1)
        await r.wait_calls("MeterValues", 2)
        await r.restart()  # the power cut: nothing is stopped before going down
        await r.booted(2)
        stop = (await r.wait_calls("StopTransaction"))[0]
        assert (stop["transactionId"], stop["reason"]) == (transaction_id, "PowerLoss")
        last_sample = r.calls("MeterValues")[-1]["meterValue"][0]["sampledValue"][0]
        assert stop["meterStop"] >= int(last_sample["value"])
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Finishing")
        no_strict_failures(r)


async def test_tc_032_2_cs_power_failure_resumes_when_configured(peer_kind: Stack) -> None:
    async with rig(peer_kind, charge_point={"power_loss": "resume"}) as r:
        transaction_id = await r.charging(1)
        await r.restart()
        await r.booted(2)
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Charging")
        r.charger.present("TAG-1", 1)  # the driver stops it by hand
        stop = (await r.wait_calls("StopTransaction"))[0]
        assert (stop["transactionId"], stop["reason"]) == (transaction_id, "Local")
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Finishing")
        no_strict_failures(r)


async def test_tc_034_cs_power_failure_keeps_unavailable(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        answer = await r.peer.call("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})
        assert answer == {"status": "Accepted"}
        await r.peer.wait_for(
            lambda _: (
                {p["status"] for p in r.calls("StatusNotification")[3:]} == {"Unavailable"}
                and len(r.calls("StatusNotification")) == 6
            )
        )
        await r.restart()
        await r.booted(2)
        await r.wait_calls("StatusNotification", 9)
        assert {p["status"] for p in r.calls("StatusNotification")[6:]} == {"Unavailable"}
        no_strict_failures(r)


async def test_change_availability_is_scheduled_while_charging(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        await r.charging(1)
        answer = await r.peer.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
        assert answer == {"status": "Scheduled"}
        r.charger.present("TAG-1", 1)
        await r.wait_calls("StopTransaction")
        # §4.9 C6 then F8: Finishing while the driver still has to take the cable, then the
        # scheduled Unavailable.
        await r.wait_status(1, "Finishing")
        r.charger.unplug(1)
        await r.wait_status(1, "Unavailable")
        assert r.status_sequence(1)[-3:] == ["Charging", "Finishing", "Unavailable"]
        answer = await r.peer.call("ChangeAvailability", {"connectorId": 1, "type": "Operative"})
        assert answer == {"status": "Accepted"}
        no_strict_failures(r)


async def test_change_availability_ends_an_authorization_still_waiting_for_the_cable(
    peer_kind: Stack,
) -> None:
    # A card was accepted but no cable is in yet (Preparing): no transaction is in progress,
    # so the change is Accepted at once (§5.2) and the authorization goes with it. A cable
    # plugged in afterwards starts nothing on the Unavailable connector.
    async with rig(peer_kind) as r:
        r.charger.present("TAG-1", 1)
        await r.wait_status(1, "Preparing")
        answer = await r.peer.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
        assert answer == {"status": "Accepted"}
        await r.wait_status(1, "Unavailable")
        assert r.station.transactions.pending_id_tag(1) is None
        r.charger.plug(1)
        await settle(r)
        assert r.calls("StartTransaction") == []
        assert r.status_sequence(1)[-1] == "Unavailable"
        answer = await r.peer.call("ChangeAvailability", {"connectorId": 1, "type": "Operative"})
        assert answer == {"status": "Accepted"}
        await r.wait_status(1, "Preparing")  # the cable is in; a new card is needed
        assert r.calls("StartTransaction") == []
        no_strict_failures(r)


# -- 2.14 Offline behaviour --


def transaction_values(r: Rig, transaction_id: int) -> list[dict[str, Any]]:
    """The meterValue elements of ``transaction_id`` the CSMS received, in wire order (a
    backlog may come as one MeterValues.req with several elements)."""
    return [
        value
        for message in r.calls("MeterValues")
        if message.get("transactionId") == transaction_id
        for value in message["meterValue"]
    ]


def assert_sampled_spacing(values: list[dict[str, Any]], start: str, interval: int) -> None:
    """Sampled values every ``interval`` seconds from the start of the transaction, judged on
    the charge point's own timestamps: in chronological order, and the n-th never earlier than
    n intervals after the StartTransaction's timestamp. (How late a sample may be is up to the
    load on the machine, so there is no upper bound to check.)"""
    stamps = [instant(value["timestamp"]) for value in values]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), stamps
    for n, stamp in enumerate(stamps, start=1):
        assert stamp >= instant(start) + timedelta(seconds=n * interval), (n, stamp, start)


async def test_tc_036_cs_connection_loss_during_transaction(peer_kind: Stack) -> None:
    interval = 1
    async with rig(peer_kind, keys={"MeterValueSampleInterval": interval}) as r:
        transaction_id = await r.charging(1)
        await r.wait_calls("MeterValues", 1)
        r.offline()
        await r.wait_offline()
        # At least 3 samples queued while offline.
        await r.station.wait_until(
            lambda: sum(i.action == "MeterValues" for i in r.station.outbox.pending()) >= 3
        )
        queued = [
            value
            for item in r.station.outbox.pending()
            if item.action == "MeterValues"
            for value in item.payload["meterValue"]
        ]
        r.online()
        await r.wait_online()
        await r.peer.wait_for(
            lambda _: all(value in transaction_values(r, transaction_id) for value in queued)
        )
        assert {m.get("transactionId") for m in r.calls("MeterValues")} == {transaction_id}
        received = transaction_values(r, transaction_id)
        # What was in flight when the link went may come twice (sent again, unchanged, as its
        # answer was lost: at least once, §4.10); it is still queued, nothing else repeats.
        unique = [v for n, v in enumerate(received) if v not in received[:n]]
        repeated = [v for n, v in enumerate(received) if v in received[:n]]
        assert all(value in queued for value in repeated)
        # Step 1: everything queued, first after the reconnection and in chronological order,
        # before any new sample.
        after = [
            value
            for m in wire(r)
            if m.connection > 1 and m.is_("MeterValues")
            for value in m.payload["meterValue"]
        ]
        assert after[: len(queued)] == queued
        start = r.calls("StartTransaction")[0]["timestamp"]
        assert_sampled_spacing(unique, start, interval)
        assert {
            sampled.get("context", "Sample.Periodic")
            for value in unique
            for sampled in value["sampledValue"]
        } == {"Sample.Periodic"}
        no_strict_failures(r)


async def offline_transaction(r: Rig, id_tag: str) -> None:
    r.offline()
    await r.wait_offline()
    r.charger.plug(1)
    r.charger.present(id_tag, 1)
    await r.station.wait_until(lambda: r.station.transactions.connectors[0].transaction is not None)
    assert r.charger.connector(1).delivering
    r.online()
    await r.wait_online()


async def test_tc_037_1_cs_offline_start_valid_id_tag(peer_kind: Stack) -> None:
    async with rig(peer_kind, keys={"LocalAuthorizeOffline": True}) as r:
        r.charger.present("TAG-1", 1)  # known and Accepted: in the cache now
        await r.wait_status(1, "Preparing")
        r.charger.present("TAG-1", 1)
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Available")
        await offline_transaction(r, "TAG-1")
        start = (await r.wait_calls("StartTransaction"))[0]
        assert start["idTag"] == "TAG-1"
        await r.wait_status(1, "Charging")
        assert await r.transaction_id(1) > 0
        no_strict_failures(r)


@pytest.mark.parametrize(
    ("case", "stop_on_invalid"), [("TC_037_2_CS", False), ("TC_037_3_CS", True)]
)
async def test_tc_037_2_and_3_cs_offline_start_invalid_id_tag(
    peer_kind: Stack, case: str, stop_on_invalid: bool
) -> None:
    keys = {
        "LocalAuthorizeOffline": True,
        "AllowOfflineTxForUnknownId": True,
        "StopTransactionOnInvalidId": stop_on_invalid,
        "MaxEnergyOnInvalidId": 0,
    }
    async with rig(peer_kind, keys=keys) as r:
        await r.peer.configure(id_tags={"STOLEN": {"status": "Invalid"}})
        await offline_transaction(r, "STOLEN")
        await r.wait_calls("StartTransaction")
        await r.wait_status(1, "Charging")
        if stop_on_invalid:
            stop = (await r.wait_calls("StopTransaction"))[0]
            assert stop["reason"] == "DeAuthorized", case
            await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Finishing")
        else:
            await r.wait_status(1, "SuspendedEVSE")
            assert not r.charger.connector(1).delivering
            assert r.calls("StopTransaction") == []
        no_strict_failures(r)


async def test_tc_038_cs_offline_stop_transaction(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        transaction_id = await r.charging(1)
        await r.wait_status(1, "Charging")
        r.offline()
        await r.wait_offline()
        r.charger.present("TAG-1", 1)  # the driver stops it while offline
        await r.station.wait_until(lambda: r.station.transactions.connectors[0].transaction is None)
        r.online()
        await r.wait_calls("StopTransaction")
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Finishing")
        await settle(r)
        after = [m for m in wire(r) if m.connection > 1]
        # Step 1: reason Local or omitted. Step 3: Finishing (the cable is still in), the only
        # status of the connector after the reconnection; steps 1 and 3 in either order.
        stop = next(m.payload for m in after if m.is_("StopTransaction"))
        assert stop["transactionId"] == transaction_id
        assert stop.get("reason", "Local") == "Local"
        assert [s for s in statuses_in(after) if s[0] == 1] == [(1, "Finishing")]
        no_strict_failures(r)


async def test_tc_039_cs_offline_transaction(peer_kind: Stack) -> None:
    keys = {
        "LocalAuthorizeOffline": True,
        "AuthorizationCacheEnabled": True,
        "AllowOfflineTxForUnknownId": True,
    }
    async with rig(peer_kind, keys=keys) as r:
        await cache_id_tag(r, "TAG-1")  # memory state IdTagCached
        r.offline()
        await r.wait_offline()
        connector = r.station.transactions.connectors[0]
        r.charger.plug(1)
        r.charger.present("TAG-1", 1)  # starts offline
        await r.station.wait_until(lambda: connector.transaction is not None)
        r.charger.present("TAG-1", 1)  # stops offline
        await r.station.wait_until(lambda: connector.transaction is None)
        r.charger.unplug(1)
        r.online()
        await r.wait_calls("StopTransaction")
        messages = [m for m in wire(r) if m.connection > 1]
        # Steps 1 to 4, in this order: the stop needs the transactionId of step 2.
        start = index(messages, lambda m: m.is_("StartTransaction"))
        started = index(messages, lambda m: m.is_("StartTransaction", "conf"), start)
        stop = index(messages, lambda m: m.is_("StopTransaction"), started)
        assert (messages[start].payload["connectorId"], messages[start].payload["idTag"]) == (
            1,
            "TAG-1",
        )
        assert messages[started].payload["idTagInfo"]["status"] == "Accepted"
        assert messages[stop].payload["transactionId"] == messages[started].payload["transactionId"]
        assert messages[stop].payload.get("reason", "Local") == "Local"  # step 3
        assert len(r.calls("StartTransaction")) == len(r.calls("StopTransaction")) == 1
        # Both messages carry the charge point's own (offline) times and meter readings.
        assert instant(messages[start].payload["timestamp"]) <= instant(
            messages[stop].payload["timestamp"]
        )
        assert messages[stop].payload["meterStop"] >= messages[start].payload["meterStart"]
        no_strict_failures(r)


# -- 2.15 Configuration keys, non-happy --


async def test_tc_040_1_cs_configuration_key_not_supported(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        answer = await r.peer.call("ChangeConfiguration", {"key": "NoSuchKey", "value": "1"})
        assert answer == {"status": "NotSupported"}
        answer = await r.peer.call("GetConfiguration", {"key": ["NoSuchKey"]})
        assert answer == {"unknownKey": ["NoSuchKey"]}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("MeterValueSampleInterval", "-1"),
        ("MeterValueSampleInterval", "often"),
        ("WebSocketPingInterval", "-5"),
        ("MeterValuesSampledData", "Energy.Active.Import.Register,Temperature"),
        ("NumberOfConnectors", "3"),
    ],
)
async def test_tc_040_2_cs_configuration_key_invalid_value(
    peer_kind: Stack, key: str, value: str
) -> None:
    async with rig(peer_kind) as r:
        before = r.daemon.keys.get(key)
        answer = await r.peer.call("ChangeConfiguration", {"key": key, "value": value})
        assert answer == {"status": "Rejected"}
        assert r.daemon.keys.get(key) == before


# -- 2.16 Fault behaviour --


async def test_tc_041_cs_fault_behaviour(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        r.charger.raise_fault(1, "GroundFailure", "RCD tripped")
        faulted = await r.wait_status(1, "Faulted")
        assert (faulted["errorCode"], faulted["info"]) == ("GroundFailure", "RCD tripped")
        r.charger.plug(1)
        r.charger.present("TAG-1", 1)
        await settle(r)
        assert r.calls("StartTransaction") == []
        r.charger.clear_fault(1)
        await r.wait_status(1, "Preparing")
        no_strict_failures(r)


# -- 2.21 Remote trigger --


TRIGGERS = [
    ("BootNotification", None),
    ("Heartbeat", None),
    ("StatusNotification", 1),
    ("MeterValues", 1),
    ("DiagnosticsStatusNotification", None),
    ("FirmwareStatusNotification", None),
]


async def test_tc_054_cs_trigger_message(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        for message, connector in TRIGGERS:
            before = len(r.calls(message))
            params: dict[str, Any] = {"requestedMessage": message}
            if connector is not None:
                params["connectorId"] = connector
            assert await r.peer.call("TriggerMessage", params) == {"status": "Accepted"}
            sent = await r.wait_calls(message, before + 1)
            if message in ("DiagnosticsStatusNotification", "FirmwareStatusNotification"):
                assert sent[-1] == {"status": "Idle"}
            if connector is not None:
                assert sent[-1]["connectorId"] == connector
            if message == "MeterValues":
                assert sent[-1]["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"
        no_strict_failures(r)


async def test_a_message_triggered_before_the_boot_is_accepted_is_sent_once_it_is(
    peer_kind: Stack,
) -> None:
    # The session reads CSMS requests from the WebSocket's opening: a TriggerMessage can come
    # while the charge point is Pending. Its Accepted is a promise (§5.17): the Heartbeat goes
    # out once the boot is accepted (§4.2 allows nothing but BootNotification before).
    async with rig(peer_kind, boots="Pending:5,Accepted:300") as r:
        await r.peer.wait_for(lambda _: any(m.is_("BootNotification", "conf") for m in wire(r)))
        answer = await r.peer.call("TriggerMessage", {"requestedMessage": "Heartbeat"})
        assert answer == {"status": "Accepted"}
        await r.booted(2)
        await r.wait_calls("Heartbeat")
        messages = wire(r)
        pending = index(messages, lambda m: m.is_("BootNotification", "conf"))
        accepted = index(messages, lambda m: m.is_("BootNotification", "conf"), pending + 1)
        assert messages[accepted].payload["status"] == "Accepted"
        assert index(messages, lambda m: m.is_("Heartbeat")) > accepted
        no_strict_failures(r)


# ExtendedTriggerMessage (security whitepaper §5.5, §6.16): what each asks for, and the message
# that answers it (FirmwareStatusNotification asks for the signed update's notification).
EXTENDED_TRIGGERS = [
    ("BootNotification", None, "BootNotification"),
    ("Heartbeat", None, "Heartbeat"),
    ("StatusNotification", 2, "StatusNotification"),
    ("MeterValues", 1, "MeterValues"),
    ("LogStatusNotification", None, "LogStatusNotification"),
    ("FirmwareStatusNotification", None, "SignedFirmwareStatusNotification"),
]


async def test_extended_trigger_message_sends_each_message_it_names(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        for requested, connector, message in EXTENDED_TRIGGERS:
            before = len(r.calls(message))
            params: dict[str, Any] = {"requestedMessage": requested}
            if connector is not None:
                params["connectorId"] = connector
            answer = await r.peer.call("ExtendedTriggerMessage", params)
            assert answer == {"status": "Accepted"}, requested
            sent = await r.wait_calls(message, before + 1)
            if message in ("LogStatusNotification", "SignedFirmwareStatusNotification"):
                assert sent[-1] == {"status": "Idle"}  # nothing under way: no requestId
            if connector is not None:
                assert sent[-1]["connectorId"] == connector
        # A connector it does not have, and MeterValues for the whole charge point: Rejected.
        for params in (
            {"requestedMessage": "StatusNotification", "connectorId": 3},
            {"requestedMessage": "MeterValues", "connectorId": 0},
        ):
            assert await r.peer.call("ExtendedTriggerMessage", params) == {"status": "Rejected"}
        no_strict_failures(r)


async def test_tc_055_cs_trigger_message_rejected(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        params = {"requestedMessage": "MeterValues", "connectorId": 3}  # NumberOfConnectors + 1
        assert await r.peer.call("TriggerMessage", params) == {"status": "Rejected"}
        await settle(r)
        assert r.calls("MeterValues") == []


# -- 2.23 Data transfer --


async def test_tc_062_cs_data_transfer(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:
        answer = await r.peer.call("DataTransfer", {"vendorId": "com.example.unknown"})
        assert answer["status"] in ("Rejected", "UnknownVendorId")


# -- beyond OCTT: what a CSMS engineer would check next --


async def test_a_cached_id_starts_a_local_transaction_without_authorize(peer_kind: Stack) -> None:
    # TC_007_CS's cache, with the card presented at the charge point instead of a remote start.
    keys = {"LocalPreAuthorize": True, "AuthorizationCacheEnabled": True}
    async with rig(peer_kind, keys=keys) as r:
        await cache_id_tag(r, "TAG-1")
        r.charger.plug(1)
        r.charger.present("TAG-1", 1)
        await r.wait_calls("StartTransaction")
        assert len(r.calls("Authorize")) == 1  # the second time, from the cache
        await r.wait_status(1, "Charging")
        no_strict_failures(r)


async def test_transaction_messages_are_retried_after_call_errors(peer_kind: Stack) -> None:
    keys = {"TransactionMessageAttempts": 3, "TransactionMessageRetryInterval": 0}
    async with rig(peer_kind, keys=keys) as r:
        await r.peer.configure(fail={"StartTransaction": 2})
        transaction_id = await r.charging(1)
        starts = r.calls("StartTransaction")
        assert len(starts) == 3 and all(s == starts[0] for s in starts)
        assert transaction_id > 0


async def test_a_transaction_message_is_dropped_after_the_last_attempt(peer_kind: Stack) -> None:
    keys = {
        "TransactionMessageAttempts": 2,
        "TransactionMessageRetryInterval": 0,
        "MeterValueSampleInterval": 1,
    }
    async with rig(peer_kind, keys=keys) as r:
        await r.charging(1)
        await r.wait_calls("MeterValues", 1)
        await r.peer.configure(fail={"MeterValues": 2})
        count = len(r.calls("MeterValues"))
        await r.wait_calls("MeterValues", count + 3)
        assert r.station.outbox.dropped == 1  # logged, not silent (see the outbox)


async def test_authorization_key_change_reconnects_with_the_new_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Security whitepaper A01; the Python peer, whose password can change while it runs.
    caplog.set_level(logging.DEBUG)
    async with rig("python") as r:
        assert isinstance(r.peer, PythonCsms)
        new_key = "ffeeddccbbaa99887766554433221100ffeeddcc"
        answer = await r.peer.call(
            "ChangeConfiguration", {"key": "AuthorizationKey", "value": new_key}
        )
        assert answer == {"status": "Accepted"}
        r.peer.password = bytes.fromhex(new_key)
        await r.peer.wait_for(lambda events: sum(e["event"] == "connect" for e in events) >= 2)
        assert r.peer.count("auth_rejected") == 0
        answer = await r.peer.call("GetConfiguration", {"key": ["AuthorizationKey"]})
        assert answer == {"unknownKey": ["AuthorizationKey"]}  # write-only
        assert new_key not in caplog.text.lower()  # not even in the debug frame log


async def test_stop_transaction_carries_the_configured_transaction_data(peer_kind: Stack) -> None:
    # §3.16.6 (errata v4.0): Transaction.Begin, the samples, Transaction.End.
    keys = {"MeterValueSampleInterval": 1, "StopTxnSampledData": "Energy.Active.Import.Register"}
    async with rig(peer_kind, keys=keys) as r:
        await r.charging(1)
        await r.wait_calls("MeterValues", 2)
        r.charger.present("TAG-1", 1)
        stop = (await r.wait_calls("StopTransaction"))[0]
        data = stop["transactionData"]
        contexts = [value["sampledValue"][0]["context"] for value in data]
        assert contexts[0] == "Transaction.Begin" and contexts[-1] == "Transaction.End"
        assert contexts.count("Sample.Periodic") >= 2
        energies = [int(value["sampledValue"][0]["value"]) for value in data]
        assert energies == sorted(energies) and energies[-1] == stop["meterStop"]
        no_strict_failures(r)


async def test_no_transaction_data_when_the_stop_keys_are_empty(peer_kind: Stack) -> None:
    # Errata v3.0 §3.14.5.
    async with rig(peer_kind, keys={"MeterValueSampleInterval": 1}) as r:
        await r.charging(1)
        await r.wait_calls("MeterValues", 1)
        r.charger.present("TAG-1", 1)
        stop = (await r.wait_calls("StopTransaction"))[0]
        assert "transactionData" not in stop


async def test_heartbeat_interval_takes_effect_at_once(peer_kind: Stack) -> None:
    async with rig(peer_kind) as r:  # the CSMS said 300 s at boot
        answer = await r.peer.call(
            "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "1"}
        )
        assert answer == {"status": "Accepted"}
        await r.wait_calls("Heartbeat", 2, timeout=10)


async def test_minimum_status_duration_hides_a_flicker(peer_kind: Stack) -> None:
    async with rig(peer_kind, keys={"MinimumStatusDuration": 3}) as r:
        # Preparing, Available, Preparing again, each for far less than MinimumStatusDuration
        # (no await between them: the loop does nothing else meanwhile), so only the last,
        # stable one is reported.
        r.charger.plug(1)
        r.charger.unplug(1)
        r.charger.plug(1)
        await r.wait_status(1, "Preparing")
        assert r.status_sequence(1) == ["Available", "Preparing"]
