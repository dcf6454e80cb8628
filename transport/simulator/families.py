"""The simulated modules, by the name ``modem.type`` gives their family.

The demo, the benchmarks and the tests pick a simulated module here, with the configuration
tables that point a charge point at it, so they run on any family without naming one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transport.simulator.quectel import ModuleProfile, QuectelModule


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

SIMULATED: dict[str, SimulatedFamily] = {family.name: family for family in (QUECTEL,)}


def simulated(name: str) -> SimulatedFamily:
    """The simulated module of family ``name``; KeyError for one there is no simulator of."""
    return SIMULATED[name]
