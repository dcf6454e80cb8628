"""Read the daemon's TOML configuration file into typed, validated settings.

Every problem found is reported at once, each as ``<key path>: <what is wrong>``, so that a
technician editing the file on a charger fixes it in one go:

    csms.url: must start with ws:// or wss:// followed by the CSMS host
    modem.baudrte: unknown key (did you mean "baudrate"?)
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from config.schema import SCHEMA

_VALIDATOR = Draft202012Validator(SCHEMA)


class ConfigError(Exception):
    """The configuration file cannot be used; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems

    def report(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} problem(s):"]
        lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ChargePointConfig:
    id: str
    vendor: str
    model: str
    serial_number: str | None
    charge_box_serial_number: str | None
    firmware_version: str | None
    meter_type: str | None
    meter_serial_number: str | None
    connectors: int
    power_loss: str = "stop"
    reset_command: tuple[str, ...] | None = None
    feature_profiles: tuple[str, ...] = ("Core",)


@dataclass(frozen=True, slots=True)
class CsmsConfig:
    url: str
    password: bytes | None
    call_timeout: float
    heartbeat_interval: int
    ping_interval: int
    pong_timeout: float
    max_message_size: int
    reconnect_delay_min: float
    reconnect_delay_max: float
    security_profile: int = 0
    replay_batch_bytes: int = 12288
    upgrade_urls: tuple[tuple[int, str], ...] = ()
    upgrade_attempts: int = 3
    ca_file: Path | None = None
    client_certificate: Path | None = None
    client_key: Path | None = None
    cipher_suite: str = "0XC02F"
    key_type: str = "rsa-2048"

    def __repr__(self) -> str:  # never show the password, even in a traceback
        return (
            f"CsmsConfig(url={self.url!r}, password={'***' if self.password else None}, "
            f"security_profile={self.security_profile})"
        )

    def url_for(self, profile: int) -> str | None:
        """The endpoint for security ``profile``: its own (csms.upgrade_urls), else csms.url
        if its scheme fits (wss:// for 2 and 3, ws:// for 0 and 1), else None."""
        own = dict(self.upgrade_urls).get(profile)
        if own is not None:
            return own
        return self.url if self.url.lower().startswith("wss:") == (profile >= 2) else None


@dataclass(frozen=True, slots=True)
class ModemConfig:
    type: str
    port: str | None
    baudrate: int
    apn: str
    username: str
    password: str
    auth: str
    context_id: int
    sim_pin: str | None
    registration_timeout: float
    wifi: WifiConfig | None = None
    access_mode: str = "push"
    hex_send_max: int | None = None  # None: by the baud rate (hex_send_default)

    def __repr__(self) -> str:
        return f"ModemConfig(type={self.type!r}, port={self.port!r}, apn={self.apn!r})"


@dataclass(frozen=True, slots=True)
class WifiConfig:
    """The ``[wifi]`` table: the network a Wi-Fi module joins."""

    ssid: str | None
    security: str  # open | wep | wpa_wpa2 | wpa_ent
    key: str | None
    eap_method: str | None
    user: str | None
    anonymous_user: str | None
    provisioning: str  # profile | connect | stored
    join_timeout: float

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return (
            f"WifiConfig(ssid={self.ssid!r}, security={self.security!r}, "
            f"provisioning={self.provisioning!r})"
        )


@dataclass(frozen=True, slots=True)
class ChargerConfig:
    type: str = "simulated"
    fixed_cable: bool = False


@dataclass(frozen=True, slots=True)
class FirmwareConfig:
    install_command: tuple[str, ...] | None = None
    reboot_command: tuple[str, ...] | None = None
    version_file: Path | None = None
    install_timeout: float = 600.0
    ca_file: Path | None = None
    piece_size: int = 131072
    chunk_size: int = 8192
    scratch_drive: str = "RAM"
    manufacturer_ca_file: Path | None = None
    unsigned_updates: str = "without-security-profile"


