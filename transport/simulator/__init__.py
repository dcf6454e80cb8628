"""Simulated modules that speak AT on a pseudo-terminal and open real TCP connections.

``QuectelModule`` is the command interpreter (pure, no I/O); ``SimulatorShell`` runs it on a
pty with UART pacing, network latency and fault injection. ``python -m transport.simulator``
runs one by hand.
"""

from transport.simulator.quectel import ModuleProfile, QuectelModule, SimState
from transport.simulator.shell import SimulatorShell, Transcript

__all__ = ["ModuleProfile", "QuectelModule", "SimState", "SimulatorShell", "Transcript"]
