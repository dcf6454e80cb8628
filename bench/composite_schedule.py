"""GetCompositeSchedule's computation (chargepoint.model.smart_charging) with a calendar of 30
stacked recurring TxDefaultProfiles on one connector, under a Weekly ChargePointMaxProfile,
during a transaction: half Daily, half Weekly, six periods each; above the base level each has
a duration shorter than its recurrence, so lower stack levels show through the rest (§3.13.2,
errata §3.43). Windows of 24 h and of 7 days, as a CSMS planning a day or a week would ask.

The baseline is the same request with a single Daily profile (``profiles=1``), in the same run;
``*_ratio`` is the 30-profile median over the baseline's. ``limit_at_us`` and
``next_change_after_us`` are what the Smart Charging block pays at each period boundary to set
the hardware's limit and plan the next boundary.

    python -m bench.composite_schedule [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

from chargepoint.model.smart_charging import (
    DAY,
    WEEK,
    ActiveTransaction,
    ChargingLimit,
    ChargingProfile,
    ChargingProfileKind,
    ChargingProfilePurpose,
    ChargingRateUnit,
    ChargingSchedule,
    ChargingSchedulePeriod,
    InstalledProfile,
    RecurrencyKind,
    composite_schedule,
    limit_at,
    next_change_after,
)

NAME = "composite_schedule"
PROFILES = 30
PERIODS = 6
START = datetime(2024, 6, 3, 9, 30, 17, tzinfo=UTC)  # a Monday morning, off any boundary
LOCAL = ChargingLimit(32.0, ChargingRateUnit.A, 3)
TRANSACTION = ActiveTransaction(4242, START - timedelta(minutes=20))


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    record = {"bench": NAME, "metric": metric, "value": round(value, 3), "unit": unit, **extra}
    print(json.dumps(record), flush=True)


def calendar(count: int, seed: int = 16) -> list[InstalledProfile]:
    """``count`` recurring TxDefaultProfiles on connector 1, stack levels 0..count-1, and a
    Weekly ChargePointMaxProfile on connector 0."""
    rng = random.Random(seed)
    origin = START - timedelta(weeks=4)
    installed = []
    for level in range(count):
        weekly = level % 2 == 1
        cycle = WEEK if weekly else DAY
        starts = sorted(rng.sample(range(1, cycle // 60), PERIODS - 1))
        periods = tuple(
            ChargingSchedulePeriod(start * 60, float(rng.randrange(6, 33)), rng.choice((1, 3)))
            for start in [0, *starts]
        )
        # Above the base, each covers part of its recurrence (an evening, a weekend): the
        # levels below show through the rest.
        duration = None if level == 0 else rng.randrange(cycle // 24, cycle // 4)
        offset = timedelta(minutes=rng.randrange(0, 24 * 60))
        installed.append(
            InstalledProfile(
                1,
                ChargingProfile(
                    id=100 + level,
                    stack_level=level,
                    purpose=ChargingProfilePurpose.TX_DEFAULT,
                    kind=ChargingProfileKind.RECURRING,
                    recurrency_kind=RecurrencyKind.WEEKLY if weekly else RecurrencyKind.DAILY,
                    schedule=ChargingSchedule(
                        ChargingRateUnit.A, periods, duration, origin + offset
                    ),
                ),
            )
        )
    grid = ChargingProfile(
        id=1,
        stack_level=0,
        purpose=ChargingProfilePurpose.CHARGE_POINT_MAX,
        kind=ChargingProfileKind.RECURRING,
        recurrency_kind=RecurrencyKind.WEEKLY,
        schedule=ChargingSchedule(
            ChargingRateUnit.W,
            tuple(ChargingSchedulePeriod(h * 3600, 22000.0 - h * 50) for h in range(0, 168, 6)),
            None,
            origin,
        ),
    )
    return [InstalledProfile(0, grid), *installed] if count > 1 else installed


def timings_ms(call: Callable[[], object], repetitions: int) -> list[float]:
    for _ in range(min(3, repetitions)):
        call()  # warm-up
    times = []
    for _ in range(repetitions):
        begin = time.perf_counter()
        call()
        times.append((time.perf_counter() - begin) * 1000)
    return times


def p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def composite(installed: list[InstalledProfile], seconds: int) -> ChargingSchedule:
    return composite_schedule(
        installed,
        1,
        START,
        seconds,
        local_limit=LOCAL,
        unit=ChargingRateUnit.A,
        transaction=TRANSACTION,
    )


def run(repetitions: int) -> None:
    stacked = calendar(PROFILES)
    single = calendar(1)
    for window, seconds in (("24h", DAY), ("7d", WEEK)):
        medians = {}
        for label, installed in (("", stacked), ("_baseline", single)):
            times = timings_ms(partial(composite, installed, seconds), repetitions)
            extra = {
                "profiles": sum(1 for e in installed if e.connector_id == 1),
                "window_s": seconds,
                "periods": len(composite(installed, seconds).periods),
                "runs": repetitions,
            }
            medians[label] = statistics.median(times)
            emit(f"composite_{window}{label}_median_ms", medians[label], "ms", **extra)
            emit(f"composite_{window}{label}_p95_ms", p95(times), "ms", **extra)
        emit(
            f"composite_{window}_ratio",
            medians[""] / medians["_baseline"],
            "ratio",
            profiles=PROFILES,
            baseline_profiles=1,
        )
    boundary = next_change_after(stacked, 1, START, transaction=TRANSACTION)
    assert boundary is not None
    calls = repetitions * 10
    at_times = timings_ms(lambda: limit_at(stacked, 1, boundary, transaction=TRANSACTION), calls)
    next_times = timings_ms(
        lambda: next_change_after(stacked, 1, boundary, transaction=TRANSACTION), calls
    )
    emit("limit_at_us", statistics.median(at_times) * 1000, "us", profiles=PROFILES, runs=calls)
    emit(
        "next_change_after_us",
        statistics.median(next_times) * 1000,
        "us",
        profiles=PROFILES,
        runs=calls,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.composite_schedule")
    parser.add_argument("--quick", action="store_true", help="20 runs per figure, not 200")
    args = parser.parse_args(argv)
    run(20 if args.quick else 200)
    return 0


if __name__ == "__main__":
    sys.exit(main())
