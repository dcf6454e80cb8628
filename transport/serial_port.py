"""An asyncio serial port on pyserial, shaped like an asyncio transport.

pyserial opens and configures the port (raw mode, baud rate, 8N1, exclusive lock); the event
loop then watches the non-blocking descriptor. Received bytes are pushed to a callback in the
loop's own reading step (no task to wake per chunk), and writes are queued and flushed when
the port can take them, so a write is never cut in half by a cancelled caller: a module that
got half a command line would read the next one as garbage.

Pseudo-terminals work too (the simulator's ptys): pyserial ignores the ENOTTY a pty gives for
modem-control lines.
"""

from __future__ import annotations

import asyncio
import os
import termios
from collections.abc import Callable

import serial

from transport.errors import SerialPortError

READ_SIZE = 4096


class SerialPort:
    """A serial port opened for asynchronous use (see :class:`transport.at.SerialIO`)."""

    def __init__(self, device: serial.Serial, name: str, baudrate: int) -> None:
        self._device = device
        self._fd = device.fileno()
        self._name = name
        self._baudrate = baudrate
        self._outgoing = bytearray()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_data: Callable[[bytes], None] | None = None
        self._on_lost: Callable[[Exception], None] | None = None
        self._closed = False
        os.set_blocking(self._fd, False)

    @classmethod
    def open(cls, path: str, baudrate: int = 115200, *, exclusive: bool = True) -> SerialPort:
        """Open ``path``; ``exclusive`` takes an advisory lock so two programs cannot share it."""
        try:
            device = serial.Serial(port=path, baudrate=baudrate, timeout=0, exclusive=exclusive)
        except (serial.SerialException, OSError) as exc:
            raise SerialPortError(
                f"cannot open serial port {path}: {exc}; check the device name, that the "
                "service user is in the dialout group, and that no other program holds the port"
            ) from exc
        _wait_for_one_byte(device.fileno())
        device.reset_input_buffer()
        return cls(device, path, baudrate)

    @property
    def name(self) -> str:
        return self._name

    @property
    def baudrate(self) -> int:
        return self._baudrate

    def start(self, on_data: Callable[[bytes], None], on_lost: Callable[[Exception], None]) -> None:
        """Deliver received bytes to ``on_data``; call ``on_lost`` once if the port fails."""
        self._loop = asyncio.get_running_loop()
        self._on_data, self._on_lost = on_data, on_lost
        self._loop.add_reader(self._fd, self._readable)

    def write(self, data: bytes) -> None:
        """Queue ``data``; it goes out in order, whole, even if the writer moves on."""
        if self._closed:
            raise SerialPortError(f"serial port {self._name} is closed")
        if self._outgoing:
            self._outgoing += data
            return
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            raise SerialPortError(f"serial port {self._name} failed while writing: {exc}") from exc
        if written < len(data):
            self._outgoing += data[written:]
            assert self._loop is not None, "start() the port before writing to it"
            self._loop.add_writer(self._fd, self._writable)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        self._device.close()

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(SerialPortError(f"serial port {self._name} failed while reading: {exc}"))
            return
        if not data:
            self._lost(
                SerialPortError(f"serial port {self._name} reached end of file (device gone?)")
            )
            return
        assert self._on_data is not None
        self._on_data(data)

    def _writable(self) -> None:
        try:
            written = os.write(self._fd, self._outgoing)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(SerialPortError(f"serial port {self._name} failed while writing: {exc}"))
            return
        del self._outgoing[:written]
        if not self._outgoing and self._loop is not None:
            self._loop.remove_writer(self._fd)

    def _lost(self, error: Exception) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        callback, self._on_lost = self._on_lost, None
        if callback is not None:
            callback(error)


def _wait_for_one_byte(fd: int) -> None:
    """Set VMIN=1, VTIME=0 (pyserial leaves both 0 and times reads with select).

    With VMIN=0 a non-blocking read with nothing to read returns b"", which cannot be told
    apart from the end of file a hang-up gives; with VMIN=1 it fails with EAGAIN instead.
    """
    attrs = termios.tcgetattr(fd)
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
