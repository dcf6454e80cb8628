"""Authorization functional block: who may charge (OCPP 1.6 §3.5, §4.1 Authorize, §5.3
ClearCache), on the cache and the offline rules of :mod:`chargepoint.model.authorization`.

A driver at the charger must not wait for the network: a card presented while the charge point
is offline is decided locally at once, and so is one presented while another call has occupied
the line (OCPP-J allows one call in flight) for longer than :data:`LINE_WAIT` — a CSMS that
answers in time answers well within it, a dead link not for the whole call timeout.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, ClearCacheStatus

from chargepoint.blocks.context import Context
from chargepoint.blocks.events import LocalListConflict
from chargepoint.model.authorization import AuthorizationCache, Authorizer, IdTagInfo
from chargepoint.model.local_list import LocalAuthList

log = logging.getLogger(__name__)

# Seconds an Authorize may wait for a call in flight before deciding locally. The longest call
# a healthy link carries is a replay batch of the outbox (csms.replay_batch_bytes, 12 KiB by
# default: 1.1 s of a 115200-baud uplink) and its round trip; with 1 s, a card presented while
# the backlog of a coverage hole went out was decided offline, and refused when unknown
# (found by bench.soak).
LINE_WAIT = 3.0


class Authorization:
    def __init__(self, context: Context) -> None:
        self._context = context
        self.cache = AuthorizationCache(context.db)
        # The Local Authorization List, when the deployment offers its profile.
        self.local_list = (
            LocalAuthList(context.db) if "LocalAuthListManagement" in context.profiles else None
        )
        self._policy = Authorizer(context.keys, self.cache, self.local_list, self._on_conflict)

    def remember(self, id_tag: str, info: IdTagInfo) -> None:
        """Keep what the CSMS said of ``id_tag`` (Authorize, Start- and StopTransaction.conf)."""
        self._policy.remember(id_tag, info)

    async def authorize(self, id_tag: str) -> IdTagInfo:
        connection = self._context.connection
        if connection is None:
            return self._policy.offline(id_tag, *self._policy.local(id_tag))
        request: Any = partial(connection.request, line_wait=LINE_WAIT)
        return await self._policy.authorize(id_tag, request)

    def _on_conflict(self, id_tag: str, listed: IdTagInfo, answered: IdTagInfo) -> None:
        log.warning(
            "idTag %s is %s on the local list but %s for the CSMS: reporting LocalListConflict",
            id_tag,
            listed.status.value,
            answered.status.value,
        )
        self._context.events.publish(LocalListConflict(id_tag))

    @on(Action.clear_cache)  # type: ignore[untyped-decorator]
    def _on_clear_cache(self) -> call_result.ClearCache:
        self.cache.clear()
        log.info("authorization cache cleared")
        return call_result.ClearCache(ClearCacheStatus.accepted)
