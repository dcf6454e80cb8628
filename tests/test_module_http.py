"""File transfers through the module: driver ⇄ real pty ⇄ simulator ⇄ real HTTP(S) server on
127.0.0.1 (transport/simulator/file_server.py). Firmware-sized downloads in Range pieces,
resumes, servers without Range, uploads, and each failure ending in its specific, advising
error."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import re
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.conftest import FAST
from transport.errors import HttpStatusError, TransferCorrupt, TransferError
from transport.http import (
    Consume,
    Location,
    NextPiece,
    PartialFile,
    PipelinedSource,
    ResponseHead,
    fetch_in_pieces,
)
from transport.modems.host_http import HostHttp
from transport.modems.quectel import QuectelModem, open_quectel
from transport.modems.quectel_files import QuectelFiles, checksum
from transport.modems.quectel_http import HttpSettings, QuectelHttp
from transport.modems.quectel_http_errors import (
    HTTP_ERRORS,
    HttpDnsError,
    HttpSocketConnectError,
    ModuleHttpError,
)
from transport.simulator import ModuleProfile, QuectelModule, SimulatorShell
from transport.simulator.file_server import FileServer

KIB = 1024


def image(size: int, seed: int = 5) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as s:
        yield s


@contextlib.asynccontextmanager
async def module_http(
    settings: HttpSettings | None = None, profile: ModuleProfile | None = None, **shell: Any
) -> AsyncIterator[tuple[SimulatorShell, QuectelModem, QuectelHttp]]:
    async with (
        SimulatorShell(QuectelModule(profile), **shell) as sim,
        open_quectel(sim.path, shell.get("baud") or 115200, FAST) as modem,
    ):
        await modem.bring_up()
        yield sim, modem, modem.http(settings or HttpSettings(piece_size=32 * KIB))


def test_checksum_matches_the_manuals_vectors() -> None:
    # at-protocol.md §4.6: the BG96 FILE manual's example and computed vectors.
    assert checksum(b"") == 0
    assert checksum(b"A") == 0x4100
    assert checksum(b"AB") == 0x4142
    assert checksum(b"ABC") == 0x242
    assert checksum(b"1234567890") == 0x3938


def test_every_7xx_code_has_its_own_exception_with_advice() -> None:
    assert sorted(HTTP_ERRORS) == list(range(701, 731))
    assert len({cls.__name__ for cls in HTTP_ERRORS.values()}) == 30
    for code, cls in HTTP_ERRORS.items():
        error = cls("AT+QHTTPGET")
        assert isinstance(error, ModuleHttpError)
        assert str(code) in str(error) and cls.advice in str(error) and cls.advice


async def test_file_commands_round_trip_with_checksums() -> None:
    async with module_http() as (_sim, modem, http):
        files: QuectelFiles = http.files
        data = image(3000) + b"\r\nOK\r\n+QFDWL: 1,1\r\n"  # result lines inside binary data
        await files.upload("UFS:t.bin", data)
        assert await files.size("UFS:t.bin") == len(data)
        assert await files.download("UFS:t.bin") == data
        handle = await files.open("RAM:w.bin", 1)
        await files.write(handle, data)
        await files.seek(handle, 0)
        assert await files.read(handle, 5000) == data
        assert await files.read(handle, 10) == b""
        await files.close(handle)
        await files.delete("RAM:w.bin")
        assert await files.size("RAM:w.bin") is None
        assert modem.channel.stats.noise_lines == 0


async def test_two_mib_image_in_range_pieces_is_byte_exact(
    server: FileServer, tmp_path: Path
) -> None:
    content = image(2 * 1024 * KIB)
    server.files["/fw/image.bin"] = content
    async with module_http(HttpSettings(piece_size=256 * KIB)) as (_sim, _modem, http):
        result = await http.fetch(
            server.url("/fw/image.bin"),
            tmp_path / "image.bin",
            sha256=hashlib.sha256(content).hexdigest(),
        )
    assert (tmp_path / "image.bin").read_bytes() == content
    assert result.ranged and result.pieces == 8 and result.size == len(content)
    assert [r for _, r in server.gets()] == [
        f"bytes={i * 256 * KIB}-{(i + 1) * 256 * KIB - 1}" for i in range(8)
    ]
    assert not (tmp_path / "image.bin.part").exists()


async def test_interrupted_twice_resumes_and_completes(server: FileServer, tmp_path: Path) -> None:
    content = image(300 * KIB, seed=9)
    server.files["/fw/image.bin"] = content
    dest = tmp_path / "image.bin"
    async with module_http() as (_sim, _modem, http):
        # Two pieces are cut short by the server: each is asked for again from the last good
        # byte (717-style "resend"), the rest is never fetched twice.
        server.drop_after = [None, 0, None, None, 10 * KIB]
        result = await http.fetch(server.url("/fw/image.bin"), dest)
    assert dest.read_bytes() == content
    assert result.pieces == 10 + 2
    ranges = [r for _, r in server.gets()]
    assert ranges[1] == ranges[2] == f"bytes={32 * KIB}-{64 * KIB - 1}"
    assert ranges[4] == ranges[5] == f"bytes={96 * KIB}-{128 * KIB - 1}"


async def test_download_resumes_after_a_restart(server: FileServer, tmp_path: Path) -> None:
    content = image(200 * KIB, seed=3)
    server.files["/fw/image.bin"] = content
    dest = tmp_path / "image.bin"
    async with module_http() as (_sim, _modem, http):
        # Two pieces arrive, then every request is cut: the fetch gives up after its retries.
        server.drop_after = [None, None, 5 * KIB, 5 * KIB, 5 * KIB, 5 * KIB]
        with pytest.raises(TransferError):
            await http.fetch(server.url("/fw/image.bin"), dest)
    kept = (tmp_path / "image.bin.part").stat().st_size
    assert kept == 64 * KIB
    server.requests.clear()
    # A new module session (the daemon restarted): it goes on from the bytes kept.
    async with module_http() as (_sim, _modem, http):
        result = await http.fetch(server.url("/fw/image.bin"), dest)
    assert dest.read_bytes() == content
    assert result.resumed_from == kept
    first_range = server.gets()[0][1]
    assert first_range is not None and first_range.startswith(f"bytes={kept}-")


async def test_server_without_range_whole_file_via_ufs(tmp_path: Path) -> None:
    content = image(150 * KIB, seed=4)
    with FileServer(files={"/fw.bin": content}, ranges=False) as server:
        async with module_http() as (_sim, modem, http):
            result = await http.fetch(server.url("/fw.bin"), tmp_path / "fw.bin")
            assert modem.channel.stats.noise_lines == 0
    assert (tmp_path / "fw.bin").read_bytes() == content
    assert not result.ranged and result.pieces == 1


async def test_server_without_range_too_big_for_the_module_streams(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    content = image(100 * KIB, seed=6) + b"\r\nOK\r\n" + image(1000, seed=7)
    profile = ModuleProfile(ufs_size=64 * KIB, ram_size=32 * KIB)
    with FileServer(files={"/fw.bin": content}, ranges=False) as server:
        async with module_http(profile=profile) as (_sim, _modem, http):
            await http.fetch(server.url("/fw.bin"), tmp_path / "fw.bin")
    assert (tmp_path / "fw.bin").read_bytes() == content
    assert "holds the serial line" in caplog.text


async def test_404_is_an_http_status_error(server: FileServer, tmp_path: Path) -> None:
    async with module_http() as (_sim, _modem, http):
        with pytest.raises(HttpStatusError) as caught:
            await http.fetch(server.url("/missing.bin"), tmp_path / "x.bin")
    assert caught.value.status == 404


async def test_dns_failure_is_714_with_the_manuals_advice(tmp_path: Path) -> None:
    async with module_http(dns_failures={"firmware.example"}) as (_sim, _modem, http):
        with pytest.raises(HttpDnsError) as caught:
            await http.fetch("http://firmware.example/fw.bin", tmp_path / "x.bin")
    assert "714" in str(caught.value) and "AT+QIDNSCFG" in str(caught.value)


async def test_refused_connection_is_716(tmp_path: Path) -> None:
    async with module_http() as (_sim, _modem, http):
        with pytest.raises(HttpSocketConnectError):
            await http.fetch("http://127.0.0.1:9/fw.bin", tmp_path / "x.bin")


async def test_checksum_mismatch_is_refused_and_not_kept(
    server: FileServer, tmp_path: Path
) -> None:
    server.files["/fw.bin"] = image(40 * KIB)
    async with module_http() as (_sim, _modem, http):
        with pytest.raises(TransferCorrupt):
            await http.fetch(server.url("/fw.bin"), tmp_path / "fw.bin", sha256="00" * 32)
    assert not (tmp_path / "fw.bin").exists()


@pytest.mark.parametrize("size", [1500, 60 * KIB])
async def test_upload_multipart_direct_and_through_ufs(server: FileServer, size: int) -> None:
    data = image(size, seed=size)
    async with module_http() as (sim, _modem, http):
        status = await http.upload(server.url("/upload/diag"), "diag.tar.gz", data)
        commands = " ".join(sim.module.log)
    assert status == 201
    assert [(u.file_name, u.data) for u in server.uploads] == [("diag.tar.gz", data)]
    assert ("AT+QHTTPPOSTFILE" in commands) == (size > 4096)


async def test_failed_upload_raises_status(server: FileServer) -> None:
    server.fail_uploads = 1
    async with module_http() as (_sim, _modem, http):
        with pytest.raises(HttpStatusError):
            await http.upload(server.url("/upload/diag"), "d.gz", b"x" * 100)
        assert await http.upload(server.url("/upload/diag"), "d.gz", b"x" * 100) == 201


async def test_https_with_a_test_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    other = trustme.CA()
    other_file = tmp_path / "other.pem"
    other.cert_pem.write_to_path(str(other_file))
    content = image(70 * KIB)
    with FileServer(files={"/fw.bin": content}, tls=context) as server:
        async with module_http(HttpSettings(piece_size=32 * KIB, ca_file=ca_file)) as (
            sim,
            _m,
            http,
        ):
            await http.fetch(server.url("/fw.bin"), tmp_path / "fw.bin")
            assert any("QSSLCFG" in c and "cacert" in c for c in sim.module.log)
        assert (tmp_path / "fw.bin").read_bytes() == content
        # A server the CA does not vouch for is refused.
        async with module_http(HttpSettings(ca_file=other_file)) as (_sim, _m, http):
            with pytest.raises(ModuleHttpError):
                await http.fetch(server.url("/fw.bin"), tmp_path / "fw2.bin")
        # The host stack does the same with the same CA.
        host = HostHttp(ca_file=ca_file, piece_size=32 * KIB)
        await host.fetch(server.url("/fw.bin"), tmp_path / "fw3.bin")
        assert (tmp_path / "fw3.bin").read_bytes() == content


async def test_host_client_same_pieces_and_upload(server: FileServer, tmp_path: Path) -> None:
    content = image(100 * KIB)
    server.files["/fw.bin"] = content
    host = HostHttp(piece_size=32 * KIB)
    server.drop_after = [1000]
    result = await host.fetch(server.url("/fw.bin"), tmp_path / "fw.bin")
    assert (tmp_path / "fw.bin").read_bytes() == content and result.pieces == 5
    assert await host.upload(server.url("/up"), "d.gz", b"abc") == 201
    assert server.uploads[-1].data == b"abc"


async def test_a_password_in_an_http_location_is_hidden_in_errors_and_part_files(
    server: FileServer, tmp_path: Path
) -> None:
    content = image(64 * KIB, seed=11)
    server.files["/fw.bin"] = content
    url = server.url("/fw.bin").replace("http://", "http://cp:pw-in-url-7@")
    with pytest.raises(HttpStatusError) as caught:
        await HostHttp().fetch(url.replace("/fw.bin", "/missing.bin"), tmp_path / "x.bin")
    assert "pw-in-url-7" not in str(caught.value) and "cp:***@" in str(caught.value)
    server.drop_after = [None, 0, 0, 0, 0]
    with pytest.raises(TransferError):
        await HostHttp(piece_size=32 * KIB).fetch(url, tmp_path / "fw.bin")
    assert "pw-in-url-7" not in (tmp_path / "fw.bin.part.json").read_text()
    result = await HostHttp(piece_size=32 * KIB).fetch(url, tmp_path / "fw.bin")
    assert result.resumed_from == 32 * KIB and (tmp_path / "fw.bin").read_bytes() == content


# -- pieces pipelined: the next one fetched by the module while this one is read -------------


def scratch_files(sim: SimulatorShell) -> list[str]:
    return sorted(k for k in sim.module.storage.files if k.rpartition(":")[2].startswith("cp"))


def assert_module_clean(sim: SimulatorShell) -> None:
    assert sim.module.storage.handles == {}, "a file handle was left open"
    assert not sim.module.http_busy, "the HTTP client was left waiting for a server"
    assert scratch_files(sim) == []


class RangeSource:
    """A :class:`PipelinedSource` over a file in memory that answers every Range with 206 and
    records the requests it was asked and the ones ``following`` predicted."""

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.asked: list[bytes] = []
        self.predicted: list[bytes | None] = []

    async def exchange(self, where: Location, head: bytes, consume: Consume[Any]) -> Any:
        raise AssertionError("a pipelined source is asked with exchange_ahead")

    async def exchange_ahead(
        self, where: Location, head: bytes, consume: Consume[Any], following: NextPiece
    ) -> Any:
        self.asked.append(head)
        found = re.search(rb"Range: bytes=(\d+)-(\d+)", head)
        assert found is not None
        first, last = int(found.group(1)), min(int(found.group(2)), len(self.content) - 1)
        response = ResponseHead(
            206,
            {
                "content-range": f"bytes {first}-{last}/{len(self.content)}",
                "etag": '"v1"',
            },
        )
        self.predicted.append(following(response))

        async def body() -> AsyncIterator[bytes]:
            yield self.content[first : last + 1]

        return await consume(response, body())


@pytest.mark.parametrize("resumed_from", [0, 10_000])
async def test_the_request_predicted_for_the_next_piece_is_the_one_asked_next(
    tmp_path: Path, resumed_from: int
) -> None:
    content = image(100_000, seed=12)
    url = "http://files.example/fw.bin"
    dest = tmp_path / "fw.bin"
    if resumed_from:
        kept = PartialFile(dest, url, total=len(content), validator='"v1"')
        kept.save()
        kept.part.write_bytes(content[:resumed_from])
    source = RangeSource(content)
    assert isinstance(source, PipelinedSource)
    result = await fetch_in_pieces(source, url, dest, piece_size=32 * KIB)
    assert dest.read_bytes() == content and result.resumed_from == resumed_from
    assert source.predicted[:-1] == source.asked[1:]
    assert source.predicted[-1] is None  # the last piece: nothing to fetch ahead
    assert (b"If-Range" in source.asked[0]) == bool(resumed_from)
    assert all(b'If-Range: "v1"' in head for head in source.asked[1:])


def before_close(log: list[str], command: str) -> list[int]:
    """For each ``command`` in the module's log, how many AT+QFCLOSE came before it."""
    closes = 0
    counts = []
    for line in log:
        closes += line.startswith("AT+QFCLOSE")
        if line.startswith(command):
            counts.append(closes)
    return counts


