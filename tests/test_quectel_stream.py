"""Bytes through the module: driver ⇄ real pty ⇄ simulator ⇄ real TCP ⇄ echo server on
127.0.0.1. Whatever goes in must come back byte for byte, and every fault must end in a clear
error, never a hang.

Every test runs with the sockets in direct push mode (the default) and in buffer access mode
(AT+QIRD), at-protocol.md §2.4, §2.8, §2.13; the idle poll that recovers a lost buffer-mode
"recv" URC is buffer mode's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

import tests.conftest
from tests.conftest import FAST, EchoServer, fast, until
from transport.errors import (
    AtTimeout,
    ModemNotResponding,
    ModuleRebooted,
    NetworkLost,
    PeerClosed,
    SendStalled,
    StreamBroken,
    StreamClosed,
)
from transport.modems.quectel import QuectelModem, open_quectel
from transport.modems.quectel_settings import AccessMode, QuectelSettings
from transport.modems.quectel_sockets import QuectelTcpStream
from transport.simulator import ModuleProfile, QuectelModule, SimulatorShell

MIB = 1 << 20


@pytest.fixture(autouse=True, params=[AccessMode.PUSH, AccessMode.BUFFER], ids=["push", "buffer"])
def access_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> AccessMode:
    """The access mode of every socket the test opens (through ``FAST`` and ``fast()``)."""
    mode: AccessMode = request.param
    settings = dataclasses.replace(tests.conftest.FAST, access_mode=mode)
    monkeypatch.setattr(tests.conftest, "FAST", settings)
    monkeypatch.setattr(sys.modules[__name__], "FAST", settings)
    return mode


async def round_trip(stream: QuectelTcpStream, payload: bytes, write_size: int) -> bytes:
    received = bytearray()

    async def write() -> None:
        for i in range(0, len(payload), write_size):
            await stream.write(payload[i : i + write_size])

    async def read() -> None:
        while len(received) < len(payload):
            received.extend(await stream.read())

    async with asyncio.timeout(150), asyncio.TaskGroup() as tasks:
        tasks.create_task(write())
        tasks.create_task(read())
    return bytes(received)


@dataclass
class Session:
    sim: SimulatorShell
    modem: QuectelModem
    stream: QuectelTcpStream


@contextlib.asynccontextmanager
async def session(
    echo_server: EchoServer,
    module: QuectelModule | None = None,
    settings: QuectelSettings | None = None,
    **shell_options: Any,
) -> AsyncIterator[Session]:
    """A brought-up module with one socket open to the echo server."""
    async with (
        SimulatorShell(module, **shell_options) as sim,
        open_quectel(sim.path, shell_options.get("baud") or 115200, settings or FAST) as modem,
    ):
        await modem.bring_up()
        stream = await modem.open_tcp("127.0.0.1", echo_server.port)
        try:
            yield Session(sim, modem, stream)
        finally:
            await stream.close()


@pytest.mark.slow
async def test_one_mib_round_trips_byte_exact(echo_server: EchoServer) -> None:
    async with session(echo_server) as s:
        payload = os.urandom(MIB)
        assert await round_trip(s.stream, payload, 4096) == payload
        assert s.stream.bytes_sent == s.stream.bytes_received == MIB
        assert s.modem.channel.stats.noise_lines == 0


@pytest.mark.slow
async def test_one_mib_with_urcs_between_echo_and_answer(echo_server: EchoServer) -> None:
    module = QuectelModule(seed=7)
    async with session(echo_server, module) as s:
        module.chatter = 0.3
        module.echo = (
            True  # echo back on, as after a module reset, so URCs land between echo and answer
        )
        payload = os.urandom(MIB)
        assert await round_trip(s.stream, payload, 4096) == payload
        assert s.modem.channel.stats.urcs > 300
        assert s.modem.channel.stats.noise_lines == 0


# Bytes a parser that read the payload as lines would take for results, prompts and URCs.
LOOKALIKES = (
    b"\r\nOK\r\n",
    b"\r\nERROR\r\n",
    b"\r\nSEND OK\r\n",
    b"\r\n> ",
    b'\r\n+QIURC: "closed",0\r\n',
    b'\r\n+QIURC: "recv",0,5\r\nhello\r\n',
    b'+QSSLURC: "recv",1\r\n',
    b"\r\nRDY\r\n",
    b"\r\nCONNECT 10\r\n",
    b"\r\n+QIRD: 3\r\n",
    b"\r\r\n\n",
)


async def test_payloads_that_look_like_at_traffic_round_trip_byte_exact(
    echo_server: EchoServer,
) -> None:
    rng = random.Random(11)
    pieces = [rng.choice(LOOKALIKES) + os.urandom(rng.randrange(0, 40)) for _ in range(2000)]
    payload = b"".join(pieces)
    async with session(echo_server) as s:
        # Odd write sizes move where the module's sends and pushes cut the look-alikes.
        assert await round_trip(s.stream, payload, 1237) == payload
        assert s.modem.channel.stats.noise_lines == 0
        assert (await s.modem.signal()).rssi == 24  # the channel is still in step


async def test_urcs_of_other_sockets_between_pushes_and_inside_answers(
    echo_server: EchoServer, access_mode: AccessMode
) -> None:
    """Other sockets' "recv" (in push mode with data that reads like a final result and a
    prompt) and "closed" URCs land between the module's pushes for our socket, between a
    command's echo and its answer, and right after the data prompt (§9.1)."""
    module = QuectelModule(seed=13)
    if access_mode is AccessMode.PUSH:
        others: tuple[str | tuple[str, bytes], ...] = (
            ('+QIURC: "recv",7,6', b"\r\nOK\r\n\r\n"),
            ('+QSSLURC: "recv",9,3', b"> \n\r\n"),
            ('+QIURC: "recv",5,11', b"\r\nSEND OK\r\n\r\n"),
        )
    else:
        others = ('+QIURC: "recv",7', '+QSSLURC: "recv",9')
    async with session(echo_server, module) as s:
        module.chatter = 0.4
        module.chatter_urcs = (*others, '+QIURC: "closed",8', '+QIND: "csq",24,99')
        module.echo = True  # as after a module reset: URCs then land between echo and answer
        payload = os.urandom(256 * 1024)
        assert await round_trip(s.stream, payload, 4096) == payload
        assert s.modem.channel.stats.urcs > 100
        assert s.modem.channel.stats.noise_lines == 0
        assert s.stream.bytes_received == len(payload)  # nothing of sockets 5, 7, 9 came in


