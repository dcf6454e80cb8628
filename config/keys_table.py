"""The README's table of OCPP configuration keys, generated from the key registry
(:func:`config.ocpp_keys.core_keys`) so that it cannot drift from what GetConfiguration reports.

``python -m config.keys_table`` prints it; ``python -m config.keys_table --write README.md``
replaces the table between the ``keys-table`` markers of the README, which a test keeps equal
to this output.

The registry gives each key's name, access, default, unit and bounds. What it does not hold is
prose: how to word a default that the configuration file sets, and the notes of the last
column. Those are here, checked against the registry on every render: a default that turns out
to depend on the deployment without a wording here, a wording or note for a key that no longer
needs one, or a new argument of ``core_keys`` stops the render with a message saying what to
change.

A default the deployment sets is worded by the setting it comes from, with the value the
default configuration gives it: a bare number would be wrong for the next deployment, a bare
setting name would leave the reader to look its default up.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from config.ocpp_keys import (
    AUTHORIZATION_KEY,
    CPO_NAME,
    PHASE_ROTATIONS,
    SECURITY_PROFILE,
    KeySpec,
    Kind,
    core_keys,
)
from config.schema import SCHEMA

BEGIN = "<!-- keys-table:begin -->"
END = "<!-- keys-table:end -->"
COMMAND = "python -m config.keys_table --write README.md"

Registry = Callable[..., list[KeySpec]]

# Measurands are the charger's, not the file's: the table names none (the README lists them
# below it). This made-up one is how a measurand list is recognised.
_MEASURAND = "Probe.Measurand"


def _schema_default(table: str, key: str) -> Any:
    return SCHEMA["properties"][table]["properties"][key]["default"]


# Every argument of core_keys: its value in the default configuration, and another one a
# deployment may have. A default that differs between the two comes from the deployment.
_ARGUMENTS: dict[str, tuple[Callable[[], Any], Any]] = {
    "connectors": (lambda: _schema_default("charge_point", "connectors"), 3),
    "measurands": (lambda: (_MEASURAND,), (_MEASURAND, "Other.Measurand")),
    "heartbeat_interval": (lambda: _schema_default("csms", "heartbeat_interval"), 301),
    "ping_interval": (lambda: _schema_default("csms", "ping_interval"), 0),
    "authorization_key": (lambda: None, bytes(range(16))),  # csms.password: none by default
    "profiles": (lambda: tuple(_schema_default("charge_point", "feature_profiles")), ("Core",)),
    "security_profile": (lambda: 0, 2),  # ws:// without a password: profile 0
    "security_check": (lambda: None, None),  # decides ChangeConfiguration, not the table
    "max_message_size": (lambda: _schema_default("csms", "max_message_size"), 524288),
    # What the link carries: every scheme on the host and Quectel, no FTP on a Wi-Fi module.
    "transfer_protocols": (lambda: ("FTP", "FTPS", "HTTP", "HTTPS"), ("HTTP", "HTTPS")),
    "cpo_name": (lambda: "ExampleVendor", "Another CPO"),  # charge_point.vendor
}

# Defaults the deployment sets, worded by what sets them; {value} is the default
# configuration's.
DEPLOYMENT_DEFAULTS = {
    "ConnectorPhaseRotation": "`1.Unknown,...`, one per connector (default {value})",
    "ConnectorPhaseRotationMaxLength": "`charge_point.connectors` + 1 (default {value})",
    "HeartbeatInterval": "`csms.heartbeat_interval` (default {value})",
    "NumberOfConnectors": "`charge_point.connectors` (default {value})",
    "SupportedFeatureProfiles": "`charge_point.feature_profiles` (default {value})",
    "WebSocketPingInterval": "`csms.ping_interval` (default {value})",
    AUTHORIZATION_KEY: "`csms.password` (hex) if 16-20 bytes, else empty",
    SECURITY_PROFILE: "`csms.security_profile` (default {value})",
    "SendLocalListMaxLength": "`csms.max_message_size` / 200, at most 10000 (default {value})",
    CPO_NAME: "`charge_point.vendor` (here {value}) until the CSMS sets it",
    "SupportedFileTransferProtocols": "what `modem.type` can carry: {value}; `HTTP,HTTPS` on a "
    "module without FTP commands",
}

# What a reader needs beyond the unit and bounds (the "Unit / values" column).
NOTES = {
    "ClockAlignedDataInterval": "0 = off, counted from midnight (UTC)",
    "ConnectorPhaseRotation": f"`<connector>.<{'|'.join(PHASE_ROTATIONS)}>`",
    "HeartbeatInterval": "the BootNotification interval sets it",
    "LocalAuthListEnabled": "Local Auth List Management profile; false: list kept, unused",
    "LocalAuthListMaxLength": "idTags; Local Auth List Management profile",
    "SendLocalListMaxLength": "entries per SendLocalList; Local Auth List Management profile",
    "ReserveConnectorZeroSupported": "Reservation profile; `[ocpp_keys]` may set false",
    "ChargeProfileMaxStackLevel": "Smart Charging profile",
    "ChargingScheduleAllowedChargingRateUnit": "Current, Power; Smart Charging profile",
    "ChargingScheduleMaxPeriods": "per schedule; Smart Charging profile",
    "ConnectorSwitch3to1PhaseSupported": "Smart Charging profile",
    "MaxChargingProfilesInstalled": "Smart Charging profile",
    "MeterValueSampleInterval": "0 = off",
    "WebSocketPingInterval": "0 = off; takes effect at once",
    AUTHORIZATION_KEY: (
        "32-40 hex digits; never returned, never logged; the charge point reconnects with it"
    ),
    "AdditionalRootCertificateCheck": "CSMS roots are installed beside each other (M05)",
    "CertificateSignedMaxChainSize": "characters of a CertificateSigned chain",
    "CertificateStoreMaxLength": "CSMS and manufacturer root certificates together",
    CPO_NAME: "the organisation (O) of the charge point certificate's CSR (A02.FR.13)",
    SECURITY_PROFILE: (
        "only raised, and only when its prerequisites hold; the charge point reconnects "
        "with it and falls back to the last profile that worked if it fails"
    ),
}

HEADER = ("Key", "Access", "Default", "Unit / values")


class KeysTableError(Exception):
    """The wording here no longer fits the registry, or a file has no table markers."""


def keys_table(registry: Registry = core_keys) -> str:
    """The Markdown table, one row per key in the registry's order (as GetConfiguration)."""
    default_configuration, other_deployment = _deployments()
    specs = registry(**default_configuration)
    # One argument changed at a time: a key whose default moves with it depends on the
    # deployment (a key a variant lacks belongs to a feature profile it leaves out, see NOTES).
    depends: set[str] = set()
    for name, value in other_deployment.items():
        variant = registry(**{**default_configuration, name: value})
        moved = {spec.name: spec.default for spec in variant}
        depends.update(
            spec.name for spec in specs if spec.name in moved and moved[spec.name] != spec.default
        )
    _check_wording(specs, depends)
    lines = [_row(HEADER), "|" + "---|" * len(HEADER)]
    for spec in specs:
        if spec.name in depends:
            default = DEPLOYMENT_DEFAULTS[spec.name].format(value=_value(spec.default))
        else:
            default = _value(spec.default)
        lines.append(_row((spec.name, spec.access.value, default, _values(spec))))
    return "".join(line + "\n" for line in lines)


