"""GetLog end to end (OCPP 1.6 security whitepaper N01; OCTT TC_079_CS Get Security Log): the
daemon on a simulated module of either family, the CSMS peers (the strict Node one validates
GetLog.conf and LogStatusNotification against the whitepaper's schemas), uploads to a real
HTTP server (transport/simulator/file_server.py) and, on the Quectel module, to a real FTP
server (tests/ftp_server.py, user and password in the location), as GetDiagnostics is tested
in tests/test_octt_firmware.py."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chargepoint.blocks.diagnostics import DiagnosticsUploader
from chargepoint.blocks.security_events import SecurityEvent
from chargepoint.security_log import SecurityLog
from tests.ftp_server import PASSWORD as FTP_PASSWORD
from tests.ftp_server import FtpServer
from tests.harness import STACKS, LogWatch, Rig, Stack, rig, strict_failures
from tests.peers import CsmsCallError
from transport.simulator.file_server import FileServer

# TC_079 on both CSMS peers and both module families over HTTP; FTP through the Quectel
# module's FTP commands (the Wi-Fi module has none).
_BY_SCHEME = [("http", stack) for stack in STACKS] + [("ftp", Stack("python", "quectel"))]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = set(metafunc.fixturenames)
    if {"files", "stack"} <= names:
        metafunc.parametrize(
            ("files", "stack"),
            _BY_SCHEME,
            indirect=True,
            ids=[f"{scheme}-{stack}" for scheme, stack in _BY_SCHEME],
        )
    elif "stack" in names:
        metafunc.parametrize("stack", STACKS, indirect=True, ids=str)


@pytest.fixture
def stack(request: pytest.FixtureRequest) -> Stack:
    result: Stack = request.param
    return result


class Files:
    """The HTTP file server or the FTP server, one face."""

    def __init__(self, server: FileServer | FtpServer) -> None:
        self.server = server

    @property
    def scheme(self) -> str:
        return "ftp" if isinstance(self.server, FtpServer) else "http"

    def upload_location(self, path: str) -> str:
        """An HTTP URL taking POSTs, or an existing FTP directory."""
        if isinstance(self.server, FtpServer):
            self.server.mkdir(path)
            return self.server.url(path + "/")
        return self.server.url(path)

    def failing_location(self) -> str:
        """Every upload fails: a POST answered 500, an FTP directory that is not there."""
        if isinstance(self.server, FileServer):
            self.server.fail_uploads = 1000
        return self.server.url("/files/failedLocation/")

    @property
    def uploads(self) -> list[tuple[str, bytes]]:
        return [(u.file_name, u.data) for u in self.server.uploads]


@pytest.fixture
def files(request: pytest.FixtureRequest) -> Iterator[Files]:
    store: FileServer | FtpServer = FtpServer() if request.param == "ftp" else FileServer()
    with store:
        yield Files(store)


def ocpp_time(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def uploader(r: Rig) -> DiagnosticsUploader:
    diagnostics = r.station.diagnostics
    assert diagnostics is not None
    return diagnostics


def security_log(r: Rig) -> SecurityLog:
    """The daemon's security log, the one its GetLog uploads and its events are written to."""
    log = uploader(r).security_log or r.station.security_events.log
    uploader(r).security_log = log  # until the daemon hands its log to the uploader itself
    return log


def log_statuses(r: Rig) -> list[tuple[str, int | None]]:
    return [(c["status"], c.get("requestId")) for c in r.calls("LogStatusNotification")]


async def wait_log_status(r: Rig, status: str, request_id: int, timeout: float = 60) -> None:
    await r.peer.wait_for(lambda _: (status, request_id) in log_statuses(r), timeout)


async def get_log(
    r: Rig, log_type: str, request_id: int, location: str, **extra: Any
) -> dict[str, Any]:
    window = {k: extra.pop(k) for k in ("oldestTimestamp", "latestTimestamp") if k in extra}
    answer: dict[str, Any] = await r.peer.call(
        "GetLog",
        {
            "logType": log_type,
            "requestId": request_id,
            "log": {"remoteLocation": location, **window},
            **extra,
        },
    )
    return answer


