"""Data transfer functional block: DataTransfer from the CSMS (OCPP 1.6 §4.3, §5.6),
vendor-specific functions by vendor id.

An unknown vendor id gets UnknownVendorId and no data; a vendor's handler decides everything
else (including UnknownMessageId for a message id it does not know).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, DataTransferStatus


@dataclass(frozen=True, slots=True)
class DataTransferReply:
    status: DataTransferStatus
    data: str | None = None


VendorHandler = Callable[[str | None, str | None], DataTransferReply]
"""Called with (messageId, data); returns the reply."""


class DataTransferVendors:
    def __init__(self) -> None:
        self._handlers: dict[str, VendorHandler] = {}

    def register(self, vendor_id: str, handler: VendorHandler) -> None:
        self._handlers[vendor_id] = handler

    def handle(self, vendor_id: str, message_id: str | None, data: str | None) -> DataTransferReply:
        handler = self._handlers.get(vendor_id)
        if handler is None:
            return DataTransferReply(DataTransferStatus.unknown_vendor_id)
        return handler(message_id, data)

    @on(Action.data_transfer, skip_schema_validation=True)  # type: ignore[untyped-decorator]
    def _on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: str | None = None
    ) -> call_result.DataTransfer:
        reply = self.handle(vendor_id, message_id, data)
        return call_result.DataTransfer(status=reply.status, data=reply.data)
