"""What a simulated module asks of the shell's network.

Every module family speaks to :class:`~transport.simulator.shell.SimulatorShell` in these
terms: a connection (:class:`OpenTcp`, :class:`OpenSsl`), bytes to send (:class:`SendTcp`), a
close (:class:`CloseTcp`) or a name lookup (:class:`Resolve`). The shell answers through the
module's network methods (``tcp_opened``, ``connect_failed`` with an
:class:`~transport.simulator.open_failure.OpenFailure``, ``tcp_received``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from transport.simulator.tls import TlsSettings


@dataclass(frozen=True, slots=True)
class OpenTcp:
    socket_id: int
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class OpenSsl:
    """Connect to ``host``:``port`` and run a TLS handshake as ``tls`` says."""

    socket_id: int
    host: str
    port: int
    tls: TlsSettings


@dataclass(frozen=True, slots=True)
class SendTcp:
    """Bytes for the socket's peer; for a TLS socket the plaintext the shell encrypts."""

    socket_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseTcp:
    socket_id: int
    abort: bool  # True: vanish (reboot, link loss); False: orderly FIN


@dataclass(frozen=True, slots=True)
class Resolve:
    """Look ``name`` up in the simulated network's DNS (the shell's ``hosts``, then the real
    resolver); the answer comes back by ``name_resolved(request_id, address or None)``."""

    request_id: int
    name: str
