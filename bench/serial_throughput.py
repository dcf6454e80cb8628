"""Payload throughput through driver ⇄ pty ⇄ simulated module at an emulated UART baud rate.

The simulator runs in its own process (a real module is its own CPU) and paces its pty at
115200 baud, 10 bits a byte: 11,520 B/s each way. The line-rate ratio is payload bytes per
second divided by that: what is left after AT command overhead, prompts, result codes, URCs
and the host's own latency.

    python -m bench.serial_throughput [--quick] [--baud 115200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from transport.modems.quectel import open_quectel
from transport.modems.quectel_settings import MAX_SEND, QuectelSettings

NAME = "serial_throughput"


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    print(
        json.dumps(
            {"bench": NAME, "metric": metric, "value": round(value, 4), "unit": unit, **extra}
        ),
        flush=True,
    )


class Sink:
    """Counts what arrives; says when ``expected`` bytes are in."""

    def __init__(self) -> None:
        self.received = 0
        self.expected = 0
        self.done = asyncio.Event()
        self.finished_at = 0.0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            self.received += len(data)
            if self.received >= self.expected and not self.done.is_set():
                self.finished_at = time.perf_counter()
                self.done.set()
        writer.close()


class Source:
    """Sends ``size`` bytes to whoever connects, as fast as TCP takes them."""

    def __init__(self, size: int) -> None:
        self.size = size

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        block = os.urandom(65536)
        left = self.size
        while left > 0:
            writer.write(block[: min(left, len(block))])
            left -= min(left, len(block))
            await writer.drain()
        await reader.read()
        writer.close()


async def run(size: int, baud: int) -> None:
    line_rate = baud / 10
    sink, source = Sink(), Source(size)
    sink_server = await asyncio.start_server(sink.serve, "127.0.0.1", 0)
    source_server = await asyncio.start_server(source.serve, "127.0.0.1", 0)
    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / "modem"
        simulator = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "transport.simulator", "quectel"),
            *("--link", str(link), "--baud", str(baud)),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert simulator.stdout is not None
            await simulator.stdout.readline()  # the banner: the pty is ready
            async with open_quectel(str(link), baud, QuectelSettings(apn="internet")) as modem:
                await modem.bring_up()

                # Uplink: host → module → network, written in 1460-byte pieces.
                stream = await modem.open_tcp("127.0.0.1", sink_server.sockets[0].getsockname()[1])
                payload = os.urandom(size)
                sink.expected = size
                cpu0, t0 = time.process_time(), time.perf_counter()
                for i in range(0, size, MAX_SEND):
                    await stream.write(payload[i : i + MAX_SEND])
                await sink.done.wait()
                up_time, up_cpu = sink.finished_at - t0, time.process_time() - cpu0
                commands_up = modem.channel.stats.commands
                await stream.close()

                # Downlink: network → module → host, read with AT+QIRD=<id>,1500.
                stream = await modem.open_tcp(
                    "127.0.0.1", source_server.sockets[0].getsockname()[1]
                )
                first = await stream.read()
                got = len(first)
                cpu0, t0 = time.process_time(), time.perf_counter()
                while got < size:
                    got += len(await stream.read())
                down_time, down_cpu = time.perf_counter() - t0, time.process_time() - cpu0
                down_bytes = size - len(first)
                await stream.close()
        finally:
            simulator.terminate()
            await simulator.wait()
    sink_server.close()
    source_server.close()

    up_rate = size / up_time
    down_rate = down_bytes / down_time
    common = {"baud": baud, "bytes": size}
    emit("uplink_bytes_per_s", up_rate, "B/s", **common)
    emit("downlink_bytes_per_s", down_rate, "B/s", **common)
    emit("uplink_line_rate_ratio", up_rate / line_rate, "ratio", line_rate=line_rate, **common)
    emit("downlink_line_rate_ratio", down_rate / line_rate, "ratio", line_rate=line_rate, **common)
    emit("uplink_driver_cpu_us_per_kib", up_cpu / (size / 1024) * 1e6, "us/KiB", **common)
    emit("downlink_driver_cpu_us_per_kib", down_cpu / (down_bytes / 1024) * 1e6, "us/KiB", **common)
    emit("uplink_at_commands", commands_up, "commands", **common)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serial_throughput")
    parser.add_argument("--quick", action="store_true", help="128 KiB each way (about 25 s)")
    parser.add_argument("--baud", type=int, default=115200)
    args = parser.parse_args(argv)
    size = (128 if args.quick else 512) * 1024
    asyncio.run(run(size, args.baud))
    return 0


if __name__ == "__main__":
    sys.exit(main())
