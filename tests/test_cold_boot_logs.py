"""A clean cold boot logs nothing at WARNING or above.

An operator filters the journal on warnings (``journalctl -u chargepoint -p warning``): what a
healthy charge point says on every power-on must not be there. The module sleeping through the
first ``AT`` while it boots is INFO; a probe out of attempts, or a module that answered before
and falls silent, stays WARNING. A ``+QIURC: "closed"`` for a socket an earlier run of the
daemon left at the module is DEBUG. Third-party libraries speak below WARNING only at debug.

Nothing here sleeps for time: the simulated module's boot ends the moment the driver logs its
first unanswered probe, and every wait is on a condition (a log record, a CSMS event).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

import pytest

from chargepoint.logs import LIBRARIES, configure_logging
from tests.conftest import FAST, EchoServer
from tests.harness import rig
from transport.at import AtChannel, AtParser
from transport.errors import ModemNotResponding
from transport.modems.quectel import open_quectel
from transport.simulator import SimulatorShell
from transport.simulator.quectel import ModuleProfile, QuectelModule

STILL_BOOTING = 3600.0  # seconds: the module never finishes booting on its own during a test
SILENCE = "no answer to AT"


class Watch(logging.Handler):
    """Collects the records matching ``wanted``; ``then`` runs at the first one, synchronously,
    inside the logging call (so before the code that logged it goes on)."""

    def __init__(
        self,
        wanted: Callable[[logging.LogRecord], bool],
        then: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(logging.DEBUG)
        self.wanted = wanted
        self.then = then
        self.records: list[logging.LogRecord] = []
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if not self.wanted(record):
            return
        self.records.append(record)
        if not self.seen.is_set():
            self.seen.set()
            if self.then is not None:
                self.then()


@pytest.fixture
def watch() -> Iterator[Callable[..., Watch]]:
    root = logging.getLogger()
    added: list[Watch] = []

    def make(
        wanted: Callable[[logging.LogRecord], bool], then: Callable[[], None] | None = None
    ) -> Watch:
        handler = Watch(wanted, then)
        root.addHandler(handler)
        added.append(handler)
        return handler

    yield make
    for handler in added:
        root.removeHandler(handler)


def warnings_in(records: list[logging.LogRecord]) -> list[str]:
    return [
        f"{r.levelname} {r.name}: {r.getMessage()}" for r in records if r.levelno >= logging.WARNING
    ]


def silence(record: logging.LogRecord) -> bool:
    return record.name == "transport.at" and SILENCE in record.getMessage()


# -- the cold boot ---------------------------------------------------------------------------


async def test_a_cold_boot_logs_nothing_at_warning_or_above(
    caplog: pytest.LogCaptureFixture, watch: Callable[..., Watch]
) -> None:
    # Power-on: the module boots, deaf to the host, while the daemon starts and probes it.
    module = QuectelModule(ModuleProfile(boot_time=STILL_BOOTING))

    def boot_completes() -> None:
        # The module has slept through the first AT: it finishes booting now (RDY and the boot
        # URCs), before the driver writes its next probe, which it then hears and answers.
        now = asyncio.get_running_loop().time()
        module.profile.boot_time = 0.0
        module.power_on(now)
        module.tick(now)

    first_silence = watch(silence, then=boot_completes)
    async with rig("python", sim_options={"module": module}) as r:
        # The rig is up once BootNotification was accepted and every connector reported.
        warnings = warnings_in(caplog.records)
        assert r.station.online
        reported = {(p["connectorId"], p["status"]) for p in r.calls("StatusNotification")}
        assert reported == {(0, "Available"), (1, "Available"), (2, "Available")}
    assert warnings == []
    # The module did sleep through the first AT, and that was said at INFO.
    said = f"probe 1/3: {SILENCE} on {r.sim.path} yet (the module may still be starting)"
    assert [(rec.levelno, rec.getMessage()) for rec in first_silence.records[:1]] == [
        (logging.INFO, said)
    ]
    assert any(
        rec.name == "transport.modems.quectel" and "booted (RDY)" in rec.getMessage()
        for rec in caplog.records
    )


async def test_closed_for_a_socket_an_earlier_run_left_is_debug(
    echo_server: EchoServer, caplog: pytest.LogCaptureFixture, watch: Callable[..., Watch]
) -> None:
    async with SimulatorShell() as sim:
        # The earlier run of the daemon: a connection on socket 5, and then the daemon is gone
        # (its serial port closed) without AT+QICLOSE. The module keeps the socket.
        async with open_quectel(sim.path, settings=FAST) as earlier:
            await earlier.bring_up()
            stream = await earlier.open_tcp("127.0.0.1", echo_server.port, connect_id=5)
        await stream.close()  # stops the stream's tasks; nothing reaches the module
        assert 5 in sim.module.sockets

        caplog.clear()
        # What the driver makes of it (transport.at traces every URC at DEBUG besides).
        closed = watch(
            lambda rec: rec.name != "transport.at" and '+QIURC: "closed",5' in rec.getMessage()
        )
        async with open_quectel(sim.path, settings=FAST) as modem:
            sim.drop_connection(5)  # the network ends the earlier run's connection
            async with asyncio.timeout(30):
                await closed.seen.wait()
            await modem.bring_up()  # and closes what the module still holds for that run
            assert modem.sockets.table() == {}
        assert 5 not in sim.module.sockets
    assert [(rec.levelno, rec.name) for rec in closed.records] == [
        (logging.DEBUG, "transport.modems.quectel_sockets")
    ]
    assert warnings_in(caplog.records) == []


# -- the AT engine's probe: which silence is expected ----------------------------------------


class QuietPort:
    """A serial port whose module answers every command with OK, or says nothing at all."""

    name = "ttyQUIET"
    baudrate = 115200

    def __init__(self) -> None:
        self.answering = False
        self._on_data: Callable[[bytes], None] | None = None

    def start(self, on_data: Callable[[bytes], None], on_lost: Callable[[Exception], None]) -> None:
        self._on_data = on_data

    def write(self, data: bytes) -> None:
        if self.answering and self._on_data is not None:
            asyncio.get_running_loop().call_soon(self._on_data, b"\r\nOK\r\n")

    def close(self) -> None:
        pass


def quiet_channel(port: QuietPort, attempts: int = 3) -> AtChannel:
    # A short probe timeout: a port that never answers times out however loaded the machine.
    channel = AtChannel(
        port, AtParser(), default_timeout=0.05, probe_attempts=attempts, probe_timeout=0.05
    )
    channel.start()
    return channel


def probe_levels(records: list[logging.LogRecord]) -> list[str]:
    return [rec.levelname for rec in records if silence(rec)]


async def test_only_the_first_silence_at_bring_up_is_info(caplog: pytest.LogCaptureFixture) -> None:
    channel = quiet_channel(QuietPort())
    with pytest.raises(ModemNotResponding):
        await channel.probe()
    # Attempt 1 may be a booting module; attempts 2 and 3 are not, and the last one has no
    # retry left.
    assert probe_levels(caplog.records) == ["INFO", "WARNING", "WARNING"]
    caplog.clear()
    with pytest.raises(ModemNotResponding):
        await channel.probe()
    assert probe_levels(caplog.records) == ["WARNING", "WARNING", "WARNING"]


async def test_a_probe_with_no_retry_left_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    channel = quiet_channel(QuietPort(), attempts=1)
    with pytest.raises(ModemNotResponding):
        await channel.probe()
    assert probe_levels(caplog.records) == ["WARNING"]


async def test_a_module_that_answered_and_falls_silent_is_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = QuietPort()
    channel = quiet_channel(port)
    port.answering = True
    await channel.probe()
    port.answering = False  # hung, later in life
    with pytest.raises(ModemNotResponding):
        await channel.probe()
    assert probe_levels(caplog.records) == ["WARNING", "WARNING", "WARNING"]


# -- third-party loggers ---------------------------------------------------------------------


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in LIBRARIES}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, library_level in levels.items():
        logging.getLogger(name).setLevel(library_level)


THIRD_PARTY = ("tzlocal", "apscheduler", "apscheduler.scheduler", "ocpp", "websockets")


@pytest.mark.usefixtures("restored_logging")
@pytest.mark.parametrize("level", ["info", "warning"])
def test_third_party_loggers_stay_at_warning_without_debug(level: str) -> None:
    configure_logging(level)
    for name in THIRD_PARTY:
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING, name
    assert logging.getLogger("transport.at").getEffectiveLevel() == getattr(logging, level.upper())


@pytest.mark.usefixtures("restored_logging")
def test_third_party_loggers_follow_error_when_it_is_higher() -> None:
    configure_logging("error")
    for name in THIRD_PARTY:
        assert logging.getLogger(name).getEffectiveLevel() == logging.ERROR, name


@pytest.mark.usefixtures("restored_logging")
def test_third_party_loggers_say_everything_at_debug() -> None:
    configure_logging("info")
    configure_logging("debug")  # what was set for info does not stay behind
    for name in THIRD_PARTY:
        assert logging.getLogger(name).getEffectiveLevel() == logging.DEBUG, name
