"""The pure parts of the daemon: back-off, the recovery ladder, and the CallError mapping."""

from __future__ import annotations

import random

import pytest

from chargepoint.app.backoff import Backoff
from chargepoint.app.reconnect import Blame, Outcome, ReconnectPolicy, recovery_step
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


class _Profiles:
    """Stands in for SecurityProfiles: whether a raised profile is being tried, and the failed
    attempts reported to it."""

    def __init__(self, upgrading: bool = False) -> None:
        self.upgrading = upgrading
        self.failures: list[str] = []

    def failed(self, why: str, *, unauthorized: bool = False, handshake: bool = False) -> None:
        self.failures.append(why)


def _policy(upgrading: bool = False) -> tuple[ReconnectPolicy, _Profiles, list[float]]:
    now = [0.0]
    profiles = _Profiles(upgrading)
    policy = ReconnectPolicy(
        Backoff(1.0, 64.0, random.Random(2)),
        profiles,  # type: ignore[arg-type]
        clock=lambda: now[0],
    )
    return policy, profiles, now


LINK = Outcome(Blame.LINK, 0.0, "DNS failed")
REFUSED = Outcome(Blame.CSMS, 0.0, "566", refused=True)
BAD_CERTIFICATE = Outcome(Blame.CSMS, 0.0, "TLS", reached_server=True)


def test_only_link_failures_climb_and_the_csms_answering_resets_them() -> None:
    policy, _, _ = _policy()
    steps = [policy.after(LINK)[0] for _ in range(3)]
    assert steps[-1] is RecoveryStep.REACTIVATE_PDP
    # What follows is the CSMS's doing: no step again (it used to repeat PDP each time).
    assert {policy.after(o)[0] for o in (REFUSED, BAD_CERTIFICATE, REFUSED)} == {
        RecoveryStep.REOPEN
    }
    assert policy.link_failures == 0  # the certificate came back: the data link works
    assert [policy.after(LINK)[0] for _ in range(3)][-1] is RecoveryStep.REACTIVATE_PDP


def test_an_intentional_reconnect_waits_the_shortest_delay() -> None:
    policy, _, _ = _policy()
    for _ in range(6):
        policy.after(REFUSED)  # the back-off has grown to its cap
    reconnect = Outcome(Blame.CSMS, 5.0, "new password", opened=True, intentional=True)
    _, delay = policy.after(reconnect)
    assert delay <= 1.0


def test_refusals_for_half_an_hour_check_the_data_link_once_per_half_hour() -> None:
    policy, _, now = _policy()
    seen = []
    for minute in range(0, 91):
        now[0] = minute * 60.0
        seen.append((minute, policy.after(REFUSED)[0]))
    checks = [m for m, step in seen if step is not RecoveryStep.REOPEN]
    assert checks == [30, 60, 90]
    assert {step for _, step in seen if step is not RecoveryStep.REOPEN} == {
        RecoveryStep.REACTIVATE_PDP
    }
    # A certificate failure proves the link: it never triggers that check.
    policy, _, now = _policy()
    now[0] = 3600.0
    assert policy.after(BAD_CERTIFICATE)[0] is RecoveryStep.REOPEN


def test_while_a_raised_profile_is_tried_every_failure_counts_towards_falling_back() -> None:
    policy, profiles, _ = _policy(upgrading=True)
    steps = [policy.after(o)[0] for o in (LINK, LINK, LINK, REFUSED)]
    assert steps == [RecoveryStep.REOPEN] * 4  # not the module's fault while upgrading
    assert profiles.failures == ["DNS failed", "DNS failed", "DNS failed", "566"]
    policy.after(Outcome(Blame.CSMS, 70.0, "closed", opened=True))
    assert len(profiles.failures) == 4  # a session that opened is no failure
