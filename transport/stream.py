"""The byte-stream seam: what every module family (and the host's own TCP stack) provides.

The WebSocket layer runs over this and nothing else, so a new module family plugs in by
implementing these three coroutines. The contract:

* ``read(max_bytes)`` waits for at least one byte and returns at most ``max_bytes``. When the
  stream has ended and every byte the peer sent has been returned, it raises a
  :class:`~transport.errors.StreamClosed` subclass that says why (peer closed, network lost,
  module rebooted, ...). It never returns ``b""``.
* ``write(data)`` queues ``data`` for sending, in order. It returns once the data is accepted
  and the amount still waiting is below the stream's high-water mark, so a fast writer is
  slowed to the speed of the link. A failure of an earlier write is raised here.
* ``close()`` sends what is still queued (bounded by a timeout), releases the connection and
  is safe to call more than once and after a failure. It runs to its end even when its caller
  is cancelled (the caller's cancellation is raised afterwards), and a second or concurrent
  call waits for the first to finish rather than returning early: whoever opens next can rely
  on the old connection being gone.
"""

from __future__ import annotations

from typing import Protocol


class ByteStream(Protocol):
    async def read(self, max_bytes: int = 65536) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...
