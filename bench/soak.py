"""A compressed day at a busy charger: the daemon in its own process (``chargepoint run``)
through the simulated Quectel module (bench.boot's realistic profile: 115200 baud, 20 ms per
answer, 50 ms network latency each way), against a CSMS that counts what it gets.

2,000 charging sessions on 2 connectors (``--quick``: 100), driven as the charger's hardware
drives them, through the control socket (`chargepoint ctl plug/present/unplug`): cable in,
a card of its own per session, charging with a MeterValues sample every second
(MeterValueSampleInterval = 1), the card again, cable out. A day is 144 ten-minute slots, so
a coverage hole (``HOLE_S`` seconds without a cell) comes every ``sessions / 144`` sessions;
the CSMS restarts once, halfway, and the module resets once (a spontaneous reboot: RDY out of
the blue), at three quarters. Unknown cards are accepted offline (AllowOfflineTxForUnknownId),
so sessions go on through the holes and their messages wait in the outbox.

After the last session and the outbox drained, it reports:

* ``rss_growth_mb``: the daemon's RSS at the end minus after the warm-up (the first 5 % of
  the sessions), goal <= 5 MB; ``rss_mb_start``/``rss_mb_end`` beside it;
* ``state_db_mb``: ``state.db`` with its WAL, after the outbox drained;
* ``trace_mb``: the frame trace's files (bounded by its rotation, 4 x 1 MiB);
* ``fds_start``/``fds_end``: the daemon's open file descriptors online before the first
  session and online after the last (goal: equal);
* ``idle_cpu_percent``: the daemon's CPU over ``IDLE_S`` seconds idle (300; ``--quick``: 60)
  with a 60 s heartbeat and a WebSocket ping every 60 s, of one core (goal <= 0.5 %);
* ``messages_lost``: transaction messages and security events the daemon queued
  (``chargepoint ctl status``: ``queued_since_start``) that the CSMS never got, and sessions
  without their StartTransaction or StopTransaction (goal 0);
* ``messages_duplicated``: messages the CSMS got twice, beyond the re-send OCPP-J allows:
  the last CALL a connection carried, unanswered as far as the charge point knows, sent again
  on the next connection (counted as ``messages_resent``).

    python -m bench.soak [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bench.boot import PROFILES
from chargepoint.app import control
from transport.simulator import SimulatorShell

NAME = "soak"
BAUD = 115200
CONNECTORS = 2
CHARGE_S = 3.0  # charging time of a session: three MeterValues samples
HOLE_S = 6.0  # a coverage hole: long enough for the connection to be lost and re-made
# A day is 144 ten-minute slots with a coverage hole in each: one every 13 of the day's 2,000
# sessions. --quick runs the first 100 sessions of that day, holes as often.
DAY_SESSIONS = 2000
HOLE_EVERY = DAY_SESSIONS // 144
HEARTBEAT_S = 60
PING_S = 60
WARM_UP = 0.05
POLL_S = 0.2  # how often the hardware side looks at the connector's state
STEP_TIMEOUT = 120.0  # one step of a session; a hole, a CSMS restart, a reset included


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    record = {"bench": NAME, "metric": metric, "value": round(value, 3), "unit": unit, **extra}
    print(json.dumps(record), flush=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Seen:
    """Where a message was first received: which connection, and which CALL on it."""

    connection: int
    call: int


@dataclass
class Csms:
    """Answers every request of the charge point (Accepted where there is a status) and
    counts the transaction messages and security events it gets, each once: a MeterValues
    request holds as many messages as it has meterValue elements (the outbox batches them)."""

    heartbeat: int = HEARTBEAT_S
    port: int = 0
    connections: int = 0
    next_transaction: int = 1
    calls: Counter[str] = field(default_factory=Counter)
    unique: Counter[str] = field(default_factory=Counter)  # messages by action, each once
    duplicated: int = 0
    resent: int = 0
    started_tags: set[str] = field(default_factory=set)
    stopped: set[int] = field(default_factory=set)
    _seen: dict[tuple[Any, ...], Seen] = field(default_factory=dict)
    _last_call: dict[int, int] = field(default_factory=dict)  # connection -> its last CALL
    _calls_in: Counter[int] = field(default_factory=Counter)
    _server: Server | None = None

    async def start(self) -> None:
        self._server = await serve(
            self._serve,
            "127.0.0.1",
            self.port,
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            ping_interval=None,
            reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, connection: ServerConnection) -> None:
        self.connections += 1
        number = self.connections
        try:
            async for message in connection:
                frame = json.loads(message)
                if frame[0] != 2:
                    continue
                _, message_id, action, payload = frame
                self._calls_in[number] += 1
                self._count(number, self._calls_in[number], action, payload)
                self._last_call[number] = self._calls_in[number]
                await connection.send(json.dumps([3, message_id, self._answer(action, payload)]))
        except ConnectionClosed:
            pass

    def _answer(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        accepted = {"status": "Accepted"}
        match action:
            case "BootNotification":
                return {**accepted, "interval": self.heartbeat, "currentTime": _now()}
            case "Heartbeat":
                return {"currentTime": _now()}
            case "Authorize" | "StopTransaction":
                return {"idTagInfo": accepted}
            case "StartTransaction":
                transaction = self.next_transaction
                self.next_transaction += 1
                return {"transactionId": transaction, "idTagInfo": accepted}
            case "DataTransfer" | "SignCertificate":
                return accepted
        return {}  # StatusNotification, MeterValues, SecurityEventNotification, ...

    def _count(self, connection: int, call: int, action: str, payload: dict[str, Any]) -> None:
        self.calls[action] += 1
        keys: list[tuple[Any, ...]]
        match action:
            case "StartTransaction":
                keys = [("start", payload["idTag"], payload["timestamp"])]
                self.started_tags.add(payload["idTag"])
            case "StopTransaction":
                keys = [("stop", payload["transactionId"])]
                self.stopped.add(payload["transactionId"])
            case "MeterValues":
                keys = [
                    ("meter", payload.get("transactionId"), payload["connectorId"], v["timestamp"])
                    for v in payload["meterValue"]
                ]
            case "SecurityEventNotification":
                keys = [("security", payload["type"], payload["timestamp"])]
            case _:
                return
        for key in keys:
            first = self._seen.get(key)
            if first is None:
                self._seen[key] = Seen(connection, call)
                self.unique[action] += 1
            elif first.connection != connection and self._last_call[first.connection] == first.call:
                self.resent += 1  # in flight when its connection was lost (OCPP-J 1.6 §4.1.1)
            else:
                self.duplicated += 1


def _proc(pid: int) -> tuple[float, int, float]:
    """RSS (MB), open file descriptors and CPU seconds of a process: the scheduler's own
    nanoseconds summed over its threads (``/proc/<pid>/stat`` counts in 10 ms ticks)."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    cpu = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            cpu += int((task / "schedstat").read_text().split()[0]) / 1e9
    return rss, fds, cpu