def _deployments() -> tuple[dict[str, Any], dict[str, Any]]:
    names = list(inspect.signature(core_keys).parameters)
    unknown = [name for name in names if name not in _ARGUMENTS]
    if unknown:
        raise KeysTableError(
            f"core_keys takes {', '.join(unknown)}: say in _ARGUMENTS of config/keys_table.py "
            "what the default configuration gives it and another value a deployment may have"
        )
    return (
        {name: _ARGUMENTS[name][0]() for name in names},
        {name: _ARGUMENTS[name][1] for name in names},
    )


def _check_wording(specs: Iterable[KeySpec], depends: set[str]) -> None:
    names = {spec.name for spec in specs}
    problems = [
        f"the default of {name} depends on the deployment: word it in DEPLOYMENT_DEFAULTS of "
        "config/keys_table.py"
        for name in sorted(depends - DEPLOYMENT_DEFAULTS.keys())
    ]
    problems += [
        f"DEPLOYMENT_DEFAULTS of config/keys_table.py words the default of {name}, which "
        + ("is no key" if name not in names else "does not depend on the deployment")
        for name in sorted(DEPLOYMENT_DEFAULTS.keys() - depends)
    ]
    problems += [
        f"NOTES of config/keys_table.py has a note for {name}, which is no key"
        for name in sorted(NOTES.keys() - names)
    ]
    if problems:
        raise KeysTableError("; ".join(problems))