async def test_the_next_piece_is_fetched_into_the_other_file_while_this_one_is_read(
    server: FileServer, tmp_path: Path
) -> None:
    content = image(20 * KIB, seed=13)
    server.files["/fw.bin"] = content
    settings = HttpSettings(piece_size=8 * KIB, chunk=1 * KIB)
    seen: set[tuple[str, ...]] = set()
    async with module_http(settings, baud=115200) as (sim, modem, http):
        result = await http.fetch(
            server.url("/fw.bin"),
            tmp_path / "fw.bin",
            progress=lambda _done, _total: seen.add(tuple(scratch_files(sim))),
        )
        log = sim.module.log
        assert_module_clean(sim)
        assert modem.channel.stats.noise_lines == 0
    assert (tmp_path / "fw.bin").read_bytes() == content and result.pieces == 3
    # Piece k's GET and AT+QHTTPREADFILE go out while piece k-1's file is open.
    assert before_close(log, "AT+QHTTPGET") == [0, 0, 1]
    assert before_close(log, "AT+QHTTPREADFILE") == [0, 0, 1]
    assert ("RAM:cphttp.bin", "RAM:cphttp2.bin") in seen
    # The URL and the options are set once for the whole download.
    assert sum(c.startswith("AT+QHTTPURL=") for c in log) == 1
    assert sum(c.startswith("AT+QHTTPCFG=") for c in log) == 3


