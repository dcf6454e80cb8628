"""The charge-point side of ``bench.roundtrip`` as a process of its own, so that valgrind's
callgrind can count the instructions it executes (a CPU measure that, unlike CPU time on a
virtual machine, does not charge the cost of every sleep and wake-up).

    python -m bench.roundtrip_cp --url ws://... --count N [--modem PATH]
    python -m bench.roundtrip_cp --url wss://... --ca-file CA.pem --count N [--modem PATH]

It serves the CSMS until it has answered ``count`` DataTransfer requests, then stops. With
``--ca-file`` it connects over wss:// (security profile 2) trusting that CA; through the module,
TLS runs in the module.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from ocpp.v16.enums import DataTransferStatus

from bench.tls import csms_security
from chargepoint.app.daemon import Daemon
from chargepoint.blocks.data_transfer import DataTransferReply, DataTransferVendors
from config.loader import parse_config
from transport.link import Link
from transport.modems.host import HostLink
from transport.modems.quectel import QuectelLink
from transport.modems.quectel_settings import QuectelSettings


async def serve(
    url: str, count: int, modem: str | None, baud: int, ca_file: Path | None = None
) -> None:
    stop = asyncio.Event()
    answered = 0

    def handle(message_id: str | None, data: str | None) -> DataTransferReply:
        nonlocal answered
        answered += 1
        if answered >= count:
            stop.set()
        return DataTransferReply(DataTransferStatus.accepted, "pong")

    vendors = DataTransferVendors()
    vendors.register("org.example.bench", handle)
    link: Link = QuectelLink(modem, baud, QuectelSettings(apn="internet")) if modem else HostLink()
    with tempfile.TemporaryDirectory() as state:
        config = parse_config(
            f'[charge_point]\nid = "CP-BENCH"\nvendor = "Bench"\nmodel = "Bench"\n'
            f'[csms]\nurl = "{url}"\nping_interval = 0\n{csms_security(ca_file)}'
            f'[modem]\ntype = "host"\n[storage]\ndirectory = "{state}"\n'
        )
        await Daemon(config, link, data_transfer=vendors).run(stop)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--modem", help="the simulated module's pty (default: host TCP)")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--ca-file", type=Path, help="wss://: the CSMS's root CA (profile 2)")
    args = parser.parse_args()
    asyncio.run(serve(args.url, args.count, args.modem, args.baud, args.ca_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
