"""How the SimpleLink driver joins its Wi-Fi network, its time limits, and how it moves files
(TI's "SimpleLink Wi-Fi AT Command User's Guide", cited as [guide] Table n; the contract with
the simulator, SPEC §n)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from transport.modems.simplelink_protocol import MAX_RECV

WlanSecurity = Literal["open", "wep", "wpa_wpa2", "wpa_ent"]
Provisioning = Literal["connect", "profile", "stored"]

SECURITY_TYPES: dict[str, str] = {
    # our name: <SecurityType> of AT+WlanConnect / AT+WlanProfileAdd ([guide] Table 27)
    "open": "OPEN",
    "wep": "WEP",
    "wpa_wpa2": "WPA_WPA2",
    "wpa_ent": "WPA_ENT",
}
PROVISIONING = ("connect", "profile", "stored")
# <SecurityExtEapMethod> of AT+WlanConnect ([guide] Table 27).
EAP_METHODS = (
    "TLS",
    "TTLS_TLS",
    "TTLS_MSCHAPv2",
    "TTLS_PSK",
    "PEAP0_TLS",
    "PEAP0_MSCHAPv2",
    "PEAP0_PSK",
    "PEAP1_TLS",
    "PEAP1_PSK",
)

# What a command parameter can carry: printable ASCII without '"' (quoted when it holds a
# space or a comma, [guide] §5.1; a quote would end it early, SPEC §1).
_SAFE = re.compile(r"[\x20\x21\x23-\x7e]*")
_HEX_KEY = re.compile(r"[0-9A-Fa-f]{64}")


@dataclass(frozen=True, slots=True)
class SimpleLinkSettings:
    """The Wi-Fi network, time limits and transfer settings of a SimpleLink module.

    ``provisioning``:

    * ``connect``: AT+WlanConnect with these credentials at every bring-up (nothing is stored
      on the module);
    * ``profile``: the network is stored as the module's only profile (AT+WlanProfileAdd,
      rewritten only when the stored one differs) with the connection policy ``auto|fast``, so
      the network processor rejoins by itself after a coverage hole or a reset;
    * ``stored``: whatever is provisioned on the module already is used, nothing is written
      (``ssid`` only names the network in messages).

    ``key`` is a secret: it never appears in a log line or a ``repr``.
    """

    ssid: str | None = None
    security: WlanSecurity = "wpa_wpa2"
    key: str = field(default="", repr=False)
    eap_method: str = ""
    user: str = ""
    anonymous_user: str = ""
    provisioning: Provisioning = "connect"
    profile_priority: int = 7  # 0..15 ([guide] Table 29)
    join_timeout: float = 30.0  # s from AT+WlanConnect (or a reset) to an IP address
    command_timeout: float = 5.0
    sync_timeout: float = 10.0  # s of AT+Test before the module is declared unresponsive
    stop_timeout_ms: int = 200  # AT+Stop=<timeout> ([guide] Table 10)
    dns_timeout: float = 20.0
    # The module's limits: the driver's AT timeout for those commands is command_timeout
    # longer, so the module's own error (-110, a TLS handshake timeout) wins the race.
    connect_timeout: float = 60.0  # AT+Connect (the TLS handshake included), AT+HttpConnect
    close_flush_timeout: float = 10.0
    # RCVTIMEO of every socket (SPEC §5): a safety net, since an AT+Recv on an empty socket
    # blocks the whole module until data comes; the driver only receives what AT+Select found.
    recv_timeout: float = 10.0
    # The receive pump's AT+Select timeout: short after traffic, doubling while the line is
    # idle: outgoing data waits at most select_max for the line.
    select_min: float = 0.02
    select_max: float = 0.25
    rx_high_water: int = 64 * 1024
    tx_high_water: int = 4 * 1092
    # File transfers (AT+Http*): the CA for https:// file servers (PEM, installed on the
    # module as /cert/files-ca.pem, SPEC §6), bytes per Range request, bytes per body read.
    files_ca_file: Path | None = None
    piece_size: int = 64 * 1024
    read_chunk: int = MAX_RECV
    http_timeout: float = 60.0  # s for the server to answer a request
    # s an AT+Send may wait for room in the module's send buffer before its -110 (the module's
    # limit: the AT timeout is command_timeout longer)
    send_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.security not in SECURITY_TYPES:
            raise ValueError(
                f"wifi security must be one of {', '.join(SECURITY_TYPES)}, not {self.security!r}"
            )
        if self.provisioning not in PROVISIONING:
            raise ValueError(
                f"wifi provisioning must be one of {', '.join(PROVISIONING)}, "
                f"not {self.provisioning!r}"
            )
        for name in ("ssid", "key", "user", "anonymous_user"):
            value = getattr(self, name) or ""
            if not _SAFE.fullmatch(value):
                shown = "***" if name == "key" else repr(value)
                raise ValueError(
                    f"wifi {name} may only hold printable ASCII without '\"' (got {shown})"
                )
        if self.ssid is not None and not 1 <= len(self.ssid) <= 32:
            raise ValueError("wifi ssid must be 1 to 32 characters (IEEE 802.11)")
        if self.provisioning != "stored" and not self.ssid:
            raise ValueError(f"wifi provisioning {self.provisioning!r} needs an ssid")
        self._check_credentials()
        if not 0 <= self.profile_priority <= 15:
            raise ValueError("wifi profile_priority must be 0..15")
        if not 0 < self.recv_timeout <= 3600:
            raise ValueError("recv_timeout must be more than 0 and at most 3600 s")
        if not 0 < self.select_min <= self.select_max:
            raise ValueError("select_min must be positive and at most select_max")
        if not 1 <= self.read_chunk <= MAX_RECV:
            raise ValueError(f"read_chunk must be 1..{MAX_RECV}")
        if self.piece_size < self.read_chunk:
            raise ValueError("piece_size must be at least read_chunk")

    def _check_credentials(self) -> None:
        if self.provisioning == "stored":
            return
        if self.security == "open" and self.key:
            raise ValueError("an open Wi-Fi network takes no key")
        if self.security == "wpa_wpa2" and not (
            8 <= len(self.key) <= 63 or _HEX_KEY.fullmatch(self.key)
        ):
            raise ValueError("a WPA/WPA2 key is 8 to 63 characters (or 64 hex digits)")
        if self.security == "wep" and len(self.key) not in (5, 10, 13, 26):
            raise ValueError("a WEP key is 5 or 13 characters, or 10 or 26 hex digits")
        if self.security == "wpa_ent":
            if self.eap_method not in EAP_METHODS:
                raise ValueError(
                    f"WPA enterprise needs eap_method, one of {', '.join(EAP_METHODS)}"
                )
            if not self.user:
                raise ValueError("WPA enterprise needs a user")
        elif self.eap_method or self.user or self.anonymous_user:
            raise ValueError("eap_method, user and anonymous_user are for wpa_ent only")

    @property
    def network(self) -> str:
        """The network as messages name it."""
        return self.ssid if self.ssid else "the stored network"
