"""Waiting for a non-blocking file descriptor (a serial port, a pty master) to be ready."""

from __future__ import annotations

import asyncio


async def wait_readable(fd: int) -> None:
    await _wait(fd, readable=True)


async def wait_writable(fd: int) -> None:
    await _wait(fd, readable=False)


async def _wait(fd: int, *, readable: bool) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    if readable:
        loop.add_reader(fd, _wake, ready)
    else:
        loop.add_writer(fd, _wake, ready)
    try:
        await ready
    finally:
        if readable:
            loop.remove_reader(fd)
        else:
            loop.remove_writer(fd)


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)
