"""The AT channel getting back in step after a command timed out: which answer belongs to
which command. The module is played byte by byte by the test (a scripted port), so the order
of what crosses the line is exact; the channel's clock is real but its quiet time is short.

The trouble this guards against (seen in the connection-loss tests): an AT+QISEND times out,
its SEND OK comes late, and a probe or the next command takes an answer that was not its own;
an AT+QICLOSE "confirmed" by a stale OK would free a socket id the module still holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from transport.at import AtChannel, AtParser
from transport.errors import AtCommandFailed, AtTimeout

QUIET = 0.05


class ScriptedPort:
    """A serial port whose module is the test: it reads what the channel wrote and answers."""

    name = "scripted"
    baudrate = 115200

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self._wrote = asyncio.Event()
        self._on_data: Callable[[bytes], None] | None = None

    def start(self, on_data: Callable[[bytes], None], on_lost: Callable[[Exception], None]) -> None:
        self._on_data = on_data

    def write(self, data: bytes) -> None:
        self.written.append(data)
        self._wrote.set()

    def close(self) -> None:
        pass

    def say(self, data: bytes) -> None:
        assert self._on_data is not None
        self._on_data(data)

    async def heard(self, count: int) -> bytes:
        """The ``count``-th line the channel wrote (1-based), once it has been written."""
        async with asyncio.timeout(5):
            while len(self.written) < count:
                self._wrote.clear()
                await self._wrote.wait()
        return self.written[count - 1]


@pytest.fixture
def port() -> ScriptedPort:
    return ScriptedPort()


def channel_on(port: ScriptedPort, quiet: float = 0.05) -> AtChannel:
    channel = AtChannel(port, AtParser(), default_timeout=0.2, probe_timeout=2.0, quiet_time=quiet)
    channel.start()
    return channel


async def turns(count: int = 5) -> None:
    """Let the event loop run ``count`` times: enough for the channel to act on what it heard."""
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_late_send_ok_never_answers_the_probe(port: ScriptedPort) -> None:
    channel = channel_on(port)
    with pytest.raises(AtTimeout):
        await channel.command("AT+QISEND=0,5", timeout=0.05)
    query = asyncio.create_task(channel.command("AT+CSQ", expect=("+CSQ:",)))
    assert await port.heard(2) == b"AT\r"  # the probe, once the line was quiet
    port.say(b"\r\nSEND OK\r\n")  # the QISEND's answer, late: not the probe's
    await turns()
    assert len(port.written) == 2  # still probing: AT+CSQ must not go out yet
    port.say(b"\r\nOK\r\n")  # the probe's own answer
    assert await port.heard(3) == b"AT+CSQ\r"
    port.say(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    response = await query
    assert response.value("+CSQ:") == "20,99"
    assert channel.stats.noise_lines == 1
    await channel.close()


async def test_a_cancelled_probes_ok_never_confirms_the_next_command(port: ScriptedPort) -> None:
    # The line must stay quiet this long after a probe's OK: far longer than the few turns of
    # the event loop between the two probes' answers below.
    channel = channel_on(port, quiet=0.5)
    with pytest.raises(AtTimeout):
        await channel.command("AT+QISEND=0,5", timeout=0.05)
    first = asyncio.create_task(channel.command("AT+QIRD=0,1500"))
    assert await port.heard(2) == b"AT\r"
    first.cancel()  # its probe is on the line; the answer will come with nobody waiting
    with pytest.raises(asyncio.CancelledError):
        await first
    close = asyncio.create_task(channel.command("AT+QICLOSE=0,10"))
    assert await port.heard(3) == b"AT\r"  # probing again
    port.say(b"\r\nOK\r\n")  # the first probe's answer
    await turns()
    port.say(b"\r\nOK\r\n")  # the second probe's, a moment later
    assert await port.heard(4) == b"AT+QICLOSE=0,10\r"
    await turns()
    assert not close.done()  # no stale OK has "confirmed" the close
    port.say(b"\r\nOK\r\n")
    await close
    assert channel.stats.noise_lines == 1
    await channel.close()


# -- blocked commands (TI's Wi-Fi AT firmware: OK at once, the result when it is over) --


async def test_a_blocked_command_ends_at_its_second_final_result(port: ScriptedPort) -> None:
    channel = channel_on(port)
    select = asyncio.create_task(channel.command("AT+Select=1,0,1,0", blocked=True))
    assert await port.heard(1) == b"AT+Select=1,0,1,0\r"
    port.say(b"OK\r\n")  # accepted: the module now blocks until a socket is readable
    await turns()
    assert not select.done()
    later = asyncio.create_task(channel.command("AT+Test"))
    await turns()
    assert len(port.written) == 1  # the line stays held: nothing else is sent meanwhile
    assert channel.waiting == 1
    port.say(b"+select:0\r\nOK\r\n")
    response = await select
    assert [line.text for line in response.lines] == ["+select:0"]
    assert await port.heard(2) == b"AT+Test\r"
    port.say(b"OK\r\n")
    await later
    assert channel.waiting == 0


async def test_a_blocked_command_that_fails_after_its_ok_fails(port: ScriptedPort) -> None:
    channel = channel_on(port)
    connect = asyncio.create_task(channel.command("AT+Connect=0,INET,80,127.0.0.1", blocked=True))
    await port.heard(1)
    port.say(b"OK\r\nERROR:process command,-111\r\n")
    with pytest.raises(AtCommandFailed, match="-111"):
        await connect


async def test_a_blocked_command_refused_at_once_fails_at_once(port: ScriptedPort) -> None:
    channel = channel_on(port)
    recv = asyncio.create_task(channel.command("AT+Recv=x", blocked=True))
    await port.heard(1)
    port.say(b"ERROR:parse parameters,-2\r\n")
    with pytest.raises(AtCommandFailed, match="parse parameters"):
        await recv


async def test_a_normaliser_gives_every_line_one_spelling(port: ScriptedPort) -> None:
    def lower_names(text: str) -> str:
        name, colon, rest = text.partition(":")
        return f"{name.lower()}:{rest.lstrip()}" if colon and name.startswith("+") else text

    parser = AtParser(urc_prefixes=("+eventwlan:",), normalise=lower_names)
    channel = AtChannel(port, parser, default_timeout=0.5)
    channel.start()
    seen: list[str] = []
    channel.subscribe("+eventwlan:", lambda urc: seen.append(urc.text))
    query = asyncio.create_task(channel.command("AT+Socket=INET,STREAM,TCP"))
    await port.heard(1)
    port.say(b"+EventWlan: disconnect,Site,a0:b1:c2:d3:e4:f5,4\r\n+Socket: 3\r\nOK\r\n")
    response = await query
    assert response.value("+socket:") == "3"
    assert seen == ["+eventwlan:disconnect,Site,a0:b1:c2:d3:e4:f5,4"]


async def test_the_probe_command_is_the_familys(port: ScriptedPort) -> None:
    channel = AtChannel(
        port, AtParser(), default_timeout=0.05, quiet_time=QUIET, probe_command="AT+Test"
    )
    channel.start()
    with pytest.raises(AtTimeout):
        await channel.command("AT+Get=General,Version")
    query = asyncio.create_task(channel.command("AT+Test"))
    assert await port.heard(2) == b"AT+Test\r"  # the probe
    port.say(b"OK\r\n")
    assert await port.heard(3) == b"AT+Test\r"  # then the command itself
    port.say(b"OK\r\n")
    await query


async def test_a_secret_answer_that_comes_late_never_reaches_a_log(
    port: ScriptedPort, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="transport.at")
    channel = AtChannel(
        port, AtParser(), default_timeout=0.05, quiet_time=QUIET, probe_command="AT+Test"
    )
    channel.start()
    secret = "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0t"  # a private key's first line, base64
    with pytest.raises(AtTimeout):
        await channel.command("AT+FileRead=3,0,1,1024", secret_answer=True)
    port.say(f"+fileread:1,36,{secret}\r\n".encode())  # late, with nothing waiting
    query = asyncio.create_task(channel.command("AT+Get=General,Version"))
    assert await port.heard(2) == b"AT+Test\r"  # the probe, once the line was quiet
    port.say(f"+fileread:1,36,{secret}\r\nOK\r\n".encode())  # or late, during the probe
    assert await port.heard(3) == b"AT+Get=General,Version\r"
    port.say(b"+get:0x31100019,3.7.0.1\r\nOK\r\n")
    assert (await query).value("+get:") == "0x31100019,3.7.0.1"
    assert secret not in caplog.text
    assert "characters not shown" in caplog.text


# -- the event loop held up (CPU-bound work on a slow controller) --


def hold_the_loop(seconds: float) -> None:
    """CPU-bound work in the event loop's thread, as validating a big message is."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


