"""Local Auth List Management functional block (OCPP 1.6 §3.5.2, §5.10 GetLocalListVersion,
§5.15 SendLocalList), on :class:`~chargepoint.model.local_list.LocalAuthList`; the
Authorization block consults the list (:mod:`chargepoint.model.authorization`).

While LocalAuthListEnabled is false the list is kept but not used, and the charge point
answers as one without a list: GetLocalListVersion -1 (§5.10, OCTT TC_042_1_CS) and
SendLocalList NotSupported (§6.42; TC_043_1_CS accepts it as the answer of a charge point
that does not take the list). With the profile disabled in the configuration the actions have
no handler at all: CallError NotSupported.

An update is applied inside the handler, in one SQLite transaction, before it is answered:
Accepted means the list is on disk. The event loop waits for it: 10,000 entries take ~35 ms on
a desktop core, a few hundred ms on a controller's, which the serial line's buffers absorb.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, UpdateStatus

from chargepoint.blocks.context import Context
from chargepoint.model.local_list import NOT_ENABLED_VERSION, ListUpdate, LocalAuthList

log = logging.getLogger(__name__)


class LocalAuthListManagement:
    def __init__(self, context: Context, local_list: LocalAuthList) -> None:
        self._keys = context.keys
        self.list = local_list

    @property
    def enabled(self) -> bool:
        return self._keys.boolean("LocalAuthListEnabled")

    @on(Action.get_local_list_version)  # type: ignore[untyped-decorator]
    def _on_get_local_list_version(self) -> call_result.GetLocalListVersion:
        return call_result.GetLocalListVersion(
            self.list.version if self.enabled else NOT_ENABLED_VERSION
        )

    @on(Action.send_local_list)  # type: ignore[untyped-decorator]
    def _on_send_local_list(
        self,
        list_version: int,
        update_type: str,
        local_authorization_list: Iterable[Mapping[str, Any]] | None = None,
    ) -> call_result.SendLocalList:
        if not self.enabled:
            log.info("SendLocalList refused: LocalAuthListEnabled is false")
            return call_result.SendLocalList(UpdateStatus.not_supported)
        update = ListUpdate.from_request(list_version, update_type, local_authorization_list)
        began = time.monotonic()
        outcome = self.list.apply(
            update,
            list_max=self._keys.integer("LocalAuthListMaxLength"),
            send_max=self._keys.integer("SendLocalListMaxLength"),
        )
        if outcome.status is UpdateStatus.accepted:
            log.info(
                "local list: %s update of %d entries applied in %.0f ms; version %d, %d idTags",
                update.kind,
                len(update.entries),
                (time.monotonic() - began) * 1000,
                self.list.version,
                len(self.list),
            )
        else:
            log.warning(
                "local list: %s update to version %d refused (%s): %s",
                update.kind,
                update.version,
                outcome.status.value,
                outcome.reason,
            )
        return call_result.SendLocalList(outcome.status)
