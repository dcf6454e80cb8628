"""Firmware Management and Diagnostics end to end (OCPP 1.6 §5.9, §5.19, §4.4-4.5; OCTT 2.18
TC_044_1/2/3 and 2.19 TC_045_1/2), named by case id, against both CSMS peers and over both
file transfer schemes: the daemon on a simulated module of either family, files through the
module's HTTP commands from a real HTTP server (transport/simulator/file_server.py) or through
its FTP commands from a real FTP server (tests/ftp_server.py, with a user and password in the
location; Quectel only, the Wi-Fi module has no FTP), a real installer process. The FTP
variants assert the same frames as the HTTP ones."""

from __future__ import annotations

import asyncio
import io
import logging
import random
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.ftp_server import PASSWORD as FTP_PASSWORD
from tests.ftp_server import Cut, FtpServer
from tests.harness import FAMILIES, STACKS, Rig, Stack, rig, strict_failures
from transport.simulator.file_server import FileServer

KIB = 1024
NOW = "2020-01-01T00:00:00Z"  # a retrieveDate in the past: start at once

INSTALLER = """
import shutil, sys
image, target, version_file, verdict = sys.argv[1:5]
print("installing", image)
if verdict != "ok":
    print("image rejected: bad signature")
    sys.exit(3)
shutil.copyfile(image, target)
open(version_file, "w").write("2.0.0-test\\n")
"""


@pytest.fixture
def peer_kind(request: pytest.FixtureRequest) -> Stack:
    """Both CSMS peers and both module families (pytest_generate_tests)."""
    stack: Stack = request.param
    return stack


