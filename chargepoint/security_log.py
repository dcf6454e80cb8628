"""The local security log (OCPP 1.6 security whitepaper A04.FR.04, N01.FR.05): every security
event, critical or not, one JSON line each, which GetLog(SecurityLog) uploads (N01.FR.03).

A line is ``{"time": "2024-05-01T12:00:00.123Z", "type": "StartupOfTheDevice", "techInfo":
"..."}`` (time in UTC to the millisecond, techInfo only when there is one, at most 255
characters as SecurityEventNotification's schema allows).

Bounded and rolling, as A04.FR.04 recommends: the file is kept open and rotated by the
standard library's :class:`logging.handlers.RotatingFileHandler` at ``max_bytes`` into
``backups`` older files (``security.jsonl.1`` the newest of them), the oldest dropped. With
the defaults that is at most 256 KiB x 4 files = 1 MiB on disk, some 5000 events. Every line
is flushed and fsync'ed when written: events are rare, and a power cut must not take the
record of what came before it. ``SecurityLog(None)`` keeps the lines in memory under the same
bound (for tests).

techInfo comes from our own code, never from a secret; the log still cuts it to 255
characters so no caller can make a line unbounded.
"""

from __future__ import annotations

import collections
import json
import logging
import logging.handlers
import os
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

MAX_BYTES = 256 * 1024  # one file
BACKUPS = 3  # older files kept: 4 in all
FILE_MODE = 0o640
TECH_INFO_MAX = 255  # SecurityEventNotification.req techInfo (whitepaper §5.15)


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Handler(logging.handlers.RotatingFileHandler):
    """The rotating file, failing into our log rather than onto stderr, readable by the
    service's user and group only (host names and failure details are in it); a rotated file
    keeps its mode through the rename."""

    def _open(self):  # type: ignore[no-untyped-def]  # logging's own signature
        stream = super()._open()
        os.chmod(self.baseFilename, FILE_MODE)
        return stream

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        log.error("security log %s: %s not written: %s", self.baseFilename, record.msg, error)


class SecurityLog:
    def __init__(
        self, path: Path | None, max_bytes: int = MAX_BYTES, backups: int = BACKUPS
    ) -> None:
        if max_bytes <= 0 or backups < 1:
            raise ValueError("a bounded security log needs max_bytes > 0 and backups >= 1")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()  # GetLog reads from a worker thread
        self._handler: _Handler | None = None
        self._memory: collections.deque[str] = collections.deque()
        self._memory_bytes = 0
        # Whether a log with lines was there before this run: one that vanished between runs
        # was cleared (SecurityLogWasCleared, whitepaper §8).
        self.found = path is not None and any(
            f.is_file() and f.stat().st_size > 0
            for f in (path, *(Path(f"{path}.{n}") for n in range(1, backups + 1)))
        )
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handler = _Handler(
                path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
            )
            self._handler.setFormatter(logging.Formatter("%(message)s"))
            self._end_torn_line(path)

    def _end_torn_line(self, path: Path) -> None:
        """A power cut in mid-line left the file without its last newline: end that line, so
        the next event starts on its own (the torn one is skipped when read)."""
        with path.open("rb") as f:
            if f.seek(0, os.SEEK_END) == 0:
                return
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
        if torn and self._handler is not None and self._handler.stream is not None:
            self._handler.stream.write("\n")
            self._handler.stream.flush()

    @property
    def bound(self) -> int:
        """The most bytes the log holds, over all its files."""
        return self.max_bytes * (self.backups + 1)

    def write(self, event: str, tech_info: str | None, when: datetime) -> str:
        """Append one event; returns the line as written (without its newline)."""
        entry: dict[str, str] = {"time": _stamp(when), "type": str(event)}
        if tech_info:
            entry["techInfo"] = tech_info[:TECH_INFO_MAX]
        line = json.dumps(entry, separators=(",", ":"))
        with self._lock:
            if self._handler is None:
                self._remember(line)
            else:
                self._handler.handle(logging.makeLogRecord({"msg": line, "args": None}))
                stream = self._handler.stream
                try:
                    if stream is not None:
                        os.fsync(stream.fileno())
                except (OSError, ValueError) as error:  # ValueError: the file was closed
                    log.error("security log %s not synced: %s", self.path, error)
        return line

    def _remember(self, line: str) -> None:
        self._memory.append(line)
        self._memory_bytes += len(line) + 1
        while self._memory_bytes > self.bound and len(self._memory) > 1:
            self._memory_bytes -= len(self._memory.popleft()) + 1

    def files(self) -> list[Path]:
        """The files on disk, oldest first."""
        if self.path is None:
            return []
        rotated = [Path(f"{self.path}.{n}") for n in range(self.backups, 0, -1)]
        return [p for p in [*rotated, self.path] if p.is_file()]

    def lines(self, start: datetime | None = None, stop: datetime | None = None) -> list[str]:
        """The lines (with their newline) of the events from ``start`` to ``stop`` inclusive,
        oldest first; a bound left out is open. ``start`` counts to the millisecond, as the
        lines do, so an event in the same millisecond as ``start`` is inside."""
        if start is not None:
            start = start.replace(microsecond=start.microsecond // 1000 * 1000)
        with self._lock:
            if self._handler is None:
                every = [line + "\n" for line in self._memory]
            else:
                every = []
                for path in self.files():
                    with path.open(encoding="utf-8", errors="replace") as f:
                        every += f.readlines()
        return [line for line in every if _inside(line, start, stop)]

    def close(self) -> None:
        with self._lock:
            if self._handler is not None:
                self._handler.close()


def _inside(line: str, start: datetime | None, stop: datetime | None) -> bool:
    try:
        when = datetime.fromisoformat(json.loads(line)["time"].replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return False  # a line cut by a power failure
    return (start is None or when >= start) and (stop is None or when <= stop)