def password_in_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The charge point's loggers whose records show the FTP password (none may)."""
    return sorted(
        {
            r.name
            for r in caplog.records
            if FTP_PASSWORD in r.getMessage() and not r.name.startswith("websockets.server")
        }
    )


# -- TC_079_CS --

MARKS = ("inside:", "outside")  # the events a test writes, among the daemon's own


async def test_tc_079_cs_get_security_log(
    stack: Stack, files: Files, caplog: pytest.LogCaptureFixture
) -> None:
    """N01.FR.01/02/03/07/08/09: GetLog.conf Accepted with the file name, then
    LogStatusNotification Uploading and Uploaded with the requestId; the file holds the
    security events of the window and none outside it."""
    caplog.set_level(logging.DEBUG)
    location = files.upload_location("/upload/logs")
    async with rig(stack) as r:
        log = security_log(r)
        now = datetime.now(UTC)
        log.write("ResetOrReboot", "outside: two days ago", now - timedelta(days=2))
        log.write("SettingSystemTime", "inside: an hour ago", now - timedelta(hours=1))
        r.station.security_events.record(SecurityEvent.INVALID_MESSAGES, "inside: recorded now")
        log.write("ResetOrReboot", "outside: two days ahead", now + timedelta(days=2))
        answer = await get_log(
            r,
            "SecurityLog",
            123,
            location,
            oldestTimestamp=ocpp_time(now - timedelta(days=1)),
            latestTimestamp=ocpp_time(now + timedelta(days=1)),
        )
        assert answer["status"] == "Accepted"
        name = answer["filename"]
        assert name.startswith("securitylog-CP-TEST_1-") and name.endswith(".jsonl")
        await wait_log_status(r, "Uploaded", 123)
        assert log_statuses(r) == [("Uploading", 123), ("Uploaded", 123)]
        assert uploader(r).log_status() == {"status": "Idle"}
        assert strict_failures(r.peer) == []
    [(stored_as, data)] = files.uploads
    assert stored_as == name  # one path segment: "CP-TEST/1" made no subdirectory
    events = [json.loads(line) for line in data.decode().splitlines()]
    ours = [(e["type"], e["techInfo"]) for e in events if e.get("techInfo", "")[:7] in MARKS]
    assert ours == [
        ("SettingSystemTime", "inside: an hour ago"),
        ("InvalidMessages", "inside: recorded now"),
    ]
    # Whatever else the daemon recorded (its start) is inside the window too.
    window = (now - timedelta(days=1), now + timedelta(days=1))
    assert all(window[0] <= datetime.fromisoformat(e["time"]) <= window[1] for e in events)
    assert all(e["time"].endswith("Z") for e in events)
    assert password_in_logs(caplog) == []


async def test_get_log_without_a_window_uploads_the_whole_security_log(stack: Stack) -> None:
    with FileServer() as server:
        async with rig(stack) as r:
            log = security_log(r)
            long_ago = datetime(2020, 1, 1, tzinfo=UTC)
            log.write("StartupOfTheDevice", "first boot", long_ago)
            log.write("FirmwareUpdated", "2.0.0", long_ago + timedelta(days=400))
            answer = await get_log(r, "SecurityLog", 7, server.url("/upload/logs"))
            await wait_log_status(r, "Uploaded", 7)
            whole = "".join(log.lines()).encode()
        [upload] = server.uploads
        assert upload.file_name == answer["filename"]
        assert upload.data == whole
        events = [json.loads(line) for line in upload.data.splitlines()]
        assert [e["techInfo"] for e in events if e["time"] < "2022"] == ["first boot", "2.0.0"]


def archive_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


