"""File transfers through the SimpleLink module's HTTP client: driver ⇄ real pty ⇄ simulator ⇄
real HTTP(S) server on 127.0.0.1. Range pieces byte-exact, a resume after an interrupted piece,
uploads in chunked encoding seen by the server, OCPP keeping the line during a download, and
no HTTP client of the module's four left behind."""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import hashlib
import random
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.conftest import EchoServer
from tests.test_simplelink_driver import FAST, fast, module, round_trip
from transport.errors import AtTimeout, HttpStatusError, TransferError
from transport.http import Location
from transport.modems.simplelink import SimpleLinkModem, open_simplelink
from transport.modems.simplelink_http import SimpleLinkHttp
from transport.modems.simplelink_settings import SimpleLinkSettings
from transport.simulator import SimulatorShell
from transport.simulator.file_server import FileServer
from transport.simulator.simplelink import SimpleLinkModule

KIB = 1024


def image(size: int, seed: int = 5) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as s:
        yield s


@contextlib.asynccontextmanager
async def module_http(
    settings: SimpleLinkSettings | None = None, **shell: Any
) -> AsyncIterator[
    tuple[SimulatorShell[SimpleLinkModule], SimpleLinkModule, SimpleLinkModem, SimpleLinkHttp]
]:
    sim_module = module()
    async with (
        SimulatorShell(sim_module, **shell) as sim,
        open_simplelink(sim.path, shell.get("baud") or 115200, settings or FAST) as modem,
    ):
        await modem.bring_up()
        yield sim, sim_module, modem, modem.http()


async def test_an_image_in_range_pieces_is_byte_exact(server: FileServer, tmp_path: Path) -> None:
    content = image(300 * KIB)
    server.files["/fw/image.bin"] = content
    async with module_http(fast(piece_size=64 * KIB)) as (_sim, sim_module, _modem, http):
        result = await http.fetch(
            server.url("/fw/image.bin"),
            tmp_path / "image.bin",
            sha256=hashlib.sha256(content).hexdigest(),
        )
        assert http.clients == set()
        assert sum(c.lower().startswith("at+httpcreate") for c in sim_module.log) == sum(
            c.lower().startswith("at+httpdestroy") for c in sim_module.log
        )
    assert (tmp_path / "image.bin").read_bytes() == content
    assert result.ranged and result.pieces == 5 and result.size == len(content)
    assert [r for _, r in server.gets()] == [
        f"bytes={i * 64 * KIB}-{min((i + 1) * 64 * KIB, len(content)) - 1}" for i in range(5)
    ]


async def test_an_interrupted_piece_is_asked_for_again_from_the_last_good_byte(
    server: FileServer, tmp_path: Path
) -> None:
    content = image(200 * KIB, seed=9)
    server.files["/fw/image.bin"] = content
    dest = tmp_path / "image.bin"
    async with module_http(fast(piece_size=64 * KIB)) as (_sim, _module, _modem, http):
        server.drop_after = [None, 10 * KIB]
        result = await http.fetch(server.url("/fw/image.bin"), dest)
    assert dest.read_bytes() == content
    ranges = [r for _, r in server.gets()]
    assert ranges[1] == f"bytes={64 * KIB}-{128 * KIB - 1}"
    # The 10 KiB that came are kept: the piece goes on from there, nothing is fetched twice.
    assert ranges[2] == f"bytes={74 * KIB}-{138 * KIB - 1}"
    assert result.pieces == len(ranges)


async def test_a_download_resumes_after_a_restart(server: FileServer, tmp_path: Path) -> None:
    content = image(200 * KIB, seed=3)
    server.files["/fw/image.bin"] = content
    dest = tmp_path / "image.bin"
    async with module_http(fast(piece_size=64 * KIB)) as (_sim, _module, _modem, http):
        server.drop_after = [None, 5 * KIB, 5 * KIB, 5 * KIB, 5 * KIB, 5 * KIB]
        with pytest.raises(TransferError):
            await http.fetch(server.url("/fw/image.bin"), dest)
    kept = (tmp_path / "image.bin.part").stat().st_size
    assert kept >= 64 * KIB
    server.requests.clear()
    async with module_http(fast(piece_size=64 * KIB)) as (_sim, _module, _modem, http):
        result = await http.fetch(server.url("/fw/image.bin"), dest)
    assert dest.read_bytes() == content
    assert result.resumed_from == kept
    first = server.gets()[0][1]
    assert first is not None and first.startswith(f"bytes={kept}-")


