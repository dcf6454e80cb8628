"""The retries of UpdateFirmware and GetDiagnostics (OCPP 1.6 §5.19, §5.9): the first attempt and
``retries`` more, ``retryInterval`` seconds apart, each failure logged with what is left."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from transport.errors import TransferError

log = logging.getLogger(__name__)

T = TypeVar("T")


async def with_retries(
    what: str, retries: int, retry_interval: int, attempt: Callable[[int], Awaitable[T]]
) -> T | None:
    """``attempt(n)``'s result, or None when every attempt failed with a transfer error."""
    for number in range(1, retries + 2):
        try:
            return await attempt(number)
        except (TransferError, OSError) as error:
            left = retries + 1 - number
            log.error(
                "%s attempt %d failed: %s%s",
                what,
                number,
                error,
                f"; {left} more in {retry_interval} s" if left else "; giving up",
            )
            if left:
                await asyncio.sleep(retry_interval)
    return None


DEFAULT_RETRIES = 2  # when UpdateFirmware/GetDiagnostics leave it to the charge point
DEFAULT_RETRY_INTERVAL = 60  # seconds


def ocpp_datetime(text: str) -> datetime:
    """An OCPP dateTime; one without an offset is taken as UTC."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