@dataclass(frozen=True, slots=True)
class DiagnosticsConfig:
    log_files: tuple[str, ...] = ()
    max_log_bytes: int = 2097152


@dataclass(frozen=True, slots=True)
class Config:
    charge_point: ChargePointConfig
    csms: CsmsConfig
    modem: ModemConfig
    storage_directory: Path
    log_level: str
    source: Path
    charger: ChargerConfig = ChargerConfig()
    control_socket: Path | None = None
    ocpp_keys: tuple[tuple[str, str], ...] = ()  # initial OCPP key values, as OCPP strings
    firmware: FirmwareConfig = FirmwareConfig()
    diagnostics: DiagnosticsConfig = DiagnosticsConfig()
    ready_timeout: float = 120.0  # [service]: READY=1 at the latest after this many seconds

    @property
    def control_path(self) -> Path:
        return self.control_socket or self.storage_directory / "control.sock"


def load_config(path: str | Path) -> Config:
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(source), [f"cannot read the file: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            str(source), [f"not UTF-8 text: {exc.reason} at byte {exc.start}"]
        ) from exc
    return parse_config(text, source)


def parse_config(text: str, source: Path = Path("<config>")) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(source), [f"not valid TOML: {exc}"]) from exc
    problems = [problem for error in _VALIDATOR.iter_errors(data) for problem in _describe(error)]
    if problems:
        raise ConfigError(str(source), sorted(set(problems)))
    wifi_given = bool(data.get("wifi"))
    _fill_defaults(data, SCHEMA)
    problems = []
    if wifi_given and data["modem"]["type"] != "simplelink":
        problems.append(
            f'wifi: only a Wi-Fi module uses it (modem.type is "{data["modem"]["type"]}"); '
            "remove the table or set modem.type"
        )
    config = _build(data, source, problems)
    if problems or config is None:
        raise ConfigError(str(source), problems)
    return config


def _build(data: dict[str, Any], source: Path, problems: list[str]) -> Config | None:
    cp, csms, modem = data["charge_point"], data["csms"], data["modem"]
    fw = data["firmware"]
    for key in ("ca_file", "manufacturer_ca_file"):
        if key in fw and not Path(fw[key]).is_file():
            problems.append(f"firmware.{key}: {fw[key]} is not a readable file")
    password = _csms_password(csms, source, problems)
    security = _security(csms, modem, password, source, problems)
    if modem["type"] != "host" and "port" not in modem:
        problems.append(
            f'modem.port: required when modem.type is "{modem["type"]}" (e.g. "/dev/ttyUSB2")'
        )
    wifi = _wifi(data.get("wifi"), modem["type"], problems)
    if csms["reconnect_delay_max"] < csms["reconnect_delay_min"]:
        problems.append("csms.reconnect_delay_max: must not be less than csms.reconnect_delay_min")
    if problems:
        return None
    return Config(
        charge_point=ChargePointConfig(
            id=cp["id"],
            vendor=cp["vendor"],
            model=cp["model"],
            serial_number=cp.get("serial_number"),
            charge_box_serial_number=cp.get("charge_box_serial_number"),
            firmware_version=cp.get("firmware_version"),
            meter_type=cp.get("meter_type"),
            meter_serial_number=cp.get("meter_serial_number"),
            connectors=cp["connectors"],
            power_loss=cp["power_loss"],
            reset_command=tuple(cp["reset_command"]) if "reset_command" in cp else None,
            feature_profiles=tuple(cp["feature_profiles"]),
        ),
        csms=CsmsConfig(
            url=csms["url"],
            password=password,
            call_timeout=float(csms["call_timeout"]),
            heartbeat_interval=csms["heartbeat_interval"],
            ping_interval=csms["ping_interval"],
            pong_timeout=float(csms["pong_timeout"]),
            max_message_size=csms["max_message_size"],
            replay_batch_bytes=csms["replay_batch_bytes"],
            reconnect_delay_min=float(csms["reconnect_delay_min"]),
            reconnect_delay_max=float(csms["reconnect_delay_max"]),
            upgrade_attempts=csms["upgrade_attempts"],
            cipher_suite=csms["cipher_suite"],
            key_type=csms["key_type"],
            **security,
        ),
        modem=ModemConfig(
            type=modem["type"],
            port=modem.get("port"),
            baudrate=modem["baudrate"],
            apn=modem["apn"],
            username=modem["username"],
            password=modem["password"],
            auth=modem["auth"],
            context_id=modem["context_id"],
            sim_pin=modem.get("sim_pin"),
            registration_timeout=float(modem["registration_timeout"]),
            wifi=wifi,
            access_mode=modem["access_mode"],
            hex_send_max=modem.get("hex_send_max"),
        ),
        storage_directory=Path(data["storage"]["directory"]),
        log_level=data["logging"]["level"],
        source=source,
        charger=ChargerConfig(data["charger"]["type"], data["charger"]["fixed_cable"]),
        control_socket=Path(data["control"]["socket"]) if "socket" in data["control"] else None,
        ocpp_keys=tuple((name, _ocpp_string(value)) for name, value in data["ocpp_keys"].items()),
        firmware=FirmwareConfig(
            install_command=_argv(fw.get("install_command")),
            reboot_command=_argv(fw.get("reboot_command")),
            version_file=Path(fw["version_file"]) if "version_file" in fw else None,
            install_timeout=float(fw["install_timeout"]),
            ca_file=Path(fw["ca_file"]) if "ca_file" in fw else None,
            piece_size=fw["piece_size"],
            chunk_size=fw["chunk_size"],
            scratch_drive=fw["scratch_drive"],
            manufacturer_ca_file=Path(fw["manufacturer_ca_file"])
            if "manufacturer_ca_file" in fw
            else None,
            unsigned_updates=fw["unsigned_updates"],
        ),
        diagnostics=DiagnosticsConfig(
            log_files=tuple(data["diagnostics"]["log_files"]),
            max_log_bytes=data["diagnostics"]["max_log_bytes"],
        ),
        ready_timeout=float(data["service"]["ready_timeout"]),
    )


