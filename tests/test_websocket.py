"""The WebSocket client over byte streams, against a real `websockets` server on 127.0.0.1
(OCPP-J 1.6 §3 for the connection, RFC 6455 for the rest)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from http import HTTPStatus

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from tests.conftest import FAST, TcpProxy
from transport.modems.host import HostTcpStream
from transport.modems.quectel import open_quectel
from transport.simulator import SimulatorShell
from transport.websocket import (
    HandshakeRejected,
    PingTimeout,
    WebSocket,
    WebSocketClosed,
    WebSocketError,
    WebSocketSettings,
    basic_authorization,
    connection_url,
)

QUICK = WebSocketSettings(
    ping_interval=0, pong_timeout=1.0, handshake_timeout=5.0, close_timeout=2.0
)


class Peer:
    """A CSMS-shaped WebSocket server whose behaviour each test scripts."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.connections: list[ServerConnection] = []
        self.received: asyncio.Queue[str] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.server: Server | None = None
        self.port = 0

    async def handler(self, connection: ServerConnection) -> None:
        self.connections.append(connection)
        self.connected.set()
        with contextlib.suppress(Exception):
            async for message in connection:
                await self.received.put(str(message))

    def record(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request)
        return None


@contextlib.asynccontextmanager
async def peer(**options: object) -> AsyncIterator[Peer]:
    p = Peer()
    options.setdefault("subprotocols", ["ocpp1.6"])
    options.setdefault("process_request", p.record)
    async with serve(p.handler, "127.0.0.1", 0, max_size=4 * 2**20, **options) as server:  # type: ignore[arg-type]
        p.server = server
        p.port = server.sockets[0].getsockname()[1]
        yield p


async def open_ws(port: int, settings: WebSocketSettings = QUICK, **kwargs: object) -> WebSocket:
    stream = await HostTcpStream.open("127.0.0.1", port)
    url = connection_url(f"ws://127.0.0.1:{port}/ocpp", "CP 001/é")
    return await WebSocket.connect(stream, url, settings=settings, **kwargs)  # type: ignore[arg-type]


def test_connection_url_appends_the_percent_encoded_id() -> None:
    # OCPP-J 1.6 §3.1.1, example 2.
    assert connection_url("wss://centralsystem.example.com/ocppj", "RDAM 123") == (
        "wss://centralsystem.example.com/ocppj/RDAM%20123"
    )
    assert connection_url("ws://cs.example.com/ocpp/", "CP001") == "ws://cs.example.com/ocpp/CP001"


def test_basic_authorization_matches_the_ocpp_j_example() -> None:
    # OCPP-J 1.6 §6.2.2: identity AL1000 with a binary authorization key.
    key = bytes.fromhex("0001020304050607FFFFFFFFFFFFFFFFFFFFFFFF")
    assert basic_authorization("AL1000", key) == "Basic QUwxMDAwOgABAgMEBQYH////////////////"


async def test_handshake_path_subprotocol_and_basic_auth() -> None:
    async with peer() as p:
        ws = await open_ws(p.port, user="CP 001/é", password=b"s3cret")
        assert ws.subprotocol == "ocpp1.6"
        request = p.requests[0]
        assert request.path == "/ocpp/CP%20001%2F%C3%A9"
        assert request.headers["Sec-WebSocket-Protocol"] == "ocpp1.6"
        user, _, password = base64.b64decode(request.headers["Authorization"][6:]).partition(b":")
        assert (user, password) == ("CP 001/é".encode(), b"s3cret")
        await ws.close()


async def test_no_authorization_header_without_a_password() -> None:
    async with peer() as p:
        ws = await open_ws(p.port)
        assert "Authorization" not in p.requests[0].headers
        await ws.close()


async def test_messages_both_ways_including_60_kib_and_fragmented() -> None:
    async with peer() as p:
        ws = await open_ws(p.port)
        await p.connected.wait()
        server = p.connections[0]
        await ws.send('[2,"1","Heartbeat",{}]')
        assert await p.received.get() == '[2,"1","Heartbeat",{}]'
        big = json.dumps([2, "2", "DataTransfer", {"vendorId": "x", "data": "é" * 30000}])
        await server.send(big)
        assert await ws.recv() == big
        fragments = ['[2,"3","DataTransfer",', '{"vendorId":"x",', '"data":"' + "z" * 5000 + '"}]']
        await server.send(fragments)
        assert await ws.recv() == "".join(fragments)
        await ws.close()


async def test_every_frame_we_send_is_masked() -> None:
    async with peer() as p:
        proxy = TcpProxy(p.port)
        await proxy.start()
        ws = await open_ws(proxy.port)
        await ws.send("x" * 300)
        assert await p.received.get() == "x" * 300
        frame = bytes(proxy.from_client[proxy.from_client.index(b"\r\n\r\n") + 4 :])
        assert frame[0] == 0x81  # FIN, text
        assert frame[1] & 0x80  # MASK bit
        assert frame[1] & 0x7F == 126  # 16-bit extended length for 300 bytes
        assert frame[8:] != b"x" * 300  # the payload on the wire is masked
        await ws.close()
        await proxy.stop()


