"""Security events and the security log (OCPP 1.6 security whitepaper A04, N01.FR.05, §8).

The log on a real directory (rotation, its bound, reading a time window across files) and in
memory; :class:`SecurityEvents` on a real context (its outbox in SQLite on disk); end to end
through the daemon, the simulated module and a real CSMS peer: the notification arrives, also
when it was recorded during a coverage hole (A04.FR.02) and across a restart, for a tampered
enclosure, and for a disk running out of space.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from chargepoint.blocks.context import Context
from chargepoint.blocks.security_events import (
    BURST,
    CHECK_JOB,
    NOTIFICATION,
    PER_HOUR,
    DiskUsage,
    SecurityEvent,
    SecurityEvents,
)
from chargepoint.hardware.simulated import SimulatedCharger
from chargepoint.protocol.outbox import Item, RetryPolicy
from chargepoint.security_log import SecurityLog
from chargepoint.storage import open_state
from tests.harness import (
    STACKS,
    Rig,
    Stack,
    fresh_state,
    keys_on,
    make_station,
    rig,
    strict_failures,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def events_of(
    log: SecurityLog, start: datetime | None = None, stop: datetime | None = None
) -> list[Any]:
    return [json.loads(line) for line in log.lines(start, stop)]


# -- the log --


def test_a_line_is_json_with_utc_millisecond_time_type_and_tech_info(tmp_path: Path) -> None:
    log = SecurityLog(tmp_path / "security.jsonl")
    local = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=UTC).astimezone()
    log.write("StartupOfTheDevice", "daemon 1.0 started", local)
    log.write("ResetOrReboot", None, T0)
    log.close()
    lines = (tmp_path / "security.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"time": "2024-05-01T14:00:00.123Z", "type": "StartupOfTheDevice",
         "techInfo": "daemon 1.0 started"},
        {"time": "2024-05-01T12:00:00.000Z", "type": "ResetOrReboot"},
    ]  # fmt: skip


def test_the_log_files_are_for_the_service_user_and_group_only(tmp_path: Path) -> None:
    log = SecurityLog(tmp_path / "security.jsonl", max_bytes=200, backups=2)
    for n in range(20):  # rotates
        log.write("InvalidMessages", f"frame {n}", T0)
    log.close()
    modes = {f.name: f.stat().st_mode & 0o777 for f in tmp_path.iterdir()}
    assert len(modes) == 3 and set(modes.values()) == {0o640}, modes


def test_tech_info_is_cut_to_the_255_characters_the_schema_allows() -> None:
    log = SecurityLog(None)
    log.write("InvalidMessages", "x" * 1000, T0)
    [event] = events_of(log)
    assert event["techInfo"] == "x" * 255


def test_the_log_rotates_and_never_holds_more_than_its_bound(tmp_path: Path) -> None:
    """A04.FR.04 recommends a rolling log: here 1 KiB x 3 files."""
    path = tmp_path / "security.jsonl"
    log = SecurityLog(path, max_bytes=1024, backups=2)
    for n in range(300):
        log.write("InvalidMessages", f"frame {n:03d}", T0 + timedelta(seconds=n))
    log.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["security.jsonl", "security.jsonl.1", "security.jsonl.2"]
    assert all(f.stat().st_size <= 1024 for f in files)
    assert sum(f.stat().st_size for f in files) <= log.bound == 3 * 1024
    kept = [e["techInfo"] for e in events_of(SecurityLog(path, max_bytes=1024, backups=2))]
    # The newest events, all of them, in order; the oldest rolled away.
    assert kept[-1] == "frame 299"
    assert kept == [f"frame {n:03d}" for n in range(300 - len(kept), 300)]
    assert "frame 000" not in kept


def test_a_window_reads_across_the_rotated_files_inclusive_of_both_ends(tmp_path: Path) -> None:
    log = SecurityLog(tmp_path / "security.jsonl", max_bytes=1024, backups=5)
    for n in range(40):
        log.write("SettingSystemTime", f"#{n}", T0 + timedelta(minutes=n))
    assert len(log.files()) > 2  # the window below spans several files
    window = events_of(log, T0 + timedelta(minutes=5), T0 + timedelta(minutes=30))
    assert [e["techInfo"] for e in window] == [f"#{n}" for n in range(5, 31)]
    assert [e["techInfo"] for e in events_of(log, None, T0 + timedelta(minutes=1))] == ["#0", "#1"]
    assert [e["techInfo"] for e in events_of(log, T0 + timedelta(minutes=39))] == ["#39"]


def test_a_start_with_microseconds_keeps_the_event_of_the_same_millisecond() -> None:
    log = SecurityLog(None)
    log.write("ResetOrReboot", "same ms", T0 + timedelta(microseconds=1500))
    assert len(log.lines(T0 + timedelta(microseconds=1900))) == 1
    assert log.lines(T0 + timedelta(microseconds=2000)) == []


def test_the_log_is_read_back_and_continued_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "security.jsonl"
    first = SecurityLog(path)
    first.write("StartupOfTheDevice", "first run", T0)
    first.close()
    second = SecurityLog(path)
    second.write("StartupOfTheDevice", "second run", T0 + timedelta(hours=1))
    assert [e["techInfo"] for e in events_of(second)] == ["first run", "second run"]


def test_a_line_cut_by_a_power_failure_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "security.jsonl"
    log = SecurityLog(path)
    log.write("ResetOrReboot", "before", T0)
    log.close()
    with path.open("a") as f:
        f.write('{"time":"2024-05-01T12:00:01.000Z","ty')  # the power went here
    log = SecurityLog(path)
    log.write("StartupOfTheDevice", "after", T0 + timedelta(seconds=2))
    assert [e["techInfo"] for e in events_of(log)] == ["before", "after"]


def test_the_in_memory_log_is_bounded_too() -> None:
    log = SecurityLog(None, max_bytes=1024, backups=1)
    for n in range(500):
        log.write("InvalidMessages", f"frame {n:03d}", T0 + timedelta(seconds=n))
    lines = log.lines()
    assert sum(len(line) for line in lines) <= log.bound == 2048
    assert json.loads(lines[-1])["techInfo"] == "frame 499"
    assert len(lines) < 500


# -- the block, on a real context (its outbox in SQLite on disk) --


def bare_context() -> Context:
    """The blocks' context on a simulated charger and a fresh state database, with no block
    of the station's recording events too."""
    db = open_state(fresh_state())
    return Context(
        charger=SimulatedCharger(2, db),
        keys=keys_on(db),
        db=db,
        scheduler=AsyncIOScheduler(timezone=UTC),
        profiles=frozenset(),
    )


