"""The wire format of TI's SimpleLink Wi-Fi AT command application (CC3220/CC3235), as the
driver needs it: pure functions, no I/O.

Sources: TI's "SimpleLink Wi-Fi AT Command User's Guide" (cited as [guide] Table n / §n),
at-protocol.md §8 (cited as at-protocol §8.n) and the contract the driver shares with the
simulator, transport/modems/simplelink_wire.md (cited as SPEC §n).

* Results and events are ``+<name>:<values>``; TI's code prints the name lower case with no
  space after the colon, the guide prints ``+Socket: [socket]``: :func:`normalise_line` gives
  the AT parser one spelling (SPEC §1).
* Errors are ``ERROR:<what>,<code>``, the code a negative SimpleLink error number for
  ``process command`` (SPEC §1, at-protocol §8.1): :func:`parse_error`.
* Binary data always travels as base64 (format 1): a raw CR, LF or NUL would end or corrupt the
  line on the UART (at-protocol §8.1, SPEC §1).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from transport.at import FinalResult, split_fields
from transport.errors import AtCommandFailed

# Every asynchronous event of [guide] Table 8 (and the ones TI's code adds) starts so.
EVENT_PREFIX = "+event"

BASE64 = 1  # the <format> of every data parameter the driver sends or asks for (SPEC §1)
MAX_SEND = 1092  # raw bytes per AT+Send: 1456 base64 characters, under 1460 (SPEC §5)
MAX_RECV = 1460  # AT+Recv and AT+HttpReadResBody <max> (SPEC §5, §7)
MAX_FILE_WRITE = 1024  # raw bytes per AT+FileWrite (SPEC §6)

_NAMED = re.compile(r"(?P<name>\+[A-Za-z0-9_]+)\s*:\s*(?P<rest>.*)", re.DOTALL)
_ERROR = re.compile(r"ERROR\s*:\s*(?P<what>[^,]*?)\s*,\s*(?P<code>-?\d+)", re.IGNORECASE)
_ERROR_LINE = re.compile(r"ERROR\s*:\s*(?P<rest>.*)", re.IGNORECASE)


def normalise_line(text: str) -> str:
    """One spelling for every line the module may print (the AT parser's ``normalise``).

    ``+Socket: 3`` and ``+SOCKET:3`` become ``+socket:3`` (the name lower case, no space after
    the colon: SPEC §1); ``Error: process command, -111`` becomes
    ``ERROR:process command,-111``, which the engine takes as a final result; ``ok`` is ``OK``.
    Values are left as they are: a base64 payload is case-sensitive.
    """
    if text.startswith("+"):
        match = _NAMED.fullmatch(text)
        if match is not None:
            return f"{match['name'].lower()}:{match['rest']}"
        return text.lower()  # "+EventStartup" without values
    if text.upper() == "OK":
        return "OK"
    error = _ERROR_LINE.fullmatch(text)
    if error is not None:
        what, sep, code = error["rest"].rpartition(",")
        if sep:
            return f"ERROR:{what.strip()},{code.strip()}"
        return f"ERROR:{error['rest'].strip()}"
    return text


@dataclass(frozen=True, slots=True)
class ModuleError:
    """``ERROR:<what>,<code>`` taken apart."""

    what: str  # "process command", "parse parameters", ...
    code: int | None

    @property
    def described(self) -> str:
        meaning = describe_error(self.code) if self.code is not None else ""
        return f"{self.what} {self.code}" + (f" ({meaning})" if meaning else "")


def parse_error(text: str) -> ModuleError:
    """The description and code of an error result (SPEC §1's lenient pattern); a result
    without a code keeps its text as the description."""
    match = _ERROR.search(text)
    if match is None:
        rest = _ERROR_LINE.fullmatch(text)
        return ModuleError(rest["rest"].strip() if rest else text, None)
    return ModuleError(match["what"], int(match["code"]))


def error_code(source: FinalResult | AtCommandFailed | str) -> int | None:
    """The SimpleLink error number of a failed command, or None."""
    if isinstance(source, FinalResult):
        text = source.text
    elif isinstance(source, AtCommandFailed):
        text = source.result
    else:
        text = source
    return parse_error(text).code


# SimpleLink error numbers the driver meets, in words (TI's errors.h names, SPEC §3-§7).
EBADF = -9  # the socket descriptor is unknown: after a chip reset every socket is
ENSOCK = -10  # all 16 sockets in use
EAGAIN = -11
ENOMEM = -12  # (HTTP) no free client
ENETUNREACH = -101
ECONNRESET = -104
ENOTCONN = -107
ETIMEDOUT = -110
ECONNREFUSED = -111
DNS_FAILED = -159
SEC_SOCKETS_EXHAUSTED = -460
NOT_STARTED = -2018  # NWP stopped (or, for AT+Start, already started: SPEC §3)
WLAN_NOT_CONNECTED = -2071
PROFILE_INDEX_UNUSED = -2074
PROFILES_FULL = -2062
FILE_NOT_FOUND = -10341
# TLS (SPEC §5): the handshake failed and the module closed the connection, except the two
# warnings, after which the connection is established.
ESEC_ASN_NO_SIGNER = -688
ESEC_DOMAIN_NAME_MISMATCH = -722
ESEC_NOCAFILE = -454
ESEC_BADCAFILE = -456
ESEC_BADCERTFILE = -457
ESEC_BADPRIVATEFILE = -458
ESEC_HANDSHAKE_FAILURE = -340
ESEC_HANDSHAKE_TIMEOUT = -462
ESEC_DATE_ERROR = -461  # a warning on the real module
ESEC_UNKNOWN_ROOT_CA = -468  # a warning on the real module

ERRORS = {
    EBADF: "no such socket: the module has restarted",
    ENSOCK: "all 16 module sockets in use",
    EAGAIN: "no data yet",
    ENOMEM: "out of module resources",
    ENETUNREACH: "network unreachable: no Wi-Fi association or no IP address",
    ECONNRESET: "connection reset by the peer",
    ENOTCONN: "not connected: the connection is dead",
    ETIMEDOUT: "no answer from the server",
    ECONNREFUSED: "connection refused by the server",
    DNS_FAILED: "DNS query failed",
    SEC_SOCKETS_EXHAUSTED: "all 6 TLS sockets in use",
    NOT_STARTED: "the network processor is not running",
    WLAN_NOT_CONNECTED: "not connected to a Wi-Fi network",
    PROFILE_INDEX_UNUSED: "no profile at this index",
    PROFILES_FULL: "all 7 Wi-Fi profiles in use",
    FILE_NOT_FOUND: "no such file",
    ESEC_ASN_NO_SIGNER: "server certificate not signed by the CA file",
    ESEC_DOMAIN_NAME_MISMATCH: "server certificate does not name the host",
    ESEC_NOCAFILE: "CA file not on the module",
    ESEC_BADCAFILE: "CA file is not a certificate",
    ESEC_BADCERTFILE: "client certificate file unusable",
    ESEC_BADPRIVATEFILE: "client private key file unusable",
    ESEC_HANDSHAKE_FAILURE: "TLS handshake refused by the server",
    ESEC_HANDSHAKE_TIMEOUT: "TLS handshake timed out",
    ESEC_DATE_ERROR: "certificate not valid at the module's clock",
    ESEC_UNKNOWN_ROOT_CA: "root CA unknown to the module's catalogue",
}


def describe_error(code: int) -> str:
    return ERRORS.get(code, "")


# --- parameters -------------------------------------------------------------------------------

_PLAIN = re.compile(r"[\x21-\x7e]*")


def quote(value: str) -> str:
    """A string parameter as the command line needs it: quoted when it holds a space or a comma
    ([guide] §5.1), refused when it holds what no parameter can carry (a quote, a control
    character: the line would end early or be read as more parameters, SPEC §1)."""
    if '"' in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"a command parameter cannot hold {value!r}")
    if value and _PLAIN.fullmatch(value) and "," not in value:
        return value
    return f'"{value}"'


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def data_field(data: bytes) -> str:
    """``<format>,<length>,<data>`` of a base64 data parameter (SPEC §1: the length counts the
    base64 characters)."""
    encoded = b64(data)
    return f"{BASE64},{len(encoded)},{encoded}"


class DataError(ValueError):
    """A data field that does not decode as announced."""


def decode_data(length: str, encoded: str) -> bytes:
    """The bytes of ``<length>,<data>`` in base64 (format 1)."""
    if not length.strip().isdigit():
        raise DataError(f"not a length: {length!r}")
    if int(length) != len(encoded):
        raise DataError(f"{len(encoded)} base64 characters where {length} were announced")
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error as error:
        raise DataError(f"not base64: {error}") from None


def values(text: str) -> list[str]:
    """The comma-separated values of a result, ``text`` being what follows ``+name:``
    (:meth:`transport.at.Response.value`); quotes removed."""
    return split_fields(text)


def padded(fields: list[str], count: int) -> list[str]:
    """``fields`` with empty strings added up to ``count`` (a module that omits trailing
    empty values reads as one that printed them)."""
    return fields + [""] * (count - len(fields))


def pieces(data: bytes, size: int) -> list[bytes]:
    """``data`` cut into pieces of at most ``size`` bytes (none for no data)."""
    return [data[i : i + size] for i in range(0, len(data), size)]


# --- Wi-Fi ------------------------------------------------------------------------------------

# 802.11 reason codes (IEEE 802.11-2020 Table 9-49) in +eventwlan:disconnect (SPEC §4), with
# what a technician should look at.
DISCONNECT_REASONS = {
    1: "unspecified",
    2: "the access point no longer knows the station",
    3: "the access point left (restarting)",
    4: "inactivity: the access point is out of range",
    6: "class 2 frame from a non-authenticated station",
    7: "class 3 frame from a non-associated station",
    8: "the station left",
    14: "message integrity failure: wrong Wi-Fi key",
    15: "4-way handshake timeout: wrong Wi-Fi key",
    16: "group key handshake timeout",
    23: "IEEE 802.1X authentication failed: 802.1X credentials refused",
    34: "too many unacknowledged frames: poor signal",
}
WRONG_KEY_REASONS = (14, 15)
EAP_REFUSED_REASON = 23
STATION_LEFT = 8


def describe_disconnect(reason: int | None) -> str:
    if reason is None:
        return "no reason given"
    return f"reason {reason}: {DISCONNECT_REASONS.get(reason, 'unlisted 802.11 reason')}"


# --- identity ---------------------------------------------------------------------------------

# The chip id of AT+Get=General,Version ([guide] Table 11), as TI's parts report it.
CHIP_IDS = {
    0x31000000: "CC3120",
    0x31100000: "CC3135",
    0x31120000: "CC3130",
    0x31000011: "CC3220R",
    0x31000018: "CC3220S",
    0x31000019: "CC3220SF",
    0x31100018: "CC3235S",
    0x31100019: "CC3235SF",
    0x31120018: "CC3230S",
    0x31120019: "CC3230SF",
}


def chip_model(chip_id: str) -> str:
    """The part name for a chip id (``0x31000019`` → ``CC3220SF``); an unknown id raw."""
    try:
        number = int(chip_id, 0)
    except ValueError:
        return chip_id
    return CHIP_IDS.get(number, chip_id)


# --- TLS --------------------------------------------------------------------------------------

# The cipher suites of AT+SetSockOpt SECURE_MASK ([guide] Table 21), by their IANA number and
# OpenSSL name. TI's names are the IANA ones, except the two RC4 suites it calls SSL_*.
TI_CIPHERS = {
    # IANA id: (TI name, OpenSSL name)
    0x0005: ("SSL_RSA_WITH_RC4_128_SHA", "RC4-SHA"),
    0x0004: ("SSL_RSA_WITH_RC4_128_MD5", "RC4-MD5"),
    0x0035: ("TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"),
    0x0039: ("TLS_DHE_RSA_WITH_AES_256_CBC_SHA", "DHE-RSA-AES256-SHA"),
    0xC014: ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"),
    0xC011: ("TLS_ECDHE_RSA_WITH_RC4_128_SHA", "ECDHE-RSA-RC4-SHA"),
    0x003C: ("TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"),
    0x003D: ("TLS_RSA_WITH_AES_256_CBC_SHA256", "AES256-SHA256"),
    0xC027: ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256"),
    0xC023: ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256"),
    0xC009: ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"),
    0xC00A: ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"),
    0x009C: ("TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"),
    0x009D: ("TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"),
    0x009E: ("TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "DHE-RSA-AES128-GCM-SHA256"),
    0x009F: ("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "DHE-RSA-AES256-GCM-SHA384"),
    0xC02F: ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
    0xC030: ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"),
    0xC02B: ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    0xC02C: ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"),
    0xCCA9: (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ),
    0xCCA8: ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"),
    0xCCAA: ("TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "DHE-RSA-CHACHA20-POLY1305"),
}


def ti_cipher(name: str) -> str | None:
    """TI's SECURE_MASK name for a cipher suite given as a hex id (``0XC02F``, the form of
    :class:`transport.tls.TlsSettings`), an OpenSSL name (``ECDHE-RSA-AES128-GCM-SHA256``) or
    an IANA/TI name (``TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256``); None when the module has no
    such suite."""
    wanted = name.strip().upper()
    if wanted.startswith("0X"):
        try:
            number = int(wanted, 16)
        except ValueError:
            return None
        found = TI_CIPHERS.get(number)
        return found[0] if found else None
    for ti_name, openssl in TI_CIPHERS.values():
        iana = ti_name.replace("SSL_", "TLS_", 1)
        if wanted in (ti_name, openssl, iana):
            return ti_name
    return None
