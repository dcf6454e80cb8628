"""The OCPP frame trace: every frame in and out, as JSON lines (time, direction, frame) in a
size-rotated file of the state directory, for GetDiagnostics and for a person debugging a
CSMS. Secrets are redacted before they are written (AuthorizationKey, whitepaper A01.FR.12).

The file stays open: a frame costs one ``write(2)`` into the page cache (the handler flushes
every record, it does not fsync), with no ``mkdir``/``stat``/``open`` per frame; the size is
counted as lines are written, so deciding to rotate needs no system call either. On a
controller's flash that is also fewer metadata writes. The standard library's
:class:`logging.handlers.RotatingFileHandler` does the writing and the rotation
(``ocpp-frames.jsonl`` → ``.1`` … ``.<backups>``); frames are handed to it directly, never
through a logger, so nothing reaches the daemon's log.

No thread sits in front of it (a ``QueueHandler``): a write into the page cache costs less
than the wake-up of a writer thread, and wake-ups are what the modem path is short of.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)


class _CountingRotatingHandler(logging.handlers.RotatingFileHandler):
    """A rotating handler that keeps the file's size itself.

    Python 3.11's ``shouldRollover`` calls ``os.path.exists`` and ``os.path.isfile`` and seeks
    the stream for every record; here the size is read once (``fstat``) when the file is
    opened and then counted in bytes as lines are written. A record's message is its whole
    line, already JSON.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self._size = 0
        self._next = 0  # the bytes of the record that made the file rotate
        self._failed = False  # the last frame could not be written (said once)
        self._erred = False
        super().__init__(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
        )

    def _open(self) -> io.TextIOWrapper:
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        stream = super()._open()
        self._size = os.fstat(stream.fileno()).st_size
        return stream

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        if self.stream is None:
            self.stream = self._open()
        line = len(record.msg.encode("utf-8")) + 1
        # A file that holds something is rotated before it would grow past the limit; a
        # first line longer than the limit is still written whole.
        if self._size and self._size + line > self.maxBytes:
            self._next = line
            return True
        self._size += line
        return False

    def doRollover(self) -> None:
        super().doRollover()
        self.stream = self._open()
        self._size += self._next

    def emit(self, record: logging.LogRecord) -> None:
        self._erred = False
        super().emit(record)
        if not self._erred:
            self._failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        """A full or read-only disk: said once, not once per frame; the next frame tries
        again with a fresh file."""
        self._erred = True
        if not self._failed:
            log.error(
                "cannot write the OCPP frame trace %s: %s", self.baseFilename, sys.exc_info()[1]
            )
        self._failed = True
        if self.stream is not None:
            with contextlib.suppress(OSError):
                self.stream.close()
            self.stream = None


class FrameTrace:
    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 1024 * 1024,
        backups: int = 3,
        redact: Callable[[str], str] = lambda frame: frame,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._redact = redact
        self._handler = _CountingRotatingHandler(path, max_bytes, backups)

    def files(self) -> list[Path]:
        """The trace files, oldest first."""
        self._handler.flush()
        rotated = [self.path.with_name(f"{self.path.name}.{i}") for i in range(self.backups, 0, -1)]
        return [p for p in [*rotated, self.path] if p.exists()]

    def record(self, direction: str, frame: str) -> None:
        line = json.dumps(
            {
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "direction": direction,
                "frame": self._redact(frame),
            },
            ensure_ascii=False,
        )
        # Handed to the handler directly: no logger in the registry, nothing propagates.
        self._handler.handle(logging.LogRecord(__name__, logging.INFO, "", 0, line, None, None))

    def close(self) -> None:
        """Close the file (the daemon's end); a later frame opens it again."""
        self._handler.close()
