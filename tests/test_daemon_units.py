"""The pure parts of the daemon: back-off, the recovery ladder, and the CallError mapping."""

from __future__ import annotations

import random

import pytest

from chargepoint.app.backoff import Backoff
from chargepoint.app.daemon import recovery_step
from chargepoint.protocol.validation import message_id_of, validate_call_payload
from transport.link import RecoveryStep


def test_backoff_doubles_up_to_the_cap_and_never_drops_below_half() -> None:
    backoff = Backoff(1.0, 8.0, random.Random(1))
    delays = [backoff.next() for _ in range(8)]
    bases = [1, 2, 4, 8, 8, 8, 8, 8]
    for delay, base in zip(delays, bases, strict=True):
        assert base / 2 <= delay <= base
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.0


def test_backoff_jitter_spreads_chargers_apart() -> None:
    delays = {round(Backoff(10.0, 10.0, random.Random(seed)).next(), 3) for seed in range(20)}
    assert len(delays) == 20


def test_backoff_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 1)
    with pytest.raises(ValueError):
        Backoff(2, 1)


@pytest.mark.parametrize(
    ("failures", "step"),
    [
        (0, RecoveryStep.REOPEN),
        (1, RecoveryStep.REOPEN),
        (2, RecoveryStep.REOPEN),
        (3, RecoveryStep.REACTIVATE_PDP),
        (4, RecoveryStep.REOPEN),
        (6, RecoveryStep.RADIO_CYCLE),
        (9, RecoveryStep.RESTART_MODULE),
        (12, RecoveryStep.RESTART_MODULE),
        (13, RecoveryStep.REOPEN),
    ],
)
def test_recovery_escalates_every_third_link_failure(failures: int, step: RecoveryStep) -> None:
    assert recovery_step(failures) is step


@pytest.mark.parametrize(
    ("action", "payload", "code"),
    [
        ("DataTransfer", {"vendorId": "org.example"}, None),
        ("DataTransfer", {"vendorId": 7}, "TypeConstraintViolation"),
        ("DataTransfer", {}, "OccurenceConstraintViolation"),
        ("DataTransfer", {"vendorId": "v" * 256}, "PropertyConstraintViolation"),
        ("DataTransfer", {"vendorId": "v", "extra": 1}, "FormationViolation"),
        ("DataTransfer", ["not", "an", "object"], "FormationViolation"),
        (
            "ChangeAvailability",
            {"connectorId": 1, "type": "Sometimes"},
            "PropertyConstraintViolation",
        ),
        (
            "ChangeAvailability",
            {"connectorId": "1", "type": "Operative"},
            "TypeConstraintViolation",
        ),
        ("Reset", {"type": "Soft"}, None),
        # One-decimal values must not be spoilt by float parsing (like the library does it).
        (
            "RemoteStartTransaction",
            {
                "idTag": "A",
                "chargingProfile": {
                    "chargingProfileId": 1,
                    "stackLevel": 0,
                    "chargingProfilePurpose": "TxProfile",
                    "chargingProfileKind": "Absolute",
                    "chargingSchedule": {
                        "chargingRateUnit": "A",
                        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 21.4}],
                    },
                },
            },
            None,
        ),
    ],
)
def test_schema_violations_map_to_ocpp_j_16_codes(
    action: str, payload: object, code: str | None
) -> None:
    fault = validate_call_payload(action, payload)
    assert (fault.code if fault else None) == code


def test_message_id_is_recovered_from_a_broken_call() -> None:
    assert message_id_of('[2,"abc-123","DataTransfer",{"vendorId":') == "abc-123"
    assert message_id_of(' [ 2 , "x" ') == "x"
    assert message_id_of('[3,"abc",{}') is None  # not a CALL: nothing to answer
    assert message_id_of("garbage") is None
    assert message_id_of('[2,"' + "i" * 37 + '",') is None  # longer than OCPP-J allows
