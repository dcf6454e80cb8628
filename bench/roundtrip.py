"""Round-trip latency of a CSMS CALL → charge-point CALLRESULT, through the simulated module at
115200 baud with 50 ms of network latency each way, and over host TCP; with the charge point's
CPU time per message on each path.

The floor is what physics allows: the network's round trip (2 x 50 ms) plus the time the
WebSocket frames themselves take on a 115200-baud UART (CALL down, CALLRESULT up, 11,520 B/s).
``floor_with_at_ms`` adds the AT bytes no driver can avoid (the "recv" URC, the AT+QIRD command
and its answer's framing, the AT+QISEND command, its prompt and SEND OK).

The module path is measured twice: over ws:// (plain, the unsuffixed metrics) and over wss://
with TLS in the simulated module (AT+QSSLOPEN/QSSLSEND/QSSLRECV, the ``_tls`` metrics), the
bench CSMS serving a throw-away certificate whose CA the driver installs on the module. The
UART carries the same plaintext frames either way; only the AT commands' names differ, and the
network carries TLS records. ``p50_tls_over_plain`` is what TLS in the module costs.

Every module family is measured the same way, side by side: the Quectel figures keep their
names, another family's carry its name as a suffix (``p50_ms_simplelink``), with its own floor
(the AT bytes its commands cannot avoid: TI's Wi-Fi firmware asks with AT+Select, reads with
AT+Recv and moves the frames as base64 text) and ``*_over_quectel`` ratios.

    python -m bench.roundtrip [--quick] [--family NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ocpp.v16.enums import DataTransferStatus

from bench.tls import BenchPki, csms_security, make_pki
from chargepoint.app.assembly import link_for
from chargepoint.app.daemon import Daemon
from chargepoint.blocks.data_transfer import DataTransferReply, DataTransferVendors
from config.loader import parse_config
from transport.link import Link
from transport.modems.host import HostLink
from transport.simulator.families import SIMULATED, simulated

NAME = "roundtrip"
BAUD = 115200
LATENCY = 0.050


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    record = {"bench": NAME, "metric": metric, "value": round(value, 3), "unit": unit, **extra}
    print(json.dumps(record), flush=True)


def voluntary_switches() -> int:
    """How often this process's threads went to sleep and were woken again (the kernel's
    voluntary_ctxt_switches, summed over /proc/self/task): the wake-ups the event loop (and
    any worker thread) paid for."""
    total = 0
    for status in Path("/proc/self/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:  # a worker thread that ended between the listing and the read
            continue
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


class CpuMeter:
    """The charge point's process CPU and wake-ups between the first and the last of the
    ``count`` messages it answers. The wake-up counters are read at those two only: reading
    /proc costs more CPU than a message does."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.marks: list[float] = []
        self.wakes: list[int] = []

    def handle(self, message_id: str | None, data: str | None) -> DataTransferReply:
        self.marks.append(time.process_time())
        if len(self.marks) in (1, self.count):
            self.wakes.append(voluntary_switches())
        return DataTransferReply(DataTransferStatus.accepted, "pong")

    def per_message_us(self) -> float:
        return (self.marks[-1] - self.marks[0]) / (len(self.marks) - 1) * 1e6

    def wakeups_per_message(self) -> float:
        return (self.wakes[-1] - self.wakes[0]) / (len(self.marks) - 1)


async def _lines(process: asyncio.subprocess.Process) -> dict[str, Any]:
    assert process.stdout is not None
    line = await process.stdout.readline()
    if not line:
        raise RuntimeError("the bench CSMS ended early")
    result: dict[str, Any] = json.loads(line)
    return result


