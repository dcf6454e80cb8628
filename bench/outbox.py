"""Replaying the outbox after a long coverage hole: MeterValues queued on disk while offline,
delivered through the simulated module at 115200 baud with 50 ms network latency each way.

The queue is written the way the daemon writes it while offline (``Outbox.put`` on the state
database, ``synchronous=FULL``), which also gives ``durable_write_us``. Then the daemon starts
as its own process (``chargepoint run``) with the CSMS refusing it (``rss_mb_idle``), the CSMS
lets it in, and it replays the queue (``replay_msgs_per_s``, ``replay_link_utilisation``: the
uplink UART bytes per second over the line rate, 1.0 being the physical limit;
``rss_mb_after_replay``). OCPP-J allows one CALL in flight, so one message per request could
never beat one per network round trip (``unbatched_ceiling_msgs_per_s``); the outbox sends a
backlog of MeterValues as requests of several meterValue elements instead.

    python -m bench.outbox [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from chargepoint.model.transactions import TransactionStore, timestamp
from chargepoint.protocol.outbox import Outbox
from chargepoint.storage import open_state
from transport.simulator import SimulatorShell

NAME = "outbox"
BAUD = 115200
LATENCY = 0.050
LINE_RATE = BAUD / 10


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    record = {"bench": NAME, "metric": metric, "value": round(value, 3), "unit": unit, **extra}
    print(json.dumps(record), flush=True)


def queue_offline(state: Path, count: int) -> list[float]:
    """``count`` MeterValues of a running transaction, queued durably; each write's time."""
    db = open_state(state)
    transactions = TransactionStore(db)
    outbox = Outbox(db, transactions)
    start = datetime.now(UTC) - timedelta(seconds=count)
    tx = transactions.start(1, "BENCH-TAG", None, 0, start)
    transactions.set_csms_id(tx.local_id, 4242, "Accepted")  # started while online
    costs = []
    for n in range(count):
        when = start + timedelta(seconds=n)
        payload = {
            "connectorId": 1,
            "meterValue": [
                {
                    "timestamp": timestamp(when),
                    "sampledValue": [
                        {
                            "value": str(3 * n),
                            "context": "Sample.Periodic",
                            "measurand": "Energy.Active.Import.Register",
                            "unit": "Wh",
                            "location": "Outlet",
                            "format": "Raw",
                        },
                        {
                            "value": "11040.0",
                            "context": "Sample.Periodic",
                            "measurand": "Power.Active.Import",
                            "unit": "W",
                            "location": "Outlet",
                        },
                    ],
                }
            ],
        }
        began = time.perf_counter()
        outbox.put("MeterValues", payload, tx.local_id)
        costs.append(time.perf_counter() - began)
    db.close()
    return costs


class Csms:
    """Refuses the charge point until ``open``; then answers everything and notes the times
    MeterValues arrive."""

    def __init__(self, expected: int) -> None:
        self.open = False
        self.expected = expected
        self.arrivals: list[float] = []
        self.values = 0
        self.batches: list[int] = []
        self.done = asyncio.Event()
        self.first = asyncio.Event()
        self.booted = asyncio.Event()
        self.port = 0

    def _gate(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.open:
            return None
        return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "not yet\n")

    async def _serve(self, connection: ServerConnection) -> None:
        async for message in connection:
            kind, message_id, action, payload = json.loads(message)
            if kind != 2:
                continue
            answer: dict[str, Any] = {}
            if action == "BootNotification":
                answer = {"status": "Accepted", "interval": 3600, "currentTime": _now()}
                self.booted.set()
            elif action == "Heartbeat":
                answer = {"currentTime": _now()}
            elif action == "MeterValues":
                # A backlog may come as one request with several meterValue elements, each
                # of them a message that was queued.
                self.arrivals.append(time.monotonic())
                self.batches.append(len(payload["meterValue"]))
                self.values += self.batches[-1]
                self.first.set()
                if self.values >= self.expected:
                    self.done.set()
            await connection.send(json.dumps([3, message_id, answer]))


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def run(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        costs = queue_offline(state, count)
        emit("durable_write_us", statistics.median(costs) * 1e6, "us", messages=count)
        emit("durable_write_p99_us", sorted(costs)[int(0.99 * (count - 1))] * 1e6, "us")
        csms = Csms(count)
        async with (
            serve(
                csms._serve,
                "127.0.0.1",
                0,
                subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                process_request=csms._gate,
                ping_interval=None,
            ) as server,
            SimulatorShell(baud=BAUD, latency=LATENCY) as sim,
        ):
            port = server.sockets[0].getsockname()[1]
            config = Path(tmp) / "chargepoint.toml"
            config.write_text(
                f'[charge_point]\nid = "CP-BENCH"\nvendor = "Bench"\nmodel = "Bench"\n'
                f'connectors = 1\npower_loss = "resume"\n'
                f'[csms]\nurl = "ws://127.0.0.1:{port}/ocpp"\nping_interval = 0\n'
                f"reconnect_delay_min = 0.5\nreconnect_delay_max = 1\n"
                f'[modem]\ntype = "quectel"\nport = "{sim.path}"\napn = "internet"\n'
                f'[storage]\ndirectory = "{state}"\n[logging]\nlevel = "warning"\n'
                f"[ocpp_keys]\nMeterValueSampleInterval = 0\n"
            )
            daemon = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "chargepoint.app.cli", "run", "--config", str(config)),
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                await asyncio.sleep(5)  # up, the module on line, the CSMS saying no: idle
                idle = rss_mb(daemon.pid)
                csms.open = True
                async with asyncio.timeout(count * 2 + 120):
                    await csms.booted.wait()
                    await csms.first.wait()
                    first_up = sim.bytes_from_host
                    first_down = sim.bytes_to_host
                    await csms.done.wait()
                last_up = sim.bytes_from_host
                last_down = sim.bytes_to_host
                after = rss_mb(daemon.pid)
            finally:
                daemon.terminate()
                await daemon.wait()
    span = csms.arrivals[-1] - csms.arrivals[0]
    requests = len(csms.arrivals)
    # Queued messages delivered per second, between the first request's arrival and the
    # last's (the first request's own messages are not counted: they arrived at time 0).
    delivered = sum(csms.batches[1:])
    common = {"messages": count, "baud": BAUD, "latency_ms": LATENCY * 1000}
    emit("replay_msgs_per_s", delivered / span, "msg/s", requests=requests, **common)
    emit("replay_requests_per_s", (requests - 1) / span, "req/s", **common)
    emit(
        "replay_link_utilisation",
        (last_up - first_up) / span / LINE_RATE,
        "ratio",
        downlink=round((last_down - first_down) / span / LINE_RATE, 3),
        **common,
    )
    emit("unbatched_ceiling_msgs_per_s", 1 / (2 * LATENCY), "msg/s", **common)
    emit("rss_mb_idle", idle, "MB")
    emit("rss_mb_after_replay", after, "MB", **common)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 messages instead of 10,000")
    args = parser.parse_args()
    asyncio.run(run(500 if args.quick else 10_000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
