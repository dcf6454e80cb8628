"""How the charge point's services send a request to the CSMS, and how that can fail.

A request either gets its answer (a dict), or fails with one of :data:`REQUEST_FAILURES`: the
CSMS answered with a CallError (``OCPPError``), did not answer in time (``TimeoutError``), or
the connection ended while we waited (:class:`ConnectionEnded`, at once, not after the
timeout) or before we could send (``WebSocketClosed``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ocpp.exceptions import OCPPError

from transport.websocket import WebSocketClosed


class ConnectionEnded(Exception):
    """The connection ended while a request waited for its answer."""


Request = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

REQUEST_FAILURES = (OCPPError, TimeoutError, ConnectionEnded, WebSocketClosed)
