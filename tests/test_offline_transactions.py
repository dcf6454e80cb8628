"""Coverage holes during charging (OCPP 1.6 §3.7, §4.10): 50 transactions with meter values
while the link to the CSMS comes and goes at random. Afterwards the CSMS has every
transaction message exactly once (or, where its answer was lost, the same message again right
after), in chronological order, under the transactionIds it gave out, and no transaction is
left open. Through the simulated Quectel module, against the strict ocpp-rpc CSMS."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from tests.harness import FAMILIES, Rig, Stack, rig, strict_failures
from tests.transaction_log import (
    TransactionLog,
    check_transactions,
    delivered_entries,
    entries,
    record_outbox,
)

TRANSACTIONS = 50


async def _flap(r: Rig, rng: random.Random, done: asyncio.Event) -> int:
    """Cut and restore the CSMS link at random until ``done``; returns the number of holes."""
    holes = 0
    while not done.is_set():
        await asyncio.sleep(rng.uniform(0.3, 2.0))  # the link is up for a while
        if done.is_set():
            break
        if rng.random() < 0.5:
            r.offline()  # the CSMS becomes unreachable: connections refused
        else:
            # The radio link goes bad mid-conversation: requests still reach the CSMS, its
            # answers are lost, and only the WebSocket ping notices.
            r.proxy.deafen_existing()
            r.proxy.refusing = True
        holes += 1
        await asyncio.sleep(rng.uniform(0.3, 2.5))  # ...and down for a while
        r.online()
    r.online()
    return holes


async def _sessions(r: Rig, connector: int, tags: list[str], rng: random.Random) -> None:
    state = r.station.transactions.connectors[connector - 1]
    for tag in tags:
        r.charger.plug(connector)
        r.charger.present(tag, connector)
        async with asyncio.timeout(60):
            await r.station.wait_until(lambda: state.transaction is not None)
        # Charge long enough for at least one sampled meter value (1 s interval).
        await asyncio.sleep(rng.uniform(1.1, 1.6))
        r.charger.present(tag, connector)
        async with asyncio.timeout(60):
            await r.station.wait_until(lambda: state.transaction is None)
        r.charger.unplug(connector)


@pytest.mark.parametrize("family", FAMILIES)
async def test_fifty_transactions_through_coverage_holes(family: str) -> None:
    rng = random.Random(4)
    keys: dict[str, Any] = {
        "MeterValueSampleInterval": 1,
        "LocalAuthorizeOffline": True,
        "AllowOfflineTxForUnknownId": True,
        "TransactionMessageRetryInterval": 1,
    }
    # A short call timeout: an answer lost in a hole is noticed quickly and the message resent.
    stack = Stack("node", family)
    async with rig(stack, keys=keys, call_timeout=2, ping_interval=1, pong_timeout=1) as r:
        queued = record_outbox(r.station)
        tags = [f"TX-{n:03d}" for n in range(TRANSACTIONS)]
        done = asyncio.Event()
        flapping = asyncio.create_task(_flap(r, rng, done))
        await asyncio.gather(
            _sessions(r, 1, tags[0::2], rng),
            _sessions(r, 2, tags[1::2], rng),
        )
        done.set()
        holes = await flapping
        async with asyncio.timeout(120):
            await r.station.wait_until(lambda: len(r.station.outbox) == 0 and r.station.online)

        log = TransactionLog.of(r.peer)
        check_transactions(log, tags)
        delivered = log.without_retries()
        # Everything the charge point queued reached the CSMS, in the order it was queued.
        assert delivered_entries(log) == entries(queued)
        meter_values = [m for m in entries(queued) if m[0] == "MeterValues"]
        assert len(meter_values) >= TRANSACTIONS
        assert holes >= 5
        resent = len(log.messages) - len(delivered)
        print(f"{holes} holes, {len(delivered)} messages, {resent} sent again")
        assert strict_failures(r.peer) == []