def _mb(paths: list[Path]) -> float:
    return sum(p.stat().st_size for p in paths if p.exists()) / 1e6


class Charger:
    """The hardware side: a connector's cable and card reader, through the control socket."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket

    async def ctl(self, **message: Any) -> dict[str, Any]:
        answer = await control.request(self.socket, message)
        if not answer.get("ok"):
            raise RuntimeError(f"ctl {message}: {answer.get('error')}")
        return answer

    async def until(self, what: str, predicate: Callable[[dict[str, Any]], bool]) -> None:
        status: dict[str, Any] = {}
        try:
            async with asyncio.timeout(STEP_TIMEOUT):
                # The daemon in its own process has no event to await: its status is polled.
                while not predicate(status := await self.ctl(cmd="status")):  # noqa: ASYNC110
                    await asyncio.sleep(POLL_S)
        except TimeoutError:
            raise RuntimeError(
                f"no {what} within {STEP_TIMEOUT:g} s; the daemon's status: {json.dumps(status)}"
            ) from None

    async def drained(self) -> None:
        """Until the outbox is empty, online; a backlog may take minutes, so this fails only
        when the queue stops shrinking for ``STEP_TIMEOUT``."""
        least = None
        while True:
            status = await self.ctl(cmd="status")
            queued = status["queued_messages"]
            if status["online"] and queued == 0:
                return
            if least is None or queued < least:
                least, since = queued, time.monotonic()
            elif time.monotonic() - since > STEP_TIMEOUT:
                raise RuntimeError(f"the outbox stuck at {queued} messages: {json.dumps(status)}")
            await asyncio.sleep(POLL_S)

    async def session(self, connector: int, number: int) -> None:
        tag = f"SOAK{number:05d}"
        index = connector - 1

        def transaction(status: dict[str, Any]) -> Any:
            return status["connectors"][index]["transaction"]

        await self.ctl(cmd="plug", connector=connector)
        await self.ctl(cmd="present", id_tag=tag, connector=connector)
        await self.until(f"transaction of {tag}", lambda s: transaction(s) is not None)
        await asyncio.sleep(CHARGE_S)
        await self.ctl(cmd="present", id_tag=tag, connector=connector)
        await self.until(f"end of {tag}", lambda s: transaction(s) is None)
        await self.ctl(cmd="unplug", connector=connector)
        await self.until(
            f"connector {connector} Available",
            lambda s: s["connectors"][index]["status"] == "Available",
        )


def _config(directory: Path, port: int, sim_path: str) -> Path:
    path = directory / "chargepoint.toml"
    path.write_text(
        f'[charge_point]\nid = "CP-SOAK"\nvendor = "Bench"\nmodel = "Bench"\n'
        f"connectors = {CONNECTORS}\n"
        f'[csms]\nurl = "ws://127.0.0.1:{port}/ocpp"\nping_interval = {PING_S}\n'
        f"reconnect_delay_min = 1\nreconnect_delay_max = 8\n"
        f'[modem]\ntype = "quectel"\nport = "{sim_path}"\napn = "internet"\nbaudrate = {BAUD}\n'
        f'[storage]\ndirectory = "{directory / "state"}"\n'
        f"[ocpp_keys]\nMeterValueSampleInterval = 1\n"
        f'MeterValuesSampledData = "Energy.Active.Import.Register,Power.Active.Import"\n'
        f"AllowOfflineTxForUnknownId = true\nLocalAuthorizeOffline = true\n"
    )
    return path


class Day:
    """The script: sessions on each connector, and the day's events between them."""

    def __init__(self, sessions: int, charger: Charger, csms: Csms, sim: SimulatorShell) -> None:
        self.sessions = sessions
        self.charger = charger
        self.csms = csms
        self.sim = sim
        self.started = 0
        self.done = 0
        self.holes = 0
        self.warm = asyncio.Event()
        self.rss_by_tenth: list[float] = []  # the daemon's RSS after each tenth of the day
        self.pid = 0
        self._event = asyncio.Event()

    async def connector(self, number: int) -> None:
        while self.started < self.sessions:
            self.started += 1
            await self.charger.session(number, self.started)
            self.done += 1
            self._event.set()
            if self.done * 10 >= (len(self.rss_by_tenth) + 1) * self.sessions:
                self.rss_by_tenth.append(round(_proc(self.pid)[0], 1))
            if self.done >= max(1, int(self.sessions * WARM_UP)):
                self.warm.set()

    async def events(self) -> None:
        """Coverage holes every ``HOLE_EVERY`` sessions; the CSMS restart; the module reset."""
        restart_at, reset_at = self.sessions // 2, self.sessions * 3 // 4
        next_hole = HOLE_EVERY
        while self.done < self.sessions:
            self._event.clear()
            await self._event.wait()
            if self.done >= next_hole:
                next_hole += HOLE_EVERY
                self.holes += 1
                self.sim.set_coverage(False)
                await asyncio.sleep(HOLE_S)
                self.sim.set_coverage(True)
            if restart_at and self.done >= restart_at:
                restart_at = 0
                await self.csms.stop()
                await asyncio.sleep(HOLE_S)
                await self.csms.start()
            if reset_at and self.done >= reset_at:
                reset_at = 0
                self.sim.reboot()


