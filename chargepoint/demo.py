"""``chargepoint demo``: what the project does, on this machine, with nothing attached.

For now (the OCPP session comes with the next issues) it shows the layer everything rides on:
a simulated Quectel EC200U on a pseudo-terminal at 115200 baud with 50 ms of network latency,
the driver bringing it up, bytes going through its TCP socket commands to a server on
127.0.0.1 and back, the network dropping the connection, and the driver recovering.
It prints a timeline of the AT conversation and a summary, and exits 0 when every byte came
back intact.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import TextIO

from transport.errors import StreamClosed
from transport.modems.quectel import QuectelSettings, QuectelTcpStream, open_quectel
from transport.simulator import ModuleProfile, QuectelModule, SimulatorShell

BAUD = 115200
LATENCY = 0.05


class Timeline(logging.Handler):
    """Prints the transport's log records as one timeline: seconds since start, layer, text."""

    def __init__(self, out: TextIO, start: float) -> None:
        super().__init__(logging.DEBUG)
        self.out = out
        self.start = start

    def emit(self, record: logging.LogRecord) -> None:
        layer = {"transport.at": "uart"}.get(record.name, record.name.rsplit(".", 1)[-1])
        print(
            f"{record.created - self.start:8.3f}s  {layer:<8} {record.getMessage()}", file=self.out
        )


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _exchange(stream: QuectelTcpStream, message: bytes) -> bool:
    await stream.write(message)
    echoed = bytearray()
    while len(echoed) < len(message):
        echoed += await stream.read()
    return bytes(echoed) == message


async def run(out: TextIO) -> int:
    start = time.time()

    def say(text: str) -> None:
        print(f"{time.time() - start:8.3f}s  {'demo':<8} {text}", file=out)

    timeline = Timeline(out, start)
    logger = logging.getLogger("transport")
    logger.addHandler(timeline)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    intact = True
    try:
        say(f"echo server on 127.0.0.1:{port} stands in for the CSMS")
        module = QuectelModule(ModuleProfile())
        async with SimulatorShell(module, baud=BAUD, latency=LATENCY) as sim:
            say(
                f"simulated Quectel EC200U on {sim.path}, {BAUD} baud, "
                f"{LATENCY * 1000:g} ms network latency"
            )
            async with open_quectel(sim.path, BAUD, QuectelSettings(apn="internet")) as modem:
                info = await modem.bring_up()
                say(
                    f"link up: IMEI {info.identity.imei}, ICCID {info.identity.iccid}, "
                    f"signal {info.signal.describe()}, address {info.ip_address}"
                )
                stream = await modem.open_tcp("127.0.0.1", port)
                for message in (
                    b'[2,"19223201","BootNotification",'
                    b'{"chargePointVendor":"Demo","chargePointModel":"AT-1"}]',
                    b'[2,"19223202","Heartbeat",{}]',
                    os.urandom(
                        3000
                    ),  # larger than one AT+QISEND (1460 bytes) and one AT+QIRD (1500)
                ):
                    ok = await _exchange(stream, message)
                    intact &= ok
                    say(f"{len(message)} bytes there and back: {'intact' if ok else 'CORRUPTED'}")
                say("the network drops the connection")
                sim.drop_connection(stream.connect_id)
                try:
                    while True:
                        await stream.read()
                except StreamClosed as exc:
                    say(f"driver reports: {exc}")
                await stream.close()
                stream = await modem.open_tcp("127.0.0.1", port)
                ok = await _exchange(stream, b'[2,"19223203","Heartbeat",{}]')
                intact &= ok
                say(f"reconnected on socket {stream.connect_id}: {'intact' if ok else 'CORRUPTED'}")
                await stream.close()
                stats = modem.channel.stats
            elapsed = time.time() - start
            print(file=out)
            print("summary", file=out)
            print(f"  AT commands            {stats.commands}", file=out)
            print(f"  URCs                   {stats.urcs}", file=out)
            print(f"  UART host -> module    {sim.bytes_from_host} bytes", file=out)
            print(f"  UART module -> host    {sim.bytes_to_host} bytes", file=out)
            print(f"  noise lines ignored    {stats.noise_lines}", file=out)
            print(f"  elapsed                {elapsed:.2f} s", file=out)
            verdict = "every byte came back intact" if intact else "DATA WAS CORRUPTED"
            print(f"  result                 {verdict}", file=out)
    finally:
        server.close()
        logger.removeHandler(timeline)
        logger.propagate = True
    return 0 if intact else 1


def main(out: TextIO = sys.stdout) -> int:
    return asyncio.run(run(out))
