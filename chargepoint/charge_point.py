"""The OCPP 1.6 charge point on one WebSocket connection.

The ``ocpp`` library's ChargePoint brings request/response matching, payload classes and
handler dispatch. What it gets wrong for a 1.6 charge point is corrected here:

* CallError codes follow OCPP-J 1.6 §4.2.3 and its errata (see :mod:`chargepoint.validation`);
  an action the charge point does not know is NotImplemented, one it knows but does not
  handle is NotSupported (Table 7; the library has the two the other way round);
* a message that is not valid JSON, or not an OCPP-J array, is answered with a
  FormationViolation CallError (with its message id when it can be recovered, else "-1", the
  convention OCPP 2.0.1 made explicit) instead of only being logged;
* while the CSMS has Rejected the charge point, CSMS requests are not answered
  (OCPP 1.6 §4.2: "SHALL NOT respond to any Central System initiated message");
* every frame is logged at debug level, not info; handlers never ``call()`` (the library
  handles requests in its reading task, so a call there would wait for itself).

Schema validation runs synchronously (``ASYNC_VALIDATION = False``): in a thread pool it cost
4-5x the CPU (architecture notes).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Coroutine, MutableMapping
from datetime import UTC, datetime
from typing import Any, Protocol

import ocpp.messages
from ocpp.exceptions import NotSupportedError, OCPPError
from ocpp.messages import Call, CallError, CallResult, validate_payload
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as LibraryChargePoint
from ocpp.v16 import call_result
from ocpp.v16.datatypes import KeyValue
from ocpp.v16.enums import (
    Action,
    AvailabilityType,
    ClearCacheStatus,
    DiagnosticsStatus,
    FirmwareStatus,
    MessageTrigger,
    ResetStatus,
    ResetType,
    TriggerMessageStatus,
)

from chargepoint.data_transfer import DataTransferVendors
from chargepoint.frame_trace import FrameTrace
from chargepoint.request import ConnectionEnded, NoAnswer
from chargepoint.station import Station
from chargepoint.validation import FORMATION, MAX_MESSAGE_ID, message_id_of, validate_call_payload
from config.ocpp_keys import AUTHORIZATION_KEY

ocpp.messages.ASYNC_VALIDATION = False

log = logging.getLogger(__name__)

_KNOWN_ACTIONS = {action.value for action in Action}


class OcppConnection(Protocol):
    async def recv(self) -> str: ...

    async def send(self, message: str) -> None: ...


class SessionHooks(Protocol):
    """What a CSMS request can ask of the session around the charge point."""

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None: ...

    async def boot(self) -> None: ...

    async def heartbeat(self) -> None: ...

    async def reconnect(self, why: str) -> None: ...


_SECRET_VALUE = re.compile(r'("value"\s*:\s*)"(?:[^"\\]|\\.)*"')


def redact(frame: str) -> str:
    """The frame with an AuthorizationKey's value hidden (security whitepaper A01.FR.12)."""
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
        data_transfer: DataTransferVendors,
        station: Station,
        hooks: SessionHooks,
        trace: FrameTrace | None = None,
    ) -> None:
        super().__init__(
            charge_point_id,
            connection,
            response_timeout=call_timeout,
            logger=_FrameLog(logging.getLogger("chargepoint.frames"), {}),
        )
        self.data_transfer = data_transfer
        self.station = station
        self.hooks = hooks
        self.trace = trace
        self._ended: ConnectionEnded | None = None
        self.answer_requests = True  # False while Rejected
        self._boot_request_id: str | None = None
        self._diagnostics_name = ""
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

    async def send_request(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a CALL given as JSON and return the CSMS's answer as JSON.

        Both are checked against the OCPP 1.6 schemas; a CallError, or an answer that breaks
        the schema, raises its OCPPError (for the outbox: the CSMS failed to process it).
        """
        message = Call(str(uuid.uuid4()), action, payload)
        await validate_payload(message, self._ocpp_version)
        async with self._call_lock:
            await self._send(message.to_json())
            try:
                response = await self._get_specific_response(
                    message.unique_id, self._response_timeout
                )
            except TimeoutError:
                raise NoAnswer(action, self._response_timeout) from None
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
            await self._send_call_error(
                unique_id, FORMATION, "message id longer than 36 characters"
            )
            return
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
            await self._send_call_error(unique_id, fault.code, fault.description, fault.details)
            return
        try:
            await self._handle_call(Call(unique_id, action, payload))
        except OCPPError as error:
            await self._send_call_error(unique_id, error.code, error.description, error.details)

    async def _reject_unreadable(self, raw_msg: str, why: str) -> None:
        unique_id = message_id_of(raw_msg) or "-1"
        log.warning("CSMS sent a message that is %s: %.200s", why, raw_msg)
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

    # -- operations (thin: the work is in the model services) --

    @on(Action.change_availability)  # type: ignore[untyped-decorator]
    def _on_change_availability(
        self, connector_id: int, type: str
    ) -> call_result.ChangeAvailability:
        operative = AvailabilityType(type) is AvailabilityType.operative
        return call_result.ChangeAvailability(
            self.station.change_availability(connector_id, operative)
        )

    @on(Action.get_configuration)  # type: ignore[untyped-decorator]
    def _on_get_configuration(self, key: list[str] | None = None) -> call_result.GetConfiguration:
        known, unknown = self.station.keys.read(key)
        return call_result.GetConfiguration(
            configuration_key=[KeyValue(k.key, k.readonly, k.value) for k in known] or None,
            unknown_key=unknown or None,
        )

    @on(Action.change_configuration)  # type: ignore[untyped-decorator]
    def _on_change_configuration(self, key: str, value: str) -> call_result.ChangeConfiguration:
        return call_result.ChangeConfiguration(self.station.keys.change(key, value))

    @after(Action.change_configuration)  # type: ignore[untyped-decorator]
    def _after_change_configuration(self, key: str, value: str) -> None:
        if key == AUTHORIZATION_KEY and self.station.keys.get(AUTHORIZATION_KEY) == value:
            # Whitepaper A01: disconnect, and connect again with the new password.
            self.hooks.spawn(
                self.hooks.reconnect("the CSMS changed the AuthorizationKey"), "new password"
            )

    @on(Action.clear_cache)  # type: ignore[untyped-decorator]
    def _on_clear_cache(self) -> call_result.ClearCache:
        self.station.clear_cache()
        return call_result.ClearCache(ClearCacheStatus.accepted)

    @on(Action.remote_start_transaction)  # type: ignore[untyped-decorator]
    def _on_remote_start(
        self,
        id_tag: str,
        connector_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
    ) -> call_result.RemoteStartTransaction:
        if charging_profile is not None:
            log.info(
                "RemoteStartTransaction with a charging profile: not applied (no smart charging)"
            )
        return call_result.RemoteStartTransaction(self.station.remote_start(id_tag, connector_id))

    @on(Action.remote_stop_transaction)  # type: ignore[untyped-decorator]
    def _on_remote_stop(self, transaction_id: int) -> call_result.RemoteStopTransaction:
        return call_result.RemoteStopTransaction(self.station.remote_stop(transaction_id))

    @on(Action.unlock_connector)  # type: ignore[untyped-decorator]
    async def _on_unlock_connector(self, connector_id: int) -> call_result.UnlockConnector:
        return call_result.UnlockConnector(await self.station.unlock(connector_id))

    @on(Action.reset)  # type: ignore[untyped-decorator]
    def _on_reset(self, type: str) -> call_result.Reset:
        return call_result.Reset(ResetStatus.accepted)

    @after(Action.reset)  # type: ignore[untyped-decorator]
    def _after_reset(self, type: str) -> None:
        self.station.reset(ResetType(type))

    @on(Action.trigger_message)  # type: ignore[untyped-decorator]
    def _on_trigger_message(
        self, requested_message: str, connector_id: int | None = None
    ) -> call_result.TriggerMessage:
        return call_result.TriggerMessage(
            self.station.trigger(MessageTrigger(requested_message), connector_id)
        )

    @after(Action.trigger_message)  # type: ignore[untyped-decorator]
    def _after_trigger_message(
        self, requested_message: str, connector_id: int | None = None
    ) -> None:
        requested = MessageTrigger(requested_message)
        if self.station.trigger(requested, connector_id) is not TriggerMessageStatus.accepted:
            return
        station = self.station
        work: Coroutine[Any, Any, None]
        match requested:
            case MessageTrigger.boot_notification:
                work = self.hooks.boot()
            case MessageTrigger.heartbeat:
                work = self.hooks.heartbeat()
            case MessageTrigger.meter_values:
                work = station.send_triggered_meter_values(connector_id)
            case MessageTrigger.status_notification:
                work = station.send_triggered_status(connector_id)
            case MessageTrigger.diagnostics_status_notification:
                diagnostics = station.diagnostics
                status = diagnostics.trigger_status() if diagnostics else DiagnosticsStatus.idle
                work = _discard(
                    station.send("DiagnosticsStatusNotification", {"status": status.value})
                )
            case MessageTrigger.firmware_status_notification:
                firmware = station.firmware
                fw_status = firmware.trigger_status() if firmware else FirmwareStatus.idle
                work = _discard(
                    station.send("FirmwareStatusNotification", {"status": fw_status.value})
                )
        self.hooks.spawn(work, f"triggered {requested.value}")

    @on(Action.update_firmware)  # type: ignore[untyped-decorator]
    def _on_update_firmware(
        self,
        location: str,
        retrieve_date: str,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> call_result.UpdateFirmware:
        if self.station.firmware is None:
            raise NotSupportedError("firmware updates are not configured")
        return call_result.UpdateFirmware()

    @after(Action.update_firmware)  # type: ignore[untyped-decorator]
    def _after_update_firmware(
        self,
        location: str,
        retrieve_date: str,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> None:
        # After the answer, so Downloading never overtakes UpdateFirmware.conf (§5.19).
        if self.station.firmware is not None:
            self.station.firmware.update(
                location,
                _datetime(retrieve_date),
                DEFAULT_RETRIES if retries is None else retries,
                DEFAULT_RETRY_INTERVAL if retry_interval is None else retry_interval,
            )

    @on(Action.get_diagnostics)  # type: ignore[untyped-decorator]
    def _on_get_diagnostics(
        self,
        location: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        start_time: str | None = None,
        stop_time: str | None = None,
    ) -> call_result.GetDiagnostics:
        if self.station.diagnostics is None:
            raise NotSupportedError("diagnostics uploads are not configured")
        self._diagnostics_name = self.station.diagnostics.file_name()
        return call_result.GetDiagnostics(file_name=self._diagnostics_name)

    @after(Action.get_diagnostics)  # type: ignore[untyped-decorator]
    def _after_get_diagnostics(
        self,
        location: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        start_time: str | None = None,
        stop_time: str | None = None,
    ) -> None:
        if self.station.diagnostics is not None:
            self.station.diagnostics.request(
                location,
                DEFAULT_RETRIES if retries is None else retries,
                DEFAULT_RETRY_INTERVAL if retry_interval is None else retry_interval,
                _datetime(start_time) if start_time else None,
                _datetime(stop_time) if stop_time else None,
                self._diagnostics_name,
            )

    @on(Action.data_transfer, skip_schema_validation=True)  # type: ignore[untyped-decorator]
    def _on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: str | None = None
    ) -> call_result.DataTransfer:
        reply = self.data_transfer.handle(vendor_id, message_id, data)
        return call_result.DataTransfer(status=reply.status, data=reply.data)


DEFAULT_RETRIES = 2  # when UpdateFirmware/GetDiagnostics leave it to the charge point
DEFAULT_RETRY_INTERVAL = 60  # seconds


def _datetime(text: str) -> datetime:
    """An OCPP dateTime; one without an offset is taken as UTC."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_ENDED = object()  # wakes a request waiting for its answer when the connection ends


async def _discard(work: Coroutine[Any, Any, object]) -> None:
    await work
