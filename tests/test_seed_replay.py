"""Seed 004 (OCPP WebSocket over an EC200U's TCP AT commands, §4 "AT LOGS") replayed through
the driver against the simulator: the same commands in the same order, the same answers, and
the same bytes on the TCP connection, with a server that plays the seed's CSMS.

Deliberate differences from the log: the driver sends AT+QICSGP once (the log repeats it), sends
with the fixed-length AT+QISEND=<id>,<len> form (the log's variable-length form cannot carry
0x1A/0x1B, at-protocol.md §9.7; it is replayed verbatim in the second test), reads until
+QIRD: 0 (§9.2), and masks its WebSocket frame with a key as RFC 6455 requires (the seed's
frame sets the mask bit without a key, see shared/seeds/README.md). The log's sockets are in
buffer access mode (AT+QIOPEN=...,0,0 and AT+QIRD): the replay asks the driver for that mode,
whose default is direct push. The log sends every frame with AT+QISEND: the replay asks for that
too (hex_send_max = 0), whose default sends a frame of up to 256 bytes as AT+QISENDEX.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from tests.conftest import fast
from transport.modems.quectel import open_quectel
from transport.modems.quectel_settings import AccessMode, PdpAuth
from transport.simulator import ModuleProfile, QuectelModule, SimulatorShell

# The server's bytes as the log shows them (lengths 216, 103 and 107 match its +QIRD lines).
SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: TuNHNYAVKuHKr8iSI6bmJmvayH4=\r\n"
    b"Sec-WebSocket-Protocol: ocpp1.6\r\n"
    b"date: Sat, 10 Jun 2023 05:29:19 GMT\r\n"
    b"server: uvicorn\r\n"
    b"\r\n"
)
TRIGGER_1 = (
    b'[2,"e4e14f97-b503-4c24-8920-16e2dd330300","TriggerMessage",'
    b'{"requestedMessage":"StatusNotification"}]'
)
TRIGGER_2 = (
    b'[2,"fdde7c41-d5b9-424d-a48e-bef33b7f6c01","TriggerMessage",'
    b'{"requestedMessage":"StatusNotification"}]'
)
FRAME_1 = b"\x81\x65" + TRIGGER_1  # FIN + text, unmasked from a server, length 101
FRAME_2 = b"\x81\x65" + TRIGGER_2 + b"\x89\x02\x5e\xea"  # ...followed by a 4-byte ping frame
UPGRADE = (
    b"GET /JIOTESTING001 HTTP/1.1\r\n"
    b"Host: 20.xxx.xxx.144\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: gXWDjiKcOBqyTA2v/vFk6w==\r\n"
    b"Origin: http://20.xxx.xxx.144:80\r\n"
    b"Sec-WebSocket-Protocol: ocpp1.6\r\n"
    b"Authorization: eyJhbXXXXXXXXXXXXXXXXXXXXXXXXXXXX\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)
BOOT = (
    b'[2,"531531531","BootNotification",{"chargePointVendor":"xxx",'
    b'"chargePointSerialNumber":"1234","chargePointModel":"xxx test"}]'
)
MASK = b"\x37\xfa\x21\x3d"
BOOT_FRAME = b"\x81\xfd" + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(BOOT))


def test_seed_byte_counts_are_what_the_log_says() -> None:
    assert (len(SWITCHING), len(FRAME_1), len(FRAME_2), len(BOOT)) == (216, 103, 107, 125)


class SeedCsms:
    """Plays the CSMS of the seed's log, one step at a time."""

    def __init__(self) -> None:
        self.upgrade = b""
        self.frame = b""
        self.handshake_read = asyncio.Event()
        self.port = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.upgrade = await reader.readuntil(b"\r\n\r\n")
        writer.write(SWITCHING)
        await writer.drain()
        # The log's TriggerMessage came in its own +QIRD, after the handshake had been read.
        await self.handshake_read.wait()
        writer.write(FRAME_1)
        await writer.drain()
        self.frame = await reader.readexactly(len(BOOT_FRAME))
        writer.write(FRAME_2)
        await writer.drain()
        await reader.read()  # until the client closes
        writer.close()


@pytest.fixture
async def seed_csms() -> AsyncIterator[SeedCsms]:
    csms = SeedCsms()
    server = await asyncio.start_server(csms.serve, "127.0.0.1", 0)
    csms.port = server.sockets[0].getsockname()[1]
    yield csms
    server.close()
    await server.wait_closed()


