"""The README's table of OCPP configuration keys is the key registry's, generated: a key added,
removed or changed in config/ocpp_keys.py without regenerating the README fails here."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import config.keys_table
from config.keys_table import (
    BEGIN,
    COMMAND,
    END,
    KeysTableError,
    keys_table,
    readme_table,
    replace_table,
)
from config.ocpp_keys import Access, KeySpec, Kind, core_keys

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"


def test_the_readme_table_is_the_registrys() -> None:
    in_readme = readme_table(README.read_text(encoding="utf-8"))
    assert in_readme == keys_table(), (
        "README.md's OCPP configuration keys table is not the one config/ocpp_keys.py gives: "
        f"run `{COMMAND}`"
    )


def test_every_key_has_a_row_with_its_access_and_default() -> None:
    rows = {
        line.split(" | ")[0].removeprefix("| "): line.split(" | ")[1:3]
        for line in keys_table().splitlines()[2:]
    }
    # The defaults of the default configuration (schema defaults; no password).
    specs = core_keys(
        connectors=1,
        measurands=(),
        heartbeat_interval=300,
        ping_interval=60,
        authorization_key=None,
        cpo_name="ExampleVendor",  # charge_point.vendor: the file has no default for it
    )
    assert list(rows) == [spec.name for spec in specs]
    for spec in specs:
        access, default = rows[spec.name]
        assert access == spec.access.value, spec.name
        assert (spec.default or "empty") in default, spec.name
    # What GetConfiguration reports out of the box, not a hand-kept copy of it.
    profiles = next(spec.default for spec in specs if spec.name == "SupportedFeatureProfiles")
    assert "FirmwareManagement" in profiles
    assert profiles in rows["SupportedFeatureProfiles"][1]
    assert rows["NumberOfConnectors"] == ["R", "`charge_point.connectors` (default 1)"]


def test_the_command_prints_the_table_and_writes_it_between_the_markers(tmp_path: Path) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "config.keys_table"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed == keys_table()

    readme = tmp_path / "README.md"
    before, after = "# Title\n\nKeys:\n\n", "\nMeasurands: ...\n"
    readme.write_text(f"{before}{BEGIN}\n| stale | table |\n{END}{after}", encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "config.keys_table", "--write", str(readme)],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    assert readme.read_text(encoding="utf-8") == f"{before}{BEGIN}\n{keys_table()}{END}{after}"


def test_markers_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeysTableError):
        replace_table("no markers here\n", keys_table())
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "config.keys_table", "--write", str(readme)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert BEGIN in done.stderr
    assert readme.read_text(encoding="utf-8") == "no markers here\n"


def with_key(extra: KeySpec | None = None, drop: str | None = None) -> Any:
    """The registry with one key more (or less)."""

    def registry(**deployment: Any) -> list[KeySpec]:
        specs = [spec for spec in core_keys(**deployment) if spec.name != drop]
        return specs if extra is None else [*specs, extra]

    return registry


def test_a_new_key_gets_its_row_from_the_registry() -> None:
    spec = KeySpec("LightIntensity", Kind.INT, Access.RW, "40", 0, 100, "%", reboot_required=True)
    table = keys_table(with_key(spec))
    assert table.splitlines()[-1] == (
        "| LightIntensity | RW | 40 | %, 0..100, takes effect after a reboot |"
    )


def test_a_default_set_by_the_configuration_file_must_be_worded() -> None:
    def registry(**deployment: Any) -> list[KeySpec]:
        connectors = deployment["connectors"]
        spec = KeySpec("ConnectorsTimesTwo", Kind.INT, Access.R, str(2 * connectors))
        return [*core_keys(**deployment), spec]

    with pytest.raises(KeysTableError, match="default of ConnectorsTimesTwo depends on"):
        keys_table(registry)


def test_a_wording_for_a_key_that_is_gone_must_go() -> None:
    with pytest.raises(KeysTableError, match="words the default of NumberOfConnectors"):
        keys_table(with_key(drop="NumberOfConnectors"))


def test_a_default_that_no_longer_depends_on_the_configuration_must_lose_its_wording() -> None:
    def registry(**deployment: Any) -> list[KeySpec]:
        return [
            dataclasses.replace(spec, default="300") if spec.name == "HeartbeatInterval" else spec
            for spec in core_keys(**deployment)
        ]

    with pytest.raises(KeysTableError, match="HeartbeatInterval, which does not depend"):
        keys_table(registry)


def test_a_new_argument_of_the_registry_must_be_described(monkeypatch: pytest.MonkeyPatch) -> None:
    def registry(*, region: str = "EU", **deployment: Any) -> list[KeySpec]:
        return core_keys(**deployment)

    monkeypatch.setattr(config.keys_table, "core_keys", registry)
    with pytest.raises(KeysTableError, match="core_keys takes region"):
        keys_table(registry)
