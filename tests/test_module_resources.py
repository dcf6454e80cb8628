"""Everything the driver takes from the module comes back, whatever cancels the task holding
it: socket ids (AT+QIOPEN ... AT+QICLOSE), file handles (AT+QFOPEN ... AT+QFCLOSE), the HTTP
client (AT+QHTTPGET/POST ... AT+QHTTPSTOP) and the PDP context. Driver ⇄ real pty ⇄ simulator
⇄ real TCP and HTTP servers on 127.0.0.1.

The cancellation tests walk every AT command an operation sends and cancel the task at three
points of each: before the command is written, while it waits for its answer, and right after
the answer (the task's next await, e.g. the wait for ``+QIOPEN``). After every one, the
driver's socket table must equal the module's, and the lowest id must be free again.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST, EchoServer, fast
from transport.at import AtChannel, Response
from transport.errors import ModuleRebooted, SocketsExhausted, StreamBroken, TransferError
from transport.modems.quectel import QuectelModem, open_quectel
from transport.modems.quectel_http import HttpSettings
from transport.modems.quectel_sockets import SocketState
from transport.simulator import SimulatorShell
from transport.simulator.file_server import FileServer

PHASES = ("before", "waiting", "after")
KIB = 1024


class CancelAt:
    """Cancels ``target`` when the channel runs its ``index``-th AT command (counted from 1),
    at ``phase``: ``before`` it is written, while it is ``waiting`` for its answer, or
    ``after`` the answer came (at the target's next await)."""

    def __init__(self, channel: AtChannel, index: int, phase: str) -> None:
        self.channel = channel
        self.index = index
        self.phase = phase
        self.target: asyncio.Task[Any] | None = None
        self.armed = False  # commands are counted from when the work has begun
        self.count = 0
        self.fired = False
        self.commands: list[str] = []
        self._original = channel._run

    def __enter__(self) -> CancelAt:
        self.channel._run = self._run  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        self.channel._run = self._original  # type: ignore[method-assign]

    async def _run(self, request: Any) -> Response:
        if not self.armed:
            return await self._original(request)
        self.count += 1
        self.commands.append(request.command)
        hit = self.count == self.index and self.target is not None and not self.fired
        if hit:
            self.fired = True
            assert self.target is not None
            if self.phase == "before":
                self.target.cancel()
                if self.target is asyncio.current_task():
                    await asyncio.sleep(0)  # raises here: nothing is written
            elif self.phase == "waiting":
                asyncio.get_running_loop().call_soon(self.target.cancel)
        response = await self._original(request)
        if hit and self.phase == "after":
            assert self.target is not None
            self.target.cancel()
        return response


async def cancelled_at(
    channel: AtChannel,
    index: int,
    phase: str,
    work: Callable[[], Coroutine[Any, Any, Any]],
    *,
    target: Callable[[asyncio.Task[Any]], asyncio.Task[Any]] = lambda task: task,
) -> tuple[CancelAt, Any]:
    """Run ``work()`` in a task, cancelling ``target(task)`` at command ``index``; returns
    the injector and the work's result (None if it was cancelled)."""
    with CancelAt(channel, index, phase) as cancel:

        async def armed() -> Any:
            cancel.armed = True
            return await work()

        task = asyncio.create_task(armed())
        cancel.target = target(task)
        try:
            async with asyncio.timeout(60):
                result = await task
        except asyncio.CancelledError:
            result = None
    return cancel, result


def points() -> Iterator[tuple[int, str]]:
    """(index, phase) for every command until the caller stops asking."""
    for index in itertools.count(1):
        for phase in PHASES:
            yield index, phase


def ids_at_the_module(sim: SimulatorShell) -> set[int]:
    return set(sim.module.sockets)


async def settled(modem: QuectelModem) -> None:
    """Until the commands abandoned by a cancelled caller have had their answers."""
    await modem.channel.command("AT")


async def assert_lowest_id_free(modem: QuectelModem, sim: SimulatorShell, port: int) -> None:
    stream = await modem.open_tcp("127.0.0.1", port)
    assert stream.connect_id == 0
    await stream.close()
    assert modem.sockets.table() == {}
    assert ids_at_the_module(sim) == set()


@pytest.fixture
async def brought_up() -> AsyncIterator[tuple[SimulatorShell, QuectelModem]]:
    async with SimulatorShell() as sim, open_quectel(sim.path, settings=FAST) as modem:
        await modem.bring_up()
        yield sim, modem


# -- sockets ---------------------------------------------------------------------------------


async def take_id_at_the_module(modem: QuectelModem, sim: SimulatorShell, port: int) -> None:
    """Socket 0 opened behind the driver's back, as a previous run (or a lost close) leaves it."""
    connected = asyncio.Event()
    stop = modem.channel.subscribe("+QIOPEN: 0,0", lambda _urc: connected.set())
    try:
        await modem.channel.command(f'AT+QIOPEN=1,0,"TCP","127.0.0.1",{port},0,0')
        async with asyncio.timeout(10):
            await connected.wait()
    finally:
        stop()
    assert 0 in sim.module.sockets


@pytest.mark.parametrize("held_by_a_stranger", [False, True], ids=["free", "563"])
async def test_an_open_cancelled_at_any_point_leaves_no_socket_id_behind(
    brought_up: tuple[SimulatorShell, QuectelModem],
    echo_server: EchoServer,
    held_by_a_stranger: bool,
) -> None:
    sim, modem = brought_up
    seen: set[str] = set()
    for index, phase in points():
        if held_by_a_stranger:
            await take_id_at_the_module(modem, sim, echo_server.port)
        cancel, stream = await cancelled_at(
            modem.channel, index, phase, lambda: modem.open_tcp("127.0.0.1", echo_server.port)
        )
        await settled(modem)
        seen.update(cancel.commands)
        if stream is not None:
            assert modem.sockets.table() == {0: SocketState.OPEN}
            assert ids_at_the_module(sim) == {0}
            await stream.close()
        assert set(modem.sockets.table()) == ids_at_the_module(sim) == set(), (index, phase)
        await assert_lowest_id_free(modem, sim, echo_server.port)
        if not cancel.fired:
            break
    assert sim.module.most_sockets_held == 1
    if held_by_a_stranger:
        assert any(c.startswith("AT+QICLOSE=0,0") for c in seen)  # the stranger was closed


async def test_a_close_whose_caller_is_cancelled_still_closes_the_socket(
    brought_up: tuple[SimulatorShell, QuectelModem], echo_server: EchoServer
) -> None:
    sim, modem = brought_up
    for index, phase in points():
        stream = await modem.open_tcp("127.0.0.1", echo_server.port)
        await stream.write(b"x" * 3000)  # queued: the close sends it first (AT+QISEND)

        async def close(stream: Any = stream) -> None:
            await stream.close()

        cancel, _ = await cancelled_at(modem.channel, index, phase, close)
        # Whether or not the closer was cancelled, it returned only once the socket was gone.
        assert modem.sockets.table() == {}, (index, phase, cancel.commands)
        assert ids_at_the_module(sim) == set(), (index, phase, cancel.commands)
        if not cancel.fired:
            break
    assert echo_server.received > 0


async def test_a_second_close_waits_for_the_first(
    brought_up: tuple[SimulatorShell, QuectelModem], echo_server: EchoServer
) -> None:
    sim, modem = brought_up
    stream = await modem.open_tcp("127.0.0.1", echo_server.port)
    first = asyncio.create_task(stream.close())
    await asyncio.sleep(0)  # the first close has begun
    await stream.close()
    assert ids_at_the_module(sim) == set()  # not returned early
    await first


async def test_a_close_the_module_never_answered_is_repeated_before_the_next_open(
    echo_server: EchoServer,
) -> None:
    settings = fast(close_timeout=0)
    async with SimulatorShell() as sim, open_quectel(sim.path, settings=settings) as modem:
        await modem.bring_up()
        stream = await modem.open_tcp("127.0.0.1", echo_server.port)
        sim.set_muted(True)  # a hung module: the AT+QICLOSE goes unanswered
        await stream.close()
        assert modem.sockets.table() == {0: SocketState.UNCLOSED}
        assert ids_at_the_module(sim) == {0}  # the module still holds the connection
        sim.set_muted(False)
        sim.module.log.clear()
        again = await modem.open_tcp("127.0.0.1", echo_server.port)
        opens = [c for c in sim.module.log if c.startswith(("AT+QICLOSE", "AT+QIOPEN"))]
        assert opens[0] == "AT+QICLOSE=0,0" and opens[-1].startswith("AT+QIOPEN=1,0,")
        assert again.connect_id == 0 and modem.sockets.table() == {0: SocketState.OPEN}
        assert sim.module.most_sockets_held == 1  # never the old one beside the new one
        await again.close()


async def test_a_module_restart_frees_every_id_without_a_qiclose(
    brought_up: tuple[SimulatorShell, QuectelModem], echo_server: EchoServer
) -> None:
    sim, modem = brought_up
    streams = [await modem.open_tcp("127.0.0.1", echo_server.port) for _ in range(3)]
    sim.module.profile.boot_time = 0.2
    sim.reboot()
    async with asyncio.timeout(10):
        with pytest.raises(ModuleRebooted):
            await streams[0].read()
    assert modem.sockets.table() == {}
    await sim.wait_until_booted()
    sim.module.log.clear()
    for stream in streams:
        await stream.close()
    assert not [c for c in sim.module.log if c.startswith("AT+QICLOSE")]
    await modem.bring_up()
    await assert_lowest_id_free(modem, sim, echo_server.port)


async def test_with_no_id_free_the_module_is_asked_which_it_really_holds(
    brought_up: tuple[SimulatorShell, QuectelModem], echo_server: EchoServer
) -> None:
    sim, modem = brought_up
    old = [await modem.open_tcp("127.0.0.1", echo_server.port) for _ in range(12)]
    # Behind the driver's back the context goes down and up: the module drops every socket
    # (§2.3) and says nothing about it.
    await modem.channel.command("AT+QIDEACT=1")
    await modem.channel.command("AT+QIACT=1")
    new = await modem.open_tcp("127.0.0.1", echo_server.port)
    assert new.connect_id == 0
    assert "AT+QISTATE?" in sim.module.log
    with pytest.raises(StreamBroken, match="the module dropped it"):
        await old[0].read()
    for stream in old:
        await stream.close()  # none of them closes the new socket 0
    await new.write(b"still mine")
    async with asyncio.timeout(10):
        assert await new.read() == b"still mine"
    assert modem.sockets.table() == {0: SocketState.OPEN}
    await new.close()


async def test_twelve_live_streams_and_a_thirteenth_is_a_driver_fault(
    brought_up: tuple[SimulatorShell, QuectelModem], echo_server: EchoServer
) -> None:
    _sim, modem = brought_up
    streams = [await modem.open_tcp("127.0.0.1", echo_server.port) for _ in range(12)]
    with pytest.raises(SocketsExhausted, match="all 12 module sockets are held by this driver"):
        await modem.open_tcp("127.0.0.1", echo_server.port)
    await streams[11].write(b"fine")
    async with asyncio.timeout(10):
        assert await streams[11].read() == b"fine"
    for stream in streams:
        await stream.close()


# -- the PDP context -------------------------------------------------------------------------


async def test_a_bring_up_cancelled_at_any_point_leaves_one_context_and_no_socket(
    echo_server: EchoServer,
) -> None:
    async with SimulatorShell() as sim, open_quectel(sim.path, settings=FAST) as modem:
        for index, phase in points():
            cancel, info = await cancelled_at(modem.channel, index, phase, modem.bring_up)
            await settled(modem)
            await modem.bring_up()  # the next one finds the context and uses it
            active = [c for c in sim.module.contexts.values() if c.active]
            assert len(active) == 1, (index, phase)
            await assert_lowest_id_free(modem, sim, echo_server.port)
            if not cancel.fired:
                assert info is not None
                break


# -- file handles and the HTTP client --------------------------------------------------------


def assert_module_http_clean(sim: SimulatorShell) -> None:
    storage = sim.module.storage
    assert storage.handles == {}, "a file handle was left open"
    assert not sim.module.http_busy, "the HTTP client was left waiting for a server"
    leftovers = [k for k in storage.files if k.rpartition(":")[2].startswith("cp")]
    assert leftovers == [], f"scratch files left: {leftovers}"


TRANSFERS: dict[str, Callable[[Any, FileServer, Path], Awaitable[Any]]] = {
    "download in pieces": lambda http, server, tmp: http.fetch(
        server.url("/fw.bin"), tmp / "fw.bin"
    ),
    "small upload": lambda http, server, _tmp: http.upload(
        server.url("/up"), "d.tar.gz", b"d" * 1000
    ),
    "upload through a module file": lambda http, server, _tmp: http.upload(
        server.url("/up"), "d.tar.gz", b"d" * 6000
    ),
}


@pytest.mark.parametrize("transfer", TRANSFERS)
async def test_a_transfer_cancelled_at_any_point_gives_everything_back(
    transfer: str, tmp_path: Path
) -> None:
    settings = HttpSettings(piece_size=4 * KIB, chunk=2 * KIB, direct_post_max=4 * KIB)
    with FileServer() as server:
        server.files["/fw.bin"] = bytes(range(256)) * 24  # two pieces
        async with SimulatorShell() as sim, open_quectel(sim.path, settings=FAST) as modem:
            await modem.bring_up()
            http = modem.http(settings)
            run = TRANSFERS[transfer]
            for index, phase in points():
                (tmp_path / "fw.bin").unlink(missing_ok=True)
                cancel, _ = await cancelled_at(
                    modem.channel, index, phase, lambda: run(http, server, tmp_path)
                )
                await settled(modem)
                assert_module_http_clean(sim)
                await run(http, server, tmp_path)  # and the next transfer just works
                assert_module_http_clean(sim)
                if not cancel.fired:
                    break
            # Every command of the transfer was a cancellation point.
            assert index == len(cancel.commands) + 1 > 4


async def test_a_failed_transfer_frees_the_module_http_client(tmp_path: Path) -> None:
    with FileServer() as server:
        async with SimulatorShell() as sim, open_quectel(sim.path, settings=FAST) as modem:
            await modem.bring_up()
            http = modem.http(HttpSettings(piece_size=4 * KIB))
            with pytest.raises(TransferError):
                await http.fetch(server.url("/missing.bin"), tmp_path / "x.bin")
            assert_module_http_clean(sim)
            assert "AT+QHTTPSTOP" in sim.module.log
