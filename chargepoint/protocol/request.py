"""How the charge point's services send a request to the CSMS, and how that can fail.

A request either gets its answer (a dict), or fails with one of :data:`REQUEST_FAILURES`: the
CSMS answered with a CallError (``OCPPError``), did not answer in time (:class:`NoAnswer`, a
``TimeoutError``), or the connection ended while we waited (:class:`ConnectionEnded`, at once,
not after the timeout) or before we could send (``WebSocketClosed``).
:func:`describe_failure` puts any of them in a log line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from ocpp.exceptions import OCPPError

from transport.websocket import WebSocketClosed


class ConnectionEnded(Exception):
    """The connection ended while a request waited for its answer."""


class LineBusy(TimeoutError):
    """Another call occupied the line (OCPP-J: one call in flight) for longer than the caller
    could wait; the request was not sent."""

    def __init__(self, action: str, waited: float) -> None:
        super().__init__(
            f"{action} not sent: the line stayed busy with an unanswered call for {waited:g} s"
        )


class NoAnswer(TimeoutError):
    """The CSMS did not answer a request within the call timeout."""

    def __init__(self, action: str, timeout: float) -> None:
        super().__init__(f"no {action}.conf from the CSMS within {timeout:g} s")


Request = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class LineRequest(Protocol):
    """A request that may give up waiting for the line after ``line_wait`` seconds
    (:class:`LineBusy`); without it, it waits for the call in flight to be answered."""

    def __call__(
        self, action: str, payload: dict[str, Any], /, *, line_wait: float | None = None
    ) -> Awaitable[dict[str, Any]]: ...


REQUEST_FAILURES = (OCPPError, TimeoutError, ConnectionEnded, WebSocketClosed)


def describe_failure(exc: BaseException) -> str:
    """A failed request for a log line: the exception's type and what it says, also when it
    says nothing (``str(TimeoutError())`` is empty)."""
    if isinstance(exc, OCPPError):
        return f"CallError {exc.code}: {exc.description}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else f"{type(exc).__name__} (no detail)"


class SessionHooks(Protocol):
    """What a CSMS request can ask of the session around the charge point."""

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None: ...

    async def boot(self) -> None: ...

    async def heartbeat(self) -> None: ...

    async def reconnect(self, why: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Online:
    """What the charge point can do while the CSMS has accepted it on a connection."""

    request: LineRequest
    session: SessionHooks
