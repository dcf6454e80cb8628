"""Exceptions of the transport layer.

Every message is written for the person who will read it in a log on a charger: it says what
happened, where (port, socket, command), and when there is something to check, what to check.
"""

from __future__ import annotations

import enum


class TransportError(Exception):
    """Base of everything the transport layer raises."""


# --- the AT engine -------------------------------------------------------------------------


class AtError(TransportError):
    """The AT conversation with the module failed."""


class AtTimeout(AtError):
    """A command got no final result in time."""

    def __init__(self, command: str, timeout: float, port: str) -> None:
        super().__init__(
            f"no final result to {command} within {timeout:g} s on {port}; "
            "the module may be busy, rebooting or hung"
        )
        self.command = command
        self.timeout = timeout
        self.port = port


class AtCommandFailed(AtError):
    """The module answered a command with ERROR, +CME ERROR or +CMS ERROR."""

    def __init__(
        self, command: str, result: str, code: int | None = None, detail: str = ""
    ) -> None:
        text = f"{command} failed: {result}"
        if detail:
            text += f" ({detail})"
        super().__init__(text)
        self.command = command
        self.result = result
        self.code = code
        self.detail = detail


class ModemNotResponding(AtError):
    """The module does not answer even a bare ``AT``: it needs a power cycle or a reboot."""

    def __init__(self, port: str, attempts: int, timeout: float) -> None:
        super().__init__(
            f"modem did not answer AT ({attempts} attempts, {timeout:g} s each) on {port}: "
            "check the module's power, the serial port name and the baud rate"
        )
        self.port = port


class SerialPortError(TransportError):
    """The serial port could not be opened, or went away (USB modem unplugged, pty closed)."""


# --- bringing the link up ------------------------------------------------------------------


class ModemError(TransportError):
    """The module could not bring the data link up."""


class SimError(ModemError):
    """The SIM is missing, locked or broken."""


class RegistrationError(ModemError):
    """The module did not register on a network."""


class PdpActivationError(ModemError):
    """The packet data context (APN) could not be activated."""


class WlanError(ModemError):
    """The Wi-Fi station could not join its network (no access point with the SSID answered,
    the key or the 802.1X credentials were refused, no IP address from DHCP)."""


class SocketOpenError(ModemError):
    """The module could not open a TCP connection."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class ServerRefused(SocketOpenError):
    """The data link works (DNS answered, the connection attempt left the module), but the
    server refused or did not take the connection: the CSMS is down, restarting or filtered.
    Nothing a module reset can cure."""


class TlsRefusal(enum.Enum):
    """What a failed TLS handshake is known to have refused (the charge point reports it as a
    security event, whitepaper §8). Modules that only say "failed" give UNKNOWN."""

    UNKNOWN = "unknown"
    CSMS_CERTIFICATE = "the CSMS certificate"  # not verified: CA, dates, host name
    VERSION = "the TLS version"  # the server offered only a version below 1.2
    CIPHER_SUITE = "the cipher suites"  # no suite in common


class TlsHandshakeFailed(SocketOpenError):
    """TCP reached the server, but TLS could not be set up: a certificate one side refused (CA,
    expiry, host name, a client certificate the CSMS does not accept), or no common version or
    cipher suite. Nothing a module reset can cure. ``refused``: what, when the driver knows."""

    def __init__(
        self, message: str, code: int | None = None, refused: TlsRefusal = TlsRefusal.UNKNOWN
    ) -> None:
        super().__init__(message, code)
        self.refused = refused


class TlsSetupFailed(ModemError):
    """The module refused part of the TLS set-up (a certificate upload, an AT+QSSLCFG option):
    a configuration to fix, not a module to reset."""


class DriverFault(TransportError):
    """The driver's own bookkeeping went wrong: a bug to report, not a fault of the network or
    the module, so no reason to reset the module."""


class SocketsExhausted(DriverFault):
    """Every socket id of the module is held by this driver, and the module agrees."""


# --- byte streams --------------------------------------------------------------------------


class StreamClosed(TransportError):
    """The byte stream has ended; nothing more can be read or written."""


class PeerClosed(StreamClosed):
    """The remote end closed the connection (all data it sent has been read)."""


class NetworkLost(StreamClosed):
    """The network took the data link away (PDP context deactivated, coverage lost)."""


class ModuleRebooted(StreamClosed):
    """The module restarted; every socket it had is gone."""


class SendStalled(StreamClosed):
    """The module kept refusing data (SEND FAIL) for too long: the link is considered dead."""


class StreamBroken(StreamClosed):
    """The stream failed because the AT conversation under it failed."""


# --- file transfers (firmware downloads, diagnostics uploads) ------------------------------


class TransferError(TransportError):
    """A download or upload failed. ``retry_now`` says whether trying again at once (the same
    request) is what the module's manual advises; otherwise wait for the next attempt."""

    retry_now = False