def sends(module: QuectelModule, connect_id: int) -> list[str]:
    """The socket's send commands as the module received them, hex digits cut short."""
    return [
        c.split(",")[0] + (",hex" if c.startswith("AT+QISENDEX") else "," + c.split(",")[1])
        for c in module.log
        if c.startswith((f"AT+QISEND={connect_id},", f"AT+QISENDEX={connect_id},"))
    ]


async def test_small_writes_go_as_one_qisendex_and_larger_ones_at_the_prompt(
    echo_server: EchoServer,
) -> None:
    # §2.9: up to hex_send_max bytes in the command line as hex, no prompt; anything larger
    # (and AT+QISENDEX's own limit is 512) with AT+QISEND and the prompt (§2.7).
    module = QuectelModule()
    async with session(echo_server, module) as s:
        limit = s.modem.settings.hex_send_max
        assert limit == 256  # the default
        every_byte = bytes(range(256))
        assert await round_trip(s.stream, every_byte, limit) == every_byte
        lookalikes = b"".join(LOOKALIKES)  # what a line parser would take for answers
        assert await round_trip(s.stream, lookalikes, limit) == lookalikes
        larger = os.urandom(limit + 1)
        assert await round_trip(s.stream, larger, limit + 1) == larger
        ident = s.stream.connect_id
        assert sends(module, ident) == [
            f"AT+QISENDEX={ident},hex",
            f"AT+QISENDEX={ident},hex",
            f"AT+QISEND={ident},{limit + 1}",
        ]
        assert s.modem.channel.stats.noise_lines == 0


async def test_a_long_qisendex_on_a_slow_line_gets_the_time_the_wire_needs(
    echo_server: EchoServer,
) -> None:
    # 512 bytes as 1,024 hex digits take 1.1 s at 9600 baud, longer than the 0.8 s allowed for
    # a command's answer: the deadline counts the command line's own time on the wire.
    module = QuectelModule()
    settings = fast(command_timeout=0.8, hex_send_max=512)
    async with session(echo_server, module, settings=settings, baud=9600) as s:
        payload = os.urandom(512)
        assert await round_trip(s.stream, payload, 512) == payload
        assert sends(module, s.stream.connect_id) == [f"AT+QISENDEX={s.stream.connect_id},hex"]
        assert s.modem.channel.stats.timeouts == 0


