"""Power cuts (OCPP 1.6 §3.7, §4.10; OCTT 2.13): the daemon runs as its own process on the
simulated Quectel module and is killed with SIGKILL at random points of 100 transactions:
right after a card is presented, while charging, right after the stop. After each cut it is
started again, as systemd would. In the end the CSMS has every transaction the charge point
started, each with its StopTransaction (reason PowerLoss where the cut ended it), and nothing
is left open."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chargepoint.app import control
from tests.harness import PASSWORD, csms_peer, module_shell, reported_after_boot
from tests.peers import Csms
from tests.transaction_log import TransactionLog, check_transactions
from transport.simulator.families import simulated

TRANSACTIONS = 100
ROOT = Path(__file__).resolve().parent.parent


def _config(url: str, modem: str, state: Path, family: str = "quectel") -> str:
    return f"""
[charge_point]
id = "CP-POWER"
vendor = "TestVendor"
model = "TestModel"
connectors = 1
power_loss = "stop"

[csms]
url = "{url}"
password = "{PASSWORD.hex()}"
security_profile = 1
password_format = "hex"
call_timeout = 5
ping_interval = 0
reconnect_delay_min = 0.05
reconnect_delay_max = 0.2

{_modem_tables(family, modem)}
[storage]
directory = "{state}"

