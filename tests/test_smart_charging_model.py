"""The Smart Charging model against OCPP 1.6 §3.13, §5.5, §5.7, §5.16, §7.8-§7.14, §9.4, the
errata sheet v4.0 on them, and the composite schedules OCTT section 2.22 expects (TC_056,
TC_057, TC_066, TC_067, TC_072).

The OCTT cases install their profiles "now minus the configured time deviation" and ask for the
composite x seconds later; here the profiles start at T0 and the composite at T0 + X, so an
expected "startPeriod (100 - x)" reads ``100 - X``.

The property tests compare :func:`composite_schedule` with a brute-force evaluation written
here from the rules, second by second, and check that :func:`next_change_after` misses no
change.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from chargepoint.model.smart_charging import (
    DAY,
    WEEK,
    ActiveTransaction,
    ChargingLimit,
    ChargingProfile,
    ChargingProfileError,
    ChargingProfileKind,
    ChargingProfilePurpose,
    ChargingRateUnit,
    ChargingSchedule,
    ChargingSchedulePeriod,
    InstalledProfile,
    ProfileLimits,
    RecurrencyKind,
    cleared_ids,
    composite_schedule,
    expired_ids,
    limit_at,
    next_change_after,
    rejection_reason,
    remote_start_rejection,
    replaced_ids,
    tx_profile_ids,
)

A, W = ChargingRateUnit.A, ChargingRateUnit.W
CP_MAX = ChargingProfilePurpose.CHARGE_POINT_MAX
TX_DEFAULT = ChargingProfilePurpose.TX_DEFAULT
TX = ChargingProfilePurpose.TX
ABSOLUTE = ChargingProfileKind.ABSOLUTE
RECURRING = ChargingProfileKind.RECURRING
RELATIVE = ChargingProfileKind.RELATIVE
DAILY, WEEKLY = RecurrencyKind.DAILY, RecurrencyKind.WEEKLY

T0 = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)  # a Monday
X = 3  # seconds between installing the OCTT profiles and asking for the composite
LOCAL = ChargingLimit(32.0, A, 3)  # the charger's own maximum
LIMITS = ProfileLimits.from_keys(
    max_stack_level=8, max_periods=6, allowed_units="Current,Power", max_installed=10
)
TRANSACTION = ActiveTransaction(42, T0 - timedelta(minutes=5))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def profile(
    profile_id: int,
    purpose: ChargingProfilePurpose,
    periods: list[tuple[int, float]] | list[tuple[int, float, int | None]],
    *,
    stack_level: int = 0,
    kind: ChargingProfileKind = ABSOLUTE,
    start: datetime | None = T0,
    duration: int | None = None,
    unit: ChargingRateUnit = A,
    recurrency: RecurrencyKind | None = None,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
    transaction_id: int | None = None,
    min_rate: float | None = None,
) -> ChargingProfile:
    return ChargingProfile(
        id=profile_id,
        stack_level=stack_level,
        purpose=purpose,
        kind=kind,
        schedule=ChargingSchedule(
            unit,
            tuple(ChargingSchedulePeriod(*p) for p in periods),
            duration,
            None if kind is RELATIVE else start,
            min_rate,
        ),
        recurrency_kind=recurrency,
        valid_from=valid_from,
        valid_to=valid_to,
        transaction_id=transaction_id,
    )


def steps(schedule: ChargingSchedule) -> list[tuple[int, float]]:
    return [(p.start_period, p.limit) for p in schedule.periods]


def composite(
    installed: list[InstalledProfile],
    connector_id: int = 1,
    start: datetime = T0 + timedelta(seconds=X),
    duration: int = 350,
    **options: Any,
) -> ChargingSchedule:
    options.setdefault("local_limit", LOCAL)
    return composite_schedule(installed, connector_id, start, duration, **options)


# --- Parsing ----------------------------------------------------------------------------------

# The informative example of §3.13.7: a daily default profile, 6 kW from 08:00 to 20:00.
EXAMPLE: dict[str, Any] = {
    "chargingProfileId": 100,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxDefaultProfile",
    "chargingProfileKind": "Recurring",
    "recurrencyKind": "Daily",
    "chargingSchedule": {
        "duration": 86400,
        "startSchedule": "2013-01-01T00:00Z",
        "chargingRateUnit": "W",
        "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 11000, "numberPhases": 3},
            {"startPeriod": 28800, "limit": 6000, "numberPhases": 3},
            {"startPeriod": 72000, "limit": 11000, "numberPhases": 3},
        ],
    },
}


def test_the_example_profile_of_section_3_13_7_parses_into_the_model() -> None:
    parsed = ChargingProfile.from_json(EXAMPLE)
    assert parsed.id == 100
    assert parsed.purpose is TX_DEFAULT
    assert parsed.kind is RECURRING
    assert parsed.recurrency_kind is DAILY
    assert parsed.schedule.start_schedule == datetime(2013, 1, 1, tzinfo=UTC)
    assert parsed.schedule.charging_rate_unit is W
    assert parsed.schedule.periods[1] == ChargingSchedulePeriod(28800, 6000.0, 3)
    assert rejection_reason(0, parsed, LIMITS) is None


def test_the_example_profile_limits_power_from_8_to_20_every_day() -> None:
    installed = [InstalledProfile(0, ChargingProfile.from_json(EXAMPLE))]
    day = datetime(2024, 3, 5, tzinfo=UTC)
    schedule = composite(installed, start=day, duration=DAY, unit=W)
    assert steps(schedule) == [(0, 11000), (8 * 3600, 6000), (20 * 3600, 11000)]


def test_json_round_trip_keeps_every_field() -> None:
    original = profile(
        7,
        TX,
        [(0, 16.0, 1), (600, 8.5, None)],
        stack_level=2,
        duration=1800,
        valid_from=at(-60),
        valid_to=at(3600),
        transaction_id=42,
        min_rate=6.1,
    )
    assert ChargingProfile.from_json(original.to_json()) == original


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-04T12:00:00Z", T0),
        ("2024-03-04T12:00:00.000Z", T0),
        ("2024-03-04T14:00:00+02:00", T0),
        ("2024-03-04T07:00:00-05:00", T0),
        ("2024-03-04T12:00:00", T0),  # no offset: UTC, the recommended zone (§3.14)
        ("2024-03-04T12:00:00.250Z", T0 + timedelta(milliseconds=250)),
    ],
)
def test_timestamps_are_read_as_aware_utc(text: str, expected: datetime) -> None:
    data = {**EXAMPLE, "validFrom": text}
    parsed = ChargingProfile.from_json(data).valid_from
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"chargingProfileId": None}, "chargingProfileId"),
        ({"stackLevel": "1"}, "stackLevel"),
        ({"stackLevel": True}, "stackLevel"),
        ({"chargingProfilePurpose": "Everything"}, "Everything"),
        ({"chargingProfileKind": "Sometimes"}, "Sometimes"),
        ({"recurrencyKind": "Monthly"}, "Monthly"),
        ({"validTo": "tomorrow"}, "tomorrow"),
        ({"chargingSchedule": "none"}, "chargingSchedule"),
    ],
)
def test_malformed_profiles_raise_a_profile_error_naming_the_field(
    change: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ChargingProfileError, match=complaint):
        ChargingProfile.from_json({**EXAMPLE, **change})


def test_a_schedule_without_its_unit_or_periods_is_malformed() -> None:
    schedule = dict(EXAMPLE["chargingSchedule"])
    del schedule["chargingRateUnit"]
    with pytest.raises(ChargingProfileError, match="chargingRateUnit is missing"):
        ChargingProfile.from_json({**EXAMPLE, "chargingSchedule": schedule})
    schedule = {**EXAMPLE["chargingSchedule"], "chargingRateUnit": "kW"}
    with pytest.raises(ChargingProfileError, match="kW"):
        ChargingProfile.from_json({**EXAMPLE, "chargingSchedule": schedule})


def test_whole_numbers_written_as_decimals_are_integers() -> None:
    parsed = ChargingProfile.from_json({**EXAMPLE, "stackLevel": 2.0})
    assert parsed.stack_level == 2
    with pytest.raises(ChargingProfileError, match="stackLevel"):
        ChargingProfile.from_json({**EXAMPLE, "stackLevel": 2.5})


def test_composite_json_omits_start_schedule_only_when_asked() -> None:
    schedule = composite([], start=T0, duration=60)
    assert schedule.to_json()["startSchedule"] == "2024-03-04T12:00:00.000Z"
    # Errata §3.57: in GetCompositeSchedule.conf, scheduleStart carries the instant.
    assert schedule.to_json(with_start=False) == {
        "duration": 60,
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 32.0, "numberPhases": 3}],
    }


def test_configuration_keys_give_the_limits() -> None:
    limits = ProfileLimits.from_keys(
        max_stack_level=3, max_periods=4, allowed_units=["Power"], max_installed=None
    )
    assert limits.allowed_units == {W}
    assert ProfileLimits.from_keys(
        max_stack_level=3, max_periods=4, allowed_units="Current"
    ).allowed_units == {A}
    with pytest.raises(ValueError, match="Current and Power"):
        ProfileLimits.from_keys(max_stack_level=3, max_periods=4, allowed_units="A,W")


# --- SetChargingProfile: why Rejected -----------------------------------------------------------

GOOD_TX_DEFAULT = profile(1, TX_DEFAULT, [(0, 16.0)])


@pytest.mark.parametrize(
    ("connector_id", "candidate", "limits", "reason"),
    [
        (1, replace(GOOD_TX_DEFAULT, stack_level=9), LIMITS, "ChargeProfileMaxStackLevel"),
        (1, replace(GOOD_TX_DEFAULT, stack_level=-1), LIMITS, "negative"),
        (1, profile(1, TX_DEFAULT, [(0, 6.0)] * 7), LIMITS, "ChargingScheduleMaxPeriods"),
        (1, profile(1, TX_DEFAULT, [(10, 6.0)]), LIMITS, "first period must start at 0"),
        (1, profile(1, TX_DEFAULT, [(0, 6.0), (60, 7), (60, 8)]), LIMITS, "increasing"),
        (1, profile(1, TX_DEFAULT, [(0, 6.0), (60, 7), (30, 8)]), LIMITS, "increasing"),
        (1, profile(1, TX_DEFAULT, []), LIMITS, "no chargingSchedulePeriod"),
        (1, profile(1, TX_DEFAULT, [(0, -1.0)]), LIMITS, "limit -1.0 is negative"),
        (1, profile(1, TX_DEFAULT, [(0, math.nan)]), LIMITS, "limit nan"),
        (1, profile(1, TX_DEFAULT, [(0, 6.0, 4)]), LIMITS, "numberPhases 4"),
        (1, profile(1, TX_DEFAULT, [(0, 6.0, 0)]), LIMITS, "numberPhases 0"),
        (1, profile(1, TX_DEFAULT, [(0, 6.0)], duration=-5), LIMITS, "duration -5"),
        (
            1,
            profile(1, TX_DEFAULT, [(0, 6.0)], unit=W),
            replace(LIMITS, allowed_units=frozenset({A})),
            "chargingRateUnit W is not allowed",
        ),
        (
            1,
            profile(1, TX_DEFAULT, [(0, 6.0)]),
            replace(LIMITS, allowed_units=frozenset({W})),
            "chargingRateUnit A is not allowed",
        ),
        (1, profile(1, TX_DEFAULT, [(0, 6.0)], kind=RECURRING), LIMITS, "recurrencyKind"),
        (
            1,
            profile(1, TX_DEFAULT, [(0, 6.0)], kind=RECURRING, recurrency=DAILY, start=None),
            LIMITS,
            "Recurring profile needs a startSchedule",
        ),
        (1, profile(1, TX_DEFAULT, [(0, 6.0)], recurrency=DAILY), LIMITS, "errata §3.56"),
        (0, profile(1, CP_MAX, [(0, 6.0)], kind=RELATIVE), LIMITS, "Absolute or Recurring"),
        (0, profile(1, CP_MAX, [(0, 6.0)], start=None), LIMITS, "Absolute or Recurring"),
        (1, profile(1, CP_MAX, [(0, 6.0)]), LIMITS, "only be set on connector 0"),
        (0, profile(1, TX, [(0, 6.0)]), LIMITS, "connector > 0"),
        (1, profile(1, TX_DEFAULT, [(0, 6.0)], transaction_id=42), LIMITS, "only for a TxProfile"),
        (
            1,
            profile(1, TX_DEFAULT, [(0, 6.0)], valid_from=at(10), valid_to=at(10)),
            LIMITS,
            "never be valid",
        ),
    ],
)
def test_a_profile_is_rejected_with_a_reason(
    connector_id: int, candidate: ChargingProfile, limits: ProfileLimits, reason: str
) -> None:
    found = rejection_reason(connector_id, candidate, limits, transaction=TRANSACTION)
    assert found is not None
    assert reason in found


@pytest.mark.parametrize(
    ("connector_id", "candidate"),
    [
        (1, GOOD_TX_DEFAULT),
        (0, GOOD_TX_DEFAULT),  # connector 0: for every connector (errata §3.53)
        (0, profile(1, CP_MAX, [(0, 6.0)])),
        (1, profile(1, TX_DEFAULT, [(0, 6.0)], kind=RELATIVE)),
        (1, profile(1, TX_DEFAULT, [(0, 6.0)], kind=RECURRING, recurrency=WEEKLY)),
        (1, profile(1, TX_DEFAULT, [(0, 6.0)], kind=RECURRING, recurrency=DAILY, duration=2 * DAY)),
        (1, profile(1, TX_DEFAULT, [(0, 0.0, 3)] * 1 + [(60, 8.1, 1)], stack_level=8)),
        (1, profile(1, TX, [(0, 6.0)], transaction_id=42)),
        (1, profile(1, TX, [(0, 6.0)], kind=RELATIVE)),  # transactionId is optional
        (1, profile(1, TX, [(0, 6.0)], start=None)),  # Absolute without startSchedule: §7.13
        (1, profile(1, TX, [(0, 6.0)], valid_from=at(0), valid_to=at(60))),  # errata §3.65-66
    ],
)
def test_a_sound_profile_is_accepted(connector_id: int, candidate: ChargingProfile) -> None:
    assert rejection_reason(connector_id, candidate, LIMITS, transaction=TRANSACTION) is None


def test_tc_058_1_a_tx_profile_without_a_transaction_is_rejected() -> None:
    reason = rejection_reason(1, profile(1, TX, [(0, 6.0)], transaction_id=42), LIMITS)
    assert reason is not None and "no transaction runs on connector 1" in reason


def test_tc_058_2_a_tx_profile_for_another_transaction_is_rejected() -> None:
    candidate = profile(1, TX, [(0, 6.0)], transaction_id=41)
    reason = rejection_reason(1, candidate, LIMITS, transaction=TRANSACTION)
    assert reason is not None and "transactionId 41" in reason


def test_max_charging_profiles_installed_counts_the_replaced_ones_out() -> None:
    limits = replace(LIMITS, max_installed=2)
    installed = [
        InstalledProfile(1, profile(1, TX_DEFAULT, [(0, 6.0)], stack_level=0)),
        InstalledProfile(1, profile(2, TX_DEFAULT, [(0, 6.0)], stack_level=1)),
    ]
    new = profile(3, TX_DEFAULT, [(0, 6.0)], stack_level=2)
    reason = rejection_reason(1, new, limits, installed=installed)
    assert reason is not None and "MaxChargingProfilesInstalled" in reason
    replacing = replace(new, stack_level=1)  # replaces profile 2
    assert rejection_reason(1, replacing, limits, installed=installed) is None


def test_tc_060_remote_start_profile_must_be_a_tx_profile_without_transaction_id() -> None:
    assert remote_start_rejection(profile(1, TX, [(0, 6.0)], kind=RELATIVE), LIMITS) is None
    wrong_purpose = remote_start_rejection(profile(1, TX_DEFAULT, [(0, 6.0)]), LIMITS)
    assert wrong_purpose is not None and "must be a TxProfile" in wrong_purpose
    with_id = remote_start_rejection(profile(1, TX, [(0, 6.0)], transaction_id=1), LIMITS)
    assert with_id is not None and "errata §3.41" in with_id
    broken = remote_start_rejection(profile(1, TX, [(5, 6.0)]), LIMITS)
    assert broken is not None and "start at 0" in broken


# --- Installing and clearing ------------------------------------------------------------------

INSTALLED = [
    InstalledProfile(0, profile(1, CP_MAX, [(0, 32.0)], stack_level=0)),
    InstalledProfile(0, profile(2, TX_DEFAULT, [(0, 16.0)], stack_level=0)),
    InstalledProfile(1, profile(3, TX_DEFAULT, [(0, 10.0)], stack_level=1)),
    InstalledProfile(2, profile(4, TX_DEFAULT, [(0, 10.0)], stack_level=1)),
    InstalledProfile(1, profile(5, TX, [(0, 8.0)], stack_level=1, kind=RELATIVE)),
]


@pytest.mark.parametrize(
    ("connector_id", "new", "replaced"),
    [
        # same chargingProfileId, wherever it is installed (§5.16.3-4)
        (2, profile(3, TX_DEFAULT, [(0, 6.0)], stack_level=5), [3]),
        # same stackLevel and purpose on the same connector (§3.13.2)
        (1, profile(9, TX_DEFAULT, [(0, 6.0)], stack_level=1), [3]),
        (0, profile(9, CP_MAX, [(0, 6.0)], stack_level=0), [1]),
        # ...but not on another connector: connector 0's stays for the others (§3.13.1)
        (1, profile(9, TX_DEFAULT, [(0, 6.0)], stack_level=0), []),
        (3, profile(9, TX_DEFAULT, [(0, 6.0)], stack_level=1), []),
        # other purpose, other stack level: stacked next to them
        (1, profile(9, TX, [(0, 6.0)], stack_level=0), []),
        (1, profile(9, TX_DEFAULT, [(0, 6.0)], stack_level=2), []),
        # the TxProfile of RemoteStartTransaction, replaced at its stack level (errata §3.42)
        (1, profile(9, TX, [(0, 6.0)], stack_level=1, transaction_id=42), [5]),
        # both rules at once
        (1, profile(4, TX_DEFAULT, [(0, 6.0)], stack_level=1), [3, 4]),
    ],
)
def test_a_new_profile_replaces(
    connector_id: int, new: ChargingProfile, replaced: list[int]
) -> None:
    assert replaced_ids(INSTALLED, connector_id, new) == replaced


@pytest.mark.parametrize(
    ("criteria", "cleared"),
    [
        ({}, [1, 2, 3, 4, 5]),  # no field: everything (errata §3.25)
        ({"profile_id": 3}, [3]),
        # with an id the other fields are ignored (errata §3.26)
        ({"profile_id": 3, "connector_id": 2, "purpose": CP_MAX}, [3]),
        ({"profile_id": 99}, []),
        ({"connector_id": 0}, [1, 2]),
        ({"connector_id": 1}, [3, 5]),
        ({"purpose": TX_DEFAULT}, [2, 3, 4]),
        ({"stack_level": 1}, [3, 4, 5]),
        # fields combine with a logical AND (errata §3.25-26)
        ({"purpose": TX_DEFAULT, "stack_level": 1}, [3, 4]),
        ({"connector_id": 1, "purpose": TX_DEFAULT, "stack_level": 1}, [3]),
        ({"connector_id": 2, "purpose": TX}, []),
    ],
)
def test_clear_charging_profile_removes(criteria: dict[str, Any], cleared: list[int]) -> None:
    assert cleared_ids(INSTALLED, **criteria) == cleared


def test_tx_profiles_go_when_their_transaction_ends() -> None:
    assert tx_profile_ids(INSTALLED, 1) == [5]
    assert tx_profile_ids(INSTALLED, 2) == []


def test_expired_profiles_are_those_that_can_never_apply_again() -> None:
    installed = [
        InstalledProfile(1, profile(1, TX_DEFAULT, [(0, 6.0)], valid_to=at(60))),
        InstalledProfile(1, profile(2, TX_DEFAULT, [(0, 6.0)], duration=60, stack_level=1)),
        InstalledProfile(1, profile(3, TX_DEFAULT, [(0, 6.0)], stack_level=2)),
        InstalledProfile(
            1, profile(4, TX_DEFAULT, [(0, 6.0)], kind=RECURRING, recurrency=DAILY, duration=60)
        ),
    ]
    assert expired_ids(installed, at(59)) == []
    assert expired_ids(installed, at(60)) == [1, 2]


# --- Composite schedules of OCTT 2.22 ---------------------------------------------------------


@pytest.mark.parametrize(("unit", "limit"), [(A, 6.0), (W, 6000.0)])
def test_tc_056_tx_default_profile_is_the_composite(unit: ChargingRateUnit, limit: float) -> None:
    # As in the OCTT's SetChargingProfile.req: Absolute, but no startSchedule (§7.13).
    tx_default = profile(1, TX_DEFAULT, [(0, limit)], duration=300, unit=unit, start=None)
    assert rejection_reason(1, tx_default, LIMITS) is None
    schedule = composite([InstalledProfile(1, tx_default)], duration=300, unit=unit)
    assert schedule.charging_rate_unit is unit
    assert schedule.duration == 300
    assert schedule.start_schedule == at(X)
    assert steps(schedule)[0] == (0, limit)


def test_tc_057_tx_profile_is_the_composite_during_the_transaction() -> None:
    installed = [
        InstalledProfile(1, profile(1, TX_DEFAULT, [(0, 16.0)])),
        InstalledProfile(1, profile(2, TX, [(0, 6.0)], duration=300, transaction_id=42)),
    ]
    during = composite(installed, start=T0, duration=300, transaction=TRANSACTION)
    assert steps(during) == [(0, 6.0)]
    # Without the transaction the TxProfile does not count.
    assert steps(composite(installed, start=T0, duration=300)) == [(0, 16.0)]


def tc_066_profiles(unit: ChargingRateUnit, scale: float) -> list[InstalledProfile]:
    valid = {"valid_from": T0, "valid_to": at(401)}
    return [
        InstalledProfile(0, profile(1, CP_MAX, [(0, 10 * scale)], duration=86400, unit=unit)),
        InstalledProfile(
            1,
            profile(
                2,
                TX_DEFAULT,
                [
                    (s, n * scale)
                    for s, n in zip((0, 60, 120, 180, 260), (6, 10, 8, 15, 8), strict=True)
                ],
                duration=300,
                unit=unit,
                **valid,
            ),
        ),
        InstalledProfile(
            1,
            profile(
                3,
                TX,
                [
                    (s, n * scale)
                    for s, n in zip((0, 50, 140, 200, 240), (8, 11, 16, 6, 12), strict=True)
                ],
                duration=260,
                unit=unit,
                **valid,
            ),
        ),
    ]


@pytest.mark.parametrize(("unit", "scale"), [(A, 1), (W, 1000)])
def test_tc_066_composite_of_the_three_purposes(unit: ChargingRateUnit, scale: float) -> None:
    schedule = composite(
        tc_066_profiles(unit, scale), duration=400, unit=unit, transaction=TRANSACTION
    )
    assert schedule.duration == 400
    assert steps(schedule) == [
        (0, 8 * scale),
        (50 - X, 10 * scale),
        (200 - X, 6 * scale),
        (240 - X, 10 * scale),
    ]


def test_tc_066_a_valid_tx_profile_keeps_tx_default_out_after_its_duration() -> None:
    """From 260 s the TxProfile's schedule has ended but it is still valid: the TxDefault's
    8 A (260-300 s) must not come back, the ChargePointMaxProfile's 10 A holds (§3.13.1)."""
    installed = tc_066_profiles(A, 1)
    during = ActiveTransaction(None, T0)
    assert limit_at(installed, 1, at(270), transaction=during) == ChargingLimit(10.0, A, 3)
    # Once the TxProfile is no longer valid, TxDefault is back.
    shortened = [
        replace(e, profile=replace(e.profile, valid_to=at(265))) if e.profile.id == 3 else e
        for e in installed
    ]
    assert limit_at(shortened, 1, at(270), transaction=during) == ChargingLimit(8.0, A, 3)