async def test_hex_send_max_0_sends_everything_at_the_prompt(echo_server: EchoServer) -> None:
    module = QuectelModule()
    async with session(echo_server, module, settings=fast(hex_send_max=0)) as s:
        assert await round_trip(s.stream, b"tiny", 4) == b"tiny"
        assert sends(module, s.stream.connect_id) == [f"AT+QISEND={s.stream.connect_id},4"]


async def test_firmware_without_qisendex_gets_qisend_only(
    echo_server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The module answers AT+QISENDEX with ERROR on a healthy socket: the same bytes go again with
    # AT+QISEND, once, and every later send uses AT+QISEND; nothing is lost or sent twice.
    module = QuectelModule(ModuleProfile(hex_send=False))
    async with session(echo_server, module) as s:
        ident = s.stream.connect_id
        assert await round_trip(s.stream, b"first", 5) == b"first"
        assert await round_trip(s.stream, b"second", 6) == b"second"
        assert sends(module, ident) == [
            f"AT+QISENDEX={ident},hex",
            f"AT+QISEND={ident},5",
            f"AT+QISEND={ident},6",
        ]
        assert caplog.text.count("sending with AT+QISEND only from now on") == 1
        assert s.stream.bytes_sent == s.stream.bytes_received == 11


async def test_firmware_without_qisendex_through_send_fail(echo_server: EchoServer) -> None:
    # The module refuses the hex form (ERROR) and its buffer is full (SEND FAIL to AT+QISEND):
    # the driver backs off and offers the same bytes again, and turns the hex form off only once
    # AT+QISEND has taken them. The bytes arrive once.
    module = QuectelModule(ModuleProfile(hex_send=False))
    async with session(echo_server, module) as s:
        ident = s.stream.connect_id
        module.refused_sends.add(ident)
        await s.stream.write(b"abc")
        await until(lambda: s.stream.send_fails >= 2)
        assert s.stream._sockets.hex_send_max == 256  # nothing has gone through yet
        module.refused_sends.discard(ident)
        received = bytearray()
        async with asyncio.timeout(10):
            while len(received) < 3:
                received += await s.stream.read()
        assert bytes(received) == b"abc"
        assert s.stream._sockets.hex_send_max == 0
        commands = sends(module, ident)
        attempts = len(commands) // 2
        assert (
            attempts >= 3
            and commands == [f"AT+QISENDEX={ident},hex", f"AT+QISEND={ident},3"] * attempts
        )
        assert echo_server.received == 3


async def test_qisendex_on_a_socket_the_module_forgot_is_a_clear_error(
    echo_server: EchoServer,
) -> None:
    # ERROR to AT+QISENDEX with nothing said of the socket: AT+QISEND is asked, says the same,
    # and the stream ends with the module's reason, the hex form still on.
    module = QuectelModule()
    async with session(echo_server, module) as s:
        s.stream._tasks[1].cancel()  # keep the driver's sender out of the way until asked
        ident = s.stream.connect_id
        module.sockets.pop(ident)  # the module forgot the socket without a URC
        with pytest.raises(
            StreamBroken, match=r"AT\+QISEND failed: ERROR, 567 socket has been closed"
        ):
            await s.stream._send_chunk(b"late")
        assert sends(module, ident) == [f"AT+QISENDEX={ident},hex", f"AT+QISEND={ident},4"]
        assert s.stream._sockets.hex_send_max == 256  # still on: the socket was the trouble


async def test_qisendex_after_the_peer_closed_is_not_tried_again(echo_server: EchoServer) -> None:
    # The "closed" URC has come: an ERROR to AT+QISENDEX is the socket's, not the command's.
    module = QuectelModule()
    async with session(echo_server, module) as s:
        s.stream._tasks[1].cancel()
        ident = s.stream.connect_id
        s.sim.drop_connection(ident)  # the URC is on the line before the command's ERROR
        with pytest.raises(PeerClosed):
            await s.stream._send_chunk(b"late")
        assert sends(module, ident) == [f"AT+QISENDEX={ident},hex"]
        assert s.stream._sockets.hex_send_max == 256


@pytest.mark.slow
async def test_one_mib_written_one_byte_at_a_time(echo_server: EchoServer) -> None:
    async with session(echo_server) as s:
        payload = os.urandom(MIB)
        assert await round_trip(s.stream, payload, 1) == payload
        # Small writes are gathered into full QISENDs, not sent one byte per command.
        assert s.modem.channel.stats.commands < 4 * MIB // 1460


@pytest.mark.slow
async def test_one_mib_through_a_storm_of_send_fail(echo_server: EchoServer) -> None:
    module = QuectelModule(seed=3)
    async with session(echo_server, module) as s:
        module.send_fail_rate = 0.5
        payload = os.urandom(MIB)
        assert await round_trip(s.stream, payload, 4096) == payload
        assert s.stream.send_fails > 300


async def test_send_fail_from_a_full_module_buffer_on_a_slow_radio(echo_server: EchoServer) -> None:
    module = QuectelModule(ModuleProfile(send_buffer=4096))
    async with session(echo_server, module, uplink_rate=64 * 1024) as s:
        payload = os.urandom(256 * 1024)
        assert await round_trip(s.stream, payload, 4096) == payload
        assert s.stream.send_fails > 10


async def test_round_trip_at_115200_baud_with_network_latency(echo_server: EchoServer) -> None:
    async with session(echo_server, baud=115200, latency=0.05) as s:
        payload = os.urandom(8 * 1024)
        assert await round_trip(s.stream, payload, 1000) == payload


async def test_garbage_on_the_line_is_logged_and_nothing_is_lost(echo_server: EchoServer) -> None:
    async with session(echo_server) as s:
        rng = random.Random(5)
        payload = os.urandom(256 * 1024)
        garbage = 0
        received = bytearray()

        async def read() -> None:
            while len(received) < len(payload):
                received.extend(await s.stream.read())

        async with asyncio.timeout(60), asyncio.TaskGroup() as tasks:
            tasks.create_task(read())
            for i in range(0, len(payload), 4096):
                noise = bytes(
                    rng.choice(b"abcxyz0123456789!#$%^&*()\x00\x7f\xfe\xff") for _ in range(20)
                )
                s.sim.inject_garbage(b"\r\n" + noise + b"\r\n")
                garbage += len(noise) + 4
                await s.stream.write(payload[i : i + 4096])
        assert bytes(received) == payload
        # Every garbage byte crossed the line while the transfer ran. Garbage between commands is
        # logged as noise; inside a command's answer it is an extra line the driver ignores.
        assert s.modem.channel.stats.bytes_in > len(payload) + garbage


async def test_peer_closing_delivers_everything_then_says_so(echo_server: EchoServer) -> None:
    async with session(echo_server) as s:
        await s.stream.write(b"last words")
        assert await s.stream.read() == b"last words"
        echo_server.writers[0].close()
        async with asyncio.timeout(10):
            with pytest.raises(PeerClosed, match="closed the connection"):
                await s.stream.read()
        with pytest.raises(PeerClosed):
            await s.stream.write(b"anyone?")
        await s.stream.close()
        assert s.sim.module.sockets == {}  # QICLOSE freed the id


async def test_dropped_connection_ends_the_stream_and_a_new_one_opens(
    echo_server: EchoServer,
) -> None:
    async with session(echo_server) as s:

        async def keep_writing() -> None:
            while True:
                await s.stream.write(os.urandom(1000))

        writer = asyncio.create_task(keep_writing())
        await asyncio.sleep(0.2)
        s.sim.drop_connection(s.stream.connect_id)
        async with asyncio.timeout(10):
            with pytest.raises(PeerClosed):
                while True:
                    await s.stream.read()
            with pytest.raises(StreamClosed):
                await writer
        await s.stream.close()
        again = await s.modem.open_tcp("127.0.0.1", echo_server.port)
        assert again.connect_id == 0
        assert await round_trip(again, b"still here", 10) == b"still here"
        await again.close()


async def test_pdp_deactivation_ends_the_stream_and_reactivation_recovers(
    echo_server: EchoServer,
) -> None:
    async with session(echo_server) as s:
        s.sim.deactivate_pdp(1)
        async with asyncio.timeout(10):
            with pytest.raises(NetworkLost, match="pdpdeact"):
                await s.stream.read()
        with pytest.raises(NetworkLost):
            await s.stream.write(b"x")
        await s.stream.close()
        assert await s.modem.reactivate_pdp() == "10.64.23.7"
        again = await s.modem.open_tcp("127.0.0.1", echo_server.port)
        assert await round_trip(again, b"back online", 11) == b"back online"
        await again.close()


async def test_module_reboot_ends_the_stream_and_bring_up_recovers(echo_server: EchoServer) -> None:
    async with session(echo_server) as s:
        s.sim.module.profile.boot_time = 0.3
        s.sim.reboot()
        async with asyncio.timeout(10):
            with pytest.raises(ModuleRebooted, match="restarted"):
                await s.stream.read()
        await s.stream.close()
        info = await s.modem.bring_up()  # echo is on again after the reset; bring-up copes
        assert info.ip_address == "10.64.23.7"
        again = await s.modem.open_tcp("127.0.0.1", echo_server.port)
        assert await round_trip(again, b"rebooted", 8) == b"rebooted"
        await again.close()


async def test_serial_port_gone_ends_the_stream_at_once_and_close_still_works(
    echo_server: EchoServer,
) -> None:
    # A USB module re-enumerating (or its pty closing): a session must end now, not at its
    # next keepalive, and closing the dead socket must not raise.
    async with session(echo_server) as s:
        reading = asyncio.create_task(s.stream.read())
        await s.sim.stop()
        async with asyncio.timeout(10):
            with pytest.raises(StreamClosed, match=r"serial port \S+ is gone"):
                await reading
        await s.stream.close()
        assert not s.modem.link_up


async def test_deliberate_restart_waits_for_rdy(echo_server: EchoServer) -> None:
    async with session(echo_server) as s:
        s.sim.module.profile.boot_time = 0.3
        info = await s.modem.restart()
        assert info.ip_address == "10.64.23.7"
        assert "AT+CFUN=1,1" in s.sim.module.log
        with pytest.raises(ModuleRebooted):
            await s.stream.read()


async def test_slow_answers_within_the_timeout_still_work(echo_server: EchoServer) -> None:
    async with session(echo_server) as s:
        s.sim.set_response_delay(0.05)
        assert await round_trip(s.stream, os.urandom(4000), 1000) is not None


@pytest.mark.parametrize(("hex_send_max", "command"), [(256, "QISENDEX"), (0, "QISEND")])
async def test_answers_slower_than_the_timeout_break_the_stream_then_the_channel_recovers(
    echo_server: EchoServer, hex_send_max: int, command: str
) -> None:
    async with session(echo_server, settings=fast(hex_send_max=hex_send_max)) as s:
        s.sim.set_response_delay(FAST.command_timeout + 1.0)
        await s.stream.write(b"hello")
        await until(lambda: s.stream._error is not None)
        assert isinstance(s.stream._error, StreamBroken)
        assert f"no final result to AT+{command}={s.stream.connect_id}," in str(s.stream._error)
        with pytest.raises(StreamBroken):
            await s.stream.write(b"hello")
        s.sim.set_response_delay(0.0)
        # The late answers straggle in and are discarded; the channel probes with AT and goes on.
        signal = await s.modem.signal()
        assert signal.rssi == 24


async def test_a_hung_module_is_reported_and_the_driver_can_escalate(
    echo_server: EchoServer,
) -> None:
    async with session(echo_server) as s:
        s.sim.set_muted(True)
        async with asyncio.timeout(30):
            with pytest.raises(AtTimeout, match=r"no final result to AT\+CSQ within 2 s"):
                await s.modem.signal()
            with pytest.raises(
                ModemNotResponding, match=r"did not answer AT .* check the module's power"
            ):
                await s.modem.signal()
        s.sim.set_muted(False)
        await s.modem.channel.probe()
        assert (await s.modem.signal()).rssi == 24


async def test_send_stall_declares_the_link_dead(echo_server: EchoServer) -> None:
    module = QuectelModule()
    async with session(echo_server, module, settings=fast(send_stall_timeout=1.0)) as s:
        module.send_fail_rate = 1.0
        async with asyncio.timeout(10):
            with pytest.raises(SendStalled, match=r"SEND FAIL\) for 1 s"):
                while True:
                    await s.stream.write(b"x" * 1000)


@pytest.mark.parametrize("access_mode", [AccessMode.BUFFER], ids=["buffer"], indirect=True)
async def test_lost_recv_urc_is_recovered_by_the_idle_poll(echo_server: EchoServer) -> None:
    async with session(echo_server) as s:
        original = s.modem._on_qiurc
        dropped = []

        def lossy(urc):  # the line noise ate one "recv" URC
            if '"recv"' in urc.text and not dropped:
                dropped.append(urc.text)
                return
            original(urc)

        s.modem.channel._handlers = [
            (p, lossy if h == original else h) for p, h in s.modem.channel._handlers
        ]
        await s.stream.write(b"are you there")
        async with asyncio.timeout(FAST.idle_poll_interval * 5):
            assert await s.stream.read() == b"are you there"
        assert dropped


async def test_cancelled_writer_never_leaves_the_module_waiting_for_data(
    echo_server: EchoServer,
) -> None:
    async with session(echo_server, baud=115200) as s:
        # Cancel a command in the middle of its exchange (between the prompt and SEND OK):
        # the exchange still completes, so the next command is not swallowed as payload.
        task = asyncio.create_task(
            s.modem.channel.command_with_data("AT+QISEND=0,1000", bytes(1000))
        )
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await s.modem.signal()).rssi == 24