async def test_get_log_diagnostics_log_uploads_the_diagnostics_archive(
    stack: Stack, files: Files, caplog: pytest.LogCaptureFixture
) -> None:
    """N01.FR.04: the archive GetDiagnostics builds, for the window."""
    caplog.set_level(logging.DEBUG)
    location = files.upload_location("/upload/diag")
    async with rig(stack) as r:
        start = ocpp_time(datetime.now(UTC))
        answer = await get_log(r, "DiagnosticsLog", 9, location, oldestTimestamp=start)
        assert answer["status"] == "Accepted"
        name = answer["filename"]
        assert name.startswith("diagnostics-CP-TEST_1-") and name.endswith(".tar.gz")
        await wait_log_status(r, "Uploaded", 9)
        assert log_statuses(r) == [("Uploading", 9), ("Uploaded", 9)]
        assert strict_failures(r.peer) == []
    [(stored_as, data)] = files.uploads
    assert stored_as == name
    members = archive_members(data)
    frames = members["ocpp-frames.jsonl"].decode()
    assert "GetLog" in frames and "BootNotification" not in frames  # after oldestTimestamp
    assert FTP_PASSWORD not in frames
    assert {"ocpp-keys.json", "module.json"} <= set(members)
    assert password_in_logs(caplog) == []


async def test_an_upload_that_keeps_failing_ends_in_upload_failure(
    stack: Stack, files: Files
) -> None:
    """N01.FR.10 after ``retries`` more attempts."""
    async with rig(stack) as r:
        answer = await get_log(
            r, "DiagnosticsLog", 31, files.failing_location(), retries=1, retryInterval=0
        )
        assert answer["status"] == "Accepted"
        await wait_log_status(r, "UploadFailure", 31)
        assert log_statuses(r) == [("Uploading", 31), ("UploadFailure", 31)]
        await r.charging(1)  # normal operation goes on
        assert strict_failures(r.peer) == []
    assert files.uploads == []
    if isinstance(files.server, FileServer):
        assert [m for m, _, _ in files.server.requests] == ["POST", "POST"]
    else:
        assert files.server.sent("CWD") == ["files/failedLocation"] * 2  # no such directory


async def test_the_final_status_of_an_upload_that_ends_offline_reaches_the_csms(
    stack: Stack,
) -> None:
    """N01.FR.09: Uploaded SHALL be sent. The upload ends while the CSMS is out of reach
    (the file server is elsewhere); once over, the upload is Idle to ExtendedTriggerMessage,
    so the status is sent when the charge point is back, not dropped."""
    with FileServer() as server:
        async with rig(stack) as r:
            server.uploads_open.clear()  # the upload waits for its answer
            answer = await get_log(r, "SecurityLog", 41, server.url("/upload/late"))
            assert answer["status"] == "Accepted"
            await wait_log_status(r, "Uploading", 41)
            assert await asyncio.to_thread(server.posted.wait, 60)  # the upload is in flight
            # The CSMS out of reach before the upload ends (not waited for: on the Wi-Fi module
            # the HTTP request holds the serial line, so the closed socket is seen after it).
            r.offline()
            with LogWatch("SecurityLog ", contains=(" uploaded to ",)) as stored:
                server.uploads_open.set()  # stored, while the CSMS is out of reach
                async with asyncio.timeout(60):
                    await stored.seen.wait()
            assert ("Uploaded", 41) not in log_statuses(r)
            r.online()
            await wait_log_status(r, "Uploaded", 41)
            assert log_statuses(r) == [("Uploading", 41), ("Uploaded", 41)]
            assert strict_failures(r.peer) == []
        [upload] = server.uploads
        assert upload.path == "/upload/late"


async def test_another_scheme_is_a_bad_message_at_once(stack: Stack) -> None:
    """N01.FR.10 with the most precise status: no upload started, so no Uploading."""
    async with rig(stack) as r:
        security_log(r)
        answer = await get_log(r, "SecurityLog", 1, "sftp://u:pw@127.0.0.1/files/", retries=3)
        assert answer["status"] == "Accepted"
        await wait_log_status(r, "BadMessage", 1)
        assert log_statuses(r) == [("BadMessage", 1)]
        assert strict_failures(r.peer) == []


