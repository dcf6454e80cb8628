"""The configuration file: what a technician writes, and the exact errors they get."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from chargepoint.app.assembly import link_for, module_settings
from chargepoint.app.daemon import Daemon
from config.loader import ConfigError, load_config, parse_config
from tests.harness import make_config
from transport.modems.families import ModuleSettings, WifiSettings, _quectel_settings, family
from transport.modems.host import HostLink
from transport.modems.quectel_settings import AccessMode

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = """
[charge_point]
id = "CP-1"
vendor = "V"
model = "M"

[csms]
url = "ws://csms.example.com/ocpp"

[modem]
type = "host"
"""


def problems(text: str, source: Path = Path("test.toml")) -> list[str]:
    with pytest.raises(ConfigError) as error:
        parse_config(text, source)
    return error.value.problems


@pytest.mark.parametrize(
    "name",
    [
        "example-quectel.toml",
        "example-simplelink.toml",
        "example-host.toml",
        "example-simulator.toml",
    ],
)
def test_example_files_load(name: str) -> None:
    config = load_config(ROOT / "config" / name)
    assert config.charge_point.vendor == "ExampleVendor"
    assert config.csms.url.startswith("ws://")


def test_defaults_fill_what_is_left_out() -> None:
    config = parse_config(MINIMAL)
    assert config.charge_point.connectors == 1
    assert config.csms.password is None
    assert (config.csms.heartbeat_interval, config.csms.ping_interval) == (300, 60)
    assert config.modem.baudrate == 115200
    assert config.storage_directory == Path("/var/lib/chargepoint")
    assert config.log_level == "info"


def test_url_must_be_websocket() -> None:
    text = MINIMAL.replace("ws://csms.example.com/ocpp", "http://csms.example.com/ocpp")
    assert problems(text) == ["csms.url: must start with ws:// or wss:// followed by the CSMS host"]


def test_unknown_keys_get_a_suggestion() -> None:
    text = MINIMAL.replace('type = "host"', 'type = "host"\nbaudrte = 9600')
    assert problems(text) == ['modem.baudrte: unknown key (did you mean "baudrate"?)']


def test_every_problem_is_reported_at_once() -> None:
    text = """
[charge_point]
id = "CP:1"
vendor = "a vendor name longer than twenty"
connectors = 0

[csms]
url = "ws://x"
ping_interval = -1

