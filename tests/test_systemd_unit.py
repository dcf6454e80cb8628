"""The unit files as systemd reads them: `systemd-analyze verify` must have nothing to say
(it exits 0 even for unknown keys, so any output fails), the hardening must not regress, and
the unit's command line must be one the `chargepoint` command accepts."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chargepoint.app import cli

UNITS = Path(__file__).parent.parent / "systemd"
CHARGEPOINT = Path(sys.executable).parent / "chargepoint"
MAX_EXPOSURE = 2.0  # measured 1.5 ("OK") when the unit was written


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: `make test` installs Debian's systemd package"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120, check=False)


def installed_copy(tmp_path: Path, unit: str, name: str, replace: tuple[str, str]) -> Path:
    """The unit as installed, with only the installation path of its program swapped for one
    that exists here (verify checks that ExecStart is executable)."""
    text = (UNITS / unit).read_text()
    assert replace[0] in text
    path = tmp_path / name
    path.write_text(text.replace(*replace))
    return path


def service_unit(tmp_path: Path) -> Path:
    return installed_copy(
        tmp_path,
        "chargepoint.service",
        "chargepoint.service",
        ("/opt/chargepoint/venv/bin/chargepoint", str(CHARGEPOINT)),
    )


def test_units_verify_without_a_word(tmp_path: Path) -> None:
    firmware = installed_copy(
        tmp_path,
        "chargepoint-firmware@.service",
        "chargepoint-firmware@cp-1.1.0.bin.service",
        ("/usr/local/sbin/chargepoint-install-firmware", shutil.which("true") or "/bin/true"),
    )
    for unit in (service_unit(tmp_path), firmware):
        result = analyze("verify", str(unit))
        assert (result.returncode, result.stdout + result.stderr) == (0, ""), unit.name


def test_hardening_exposure_stays_low(tmp_path: Path) -> None:
    result = analyze("security", "--offline=true", str(service_unit(tmp_path)))
    found = re.search(r"Overall exposure level for chargepoint\.service: ([\d.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


def test_the_unit_runs_the_service_command_as_a_notify_service_with_a_watchdog() -> None:
    settings: dict[str, list[str]] = {}
    for line in (UNITS / "chargepoint.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    assert settings["Type"] == ["notify"] and settings["NotifyAccess"] == ["main"]
    assert int(settings["WatchdogSec"][0]) > 0 and settings["Restart"] == ["on-failure"]
    assert settings["SupplementaryGroups"] == ["dialout"] and settings["User"] == ["chargepoint"]
    # The first-session-or-timeout READY must come before systemd gives up on the start.
    assert int(settings["TimeoutStartSec"][0]) > 120
    argv = shlex.split(settings["ExecStart"][0])
    assert argv[0] == "/opt/chargepoint/venv/bin/chargepoint"
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv[1:], "--help"])
    assert exit_.value.code == 0
    assert argv[1:3] == ["run", "--config"]
