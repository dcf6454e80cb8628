"""Driver for TI SimpleLink Wi-Fi modules (CC3220, CC3235) running TI's AT command application.

References: TI's "SimpleLink Wi-Fi AT Command User's Guide" (cited as [guide] Table n / §n),
at-protocol.md §8 (at-protocol §8.n), and the contract shared with the simulator,
transport/modems/simplelink_wire.md (SPEC §n), which decides where the guide is silent.

The module is a network processor (NWP) with its own TCP/IP stack behind a small AT
application: no bare ``AT`` (``AT+Test`` answers), results ``+name:values``, errors
``ERROR:<what>,<code>``, and *blocked* commands (AT+Connect, AT+Recv, AT+Select,
AT+NetAPPGetHostByName) that say OK at once and their result when the operation is over,
holding the line meanwhile (SPEC §2). The sockets and their receive pump are in
:mod:`transport.modems.simplelink_sockets`, the CSMS's TLS in
:mod:`transport.modems.simplelink_tls`, file transfers in
:mod:`transport.modems.simplelink_http`. This module brings the NWP up, joins the Wi-Fi
network, reports identity and health, and turns the module's events into stream failures:

* ``+eventwlan:disconnect`` and ``+eventnetapp:ipv4_lost``: every connection is dead
  (:class:`~transport.errors.NetworkLost`); the next open waits for the NWP to rejoin by itself
  (provisioning ``profile``/``stored``) or joins again (``connect``);
* ``+eventfatalerror:*``, ``+eventgeneral:reset_request``, and a socket the module no longer
  knows (-9, after a silent chip reset): every stream ends with
  :class:`~transport.errors.ModuleRebooted`, and the next open restarts the NWP (AT+Stop,
  AT+Start) and brings it up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn

from transport.at import AtChannel, AtParser, ChannelStats, Urc, split_fields
from transport.errors import (
    AtCommandFailed,
    ModemNotResponding,
    ModuleRebooted,
    SerialPortError,
    StreamClosed,
    TlsHandshakeFailed,
    TlsRefusal,
    UnsupportedLocation,
    WlanError,
)
from transport.ftp import FtpClient
from transport.link import RecoveryStep
from transport.modem import ModemIdentity
from transport.modems.simplelink_files import SimpleLinkFiles, WrittenFiles
from transport.modems.simplelink_http import SimpleLinkHttp
from transport.modems.simplelink_protocol import (
    EAP_REFUSED_REASON,
    ESEC_DATE_ERROR,
    EVENT_PREFIX,
    NOT_STARTED,
    PROFILE_INDEX_UNUSED,
    STATION_LEFT,
    WLAN_NOT_CONNECTED,
    WRONG_KEY_REASONS,
    chip_model,
    describe_disconnect,
    error_code,
    normalise_line,
    padded,
    quote,
    values,
)
from transport.modems.simplelink_settings import SECURITY_TYPES, SimpleLinkSettings
from transport.modems.simplelink_sockets import SimpleLinkSockets, SimpleLinkStream
from transport.modems.simplelink_tls import (
    CLOCK_AGREES,
    ClockTrust,
    SimpleLinkTls,
    server_date,
    socket_options,
)
from transport.serial_port import SerialPort
from transport.tls import TlsSettings

log = logging.getLogger(__name__)

MANUFACTURER = "Texas Instruments"
PROFILES = range(7)  # stored WLAN profiles 0..6 (SPEC §4)
ALL_PROFILES = 0xFF  # AT+WlanProfileDel: every profile ([guide] Table 31)
AUTO_FAST = "auto|fast"
# Commands whose first OK only says "accepted" (SPEC §2): the AT console waits for the second.
SIMPLELINK_BLOCKED_COMMANDS = (
    "AT+Connect",
    "AT+Recv",
    "AT+Select",
    "AT+NetAPPGetHostByName",
    "AT+Accept",
    "AT+RecvFrom",
    "AT+NetAPPPing",
)


@dataclass(frozen=True, slots=True)
class WlanHealth:
    """What the module says of its Wi-Fi connection ([guide] Tables 34, 37, 59)."""

    status: str  # "station_connected", "disconnected"
    ssid: str
    bssid: str
    security: str
    rssi_dbm: int | None
    ip_address: str | None
    gateway: str | None
    dns: str | None

    @property
    def connected(self) -> bool:
        return self.status == "station_connected"


@dataclass(frozen=True, slots=True)
class WlanInfo:
    """What bring-up found: who the module is and where it joined."""

    identity: ModemIdentity
    health: WlanHealth


@dataclass(frozen=True, slots=True)
class _StoredProfile:
    """A WLAN profile as AT+WlanProfileGet shows it (never with its key, [guide] Table 30)."""

    index: int
    ssid: str
    security: str
    user: str
    anonymous_user: str
    eap_method: str


class SimpleLinkModem:
    """A SimpleLink module on an :class:`AtChannel` (the channel must be started).

    ``written`` remembers which certificate files this process wrote (see
    :class:`~transport.modems.simplelink_files.WrittenFiles`); a link keeps one across channels.
    """

    def __init__(
        self,
        channel: AtChannel,
        settings: SimpleLinkSettings,
        written: WrittenFiles | None = None,
        trust: ClockTrust | None = None,
    ) -> None:
        self._at = channel
        self._s = settings
        self.sockets = SimpleLinkSockets(channel, settings, on_module_lost=self._module_lost)
        self.files = SimpleLinkFiles(channel, written)
        self.tls = SimpleLinkTls(channel, self.files, trust)
        self._http: SimpleLinkHttp | None = None
        # The CSMS's time when a session gave it (the link's use_csms_time): the module clock
        # is set from it before TLS, the HTTP client's https included.
        self.csms_time: Callable[[], datetime | None] = lambda: None
        self._associated: tuple[str, str] | None = None  # (ssid, bssid)
        self._ip: tuple[str, str, str] | None = None  # (address, gateway, dns)
        self._refused: int | None = None  # an 802.11 reason saying the credentials are wrong
        self._last_reason: int | None = None
        self._changed = asyncio.Event()
        self._brought_up = False
        self._nwp_lost: StreamClosed | None = None
        self.reboots = 0
        channel.subscribe(EVENT_PREFIX, self._on_event)
        channel.when_lost(self._on_port_lost)

    @staticmethod
    def parser() -> AtParser:
        """An AT parser for TI's spelling: events by their ``+event`` prefix, one spelling of
        every result (SPEC §1)."""
        return AtParser(urc_prefixes=(EVENT_PREFIX,), normalise=normalise_line)

    @property
    def channel(self) -> AtChannel:
        return self._at

    @property
    def settings(self) -> SimpleLinkSettings:
        return self._s

    @property
    def link_up(self) -> bool:
        """Brought up, the NWP alive, and an IP address as far as the events tell."""
        return self._brought_up and self._nwp_lost is None and self._ip is not None

    @property
    def needs_restart(self) -> bool:
        """The NWP failed, asked for a restart, or the chip reset: only AT+Stop/AT+Start (and
        a bring-up) cures it."""
        return self._nwp_lost is not None

    def http(self) -> SimpleLinkHttp:
        """The module's HTTP(S) client (for firmware and diagnostics), on this channel."""
        if self._http is None:
            self._http = SimpleLinkHttp(self._at, self._s, self.files, self._set_clock)
            self.sockets.http_live = self._http.live  # its sockets are not the table's
        return self._http

    async def _set_clock(self) -> bool:
        return await self.tls.clock.ensure(self.csms_time, self.tls.host_time)

    async def aclose(self) -> None:
        """Stop the receive pump (before the channel closes)."""
        await self.sockets.aclose()

    # -- bring-up --

    async def bring_up(self) -> WlanInfo:
        """From any state to a joined Wi-Fi network with an IP address: AT+Test until the
        module answers, AT+Stop/AT+Start to begin from a known NWP state, station mode, the
        network joined per ``provisioning``, then identity and health."""
        await self._sync()
        await self.restart_nwp()
        await self._station_mode()
        identity = await self.identity()
        log.info(
            "module %s %s, firmware %s, MAC %s",
            identity.manufacturer,
            identity.model,
            identity.revision,
            identity.mac,
        )
        await self._join()
        self._brought_up = True
        health = await self.health()
        log.info(
            "joined Wi-Fi %r (BSSID %s, %s, RSSI %s dBm), address %s, gateway %s",
            health.ssid,
            health.bssid,
            health.security,
            health.rssi_dbm if health.rssi_dbm is not None else "?",
            health.ip_address,
            health.gateway,
        )
        return WlanInfo(identity, health)

    async def _sync(self) -> None:
        """AT+Test until the module answers (the AT core answers it even with the NWP
        stopped, SPEC §3)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._s.sync_timeout
        while True:
            try:
                await self._at.probe()
            except ModemNotResponding:
                if loop.time() >= deadline:
                    raise
                continue
            return

    async def restart_nwp(self) -> None:
        """AT+Stop then AT+Start: every socket and HTTP client is gone, Wi-Fi too; a stored
        profile with the ``auto`` policy is joined again by the NWP itself (SPEC §3).

        The AT application has no command that resets the chip: this is the deepest restart
        the host can ask for over the UART."""
        self._brought_up = False
        await self._at.command(f"AT+Stop={self._s.stop_timeout_ms}", timeout=self._stop_time())
        lost = self._nwp_lost or ModuleRebooted(
            f"the driver restarted the module's network processor on {self._at.port_name}"
        )
        self.sockets.lose_all(lost)
        if self._http is not None:
            self._http.lost()
        self._forget_wlan()
        self._nwp_lost = None
        response = await self._at.command("AT+Start", timeout=self._stop_time(), check=False)
        if not response.result.success:
            if error_code(response.result) != NOT_STARTED:  # "already started" (SPEC §3)
                raise AtCommandFailed("AT+Start", response.result.text, None)
            log.debug("AT+Start: the network processor was running already")

    def _stop_time(self) -> float:
        return self._s.command_timeout + self._s.stop_timeout_ms / 1000

    async def _station_mode(self) -> None:
        """Station role ([guide] Table 35). A role change takes effect when the NWP starts
        again (TI's sl_WlanSetMode), so the NWP is restarted if it was in another role."""
        await self._at.command("AT+WlanSetMode=STA")
        response = await self._at.command(
            "AT+WlanGet=connection,", expect=("+wlanget:",), check=False
        )
        role = values(response.value("+wlanget:"))[0] if response.result.success else "sta"
        if role.lower() != "sta":
            log.warning("the module was in role %s: restarting it as a station", role)
            await self.restart_nwp()

    # -- joining --

    async def _join(self) -> None:
        mode = self._s.provisioning
        if mode == "connect":
            await self._no_auto_connect()
            await self._connect_command()
            await self._wait_for_address(f"joining {self._s.network}")
        elif mode == "profile":
            if await self._ensure_profile():
                await self.restart_nwp()  # the NWP joins a new profile from its start
            try:
                await self._wait_for_address(f"joining {self._s.network} (stored profile)")
            except WlanError:
                if self._refused not in WRONG_KEY_REASONS:
                    raise
                # The stored profile's key cannot be read back ([guide] Table 30): the one
                # refused may be an old one. Store the configured key once and try again.
                log.warning("the stored Wi-Fi key was refused: storing the configured one")
                await self._store_profile()
                await self.restart_nwp()
                await self._wait_for_address(f"joining {self._s.network} (stored profile)")
        else:
            try:
                await self._wait_for_address(f"joining {self._s.network} (stored provisioning)")
            except WlanError as error:
                if not await self._stored_profiles():
                    raise WlanError(
                        "provisioning is 'stored' but the module has no stored Wi-Fi profile: "
                        "provision it, or configure the network (provisioning 'profile')"
                    ) from error
                raise

    async def rejoin(self) -> None:
        """Leave the network and join it again (recovery step REACTIVATE_PDP: the Wi-Fi
        counterpart of re-activating a PDP context)."""
        await self._sync()
        if self._nwp_lost is not None or not self._brought_up:
            await self.bring_up()
            return
        if self._s.provisioning == "stored":
            # Without the credentials, only a restart makes the NWP join its profiles again.
            await self.restart_nwp()
        else:
            response = await self._at.command("AT+WlanDisconnect", check=False)
            if not response.result.success and error_code(response.result) != WLAN_NOT_CONNECTED:
                log.info("AT+WlanDisconnect answered %s", response.result.text)
            self.sockets.network_lost(f"the driver left Wi-Fi {self._s.network} to join again")
            self._forget_wlan()
            await self._connect_command()
        await self._wait_for_address(f"joining {self._s.network} again")
        self._brought_up = True

    async def ensure_link(self) -> WlanInfo | None:
        """Bring the link up for an open: all of it after the NWP failed (or before the first
        bring-up; then what it found is returned); after a Wi-Fi or IP loss, wait for the
        NWP's own reconnect (a stored profile with ``auto``, or DHCP renewing while still
        associated), or join again."""
        if not self._brought_up or self._nwp_lost is not None:
            return await self.bring_up()
        if self._ip is not None:
            return None
        own_reconnect = self._s.provisioning != "connect" or self._associated is not None
        if own_reconnect:
            try:
                await self._wait_for_address(f"waiting for the module to rejoin {self._s.network}")
            except WlanError:
                if self._s.provisioning != "connect":
                    raise
            else:
                return None
        await self.rejoin()
        return None

    async def _connect_command(self) -> None:
        s = self._s
        self._refused = None
        fields = self._credentials()
        shown = [*fields[:3], "***" if s.key else "", *fields[4:]]
        await self._at.command(
            "AT+WlanConnect=" + ",".join(fields), log_as="AT+WlanConnect=" + ",".join(shown)
        )

    def _credentials(self) -> list[str]:
        """SSID, BSSID, type, key, user, anonymous user, EAP method ([guide] Table 27)."""
        s = self._s
        return [
            quote(s.ssid or ""),
            "",
            SECURITY_TYPES[s.security],
            quote(s.key) if s.key else "",
            quote(s.user) if s.user else "",
            quote(s.anonymous_user) if s.anonymous_user else "",
            s.eap_method,
        ]

    async def _no_auto_connect(self) -> None:
        """Provisioning ``connect``: an ``auto`` policy left by an earlier configuration would
        have the NWP join a stored profile by itself, beside the host's AT+WlanConnect."""
        policy = await self._connection_policy()
        if "auto" in policy:
            log.info(
                "clearing the module's auto-connect policy (%s): provisioning is 'connect'", policy
            )
            await self._at.command("AT+WlanPolicySet=connection,,")

    async def _connection_policy(self) -> str:
        response = await self._at.command(
            "AT+WlanPolicyGet=connection", expect=("+wlanpolicyget:",), check=False
        )
        if not response.result.success:
            return ""
        found = values(response.value("+wlanpolicyget:"))
        return found[0].lower() if found else ""

    async def _ensure_profile(self) -> bool:
        """Provisioning ``profile``: the configured network as the only stored profile, and
        the ``auto|fast`` connection policy. Written only when what is stored differs
        (AT+WlanProfileGet shows all but the key); whether anything was written."""
        s = self._s
        stored = await self._stored_profiles()
        wanted = (s.ssid, SECURITY_TYPES[s.security].lower(), s.user, s.anonymous_user)
        same = [
            p
            for p in stored
            if (p.ssid, p.security.lower(), p.user, p.anonymous_user) == wanted
            and p.eap_method.upper() == s.eap_method.upper()
        ]
        wrote = False
        if len(stored) != 1 or not same:
            log.info(
                "storing Wi-Fi %r as the module's profile (stored: %s)",
                s.ssid,
                ", ".join(repr(p.ssid) for p in stored) or "none",
            )
            await self._store_profile()
            wrote = True
        policy = set(self._connection_policy_parts(await self._connection_policy()))
        if not {"auto", "fast"} <= policy:
            await self._at.command(f"AT+WlanPolicySet=connection,{AUTO_FAST},")
            wrote = True
        return wrote

    @staticmethod
    def _connection_policy_parts(policy: str) -> list[str]:
        return [part.strip() for part in policy.replace("[", "").replace("]", "").split("|")]

    async def _store_profile(self) -> None:
        fields = self._credentials()
        shown = [*fields[:3], "***" if self._s.key else "", *fields[4:]]
        await self._at.command(f"AT+WlanProfileDel={ALL_PROFILES}")
        priority = str(self._s.profile_priority)
        await self._at.command(
            "AT+WlanProfileAdd=" + ",".join([*fields, priority]),
            expect=("+wlanprofileadd:",),
            log_as="AT+WlanProfileAdd=" + ",".join([*shown, priority]),
        )

    async def _stored_profiles(self) -> list[_StoredProfile]:
        profiles = []
        for index in PROFILES:
            response = await self._at.command(
                f"AT+WlanProfileGet={index}", expect=("+wlanprofileget:",), check=False
            )
            if not response.result.success:
                if error_code(response.result) != PROFILE_INDEX_UNUSED:
                    log.info("AT+WlanProfileGet=%d answered %s", index, response.result.text)
                continue
            f = padded(values(response.value("+wlanprofileget:")), 7)
            profiles.append(_StoredProfile(index, f[0], f[2], f[3], f[4], f[5]))
        return profiles

    async def _wait_for_address(self, doing: str) -> None:
        """Until ``+eventnetapp:ipv4_acquired`` (after ``+eventwlan:connect``), or a
        disconnect whose reason says the credentials are wrong, or ``join_timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._s.join_timeout
        while self._ip is None:
            if self._refused is not None:
                self._raise_refused(doing)
            if self._nwp_lost is not None:
                raise WlanError(f"{doing}: {self._nwp_lost}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                self._raise_timeout(doing)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()

    def _raise_refused(self, doing: str) -> NoReturn:
        reason = self._refused
        if reason == EAP_REFUSED_REASON:
            what = (
                f"802.1X credentials refused by {self._s.network}: check the user, the "
                "anonymous user and the EAP method"
            )
        else:
            what = f"wrong Wi-Fi key for {self._s.network}: check the key and the security type"
        raise WlanError(f"{doing}: {what} ({describe_disconnect(reason)})")

    def _raise_timeout(self, doing: str) -> NoReturn:
        timeout = self._s.join_timeout
        if self._associated is not None:
            raise WlanError(
                f"{doing}: associated with {self._associated[0]!r} but no IP address from DHCP "
                f"within {timeout:g} s: check the network's DHCP server"
            )
        last = (
            f" (last disconnect: {describe_disconnect(self._last_reason)})"
            if self._last_reason is not None
            else ""
        )
        raise WlanError(
            f"{doing}: no access point named {self._s.network!r} answered within "
            f"{timeout:g} s{last}: check the SSID, the access point and the distance to it"
        )

    def _forget_wlan(self) -> None:
        self._associated = None
        self._ip = None
        self._refused = None
        self._last_reason = None
        self._changed.set()

    # -- identity and health --

    async def identity(self) -> ModemIdentity:
        """Chip, firmware and NWP versions ([guide] Table 11) and the MAC ([guide] Table 59)."""
        version = await self._at.command("AT+Get=General,Version", expect=("+get:",))
        fields = padded(values(version.value("+get:")), 5)
        chip, firmware, nwp = fields[0], fields[1], fields[3]
        mac_response = await self._at.command("AT+NetCfgGet=GET_MAC_ADDR", expect=("+netcfgget:",))
        mac = values(mac_response.value("+netcfgget:"))[0].lower() or None
        revision = f"{firmware} (NWP {nwp})" if nwp else firmware
        return ModemIdentity(MANUFACTURER, chip_model(chip), revision, "", None, None, mac)

    async def health(self) -> WlanHealth:
        """The connection (AT+WlanGet=connection), the RSSI of the access point it is
        associated with (AT+WlanScan) and the address (AT+NetCfgGet=IPV4_STA_ADDR)."""
        response = await self._at.command("AT+WlanGet=connection,", expect=("+wlanget:",))
        f = padded(values(response.value("+wlanget:")), 5)
        status, security, ssid, bssid = f[1].lower(), f[2].lower(), f[3], f[4].lower()
        rssi = await self._rssi(bssid) if status == "station_connected" and bssid else None
        address = await self._at.command("AT+NetCfgGet=IPV4_STA_ADDR", expect=("+netcfgget:",))
        a = padded(values(address.value("+netcfgget:")), 5)
        ip, gateway, dns = (None if v in ("", "0.0.0.0") else v for v in (a[1], a[3], a[4]))
        return WlanHealth(status, ssid, bssid, security, rssi, ip, gateway, dns)

    async def _rssi(self, bssid: str) -> int | None:
        response = await self._at.command("AT+WlanScan=0,30", expect=("+wlanscan:",), check=False)
        if not response.result.success:
            return None
        for line in response.values("+wlanscan:"):
            for entry in line.split(";"):
                f = split_fields(entry)
                if len(f) >= 3 and f[1].lower() == bssid:
                    with contextlib.suppress(ValueError):
                        return int(f[2])
        return None

    # -- sockets --

    async def open_tcp(self, host: str, port: int) -> SimpleLinkStream:
        return await self.sockets.open(host, port)

    async def open_tls(
        self,
        host: str,
        port: int,
        tls: TlsSettings,
        csms_time: Callable[[], datetime | None] = lambda: None,
    ) -> SimpleLinkStream:
        """A SEC socket to ``host:port`` verified as ``tls`` says (see
        :mod:`transport.modems.simplelink_tls`)."""
        dated = await self.tls.prepare(tls, csms_time)
        trust = self.tls.clock.trust
        # Under the controller's clock alone a date warning is put to the CSMS's own clock
        # (see simplelink_tls): the connection stays up for that question only.
        on_trial = dated and trust.source == "the controller"
        stream = await self._open_tls(host, port, tls, dates_checked=dated and not on_trial)
        if not (on_trial and stream.date_warning):
            return stream
        served = await server_date(stream, host)  # closes the stream
        controller = self.tls.host_time()
        if served is None or abs(served - controller) <= CLOCK_AGREES:
            said = (
                "the CSMS's own clock agrees with the controller's"
                if served is not None
                else "the CSMS gave no Date to check the controller's clock against"
            )
            raise TlsHandshakeFailed(
                f"TLS with {host}:{port}: the CSMS certificate is outside its validity dates "
                f"(process command {ESEC_DATE_ERROR}), and {said}: refused",
                ESEC_DATE_ERROR,
                TlsRefusal.CSMS_CERTIFICATE,
            )
        trust.correction = served - controller
        log.warning(
            "the controller's clock is %s off the CSMS's (Date header %s): the module clock "
            "is set from the CSMS's; check the controller's clock",
            trust.correction,
            f"{served:%Y-%m-%d %H:%M:%S %Z}",
        )
        await self.tls.prepare(tls, csms_time)
        return await self._open_tls(host, port, tls, dates_checked=True)

    async def _open_tls(
        self, host: str, port: int, tls: TlsSettings, *, dates_checked: bool
    ) -> SimpleLinkStream:
        return await self.sockets.open(
            host,
            port,
            secure=True,
            options=lambda sd: socket_options(sd, tls, host),
            dates_checked=dates_checked,
        )

    # -- events --

    def _on_event(self, urc: Urc) -> None:
        name, _, rest = urc.text.partition(":")
        fields = split_fields(rest)
        kind = fields[0].lower() if fields else ""
        if name == "+eventwlan":
            self._on_wlan(kind, fields, urc.text)
        elif name == "+eventnetapp":
            self._on_netapp(kind, fields, urc.text)
        elif name == "+eventfatalerror" or (name == "+eventgeneral" and kind == "reset_request"):
            log.error("module on %s: %s", self._at.port_name, urc.text)
            self._module_lost(
                ModuleRebooted(
                    f"the module's network processor failed ({urc.text}); it is restarted "
                    "(AT+Stop, AT+Start) before the next connection"
                )
            )
        elif name == "+eventsock" and kind == "tx_failed":
            log.warning("module: a send failed (%s)", urc.text)
        else:
            log.info("module event: %s", urc.text)

    def _on_wlan(self, kind: str, fields: list[str], text: str) -> None:
        if kind == "connect":
            ssid, bssid = padded(fields, 3)[1:3]
            self._associated = (ssid, bssid.lower())
            log.info("associated with Wi-Fi %r (BSSID %s)", ssid, bssid)
        elif kind == "disconnect":
            reason = int(fields[3]) if len(fields) > 3 and fields[3].lstrip("-").isdigit() else None
            was = self._associated[0] if self._associated else padded(fields, 2)[1]
            self._associated = None
            self._ip = None
            self._last_reason = reason
            if reason in (*WRONG_KEY_REASONS, EAP_REFUSED_REASON):
                self._refused = reason
            level = logging.INFO if reason == STATION_LEFT else logging.WARNING
            log.log(level, "Wi-Fi %r lost (%s)", was, describe_disconnect(reason))
            self.sockets.network_lost(f"Wi-Fi {was!r} lost ({describe_disconnect(reason)})")
        else:
            log.info("module event: %s", text)
        self._changed.set()

    def _on_netapp(self, kind: str, fields: list[str], text: str) -> None:
        if kind == "ipv4_acquired":
            ip, gateway, dns = padded(fields, 4)[1:4]
            self._ip = (ip, gateway, dns)
            self.sockets.network_back()
            log.info("IP address %s (gateway %s, DNS %s)", ip, gateway, dns)
        elif kind == "ipv4_lost":
            self._ip = None
            log.warning("the module lost its IP address (%s)", text)
            self.sockets.network_lost(f"the IP address was lost ({text})")
        else:
            log.info("module event: %s", text)
        self._changed.set()

    def _module_lost(self, error: StreamClosed) -> None:
        """The NWP is dead or the chip reset: everything on it is gone until AT+Stop/AT+Start."""
        if self._nwp_lost is None:
            self.reboots += 1
            log.warning("%s", error)
        self._nwp_lost = error
        self._associated = None
        self._ip = None
        self.sockets.lose_all(error)
        if self._http is not None:
            self._http.lost()
        self._changed.set()

    def _on_port_lost(self, error: Exception) -> None:
        self._brought_up = False
        self.sockets.lose_all(StreamClosed(f"the serial port {self._at.port_name} is gone"))


class SimpleLinkLink:
    """The daemon's handle on a SimpleLink module (see :class:`transport.link.Link`).

    It opens the serial port and brings the module up when a stream is needed, and maps each
    recovery step onto the driver: REOPEN nothing, REACTIVATE_PDP a Wi-Fi rejoin, RADIO_CYCLE
    and RESTART_MODULE an NWP restart (AT+Stop/AT+Start) and bring-up: the AT application has
    no command that resets the chip itself. When the port or the module is gone, the channel
    is dropped and the next attempt opens the port again.
    """

    def __init__(self, path: str, baudrate: int, settings: SimpleLinkSettings) -> None:
        self._path = path
        self._baudrate = baudrate
        self._settings = settings
        self._written = WrittenFiles()  # outlives channels: see SimpleLinkFiles
        self._clock_trust = ClockTrust()  # likewise: see simplelink_tls
        self._channel: AtChannel | None = None
        self._modem: SimpleLinkModem | None = None
        self._identity: ModemIdentity | None = None
        self._csms_time: Callable[[], datetime | None] = lambda: None

    @property
    def description(self) -> str:
        model = f"TI {self._identity.model}" if self._identity else "TI SimpleLink module"
        return f"{model} on {self._path}, Wi-Fi {self._settings.network}"

    @property
    def identity(self) -> ModemIdentity | None:
        return self._identity

    @property
    def modem(self) -> SimpleLinkModem | None:
        return self._modem

    @property
    def at_stats(self) -> ChannelStats | None:
        """What crossed the serial line since the port was opened (None while it is not)."""
        return self._channel.stats if self._channel is not None else None

    def use_csms_time(self, now: Callable[[], datetime | None]) -> None:
        self._csms_time = now

    def _csms_now(self) -> datetime | None:
        return self._csms_time()

    async def open(self, host: str, port: int, *, tls: TlsSettings | None) -> SimpleLinkStream:
        modem = await self._modem_brought_up()
        if tls is None:
            return await modem.open_tcp(host, port)
        return await modem.open_tls(host, port, tls, self._csms_time)

    async def http_client(self) -> SimpleLinkHttp:
        modem = await self._modem_brought_up()
        return modem.http()

    async def ftp_client(self) -> FtpClient:
        raise UnsupportedLocation(
            "the SimpleLink module has no FTP client (its AT command set has HTTP only): "
            "use an http:// or https:// location"
        )

    async def recover(self, step: RecoveryStep) -> None:
        if step is RecoveryStep.REOPEN:
            return
        modem = await self._modem_on_port()
        try:
            if step is RecoveryStep.REACTIVATE_PDP:
                log.warning("recovery: leaving and joining Wi-Fi %s again", self._settings.network)
                await modem.rejoin()
            else:
                # RADIO_CYCLE and RESTART_MODULE alike: the AT application cannot reset the
                # chip, and AT+Stop/AT+Start restarts the radio and the whole network stack.
                log.warning("recovery: restarting the network processor (AT+Stop, AT+Start)")
                self._identity = (await modem.bring_up()).identity
        except (ModemNotResponding, SerialPortError):
            await self._drop_channel()
            raise

    async def close(self) -> None:
        await self._drop_channel()

    async def _modem_on_port(self) -> SimpleLinkModem:
        if self._channel is not None and self._channel.failed:
            await self._drop_channel()
        if self._modem is None:
            channel = simplelink_channel(self._path, self._baudrate, self._settings)
            channel.start()
            self._channel = channel
            self._modem = SimpleLinkModem(channel, self._settings, self._written, self._clock_trust)
            self._modem.csms_time = self._csms_now  # late: use_csms_time may come later
        return self._modem

    async def _modem_brought_up(self) -> SimpleLinkModem:
        modem = await self._modem_on_port()
        if not modem.link_up:
            try:
                info = await modem.ensure_link()
                if info is not None:
                    self._identity = info.identity
            except (ModemNotResponding, SerialPortError):
                await self._drop_channel()
                raise
        return modem

    async def _drop_channel(self) -> None:
        channel, modem = self._channel, self._modem
        self._channel, self._modem = None, None
        if modem is not None:
            await modem.aclose()
        if channel is not None:
            await channel.close()


def simplelink_channel(path: str, baudrate: int, settings: SimpleLinkSettings) -> AtChannel:
    """An AT channel (not started) on ``path`` with TI's parser, normaliser and probe."""
    port = SerialPort.open(path, baudrate)
    return AtChannel(
        port,
        SimpleLinkModem.parser(),
        default_timeout=settings.command_timeout,
        probe_command="AT+Test",  # TI's AT core has no bare AT ([guide] Table 13)
    )


@contextlib.asynccontextmanager
async def open_simplelink(
    path: str, baudrate: int, settings: SimpleLinkSettings
) -> AsyncIterator[SimpleLinkModem]:
    """Open the serial port and a channel on it, and give a driver (not yet brought up)."""
    async with simplelink_channel(path, baudrate, settings) as channel:
        modem = SimpleLinkModem(channel, settings)
        try:
            yield modem
        finally:
            await modem.aclose()


async def describe_simplelink(
    path: str, baudrate: int, settings: SimpleLinkSettings
) -> list[tuple[str, str]]:
    """The rows of ``chargepoint modem info``: the module brought up and what it reports."""
    async with open_simplelink(path, baudrate, settings) as modem:
        info = await modem.bring_up()
    identity, health = info.identity, info.health
    rssi = f"{health.rssi_dbm} dBm" if health.rssi_dbm is not None else "unknown"
    return [
        ("module", f"{identity.manufacturer} {identity.model} on {path}"),
        ("firmware", identity.revision),
        ("MAC", identity.mac or "unknown"),
        ("Wi-Fi SSID", health.ssid or "none"),
        ("Wi-Fi security", health.security or "unknown"),
        ("Wi-Fi BSSID", health.bssid or "none"),
        ("RSSI", rssi),
        ("IP address", health.ip_address or "none"),
        ("gateway", health.gateway or "none"),
        ("DNS", health.dns or "none"),
    ]