def tc_067_profiles() -> list[InstalledProfile]:
    valid = {"valid_from": T0, "valid_to": at(401)}
    periods = [(0, 6.0), (60, 8.0), (200, 10.0)]
    return [
        InstalledProfile(1, profile(1, TX_DEFAULT, periods, stack_level=1, duration=400)),
        InstalledProfile(1, profile(2, TX_DEFAULT, [(0, 7.0), (100, 9.0)], duration=400, **valid)),
        InstalledProfile(0, profile(3, CP_MAX, [(0, 11.0), (200, 12.0)], duration=86400, **valid)),
    ]


def test_tc_067_composites_after_each_clear_charging_profile() -> None:
    installed = tc_067_profiles()
    # Step 1: by id; the other fields are absent.
    gone = cleared_ids(installed, profile_id=1)
    assert gone == [1]
    installed = [e for e in installed if e.profile.id not in gone]
    assert steps(composite(installed)) == [(0, 7.0), (100 - X, 9.0)]
    # Step 5: by purpose and stack level of the second profile.
    gone = cleared_ids(installed, purpose=TX_DEFAULT, stack_level=0)
    assert gone == [2]
    installed = [e for e in installed if e.profile.id not in gone]
    assert steps(composite(installed)) == [(0, 11.0), (200 - X, 12.0)]
    # Step 9: everything; the charger's local limit remains.
    gone = cleared_ids(installed)
    assert gone == [3]
    installed = [e for e in installed if e.profile.id not in gone]
    assert steps(composite(installed)) == [(0, LOCAL.limit)]