@pytest.fixture
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# FTP locations go through the Quectel module's FTP commands; the Wi-Fi module has none (its
# link does not advertise FTP), so FTP runs on Quectel with both peers, HTTP on both families.
_BY_SCHEME = [
    ("http", Stack("python", "quectel")),
    ("http", Stack("node", "simplelink")),
    ("ftp", Stack("python", "quectel")),
    ("ftp", Stack("node", "quectel")),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = set(metafunc.fixturenames)
    if "files" not in names:
        for name, values in (("peer_kind", STACKS), ("family", FAMILIES)):
            if name in names:
                metafunc.parametrize(name, values, indirect=True, ids=str)
    elif {"files", "peer_kind"} <= names:
        metafunc.parametrize(
            ("files", "peer_kind"),
            [(scheme, stack) for scheme, stack in _BY_SCHEME],
            indirect=True,
            ids=[f"{scheme}-{stack}" for scheme, stack in _BY_SCHEME],
        )
    elif {"files", "family"} <= names:
        pairs = [(scheme, stack.family) for scheme, stack in _BY_SCHEME[:3]]
        metafunc.parametrize(
            ("files", "family"),
            pairs,
            indirect=True,
            ids=[f"{scheme}-{family}" for scheme, family in pairs],
        )


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as s:
        yield s


@dataclass
class Stored:
    file_name: str
    data: bytes


class Files:
    """Where the CSMS's locations point: the HTTP file server or the FTP server, one face."""

    def __init__(self, server: FileServer | FtpServer) -> None:
        self.server = server

    @property
    def scheme(self) -> str:
        return "ftp" if isinstance(self.server, FtpServer) else "http"

    def put(self, path: str, data: bytes) -> str:
        """Serve ``data`` at ``path``; its location."""
        self.server.files[path] = data
        return self.server.url(path)

    def missing(self, path: str) -> str:
        return self.server.url(path)

    def upload_location(self, path: str) -> str:
        """A location uploads go to: an HTTP URL taking POSTs, an existing FTP directory."""
        if isinstance(self.server, FtpServer):
            self.server.mkdir(path)
            return self.server.url(path + "/")
        return self.server.url(path)

    def failing_upload_location(self) -> str:
        """A location every upload to fails: a POST answered 500, a directory not there."""
        if isinstance(self.server, FtpServer):
            return self.server.url("/files/failedLocation")
        self.server.fail_uploads = 1
        return self.server.url("/files/failedLocation")

    @property
    def uploads(self) -> list[Stored]:
        return [Stored(u.file_name, u.data) for u in self.server.uploads]


@pytest.fixture
def files(request: pytest.FixtureRequest) -> Iterator[Files]:
    store: FileServer | FtpServer = FtpServer() if request.param == "ftp" else FileServer()
    with store:
        yield Files(store)


def password_in_logs(caplog: pytest.LogCaptureFixture, files: Files) -> list[str]:
    """The charge point's loggers whose records show the FTP password (none may: the OCPP
    frame log hides it too, charge_point.redact). The test CSMS's own loggers are not ours."""
    if files.scheme == "ftp":  # the module was given the account, the log shows it masked
        assert 'AT+QFTPCFG="account","cp-test","***"' in caplog.text
    return sorted(
        {
            r.name
            for r in caplog.records
            if FTP_PASSWORD in r.getMessage() and not r.name.startswith("websockets.server")
        }
    )


def firmware_config(tmp_path: Path, verdict: str = "ok", **extra: Any) -> dict[str, Any]:
    script = tmp_path / "install.py"
    script.write_text(INSTALLER)
    return {
        "install_command": [
            sys.executable,
            str(script),
            "{image}",
            str(tmp_path / "installed.bin"),
            str(tmp_path / "version"),
            verdict,
        ],
        "version_file": str(tmp_path / "version"),
        "piece_size": 32 * KIB,
        # Plain UpdateFirmware at security profile 1 (the rig's Basic auth over ws://): allowed
        # explicitly; by default a charge point with a security profile answers NotSupported
        # (whitepaper L01.FR.20, tests/test_signed_firmware.py).
        "unsigned_updates": "allowed",
        **extra,
    }


def statuses(r: Rig, action: str) -> list[str]:
    return [c["status"] for c in r.calls(action)]


async def wait_status(r: Rig, action: str, status: str, timeout: float = 60) -> None:
    def seen(_: Any) -> bool:
        return status in statuses(r, action)

    await r.peer.wait_for(seen, timeout)


def no_strict_failures(r: Rig) -> None:
    assert strict_failures(r.peer) == []


# -- 2.18 Firmware Management --


async def test_tc_044_1_cs_firmware_update_download_and_install(
    peer_kind: Stack, files: Files, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    image = random.Random(1).randbytes(200 * KIB)
    location = files.put("/fw/cp-2.0.0.bin", image)
    async with rig(peer_kind, firmware=firmware_config(tmp_path)) as r:
        boots_before = len(r.calls("BootNotification"))
        assert (
            await r.peer.call("UpdateFirmware", {"location": location, "retrieveDate": NOW}) == {}
        )
        # Installed, the daemon restarts itself (the reboot hook's default).
        await r.wait_stopped()
        assert statuses(r, "FirmwareStatusNotification") == [
            "Downloading",
            "Downloaded",
            "Installing",
        ]
        assert (tmp_path / "installed.bin").read_bytes() == image
        await r.restart()
        await wait_status(r, "FirmwareStatusNotification", "Installed")
        boot = r.calls("BootNotification")[-1]
        assert len(r.calls("BootNotification")) == boots_before + 1
        assert boot["firmwareVersion"] == "2.0.0-test"
        # Steps 9-13: BootNotification, StatusNotification Available, then Installed.
        frames = [
            (c["method"], c["params"])
            for c in r.peer.calls()
            if c["method"]
            in ("BootNotification", "StatusNotification", "FirmwareStatusNotification")
        ]
        last_boot = max(i for i, (m, _) in enumerate(frames) if m == "BootNotification")
        after = frames[last_boot:]
        installed = after.index(("FirmwareStatusNotification", {"status": "Installed"}))
        assert any(
            m == "StatusNotification" and p["status"] == "Available" for m, p in after[:installed]
        )
        # The update is over: a trigger now answers Idle (§4.5).
        await r.peer.call("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
        await wait_status(r, "FirmwareStatusNotification", "Idle")
        no_strict_failures(r)
    assert password_in_logs(caplog, files) == []


async def test_tc_044_2_cs_firmware_update_download_failed(
    peer_kind: Stack, files: Files, tmp_path: Path
) -> None:
    async with rig(peer_kind, firmware=firmware_config(tmp_path)) as r:
        await r.peer.call(
            "UpdateFirmware",
            {
                "location": files.missing("/download_fail.fwi"),  # 404 / 550
                "retrieveDate": NOW,
                "retries": 0,
            },
        )
        await wait_status(r, "FirmwareStatusNotification", "DownloadFailed")
        assert statuses(r, "FirmwareStatusNotification") == ["Downloading", "DownloadFailed"]
        # The old firmware stays, the charge point is Available for charging.
        await r.charging(1)
        assert not (tmp_path / "installed.bin").exists()
        no_strict_failures(r)


async def test_download_failed_after_retries_on_404(
    peer_kind: Stack, server: FileServer, tmp_path: Path
) -> None:
    async with rig(peer_kind, firmware=firmware_config(tmp_path)) as r:
        await r.peer.call(
            "UpdateFirmware",
            {
                "location": server.url("/fw/missing.bin"),
                "retrieveDate": NOW,
                "retries": 2,
                "retryInterval": 0,
            },
        )
        await wait_status(r, "FirmwareStatusNotification", "DownloadFailed")
        assert len(server.gets()) == 3  # the first attempt and two retries


async def test_tc_044_3_cs_firmware_update_installation_failed(
    peer_kind: Stack, files: Files, tmp_path: Path
) -> None:
    location = files.put("/fw/bad.bin", b"not a firmware image" * 100)
    async with rig(peer_kind, firmware=firmware_config(tmp_path, verdict="bad")) as r:
        await r.peer.call("UpdateFirmware", {"location": location, "retrieveDate": NOW})
        await wait_status(r, "FirmwareStatusNotification", "InstallationFailed")
        assert statuses(r, "FirmwareStatusNotification") == [
            "Downloading",
            "Downloaded",
            "Installing",
            "InstallationFailed",
        ]
        await r.wait_status(1, "Available")
        await r.charging(1)  # the charge point goes on with its old firmware
        no_strict_failures(r)


async def test_installation_waits_for_the_running_transaction(
    server: FileServer, tmp_path: Path
) -> None:
    server.files["/fw/fw.bin"] = random.Random(2).randbytes(40 * KIB)
    async with rig("node", firmware=firmware_config(tmp_path)) as r:
        await r.charging(1)
        await r.peer.call(
            "UpdateFirmware", {"location": server.url("/fw/fw.bin"), "retrieveDate": NOW}
        )
        await wait_status(r, "FirmwareStatusNotification", "Downloaded")
        # The free connector goes Unavailable, the charging one goes on (§5.19).
        await r.wait_status(2, "Unavailable")
        assert "Installing" not in statuses(r, "FirmwareStatusNotification")
        await r.peer.call("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
        await r.wait_calls("FirmwareStatusNotification", 3)
        assert statuses(r, "FirmwareStatusNotification")[-1] == "Downloaded"
        r.charger.unplug(1)
        await r.wait_stopped()
        assert statuses(r, "FirmwareStatusNotification")[-1] == "Installing"
        assert len(r.calls("StopTransaction")) == 1


async def test_two_mib_download_while_the_csms_keeps_calling(
    files: Files, family: str, tmp_path: Path
) -> None:
    # At 921600 baud (a fast UART; bench.firmware does 115200), every call the CSMS makes
    # during the download is answered within its timeout: HTTP pieces and the FTP client's
    # file are both pulled in AT+QFREAD chunks, interleaved with the OCPP socket's commands.
    # The Wi-Fi module carries the body as base64 text, 1460 bytes a command: a quarter of the
    # image keeps the download several seconds long, as the check needs, at a quarter the time.
    size = 2 * 1024 * KIB if family == "quectel" else 512 * KIB
    image = random.Random(3).randbytes(size)
    location = files.put("/fw/big.bin", image)
    config = firmware_config(tmp_path, piece_size=64 * KIB)
    stack = Stack("python", family)
    async with rig(stack, firmware=config, sim_options={"baud": 921600}) as r:
        await r.peer.call("UpdateFirmware", {"location": location, "retrieveDate": NOW})
        await wait_status(r, "FirmwareStatusNotification", "Downloading")
        answered = 0
        while "Downloaded" not in statuses(r, "FirmwareStatusNotification"):
            # Each call raises if it is not answered within 5 s.
            reply = await r.peer.call("GetConfiguration", {"key": ["HeartbeatInterval"]}, timeout=5)
            assert reply["configurationKey"][0]["key"] == "HeartbeatInterval"
            answered += 1
            await asyncio.sleep(0.2)  # a busy CSMS: five calls a second
        assert answered >= 10
        await r.wait_stopped()
        assert (tmp_path / "installed.bin").read_bytes() == image


async def test_an_interrupted_download_resumes_on_the_next_update(
    server: FileServer, family: str, tmp_path: Path
) -> None:
    image = random.Random(4).randbytes(160 * KIB)
    server.files["/fw/fw.bin"] = image
    async with rig(Stack("python", family), firmware=firmware_config(tmp_path)) as r:
        # Two pieces arrive, then the server cuts every response: the attempt fails.
        server.drop_after = [None, None, 0, 0, 0, 0]
        update = {"location": server.url("/fw/fw.bin"), "retrieveDate": NOW, "retries": 0}
        await r.peer.call("UpdateFirmware", update)
        await wait_status(r, "FirmwareStatusNotification", "DownloadFailed")
        server.requests.clear()
        await r.peer.call("UpdateFirmware", update)
        await r.wait_stopped()
    assert server.gets()[0][1] == f"bytes={64 * KIB}-{96 * KIB - 1}"
    assert (tmp_path / "installed.bin").read_bytes() == image


async def test_an_interrupted_ftp_download_resumes_on_the_next_update(tmp_path: Path) -> None:
    image = random.Random(4).randbytes(160 * KIB)
    with FtpServer() as server:
        server.files["/fw/fw.bin"] = image
        async with rig("python", firmware=firmware_config(tmp_path)) as r:
            # 64 KiB arrive, then the server cuts every transfer at once: the attempt fails.
            server.cuts = [Cut(64 * KIB), Cut(0), Cut(0), Cut(0)]
            update = {"location": server.url("/fw/fw.bin"), "retrieveDate": NOW, "retries": 0}
            await r.peer.call("UpdateFirmware", update)
            await wait_status(r, "FirmwareStatusNotification", "DownloadFailed")
            with server.lock:
                server.commands.clear()
            await r.peer.call("UpdateFirmware", update)
            await r.wait_stopped()
        assert server.sent("REST") == [str(64 * KIB)]
    assert statuses(r, "FirmwareStatusNotification") == [
        "Downloading",
        "DownloadFailed",
        "Downloading",
        "Downloaded",
        "Installing",
    ]
    assert (tmp_path / "installed.bin").read_bytes() == image


# -- 2.19 Diagnostics --


def archive_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


async def test_tc_045_1_cs_get_diagnostics(
    peer_kind: Stack, files: Files, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    location = files.upload_location("/upload/diag")
    log_file = tmp_path / "chargepoint.log"
    old = (datetime.now() - timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S")
    new = (datetime.now() + timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")
    log_file.write_text(
        f"{old},000 INFO old line\n{new},000 ERROR new line\nTraceback: with its message\n"
    )
    async with rig(peer_kind, diagnostics={"log_files": [str(tmp_path / "*.log")]}) as r:
        # The window starts now: the log's old line and the boot's frames are outside it.
        start = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        answer = await r.peer.call("GetDiagnostics", {"location": location, "startTime": start})
        name = answer["fileName"]
        assert name.startswith("diagnostics-CP-TEST") and name.endswith(".tar.gz")
        await wait_status(r, "DiagnosticsStatusNotification", "Uploaded")
        assert statuses(r, "DiagnosticsStatusNotification") == ["Uploading", "Uploaded"]
        no_strict_failures(r)
    [upload] = files.uploads
    assert upload.file_name == name
    members = archive_members(upload.data)
    assert members["logs/chargepoint.log"] == b"" + (
        f"{new},000 ERROR new line\nTraceback: with its message\n".encode()
    )
    frames = members["ocpp-frames.jsonl"].decode()
    assert "GetDiagnostics" in frames and "BootNotification" not in frames  # after startTime
    assert b"password" not in members["ocpp-keys.json"]
    model = b"EC200U" if peer_kind.family == "quectel" else b"CC32"
    assert model in members["module.json"]
    assert FTP_PASSWORD not in frames  # the GetDiagnostics frame's location, redacted
    assert password_in_logs(caplog, files) == []


async def test_tc_045_2_cs_get_diagnostics_upload_failed(peer_kind: Stack, files: Files) -> None:
    async with rig(peer_kind) as r:
        answer = await r.peer.call(
            "GetDiagnostics", {"location": files.failing_upload_location(), "retries": 0}
        )
        assert "fileName" in answer
        await wait_status(r, "DiagnosticsStatusNotification", "UploadFailed")
        assert statuses(r, "DiagnosticsStatusNotification") == ["Uploading", "UploadFailed"]
        await r.charging(1)  # normal operation goes on
        no_strict_failures(r)
    assert files.uploads == []


async def test_other_schemes_fail_at_once_naming_the_ones_that_work(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with rig("python") as r:
        await r.peer.call(
            "GetDiagnostics", {"location": "sftp://u:pw@127.0.0.1/files/", "retries": 3}
        )
        await wait_status(r, "DiagnosticsStatusNotification", "UploadFailed")
        assert statuses(r, "DiagnosticsStatusNotification") == ["Uploading", "UploadFailed"]
    assert "transferred over http, https, ftp and ftps, not sftp" in caplog.text


async def test_a_failed_upload_is_retried(server: FileServer, family: str) -> None:
    server.fail_uploads = 1
    async with rig(Stack("node", family)) as r:
        await r.peer.call(
            "GetDiagnostics",
            {"location": server.url("/upload/diag"), "retries": 1, "retryInterval": 1},
        )
        await wait_status(r, "DiagnosticsStatusNotification", "Uploaded")
    assert [m for m, _, _ in server.requests] == ["POST", "POST"]
    assert len(server.uploads) == 1
