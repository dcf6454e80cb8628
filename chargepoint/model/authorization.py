"""Who may charge: the Local Authorization List, the authorization cache and the offline
rules (OCPP 1.6 §3.5, §4.1, §5.3 and the keys of §9.1, §9.2).

What the charge point knows locally of an idTag comes from the Local Authorization List when
it holds the idTag (and LocalAuthListEnabled is true), else from the cache: the list has
priority (§3.5.3). An entry whose expiryDate has passed counts as Expired (§3.5.4). The
decision:

* online, LocalPreAuthorize and a local Accepted entry: start at once, no Authorize.req
  (§3.5.2 "local pre-authorization");
* online otherwise: Authorize.req; the answer updates the cache, unless the idTag is on the
  list (§3.5.3: listed idTags "SHALL NOT be added to the Authorization Cache");
* offline (or no answer): a local Accepted entry is enough when LocalAuthorizeOffline is set;
  a listed or cached idTag that is not Accepted is refused; an idTag known to neither is
  accepted when AllowOfflineTxForUnknownId is set ("unknown offline authorization"), refused
  otherwise.

The cache holds the idTagInfo of every Authorize.conf, StartTransaction.conf and
StopTransaction.conf while AuthorizationCacheEnabled is true; ClearCache empties it. When the
CSMS answers for a listed idTag with a validity other than the list's, the charge point tells
the CSMS (§3.5.2: StatusNotification, connectorId 0, errorCode LocalListConflict).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ocpp.v16.enums import AuthorizationStatus

from chargepoint.protocol.request import REQUEST_FAILURES, Request, describe_failure
from config.ocpp_keys import ConfigurationKeys

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IdTagInfo:
    status: AuthorizationStatus
    expiry_date: str | None = None
    parent_id_tag: str | None = None

    @classmethod
    def from_json(cls, info: dict[str, Any]) -> IdTagInfo:
        return cls(
            AuthorizationStatus(info["status"]), info.get("expiryDate"), info.get("parentIdTag")
        )

    @property
    def accepted(self) -> bool:
        return self.status is AuthorizationStatus.accepted

    @property
    def valid(self) -> bool:
        """Valid in the sense of §3.5.2: Accepted or ConcurrentTx."""
        return self.status in (AuthorizationStatus.accepted, AuthorizationStatus.concurrent_tx)

    def as_of(self, now: datetime) -> IdTagInfo:
        """This entry as it stands at ``now``: a valid one past its expiryDate is Expired."""
        if self.valid and self.expired(now):
            return IdTagInfo(AuthorizationStatus.expired, self.expiry_date, self.parent_id_tag)
        return self

    def expired(self, now: datetime) -> bool:
        if self.expiry_date is None:
            return False
        try:
            expiry = datetime.fromisoformat(self.expiry_date.replace("Z", "+00:00"))
        except ValueError:
            return True
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=UTC)
        return expiry <= now


class AuthorizationCache:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def lookup(self, id_tag: str) -> IdTagInfo | None:
        row = self._db.execute(
            "SELECT status, expiry, parent FROM auth_cache WHERE id_tag = ?", (id_tag,)
        ).fetchone()
        if row is None:
            return None
        return IdTagInfo(AuthorizationStatus(row[0]), row[1], row[2])

    def update(self, id_tag: str, info: IdTagInfo) -> None:
        self._db.execute(
            "INSERT INTO auth_cache (id_tag, status, expiry, parent) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(id_tag) DO UPDATE SET status = excluded.status, "
            "expiry = excluded.expiry, parent = excluded.parent",
            (id_tag, info.status.value, info.expiry_date, info.parent_id_tag),
        )

    def clear(self) -> None:
        self._db.execute("DELETE FROM auth_cache")

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM auth_cache").fetchone()[0])


Conflict = Callable[[str, IdTagInfo, IdTagInfo], None]  # (idTag, the list's, the CSMS's)


class LocalList(Protocol):
    """The Local Authorization List as the decision reads it (:mod:`.local_list`)."""

    def lookup(self, id_tag: str) -> IdTagInfo | None: ...


class Authorizer:
    def __init__(
        self,
        keys: ConfigurationKeys,
        cache: AuthorizationCache,
        local_list: LocalList | None = None,
        on_conflict: Conflict | None = None,
    ) -> None:
        self._keys = keys
        self.cache = cache
        self._list = local_list  # None: the Local Auth List Management profile is off
        self._on_conflict = on_conflict

    def remember(self, id_tag: str, info: IdTagInfo) -> None:
        listed = self.listed(id_tag)
        if listed is not None:
            if listed.valid != info.valid and self._on_conflict is not None:
                self._on_conflict(id_tag, listed, info)
            return  # §3.5.3: a listed idTag never goes into the cache
        if self._keys.boolean("AuthorizationCacheEnabled"):
            self.cache.update(id_tag, info)

    def listed(self, id_tag: str) -> IdTagInfo | None:
        """The Local Authorization List's entry, as it stands now."""
        if self._list is None or not self._keys.boolean("LocalAuthListEnabled"):
            return None
        info = self._list.lookup(id_tag)
        return None if info is None else info.as_of(datetime.now(UTC))

    def cached(self, id_tag: str) -> IdTagInfo | None:
        if not self._keys.boolean("AuthorizationCacheEnabled"):
            return None
        info = self.cache.lookup(id_tag)
        return None if info is None else info.as_of(datetime.now(UTC))

    def local(self, id_tag: str) -> tuple[IdTagInfo | None, str]:
        """What the charge point knows of ``id_tag`` without asking, and where from."""
        listed = self.listed(id_tag)
        if listed is not None:
            return listed, "local list"
        return self.cached(id_tag), "cache"

    async def authorize(self, id_tag: str, request: Request | None) -> IdTagInfo:
        """Decide for ``id_tag``; ``request`` is None while offline."""
        known, source = self.local(id_tag)
        if request is not None:
            if known is not None and known.accepted and self._keys.boolean("LocalPreAuthorize"):
                log.info("idTag %s accepted from the %s (LocalPreAuthorize)", id_tag, source)
                return known
            try:
                answer = await request("Authorize", {"idTag": id_tag})
            except REQUEST_FAILURES as exc:
                log.warning(
                    "Authorize for %s failed (%s); deciding as if offline",
                    id_tag,
                    describe_failure(exc),
                )
            else:
                info = IdTagInfo.from_json(answer["idTagInfo"])
                self.remember(id_tag, info)
                log.info("CSMS says idTag %s is %s", id_tag, info.status.value)
                return info
        return self.offline(id_tag, known, source)

    def offline(self, id_tag: str, known: IdTagInfo | None, source: str = "cache") -> IdTagInfo:
        if known is not None:
            if known.accepted and self._keys.boolean("LocalAuthorizeOffline"):
                log.info("offline: idTag %s accepted from the %s", id_tag, source)
                return known
            log.info("offline: idTag %s is %s in the %s", id_tag, known.status.value, source)
            return known if not known.accepted else IdTagInfo(AuthorizationStatus.invalid)
        if self._keys.boolean("AllowOfflineTxForUnknownId"):
            log.info("offline: unknown idTag %s accepted (AllowOfflineTxForUnknownId)", id_tag)
            return IdTagInfo(AuthorizationStatus.accepted)
        log.info("offline: idTag %s unknown; refused", id_tag)
        return IdTagInfo(AuthorizationStatus.invalid)
