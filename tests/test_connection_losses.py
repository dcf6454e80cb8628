"""A charger in a weak cell: the connection to the CSMS is lost again and again in one daemon
lifetime, and each time the daemon reconnects (issue 13: the 12th loss used to leak the
module's last free socket id, and the charge point stayed offline until its daemon was
restarted).

Fifty losses of each kind, through the daemon + the simulated module + a real CSMS, while a
transaction is metered every second. After every loss the daemon must connect again; the
module must never hold more than one of our sockets, nor the CSMS two connections of ours at
once; and every transaction message queued meanwhile must reach the CSMS, in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from chargepoint.blocks.authorization import LINE_WAIT
from tests.conftest import fast
from tests.harness import LogWatch, Rig, rig
from tests.peers import PeerLog
from tests.transaction_log import (
    TransactionLog,
    check_transactions,
    delivered_entries,
    entries,
    record_outbox,
)
from transport.simulator.quectel import SocketState

LOSSES = 50
COMMAND_TIMEOUT = 0.5  # the driver's AT command timeout in these tests
SEND_STALL = 0.3  # how long SEND FAIL may go on before the link is declared dead


def connected_socket(r: Rig) -> int:
    [socket_id] = [
        s.socket_id for s in r.sim.module.sockets.values() if s.state is SocketState.CONNECTED
    ]
    return socket_id


async def an_answer_that_must_be_sent(r: Rig) -> None:
    """A CSMS request whose answer the charge point sends at once (an AT+QISENDEX now)."""
    await r.peer.send_raw(
        json.dumps([2, f"probe-{len(r.peer.events)}", "GetConfiguration", {"key": ["NoSuchKey"]}])
    )


async def _at_timeout_mid_qisend(r: Rig, _socket_id: int) -> None:
    # The module takes the data, then says SEND OK only after the driver has given up on it.
    r.sim.delay_next_send_result(COMMAND_TIMEOUT + 0.2)
    await an_answer_that_must_be_sent(r)


async def _send_fail(r: Rig, socket_id: int) -> None:
    r.sim.refuse_sends(socket_id)
    await an_answer_that_must_be_sent(r)


async def _closed_urc(r: Rig, socket_id: int) -> None:
    r.sim.drop_connection(socket_id)


async def _peer_reset(r: Rig, _socket_id: int) -> None:
    r.proxy.drop_all()  # RST on both sides of the proxy: the module says "closed"


async def _pdpdeact(r: Rig, _socket_id: int) -> None:
    r.sim.deactivate_pdp(1)


LOSS_KINDS: dict[str, Callable[[Rig, int], Any]] = {
    "closed URC": _closed_urc,
    "peer resets TCP": _peer_reset,
    "pdpdeact": _pdpdeact,
    "AT timeout mid-QISEND": _at_timeout_mid_qisend,
    "SEND FAIL": _send_fail,
}


def most_connections_open(peer: PeerLog) -> int:
    """The most WebSocket connections the CSMS had open from us at one time."""
    open_now = most = 0
    for event in peer.events:
        if event["event"] == "connect":
            open_now += 1
            most = max(most, open_now)
        elif event["event"] == "close":
            open_now -= 1
    return most


@pytest.mark.parametrize("kind", LOSS_KINDS)
async def test_fifty_connection_losses_in_one_daemon_lifetime(kind: str) -> None:
    keys = {"MeterValueSampleInterval": 1, "TransactionMessageRetryInterval": 1}
    modem = fast(command_timeout=COMMAND_TIMEOUT, send_stall_timeout=SEND_STALL)
    async with rig("python", keys=keys, modem=modem, call_timeout=3) as r:
        queued = record_outbox(r.station)
        await r.charging(1, "WEAK-CELL")
        lose = LOSS_KINDS[kind]
        for loss in range(LOSSES):
            await r.wait_online()
            sessions = r.daemon.sessions_started
            await lose(r, connected_socket(r))
            try:
                async with asyncio.timeout(30):
                    await r.station.wait_until(
                        lambda s=sessions: r.daemon.sessions_started > s and r.station.online
                    )
            except TimeoutError:
                last = r.daemon.outcomes[-1].reason if r.daemon.outcomes else "none"
                pytest.fail(f"not reconnected within 30 s of loss {loss + 1}; last: {last}")
            held = sorted(r.sim.module.sockets)
            assert len(held) == 1, f"the module holds sockets {held} after loss {loss + 1}"
        r.charger.present("WEAK-CELL", 1)  # stop charging
        async with asyncio.timeout(60):
            await r.station.wait_until(
                lambda: (
                    r.station.transactions.connectors[0].transaction is None
                    and len(r.station.outbox) == 0
                    and r.station.online
                )
            )

        assert len(r.daemon.outcomes) >= LOSSES
        assert r.sim.module.most_sockets_held == 1
        assert most_connections_open(r.peer) == 1
        log = TransactionLog.of(r.peer)
        check_transactions(log, ["WEAK-CELL"])
        assert delivered_entries(log) == entries(queued)
        assert sum(1 for action, _ in entries(queued) if action == "MeterValues") >= 3


async def logged(start: str) -> None:
    """Return once a record starting with ``start`` is logged (records come from the loop)."""
    seen = asyncio.Event()

    class Flag(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith(start):
                seen.set()

    flag = Flag()
    logging.getLogger().addHandler(flag)
    try:
        await seen.wait()
    finally:
        logging.getLogger().removeHandler(flag)


async def test_a_request_whose_answer_is_lost_says_what_it_waited_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The radio link goes bad: requests reach the CSMS, its answers never come back.
    keys = {"AllowOfflineTxForUnknownId": True}
    async with rig("python", keys=keys, call_timeout=1) as r:
        r.proxy.deafen_existing()
        r.charger.plug(1)  # a StatusNotification (Preparing), not queued durably

        # The line is free again once the StatusNotification has given up on its answer.
        async with asyncio.timeout(30):
            await logged("StatusNotification failed")
        r.charger.present("LOST-ANSWER", 1)  # an Authorize, then decided as offline
        async with asyncio.timeout(30):
            await r.station.wait_until(
                lambda: r.station.transactions.connectors[0].transaction is not None
            )
        warnings = [rec.getMessage() for rec in caplog.records if rec.levelname == "WARNING"]
        assert (
            "StatusNotification failed: NoAnswer: no StatusNotification.conf from the CSMS "
            "within 1 s" in warnings
        )
        # The Authorize either went out and got no answer, or found the line still busy with
        # the next unanswered StatusNotification; either way the log says what it waited for.
        said = {
            "Authorize for LOST-ANSWER failed (NoAnswer: no Authorize.conf from the CSMS within "
            "1 s); deciding as if offline",
            "Authorize for LOST-ANSWER failed (LineBusy: Authorize not sent: the line stayed busy "
            f"with an unanswered call for {LINE_WAIT:g} s); deciding as if offline",
        }
        assert said & set(warnings)
        assert not [w for w in warnings if w.rstrip().endswith(":")]


async def test_a_card_is_decided_at_once_while_a_call_waits_for_its_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # OCPP 1.6 §3.5: the driver at the charger must not wait behind a call the CSMS does not
    # answer (the call timeout here is long, as on a real deployment).
    keys = {"AllowOfflineTxForUnknownId": True}
    async with rig("python", keys=keys, call_timeout=60) as r:
        r.proxy.deafen_existing()
        preparing = ('"StatusNotification"', '"Preparing"')
        with LogWatch("CP-TEST/1: send", contains=preparing) as sent:
            r.charger.plug(1)  # StatusNotification (Preparing): sent, never answered
            async with asyncio.timeout(30):
                await sent.seen.wait()  # the line is taken before the card comes
        r.charger.present("IMPATIENT", 1)
        async with asyncio.timeout(30):
            await r.station.wait_until(
                lambda: r.station.transactions.connectors[0].transaction is not None
            )
        said = [rec.getMessage() for rec in caplog.records]
        # Decided while the StatusNotification still waited: it has not failed yet.
        assert not [m for m in said if m.startswith("StatusNotification failed")]
        assert [m for m in said if m.startswith("Authorize for IMPATIENT failed (LineBusy")]
        assert [e for e in r.peer.calls("Authorize")] == []


async def test_a_hard_reset_whose_link_dies_delivers_its_stop_once_after_the_reboot() -> None:
    # Issue 14 item 3, "reset while offline": the link dies the moment the Reset.req has
    # arrived, so neither Reset.conf nor the StopTransaction (reason HardReset) reaches the
    # CSMS. The hard reset waits its bounded grace for the StopTransaction.conf, then reboots
    # all the same (OCTT TC_015: bounded); the stop is in the outbox on disk and reaches the
    # CSMS exactly once after the reboot, with the time of the reset.
    async with rig("python", call_timeout=2) as r:
        transaction_id = await r.charging(1)
        await r.wait_status(1, "Charging")
        r.proxy.stall_after = b'"Reset"'
        await r.peer.send_raw(json.dumps([2, "reset-offline", "Reset", {"type": "Hard"}]))
        await r.wait_stopped()  # the grace ran out: the charge point rebooted unconfirmed
        assert r.peer.reply_to("reset-offline") is None  # not even the Reset.conf got out
        assert r.calls("StopTransaction") == []

        rebooted = datetime.now(UTC)
        await r.restart()
        await r.booted(2)
        (stop,) = await r.wait_calls("StopTransaction")
        assert (stop["transactionId"], stop["reason"]) == (transaction_id, "HardReset")
        # Stopped at the reset, not at the boot.
        assert datetime.fromisoformat(stop["timestamp"].replace("Z", "+00:00")) <= rebooted
        async with asyncio.timeout(30):
            await r.station.outbox.wait_empty()
        assert len(r.calls("StopTransaction")) == 1


async def test_a_waiter_for_the_connection_wakes_when_it_is_back_with_nothing_else_changed() -> (
    None
):
    # Nothing changed while offline (no status, nothing queued): coming back online is the only
    # change, and whoever waits for it (the demo, bench.reconnect, an HMI) must be woken by it.
    async with rig("python") as r:
        for _ in range(3):
            sessions = r.daemon.sessions_started
            (socket,) = [
                s.socket_id
                for s in r.sim.module.sockets.values()
                if s.state is SocketState.CONNECTED
            ]
            r.sim.drop_connection(socket)  # the module reports the connection closed
            async with asyncio.timeout(60):
                await r.station.wait_until(
                    lambda before=sessions: r.daemon.sessions_started > before and r.station.online
                )