async def test_a_failure_of_the_piece_fetched_ahead_is_met_in_its_turn_and_it_is_asked_again(
    server: FileServer, tmp_path: Path
) -> None:
    content = image(40 * KIB, seed=14)
    server.files["/fw.bin"] = content
    server.drop_after = [None, 3 * KIB]  # the second piece, asked for ahead, is cut short
    async with module_http(HttpSettings(piece_size=16 * KIB)) as (sim, modem, http):
        result = await http.fetch(server.url("/fw.bin"), tmp_path / "fw.bin")
        assert_module_clean(sim)
        assert modem.channel.stats.noise_lines == 0
    assert (tmp_path / "fw.bin").read_bytes() == content and result.pieces == 4
    assert [r for _, r in server.gets()] == [
        f"bytes=0-{16 * KIB - 1}",
        f"bytes={16 * KIB}-{32 * KIB - 1}",
        f"bytes={16 * KIB}-{32 * KIB - 1}",
        f"bytes={32 * KIB}-{40 * KIB - 1}",
    ]


class ChangedAfterFirstGet(dict[str, bytes]):
    """The files of a server whose one file is replaced right after its first GET."""

    def __init__(self, old: bytes, new: bytes) -> None:
        super().__init__({"/fw.bin": old})
        self.new = new

    def get(self, key: str, default: Any = None) -> Any:
        found = super().get(key, default)
        self["/fw.bin"] = self.new
        return found