async def test_a_deadline_that_passes_while_the_loop_is_held_up_gets_a_grace(
    port: ScriptedPort,
) -> None:
    channel = channel_on(port)
    query = asyncio.create_task(channel.command("AT+CSQ", expect=("+CSQ:",), timeout=0.2))
    assert await port.heard(1) == b"AT+CSQ\r"
    hold_the_loop(0.8)  # past the command's deadline
    await turns()  # the timer has fired, late: the module had no chance to be read
    assert not query.done()
    port.say(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    assert (await query).value("+CSQ:") == "20,99"
    assert channel.stats.timeouts == 0
    await channel.close()


async def test_the_grace_is_given_once_and_a_silent_module_still_times_out(
    port: ScriptedPort,
) -> None:
    channel = channel_on(port)
    query = asyncio.create_task(channel.command("AT+CSQ", timeout=0.2))
    assert await port.heard(1) == b"AT+CSQ\r"
    hold_the_loop(0.8)
    with pytest.raises(AtTimeout):
        await query
    assert channel.stats.timeouts == 1
    await channel.close()


async def test_a_prompt_no_command_owes_is_noise_and_holds_nothing_up(port: ScriptedPort) -> None:
    # A '>' at the start of a line that no given-up data command can have asked for (here:
    # bytes that look like one): logged as noise; the next command goes out at once, unprobed.
    channel = channel_on(port)
    port.say(b"\r\n> ")
    query = asyncio.create_task(channel.command("AT+CSQ", expect=("+CSQ:",)))
    assert await port.heard(1) == b"AT+CSQ\r"
    port.say(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    assert (await query).value("+CSQ:") == "20,99"
    assert channel.stats.noise_lines == 1
    await channel.close()
