"""Building blocks for tests that run the whole charge point: configuration files, CSMS peers,
the network in between (host TCP or a simulated module of either family) and a running daemon."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import json
import logging
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from chargepoint.app.daemon import Daemon
from chargepoint.hardware.charger import MEASURANDS
from chargepoint.hardware.simulated import SimulatedCharger
from chargepoint.station import Station
from chargepoint.storage import open_state
from config.loader import Config, FirmwareConfig, parse_config
from config.ocpp_keys import ConfigurationKeys, core_keys
from tests.conftest import FAST, TcpProxy
from tests.peers import Csms, NodeCsms, PythonCsms, ServerTls
from transport.link import Link
from transport.modems.host import HostLink
from transport.modems.quectel import QuectelLink
from transport.modems.quectel_http import HttpSettings
from transport.modems.quectel_settings import QuectelSettings
from transport.modems.simplelink import SimpleLinkLink
from transport.modems.simplelink_settings import SimpleLinkSettings
from transport.simulator import SimulatorShell
from transport.simulator.families import simulated

PASSWORD = bytes.fromhex("00112233445566778899aabbccddeeff00112233")

FAMILIES = ("quectel", "simplelink")

# The simulated site network (transport.simulator.simplelink_core.AccessPoint's defaults),
# stored on the module as a profile as a charger maker would, with the time limits scaled
# down like FAST's: what is tested is the behaviour, not the numbers.
WIFI_FAST = SimpleLinkSettings(
    ssid="SiteNet",
    security="wpa_wpa2",
    key="charge-point-wifi",
    provisioning="profile",
    join_timeout=5.0,
    command_timeout=2.0,
    sync_timeout=6.0,
    dns_timeout=3.0,
    connect_timeout=5.0,
    close_flush_timeout=1.0,
)


@dataclass(frozen=True, slots=True)
class Stack:
    """What a charge point test runs against: a CSMS peer and the family of the simulated
    module in between."""

    peer: str  # "python" (the ocpp library) or "node" (ocpp-rpc, strict)
    family: str = "quectel"

    def __str__(self) -> str:
        return f"{self.peer}-{self.family}"


# Each OCTT case runs on both CSMS peers and both module families, paired: every case sees
# each CSMS and each module once, in two runs rather than four.
STACKS = (Stack("python", "quectel"), Stack("node", "simplelink"))


def _stack(kind: str | Stack) -> Stack:
    return kind if isinstance(kind, Stack) else Stack(kind)


def module_link(family: str, path: str, config: Config | None = None, modem: Any = None) -> Link:
    """The daemon's link to a simulated module of ``family`` on ``path`` (test time limits)."""
    fw = config.firmware if config is not None else FirmwareConfig()
    if family == "quectel":
        http = HttpSettings(ca_file=fw.ca_file, piece_size=fw.piece_size, chunk=fw.chunk_size)
        cellular = modem if isinstance(modem, QuectelSettings) else FAST
        return QuectelLink(path, 115200, cellular, http)
    if family == "simplelink":
        wifi = modem if isinstance(modem, SimpleLinkSettings) else WIFI_FAST
        settings = dataclasses.replace(wifi, files_ca_file=fw.ca_file, piece_size=fw.piece_size)
        return SimpleLinkLink(path, 115200, settings)
    raise ValueError(f"no link for module family {family!r}")


def module_shell(family: str = "quectel", **sim_options: Any) -> SimulatorShell:
    """A simulated module of ``family`` on a pty (not started); ``module=`` gives one made by
    the test."""
    module = sim_options.pop("module", None) or simulated(family).module()
    return SimulatorShell(module, **sim_options)


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
    firmware: dict[str, Any] | None = None,
    diagnostics: dict[str, Any] | None = None,
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
    if password and url.startswith("ws://"):
        settings.setdefault("security_profile", 1)  # Basic auth over ws://, said explicitly
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

[firmware]
{_table(firmware or {})}

[diagnostics]
{_table(diagnostics or {})}

[storage]
directory = "{state or fresh_state()}"

