"""Reading back what a test CSMS received: transaction-related messages, in the order they
arrived, checked against what OCPP 1.6 §3.7 promises (each message once, or again unchanged
when its answer was lost; in order; with the transactionId the CSMS gave)."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from chargepoint.station import Station
from tests.peers import Csms

TRANSACTION_ACTIONS = ("StartTransaction", "MeterValues", "StopTransaction")


@dataclass
class Received:
    action: str
    payload: dict[str, Any]
    answer: dict[str, Any] | None = None  # None: the CSMS's answer never went out


@dataclass
class TransactionLog:
    messages: list[Received] = field(default_factory=list)

    @classmethod
    def of(cls, peer: Csms) -> TransactionLog:
        log = cls()
        by_id: dict[str, Received] = {}
        for event in peer.events:
            if event["event"] != "frame":
                continue
            frame = json.loads(event["text"])
            if not event["outbound"] and frame[0] == 2 and frame[2] in TRANSACTION_ACTIONS:
                received = Received(frame[2], frame[3])
                by_id[frame[1]] = received
                log.messages.append(received)
            elif event["outbound"] and frame[0] == 3 and frame[1] in by_id:
                by_id[frame[1]].answer = frame[2]
        return log

    def without_retries(self) -> list[Received]:
        """The messages with each resend folded into the first sending.

        The outbox sends its head again until it is answered, so a resend can only follow
        the message itself: one that comes after a newer message is a duplicate, an error.
        """
        unique: list[Received] = []
        seen: set[str] = set()
        previous = ""
        for message in self.messages:
            key = message.action + json.dumps(message.payload, sort_keys=True)
            if key == previous:
                continue
            assert key not in seen, f"{message.action} sent again after newer messages"
            seen.add(key)
            unique.append(message)
            previous = key
        return unique


def check_transactions(log: TransactionLog, tags: list[str]) -> dict[str, int]:
    """Every transaction (one idTag each) started once, metered and stopped under the id the
    CSMS gave; messages in chronological order. Returns idTag -> transactionId."""
    messages = log.without_retries()
    ids: dict[str, int] = {}
    owner: dict[int, str] = {}
    for message in messages:
        if message.action == "StartTransaction":
            tag = message.payload["idTag"]
            assert tag not in ids, f"two different StartTransactions for {tag}"
            answered = [
                m.answer
                for m in log.messages
                if m.action == "StartTransaction" and m.payload == message.payload and m.answer
            ]
            assert answered, f"StartTransaction for {tag} never answered"
            ids[tag] = answered[-1]["transactionId"]
            owner[ids[tag]] = tag
    assert sorted(ids) == sorted(tags), "a transaction is missing at the CSMS"
    stopped: set[str] = set()
    for message in messages:
        if message.action == "StartTransaction":
            continue
        transaction_id = message.payload.get("transactionId")
        assert transaction_id in owner, f"{message.action} with unknown id {transaction_id}"
        tag = owner[transaction_id]
        assert tag not in stopped, f"{message.action} for {tag} after its StopTransaction"
        if message.action == "StopTransaction":
            stopped.add(tag)
    assert stopped == set(tags), f"left open at the CSMS: {sorted(set(tags) - stopped)}"
    for before, after in itertools.pairwise(messages):
        assert _timestamp(before) <= _timestamp(after), (
            "transaction messages out of chronological order: "
            f"{before.action} {before.payload} then {after.action} {after.payload}"
        )
    return ids


Queued = list[tuple[str, dict[str, Any]]]


def record_outbox(station: Station) -> Queued:
    """What the station puts in its outbox from now on, (action, payload) in order."""
    queued: Queued = []
    put = station.outbox.put

    def recording_put(action: str, payload: dict[str, Any], local_tx: int | None = None) -> int:
        queued.append((action, payload))
        return put(action, payload, local_tx)

    station.outbox.put = recording_put  # type: ignore[method-assign]
    return queued


def entries(messages: Queued) -> list[tuple[str, str]]:
    """(action, timestamp) per transaction message, one per meterValue element: what a queue
    of messages and the CSMS's copy of it must agree on (a backlog of MeterValues may go out
    as one message with several meterValue elements)."""
    found = []
    for action, payload in messages:
        if action == "MeterValues":
            found += [(action, value["timestamp"]) for value in payload["meterValue"]]
        else:
            found.append((action, payload["timestamp"]))
    return found


def delivered_entries(log: TransactionLog) -> list[tuple[str, str]]:
    return entries([(m.action, m.payload) for m in log.without_retries()])


def _timestamp(message: Received) -> str:
    if message.action == "MeterValues":
        return str(message.payload["meterValue"][0]["timestamp"])
    return str(message.payload["timestamp"])
