"""The demo's parts and its closing summary."""

from __future__ import annotations

import io
import tarfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from cryptography import x509

from chargepoint.demo.certificates import DemoCertificates
from chargepoint.demo.csms import DemoCsms
from chargepoint.demo.timeline import Timeline
from transport.simulator import SimulatorShell
from transport.simulator.families import SimulatedFamily
from transport.simulator.file_server import FileServer

# A signed update's SignedFirmwareStatusNotifications, in order, when all goes well (whitepaper
# L01: no installDateTime, so no InstallScheduled; InstallRebooting is not sent, see
# chargepoint.blocks.firmware).
SIGNED_FIRMWARE_STATUSES = (
    "Downloading",
    "Downloaded",
    "SignatureVerified",
    "Installing",
    "Installed",
)
INDENT = " " * 25  # continuation lines of a summary row


@dataclass
class Parts:
    csms: DemoCsms
    files: FileServer
    sim: SimulatorShell
    config_path: Path
    module: SimulatedFamily
    certificates: DemoCertificates
    # The charge point certificate the CSMS signed and the charge point accepted (step 10).
    charge_point_certificate: x509.Certificate | None = None


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
        ("security events", _security_events(csms)),
        ("certificate", _certificate_line(parts)),
        ("transactions", f"{len(csms.seen('StopTransaction'))} stopped"),
        ("coverage hole", f"{delivered_after_hole} queued messages delivered after it"),
        ("energy charged", f"{csms.energy_wh} Wh (meterStop - meterStart, as the CSMS bills)"),
        ("firmware", _firmware_line(parts)),
        ("signed firmware", _signed_firmware_line(csms)),
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


def _signed_firmware_line(csms: DemoCsms) -> str:
    requests: dict[object, list[str]] = {}
    for payload in csms.seen("SignedFirmwareStatusNotification"):
        requests.setdefault(payload.get("request_id"), []).append(str(payload.get("status")))
    if not requests:
        return "no SignedFirmwareStatusNotification"
    return "; ".join(
        f"requestId {request}: {' → '.join(statuses)}" for request, statuses in requests.items()
    )


def _security_events(csms: DemoCsms) -> str:
    """The SecurityEventNotifications the CSMS received, one a line, in the order it did."""
    events = csms.seen("SecurityEventNotification")
    if not events:
        return "none received"
    width = max(len(e["type"]) for e in events)
    lines = [f"{len(events)} received by the CSMS (time, type, techInfo):"]
    for event in events:
        when = str(event.get("timestamp", ""))[11:19]
        lines.append(f"{INDENT}{when}  {event['type']:<{width}}  {event.get('tech_info', '')}")
    return "\n".join(lines).rstrip()


def _certificate_line(parts: Parts) -> str:
    asked = parts.csms.seen("SignCertificate")
    certificate = parts.charge_point_certificate
    if certificate is None:
        return f"{len(asked)} SignCertificate, no charge point certificate accepted"
    issuer = certificate.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    return (
        f"{certificate.subject.rfc4514_string()} from SignCertificate's CSR, signed by "
        f"{issuer!s}: Accepted, kept for security profile 3"
    )


def _diagnostics_line(archive: bytes | None) -> str:
    if archive is None:
        return "nothing uploaded"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        names = tar.getnames()
    return f"{len(archive)} bytes uploaded, {len(names)} files: {', '.join(names)}"
