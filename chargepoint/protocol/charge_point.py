"""The OCPP 1.6 charge point on one WebSocket connection.

The ``ocpp`` library's ChargePoint brings request/response matching, payload classes and
handler dispatch. What it gets wrong for a 1.6 charge point is corrected here:

* CallError codes follow OCPP-J 1.6 §4.2.3 and its errata (see
  :mod:`chargepoint.protocol.validation`);
  an action the charge point does not know is NotImplemented, one it knows but does not
  handle is NotSupported (Table 7; the library has the two the other way round);
* a message that is not valid JSON, or not an OCPP-J array, is answered with a
  FormationViolation CallError (with its message id when it can be recovered, else "-1", the
  convention OCPP 2.0.1 made explicit) instead of only being logged;
* while the CSMS has Rejected the charge point, CSMS requests are not answered
  (OCPP 1.6 §4.2: "SHALL NOT respond to any Central System initiated message");
* every frame is logged at debug level, not info; handlers never ``call()`` (the library
  handles requests in its reading task, so a call there would wait for itself);
* what the security whitepaper (§8) wants told: an invalid message from the CSMS
  (``on_invalid``), and a CALL whose message id this connection has already seen
  (``on_replay``: OCPP-J §4.1.3 makes ids unique per connection; a resend after a lost
  connection comes on a new one). The replay is still answered: refusing it is a decision the
  whitepaper leaves to the charge point, and a wrong guess would break a working CSMS.

Schema validation runs synchronously (``ASYNC_VALIDATION = False``): in a thread pool it cost
4-5x the CPU (architecture notes).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
import uuid
from collections.abc import Callable, MutableMapping
from typing import Any, Protocol

import ocpp.messages
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallError, CallResult, validate_payload
from ocpp.v16 import ChargePoint as LibraryChargePoint
from ocpp.v16.enums import Action

from chargepoint.protocol.frame_trace import FrameTrace
from chargepoint.protocol.request import ConnectionEnded, LineBusy, NoAnswer
from chargepoint.protocol.validation import (
    FORMATION,
    MAX_MESSAGE_ID,
    message_id_of,
    validate_call_payload,
)
from config.ocpp_keys import AUTHORIZATION_KEY
from transport.http import redact_url

ocpp.messages.ASYNC_VALIDATION = False

log = logging.getLogger(__name__)

_KNOWN_ACTIONS = {action.value for action in Action}
# The CSMS's message ids remembered per connection, to notice one used twice.
SEEN_IDS = 256
# Invalid or replayed messages told as security events per connection: a CSMS that sends
# garbage in a loop must not fill the outbox (the log line is written for each).
SUSPICIONS_TOLD = 3


class OcppConnection(Protocol):
    async def recv(self) -> str: ...

    async def send(self, message: str) -> None: ...


_SECRET_VALUE = re.compile(r'("value"\s*:\s*)"(?:[^"\\]|\\.)*"')


def redact(frame: str) -> str:
    """The frame with an AuthorizationKey's value (security whitepaper A01.FR.12) and the
    password of any URL in it (an UpdateFirmware or GetDiagnostics location) hidden."""
    frame = redact_url(frame)
    if AUTHORIZATION_KEY not in frame:
        return frame
    return _SECRET_VALUE.sub(r'\1"***"', frame)


class _FrameLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The library logs each frame at info; on a charger that is debug material. Secrets in
    frames are hidden."""

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.debug(msg, *(redact(a) if isinstance(a, str) else a for a in args), **kwargs)

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        super().warning(msg, *(redact(str(a)) for a in args), **kwargs)

    def exception(self, msg: object, *args: Any, **kwargs: Any) -> None:
        super().exception(msg, *(redact(str(a)) for a in args), **kwargs)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return msg, kwargs