class HttpStatusError(TransferError):
    """The server answered, but not with what was asked for (404, 403, 500, ...)."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(f"{url}: the server answered HTTP {status}")
        self.status = status


class TransferInterrupted(TransferError):
    """The transfer stopped part-way (connection dropped, short read); what arrived is kept."""

    retry_now = True


class TransferCorrupt(TransferError):
    """The bytes received do not add up: wrong size, bad checksum, inconsistent ranges."""


class UnsupportedLocation(TransferError):
    """The location is not one this charge point can use: a scheme other than http(s) and
    ftp(s), no host, or characters no request may carry."""


# FTP server replies (RFC 959 §4.2.2, RFC 4217 for FTPS): what each means on a charger, what to
# check, and whether asking again at once can help (the 4xx "transient" replies that concern the
# connection, not the file).
_FTP_REPLIES: dict[int, tuple[str, str, bool]] = {
    421: (
        "service not available, closing control connection",
        "the server is shutting down or refuses more sessions: try again later",
        True,
    ),
    425: (
        "cannot open data connection",
        "a firewall or NAT between the charger and the server blocks the passive data connection",
        True,
    ),
    426: (
        "connection closed; transfer aborted",
        "the data connection broke: the transfer goes on from the last byte received",
        True,
    ),
    430: (
        "invalid user name or password",
        "check the user and password in the location URL",
        False,
    ),
    450: ("file unavailable (busy)", "the file is in use on the server: try again later", True),
    451: ("local error in processing", "the server failed while serving the file", True),
    452: ("insufficient storage on the server", "free space on the FTP server", False),
    500: ("command not recognised", "the server does not speak this part of FTP", False),
    501: ("syntax error in arguments", "check the path in the location URL", False),
    502: ("command not implemented", "the server lacks a command the transfer needs", False),
    503: ("bad sequence of commands", "the server's session state is unexpected", False),
    504: ("command parameter not implemented", "the server lacks a transfer mode", False),
    522: ("protocol not supported", "the server cannot open the data connection this way", False),
    530: (
        "not logged in",
        "check the user and password in the location URL (and that the "
        "account may log in from this address)",
        False,
    ),
    532: (
        "need an account for storing files",
        "the account may not upload: ask the server's administrator",
        False,
    ),
    534: (
        "request denied for policy reasons",
        "the server insists on (or refuses) TLS: check ftp:// against ftps://",
        False,
    ),
    550: (
        "file unavailable",
        "no such file or directory, or no access to it: check the path in the location URL",
        False,
    ),
    551: ("page type unknown", "the server refused the file's type", False),
    552: ("exceeded storage allocation", "the account's quota on the server is full", False),
    553: ("file name not allowed", "the server refuses this file name", False),
}


class FtpReplyError(TransferError):
    """The FTP server refused a command with a 4xx/5xx reply: the FTP analogue of
    :class:`HttpStatusError` (RFC 959 §4.2). ``retry_now`` for the transient replies of a
    broken connection (421, 425, 426, 450, 451): the transfer resumes where it stopped."""

    def __init__(self, where: str, reply: int, doing: str, detail: str = "") -> None:
        meaning, advice, transient = _FTP_REPLIES.get(
            reply, ("refused" if reply >= 500 else "failed for now", "", 400 <= reply < 500)
        )
        text = f"{where}: the FTP server answered {reply} ({meaning}) to {doing}"
        if detail:
            text += f" [{detail}]"
        if advice:
            text += f": {advice}"
        super().__init__(text)
        self.reply = reply
        self.doing = doing
        self.retry_now = transient


class FtpLoginFailed(FtpReplyError):
    """The server refused the user name or password (530, 430, or 332/532 at login)."""


class FtpFileUnavailable(FtpReplyError):
    """No such file or directory on the server, or no access to it (550)."""


def ftp_reply_error(where: str, reply: int, doing: str, detail: str = "") -> FtpReplyError:
    """The exception for server reply ``reply`` to ``doing`` (``where`` is the location as
    logs may show it, without its password)."""
    if reply in (430, 530) or (doing == "login" and reply in (331, 332, 532)):
        return FtpLoginFailed(where, reply, doing, detail)
    if reply == 550:
        return FtpFileUnavailable(where, reply, doing, detail)
    return FtpReplyError(where, reply, doing, detail)
