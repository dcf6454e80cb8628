"""The JSON Schema of the daemon's configuration file.

``x-message`` is ours (validators ignore unknown keywords): the sentence shown when a value
breaks that rule, where the generic wording would not help the person editing the file.
Field limits follow OCPP 1.6 BootNotification.req (§6.2: CiString20/25/50).
"""

from __future__ import annotations

from typing import Any


def _text(max_length: int, description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_length, "description": description}


def _at_string() -> dict[str, Any]:
    # These go inside quoted AT command arguments, where a '"' would end the argument early.
    return {
        "type": "string",
        "pattern": "^[\\x20-\\x21\\x23-\\x7e]*$",
        "default": "",
        "x-message": "may only hold printable ASCII characters without '\"'",
    }


_ARGV: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string", "minLength": 1},
    "minItems": 1,
}


SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["charge_point", "csms", "modem"],
    "properties": {
        "charge_point": {
            "type": "object",
            "additionalProperties": False,
            "required": ["id", "vendor", "model"],
            "properties": {
                "id": {
                    "type": "string",
                    "pattern": "^[^:\\x00-\\x1f\\x7f]{1,48}$",
                    "x-message": "must be 1 to 48 characters, without ':' or control characters "
                    "(it is the Basic-auth user name and the last part of the CSMS URL)",
                },
                "vendor": _text(20, "chargePointVendor"),
                "model": _text(20, "chargePointModel"),
                "serial_number": _text(25, "chargePointSerialNumber"),
                "charge_box_serial_number": _text(25, "chargeBoxSerialNumber"),
                "firmware_version": _text(50, "firmwareVersion; default: this software's version"),
                "meter_type": _text(25, "meterType"),
                "meter_serial_number": _text(25, "meterSerialNumber"),
                "connectors": {"type": "integer", "minimum": 1, "maximum": 32, "default": 1},
                "power_loss": {
                    "enum": ["stop", "resume"],
                    "default": "stop",
                    "description": "after a restart with a transaction open: stop it (reason "
                    "PowerLoss) or resume it if the EV is still plugged in",
                },
                "reset_command": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "minItems": 1,
                    "description": "run (no shell) for a Reset from the CSMS after transactions "
                    "are stopped; default: the daemon restarts itself",
                },
            },
        },
        "charger": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "type": {
                    "enum": ["simulated"],
                    "default": "simulated",
                    "x-message": 'must be "simulated" (the only charger driver so far)',
                },
                "fixed_cable": {"type": "boolean", "default": False},
            },
        },
        "firmware": {
            "type": "object",
            "additionalProperties": False,
            "description": "UpdateFirmware: how an image is fetched and installed",
            "properties": {
                "install_command": {
                    **_ARGV,
                    "description": "installer, run without a shell; the image path replaces "
                    '"{image}" and its file name "{image_name}" in the arguments, else the path '
                    "is appended; exit 0 means installed (without it, installation fails with "
                    "InstallationFailed)",
                },
                "reboot_command": {
                    **_ARGV,
                    "description": "run after a successful install; default: the daemon "
                    "restarts itself",
                },
                "version_file": {
                    "type": "string",
                    "minLength": 1,
                    "description": "file whose first line is the firmware version reported in "
                    "BootNotification (the installer updates it); default: "
                    "charge_point.firmware_version",
                },
                "install_timeout": {"type": "number", "minimum": 1, "default": 600},
                "ca_file": {
                    "type": "string",
                    "minLength": 1,
                    "description": "PEM CA certificate(s) to verify https:// file servers "
                    "(uploaded to the module); without it https is not verified",
                },
                "piece_size": {
                    "type": "integer",
                    "minimum": 4096,
                    "maximum": 1048576,
                    "default": 131072,
                    "description": "bytes per HTTP Range request (must fit the module's RAM disk)",
                },
                "chunk_size": {
                    "type": "integer",
                    "minimum": 512,
                    "maximum": 16384,
                    "default": 4096,
                    "description": "bytes per AT+QFREAD/AT+QFWRITE: the longest OCPP waits for the "
                    "serial line during a transfer (4096 B = 0.36 s at 115200 baud)",
                },
                "scratch_drive": {"enum": ["RAM", "UFS"], "default": "RAM"},
            },
        },
        "diagnostics": {
            "type": "object",
            "additionalProperties": False,
            "description": "GetDiagnostics: what goes into the archive",
            "properties": {
                "log_files": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "default": [],
                    "description": "glob patterns of log files to include (lines filtered by "
                    "startTime/stopTime)",
                },
                "max_log_bytes": {"type": "integer", "minimum": 1024, "default": 2097152},
            },
        },
        "control": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "socket": {
                    "type": "string",
                    "minLength": 1,
                    "description": "UNIX socket for chargepoint ctl; default: "
                    "<storage.directory>/control.sock",
                },
            },
        },
        "ocpp_keys": {
            "type": "object",
            "description": "initial values of OCPP configuration keys (a value the CSMS sets "
            "later wins, and is kept across restarts)",
            "additionalProperties": {"type": ["string", "integer", "boolean"]},
        },
        "csms": {
            "type": "object",
            "additionalProperties": False,
            "required": ["url"],
            "properties": {
                "url": {
                    "type": "string",
                    "pattern": "^wss?://[^/?#\\s]+",
                    "x-message": "must start with ws:// or wss:// followed by the CSMS host",
                },
                "password": {"type": "string", "minLength": 1},
                "password_file": {"type": "string", "minLength": 1},
                "password_format": {
                    "enum": ["text", "hex"],
                    "default": "text",
                    "description": "hex: an OCPP AuthorizationKey, sent as the bytes it encodes",
                },
                "call_timeout": {"type": "number", "exclusiveMinimum": 0, "default": 60},
                "heartbeat_interval": {"type": "integer", "minimum": 1, "default": 300},
                "ping_interval": {"type": "integer", "minimum": 0, "default": 60},
                "pong_timeout": {"type": "number", "exclusiveMinimum": 0, "default": 30},
                "max_message_size": {"type": "integer", "minimum": 4096, "default": 524288},
                "reconnect_delay_min": {"type": "number", "exclusiveMinimum": 0, "default": 1},
                "reconnect_delay_max": {"type": "number", "exclusiveMinimum": 0, "default": 300},
            },
        },
        "modem": {
            "type": "object",
            "additionalProperties": False,
            "required": ["type"],
            "properties": {
                "type": {
                    "enum": ["quectel", "host"],
                    "x-message": 'must be "quectel" (a Quectel module on a serial port) or '
                    '"host" (this computer\'s own network)',
                },
                "port": {"type": "string", "minLength": 1},
                "baudrate": {
                    "enum": [9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600],
                    "default": 115200,
                },
                "apn": _at_string(),
                "username": _at_string(),
                "password": _at_string(),
                "auth": {"enum": ["none", "pap", "chap", "pap_or_chap"], "default": "none"},
                "context_id": {"type": "integer", "minimum": 1, "maximum": 16, "default": 1},
                "sim_pin": {
                    "type": "string",
                    "pattern": "^[0-9]{4,8}$",
                    "x-message": "must be 4 to 8 digits",
                },
                "registration_timeout": {"type": "number", "exclusiveMinimum": 0, "default": 90},
            },
        },
        "storage": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "directory": {"type": "string", "minLength": 1, "default": "/var/lib/chargepoint"},
            },
        },
        "logging": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "level": {"enum": ["debug", "info", "warning", "error"], "default": "info"},
            },
        },
        "service": {
            "type": "object",
            "additionalProperties": False,
            "description": "running under systemd (Type=notify)",
            "properties": {
                "ready_timeout": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "default": 120,
                    "description": "seconds after which READY=1 is sent even if no OCPP session "
                    "is up yet, so that boot is not held up by an unreachable CSMS (keep it "
                    "below the unit's TimeoutStartSec)",
                },
            },
        },
    },
}