async def test_several_sockets_share_the_module(echo_server: EchoServer) -> None:
    async with SimulatorShell() as sim, open_quectel(sim.path, settings=FAST) as modem:
        await modem.bring_up()
        streams = [await modem.open_tcp("127.0.0.1", echo_server.port) for _ in range(3)]
        assert [stream.connect_id for stream in streams] == [0, 1, 2]
        results = await asyncio.gather(
            *(round_trip(stream, bytes([i]) * 5000, 700) for i, stream in enumerate(streams))
        )
        assert results == [bytes([i]) * 5000 for i in range(3)]
        for stream in streams:
            await stream.close()


async def test_module_queries_go_on_while_a_transfer_runs(
    modem: QuectelModem, echo_server: EchoServer
) -> None:
    stream = await modem.open_tcp("127.0.0.1", echo_server.port)
    payload = os.urandom(64 * 1024)
    transfer = asyncio.create_task(round_trip(stream, payload, 4096))
    for _ in range(20):
        assert (await modem.signal()).rssi == 24
    assert await transfer == payload
    await stream.close()


async def test_full_size_reads_on_a_slow_line_get_the_time_the_wire_needs(
    echo_server: EchoServer,
) -> None:
    # 1500 bytes take 1.6 s at 9600 baud, longer than the 1 s allowed for a command's answer.
    settings = fast(command_timeout=1.0)
    async with session(echo_server, settings=settings, baud=9600) as s:
        payload = os.urandom(1600)
        assert await round_trip(s.stream, payload, 1600) == payload
        assert s.modem.channel.stats.timeouts == 0


