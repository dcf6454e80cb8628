"""The charge point's parts on their own, on a real SQLite file: configuration keys (OCPP 1.6
ch. 9), the outbox (§3.7), the authorization rules (§3.5), meter values (§3.16), frame-log
redaction (security whitepaper A01.FR.12) and the control socket."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from ocpp.exceptions import InternalError, NotSupportedError
from ocpp.exceptions import NotImplementedError as NotImplementedCallError
from ocpp.v16.enums import AuthorizationStatus, ConfigurationStatus, UnlockStatus

from chargepoint.blocks.diagnostics import select_lines
from chargepoint.hardware.charger import MeterReading
from chargepoint.hardware.simulated import SimulatedCharger
from chargepoint.model.authorization import AuthorizationCache, Authorizer, IdTagInfo
from chargepoint.model.metering import ClockAlignedTrigger, aligned_after, meter_value
from chargepoint.model.transactions import TransactionStore
from chargepoint.protocol.charge_point import redact
from chargepoint.protocol.outbox import BATCH_BYTES, Outbox, RetryPolicy
from chargepoint.protocol.request import ConnectionEnded, NoAnswer, describe_failure
from chargepoint.storage import WAL_PAGES, open_state
from tests.harness import fresh_state, keys_on, make_station
from transport.websocket import WebSocketClosed

# -- configuration keys --


def test_keys_change_validate_and_persist() -> None:
    directory = fresh_state()
    keys = keys_on(open_state(directory))
    assert keys.change("HeartbeatInterval", "120") is ConfigurationStatus.accepted
    assert keys.change("HeartbeatInterval", "0") is ConfigurationStatus.rejected
    assert keys.change("HeartbeatInterval", "2 minutes") is ConfigurationStatus.rejected
    assert keys.change("NumberOfConnectors", "4") is ConfigurationStatus.rejected  # read-only
    assert keys.change("LightIntensity", "50") is ConfigurationStatus.not_supported
    assert keys.change("LocalPreAuthorize", "TRUE") is ConfigurationStatus.accepted
    assert keys.change("MeterValuesSampledData", "SoC, Voltage") is ConfigurationStatus.accepted
    # Errata §3.14.4: one unsupported measurand rejects the whole list, nothing changes.
    assert keys.change("MeterValuesSampledData", "SoC,Frequency") is ConfigurationStatus.rejected
    again = keys_on(open_state(directory))  # a restart
    assert again.integer("HeartbeatInterval") == 120
    assert again.boolean("LocalPreAuthorize") is True
    assert again.items("MeterValuesSampledData") == ["SoC", "Voltage"]


def test_authorization_key_is_write_only() -> None:
    keys = keys_on(open_state(fresh_state()))
    assert keys.change("AuthorizationKey", "too short") is ConfigurationStatus.rejected
    key = "00112233445566778899aabbccddeeff"
    assert keys.change("AuthorizationKey", key) is ConfigurationStatus.accepted
    known, unknown = keys.read(None)
    assert "AuthorizationKey" not in {k.key for k in known} and unknown == []
    known, unknown = keys.read(["AuthorizationKey", "HeartbeatInterval"])
    assert [k.key for k in known] == ["HeartbeatInterval"] and unknown == ["AuthorizationKey"]
    assert keys.get("AuthorizationKey") == key


def test_frame_log_hides_the_authorization_key() -> None:
    frame = json.dumps(
        [2, "1", "ChangeConfiguration", {"key": "AuthorizationKey", "value": "00ff" * 8}]
    )
    assert "00ff" not in redact(frame)
    assert '"***"' in redact(frame)
    other = json.dumps([2, "1", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "9"}])
    assert redact(other) == other


async def test_a_listener_hears_a_change_at_once() -> None:
    keys = keys_on(open_state(fresh_state()))
    heard: list[int] = []
    subscription = keys.subscribe_to("WebSocketPingInterval", heard.append)
    waiting = asyncio.create_task(keys.changed())
    await asyncio.sleep(0)
    keys.change("WebSocketPingInterval", "15")
    assert await waiting == "WebSocketPingInterval"
    subscription.cancel()
    keys.change("WebSocketPingInterval", "20")
    assert heard == [15]


# -- the outbox --


class Csms:
    """Answers the outbox's requests from a script: a dict, or an exception to raise."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.waiting = asyncio.Event()  # a request is waiting on an asyncio.Event step

    async def __call__(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.sent.append((action, payload))
        step = self.script.pop(0) if self.script else {}
        if isinstance(step, asyncio.Event):
            # No answer until the test says so; then it times out.
            self.waiting.set()
            await step.wait()
            raise TimeoutError
        if isinstance(step, Exception):
            raise step
        assert isinstance(step, dict)
        return step


START_ANSWER = {"transactionId": 77, "idTagInfo": {"status": "Accepted"}}


async def deliver_all(outbox: Outbox, csms: Csms, attempts: int = 3) -> None:
    policy = RetryPolicy(attempts=attempts, interval=0.0, no_answer_retry=0.0)
    task = asyncio.create_task(outbox.deliver(csms, lambda: policy, lambda item, answer: None))
    try:
        async with asyncio.timeout(5):
            await outbox.wait_empty()
    finally:
        task.cancel()


async def test_outbox_fills_in_the_csms_transaction_id_and_survives_a_restart() -> None:
    directory = fresh_state()
    db = open_state(directory)
    transactions = TransactionStore(db)
    outbox = Outbox(db, transactions)
    tx = transactions.start(1, "TAG", None, 100, datetime.now(UTC))
    outbox.put("StartTransaction", {"connectorId": 1, "idTag": "TAG"}, tx.local_id)
    outbox.put("MeterValues", {"connectorId": 1, "meterValue": []}, tx.local_id)
    outbox.put("StopTransaction", {"meterStop": 200}, tx.local_id)
    # What `chargepoint ctl status` reports as queued since the start (bench.soak counts it).
    assert outbox.queued == {"StartTransaction": 1, "MeterValues": 1, "StopTransaction": 1}
    db.close()  # the power goes: nothing was sent

    db = open_state(directory)
    transactions = TransactionStore(db)
    outbox = Outbox(db, transactions)
    assert [item.action for item in outbox.pending()] == [
        "StartTransaction",
        "MeterValues",
        "StopTransaction",
    ]
    csms = Csms(START_ANSWER, {}, {})
    await deliver_all(outbox, csms)
    assert csms.sent[1][1]["transactionId"] == 77
    assert csms.sent[2] == ("StopTransaction", {"meterStop": 200, "transactionId": 77})
    assert transactions.count() == 0  # forgotten once its StopTransaction was answered


def test_the_state_database_stays_small_however_many_messages_went_through() -> None:
    # Months of queue-and-deliver: the outbox's rows come and go, the WAL is cut back after
    # each checkpoint (bench.soak measures it over a day of sessions).
    directory = fresh_state()
    db = open_state(directory)
    outbox = Outbox(db, TransactionStore(db))
    for n in range(3000):
        payload = {"connectorId": 1, "meterValue": [], "n": n, "pad": "x" * 300}
        seq = outbox.put("MeterValues", payload)
        db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
    wal = directory / "state.db-wal"
    assert wal.stat().st_size <= WAL_PAGES * 4096 * 1.1
    assert (directory / "state.db").stat().st_size < 256 * 1024


async def test_outbox_retries_call_errors_then_drops_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = open_state(fresh_state())
    outbox = Outbox(db, TransactionStore(db))
    outbox.put("MeterValues", {"connectorId": 1, "meterValue": [], "n": 1})
    outbox.put("MeterValues", {"connectorId": 1, "meterValue": [], "n": 2})
    csms = Csms(InternalError(), InternalError(), InternalError(), {})
    await deliver_all(outbox, csms)
    assert [payload["n"] for _, payload in csms.sent] == [1, 1, 1, 2]
    assert outbox.dropped == 1 and outbox.delivered == 1
    assert "dropping MeterValues" in caplog.text


async def test_a_security_event_the_csms_does_not_implement_is_dropped_at_once() -> None:
    # A CSMS without the security extension: retrying would hold the transaction messages
    # behind the event for TransactionMessageAttempts x TransactionMessageRetryInterval.
    # A transaction message gets its retries whatever the CallError (OCPP 1.6 §3.7.1).
    db = open_state(fresh_state())
    outbox = Outbox(db, TransactionStore(db))
    outbox.put("SecurityEventNotification", {"type": "StartupOfTheDevice", "timestamp": "t"})
    outbox.put("MeterValues", {"connectorId": 1, "meterValue": [], "n": 1})
    csms = Csms(NotImplementedCallError(), NotSupportedError(), NotSupportedError(), {})
    await deliver_all(outbox, csms)
    assert [action for action, _ in csms.sent] == [
        "SecurityEventNotification",
        "MeterValues",
        "MeterValues",
        "MeterValues",
    ]
    assert outbox.dropped == 1 and outbox.delivered == 1


async def test_outbox_resends_unanswered_messages_without_counting_them() -> None:
    db = open_state(fresh_state())
    outbox = Outbox(db, TransactionStore(db))
    outbox.put("MeterValues", {"connectorId": 1, "meterValue": []})
    csms = Csms(TimeoutError(), TimeoutError(), TimeoutError(), TimeoutError(), {})
    await deliver_all(outbox, csms, attempts=1)
    assert len(csms.sent) == 5 and outbox.dropped == 0


@pytest.mark.parametrize("batch_bytes", [2048, BATCH_BYTES])
async def test_a_backlog_of_meter_values_goes_out_in_few_messages(batch_bytes: int) -> None:
    db = open_state(fresh_state())
    transactions = TransactionStore(db)
    outbox = Outbox(db, transactions, batch_bytes=batch_bytes)
    tx = transactions.start(1, "TAG", None, 0, datetime.now(UTC))
    transactions.set_csms_id(tx.local_id, 5, "Accepted")
    for n in range(300):
        value = {
            "timestamp": f"2026-11-22T10:00:{n % 60:02d}Z",
            "sampledValue": [{"value": str(n)}],
        }
        outbox.put("MeterValues", {"connectorId": 1, "meterValue": [value]}, tx.local_id)
    outbox.put("StopTransaction", {"meterStop": 100}, tx.local_id)
    csms = Csms(*[{}] * 300)
    await deliver_all(outbox, csms)
    meter_values = [payload for action, payload in csms.sent if action == "MeterValues"]
    sizes = [len(json.dumps(p, separators=(",", ":"))) for p in meter_values]
    assert 1 < len(meter_values) < 300 * 90 // batch_bytes + 3
    assert all(size <= batch_bytes for size in sizes)
    samples = [int(v["sampledValue"][0]["value"]) for p in meter_values for v in p["meterValue"]]
    assert samples == list(range(300))  # each once, in order
    assert {p["transactionId"] for p in meter_values} == {5}
    assert csms.sent[-1][0] == "StopTransaction"
    assert outbox.delivered == 301


async def test_an_unanswered_batch_is_sent_again_unchanged() -> None:
    db = open_state(fresh_state())
    transactions = TransactionStore(db)
    outbox = Outbox(db, transactions)
    tx = transactions.start(1, "TAG", None, 0, datetime.now(UTC))
    transactions.set_csms_id(tx.local_id, 5, "Accepted")
    for n in range(3):
        outbox.put("MeterValues", {"connectorId": 1, "meterValue": [{"n": n}]}, tx.local_id)
    release = asyncio.Event()
    csms = Csms(release, {})
    policy = RetryPolicy(attempts=3, interval=0.0, no_answer_retry=0.0)
    task = asyncio.create_task(outbox.deliver(csms, lambda: policy, lambda item, answer: None))
    async with asyncio.timeout(5):
        await csms.waiting.wait()
    # While the first batch waits for its answer, more samples are queued...
    outbox.put("MeterValues", {"connectorId": 1, "meterValue": [{"n": 3}]}, tx.local_id)
    release.set()
    async with asyncio.timeout(5):
        await outbox.wait_empty()
    task.cancel()
    # ...but the resend is the same message; the new sample follows on its own.
    assert csms.sent[0] == csms.sent[1]
    assert [v["n"] for v in csms.sent[1][1]["meterValue"]] == [0, 1, 2]
    assert [v["n"] for v in csms.sent[2][1]["meterValue"]] == [3]


# -- authorization --


async def test_authorization_rules_online_and_offline() -> None:
    db = open_state(fresh_state())
    keys = keys_on(db)
    authorizer = Authorizer(keys, AuthorizationCache(db))
    csms = Csms({"idTagInfo": {"status": "Accepted", "parentIdTag": "P"}})
    info = await authorizer.authorize("CARD", csms)
    assert info.accepted and info.parent_id_tag == "P"
    # Offline: from the cache (LocalAuthorizeOffline), unknown ones refused by default.
    assert (await authorizer.authorize("CARD", None)).accepted
    assert not (await authorizer.authorize("STRANGER", None)).accepted
    keys.change("AllowOfflineTxForUnknownId", "true")
    assert (await authorizer.authorize("STRANGER", None)).accepted
    keys.change("LocalAuthorizeOffline", "false")
    assert not (await authorizer.authorize("CARD", None)).accepted
    # LocalPreAuthorize: online, a cached Accepted card needs no Authorize.req.
    keys.change("LocalPreAuthorize", "true")
    silent = Csms()
    assert (await authorizer.authorize("CARD", silent)).accepted and silent.sent == []
    # An expired cache entry is not good enough.
    authorizer.remember("OLD", IdTagInfo(AuthorizationStatus.accepted, "2020-01-01T00:00:00Z"))
    asked = Csms({"idTagInfo": {"status": "Blocked"}})
    assert (await authorizer.authorize("OLD", asked)).status is AuthorizationStatus.blocked
    assert len(asked.sent) == 1
    # No answer from the CSMS: decided as if offline.
    keys.change("LocalAuthorizeOffline", "true")
    assert (await authorizer.authorize("CARD", Csms(TimeoutError()))).accepted


# -- meter values --


def test_meter_value_fields() -> None:
    reading = MeterReading(
        energy_wh=1234.6,
        power_w=11040.0,
        current_a=16.0,
        current_offered_a=16.0,
        voltage_v=230.0,
        soc_percent=None,
    )
    when = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    value = meter_value(
        reading, ["Energy.Active.Import.Register", "SoC", "Voltage"], "Trigger", when
    )
    assert value == {
        "timestamp": "2026-11-22T12:00:00.000Z",
        "sampledValue": [
            {
                "value": "1234",
                "context": "Trigger",
                "measurand": "Energy.Active.Import.Register",
                "unit": "Wh",
                "location": "Outlet",
                "format": "Raw",
            },
            {
                "value": "230.0",
                "context": "Trigger",
                "measurand": "Voltage",
                "unit": "V",
                "location": "Outlet",
            },
        ],
    }
    assert meter_value(reading, ["SoC"], "Trigger", when) is None  # no EV data: no value


def test_clock_aligned_instants_restart_at_midnight() -> None:
    late = datetime(2026, 11, 22, 23, 50, 0, tzinfo=UTC)
    # 7 minutes does not divide a day: the last interval of the day is cut short at midnight.
    assert aligned_after(late, 420) == datetime(2026, 11, 22, 23, 55, 0, tzinfo=UTC)
    assert aligned_after(datetime(2026, 11, 22, 23, 58, tzinfo=UTC), 420) == datetime(
        2026, 11, 23, 0, 0, tzinfo=UTC
    )
    trigger = ClockAlignedTrigger(900)
    now = datetime(2026, 11, 22, 10, 7, 30, tzinfo=UTC)
    first = trigger.get_next_fire_time(None, now)
    assert first == datetime(2026, 11, 22, 10, 15, tzinfo=UTC)
    assert trigger.get_next_fire_time(first, first) == datetime(2026, 11, 22, 10, 30, tzinfo=UTC)


async def test_unlock_during_a_start_stops_the_transaction_it_began() -> None:
    station = make_station(AllowOfflineTxForUnknownId="true")
    charger = station.context.charger
    assert isinstance(charger, SimulatedCharger)
    connector = charger.connector(1)
    locking, release = asyncio.Event(), asyncio.Event()

    async def slow_lock() -> bool:  # a real lock motor takes its time
        locking.set()
        await release.wait()
        connector.locked = True
        return True

    connector.lock = slow_lock  # type: ignore[method-assign]
    await station.start()
    charger.plug(1)
    charger.present("CARD", 1)
    async with asyncio.timeout(5):
        await locking.wait()
    unlocking = asyncio.create_task(station.remote_control.unlock(1))
    release.set()
    async with asyncio.timeout(5):
        assert await unlocking is UnlockStatus.unlocked
    assert not connector.locked
    assert station.transactions.connectors[0].transaction is None
    queued = [(item.action, item.payload.get("reason")) for item in station.outbox.pending()]
    assert queued == [("StartTransaction", None), ("StopTransaction", "UnlockCommand")]
    await station.close()


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        (NoAnswer("MeterValues", 5), "NoAnswer: no MeterValues.conf from the CSMS within 5 s"),
        (TimeoutError(), "TimeoutError (no detail)"),
        (InternalError(description="boom"), "CallError InternalError: boom"),
        (ConnectionEnded("the link dropped"), "ConnectionEnded: the link dropped"),
        (WebSocketClosed("closed by the CSMS", 1000), "WebSocketClosed: closed by the CSMS"),
    ],
)
def test_a_failed_request_is_described_by_its_type_and_what_it_says(
    failure: BaseException, said: str
) -> None:
    assert describe_failure(failure) == said


def test_a_diagnostics_window_starting_within_a_stamped_second_keeps_that_seconds_lines() -> None:
    # Log stamps are read to the second (frame-trace stamps to the millisecond), truncated: a
    # startTime of 12:00:00.4 must keep the line stamped 12:00:00,123, not drop it.
    lines = ["2026-12-03 11:59:59,999 INFO before\n", "2026-12-03 12:00:00,123 INFO within\n"]
    start = datetime(2026, 12, 3, 12, 0, 0, 400_000).astimezone(UTC)
    assert select_lines(lines, start, None) == [lines[1]]
