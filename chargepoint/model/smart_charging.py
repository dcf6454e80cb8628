"""Smart Charging as OCPP 1.6 defines it (§3.13, §5.5, §5.7, §5.16, §7.8-§7.14, §7.37, §9.4 and
errata sheet v4.0 §3.7, §3.8, §3.25-§3.30, §3.34, §3.38, §3.39, §3.41-§3.45, §3.53, §3.56,
§3.57, §3.65-§3.69, §3.78, §3.86), with no clock, storage or I/O: datetimes in, values out.

What the Smart Charging block asks of it:

* :meth:`ChargingProfile.from_json` / :meth:`~ChargingProfile.to_json`: csChargingProfiles;
* :func:`rejection_reason` (SetChargingProfile) and :func:`remote_start_rejection`
  (RemoteStartTransaction.chargingProfile): None, or why the answer is Rejected;
* :func:`replaced_ids`: the installed profiles a new one replaces (§3.13.2, §5.16.3-4);
* :func:`cleared_ids`: the profiles a ClearChargingProfile.req removes (§5.5, errata §3.25-26);
* :func:`tx_profile_ids` and :func:`expired_ids`: what to delete when a transaction ends, and
  what can never apply again;
* :func:`composite_schedule`: GetCompositeSchedule (§5.7, §3.13.3);
* :func:`limit_at` and :func:`next_change_after`: the limit to give the hardware now, and the
  next instant it may change, so the block needs one scheduler job per boundary.

How a connector's limit at an instant t is found (connector > 0):

1. Per purpose, the *prevailing* profile is the one with the highest stackLevel that is valid at
   t (validFrom <= t < validTo, §3.13.2) and has a schedule period in effect at t. A profile
   whose schedule has ended (duration), or has not begun yet, says nothing at t and the next
   lower stack level speaks: errata §3.43 defines falling back after a recurring schedule's
   duration as using the profile with a lower stackLevel, else no limit, and OCTT TC_072
   expects exactly that for an Absolute profile (stack level 1 ends at 150 s, stack level 0's
   8 A shows). EVerest libocpp does the same.
2. TxDefaultProfiles come from connector 0 and from the connector itself; at an equal stack
   level the connector's own profile shadows connector 0's, for that connector only (§3.13.1,
   errata §3.53). The ones installed now count, also for a running transaction: a new or
   updated TxDefaultProfile applies to it at once and a removed one stops (errata §3.8).
3. TxProfiles count only while a transaction runs on the connector, and only those without a
   transactionId or with the running one (§3.13.1, §5.16). While a TxProfile is *valid*, it
   overrules every TxDefaultProfile, also where its own schedule has ended: §3.13.1 says a
   TxProfile that is present overrules the default profile for the transaction, and OCTT
   TC_066 expects the composite to drop to the ChargePointMaxProfile's 10 A after the
   TxProfile's 260 s, not back to the TxDefaultProfile's 8 A. (EVerest libocpp falls back to
   TxDefault per instant; TC_066 rules that out.)
4. The result is the minimum of the ChargePointMaxProfile's limit and the Tx/TxDefault limit
   (§3.13.3); with neither, no profile limits the connector.

Connector 0 is the charge point as a whole (§5.7, errata §3.30: what it expects to take from
the grid). Its composite is the ChargePointMaxProfile, the limit for all connectors together
(§3.13.3); a TxDefaultProfile installed on connector 0 is a template for each connector's
transactions (errata §3.53), not a limit on the total, so it does not enter.

Kinds (§7.9, §7.13, §7.37, errata §3.78): Absolute counts from startSchedule; Recurring restarts
every 24 h (Daily) or 7 days (Weekly) from startSchedule, never before it, and periods or a
duration longer than the recurrence are cut there (errata §3.44); Relative counts from the start
of the transaction, and without one from the moment being planned for (the composite's start:
as if a transaction started then; :func:`limit_at`'s instant). An Absolute profile without
startSchedule counts like a Relative one: §7.13 says a schedule without it is relative to the
start of charging, and OCTT TC_056, TC_057 and TC_082 send Absolute profiles without one and
expect them Accepted.

Units (§7.12, errata §3.68, §3.34): A is per phase, W is the total; converting uses
W = A x voltage x numberPhases, numberPhases 3 when absent (§7.14), and a converted limit is
rounded down to the one decimal OCPP allows. A limit is never rescaled for the phases a charger
actually uses (errata §3.34). Where two limits combine, the lower limit and the fewer phases
win.

Times are handled in whole seconds (startPeriod and duration are integers, §7.13-7.14):
instants are truncated to the second.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from chargepoint.model.transactions import timestamp

DAY = 24 * 3600
WEEK = 7 * DAY
DEFAULT_PHASES = 3  # §7.14 numberPhases, errata §3.68
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


class ChargingProfilePurpose(StrEnum):
    CHARGE_POINT_MAX = "ChargePointMaxProfile"
    TX_DEFAULT = "TxDefaultProfile"
    TX = "TxProfile"


class ChargingProfileKind(StrEnum):
    ABSOLUTE = "Absolute"
    RECURRING = "Recurring"
    RELATIVE = "Relative"


class RecurrencyKind(StrEnum):
    DAILY = "Daily"
    WEEKLY = "Weekly"


class ChargingRateUnit(StrEnum):
    A = "A"
    W = "W"


class ChargingProfileError(ValueError):
    """A csChargingProfiles object that is not a ChargingProfile (a field missing or of the
    wrong type or value): the block answers with a CALLERROR, errata §3.38."""


@dataclass(frozen=True, slots=True)
class ChargingSchedulePeriod:
    start_period: int  # seconds from the start of the schedule
    limit: float  # in the schedule's chargingRateUnit
    number_phases: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"startPeriod": self.start_period, "limit": self.limit}
        if self.number_phases is not None:
            out["numberPhases"] = self.number_phases
        return out


@dataclass(frozen=True, slots=True)
class ChargingSchedule:
    charging_rate_unit: ChargingRateUnit
    periods: tuple[ChargingSchedulePeriod, ...]
    duration: int | None = None
    start_schedule: datetime | None = None
    min_charging_rate: float | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChargingSchedule:
        try:
            periods = tuple(
                ChargingSchedulePeriod(
                    _integer(p, "startPeriod"),
                    _number(p, "limit"),
                    _integer(p, "numberPhases") if "numberPhases" in p else None,
                )
                for p in data["chargingSchedulePeriod"]
            )
            return cls(
                ChargingRateUnit(data["chargingRateUnit"]),
                periods,
                _integer(data, "duration") if "duration" in data else None,
                _parse_time(data["startSchedule"]) if "startSchedule" in data else None,
                _number(data, "minChargingRate") if "minChargingRate" in data else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ChargingProfileError(f"chargingSchedule: {_describe(exc)}") from exc

    def to_json(self, *, with_start: bool = True) -> dict[str, Any]:
        """The ChargingSchedule object. In GetCompositeSchedule.conf pass ``with_start=False``:
        errata §3.57 wants startSchedule omitted there (scheduleStart carries the instant)."""
        out: dict[str, Any] = {}
        if self.duration is not None:
            out["duration"] = self.duration
        if with_start and self.start_schedule is not None:
            out["startSchedule"] = timestamp(self.start_schedule)
        out["chargingRateUnit"] = self.charging_rate_unit.value
        out["chargingSchedulePeriod"] = [p.to_json() for p in self.periods]
        if self.min_charging_rate is not None:
            out["minChargingRate"] = self.min_charging_rate
        return out


@dataclass(frozen=True, slots=True)
class ChargingProfile:
    id: int  # chargingProfileId
    stack_level: int
    purpose: ChargingProfilePurpose
    kind: ChargingProfileKind
    schedule: ChargingSchedule
    recurrency_kind: RecurrencyKind | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChargingProfile:
        """Parse csChargingProfiles (camelCase); timestamps become aware UTC datetimes."""
        if not isinstance(data, dict):
            raise ChargingProfileError("csChargingProfiles is not an object")
        schedule = data.get("chargingSchedule")
        if not isinstance(schedule, dict):
            raise ChargingProfileError("chargingSchedule is missing or not an object")
        try:
            recurrency = data.get("recurrencyKind")
            return cls(
                id=_integer(data, "chargingProfileId"),
                stack_level=_integer(data, "stackLevel"),
                purpose=ChargingProfilePurpose(data["chargingProfilePurpose"]),
                kind=ChargingProfileKind(data["chargingProfileKind"]),
                schedule=ChargingSchedule.from_json(schedule),
                recurrency_kind=None if recurrency is None else RecurrencyKind(recurrency),
                valid_from=_parse_time(data["validFrom"]) if "validFrom" in data else None,
                valid_to=_parse_time(data["validTo"]) if "validTo" in data else None,
                transaction_id=(
                    _integer(data, "transactionId") if "transactionId" in data else None
                ),
            )
        except ChargingProfileError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ChargingProfileError(f"csChargingProfiles: {_describe(exc)}") from exc

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"chargingProfileId": self.id}
        if self.transaction_id is not None:
            out["transactionId"] = self.transaction_id
        out["stackLevel"] = self.stack_level
        out["chargingProfilePurpose"] = self.purpose.value
        out["chargingProfileKind"] = self.kind.value
        if self.recurrency_kind is not None:
            out["recurrencyKind"] = self.recurrency_kind.value
        if self.valid_from is not None:
            out["validFrom"] = timestamp(self.valid_from)
        if self.valid_to is not None:
            out["validTo"] = timestamp(self.valid_to)
        out["chargingSchedule"] = self.schedule.to_json()
        return out


@dataclass(frozen=True, slots=True)
class InstalledProfile:
    """A profile as installed: SetChargingProfile.req's connectorId with its profile."""

    connector_id: int
    profile: ChargingProfile


