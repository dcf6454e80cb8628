"""The operator's commands as a technician runs them, each in its own process: check-config,
modem info, modem at (one command and the console), fetch. The module is the simulator in its
own process on a linked pty (`python -m transport.simulator quectel --link`), the file server
a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import os
import pty
from pathlib import Path

import pytest

from chargepoint.app.commands import ProgressLine
from tests.harness import CHARGEPOINT, chargepoint, simulator_process
from transport.serial_port import SerialPort
from transport.simulator.file_server import FileServer


def write_config(tmp_path: Path, port: Path, extra: str = "") -> Path:
    config = tmp_path / "chargepoint.toml"
    config.write_text(
        f"""
[charge_point]
id = "CP-TECH"
vendor = "TestVendor"
model = "TestModel"
connectors = 2

[csms]
url = "ws://127.0.0.1:9/ocpp"

[modem]
type = "quectel"
port = "{port}"
apn = "internet"

[storage]
directory = "{tmp_path / "state"}"
{extra}
"""
    )
    return config


async def test_check_config_summarises_a_good_file_and_warns_about_this_machine(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path,
        tmp_path / "no-such-tty",
        '[firmware]\ninstall_command = ["/opt/vendor/flash-it", "{image}"]\n'
        "[ocpp_keys]\nMeterValueSampleInterval = 30\n",
    )
    code, out, err = await chargepoint("check-config", "--config", str(config))
    assert (code, err) == (0, "")
    assert f"{config}: OK" in out
    assert "CSMS           ws://127.0.0.1:9/ocpp" in out
    assert "(1 set by the file)" in out
    assert f"warning: modem.port: {tmp_path / 'no-such-tty'} does not exist here" in out
    assert "warning: firmware.install_command: /opt/vendor/flash-it is not an executable" in out


async def test_check_config_prints_the_exact_error_and_exits_1(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "tty", '[logging]\nlevel = "loud"\n')
    code, out, err = await chargepoint("check-config", "--config", str(config))
    assert (code, out) == (1, "")
    assert err == (
        f"{config}: 1 problem(s):\n"
        '  logging.level: must be one of "debug", "info", "warning", "error", not "loud"\n'
    )


async def test_check_config_reports_the_ocpp_keys_once_the_file_is_valid(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, tmp_path / "tty", "[ocpp_keys]\nMeterValueSampleInterval = -5\nNoSuchKey = 1\n"
    )
    code, _, err = await chargepoint("check-config", "--config", str(config))
    assert code == 1
    assert err.splitlines()[1:] == [
        "  ocpp_keys.MeterValueSampleInterval: must be at least 0",
        "  ocpp_keys.NoSuchKey: not a configuration key this charge point has",
    ]


async def test_modem_info_brings_the_module_up_and_prints_what_it_is(tmp_path: Path) -> None:
    async with simulator_process(tmp_path / "modem") as link:
        code, out, err = await chargepoint(
            "modem", "info", "--config", str(write_config(tmp_path, link))
        )
    assert code == 0, err
    lines = dict(line.split(None, 1) for line in out.replace("SIM ", "SIM_").splitlines())
    assert lines["module"] == f"Quectel EC200U on {link}"
    assert lines["IMEI"] == "869710030002906"
    assert lines["SIM_ICCID"] == "89860025128306012474"
    assert lines["signal"] == "-65 dBm (CSQ 24)"
    assert lines["PDP"] == "context   1, APN 'internet', address 10.64.23.7"


async def test_modem_at_one_command_and_its_exit_code(tmp_path: Path) -> None:
    async with simulator_process(tmp_path / "modem") as link:
        config = str(write_config(tmp_path, link))
        assert await chargepoint("modem", "at", "--config", config, "AT+CSQ") == (
            0,
            "+CSQ: 24,99\nOK\n",
            "",
        )
        code, out, _ = await chargepoint("modem", "at", "--config", config, "AT+QIACT=9")
        assert (code, out) == (1, "ERROR\n")
        code, out, _ = await chargepoint("modem", "at", "--config", config, "AT+QISEND=0,5")
        assert code == 1 and "needs a data phase" in out


async def test_modem_at_console_shows_urcs_as_they_come(tmp_path: Path) -> None:
    async with simulator_process(tmp_path / "modem") as link:
        process = await asyncio.create_subprocess_exec(
            str(CHARGEPOINT),
            "modem",
            "at",
            "--config",
            str(write_config(tmp_path, link)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdin is not None and process.stdout is not None
        seen: list[str] = []

        async def until(text: str) -> None:
            assert process.stdout is not None
            async with asyncio.timeout(30):
                while text not in seen:
                    seen.append((await process.stdout.readline()).decode().rstrip("\n"))

        process.stdin.write(b"AT+CFUN=1,1\n")  # the module restarts: RDY comes by itself
        await until("urc: RDY")
        process.stdin.write(b"AT+CGREG?\n")
        await until("+CGREG: 0,1")
        process.stdin.close()
        async with asyncio.timeout(30):
            assert await process.wait() == 0


async def test_modem_at_refuses_a_port_someone_else_holds(tmp_path: Path) -> None:
    async with simulator_process(tmp_path / "modem") as link:
        held = SerialPort.open(str(link), 115200)  # as the running daemon holds it
        try:
            code, _, err = await chargepoint(
                "modem", "at", "--config", str(write_config(tmp_path, link)), "AT"
            )
        finally:
            held.close()
    assert code == 1
    assert f"cannot open serial port {link}" in err and "no other program holds the port" in err


async def test_fetch_downloads_through_the_module_quietly_off_a_terminal(tmp_path: Path) -> None:
    image = os.urandom(40_000)
    with FileServer(files={"/fw/image.bin": image}) as files:
        async with simulator_process(tmp_path / "modem") as link:
            output = tmp_path / "image.bin"
            code, out, err = await chargepoint(
                "fetch",
                "--config",
                str(write_config(tmp_path, link)),
                files.url("/fw/image.bin"),
                "--output",
                str(output),
            )
    assert (code, err) == (0, "")  # no progress lines in a pipe
    assert output.read_bytes() == image
    assert out == (
        f"{output}: 40000 bytes in 1 request(s), SHA-256 {hashlib.sha256(image).hexdigest()}\n"
    )


def _read_to_hangup(leader: int) -> bytes:
    """Everything written to a pty whose follower is closed: one read returns only what the
    line discipline has passed on so far, so read until the hang-up (EIO on Linux)."""
    shown = b""
    try:
        while chunk := os.read(leader, 4096):
            shown += chunk
    except OSError as error:
        if error.errno != errno.EIO:
            raise
    finally:
        os.close(leader)
    return shown


def test_progress_is_redrawn_on_a_terminal_only() -> None:
    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as terminal:
        progress = ProgressLine(terminal, every=0)
        progress(0, 2048)
        progress(1024, 2048)
        progress(2048, 2048)
        progress.finish()
    shown = _read_to_hangup(leader).decode()
    assert "\r1.0 KiB / 2.0 KiB   50.0%" in shown and "100.0%" in shown
    pipe = io.StringIO()
    quiet = ProgressLine(pipe, every=0)
    quiet(1024, 2048)
    quiet.finish()
    assert pipe.getvalue() == ""


@pytest.mark.parametrize("command", [["modem", "info"], ["modem", "at"], ["fetch", "http://x/y"]])
async def test_module_commands_refuse_a_host_link(tmp_path: Path, command: list[str]) -> None:
    config = write_config(tmp_path, tmp_path / "tty").read_text()
    path = tmp_path / "host.toml"
    path.write_text(config.replace('type = "quectel"', 'type = "host"'))
    if command[0] == "modem":
        args = [*command, "--config", str(path)]
    else:  # a failed fetch keeps its partial file for a resume: keep it out of the work tree
        args = ["fetch", "--config", str(path), command[1], "-o", str(tmp_path / "y")]
    code, _, err = await chargepoint(*args)
    if command[0] == "modem":
        assert code == 1 and "there is no module to talk to" in err
    else:
        assert code == 1 and "chargepoint fetch:" in err  # the host stack cannot reach x


# -- the Wi-Fi module: the same commands through the family registry --

WIFI = """
[modem]
type = "simplelink"
port = "{port}"

