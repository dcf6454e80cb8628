"""After each connection attempt: whose failure it was, what the module should do about it, and
how long to wait before the next attempt.

Only evidence about the data link climbs the recovery ladder (every third link failure in a
row: PDP, then radio, then module restart). A CSMS that refuses connections, a certificate one
side refuses, an HTTP 401 are the CSMS's side: back-off only. Two exceptions keep a charger from
staying offline for good:

* while a raised security profile is being tried, every failed attempt counts towards falling
  back to the last profile that worked (whitepaper A05.FR.08), and none climbs the ladder;
* a data link can die without the network saying so, and a module then answers every open with
  "connect failed" (566) exactly as a CSMS that is down would: after ``LONG_OUTAGE`` without a
  session, with refusals only, the PDP context is re-activated once per ``LONG_OUTAGE``.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from chargepoint.app.backoff import Backoff
from chargepoint.app.security import SecurityProfiles
from transport.link import RecoveryStep

log = logging.getLogger(__name__)

STABLE_SESSION = 60.0  # a connection that lasted this long resets back-off and escalation
LONG_OUTAGE = 1800.0  # refused for this long: check the data link anyway


class Blame(enum.Enum):
    LINK = "link"  # counts towards module recovery
    CSMS = "csms"  # retried, but the module is not to blame
    DRIVER = "driver"  # our own bookkeeping failed: retried, and resetting the module won't help


@dataclass(frozen=True, slots=True)
class Outcome:
    blame: Blame
    duration: float  # how long the WebSocket was open (0 if it never opened)
    reason: str
    opened: bool = False  # the WebSocket opened
    reached_server: bool = False  # the CSMS answered (TLS, HTTP): the data link works
    refused: bool = False  # the CSMS's port refused the connection
    unauthorized: bool = False  # HTTP 401 to the WebSocket upgrade
    handshake: bool = False  # the TLS handshake failed, maybe on the charge point certificate
    intentional: bool = False  # we closed it to reconnect (new password, new profile)


def recovery_step(consecutive_link_failures: int) -> RecoveryStep:
    """Every third link failure in a row escalates one step: 3 → PDP, 6 → CFUN, 9+ → restart."""
    failures = consecutive_link_failures
    if failures == 0 or failures % 3:
        return RecoveryStep.REOPEN
    return RecoveryStep(min(failures // 3, RecoveryStep.RESTART_MODULE))


class ReconnectPolicy:
    def __init__(
        self,
        backoff: Backoff,
        security: SecurityProfiles,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backoff = backoff
        self._security = security
        self._clock = clock
        self._last_online = clock()  # a daemon that just started has not been away
        self._last_check = self._last_online
        self.link_failures = 0

    def after(self, outcome: Outcome) -> tuple[RecoveryStep, float]:
        """The recovery step to take now (REOPEN: none) and the delay before the next try."""
        now = self._clock()
        if outcome.opened:
            self._last_online = now
        if outcome.duration >= STABLE_SESSION or outcome.intentional:
            self._backoff.reset()  # A01/A05: reconnect with the new credentials at once
        if outcome.opened or outcome.reached_server:
            self.link_failures = 0  # the data link carried a conversation with the CSMS
        upgrading = self._security.upgrading
        if not outcome.opened:
            self._security.failed(
                outcome.reason, unauthorized=outcome.unauthorized, handshake=outcome.handshake
            )
        step = RecoveryStep.REOPEN
        if outcome.blame is Blame.LINK and not upgrading:
            self.link_failures += 1
            step = recovery_step(self.link_failures)
            if step is not RecoveryStep.REOPEN:
                log.warning(
                    "%d link failures in a row: recovery step %s", self.link_failures, step.name
                )
        elif (
            outcome.refused
            and now - self._last_online >= LONG_OUTAGE
            and now - self._last_check >= LONG_OUTAGE
        ):
            self._last_check = now
            step = RecoveryStep.REACTIVATE_PDP
            log.warning(
                "no OCPP session for %.0f min, every connection refused: re-activating the PDP "
                "context in case the data link died without the network saying so",
                (now - self._last_online) / 60,
            )
        return step, self._backoff.next()