async def test_404_is_an_http_status_error(server: FileServer, tmp_path: Path) -> None:
    async with module_http() as (_sim, _module, _modem, http):
        with pytest.raises(HttpStatusError) as raised:
            await http.fetch(server.url("/nothing.bin"), tmp_path / "x")
        assert raised.value.status == 404
        assert http.clients == set()


@dataclass
class UploadServer:
    """A real HTTP server on 127.0.0.1 that takes multipart/form-data POSTs in chunked transfer
    encoding (RFC 9112 §7.1), what the module's AT+HttpSendReq chunk_start/chunk_end sends
    (SPEC §7), and answers ``status``."""

    port: int = 0
    status: int = 201
    uploads: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ", 2)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in head[1:] if line)
        }
        body = b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while size := int((await reader.readline()).split(b";")[0], 16):
                body += await reader.readexactly(size)
                await reader.readexactly(2)
            await reader.readline()
        else:
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.uploads.append((method, target, headers, body))
        reply = b"stored\n"
        writer.write(
            f"HTTP/1.1 {self.status} Whatever\r\nContent-Length: {len(reply)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + reply
        )
        await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def upload_server() -> AsyncIterator[UploadServer]:
    state = UploadServer()
    server = await asyncio.start_server(state.serve, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()


def multipart_file(headers: dict[str, str], body: bytes) -> tuple[str, str, bytes]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + headers["content-type"].encode() + b"\r\n\r\n" + body
    )
    part = next(iter(message.iter_parts()))
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    field_name = str(part.get_param("name", header="content-disposition"))
    return field_name, part.get_filename() or "", payload


@pytest.mark.parametrize("size", [0, 100, 5 * KIB + 17])
async def test_upload_in_chunks_is_seen_by_the_server(size: int) -> None:
    data = image(size, seed=4)
    async with upload_server() as server, module_http() as (_sim, _module, _modem, http):
        url = f"http://127.0.0.1:{server.port}/upload"
        assert await http.upload(url, "diag.zip", data) == 201
        server.status = 500
        with pytest.raises(HttpStatusError):
            await http.upload(url, "diag.zip", b"small")
        assert http.clients == set()
    method, target, headers, body = server.uploads[0]
    assert (method, target, headers["transfer-encoding"]) == ("POST", "/upload", "chunked")
    assert headers["host"] == f"127.0.0.1:{server.port}"
    assert multipart_file(headers, body) == ("file", "diag.zip", data)


async def test_https_with_the_files_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    ca_file = tmp_path / "files-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    content = image(40 * KIB)
    with FileServer(tls=context) as secure:
        secure.files["/fw.bin"] = content
        async with module_http(fast(files_ca_file=ca_file)) as (_sim, sim_module, _modem, http):
            await http.fetch(secure.url("/fw.bin"), tmp_path / "f")
            connects = [c for c in sim_module.log if c.lower().startswith("at+httpconnect")]
            assert connects and all(c.endswith("/cert/files-ca.pem") for c in connects)
    assert (tmp_path / "f").read_bytes() == content


