"""FTP(S) file transfers: driver ⇄ real pty ⇄ simulator ⇄ ftplib ⇄ a real FTP(S) server on
127.0.0.1 (pyftpdlib, tests/ftp_server.py), and the host link's ftplib client against the same
server. Downloads from the last good byte after a cut connection, a killed server or a
restart; uploads into the location's directory; each failure a specific, advising error; the
location's password in no log line."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST
from tests.ftp_server import PASSWORD, TLS_AVAILABLE, Cut, FtpServer, TlsFiles
from tests.pki import make_pki
from transport.errors import (
    FtpFileUnavailable,
    FtpLoginFailed,
    FtpReplyError,
    TransferError,
    UnsupportedLocation,
)
from transport.ftp import FtpClient, FtpLocation, parse_location
from transport.http import Location, redact_url
from transport.modems.host_ftp import HostFtp
from transport.modems.quectel import QuectelModem, open_quectel
from transport.modems.quectel_ftp import FTP_ERRORS, FtpSettings, ModuleFtpError, QuectelFtp
from transport.simulator import ModuleProfile, QuectelModule, SimulatorShell
from transport.simulator.quectel_ftp import FtpAction, FtpConnect, FtpEvent, FtpOperation

KIB = 1024


def image(size: int, seed: int = 5) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def server() -> Iterator[FtpServer]:
    with FtpServer() as s:
        yield s


@contextlib.asynccontextmanager
async def module_ftp(
    settings: FtpSettings | None = None, profile: ModuleProfile | None = None, **shell: Any
) -> AsyncIterator[tuple[SimulatorShell, QuectelModem, QuectelFtp]]:
    async with (
        SimulatorShell(QuectelModule(profile), **shell) as sim,
        open_quectel(sim.path, shell.get("baud") or 115200, FAST) as modem,
    ):
        await modem.bring_up()
        yield sim, modem, modem.ftp(settings or FtpSettings(response_time=20))


@contextlib.asynccontextmanager
async def client(carrier: str) -> AsyncIterator[FtpClient]:
    """The module's FTP client or the host's, for tests that hold for both."""
    if carrier == "host":
        yield HostFtp(timeout=10)
        return
    async with module_ftp() as (_sim, _modem, ftp):
        yield ftp


def ftp_commands(sim: SimulatorShell) -> list[str]:
    return [c for c in sim.module.log if c.startswith("AT+QFTP")]


# -- locations --


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "ftp://cp:pw@files.example:2121/fw/image.bin",
            dict(
                secure=False,
                host="files.example",
                port=2121,
                user="cp",
                password="pw",
                directory="fw",
                name="image.bin",
            ),
        ),
        (
            "ftps://files.example/image.bin",
            dict(secure=True, port=21, user="anonymous", directory="", name="image.bin"),
        ),
        (
            "ftp://u%40corp:p%3Aw%2F@h/%2Fsrv/fw%20v2/a.bin;type=i",
            dict(user="u@corp", password="p:w/", directory="/srv/fw v2", name="a.bin"),
        ),
        ("ftp://h/diag/", dict(upload_directory="diag", file_name="download")),
        ("ftp://h/", dict(upload_directory="", directory="")),
    ],
)
def test_ftp_locations_are_taken_apart_as_rfc_1738_says(url: str, expected: dict[str, Any]) -> None:
    where = FtpLocation.parse(url)
    for name, value in expected.items():
        assert getattr(where, name) == value, name
    assert "password=" not in repr(where) and "url=" not in repr(where)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("gopher://h/fw.bin", "http, https, ftp and ftps"),
        ("/local/fw.bin", "a bare path"),
        ("ftp:///fw.bin", "no host"),
        ("ftp://h:99999/fw.bin", "port"),
        ("ftp://h/fw.bin%0D%0ADELE%20x", "line break"),
        ("ftp://h/fw.bin?x=1", "query"),
    ],
)
def test_unusable_locations_are_refused_clearly(url: str, words: str) -> None:
    with pytest.raises(UnsupportedLocation, match=words):
        parse_location(url)


def test_http_locations_stay_with_the_http_client_and_passwords_are_hidden() -> None:
    assert isinstance(parse_location("https://a:b@h/x"), Location)
    assert isinstance(parse_location("FTP://h/x"), FtpLocation)
    assert redact_url("see ftp://cp:s3cret@h/x and https://tok@h/y") == (
        "see ftp://cp:***@h/x and https://***@h/y"
    )
    where = FtpLocation.parse("ftp://cp:s3cret@h/x")
    assert "s3cret" not in repr(where) and "s3cret" not in where.shown


def test_every_6xx_code_has_a_meaning_and_advice() -> None:
    assert sorted(FTP_ERRORS) == list(range(601, 632))
    for code, (meaning, advice, _retry) in FTP_ERRORS.items():
        text = str(ModuleFtpError(code, "RETR fw.bin", "ftp://h/fw.bin"))
        assert str(code) in text and meaning in text and advice in text and advice


# -- downloads through the module --


async def test_a_download_larger_than_the_ram_disk_goes_through_ufs_byte_exact(
    server: FtpServer, tmp_path: Path
) -> None:
    content = image(700 * KIB) + b"\r\nOK\r\n\r\n+QFTPGET: 0,1\r\n" + image(1000, seed=6)
    server.files["/fw/image.bin"] = content
    async with module_ftp() as (sim, modem, ftp):
        result = await ftp.fetch(
            server.url("/fw/image.bin"),
            tmp_path / "image.bin",
            sha256=hashlib.sha256(content).hexdigest(),
        )
        assert modem.channel.stats.noise_lines == 0
        commands = ftp_commands(sim)
    assert (tmp_path / "image.bin").read_bytes() == content
    assert result.size == len(content) and result.pieces == 1
    assert 'AT+QFTPGET="image.bin","UFS:cpftp.bin",0' in commands
    assert commands[-1] == "AT+QFTPCLOSE"
    assert not (tmp_path / "image.bin.part").exists()
    assert not (tmp_path / "image.bin.part.json").exists()


async def test_cut_and_killed_transfers_resume_from_the_last_good_byte(
    server: FtpServer, tmp_path: Path
) -> None:
    content = image(300 * KIB, seed=9)
    server.files["/fw/image.bin"] = content
    # The data connection cut after 100 KiB (426), then at once (426), then the whole server
    # gone 50 KiB later (no answer at all): each attempt starts where the last one stopped.
    server.cuts = [Cut(100 * KIB), Cut(0), Cut(50 * KIB, kill=True)]
    async with module_ftp() as (sim, _modem, ftp):
        result = await ftp.fetch(server.url("/fw/image.bin"), tmp_path / "image.bin")
        gets = [c for c in ftp_commands(sim) if c.startswith("AT+QFTPGET")]
    assert (tmp_path / "image.bin").read_bytes() == content
    assert result.pieces == 4
    assert server.sent("REST") == [str(100 * KIB), str(100 * KIB), str(150 * KIB)]
    assert [g.rpartition(",")[2] for g in gets] == [
        "0",
        str(100 * KIB),
        str(100 * KIB),
        str(150 * KIB),
    ]


async def test_a_download_resumes_after_a_restart(server: FtpServer, tmp_path: Path) -> None:
    content = image(200 * KIB, seed=3)
    server.files["/fw/image.bin"] = content
    dest = tmp_path / "image.bin"
    # 64 KiB arrive, then every attempt is cut at once: after three in a row that bring
    # nothing, the fetch gives up.
    server.cuts = [Cut(64 * KIB), Cut(0), Cut(0), Cut(0)]
    async with module_ftp() as (_sim, _modem, ftp):
        with pytest.raises(FtpReplyError) as caught:
            await ftp.fetch(server.url("/fw/image.bin"), dest)
    assert caught.value.reply == 426 and server.cuts == []
    assert (tmp_path / "image.bin.part").stat().st_size == 64 * KIB
    saved = json.loads((tmp_path / "image.bin.part.json").read_text())
    assert saved["total"] == len(content) and saved["validator"]  # SIZE and MDTM
    assert PASSWORD not in json.dumps(saved) and "***" in saved["url"]
    with server.lock:
        server.commands.clear()
    # A new module session (the daemon restarted): it goes on from the bytes kept.
    async with module_ftp() as (_sim, _modem, ftp):
        result = await ftp.fetch(server.url("/fw/image.bin"), dest)
    assert dest.read_bytes() == content
    assert result.resumed_from == 64 * KIB and result.pieces == 1
    assert server.sent("REST") == [str(64 * KIB)]


async def test_a_file_changed_on_the_server_is_fetched_anew_not_spliced(
    server: FtpServer, tmp_path: Path
) -> None:
    old = image(100 * KIB, seed=1)
    server.files["/fw.bin"] = old
    dest = tmp_path / "fw.bin"
    server.cuts = [Cut(40 * KIB), Cut(0), Cut(0), Cut(0)]
    host = HostFtp(timeout=10)
    with pytest.raises(TransferError):
        await host.fetch(server.url("/fw.bin"), dest)
    assert server.cuts == []
    # Same size, another content, another modification time: SIZE alone would be fooled,
    # SIZE with MDTM is not.
    new = image(100 * KIB, seed=2)
    server.files["/fw.bin"] = new
    stamp = os.stat(server.files.path("/fw.bin")).st_mtime - 3600
    os.utime(server.files.path("/fw.bin"), (stamp, stamp))
    with server.lock:
        server.commands.clear()
    result = await host.fetch(server.url("/fw.bin"), dest)
    assert dest.read_bytes() == new
    assert result.resumed_from == 40 * KIB  # what was there when the fetch began...
    assert server.sent("REST") == []  # ...and thrown away


@pytest.mark.parametrize("carrier", ["module", "host"])
async def test_a_wrong_password_is_a_login_error_that_does_not_show_it(
    server: FtpServer, tmp_path: Path, carrier: str
) -> None:
    server.files["/fw.bin"] = b"x" * 100
    async with client(carrier) as ftp:
        with pytest.raises(FtpLoginFailed) as caught:
            await ftp.fetch(server.url("/fw.bin", password="not-the-pw-123"), tmp_path / "fw")
    text = str(caught.value)
    assert "530" in text and "check the user and password" in text
    assert "not-the-pw-123" not in text and "ftp://cp-test:***@127.0.0.1" in text


@pytest.mark.parametrize("carrier", ["module", "host"])
async def test_a_missing_file_is_file_unavailable(
    server: FtpServer, tmp_path: Path, carrier: str
) -> None:
    async with client(carrier) as ftp:
        with pytest.raises(FtpFileUnavailable) as caught:
            await ftp.fetch(server.url("/fw/missing.bin"), tmp_path / "x.bin")
    assert caught.value.reply == 550 and "check the path" in str(caught.value)
    assert not (tmp_path / "x.bin").exists()


@pytest.mark.parametrize("carrier", ["module", "host"])
async def test_no_server_on_the_port_is_a_clear_error(tmp_path: Path, carrier: str) -> None:
    with FtpServer() as gone:
        url = gone.url("/fw.bin")
    async with client(carrier) as ftp:
        with pytest.raises(TransferError) as caught:
            await ftp.fetch(url, tmp_path / "x.bin")
    expected = "605 (Network error)" if carrier == "module" else "cannot connect"
    assert expected in str(caught.value)


async def test_a_rest_too_big_for_the_module_storage_is_refused_clearly(
    server: FtpServer, tmp_path: Path
) -> None:
    server.files["/big.bin"] = image(200 * KIB)
    profile = ModuleProfile(ufs_size=128 * KIB, ram_size=64 * KIB)
    async with module_ftp(profile=profile) as (sim, _modem, ftp):
        with pytest.raises(TransferError, match="do not fit the module's storage"):
            await ftp.fetch(server.url("/big.bin"), tmp_path / "big.bin")
        assert not any(c.startswith("AT+QFTPGET") for c in ftp_commands(sim))


async def test_a_session_a_previous_run_left_open_is_closed_first(
    server: FtpServer, tmp_path: Path
) -> None:
    server.files["/fw.bin"] = image(10 * KIB)
    async with module_ftp() as (sim, modem, ftp):
        opened: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        modem.channel.subscribe(
            "+QFTPOPEN:", lambda urc: opened.done() or opened.set_result(urc.text)
        )
        await modem.channel.command(
            f'AT+QFTPCFG="account","cp-test","{PASSWORD}"', log_as="AT+QFTPCFG account"
        )
        await modem.channel.command(f'AT+QFTPOPEN="127.0.0.1",{server.port}')
        assert await opened == "+QFTPOPEN: 0,0"  # a session open and idle, nobody using it
        await ftp.fetch(server.url("/fw.bin"), tmp_path / "fw.bin")
        opens = [c for c in ftp_commands(sim) if c.startswith(("AT+QFTPOPEN", "AT+QFTPCLOSE"))]
    assert opens[-4:] == [
        f'AT+QFTPOPEN="127.0.0.1",{server.port}',  # refused: 603, a session is there
        "AT+QFTPCLOSE",
        f'AT+QFTPOPEN="127.0.0.1",{server.port}',
        "AT+QFTPCLOSE",
    ]
    assert (tmp_path / "fw.bin").read_bytes() == server.files["/fw.bin"]


async def test_the_password_never_reaches_a_log(
    server: FtpServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.files["/fw.bin"] = image(20 * KIB)
    server.cuts = [Cut(5 * KIB)]
    async with module_ftp() as (sim, _modem, ftp):
        await ftp.fetch(server.url("/fw.bin"), tmp_path / "fw.bin")
        assert any(PASSWORD in c for c in sim.module.log)  # the module got it...
    assert 'AT+QFTPCFG="account","cp-test","***"' in caplog.text  # ...the log did not
    assert PASSWORD not in caplog.text


# -- uploads --


@pytest.mark.parametrize("size", [300, 60 * KIB])
async def test_upload_goes_into_the_location_directory(server: FtpServer, size: int) -> None:
    server.mkdir("/upload/diag")
    data = image(size, seed=size)
    async with module_ftp() as (sim, _modem, ftp):
        stored = await ftp.upload(server.url("/upload/diag/"), "diag.tar.gz", data)
        commands = sim.module.log
    assert stored == size
    assert [(u.path, u.data) for u in server.uploads] == [("/upload/diag/diag.tar.gz", data)]
    # One AT+QFUPL with its checksum when the archive fits a chunk, AT+QFWRITE pieces beyond.
    assert any(c.startswith("AT+QFUPL") for c in commands) == (size <= 4096)
    assert any(c.startswith("AT+QFWRITE") for c in commands) == (size > 4096)
    assert 'AT+QFTPPUT="diag.tar.gz","UFS:cpftpup.bin",0' in commands


@pytest.mark.parametrize("carrier", ["module", "host"])
async def test_upload_to_a_missing_directory_fails_clearly(server: FtpServer, carrier: str) -> None:
    async with client(carrier) as ftp:
        with pytest.raises(FtpFileUnavailable) as caught:
            await ftp.upload(server.url("/files/failedLocation"), "d.tar.gz", b"x" * 10)
    assert "CWD files/failedLocation" in str(caught.value)
    assert server.uploads == []


async def test_host_client_resumes_and_uploads(server: FtpServer, tmp_path: Path) -> None:
    content = image(150 * KIB, seed=8)
    server.files["/fw.bin"] = content
    server.cuts = [Cut(33 * KIB), Cut(20 * KIB, kill=True)]
    host = HostFtp(timeout=10)
    result = await host.fetch(server.url("/fw.bin"), tmp_path / "fw.bin")
    assert (tmp_path / "fw.bin").read_bytes() == content and result.pieces == 3
    assert server.sent("REST") == [str(33 * KIB), str(53 * KIB)]
    assert await host.upload(server.url("/"), "d.gz", b"abc") == 3
    assert [(u.path, u.data) for u in server.uploads] == [("/d.gz", b"abc")]


# -- FTPS --


@pytest.mark.skipif(not TLS_AVAILABLE, reason="pyftpdlib's FTPS needs pyOpenSSL")
async def test_ftps_through_the_module_and_the_host(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    content = image(90 * KIB, seed=12)
    tls = TlsFiles(pki.server.cert, pki.server.key)
    # The server insists on TLS for the control and the data connections (RFC 4217).
    with FtpServer(tls=tls) as server:
        server.files["/fw/image.bin"] = content
        server.mkdir("/upload")
        url = server.url("/fw/image.bin")
        assert url.startswith("ftps://")
        settings = FtpSettings(ca_file=pki.ca, response_time=20)
        async with module_ftp(settings) as (sim, _modem, ftp):
            await ftp.fetch(url, tmp_path / "m.bin")
            await ftp.upload(server.url("/upload/"), "d.tar.gz", b"diag" * 100)
            commands = sim.module.log
        assert (tmp_path / "m.bin").read_bytes() == content
        assert 'AT+QFTPCFG="ssltype",2' in commands
        assert 'AT+QSSLCFG="cacert",3,"UFS:cpftpca.pem"' in commands
        assert server.sent("AUTH") == ["TLS", "TLS"]  # the download's session, the upload's
        assert server.sent("PROT") == ["P", "P"]
        assert server.uploads[-1].data == b"diag" * 100
        # A CA that does not vouch for the server: the module's 631.
        wrong = FtpSettings(ca_file=pki.untrusted_ca, response_time=20)
        async with module_ftp(wrong) as (_sim, _modem, ftp):
            with pytest.raises(ModuleFtpError) as caught:
                await ftp.fetch(url, tmp_path / "w.bin")
        assert caught.value.code == 631 and "firmware.ca_file" in str(caught.value)
        # The host stack does the same with the same CA.
        await HostFtp(ca_file=pki.ca, timeout=10).fetch(url, tmp_path / "h.bin")
        assert (tmp_path / "h.bin").read_bytes() == content
        with pytest.raises(TransferError, match="certificate was rejected"):
            await HostFtp(ca_file=pki.untrusted_ca, timeout=10).fetch(url, tmp_path / "x.bin")


# -- the simulator's FTP commands, without a network --


class ScriptedNetwork:
    """Stands in for the simulator's ftplib threads: records what the module asks for and
    hands back the events a test scripts."""

    def __init__(self) -> None:
        self.actions: list[FtpAction] = []
        self.pending: list[FtpEvent] = []

    def submit(self, action: FtpAction) -> None:
        self.actions.append(action)

    def events(self) -> list[FtpEvent]:
        found, self.pending = self.pending, []
        return found

    def abort_transfer(self, session: int) -> None:
        pass

    def abort(self, session: int) -> None:
        pass


class Module:
    """A QuectelModule driven by hand: a command in, what it answered out."""

    def __init__(self) -> None:
        self.module = QuectelModule()
        self.network = ScriptedNetwork()
        self.module.ftp_network = self.network  # type: ignore[assignment]
        self.now = 0.0
        self.module.tick(self.now)
        self.module.take_output()
        for command in ("ATE0", 'AT+QICSGP=1,1,"internet"', "AT+QIACT=1"):
            self.send(command)

    def send(self, command: str) -> str:
        self.module.receive(command.encode() + b"\r", self.now)
        self.module.take_actions()
        return b"".join(self.module.take_output()).decode("latin-1")

    def event(self, **fields: Any) -> str:
        action = self.network.actions[-1]
        self.network.pending.append(FtpEvent(action.session, action.request_id, **fields))
        self.now += 0.01
        self.module.tick(self.now)
        return b"".join(self.module.take_output()).decode("latin-1")


def test_simulated_ftp_session_answers_as_the_manual_shows() -> None:
    m = Module()
    assert m.send('AT+QFTPCFG="rsptimeout",10') == "\r\n+CME ERROR: 610\r\n"
    assert m.send('AT+QFTPCFG="account","u","p"') == "\r\nOK\r\n"
    assert m.send('AT+QFTPSIZE="a"') == "\r\n+CME ERROR: 606\r\n"  # no session
    assert m.send('AT+QFTPOPEN="h",21') == "\r\nOK\r\n"
    assert isinstance(m.network.actions[-1], FtpConnect)
    assert m.network.actions[-1].user == "u" and m.network.actions[-1].password == "p"
    assert m.module.next_deadline() is not None  # polls the network while waiting
    assert m.send('AT+QFTPOPEN="h",21') == "\r\n+CME ERROR: 603\r\n"  # busy
    assert m.event(kind="done") == "\r\n+QFTPOPEN: 0,0\r\n"
    assert m.module.next_deadline() is None
    assert m.send("AT+QFTPSTAT") == "\r\n+QFTPSTAT: 0,1\r\n\r\nOK\r\n"
    # A download into a module file, broken by the server after 5 bytes: they stay.
    assert m.send('AT+QFTPGET="a.bin","RAM:a.bin",7') == "\r\nOK\r\n"
    get = m.network.actions[-1]
    assert isinstance(get, FtpOperation) and (get.kind, get.offset) == ("retr", 7)
    assert m.send("AT+QFTPSTAT") == "\r\n+QFTPSTAT: 0,2\r\n\r\nOK\r\n"
    assert m.send('AT+QFTPSIZE="a"') == "\r\n+CME ERROR: 603\r\n"  # one operation at a time
    assert m.event(kind="data", data=b"12345") == ""
    assert m.send("AT+QFTPLEN") == "\r\n+QFTPLEN: 0,5\r\n\r\nOK\r\n"
    assert m.event(kind="failed", error=616, reply=426) == "\r\n+QFTPGET: 616,426\r\n"
    assert m.send('AT+QFLST="RAM:a.bin"') == '\r\n+QFLST: "RAM:a.bin",5\r\n\r\nOK\r\n'
    assert m.send('AT+QFTPMDTM="a.bin"') == "\r\nOK\r\n"
    assert m.event(kind="done", value="20260101120000") == '\r\n+QFTPMDTM: 0,"20260101120000"\r\n'
    # Closing is asynchronous: busy until its URC (§9.14).
    assert m.send("AT+QFTPCLOSE") == "\r\nOK\r\n"
    assert m.send('AT+QFTPCWD="/"') == "\r\n+CME ERROR: 603\r\n"
    assert m.event(kind="done") == "\r\n+QFTPCLOSE: 0,0\r\n"
    assert m.send("AT+QFTPSTAT") == "\r\n+QFTPSTAT: 0,4\r\n\r\nOK\r\n"
    # Forms this simulator does not model say so.
    assert m.send('AT+QFTPGET="a.bin","COM:",0,10') == "\r\nERROR\r\n"