def _value(default: str) -> str:
    return default if default else "empty"


def _values(spec: KeySpec) -> str:
    """The "Unit / values" cell: what the registry says, then the note."""
    facts = []
    if spec.unit:
        facts.append(spec.unit)
    if spec.minimum is not None and spec.maximum is not None:
        facts.append(f"{spec.minimum}..{spec.maximum}")
    elif spec.minimum is not None:
        facts.append(f"≥ {spec.minimum}")
    elif spec.maximum is not None:
        facts.append(f"≤ {spec.maximum}")
    if _is_measurand_list(spec):
        facts.append("measurands (below)")
    if spec.reboot_required:
        facts.append("takes effect after a reboot")
    text = ", ".join(facts)
    note = NOTES.get(spec.name)
    if note:
        text = f"{text}; {note}" if text else note
    return text


def _is_measurand_list(spec: KeySpec) -> bool:
    # A measurand list takes the charger's measurands (here the made-up one) and nothing else.
    return (
        spec.kind is Kind.CSL
        and spec.check is not None
        and spec.problem(_MEASURAND) is None
        and spec.problem("Not.A.Measurand") is not None
    )


def _row(cells: Iterable[str]) -> str:
    """``| a | b | |``: pipes in a cell escaped, an empty cell one space wide."""
    return "|" + "".join(f" {_escape(text)} |" if text else " |" for text in cells)


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _between_markers(text: str) -> tuple[int, int]:
    """Where the table of ``text`` starts (the line after BEGIN) and ends (END's line)."""
    begin = text.find(BEGIN)
    end = text.find(END, begin)
    if begin < 0 or end < 0:
        raise KeysTableError(f"no {BEGIN} line followed by an {END} line")
    start = text.find("\n", begin, end)
    if start < 0 or text.rfind("\n", 0, end) + 1 != end:
        raise KeysTableError(f"{BEGIN} and {END} must be on lines of their own")
    return start + 1, end


def readme_table(text: str) -> str:
    """The table between the markers of ``text`` (a README)."""
    start, end = _between_markers(text)
    return text[start:end]


def replace_table(text: str, table: str) -> str:
    """``text`` with what is between the markers replaced by ``table``."""
    start, end = _between_markers(text)
    return text[:start] + table + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m config.keys_table",
        description="Print the OCPP configuration keys table generated from the key registry, "
        f"or write it between the {BEGIN} and {END} lines of a file.",
    )
    parser.add_argument("--write", metavar="FILE", help="replace the table in FILE (README.md)")
    args = parser.parse_args(argv)
    try:
        table = keys_table()
        if args.write is None:
            sys.stdout.write(table)
            return 0
        path = Path(args.write)
        text = path.read_text(encoding="utf-8")
        updated = replace_table(text, table)
        if updated != text:
            path.write_text(updated, encoding="utf-8")
    except (KeysTableError, OSError) as error:
        print(f"config.keys_table: {error}", file=sys.stderr)
        return 1
    print(f"{path}: keys table {'updated' if updated != text else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
