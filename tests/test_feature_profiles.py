"""Feature profiles per deployment (issue 14 item 1): ``charge_point.feature_profiles`` lists
what this charger offers, ``SupportedFeatureProfiles`` reports exactly that, and a request of a
profile it does not offer is answered as OCPP prescribes: ReserveNow.conf Rejected (OCTT
TC_048_4_CS, TC_050_4_CS), else the CallError NotSupported (OCPP-J 1.6 §4.2.3: a known action
the charge point does not support). Through the daemon, the module simulator and both CSMSs.
The profiles when offered: tests/test_octt_local_list.py, tests/test_octt_reservation.py.
"""

from __future__ import annotations

import pytest

from config.loader import ConfigError
from tests.harness import STACKS, Stack, make_config, rig
from tests.peers import CsmsCallError


@pytest.fixture(params=STACKS, ids=str)
def peer_kind(request: pytest.FixtureRequest) -> Stack:
    """Both CSMS peers and both module families, paired (tests/harness.py)."""
    stack: Stack = request.param
    return stack


async def _supported(r: object) -> str:
    answer = await r.peer.call(  # type: ignore[attr-defined]
        "GetConfiguration", {"key": ["SupportedFeatureProfiles"]}
    )
    (key,) = answer["configurationKey"]
    return str(key["value"])


async def test_tc_048_4_and_tc_050_4_cs_reservation_not_supported_is_rejected(
    peer_kind: Stack,
) -> None:
    profiles = ["Core", "FirmwareManagement", "LocalAuthListManagement", "RemoteTrigger"]
    async with rig(peer_kind, charge_point={"feature_profiles": profiles}) as r:
        assert "Reservation" not in (await _supported(r)).split(",")
        answer = await r.peer.call("GetConfiguration", {"key": ["ReserveConnectorZeroSupported"]})
        assert answer.get("unknownKey") == ["ReserveConnectorZeroSupported"]
        statuses = len(r.calls("StatusNotification"))
        # TC_048_4: a connector; TC_050_4: the charge point as a whole (connectorId 0).
        for reservation_id, connector in ((41, 1), (42, 0)):
            answer = await r.peer.call(
                "ReserveNow",
                {
                    "connectorId": connector,
                    "expiryDate": "2030-01-01T00:00:00Z",
                    "idTag": "RESERVER",
                    "reservationId": reservation_id,
                },
            )
            assert answer == {"status": "Rejected"}, connector
        answer = await r.peer.call("CancelReservation", {"reservationId": 41})
        assert answer == {"status": "Rejected"}  # none was made
        # "The Charge Point continues normal operation": nothing Reserved, and it still charges.
        await r.charging(1)
        after = r.calls("StatusNotification")[statuses:]
        assert "Reserved" not in {s["status"] for s in after}


async def test_a_core_only_deployment_reports_core_and_refuses_the_other_profiles(
    peer_kind: Stack,
) -> None:
    async with rig(peer_kind, charge_point={"feature_profiles": ["Core"]}) as r:
        assert await _supported(r) == "Core"
        for action, payload in (
            ("TriggerMessage", {"requestedMessage": "Heartbeat"}),  # RemoteTrigger
            (
                "UpdateFirmware",  # FirmwareManagement
                {"location": "http://127.0.0.1:9/fw.bin", "retrieveDate": "2030-01-01T00:00:00Z"},
            ),
            ("GetDiagnostics", {"location": "http://127.0.0.1:9/up/"}),
            ("SendLocalList", {"listVersion": 1, "updateType": "Full"}),  # LocalAuthList...
            ("GetLocalListVersion", {}),
            ("ClearChargingProfile", {}),  # SmartCharging
            ("GetCompositeSchedule", {"connectorId": 1, "duration": 60}),
        ):
            with pytest.raises(CsmsCallError) as refused:
                await r.peer.call(action, payload)
            assert refused.value.code == "NotSupported", action
        # The profiles' keys are not there either.
        profile_keys = ["LocalAuthListEnabled", "ReserveConnectorZeroSupported"]
        profile_keys += ["ChargeProfileMaxStackLevel", "MaxChargingProfilesInstalled"]
        answer = await r.peer.call("GetConfiguration", {"key": profile_keys})
        assert sorted(answer["unknownKey"]) == sorted(profile_keys)
        # Core goes on as before.
        answer = await r.peer.call(
            "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "90"}
        )
        assert answer == {"status": "Accepted"}
        await r.charging(1)
        assert [c for c in r.calls("FirmwareStatusNotification")] == []


def test_a_deployment_without_core_or_with_an_unknown_profile_is_refused_at_start() -> None:
    for profiles, wrong in ((["RemoteTrigger"], "Core"), (["Core", "Teleport"], "Teleport")):
        with pytest.raises(ConfigError) as refused:
            make_config("ws://127.0.0.1:9/ocpp", charge_point={"feature_profiles": profiles})
        assert "feature_profiles" in str(refused.value) and wrong in str(refused.value)