async def test_a_file_changed_on_the_server_is_fetched_anew_when_the_piece_ahead_finds_out(
    server: FileServer, tmp_path: Path
) -> None:
    old, new = image(40 * KIB, seed=15), image(36 * KIB, seed=16)
    server.files = ChangedAfterFirstGet(old, new)
    async with module_http(HttpSettings(piece_size=16 * KIB)) as (sim, _modem, http):
        result = await http.fetch(server.url("/fw.bin"), tmp_path / "fw.bin")
        assert_module_clean(sim)
    # The second piece, asked for ahead with If-Range, comes whole and new (200).
    assert (tmp_path / "fw.bin").read_bytes() == new
    assert not result.ranged and result.pieces == 2


async def test_a_download_cancelled_with_two_pieces_in_the_module_leaves_nothing_there(
    server: FileServer, tmp_path: Path
) -> None:
    content = image(40 * KIB, seed=17)
    server.files["/fw.bin"] = content
    dest = tmp_path / "fw.bin"
    settings = HttpSettings(piece_size=8 * KIB, chunk=1 * KIB)
    async with module_http(settings, baud=115200) as (sim, modem, http):
        both: list[list[str]] = []

        def cancel_with_two(_done: int, _total: int | None) -> None:
            if not both and len(scratch_files(sim)) == 2:
                both.append(scratch_files(sim))
                task.cancel()

        task = asyncio.create_task(
            http.fetch(server.url("/fw.bin"), dest, progress=cancel_with_two)
        )
        with pytest.raises(asyncio.CancelledError):
            await task
        assert both == [["RAM:cphttp.bin", "RAM:cphttp2.bin"]]
        await modem.channel.command("AT")  # answers owed to the cancelled task have come
        assert_module_clean(sim)
        kept = (tmp_path / "fw.bin.part").stat().st_size
        result = await http.fetch(server.url("/fw.bin"), dest)
        assert_module_clean(sim)
    assert dest.read_bytes() == content and result.resumed_from == kept > 0