_HEX = frozenset("0123456789abcdefABCDEF")


def _wifi(table: dict[str, Any] | None, modem_type: str, problems: list[str]) -> WifiConfig | None:
    """``[wifi]``, checked against its security type: the mistakes that would otherwise show
    only as a module that never joins (a WPA passphrase of 7 characters, a key on an open
    network, 802.1X without an identity)."""
    if modem_type != "simplelink":
        return None
    table = table or {}
    provisioning = table.get("provisioning", "profile")
    security = table.get("security", "wpa_wpa2")
    ssid = table.get("ssid") or None
    key = table.get("key") or None
    if provisioning != "stored" and ssid is None:
        problems.append(
            "wifi.ssid: required (the network to join), unless wifi.provisioning is "
            '"stored" (the module already holds it)'
        )
    if provisioning != "stored":
        problem = _wifi_key_problem(security, key, table)
        if problem is not None:
            problems.append(problem)
    return WifiConfig(
        ssid=ssid,
        security=security,
        key=key,
        eap_method=table.get("eap_method"),
        user=table.get("user") or None,
        anonymous_user=table.get("anonymous_user") or None,
        provisioning=provisioning,
        join_timeout=float(table.get("join_timeout", 30)),
    )


def _wifi_key_problem(security: str, key: str | None, table: dict[str, Any]) -> str | None:
    if security != "wpa_ent":
        extra = [name for name in ("user", "anonymous_user", "eap_method") if table.get(name)]
        if extra:
            return (
                f"wifi.{extra[0]}: only 802.1X (wpa_ent) logs in with a user and an EAP method; "
                f'remove it, or set wifi.security = "wpa_ent"'
            )
    if security == "open":
        if key is not None:
            return "wifi.key: an open network takes no key; remove it, or set wifi.security"
        return None
    if security == "wpa_ent":
        if not table.get("user"):
            return "wifi.user: 802.1X (wpa_ent) needs the identity to log in with"
        if "eap_method" not in table:
            return "wifi.eap_method: 802.1X (wpa_ent) needs the method (e.g. PEAP0_MSCHAPv2)"
        if key is None and not table["eap_method"].endswith("TLS"):
            return f"wifi.key: 802.1X with {table['eap_method']} needs the password"
        return None
    if key is None:
        return f'wifi.key: a {security} network needs its key (wifi.security = "{security}")'
    hex_key = set(key) <= _HEX
    if security == "wep":
        if len(key) in (5, 13) or (hex_key and len(key) in (10, 26)):
            return None
        return (
            f"wifi.key: a WEP key is 5 or 13 characters or 10 or 26 hex digits, not "
            f"{len(key)} characters"
        )
    if 8 <= len(key) <= 63 or (hex_key and len(key) == 64):
        return None
    return (
        f"wifi.key: a WPA passphrase is 8 to 63 characters (or 64 hex digits), not "
        f"{len(key)} characters"
    )