async def measure(
    path: str,
    count: int,
    *,
    callgrind: bool = False,
    pki: BenchPki | None = None,
    family: str = "quectel",
    access_mode: str | None = None,
    pause: float = 0.0,
) -> dict[str, Any]:
    """One path, ``count`` CALLs. In-process, the charge point's CPU time is measured; with
    ``callgrind`` it runs in its own process under valgrind and its instructions are counted.
    With ``pki`` the CSMS serves wss:// with its certificate, and the charge point trusts its CA
    (security profile 2; through the module, TLS runs in the module)."""
    tls_args = ["--certfile", str(pki.cert), "--keyfile", str(pki.key)] if pki else []
    csms = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.roundtrip_csms",
        "--count",
        str(count),
        *("--pause-ms", str(pause * 1000)),
        *tls_args,
        stdout=asyncio.subprocess.PIPE,
    )
    processes: list[asyncio.subprocess.Process] = [csms]
    try:
        port = (await _lines(csms))["listening"]
        url = f"{'wss' if pki else 'ws'}://127.0.0.1:{port}/ocpp"
        with tempfile.TemporaryDirectory() as tmp:
            modem = None
            if path == "modem":
                modem = str(Path(tmp) / "modem")
                simulator = await asyncio.create_subprocess_exec(
                    *(sys.executable, "-m", "transport.simulator", family, "--link", modem),
                    *("--baud", str(BAUD), "--latency-ms", str(LATENCY * 1000)),
                    stdout=asyncio.subprocess.PIPE,
                )
                processes.append(simulator)
                assert simulator.stdout is not None
                await simulator.stdout.readline()
            if callgrind:
                out = Path(tmp) / "callgrind.out"
                command = [
                    sys.executable,
                    "-m",
                    "bench.roundtrip_cp",
                    "--url",
                    url,
                    "--count",
                    str(count),
                ]
                command += ["--modem", modem] if modem else []
                command += ["--ca-file", str(pki.ca)] if pki else []
                charge_point = await asyncio.create_subprocess_exec(
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={out}",
                    *command,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                processes.append(charge_point)
                result = await _lines(csms)
                await charge_point.wait()
                result["instructions"] = _callgrind_total(out)
                return result
            modem_tables = (
                simulated(family).config(modem, BAUD) if modem else '[modem]\ntype = "host"\n'
            )
            if access_mode is not None:  # the family's [modem] table comes last
                modem_tables += f'access_mode = "{access_mode}"\n'
            config = parse_config(
                f'[charge_point]\nid = "CP-BENCH"\nvendor = "Bench"\nmodel = "Bench"\n'
                f'[csms]\nurl = "{url}"\nping_interval = 0\n'
                f"{csms_security(pki.ca if pki else None)}"
                f'{modem_tables}[storage]\ndirectory = "{tmp}/state"\n'
            )
            link: Link = link_for(config) if modem else HostLink()
            meter = CpuMeter(count)
            vendors = DataTransferVendors()
            vendors.register("org.example.bench", meter.handle)
            stop = asyncio.Event()
            daemon = asyncio.create_task(Daemon(config, link, data_transfer=vendors).run(stop))
            result = await _lines(csms)
            stop.set()
            await daemon
        result["cpu_us_per_message"] = meter.per_message_us()
        result["wakeups_per_message"] = meter.wakeups_per_message()
        return result
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
                await process.wait()


def _callgrind_total(out: Path) -> int:
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no instruction total in {out}")


async def instructions_per_message(path: str, pki: BenchPki | None = None) -> float:
    """Instructions per message, start-up cancelled out: the difference of two runs."""
    few, many = 20, 60
    low = (await measure(path, few, callgrind=True, pki=pki))["instructions"]
    high = (await measure(path, many, callgrind=True, pki=pki))["instructions"]
    return float(high - low) / (many - few)


def _frame_bytes(payload: int, *, masked: bool) -> int:
    header = 2 if payload < 126 else 4 if payload < 65536 else 10
    return header + payload + (4 if masked else 0)


def _at_bytes_simplelink(down: int, up: int) -> int:
    """The same for TI's Wi-Fi AT firmware, which says nothing when data arrives: an AT+Select
    that returns the socket (OK, "+select:0", OK), an AT+Recv (OK, "+recv:" with the frame as
    base64, OK), and an AT+Send carrying the answer as base64, then OK. TCP or TLS alike."""
    down64, up64 = 4 * -(-down // 3), 4 * -(-up // 3)
    select = len("AT+Select=1,0,0,20000\r") + len("OK\r\n+select:0\r\nOK\r\n")
    recv = len("AT+Recv=0,1,1460\r") + len(f"OK\r\n+recv:0,1,{down64},\r\nOK\r\n") + down64
    send = len(f"AT+Send=0,1,{up64},\r") + up64 + len("OK\r\n")
    return select + recv + send - down - up  # the frames themselves are in the plain floor


def _at_bytes(down: int, up: int, *, tls: bool) -> int:
    """AT bytes any driver needs per message: the "recv" URC, the read command and its answer's
    framing; the send command, its prompt and SEND OK (TCP: AT+QIRD, AT+QISEND; TLS: the
    AT+QSSL* commands of the same shape)."""
    urc, read, answer, send = (
        ("+QSSLURC", "AT+QSSLRECV", "+QSSLRECV", "AT+QSSLSEND")
        if tls
        else ("+QIURC", "AT+QIRD", "+QIRD", "AT+QISEND")
    )
    read_answer = len(f"\r\n{answer}: {down}\r\n") + len("\r\n\r\nOK\r\n")
    at_bytes = len(f'\r\n{urc}: "recv",0\r\n') + len(f"{read}=0,1500\r") + read_answer
    return at_bytes + len(f"{send}=0,{up}\r") + len("\r\n> ") + len("\r\nSEND OK\r\n")


def _percentiles(result: dict[str, Any]) -> tuple[float, float]:
    times = sorted(t * 1000 for t in result["round_trips_s"])
    return statistics.median(times), times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]


async def run(count: int, *, instructions: bool, families: list[str]) -> None:
    with tempfile.TemporaryDirectory() as certificates:
        pki = make_pki(Path(certificates))
        host = await measure("host", count)
        host_times = sorted(t * 1000 for t in host["round_trips_s"])
        emit("p50_host_ms", statistics.median(host_times), "ms", path="host", messages=count)
        emit("cpu_us_per_message_host", host["cpu_us_per_message"], "us", messages=count)
        emit("wakeups_per_message_host", host["wakeups_per_message"], "wakeups", messages=count)
        # The same host path with the CSMS pausing a network round trip (2 x LATENCY) before
        # each CALL: the charge point idles between messages as it does behind the module's
        # latency, so each message costs it a wake-up, as in the field. The comparison on equal
        # terms; the back-to-back figure above is kept as it was first measured.
        paced = await measure("host", count, pause=2 * LATENCY)
        host["paced"] = paced
        pace = {"messages": count, "pause_ms": 2 * LATENCY * 1000}
        emit("cpu_us_per_message_host_paced", paced["cpu_us_per_message"], "us", **pace)
        emit("wakeups_per_message_host_paced", paced["wakeups_per_message"], "wakeups", **pace)
        p50s: dict[str, float] = {}
        for family in families:
            p50s[family] = await _family(family, count, pki, host)
        for family, p50 in p50s.items():
            if family != "quectel" and "quectel" in p50s:
                common = {"messages": count, "baud": BAUD, "latency_ms": LATENCY * 1000}
                emit(
                    f"p50_{family}_over_quectel",
                    p50 / p50s["quectel"],
                    "ratio",
                    family=family,
                    **common,
                )
    if instructions and "quectel" in families and shutil.which("valgrind"):
        await _instructions(pki)


async def _family(family: str, count: int, pki: BenchPki, host: dict[str, Any]) -> float:
    """One family's figures (plain and TLS); its plain p50 in ms."""
    modem = await measure("modem", count, family=family)
    modem_tls = await measure("modem", count, pki=pki, family=family)
    name = "" if family == "quectel" else f"_{family}"
    down = _frame_bytes(modem["call_bytes"], masked=False)  # CSMS → charge point
    up = _frame_bytes(modem["result_bytes"], masked=True)  # charge point → CSMS, masked
    line_rate = BAUD / 10
    floor = 2 * LATENCY + (down + up) / line_rate
    if family == "quectel":
        at_bytes, at_bytes_tls = _at_bytes(down, up, tls=False), _at_bytes(down, up, tls=True)
    else:
        at_bytes = at_bytes_tls = _at_bytes_simplelink(down, up)
    floor_with_at = floor + at_bytes / line_rate
    floor_with_at_tls = floor + at_bytes_tls / line_rate
    p50, p99 = _percentiles(modem)
    p50_tls, p99_tls = _percentiles(modem_tls)
    if modem_tls["tls"] is None or modem["tls"] is not None:
        raise RuntimeError("the TLS path did not run over TLS, or the plain one did")
    cpu, cpu_tls = modem["cpu_us_per_message"], modem_tls["cpu_us_per_message"]
    common = {"messages": count, "baud": BAUD, "latency_ms": LATENCY * 1000, "family": family}
    emit(f"p50_ms{name}", p50, "ms", path="modem", **common)
    emit(f"p99_ms{name}", p99, "ms", path="modem", **common)
    emit(f"floor_ms{name}", floor * 1000, "ms", frame_bytes_down=down, frame_bytes_up=up, **common)
    emit(f"floor_with_at_ms{name}", floor_with_at * 1000, "ms", at_bytes=at_bytes, **common)
    emit(f"p50_floor_ratio{name}", p50 / (floor * 1000), "ratio", **common)
    emit(f"cpu_us_per_message_modem{name}", cpu, "us", **common)
    emit(f"cpu_per_message_ratio{name}", cpu / host["cpu_us_per_message"], "ratio", **common)
    paced = host["paced"]
    emit(
        f"cpu_per_message_ratio_paced{name}",
        cpu / paced["cpu_us_per_message"],
        "ratio",
        **common,
    )
    wakeups = modem["wakeups_per_message"]
    emit(f"wakeups_per_message_modem{name}", wakeups, "wakeups", **common)
    emit(
        f"wakeups_per_message_over_host{name}",
        wakeups - host["wakeups_per_message"],
        "wakeups",
        **common,
    )
    emit(
        f"wakeups_per_message_over_host_paced{name}",
        wakeups - paced["wakeups_per_message"],
        "wakeups",
        **common,
    )
    # The same through TLS in the module. The floor is the plain one: the UART carries the
    # same frames, and the simulated network adds latency, not a bandwidth limit.
    tls = {"path": "modem", "tls": "module", **modem_tls["tls"], **common}
    emit(f"p50_ms_tls{name}", p50_tls, "ms", **tls)
    emit(f"p99_ms_tls{name}", p99_tls, "ms", **tls)
    emit(
        f"floor_with_at_ms_tls{name}", floor_with_at_tls * 1000, "ms", at_bytes=at_bytes_tls, **tls
    )
    emit(f"p50_floor_ratio_tls{name}", p50_tls / (floor * 1000), "ratio", **tls)
    emit(f"p50_tls_over_plain{name}", p50_tls / p50, "ratio", **tls)
    emit(f"cpu_us_per_message_modem_tls{name}", cpu_tls, "us", **tls)
    emit(f"cpu_per_message_tls_over_plain{name}", cpu_tls / cpu, "ratio", **tls)
    emit(f"wakeups_per_message_modem_tls{name}", modem_tls["wakeups_per_message"], "wakeups", **tls)
    if family == "quectel":
        # The same through sockets in buffer access mode (AT+QIRD), the driver's fallback and
        # its only mode before direct push: what push mode saves, measured in this run.
        buffer = await measure("modem", count, family=family, access_mode="buffer")
        buffer_p50, _ = _percentiles(buffer)
        mode = {"access_mode": "buffer", **common}
        emit("p50_ms_buffer_mode", buffer_p50, "ms", **mode)
        emit("cpu_us_per_message_buffer_mode", buffer["cpu_us_per_message"], "us", **mode)
        emit("wakeups_per_message_buffer_mode", buffer["wakeups_per_message"], "wakeups", **mode)
        emit("cpu_push_over_buffer", cpu / buffer["cpu_us_per_message"], "ratio", **common)
    return p50


async def _instructions(pki: BenchPki) -> None:
    """CPU time on a virtual machine charges about 100-230 us for every sleep and wake-up
    (measured: a bare asyncio.sleep wake-up), and the module path must wait for the module
    several times per message. Instructions count the work itself (Quectel path)."""
    common = {"baud": BAUD, "latency_ms": LATENCY * 1000}
    modem_ir = await instructions_per_message("modem")
    host_ir = await instructions_per_message("host")
    emit("instructions_per_message_modem", modem_ir, "instructions", **common)
    emit("instructions_per_message_host", host_ir, "instructions")
    emit("instructions_per_message_ratio", modem_ir / host_ir, "ratio", **common)
    tls_ir = await instructions_per_message("modem", pki)
    emit("instructions_per_message_modem_tls", tls_ir, "instructions", **common)
    emit("instructions_per_message_tls_over_plain", tls_ir / modem_ir, "ratio", **common)


def main(argv: list[str] | None = None) -> int:
    # The charge point runs in this process: its warnings (the bench CSMS hanging up at the
    # end) would mix with the figures. Errors still show.
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(prog="python -m bench.roundtrip")
    parser.add_argument(
        "--quick", action="store_true", help="60 messages each path, no instruction counts (~25 s)"
    )
    parser.add_argument(
        "--family",
        action="append",
        choices=sorted(SIMULATED),
        help="measure only this module family (again for more); default: every one",
    )
    args = parser.parse_args(argv)
    families = args.family or sorted(SIMULATED)
    asyncio.run(run(60 if args.quick else 300, instructions=not args.quick, families=families))
    return 0


if __name__ == "__main__":
    sys.exit(main())
