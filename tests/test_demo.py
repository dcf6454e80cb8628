"""`make demo` runs `chargepoint demo`: it must play the whole script on its own, succeed, and
say so in a timeline a person can read and a summary."""

from __future__ import annotations

import io
import re

import pytest

from chargepoint import demo
from chargepoint.app import cli

SIGNED_STATUSES = ("Downloading", "Downloaded", "SignatureVerified", "Installing", "Installed")
# Start, the restart after the firmware installation, the new charge point certificate.
EVENTS = [
    "StartupOfTheDevice",
    "ResetOrReboot",
    "StartupOfTheDevice",
    "FirmwareUpdated",
    "ReconfigurationOfSecurityParameters",
]

# What the serial line shows of each step, by module family.
SEEN = {
    "quectel": {
        # Direct push (access mode 1), the default.
        "tls_open": r"uart  AT\+QSSLOPEN=1,2,0,\"127\.0\.0\.1\",\d+,1  ⇒  OK",
        "data": "AT+QISEND=",
        "hole": 'urc +QIURC: "pdpdeact",1',
        "transfers": ("AT+QHTTPGET=", "AT+QHTTPPOSTFILE="),
    },
    "simplelink": {
        "tls_open": r"uart  AT\+Connect=\d+,INET,\d+,127\.0\.0\.1  ⇒  \+connect:\d+,127\.0\.0\.1",
        "data": "AT+Send=",
        "hole": "urc +eventwlan:disconnect,SiteNet,",
        "transfers": ("AT+HttpSendReq=0,GET,", "AT+HttpSendReq=0,POST,"),
    },
}


@pytest.mark.parametrize("module", ["quectel", "simplelink"])
async def test_demo_plays_the_whole_script_and_summarises_it(module: str) -> None:
    out = io.StringIO()
    assert await demo.Demo(out, module=module).run() == 0
    text = out.getvalue()
    timeline, _, summary = text.partition("\nsummary\n")
    seen = SEEN[module]
    # The serial line, summarised: control commands with their results, data only counted.
    assert re.search(seen["tls_open"], timeline)
    assert "data commands:" in timeline and seen["data"] not in timeline
    assert seen["hole"] in timeline  # the coverage hole, as the module says it
    assert all(command in timeline for command in seen["transfers"])
    # The WebSocket and OCPP, both ways.
    assert "ws    WebSocket open, subprotocol ocpp1.6" in timeline
    for expected in (
        "CP → CSMS  StartTransaction  connectorId=1 idTag=04A2B3C4D5",
        "CSMS → CP  RemoteStartTransaction  idTag=APP-USER-42",
        "CP → CSMS  StopTransaction  ",
        "reason=Remote",
        "CP → CSMS  DiagnosticsStatusNotification  status=Uploaded",
    ):
        assert expected in timeline, expected
    # Step 8 is a signed update (security whitepaper L01), not a plain UpdateFirmware: the
    # image's signature is checked before it is installed, every status with the requestId.
    assert "CSMS → CP  UpdateFirmware  " not in timeline
    assert "CP → CSMS  FirmwareStatusNotification  " not in timeline
    update = re.search(r"CSMS → CP  SignedUpdateFirmware  requestId=(\d+) (.*)", timeline)
    assert update, "no SignedUpdateFirmware"
    request_id = update.group(1)
    assert "signingCertificate=<PEM CERTIFICATE, " in update.group(2)
    assert re.search(r"signature=\S+…<344 chars>", update.group(2))  # RSA 2048, base64
    assert "CP → CSMS  SignedUpdateFirmware.conf  status=Accepted" in timeline
    statuses = re.findall(
        r"CP → CSMS  SignedFirmwareStatusNotification  status=(\w+) requestId=(\d+)", timeline
    )
    assert statuses == [(status, request_id) for status in SIGNED_STATUSES]
    assert (
        f"signed firmware        requestId {request_id}: {' → '.join(SIGNED_STATUSES)}" in summary
    )
    # The security events, as the CSMS received them, in the timeline and in the summary.
    events = re.findall(r"CP → CSMS  SecurityEventNotification  type=(\w+) .*", timeline)
    assert events == EVENTS
    listed = re.search(r"security events\s+(\d+) received by the CSMS.*\n((?: {25}.*\n)+)", summary)
    assert listed and int(listed.group(1)) == len(EVENTS)
    rows = [row.split() for row in listed.group(2).splitlines()]
    assert [row[1] for row in rows] == EVENTS
    assert " ".join(rows[0][2:]) == "chargepoint-at 0.1.0, firmware 1.0.0"
    assert " ".join(rows[1][2:]) == "reboot after a firmware installation"
    assert " ".join(rows[2][2:]) == "chargepoint-at 0.1.0, firmware 1.1.0"
    assert " ".join(rows[3][2:]) == f"SignedUpdateFirmware {request_id}"
    assert " ".join(rows[4][2:]).startswith("new charge point certificate, serial ")
    # Step 10: a charge point certificate from the CSMS's CA, kept for security profile 3.
    for expected in (
        "CSMS → CP  ExtendedTriggerMessage  requestedMessage=SignChargePointCertificate",
        "CP → CSMS  ExtendedTriggerMessage.conf  status=Accepted",
        "CP → CSMS  SignCertificate  csr=<PEM CERTIFICATE REQUEST, ",
        "CSMS → CP  CertificateSigned  certificateChain=<PEM CERTIFICATE, ",
        "CP → CSMS  CertificateSigned.conf  status=Accepted",
    ):
        assert expected in timeline, expected
    assert (
        "certificate            CN=CP-DEMO-1,O=DemoVendor from SignCertificate's CSR, signed by "
        "demo CSMS root CA: Accepted, kept for security profile 3"
    ) in summary
    assert "FAILED" not in text
    assert "result                 every step completed" in summary
    # The session ran over wss:// with the TLS in the simulated module (security profile 2).
    assert re.search(r"security\s+profile 2: wss://127\.0\.0\.1:\d+, TLS in the module", summary)
    assert "0 plain TCP sockets" in summary
    assert "firmware               BootNotification firmwareVersion 1.0.0 → 1.1.0" in summary
    queued = re.search(r"coverage hole\s+(\d+) queued messages delivered", summary)
    assert queued and int(queued.group(1)) >= 3
    energy = re.search(r"energy charged\s+(\d+) Wh", summary)
    assert energy and int(energy.group(1)) > 0
    uart = re.search(r"UART module → host\s+(\d+) bytes", summary)
    assert uart and int(uart.group(1)) > 64 * 1024  # the firmware image came over the UART
    assert "logs/chargepoint.log" in summary and "ocpp-frames.jsonl" in summary


def test_cli_knows_the_demo_command(capsys) -> None:
    try:
        cli.main(["demo", "--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    assert "--keep-running" in capsys.readouterr().out
