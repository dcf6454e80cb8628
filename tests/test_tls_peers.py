"""The test CSMSs over TLS: security profiles 2 and 3 of the OCPP 1.6 security whitepaper (§2).

Both peers (Python `websockets`, Node.js `ocpp-rpc`) are checked with a plain Python WebSocket
client, so the product's TLS tests can rely on them: ``wss://`` with the CSMS certificate
(A00.FR.305/306), a client certificate whose commonName is the identity (A00.FR.401-407),
``tls_failed`` when a handshake fails, and a stop/start on the same port.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tests.peers import Csms, Event, NodeCsms, PythonCsms, ServerTls
from tests.pki import ClientFiles, Pki, make_pki

PEERS = ["python", "node"]
IDENTITY = "CP-TLS/1"  # a '/' in it: percent-encoded in the URL, the CN has it as it is
PASSWORD = b"0123456789abcdef0123"
REFUSED = (OSError, InvalidHandshake, TimeoutError)  # ssl.SSLError is an OSError

pytestmark = pytest.mark.parametrize("kind", PEERS)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A refused handshake is the normal case here: the peers must not trip over it."""
    yield
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@contextlib.asynccontextmanager
async def serving(kind: str, **options: Any) -> AsyncIterator[Csms]:
    peer: Csms = PythonCsms(**options) if kind == "python" else NodeCsms(**options)
    await peer.start()
    try:
        async with asyncio.timeout(60):
            yield peer
    finally:
        await peer.stop()


def profile2(pki: Pki) -> ServerTls:
    return ServerTls(pki.server.cert, pki.server.key)


def profile3(pki: Pki) -> ServerTls:
    return ServerTls(pki.server.cert, pki.server.key, client_ca=pki.cpo_ca)


def client_context(trust: Path, cert: ClientFiles | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(trust))
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    return context


def open_ws(
    peer: Csms,
    *,
    context: ssl.SSLContext | None = None,
    identity: str = IDENTITY,
    password: bytes | None = None,
) -> connect:
    headers = {}
    if password is not None:
        token = base64.b64encode(identity.encode() + b":" + password).decode()
        headers["Authorization"] = f"Basic {token}"
    quoted = identity.replace("/", "%2F")
    return connect(
        f"{peer.url}/{quoted}",
        ssl=context,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers=headers,
        open_timeout=10,
        close_timeout=5,
    )


async def heartbeat(ws: ClientConnection, message_id: str = "hb-1") -> None:
    """One CALL answered over the connection: the channel works both ways."""
    await ws.send(json.dumps([2, message_id, "Heartbeat", {}]))
    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert reply[:2] == [3, message_id] and "currentTime" in reply[2]


def events(peer: Csms, kind: str) -> list[Event]:
    return [e for e in peer.events if e["event"] == kind]


async def wait_event(peer: Csms, kind: str, count: int = 1) -> Event:
    found = await peer.wait_for(lambda _: events(peer, kind)[count - 1 :], timeout=15)
    return found[0]


async def test_profile2_wss_with_the_csms_ca(kind: str, pki: Pki) -> None:
    async with serving(kind, password=PASSWORD, tls=profile2(pki)) as peer:
        assert peer.url == f"wss://127.0.0.1:{peer.port}/ocpp"
        async with open_ws(peer, context=client_context(pki.ca), password=PASSWORD) as ws:
            assert ws.subprotocol == "ocpp1.6"
            await heartbeat(ws)
            connected = await wait_event(peer, "connect")
        assert connected["identity"] == IDENTITY
        assert (connected["tls"], connected["client_cn"], connected["basic_auth"]) == (
            True,
            None,
            True,
        )
        assert peer.count("tls_failed") == 0


async def test_profile2_still_checks_basic_auth(kind: str, pki: Pki) -> None:
    async with serving(kind, password=PASSWORD, tls=profile2(pki)) as peer:
        with pytest.raises(InvalidStatus) as refused:
            async with open_ws(peer, context=client_context(pki.ca), password=b"wrong"):
                pass
        assert refused.value.response.status_code == 401
        rejected = await wait_event(peer, "auth_rejected")
        assert rejected["identity"] == IDENTITY
        assert rejected["reason"] == "wrong charge point id or password"
        assert peer.count("connect") == 0


async def test_a_client_not_trusting_the_csms_certificate_fails_the_handshake(
    kind: str, pki: Pki
) -> None:
    async with serving(kind, password=PASSWORD, tls=profile2(pki)) as peer:
        with pytest.raises(ssl.SSLCertVerificationError):
            async with open_ws(peer, context=client_context(pki.untrusted_ca), password=PASSWORD):
                pass
        failed = await wait_event(peer, "tls_failed")
        # An asyncio client drops the connection without a TLS alert (an OpenSSL client that
        # sends one would give TLSV1_ALERT_UNKNOWN_CA).
        assert failed["code"] == "ECONNRESET", failed
        assert peer.count("connect") == 0


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_profile2_refuses_tls_1_1(kind: str, pki: Pki) -> None:
    """A00.FR.312/314: TLS 1.2 or later only; the CSMS ends a TLS 1.1 handshake."""
    context = client_context(pki.ca)
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    async with serving(kind, tls=profile2(pki)) as peer:
        with pytest.raises(OSError):
            async with open_ws(peer, context=context):
                pass
        failed = await wait_event(peer, "tls_failed")
        assert "PROTOCOL" in (failed["code"] or ""), failed
        assert peer.count("connect") == 0


