"""The simulated CC3220's Wi-Fi: WLAN commands, the link to the site's access point, DHCP, and
the faults that take them away (SPEC §4, §8; [guide] Tables 27-37, 64-65).

The site is :attr:`WifiProfile.access_point`; the module joins it when the SSID (and BSSID, if
given) match, it is in range, and the security type and key are right. Stored profiles and the
connection policy are kept in the NWP's flash, so they survive AT+Stop/AT+Start and resets; with
the ``auto`` policy the NWP joins by itself at start and whenever the access point comes back.
"""

from __future__ import annotations

from dataclasses import dataclass

from transport.simulator.simplelink_core import (
    NOT_MODELLED,
    PARSE_ERROR,
    AccessPoint,
    ModuleCore,
    Nwp,
    Reply,
    bitmask,
    number,
    process_error,
    split_parameters,
)

SECURITY_TYPES = ("OPEN", "WEP", "WEP_SHARED", "WPA_WPA2", "WPA_ENT", "WPS_PBC", "WPS_PIN")
EAP_METHODS = (
    "TLS",
    "TTLS_TLS",
    "TTLS_MSCHAPV2",
    "TTLS_PSK",
    "PEAP0_TLS",
    "PEAP0_MSCHAPV2",
    "PEAP0_PSK",
    "PEAP1_TLS",
    "PEAP1_PSK",
)
CONNECTION_POLICY = ("auto", "fast", "p2p", "auto_provisioning")  # [guide] Table 32
PROFILES = 7  # index 0..6 (SPEC §4)
ALL_PROFILES = 0xFF

# 802.11 reason codes of +eventwlan:disconnect (SPEC §4).
REASON_OUT_OF_RANGE = 4  # "inactivity": the access point is gone
REASON_STA_LEAVING = 8  # the host asked (AT+WlanDisconnect)
REASON_HANDSHAKE_TIMEOUT = 15  # 4-way handshake timeout: a wrong WPA key
REASON_8021X_FAILED = 23  # 802.1X authentication failed: wrong WPA_ENT credentials

WLAN_NOT_CONNECTED = -2071  # AT+WlanDisconnect with no link (SPEC §4)
TOO_MANY_PROFILES = -2062
NO_SUCH_PROFILE = -2074

# AT+WlanScan's security, cipher and key management of an access point ([guide] Table 34),
# lower case as TI's code prints its other values (SPEC §1).
SCAN_SECURITY = {
    "OPEN": ("open", "none", "none"),
    "WEP": ("wep", "wep104", "none"),
    "WEP_SHARED": ("wep", "wep104", "none"),
    "WPA_WPA2": ("wpa_wpa2", "ccmp", "psk"),
    "WPA_ENT": ("wpa2", "ccmp", "802_1_x"),
}


@dataclass(frozen=True, slots=True)
class Credentials:
    """What AT+WlanConnect or AT+WlanProfileAdd says about a network ([guide] Tables 27, 29)."""

    ssid: str
    bssid: str
    security: str
    key: str
    user: str = ""
    anonymous_user: str = ""
    eap: str = ""
    priority: int = 0


def _credentials(found: list[str], with_priority: bool) -> Credentials | None:
    """The parameters of AT+WlanConnect (7) or AT+WlanProfileAdd (8); trailing ones may be
    left out. None when they do not parse."""
    most = 8 if with_priority else 7
    if not 3 <= len(found) <= most or not found[0]:
        return None
    values = found + [""] * (most - len(found))
    security = values[2].upper()
    eap = values[6].upper()
    if security not in SECURITY_TYPES or (eap and eap not in EAP_METHODS):
        return None
    priority = number(values[7], 0, 15) if with_priority and values[7] else 0
    if priority is None:
        return None
    bssid = values[1].strip("[]").lower()
    return Credentials(values[0], bssid, security, values[3], values[4], values[5], eap, priority)