@pytest.mark.parametrize(("unit", "scale"), [(A, 1), (W, 1000)])
def test_tc_072_stacked_profiles_fall_back_when_the_higher_one_ends(
    unit: ChargingRateUnit, scale: float
) -> None:
    valid = {"valid_from": T0, "valid_to": at(401), "unit": unit}
    installed = [
        InstalledProfile(
            1,
            profile(
                1,
                TX_DEFAULT,
                [(0, 6 * scale), (100, 8 * scale), (200, 10 * scale)],
                duration=400,
                **valid,
            ),
        ),
        InstalledProfile(
            1,
            profile(
                2,
                TX_DEFAULT,
                [(0, 7 * scale), (100, 9 * scale)],
                stack_level=1,
                duration=150,
                **valid,
            ),
        ),
    ]
    assert steps(composite(installed, unit=unit)) == [
        (0, 7 * scale),
        (100 - X, 9 * scale),
        (150 - X, 8 * scale),
        (200 - X, 10 * scale),
    ]


# --- Purposes, connectors, kinds --------------------------------------------------------------


def test_connector_tx_default_shadows_connector_0_at_the_same_stack_level_only() -> None:
    installed = [
        InstalledProfile(0, profile(1, TX_DEFAULT, [(0, 20.0)], stack_level=0)),
        InstalledProfile(0, profile(2, TX_DEFAULT, [(0, 12.0)], stack_level=2, duration=100)),
        InstalledProfile(1, profile(3, TX_DEFAULT, [(0, 10.0)], stack_level=0)),
    ]
    # Connector 1: connector 0's level 2 first, then its own level 0 (not connector 0's).
    assert steps(composite(installed, start=T0, duration=200)) == [(0, 12.0), (100, 10.0)]
    # Connector 2 has none of its own: connector 0's profiles.
    assert steps(composite(installed, 2, start=T0, duration=200)) == [(0, 12.0), (100, 20.0)]