@dataclass(frozen=True, slots=True)
class ActiveTransaction:
    """The transaction running on a connector. ``transaction_id`` is None until the CSMS has
    given one (a transaction started offline); TxProfiles naming an id then do not match."""

    transaction_id: int | None
    start: datetime


@dataclass(frozen=True, slots=True)
class ChargingLimit:
    """A limit in force: ``limit`` in ``unit`` (A per phase, or W in total) on
    ``number_phases`` phases."""

    limit: float
    unit: ChargingRateUnit
    number_phases: int


@dataclass(frozen=True, slots=True)
class ProfileLimits:
    """The §9.4 keys a SetChargingProfile is checked against."""

    max_stack_level: int  # ChargeProfileMaxStackLevel
    max_periods: int  # ChargingScheduleMaxPeriods
    allowed_units: frozenset[ChargingRateUnit]  # ChargingScheduleAllowedChargingRateUnit
    max_installed: int | None = None  # MaxChargingProfilesInstalled

    @classmethod
    def from_keys(
        cls,
        *,
        max_stack_level: int,
        max_periods: int,
        allowed_units: str | Iterable[str],
        max_installed: int | None = None,
    ) -> ProfileLimits:
        """``allowed_units`` is the key's CSL ("Current", "Power", "Current,Power"): errata
        §3.86 maps Current to A and Power to W."""
        names = allowed_units.split(",") if isinstance(allowed_units, str) else allowed_units
        units: set[ChargingRateUnit] = set()
        for name in (n.strip().lower() for n in names):
            if name == "current":
                units.add(ChargingRateUnit.A)
            elif name == "power":
                units.add(ChargingRateUnit.W)
            elif name:
                raise ValueError(
                    f"ChargingScheduleAllowedChargingRateUnit has {name!r}: "
                    "only Current and Power are allowed (OCPP 1.6 §9.4.2)"
                )
        return cls(max_stack_level, max_periods, frozenset(units), max_installed)