def notifications(context: Context) -> list[dict[str, Any]]:
    return [i.payload for i in context.outbox.pending() if i.action == NOTIFICATION]


async def test_record_writes_the_log_and_queues_a_notification_durably() -> None:
    """A04.FR.01/02 and A04.FR.04: one line in the log, one outbox row on disk."""
    context = bare_context()
    log = SecurityLog(None)
    events = SecurityEvents(context, log, clock=lambda: T0)
    events.record(SecurityEvent.INVALID_CENTRAL_SYSTEM_CERTIFICATE, "expired on 2024-01-01")
    events.record(SecurityEvent.FIRMWARE_UPDATED)
    [item_1, item_2] = context.outbox.pending()
    assert (item_1.action, item_1.local_tx) == (NOTIFICATION, None)
    assert item_1.payload == {
        "type": "InvalidCentralSystemCertificate",
        "timestamp": "2024-05-01T12:00:00.000Z",
        "techInfo": "expired on 2024-01-01",
    }
    assert item_2.payload == {"type": "FirmwareUpdated", "timestamp": "2024-05-01T12:00:00.000Z"}
    assert [e["type"] for e in events_of(log)] == [
        "InvalidCentralSystemCertificate",
        "FirmwareUpdated",
    ]
    # Written to SQLite: a station on the same database after a power cut still has them.
    rows = context.db.execute("SELECT action FROM outbox ORDER BY seq").fetchall()
    assert rows == [(NOTIFICATION,), (NOTIFICATION,)]


async def test_every_event_of_the_list_is_notified_with_a_schema_valid_type() -> None:
    context = bare_context()
    events = SecurityEvents(context, SecurityLog(None))
    for event in SecurityEvent:
        events.record(event, "t" * 300)
    sent = notifications(context)
    assert [p["type"] for p in sent] == [e.value for e in SecurityEvent]
    assert all(len(p["type"]) <= 50 and len(p["techInfo"]) == 255 for p in sent)


async def test_a_delivered_notification_leaves_the_outbox_and_touches_no_transaction() -> None:
    """The outbox delivers a non-transaction message like any other: no batching, no
    transactionId, and the transaction block ignores its answer."""
    station = make_station()
    station.security_events.record(SecurityEvent.SETTING_SYSTEM_TIME, "clock moved 3 h forward")
    sent: list[tuple[str, dict[str, Any]]] = []
    answered: list[Item] = []

    async def send(action: str, payload: dict[str, Any]) -> dict[str, Any]:
        sent.append((action, payload))
        return {}

    def on_answer(item: Item, answer: dict[str, Any]) -> None:
        answered.append(item)
        station.transactions.on_delivered(item, answer)

    task = asyncio.create_task(
        station.outbox.deliver(send, lambda: RetryPolicy(3, 0.0, 0.0), on_answer)
    )
    async with asyncio.timeout(10):
        await station.outbox.wait_empty()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [a for a, _ in sent] == [NOTIFICATION]
    assert "transactionId" not in sent[0][1]
    assert [i.action for i in answered] == [NOTIFICATION]
    assert station.context.transactions.count() == 0


