"""The simulated modules, by the name ``modem.type`` gives their family.

The demo, the benchmarks and the tests pick a simulated module here, with the configuration
tables that point a charge point at it, so they run on any family without naming one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transport.simulator.quectel import ModuleProfile, QuectelModule
from transport.simulator.simplelink import AccessPoint, SimpleLinkModule, WifiProfile


@dataclass(frozen=True, slots=True)
class SimulatedFamily:
    name: str  # as modem.type says it
    title: str  # what the module is, for people: "Quectel EC200U"
    # A fresh module; keyword arguments set fields of its profile (boot_time=0.2, ...).
    module: Callable[..., Any]
    # The [modem] table (and any table the family needs) of a configuration file that points
    # the charge point at this module on ``port`` at ``baud``.
    config: Callable[[str, int], str]
    coverage_hole: str  # what set_coverage(False) means on this family, for people
    # Commands that move payload on the UART: the demo counts them instead of printing each.
    data_commands: tuple[str, ...] = ()
    # How the module's log shows a TLS socket being opened, and a plain TCP one.
    tls_open: str = ""
    tcp_open: str = ""
    download: str = ""  # the command a firmware download goes through, for people


def _quectel_config(port: str, baud: int) -> str:
    return f'[modem]\ntype = "quectel"\nport = "{port}"\nbaudrate = {baud}\napn = "internet"\n'


QUECTEL = SimulatedFamily(
    name="quectel",
    title="Quectel EC200U (LTE Cat 1)",
    module=lambda **profile: QuectelModule(ModuleProfile(**profile)),
    config=_quectel_config,
    coverage_hole="the module loses the cell",
    data_commands=(
        "AT+QISEND",
        "AT+QIRD",
        "AT+QSSLSEND",
        "AT+QSSLRECV",
        "AT+QFREAD",
        "AT+QFWRITE",
    ),
    tls_open="AT+QSSLOPEN",
    tcp_open="AT+QIOPEN",
    download="AT+QHTTPGET",
)


def _simplelink_config(port: str, baud: int) -> str:
    site = AccessPoint()  # the simulated site network, as an installer would enter it
    return (
        f'[modem]\ntype = "simplelink"\nport = "{port}"\nbaudrate = {baud}\n'
        f'[wifi]\nssid = "{site.ssid}"\nsecurity = "{site.security.lower()}"\n'
        f'key = "{site.key}"\nprovisioning = "profile"\n'
    )


SIMPLELINK = SimulatedFamily(
    name="simplelink",
    title="TI SimpleLink CC3220SF (Wi-Fi)",
    module=lambda **profile: SimpleLinkModule(WifiProfile(**profile)),
    config=_simplelink_config,
    coverage_hole="the Wi-Fi access point drops out",
    data_commands=(
        "AT+Send",
        "AT+Recv",
        "AT+Select",
        "AT+HttpReadResBody",
        "AT+FileWrite",
    ),
    tls_open="AT+Socket=INET,STREAM,SEC",
    tcp_open="AT+Socket=INET,STREAM,TCP",
    download="AT+HttpSendReq/AT+HttpReadResBody",
)

SIMULATED: dict[str, SimulatedFamily] = {f.name: f for f in (QUECTEL, SIMPLELINK)}


def simulated(name: str) -> SimulatedFamily:
    """The simulated module of family ``name``; KeyError for one there is no simulator of."""
    return SIMULATED[name]
