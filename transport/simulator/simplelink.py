"""A TI SimpleLink CC3220 running TI's AT command application, as a pure object: bytes from
the host in; bytes for the host and network actions out. Time is passed in (``now``), never
read, so every behaviour is testable without sleeping.

This is a second reading of the TI "SimpleLink Wi-Fi AT Command User's Guide" (seed 002, cited
"[guide] Table n") and of the wire contract transport/modems/simplelink_wire.md (cited "SPEC §n"),
deliberately independent of the driver: it shares no parsing or formatting code with
:mod:`transport.at` or :mod:`transport.modems`, so that a misreading in one shows up as a
failing test instead of cancelling out.

The module is the composition of its command groups: the machinery and the socket table
(:mod:`.simplelink_core`), sockets and DNS (:mod:`.simplelink_sockets`), Wi-Fi
(:mod:`.simplelink_wlan`), files (:mod:`.simplelink_files`) and the HTTP client
(:mod:`.simplelink_http`); the device commands and the NWP's life (SPEC §3) are here. What it
does not model answers with an ERROR (``ERROR:process command,-1``) and a comment, never
silently.
"""

from __future__ import annotations

from datetime import UTC, datetime

from transport.simulator.simplelink_core import (
    CLOCK_AT_POWER_ON,
    NOT_MODELLED,
    NWP_NOT_RUNNING,
    PARSE_ERROR,
    AccessPoint,
    Nwp,
    Reply,
    WifiProfile,
    number,
    process_error,
    split_parameters,
)
from transport.simulator.simplelink_files import FileCommands
from transport.simulator.simplelink_http import HttpClientCommands
from transport.simulator.simplelink_wlan import WlanCommands

__all__ = ["AccessPoint", "SimpleLinkModule", "WifiProfile"]