class WlanCommands(ModuleCore):
    """AT+WlanSetMode, AT+WlanConnect/Disconnect, profiles, policy, AT+WlanGet, AT+WlanScan,
    and the link's life; see the module docstring."""

    def _init_wlan(self) -> None:
        # In the NWP's flash: kept across resets (SPEC §4).
        self.wlan_profiles: dict[int, Credentials] = {}
        self.connection_policy: tuple[str, ...] = ()
        self.in_range = self.profile.access_point.in_range
        self.link: Credentials | None = None
        self._link_epoch = 0  # every change of the link: pending joins and DHCP check it

    def _reset_wlan(self) -> None:
        """The NWP stops, dies or resets: the link is gone without a word (SPEC §3)."""
        self._link_epoch += 1
        self.link = None
        self.has_ip = False

    # -- joining --

    def _attempt(self, credentials: Credentials, now: float) -> None:
        self._link_epoch += 1
        epoch = self._link_epoch
        self._at(
            now + self.profile.connect_time, lambda at: self._associate(credentials, epoch, at)
        )

    def _associate(self, credentials: Credentials, epoch: int, now: float) -> None:
        if epoch != self._link_epoch or self.nwp is not Nwp.RUNNING:
            return
        ap = self.profile.access_point
        if (
            not self.in_range
            or credentials.ssid != ap.ssid
            or (credentials.bssid and credentials.bssid != ap.bssid.lower())
        ):
            return  # no such network in range: nothing at all (SPEC §4)
        refused = _refusal(credentials, ap)
        if refused:
            self._event(f"+eventwlan:disconnect,{ap.ssid},{ap.bssid},{refused}")
            return
        self.link = credentials
        self._event(f"+eventwlan:connect,{ap.ssid},{ap.bssid}")
        self._at(now + self.profile.dhcp_time, lambda at: self._dhcp_done(epoch, at))

    def _dhcp_done(self, epoch: int, now: float) -> None:
        if epoch != self._link_epoch or self.link is None or self.has_ip:
            return
        self.has_ip = True
        p = self.profile
        self._event(f"+eventnetapp:ipv4_acquired,{p.ip_address},{p.gateway},{p.dns_server}")

    def _auto_connect(self, now: float) -> None:
        """The ``auto`` policy: join the best stored profile of a network in range, at NWP
        start and when the network comes back ([guide] Table 32; SPEC §4)."""
        if self.nwp is not Nwp.RUNNING or "auto" not in self.connection_policy:
            return
        if self.link is not None or not self.in_range:
            return
        ap = self.profile.access_point
        fitting = [
            c
            for c in self.wlan_profiles.values()
            if c.ssid == ap.ssid and (not c.bssid or c.bssid == ap.bssid.lower())
        ]
        if fitting:
            self._attempt(max(fitting, key=lambda c: c.priority), now)

    def _drop_link(self, reason: int | None) -> None:
        """The link is gone (event with ``reason``, or silently when None): every
        connection dies with it (SPEC §4)."""
        self._link_epoch += 1
        link, self.link = self.link, None
        self.has_ip = False
        self._kill_connections()
        if link is not None and reason is not None:
            ap = self.profile.access_point
            self._event(f"+eventwlan:disconnect,{ap.ssid},{ap.bssid},{reason}")
        self._network_event()

    # -- faults (SPEC §8) --

    def set_coverage(self, covered: bool, now: float) -> None:
        """The access point goes out of range (disconnect reason 4, every socket dead) or
        comes back (auto-connect if the policy and a stored profile say so)."""
        if covered == self.in_range:
            return
        self.in_range = covered
        if not covered:
            self._drop_link(REASON_OUT_OF_RANGE if self.link is not None else None)
        else:
            self._auto_connect(now)

    def lose_ip(self, now: float) -> None:
        """The IP address is lost (``ipv4_lost``, sockets dead); DHCP gets it back after
        ``dhcp_renew_after`` seconds if the link is still up (SPEC §8)."""
        if not self.has_ip:
            return
        self.has_ip = False
        self._kill_connections()
        self._event("+eventnetapp:ipv4_lost,0")
        epoch = self._link_epoch
        self._at(now + self.profile.dhcp_renew_after, lambda at: self._dhcp_done(epoch, at))
        self._network_event()

    def network_deactivates_pdp(self, context_id: int) -> None:
        """Quectel's fault, in Wi-Fi words: the IP address is lost (SPEC §8)."""
        self.lose_ip(self._last_now)

    # -- commands --

    def _cmd_wlansetmode(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or len(found) != 1 or found[0].upper() not in ("STA", "AP", "P2P"):
            return [PARSE_ERROR]
        if found[0].upper() != "STA":
            return [NOT_MODELLED]  # the charge point is a station; AP and P2P roles are not
        return ["OK"]

    def _cmd_wlanconnect(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        credentials = _credentials(found, with_priority=False) if found is not None else None
        if credentials is None:
            return [PARSE_ERROR]
        if credentials.security in ("WPS_PBC", "WPS_PIN"):
            return [NOT_MODELLED]
        if self.link is not None:
            # sl_WlanConnect while connected: the NWP leaves the current network first.
            self._drop_link(REASON_STA_LEAVING)
        self._attempt(credentials, now)
        return ["OK"]

    def _cmd_wlandisconnect(self, params: str | None, now: float) -> Reply:
        self._link_epoch += 1  # a join under way is abandoned too
        if self.link is None:
            return [process_error(WLAN_NOT_CONNECTED)]
        self._after_reply = lambda _at: self._drop_link(REASON_STA_LEAVING)
        return ["OK"]

    def _cmd_wlanprofileadd(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        credentials = _credentials(found, with_priority=True) if found is not None else None
        if credentials is None:
            return [PARSE_ERROR]
        free = [i for i in range(PROFILES) if i not in self.wlan_profiles]
        if not free:
            return [process_error(TOO_MANY_PROFILES)]
        self.wlan_profiles[free[0]] = credentials
        return [f"+wlanprofileadd:{free[0]}", "OK"]

    def _cmd_wlanprofileget(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        index = number(found[0]) if found is not None and len(found) == 1 else None
        if index is None:
            return [PARSE_ERROR]
        c = self.wlan_profiles.get(index)
        if c is None:
            return [process_error(NO_SUCH_PROFILE)]
        # Never the key ([guide] Table 30). The SSID as stored, unquoted, as TI prints it.
        return [
            f"+wlanprofileget:{c.ssid},{c.bssid},{c.security.lower()},{c.user},"
            f"{c.anonymous_user},{c.eap.lower()},{c.priority}",
            "OK",
        ]

    def _cmd_wlanprofiledel(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        index = number(found[0]) if found is not None and len(found) == 1 else None
        if index is None or (index >= PROFILES and index != ALL_PROFILES):
            return [PARSE_ERROR]
        if index == ALL_PROFILES:
            self.wlan_profiles.clear()
        else:
            self.wlan_profiles.pop(index, None)
        return ["OK"]

    def _cmd_wlanpolicyset(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or not 2 <= len(found) <= 3:
            return [PARSE_ERROR]
        kind = found[0].upper()
        if kind == "PM":
            # Power management changes latency and current, neither of which is modelled.
            return (
                ["OK"]
                if found[1].lower()
                in ("normal", "low_latency", "low_power", "always_on", "long_sleep")
                else [PARSE_ERROR]
            )
        if kind in ("SCAN", "P2P"):
            return [NOT_MODELLED]
        if kind != "CONNECTION":
            return [PARSE_ERROR]
        options = bitmask(found[1])
        if any(option not in CONNECTION_POLICY for option in options):
            return [PARSE_ERROR]
        if "p2p" in options or "auto_provisioning" in options:
            return [NOT_MODELLED]
        self.connection_policy = tuple(o for o in CONNECTION_POLICY if o in options)
        return ["OK"]

    def _cmd_wlanpolicyget(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or len(found) != 1:
            return [PARSE_ERROR]
        if found[0].upper() != "CONNECTION":
            return [NOT_MODELLED]
        return [f"+wlanpolicyget:{'|'.join(self.connection_policy)},", "OK"]  # SPEC §4

    def _cmd_wlanget(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or not 1 <= len(found) <= 2:
            return [PARSE_ERROR]
        if found[0].upper() != "CONNECTION":
            return [NOT_MODELLED]  # AP, P2P, RX filter and general settings
        link = self.link
        if link is None:
            return ["+wlanget:sta,disconnected,,,,", "OK"]
        ap = self.profile.access_point
        return [
            f"+wlanget:sta,station_connected,{link.security.lower()},{ap.ssid},{ap.bssid},",
            "OK",
        ]

    def _cmd_wlanset(self, params: str | None, now: float) -> Reply:
        return [NOT_MODELLED]  # AP-mode, country, TX power and filter settings

    def _cmd_wlanscan(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or len(found) != 2:
            return [PARSE_ERROR]
        first, count = number(found[0], 0, 29), number(found[1], 1, 30)
        if first is None or count is None:
            return [PARSE_ERROR]
        visible = [ap for ap in self._visible() if ap.security in SCAN_SECURITY]
        chosen = visible[first : first + count]
        if not chosen:
            return ["OK"]
        # One line, every entry ended by ";" as [guide] Table 34 shows it.
        entries = "".join(f"{_scan_entry(ap)};" for ap in chosen)
        return [f"+wlanscan:{entries}", "OK"]

    def _visible(self) -> list[AccessPoint]:
        site = [self.profile.access_point] if self.in_range else []
        return site + [ap for ap in self.profile.neighbours if ap.in_range]


def _refusal(credentials: Credentials, ap: AccessPoint) -> int:
    """The disconnect reason when ``credentials`` do not open ``ap``, 0 when they do."""
    enterprise = REASON_8021X_FAILED if "WPA_ENT" in (ap.security, credentials.security) else 0
    wrong = enterprise or REASON_HANDSHAKE_TIMEOUT
    if ap.security == "OPEN":
        return 0 if credentials.security == "OPEN" else wrong
    if ap.security in ("WEP", "WEP_SHARED"):
        fits = credentials.security in ("WEP", "WEP_SHARED") and credentials.key == ap.key
        return 0 if fits else wrong
    if ap.security == "WPA_ENT":
        fits = (
            credentials.security == "WPA_ENT"
            and credentials.user == ap.enterprise_user
            and credentials.key == ap.key
        )
        return 0 if fits else wrong
    fits = credentials.security == "WPA_WPA2" and credentials.key == ap.key
    return 0 if fits else wrong


def _scan_entry(ap: AccessPoint) -> str:
    security, cipher, key_management = SCAN_SECURITY[ap.security]
    ssid = "" if ap.hidden else ap.ssid
    return (
        f"{ssid},{ap.bssid},{ap.rssi},{ap.channel},{security},{int(ap.hidden)},{cipher},"
        f"{key_management}"
    )