[modem]
type = "ppp"
"""
    assert problems(text) == [
        "charge_point.connectors: must be at least 1",
        "charge_point.id: must be 1 to 48 characters, without ':' or control characters "
        "(it is the Basic-auth user name and the last part of the CSMS URL)",
        "charge_point.model: missing (required)",
        "charge_point.vendor: must be at most 20 characters (OCPP limit)",
        "csms.ping_interval: must be at least 0",
        'modem.type: must be "quectel" (a Quectel cellular module), "simplelink" (a TI '
        'SimpleLink Wi-Fi module) or "host" (this computer\'s own network)',
    ]


def test_wrong_types_name_what_is_expected() -> None:
    text = MINIMAL.replace('type = "host"', 'type = "host"\nbaudrate = "fast"\ncontext_id = 1.5')
    assert problems(text) == [
        "modem.baudrate: must be one of 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600,"
        ' not "fast"',
        "modem.context_id: must be a whole number",
    ]


def test_missing_sections() -> None:
    assert problems('[csms]\nurl = "ws://h"\n') == [
        "charge_point: missing (required)",
        "modem: missing (required)",
    ]


def test_broken_toml_says_where() -> None:
    (problem,) = problems('[csms]\nurl = "ws://h\n')
    assert problem.startswith("not valid TOML:") and "line 2" in problem


def test_quectel_needs_a_port() -> None:
    text = MINIMAL.replace('type = "host"', 'type = "quectel"')
    assert problems(text) == [
        'modem.port: required when modem.type is "quectel" (e.g. "/dev/ttyUSB2")'
    ]


def test_apn_cannot_break_out_of_its_at_argument() -> None:
    text = MINIMAL.replace('type = "host"', 'type = "quectel"\nport = "/dev/x"\napn = "a\\",1"')
    assert problems(text) == ["modem.apn: may only hold printable ASCII characters without '\"'"]


def test_password_inline_text() -> None:
    text = MINIMAL.replace(
        'url = "ws://csms.example.com/ocpp"',
        'url = "ws://h/o"\npassword = "pässword"\nsecurity_profile = 1',
    )
    config = parse_config(text)
    assert config.csms.password == "pässword".encode()
    assert "pässword" not in repr(config)


def test_password_as_authorization_key_hex() -> None:
    key = "0001020304050607FFFFFFFFFFFFFFFFFFFFFFFF"
    text = MINIMAL.replace(
        'url = "ws://csms.example.com/ocpp"',
        f'url = "ws://h/o"\npassword = "{key}"\npassword_format = "hex"\nsecurity_profile = 1',
    )
    assert parse_config(text).csms.password == bytes.fromhex(key)
    short = text.replace(key, "00112233")
    assert problems(short) == [
        "csms.password: an AuthorizationKey is 16 to 20 bytes (32 to 40 hex digits), got 4"
    ]


def test_password_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-a-file\n")
    text = MINIMAL.replace(
        'url = "ws://csms.example.com/ocpp"',
        'url = "ws://h/o"\npassword_file = "secret"\nsecurity_profile = 1',
    )
    config = parse_config(text, tmp_path / "chargepoint.toml")
    assert config.csms.password == b"from-a-file"
    missing = text.replace('"secret"', '"nowhere"')
    (problem,) = problems(missing, tmp_path / "chargepoint.toml")
    assert problem.startswith(f"csms.password_file: cannot read {tmp_path / 'nowhere'}:")


def test_password_and_password_file_together() -> None:
    text = MINIMAL.replace(
        'url = "ws://csms.example.com/ocpp"',
        'url = "ws://h/o"\npassword = "a"\npassword_file = "b"\nsecurity_profile = 1',
    )
    assert problems(text) == [
        "csms.password_file: give csms.password or csms.password_file, not both"
    ]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "absent.toml")


def test_ocpp_keys_in_the_file_are_checked_like_change_configuration() -> None:
    config = make_config(
        "ws://127.0.0.1:1/ocpp",
        keys={"MeterValueSampleInterval": -5, "NoSuchKey": 1, "LocalPreAuthorize": "maybe"},
    )
    with pytest.raises(ConfigError) as caught:
        Daemon(config, HostLink())
    assert sorted(caught.value.problems) == [
        "ocpp_keys.LocalPreAuthorize: must be true or false",
        "ocpp_keys.MeterValueSampleInterval: must be at least 0",
        "ocpp_keys.NoSuchKey: not a configuration key this charge point has",
    ]
    good = make_config("ws://127.0.0.1:1/ocpp", keys={"MeterValueSampleInterval": 15})
    assert Daemon(good, HostLink()).keys.integer("MeterValueSampleInterval") == 15


WIFI_MODULE = """
[charge_point]
id = "CP1"
vendor = "V"
model = "M"

[csms]
url = "ws://127.0.0.1:9000/ocpp"