async def run(sessions: int, idle_s: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        state = directory / "state"
        csms = Csms()
        await csms.start()
        realistic = PROFILES["realistic"]
        module = realistic.module(seed=5)
        async with SimulatorShell(module, baud=BAUD, latency=realistic.latency) as sim:
            config = _config(directory, csms.port, sim.path)
            # The daemon's warnings and errors, for a look after a run that went wrong.
            log = open(os.environ.get("SOAK_LOG", os.devnull), "ab")  # noqa: ASYNC230, SIM115
            daemon = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "chargepoint.app.cli", "run", "--config", str(config)),
                stderr=log,
            )
            charger = Charger(state / "control.sock")
            try:
                await _wait_for_socket(charger.socket)
                await charger.until("BootNotification Accepted", lambda s: s["online"])
                _, fds_start, _ = _proc(daemon.pid)
                day = Day(sessions, charger, csms, sim)
                day.pid = daemon.pid
                began = time.monotonic()
                events = asyncio.create_task(day.events())
                drivers = [day.connector(n) for n in range(1, CONNECTORS + 1)]
                async with asyncio.TaskGroup() as group:
                    running = [group.create_task(d) for d in drivers]
                    await day.warm.wait()
                    rss_start, _, _ = _proc(daemon.pid)
                    await asyncio.gather(*running)
                await events
                elapsed = time.monotonic() - began
                backlog = (await charger.ctl(cmd="status"))["queued_messages"]
                drain_began = time.monotonic()
                await charger.drained()
                drain_s = time.monotonic() - drain_began
                final = await charger.ctl(cmd="status")
                rss_end, fds_end, cpu_before = _proc(daemon.pid)
                db, wal = _mb([state / "state.db"]), _mb([state / "state.db-wal"])
                trace = _mb(list(state.glob("ocpp-frames.jsonl*")))
                calls_before = sum(csms.calls.values())
                await asyncio.sleep(idle_s)
                _, _, cpu_after = _proc(daemon.pid)
                idle_calls = sum(csms.calls.values()) - calls_before
            finally:
                daemon.terminate()
                await daemon.wait()
                log.close()
        await csms.stop()
    queued: dict[str, int] = final["queued_since_start"]
    lost = sum(max(0, count - csms.unique[action]) for action, count in queued.items())
    tags = {f"SOAK{n:05d}" for n in range(1, sessions + 1)}
    lost += len(tags - csms.started_tags)  # a session whose StartTransaction never came
    lost += max(0, sessions - len(csms.stopped))
    common = {"sessions": sessions, "connectors": CONNECTORS, "baud": BAUD}
    emit("soak_duration_s", elapsed, "s", coverage_holes=day.holes, **common)
    emit("backlog_at_end", backlog, "messages", drain_s=round(drain_s, 1))
    emit("rss_growth_mb", rss_end - rss_start, "MB", rss_mb_by_tenth=day.rss_by_tenth, **common)
    emit("rss_mb_start", rss_start, "MB", after_sessions=int(sessions * WARM_UP))
    emit("rss_mb_end", rss_end, "MB")
    emit("state_db_mb", db + wal, "MB", db_mb=round(db, 3), wal_mb=round(wal, 3))
    emit("trace_mb", trace, "MB")
    emit("fds_start", fds_start, "fds")
    emit("fds_end", fds_end, "fds")
    emit(
        "idle_cpu_percent",
        100 * (cpu_after - cpu_before) / idle_s,
        "%",
        idle_s=idle_s,
        heartbeat_s=HEARTBEAT_S,
        ping_s=PING_S,
        calls_while_idle=idle_calls,
    )
    emit(
        "messages_lost",
        lost,
        "messages",
        queued=queued,
        received=dict(csms.unique),
        dropped=final["dropped_messages"],
    )
    emit("messages_duplicated", csms.duplicated, "messages", resent=csms.resent)
    emit("messages_resent", csms.resent, "messages", connections=csms.connections)


async def _wait_for_socket(path: Path) -> None:
    async with asyncio.timeout(60):
        while not path.exists():  # noqa: ASYNC110, ASYNC240 (another process makes it)
            await asyncio.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak")
    parser.add_argument(
        "--quick", action="store_true", help="100 sessions and 60 s idle, not 2,000 and 300 s"
    )
    parser.add_argument("--sessions", type=int, help="the first N sessions of the day")
    args = parser.parse_args(argv)
    sessions = args.sessions or (100 if args.quick else DAY_SESSIONS)
    asyncio.run(run(sessions, 60.0 if args.quick else 300.0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