async def test_a_download_cancelled_while_the_piece_ahead_waits_for_the_server_stops_it(
    server: FileServer, tmp_path: Path
) -> None:
    server.files["/fw.bin"] = image(40 * KIB, seed=18)
    async with module_http(HttpSettings(piece_size=16 * KIB), latency=0.5) as (sim, modem, h):
        waiting: list[bool] = []

        def cancel_while_waiting(_done: int, _total: int | None) -> None:
            if not waiting:
                waiting.append(sim.module.http_busy)  # the next piece's GET is out
                task.cancel()

        url = server.url("/fw.bin")
        task = asyncio.create_task(h.fetch(url, tmp_path / "fw.bin", progress=cancel_while_waiting))
        with pytest.raises(asyncio.CancelledError):
            await task
        await modem.channel.command("AT")
        assert waiting == [True]
        assert "AT+QHTTPSTOP" in sim.module.log
        assert_module_clean(sim)


async def test_without_room_for_two_pieces_the_piece_ahead_is_written_in_its_turn(
    server: FileServer, tmp_path: Path
) -> None:
    content = image(40 * KIB, seed=19)
    server.files["/fw.bin"] = content
    profile = ModuleProfile(ram_size=40 * KIB)
    seen: set[int] = set()
    async with module_http(HttpSettings(piece_size=16 * KIB), profile=profile) as (sim, _m, http):
        await http.fetch(
            server.url("/fw.bin"),
            tmp_path / "fw.bin",
            progress=lambda _done, _total: seen.add(len(scratch_files(sim))),
        )
        log = sim.module.log
        assert_module_clean(sim)
    assert (tmp_path / "fw.bin").read_bytes() == content
    assert seen == {1}
    assert before_close(log, "AT+QHTTPGET") == [0, 0, 1]  # still asked for ahead
    assert before_close(log, "AT+QHTTPREADFILE") == [0, 1, 2]