# --- SetChargingProfile, RemoteStartTransaction ----------------------------------------------


def rejection_reason(
    connector_id: int,
    profile: ChargingProfile,
    limits: ProfileLimits,
    *,
    transaction: ActiveTransaction | None = None,
    installed: Sequence[InstalledProfile] = (),
) -> str | None:
    """Why SetChargingProfile.req(``connector_id``, ``profile``) must be answered Rejected, or
    None to accept it. ``transaction`` is the one running on ``connector_id``; ``installed``
    the profiles installed now (for MaxChargingProfilesInstalled, counting the ones the new
    profile replaces).

    Not checked here: a connectorId the charge point does not have is a CALLERROR
    PropertyConstraintViolation (errata §3.39), not Rejected.
    """
    if problem := _profile_problem(profile, limits):
        return problem
    match profile.purpose:
        case ChargingProfilePurpose.CHARGE_POINT_MAX if connector_id != 0:
            return "a ChargePointMaxProfile can only be set on connector 0 (§3.13.1)"
        case ChargingProfilePurpose.TX:
            if connector_id == 0:
                return "a TxProfile can only be set on a connector > 0 (§3.13.1)"
            if transaction is None:
                return (
                    f"no transaction runs on connector {connector_id}: a TxProfile needs one "
                    "(§3.13.1, §5.16.4)"
                )
            if profile.transaction_id is not None and (
                profile.transaction_id != transaction.transaction_id
            ):
                return (
                    f"transactionId {profile.transaction_id} is not the transaction running on "
                    f"connector {connector_id} ({transaction.transaction_id}) (OCTT TC_058_2)"
                )
    if limits.max_installed is not None:
        count = len(installed) - len(replaced_ids(installed, connector_id, profile)) + 1
        if count > limits.max_installed:
            return (
                f"{limits.max_installed} charging profiles are installed already "
                "(MaxChargingProfilesInstalled, §9.4.5)"
            )
    return None


