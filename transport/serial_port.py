"""An asyncio serial port on pyserial: pyserial opens and configures the port, the event loop
waits on its file descriptor.

pyserial sets the line discipline (raw mode, baud rate, 8N1, exclusive lock); reads and writes
then go straight to the non-blocking descriptor through ``loop.add_reader``/``add_writer``,
which is all an AT conversation needs. Pseudo-terminals work too (the simulator's ptys):
pyserial ignores the ENOTTY a pty gives for modem-control lines.
"""

from __future__ import annotations

import os
import termios

import serial

from transport.errors import SerialPortError
from transport.fd_ready import wait_readable, wait_writable

READ_SIZE = 4096


class SerialPort:
    """A serial port opened for asynchronous use (see :class:`transport.at.SerialIO`)."""

    def __init__(self, device: serial.Serial, name: str, baudrate: int) -> None:
        self._device = device
        self._fd = device.fileno()
        self._name = name
        self._baudrate = baudrate
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

    async def read(self) -> bytes:
        while True:
            try:
                data = os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                await wait_readable(self._fd)
                continue
            except OSError as exc:
                raise SerialPortError(
                    f"serial port {self._name} failed while reading: {exc}"
                ) from exc
            if not data:
                raise SerialPortError(
                    f"serial port {self._name} reached end of file (device gone?)"
                )
            return data

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                await wait_writable(self._fd)
                continue
            except OSError as exc:
                raise SerialPortError(
                    f"serial port {self._name} failed while writing: {exc}"
                ) from exc
            view = view[written:]

    def close(self) -> None:
        self._device.close()


def _wait_for_one_byte(fd: int) -> None:
    """Set VMIN=1, VTIME=0 (pyserial leaves both 0 and times reads with select).

    With VMIN=0 a non-blocking read with nothing to read returns b"", which cannot be told
    apart from the end of file a hang-up gives; with VMIN=1 it fails with EAGAIN instead.
    """
    attrs = termios.tcgetattr(fd)
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
