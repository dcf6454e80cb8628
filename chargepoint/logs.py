"""Logging for the daemon: one logger per layer, to stderr.

``transport.at`` shows the AT conversation, ``transport.websocket`` the connection,
``chargepoint.frames`` every OCPP frame (debug), ``chargepoint.*`` the charge point's own
decisions. Secrets never reach a record: the APN password, the SIM PIN and the Basic-auth
header are redacted or never logged at the source.

On a terminal each line has its time and level. Under systemd, when stderr is the journal
(``$JOURNAL_STREAM`` names it, sd-daemon(3)), each line starts with its syslog priority
``<3>``..``<7>`` instead and has no time of its own: journald stamps it and filters on it
(``journalctl -u chargepoint -p warning``).
"""

from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# syslog priorities (sd-daemon(3)): err 3, warning 4, notice 5, info 6, debug 7.
PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6}


class JournalFormatter(logging.Formatter):
    """``<priority>logger: message``, the prefix on every line of a multi-line record (a
    traceback) so that journald files each line at the record's priority."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for level, p in PRIORITIES.items() if record.levelno >= level), 7)
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def stderr_is_journal() -> bool:
    """True when stderr is the stream systemd connected to journald for this service."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        status = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return (status.st_dev, status.st_ino) == (int(device), int(inode))


# Third-party loggers: below WARNING they are noise to an operator (apscheduler's "Added job",
# the ocpp library's every message at INFO, tzlocal's time zone hunt at DEBUG).
LIBRARIES = ("websockets", "ocpp", "asyncio", "apscheduler", "tzlocal")


def configure_logging(level: str) -> None:
    """Log at ``level`` ("debug", "info", "warning", "error") to stderr.

    Libraries speak only when something is wrong (WARNING, or ``level`` if higher); our own
    layers say what happened. At "debug" (``--log-level debug``, or ``level = "debug"`` in
    ``[logging]``) the libraries say everything too.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter() if stderr_is_journal() else logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    debug = root.level <= logging.DEBUG
    for library in LIBRARIES:
        # NOTSET: the library logs at the root's level.
        logging.getLogger(library).setLevel(
            logging.NOTSET if debug else max(logging.WARNING, root.level)
        )
