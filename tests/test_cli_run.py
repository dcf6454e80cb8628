"""`chargepoint run --config FILE`, as the service runs it: separate processes for the daemon,
the simulated module (on a pty, at 115200 baud) and the CSMS (ocpp-rpc, strict)."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
from pathlib import Path

from tests.harness import CHARGEPOINT, chargepoint, simulator_process
from tests.peers import NodeCsms

SECRET = b"correct horse battery"


async def test_run_connects_through_the_simulator_and_stops_cleanly(tmp_path: Path) -> None:
    csms = NodeCsms(password=SECRET, boots="Accepted:1")
    await csms.start()
    try:
        async with simulator_process(tmp_path / "modem", "--baud", "115200") as link:
            (tmp_path / "csms-password").write_text(SECRET.decode() + "\n")
            config = tmp_path / "chargepoint.toml"
            config.write_text(
                f"""
[charge_point]
id = "CP-CLI"
vendor = "TestVendor"
model = "TestModel"
connectors = 1

[csms]
url = "{csms.url}"
password_file = "csms-password"
security_profile = 1
ping_interval = 0

[modem]
type = "quectel"
port = "{link}"
apn = "internet"
password = "apn-secret"

[storage]
directory = "{tmp_path / "state"}"

[logging]
level = "debug"
"""
            )
            daemon = await asyncio.create_subprocess_exec(
                str(CHARGEPOINT), "run", "--config", str(config), stderr=asyncio.subprocess.PIPE
            )
            await csms.wait_for(lambda _: csms.calls("Heartbeat"), timeout=60)

            # Drive the simulated charger as a person (or the charger's HMI) would.
            assert (await ctl(config, "plug", "1"))[0] == 0
            assert (await ctl(config, "present", "CARD-1", "--connector", "1"))[0] == 0
            await csms.wait_for(lambda _: csms.calls("StartTransaction"), timeout=30)
            code, out, _ = await ctl(config, "status")
            status = json.loads(out)
            assert code == 0 and status["online"] is True
            connector = status["connectors"][0]
            assert (connector["status"], connector["ev_connected"]) == ("Charging", True)
            assert connector["transaction"]["id_tag"] == "CARD-1"
            # Queued for the CSMS since the start: StartupOfTheDevice, then the transaction's.
            assert status["queued_since_start"]["StartTransaction"] == 1
            assert status["dropped_messages"] == 0
            code, _, err = await ctl(config, "plug", "7")
            assert code == 1 and "no connector 7" in err
            code, _, err = await ctl(config, "fault", "1", "Melted")
            assert code == 1 and "unknown OCPP error code 'Melted'" in err
            # The enclosure opened: a security event the CSMS hears of (whitepaper §8).
            assert (await ctl(config, "tamper", "--info", "front door opened"))[0] == 0
            tamper = {"type": "TamperDetectionActivated", "techInfo": "front door opened"}
            await csms.wait_for(
                lambda _: any(
                    {k: c["params"].get(k) for k in tamper} == tamper
                    for c in csms.calls("SecurityEventNotification")
                ),
                timeout=30,
            )

            daemon.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                _, stderr = await daemon.communicate()
            assert daemon.returncode == 0
            log = stderr.decode()
            await csms.wait_for(lambda _: csms.count("close") >= 1)
    finally:
        await csms.stop()

    code, _, err = await ctl(config, "status")  # the daemon is gone
    assert code == 1 and "cannot reach the daemon" in err
    assert [c["method"] for c in csms.calls()][:3] == [
        "BootNotification",
        "StatusNotification",
        "StatusNotification",
    ]
    assert [e["code"] for e in csms.events if e["event"] == "close"] == [1001]  # going away
    assert [e for e in csms.events if e["event"] in ("invalid", "bad_message")] == []
    # The log tells the story: the module, the WebSocket, and every OCPP frame at debug level.
    for expected in (
        "AT+QIOPEN=1,0",
        "WebSocket open, subprotocol ocpp1.6",
        '"BootNotification"',
        "CSMS accepted",
    ):
        assert expected in log, expected
    # ...and keeps the secrets.
    for secret in (SECRET.decode(), base64.b64encode(b"CP-CLI:" + SECRET).decode(), "apn-secret"):
        assert secret not in log


async def ctl(config: Path, *args: str) -> tuple[int, str, str]:
    return await chargepoint("ctl", "--config", str(config), *args)


async def test_run_with_a_broken_config_says_what_is_wrong(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text(
        '[charge_point]\nid = "CP"\nvendor = "V"\nmodel = "M"\n'
        '[csms]\nurl = "http://x"\n[modem]\ntype = "host"\n'
    )
    process = await asyncio.create_subprocess_exec(
        str(CHARGEPOINT), "run", "--config", str(config), stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    assert process.returncode == 1
    assert "csms.url: must start with ws:// or wss:// followed by the CSMS host" in stderr.decode()
