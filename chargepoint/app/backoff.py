"""Capped exponential back-off with jitter for reconnecting.

Each delay is drawn from [base/2, base] where base doubles from ``minimum`` up to
``maximum``: never less than half the base (so a failing CSMS is never hammered), and spread
so that chargers cut off together by a cell outage do not all come back in the same second.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None) -> None:
        if not 0 < minimum <= maximum:
            raise ValueError("backoff needs 0 < minimum <= maximum")
        self.minimum = minimum
        self.maximum = maximum
        self._rng = rng or random.Random()
        self._attempt = 0

    def next(self) -> float:
        base = min(self.maximum, self.minimum * 2.0 ** min(self._attempt, 62))
        self._attempt += 1
        return self._rng.uniform(base / 2, base)

    def reset(self) -> None:
        self._attempt = 0
