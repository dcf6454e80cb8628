"""``python -m transport.simulator quectel --link PATH``: used as a person with a serial
terminal would, from another process, with plain blocking pyserial."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import serial


class Terminal:
    """What a person at a serial terminal sees: bytes up to what they wait for."""

    def __init__(self, port: serial.Serial) -> None:
        self.port = port
        self.pending = b""

    def send(self, data: bytes) -> None:
        self.port.write(data)

    def expect(self, marker: bytes, limit: float = 10.0) -> bytes:
        deadline = time.monotonic() + limit
        while marker not in self.pending:
            assert time.monotonic() < deadline, f"no {marker!r} in {self.pending!r}"
            self.pending += self.port.read(self.port.in_waiting or 1)
        end = self.pending.index(marker) + len(marker)
        seen, self.pending = self.pending[:end], self.pending[end:]
        return seen


def test_simulator_runs_by_hand_on_a_linked_pty(tmp_path: Path) -> None:
    link = tmp_path / "modem"
    listener = socket.create_server(("127.0.0.1", 0))
    port_number = listener.getsockname()[1]
    accepted: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            accepted.append(conn.recv(100))
            conn.sendall(b"pong")

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "transport.simulator", "quectel", "--link", str(link)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert f"linked at {link}" in banner
        assert os.path.realpath(link).startswith("/dev/pts/")
        with serial.Serial(str(link), 115200, timeout=0.2) as port:
            term = Terminal(port)
            # The banner comes once the module has booted: it takes AT at once. (What it said
            # while booting is gone: opening a serial port flushes its input.)
            term.send(b"AT\r")
            assert term.expect(b"OK\r\n").endswith(b"AT\r\r\nOK\r\n")  # echo on, as at power-on
            term.send(b"ATE0\r")
            term.expect(b"OK\r\n")
            term.send(b"ATI\r")
            assert (
                term.expect(b"OK\r\n")
                == b"\r\nQuectel\r\nEC200U\r\nRevision: EC200UCNAAR03A06M08\r\n\r\nOK\r\n"
            )
            term.send(b"AT+QIACT=1\r")
            term.expect(b"OK\r\n")
            term.send(f'AT+QIOPEN=1,0,"TCP","127.0.0.1",{port_number},0,0\r'.encode())
            term.expect(b"+QIOPEN: 0,0\r\n")
            term.send(b"AT+QISEND=0,4\r")
            term.expect(b"> ")
            term.send(b"ping")
            term.expect(b"SEND OK\r\n")
            term.expect(b'+QIURC: "recv",0\r\n')
            term.expect(b'+QIURC: "closed",0\r\n')  # the server hung up after "pong"...
            term.send(b"AT+QIRD=0,1500\r")
            assert term.expect(b"OK\r\n") == b"\r\n+QIRD: 4\r\npong\r\n\r\nOK\r\n"  # ...data kept
            term.send(b"AT+QICLOSE=0\r")
            assert term.expect(b"OK\r\n") == b"\r\nOK\r\n"
        server.join(5)
        assert accepted == [b"ping"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        listener.close()
    assert proc.returncode == 0
    assert not link.exists()  # the link is removed on exit


def test_faults_can_be_injected_by_hand_on_the_console(tmp_path: Path) -> None:
    link = tmp_path / "modem"
    proc = subprocess.Popen(
        [sys.executable, "-m", "transport.simulator", "quectel", "--link", str(link), "--console"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdout.readline()
        with serial.Serial(str(link), 115200, timeout=0.2) as port:
            term = Terminal(port)
            term.send(b"AT\r")
            term.expect(b"OK\r\n")
            proc.stdin.write("garbage line noise\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == "ok: garbage line noise\n"
            assert term.expect(b"line noise\r\n") == b"\r\nline noise\r\n"
            proc.stdin.write("reboot\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == "ok: reboot\n"
            assert term.expect(b"RDY\r\n") == b"\r\nRDY\r\n"
            proc.stdin.write("explode\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == "unknown fault 'explode'\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    assert proc.returncode == 0


def test_bad_host_mapping_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "transport.simulator", "quectel", "--host", "csms.local"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "expected NAME=ADDRESS, got 'csms.local'" in result.stderr
