"""`make demo` runs `chargepoint demo`: it must play the whole script on its own, succeed, and
say so in a timeline a person can read and a summary."""

from __future__ import annotations

import io
import re

from chargepoint import demo
from chargepoint.app import cli


async def test_demo_plays_the_whole_script_and_summarises_it() -> None:
    out = io.StringIO()
    assert await demo.Demo(out).run() == 0
    text = out.getvalue()
    timeline, _, summary = text.partition("\nsummary\n")
    # The serial line, summarised: control commands with their results, data only counted.
    assert re.search(r"uart  AT\+QSSLOPEN=1,2,0,\"127\.0\.0\.1\",\d+,0  ⇒  OK", timeline)
    assert "data commands:" in timeline and "AT+QISEND=" not in timeline
    assert 'urc +QIURC: "pdpdeact",1' in timeline  # the coverage hole, as the module says it
    assert "AT+QHTTPGET=" in timeline and "AT+QHTTPPOSTFILE=" in timeline
    # The WebSocket and OCPP, both ways.
    assert "ws    WebSocket open, subprotocol ocpp1.6" in timeline
    for expected in (
        "CP → CSMS  StartTransaction  connectorId=1 idTag=04A2B3C4D5",
        "CSMS → CP  RemoteStartTransaction  idTag=APP-USER-42",
        "CP → CSMS  StopTransaction  ",
        "reason=Remote",
        "CP → CSMS  FirmwareStatusNotification  status=Installed",
        "CP → CSMS  DiagnosticsStatusNotification  status=Uploaded",
    ):
        assert expected in timeline, expected
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