async def read_exactly(stream, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        data += await stream.read(count - len(data))
    return bytes(data)


async def test_seed_004_log_replays_through_the_driver(seed_csms: SeedCsms) -> None:
    # The log's module: an EC200U, roaming ("+CGREG: 0,5"), APN airtelgprs.com with PAP.
    module = QuectelModule(ModuleProfile(registration_stat=5))
    settings = fast(
        apn="airtelgprs.com", auth=PdpAuth.PAP, access_mode=AccessMode.BUFFER, hex_send_max=0
    )
    async with (
        SimulatorShell(module, record=True) as sim,
        open_quectel(sim.path, settings=settings) as modem,
    ):
        await modem.bring_up()
        registration = await modem.registration()
        stream = await modem.open_tcp("127.0.0.1", seed_csms.port, connect_id=1)
        async with asyncio.timeout(20):
            await stream.write(UPGRADE)
            assert await read_exactly(stream, 216) == SWITCHING
            seed_csms.handshake_read.set()
            assert await read_exactly(stream, 103) == FRAME_1
            await stream.write(BOOT_FRAME)
            assert await read_exactly(stream, 107) == FRAME_2
        identity = await modem.identity()
        await stream.close()

    assert registration.gprs is not None and registration.gprs.value == 5
    assert identity.revision == "EC200UCNAAR03A06M08"
    # The server saw exactly what the host sent.
    assert seed_csms.upgrade == UPGRADE
    assert seed_csms.frame == BOOT_FRAME

    # The log's commands, in the log's order (each pattern matched against the commands the
    # module received, in sequence).
    log = [
        r"AT\+CGREG\?",
        r'AT\+QICSGP=1,1,"airtelgprs\.com","","",1',
        r"AT\+QIACT\?",
        r"AT\+QIACT=1",
        r"AT\+QIACT\?",
        r'AT\+QIOPEN=1,1,"TCP","127\.0\.0\.1",\d+,0,0',
        rf"AT\+QISEND=1,{len(UPGRADE)}",
        r"AT\+QIRD=1,1500",
        r"AT\+QIRD=1,1500",
        rf"AT\+QISEND=1,{len(BOOT_FRAME)}",
        r"AT\+QIRD=1,1500",
        r"ATI",
    ]
    commands = iter(module.log)
    for pattern in log:
        assert any(re.fullmatch(pattern, c) for c in commands), f"{pattern} missing or out of order"

    # The log's answers, in the log's order, in what the module said on the UART. The log has
    # a "recv" URC before each read; only the first is owed here. A later frame may reach the
    # module before the driver's read that empties its buffer, and then no URC comes for it
    # (§2.8: none until the buffer is drained): the driver must still read it, in order.
    assert sim.transcript is not None
    said = sim.transcript.bytes("module")
    answers = [
        # The log's host left registration URCs off ("+CGREG: 0,5"); the driver turns them on
        # (AT+CGREG=1), so <n> is 1. The status is the log's: 5, roaming.
        b"+CGREG: 1,5",
        b'+QIACT: 1,1,1,"10.64.23.7"',
        b"+QIOPEN: 1,0",
        b"SEND OK",
        b'+QIURC: "recv",1',
        b"+QIRD: 216\r\n" + SWITCHING,
        b"+QIRD: 103\r\n" + FRAME_1,
        b"SEND OK",
        b"+QIRD: 107\r\n" + FRAME_2,
        b"Quectel\r\nEC200U\r\nRevision: EC200UCNAAR03A06M08",
    ]
    position = 0
    for answer in answers:
        found = said.find(answer, position)
        assert found >= 0, f"{answer[:40]!r} missing or out of order"
        position = found + len(answer)


async def test_seed_variable_length_send_is_understood_verbatim(seed_csms: SeedCsms) -> None:
    # The log sends the upgrade with "AT+QISEND=1", the text, then Ctrl-Z.
    async with (
        SimulatorShell() as sim,
        open_quectel(sim.path, settings=fast(apn="airtelgprs.com")) as modem,
    ):
        await modem.bring_up()
        stream = await modem.open_tcp("127.0.0.1", seed_csms.port, connect_id=1)
        stream._tasks[1].cancel()  # keep the driver's own sender out of the way
        response = await modem.channel.command_with_data("AT+QISEND=1", UPGRADE + b"\x1a")
        assert response.result.text == "SEND OK"
        async with asyncio.timeout(10):
            assert await read_exactly(stream, 216) == SWITCHING
        await stream.close()
    assert seed_csms.upgrade == UPGRADE