def test_charge_point_max_caps_the_connector_and_other_connectors_do_not_count() -> None:
    installed = [
        InstalledProfile(0, profile(1, CP_MAX, [(0, 20.0), (100, 8.0)])),
        InstalledProfile(1, profile(2, TX_DEFAULT, [(0, 16.0)])),
        InstalledProfile(2, profile(3, TX_DEFAULT, [(0, 4.0)])),
        InstalledProfile(2, profile(4, TX, [(0, 2.0)])),
    ]
    schedule = composite(installed, start=T0, duration=300, transaction=TRANSACTION)
    assert steps(schedule) == [(0, 16.0), (100, 8.0)]


def test_tx_profiles_for_another_transaction_are_ignored() -> None:
    installed = [
        InstalledProfile(1, profile(1, TX_DEFAULT, [(0, 16.0)])),
        InstalledProfile(1, profile(2, TX, [(0, 6.0)], transaction_id=41)),
    ]
    assert steps(composite(installed, transaction=TRANSACTION)) == [(0, 16.0)]
    offline_start = ActiveTransaction(None, T0)  # no transactionId from the CSMS yet
    assert steps(composite(installed, transaction=offline_start)) == [(0, 16.0)]


def test_connector_0_composite_is_the_charge_point_maximum() -> None:
    installed = [
        InstalledProfile(0, profile(1, CP_MAX, [(0, 40.0)], duration=100)),
        InstalledProfile(0, profile(2, TX_DEFAULT, [(0, 6.0)])),
        InstalledProfile(1, profile(3, TX_DEFAULT, [(0, 7.0)])),
    ]
    schedule = composite(installed, 0, start=T0, duration=300, transaction=TRANSACTION)
    assert steps(schedule) == [(0, 40.0), (100, LOCAL.limit)]


