"""Building blocks for tests that run the whole charge point: configuration files, CSMS peers,
the network in between (host TCP or the simulated Quectel module) and a running daemon."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from chargepoint.daemon import Daemon
from chargepoint.simulated_charger import SimulatedCharger
from chargepoint.station import Station
from chargepoint.storage import open_state
from config.loader import Config, parse_config
from config.ocpp_keys import ConfigurationKeys, core_keys
from tests.conftest import FAST
from tests.peers import Csms, NodeCsms, PythonCsms
from transport.link import Link
from transport.modems.host import HostLink
from transport.modems.quectel import QuectelLink
from transport.simulator import SimulatorShell

PASSWORD = bytes.fromhex("00112233445566778899aabbccddeeff00112233")

_STATE_ROOT = Path(tempfile.mkdtemp(prefix="chargepoint-tests-"))
atexit.register(shutil.rmtree, _STATE_ROOT, ignore_errors=True)


def fresh_state() -> Path:
    """A new, empty state directory (removed when the test run ends)."""
    return Path(tempfile.mkdtemp(dir=_STATE_ROOT))


def make_config(
    url: str,
    *,
    password: bytes | None = PASSWORD,
    state: Path | None = None,
    keys: dict[str, Any] | None = None,
    charge_point: dict[str, Any] | None = None,
    charger: dict[str, Any] | None = None,
    connectors: int = 2,
    **csms: Any,
) -> Config:
    settings = {
        "call_timeout": 5,
        "ping_interval": 0,
        "pong_timeout": 1,
        "reconnect_delay_min": 0.05,
        "reconnect_delay_max": 0.2,
        **csms,
    }
    secret = f'password = "{password.hex()}"\npassword_format = "hex"' if password else ""
    return parse_config(
        f"""
[charge_point]
id = "CP-TEST/1"
vendor = "TestVendor"
model = "TestModel"
serial_number = "SN-42"
connectors = {connectors}
{_table(charge_point or {})}

[csms]
url = "{url}"
{secret}
{_table(settings)}

[modem]
type = "host"

[charger]
{_table(charger or {})}

[storage]
directory = "{state or fresh_state()}"

[ocpp_keys]
{_table(keys or {})}
"""
    )


def _table(values: dict[str, Any]) -> str:
    return "\n".join(f"{key} = {json.dumps(value)}" for key, value in values.items())


@contextlib.asynccontextmanager
async def csms_peer(kind: str, **options: Any) -> AsyncIterator[Csms]:
    peer: Csms = PythonCsms(**options) if kind == "python" else NodeCsms(**options)
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()


@dataclass
class Network:
    """How the charge point reaches 127.0.0.1: straight, or through the simulated module."""

    link: Link
    sim: SimulatorShell | None


@contextlib.asynccontextmanager
async def network(kind: str, **sim_options: Any) -> AsyncIterator[Network]:
    if kind == "host":
        yield Network(HostLink(connect_timeout=5), None)
        return
    async with SimulatorShell(**sim_options) as sim:
        link = QuectelLink(sim.path, 115200, FAST)
        yield Network(link, sim)


@contextlib.asynccontextmanager
async def running(daemon: Daemon) -> AsyncIterator[Daemon]:
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        yield daemon
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task


def statuses(peer: Csms) -> list[tuple[int, str, str]]:
    return [
        (c["params"]["connectorId"], c["params"]["status"], c["params"]["errorCode"])
        for c in peer.calls("StatusNotification")
    ]


def strict_failures(peer: Csms) -> list[Any]:
    """What ocpp-rpc in strict mode found wrong with our messages (always empty for Python)."""
    return [e for e in peer.events if e["event"] in ("invalid", "bad_message")]


def make_station(connectors: int = 2, **keys: str) -> Station:
    """A station on a simulated charger with a fresh state database (scheduler not started)."""
    db = open_state(fresh_state())
    charger = SimulatedCharger(connectors, db)
    specs = core_keys(
        connectors=connectors,
        measurands=charger.measurands,
        heartbeat_interval=300,
        ping_interval=0,
        authorization_key=None,
    )
    configuration = ConfigurationKeys(db, specs)
    for name, value in keys.items():
        configuration.store(name, value)
    return Station(
        charger=charger,
        keys=configuration,
        db=db,
        scheduler=AsyncIOScheduler(timezone=UTC),
    )


class NoSession:
    """Session hooks for a charge point tested on its own: work is run as plain tasks."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self.tasks.append(asyncio.create_task(work, name=name))

    async def boot(self) -> None:
        pass

    async def heartbeat(self) -> None:
        pass

    async def reconnect(self, why: str) -> None:
        pass