async def test_a_tamper_sensor_records_tamper_detection_activated() -> None:
    context = bare_context()
    log = SecurityLog(None)
    SecurityEvents(context, log)
    charger = context.charger
    assert isinstance(charger, SimulatedCharger)
    charger.tamper("enclosure door opened")
    async with asyncio.timeout(10):
        await context.wait_until(lambda: bool(notifications(context)))
    [payload] = notifications(context)
    assert payload["type"] == "TamperDetectionActivated"
    assert payload["techInfo"] == "enclosure door opened"
    assert [e["type"] for e in events_of(log)] == ["TamperDetectionActivated"]


class Disk:
    """A disk whose free space the test sets (the real one is never filled)."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.asked: list[Path] = []

    def usage(self, path: Path) -> DiskUsage:
        self.asked.append(path)
        return DiskUsage(total=1 << 30, used=(1 << 30) - self.free, free=self.free)


MIB = 1024 * 1024


async def test_memory_exhaustion_is_recorded_once_per_shortage(tmp_path: Path) -> None:
    context = bare_context()
    disk = Disk(free=100 * MIB)
    events = SecurityEvents(
        context,
        SecurityLog(tmp_path / "security.jsonl"),
        min_free_bytes=16 * MIB,
        disk_usage=disk.usage,
    )
    assert events.check_free_space() is False
    disk.free = 15 * MIB
    assert events.check_free_space() is True
    assert events.check_free_space() is True  # still short: not recorded again
    [payload] = notifications(context)
    assert payload["type"] == "MemoryExhaustion"
    assert payload["techInfo"] == "15.0 MiB free in the state directory (under 16 MiB)"
    disk.free = 200 * MIB  # cleaned up...
    assert events.check_free_space() is False
    disk.free = 1 * MIB  # ...and short again: a new shortage, a new event
    events.check_free_space()
    assert [p["type"] for p in notifications(context)] == ["MemoryExhaustion"] * 2
    assert set(disk.asked) == {tmp_path}  # the state directory, the log's


class Clocks:
    """A wall clock and a monotonic clock the test moves."""

    def __init__(self) -> None:
        self.wall = T0
        self.mono = 1000.0

    def elapse(self, seconds: float, *, wall_jump: float = 0.0) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds + wall_jump)


async def test_a_flood_of_one_event_is_queued_at_a_bounded_rate_and_logged_whole() -> None:
    # A flapping tamper switch through a long outage: the outbox on flash gets BURST at once
    # and PER_HOUR an hour; the security log keeps every one; the next notification let
    # through says how many were held back. Other event types have their own budget.
    context = bare_context()
    clocks = Clocks()
    events = SecurityEvents(
        context, SecurityLog(None), clock=lambda: clocks.wall, monotonic=lambda: clocks.mono
    )
    for _ in range(BURST + 5):
        events.record(SecurityEvent.TAMPER_DETECTION_ACTIVATED, "door")
    events.record(SecurityEvent.STARTUP_OF_THE_DEVICE)
    queued = [p["type"] for p in notifications(context)]
    assert queued.count("TamperDetectionActivated") == BURST
    assert queued.count("StartupOfTheDevice") == 1
    assert len(events_of(events.log)) == BURST + 6
    clocks.elapse(3600 / PER_HOUR)  # one more may go
    events.record(SecurityEvent.TAMPER_DETECTION_ACTIVATED, "door")
    last = notifications(context)[-1]
    assert last["techInfo"] == "door (5 more in the security log)"


async def test_the_controller_clock_being_set_is_setting_system_time() -> None:
    # §8 SettingSystemTime: whoever sets the clock (NTP after a boot with an empty RTC, an
    # operator), the wall clock then moves by more than the time that passed.
    context = bare_context()
    clocks = Clocks()
    events = SecurityEvents(
        context, SecurityLog(None), clock=lambda: clocks.wall, monotonic=lambda: clocks.mono
    )
    clocks.elapse(600, wall_jump=2.5)  # an NTP slew or a few seconds' drift: not a setting
    assert events.check_clock() == pytest.approx(2.5)
    clocks.elapse(600, wall_jump=3600)  # set an hour ahead
    assert events.check_clock() == pytest.approx(3600)
    clocks.elapse(600, wall_jump=-86_400)  # and a day back
    events.check_clock()
    assert [(p["type"], p["techInfo"].split(" (")[0]) for p in notifications(context)] == [
        ("SettingSystemTime", "the controller's clock was set +3600 s"),
        ("SettingSystemTime", "the controller's clock was set -86400 s"),
    ]


async def test_a_security_log_gone_since_the_last_run_is_security_log_was_cleared(
    tmp_path: Path,
) -> None:
    directory = fresh_state()
    db = open_state(directory)
    context = Context(
        charger=SimulatedCharger(2, db),
        keys=keys_on(db),
        db=db,
        scheduler=AsyncIOScheduler(timezone=UTC),
        profiles=frozenset(),
    )
    path = tmp_path / "security.jsonl"
    first = SecurityEvents(context, SecurityLog(path))
    first.start()  # a first run: no log before, nothing cleared
    first.record(SecurityEvent.STARTUP_OF_THE_DEVICE)
    first.log.close()
    again = SecurityEvents(context, SecurityLog(path))
    again.start()  # the log is still there: nothing cleared
    again.log.close()
    path.unlink()  # an operator (or an intruder) removes it
    third = SecurityEvents(context, SecurityLog(path))
    third.start()
    assert [p["type"] for p in notifications(context)] == [
        "StartupOfTheDevice",
        "SecurityLogWasCleared",
    ]
    assert [e["type"] for e in events_of(third.log)] == ["SecurityLogWasCleared"]
    third.log.close()


async def test_the_daily_check_runs_at_start_on_the_scheduler(tmp_path: Path) -> None:
    context = bare_context()
    scheduler = context.scheduler
    disk = Disk(free=1 * MIB)
    events = SecurityEvents(context, SecurityLog(None), storage=tmp_path, disk_usage=disk.usage)
    scheduler.start()
    try:
        events.start()
        job = scheduler.get_job(CHECK_JOB)
        assert job.trigger.interval == timedelta(days=1)
        async with asyncio.timeout(10):
            await context.wait_until(lambda: bool(notifications(context)))
    finally:
        scheduler.shutdown(wait=False)
    assert [p["type"] for p in notifications(context)] == ["MemoryExhaustion"]


# -- end to end: daemon, simulated module, CSMS peer --


@pytest.fixture(params=STACKS, ids=str)
def stack(request: pytest.FixtureRequest) -> Stack:
    result: Stack = request.param
    return result


def security_events(r: Rig) -> SecurityEvents:
    """The daemon's security events (the station builds them)."""
    return r.station.security_events


