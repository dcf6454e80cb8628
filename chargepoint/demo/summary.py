"""The demo's parts and its closing summary."""

from __future__ import annotations

import io
import tarfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from chargepoint.demo.csms import DemoCsms
from chargepoint.demo.timeline import Timeline
from transport.simulator import SimulatorShell
from transport.simulator.families import SimulatedFamily
from transport.simulator.file_server import FileServer


@dataclass
class Parts:
    csms: DemoCsms
    files: FileServer
    sim: SimulatorShell
    config_path: Path
    module: SimulatedFamily


def print_summary(
    out: TextIO,
    timeline: Timeline,
    parts: Parts,
    *,
    delivered_after_hole: int,
    start: float,
    ok: bool,
) -> None:
    """The demo's last lines: what crossed each layer, and whether every step happened."""
    csms, sim = parts.csms, parts.sim
    sent = Counter(action for action, _ in csms.calls)
    upload = parts.files.uploads[-1] if parts.files.uploads else None
    print(file=out)
    print("summary", file=out)
    rows = [
        ("OCPP calls CP → CSMS", f"{sum(sent.values())}  " + _counts(sent)),
        (
            "OCPP messages",
            f"{timeline.frames['cp>csms']} sent by the charge point, "
            f"{timeline.frames['csms>cp']} received",
        ),
        ("UART host → module", f"{sim.bytes_from_host} bytes"),
        ("UART module → host", f"{sim.bytes_to_host} bytes"),
        ("AT commands", f"{timeline.commands} ({timeline.urcs} URCs)"),
        ("security", _security_line(parts)),
        ("transactions", f"{len(csms.seen('StopTransaction'))} stopped"),
        ("coverage hole", f"{delivered_after_hole} queued messages delivered after it"),
        ("energy charged", f"{csms.energy_wh} Wh (meterStop - meterStart, as the CSMS bills)"),
        ("firmware", _firmware_line(parts)),
        ("diagnostics", _diagnostics_line(upload.data if upload else None)),
        ("elapsed", f"{time.time() - start:.1f} s"),
        ("result", "every step completed" if ok else "FAILED (see the timeline)"),
    ]
    for name, value in rows:
        print(f"  {name:<22} {value}", file=out)
    out.flush()


def _security_line(parts: Parts) -> str:
    log = [c.upper() for c in parts.sim.module.log]
    tls, tcp = parts.module.tls_open, parts.module.tcp_open
    opens = sum(c.startswith(tls.upper()) for c in log)
    plain = sum(c.startswith(tcp.upper()) for c in log)
    if not opens:
        return f"no TLS ({plain} plain TCP sockets)"
    return (
        f"profile 2: {parts.csms.url.split('/ocpp')[0]}, TLS in the module "
        f"({opens} {tls}, {plain} plain TCP sockets), CSMS certificate verified by it"
    )


def _counts(counter: Counter[str]) -> str:
    return "(" + ", ".join(f"{name} {n}" for name, n in counter.most_common()) + ")"


def _firmware_line(parts: Parts) -> str:
    versions = [p.get("firmware_version") for p in parts.csms.seen("BootNotification")]
    return f"BootNotification firmwareVersion {' → '.join(dict.fromkeys(map(str, versions)))}"


def _diagnostics_line(archive: bytes | None) -> str:
    if archive is None:
        return "nothing uploaded"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        names = tar.getnames()
    return f"{len(archive)} bytes uploaded, {len(names)} files: {', '.join(names)}"