def remote_start_rejection(profile: ChargingProfile, limits: ProfileLimits) -> str | None:
    """Why RemoteStartTransaction.req's chargingProfile must be refused, or None: it must be a
    TxProfile (§5.16.2, OCTT TC_060) without transactionId (errata §3.41), since the
    transaction does not exist yet. Once accepted, the block installs it on the connector with
    the transaction that starts."""
    if profile.purpose is not ChargingProfilePurpose.TX:
        return f"a RemoteStartTransaction profile must be a TxProfile, not {profile.purpose}"
    if profile.transaction_id is not None:
        return "a RemoteStartTransaction profile has no transactionId (errata §3.41)"
    return _profile_problem(profile, limits)


def _profile_problem(profile: ChargingProfile, limits: ProfileLimits) -> str | None:
    if profile.stack_level < 0:
        return f"stackLevel {profile.stack_level} is negative (§7.8)"
    if profile.stack_level > limits.max_stack_level:
        return (
            f"stackLevel {profile.stack_level} is above ChargeProfileMaxStackLevel "
            f"{limits.max_stack_level} (§9.4.1)"
        )
    if profile.transaction_id is not None and profile.purpose is not ChargingProfilePurpose.TX:
        return f"transactionId is only for a TxProfile, not a {profile.purpose} (§7.8)"
    start = profile.schedule.start_schedule
    match profile.kind:
        case ChargingProfileKind.RECURRING:
            if profile.recurrency_kind is None:
                return "a Recurring profile needs a recurrencyKind (§7.8, §7.37)"
            if start is None:
                return "a Recurring profile needs a startSchedule to recur from (§7.37)"
    if profile.purpose is ChargingProfilePurpose.CHARGE_POINT_MAX and (
        start is None or profile.kind is ChargingProfileKind.RELATIVE
    ):
        # Relative, or without startSchedule, a schedule counts from the start of charging
        # (§7.9, §7.13); the charge point as a whole has none. EVerest libocpp refuses these.
        return (
            "a ChargePointMaxProfile must be Absolute or Recurring with a startSchedule: "
            "no charging starts for the charge point as a whole (§7.9, §7.13)"
        )
    if profile.recurrency_kind is not None and profile.kind is not ChargingProfileKind.RECURRING:
        return "recurrencyKind is only for a Recurring profile (errata §3.56)"
    if (
        profile.valid_from is not None
        and profile.valid_to is not None
        and profile.valid_to <= profile.valid_from
    ):
        return "validTo is not after validFrom: the profile would never be valid (§7.8)"
    return _schedule_problem(profile.schedule, limits)


