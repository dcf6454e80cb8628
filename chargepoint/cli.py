"""The ``chargepoint`` command."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from importlib.metadata import version

from chargepoint import demo
from chargepoint.daemon import Daemon, link_for
from chargepoint.logs import configure_logging
from config.loader import Config, ConfigError, load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chargepoint",
        description="OCPP 1.6-J charge point that reaches its CSMS through an AT-command module.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {version('chargepoint-at')}"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "demo",
        help="run the self-contained demo (simulated module on a pty, local server)",
        description="Bring up a simulated Quectel module at 115200 baud and send data through it.",
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return demo.main()
    if args.command == "run":
        try:
            config = load_config(args.config)
        except ConfigError as error:
            print(error.report(), file=sys.stderr)
            return 1
        configure_logging(args.log_level or config.log_level)
        asyncio.run(_run(config))
        return 0
    return 2


async def _run(config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await Daemon(config, link_for(config)).run(stop)


if __name__ == "__main__":
    sys.exit(main())
