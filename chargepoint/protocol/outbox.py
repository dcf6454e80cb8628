"""The durable outbox of transaction-related messages (OCPP 1.6 §3.7, §4.10), and of the
security events the CSMS must get after an outage (whitepaper A04.FR.02).

StartTransaction, StopTransaction and transaction MeterValues are written to SQLite before
anything is sent (``synchronous=FULL``: on disk when :meth:`Outbox.put` returns), delivered
in order with one CALL outstanding, and removed only when the CSMS has answered. A
StopTransaction or MeterValues is stored without its transactionId: the CSMS's id is filled
in when the message is sent, so a transaction started offline works unchanged; the id is
written in the same SQLite transaction that removes the StartTransaction from the outbox.

What counts as a failure (§3.7.1, OCPP-J 1.6 §4.2.3): a CallError answer. The message is
sent again after TransactionMessageRetryInterval times the attempts so far and, after
TransactionMessageAttempts failures, dropped with an error in the log: never silently. No
answer at all (a timeout, a lost connection) is not the CSMS refusing the message: it is sent
again, unchanged, until it is answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ocpp.exceptions import OCPPError

from chargepoint.model.transactions import TransactionStore
from chargepoint.storage import atomic

log = logging.getLogger(__name__)

# StopTransaction and MeterValues need the CSMS's transactionId, filled in when sent.
NEEDS_TRANSACTION_ID = ("StopTransaction", "MeterValues")
TRANSACTION_ACTIONS = ("StartTransaction", *NEEDS_TRANSACTION_ID)
# CallErrors that say the CSMS will never take a message of that action (OCPP-J 1.6 §4.2.3);
# the outbox also carries the security extension's notifications (whitepaper A04.FR.02).
NEVER_TAKEN = ("NotImplemented", "NotSupported")
# A backlog of MeterValues of one transaction goes out as one MeterValues.req with several
# meterValue elements (OCPP 1.6 §6.31 allows 1..*), at most this much JSON: one CALL may be in
# flight (OCPP-J §4.1.1), so after a long hole one sample per round trip would take hours.
# The bound (csms.replay_batch_bytes) is a trade: a bigger request spends less of the link on
# round trips (issue 19: 4 KiB used 0.73 of a 115200-baud uplink with 50 ms latency, 12 KiB
# 0.86), and a CALLRESULT the charge point owes the CSMS waits behind it (12 KiB: ~1.1 s).
BATCH_BYTES = 12288
ENVELOPE = 96  # bytes of a MeterValues CALL around its payload, transactionId included


@dataclass(frozen=True, slots=True)
class Item:
    seq: int
    action: str
    payload: dict[str, Any]
    local_tx: int | None
    attempts: int


Send = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
Answered = Callable[[Item, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int  # TransactionMessageAttempts
    interval: float  # TransactionMessageRetryInterval, seconds
    no_answer_retry: float  # after a timeout on a connection that is still up


class Outbox:
    def __init__(
        self,
        db: sqlite3.Connection,
        transactions: TransactionStore,
        on_change: Callable[[], None] | None = None,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        self._db = db
        self._batch_bytes = batch_bytes
        self._on_change = on_change
        self._transactions = transactions
        self._changed = asyncio.Event()
        self._removed = asyncio.Event()
        self._unanswered: list[int] = []  # the batch last sent without an answer
        self.delivered = 0
        self.dropped = 0
        # Messages put since the daemon started, by action: what the CSMS should get (bench.soak
        # counts what it got against this, through `chargepoint ctl status`).
        self.queued: Counter[str] = Counter()

    def put(self, action: str, payload: dict[str, Any], local_tx: int | None = None) -> int:
        """Queue a message durably; returns its sequence number."""
        cursor = self._db.execute(
            "INSERT INTO outbox (action, payload, local_tx, created) VALUES (?, ?, ?, ?)",
            (action, _compact(payload), local_tx, _now()),
        )
        self.queued[action] += 1
        self._changed.set()
        if self._on_change is not None:
            self._on_change()
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def head(self) -> Item | None:
        row = self._db.execute(
            "SELECT seq, action, payload, local_tx, attempts FROM outbox ORDER BY seq LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return Item(row[0], row[1], json.loads(row[2]), row[3], row[4])

    def pending(self, *, limit: int = -1, after: int = 0) -> list[Item]:
        rows = self._db.execute(
            "SELECT seq, action, payload, local_tx, attempts FROM outbox WHERE seq > ?"
            " ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
        return [Item(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]

    async def wait_empty(self) -> None:
        while len(self):
            self._removed.clear()
            await self._removed.wait()

    async def wait_for_work(self) -> None:
        while self.head() is None:
            self._changed.clear()
            await self._changed.wait()

    def _batch(self, head: Item) -> list[Item]:
        """``head`` and the MeterValues right behind it of the same transaction and connector.

        A message that already failed once goes alone, so failures are counted per message;
        a batch that got no answer is sent again unchanged (``self._unanswered``).
        """
        if head.action != "MeterValues" or head.local_tx is None or head.attempts:
            return [head]
        if self._unanswered and self._unanswered[0] == head.seq:
            wanted = self._unanswered
            rows = [item for item in self.pending(limit=len(wanted)) if item.seq in wanted]
            if [item.seq for item in rows] == wanted:
                return rows
        # Sizes as sent (compact JSON), plus room for the OCPP-J envelope and the transactionId
        # ([2,"<36-character id>","MeterValues",{...,"transactionId":<10 digits>}]).
        batch, size = [head], len(_compact(head.payload)) + ENVELOPE
        # A meterValue element is at least ~50 bytes of JSON (a timestamp and one value).
        for item in self.pending(limit=self._batch_bytes // 48 + 1, after=head.seq):
            if (
                item.action != "MeterValues"
                or item.local_tx != head.local_tx
                or item.payload.get("connectorId") != head.payload.get("connectorId")
                or item.attempts
            ):
                break
            size += len(_compact(item.payload["meterValue"])) + 1
            if size > self._batch_bytes:
                break
            batch.append(item)
        return batch

    def _resolve(self, item: Item) -> dict[str, Any] | None:
        """The payload as sent: with the CSMS's transactionId where one is needed."""
        if item.action not in NEEDS_TRANSACTION_ID or item.local_tx is None:
            return item.payload
        transaction_id = self._transactions.csms_id(item.local_tx)
        if transaction_id is None:
            return None
        return {**item.payload, "transactionId": transaction_id}

    def _remove(
        self, item: Item, answer: dict[str, Any] | None, also: tuple[int, ...] = ()
    ) -> None:
        self._removed.set()
        if self._on_change is not None:
            self._on_change()
        with atomic(self._db):
            self._db.executemany(
                "DELETE FROM outbox WHERE seq = ?", [(seq,) for seq in (item.seq, *also)]
            )
            if item.local_tx is None:
                return
            if item.action == "StartTransaction":
                if answer is not None:
                    status = answer["idTagInfo"]["status"]
                    self._transactions.set_csms_id(item.local_tx, answer["transactionId"], status)
            elif item.action == "StopTransaction":
                self._transactions.forget(item.local_tx)

    def _count_failure(self, item: Item) -> int:
        self._db.execute("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (item.seq,))
        return item.attempts + 1

    async def deliver(
        self, send: Send, policy: Callable[[], RetryPolicy], answered: Answered
    ) -> None:
        """Deliver queued messages for as long as the connection lasts (cancel to stop)."""
        while True:
            await self.wait_for_work()
            item = self.head()
            assert item is not None
            payload = self._resolve(item)
            if payload is None:
                self.dropped += 1
                log.error(
                    "dropping %s of local transaction %s: the CSMS never accepted its "
                    "StartTransaction, so it has no transactionId",
                    item.action,
                    item.local_tx,
                )
                self._remove(item, None)
                continue
            batch = self._batch(item)
            if len(batch) > 1:
                payload = {
                    **payload,
                    "meterValue": [v for i in batch for v in i.payload["meterValue"]],
                }
            rules = policy()
            self._unanswered = [i.seq for i in batch]
            try:
                answer = await send(item.action, payload)
            except OCPPError as error:
                self._unanswered = []
                if item.action not in TRANSACTION_ACTIONS and error.code in NEVER_TAKEN:
                    # A CSMS without the security extension will never take a
                    # SecurityEventNotification: retrying would hold the transaction messages
                    # behind it for minutes, at every boot.
                    self.dropped += 1
                    log.warning(
                        "dropping %s (queued #%d): the CSMS answered CallError %s, it does "
                        "not take this message",
                        item.action,
                        item.seq,
                        error.code,
                    )
                    self._remove(item, None)
                    continue
                failures = self._count_failure(item)
                if failures >= rules.attempts:
                    self.dropped += 1
                    log.error(
                        "dropping %s (queued #%d) after %d failed attempts; the CSMS answered "
                        "CallError %s: %s (OCPP 1.6 §3.7.1)",
                        item.action,
                        item.seq,
                        failures,
                        error.code,
                        error.description,
                    )
                    self._remove(item, None)
                    continue
                delay = rules.interval * failures
                log.warning(
                    "CSMS failed to process %s (CallError %s); attempt %d of %d in %g s",
                    item.action,
                    error.code,
                    failures + 1,
                    rules.attempts,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            except TimeoutError:
                log.warning(
                    "no answer to %s; sending it again in %g s", item.action, rules.no_answer_retry
                )
                await asyncio.sleep(rules.no_answer_retry)
                continue
            self._unanswered = []
            self._remove(item, answer, tuple(i.seq for i in batch[1:]))
            self.delivered += len(batch)
            answered(item, answer)


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
