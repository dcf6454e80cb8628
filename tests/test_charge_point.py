"""The OCPP charge point on its own, with an in-memory connection (no network, no CSMS)."""

from __future__ import annotations

import asyncio
import json

import pytest
from ocpp.messages import CallResult
from ocpp.v16 import call

from chargepoint.protocol.charge_point import ChargePoint
from tests.harness import make_station


class MemoryConnection:
    """What the charge point sends is kept; nothing ever arrives by itself."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.got_one = asyncio.Event()

    async def recv(self) -> str:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(self, message: str) -> None:
        self.sent.append(message)
        self.got_one.set()


async def heartbeat_in_flight(
    call_timeout: float = 10,
) -> tuple[ChargePoint, asyncio.Task[object], str]:
    """A charge point with a Heartbeat sent and its answer not yet in; the request's id."""
    connection = MemoryConnection()
    charge_point = ChargePoint(
        "CP",
        connection,
        call_timeout=call_timeout,
        routes=make_station().routes,
    )
    request = asyncio.create_task(charge_point.request(call.Heartbeat()))
    await connection.got_one.wait()
    return charge_point, request, json.loads(connection.sent[0])[1]


ANSWER = {"currentTime": "2026-01-01T00:00:00Z"}


async def test_a_request_cancelled_as_its_answer_arrives_still_ends() -> None:
    # The ocpp library waits for answers with asyncio.wait_for, which on Python 3.11 returns
    # the answer and swallows the cancellation when both land in the same loop turn; a
    # session told to stop then never does. Ours must end cancelled.
    charge_point, request, unique_id = await heartbeat_in_flight()
    charge_point._response_queue.put_nowait(CallResult(unique_id, ANSWER))
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request


async def test_an_answer_to_another_request_is_ignored_and_the_right_one_awaited() -> None:
    charge_point, request, unique_id = await heartbeat_in_flight()
    charge_point._response_queue.put_nowait(CallResult("someone-else", {}))
    charge_point._response_queue.put_nowait(CallResult(unique_id, ANSWER))
    conf = await request
    assert conf.current_time == "2026-01-01T00:00:00Z"


async def test_no_answer_in_time_is_a_timeout() -> None:
    _, request, _ = await heartbeat_in_flight(call_timeout=0.05)
    with pytest.raises(TimeoutError):
        await request
