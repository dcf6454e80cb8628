"""Run a simulated module by hand: ``python -m transport.simulator quectel --link /tmp/modem``
or ``python -m transport.simulator simplelink --link /tmp/wifi``.

Then talk to it with any serial terminal (``picocom /tmp/modem``, ``screen /tmp/modem``, or
``python -m serial.tools.miniterm /tmp/modem``); AT+QIOPEN (Quectel) or AT+Connect (SimpleLink)
opens real TCP connections from this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from transport.simulator.quectel import ModuleProfile, QuectelModule, SimState
from transport.simulator.shell import SimulatedModule, SimulatorShell
from transport.simulator.simplelink import AccessPoint, SimpleLinkModule, WifiProfile


def _host_mapping(text: str) -> tuple[str, str]:
    name, sep, address = text.partition("=")
    if not sep or not name or not address:
        raise argparse.ArgumentTypeError(f"expected NAME=ADDRESS, got {text!r}")
    return name, address


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
        type=_host_mapping,
        metavar="NAME=ADDRESS",
        help="resolve NAME to ADDRESS",
    )
    q.add_argument("-v", "--verbose", action="store_true", help="log every command")
    q.add_argument(
        "--console",
        action="store_true",
        help="read fault commands on stdin: drop ID, pdpdeact [CTX], reboot, mute, unmute, "
        "delay SECONDS, garbage TEXT, sendfail RATE",
    )
    w = sub.add_parser("simplelink", help="a TI SimpleLink CC3220 Wi-Fi module (TI AT commands)")
    w.add_argument("--link", help="make this path a symlink to the pty's device (e.g. /tmp/wifi)")
    w.add_argument(
        "--baud", type=int, default=0, help="pace the UART at this baud rate (default: unpaced)"
    )
    w.add_argument("--latency-ms", type=float, default=0.0, help="one-way network latency to add")
    w.add_argument(
        "--uplink-rate",
        type=float,
        default=0.0,
        help="bytes/s the radio sends (default: unlimited)",
    )
    w.add_argument("--ssid", default=AccessPoint.ssid, help="the site's Wi-Fi network")
    w.add_argument("--wifi-key", default=AccessPoint.key, help="its passphrase")
    w.add_argument(
        "--wifi-security",
        choices=["OPEN", "WEP", "WEP_SHARED", "WPA_WPA2", "WPA_ENT"],
        default=AccessPoint.security,
    )
    w.add_argument("--bssid", default=AccessPoint.bssid)
    w.add_argument("--mac", default=WifiProfile.mac)
    w.add_argument(
        "--connect-time", type=float, default=0.0, help="seconds to join the access point"
    )
    w.add_argument("--dhcp-time", type=float, default=0.0, help="seconds from join to address")
    w.add_argument("--boot-time", type=float, default=0.0, help="seconds from power-on to AT")
    w.add_argument(
        "--out-of-range", action="store_true", help="start with the access point out of range"
    )
    w.add_argument(
        "--host",
        action="append",
        default=[],
        type=_host_mapping,
        metavar="NAME=ADDRESS",
        help="resolve NAME to ADDRESS",
    )
    w.add_argument("-v", "--verbose", action="store_true", help="log every command")
    w.add_argument(
        "--console",
        action="store_true",
        help="read fault commands on stdin: drop SD, iplost, wifi off|on, fatal, reboot, mute, "
        "unmute, delay SECONDS, garbage TEXT",
    )
    return parser.parse_args(argv)


def _module(args: argparse.Namespace) -> tuple[SimulatedModule, str]:
    """The module the arguments describe, and what to call it in the banner."""
    if args.family == "simplelink":
        site = AccessPoint(
            ssid=args.ssid,
            security=args.wifi_security,
            key=args.wifi_key,
            bssid=args.bssid,
            in_range=not args.out_of_range,
        )
        wifi = WifiProfile(
            access_point=site,
            mac=args.mac,
            connect_time=args.connect_time,
            dhcp_time=args.dhcp_time,
            boot_time=args.boot_time,
        )
        return SimpleLinkModule(wifi), f"TI SimpleLink CC3220 (Wi-Fi {args.ssid!r})"
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
    return QuectelModule(profile), f"Quectel {profile.model}"


async def _run(args: argparse.Namespace) -> None:
    module, title = _module(args)
    hosts = dict(args.host)
    shell = SimulatorShell(
        module,
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
        await shell.wait_until_booted()  # the banner means: ready for AT commands
        where = f"{shell.path} (linked at {args.link})" if args.link else shell.path
        print(f"simulated {title} on {where}", flush=True)
        async with asyncio.TaskGroup() as tasks:
            helpers = []
            if args.console:
                helpers.append(tasks.create_task(_console(shell)))
            if args.verbose:
                helpers.append(tasks.create_task(_log_commands(shell)))
            await stop.wait()
            for helper in helpers:
                helper.cancel()


async def _log_commands(shell: SimulatorShell[SimulatedModule]) -> None:
    seen = 0
    while True:
        await asyncio.sleep(0.2)
        for command in shell.module.log[seen:]:
            logging.info("AT command: %s", command)
        seen = len(shell.module.log)


async def _console(shell: SimulatorShell[SimulatedModule]) -> None:
    """Fault injection by hand: one command a line on stdin, answered on stdout."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        print(_fault(shell, line.decode().split()), flush=True)


def _fault(shell: SimulatorShell[SimulatedModule], words: list[str]) -> str:
    if not words:
        return ""
    command, rest = words[0], words[1:]
    try:
        if command == "drop":
            shell.drop_connection(int(rest[0]))
        elif command == "pdpdeact":
            shell.deactivate_pdp(int(rest[0]) if rest else 1)
        elif command == "iplost":
            shell.deactivate_pdp()
        elif command == "wifi" and rest and rest[0] in ("on", "off"):
            shell.set_coverage(rest[0] == "on")
        elif command == "fatal":
            shell.fatal_error()
        elif command == "reboot":
            shell.reboot()
        elif command in ("mute", "unmute"):
            shell.set_muted(command == "mute")
        elif command == "delay":
            shell.set_response_delay(float(rest[0]))
        elif command == "garbage":
            shell.inject_garbage(b"\r\n" + " ".join(rest).encode() + b"\r\n")
        elif command == "sendfail" and isinstance(shell.module, QuectelModule):
            shell.module.send_fail_rate = float(rest[0])
        else:
            return f"unknown fault {command!r}"
    except (IndexError, ValueError, TypeError):
        return f"bad arguments for {command!r}"
    return f"ok: {' '.join(words)}"


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
