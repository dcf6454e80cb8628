"""A firmware image through the module's one serial line while OCPP goes on: the simulated
Quectel module at 115200 baud with 50 ms network latency each way, a real HTTP server with
Range support, the charge-point daemon connected to a CSMS that makes a call (GetConfiguration)
one second after each answer for as long as the download runs.

Two ways to fetch the same image with the same daemon:

* ``download_*``: what UpdateFirmware uses (``QuectelHttp.fetch``): Range pieces into the
  module's RAM disk, pulled with AT+QFREAD in ``HttpSettings.chunk``-byte reads (8 KiB), OCPP
  traffic between them, the next piece fetched by the module while one is read;
* ``naive_download_*``: one AT+QHTTPGET and one AT+QHTTPREAD of the whole file.

``download_line_rate_ratio`` is payload bytes per second over the UART's 11,520 B/s (1.0: the
line carries nothing but image bytes), with the AT commands sent meanwhile and the bytes the
module sent beyond the image (command answers, CONNECT/OK lines, OCPP frames pushed):
``at_commands``, ``rx_overhead_bytes``; ``call_p50_s``/``call_p99_s_during_download`` are the
CSMS's waits for its answers. The CSMS sends no WebSocket pings of its own: with the usual
20 s keepalive it closes the connection during the naive read (seen in this bench), and the
waits of the naive way could not be measured.

    python -m bench.firmware [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from chargepoint.app.daemon import Daemon
from config.loader import parse_config
from transport.at import ChannelStats
from transport.modems.quectel import QuectelLink
from transport.modems.quectel_http import HttpSettings, QuectelHttp
from transport.modems.quectel_settings import QuectelSettings
from transport.simulator import SimulatorShell
from transport.simulator.file_server import FileServer

NAME = "firmware"
BAUD = 115200
LATENCY = 0.050
LINE_RATE = BAUD / 10
CALL_EVERY = 1.0


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    record = {"bench": NAME, "metric": metric, "value": round(value, 3), "unit": unit, **extra}
    print(json.dumps(record), flush=True)


class Csms:
    """Accepts the charge point, answers its requests, and times calls of its own."""

    def __init__(self) -> None:
        self.connection: ServerConnection | None = None
        self.connected = asyncio.Event()
        self.waiting: dict[str, asyncio.Future[None]] = {}

    async def serve(self, connection: ServerConnection) -> None:
        self.connection = connection
        self.connected.set()
        async for raw in connection:
            message = json.loads(raw)
            if message[0] == 2:
                answer: dict[str, Any] = {}
                if message[2] == "BootNotification":
                    answer = {"status": "Accepted", "currentTime": _now(), "interval": 300}
                elif message[2] == "Heartbeat":
                    answer = {"currentTime": _now()}
                await connection.send(json.dumps([3, message[1], answer]))
            elif message[0] in (3, 4) and message[1] in self.waiting:
                self.waiting.pop(message[1]).set_result(None)

    async def call(self) -> float:
        assert self.connection is not None
        unique_id = str(uuid.uuid4())
        answered = asyncio.get_running_loop().create_future()
        self.waiting[unique_id] = answered
        start = time.monotonic()
        frame = [2, unique_id, "GetConfiguration", {"key": ["HeartbeatInterval"]}]
        await self.connection.send(json.dumps(frame))
        await answered
        return time.monotonic() - start


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


async def measure(
    csms: Csms, download: Callable[[], Awaitable[int]]
) -> tuple[int, float, list[float]]:
    """Run ``download`` while the CSMS calls; (bytes, seconds, call latencies)."""
    latencies: list[float] = []
    done = asyncio.Event()

    async def calls() -> None:
        while not done.is_set():
            latencies.append(await csms.call())
            try:
                async with asyncio.timeout(CALL_EVERY):
                    await done.wait()
            except TimeoutError:
                pass

    caller = asyncio.create_task(calls())
    start = time.monotonic()
    try:
        size = await download()
    finally:
        elapsed = time.monotonic() - start
        done.set()
        await caller
    return size, elapsed, latencies


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def run(size: int) -> None:
    image = random.Random(20).randbytes(size)
    work = Path(tempfile.mkdtemp(prefix="bench-firmware-"))
    csms = Csms()
    with FileServer(files={"/fw.bin": image}) as files:
        async with serve(
            csms.serve,
            "127.0.0.1",
            0,
            subprotocols=[Subprotocol("ocpp1.6")],
            ping_interval=None,
        ) as server:
            port = server.sockets[0].getsockname()[1]
            config = parse_config(
                f"""
[charge_point]
id = "BENCH-FW"
vendor = "Bench"
model = "Bench"
connectors = 1
[csms]
url = "ws://127.0.0.1:{port}/ocpp"
ping_interval = 0
call_timeout = 30
[modem]
type = "host"
[storage]
directory = "{work / "state"}"
"""
            )
            async with SimulatorShell(baud=BAUD, latency=LATENCY) as sim:
                link = QuectelLink(sim.path, BAUD, QuectelSettings(), HttpSettings())
                daemon = Daemon(config, link)
                stop = asyncio.Event()
                task = asyncio.create_task(daemon.run(stop))
                await csms.connected.wait()
                await asyncio.sleep(2.0)  # boot and status notifications out of the way
                http = await link.http_client()
                assert isinstance(http, QuectelHttp)

                async def pieces() -> int:
                    result = await http.fetch(files.url("/fw.bin"), work / "pieces.bin")
                    return result.size

                async def naive() -> int:
                    return await http.fetch_whole(files.url("/fw.bin"), work / "naive.bin")

                for prefix, download in (("", pieces), ("naive_", naive)):
                    before = dataclasses.replace(link.at_stats or ChannelStats())
                    got, elapsed, latencies = await measure(csms, download)
                    after = link.at_stats or ChannelStats()
                    assert got == size
                    name = "pieces.bin" if not prefix else "naive.bin"
                    assert (work / name).read_bytes() == image, f"{name} differs"
                    emit(
                        f"{prefix}download_line_rate_ratio",
                        got / elapsed / LINE_RATE,
                        "ratio",
                        bytes=got,
                        seconds=round(elapsed, 1),
                        at_commands=after.commands - before.commands,
                        rx_overhead_bytes=after.bytes_in - before.bytes_in - got,
                    )
                    emit(
                        f"{prefix}call_p50_s_during_download",
                        statistics.median(latencies),
                        "s",
                        calls=len(latencies),
                    )
                    emit(
                        f"{prefix}call_p99_s_during_download",
                        p99(latencies),
                        "s",
                        calls=len(latencies),
                    )
                stop.set()
                await task


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 256 KiB image instead of 2 MiB")
    args = parser.parse_args()
    asyncio.run(run(256 * 1024 if args.quick else 2 * 1024 * 1024))
    return 0


if __name__ == "__main__":
    sys.exit(main())