class ChargePoint(LibraryChargePoint):  # type: ignore[misc]
    def __init__(
        self,
        charge_point_id: str,
        connection: OcppConnection,
        *,
        call_timeout: float,
        routes: dict[str, dict[str, Any]],
        trace: FrameTrace | None = None,
        on_invalid: Callable[[str], None] | None = None,
        on_replay: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(
            charge_point_id,
            connection,
            response_timeout=call_timeout,
            logger=_FrameLog(logging.getLogger("chargepoint.frames"), {}),
        )
        # The functional blocks' handlers (chargepoint.station), not this class's own.
        self.route_map = routes
        self.trace = trace
        self._on_invalid = _at_most(SUSPICIONS_TOLD, on_invalid, "invalid messages")
        self._on_replay = _at_most(SUSPICIONS_TOLD, on_replay, "reused message ids")
        self._seen_ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._ended: ConnectionEnded | None = None
        self.answer_requests = True  # False while Rejected
        self._boot_request_id: str | None = None
        self.last_sent = asyncio.get_running_loop().time()

    async def request(self, payload: Any) -> Any:
        """Send a request and return the CSMS's answer; a CallError raises its OCPPError."""
        unique_id = str(uuid.uuid4())
        action = type(payload).__name__
        if action == "BootNotification":
            self._boot_request_id = unique_id
        try:
            return await self.call(payload, suppress=False, unique_id=unique_id)
        except TimeoutError:
            raise NoAnswer(action, self._response_timeout) from None

    async def send_request(
        self, action: str, payload: dict[str, Any], /, *, line_wait: float | None = None
    ) -> dict[str, Any]:
        """Send a CALL given as JSON and return the CSMS's answer as JSON.

        Both are checked against the OCPP 1.6 schemas; a CallError, or an answer that breaks
        the schema, raises its OCPPError (for the outbox: the CSMS failed to process it).
        With ``line_wait``, give up (:class:`LineBusy`) rather than wait longer than that for
        the call in flight (OCPP-J 1.6 §4.1.1: one at a time) to be answered.
        """
        message = Call(str(uuid.uuid4()), action, payload)
        await validate_payload(message, self._ocpp_version)
        if line_wait is None:
            await self._call_lock.acquire()
        else:
            try:
                async with asyncio.timeout(line_wait):
                    await self._call_lock.acquire()
            except TimeoutError:
                raise LineBusy(action, line_wait) from None
        try:
            await self._send(message.to_json())
            try:
                response = await self._get_specific_response(
                    message.unique_id, self._response_timeout
                )
            except TimeoutError:
                raise NoAnswer(action, self._response_timeout) from None
        finally:
            self._call_lock.release()
        if isinstance(response, CallError):
            raise response.to_exception()
        response.action = action
        await validate_payload(response, self._ocpp_version)
        answer: dict[str, Any] = response.payload
        return answer

    async def _get_specific_response(self, unique_id: str, timeout: float) -> Any:
        # The library waits with asyncio.wait_for, which on Python 3.11 can swallow a
        # cancellation that races with the answer: the request's task then goes on as if
        # nothing happened, and a session that should end (connection lost, SIGTERM) never
        # does. asyncio.timeout() has no such race (architecture notes, "Timeouts").
        async with asyncio.timeout(timeout):
            while True:
                if self._ended is not None:
                    raise self._ended
                response = await self._response_queue.get()
                if response is _ENDED:
                    continue
                if response.unique_id == unique_id:
                    return response
                log.warning("ignoring an answer to no request of ours: %s", response)

    def connection_ended(self, why: str) -> None:
        """Fail every request still waiting for an answer, at once (architecture notes)."""
        self._ended = ConnectionEnded(why)
        self._response_queue.put_nowait(_ENDED)

    # -- receiving --

    async def route_message(self, raw_msg: str) -> None:
        if self.trace is not None:
            self.trace.record("in", raw_msg)
        try:
            msg = json.loads(raw_msg)
        except ValueError:
            await self._reject_unreadable(raw_msg, "not valid JSON")
            return
        if not isinstance(msg, list) or not msg or not isinstance(msg[0], int):
            await self._reject_unreadable(raw_msg, "not an OCPP-J message: [type, id, ...]")
            return
        kind = msg[0]
        if kind == 2:
            await self._on_call(msg, raw_msg)
        elif kind == 3 and len(msg) == 3 and isinstance(msg[1], str):
            answer = msg[2]
            if (
                msg[1] == self._boot_request_id
                and isinstance(answer, dict)
                and answer.get("status") == "Rejected"
            ):
                # Go quiet the moment a Rejected answer is read, before any frame behind it
                # (§4.2); the session lifts this after the retry interval.
                self.answer_requests = False
            self._response_queue.put_nowait(CallResult(msg[1], msg[2]))
        elif kind == 4 and len(msg) == 5 and isinstance(msg[1], str):
            self._response_queue.put_nowait(CallError(*msg[1:]))
        elif kind in (3, 4):
            log.warning(
                "ignoring a malformed %s from the CSMS: %.200s",
                "CALLRESULT" if kind == 3 else "CALLERROR",
                raw_msg,
            )
        else:
            # OCPP-J 1.6 §4.1.3: an unknown message type is ignored.
            log.warning("ignoring a message of unknown type %r from the CSMS", kind)

    async def _on_call(self, msg: list[Any], raw_msg: str) -> None:
        if len(msg) != 4 or not isinstance(msg[1], str) or not isinstance(msg[2], str):
            await self._reject_unreadable(raw_msg, "a CALL is [2, id, action, payload]")
            return
        unique_id, action, payload = msg[1], msg[2], msg[3]
        if not self.answer_requests:
            log.warning(
                "not answering %s from the CSMS: it has rejected this charge point (OCPP 1.6 §4.2)",
                action,
            )
            return
        if len(unique_id) > MAX_MESSAGE_ID:
            self._on_invalid(f"{action}: message id longer than 36 characters")
            await self._send_call_error(
                unique_id, FORMATION, "message id longer than 36 characters"
            )
            return
        self._note_id(unique_id, action)
        if action not in self.route_map:
            if action in _KNOWN_ACTIONS:
                await self._send_call_error(unique_id, "NotSupported", f"{action} is not supported")
            else:
                await self._send_call_error(
                    unique_id, "NotImplemented", f"{action} is not an OCPP 1.6 action"
                )
            return
        payload = {} if payload is None else payload  # OCPP-J 1.6 §4.2.1 allows null
        fault = validate_call_payload(action, payload)
        if fault is not None:
            log.warning("CSMS sent an invalid %s: %s", action, fault.description)
            self._on_invalid(f"{action}: {fault.code}: {fault.description}")
            await self._send_call_error(unique_id, fault.code, fault.description, fault.details)
            return
        try:
            await self._handle_call(Call(unique_id, action, payload))
        except OCPPError as error:
            await self._send_call_error(unique_id, error.code, error.description, error.details)

    def _note_id(self, unique_id: str, action: str) -> None:
        if unique_id in self._seen_ids:
            log.warning(
                "the CSMS sent message id %s again (%s) on this connection", unique_id, action
            )
            self._on_replay(f"{action} with message id {unique_id} already seen")
            return
        self._seen_ids[unique_id] = None
        if len(self._seen_ids) > SEEN_IDS:
            self._seen_ids.popitem(last=False)

    async def _reject_unreadable(self, raw_msg: str, why: str) -> None:
        unique_id = message_id_of(raw_msg) or "-1"
        log.warning("CSMS sent a message that is %s: %.200s", why, raw_msg)
        self._on_invalid(f"message is {why}")
        await self._send_call_error(unique_id, FORMATION, f"message is {why}")

    async def _send_call_error(
        self, unique_id: str, code: str, description: str, details: dict[str, Any] | None = None
    ) -> None:
        await self._send(CallError(unique_id, code, description, details or {}).to_json())

    async def _send(self, message: str) -> None:
        if self.trace is not None:
            self.trace.record("out", message)
        self.last_sent = asyncio.get_running_loop().time()
        await super()._send(message)


def _at_most(times: int, tell: Callable[[str], None] | None, what: str) -> Callable[[str], None]:
    told = 0

    def once_more(why: str) -> None:
        nonlocal told
        told += 1
        if tell is None or told > times:
            return
        if told == times:
            why = f"{why} (further {what} on this connection are only logged)"
        tell(why)

    return once_more


_ENDED = object()  # wakes a request waiting for its answer when the connection ends