async def test_profile3_client_certificate_of_this_charge_point(kind: str, pki: Pki) -> None:
    """No Basic auth needed: the certificate authenticates (the configured password is ignored)."""
    cert = pki.client(IDENTITY)
    async with serving(kind, password=PASSWORD, tls=profile3(pki)) as peer:
        async with open_ws(peer, context=client_context(pki.ca, cert)) as ws:
            await heartbeat(ws)
            connected = await wait_event(peer, "connect")
        assert connected["identity"] == IDENTITY
        assert (connected["tls"], connected["client_cn"], connected["basic_auth"]) == (
            True,
            IDENTITY,
            False,
        )
        # A Basic header with any password changes nothing either.
        async with open_ws(peer, context=client_context(pki.ca, cert), password=b"x") as ws:
            await heartbeat(ws, "hb-2")
            connected = await wait_event(peer, "connect", 2)
        assert (connected["client_cn"], connected["basic_auth"]) == (IDENTITY, True)
        assert peer.count("auth_rejected") == 0 and peer.count("tls_failed") == 0


async def test_profile3_refuses_a_charge_point_without_certificate(kind: str, pki: Pki) -> None:
    async with serving(kind, password=PASSWORD, tls=profile3(pki)) as peer:
        with pytest.raises(REFUSED):
            async with open_ws(peer, context=client_context(pki.ca), password=PASSWORD) as ws:
                await heartbeat(ws)
        failed = await wait_event(peer, "tls_failed")
        assert failed["code"] == "PEER_DID_NOT_RETURN_A_CERTIFICATE", failed
        assert peer.count("connect") == 0


async def test_profile3_refuses_another_charge_points_certificate(kind: str, pki: Pki) -> None:
    """A00.FR.405: the commonName must be the identity in the URL."""
    cert = pki.client("CP-OTHER")
    async with serving(kind, tls=profile3(pki)) as peer:
        with pytest.raises(InvalidStatus) as refused:
            async with open_ws(peer, context=client_context(pki.ca, cert)):
                pass
        assert refused.value.response.status_code == 401
        rejected = await wait_event(peer, "auth_rejected")
        assert rejected["identity"] == IDENTITY
        assert rejected["reason"].startswith("client certificate commonName"), rejected
        assert "CP-OTHER" in rejected["reason"]
        assert peer.count("connect") == 0


async def test_profile3_refuses_a_certificate_from_an_untrusted_ca(kind: str, pki: Pki) -> None:
    """A00.FR.403/407: the certificate must chain to the CPO's CA."""
    cert = pki.client(IDENTITY, ca="untrusted")
    async with serving(kind, tls=profile3(pki)) as peer:
        with pytest.raises(REFUSED):
            async with open_ws(peer, context=client_context(pki.ca, cert)) as ws:
                await heartbeat(ws)
        failed = await wait_event(peer, "tls_failed")
        assert failed["code"] == "CERTIFICATE_VERIFY_FAILED", failed
        assert peer.count("connect") == 0 and peer.count("auth_rejected") == 0


async def test_plain_ws_as_before(kind: str) -> None:
    async with serving(kind, password=PASSWORD) as peer:
        assert peer.url == f"ws://127.0.0.1:{peer.port}/ocpp"
        async with open_ws(peer, password=PASSWORD) as ws:
            await heartbeat(ws)
            connected = await wait_event(peer, "connect")
        assert (connected["tls"], connected["client_cn"], connected["basic_auth"]) == (
            False,
            None,
            True,
        )
        with pytest.raises(InvalidStatus):
            async with open_ws(peer, password=b"wrong"):
                pass
        await wait_event(peer, "auth_rejected")


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
async def test_stop_closes_the_connection_and_start_listens_on_the_same_port(
    kind: str, secure: bool, pki: Pki
) -> None:
    context = client_context(pki.ca) if secure else None
    options: dict[str, Any] = {"tls": profile2(pki)} if secure else {}
    boot = {"chargePointVendor": "V", "chargePointModel": "M"}
    async with serving(kind, password=PASSWORD, boots="Pending:5,Accepted:300", **options) as peer:
        await peer.configure(id_tags={"BLOCKED": {"status": "Blocked"}})
        url, port = peer.url, peer.port
        async with open_ws(peer, context=context, password=PASSWORD) as ws:
            await ws.send(json.dumps([2, "b1", "BootNotification", boot]))
            assert json.loads(await ws.recv())[2]["status"] == "Pending"
            await peer.stop()
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert events(peer, "close")[-1]["code"] == 1001
        with pytest.raises(OSError):  # nobody listens now
            async with open_ws(peer, context=context, password=PASSWORD):
                pass

        await peer.start()
        assert (peer.url, peer.port) == (url, port)
        async with open_ws(peer, context=context, password=PASSWORD) as ws:
            await heartbeat(ws)
            # The same CSMS: the boot sequence and the idTags go on.
            await ws.send(json.dumps([2, "b2", "BootNotification", boot]))
            assert json.loads(await ws.recv())[2]["status"] == "Accepted"
            await ws.send(json.dumps([2, "a1", "Authorize", {"idTag": "BLOCKED"}]))
            assert json.loads(await ws.recv())[2] == {"idTagInfo": {"status": "Blocked"}}
            await wait_event(peer, "connect", 2)
        assert peer.count("stopped") == 1
