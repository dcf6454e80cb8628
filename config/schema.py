"""The JSON Schema of the daemon's configuration file.

``x-message`` is ours (validators ignore unknown keywords): the sentence shown when a value
breaks that rule, where the generic wording would not help the person editing the file.
Field limits follow OCPP 1.6 BootNotification.req (§6.2: CiString20/25/50).
"""

from __future__ import annotations

from typing import Any

from config.ocpp_keys import IMPLEMENTED_PROFILES


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
            "description": "who the charge point is (BootNotification) and how it behaves",
            "additionalProperties": False,
            "required": ["id", "vendor", "model"],
            "properties": {
                "id": {
                    "description": "the charge point identity: the last part of the CSMS URL and "
                    "the Basic-auth user",
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
                "connectors": {
                    "description": "number of connectors (NumberOfConnectors)",
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 32,
                    "default": 1,
                },
                "power_loss": {
                    "enum": ["stop", "resume"],
                    "default": "stop",
                    "description": "after a restart with a transaction open: stop it (reason "
                    "PowerLoss) or resume it if the EV is still plugged in",
                },
                "feature_profiles": {
                    "type": "array",
                    "items": {"enum": list(IMPLEMENTED_PROFILES)},
                    "uniqueItems": True,
                    "contains": {"const": "Core"},
                    "default": list(IMPLEMENTED_PROFILES),
                    "description": "the OCPP 1.6 feature profiles this charger offers "
                    "(SupportedFeatureProfiles); Core always. A profile left out is answered "
                    "as OCPP prescribes for an unsupported one",
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
            "description": "the charger hardware behind OCPP",
            "additionalProperties": False,
            "properties": {
                "type": {
                    "description": "the charger driver; simulated is driven with chargepoint ctl",
                    "enum": ["simulated"],
                    "default": "simulated",
                    "x-message": 'must be "simulated" (the only charger driver so far)',
                },
                "fixed_cable": {
                    "description": "the cable is fixed to the charger (no lock to drive)",
                    "type": "boolean",
                    "default": False,
                },
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
                "install_timeout": {
                    "description": "seconds the installer may run before it counts as failed",
                    "type": "number",
                    "minimum": 1,
                    "default": 600,
                },
                "ca_file": {
                    "type": "string",
                    "minLength": 1,
                    "description": "PEM CA certificate(s) to verify https:// file servers "
                    "(uploaded to the module; may be the same file as csms.ca_file); without it "
                    "the host link uses the system's trust store, the module verifies nothing",
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
                    "default": 8192,
                    "description": "bytes per AT+QFREAD/AT+QFWRITE: the longest OCPP waits for the "
                    "serial line during a transfer (8192 B = 0.71 s at 115200 baud)",
                },
                "scratch_drive": {
                    "description": "module drive for downloaded pieces: RAM, or UFS on modules "
                    "without a RAM disk (BG95/BG96)",
                    "enum": ["RAM", "UFS"],
                    "default": "RAM",
                },
                "manufacturer_ca_file": {
                    "type": "string",
                    "minLength": 1,
                    "description": "the manufacturer's root certificate(s), PEM, that firmware "
                    "signing certificates must chain to (SignedUpdateFirmware, whitepaper L01); "
                    "the CSMS may install more with InstallCertificate",
                },
                "unsigned_updates": {
                    "description": "whether the original UpdateFirmware (no signature) is "
                    "taken: without-security-profile (only while SecurityProfile is 0), "
                    "allowed, or refused (CallError NotSupported, whitepaper L01.FR.20)",
                    "enum": ["without-security-profile", "allowed", "refused"],
                    "default": "without-security-profile",
                },
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
                "max_log_bytes": {
                    "description": "at most this many bytes of each log file (the newest lines)",
                    "type": "integer",
                    "minimum": 1024,
                    "default": 2097152,
                },
            },
        },
        "control": {
            "type": "object",
            "description": "the local control socket",
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
            "description": "the CSMS and the WebSocket to it",
            "additionalProperties": False,
            "required": ["url"],
            "properties": {
                "url": {
                    "description": "the CSMS endpoint; the charge point id is appended (OCPP-J "
                    "1.6 §3.1)",
                    "type": "string",
                    "pattern": "^wss?://[^/?#\\s]+",
                    "x-message": "must start with ws:// or wss:// followed by the CSMS host",
                },
                "security_profile": {
                    "description": "OCPP security profile (whitepaper §2): 0 no authentication, "
                    "1 Basic auth over ws:// (trusted networks only, so it must be said here), "
                    "2 Basic auth over wss://, 3 client certificate over wss://; default: 0 for "
                    "ws:// without a password, 2 for wss://, 3 for wss:// with "
                    "client_certificate. The CSMS may raise it (SecurityProfile), never lower it",
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 3,
                },
                "upgrade_urls": {
                    "description": "the CSMS endpoint for each higher security profile the "
                    'CSMS may switch the charge point to, e.g. 2 = "wss://csms.example.com/ocpp"'
                    "; a profile without one keeps csms.url if its scheme fits",
                    "type": "object",
                    "propertyNames": {"enum": ["1", "2", "3"]},
                    "additionalProperties": {
                        "type": "string",
                        "pattern": "^wss?://[^/?#\\s]+",
                        "x-message": "must start with ws:// or wss:// followed by the CSMS host",
                    },
                },
                "upgrade_attempts": {
                    "description": "connection attempts with a profile the CSMS raised before "
                    "falling back to the last profile that worked (whitepaper A05.FR.08)",
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 100,
                    "default": 3,
                },
                "ca_file": {
                    "description": "the CSMS root CA certificate(s), PEM, for wss:// (profiles 2 "
                    "and 3); installed on the module, which has no trust store of its own; on "
                    "a host link the system's trust store is used without it",
                    "type": "string",
                    "minLength": 1,
                },
                "client_certificate": {
                    "description": "the charge point certificate, PEM, for security profile 3 "
                    "(commonName = charge_point.id)",
                    "type": "string",
                    "minLength": 1,
                },
                "client_key": {
                    "description": "the private key of client_certificate, PEM; readable by the "
                    "service user only (mode 0600); never logged",
                    "type": "string",
                    "minLength": 1,
                },
                "key_type": {
                    "description": "the key pair the charge point makes for a new charge point "
                    "certificate (SignCertificate, whitepaper A02/A03): rsa-2048 or ec-p256",
                    "enum": ["rsa-2048", "ec-p256"],
                    "default": "rsa-2048",
                },
                "cipher_suite": {
                    "description": "the TLS 1.2 cipher suite the module is told to use "
                    "(AT+QSSLCFG takes one); the host link offers all of these",
                    "enum": ["0XC02B", "0XC02F", "0XC02C", "0XC030", "0X009C", "0X009D"],
                    "default": "0XC02F",
                    "x-message": "must be one of the AES-GCM suites 0XC02B, 0XC02F, 0XC02C, "
                    "0XC030, 0X009C, 0X009D (security whitepaper A00.FR.318)",
                },
                "password": {
                    "description": "Basic-auth password (security profile 1); or password_file",
                    "type": "string",
                    "minLength": 1,
                },
                "password_file": {
                    "description": "file holding the password (first line), relative to this file",
                    "type": "string",
                    "minLength": 1,
                },
                "password_format": {
                    "enum": ["text", "hex"],
                    "default": "text",
                    "description": "hex: an OCPP AuthorizationKey, sent as the bytes it encodes",
                },
                "call_timeout": {
                    "description": "seconds to wait for the CSMS's answer to a CALL",
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "default": 60,
                },
                "heartbeat_interval": {
                    "description": "HeartbeatInterval until the CSMS's BootNotification answer "
                    "sets it",
                    "type": "integer",
                    "minimum": 1,
                    "default": 300,
                },
                "ping_interval": {
                    "description": "WebSocketPingInterval at first: seconds between our pings, 0 "
                    "= off",
                    "type": "integer",
                    "minimum": 0,
                    "default": 60,
                },
                "pong_timeout": {
                    "description": "seconds without a pong before the connection counts as dead; "
                    "a silent CSMS is noticed within ping_interval + pong_timeout",
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "default": 10,
                },
                "max_message_size": {
                    "description": "largest WebSocket message accepted, in bytes; the "
                    "default takes a SendLocalList of 10,000 entries at their longest",
                    "type": "integer",
                    "minimum": 4096,
                    "default": 2097152,
                },
                "replay_batch_bytes": {
                    "description": "largest MeterValues.req the outbox builds when it sends a "
                    "backlog of samples as one request (OCPP-J allows one CALL in flight, so "
                    "bigger batches use more of a slow link); at most 32768, the WebSocket frame "
                    "limit of AWS API Gateway, the smallest of the CSMS front ends we design for "
                    "(python websockets and Node ws take 1 MiB and more). The default keeps the "
                    "uplink busy for at most about 1 s at 115200 baud",
                    "type": "integer",
                    "minimum": 1024,
                    "maximum": 32768,
                    "default": 12288,
                },
                "reconnect_delay_min": {
                    "description": "first reconnect delay in seconds (doubles, with jitter)",
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "default": 1,
                },
                "reconnect_delay_max": {
                    "description": "longest reconnect delay in seconds",
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "default": 300,
                },
            },
        },
        "modem": {
            "type": "object",
            "description": "the link to the network",
            "additionalProperties": False,
            "required": ["type"],
            "properties": {
                "type": {
                    "description": "quectel: a Quectel cellular module on a serial port; "
                    "simplelink: a TI SimpleLink Wi-Fi network processor (CC3220, CC3235) on a "
                    "serial port, joining the network of [wifi]; host: this computer's own "
                    "network",
                    "enum": ["quectel", "simplelink", "host"],
                    "x-message": 'must be "quectel" (a Quectel cellular module), "simplelink" '
                    '(a TI SimpleLink Wi-Fi module) or "host" (this computer\'s own network)',
                },
                "port": {
                    "description": "the module's AT port, best by its stable name under "
                    "/dev/serial/by-id/",
                    "type": "string",
                    "minLength": 1,
                },
                "baudrate": {
                    "description": "UART speed (USB modules ignore it)",
                    "enum": [9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600],
                    "default": 115200,
                },
                "apn": {
                    **_at_string(),
                    "description": "the APN of the SIM's data plan (AT+QICSGP)",
                },
                "username": {**_at_string(), "description": "APN user name"},
                "password": {**_at_string(), "description": "APN password (never logged)"},
                "auth": {
                    "description": "APN authentication",
                    "enum": ["none", "pap", "chap", "pap_or_chap"],
                    "default": "none",
                },
                "context_id": {
                    "description": "PDP context id (AT+QIACT)",
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 16,
                    "default": 1,
                },
                "sim_pin": {
                    "description": "SIM PIN, if the SIM asks for one (never logged)",
                    "type": "string",
                    "pattern": "^[0-9]{4,8}$",
                    "x-message": "must be 4 to 8 digits",
                },
                "registration_timeout": {
                    "description": "seconds to wait for network registration at bring-up",
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "default": 90,
                },
                "access_mode": {
                    "description": "quectel: how the module hands over received data; push: "
                    "on the URC itself (direct push, AT+QIOPEN access mode 1: fewer UART "
                    "exchanges and wake-ups), buffer: kept until read with AT+QIRD (for "
                    "firmware that misbehaves in push mode; also used when the module refuses "
                    "push mode)",
                    "enum": ["push", "buffer"],
                    "default": "push",
                },
                "hex_send_max": {
                    "description": "quectel: bytes up to which a piece of data is sent as one "
                    "AT+QISENDEX command in hex digits (no data prompt to wait for: one UART "
                    "exchange and one wake-up fewer, twice the bytes on the line); larger "
                    "pieces and TLS sockets use AT+QISEND; 0: AT+QISEND only. Unset: what "
                    "the second pass of the bytes over the line repays, 256 at 115200 baud "
                    "(baudrate / 450 below that). A module that answers AT+QISENDEX with "
                    "ERROR gets AT+QISEND only",
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 512,
                },
            },
        },
        "wifi": {
            "type": "object",
            "description": "the Wi-Fi network a Wi-Fi module joins (modem.type = simplelink)",
            "additionalProperties": False,
            "properties": {
                "ssid": {
                    **_at_string(),
                    "description": "the network's name (1 to 32 characters)",
                    "minLength": 1,
                    "maxLength": 32,
                },
                "security": {
                    "description": "open, wep, wpa_wpa2 (WPA2/WPA3-transition personal, a "
                    "passphrase) or wpa_ent (802.1X: user, eap_method)",
                    "enum": ["open", "wep", "wpa_wpa2", "wpa_ent"],
                    "default": "wpa_wpa2",
                },
                "key": {
                    **_at_string(),
                    "description": "the passphrase (WPA: 8 to 63 characters or 64 hex digits; "
                    "WEP: 5 or 13 characters or 10 or 26 hex digits) or the 802.1X password; "
                    "never logged",
                },
                "eap_method": {
                    "description": "802.1X method for wpa_ent",
                    "enum": [
                        "TLS",
                        "TTLS_TLS",
                        "TTLS_MSCHAPv2",
                        "TTLS_PSK",
                        "PEAP0_TLS",
                        "PEAP0_MSCHAPv2",
                        "PEAP0_PSK",
                        "PEAP1_TLS",
                        "PEAP1_PSK",
                    ],
                },
                "user": {**_at_string(), "description": "802.1X identity for wpa_ent"},
                "anonymous_user": {
                    **_at_string(),
                    "description": "802.1X outer (anonymous) identity for wpa_ent",
                },
                "provisioning": {
                    "description": "profile: store the network on the module, which then "
                    "rejoins by itself after a drop or a restart; connect: join at every "
                    "bring-up, store nothing; stored: use what is already provisioned on the "
                    "module (ssid and key not needed)",
                    "enum": ["profile", "connect", "stored"],
                    "default": "profile",
                },
                "join_timeout": {
                    "description": "seconds to wait for the access point and an IP address",
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "default": 30,
                },
            },
        },
        "storage": {
            "type": "object",
            "description": "where the state lives",
            "additionalProperties": False,
            "properties": {
                "directory": {
                    "description": "the state: SQLite database, firmware downloads, frame trace, "
                    "control socket",
                    "type": "string",
                    "minLength": 1,
                    "default": "/var/lib/chargepoint",
                },
            },
        },
        "logging": {
            "type": "object",
            "description": "what goes to stderr (the journal under systemd)",
            "additionalProperties": False,
            "properties": {
                "level": {
                    "description": "debug adds every AT command and OCPP frame",
                    "enum": ["debug", "info", "warning", "error"],
                    "default": "info",
                },
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