@pytest.mark.parametrize("access_mode", [AccessMode.PUSH], ids=["push"], indirect=True)
async def test_firmware_that_refuses_push_mode_gets_buffer_mode_sockets(
    echo_server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    module = QuectelModule(ModuleProfile(direct_push="refused"))
    async with session(echo_server, module) as s:
        assert "refused direct push mode" in caplog.text
        assert s.sim.module.sockets[s.stream.connect_id].access_mode == 0
        payload = os.urandom(20_000)
        assert await round_trip(s.stream, payload, 3000) == payload
        second = await s.modem.open_tcp("127.0.0.1", echo_server.port)
        # Asked in buffer mode at once: the module refused push mode for this driver's life.
        assert s.sim.module.sockets[second.connect_id].access_mode == 0
        assert caplog.text.count("refused direct push mode") == 1
        assert await round_trip(second, b"again", 5) == b"again"
        await second.close()


@pytest.mark.parametrize("access_mode", [AccessMode.PUSH], ids=["push"], indirect=True)
async def test_firmware_that_ignores_push_mode_is_read_with_qird(echo_server: EchoServer) -> None:
    # The module takes access mode 1 and still says "recv" without data: the driver reads.
    module = QuectelModule(ModuleProfile(direct_push="ignored"))
    async with session(echo_server, module) as s:
        payload = os.urandom(50_000)
        assert await round_trip(s.stream, payload, 4096) == payload
        assert s.stream.bytes_received == len(payload)