def _schedule_problem(schedule: ChargingSchedule, limits: ProfileLimits) -> str | None:
    if schedule.charging_rate_unit not in limits.allowed_units:
        allowed = ",".join(sorted(limits.allowed_units)) or "none"
        return (
            f"chargingRateUnit {schedule.charging_rate_unit} is not allowed by "
            f"ChargingScheduleAllowedChargingRateUnit ({allowed}) (§9.4.2, errata §3.86)"
        )
    periods = schedule.periods
    if not periods:
        return "the schedule has no chargingSchedulePeriod (§7.13)"
    if len(periods) > limits.max_periods:
        return (
            f"{len(periods)} periods, more than ChargingScheduleMaxPeriods "
            f"{limits.max_periods} (§9.4.3)"
        )
    if periods[0].start_period != 0:
        return "the first period must start at 0 (§5.16.4, errata §3.45, §3.69)"
    for before, after in itertools.pairwise(periods):
        if after.start_period <= before.start_period:
            return (
                f"startPeriod {after.start_period} does not follow {before.start_period}: "
                "periods must be in increasing order (§7.14)"
            )
    for period in periods:
        if not period.limit >= 0:  # also catches NaN
            return f"limit {period.limit} is negative (§7.14)"
        if period.number_phases is not None and not 1 <= period.number_phases <= 3:
            return f"numberPhases {period.number_phases} is not 1, 2 or 3 (§7.14)"
    if schedule.duration is not None and schedule.duration < 0:
        return f"duration {schedule.duration} is negative (§7.13)"
    if schedule.min_charging_rate is not None and not schedule.min_charging_rate >= 0:
        return f"minChargingRate {schedule.min_charging_rate} is negative (§7.13)"
    return None


# --- Installing and clearing ------------------------------------------------------------------


def replaced_ids(
    installed: Iterable[InstalledProfile], connector_id: int, profile: ChargingProfile
) -> list[int]:
    """The chargingProfileIds a new ``profile`` for ``connector_id`` replaces: the one with the
    same id wherever it is, and the one on the same connector with the same purpose and
    stackLevel (§3.13.2, §5.16.3, §5.16.4). The same stackLevel and purpose on *another*
    connector stays: a connector's TxDefaultProfile replaces connector 0's for that connector
    only (§3.13.1), which :func:`composite_schedule` does by shadowing. A TxProfile from
    SetChargingProfile replaces the RemoteStartTransaction one at the same stackLevel (errata
    §3.42), by the same rule."""
    return [
        entry.profile.id
        for entry in installed
        if entry.profile.id == profile.id
        or (
            entry.connector_id == connector_id
            and entry.profile.purpose is profile.purpose
            and entry.profile.stack_level == profile.stack_level
        )
    ]


def cleared_ids(
    installed: Iterable[InstalledProfile],
    *,
    profile_id: int | None = None,
    connector_id: int | None = None,
    purpose: ChargingProfilePurpose | None = None,
    stack_level: int | None = None,
) -> list[int]:
    """The chargingProfileIds ClearChargingProfile.req removes (§5.5, §6.13, errata §3.25-26):
    with an id, that profile only and the other fields are ignored; otherwise every profile
    matching all the given fields (connectorId 0 means the profiles set on connector 0); with
    no field at all, every profile. Empty: the block answers Unknown."""
    if profile_id is not None:
        return [entry.profile.id for entry in installed if entry.profile.id == profile_id]
    return [
        entry.profile.id
        for entry in installed
        if (connector_id is None or entry.connector_id == connector_id)
        and (purpose is None or entry.profile.purpose is purpose)
        and (stack_level is None or entry.profile.stack_level == stack_level)
    ]


def tx_profile_ids(installed: Iterable[InstalledProfile], connector_id: int) -> list[int]:
    """The TxProfiles to delete when the transaction on ``connector_id`` ends (§3.13.1;
    §7.10: they cease to be valid with the transaction)."""
    return [
        entry.profile.id
        for entry in installed
        if entry.connector_id == connector_id and entry.profile.purpose is ChargingProfilePurpose.TX
    ]


def expired_ids(installed: Iterable[InstalledProfile], now: datetime) -> list[int]:
    """Profiles that can never apply again at or after ``now``: past their validTo, or Absolute
    with a schedule that has ended. Deleting them frees MaxChargingProfilesInstalled."""
    return [entry.profile.id for entry in installed if _over(entry.profile, now)]


def _over(profile: ChargingProfile, now: datetime) -> bool:
    if profile.valid_to is not None and profile.valid_to <= now:
        return True
    schedule = profile.schedule
    if profile.kind is not ChargingProfileKind.ABSOLUTE or schedule.start_schedule is None:
        return False
    return (
        schedule.duration is not None
        and schedule.start_schedule + timedelta(seconds=schedule.duration) <= now
    )


# --- Composite schedule -----------------------------------------------------------------------


