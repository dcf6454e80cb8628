"""Who may charge: the authorization cache and the offline rules (OCPP 1.6 §3.5,
§4.1, §5.3 and the keys of §9.1).

The decision for an idTag:

* online, LocalPreAuthorize and an Accepted, unexpired cache entry: start at once, no
  Authorize.req (§3.5.2 "local pre-authorization");
* online otherwise: Authorize.req, and the answer updates the cache;
* offline (or no answer): an Accepted cache entry is enough when LocalAuthorizeOffline is set;
  an idTag the cache does not know is accepted when AllowOfflineTxForUnknownId is set
  ("unknown offline authorization"); anything else is refused.

The cache holds the idTagInfo of every Authorize.conf, StartTransaction.conf and
StopTransaction.conf while AuthorizationCacheEnabled is true; ClearCache empties it.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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


class Authorizer:
    def __init__(self, keys: ConfigurationKeys, cache: AuthorizationCache) -> None:
        self._keys = keys
        self.cache = cache

    def remember(self, id_tag: str, info: IdTagInfo) -> None:
        if self._keys.boolean("AuthorizationCacheEnabled"):
            self.cache.update(id_tag, info)

    def cached(self, id_tag: str) -> IdTagInfo | None:
        if not self._keys.boolean("AuthorizationCacheEnabled"):
            return None
        info = self.cache.lookup(id_tag)
        if info is not None and info.accepted and info.expired(datetime.now(UTC)):
            return IdTagInfo(AuthorizationStatus.expired, info.expiry_date, info.parent_id_tag)
        return info

    async def authorize(self, id_tag: str, request: Request | None) -> IdTagInfo:
        """Decide for ``id_tag``; ``request`` is None while offline."""
        cached = self.cached(id_tag)
        if request is not None:
            if cached is not None and cached.accepted and self._keys.boolean("LocalPreAuthorize"):
                log.info("idTag %s accepted from the cache (LocalPreAuthorize)", id_tag)
                return cached
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
        return self.offline(id_tag, cached)

    def offline(self, id_tag: str, cached: IdTagInfo | None) -> IdTagInfo:
        if cached is not None:
            if cached.accepted and self._keys.boolean("LocalAuthorizeOffline"):
                log.info("offline: idTag %s accepted from the cache", id_tag)
                return cached
            log.info("offline: idTag %s is %s in the cache", id_tag, cached.status.value)
            return cached if not cached.accepted else IdTagInfo(AuthorizationStatus.invalid)
        if self._keys.boolean("AllowOfflineTxForUnknownId"):
            log.info("offline: unknown idTag %s accepted (AllowOfflineTxForUnknownId)", id_tag)
            return IdTagInfo(AuthorizationStatus.accepted)
        log.info("offline: idTag %s unknown; refused", id_tag)
        return IdTagInfo(AuthorizationStatus.invalid)