async def test_ftp_on_the_wifi_module_is_a_bad_message_without_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The Wi-Fi module has no FTP client. The test configuration names a host link, so
    SupportedFileTransferProtocols lists FTP and the link refuses only when asked: Uploading,
    then BadMessage, and none of the three retries (each would be refused the same way)."""
    with FtpServer() as ftp:
        ftp.mkdir("/files")
        async with rig(Stack("node", "simplelink")) as r:
            security_log(r)
            await get_log(r, "SecurityLog", 2, ftp.url("/files/"), retries=3, retryInterval=600)
            await wait_log_status(r, "BadMessage", 2)
            assert log_statuses(r) == [("Uploading", 2), ("BadMessage", 2)]
            assert strict_failures(r.peer) == []
        assert ftp.uploads == []
    assert "log upload attempt" not in caplog.text
    assert "the SimpleLink module has no FTP client" in caplog.text


async def test_a_new_get_log_cancels_the_running_upload(stack: Stack) -> None:
    """N01.FR.11: AcceptedCanceled, the first upload ends without another status, the second
    runs; ExtendedTriggerMessage's payload follows (log_status, N01.FR.12)."""
    with FileServer() as server:
        async with rig(stack) as r:
            log = security_log(r)
            log.write("StartupOfTheDevice", "boot", datetime.now(UTC))
            server.fail_uploads = 1
            with LogWatch("log upload attempt 1 failed") as failed:
                first = await get_log(
                    r, "SecurityLog", 1, server.url("/upload/a"), retries=5, retryInterval=600
                )
                assert first["status"] == "Accepted"
                async with asyncio.timeout(60):
                    await failed.seen.wait()  # and waits 600 s for the next attempt
            assert uploader(r).log_status() == {"status": "Uploading", "requestId": 1}
            second = await get_log(r, "SecurityLog", 2, server.url("/upload/b"))
            assert second["status"] == "AcceptedCanceled"
            await wait_log_status(r, "Uploaded", 2)
            assert log_statuses(r) == [("Uploading", 1), ("Uploading", 2), ("Uploaded", 2)]
            assert uploader(r).log_status() == {"status": "Idle"}
            assert strict_failures(r.peer) == []
        [upload] = server.uploads
        assert (upload.path, upload.file_name) == ("/upload/b", second["filename"])


async def test_security_log_is_rejected_where_none_is_kept() -> None:
    """N01.FR.01 answers Accepted only when the log is there."""
    async with rig(Stack("python")) as r:
        uploader(r).security_log = None
        answer = await get_log(r, "SecurityLog", 5, "http://127.0.0.1:9/upload")
        assert answer == {"status": "Rejected"}
        # The next GetLog's status comes after anything the rejected one could have sent.
        await get_log(r, "DiagnosticsLog", 6, "sftp://127.0.0.1/upload")
        await wait_log_status(r, "BadMessage", 6)
        assert log_statuses(r) == [("BadMessage", 6)]


async def test_get_diagnostics_and_get_log_are_separate_uploads() -> None:
    """GetDiagnostics keeps its own status (DiagnosticsStatusNotification) while a GetLog runs."""
    with FileServer() as server:
        async with rig(Stack("python")) as r:
            security_log(r).write("StartupOfTheDevice", "boot", datetime.now(UTC))
            await r.peer.call("GetDiagnostics", {"location": server.url("/upload/diag")})
            await get_log(r, "SecurityLog", 4, server.url("/upload/logs"))
            await wait_log_status(r, "Uploaded", 4)
            await r.peer.wait_for(
                lambda _: any(
                    c["status"] == "Uploaded" for c in r.calls("DiagnosticsStatusNotification")
                )
            )
        assert sorted(u.path for u in server.uploads) == ["/upload/diag", "/upload/logs"]


async def test_a_window_date_that_is_not_a_date_is_a_call_error() -> None:
    """The Python peer sends what the strict one would refuse: no upload, no status."""
    async with rig(Stack("python")) as r:
        with pytest.raises(CsmsCallError) as refused:
            await get_log(
                r, "SecurityLog", 8, "http://127.0.0.1:9/upload", oldestTimestamp="yesterday"
            )
        assert refused.value.code == "PropertyConstraintViolation"
        assert "log.oldestTimestamp" in str(refused.value)
        await get_log(r, "DiagnosticsLog", 9, "sftp://127.0.0.1/upload")
        await wait_log_status(r, "BadMessage", 9)
        assert log_statuses(r) == [("BadMessage", 9)]