def notified(r: Rig, tech_info: str) -> list[dict[str, Any]]:
    return [p for p in r.calls(NOTIFICATION) if p.get("techInfo") == tech_info]


async def wait_notified(r: Rig, tech_info: str, timeout: float = 60) -> dict[str, Any]:
    await r.peer.wait_for(lambda _: notified(r, tech_info), timeout)
    [params] = notified(r, tech_info)
    return params


async def test_a_recorded_event_reaches_the_csms(stack: Stack) -> None:
    """A04.FR.01/03; validated by the strict Node CSMS against the whitepaper's schema."""
    async with rig(stack) as r:
        security_events(r).record(SecurityEvent.INVALID_MESSAGES, "frame 17 was not JSON")
        params = await wait_notified(r, "frame 17 was not JSON")
        assert params["type"] == "InvalidMessages"
        sent = datetime.fromisoformat(params["timestamp"].replace("Z", "+00:00"))
        assert sent.tzinfo is not None and params["timestamp"].endswith("Z")
        async with asyncio.timeout(30):
            await r.station.outbox.wait_empty()
        assert strict_failures(r.peer) == []


async def test_an_event_recorded_offline_reaches_the_csms_after_reconnecting(stack: Stack) -> None:
    """A04.FR.02: queued with guaranteed delivery while the charge point is disconnected."""
    async with rig(stack) as r:
        r.offline()
        await r.wait_offline()
        security_events(r).record(SecurityEvent.SETTING_SYSTEM_TIME, "offline: clock set")
        assert len(r.station.outbox) >= 1
        assert notified(r, "offline: clock set") == []
        r.online()
        params = await wait_notified(r, "offline: clock set")
        assert params["type"] == "SettingSystemTime"
        assert strict_failures(r.peer) == []


async def test_an_event_recorded_offline_reaches_the_csms_after_a_restart(stack: Stack) -> None:
    """A04.FR.02 across a power cycle: the notification waits in the SQLite outbox."""
    async with rig(stack) as r:
        r.offline()
        await r.wait_offline()
        security_events(r).record(SecurityEvent.TAMPER_DETECTION_ACTIVATED, "before restart")
        await r.restart()
        assert notified(r, "before restart") == []
        r.online()
        params = await wait_notified(r, "before restart")
        assert params["type"] == "TamperDetectionActivated"
        assert strict_failures(r.peer) == []


async def test_tampering_with_the_charger_is_reported_to_the_csms(stack: Stack) -> None:
    async with rig(stack) as r:
        security_events(r)
        r.charger.tamper("lid switch")
        params = await wait_notified(r, "lid switch")
        assert params["type"] == "TamperDetectionActivated"
        assert strict_failures(r.peer) == []
