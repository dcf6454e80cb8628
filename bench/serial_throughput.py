"""Payload throughput through driver ⇄ pty ⇄ simulated module at an emulated UART baud rate,
for each module family side by side.

The simulator runs in its own process (a real module is its own CPU) and paces its pty at
115200 baud, 10 bits a byte: 11,520 B/s each way. The line-rate ratio is payload bytes per
second divided by that: what is left after AT command overhead, prompts, result codes, URCs
and the host's own latency. ``*_uart_bytes_per_payload_byte`` is what the line carried per byte
of payload: a family that moves data as base64 text pays 4/3 before any framing.

Each figure is measured twice per family, each time with a fresh simulated module: over TCP
(the unsuffixed metrics) and over TLS in the module (the ``_tls`` metrics) to servers with a
throw-away certificate whose CA the driver installs on the module. The Quectel figures keep
their names; another family's carry its name as a suffix (``uplink_bytes_per_s_simplelink``),
and ``*_over_quectel`` ratios compare them. ``uplink_at_commands`` counts every command since
the port opened (bring-up, and for TLS its set-up too); its ``in_transfer`` field only those
of the uplink transfer.

    python -m bench.serial_throughput [--quick] [--baud 115200] [--family NAME]
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
from chargepoint.app.assembly import link_for
from config.loader import parse_config
from transport.at import ChannelStats
from transport.link import Link
from transport.simulator.families import SIMULATED, simulated
from transport.stream import ByteStream

WRITE_SIZE = 1460  # what the host hands the stream per write (a TCP segment's worth)

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


def _stats(link: Link) -> ChannelStats:
    stats: ChannelStats | None = getattr(link, "at_stats", None)
    if stats is None:
        raise RuntimeError(f"{link.description}: no AT channel statistics")
    return stats


async def measure(family: str, size: int, baud: int, pki: BenchPki | None = None) -> dict[str, Any]:
    """Uplink then downlink of ``size`` bytes through a fresh simulated module of ``family``,
    over TCP or, with ``pki``, over TLS in the module to servers with ``pki``'s certificate,
    its CA installed by the driver. The link is built from a configuration file exactly as the
    daemon builds it."""
    context = server_context(pki.cert, pki.key) if pki else None
    sink, source = Sink(), Source(size)
    sink_server = await asyncio.start_server(sink.serve, "127.0.0.1", 0, ssl=context)
    source_server = await asyncio.start_server(source.serve, "127.0.0.1", 0, ssl=context)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "modem"
        simulator = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "transport.simulator", family),
            *("--link", str(path), "--baud", str(baud)),
            stdout=asyncio.subprocess.PIPE,
        )
        config = parse_config(
            '[charge_point]\nid = "CP-BENCH"\nvendor = "Bench"\nmodel = "Bench"\n'
            '[csms]\nurl = "ws://127.0.0.1:9/ocpp"\n'
            f"{simulated(family).config(str(path), baud)}"
            f'[storage]\ndirectory = "{tmp}/state"\n'
        )
        link = link_for(config)
        tls = module_settings(pki.ca) if pki else None
        try:
            assert simulator.stdout is not None
            await simulator.stdout.readline()  # the banner: the pty is ready

            async def connect(server: asyncio.Server) -> ByteStream:
                return await link.open("127.0.0.1", server.sockets[0].getsockname()[1], tls=tls)

            # Uplink: host → module → network.
            stream = await connect(sink_server)
            payload = os.urandom(size)
            sink.expected = size
            stats = _stats(link)
            commands0, out0 = stats.commands, stats.bytes_out
            cpu0, t0 = time.process_time(), time.perf_counter()
            for i in range(0, size, WRITE_SIZE):
                await stream.write(payload[i : i + WRITE_SIZE])
            await sink.done.wait()
            up_time, up_cpu = sink.finished_at - t0, time.process_time() - cpu0
            commands_up, up_uart = stats.commands, stats.bytes_out - out0
            await stream.close()

            # Downlink: network → module → host.
            stream = await connect(source_server)
            first = await stream.read()
            got = len(first)
            in0 = stats.bytes_in
            cpu0, t0 = time.process_time(), time.perf_counter()
            while got < size:
                got += len(await stream.read())
            down_time, down_cpu = time.perf_counter() - t0, time.process_time() - cpu0
            down_bytes, down_uart = size - len(first), stats.bytes_in - in0
            await stream.close()
        finally:
            await link.close()
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
        "up_uart_per_byte": up_uart / size,
        "down_uart_per_byte": down_uart / down_bytes,
        "commands_up": commands_up,  # since the port opened: bring-up (and TLS set-up) too
        "commands_in_transfer": commands_up - commands0,
        "tls": sink.tls,
    }


async def run(size: int, baud: int, families: list[str]) -> None:
    line_rate = baud / 10
    common = {"baud": baud, "bytes": size}
    measured: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for family in families:
        tcp = await measure(family, size, baud)
        with tempfile.TemporaryDirectory() as certificates:
            tls = await measure(family, size, baud, make_pki(Path(certificates)))
        measured[family] = (tcp, tls)
        name = "" if family == "quectel" else f"_{family}"
        extra = {"family": family, **common}
        _report(tcp, name, line_rate, extra)
        # The same through TLS in the module: the UART carries plaintext either way, so what
        # differs is the module's work and the commands' names.
        secure = {"tls": "module", **tls["tls"], **extra}
        _report(tls, f"_tls{name}", line_rate, secure)
        emit(f"uplink_tls_over_tcp{name}", tls["up_rate"] / tcp["up_rate"], "ratio", **secure)
        emit(f"downlink_tls_over_tcp{name}", tls["down_rate"] / tcp["down_rate"], "ratio", **secure)
    if "quectel" in measured:
        base, _ = measured["quectel"]
        for family, (tcp, _) in measured.items():
            if family == "quectel":
                continue
            extra = {"family": family, **common}
            for direction in ("up", "down"):
                emit(
                    f"{direction}link_rate_{family}_over_quectel",
                    tcp[f"{direction}_rate"] / base[f"{direction}_rate"],
                    "ratio",
                    **extra,
                )
                emit(
                    f"{direction}link_uart_bytes_{family}_over_quectel",
                    tcp[f"{direction}_uart_per_byte"] / base[f"{direction}_uart_per_byte"],
                    "ratio",
                    **extra,
                )


def _report(figures: dict[str, Any], suffix: str, line_rate: float, extra: dict[str, Any]) -> None:
    up, down = figures["up_rate"], figures["down_rate"]
    emit(f"uplink_bytes_per_s{suffix}", up, "B/s", **extra)
    emit(f"downlink_bytes_per_s{suffix}", down, "B/s", **extra)
    emit(f"uplink_line_rate_ratio{suffix}", up / line_rate, "ratio", line_rate=line_rate, **extra)
    emit(
        f"downlink_line_rate_ratio{suffix}", down / line_rate, "ratio", line_rate=line_rate, **extra
    )
    emit(f"uplink_uart_bytes_per_payload_byte{suffix}", figures["up_uart_per_byte"], "B/B", **extra)
    emit(
        f"downlink_uart_bytes_per_payload_byte{suffix}",
        figures["down_uart_per_byte"],
        "B/B",
        **extra,
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
        "--quick",
        action="store_true",
        help="64 KiB each way, TCP then TLS, per family (about 25 s each)",
    )
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument(
        "--family",
        action="append",
        choices=sorted(SIMULATED),
        help="measure only this module family (again for more); default: every one",
    )
    args = parser.parse_args(argv)
    size = (64 if args.quick else 512) * 1024
    asyncio.run(run(size, args.baud, args.family or sorted(SIMULATED)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
