"""Transactions as the charge point remembers them, on disk (OCPP 1.6 §4.8, §4.10).

A transaction gets a local id the moment it starts, online or not; the CSMS's transactionId
is filled in when StartTransaction.conf arrives (:meth:`TransactionStore.set_csms_id`, in the
same SQLite transaction that removes the message from the outbox). The row stays until the
CSMS has acknowledged its StopTransaction, so a power cut at any point leaves either an open
transaction to resume or stop, or a queued StopTransaction to deliver: never an orphan.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

MAX_STOP_VALUES = 96  # meter values kept for StopTransaction.transactionData


@dataclass
class Transaction:
    local_id: int
    connector: int
    id_tag: str
    parent_id_tag: str | None
    meter_start: int
    start_time: str
    transaction_id: int | None = None
    id_tag_status: str | None = None
    meter_last: int = 0
    last_seen: str = ""
    stopped: bool = False
    stop_data: list[dict[str, Any]] = field(default_factory=list)
    deauthorized: bool = False  # StartTransaction.conf said not Accepted; energy limited


class TransactionStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def start(
        self,
        connector: int,
        id_tag: str,
        parent_id_tag: str | None,
        meter_start: int,
        start_time: datetime,
    ) -> Transaction:
        stamp = timestamp(start_time)
        cursor = self._db.execute(
            "INSERT INTO transactions (connector, id_tag, parent_id_tag, meter_start, start_time,"
            " meter_last, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (connector, id_tag, parent_id_tag, meter_start, stamp, meter_start, stamp),
        )
        assert cursor.lastrowid is not None
        return Transaction(
            cursor.lastrowid,
            connector,
            id_tag,
            parent_id_tag,
            meter_start,
            stamp,
            meter_last=meter_start,
            last_seen=stamp,
        )

    def open(self) -> list[Transaction]:
        """Transactions not yet stopped (after a restart: the ones a power cut interrupted)."""
        rows = self._db.execute(
            "SELECT local_id, connector, id_tag, parent_id_tag, meter_start, start_time,"
            " transaction_id, id_tag_status, meter_last, last_seen, stop_data"
            " FROM transactions WHERE stopped = 0 ORDER BY local_id"
        ).fetchall()
        return [
            Transaction(
                local_id=row[0],
                connector=row[1],
                id_tag=row[2],
                parent_id_tag=row[3],
                meter_start=row[4],
                start_time=row[5],
                transaction_id=row[6],
                id_tag_status=row[7],
                meter_last=row[8],
                last_seen=row[9],
                stop_data=json.loads(row[10]),
                deauthorized=row[7] not in (None, "Accepted"),
            )
            for row in rows
        ]

    def csms_id(self, local_id: int) -> int | None:
        row = self._db.execute(
            "SELECT transaction_id FROM transactions WHERE local_id = ?", (local_id,)
        ).fetchone()
        return None if row is None else row[0]

    def set_csms_id(self, local_id: int, transaction_id: int, status: str) -> None:
        self._db.execute(
            "UPDATE transactions SET transaction_id = ?, id_tag_status = ? WHERE local_id = ?",
            (transaction_id, status, local_id),
        )

    def note_meter(self, tx: Transaction, meter: int, when: datetime) -> None:
        tx.meter_last, tx.last_seen = meter, timestamp(when)
        self._db.execute(
            "UPDATE transactions SET meter_last = ?, last_seen = ? WHERE local_id = ?",
            (tx.meter_last, tx.last_seen, tx.local_id),
        )

    def add_stop_value(self, tx: Transaction, meter_value: dict[str, Any]) -> None:
        tx.stop_data.append(meter_value)
        if len(tx.stop_data) > MAX_STOP_VALUES:
            # Errata v4.0 §3.89: drop intermediate values, keep the first (Transaction.Begin).
            del tx.stop_data[1]
        self._db.execute(
            "UPDATE transactions SET stop_data = ? WHERE local_id = ?",
            (json.dumps(tx.stop_data), tx.local_id),
        )

    def mark_stopped(self, tx: Transaction) -> None:
        tx.stopped = True
        self._db.execute("UPDATE transactions SET stopped = 1 WHERE local_id = ?", (tx.local_id,))

    def forget(self, local_id: int) -> None:
        self._db.execute("DELETE FROM transactions WHERE local_id = ?", (local_id,))

    def count(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM transactions").fetchone()
        return int(row[0])


def timestamp(when: datetime) -> str:
    """OCPP dateTime: UTC with a Z, millisecond precision at most."""
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