[ocpp_keys]
{_table(keys or {})}
"""
    )


def _table(values: dict[str, Any]) -> str:
    return "\n".join(f"{key} = {_toml(value)}" for key, value in values.items())


def _toml(value: Any) -> str:
    if isinstance(value, dict):  # an inline table
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Path):
        return json.dumps(str(value))
    return json.dumps(value)


@contextlib.asynccontextmanager
async def csms_peer(kind: str | Stack, **options: Any) -> AsyncIterator[Csms]:
    peer: Csms = PythonCsms(**options) if _stack(kind).peer == "python" else NodeCsms(**options)
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
    async with module_shell(kind, **sim_options) as sim:
        yield Network(module_link(kind, sim.path), sim)


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


def keys_on(db: sqlite3.Connection, connectors: int = 2, **stored: str) -> ConfigurationKeys:
    """The Core keys on ``db`` for a simulated charger, with ``stored`` set as by the CSMS."""
    specs = core_keys(
        connectors=connectors,
        measurands=MEASURANDS,
        heartbeat_interval=300,
        ping_interval=60,
        authorization_key=None,
    )
    keys = ConfigurationKeys(db, specs)
    for name, value in stored.items():
        keys.store(name, value)
    return keys


def reported_after_boot(events: list[dict[str, Any]], count: int, connectors: int) -> bool:
    """BootNotification number ``count`` came, and a status for every connector after it."""
    calls = [e for e in events if e["event"] == "call"]
    boots = [i for i, c in enumerate(calls) if c["method"] == "BootNotification"]
    if len(boots) < count:
        return False
    after = calls[boots[count - 1] :]
    numbers = {c["params"]["connectorId"] for c in after if c["method"] == "StatusNotification"}
    return numbers == set(range(connectors + 1))


class LogWatch(logging.Handler):
    """``seen`` is set once ``count`` records starting with ``start`` (and holding every one
    of ``contains``) are logged. Enter it before the action that logs, so the record cannot
    come before the watch."""

    def __init__(self, start: str, count: int = 1, contains: tuple[str, ...] = ()) -> None:
        super().__init__(logging.DEBUG)
        self.start = start
        self.count = count
        self.contains = contains
        self.matched = 0
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(self.start) and all(part in message for part in self.contains):
            self.matched += 1
            if self.matched >= self.count:
                self.seen.set()

    def __enter__(self) -> LogWatch:
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *_: object) -> None:
        logging.getLogger().removeHandler(self)


def make_station(connectors: int = 2, **keys: str) -> Station:
    """A station on a simulated charger with a fresh state database (scheduler not started)."""
    db = open_state(fresh_state())
    return Station(
        charger=SimulatedCharger(connectors, db),
        keys=keys_on(db, connectors, **keys),
        db=db,
        scheduler=AsyncIOScheduler(timezone=UTC),
    )


class Rig:
    """A charge point on a simulated module, a CSMS peer, and a proxy in between that can cut
    the CSMS off (a coverage hole) while the module itself stays up."""

    def __init__(
        self,
        peer: Csms,
        sim: SimulatorShell,
        proxy: TcpProxy,
        config: Config,
        modem: QuectelSettings = FAST,
        family: str = "quectel",
    ) -> None:
        self.peer = peer
        self.sim = sim
        self.proxy = proxy
        self.config = config
        self.modem = modem
        self.family = family
        self.daemon = self._new_daemon()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _new_daemon(self) -> Daemon:
        link = module_link(self.family, self.sim.path, self.config, self.modem)
        return Daemon(self.config, link)

    @property
    def charger(self) -> SimulatedCharger:
        charger = self.daemon.charger
        assert isinstance(charger, SimulatedCharger)
        return charger

    @property
    def station(self) -> Station:
        return self.daemon.station

    def start(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.daemon.run(self._stop))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            async with asyncio.timeout(30):
                await self._task
            self._task = None

    async def restart(self) -> None:
        """Power off and on: the process ends without stopping anything; state stays on disk."""
        await self.stop()
        self.daemon = self._new_daemon()
        self.start()

    async def wait_stopped(self) -> None:
        """Wait for the daemon to end by itself (after a Reset)."""
        assert self._task is not None
        async with asyncio.timeout(30):
            await self._task
        self._task = None

    # -- what the CSMS saw --

    def calls(self, method: str) -> list[dict[str, Any]]:
        return [c["params"] for c in self.peer.calls(method)]

    async def wait_calls(self, method: str, count: int = 1, timeout: float = 30) -> list[Any]:
        await self.peer.wait_for(lambda _: len(self.calls(method)) >= count, timeout)
        return self.calls(method)

    async def wait_status(self, connector: int, status: str, timeout: float = 30) -> dict[str, Any]:
        """The first StatusNotification of ``connector`` with ``status`` not seen before."""

        def found(_: Any) -> Any:
            for params in self.calls("StatusNotification"):
                if params["connectorId"] == connector and params["status"] == status:
                    return params
            return None

        result: dict[str, Any] = await self.peer.wait_for(found, timeout)
        return result

    def csms_transaction_ids(self) -> list[int]:
        """The transactionIds the CSMS gave out, in order (from its StartTransaction.conf)."""
        ids = []
        for event in self.peer.events:
            if event["event"] == "frame" and event["outbound"]:
                frame = json.loads(event["text"])
                if frame[0] == 3 and isinstance(frame[2], dict) and "transactionId" in frame[2]:
                    ids.append(frame[2]["transactionId"])
        return ids

    def status_sequence(self, connector: int) -> list[str]:
        return [
            p["status"] for p in self.calls("StatusNotification") if p["connectorId"] == connector
        ]

    async def booted(self, count: int = 1) -> None:
        """Wait for BootNotification number ``count``, the status reports after it, and the
        security events queued until then (StartupOfTheDevice): what a test does next then
        never interleaves with the boot's own messages."""
        connectors = self.config.charge_point.connectors
        await self.peer.wait_for(lambda events: reported_after_boot(events, count, connectors))
        outbox = self.station.outbox

        def told() -> bool:
            return not any(i.action == "SecurityEventNotification" for i in outbox.pending())

        async with asyncio.timeout(30):
            await self.station.wait_until(told)

    # -- the coverage hole --

    def offline(self) -> None:
        self.proxy.refusing = True
        self.proxy.drop_all()

    def online(self) -> None:
        self.proxy.refusing = False

    async def wait_offline(self) -> None:
        async with asyncio.timeout(30):
            await self.station.wait_until(lambda: not self.station.online)

    async def wait_online(self) -> None:
        async with asyncio.timeout(60):
            await self.station.wait_until(lambda: self.station.online)

    # -- charging --

    async def charging(self, connector: int = 1, id_tag: str = "TAG-1") -> int:
        """Plug in, present ``id_tag``: a running transaction; returns its transactionId."""
        before = len(self.calls("StartTransaction"))
        self.charger.plug(connector)
        self.charger.present(id_tag, connector)
        await self.wait_calls("StartTransaction", before + 1)
        tx = await self.transaction_id(connector)
        return tx

    async def transaction_id(self, connector: int) -> int:
        state = self.station.transactions.connectors[connector - 1]

        def known() -> bool:
            return state.transaction is not None and state.transaction.transaction_id is not None

        async with asyncio.timeout(30):
            await self.station.wait_until(known)
        assert state.transaction is not None and state.transaction.transaction_id is not None
        return state.transaction.transaction_id


