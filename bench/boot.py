"""Cold boot to BootNotification Accepted: the daemon starting at the moment the simulated
Quectel module is switched on, through the module at 115200 baud, against the demo CSMS.

The floor is what the module and the network make any driver wait for: the module's boot
(power-on to RDY), its registration after that, each PDP activation the module makes (a failed
one included), and three network round trips (TCP's SYN/SYN-ACK, the WebSocket upgrade, the
BootNotification). The UART time of the bytes is left out, so the ratio is if anything harsh.
``boot_floor_ratio`` is the product's time over that floor, one run each:

* ``realistic``: an EC200U-like module: RDY 3 s after power-on, the SIM busy for 1 s after
  that, registered 4 s after RDY, 0.8 s to activate PDP, 20 ms to answer every command, 50 ms
  of network latency each way.
* ``hostile``: a slow boot (6 s), a SIM busy for 3 s, registration after 12 s, the first PDP
  activation refused (each taking 2.5 s), 60 ms per answer, status URCs between echoes and
  answers, 150 ms of latency each way.

    python -m bench.boot [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from chargepoint.app.daemon import Daemon
from chargepoint.demo.csms import DemoCsms
from config.loader import parse_config
from transport.modems.quectel import QuectelLink
from transport.modems.quectel_settings import QuectelSettings
from transport.simulator import ModuleProfile, QuectelModule, SimulatorShell

NAME = "boot"
BAUD = 115200
PASSWORD = b"bench-password-0123"


@dataclass(frozen=True)
class Conditions:
    boot_time: float
    sim_busy_for: float
    registered_after: float
    pdp_activation_time: float
    pdp_failures: int
    response_delay: float
    chatter: float
    latency: float

    def module(self, seed: int) -> QuectelModule:
        """A simulated Quectel module behaving under these conditions (bench.soak uses it too)."""
        module = QuectelModule(
            ModuleProfile(
                boot_time=self.boot_time,
                sim_busy_for=self.sim_busy_for,
                registered_after=self.registered_after,
                pdp_activation_time=self.pdp_activation_time,
            ),
            seed=seed,
        )
        module.response_delay = self.response_delay
        module.chatter = self.chatter
        module.pdp_failures = self.pdp_failures
        return module

    def floor(self) -> float:
        """Seconds no driver can avoid (see the module docstring)."""
        activations = (1 + self.pdp_failures) * self.pdp_activation_time
        registered = self.boot_time + max(self.registered_after, self.sim_busy_for)
        return registered + activations + 3 * 2 * self.latency


PROFILES = {
    "realistic": Conditions(3.0, 1.0, 4.0, 0.8, 0, 0.02, 0.0, 0.05),
    "hostile": Conditions(6.0, 3.0, 12.0, 2.5, 1, 0.06, 0.3, 0.15),
}


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    record = {"bench": NAME, "metric": metric, "value": round(value, 3), "unit": unit, **extra}
    print(json.dumps(record), flush=True)


async def cold_boot(conditions: Conditions) -> tuple[float, int]:
    """Seconds from power-on to BootNotification Accepted, and the AT commands it took."""
    module = conditions.module(seed=3)
    with tempfile.TemporaryDirectory() as tmp:
        csms = DemoCsms("CP-BENCH", PASSWORD, lambda _direction, _text: None)
        await csms.start()
        config = parse_config(
            f'[charge_point]\nid = "CP-BENCH"\nvendor = "Bench"\nmodel = "Bench"\n'
            f'[csms]\nurl = "{csms.url}"\npassword = "{PASSWORD.decode()}"\nping_interval = 0\n'
            "security_profile = 1\n"
            f'[modem]\ntype = "host"\n[storage]\ndirectory = "{Path(tmp) / "state"}"\n'
        )
        try:
            async with SimulatorShell(module, baud=BAUD, latency=conditions.latency) as sim:
                loop = asyncio.get_running_loop()
                powered_on = loop.time()  # the shell switched the module on as it started
                link = QuectelLink(sim.path, BAUD, QuectelSettings(apn="internet"))
                daemon = Daemon(config, link)
                stop = asyncio.Event()
                running = asyncio.create_task(daemon.run(stop))
                station = daemon.station
                try:
                    async with asyncio.timeout(180):
                        await station.wait_until(lambda: station.online)
                    return loop.time() - powered_on, len(sim.module.log)
                finally:
                    stop.set()
                    await running
        finally:
            await csms.stop()


async def run(runs: int) -> None:
    for name, conditions in PROFILES.items():
        times, commands = [], []
        for _ in range(runs):
            seconds, count = await cold_boot(conditions)
            times.append(seconds)
            commands.append(count)
        floor = conditions.floor()
        common = {
            "profile": name,
            "runs": runs,
            "baud": BAUD,
            "latency_ms": conditions.latency * 1e3,
        }
        median = statistics.median(times)
        emit("boot_to_accepted_s", median, "s", **common)
        emit("boot_floor_s", floor, "s", **common)
        emit("boot_floor_ratio", median / floor, "ratio", **common)
        emit("boot_at_commands", statistics.median(commands), "commands", **common)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(prog="python -m bench.boot")
    parser.add_argument("--quick", action="store_true", help="one boot per profile, not three")
    args = parser.parse_args(argv)
    asyncio.run(run(1 if args.quick else 3))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
