"""The charge point's durable state: one SQLite database in the state directory.

Transaction messages, transactions, configuration keys, the authorization cache, the Local
Authorization List, reservations, charging profiles and connector availability live here, so
that a power cut loses none of them. The database runs in WAL mode with ``synchronous=FULL``:
a write has reached the disk when the call returns (architecture notes, "Durable state"),
which is what "written before the message is sent" needs.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    action     TEXT NOT NULL,
    payload    TEXT NOT NULL,          -- JSON; transactionId filled in at sending time
    local_tx   INTEGER,                -- the transaction it belongs to, if any
    attempts   INTEGER NOT NULL DEFAULT 0,
    created    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS transactions (
    local_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    connector       INTEGER NOT NULL,
    id_tag          TEXT NOT NULL,
    parent_id_tag   TEXT,
    meter_start     INTEGER NOT NULL,
    start_time      TEXT NOT NULL,
    transaction_id  INTEGER,           -- the CSMS's id, once StartTransaction is answered
    id_tag_status   TEXT,              -- from StartTransaction.conf
    stopped         INTEGER NOT NULL DEFAULT 0,
    meter_last      INTEGER NOT NULL,  -- the last register value seen, for a stop after a power cut
    last_seen       TEXT NOT NULL,     -- when meter_last was read
    stop_data       TEXT NOT NULL DEFAULT '[]'  -- JSON MeterValue list for StopTransaction
);
CREATE TABLE IF NOT EXISTS configuration (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_cache (
    id_tag      TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    expiry      TEXT,
    parent      TEXT
);
CREATE TABLE IF NOT EXISTS local_list (   -- the Local Authorization List (§3.5.2)
    id_tag      TEXT PRIMARY KEY COLLATE NOCASE,  -- IdToken is a CiString20 (§7.30)
    status      TEXT NOT NULL,
    expiry      TEXT,
    parent      TEXT
);
CREATE TABLE IF NOT EXISTS local_list_version (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    version     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (  -- ReserveNow (§5.13)
    id          INTEGER PRIMARY KEY,  -- the CSMS's reservationId
    connector   INTEGER NOT NULL,     -- 0: any connector
    id_tag      TEXT NOT NULL,
    parent      TEXT,
    expiry      TEXT NOT NULL         -- ISO 8601, UTC
);
CREATE TABLE IF NOT EXISTS charging_profiles (  -- SetChargingProfile (§5.16)
    id          INTEGER PRIMARY KEY,  -- chargingProfileId
    connector   INTEGER NOT NULL,     -- the connectorId it was set for; 0: the charge point
    profile     TEXT NOT NULL         -- JSON csChargingProfiles
);
CREATE TABLE IF NOT EXISTS availability (
    connector   INTEGER PRIMARY KEY,
    operative   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS firmware_update (
    id             INTEGER PRIMARY KEY CHECK (id = 1),  -- one update at a time
    location       TEXT NOT NULL,
    retrieve_date  TEXT NOT NULL,
    retries        INTEGER NOT NULL,
    retry_interval INTEGER NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    phase          TEXT NOT NULL,  -- waiting | downloaded | installed | failed (see firmware.py)
    image          TEXT
);
CREATE TABLE IF NOT EXISTS simulated_hardware (
    connector   INTEGER PRIMARY KEY,  -- 0: the charge point as a whole
    state       TEXT NOT NULL         -- JSON: cable, EV, lock, fault, suspension, meter
);
CREATE TABLE IF NOT EXISTS simulated_connectors (  -- before simulated_hardware; read once
    connector   INTEGER PRIMARY KEY,  -- the simulated charger's meter and cable survive a restart
    wh          REAL NOT NULL,
    plugged     INTEGER NOT NULL DEFAULT 0
);
"""


WAL_PAGES = 256


class StateError(Exception):
    """The state database cannot be opened or is not ours."""


def open_state(directory: str | Path) -> sqlite3.Connection:
    """Open (creating if needed) ``state.db`` in ``directory``."""
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path / "state.db", isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        # The WAL is checkpointed every 256 pages (1 MiB, not SQLite's 1,000) and cut back to
        # 1 MiB after each checkpoint: the outbox rewrites the same few pages, so this costs
        # the flash next to nothing, and the state directory stays ~1 MiB instead of keeping a
        # 4 MiB WAL for good (bench.soak: state_db_mb).
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
        db.execute(f"PRAGMA journal_size_limit={WAL_PAGES * 4096}")
        db.executescript(SCHEMA)
    except (OSError, sqlite3.Error) as exc:
        raise StateError(f"cannot use the state database in {path}: {exc}") from exc
    return db


@contextlib.contextmanager
def atomic(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One SQLite transaction: all of the block's writes reach the disk, or none."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
