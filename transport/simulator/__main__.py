"""Run a simulated module by hand: ``python -m transport.simulator quectel --link /tmp/modem``.

Then talk to it with any serial terminal (``picocom /tmp/modem``, ``screen /tmp/modem``, or
``python -m serial.tools.miniterm /tmp/modem``); AT+QIOPEN opens real TCP connections from
this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from transport.simulator.quectel import ModuleProfile, QuectelModule, SimState
from transport.simulator.shell import SimulatorShell


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m transport.simulator", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="family", required=True)
    q = sub.add_parser("quectel", help="a Quectel EC200U-like module (QI* TCP/IP commands)")
    q.add_argument("--link", help="make this path a symlink to the pty's device (e.g. /tmp/modem)")
    q.add_argument(
        "--baud", type=int, default=0, help="pace the UART at this baud rate (default: unpaced)"
    )
    q.add_argument("--latency-ms", type=float, default=0.0, help="one-way network latency to add")
    q.add_argument(
        "--uplink-rate",
        type=float,
        default=0.0,
        help="bytes/s the radio sends (default: unlimited)",
    )
    q.add_argument("--model", default="EC200U")
    q.add_argument("--imei", default=ModuleProfile.imei)
    q.add_argument("--iccid", default=ModuleProfile.iccid)
    q.add_argument("--imsi", default=ModuleProfile.imsi)
    q.add_argument("--apn", default=None, help="the only APN that activates (default: any)")
    q.add_argument("--sim", choices=[s.value for s in SimState], default="ready")
    q.add_argument("--sim-pin", default="1234")
    q.add_argument(
        "--registered-after", type=float, default=0.0, help="seconds from boot to registration"
    )
    q.add_argument("--boot-time", type=float, default=0.0, help="seconds from power-on to RDY")
    q.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME=ADDRESS",
        help="resolve NAME to ADDRESS",
    )
    q.add_argument("-v", "--verbose", action="store_true", help="log every command")
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> None:
    profile = ModuleProfile(
        model=args.model,
        imei=args.imei,
        iccid=args.iccid,
        imsi=args.imsi,
        required_apn=args.apn,
        sim=SimState(args.sim),
        sim_pin=args.sim_pin,
        registered_after=args.registered_after,
        boot_time=args.boot_time,
    )
    hosts = dict(entry.split("=", 1) for entry in args.host)
    shell = SimulatorShell(
        QuectelModule(profile),
        baud=args.baud or None,
        latency=args.latency_ms / 1000.0,
        uplink_rate=args.uplink_rate or None,
        hosts=hosts,
        link=args.link,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with shell:
        where = f"{shell.path} (linked at {args.link})" if args.link else shell.path
        print(f"simulated Quectel {profile.model} on {where}", flush=True)
        seen = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await stop.wait()
            if args.verbose:
                for command in shell.module.log[seen:]:
                    logging.info("AT command: %s", command)
                seen = len(shell.module.log)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