def composite_schedule(
    installed: Iterable[InstalledProfile],
    connector_id: int,
    start: datetime,
    duration: int,
    *,
    local_limit: ChargingLimit,
    unit: ChargingRateUnit | None = None,
    transaction: ActiveTransaction | None = None,
    voltage: float = 230.0,
) -> ChargingSchedule:
    """The composite schedule of ``connector_id`` from ``start`` (truncated to the second) for
    ``duration`` seconds (§5.7, errata §3.28-3.30; §3.13.2 stacking, §3.13.3 combining; the
    rules are in the module docstring). Periods count from ``start``, which is also the
    result's startSchedule (the block sends it as scheduleStart, errata §3.57); adjacent periods
    with the same limit and phases are one.

    Where no profile limits the connector the schedule shows ``local_limit``, the charger's own
    maximum: a schedule must cover its duration with periods (§7.13), and OCTT TC_067 expects
    the charging station's local limit once every profile is cleared.

    ``unit`` is GetCompositeSchedule.req's chargingRateUnit; without one, the unit all the
    connector's profiles share, or else ``local_limit``'s. ``transaction`` is the one running on
    the connector (TxProfiles apply only then; Relative profiles count from its start, else
    from ``start``). minChargingRate is the first governing Tx/TxDefault profile's, converted.
    """
    if duration < 0:
        raise ValueError(f"a composite schedule cannot last {duration} s")
    begin = _seconds(start)
    end = begin + duration
    stacks = _Stacks.build(installed, connector_id, transaction, unit, local_limit, voltage)
    relative_origin = begin if transaction is None else _seconds(transaction.start)
    points = {begin}
    for entry in stacks.entries():
        points.update(x for x in entry.boundaries(begin, end, relative_origin) if begin < x < end)
    default = (
        _convert(
            local_limit.limit, local_limit.unit, stacks.unit, local_limit.number_phases, voltage
        ),
        local_limit.number_phases,
    )
    periods: list[ChargingSchedulePeriod] = []
    min_rate: float | None = None
    rate_found = False
    last: tuple[float, int] | None = None
    for point in sorted(points):
        found, governing = stacks.evaluate(point, relative_origin)
        if not rate_found and governing is not None:
            min_rate, rate_found = governing.min_rate, True
        value = default if found is None else found
        if value != last:
            periods.append(ChargingSchedulePeriod(point - begin, value[0], value[1]))
            last = value
    return ChargingSchedule(stacks.unit, tuple(periods), duration, _from_seconds(begin), min_rate)


def limit_at(
    installed: Iterable[InstalledProfile],
    connector_id: int,
    at: datetime,
    *,
    unit: ChargingRateUnit = ChargingRateUnit.A,
    transaction: ActiveTransaction | None = None,
    voltage: float = 230.0,
) -> ChargingLimit | None:
    """The limit in force on ``connector_id`` at ``at``, in ``unit``; None when no profile
    limits it (the hardware then offers its maximum). Without a transaction a Relative profile
    is taken as if one started at ``at`` (its first period), which is what a car plugged in now
    would get."""
    stacks = _Stacks.build(installed, connector_id, transaction, unit, None, voltage)
    when = _seconds(at)
    found, _ = stacks.evaluate(when, when if transaction is None else _seconds(transaction.start))
    return None if found is None else ChargingLimit(found[0], stacks.unit, found[1])


def next_change_after(
    installed: Iterable[InstalledProfile],
    connector_id: int,
    after: datetime,
    *,
    transaction: ActiveTransaction | None = None,
) -> datetime | None:
    """The first instant later than ``after`` at which :func:`limit_at` may change on
    ``connector_id``: a period start, the end of a schedule's duration, a recurrence, a
    validFrom or validTo of any profile that applies there. None: nothing will ever change.
    The value may be the same on both sides of the instant; the block re-reads
    :func:`limit_at` there and asks again. Installing or clearing a profile, or a transaction
    starting or ending, changes the answer: the block asks again then too."""
    stacks = _Stacks.build(installed, connector_id, transaction, None, None, 230.0)
    now = _seconds(after)
    # Without a transaction a Relative profile moves with the instant asked about (limit_at):
    # only its validity bounds are boundaries.
    relative_origin = None if transaction is None else _seconds(transaction.start)
    best: int | None = None
    for entry in stacks.entries():
        horizon = max(now, entry.origin or now) + 2 * WEEK
        for x in entry.boundaries(now, horizon, relative_origin):
            if x > now and (best is None or x < best):
                best = x
    return None if best is None else _from_seconds(best)


