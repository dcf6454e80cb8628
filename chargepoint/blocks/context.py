"""The one context every functional block is built on (after EVerest libocpp's
``FunctionalBlockContext``): configuration keys, the charger, the durable stores, the
scheduler, the connection while there is one, block-to-block events, and one unit of work at a
time.

Concurrency: hardware events and the work CSMS commands start run as tasks, one unit at a time
(:meth:`Context.work`). CSMS handlers never take the lock and never send a request: they decide
from the current state and hand the work to a task (the library reads the next frame only when
a handler returns; waiting there for an answer would wait for itself). When a unit of work
ends, the blocks that derive something from the state (connector statuses) are told once
(:meth:`Context.on_settled`), so nothing half-done is ever reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from chargepoint.blocks.events import Events
from chargepoint.hardware.charger import Charger, HardwareEvent, IdTagPresented
from chargepoint.model.transactions import TransactionStore
from chargepoint.protocol.outbox import BATCH_BYTES, Outbox
from chargepoint.protocol.request import (
    REQUEST_FAILURES,
    Online,
    SessionHooks,
    describe_failure,
)
from config.ocpp_keys import ConfigurationKeys

log = logging.getLogger(__name__)

H = TypeVar("H")


class Context:
    def __init__(
        self,
        *,
        charger: Charger,
        keys: ConfigurationKeys,
        db: sqlite3.Connection,
        scheduler: AsyncIOScheduler,
        profiles: frozenset[str],
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        self.charger = charger
        self.keys = keys
        self.db = db
        self.scheduler = scheduler
        self.profiles = profiles  # the feature profiles this deployment enables
        self.events = Events()
        self.transactions = TransactionStore(db)
        self._changed = asyncio.Event()
        self.outbox = Outbox(
            db, self.transactions, on_change=self._changed.set, batch_bytes=batch_bytes
        )
        self.connection: Online | None = None
        # The OCPP session from the WebSocket's opening, before the CSMS has accepted the
        # charge point too (ChangeConfiguration is allowed while Pending).
        self.session: SessionHooks | None = None
        self._lock = asyncio.Lock()
        self._settled: list[Callable[[], None]] = []
        self._hardware: defaultdict[type[Any], list[Callable[[Any], Awaitable[None]]]] = (
            defaultdict(list)
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._after_boot: list[Callable[[], None]] = []
        charger.listen(self._on_hardware)

    @property
    def connectors(self) -> range:
        """The connector numbers, 1..N."""
        return range(1, len(self.charger.connectors) + 1)

    # -- one unit of work at a time --

    @contextlib.asynccontextmanager
    async def work(self) -> AsyncIterator[None]:
        async with self._lock:
            try:
                yield
            finally:
                self.settle()

    def settle(self) -> None:
        for callback in self._settled:
            callback()
        self._changed.set()

    def on_settled(self, callback: Callable[[], None]) -> None:
        self._settled.append(callback)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; it is checked after every change of state."""
        while not predicate():
            self._changed.clear()
            await self._changed.wait()

    def changed(self) -> None:
        self._changed.set()

    # -- tasks --

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- the hardware --

    def on_hardware(self, kind: type[H], handler: Callable[[H], Awaitable[None]]) -> None:
        """Call ``handler`` for every hardware event of ``kind``. All handlers of one event run
        in one unit of work, except for a card on the reader: deciding on it may wait for the
        CSMS, so its handlers take the unit of work themselves when they need it."""
        self._hardware[kind].append(handler)

    def _on_hardware(self, event: HardwareEvent) -> None:
        self.spawn(self._dispatch(event), f"hardware {type(event).__name__}")

    async def _dispatch(self, event: HardwareEvent) -> None:
        handlers = self._hardware[type(event)]
        if isinstance(event, IdTagPresented):
            for handler in handlers:
                await handler(event)
            return
        async with self.work():
            for handler in handlers:
                await handler(event)

    # -- the CSMS --

    def after_boot(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` once, when the next accepted boot has reported the connectors."""
        self._after_boot.append(hook)

    def booted(self) -> None:
        hooks, self._after_boot = self._after_boot, []
        for hook in hooks:
            hook()

    @property
    def online(self) -> bool:
        return self.connection is not None

    async def send(self, action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """A request that is not transaction-related: sent now if online, else dropped."""
        connection = self.connection
        if connection is None:
            log.info("offline: %s not sent", action)
            return None
        try:
            return await connection.request(action, payload)
        except REQUEST_FAILURES as exc:
            log.warning("%s failed: %s", action, describe_failure(exc))
            return None

    def send_durable(self, action: str, payload: dict[str, Any], local_tx: int | None) -> None:
        """A transaction-related request: queued on disk, delivered in order, retried."""
        self.outbox.put(action, payload, local_tx)