async def test_server_pings_are_answered() -> None:
    async with peer() as p:
        ws = await open_ws(p.port)
        await p.connected.wait()
        pong = await p.connections[0].ping(b"are you there")
        async with asyncio.timeout(5):
            await pong
        await ws.close()


async def test_our_pings_keep_a_live_link_open() -> None:
    async with peer() as p:
        ws = await open_ws(p.port, WebSocketSettings(ping_interval=0.05, pong_timeout=1.0))
        await asyncio.sleep(0.3)  # several ping/pong rounds on a healthy link
        assert ws.closed is None
        await ws.close()


async def test_a_silent_half_open_link_is_declared_dead_by_the_pong_timeout() -> None:
    async with peer() as p:
        proxy = TcpProxy(p.port)
        await proxy.start()
        ws = await open_ws(proxy.port, WebSocketSettings(ping_interval=0.1, pong_timeout=0.3))
        proxy.stalled = True  # the radio goes silent; no FIN, no RST
        async with asyncio.timeout(5):
            with pytest.raises(PingTimeout, match=r"no pong within 0\.3 s"):
                await ws.recv()
        await ws.close()
        await proxy.stop()


async def test_a_message_over_the_size_limit_fails_the_connection() -> None:
    async with peer() as p:
        ws = await open_ws(p.port, WebSocketSettings(ping_interval=0, max_message_size=64 * 1024))
        await p.connected.wait()
        await p.connections[0].send("y" * (65 * 1024))
        with pytest.raises(WebSocketClosed, match="larger than 65536 bytes") as closed:
            await ws.recv()
        assert closed.value.code == 1009
        await ws.close()


async def test_the_csms_closing_is_reported_with_its_code() -> None:
    async with peer() as p:
        ws = await open_ws(p.port)
        await p.connected.wait()
        await p.connections[0].close(1001, "going away")
        with pytest.raises(
            WebSocketClosed, match="the CSMS closed the WebSocket \\(1001 going away\\)"
        ):
            await ws.recv()
        with pytest.raises(WebSocketClosed):
            await ws.send("too late")
        await ws.close()


async def test_our_close_runs_the_closing_handshake() -> None:
    async with peer() as p:
        ws = await open_ws(p.port)
        await p.connected.wait()
        await ws.close(1000, "bye")
        await p.connections[0].wait_closed()
        assert p.connections[0].close_code == 1000


async def test_a_dropped_connection_ends_the_websocket() -> None:
    async with peer() as p:
        proxy = TcpProxy(p.port)
        await proxy.start()
        ws = await open_ws(proxy.port)
        proxy.drop_all()
        with pytest.raises(WebSocketClosed, match="connection under the WebSocket") as closed:
            await ws.recv()
        assert closed.value.code == 1006
        await ws.close()
        await proxy.stop()


async def test_http_401_is_a_clear_error() -> None:
    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(HTTPStatus.UNAUTHORIZED, "wrong password\n")

    async with peer(process_request=refuse) as p:
        with pytest.raises(
            HandshakeRejected, match="refused the charge point's credentials"
        ) as rejected:
            await open_ws(p.port, password=b"nope")
        assert rejected.value.status == 401


async def test_a_server_that_does_not_select_ocpp16_is_refused() -> None:
    async with peer(subprotocols=None) as p:
        with pytest.raises(WebSocketError, match=r"did not select the ocpp1\.6 subprotocol"):
            await open_ws(p.port)


async def test_a_wrong_sec_websocket_accept_is_refused() -> None:
    async def fake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
        )
        await writer.drain()

    server = await asyncio.start_server(fake, "127.0.0.1", 0)
    with pytest.raises(WebSocketError, match="wrong Sec-WebSocket-Accept"):
        await open_ws(server.sockets[0].getsockname()[1])
    server.close()


async def test_no_answer_to_the_upgrade_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    settings = WebSocketSettings(ping_interval=0, handshake_timeout=0.3)
    with pytest.raises(WebSocketError, match="no answer to the WebSocket upgrade"):
        await open_ws(server.sockets[0].getsockname()[1], settings)
    server.close()


async def test_websocket_through_the_simulated_module() -> None:
    async with (
        peer() as p,
        SimulatorShell(baud=115200, latency=0.02) as sim,
        open_quectel(sim.path, settings=FAST) as modem,
    ):
        await modem.bring_up()
        stream = await modem.open_tcp("127.0.0.1", p.port)
        url = connection_url(f"ws://127.0.0.1:{p.port}/ocpp", "CP001")
        ws = await WebSocket.connect(stream, url, user="CP001", password=b"pw", settings=QUICK)
        await p.connected.wait()
        big = "w" * 5000  # several QISENDs and QIRDs each way
        await ws.send(big)
        assert await p.received.get() == big
        await p.connections[0].send(big[::-1])
        assert await ws.recv() == big[::-1]
        await ws.close()
        assert p.connections[0].close_code == 1000