[ocpp_keys]
MeterValueSampleInterval = 1
TransactionMessageRetryInterval = 1
"""


class DaemonProcess:
    def __init__(self, config: Path, log: Path, peer: Csms, socket: Path) -> None:
        self.config = config
        self.log = log
        self.peer = peer
        self.socket = socket
        self.process: asyncio.subprocess.Process | None = None
        self.boots = 0

    async def start(self) -> None:
        with self.log.open("ab") as output:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "chargepoint.app.cli",
                "run",
                "--config",
                str(self.config),
                cwd=ROOT,
                stdout=output,
                stderr=output,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.boots += 1
        boots = self.boots

        # Up when it has booted and reported its connectors after that boot: a card presented
        # earlier would be decided offline (and, unknown, refused), as it should be.
        await self.peer.wait_for(lambda events: reported_after_boot(events, boots, 1), timeout=60)

    async def power_cut(self) -> None:
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            async with asyncio.timeout(30):
                await self.process.wait()

    async def ctl(self, command: str, **args: Any) -> dict[str, Any]:
        answer = await control.request(self.socket, {"cmd": command, **args})
        assert answer["ok"], answer
        return answer


def _open_at_csms(peer: Csms) -> set[int]:
    log = TransactionLog.of(peer)
    given = {
        m.answer["transactionId"]
        for m in log.messages
        if m.action == "StartTransaction" and m.answer is not None
    }
    stopped = {m.payload["transactionId"] for m in log.messages if m.action == "StopTransaction"}
    return given - stopped


def _started_tags(peer: Csms) -> set[str]:
    return {p["params"]["idTag"] for p in peer.calls("StartTransaction")}


def _modem_tables(family: str, port: str) -> str:
    tables = simulated(family).config(port, 115200)
    if family == "quectel":
        tables += "registration_timeout = 5\n"
    return tables


@contextlib.asynccontextmanager
async def daemon_process(tmp_path: Path, family: str = "quectel") -> AsyncIterator[DaemonProcess]:
    """A CSMS, a simulated module of ``family``, and the daemon started as its own process on
    them."""
    async with csms_peer("python", password=PASSWORD) as peer, module_shell(family) as sim:
        state = tmp_path / "state"
        config = tmp_path / "chargepoint.toml"
        config.write_text(_config(peer.url, sim.path, state, family))
        daemon = DaemonProcess(config, tmp_path / "daemon.log", peer, state / "control.sock")
        await daemon.start()
        try:
            yield daemon
        finally:
            await daemon.stop()


# The Wi-Fi module's half: fewer sessions (each restart is an NWP restart and a rejoin), the
# same mix of cuts.
@pytest.mark.parametrize(("family", "sessions"), [("quectel", TRANSACTIONS), ("simplelink", 50)])
async def test_power_cuts_at_random_points_lose_no_transaction(
    tmp_path: Path, family: str, sessions: int
) -> None:
    rng = random.Random(7)
    cuts = 0
    async with daemon_process(tmp_path, family) as daemon:
        peer = daemon.peer
        for n in range(sessions):
            tag = f"PC-{n:03d}"
            cut = rng.choices(["none", "presented", "charging", "stopped"], [6, 1, 2, 1])[0]
            await daemon.ctl("plug", connector=1)
            await daemon.ctl("present", id_tag=tag, connector=1)
            if cut == "presented":
                await asyncio.sleep(rng.uniform(0.0, 0.05))
            else:
                await peer.wait_for(lambda _, tag=tag: tag in _started_tags(peer))
                await asyncio.sleep(rng.uniform(0.05, 1.3))  # charging
                if cut != "charging":
                    await daemon.ctl("present", id_tag=tag, connector=1)  # stop
                    if cut == "stopped":
                        await asyncio.sleep(rng.uniform(0.0, 0.05))
            if cut != "none":
                cuts += 1
                await daemon.power_cut()
                await daemon.start()
            await daemon.ctl("unplug", connector=1)
        # Let the last queued messages go out: a StopTransaction for every transactionId
        # the CSMS gave (counting calls would count resends).
        await peer.wait_for(lambda _: _open_at_csms(peer) == set(), timeout=60)

    log = TransactionLog.of(peer)
    started = _started_tags(peer)
    check_transactions(log, sorted(started))
    # Every transaction the charge point said it started (after writing it to disk)
    # reached the CSMS; the ones a cut interrupted were stopped with reason PowerLoss.
    logged = set(
        re.findall(r"transaction started on connector 1 for (PC-\d+)", daemon.log.read_text())
    )
    assert logged <= started
    assert len(started) >= sessions * 0.85
    reasons = [p["params"].get("reason") for p in peer.calls("StopTransaction")]
    assert "PowerLoss" in reasons and "Local" in reasons
    assert cuts >= sessions // 5


def _statuses_after_boot(peer: Csms, boot: int) -> dict[int, tuple[str, str]]:
    """The last status per connector reported after BootNotification number ``boot``."""
    calls = [e for e in peer.events if e["event"] == "call"]
    boots = [i for i, c in enumerate(calls) if c["method"] == "BootNotification"]
    return {
        c["params"]["connectorId"]: (c["params"]["status"], c["params"]["errorCode"])
        for c in calls[boots[boot - 1] :]
        if c["method"] == "StatusNotification"
    }


async def test_ctl_power_fail_is_a_power_cut_and_the_charger_keeps_its_physical_state(
    tmp_path: Path,
) -> None:
    """`chargepoint ctl power-fail` takes the daemon down as a power cut does: it sends and
    writes nothing on the way down (no StopTransaction, no WebSocket close). What the hardware
    knows survives: the cable still in and locked, the charge point's own fault (connector 0),
    the meter register. After the power returns the interrupted transaction is stopped with
    reason PowerLoss (OCTT TC_032_2_CS) and the statuses reported after BootNotification match
    the physical state: connector 0 Faulted, connector 1 Finishing (the cable is still in)."""
    async with daemon_process(tmp_path) as daemon:
        peer = daemon.peer
        await daemon.ctl("plug", connector=1)
        await daemon.ctl("present", id_tag="PF-1", connector=1)
        await peer.wait_for(lambda _: peer.calls("MeterValues"))
        await daemon.ctl("fault", connector=0, code="GroundFailure", info="RCD tripped")
        await peer.wait_for(
            lambda _: _statuses_after_boot(peer, 1).get(0) == ("Faulted", "GroundFailure")
        )
        before = await daemon.ctl("hardware")

        code, out, err = await _chargepoint_ctl(daemon.socket, "power-fail")
        assert code == 0, err
        assert "goes down now" in out
        assert daemon.process is not None
        assert await daemon.process.wait() == -signal.SIGKILL
        assert "power cut (chargepoint ctl power-fail)" in daemon.log.read_text()
        assert peer.calls("StopTransaction") == []  # nothing was sent on the way down

        await daemon.start()  # the power is back
        await peer.wait_for(lambda _: peer.calls("StopTransaction"))
        after = await daemon.ctl("hardware")

    (stop,) = peer.calls("StopTransaction")
    assert stop["params"]["reason"] == "PowerLoss"
    # The stop's meterStop is the last reading the charge point recorded before the cut, which
    # is the last Energy.Active.Import.Register it sent (queued ones go out before the stop).
    registers = [
        float(sample["value"])
        for call in peer.calls("MeterValues")
        for value in call["params"]["meterValue"]
        for sample in value["sampledValue"]
        if sample.get("measurand", "Energy.Active.Import.Register")
        == "Energy.Active.Import.Register"
    ]
    (start,) = peer.calls("StartTransaction")
    assert stop["params"]["meterStop"] == int(registers[-1]) > start["params"]["meterStart"]
    assert after["fault"] == before["fault"] == "GroundFailure"
    (was,) = before["connectors"]
    (now,) = after["connectors"]
    for part in ("cable_plugged", "ev_connected", "fault", "lock_fails"):
        assert now[part] == was[part], part
    assert was["cable_plugged"] and was["ev_connected"] and was["locked"]
    assert not now["locked"]  # no transaction holds the cable any more: released at boot
    assert now["energy_wh"] >= was["energy_wh"] > 0
    assert not now["delivering"]  # the contactor opened with the power
    assert _statuses_after_boot(peer, 2) == {
        0: ("Faulted", "GroundFailure"),
        1: ("Finishing", "NoError"),
    }


async def test_ctl_power_fail_backup_stops_the_transaction_while_the_daemon_runs_on(
    tmp_path: Path,
) -> None:
    """`chargepoint ctl power-fail --backup`: mains lost, the back-up supply holds. The charge
    point stops its transaction at once with reason PowerLoss (OCTT TC_032_1_CS) and stays up."""
    async with daemon_process(tmp_path) as daemon:
        peer = daemon.peer
        await daemon.ctl("plug", connector=1)
        await daemon.ctl("present", id_tag="PF-2", connector=1)
        await peer.wait_for(lambda _: "PF-2" in _started_tags(peer))
        code, out, err = await _chargepoint_ctl(daemon.socket, "power-fail", "--backup")
        assert code == 0, err
        assert "back-up supply" in out
        await peer.wait_for(lambda _: peer.calls("StopTransaction"))
        assert await daemon.ctl("status")  # still up and answering
        assert daemon.process is not None and daemon.process.returncode is None
    (stop,) = peer.calls("StopTransaction")
    assert stop["params"]["reason"] == "PowerLoss"
    assert peer.count("connect") == 1  # no restart happened


async def _chargepoint_ctl(socket: Path, *words: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chargepoint.app.cli",
        "ctl",
        "--socket",
        str(socket),
        *words,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
