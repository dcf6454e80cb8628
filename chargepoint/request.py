"""How the charge point's services send a request to the CSMS, and how that can fail.

A request either gets its answer (a dict), or fails with one of :data:`REQUEST_FAILURES`: the
CSMS answered with a CallError (``OCPPError``), did not answer in time (:class:`NoAnswer`, a
``TimeoutError``), or the connection ended while we waited (:class:`ConnectionEnded`, at once,
not after the timeout) or before we could send (``WebSocketClosed``).
:func:`describe_failure` puts any of them in a log line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ocpp.exceptions import OCPPError

from transport.websocket import WebSocketClosed


class ConnectionEnded(Exception):
    """The connection ended while a request waited for its answer."""


class NoAnswer(TimeoutError):
    """The CSMS did not answer a request within the call timeout."""

    def __init__(self, action: str, timeout: float) -> None:
        super().__init__(f"no {action}.conf from the CSMS within {timeout:g} s")


Request = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

REQUEST_FAILURES = (OCPPError, TimeoutError, ConnectionEnded, WebSocketClosed)


def describe_failure(exc: BaseException) -> str:
    """A failed request for a log line: the exception's type and what it says, also when it
    says nothing (``str(TimeoutError())`` is empty)."""
    if isinstance(exc, OCPPError):
        return f"CallError {exc.code}: {exc.description}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else f"{type(exc).__name__} (no detail)"
