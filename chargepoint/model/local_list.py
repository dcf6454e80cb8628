"""The Local Authorization List (OCPP 1.6 §3.5.2, §5.10 Get Local List Version, §5.15 Send
Local List, §7.2 AuthorizationData, §9.2 keys, errata v4.0 §3.52).

The CSMS is the list's only author (§3.5.2: the charge point "SHALL NOT modify the contents ...
by any other means"): a Full update replaces the list, a Differential one adds, updates (an
entry with idTagInfo) and deletes (an entry without) idTags, and each names the version the
list has afterwards. The rules this model applies, in this order:

* version 0 and -1 mean "empty" and "not supported" in GetLocalListVersion.conf, so an update
  naming either is refused (errata §3.52) — ``Failed``;
* more entries than SendLocalListMaxLength, one idTag twice in one update (IdToken is a
  case-insensitive CiString20: §7.28, §7.1), or an entry without idTagInfo in a Full update
  (§7.1) is ``Failed``;
* a Differential update whose version is not above the list's is ``VersionMismatch`` (§6.42);
* a list longer than LocalAuthListMaxLength afterwards is ``Failed`` and changes nothing;
* an empty list has version 0 whatever the update named (§5.10: "0 SHALL be used to indicate
  that the local authorization list is empty"; OCTT TC_042_2_CS expects exactly this after a
  Full update of version 1 without entries).

An update is applied in one SQLite transaction: all of it reaches the disk, or none (a power
cut halfway through leaves the previous list whole).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ocpp.v16.enums import AuthorizationStatus, UpdateStatus, UpdateType

from chargepoint.model.authorization import IdTagInfo
from chargepoint.storage import atomic

log = logging.getLogger(__name__)

# The list's version when empty, and the answer when the list is not in use (§5.10).
EMPTY_VERSION = 0
NOT_ENABLED_VERSION = -1


@dataclass(frozen=True, slots=True)
class ListUpdate:
    """One SendLocalList.req: ``info`` None deletes the idTag (Differential only)."""

    version: int
    full: bool
    entries: tuple[tuple[str, IdTagInfo | None], ...]

    @classmethod
    def from_request(
        cls,
        list_version: int,
        update_type: str,
        local_authorization_list: Iterable[Mapping[str, Any]] | None,
    ) -> ListUpdate:
        """From the handler's arguments: the ``ocpp`` library hands nested objects over with
        snake_case keys (``id_tag``, ``id_tag_info.expiry_date``)."""
        entries = tuple(
            (str(entry["id_tag"]), _info(entry.get("id_tag_info")))
            for entry in local_authorization_list or ()
        )
        return cls(list_version, UpdateType(update_type) is UpdateType.full, entries)

    @property
    def kind(self) -> str:
        return "Full" if self.full else "Differential"


@dataclass(frozen=True, slots=True)
class Outcome:
    status: UpdateStatus
    reason: str | None = None  # for the log, when not Accepted


def _info(info: Mapping[str, Any] | None) -> IdTagInfo | None:
    if not info:
        return None
    return IdTagInfo(
        AuthorizationStatus(info["status"]), info.get("expiry_date"), info.get("parent_id_tag")
    )


class UpdateRefused(Exception):
    """Raised inside the update's transaction to undo it."""


def precheck(update: ListUpdate, version: int, send_max: int) -> Outcome | None:
    """What the update is refused for before anything is written, or None."""
    if update.version <= EMPTY_VERSION:  # 0 and -1 are reserved, and no version is below
        return Outcome(UpdateStatus.failed, f"listVersion {update.version} is reserved (errata)")
    if len(update.entries) > send_max:
        return Outcome(
            UpdateStatus.failed,
            f"{len(update.entries)} entries, more than SendLocalListMaxLength {send_max}",
        )
    seen: set[str] = set()
    for id_tag, info in update.entries:
        if update.full and info is None:
            # §7.1 AuthorizationData.idTagInfo: "Required when UpdateType is Full".
            return Outcome(UpdateStatus.failed, f"idTag {id_tag} has no idTagInfo in a Full update")
        folded = id_tag.casefold()
        if folded in seen:
            return Outcome(UpdateStatus.failed, f"idTag {id_tag} appears twice")
        seen.add(folded)
    if not update.full and update.version <= version:
        return Outcome(
            UpdateStatus.version_mismatch,
            f"Differential update to version {update.version}, the list has {version}",
        )
    return None


class LocalAuthList:
    """The list on disk: ``local_list`` (one row per idTag) and its version."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    @property
    def version(self) -> int:
        row = self._db.execute("SELECT version FROM local_list_version WHERE id = 1").fetchone()
        return EMPTY_VERSION if row is None else int(row[0])

    def lookup(self, id_tag: str) -> IdTagInfo | None:
        row = self._db.execute(
            "SELECT status, expiry, parent FROM local_list WHERE id_tag = ?", (id_tag,)
        ).fetchone()
        if row is None:
            return None
        return IdTagInfo(AuthorizationStatus(row[0]), row[1], row[2])

    def entries(self) -> dict[str, IdTagInfo]:
        return {
            row[0]: IdTagInfo(AuthorizationStatus(row[1]), row[2], row[3])
            for row in self._db.execute("SELECT id_tag, status, expiry, parent FROM local_list")
        }

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM local_list").fetchone()[0])

    def apply(self, update: ListUpdate, *, list_max: int, send_max: int) -> Outcome:
        """SendLocalList.req (§5.15): the outcome to answer; the list changes only when it is
        Accepted."""
        refused = precheck(update, self.version, send_max)
        if refused is not None:
            return refused
        try:
            with atomic(self._db) as db:
                if update.full:
                    db.execute("DELETE FROM local_list")
                for id_tag, info in update.entries:
                    if info is None:
                        db.execute("DELETE FROM local_list WHERE id_tag = ?", (id_tag,))
                        continue
                    db.execute(
                        "INSERT INTO local_list (id_tag, status, expiry, parent) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT(id_tag) DO UPDATE SET "
                        "id_tag = excluded.id_tag, status = excluded.status, "
                        "expiry = excluded.expiry, parent = excluded.parent",
                        (id_tag, info.status.value, info.expiry_date, info.parent_id_tag),
                    )
                size = _size_within(db, list_max)
                version = update.version if size else EMPTY_VERSION
                db.execute(
                    "INSERT INTO local_list_version (id, version) VALUES (1, ?) "
                    "ON CONFLICT(id) DO UPDATE SET version = excluded.version",
                    (version,),
                )
        except UpdateRefused as exc:
            return Outcome(UpdateStatus.failed, str(exc))
        except sqlite3.Error as exc:
            log.error("the local list could not be stored: %s", exc)
            return Outcome(UpdateStatus.failed, f"storage error: {exc}")
        return Outcome(UpdateStatus.accepted)


def _size_within(db: sqlite3.Connection, list_max: int) -> int:
    size = int(db.execute("SELECT COUNT(*) FROM local_list").fetchone()[0])
    if size > list_max:
        raise UpdateRefused(
            f"the list would hold {size} idTags, more than LocalAuthListMaxLength {list_max}"
        )
    return size
