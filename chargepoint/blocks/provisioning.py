"""Provisioning functional block: configuration keys (§5.8 GetConfiguration, §5.4
ChangeConfiguration) and Reset (§5.14). BootNotification and Heartbeat belong to the session
(:mod:`chargepoint.protocol.session`): they are the connection's life, not a CSMS command.

A reset stops every transaction (reason HardReset or SoftReset) and, while online, waits a
bounded time for the StopTransactions and the Finishing statuses to be answered before the
connection goes (OCTT TC_015_CS, TC_016_CS); what is not answered by then stays queued on
disk and is delivered once after the restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ocpp.routing import after, on
from ocpp.v16 import call_result
from ocpp.v16.datatypes import KeyValue
from ocpp.v16.enums import Action, ConfigurationStatus, Reason, ResetStatus, ResetType

from chargepoint.blocks.availability import Availability
from chargepoint.blocks.context import Context
from chargepoint.blocks.transactions import Transactions
from config.ocpp_keys import AUTHORIZATION_KEY, SECURITY_PROFILE

log = logging.getLogger(__name__)

ResetHook = Callable[[ResetType], Awaitable[None]]

RESET_GRACE = {
    ResetType.soft: 30.0,  # graceful: let the StopTransactions reach the CSMS
    ResetType.hard: 10.0,  # bounded: a hard reset is asked for because something is wrong
}


class Provisioning:
    def __init__(
        self,
        context: Context,
        availability: Availability,
        transactions: Transactions,
        reset_hook: ResetHook | None,
    ) -> None:
        self._context = context
        self._availability = availability
        self._transactions = transactions
        self._reset_hook = reset_hook
        self.resetting: ResetType | None = None
        self._accepted_change: tuple[str, str] | None = None  # for the @after handler

    # -- configuration --

    @on(Action.get_configuration)  # type: ignore[untyped-decorator]
    def _on_get_configuration(self, key: list[str] | None = None) -> call_result.GetConfiguration:
        known, unknown = self._context.keys.read(key)
        return call_result.GetConfiguration(
            configuration_key=[KeyValue(k.key, k.readonly, k.value) for k in known] or None,
            unknown_key=unknown or None,
        )

    @on(Action.change_configuration)  # type: ignore[untyped-decorator]
    def _on_change_configuration(self, key: str, value: str) -> call_result.ChangeConfiguration:
        status = self._context.keys.change(key, value)
        self._accepted_change = (key, value) if status is ConfigurationStatus.accepted else None
        return call_result.ChangeConfiguration(status)

    @after(Action.change_configuration)  # type: ignore[untyped-decorator]
    def _after_change_configuration(self, key: str, value: str) -> None:
        session = self._context.session
        accepted, self._accepted_change = self._accepted_change, None
        if session is None or key not in (AUTHORIZATION_KEY, SECURITY_PROFILE):
            return
        if accepted != (key, value):
            return  # Rejected: nothing changed
        # Whitepaper A01 and A05.FR.06/07: disconnect, and connect again with the new password
        # or the new profile; queued messages wait on disk meanwhile.
        what = "AuthorizationKey" if key == AUTHORIZATION_KEY else f"SecurityProfile to {value}"
        session.spawn(session.reconnect(f"the CSMS changed the {what}"), "reconnect for security")

    # -- reset --

    @on(Action.reset)  # type: ignore[untyped-decorator]
    def _on_reset(self, type: str) -> call_result.Reset:
        return call_result.Reset(ResetStatus.accepted)

    @after(Action.reset)  # type: ignore[untyped-decorator]
    def _after_reset(self, type: str) -> None:
        # After the answer: Reset.conf goes out before any StopTransaction.
        self._context.spawn(self.reset(ResetType(type)), "reset")

    async def reset(self, kind: ResetType) -> None:
        context = self._context
        async with context.work():
            self.resetting = kind
            self._availability.refuse_new_transactions("reset")
            self._transactions.stop_all(
                Reason.soft_reset if kind is ResetType.soft else Reason.hard_reset
            )
        if context.online:
            grace = RESET_GRACE[kind]
            try:
                async with asyncio.timeout(grace):
                    await context.wait_until(
                        lambda: (
                            not context.online
                            or (len(context.outbox) == 0 and self._availability.all_reported())
                        )
                    )
            except TimeoutError:
                log.warning(
                    "%s reset: %d messages not answered within %g s; kept for after the restart",
                    kind.value,
                    len(context.outbox),
                    grace,
                )
        log.warning("%s reset requested by the CSMS", kind.value)
        if self._reset_hook is not None:
            await self._reset_hook(kind)