[wifi]
ssid = "SiteNet"
key = "charge-point-wifi"
"""


def write_wifi_config(tmp_path: Path, port: Path) -> Path:
    config = write_config(tmp_path, port)
    text = config.read_text()
    modem = text[text.index("[modem]") : text.index("[storage]")]
    config.write_text(text.replace(modem, WIFI.format(port=port)))
    return config


async def test_modem_info_on_a_wifi_module(tmp_path: Path) -> None:
    async with simulator_process(tmp_path / "modem", family="simplelink") as link:
        config = write_wifi_config(tmp_path, link)
        code, out, err = await chargepoint("modem", "info", "--config", str(config))
    assert code == 0, err
    lines = dict(line.split(None, 1) for line in out.replace("Wi-Fi ", "Wi-Fi_").splitlines())
    assert lines["module"].startswith("Texas Instruments CC32") and lines["module"].endswith(
        f" on {link}"
    )
    assert lines["MAC"] == "d4:36:39:5a:3c:11"
    assert (lines["Wi-Fi_SSID"], lines["Wi-Fi_security"]) == ("SiteNet", "wpa_wpa2")
    assert lines["RSSI"] == "-52 dBm"
    assert lines["IP"].split() == ["address", "192.168.50.23"]
    assert "charge-point-wifi" not in out + err  # the key is never shown


async def test_modem_at_on_a_wifi_module_waits_for_a_blocked_commands_result(
    tmp_path: Path,
) -> None:
    async with simulator_process(tmp_path / "modem", family="simplelink") as link:
        config = str(write_wifi_config(tmp_path, link))
        code, _, err = await chargepoint("modem", "info", "--config", config)  # joins the network
        assert code == 0, err
        # AT+NetAPPGetHostByName answers OK at once and its result later (a "blocked" command):
        # the console shows the result, not just the first OK.
        assert await chargepoint(
            "modem", "at", "--config", config, "AT+NetAPPGetHostByName=localhost,INET"
        ) == (0, "+netappgethostbyname:localhost,127.0.0.1\nOK\n", "")
        code, out, _ = await chargepoint("modem", "at", "--config", config, "AT+Close=9")
        assert (code, out) == (1, "ERROR:process command,-9\n")
        code, out, _ = await chargepoint("modem", "at", "--config", config, "AT+Recv=0,1,1460")
        assert code == 1 and "blocks the module until data comes" in out


async def test_check_config_names_the_wifi_network(tmp_path: Path) -> None:
    config = write_wifi_config(tmp_path, tmp_path / "ttyS1")
    code, out, err = await chargepoint("check-config", "--config", str(config))
    assert (code, err) == (0, "")
    assert "Wi-Fi 'SiteNet' (wpa_wpa2, provisioning profile)" in out
    assert "charge-point-wifi" not in out
    config.write_text(config.read_text().replace('key = "charge-point-wifi"', 'key = "short"'))
    code, out, err = await chargepoint("check-config", "--config", str(config))
    assert (code, out) == (1, "")
    assert "wifi.key: a WPA passphrase is 8 to 63 characters (or 64 hex digits), not 5" in err


async def test_fetch_through_a_wifi_module(tmp_path: Path) -> None:
    image = os.urandom(40_000)
    with FileServer(files={"/fw/image.bin": image}) as files:
        async with simulator_process(tmp_path / "modem", family="simplelink") as link:
            output = tmp_path / "image.bin"
            code, _, err = await chargepoint(
                "fetch",
                "--config",
                str(write_wifi_config(tmp_path, link)),
                files.url("/fw/image.bin"),
                "--output",
                str(output),
            )
    assert (code, err) == (0, "")
    assert output.read_bytes() == image
