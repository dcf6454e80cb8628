"""Remote trigger functional block: TriggerMessage (OCPP 1.6 §5.17, OCTT TC_054/055) and the
security extension's ExtendedTriggerMessage (whitepaper §5.5, §6.16; OCTT TC_074/077).

The answer says whether the message will be sent; the message itself goes out after the
answer, from a task (so it never overtakes the .conf). The two share what they can trigger
(BootNotification, Heartbeat, MeterValues, StatusNotification); each adds its own.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

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
from chargepoint.protocol.request import SessionHooks

if TYPE_CHECKING:
    from chargepoint.blocks.certificates import CertificateManagement

Work = Coroutine[Any, Any, object]


class _Triggers:
    """What both trigger messages have in common: the decision and the Core messages."""

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

    def _core(
        self, requested: MessageTrigger, connector_id: int | None, hooks: SessionHooks
    ) -> Work | None:
        match requested:
            case MessageTrigger.boot_notification:
                return hooks.boot()
            case MessageTrigger.heartbeat:
                return hooks.heartbeat()
            case MessageTrigger.meter_values:
                return self._metering.send_now(connector_id)
            case MessageTrigger.status_notification:
                return self._availability.send_now(connector_id)
        return None

    def _deliver(self, requested: MessageTrigger, connector_id: int | None) -> None:
        """Send the triggered message from a task of the session. A CSMS request can come
        between the WebSocket's opening and the end of the boot (the session reads frames from
        the start): a message other than BootNotification then waits until the charge point is
        accepted, so Accepted is never a promise broken (OCPP 1.6 §5.17)."""
        context = self._context
        session = context.session
        if session is None:
            return  # the connection the request came on is gone: nobody to send it to

        async def when_online() -> None:
            if requested is not MessageTrigger.boot_notification and not context.online:
                await context.wait_until(lambda: context.online)
            work = self._core(requested, connector_id, session) or self._own(requested)
            await work

        session.spawn(when_online(), f"triggered {requested.value}")

    def _own(self, requested: MessageTrigger) -> Work:
        raise NotImplementedError


class RemoteTrigger(_Triggers):
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
        if self.decide(requested, connector_id) is TriggerMessageStatus.accepted:
            self._deliver(requested, connector_id)

    def _own(self, requested: MessageTrigger) -> Work:
        send = self._context.send
        if requested is MessageTrigger.diagnostics_status_notification:
            diagnostics = self._diagnostics
            status = diagnostics.trigger_status() if diagnostics else DiagnosticsStatus.idle
            return send("DiagnosticsStatusNotification", {"status": status.value})
        # FirmwareStatusNotification: the schema allows nothing else
        firmware = self._firmware
        fw_status = firmware.trigger_status() if firmware else FirmwareStatus.idle
        return send("FirmwareStatusNotification", {"status": fw_status.value})


class ExtendedTrigger(_Triggers):
    """ExtendedTriggerMessage: always there with the security extension (it is not part of the
    RemoteTrigger feature profile). FirmwareStatusNotification asks for the signed firmware
    update's SignedFirmwareStatusNotification (§6.16, L01.FR.28/29), and
    SignChargePointCertificate for a new key pair and a SignCertificate.req (A02.FR.02)."""

    def __init__(
        self,
        context: Context,
        availability: Availability,
        metering: Metering,
        certificates: CertificateManagement | None,
        firmware: FirmwareUpdater | None,
        diagnostics: DiagnosticsUploader | None,
    ) -> None:
        super().__init__(context, availability, metering, firmware, diagnostics)
        self._certificates = certificates

    def decide(self, requested: MessageTrigger, connector_id: int | None) -> TriggerMessageStatus:
        if requested is MessageTrigger.sign_charge_point_certificate and not self._certificates:
            return TriggerMessageStatus.not_implemented
        return super().decide(requested, connector_id)

    @on(Action.extended_trigger_message)  # type: ignore[untyped-decorator]
    def _on_extended_trigger_message(
        self, requested_message: str, connector_id: int | None = None
    ) -> call_result.ExtendedTriggerMessage:
        return call_result.ExtendedTriggerMessage(
            self.decide(MessageTrigger(requested_message), connector_id)
        )

    @after(Action.extended_trigger_message)  # type: ignore[untyped-decorator]
    def _after_extended_trigger_message(
        self, requested_message: str, connector_id: int | None = None
    ) -> None:
        requested = MessageTrigger(requested_message)
        if self.decide(requested, connector_id) is not TriggerMessageStatus.accepted:
            return
        if requested is MessageTrigger.sign_charge_point_certificate:
            assert self._certificates is not None  # decide() said NotImplemented otherwise
            self._certificates.request_certificate()  # its own task; a CSR takes a moment
            return
        self._deliver(requested, connector_id)

    def _own(self, requested: MessageTrigger) -> Work:
        send = self._context.send
        if requested is MessageTrigger.log_status_notification:
            diagnostics = self._diagnostics
            payload = diagnostics.log_status() if diagnostics else {"status": "Idle"}
            return send("LogStatusNotification", payload)
        # FirmwareStatusNotification: the schema allows nothing else
        firmware = self._firmware
        payload = firmware.signed_status() if firmware else {"status": "Idle"}
        return send("SignedFirmwareStatusNotification", payload)