def test_absolute_schedule_not_begun_or_ended_falls_through() -> None:
    installed = [
        InstalledProfile(1, profile(1, TX_DEFAULT, [(0, 16.0)])),
        InstalledProfile(
            1, profile(2, TX_DEFAULT, [(0, 6.0)], stack_level=1, start=at(100), duration=50)
        ),
    ]
    assert steps(composite(installed, start=T0, duration=300)) == [
        (0, 16.0),
        (100, 6.0),
        (150, 16.0),
    ]


def test_stacking_without_duration_never_falls_back() -> None:
    # Errata §3.7: the highest level without a duration hides every lower one.
    installed = [
        InstalledProfile(1, profile(1, TX_DEFAULT, [(0, 16.0), (100, 4.0)])),
        InstalledProfile(1, profile(2, TX_DEFAULT, [(0, 6.0)], stack_level=1)),
    ]
    assert steps(composite(installed, start=T0, duration=3600)) == [(0, 6.0)]


def test_valid_from_and_valid_to_bound_a_profile() -> None:
    installed = [
        InstalledProfile(1, profile(1, TX_DEFAULT, [(0, 16.0)])),
        InstalledProfile(
            1,
            profile(2, TX_DEFAULT, [(0, 6.0)], stack_level=1, valid_from=at(60), valid_to=at(120)),
        ),
    ]
    assert steps(composite(installed, start=T0, duration=300)) == [
        (0, 16.0),
        (60, 6.0),
        (120, 16.0),
    ]


def test_a_daily_profile_restarts_every_24_hours_and_leaves_a_gap_after_its_duration() -> None:
    daily = profile(
        1,
        TX_DEFAULT,
        [(0, 6.0), (3600, 10.0)],
        kind=RECURRING,
        recurrency=DAILY,
        start=T0 - timedelta(days=3),
        duration=2 * 3600,
    )
    schedule = composite([InstalledProfile(1, daily)], start=at(-3600), duration=DAY)
    assert steps(schedule) == [
        (0, LOCAL.limit),
        (3600, 6.0),
        (7200, 10.0),
        (3 * 3600, LOCAL.limit),
    ]
    # The occurrence in effect is the latest that started: 10 A an hour into any day.
    later = T0 + timedelta(days=40, minutes=90)
    assert limit_at([InstalledProfile(1, daily)], 1, later) == ChargingLimit(10.0, A, 3)


def test_a_recurring_profile_does_not_apply_before_its_start_schedule() -> None:
    daily = profile(1, TX_DEFAULT, [(0, 6.0)], kind=RECURRING, recurrency=DAILY, start=at(600))
    assert steps(composite([InstalledProfile(1, daily)], start=T0, duration=1200)) == [
        (0, LOCAL.limit),
        (600, 6.0),
    ]


def test_periods_beyond_the_recurrence_are_not_executed() -> None:
    # Errata §3.44: a daily schedule's duration and periods stop at 24 h.
    daily = profile(
        1,
        TX_DEFAULT,
        [(0, 6.0), (DAY - 600, 8.0), (DAY + 600, 2.0)],
        kind=RECURRING,
        recurrency=DAILY,
        duration=2 * DAY,
    )
    schedule = composite([InstalledProfile(1, daily)], start=at(DAY - 1200), duration=2400)
    assert steps(schedule) == [(0, 6.0), (600, 8.0), (1200, 6.0)]


