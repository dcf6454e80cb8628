"""File transfers through the module: driver ⇄ real pty ⇄ simulator ⇄ real HTTP(S) server on
127.0.0.1 (transport/simulator/file_server.py). Firmware-sized downloads in Range pieces,
resumes, servers without Range, uploads, and each failure ending in its specific, advising
error."""

from __future__ import annotations

import contextlib
import hashlib
import random
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.conftest import FAST
from transport.errors import HttpStatusError, TransferCorrupt, TransferError
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
