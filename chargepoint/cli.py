"""The ``chargepoint`` command."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version

from chargepoint import demo


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return demo.main()
    return 2


if __name__ == "__main__":
    sys.exit(main())