# --- The engine -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    """One profile in whole seconds, its limits already in the output unit."""

    stack_level: int
    valid_from: int | None
    valid_to: int | None
    origin: int | None  # startSchedule (Absolute, Recurring); None: Relative
    cycle: int | None  # the recurrence, Recurring only
    end: int | None  # offset at which the schedule stops (duration, recurrence)
    starts: tuple[int, ...]
    limits: tuple[float, ...]
    phases: tuple[int, ...]
    min_rate: float | None

    @classmethod
    def build(cls, profile: ChargingProfile, unit: ChargingRateUnit, voltage: float) -> _Entry:
        schedule = profile.schedule
        cycle = None
        if profile.kind is ChargingProfileKind.RECURRING:
            cycle = WEEK if profile.recurrency_kind is RecurrencyKind.WEEKLY else DAY
        ends = [x for x in (schedule.duration, cycle) if x is not None]
        phases = tuple(p.number_phases or DEFAULT_PHASES for p in schedule.periods)
        # Without startSchedule an Absolute profile counts from the start of charging (§7.13);
        # rejection_reason refuses a Recurring one, which would do the same if installed.
        origin = None
        if profile.kind is not ChargingProfileKind.RELATIVE and schedule.start_schedule:
            origin = _seconds(schedule.start_schedule)
        source = schedule.charging_rate_unit
        min_rate = schedule.min_charging_rate
        return cls(
            stack_level=profile.stack_level,
            valid_from=None if profile.valid_from is None else _seconds(profile.valid_from),
            valid_to=None if profile.valid_to is None else _seconds(profile.valid_to),
            origin=origin,
            cycle=cycle if origin is not None else None,
            end=min(ends) if ends else None,
            starts=tuple(p.start_period for p in schedule.periods),
            limits=tuple(
                _convert(p.limit, source, unit, n, voltage)
                for p, n in zip(schedule.periods, phases, strict=True)
            ),
            phases=phases,
            min_rate=(
                None
                if min_rate is None
                else _convert(min_rate, source, unit, phases[0] if phases else 3, voltage)
            ),
        )

    def valid(self, t: int) -> bool:
        return (self.valid_from is None or self.valid_from <= t) and (
            self.valid_to is None or t < self.valid_to
        )

    def period_at(self, t: int, relative_origin: int) -> int | None:
        """Index of the period in effect at ``t``, None when the schedule says nothing then."""
        if self.origin is None:
            offset = t - relative_origin
        elif self.cycle is None:
            offset = t - self.origin
        else:
            if t < self.origin:
                return None  # a recurrence starts at startSchedule, not before (§7.37)
            offset = (t - self.origin) % self.cycle
        if offset < 0 or (self.end is not None and offset >= self.end):
            return None
        index = bisect.bisect_right(self.starts, offset) - 1
        return index if index >= 0 else None

    def boundaries(self, begin: int, end: int, relative_origin: int | None) -> Iterator[int]:
        """Instants where this entry's contribution may change, covering [begin, end) (some
        outside it as well). ``relative_origin`` None: a Relative schedule that moves with
        the instant, with no boundaries of its own."""
        if self.valid_from is not None:
            yield self.valid_from
        if self.valid_to is not None:
            yield self.valid_to
        if self.origin is None:
            origins: Iterable[int] = () if relative_origin is None else (relative_origin,)
        elif self.cycle is None:
            origins = (self.origin,)
        else:
            first = max(0, (begin - self.origin) // self.cycle)
            last = (end - self.origin) // self.cycle
            origins = (self.origin + k * self.cycle for k in range(first, last + 1))
        for origin in origins:
            for offset in self.starts:
                if self.end is not None and offset >= self.end:
                    break
                yield origin + offset
            if self.end is not None:
                yield origin + self.end


@dataclass(frozen=True, slots=True)
class _Stacks:
    """The profiles that apply to one connector, per purpose, highest stack level first."""

    unit: ChargingRateUnit
    charge_point_max: tuple[_Entry, ...]
    tx_default: tuple[_Entry, ...]
    tx: tuple[_Entry, ...]

    @classmethod
    def build(
        cls,
        installed: Iterable[InstalledProfile],
        connector_id: int,
        transaction: ActiveTransaction | None,
        unit: ChargingRateUnit | None,
        local_limit: ChargingLimit | None,
        voltage: float,
    ) -> _Stacks:
        charge_point_max: list[ChargingProfile] = []
        defaults: dict[int, ChargingProfile] = {}
        own_defaults: dict[int, ChargingProfile] = {}
        tx: list[ChargingProfile] = []
        for entry in installed:
            profile = entry.profile
            match profile.purpose:
                case ChargingProfilePurpose.CHARGE_POINT_MAX if entry.connector_id == 0:
                    charge_point_max.append(profile)
                case ChargingProfilePurpose.TX_DEFAULT if connector_id != 0:
                    if entry.connector_id == 0:
                        defaults.setdefault(profile.stack_level, profile)
                    elif entry.connector_id == connector_id:
                        own_defaults.setdefault(profile.stack_level, profile)
                case ChargingProfilePurpose.TX if (
                    connector_id != 0
                    and entry.connector_id == connector_id
                    and transaction is not None
                    and profile.transaction_id in (None, transaction.transaction_id)
                ):
                    tx.append(profile)
        defaults.update(own_defaults)  # the connector's own shadows connector 0's (§3.13.1)
        groups = (charge_point_max, list(defaults.values()), tx)
        if unit is None:
            units = {p.schedule.charging_rate_unit for group in groups for p in group}
            if len(units) == 1:
                unit = units.pop()
            else:
                unit = ChargingRateUnit.A if local_limit is None else local_limit.unit
        unit = ChargingRateUnit(unit)  # also when a caller passes "A" or "W"

        def stack(profiles: list[ChargingProfile]) -> tuple[_Entry, ...]:
            ordered = sorted(profiles, key=lambda p: -p.stack_level)
            return tuple(_Entry.build(p, unit, voltage) for p in ordered)

        return cls(unit, *(stack(group) for group in groups))

    def entries(self) -> Iterator[_Entry]:
        yield from self.charge_point_max
        yield from self.tx_default
        yield from self.tx

    def evaluate(
        self, t: int, relative_origin: int
    ) -> tuple[tuple[float, int] | None, _Entry | None]:
        """(limit, phases) at ``t`` or None, and the Tx/TxDefault entry that governs."""
        cap = _prevailing(self.charge_point_max, t, relative_origin)
        if any(entry.valid(t) for entry in self.tx):
            governing = _prevailing(self.tx, t, relative_origin)
        else:
            governing = _prevailing(self.tx_default, t, relative_origin)
        values = [
            (entry.limits[index], entry.phases[index])
            for entry, index in (found for found in (cap, governing) if found is not None)
        ]
        if not values:
            return None, None
        limit = min(value[0] for value in values)
        phases = min(value[1] for value in values)
        return (limit, phases), None if governing is None else governing[0]


def _prevailing(stack: Sequence[_Entry], t: int, relative_origin: int) -> tuple[_Entry, int] | None:
    for entry in stack:
        if entry.valid(t):
            index = entry.period_at(t, relative_origin)
            if index is not None:
                return entry, index
    return None


def _convert(
    limit: float,
    source: ChargingRateUnit,
    target: ChargingRateUnit,
    phases: int,
    voltage: float,
) -> float:
    """§7.12 (errata §3.68): W is the total, A per phase; W = A x voltage x phases. A converted
    value is rounded down to one decimal (§7.13-7.14 allow no more), never up past the limit."""
    if source == target:
        return float(limit)
    value = limit * voltage * phases if target == ChargingRateUnit.W else limit / (voltage * phases)
    return math.floor(value * 10 + 1e-6) / 10


def _seconds(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValueError(f"{when.isoformat()} has no time zone: pass an aware datetime")
    return (when - _EPOCH) // _SECOND


def _from_seconds(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


def _parse_time(text: object) -> datetime:
    if not isinstance(text, str):
        raise ChargingProfileError(f"{text!r} is not an OCPP dateTime")
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ChargingProfileError(f"{text!r} is not an OCPP dateTime") from exc
    # OCPP recommends UTC (§3.14); a time without an offset is read as UTC, not local time.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _integer(data: dict[str, Any], name: str) -> int:
    value = data[name]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChargingProfileError(f"{name} {value!r} is not an integer")
    return value


def _number(data: dict[str, Any], name: str) -> float:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ChargingProfileError(f"{name} {value!r} is not a number")
    return float(value)


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"{exc.args[0]} is missing"
    return str(exc)
