"""wss:// end to end: the daemon, the simulated module's TLS (Quectel AT+QSSL*, the Wi-Fi
module's SEC sockets) or the host's, and a real TLS CSMS with certificates made at test time
(security whitepaper §2, profiles 2 and 3; use case A05 for raising the profile;
A00.FR.309/310 for a certificate the charge point refuses)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chargepoint.app.daemon import Daemon
from chargepoint.app.reconnect import Blame
from tests.conftest import TcpProxy
from tests.harness import (
    FAMILIES,
    PASSWORD,
    STACKS,
    WIFI_FAST,
    LogWatch,
    Stack,
    csms_peer,
    fresh_state,
    make_config,
    module_link,
    network,
    running,
)
from tests.peers import Csms, ServerTls
from tests.pki import Pki, make_pki
from transport.simulator import ModuleProfile, QuectelModule

CP = "CP-TEST/1"


@dataclass(frozen=True)
class Wire:
    """What a family's module log shows of TLS: the commands each test looks for."""

    tls_open: str  # a TLS socket opened
    plain_open: str  # a plain TCP socket opened
    ca_upload: str  # the CSMS CA file written to the module
    key_upload: str  # the charge point's private key written to the module (profile 3)
    profile_2: tuple[str, ...]  # set-up of a profile 2 connection (parts of log lines)
    profile_3: tuple[str, ...]  # and what profile 3 adds
    refused: dict[str, str]  # the error's words for each refused CSMS certificate
    wants_client_certificate: str
    recovery: tuple[str, ...]  # commands that only a recovery step sends


WIRE = {
    "quectel": Wire(
        tls_open="AT+QSSLOPEN=1,2,",
        plain_open="AT+QIOPEN",
        ca_upload='AT+QFUPL="UFS:csms-ca.pem"',
        key_upload='AT+QFUPL="UFS:cp-key.pem"',
        profile_2=('AT+QSSLCFG="seclevel",2,1', 'AT+QSSLCFG="sslversion",2,3'),
        profile_3=('AT+QSSLCFG="seclevel",2,2', 'AT+QSSLCFG="clientkey",2,"UFS:cp-key.pem"'),
        # +QSSLOPEN: 566 does not say which side refused (at-protocol.md §3.2, §9.13).
        refused=dict.fromkeys(
            ("untrusted_server", "expired_server", "wrong_host_server"),
            "the module rejected the CSMS certificate",
        ),
        wants_client_certificate="the CSMS wants a client certificate (security profile 3)",
        recovery=("AT+QIDEACT", "AT+CFUN", "AT+QPOWD"),
    ),
    "simplelink": Wire(
        tls_open="AT+Socket=INET,STREAM,SEC",
        plain_open="AT+Socket=INET,STREAM,TCP",
        ca_upload="AT+FileOpen=/cert/csms-ca.pem,CREATE",
        key_upload="AT+FileOpen=/cert/client-key.pem,CREATE",
        profile_2=(
            ",SOCKET,SECMETHOD,TLSV1_2",
            ",SOCKET,SECURE_FILES_CA_FILE_NAME,/cert/csms-ca.pem",
            ",SOCKET,SECURE_DOMAIN_NAME_VERIFICATION,127.0.0.1",
        ),
        profile_3=(",SOCKET,SECURE_FILES_PRIVATE_KEY_FILE_NAME,/cert/client-key.pem",),
        # The SEC socket's error numbers say which check failed (SPEC §5).
        refused={
            "untrusted_server": "the CSMS certificate is not signed by the configured CA",
            "expired_server": "the CSMS certificate is outside its validity dates",
            "wrong_host_server": "the CSMS certificate does not name 127.0.0.1",
        },
        wants_client_certificate="it may want a client certificate (security profile 3)",
        recovery=("AT+WlanDisconnect",),
    ),
}


def module_recovery(log: list[str], family: str = "quectel") -> list[str]:
    """The recovery steps the module was put through. The Wi-Fi module's bring-up restarts
    its network processor (AT+Stop, AT+Start): one after the first socket is a recovery."""
    steps = [c for c in log if c.startswith(WIRE[family].recovery)]
    if family == "simplelink":
        first = next((i for i, c in enumerate(log) if c.startswith("AT+Socket=")), len(log))
        steps += [c for c in log[first:] if c.startswith("AT+Stop")]
    return steps


