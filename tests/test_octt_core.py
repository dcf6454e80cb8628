"""The OCA compliance cases (OCTT for OCPP 1.6, FINAL 2024-04, section 2) that apply to this
charge point: Core profile 2.1-2.16, Remote Trigger 2.21, DataTransfer 2.23.

Each test is named by its case id and follows the case's scenario: the CSMS side is one of the
two test peers (the Python `ocpp` CSMS, or `ocpp-rpc` in strict mode, which also validates every
message against the official schemas), the charge point runs on the simulated Quectel module,
and the "manual actions" of the cases (plug in, swipe a card, cut the power) are done on the
simulated charger. Cases that need hardware we do not have are noted where they would be.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.harness import Rig, rig, strict_failures
from tests.peers import PythonCsms

PEERS = ["python", "node"]


@pytest.fixture(params=PEERS)
def peer_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def no_strict_failures(r: Rig) -> None:
    assert strict_failures(r.peer) == []


async def settle(r: Rig) -> None:
    """Let the charge point send what it has to send (a Heartbeat round trip is the marker)."""
    before = len(r.calls("Heartbeat"))
    await r.peer.call("TriggerMessage", {"requestedMessage": "Heartbeat"})
    await r.wait_calls("Heartbeat", before + 1)


# -- 2.1 Cold boot --


async def test_tc_001_cs_cold_boot(peer_kind: str) -> None:
    async with rig(peer_kind) as r:
        boot = r.calls("BootNotification")
        assert len(boot) == 1
        assert boot[0]["chargePointVendor"] == "TestVendor"
        reported = {(p["connectorId"], p["status"]) for p in r.calls("StatusNotification")}
        assert reported == {(0, "Available"), (1, "Available"), (2, "Available")}
        no_strict_failures(r)


async def test_tc_002_cs_cold_boot_pending(peer_kind: str) -> None:
    async with rig(peer_kind, boots="Pending:2,Accepted:300") as r:
        await r.wait_calls("BootNotification", 1)
        # While Pending the CSMS may read and set configuration.
        answer = await r.peer.call("GetConfiguration", {"key": ["HeartbeatInterval"]})
        assert answer["configurationKey"][0]["key"] == "HeartbeatInterval"
        answer = await r.peer.call(
            "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "30"}
        )
        assert answer == {"status": "Accepted"}
        await r.booted(2)  # the second BootNotification is Accepted, then statuses
        assert r.daemon.keys.integer("MeterValueSampleInterval") == 30
        assert len(r.calls("StatusNotification")) == 3  # none while Pending
        no_strict_failures(r)


# -- 2.2 Start charging session --


async def test_tc_003_cs_plugin_first(peer_kind: str) -> None:
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


async def test_tc_004_1_cs_identification_first(peer_kind: str) -> None:
    async with rig(peer_kind) as r:
        r.charger.present("TAG-1", 1)
        await r.wait_calls("Authorize")
        await r.wait_status(1, "Preparing")
        assert r.calls("StartTransaction") == []
        r.charger.plug(1)
        await r.wait_calls("StartTransaction")
        await r.wait_status(1, "Charging")
        no_strict_failures(r)


async def test_tc_004_2_cs_identification_first_connection_timeout(peer_kind: str) -> None:
    async with rig(peer_kind, keys={"ConnectionTimeOut": 1}) as r:
        r.charger.present("TAG-1", 1)
        await r.wait_status(1, "Preparing")
        await r.wait_calls("StatusNotification", 5)
        assert r.status_sequence(1) == ["Available", "Preparing", "Available"]
        assert r.calls("StartTransaction") == []


# -- 2.3 Stop charging session --


async def test_tc_068_cs_stop_with_the_same_id_tag(peer_kind: str) -> None:
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


async def test_tc_069_cs_stop_with_a_card_of_the_same_parent(peer_kind: str) -> None:
    async with rig(peer_kind) as r:
        family = {"status": "Accepted", "parentIdTag": "FAMILY"}
        await r.peer.configure(id_tags={"TAG-1": family, "TAG-2": family})
        await r.charging(1, "TAG-1")
        r.charger.present("TAG-2", 1)
        stop = (await r.wait_calls("StopTransaction"))[0]
        assert stop["idTag"] == "TAG-2"
        assert [a["idTag"] for a in r.calls("Authorize")] == ["TAG-1", "TAG-2"]
        no_strict_failures(r)


async def test_a_stranger_cannot_stop_a_transaction(peer_kind: str) -> None:
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
    peer_kind: str, case: str, unlock: bool, locked_after: bool
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
    peer_kind: str, fixed_cable: bool
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


async def test_tc_007_cs_start_with_a_cached_id(peer_kind: str) -> None:
    keys = {"LocalPreAuthorize": True, "AuthorizationCacheEnabled": True}
    async with rig(peer_kind, keys=keys) as r:
        r.charger.present("TAG-1", 1)  # Authorize.conf Accepted goes into the cache
        await r.wait_calls("Authorize")
        await r.wait_status(1, "Preparing")
        r.charger.present("TAG-1", 1)  # withdrawn
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Available")
        r.charger.plug(1)
        r.charger.present("TAG-1", 1)
        await r.wait_calls("StartTransaction")
        assert len(r.calls("Authorize")) == 1  # the second time, from the cache
        await r.wait_status(1, "Charging")
        no_strict_failures(r)


async def test_tc_061_cs_clear_authorization_cache(peer_kind: str) -> None:
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


async def test_tc_010_cs_remote_start_cable_plugged_first(peer_kind: str) -> None:
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


async def test_tc_011_1_cs_remote_start_first(peer_kind: str) -> None:
    async with rig(peer_kind, keys={"AuthorizeRemoteTxRequests": False}) as r:
        answer = await r.peer.call("RemoteStartTransaction", {"idTag": "REMOTE"})
        assert answer == {"status": "Accepted"}
        await r.wait_status(1, "Preparing")
        r.charger.plug(1)
        await r.wait_calls("StartTransaction")
        await r.wait_status(1, "Charging")
        assert r.calls("Authorize") == []
        no_strict_failures(r)


async def test_tc_011_2_cs_remote_start_time_out(peer_kind: str) -> None:
    async with rig(peer_kind, keys={"ConnectionTimeOut": 1}) as r:
        await r.peer.call("RemoteStartTransaction", {"idTag": "REMOTE", "connectorId": 1})
        await r.wait_status(1, "Preparing")
        await r.peer.wait_for(
            lambda _: r.status_sequence(1) == ["Available", "Preparing", "Available"]
        )
        assert r.calls("StartTransaction") == []


async def test_tc_012_cs_remote_stop(peer_kind: str) -> None:
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
    peer_kind: str, case: str, kind: str
) -> None:
    async with rig(peer_kind) as r:
        assert await r.peer.call("Reset", {"type": kind}) == {"status": "Accepted"}, case
        await r.wait_stopped()
        assert r.daemon.reset_requested is not None
        assert r.daemon.reset_requested.value == kind
        await r.restart()  # what the reset hook does on a controller
        await r.booted(2)
        assert r.calls("StopTransaction") == []
        no_strict_failures(r)


@pytest.mark.parametrize(("case", "kind"), [("TC_015_CS", "Hard"), ("TC_016_CS", "Soft")])
async def test_tc_015_and_016_cs_reset_with_transaction(
    peer_kind: str, case: str, kind: str
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


async def test_tc_017_1_cs_unlock_without_transaction(peer_kind: str) -> None:
    async with rig(peer_kind) as r:
        assert await r.peer.call("UnlockConnector", {"connectorId": 1}) == {"status": "Unlocked"}


async def test_tc_017_2_cs_unlock_fixed_cable(peer_kind: str) -> None:
    async with rig(peer_kind, charger={"fixed_cable": True}) as r:
        answer = await r.peer.call("UnlockConnector", {"connectorId": 1})
        assert answer == {"status": "NotSupported"}


async def test_tc_018_1_cs_unlock_with_transaction(peer_kind: str) -> None:
    async with rig(peer_kind) as r:
        transaction_id = await r.charging(1)
        assert await r.peer.call("UnlockConnector", {"connectorId": 1}) == {"status": "Unlocked"}
        stop = (await r.wait_calls("StopTransaction"))[0]
        assert (stop["transactionId"], stop["reason"]) == (transaction_id, "UnlockCommand")
        await r.wait_status(1, "Finishing")
        r.charger.unplug(1)
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-1] == "Available")
        no_strict_failures(r)


async def test_tc_018_2_cs_unlock_fixed_cable_with_transaction(peer_kind: str) -> None:
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


async def test_tc_019_cs_retrieve_configuration(peer_kind: str) -> None:
    async with rig(peer_kind) as r:
        answer = await r.peer.call("GetConfiguration", {"key": ["SupportedFeatureProfiles"]})
        assert "unknownKey" not in answer
        assert answer["configurationKey"] == [
            {
                "key": "SupportedFeatureProfiles",
                "readonly": True,
                "value": "Core,FirmwareManagement,RemoteTrigger",
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


async def test_tc_021_cs_change_configuration(peer_kind: str) -> None:
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


async def test_tc_070_cs_sampled_meter_values(peer_kind: str) -> None:
    keys = {
        "MeterValueSampleInterval": 1,
        "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import,SoC",
    }
    async with rig(peer_kind, keys=keys) as r:
        transaction_id = await r.charging(1)
        values = await r.wait_calls("MeterValues", 3)
        energies = []
        for message in values[:3]:
            assert (message["connectorId"], message["transactionId"]) == (1, transaction_id)
            sampled = message["meterValue"][0]["sampledValue"]
            assert {s["context"] for s in sampled} == {"Sample.Periodic"}
            by_measurand = {s["measurand"]: s for s in sampled}
            assert set(by_measurand) == {
                "Energy.Active.Import.Register",
                "Power.Active.Import",
                "SoC",
            }
            assert by_measurand["Energy.Active.Import.Register"]["unit"] == "Wh"
            assert by_measurand["Power.Active.Import"]["unit"] == "W"
            assert by_measurand["SoC"]["unit"] == "Percent"
            energies.append(int(by_measurand["Energy.Active.Import.Register"]["value"]))
        assert energies == sorted(energies)
        no_strict_failures(r)


async def test_tc_071_cs_clock_aligned_meter_values(peer_kind: str) -> None:
    keys = {
        "ClockAlignedDataInterval": 2,
        "MeterValuesAlignedData": "Energy.Active.Import.Register",
    }
    async with rig(peer_kind, keys=keys) as r:
        transaction_id = await r.charging(1)

        def aligned(_: object = None) -> list[dict[str, Any]]:
            # A backlog may arrive as one message with several meterValue elements.
            return [
                value
                for message in r.calls("MeterValues")
                if message.get("transactionId") == transaction_id
                for value in message["meterValue"]
            ]

        await r.peer.wait_for(lambda _: len(aligned()) >= 3)
        stamps = []
        for value in aligned():
            assert value["sampledValue"][0]["context"] == "Sample.Clock"
            seconds = int(value["timestamp"][17:19])
            assert seconds % 2 == 0, value["timestamp"]
            assert value["timestamp"][20:23] == "000"
            stamps.append(value["timestamp"])
        assert stamps == sorted(stamps)
        # Connector 2 has no transaction: its clock-aligned values go out without one.
        idle = [m for m in r.calls("MeterValues") if m["connectorId"] == 2]
        assert idle and all("transactionId" not in m for m in idle)
        no_strict_failures(r)


# -- 2.10 Basic actions, non-happy --


async def test_tc_023_cs_authorize_invalid(peer_kind: str) -> None:
    async with rig(peer_kind) as r:
        await r.peer.configure(id_tags={"BAD": {"status": "Invalid"}})
        r.charger.plug(1)
        await r.wait_status(1, "Preparing")
        r.charger.present("BAD", 1)
        await r.wait_calls("Authorize")
        await settle(r)
        assert r.calls("StartTransaction") == []
        assert not r.charger.connector(1).delivering


async def test_tc_024_cs_lock_failure(peer_kind: str) -> None:
    async with rig(peer_kind) as r:
        answer = await r.peer.call("GetConfiguration", {"key": ["AuthorizeRemoteTxRequests"]})
        assert answer["configurationKey"][0]["key"] == "AuthorizeRemoteTxRequests"
        r.charger.connector(1).lock_fails = True
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


async def test_tc_026_cs_remote_start_rejected_while_charging(peer_kind: str) -> None:
    async with rig(peer_kind, keys={"LocalPreAuthorize": False}) as r:
        await r.charging(1)
        answer = await r.peer.call("RemoteStartTransaction", {"idTag": "OTHER", "connectorId": 1})
        assert answer == {"status": "Rejected"}


async def test_tc_027_cs_remote_start_on_connector_0(peer_kind: str) -> None:
    async with rig(peer_kind) as r:
        answer = await r.peer.call("RemoteStartTransaction", {"idTag": "REMOTE", "connectorId": 0})
        assert answer == {"status": "Rejected"}
        await settle(r)
        assert r.calls("StartTransaction") == []


async def test_tc_028_cs_remote_stop_unknown_transaction(peer_kind: str) -> None:
    async with rig(peer_kind) as r:
        await r.charging(1)
        answer = await r.peer.call("RemoteStopTransaction", {"transactionId": 424242})
        assert answer == {"status": "Rejected"}
        assert r.station.transactions.connectors[0].transaction is not None


# -- 2.12 Unlock, non-happy --


async def test_tc_030_cs_unlock_failure(peer_kind: str) -> None:
    async with rig(peer_kind) as r:
        r.charger.connector(1).unlock_fails = True
        answer = await r.peer.call("UnlockConnector", {"connectorId": 1})
        assert answer == {"status": "UnlockFailed"}


async def test_tc_031_cs_unlock_unknown_connector(peer_kind: str) -> None:
    async with rig(peer_kind) as r:
        answer = await r.peer.call("UnlockConnector", {"connectorId": 3})
        assert answer == {"status": "NotSupported"}


# -- 2.13 Power failure --


async def test_tc_032_1_cs_power_failure_stops_transactions_before_going_down(
    peer_kind: str,
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


async def test_tc_032_2_cs_power_failure_stops_transactions_after_boot(peer_kind: str) -> None:
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


async def test_tc_032_2_cs_power_failure_resumes_when_configured(peer_kind: str) -> None:
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


async def test_tc_034_cs_power_failure_keeps_unavailable(peer_kind: str) -> None:
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


async def test_change_availability_is_scheduled_while_charging(peer_kind: str) -> None:
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
    peer_kind: str,
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


async def test_tc_036_cs_connection_loss_during_transaction(peer_kind: str) -> None:
    async with rig(peer_kind, keys={"MeterValueSampleInterval": 1}) as r:
        transaction_id = await r.charging(1)
        await r.wait_calls("MeterValues", 1)
        r.offline()
        await r.wait_offline()
        await r.station.wait_until(lambda: len(r.station.outbox) >= 3)
        sent_before = len(r.calls("MeterValues"))
        r.online()
        await r.wait_online()
        await r.peer.wait_for(lambda _: len(r.calls("MeterValues")) >= sent_before + 3)
        values = r.calls("MeterValues")
        stamps = [m["meterValue"][0]["timestamp"] for m in values]
        assert stamps == sorted(stamps)  # chronological, the queued ones first
        assert {m["transactionId"] for m in values} == {transaction_id}
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


async def test_tc_037_1_cs_offline_start_valid_id_tag(peer_kind: str) -> None:
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
    peer_kind: str, case: str, stop_on_invalid: bool
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


async def test_tc_038_cs_offline_stop_transaction(peer_kind: str) -> None:
    async with rig(peer_kind) as r:
        transaction_id = await r.charging(1)
        r.offline()
        await r.wait_offline()
        r.charger.present("TAG-1", 1)
        await r.station.wait_until(lambda: r.station.transactions.connectors[0].transaction is None)
        r.online()
        stop = (await r.wait_calls("StopTransaction"))[0]
        assert (stop["transactionId"], stop["reason"]) == (transaction_id, "Local")
        no_strict_failures(r)


async def test_tc_039_cs_offline_transaction(peer_kind: str) -> None:
    keys = {"LocalAuthorizeOffline": True, "AllowOfflineTxForUnknownId": True}
    async with rig(peer_kind, keys=keys) as r:
        r.offline()
        await r.wait_offline()
        r.charger.plug(1)
        r.charger.present("TAG-9", 1)
        await r.station.wait_until(
            lambda: r.station.transactions.connectors[0].transaction is not None
        )
        r.charger.present("TAG-9", 1)
        await r.station.wait_until(lambda: r.station.transactions.connectors[0].transaction is None)
        r.online()
        stop = (await r.wait_calls("StopTransaction"))[0]
        start = r.calls("StartTransaction")[0]
        assert start["idTag"] == "TAG-9"
        # The id the CSMS gave in StartTransaction.conf went into the StopTransaction.
        assert stop["transactionId"] == r.csms_transaction_ids()[0]
        assert stop["meterStop"] >= start["meterStart"]
        no_strict_failures(r)


# -- 2.15 Configuration keys, non-happy --


async def test_tc_040_1_cs_configuration_key_not_supported(peer_kind: str) -> None:
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
    peer_kind: str, key: str, value: str
) -> None:
    async with rig(peer_kind) as r:
        before = r.daemon.keys.get(key)
        answer = await r.peer.call("ChangeConfiguration", {"key": key, "value": value})
        assert answer == {"status": "Rejected"}
        assert r.daemon.keys.get(key) == before


# -- 2.16 Fault behaviour --


async def test_tc_041_cs_fault_behaviour(peer_kind: str) -> None:
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


async def test_tc_054_cs_trigger_message(peer_kind: str) -> None:
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


async def test_tc_055_cs_trigger_message_rejected(peer_kind: str) -> None:
    async with rig(peer_kind) as r:
        params = {"requestedMessage": "MeterValues", "connectorId": 3}  # NumberOfConnectors + 1
        assert await r.peer.call("TriggerMessage", params) == {"status": "Rejected"}
        await settle(r)
        assert r.calls("MeterValues") == []


# -- 2.23 Data transfer --


async def test_tc_062_cs_data_transfer(peer_kind: str) -> None:
    async with rig(peer_kind) as r:
        answer = await r.peer.call("DataTransfer", {"vendorId": "com.example.unknown"})
        assert answer["status"] in ("Rejected", "UnknownVendorId")


# -- beyond OCTT: what a CSMS engineer would check next --


async def test_transaction_messages_are_retried_after_call_errors(peer_kind: str) -> None:
    keys = {"TransactionMessageAttempts": 3, "TransactionMessageRetryInterval": 0}
    async with rig(peer_kind, keys=keys) as r:
        await r.peer.configure(fail={"StartTransaction": 2})
        transaction_id = await r.charging(1)
        starts = r.calls("StartTransaction")
        assert len(starts) == 3 and all(s == starts[0] for s in starts)
        assert transaction_id > 0


async def test_a_transaction_message_is_dropped_after_the_last_attempt(peer_kind: str) -> None:
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


async def test_stop_transaction_carries_the_configured_transaction_data(peer_kind: str) -> None:
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


async def test_no_transaction_data_when_the_stop_keys_are_empty(peer_kind: str) -> None:
    # Errata v3.0 §3.14.5.
    async with rig(peer_kind, keys={"MeterValueSampleInterval": 1}) as r:
        await r.charging(1)
        await r.wait_calls("MeterValues", 1)
        r.charger.present("TAG-1", 1)
        stop = (await r.wait_calls("StopTransaction"))[0]
        assert "transactionData" not in stop


async def test_heartbeat_interval_takes_effect_at_once(peer_kind: str) -> None:
    async with rig(peer_kind) as r:  # the CSMS said 300 s at boot
        answer = await r.peer.call(
            "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "1"}
        )
        assert answer == {"status": "Accepted"}
        await r.wait_calls("Heartbeat", 2, timeout=10)


async def test_minimum_status_duration_hides_a_flicker(peer_kind: str) -> None:
    async with rig(peer_kind, keys={"MinimumStatusDuration": 1}) as r:
        r.charger.plug(1)
        await asyncio.sleep(0.3)  # Preparing for less than MinimumStatusDuration...
        r.charger.unplug(1)  # ...so neither it nor the way back is reported
        await asyncio.sleep(0.3)
        r.charger.plug(1)
        await r.wait_status(1, "Preparing")
        assert r.status_sequence(1) == ["Available", "Preparing"]