async def test_https_dates_are_checked_at_a_set_module_clock(tmp_path: Path) -> None:
    """The module clock reads 2013 at power-on, inside this certificate's validity: only a
    clock set before AT+HttpConnect (here from the controller's) refuses it as expired."""
    ca = trustme.CA()
    now = datetime.now(UTC)
    leaf = ca.issue_cert(
        "127.0.0.1",
        not_before=datetime(2010, 1, 1, tzinfo=UTC),
        not_after=now - timedelta(days=365),
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    ca_file = tmp_path / "files-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with FileServer(tls=context) as secure:
        secure.files["/fw.bin"] = b"old"
        async with module_http(fast(files_ca_file=ca_file)) as (_sim, sim_module, _modem, http):
            with pytest.raises(TransferError, match="not valid at the module's clock"):
                await http.fetch(secure.url("/fw.bin"), tmp_path / "f")
            assert any(c.startswith("AT+Set=General,Time") for c in sim_module.log)
            assert http.clients == set()


async def test_ocpp_keeps_the_line_during_a_download(
    server: FileServer, echo_server: EchoServer, tmp_path: Path
) -> None:
    """A CSMS call during a firmware download is answered between two body reads, and the
    download is not starved by the receive pump's polls."""
    content = image(256 * KIB, seed=8)
    server.files["/fw/image.bin"] = content
    async with module_http(fast(piece_size=64 * KIB), baud=460800) as (_s, _m, modem, http):
        stream = await modem.open_tcp("127.0.0.1", echo_server.port)
        download = asyncio.create_task(http.fetch(server.url("/fw/image.bin"), tmp_path / "fw"))
        exchanges = 0
        while not download.done():
            assert await round_trip(stream, b"Heartbeat", 9) == b"Heartbeat"
            exchanges += 1
        await download
        await stream.close()
        stats = modem.channel.stats
        reads = -(-len(content) // 1460)
        # The pump's polls between body reads: about one each, not a spin.
        assert modem.sockets.selects < 4 * reads
    assert (tmp_path / "fw").read_bytes() == content
    assert exchanges >= 2
    assert stats.noise_lines == 0


async def test_clients_whose_release_got_no_answer_are_destroyed_before_the_next(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = image(3 * KIB, seed=11)
    server.files["/fw/small.bin"] = content
    async with module_http() as (_sim, sim_module, modem, http):
        command = modem.channel.command
        unanswered = True

        async def releases_unanswered(line: str, **options: Any) -> Any:
            if unanswered and line.startswith(("AT+HttpDisconnect", "AT+HttpDestroy")):
                raise AtTimeout(line, 1.0, modem.channel.port_name)  # never reached the module
            return await command(line, **options)

        monkeypatch.setattr(modem.channel, "command", releases_unanswered)
        for n in range(4):  # every client of the module's four left behind
            await http.fetch(server.url("/fw/small.bin"), tmp_path / f"{n}.bin")
        assert len(sim_module.http_clients) == 4 and http.stale == {0, 1, 2, 3}
        unanswered = False
        result = await http.fetch(server.url("/fw/small.bin"), tmp_path / "last.bin")
        assert result.size == len(content)
        assert http.clients == set() and http.stale == set()
        assert sim_module.http_clients == {}


async def test_clients_left_by_someone_else_are_destroyed_when_all_four_are_taken(
    server: FileServer, tmp_path: Path
) -> None:
    server.files["/fw/small.bin"] = image(2 * KIB)
    async with module_http() as (_sim, sim_module, modem, http):
        for _ in range(4):  # an earlier run of the daemon, say
            await modem.channel.command("AT+HttpCreate", expect=("+httpcreate:",))
        assert len(sim_module.http_clients) == 4
        result = await http.fetch(server.url("/fw/small.bin"), tmp_path / "small.bin")
        assert result.size == 2 * KIB
        assert http.clients == set() and sim_module.http_clients == {}


async def test_socket_exhaustion_closes_no_descriptor_while_a_transfer_holds_a_client(
    server: FileServer,
) -> None:
    async with module_http() as (_sim, sim_module, modem, http):
        async with http._client(Location.parse(server.url("/fw/x.bin"))):
            assert not await modem.sockets._close_strangers()
        assert not [c for c in sim_module.log if c.lower().startswith("at+close")]
        assert await modem.sockets._close_strangers() is False  # none held, but it asks
        assert [c for c in sim_module.log if c.lower().startswith("at+close")]
