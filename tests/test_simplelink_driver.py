"""The SimpleLink driver against the simulated CC3220: driver ⇄ real pty ⇄ SimpleLink simulator
⇄ real TCP/TLS servers on 127.0.0.1. Joining Wi-Fi the three ways, bytes through SEC and TCP
sockets byte for byte, an idle line that costs one Select per timeout, every fault ending in
the exception the daemon acts on, and no socket descriptor left behind."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import email.utils
import math
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EchoServer, until
from tests.pki import Pki, make_pki
from transport.errors import (
    ModuleRebooted,
    NetworkLost,
    PeerClosed,
    ServerRefused,
    StreamBroken,
    StreamClosed,
    TlsHandshakeFailed,
    UnsupportedLocation,
    WlanError,
)
from transport.link import RecoveryStep
from transport.modems.simplelink import SimpleLinkLink, SimpleLinkModem, open_simplelink
from transport.modems.simplelink_settings import SimpleLinkSettings
from transport.modems.simplelink_sockets import SimpleLinkStream, SocketState
from transport.simulator import SimulatorShell
from transport.simulator.simplelink import SimpleLinkModule
from transport.simulator.simplelink_core import AccessPoint, Nwp, WifiProfile
from transport.tls import TlsSettings

KEY = "charge-point-wifi"  # the simulated access point's passphrase
FAST = SimpleLinkSettings(
    ssid="SiteNet",
    key=KEY,
    join_timeout=3.0,
    command_timeout=3.0,
    sync_timeout=6.0,
    connect_timeout=15.0,
)
NASTY = b"\r\nOK\r\n\x00+recv:0,1,4,AAAA\r\nERROR:process command,-111\r\n>\x1a\x1b" * 40


def fast(**changes: Any) -> SimpleLinkSettings:
    return dataclasses.replace(FAST, **changes)


def module(**access_point: Any) -> SimpleLinkModule:
    return SimpleLinkModule(WifiProfile(access_point=AccessPoint(**access_point)))


@dataclass
class Rig:
    sim: SimulatorShell[SimpleLinkModule]
    module: SimpleLinkModule
    modem: SimpleLinkModem

    def commands(self, name: str) -> list[str]:
        return [line for line in self.module.log if line.lower().startswith(name.lower())]


@contextlib.asynccontextmanager
async def rig(
    settings: SimpleLinkSettings = FAST,
    sim_module: SimpleLinkModule | None = None,
    *,
    up: bool = True,
    **shell: Any,
) -> AsyncIterator[Rig]:
    sim_module = sim_module or module()
    async with (
        SimulatorShell(sim_module, **shell) as sim,
        open_simplelink(sim.path, shell.get("baud") or 115200, settings) as modem,
    ):
        if up:
            await modem.bring_up()
        yield Rig(sim, sim_module, modem)


async def round_trip(stream: SimpleLinkStream, payload: bytes, write_size: int) -> bytes:
    received = bytearray()

    async def write() -> None:
        for i in range(0, len(payload), write_size):
            await stream.write(payload[i : i + write_size])

    async def read() -> None:
        while len(received) < len(payload):
            received.extend(await stream.read())

    async with asyncio.timeout(120), asyncio.TaskGroup() as tasks:
        tasks.create_task(write())
        tasks.create_task(read())
    return bytes(received)


# --- bring-up ---------------------------------------------------------------------------------


async def test_bring_up_joins_and_reports_identity_and_health() -> None:
    async with rig(up=False) as r:
        info = await r.modem.bring_up()
        assert info.identity.manufacturer == "Texas Instruments"
        assert info.identity.model == "CC3235SF"  # chip id 0x31100019
        assert "3.7.0.1" in info.identity.revision
        assert info.identity.mac == "d4:36:39:5a:3c:11"
        assert info.identity.imei == "" and info.identity.iccid is None
        health = info.health
        assert (health.ssid, health.bssid, health.rssi_dbm) == ("SiteNet", "a0:b1:c2:d3:e4:f5", -52)
        assert health.ip_address == "192.168.50.23" and health.gateway == "192.168.50.1"
        # From a known state: the NWP restarted, station mode, then the join.
        order = [c.split("=")[0].lower() for c in r.module.log]
        assert order.index("at+stop") < order.index("at+start") < order.index("at+wlanconnect")
        assert r.modem.channel.stats.noise_lines == 0


async def test_the_wifi_key_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    async with rig() as r:
        assert any(KEY in line for line in r.commands("AT+WlanConnect"))
    assert KEY not in caplog.text
    assert "AT+WlanConnect=SiteNet,,WPA_WPA2,***" in caplog.text


async def test_a_wrong_wpa_key_is_named() -> None:
    async with rig(fast(key="not-the-right-key"), up=False) as r:
        with pytest.raises(WlanError, match="wrong Wi-Fi key"):
            await r.modem.bring_up()


async def test_refused_802_1x_credentials_are_named() -> None:
    settings = fast(
        ssid="Corp",
        security="wpa_ent",
        key="wrong",
        user="chargepoint",
        eap_method="PEAP0_MSCHAPv2",
    )
    async with rig(settings, module(ssid="Corp", security="WPA_ENT", key="right"), up=False) as r:
        with pytest.raises(WlanError, match=r"802\.1X credentials refused"):
            await r.modem.bring_up()


async def test_an_access_point_out_of_range_times_out_with_its_name() -> None:
    async with rig(fast(ssid="Elsewhere", join_timeout=0.5), up=False) as r:
        with pytest.raises(WlanError, match="no access point named 'Elsewhere' answered"):
            await r.modem.bring_up()


async def test_profile_provisioning_stores_once_and_the_module_rejoins_by_itself(
    echo_server: EchoServer,
) -> None:
    settings = fast(provisioning="profile")
    sim_module = module()
    async with rig(settings, sim_module) as r:
        assert len(r.commands("AT+WlanProfileAdd")) == 1
        assert r.commands("AT+WlanConnect") == []
        link_stream = await r.modem.open_tcp("127.0.0.1", echo_server.port)
        r.sim.set_coverage(False)
        with pytest.raises(NetworkLost):
            await asyncio.wait_for(link_stream.read(), 10)
        await link_stream.close()
        r.sim.set_coverage(True)
        await r.modem.ensure_link()  # the NWP's own reconnect, nothing sent to join
        assert r.commands("AT+WlanConnect") == []
        stream = await r.modem.open_tcp("127.0.0.1", echo_server.port)
        assert await round_trip(stream, b"back", 4) == b"back"
        await stream.close()
    # A second bring-up with the same network rewrites nothing in the module's flash.
    stored = len(r.commands("AT+WlanProfileAdd"))
    async with rig(settings, sim_module) as r:
        assert len(r.commands("AT+WlanProfileAdd")) == stored


async def test_stored_provisioning_writes_nothing_and_says_when_nothing_is_stored() -> None:
    async with rig(fast(provisioning="stored", join_timeout=0.5), up=False) as r:
        with pytest.raises(WlanError, match="no stored Wi-Fi profile"):
            await r.modem.bring_up()
        assert r.commands("AT+WlanProfileAdd") == r.commands("AT+WlanConnect") == []


# --- bytes ------------------------------------------------------------------------------------


async def test_binary_that_looks_like_at_traffic_round_trips(echo_server: EchoServer) -> None:
    async with rig() as r:
        stream = await r.modem.open_tcp("127.0.0.1", echo_server.port)
        assert await round_trip(stream, NASTY, 1000) == NASTY
        await stream.close()
        assert r.modem.channel.stats.noise_lines == 0


@pytest.mark.parametrize("size", [256 * 1024, pytest.param(1024 * 1024, marks=pytest.mark.slow)])
async def test_large_transfers_both_ways_are_byte_exact(echo_server: EchoServer, size: int) -> None:
    async with rig() as r:
        stream = await r.modem.open_tcp("127.0.0.1", echo_server.port)
        payload = os.urandom(size)
        assert await round_trip(stream, payload, 4096) == payload
        assert stream.bytes_sent == stream.bytes_received == size
        await stream.close()


async def test_an_idle_line_costs_one_select_per_timeout(echo_server: EchoServer) -> None:
    settings = fast(select_min=0.02, select_max=0.25)
    async with rig(settings) as r:
        stream = await r.modem.open_tcp("127.0.0.1", echo_server.port)
        stats = r.modem.channel.stats
        before = stats.commands
        await asyncio.sleep(1.0)  # the quantity measured: an idle second
        spent = stats.commands - before
        ramp = math.ceil(math.log2(settings.select_max / settings.select_min))
        # One Select per timeout once it has grown to select_max; the steps up to it; one
        # more for the boundaries of the second. A loop that spins would send hundreds.
        assert spent <= math.ceil(1.0 / settings.select_max) + ramp + 2
        assert await round_trip(stream, b"still there", 11) == b"still there"
        await stream.close()


async def test_an_open_costs_three_commands_and_sets_a_receive_timeout(
    echo_server: EchoServer,
) -> None:
    async with rig(fast(recv_timeout=2.5)) as r:
        before = len(r.module.log)
        stream = await r.modem.open_tcp("127.0.0.1", echo_server.port)
        opening = [c for c in r.module.log[before:] if not c.startswith("AT+Select")]
        assert opening == [
            "AT+Socket=INET,STREAM,TCP",
            "AT+SetSockOpt=0,SOCKET,RCVTIMEO,2,500000",  # the safety net: one more command
            f"AT+Connect=0,INET,{echo_server.port},127.0.0.1",
        ]
        await stream.close()


async def test_a_stray_recv_on_an_empty_socket_ends_at_rcvtimeo_as_nothing_yet(
    echo_server: EchoServer,
) -> None:
    async with rig(fast(recv_timeout=0.3)) as r:
        stream = await r.modem.open_tcp("127.0.0.1", echo_server.port)
        await r.modem.sockets._receive(stream)  # as if a Select had said "readable": -11
        assert r.modem.sockets.table() == {0: SocketState.OPEN}
        assert await round_trip(stream, b"still fine", 10) == b"still fine"
        await stream.close()


async def test_select_wakes_when_data_comes_not_at_its_timeout(echo_server: EchoServer) -> None:
    # With a 60 s Select, data that only arrived at the timeout would stall this test.
    async with rig(fast(select_min=0.02, select_max=60.0, command_timeout=3.0)) as r:
        stream = await r.modem.open_tcp("127.0.0.1", echo_server.port)
        await until(lambda: r.modem.sockets.selects >= 8, "the Select timeout grows")
        await until(lambda: bool(echo_server.writers), "the server sees the connection")
        echo_server.writers[-1].write(b"unsolicited")
        async with asyncio.timeout(10):
            assert await stream.read() == b"unsolicited"
        await stream.close()


async def test_peer_close_comes_after_all_its_data(echo_server: EchoServer) -> None:
    async with rig() as r:
        stream = await r.modem.open_tcp("127.0.0.1", echo_server.port)
        await until(lambda: bool(echo_server.writers), "the server sees the connection")
        server = echo_server.writers[-1]
        server.write(b"last words" * 500)
        await server.drain()
        server.close()
        received = bytearray()
        with pytest.raises(PeerClosed):
            async with asyncio.timeout(10):
                while True:
                    received += await stream.read()
        assert received == b"last words" * 500
        with pytest.raises(StreamClosed):
            await stream.write(b"too late")
        await stream.close()
        assert r.modem.sockets.table() == {}


# --- faults -----------------------------------------------------------------------------------


async def test_wifi_loss_fails_streams_with_network_lost_and_the_link_comes_back(
    echo_server: EchoServer,
) -> None:
    async with SimulatorShell(module()) as sim:
        link = SimpleLinkLink(sim.path, 115200, FAST)
        try:
            stream = await link.open("127.0.0.1", echo_server.port, tls=None)
            assert link.description == "TI CC3235SF on " + sim.path + ", Wi-Fi SiteNet"
            sim.set_coverage(False)
            with pytest.raises(NetworkLost, match="SiteNet"):
                await asyncio.wait_for(stream.read(), 10)
            await stream.close()
            sim.set_coverage(True)
            again = await link.open("127.0.0.1", echo_server.port, tls=None)
            assert await round_trip(again, b"hello again", 5) == b"hello again"
            await again.close()
            await link.recover(RecoveryStep.REACTIVATE_PDP)
            third = await link.open("127.0.0.1", echo_server.port, tls=None)
            await third.close()
            assert link.identity is not None and link.identity.mac is not None
        finally:
            await link.close()
        assert sim.module.sockets == {}


async def test_ip_loss_fails_streams_and_dhcp_brings_the_address_back(
    echo_server: EchoServer,
) -> None:
    async with rig() as r:
        stream = await r.modem.open_tcp("127.0.0.1", echo_server.port)
        r.sim.deactivate_pdp()
        with pytest.raises(NetworkLost):
            await asyncio.wait_for(stream.read(), 10)
        await stream.close()
        await r.modem.ensure_link()  # still associated: DHCP renews by itself
        assert r.commands("AT+WlanConnect")[1:] == []
        again = await r.modem.open_tcp("127.0.0.1", echo_server.port)
        await again.close()


async def test_a_fatal_error_ends_streams_and_the_nwp_is_restarted(echo_server: EchoServer) -> None:
    async with rig() as r:
        stream = await r.modem.open_tcp("127.0.0.1", echo_server.port)
        r.sim.fatal_error()
        with pytest.raises(ModuleRebooted):
            await asyncio.wait_for(stream.read(), 10)
        await stream.close()
        assert r.modem.needs_restart
        stops = len(r.commands("AT+Stop"))
        await r.modem.ensure_link()
        assert len(r.commands("AT+Stop")) == stops + 1
        again = await r.modem.open_tcp("127.0.0.1", echo_server.port)
        assert await round_trip(again, b"alive", 5) == b"alive"
        await again.close()
        assert r.modem.reboots == 1


async def test_a_silent_chip_reset_is_seen_by_its_unknown_sockets(echo_server: EchoServer) -> None:
    async with rig() as r:
        stream = await r.modem.open_tcp("127.0.0.1", echo_server.port)
        r.sim.reboot()
        with pytest.raises(ModuleRebooted):
            await asyncio.wait_for(stream.read(), 15)
        await stream.close()
        await r.modem.ensure_link()
        again = await r.modem.open_tcp("127.0.0.1", echo_server.port)
        assert await round_trip(again, b"alive", 5) == b"alive"
        await again.close()


async def test_a_descriptor_given_out_again_means_the_chip_reset(echo_server: EchoServer) -> None:
    # A stream whose receive buffer is full is not in the pump's Select, so nothing shows the
    # silent reset before the next AT+Socket hands out that stream's descriptor again.
    async with rig(fast(rx_high_water=1)) as r:
        stream = await r.modem.open_tcp("127.0.0.1", echo_server.port)
        await stream.write(b"echo me")
        await until(lambda: stream.bytes_received > 0, "the echo is received")
        selects = r.modem.sockets.selects
        r.sim.reboot()
        await until(lambda: r.module.nwp is Nwp.RUNNING, "the simulated NWP runs again")
        with pytest.raises(ModuleRebooted, match="socket 0 again"):
            await r.modem.open_tcp("127.0.0.1", echo_server.port)
        assert r.modem.sockets.selects == selects  # the reuse showed it, not a Select's -9
        assert r.modem.needs_restart and r.modem.reboots == 1
        assert r.module.sockets == {}  # the new descriptor was closed at once
        assert r.commands("AT+Connect")[1:] == []  # no AT+Connect on a module that reset
        received = await stream.read()
        with pytest.raises(ModuleRebooted):
            while True:
                received += await asyncio.wait_for(stream.read(), 5)
        assert received == b"echo me"
        await stream.close()
        stops = len(r.commands("AT+Stop"))
        await r.modem.ensure_link()  # what the link does before its next open
        assert len(r.commands("AT+Stop")) == stops + 1  # the NWP restarted
        again = await r.modem.open_tcp("127.0.0.1", echo_server.port)
        assert await round_trip(again, b"alive", 5) == b"alive"
        await again.close()


async def test_a_sender_that_dies_fails_its_stream_and_the_pump_rests(
    echo_server: EchoServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with rig() as r:
        stream = await r.modem.open_tcp("127.0.0.1", echo_server.port)

        async def broken(chunk: bytes) -> None:
            raise ValueError("a bug in the sender")

        monkeypatch.setattr(stream, "_send", broken)
        await stream.write(b"never sent")
        with pytest.raises(StreamBroken, match="the sender failed: a bug in the sender"):
            await asyncio.wait_for(stream.read(), 5)
        with pytest.raises(StreamBroken):
            await stream.write(b"again")
        assert "the sender failed" in caplog.text
        selects = r.modem.sockets.selects
        await asyncio.sleep(0.5)  # a stream that looked "sending" forever: zero-timeout Selects
        assert r.modem.sockets.selects - selects <= 2  # a count: a spinning pump sends hundreds
        await stream.close()
        assert r.modem.sockets.table() == {} and r.module.sockets == {}


async def test_a_send_held_to_the_modules_limit_is_not_an_at_timeout(
    echo_server: EchoServer,
) -> None:
    # The module holds AT+Send's answer up to send_timeout (then its own -110), a little
    # later than nominal here: the driver's AT timeout must not race it.
    async with rig(fast(send_timeout=1.0, command_timeout=2.0)) as r:
        stream = await r.modem.open_tcp("127.0.0.1", echo_server.port)
        r.sim.delay_next_send_result(1.3)
        assert await round_trip(stream, b"held, not lost", 14) == b"held, not lost"
        assert r.modem.channel.stats.noise_lines == 0
        await stream.close()


async def test_dropping_the_channel_ends_the_readers_of_open_streams(
    echo_server: EchoServer,
) -> None:
    async with SimulatorShell(module()) as sim:
        link = SimpleLinkLink(sim.path, 115200, FAST)
        try:
            stream = await link.open("127.0.0.1", echo_server.port, tls=None)
            reading = asyncio.create_task(stream.read())
            await asyncio.sleep(0)  # the reader waits for data
            await link.close()  # what recover() does when the module stops answering
            with pytest.raises(StreamBroken, match="link to the module was closed"):
                await asyncio.wait_for(reading, 5)  # a hang guard: it ends at once
            with pytest.raises(StreamBroken):
                await stream.write(b"too late")
            await stream.close()
        finally:
            await link.close()


async def test_no_socket_descriptor_is_ever_left_behind(echo_server: EchoServer) -> None:
    refused_port = echo_server.port
    async with rig() as r:
        for _ in range(20):
            stream = await r.modem.open_tcp("127.0.0.1", echo_server.port)
            await stream.write(b"x")
            await stream.close()
            await stream.close()  # twice is safe
        closed = await r.modem.open_tcp("127.0.0.1", echo_server.port)
        await asyncio.gather(closed.close(), closed.close())  # concurrent closes wait for one
        await echo_server.stop()
        for _ in range(5):
            with pytest.raises(ServerRefused):
                await r.modem.open_tcp("127.0.0.1", refused_port)
        # Cancelled half-way through AT+Connect: the descriptor is still closed.
        opening = asyncio.create_task(r.modem.open_tcp("127.0.0.1", refused_port))
        await until(lambda: bool(r.commands("AT+Connect")), "AT+Connect sent")
        opening.cancel()
        with pytest.raises((asyncio.CancelledError, ServerRefused)):
            await opening
        assert r.modem.sockets.table() == {}
        assert r.module.sockets == {}
        assert len(r.commands("AT+Socket")) == len(r.commands("AT+Close"))


async def test_ftp_is_refused_with_a_sentence() -> None:
    link = SimpleLinkLink("/dev/null", 115200, FAST)
    with pytest.raises(UnsupportedLocation, match="no FTP client"):
        await link.ftp_client()


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@contextlib.asynccontextmanager
async def tls_echo(cert: Path, key: Path, client_ca: Path | None = None) -> AsyncIterator[int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def now() -> datetime:
    return datetime.now(UTC)


async def test_tls_to_a_real_server_by_name(pki: Pki) -> None:
    async with (
        tls_echo(pki.server.cert, pki.server.key) as port,
        rig(hosts={"csms.test": "127.0.0.1"}) as r,
    ):
        stream = await r.modem.open_tls("csms.test", port, TlsSettings(ca_file=pki.ca), now)
        assert await round_trip(stream, NASTY, 700) == NASTY
        await stream.close()
        assert r.commands("AT+NetAPPGetHostByName")
        assert "AT+SetSockOpt=0,SOCKET,SECURE_DOMAIN_NAME_VERIFICATION,csms.test" in [
            c for c in r.module.log if "SECURE_DOMAIN" in c
        ]
        assert "AT+SetSockOpt=0,SOCKET,RCVTIMEO,10,0" in r.commands("AT+SetSockOpt")
        # A second connection writes no certificate again.
        writes = len(r.commands("AT+FileWrite"))
        again = await r.modem.open_tls("csms.test", port, TlsSettings(ca_file=pki.ca), now)
        await again.close()
        assert len(r.commands("AT+FileWrite")) == writes


async def test_certificates_are_written_only_when_the_module_lacks_them(
    pki: Pki, tmp_path: Path
) -> None:
    sim_module = module()
    client = pki.client("CP-SL/2")
    mutual = TlsSettings(ca_file=pki.ca, client_cert=client.cert, client_key=client.key)
    async with tls_echo(pki.server.cert, pki.server.key, client_ca=pki.cpo_ca) as port:
        async with rig(FAST, sim_module) as r:
            await (await r.modem.open_tls("localhost", port, mutual, now)).close()
            written = len(r.commands("AT+FileWrite"))
            assert written >= 3  # CA, certificate, key
        # A restarted daemon reads the files back and writes nothing.
        async with rig(FAST, sim_module) as r:
            await (await r.modem.open_tls("localhost", port, mutual, now)).close()
            assert len(r.commands("AT+FileWrite")) == written
            assert r.commands("AT+FileRead")
        # A changed CA bundle is written again, and only it.
        bundle = tmp_path / "bundle.pem"
        bundle.write_bytes(pki.ca.read_bytes() + pki.untrusted_ca.read_bytes())
        changed = dataclasses.replace(mutual, ca_file=bundle)
        start = len(sim_module.log)
        async with rig(FAST, sim_module) as r:
            await (await r.modem.open_tls("localhost", port, changed, now)).close()
            creates = [c for c in sim_module.log[start:] if "CREATE" in c.upper()]
            assert len(creates) == 1 and "/cert/csms-ca.pem" in creates[0]


async def test_the_private_key_reaches_no_log(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    client = pki.client("CP-SL/3")
    mutual = TlsSettings(ca_file=pki.ca, client_cert=client.cert, client_key=client.key)
    key_lines = [ln for ln in client.key.read_text().splitlines() if "-----" not in ln]
    async with (
        tls_echo(pki.server.cert, pki.server.key, client_ca=pki.cpo_ca) as port,
        rig() as r,
    ):
        await (await r.modem.open_tls("localhost", port, mutual, now)).close()
        await r.modem.files.holds("/cert/client-key.pem", client.key.read_bytes(), secret=True)
    logged = caplog.text
    encoded = base64.b64encode(client.key.read_bytes()).decode()
    assert encoded[:64] not in logged and encoded[-64:] not in logged
    assert not any(line in logged for line in key_lines)


@pytest.mark.parametrize(
    ("server", "words"),
    [
        ("untrusted_server", "not signed by the configured CA"),
        ("wrong_host_server", "does not name csms.test"),
        ("expired_server", "certificate date"),
    ],
)
async def test_a_certificate_the_charge_point_must_refuse(
    pki: Pki, server: str, words: str
) -> None:
    files = getattr(pki, server)
    async with (
        tls_echo(files.cert, files.key) as port,
        rig(hosts={"csms.test": "127.0.0.1"}) as r,
    ):
        with pytest.raises(TlsHandshakeFailed, match=words):
            await r.modem.open_tls("csms.test", port, TlsSettings(ca_file=pki.ca), now)
        assert r.modem.sockets.table() == {}


async def test_the_module_clock_comes_from_the_csms_else_the_controller(pki: Pki) -> None:
    async with tls_echo(pki.expired_server.cert, pki.expired_server.key) as port, rig() as r:
        tls = TlsSettings(ca_file=pki.ca)
        # No CSMS time yet: the controller's clock dates the check, and the expired
        # certificate is refused (A00.FR.310): this server gives no Date to doubt it by.
        with pytest.raises(TlsHandshakeFailed, match="outside its validity dates"):
            await r.modem.open_tls("localhost", port, tls)
        assert r.commands("AT+Set=General,Time")
    # A controller clock that was never set either, and the module's reads 2013: the dates
    # cannot be checked, the connection is used, and the log says so.
    async with tls_echo(pki.expired_server.cert, pki.expired_server.key) as port, rig() as r:
        r.modem.tls.host_time = lambda: datetime(1970, 1, 1, tzinfo=UTC)
        stream = await r.modem.open_tls("localhost", port, tls)
        await stream.close()
        assert r.commands("AT+Set=General,Time") == []


@contextlib.asynccontextmanager
async def tls_csms(cert: Path, key: Path) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A TLS server that answers a HEAD request with its Date, as an HTTP server does, and
    echoes anything else; and the first bytes of each connection."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    firsts: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            data = await reader.read(65536)
            firsts.append(data)
            if data.startswith(b"HEAD "):
                date = email.utils.format_datetime(datetime.now(UTC), usegmt=True)
                writer.write(f"HTTP/1.1 426 Upgrade Required\r\nDate: {date}\r\n\r\n".encode())
            else:
                writer.write(data)
                while data := await reader.read(65536):
                    writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1], firsts
    finally:
        server.close()


async def test_a_wrong_controller_clock_is_corrected_by_the_csms_date(pki: Pki) -> None:
    """A controller clock that is plausible but wrong (a charger off for a season boots with
    its saved shutdown time) puts a freshly renewed CSMS certificate outside its dates, and
    Wi-Fi gives no other time: the CSMS's own Date header, over the connection the module
    kept up (CA and name verified), corrects the clock, and the connection is opened again
    with the dates checked. Nothing but the HEAD request went over the unchecked one."""
    async with (
        tls_csms(pki.recent_server.cert, pki.recent_server.key) as (port, firsts),
        rig() as r,
    ):
        tls = TlsSettings(ca_file=pki.ca)
        a_season_ago = datetime.now(UTC) - timedelta(days=120)  # before the renewal
        r.modem.tls.host_time = lambda: a_season_ago
        stream = await r.modem.open_tls("localhost", port, tls)
        assert await round_trip(stream, b"online", 6) == b"online"
        await stream.close()
        assert firsts[0].startswith(b"HEAD / HTTP/1.1\r\n") and firsts[1] == b"online"
        assert r.modem.tls.clock.trust.source == "the CSMS's Date header"
        # The next connection uses the correction at once: no question asked again.
        stream = await r.modem.open_tls("localhost", port, tls)
        await stream.close()
        assert len(firsts) == 3 and not firsts[2].startswith(b"HEAD")


async def test_an_expired_certificate_is_refused_when_the_csms_clock_agrees(pki: Pki) -> None:
    """The same question to a CSMS whose certificate really expired: its Date agrees with the
    controller's clock, so the certificate is refused (A00.FR.310) and nothing else was sent."""
    async with (
        tls_csms(pki.expired_server.cert, pki.expired_server.key) as (port, firsts),
        rig() as r,
    ):
        with pytest.raises(TlsHandshakeFailed, match="own clock agrees"):
            await r.modem.open_tls("localhost", port, TlsSettings(ca_file=pki.ca))
        assert [first[:5] for first in firsts] == [b"HEAD "]
        assert r.modem.sockets.table() == {}


async def test_mutual_tls_and_a_csms_that_wants_a_certificate(pki: Pki) -> None:
    client = pki.client("CP-SL/1")
    async with (
        tls_echo(pki.server.cert, pki.server.key, client_ca=pki.cpo_ca) as port,
        rig() as r,
    ):
        mutual = TlsSettings(ca_file=pki.ca, client_cert=client.cert, client_key=client.key)
        stream = await r.modem.open_tls("localhost", port, mutual, now)
        assert await round_trip(stream, b"profile 3", 9) == b"profile 3"
        await stream.close()
        with pytest.raises(TlsHandshakeFailed, match="client certificate"):
            await r.modem.open_tls("localhost", port, TlsSettings(ca_file=pki.ca), now)
        assert r.modem.sockets.table() == {}
