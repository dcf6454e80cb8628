"""After a power cut or a restart: the transactions the last run left open (OCPP 1.6 §4.10
reason PowerLoss; OCTT TC_032_1 resumes, TC_032_2 stops).

Every open transaction on disk has its StartTransaction queued or delivered (they are written
together), so each one here is either carried on or stopped with the last reading on disk.
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime

from ocpp.v16.enums import Reason

from chargepoint.blocks.context import Context
from chargepoint.blocks.events import EnergyWithheld
from chargepoint.blocks.transactions import Transactions
from chargepoint.model.transactions import Transaction

log = logging.getLogger(__name__)


class PowerLossPolicy(enum.Enum):
    STOP = "stop"  # stop interrupted transactions with reason PowerLoss (TC_032_2_CS)
    RESUME = "resume"  # carry on charging if the EV is still plugged in (TC_032_1_CS)


async def recover(context: Context, transactions: Transactions, policy: PowerLossPolicy) -> None:
    """Pick up the transactions a power cut (or a restart) interrupted."""
    async with context.work():
        for tx in context.transactions.open():
            await _recover(context, transactions, policy, tx)


async def _recover(
    context: Context, transactions: Transactions, policy: PowerLossPolicy, tx: Transaction
) -> None:
    name = tx.transaction_id or f"(local {tx.local_id})"
    last = datetime.fromisoformat(tx.last_seen.replace("Z", "+00:00"))
    hardware = transactions.adopt(tx)
    if hardware is None:
        # The configuration lost a connector since: stop the transaction all the same.
        log.error("transaction %s on unknown connector %d: stopping it", name, tx.connector)
        transactions.queue_stop(tx, Reason.other, tx.meter_last, last)
        return
    if policy is PowerLossPolicy.RESUME and hardware.ev_connected:
        log.warning("resuming transaction %s on connector %d after a restart", name, tx.connector)
        await hardware.lock()
        if tx.deauthorized:
            context.events.publish(EnergyWithheld(tx.connector, True))
        else:
            hardware.start_energy()
        return
    # The power cut ended the session: the last reading on disk is its end.
    log.warning(
        "transaction %s on connector %d was interrupted by a power loss: stopping it",
        name,
        tx.connector,
    )
    transactions.stop(tx.connector, Reason.power_loss, meter=tx.meter_last, when=last)