@contextlib.asynccontextmanager
async def rig(
    peer_kind: str | Stack,
    *,
    keys: dict[str, Any] | None = None,
    boots: str = "Accepted:300",
    connectors: int = 2,
    sim_options: dict[str, Any] | None = None,
    modem: QuectelSettings = FAST,
    tls: ServerTls | None = None,
    **config: Any,
) -> AsyncIterator[Rig]:
    """A booted charge point (statuses reported) against ``peer_kind`` (a peer name, or a
    :class:`Stack` that also names the module family). ``tls``: the CSMS serves wss:// (give
    the charge point's side in ``config``: security_profile, ca_file, client_certificate...)."""
    stack = _stack(peer_kind)
    scheme = "wss" if tls is not None else "ws"
    async with csms_peer(stack, password=PASSWORD, boots=boots, tls=tls) as peer:
        proxy = TcpProxy(peer.port)
        await proxy.start()
        try:
            async with module_shell(stack.family, **(sim_options or {})) as sim:
                settings = make_config(
                    f"{scheme}://127.0.0.1:{proxy.port}/ocpp",
                    keys={"MeterValueSampleInterval": 0, **(keys or {})},
                    connectors=connectors,
                    **config,
                )
                the_rig = Rig(peer, sim, proxy, settings, modem, stack.family)
                the_rig.start()
                try:
                    if boots.startswith("Accepted"):
                        await the_rig.booted()
                    yield the_rig
                finally:
                    await the_rig.stop()
        finally:
            await proxy.stop()


# -- the daemon and the simulator as separate processes, as an operator runs them --

CHARGEPOINT = Path(sys.executable).parent / "chargepoint"


@contextlib.asynccontextmanager
async def simulator_process(
    link: Path, *options: str, family: str = "quectel"
) -> AsyncIterator[Path]:
    """``python -m transport.simulator <family> --link LINK``, up once it says so."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "transport.simulator",
        family,
        "--link",
        str(link),
        *options,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        await process.stdout.readline()  # the module is up
        yield link
    finally:
        process.terminate()
        await process.wait()


async def chargepoint(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run the ``chargepoint`` command; its exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        str(CHARGEPOINT),
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate(stdin)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
