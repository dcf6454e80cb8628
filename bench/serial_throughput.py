"""Payload throughput through driver ⇄ pty ⇄ simulated module at an emulated UART baud rate.

The simulator runs in its own process (a real module is its own CPU) and paces its pty at
115200 baud, 10 bits a byte: 11,520 B/s each way. The line-rate ratio is payload bytes per
second divided by that: what is left after AT command overhead, prompts, result codes, URCs
and the host's own latency.

Each figure is measured twice, each time with a fresh simulated module: over TCP (the
unsuffixed metrics) and over TLS in the module (AT+QSSLOPEN/QSSLSEND/QSSLRECV, the ``_tls``
metrics) to servers with a throw-away certificate whose CA the driver installs on the module.
``uplink_at_commands`` counts every command since the port opened (bring-up, and for TLS its
set-up too); its ``in_transfer`` field only those of the uplink transfer.

    python -m bench.serial_throughput [--quick] [--baud 115200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.tls import BenchPki, make_pki, module_settings, server_context
from transport.modems.quectel import open_quectel
from transport.modems.quectel_settings import MAX_SEND, QuectelSettings
from transport.modems.quectel_sockets import QuectelTcpStream

NAME = "serial_throughput"


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    print(
        json.dumps(
            {"bench": NAME, "metric": metric, "value": round(value, 4), "unit": unit, **extra}
        ),
        flush=True,
    )


class Sink:
    """Counts what arrives; says when ``expected`` bytes are in, and over what TLS if any."""

    def __init__(self) -> None:
        self.received = 0
        self.expected = 0
        self.done = asyncio.Event()
        self.finished_at = 0.0
        self.tls: dict[str, str] | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls: ssl.SSLObject | None = writer.get_extra_info("ssl_object")
        cipher = tls.cipher() if tls is not None else None
        if cipher is not None:
            self.tls = {"tls_version": cipher[1], "cipher": cipher[0]}
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


async def measure(size: int, baud: int, pki: BenchPki | None = None) -> dict[str, Any]:
    """Uplink then downlink of ``size`` bytes through a fresh simulated module: over TCP
    (AT+QIOPEN/QISEND/QIRD), or with ``pki`` over TLS in the module (AT+QSSLOPEN/QSSLSEND/
    QSSLRECV) to servers with ``pki``'s certificate, its CA installed by the driver."""
    context = server_context(pki.cert, pki.key) if pki else None
    sink, source = Sink(), Source(size)
    sink_server = await asyncio.start_server(sink.serve, "127.0.0.1", 0, ssl=context)
    source_server = await asyncio.start_server(source.serve, "127.0.0.1", 0, ssl=context)
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
                if pki:
                    await modem.tls.prepare(module_settings(pki.ca), lambda: None)

                async def connect(server: asyncio.Server) -> QuectelTcpStream:
                    port = server.sockets[0].getsockname()[1]
                    if pki:
                        return await modem.sockets.open_tls("127.0.0.1", port, modem.tls.context_id)
                    return await modem.open_tcp("127.0.0.1", port)

                # Uplink: host → module → network, written in 1460-byte pieces.
                stream = await connect(sink_server)
                payload = os.urandom(size)
                sink.expected = size
                commands0 = modem.channel.stats.commands
                cpu0, t0 = time.process_time(), time.perf_counter()
                for i in range(0, size, MAX_SEND):
                    await stream.write(payload[i : i + MAX_SEND])
                await sink.done.wait()
                up_time, up_cpu = sink.finished_at - t0, time.process_time() - cpu0
                commands_up = modem.channel.stats.commands
                await stream.close()

                # Downlink: network → module → host, read with AT+QIRD (AT+QSSLRECV)=<id>,1500.
                stream = await connect(source_server)
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
    if (sink.tls is None) != (pki is None):
        raise RuntimeError(f"asked for {'TLS' if pki else 'TCP'}, the server saw otherwise")
    return {
        "up_rate": size / up_time,
        "down_rate": down_bytes / down_time,
        "up_cpu_per_kib": up_cpu / (size / 1024) * 1e6,
        "down_cpu_per_kib": down_cpu / (down_bytes / 1024) * 1e6,
        "commands_up": commands_up,  # since the port opened: bring-up (and TLS set-up) too
        "commands_in_transfer": commands_up - commands0,
        "tls": sink.tls,
    }


async def run(size: int, baud: int) -> None:
    line_rate = baud / 10
    tcp = await measure(size, baud)
    with tempfile.TemporaryDirectory() as certificates:
        tls = await measure(size, baud, make_pki(Path(certificates)))
    common = {"baud": baud, "bytes": size}
    _report(tcp, "", line_rate, common)
    # The same through TLS in the module: the UART carries plaintext either way, so what
    # differs is the module's work and the AT+QSSL* commands' names.
    secure = {"tls": "module", **tls["tls"], **common}
    _report(tls, "_tls", line_rate, secure)
    emit("uplink_tls_over_tcp", tls["up_rate"] / tcp["up_rate"], "ratio", **secure)
    emit("downlink_tls_over_tcp", tls["down_rate"] / tcp["down_rate"], "ratio", **secure)


def _report(figures: dict[str, Any], suffix: str, line_rate: float, extra: dict[str, Any]) -> None:
    up, down = figures["up_rate"], figures["down_rate"]
    emit(f"uplink_bytes_per_s{suffix}", up, "B/s", **extra)
    emit(f"downlink_bytes_per_s{suffix}", down, "B/s", **extra)
    emit(f"uplink_line_rate_ratio{suffix}", up / line_rate, "ratio", line_rate=line_rate, **extra)
    emit(
        f"downlink_line_rate_ratio{suffix}", down / line_rate, "ratio", line_rate=line_rate, **extra
    )
    emit(f"uplink_driver_cpu_us_per_kib{suffix}", figures["up_cpu_per_kib"], "us/KiB", **extra)
    emit(f"downlink_driver_cpu_us_per_kib{suffix}", figures["down_cpu_per_kib"], "us/KiB", **extra)
    in_transfer = figures["commands_in_transfer"]
    emit(
        f"uplink_at_commands{suffix}",
        figures["commands_up"],
        "commands",
        in_transfer=in_transfer,
        **extra,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serial_throughput")
    parser.add_argument(
        "--quick", action="store_true", help="64 KiB each way, TCP then TLS (about 25 s)"
    )
    parser.add_argument("--baud", type=int, default=115200)
    args = parser.parse_args(argv)
    size = (64 if args.quick else 512) * 1024
    asyncio.run(run(size, args.baud))
    return 0


if __name__ == "__main__":
    sys.exit(main())
