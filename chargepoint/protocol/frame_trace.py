"""The OCPP frame trace: every frame in and out, as JSON lines (time, direction, frame) in a
size-rotated file of the state directory, for GetDiagnostics and for a person debugging a
CSMS. Secrets are redacted before they are written (AuthorizationKey, whitepaper A01.FR.12)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)


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
        self._failed = False

    def files(self) -> list[Path]:
        """The trace files, oldest first."""
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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and self.path.stat().st_size + len(line) > self.max_bytes:
                self._rotate()
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
            self._failed = False
        except OSError as error:
            if not self._failed:  # say it once, not once per frame
                log.error("cannot write the OCPP frame trace %s: %s", self.path, error)
            self._failed = True

    def _rotate(self) -> None:
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