class SimpleLinkModule(FileCommands, WlanCommands, HttpClientCommands):
    """The command interpreter. Feed it with :meth:`receive` and the network methods (the
    shell's answers: ``tcp_opened``, ``connect_failed``, ``tcp_received``, ``tcp_sent``,
    ``tcp_closed``, ``name_resolved``); collect :meth:`take_output` (units never to be split
    by an event) and :meth:`take_actions`; call :meth:`tick` at :meth:`next_deadline`."""

    # In the guide, not in this simulator: mDNS, the NWP's servers, network utilities, MQTT.
    NOT_MODELLED_COMMANDS = frozenset(
        {
            "netappstart",
            "netappstop",
            "netappset",
            "netappget",
            "netappgethostbyservice",
            "netappsend",
            "netapprecv",
            "netapprcv",
            "netappgetservicelist",
            "netappregisterservice",
            "netappunregisterservice",
            "netcfgset",
            "netutilget",
            "netutilcmd",
            "mqttcreate",
            "mqttdelete",
            "mqttconnect",
            "mqttdisconnect",
            "mqttpublish",
            "mqttsubscribe",
            "mqttunsubscribe",
            "mqttset",
        }
    )

    def __init__(self, profile: WifiProfile | None = None, *, now: float = 0.0) -> None:
        self._init_core(profile or WifiProfile(), now)
        self._init_sockets()
        self._init_wlan()
        self._init_files()
        self._init_http()
        self.power_on(now)

    # -- power, reset, the NWP (SPEC §3) --

    def power_on(self, now: float) -> None:
        """Power the chip up at ``now``: the clock reads 2013-01-01 (SPEC §3); flash (files,
        Wi-Fi profiles, the connection policy) is as it was."""
        self._timers.clear()
        self.set_module_time(CLOCK_AT_POWER_ON, now)
        self._restart(now)

    def reboot(self, now: float) -> None:
        """A chip reset (watchdog, brown-out): sockets and HTTP clients are gone, the Wi-Fi
        link too, without a word; the AT application starts the NWP again (SPEC §3). The
        real-time clock keeps running."""
        self._forget_sockets(abort=True)
        self._timers.clear()
        self._restart(now)

    def _restart(self, now: float) -> None:
        self._pending = None
        self._inbuf.clear()
        self._busy_until = now
        self._forget_sockets(abort=True)
        self._reset_http()
        self._reset_files()
        self._reset_wlan()
        self.nwp = Nwp.STOPPED
        self._powered = True
        self._booting = True
        self._at(now + self.profile.boot_time, self._booted_up)

    def _booted_up(self, now: float) -> None:
        # Power-on prints nothing: the AT application starts the NWP, role STA (SPEC §3).
        self._booting = False
        self.nwp = Nwp.RUNNING
        self._auto_connect(now)

    def _stop_nwp(self, *, abort: bool) -> None:
        self._forget_sockets(abort=abort)
        self._reset_http()
        self._reset_files()
        self._reset_wlan()
        self.nwp = Nwp.STOPPED

    def fatal_error(self, now: float, event: str = "device_abort,1,0") -> None:
        """The NWP dies: ``+eventfatalerror:<event>``; sockets and Wi-Fi gone; every command
        but AT+Test/AT+Stop/AT+Start fails with -2018 until AT+Stop and AT+Start (SPEC §3).
        A command blocked at the time fails the same way."""
        if self.nwp is not Nwp.RUNNING:
            return
        self._event(f"+eventfatalerror:{event}")
        self._die()

    def request_reset(self, now: float, code: int = -1, sender: str = "wlan") -> None:
        """``+eventgeneral:reset_request,<code>,<sender>``: the NWP asks the host to restart
        it, and takes no command until it has (SPEC §3)."""
        if self.nwp is not Nwp.RUNNING:
            return
        self._event(f"+eventgeneral:reset_request,{code},{sender}")
        self._die()

    def _die(self) -> None:
        self._stop_nwp(abort=True)
        self.nwp = Nwp.DEAD
        self._abandon_blocked([process_error(NWP_NOT_RUNNING)])
        self._process(self._last_now)

    # -- device commands ([guide] Tables 9-13) --

    def _cmd_test(self, params: str | None, now: float) -> Reply:
        return ["OK"] if params is None else [PARSE_ERROR]

    def _cmd_start(self, params: str | None, now: float) -> Reply:
        if params is not None:
            return [PARSE_ERROR]
        if self.nwp is not Nwp.STOPPED:
            return [process_error(NWP_NOT_RUNNING)]  # SPEC §3: started already (or dead)
        self.nwp = Nwp.RUNNING
        self._after_reply = self._auto_connect
        return ["OK"]

    def _cmd_stop(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params) if params is not None else [""]
        if found is None or len(found) != 1:
            return [PARSE_ERROR]
        if found[0] and number(found[0], 0, 0xFFFF) is None:
            return [PARSE_ERROR]
        # The timeout lets transmissions end: the connections close in order. No disconnect
        # event after a stop the host asked for (SPEC §3).
        self._stop_nwp(abort=False)
        return ["OK"]

    def _cmd_get(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or len(found) != 2:
            return [PARSE_ERROR]
        what = (found[0].lower(), found[1].lower())
        p = self.profile
        if what == ("general", "version"):
            versions = (p.chip_id, p.fw_version, p.phy_version, p.nwp_version, p.rom_version)
            return [f"+get:{','.join(versions)}", "OK"]
        if what == ("general", "time"):
            t = datetime.fromtimestamp(self.module_time(now), UTC)
            return [f"+get:{t.hour},{t.minute},{t.second},{t.day},{t.month},{t.year}", "OK"]
        return [NOT_MODELLED]  # status bitmasks, persistence, the UDID

    def _cmd_set(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or len(found) < 2:
            return [PARSE_ERROR]
        if (found[0].lower(), found[1].lower()) != ("general", "time"):
            return [NOT_MODELLED]  # persistence
        values = [number(v) for v in found[2:]]
        if len(values) != 6 or any(v is None for v in values):
            return [PARSE_ERROR]
        hour, minute, second, day, month, year = (v for v in values if v is not None)
        try:
            utc = datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()
        except ValueError:
            return [PARSE_ERROR]
        self.set_module_time(utc, now)
        return ["OK"]

    def _cmd_netcfgget(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or len(found) != 1:
            return [PARSE_ERROR]
        what = found[0].upper()
        p = self.profile
        if what == "GET_MAC_ADDR":
            return [f"+netcfgget:{p.mac}", "OK"]
        if what == "IPV4_STA_ADDR":
            if self.has_ip:
                return [
                    f"+netcfgget:DHCP,{p.ip_address},{p.netmask},{p.gateway},{p.dns_server}",
                    "OK",
                ]
            return ["+netcfgget:DHCP,0.0.0.0,0.0.0.0,0.0.0.0,0.0.0.0", "OK"]  # SPEC §3
        return [NOT_MODELLED]  # AP, IPv6, DHCP client details
