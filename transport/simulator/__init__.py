"""Simulated modules that speak AT on a pseudo-terminal and open real TCP connections.

``QuectelModule`` (Quectel cellular) and ``SimpleLinkModule`` (TI SimpleLink CC3220 Wi-Fi) are
command interpreters (pure, no I/O); ``SimulatorShell`` runs either on a pty with UART pacing,
network latency and fault injection. ``python -m transport.simulator`` runs one by hand.
"""

from transport.simulator.quectel import ModuleProfile, QuectelModule, SimState
from transport.simulator.shell import SimulatedModule, SimulatorShell, Transcript
from transport.simulator.simplelink import AccessPoint, SimpleLinkModule, WifiProfile

__all__ = [
    "AccessPoint",
    "ModuleProfile",
    "QuectelModule",
    "SimState",
    "SimpleLinkModule",
    "SimulatedModule",
    "SimulatorShell",
    "Transcript",
    "WifiProfile",
]
