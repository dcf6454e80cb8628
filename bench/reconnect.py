"""How long a lost connection keeps the charge point away from its CSMS, and what getting back
costs on the UART: the daemon on the simulated module at 115200 baud with 50 ms of network
latency each way, against the demo CSMS, losing its connection again and again.

For each loss (the module's ``+QIURC: "closed"``, or the network's ``"pdpdeact"``) the clock
runs from the loss to the next OCPP session being up. The daemon's own back-off delay (it
chooses it, with jitter) is taken out, so ``reconnect_*_s`` is the work of reconnecting:
AT+QICLOSE, the recovery step the daemon escalates to (every third loss in a row), AT+QIOPEN,
the WebSocket upgrade. The floor is the two network round trips no TCP + WebSocket reconnect
avoids (SYN/SYN-ACK, upgrade request/101).

    python -m bench.reconnect [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from chargepoint.app.daemon import Daemon
from chargepoint.demo.csms import DemoCsms
from config.loader import parse_config
from transport.modems.quectel import QuectelLink
from transport.modems.quectel_settings import QuectelSettings
from transport.simulator import SimulatorShell
from transport.simulator.quectel import SocketState

NAME = "reconnect"
BAUD = 115200
LATENCY = 0.050
PASSWORD = b"bench-password-0123"


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    record = {"bench": NAME, "metric": metric, "value": round(value, 3), "unit": unit, **extra}
    print(json.dumps(record), flush=True)


class RecordedDelays(random.Random):
    """The daemon's jitter source; it remembers each back-off delay it drew."""

    def __init__(self) -> None:
        super().__init__(7)
        self.delays: list[float] = []

    def uniform(self, a: float, b: float) -> float:
        value = super().uniform(a, b)
        self.delays.append(value)
        return value


def _connected(sim: SimulatorShell) -> int:
    return next(
        s.socket_id for s in sim.module.sockets.values() if s.state is SocketState.CONNECTED
    )


LOSSES: dict[str, Callable[[SimulatorShell], None]] = {
    "closed": lambda sim: sim.drop_connection(_connected(sim)),
    "pdpdeact": lambda sim: sim.deactivate_pdp(1),
}


async def measure(kind: str, count: int) -> dict[str, list[float]]:
    delays = RecordedDelays()
    with tempfile.TemporaryDirectory() as tmp:
        csms = DemoCsms("CP-BENCH", PASSWORD, lambda _direction, _text: None)
        await csms.start()
        async with SimulatorShell(baud=BAUD, latency=LATENCY) as sim:
            config = parse_config(
                f'[charge_point]\nid = "CP-BENCH"\nvendor = "Bench"\nmodel = "Bench"\n'
                f'[csms]\nurl = "{csms.url}"\npassword = "{PASSWORD.decode()}"\n'
                "ping_interval = 0\nreconnect_delay_min = 0.1\nreconnect_delay_max = 0.1\n"
                "security_profile = 1\n"  # Basic auth over ws:// to a CSMS on this machine
                f'[modem]\ntype = "host"\n[storage]\ndirectory = "{Path(tmp) / "state"}"\n'
            )
            link = QuectelLink(sim.path, BAUD, QuectelSettings(apn="internet"))
            daemon = Daemon(config, link, rng=delays)
            stop = asyncio.Event()
            running = asyncio.create_task(daemon.run(stop))
            station = daemon.station
            loop = asyncio.get_running_loop()
            figures: dict[str, list[float]] = {"seconds": [], "commands": [], "bytes": []}
            try:
                async with asyncio.timeout(60):
                    await station.wait_until(lambda: station.online)
                for _ in range(count):
                    sessions, drawn = daemon.sessions_started, len(delays.delays)
                    commands = len(sim.module.log)
                    uart = sim.bytes_from_host + sim.bytes_to_host
                    lost_at = loop.time()
                    LOSSES[kind](sim)

                    def back(before: int = sessions) -> bool:
                        return daemon.sessions_started > before and station.online

                    async with asyncio.timeout(120):
                        await station.wait_until(back)
                    backing_off = sum(delays.delays[drawn:])
                    figures["seconds"].append(loop.time() - lost_at - backing_off)
                    figures["commands"].append(len(sim.module.log) - commands)
                    figures["bytes"].append(sim.bytes_from_host + sim.bytes_to_host - uart)
            finally:
                stop.set()
                await running
                await csms.stop()
    return figures


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


async def run(count: int) -> None:
    floor = 4 * LATENCY
    common = {"losses": count, "baud": BAUD, "latency_ms": LATENCY * 1000}
    for kind in LOSSES:
        figures = await measure(kind, count)
        p50 = statistics.median(figures["seconds"])
        emit("reconnect_p50_s", p50, "s", loss=kind, **common)
        emit("reconnect_p90_s", _p90(figures["seconds"]), "s", loss=kind, **common)
        emit("reconnect_max_s", max(figures["seconds"]), "s", loss=kind, **common)
        emit("reconnect_p50_floor_ratio", p50 / floor, "ratio", loss=kind, floor_s=floor, **common)
        emit(
            "at_commands_per_reconnect",
            statistics.median(figures["commands"]),
            "commands",
            loss=kind,
            **common,
        )
        emit(
            "uart_bytes_per_reconnect",
            statistics.median(figures["bytes"]),
            "bytes",
            loss=kind,
            **common,
        )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(prog="python -m bench.reconnect")
    parser.add_argument("--quick", action="store_true", help="10 losses of each kind, not 40")
    args = parser.parse_args(argv)
    asyncio.run(run(10 if args.quick else 40))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