def _argv(value: list[str] | None) -> tuple[str, ...] | None:
    return tuple(value) if value is not None else None


def _ocpp_string(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _security(
    csms: dict[str, Any],
    modem: dict[str, Any],
    password: bytes | None,
    source: Path,
    problems: list[str],
) -> dict[str, Any]:
    """The security profile and its files (whitepaper §2), with what contradicts them."""
    files: dict[str, Path | None] = {}
    for key in ("ca_file", "client_certificate", "client_key"):
        files[key] = None
        if key in csms:
            path = Path(csms[key])
            path = path if path.is_absolute() else source.parent / path
            if not path.is_file():
                problems.append(f"csms.{key}: {path} is not a readable file")
            files[key] = path
    secure = csms["url"].lower().startswith("wss:")
    mutual = files["client_certificate"] is not None
    if mutual != (files["client_key"] is not None):
        problems.append("csms.client_key: give client_certificate and client_key together")
    # A password that was given but is wrong has its own problem already.
    has_password = password is not None or "password" in csms or "password_file" in csms
    profile = csms.get("security_profile")
    if profile is None:
        if not secure and has_password:
            problems.append(
                "csms.security_profile: a password over ws:// travels in clear text; set "
                "security_profile = 1 to accept that (trusted networks or a VPN only, "
                "whitepaper §2.1), or use wss://"
            )
        profile = (3 if mutual else 2) if secure else (1 if has_password else 0)
    if secure != (profile >= 2):
        problems.append(
            f"csms.url: security profile {profile} needs a "
            f"{'wss://' if profile >= 2 else 'ws://'} URL"
        )
    if profile in (1, 2) and not has_password:
        problems.append(
            f"csms.password: security profile {profile} authenticates with a password "
            "(csms.password or csms.password_file)"
        )
    if profile == 3 and not mutual:
        problems.append(
            "csms.client_certificate: security profile 3 needs the charge point certificate "
            "and its key (client_certificate, client_key)"
        )
    if (
        modem["type"] != "host"
        and files["ca_file"] is None
        and (profile >= 2 or any(int(level) >= 2 for level in csms.get("upgrade_urls", {})))
    ):
        problems.append(
            "csms.ca_file: TLS through the module needs the CSMS's root CA certificate (the "
            "module has no trust store of its own)"
        )
    upgrades = []
    for level, url in sorted(csms.get("upgrade_urls", {}).items()):
        if int(level) <= profile:
            problems.append(
                f"csms.upgrade_urls.{level}: not above security profile {profile}; the "
                "profile can only be raised"
            )
        elif url.lower().startswith("wss:") != (int(level) >= 2):
            problems.append(
                f"csms.upgrade_urls.{level}: security profile {level} needs a "
                f"{'wss://' if int(level) >= 2 else 'ws://'} URL"
            )
        upgrades.append((int(level), url))
    return {
        "security_profile": profile,
        "upgrade_urls": tuple(upgrades),
        "ca_file": files["ca_file"],
        "client_certificate": files["client_certificate"],
        "client_key": files["client_key"],
    }


def _csms_password(csms: dict[str, Any], source: Path, problems: list[str]) -> bytes | None:
    if "password" in csms and "password_file" in csms:
        problems.append("csms.password_file: give csms.password or csms.password_file, not both")
        return None
    if "password_file" in csms:
        path = Path(csms["password_file"])
        if not path.is_absolute():
            path = source.parent / path
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            problems.append(f"csms.password_file: cannot read {path}: {reason}")
            return None
        if not text:
            problems.append(f"csms.password_file: {path} is empty")
            return None
        key = "csms.password_file"
    elif "password" in csms:
        text, key = csms["password"], "csms.password"
    else:
        return None
    if csms["password_format"] == "text":
        return text.encode("utf-8")
    # An OCPP AuthorizationKey: 16 to 20 bytes written as hex (security whitepaper §7.2).
    try:
        key_bytes = bytes.fromhex(text)
    except ValueError:
        problems.append(f'{key}: password_format is "hex" but this is not hexadecimal')
        return None
    if not 16 <= len(key_bytes) <= 20:
        problems.append(
            f"{key}: an AuthorizationKey is 16 to 20 bytes (32 to 40 hex digits), "
            f"got {len(key_bytes)}"
        )
        return None
    return key_bytes


def _fill_defaults(data: dict[str, Any], schema: dict[str, Any]) -> None:
    for name, sub in schema.get("properties", {}).items():
        if "default" in sub and name not in data:
            data[name] = sub["default"]
        if sub.get("type") == "object":
            data.setdefault(name, {})
            _fill_defaults(data[name], sub)


_TYPES = {
    "string": "text in quotes",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a table",
}


def _describe(error: ValidationError) -> list[str]:
    path = ".".join(str(part) for part in error.absolute_path)
    where = path or "the file"
    schema = error.schema if isinstance(error.schema, dict) else {}
    validator = error.validator
    instance: Any = error.instance
    if validator == "required":
        required: list[str] = list(error.validator_value)  # type: ignore[arg-type]
        missing = [name for name in required if name not in instance]
        return [f"{_join(path, name)}: missing (required)" for name in missing]
    if validator == "additionalProperties":
        known = list(schema.get("properties", {}))
        unknown = [name for name in instance if name not in known]
        return [_unknown_key(path, name, known) for name in unknown]
    return [_explain(error, where, schema)]


def _explain(error: ValidationError, where: str, schema: dict[str, Any]) -> str:
    validator = error.validator
    custom = schema.get("x-message")
    if custom and validator in ("pattern", "enum", "type"):
        return f"{where}: {custom}"
    if validator == "type":
        return f"{where}: must be {_TYPES.get(str(error.validator_value), error.validator_value)}"
    if validator == "enum":
        values: list[object] = list(error.validator_value)  # type: ignore[arg-type]
        choices = ", ".join(_toml(value) for value in values)
        return f"{where}: must be one of {choices}, not {_toml(error.instance)}"
    if validator == "minimum":
        return f"{where}: must be at least {error.validator_value}"
    if validator == "exclusiveMinimum":
        return f"{where}: must be more than {error.validator_value}"
    if validator == "maximum":
        return f"{where}: must be at most {error.validator_value}"
    if validator == "minLength":
        return f"{where}: must not be empty"
    if validator == "contains" and "const" in error.validator_value:  # type: ignore[operator]
        wanted = error.validator_value["const"]  # type: ignore[index]
        return f"{where}: must include {_toml(wanted)}"
    if validator == "uniqueItems":
        return f"{where}: lists an item twice"
    if validator == "maxLength":
        return f"{where}: must be at most {error.validator_value} characters (OCPP limit)"
    return f"{where}: {custom or error.message}"


def _unknown_key(path: str, name: str, known: list[str]) -> str:
    guess = difflib.get_close_matches(name, known, n=1)
    hint = f' (did you mean "{guess[0]}"?)' if guess else ""
    return f"{_join(path, name)}: unknown key{hint}"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _toml(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)