def test_a_weekly_profile_restarts_on_the_same_weekday_and_time() -> None:
    weekly = profile(
        1,
        TX_DEFAULT,
        [(0, 6.0), (DAY, 16.0)],
        kind=RECURRING,
        recurrency=WEEKLY,
        start=T0 - timedelta(weeks=5),
    )
    installed = [InstalledProfile(1, weekly)]
    assert limit_at(installed, 1, at(3600)) == ChargingLimit(6.0, A, 3)
    assert limit_at(installed, 1, at(DAY + 3600)) == ChargingLimit(16.0, A, 3)
    assert limit_at(installed, 1, at(WEEK - 1)) == ChargingLimit(16.0, A, 3)
    assert limit_at(installed, 1, at(WEEK)) == ChargingLimit(6.0, A, 3)


def test_an_absolute_profile_without_start_schedule_counts_from_the_start_of_charging() -> None:
    absolute = profile(1, TX, [(0, 6.0), (600, 16.0)], start=None, duration=1200)
    installed = [InstalledProfile(1, absolute)]
    started = ActiveTransaction(42, at(-300))
    schedule = composite(installed, start=T0, duration=1800, transaction=started)
    assert steps(schedule) == [(0, 6.0), (300, 16.0), (900, LOCAL.limit)]


def test_a_relative_profile_counts_from_the_transaction_start() -> None:
    relative = profile(1, TX_DEFAULT, [(0, 6.0), (600, 16.0)], kind=RELATIVE, duration=1200)
    installed = [InstalledProfile(1, relative)]
    started = ActiveTransaction(42, at(-300))
    schedule = composite(installed, start=T0, duration=1800, transaction=started)
    assert steps(schedule) == [(0, 6.0), (300, 16.0), (900, LOCAL.limit)]
    # Without a transaction: as if one started at the composite's start.
    assert steps(composite(installed, start=T0, duration=1800)) == [
        (0, 6.0),
        (600, 16.0),
        (1200, LOCAL.limit),
    ]
    # limit_at without a transaction: what a car plugged in at that instant would get.
    assert limit_at(installed, 1, at(900)) == ChargingLimit(6.0, A, 3)
    assert limit_at(installed, 1, at(600), transaction=started) == ChargingLimit(16.0, A, 3)
    assert limit_at(installed, 1, at(900), transaction=started) is None


# --- Units, phases, merging -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("periods", "source", "target", "expected"),
    [
        ([(0, 16.0, 3)], A, W, (11040.0, 3)),  # 16 A x 230 V x 3
        ([(0, 16.0, 1)], A, W, (3680.0, 1)),
        ([(0, 16.0, None)], A, W, (11040.0, 3)),  # numberPhases absent: 3 (§7.14)
        ([(0, 11000.0, 1)], W, A, (47.8, 1)),  # 47.83 rounded down to one decimal
        ([(0, 11000.0, None)], W, A, (15.9, 3)),
        ([(0, 6900.0, 3)], W, A, (10.0, 3)),
        ([(0, 6900.0, 3)], W, W, (6900.0, 3)),
    ],
)
def test_units_convert_with_voltage_and_phases(
    periods: list[tuple[int, float, int | None]],
    source: ChargingRateUnit,
    target: ChargingRateUnit,
    expected: tuple[float, int],
) -> None:
    installed = [InstalledProfile(1, profile(1, TX_DEFAULT, periods, unit=source))]
    found = limit_at(installed, 1, T0, unit=target)
    assert found == ChargingLimit(expected[0], target, expected[1])


def test_limits_combine_to_the_lower_limit_and_the_fewer_phases() -> None:
    installed = [
        InstalledProfile(0, profile(1, CP_MAX, [(0, 7360.0, 1)], unit=W)),  # 32 A on 1 phase
        InstalledProfile(1, profile(2, TX_DEFAULT, [(0, 16.0, 3), (60, 40.0, 3)])),
    ]
    schedule = composite(installed, start=T0, duration=120, unit=A)
    assert [(p.start_period, p.limit, p.number_phases) for p in schedule.periods] == [
        (0, 16.0, 1),
        (60, 32.0, 1),
    ]


def test_without_a_requested_unit_the_profiles_unit_or_the_local_one_is_used() -> None:
    in_watts = [InstalledProfile(1, profile(1, TX_DEFAULT, [(0, 6000.0)], unit=W))]
    assert composite(in_watts).charging_rate_unit is W
    mixed = [*in_watts, InstalledProfile(0, profile(2, CP_MAX, [(0, 16.0)]))]
    assert composite(mixed).charging_rate_unit is A
    assert composite([], local_limit=ChargingLimit(22000.0, W, 3)).charging_rate_unit is W
    # The local limit converts like any other.
    assert steps(composite([], unit=W)) == [(0, 22080.0)]


def test_equal_adjacent_periods_are_merged() -> None:
    installed = [
        InstalledProfile(
            1, profile(1, TX_DEFAULT, [(0, 6.0), (60, 6.0), (120, 8.0), (180, 8.0, 3)])
        ),
        InstalledProfile(
            1, profile(2, TX_DEFAULT, [(0, 6.0)], stack_level=1, start=at(30), duration=60)
        ),
    ]
    assert steps(composite(installed, start=T0, duration=300)) == [(0, 6.0), (120, 8.0)]


def test_min_charging_rate_is_carried_over_from_the_governing_profile() -> None:
    installed = [
        InstalledProfile(0, profile(1, CP_MAX, [(0, 32.0)])),
        InstalledProfile(1, profile(2, TX_DEFAULT, [(0, 16.0)], start=at(60), min_rate=6.0)),
    ]
    assert composite(installed, start=T0, duration=120).min_charging_rate == 6.0
    assert composite(installed, start=T0, duration=120, unit=W).min_charging_rate == 4140.0
    assert composite(installed[:1], start=T0, duration=120).min_charging_rate is None


def test_the_composite_starts_on_a_whole_second_and_covers_its_duration() -> None:
    schedule = composite([], start=T0 + timedelta(milliseconds=750), duration=0)
    assert schedule.start_schedule == T0
    assert schedule.duration == 0
    assert steps(schedule) == [(0, LOCAL.limit)]
    with pytest.raises(ValueError, match="no time zone"):
        composite([], start=T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="-1"):
        composite([], duration=-1)


