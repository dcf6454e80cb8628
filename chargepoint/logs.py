"""Logging for the daemon: readable lines on stderr, one logger per layer.

``transport.at`` shows the AT conversation, ``transport.websocket`` the connection,
``chargepoint.frames`` every OCPP frame (debug), ``chargepoint.*`` the charge point's own
decisions. Secrets never reach a record: the APN password, the SIM PIN and the Basic-auth
header are redacted or never logged at the source.
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries speak only when something is wrong; our own layers say what happened.
    for library in ("websockets", "ocpp", "asyncio", "apscheduler"):
        logging.getLogger(library).setLevel(max(logging.WARNING, root.level))
