"""Shared pieces for tests that run the real stack: driver ⇄ pty ⇄ simulator ⇄ TCP ⇄ server."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import settings

from transport.modems.quectel import QuectelModem, open_quectel
from transport.modems.quectel_settings import QuectelSettings
from transport.simulator import SimulatorShell

# A CI runner that is itself a systemd service passes its NOTIFY_SOCKET down: the daemons these
# tests start must not tell the runner's service manager that they are ready or alive.
for _variable in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
    os.environ.pop(_variable, None)

# Property tests: `make test` runs a bounded, reproducible search (the same examples on every
# run, so a red CI is a real regression); `make fuzz` searches far longer with fresh examples.
# New property tests leave max_examples to these profiles.
settings.register_profile("ci", max_examples=150, derandomize=True, deadline=None, database=None)
settings.register_profile("fuzz", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The manual's time limits (150 s for QIACT, 90 s for registration...) scaled down so a
# failing case fails in seconds; what is tested is the behaviour, not the numbers.
FAST = QuectelSettings(
    apn="internet",
    command_timeout=2.0,
    sync_timeout=6.0,
    sim_timeout=3.0,
    registration_timeout=2.0,
    registration_poll=0.1,
    pdp_activate_timeout=3.0,
    pdp_deactivate_timeout=3.0,
    pdp_attempts=2,
    open_timeout=5.0,
    close_timeout=1,
    reboot_timeout=5.0,
    send_stall_timeout=10.0,
    send_retry_delay=0.002,
    idle_poll_interval=1.0,
)


def fast(**changes: object) -> QuectelSettings:
    return dataclasses.replace(FAST, **changes)  # type: ignore[arg-type]


class EchoServer:
    """A real TCP echo server on 127.0.0.1; it can also close its connections on demand."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.received = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            while data := await reader.read(65536):
                self.received += len(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()


async def until(condition: Callable[[], bool], what: str = "", limit: float = 10.0) -> None:
    """Wait for a state the simulator or the driver reaches on its own (a hang guard, not a
    duration)."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 (the simulator's state has no event to await)
            await asyncio.sleep(0.01)


@pytest.fixture
async def echo_server() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorShell]:
    async with SimulatorShell() as shell:
        yield shell


@pytest.fixture
async def modem(sim: SimulatorShell) -> AsyncIterator[QuectelModem]:
    async with open_quectel(sim.path, settings=FAST) as driver:
        await driver.bring_up()
        yield driver


class TcpProxy:
    """A real TCP proxy on 127.0.0.1 between a client and ``target``.

    It records what the client sent, and can stall (forward nothing either way while keeping
    both connections open: a silent half-open link) or drop every connection.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.server: asyncio.Server | None = None
        self.from_client = bytearray()
        self.stalled = False  # every connection, new ones too
        self.refusing = False  # new connections are closed at once: the CSMS is unreachable
        self._silenced: set[int] = set()  # connections stalled by stall_existing()
        self._deafened: set[int] = set()  # connections whose answers vanish (deafen_existing)
        self.stall_after: bytes | None = None  # the server's bytes that silence their connection
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        number = self.connections
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, number, record=True)),
            asyncio.create_task(self._pump(up_reader, writer, number, record=False)),
        ]
        self._tasks.update(pumps)
        await asyncio.gather(*pumps, return_exceptions=True)
        self._tasks.difference_update(pumps)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        number: int,
        *,
        record: bool,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if self.stalled or number in self._silenced:
                    continue  # the bytes vanish, as on a dead radio link
                if not record and number in self._deafened:
                    continue  # requests get through, answers are lost
                if record:
                    self.from_client += data
                writer.write(data)
                await writer.drain()
                if not record and self.stall_after is not None and self.stall_after in data:
                    self._silenced.add(number)  # delivered; from now on the link is dead
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def stall_existing(self) -> None:
        """The connections open now go silent for good; new ones work."""
        self._silenced.update(range(1, self.connections + 1))

    def deafen_existing(self) -> None:
        """The connections open now lose everything the server sends; new ones work."""
        self._deafened.update(range(1, self.connections + 1))

    def drop_all(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        self.drop_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.server.wait_closed()
