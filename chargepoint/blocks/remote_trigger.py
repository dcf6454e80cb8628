"""Remote trigger functional block: TriggerMessage (OCPP 1.6 §5.17, OCTT TC_054/055).

The answer says whether the message will be sent; the message itself goes out after the
answer, from a task (so it never overtakes TriggerMessage.conf).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import call_result
from ocpp.v16.enums import (
    Action,
    DiagnosticsStatus,
    FirmwareStatus,
    MessageTrigger,
    TriggerMessageStatus,
)

from chargepoint.blocks.availability import Availability
from chargepoint.blocks.context import Context
from chargepoint.blocks.diagnostics import DiagnosticsUploader
from chargepoint.blocks.firmware import FirmwareUpdater
from chargepoint.blocks.metering import Metering


class RemoteTrigger:
    def __init__(
        self,
        context: Context,
        availability: Availability,
        metering: Metering,
        firmware: FirmwareUpdater | None,
        diagnostics: DiagnosticsUploader | None,
    ) -> None:
        self._context = context
        self._availability = availability
        self._metering = metering
        self._firmware = firmware
        self._diagnostics = diagnostics

    def decide(self, requested: MessageTrigger, connector_id: int | None) -> TriggerMessageStatus:
        if connector_id is not None and not 0 <= connector_id <= len(self._context.connectors):
            return TriggerMessageStatus.rejected
        if requested is MessageTrigger.meter_values and connector_id == 0:
            return TriggerMessageStatus.rejected
        return TriggerMessageStatus.accepted

    @on(Action.trigger_message)  # type: ignore[untyped-decorator]
    def _on_trigger_message(
        self, requested_message: str, connector_id: int | None = None
    ) -> call_result.TriggerMessage:
        return call_result.TriggerMessage(
            self.decide(MessageTrigger(requested_message), connector_id)
        )

    @after(Action.trigger_message)  # type: ignore[untyped-decorator]
    def _after_trigger_message(
        self, requested_message: str, connector_id: int | None = None
    ) -> None:
        requested = MessageTrigger(requested_message)
        connection = self._context.connection
        if connection is None or self.decide(requested, connector_id) is not (
            TriggerMessageStatus.accepted
        ):
            return
        hooks = connection.session
        send = self._context.send
        work: Coroutine[Any, Any, object]
        match requested:
            case MessageTrigger.boot_notification:
                work = hooks.boot()
            case MessageTrigger.heartbeat:
                work = hooks.heartbeat()
            case MessageTrigger.meter_values:
                work = self._metering.send_now(connector_id)
            case MessageTrigger.status_notification:
                work = self._availability.send_now(connector_id)
            case MessageTrigger.diagnostics_status_notification:
                diagnostics = self._diagnostics
                status = diagnostics.trigger_status() if diagnostics else DiagnosticsStatus.idle
                work = send("DiagnosticsStatusNotification", {"status": status.value})
            case MessageTrigger.firmware_status_notification:
                firmware = self._firmware
                fw_status = firmware.trigger_status() if firmware else FirmwareStatus.idle
                work = send("FirmwareStatusNotification", {"status": fw_status.value})
        hooks.spawn(_discard(work), f"triggered {requested.value}")


async def _discard(work: Coroutine[Any, Any, object]) -> None:
    await work