async def test_an_upload_waiting_for_the_http_client_goes_between_two_pieces(
    server: FileServer, tmp_path: Path
) -> None:
    content = image(40 * KIB, seed=20)
    server.files["/fw.bin"] = content
    settings = HttpSettings(piece_size=8 * KIB, chunk=1 * KIB)
    async with module_http(settings, baud=115200) as (sim, _modem, http):
        uploads: list[asyncio.Task[int]] = []

        def upload_once(_done: int, _total: int | None) -> None:
            if not uploads:
                uploads.append(asyncio.create_task(http.upload(server.url("/up"), "d.gz", b"d")))

        result = await http.fetch(server.url("/fw.bin"), tmp_path / "fw.bin", progress=upload_once)
        assert await uploads[0] == 201
        assert_module_clean(sim)
    assert (tmp_path / "fw.bin").read_bytes() == content and result.pieces == 5
    # The first piece was being read when the upload came: it goes once the second is in.
    assert [m for m, _, _ in server.requests] == ["GET", "GET", "POST", "GET", "GET", "GET"]


async def test_a_request_with_its_own_header_gets_connect_only_once_the_server_is_connected(
    tmp_path: Path,
) -> None:
    # Seed 000 §2.3: with "requestheader" 1, CONNECT says the server connection is up; a server
    # that cannot be reached fails the command itself, and the host sends no request at all.
    accepted: list[bytes] = []  # what the module had said by the time the server accepted

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(sim.transcript.bytes("module") if sim.transcript else b"")
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, module_http(record=True, latency=0.05) as (sim, modem, _http):
        at = modem.channel
        await at.command('AT+QHTTPCFG="requestheader",1')
        for url, status in ((f"http://127.0.0.1:{port}/a", "OK"), ("http://127.0.0.1:9/a", None)):
            answer = await at.command_with_data(f"AT+QHTTPURL={len(url)},30", url.encode())
            assert answer.result.text == "OK"
            request = f"GET /a HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
            before = len(sim.transcript.bytes("host")) if sim.transcript else 0
            answer = await at.command_with_data(f"AT+QHTTPGET=30,{len(request)},30", request)
            sent = sim.transcript.bytes("host")[before:] if sim.transcript else b""
            if status == "OK":
                assert answer.result.text == "OK" and sent.endswith(request)
                await at.command("AT+QHTTPSTOP")  # its response is not wanted here
            else:  # refused: 716 in place of CONNECT (verbose, AT+CMEE=2), the request not sent
                assert answer.result.text == "+CME ERROR: HTTP(S) socket connect error"
                assert request not in sent
    assert len(accepted) == 1 and accepted[0].count(b"CONNECT\r\n") == 1  # only QHTTPURL's