def in_log(log: list[str], part: str) -> bool:
    return any(part in command for command in log)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_config(url: str, pki: Pki, *, profile: int = 2, **csms: Any) -> Any:
    files: dict[str, Any] = {"ca_file": str(pki.ca)}
    if profile == 3:
        client = pki.client(CP)
        files |= {"client_certificate": str(client.cert), "client_key": str(client.key)}
    return make_config(url, security_profile=profile, **files, **csms)


def upgrade_config(url: str, url_3: str, pki: Pki, **csms: Any) -> Any:
    """Profile 2 at ``url``, with the charge point certificate in place for a raise to 3 at
    ``url_3``."""
    client = pki.client(CP)
    return make_config(
        url,
        security_profile=2,
        ca_file=str(pki.ca),
        client_certificate=str(client.cert),
        client_key=str(client.key),
        upgrade_urls={"3": url_3},
        **csms,
    )


def connects(peer: Csms) -> list[dict[str, Any]]:
    return [e for e in peer.events if e["event"] == "connect"]


def failed_handshakes(peer: Csms) -> int:
    return peer.count("tls_failed")


@contextlib.asynccontextmanager
async def proxied(port: int) -> AsyncIterator[TcpProxy]:
    """A TCP proxy recording what crosses between the simulated module and the CSMS."""
    proxy = TcpProxy(port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest.mark.parametrize("kind", STACKS, ids=str)
async def test_profile_2_through_the_module_carries_no_plaintext_on_the_network(
    kind: Stack, pki: Pki
) -> None:
    """TC_086_CS (server-side certificate, profile 2) and TC_085_CS (Basic auth header)."""
    tls = ServerTls(pki.server.cert, pki.server.key)
    wire = WIRE[kind.family]
    async with (
        csms_peer(kind, password=PASSWORD, tls=tls) as peer,
        proxied(peer.port) as proxy,
        network(kind.family) as net,
    ):
        assert net.sim is not None
        daemon = Daemon(tls_config(f"wss://127.0.0.1:{proxy.port}/ocpp", pki), net.link)
        async with running(daemon):
            await peer.wait_for(lambda _: peer.calls("BootNotification"))
            await peer.wait_for(lambda _: len(peer.calls("StatusNotification")) >= 3)
        (connect,) = connects(peer)
        assert (connect["identity"], connect["tls"], connect["basic_auth"]) == (CP, True, True)
        log = net.sim.module.log
        assert any(c.startswith(wire.tls_open) for c in log)
        assert not any(c.startswith(wire.plain_open) for c in log)  # no plain socket at all
        if kind.family == "quectel":  # nor a plain send: AT+QISENDEX has no TLS form (§2.9)
            assert not any(c.startswith("AT+QISEND") for c in log)
        assert any(c.startswith(wire.ca_upload) for c in log)
        assert all(in_log(log, part) for part in wire.profile_2)
        # What left the module for the network: TLS records only (the module encrypted).
        wire = bytes(proxy.from_client)
        assert wire[:1] == b"\x16"  # a TLS handshake record
        for plaintext in (b"GET /", b"ocpp1.6", b"Authorization", b"BootNotification", CP.encode()):
            assert plaintext not in wire


@pytest.mark.parametrize("kind", STACKS, ids=str)
async def test_profile_3_through_the_module_authenticates_with_the_certificate(
    kind: Stack, pki: Pki
) -> None:
    """TC_087_CS: the client certificate, and no Basic auth, under profile 3."""
    tls = ServerTls(pki.server.cert, pki.server.key, client_ca=pki.cpo_ca)
    wire = WIRE[kind.family]
    async with csms_peer(kind, tls=tls) as peer, network(kind.family) as net:
        assert net.sim is not None
        daemon = Daemon(tls_config(peer.url, pki, profile=3), net.link)
        async with running(daemon):
            await peer.wait_for(lambda _: peer.calls("BootNotification"))
        (connect,) = connects(peer)
        assert (connect["client_cn"], connect["basic_auth"]) == (CP, False)
        log = net.sim.module.log
        assert all(in_log(log, part) for part in wire.profile_3)
        assert any(c.startswith(wire.key_upload) for c in log)


@pytest.mark.parametrize("profile", [2, 3])
async def test_profiles_2_and_3_on_the_host_link(profile: int, pki: Pki) -> None:
    tls = ServerTls(pki.server.cert, pki.server.key, pki.cpo_ca if profile == 3 else None)
    async with csms_peer("python", password=PASSWORD, tls=tls) as peer, network("host") as net:
        daemon = Daemon(tls_config(peer.url, pki, profile=profile), net.link)
        async with running(daemon):
            await peer.wait_for(lambda _: peer.calls("BootNotification"))
        (connect,) = connects(peer)
        assert connect["tls"]
        assert connect["client_cn"] == (CP if profile == 3 else None)


@pytest.mark.parametrize("family", FAMILIES)
async def test_certificates_go_to_the_module_once_and_again_only_when_they_change(
    family: str, pki: Pki, tmp_path: Path
) -> None:
    tls = ServerTls(pki.server.cert, pki.server.key)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.ca.read_bytes())
    async with csms_peer("python", password=PASSWORD, tls=tls) as peer, network(family) as net:
        assert net.sim is not None
        state = fresh_state()
        for round_ in range(3):
            if round_ == 2:
                ca.write_bytes(pki.ca.read_bytes() + pki.untrusted_ca.read_bytes())  # a new bundle
            config = make_config(peer.url, state=state, security_profile=2, ca_file=str(ca))
            # A new link each run: what a restarted daemon has (its memory of what it wrote
            # is gone; the module's files are not).
            async with running(Daemon(config, module_link(family, net.sim.path))):
                await peer.wait_for(lambda _, n=round_: len(connects(peer)) > n)
        uploads = [c for c in net.sim.module.log if c.startswith(WIRE[family].ca_upload)]
        assert len(uploads) == 2  # the first run, and the changed bundle; not the second run
        if family == "quectel":
            assert uploads[1] == f'AT+QFUPL="UFS:csms-ca.pem",{ca.stat().st_size},20'


