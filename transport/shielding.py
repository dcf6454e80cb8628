"""Clean-up that a cancellation must not cut short.

Giving back what the module holds (a socket id with ``AT+QICLOSE``, a file handle with
``AT+QFCLOSE``, the HTTP client with ``AT+QHTTPSTOP``) takes an AT command, and the task doing
it is often the one being cancelled: a daemon stopping, a session torn down, a timeout
expiring around a transfer. ``asyncio.shield`` alone keeps the work going but lets the caller
leave at once, so whoever comes next (the next ``AT+QIOPEN``) runs before the release is done.
:func:`shielded` keeps the caller too until the work is over, then lets the cancellation
through. It is bounded because every AT command has its own timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def shielded(work: Awaitable[T]) -> T:
    """Await ``work`` to its end even if the caller is cancelled meanwhile (any number of
    times); the caller's cancellation is raised once ``work`` is over. ``work`` may be a task
    that others await too: it is never cancelled from here."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            # Unlike awaiting the task, asyncio.wait() leaves it running when we are cancelled.
            await asyncio.wait((task,))
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what the caller must see
        raise asyncio.CancelledError
    return task.result()
