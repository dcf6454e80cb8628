"""The ``chargepoint`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ocpp.v16.enums import ResetType

from chargepoint import demo
from chargepoint.app import commands, control
from chargepoint.app.assembly import link_for
from chargepoint.app.daemon import Daemon
from chargepoint.logs import configure_logging
from chargepoint.storage import StateError
from config.loader import Config, ConfigError, load_config
from transport.simulator.families import SIMULATED

log = logging.getLogger(__name__)

DEFAULT_SOCKET = Path("/var/lib/chargepoint/control.sock")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chargepoint",
        description="OCPP 1.6-J charge point that reaches its CSMS through an AT-command module.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {version('chargepoint-at')}"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo_parser = sub.add_parser(
        "demo",
        help="run the self-contained demo: simulated module, local CSMS and file server",
        description="Start a simulated module on a pty, a CSMS and an HTTP file server "
        "on 127.0.0.1 and the charge point daemon; play boot, RFID charging, a coverage hole, "
        "remote start/stop, a firmware update and a diagnostics upload; print the timeline and "
        "a summary. Exit code 0 when every step happened. Nothing leaves this machine.",
    )
    demo_parser.add_argument(
        "--module",
        choices=sorted(SIMULATED),
        default="quectel",
        help="the module family to simulate (default: quectel)",
    )
    demo_parser.add_argument(
        "--keep-running",
        action="store_true",
        help="after the script, leave everything up for `chargepoint ctl` until Ctrl-C",
    )
    run = sub.add_parser(
        "run",
        help="run the charge point in the foreground (what the service runs)",
        description="Connect to the CSMS and keep the OCPP session up until SIGTERM or Ctrl-C.",
    )
    run.add_argument("--config", required=True, metavar="FILE", help="the TOML configuration file")
    run.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="override logging.level of the file (debug: every AT command and OCPP frame)",
    )
    check = sub.add_parser(
        "check-config",
        help="validate a configuration file and its OCPP keys",
        description="Check the TOML file against the schema and the [ocpp_keys] against the "
        "keys this charge point has. Prints every problem and exits 1, or a summary (and "
        "warnings about this machine, such as a missing serial port) and exits 0.",
    )
    check.add_argument("--config", required=True, metavar="FILE")
    _modem_parser(sub)
    fetch = sub.add_parser(
        "fetch",
        help="download a file through the module's HTTP client (a manual firmware fetch)",
        description="Fetch URL through the link as UpdateFirmware does: Range pieces, resumed "
        "from the partial file when run again. Progress is shown on a terminal only. "
        "Stop the service first: the serial port is the daemon's while it runs.",
    )
    fetch.add_argument("--config", required=True, metavar="FILE")
    fetch.add_argument("url", metavar="URL")
    fetch.add_argument(
        "--output", "-o", metavar="PATH", help="where to store it (default: the URL's file name)"
    )
    _ctl_parser(sub)
    return parser


def _modem_parser(sub: Any) -> None:
    modem = sub.add_parser(
        "modem",
        help="wiring checks: talk to the module directly (stop the service first)",
        description="Talk to the module on modem.port. The port is locked while the daemon "
        "runs: stop it first (systemctl stop chargepoint).",
    )
    actions = modem.add_subparsers(dest="action", required=True)
    info = actions.add_parser(
        "info",
        help="bring the module up; print identity, SIM, registration, signal, address",
        description="Bring the module up as the daemon does (SIM, registration, PDP context) "
        "and print module, firmware, IMEI, ICCID, IMSI, registration, signal and PDP address.",
    )
    info.add_argument("--config", required=True, metavar="FILE")
    info.add_argument(
        "--log-level",
        choices=["debug", "info", "warning"],
        default="warning",
        help="debug shows every AT command on stderr",
    )
    at = actions.add_parser(
        "at",
        help="send one AT command, or an interactive AT console",
        description="With COMMAND: send it, print the answer, exit 0 on OK and 1 otherwise. "
        "Without: read commands from stdin, one per line, and print answers and URCs as they "
        "come. Commands with a data phase (AT+QISEND, AT+QFUPL, ...) are refused.",
    )
    at.add_argument("--config", required=True, metavar="FILE")
    at.add_argument(
        "at_command", nargs="?", metavar="COMMAND", help='e.g. "AT+CSQ" (quote it for the shell)'
    )
    at.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for an answer (default 10)"
    )


def _ctl_parser(sub: Any) -> None:
    ctl = sub.add_parser(
        "ctl",
        help="drive the running charge point: cables, cards, faults; print its status",
        description="Talk to a running daemon over its control socket (JSON lines). "
        "Prints the answer as JSON; exit code 1 when the daemon refuses the request.",
    )
    where = ctl.add_mutually_exclusive_group()
    where.add_argument("--config", metavar="FILE", help="find the socket from this config file")
    where.add_argument(
        "--socket", metavar="PATH", help=f"the control socket (default {DEFAULT_SOCKET})"
    )
    actions = ctl.add_subparsers(dest="action", required=True)
    actions.add_parser("status", help="connectors, transactions and link state as JSON")
    actions.add_parser("plug", help="plug the EV's cable in").add_argument("connector", type=int)
    unplug = actions.add_parser("unplug", help="pull the cable out of the socket (and the EV)")
    unplug.add_argument("connector", type=int)
    unplug.add_argument(
        "--ev-side", action="store_true", help="out of the EV only; the cable stays in the socket"
    )
    present = actions.add_parser("present", help="present an idTag on the RFID reader")
    present.add_argument("id_tag", metavar="ID_TAG")
    present.add_argument("--connector", type=int, help="the connector the card is meant for")
    for name, text in (
        ("lock-fails", "make the cable lock fail (--off: work again)"),
        ("unlock-fails", "make unlocking fail (--off: work again)"),
    ):
        parser = actions.add_parser(name, help=text)
        parser.add_argument("connector", type=int)
        parser.add_argument("--off", action="store_true")
    fault = actions.add_parser("fault", help="raise a fault with an OCPP error code")
    fault.add_argument("connector", type=int, help="0: the charge point as a whole")
    fault.add_argument("code", help="a ChargePointErrorCode, e.g. GroundFailure")
    fault.add_argument("--info", help="free text sent as StatusNotification.info")
    actions.add_parser("clear-fault", help="clear a fault (0: the charge point's)").add_argument(
        "connector", type=int
    )
    actions.add_parser("suspend", help="the EV pauses charging").add_argument("connector", type=int)
    actions.add_parser("resume", help="the EV resumes charging").add_argument("connector", type=int)
    actions.add_parser(
        "tamper", help="the enclosure's tamper sensor trips (a security event)"
    ).add_argument("--info", help="what the sensor saw, sent as the event's techInfo")
    power = actions.add_parser(
        "power-fail", help="the power goes: the daemon dies at once, as in a power cut"
    )
    power.add_argument(
        "--backup",
        action="store_true",
        help="mains lost but the back-up supply holds: transactions are stopped first",
    )
    actions.add_parser("hardware", help="the simulated charger's physical state as JSON")


def _ctl_message(args: argparse.Namespace) -> dict[str, Any]:
    action = args.action
    if action in ("suspend", "resume"):
        return {"cmd": "suspend", "connector": args.connector, "suspended": action == "suspend"}
    message: dict[str, Any] = {"cmd": action}
    for name in ("connector", "id_tag", "code", "info"):
        if getattr(args, name, None) is not None:
            message[name] = getattr(args, name)
    if action in ("lock-fails", "unlock-fails"):
        message["fails"] = not args.off
    if action == "unplug" and args.ev_side:
        message["ev_side"] = True
    if action == "power-fail" and args.backup:
        message["backup"] = True
    return message


def _ctl(args: argparse.Namespace) -> int:
    if args.socket:
        path = Path(args.socket)
    elif args.config:
        try:
            path = load_config(args.config).control_path
        except ConfigError as error:
            print(error.report(), file=sys.stderr)
            return 1
    else:
        path = DEFAULT_SOCKET
    try:
        answer = asyncio.run(control.request(path, _ctl_message(args)))
    except (OSError, TimeoutError, control.ControlError) as exc:
        print(f"chargepoint ctl: cannot reach the daemon at {path}: {exc}", file=sys.stderr)
        return 1
    if not answer.pop("ok", False):
        print(f"chargepoint ctl: {answer.get('error')}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return demo.main(keep_running=args.keep_running, module=args.module)
    if args.command == "ctl":
        return _ctl(args)
    if args.command == "check-config":
        return commands.check_config(args.config)
    if args.command in ("modem", "fetch"):
        return _module_command(args)
    if args.command == "run":
        try:
            config = load_config(args.config)
            configure_logging(args.log_level or config.log_level)
            reset = asyncio.run(_run(config))
        except ConfigError as error:
            print(error.report(), file=sys.stderr)
            return 1
        except StateError as error:
            print(f"chargepoint: {error}", file=sys.stderr)
            return 1
        if reset is not None:
            _restart(config, reset, argv if argv is not None else sys.argv[1:])
        return 0
    return 2


def _module_command(args: argparse.Namespace) -> int:
    config = commands.load(args.config)
    if config is None:
        return 1
    if args.command == "fetch":
        configure_logging("warning")
        output = Path(args.output or args.url.rsplit("/", 1)[-1] or "download")
        return asyncio.run(commands.fetch(config, args.url, output))
    if args.action == "info":
        configure_logging(args.log_level)
        return asyncio.run(commands.modem_info(config))
    configure_logging("warning")
    return asyncio.run(commands.modem_at(config, args.at_command, args.timeout))


async def _run(config: Config) -> ResetType | None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    daemon = Daemon(config, link_for(config))
    await daemon.run(stop)
    return daemon.reset_requested


def _restart(config: Config, kind: ResetType, argv: list[str]) -> None:
    """Carry out a CSMS Reset once transactions are stopped and the state is on disk."""
    command = config.charge_point.reset_command
    if command is not None:
        log.warning("%s reset: running %s", kind.value, " ".join(command))
        # The command (e.g. "systemctl reboot") is run as it is, without a shell.
        result = subprocess.run(command, check=False)
        if result.returncode != 0:
            log.error("reset command exited with %d", result.returncode)
        return
    log.warning("%s reset: restarting the charge point software", kind.value)
    os.execv(sys.executable, [sys.executable, "-m", "chargepoint.app.cli", *argv])


if __name__ == "__main__":
    sys.exit(main())