[modem]
type = "simplelink"
port = "/dev/ttyS1"
"""


@pytest.mark.parametrize(
    ("wifi", "problem"),
    [
        ('ssid = "Site"\nkey = "seven77"', "wifi.key: a WPA passphrase is 8 to 63 characters"),
        (
            'ssid = "Site"',
            'wifi.key: a wpa_wpa2 network needs its key (wifi.security = "wpa_wpa2")',
        ),
        ('ssid = "Site"\nsecurity = "open"\nkey = "whatever1"', "wifi.key: an open network"),
        ('ssid = "Site"\nsecurity = "wep"\nkey = "abcdef"', "wifi.key: a WEP key is 5 or 13"),
        ('ssid = "Site"\nsecurity = "wpa_ent"\nkey = "pw"', "wifi.user: 802.1X (wpa_ent)"),
        (
            'ssid = "Site"\nsecurity = "wpa_ent"\nuser = "cp1"\neap_method = "PEAP0_MSCHAPv2"',
            "wifi.key: 802.1X with PEAP0_MSCHAPv2 needs the password",
        ),
        ('key = "longenough"', "wifi.ssid: required (the network to join)"),
        (
            'ssid = "Site"\nkey = "longenough"\nuser = "bob"',
            "wifi.user: only 802.1X (wpa_ent) logs in with a user and an EAP method",
        ),
        ('ssid = "Si"te"', None),  # not TOML at all: reported by the TOML parser
    ],
)
def test_the_wifi_table_is_checked_against_its_security_type(
    wifi: str, problem: str | None
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(WIFI_MODULE + "\n[wifi]\n" + wifi + "\n")
    if problem is not None:
        assert [p for p in caught.value.problems if p.startswith(problem)], caught.value.problems


@pytest.mark.parametrize(
    "wifi",
    [
        'ssid = "Site Net, 2nd floor"\nkey = "correct horse battery"',
        'ssid = "Site"\nkey = "' + "ab" * 32 + '"',
        'ssid = "Site"\nsecurity = "open"',
        'ssid = "Site"\nsecurity = "wep"\nkey = "0123456789"',
        'ssid = "Site"\nsecurity = "wpa_ent"\nuser = "cp1"\neap_method = "TLS"',
        'provisioning = "stored"',
    ],
)
def test_good_wifi_tables_load_and_the_key_stays_out_of_repr(wifi: str) -> None:
    config = parse_config(WIFI_MODULE + "\n[wifi]\n" + wifi + "\n")
    assert config.modem.wifi is not None
    link_for(config)  # what check-config accepts, the driver takes (the port opens later)
    assert "horse" not in repr(config.modem) and "horse" not in repr(config.modem.wifi)


def test_a_wifi_table_without_a_wifi_module_is_a_mistake() -> None:
    text = WIFI_MODULE.replace('"simplelink"', '"quectel"') + '\n[wifi]\nssid = "Site"\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.problems == [
        'wifi: only a Wi-Fi module uses it (modem.type is "quectel"); remove the table or set '
        "modem.type"
    ]


def test_a_driver_refusal_is_a_configuration_problem_not_a_crash() -> None:
    """What the loader lets through and a driver's settings refuse becomes a ConfigError
    naming the table (check-config, `chargepoint run`), never a traceback at start."""
    wifi = WifiSettings(ssid="Site", security="wpa_wpa2", key="short")
    assert family("simplelink").problems(ModuleSettings(port="/dev/ttyS1", wifi=wifi)) == [
        "wifi: a WPA/WPA2 key is 8 to 63 characters (or 64 hex digits)"
    ]
    assert family("quectel").problems(ModuleSettings(port="/dev/ttyUSB2", context_id=17)) == [
        "modem: modem context_id must be 1..16"
    ]
    config = parse_config(WIFI_MODULE + '\n[wifi]\nssid = "Site"\nkey = "longenough"\n')
    assert config.modem.wifi is not None
    short = dataclasses.replace(config.modem.wifi, key="short")
    broken = dataclasses.replace(config, modem=dataclasses.replace(config.modem, wifi=short))
    with pytest.raises(ConfigError, match="a WPA/WPA2 key is 8 to 63 characters"):
        link_for(broken)


@pytest.mark.parametrize(("line", "expected"), [("", "PUSH"), ('access_mode = "buffer"', "BUFFER")])
def test_the_quectel_access_mode_reaches_the_driver(line: str, expected: str) -> None:
    text = MINIMAL.replace('type = "host"', f'type = "quectel"\nport = "/dev/ttyUSB2"\n{line}')
    settings = _quectel_settings(module_settings(parse_config(text)))
    assert settings.access_mode is AccessMode[expected]


def test_an_unknown_access_mode_is_refused() -> None:
    text = MINIMAL.replace(
        'type = "host"', 'type = "quectel"\nport = "/dev/ttyUSB2"\naccess_mode = "transparent"'
    )
    assert problems(text) == [
        'modem.access_mode: must be one of "push", "buffer", not "transparent"'
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", 256),  # at 115200 baud
        ("baudrate = 9600", 21),  # what a second pass of the bytes over the line repays
        ("baudrate = 9600\nhex_send_max = 512", 512),  # the operator's word
        ("hex_send_max = 0", 0),
    ],
)
def test_the_quectel_hex_send_limit_reaches_the_driver(line: str, expected: int) -> None:
    text = MINIMAL.replace('type = "host"', f'type = "quectel"\nport = "/dev/ttyUSB2"\n{line}')
    assert _quectel_settings(module_settings(parse_config(text))).hex_send_max == expected


def test_a_hex_send_limit_beyond_the_commands_is_refused() -> None:
    # AT+QISENDEX carries at most 512 bytes (at-protocol.md §2.9).
    text = MINIMAL.replace(
        'type = "host"', 'type = "quectel"\nport = "/dev/ttyUSB2"\nhex_send_max = 513'
    )
    assert problems(text) == ["modem.hex_send_max: must be at most 512"]