def test_limit_at_is_none_where_no_profile_limits_the_connector() -> None:
    assert limit_at([], 1, T0) is None
    installed = [InstalledProfile(1, profile(1, TX_DEFAULT, [(0, 6.0)], duration=60))]
    assert limit_at(installed, 1, at(59)) == ChargingLimit(6.0, A, 3)
    assert limit_at(installed, 1, at(60)) is None
    plus_two = timezone(timedelta(hours=2))
    assert limit_at(installed, 1, at(30).astimezone(plus_two)) == ChargingLimit(6.0, A, 3)


# --- next_change_after ------------------------------------------------------------------------


def test_next_change_walks_every_boundary_of_an_absolute_profile() -> None:
    installed = [
        InstalledProfile(
            1,
            profile(
                1,
                TX_DEFAULT,
                [(0, 6.0), (100, 8.0)],
                duration=300,
                valid_from=at(-50),
                valid_to=at(250),
            ),
        ),
        InstalledProfile(0, profile(2, CP_MAX, [(0, 16.0)], start=at(20))),
    ]
    instants = []
    when: datetime | None = at(-100)
    while when is not None:
        when = next_change_after(installed, 1, when)
        if when is not None:
            instants.append((when - T0).total_seconds())
    assert instants == [-50, 0, 20, 100, 250, 300]


def test_next_change_of_a_recurring_profile_is_the_next_occurrence() -> None:
    daily = profile(
        1,
        TX_DEFAULT,
        [(0, 6.0), (3600, 10.0)],
        kind=RECURRING,
        recurrency=DAILY,
        start=at(-DAY * 3),
    )
    installed = [InstalledProfile(1, daily)]
    assert next_change_after(installed, 1, at(3600)) == at(DAY)
    assert next_change_after(installed, 1, at(3599.5)) == at(3600)
    future = replace(daily, schedule=replace(daily.schedule, start_schedule=at(WEEK)))
    assert next_change_after([InstalledProfile(1, future)], 1, T0) == at(WEEK)


def test_next_change_of_a_relative_profile_needs_a_transaction() -> None:
    relative = profile(1, TX_DEFAULT, [(0, 6.0), (600, 16.0)], kind=RELATIVE, valid_to=at(3600))
    installed = [InstalledProfile(1, relative)]
    assert next_change_after(installed, 1, T0) == at(3600)
    started = ActiveTransaction(42, at(-300))
    assert next_change_after(installed, 1, T0, transaction=started) == at(300)


def test_nothing_changes_without_profiles() -> None:
    assert next_change_after([], 1, T0) is None
    forever = [InstalledProfile(1, profile(1, TX_DEFAULT, [(0, 6.0)], start=at(-60)))]
    assert next_change_after(forever, 1, T0) is None


# --- Property: the composite against a brute-force evaluation ---------------------------------


@dataclass(frozen=True)
class Case:
    installed: list[InstalledProfile]
    start: datetime
    duration: int
    unit: ChargingRateUnit | None
    transaction: ActiveTransaction | None
    local: ChargingLimit


def _epoch(when: datetime) -> int:
    return math.floor(when.timestamp())


def _to_unit(limit: float, source: str, target: str, phases: int, voltage: float) -> float:
    if source == target:
        return limit
    raw = limit * voltage * phases if target == "W" else limit / voltage / phases
    return math.floor(raw * 10 + 1e-6) / 10


def _effect(p: ChargingProfile, t: int, origin: int) -> tuple[float, int, str] | None:
    """The period of ``p`` in effect at second ``t``, written from §7.9-7.14 and §7.37."""
    if p.valid_from is not None and t < _epoch(p.valid_from):
        return None
    if p.valid_to is not None and t >= _epoch(p.valid_to):
        return None
    s = p.schedule
    if p.kind == "Relative" or s.start_schedule is None:
        elapsed = t - origin
    elif p.kind == "Absolute":
        elapsed = t - _epoch(s.start_schedule)
    else:
        assert s.start_schedule is not None
        first = _epoch(s.start_schedule)
        if t < first:
            return None
        length = 86400 if p.recurrency_kind == "Daily" else 7 * 86400
        elapsed = (t - first) % length
    if elapsed < 0 or (s.duration is not None and elapsed >= s.duration):
        return None
    current = None
    for period in s.periods:
        if period.start_period <= elapsed:
            current = period
    if current is None:
        return None
    return current.limit, current.number_phases or 3, s.charging_rate_unit


def _top(profiles: list[ChargingProfile], t: int, origin: int) -> tuple[float, int, str] | None:
    for level in sorted({p.stack_level for p in profiles}, reverse=True):
        for p in profiles:
            if p.stack_level == level and (found := _effect(p, t, origin)) is not None:
                return found
    return None


def brute_force(case: Case, unit: str, t: int) -> tuple[float, int] | None:
    """(limit, phases) on connector 1 at second ``t``; None where no profile limits it."""
    origin = _epoch(case.transaction.start if case.transaction else case.start)
    mine = [(e.connector_id, e.profile) for e in case.installed]
    caps = [p for c, p in mine if c == 0 and p.purpose == "ChargePointMaxProfile"]
    own = [p for c, p in mine if c == 1 and p.purpose == "TxDefaultProfile"]
    own_levels = {p.stack_level for p in own}
    general = [
        p
        for c, p in mine
        if c == 0 and p.purpose == "TxDefaultProfile" and p.stack_level not in own_levels
    ]
    tx = case.transaction
    tx_profiles = [
        p
        for c, p in mine
        if tx is not None
        and c == 1
        and p.purpose == "TxProfile"
        and (p.transaction_id is None or p.transaction_id == tx.transaction_id)
    ]
    tx_present = any(
        (p.valid_from is None or _epoch(p.valid_from) <= t)
        and (p.valid_to is None or t < _epoch(p.valid_to))
        for p in tx_profiles
    )
    found = [
        _top(caps, t, origin),
        _top(tx_profiles, t, origin) if tx_present else _top(own + general, t, origin),
    ]
    values = [(_to_unit(f[0], f[2], unit, f[1], 230.0), f[1]) for f in found if f is not None]
    if not values:
        return None
    return min(v[0] for v in values), min(v[1] for v in values)


BASE = datetime(2024, 6, 3, 8, 0, tzinfo=UTC)


@st.composite
def periods_of(draw: st.DrawFn, unit: ChargingRateUnit) -> tuple[ChargingSchedulePeriod, ...]:
    count = draw(st.integers(min_value=1, max_value=4))
    starts = [0]
    for _ in range(count - 1):
        starts.append(starts[-1] + draw(st.integers(min_value=1, max_value=900)))
    scale = 1000 if unit is W else 1
    return tuple(
        ChargingSchedulePeriod(
            start,
            draw(st.sampled_from([0, *range(4, 41, 2)])) * scale,  # 0 rarely: it hides the rest
            draw(st.sampled_from([None, 1, 2, 3])),
        )
        for start in starts
    )


