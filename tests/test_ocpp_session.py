"""The charge point against two real CSMS implementations, over the simulated module and over
host TCP: OCPP 1.6 §4.2 (boot), §4.6 (heartbeat), errata §3.22 (status after boot), OCPP-J 1.6
§3 (connection), §4.2.3 (CallErrors), §5.4 (reconnecting)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from ocpp.v16.enums import DataTransferStatus

from chargepoint.daemon import Blame, Daemon
from chargepoint.data_transfer import DataTransferReply, DataTransferVendors
from config.loader import Config, parse_config
from tests.conftest import FAST, TcpProxy, fast
from tests.peers import Csms, CsmsCallError, NodeCsms, PythonCsms
from transport.link import Link
from transport.modems.host import HostLink
from transport.modems.quectel import QuectelLink
from transport.simulator import SimulatorShell

PASSWORD = bytes.fromhex("00112233445566778899aabbccddeeff00112233")


def make_config(url: str, *, password: bytes | None = PASSWORD, **csms: Any) -> Config:
    settings = {
        "call_timeout": 5,
        "ping_interval": 0,
        "pong_timeout": 1,
        "reconnect_delay_min": 0.05,
        "reconnect_delay_max": 0.2,
        **csms,
    }
    lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in settings.items())
    secret = f'password = "{password.hex()}"\npassword_format = "hex"' if password else ""
    return parse_config(
        f"""
[charge_point]
id = "CP-TEST/1"
vendor = "TestVendor"
model = "TestModel"
serial_number = "SN-42"
connectors = 2

[csms]
url = "{url}"
{secret}
{lines}

[modem]
type = "host"
"""
    )


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


PEERS = ["python", "node"]
LINKS = ["host", "quectel"]


@pytest.mark.parametrize("link_kind", LINKS)
@pytest.mark.parametrize("peer_kind", PEERS)
async def test_boot_accepted_then_status_then_heartbeats(peer_kind: str, link_kind: str) -> None:
    async with (
        csms_peer(peer_kind, password=PASSWORD, boots="Accepted:1") as peer,
        network(link_kind) as net,
    ):
        daemon = Daemon(make_config(peer.url), net.link)
        async with running(daemon):
            await peer.wait_for(lambda _: len(peer.calls("Heartbeat")) >= 2)
        connect = next(e for e in peer.events if e["event"] == "connect")
        assert connect["identity"] == "CP-TEST%2F1" if peer_kind == "python" else "CP-TEST/1"
        assert connect["protocol"] == "ocpp1.6"
        boot = peer.calls("BootNotification")
        assert len(boot) == 1
        params = boot[0]["params"]
        assert (params["chargePointVendor"], params["chargePointModel"]) == (
            "TestVendor",
            "TestModel",
        )
        assert params["chargePointSerialNumber"] == "SN-42"
        assert params["firmwareVersion"] == "0.1.0"
        if link_kind == "quectel":
            assert (params["iccid"], params["imsi"]) == ("89860025128306012474", "460023210226023")
        else:
            assert "iccid" not in params and "imsi" not in params
        assert statuses(peer) == [
            (0, "Available", "NoError"),
            (1, "Available", "NoError"),
            (2, "Available", "NoError"),
        ]
        # Nothing but BootNotification before the boot was accepted, status before heartbeats.
        methods = [c["method"] for c in peer.calls()]
        assert methods[:4] == [
            "BootNotification",
            "StatusNotification",
            "StatusNotification",
            "StatusNotification",
        ]
        assert strict_failures(peer) == []
        assert daemon.registration.heartbeat_interval == 1