REFUSED = [
    ("untrusted_server", "unable to get local issuer certificate"),
    ("expired_server", "certificate has expired"),
    ("wrong_host_server", "mismatch"),
]


@pytest.mark.parametrize(("server", "reason"), REFUSED)
@pytest.mark.parametrize("link", [*FAMILIES, "host"])
async def test_a_csms_certificate_the_charge_point_must_refuse(
    link: str, server: str, reason: str, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    files = getattr(pki, server)
    async with (
        csms_peer("python", password=PASSWORD, tls=ServerTls(files.cert, files.key)) as peer,
        network(link) as net,
    ):
        daemon = Daemon(tls_config(peer.url, pki, reconnect_delay_max=0.1), net.link)
        with LogWatch("cannot reach the CSMS securely", count=4) as refused:
            async with running(daemon), asyncio.timeout(60):
                # Refused, retried, refused again...: no crash, no WebSocket.
                await refused.seen.wait()
        assert connects(peer) == []  # A00.FR.310: no WebSocket over a refused certificate
        assert all(o.blame is Blame.CSMS for o in daemon.outcomes)
        # Security events (whitepaper §8), once for the whole outage, not once per attempt;
        # the Quectel module does not say which side refused (+QSSLOPEN 566): none there.
        told = [json.loads(line)["type"] for line in daemon.security_log.lines()]
        refusals = [t for t in told if t != "StartupOfTheDevice"]
        if link == "quectel":
            assert refusals == []
        else:
            assert refusals == [
                "InvalidCentralSystemCertificate",
                "CentralSystemFailedToAuthenticate",
            ]
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        if link == "host":
            assert any(reason in e for e in errors), errors
        else:
            assert net.sim is not None
            words = WIRE[link].refused[server]
            assert any("TLS with 127.0.0.1:" in e and words in e for e in errors), errors
            assert module_recovery(net.sim.module.log, link) == []


@pytest.mark.parametrize("family", FAMILIES)
async def test_profile_2_against_a_csms_that_wants_a_client_certificate(
    family: str, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    tls = ServerTls(pki.server.cert, pki.server.key, client_ca=pki.cpo_ca)
    async with csms_peer("python", tls=tls) as peer, network(family) as net:
        daemon = Daemon(tls_config(peer.url, pki, reconnect_delay_max=0.1), net.link)
        with LogWatch("cannot reach the CSMS securely", count=3) as refused:
            async with running(daemon), asyncio.timeout(60):
                await refused.seen.wait()
        assert connects(peer) == []
        words = WIRE[family].wants_client_certificate
        assert any(words in r.getMessage() for r in caplog.records)


async def change_profile(peer: Csms, value: str) -> str:
    reply = await peer.call("ChangeConfiguration", {"key": "SecurityProfile", "value": value})
    return str(reply["status"])


async def security_profile(peer: Csms) -> str:
    reply = await peer.call("GetConfiguration", {"key": ["SecurityProfile"]})
    return str(reply["configurationKey"][0]["value"])


@pytest.mark.parametrize("link", [*FAMILIES, "host"])
async def test_the_csms_raises_the_profile_from_2_to_3(link: str, pki: Pki) -> None:
    """TC_083_CS (upgrade: Accepted, then the charge point reconnects by itself with the new
    profile) and TC_084_CS (a lower profile: Rejected)."""
    two = ServerTls(pki.server.cert, pki.server.key)
    three = ServerTls(pki.server.cert, pki.server.key, client_ca=pki.cpo_ca)
    async with (
        csms_peer("python", password=PASSWORD, tls=two) as old,
        csms_peer("python", tls=three) as new,
        network(link) as net,
    ):
        config = upgrade_config(old.url, new.url, pki)
        async with running(Daemon(config, net.link)):
            await old.wait_for(lambda _: old.calls("BootNotification"))
            assert await change_profile(old, "2") == "Rejected"  # A05.FR.01: not higher
            assert await change_profile(old, "1") == "Rejected"  # never lowered (A00.FR.005)
            assert await security_profile(old) == "2"
            assert await change_profile(old, "3") == "Accepted"  # A05.FR.05
            await new.wait_for(lambda _: connects(new))  # A05.FR.06/07
            assert await security_profile(new) == "3"
        (connect,) = connects(new)
        assert connect["client_cn"] == CP
        assert len(connects(old)) == 1  # it went to the new endpoint, not back
        assert connect["basic_auth"] is False  # profile 3: the certificate authenticates
        # A05.FR.06: the ChangeConfiguration.conf went out before the connection was closed.
        answered = next(
            i
            for i, e in enumerate(old.events)
            if e["event"] == "frame"
            and not e["outbound"]
            and '"Accepted"' in e["text"]
            and e["text"].startswith("[3,")
        )
        closed = next(i for i, e in enumerate(old.events) if e["event"] == "close")
        assert answered < closed


@pytest.mark.parametrize("link", [*FAMILIES, "host"])
async def test_a_raised_profile_the_csms_cannot_take_falls_back(
    link: str, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """A05.FR.08. On the host link TLS 1.3 refuses the certificate after the handshake, so
    the failure shows as the connection closing during the WebSocket upgrade: it counts too."""
    two = ServerTls(pki.server.cert, pki.server.key)
    # The new endpoint trusts another CA than the one that signed our certificate.
    three = ServerTls(pki.server.cert, pki.server.key, client_ca=pki.untrusted_ca)
    async with (
        csms_peer("python", password=PASSWORD, tls=two) as old,
        csms_peer("python", tls=three) as new,
        network(link) as net,
    ):
        config = upgrade_config(
            old.url,
            new.url,
            pki,
            upgrade_attempts=2,
            reconnect_delay_max=0.1,
        )
        async with running(Daemon(config, net.link)):
            await old.wait_for(lambda _: old.calls("BootNotification"))
            assert await change_profile(old, "3") == "Accepted"
            await old.wait_for(lambda _: len(connects(old)) == 2, timeout=60)  # A05.FR.08
            assert await security_profile(old) == "2"
        assert connects(new) == []
        assert any("back to profile 2" in r.getMessage() for r in caplog.records)
        if net.sim is not None:
            assert module_recovery(net.sim.module.log, link) == []


@pytest.mark.parametrize("family", FAMILIES)
async def test_no_secret_reaches_a_log_the_frame_trace_or_get_configuration(
    family: str, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """TC_073_CS with the tool's key ("OCA_OCTT_admin_test" hex-encoded, 19 bytes): Accepted,
    then a reconnect with the new password; then profile 3, so the private key goes to the
    module. Whitepaper A01.FR.12: neither ever shows, at any log level, in the frame trace, in
    GetConfiguration or in `ctl status`."""
    caplog.set_level(logging.DEBUG)
    new_key = "4F43415F4F4354545F61646D696E5F74657374"
    two = ServerTls(pki.server.cert, pki.server.key)
    three = ServerTls(pki.server.cert, pki.server.key, client_ca=pki.cpo_ca)
    async with (
        csms_peer("python", password=PASSWORD, tls=two) as peer,
        csms_peer("python", tls=three) as mutual,
        network(family) as net,
    ):
        assert net.sim is not None
        config = upgrade_config(peer.url, mutual.url, pki)
        daemon = Daemon(config, net.link)
        async with running(daemon):
            await peer.wait_for(lambda _: len(peer.calls("StatusNotification")) >= 3)
            reply = await peer.call(
                "ChangeConfiguration", {"key": "AuthorizationKey", "value": new_key}
            )
            assert reply["status"] == "Accepted"
            peer.password = bytes.fromhex(new_key)  # type: ignore[union-attr]
            await peer.wait_for(lambda _: len(connects(peer)) == 2)  # A01: reconnected with it
            everything = await peer.call("GetConfiguration", {})
            asked = await peer.call("GetConfiguration", {"key": ["AuthorizationKey"]})
            assert await change_profile(peer, "3") == "Accepted"
            await mutual.wait_for(lambda _: connects(mutual))
            status = json.dumps(daemon._describe())
        trace = (config.storage_directory / "ocpp-frames.jsonl").read_text()
        assert any(c.startswith(WIRE[family].key_upload) for c in net.sim.module.log)
    assert config.csms.client_key is not None
    key_pem = config.csms.client_key.read_text()
    body = [line for line in key_pem.splitlines() if line and not line.startswith("-----")]
    headers = [
        base64.b64encode(CP.encode() + b":" + password).decode()
        for password in (bytes.fromhex(new_key), PASSWORD)
    ]
    # The key as a module's file commands may carry it: base64 of the PEM, whole or in the
    # pieces of a file write, any 64 characters of it.
    raw = key_pem.encode()
    encodings = [base64.b64encode(raw).decode()]
    encodings += [base64.b64encode(raw[i : i + 1024]).decode() for i in range(0, len(raw), 1024)]
    pieces = [text[i : i + 64] for text in encodings for i in range(0, len(text) - 64, 64)]
    secrets = [
        *(new_key, new_key.lower(), PASSWORD.hex(), PASSWORD.hex().upper()),
        *(*headers, *body, *pieces),
        WIFI_FAST.key,  # the Wi-Fi passphrase the SimpleLink link stores on the module
    ]
    formatter = logging.Formatter()
    logged = "\n".join(  # tracebacks too; not the test CSMS's own server log
        formatter.format(record)
        for record in caplog.records
        if not record.name.startswith("websockets.server")
    )
    for secret in secrets:
        assert secret not in logged
        assert secret not in trace
        assert secret not in json.dumps(everything)
        assert secret not in status
    assert "AuthorizationKey" not in json.dumps(everything)
    assert asked.get("unknownKey") == ["AuthorizationKey"]


async def test_a_module_clock_nobody_set_is_set_from_the_csms(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """No network time (NITZ) on this cell: the first connection cannot check certificate
    dates and says so; the CSMS's currentTime then sets the module clock, and the next
    connection checks them (at-protocol.md §9.13)."""
    tls = ServerTls(pki.server.cert, pki.server.key)
    module = QuectelModule(ModuleProfile(nitz=False))
    async with (
        csms_peer("python", password=PASSWORD, tls=tls) as peer,
        network("quectel", module=module) as net,
    ):
        assert net.sim is not None
        daemon = Daemon(tls_config(peer.url, pki), net.link)
        async with running(daemon):
            await peer.wait_for(lambda _: len(peer.calls("StatusNotification")) >= 3)
            await peer.close_connection(1012, "restarting")
            await peer.wait_for(lambda _: len(connects(peer)) == 2)
        log = net.sim.module.log
        assert 'AT+QSSLCFG="ignorelocaltime",2,1' in log  # first: dates not checkable
        clock_set = next(i for i, c in enumerate(log) if c.startswith('AT+CCLK="'))
        assert 'AT+QSSLCFG="ignorelocaltime",2,0' in log[clock_set:]  # then checked
        assert any("module clock is not set" in r.getMessage() for r in caplog.records)
        assert any(
            "module clock set from the CSMS's time" in r.getMessage() for r in caplog.records
        )
