"""After a power cut or a restart: the transactions the last run left open (OCPP 1.6 §4.10
reason PowerLoss; OCTT TC_032_2 stops them after the boot, or with ``resume`` they go on).

Every open transaction on disk has its StartTransaction queued or delivered (they are written
together), so each one here is either carried on or stopped with the last reading on disk.
A cable left locked on a connector with no transaction is then released (§4.10: the end of a
transaction unlocks the cable), so no driver needs the CSMS to take their cable back.
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime

from ocpp.v16.enums import Reason

from chargepoint.blocks.context import Context
from chargepoint.blocks.events import LockFailed, TransactionDeauthorized
from chargepoint.blocks.transaction_journal import TransactionJournal
from chargepoint.blocks.transactions import Transactions
from chargepoint.model.transactions import Transaction

log = logging.getLogger(__name__)


class PowerLossPolicy(enum.Enum):
    STOP = "stop"  # stop interrupted transactions with reason PowerLoss (TC_032_2_CS)
    RESUME = "resume"  # carry on charging if the EV is still plugged in


async def recover(context: Context, transactions: Transactions, policy: PowerLossPolicy) -> None:
    """Pick up the transactions a power cut (or a restart) interrupted."""
    async with context.work():
        for tx in context.transactions.open():
            await _recover(context, transactions, policy, tx)
        for number, hardware in enumerate(context.charger.connectors, 1):
            if hardware.locked and not hardware.fixed_cable and transactions.active(number) is None:
                log.info("connector %d: no transaction holds the cable; unlocking it", number)
                if not await hardware.unlock():
                    context.events.publish(LockFailed(number, True))


async def _recover(
    context: Context, transactions: Transactions, policy: PowerLossPolicy, tx: Transaction
) -> None:
    name = tx.transaction_id or f"(local {tx.local_id})"
    last = datetime.fromisoformat(tx.last_seen.replace("Z", "+00:00"))
    hardware = transactions.adopt(tx)
    if hardware is None:
        # The configuration lost a connector since: stop the transaction all the same.
        log.error("transaction %s on unknown connector %d: stopping it", name, tx.connector)
        TransactionJournal(context).end(tx, Reason.other, last, meter=tx.meter_last)
        return
    if policy is PowerLossPolicy.RESUME and hardware.ev_connected:
        if hardware.fixed_cable or await hardware.lock():
            log.warning(
                "resuming transaction %s on connector %d after a restart", name, tx.connector
            )
            if tx.deauthorized:
                # StartTransaction.conf said not Accepted: the invalid-id policy decides again
                # (a MaxEnergyOnInvalidId allowance starts over: it was in memory only).
                status = tx.id_tag_status or "Invalid"
                context.events.publish(TransactionDeauthorized(tx.connector, tx.local_id, status))
            else:
                hardware.start_energy()
            return
        log.error("connector %d: the cable lock failed; cannot resume %s", tx.connector, name)
        context.events.publish(LockFailed(tx.connector, True))
    # The power cut ended the session: the last reading on disk is its end.
    log.warning(
        "transaction %s on connector %d was interrupted by a power loss: stopping it",
        name,
        tx.connector,
    )
    transactions.stop(tx.connector, Reason.power_loss, meter=tx.meter_last, when=last)
