"""The daemon under systemd's notify protocol, for real: `chargepoint run` in its own process
with $NOTIFY_SOCKET pointing at a datagram socket this test reads, as systemd would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from chargepoint.app.service import ServiceNotifier
from tests.harness import CHARGEPOINT
from tests.peers import PythonCsms

SECRET = "notify-test-secret"


class NotifySocket:
    """systemd's end: one datagram per sd_notify() call, kept in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    async def next(self, timeout: float = 60) -> dict[str, str]:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            data = await loop.sock_recv(self.sock, 4096)
        message = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.messages.append(message)
        return message

    async def until(self, key: str, timeout: float = 60) -> dict[str, str]:
        while True:
            message = await self.next(timeout)
            if key in message:
                return message


def config_file(tmp_path: Path, url: str, ready_timeout: float = 120) -> Path:
    config = tmp_path / "chargepoint.toml"
    config.write_text(
        f"""
[charge_point]
id = "CP-NOTIFY"
vendor = "TestVendor"
model = "TestModel"
connectors = 1

[csms]
url = "{url}"
password = "{SECRET}"
security_profile = 1
ping_interval = 0
reconnect_delay_min = 0.2
reconnect_delay_max = 0.5

[modem]
type = "host"

[storage]
directory = "{tmp_path / "state"}"

[service]
ready_timeout = {ready_timeout}
"""
    )
    return config


@contextlib.asynccontextmanager
async def daemon(config: Path, notify: NotifySocket) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000"}
    process = await asyncio.create_subprocess_exec(
        str(CHARGEPOINT), "run", "--config", str(config), env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_ready_when_the_session_is_up_then_watchdog_pings_then_stopping(
    tmp_path: Path,
) -> None:
    notify = NotifySocket(tmp_path / "notify")
    csms = PythonCsms(password=SECRET.encode())
    await csms.start()
    try:
        async with daemon(config_file(tmp_path, csms.url), notify) as process:
            ready = await notify.until("READY")
            assert ready == {"READY": "1", "STATUS": f"connected to {csms.url}"}
            assert csms.count("connect") == 1  # READY came with the session, not before
            # WATCHDOG_USEC=200000: a ping every 0.1 s from the event loop.
            for _ in range(3):
                assert await notify.until("WATCHDOG", timeout=5) == {"WATCHDOG": "1"}
            process.send_signal(signal.SIGTERM)
            assert (await notify.until("STOPPING", timeout=30))["STOPPING"] == "1"
            async with asyncio.timeout(30):
                _, stderr = await process.communicate()
            assert process.returncode == 0, stderr.decode()
    finally:
        await csms.stop()
    assert [m for m in notify.messages if "READY" in m] == [ready]  # once only


async def test_ready_after_the_timeout_when_the_csms_cannot_be_reached(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    notify = NotifySocket(tmp_path / "notify")
    config = config_file(tmp_path, f"ws://127.0.0.1:{port}/ocpp", ready_timeout=1)
    async with daemon(config, notify) as process:
        ready = await notify.until("READY", timeout=30)
        assert ready["STATUS"] == "running; the CSMS has not been reached yet"
        await notify.until("WATCHDOG", timeout=5)  # and alive, trying again
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, stderr = await process.communicate()
        assert process.returncode == 0
    assert "no OCPP session after 1 s: telling systemd the service is up" in stderr.decode()
    assert "cannot reach the CSMS" in stderr.decode()


def test_watchdog_settings_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "@/org/example/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert ServiceNotifier.from_environment().watchdog_interval == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert ServiceNotifier.from_environment().watchdog_interval is None
    monkeypatch.delenv("NOTIFY_SOCKET")
    quiet = ServiceNotifier.from_environment()
    assert quiet.address is None and quiet.notify("READY=1") is False


def test_abstract_notify_socket(tmp_path: Path) -> None:
    name = f"chargepoint-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind("\0" + name)
        notifier = ServiceNotifier("@" + name, None)
        notifier.mark_ready("up")
        assert systemd.recv(4096) == b"READY=1\nSTATUS=up"
        notifier.close()