@st.composite
def cases(draw: st.DrawFn) -> Case:
    start = BASE + timedelta(seconds=draw(st.integers(min_value=0, max_value=3600)))
    duration = draw(st.sampled_from([60, 1200, 3600]) | st.integers(1, 3600))
    near = st.integers(min_value=-1800, max_value=2400).map(lambda s: start + timedelta(seconds=s))
    has_tx = draw(st.booleans())
    transaction = (
        ActiveTransaction(
            draw(st.sampled_from([7, None])),
            start - timedelta(seconds=draw(st.integers(min_value=0, max_value=3000))),
        )
        if has_tx
        else None
    )
    installed: list[InstalledProfile] = []
    keys: set[tuple[int, str, int]] = set()
    for number in range(draw(st.integers(min_value=1, max_value=6))):
        purpose = draw(st.sampled_from(list(ChargingProfilePurpose)))
        # Mostly connector 1, the one asked about; connector 2's profiles must not count.
        match purpose:
            case ChargingProfilePurpose.CHARGE_POINT_MAX:
                connector = 0
            case ChargingProfilePurpose.TX_DEFAULT:
                connector = draw(st.sampled_from([0, 1, 1, 2]))
            case ChargingProfilePurpose.TX:
                connector = draw(st.sampled_from([1, 1, 1, 2]))
        stack_level = draw(st.integers(min_value=0, max_value=3))
        if (connector, purpose, stack_level) in keys:
            continue  # replaced on installation (§3.13.2)
        keys.add((connector, purpose, stack_level))
        kind = draw(st.sampled_from(list(ChargingProfileKind)))
        recurrency = draw(st.sampled_from(list(RecurrencyKind))) if kind is RECURRING else None
        if kind is RECURRING:
            cycle = DAY if recurrency is DAILY else WEEK
            back = draw(st.integers(min_value=0, max_value=3)) * cycle
            schedule_start: datetime | None = draw(near) - timedelta(seconds=back)
        else:
            # An Absolute one without startSchedule counts from the start of charging (§7.13).
            with_start = kind is ABSOLUTE and draw(st.integers(min_value=0, max_value=3)) > 0
            schedule_start = draw(near) if with_start else None
        unit = draw(st.sampled_from([A, W]))
        duration_choice = draw(
            st.one_of(
                st.none(),
                st.integers(min_value=1, max_value=3600),
                st.just(DAY + 600),  # longer than a daily recurrence (errata §3.44)
            )
        )
        valid_from = draw(st.one_of(st.none(), near))
        valid_to = draw(st.one_of(st.none(), near))
        if valid_from is not None and valid_to is not None and valid_to <= valid_from:
            valid_to = None
        new = ChargingProfile(
            id=number + 1,
            stack_level=stack_level,
            purpose=purpose,
            kind=kind,
            schedule=ChargingSchedule(
                unit, draw(periods_of(unit)), duration_choice, schedule_start
            ),
            recurrency_kind=recurrency,
            valid_from=valid_from,
            valid_to=valid_to,
            transaction_id=draw(st.sampled_from([None, 7, 8])) if purpose is TX else None,
        )
        installed.append(InstalledProfile(connector, new))
    local = draw(st.sampled_from([LOCAL, ChargingLimit(22000.0, W, 3), ChargingLimit(16.0, A, 1)]))
    return Case(installed, start, duration, draw(st.sampled_from([None, A, W])), transaction, local)


def _period_at(schedule: ChargingSchedule, offset: int) -> ChargingSchedulePeriod:
    current = schedule.periods[0]
    for period in schedule.periods:
        if period.start_period <= offset:
            current = period
    return current


# `make fuzz` runs 20,000 examples of each property: 5-6 minutes here, past the suite's
# 180 s guard against hangs (pyproject.toml). Nothing in these tests waits on anything.
FUZZ_TIME = pytest.mark.timeout(1200)


@pytest.mark.property
@FUZZ_TIME
@given(case=cases())
def test_composite_equals_a_second_by_second_evaluation(case: Case) -> None:
    schedule = composite_schedule(
        case.installed,
        1,
        case.start,
        case.duration,
        local_limit=case.local,
        unit=case.unit,
        transaction=case.transaction,
    )
    note(repr(schedule))
    assert schedule.start_schedule == case.start
    assert schedule.duration == case.duration
    starts = [p.start_period for p in schedule.periods]
    assert starts[0] == 0
    assert starts == sorted(set(starts))
    assert all(0 <= s < case.duration for s in starts)
    pairs = [(p.limit, p.number_phases) for p in schedule.periods]
    assert all(a != b for a, b in itertools.pairwise(pairs)), "adjacent equal periods not merged"
    unit = schedule.charging_rate_unit
    local = (
        _to_unit(case.local.limit, case.local.unit, unit, case.local.number_phases, 230.0),
        case.local.number_phases,
    )
    begin = _epoch(case.start)
    for offset in range(case.duration):
        period = _period_at(schedule, offset)
        expected = brute_force(case, unit, begin + offset) or local
        assert (period.limit, period.number_phases) == expected, f"at +{offset} s"


@pytest.mark.property
@FUZZ_TIME
@given(case=cases())
def test_next_change_after_misses_no_change_and_limit_at_agrees(case: Case) -> None:
    """Walk the window from boundary to boundary: limit_at matches the brute force there, and
    the brute force does not change before the next boundary. Without a transaction a Relative
    profile counts from the instant asked about (as if a car plugged in then)."""

    def reference(second: int) -> tuple[float, int] | None:
        instant = datetime.fromtimestamp(second, UTC)
        return brute_force(
            replace(case, start=instant) if case.transaction is None else case, "A", second
        )

    begin = _epoch(case.start)
    end = begin + case.duration
    when = case.start
    while _epoch(when) < end:
        found = limit_at(case.installed, 1, when, unit=A, transaction=case.transaction)
        here = _epoch(when)
        expected = reference(here)
        assert (None if found is None else (found.limit, found.number_phases)) == expected
        following = next_change_after(case.installed, 1, when, transaction=case.transaction)
        stop = end if following is None else min(end, _epoch(following))
        assert stop > here
        for second in range(here + 1, stop):
            assert reference(second) == expected, (
                f"changed at +{second - begin} s before next_change_after said"
            )
        if following is None:
            break
        when = following
