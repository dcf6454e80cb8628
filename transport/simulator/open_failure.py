"""Why the simulated network could not make a connection a module asked for.

The shell knows *why* (no such name, refused, no answer, the TLS check that failed); each
module family turns the reason into its own code: Quectel says 565 for a name and 566 for the
rest (at-protocol.md §2.4, §3.2, §9.13), SimpleLink says a negative SimpleLink error number for
each (SPEC §5).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FailureKind(enum.Enum):
    DNS = "dns"  # the name does not resolve
    REFUSED = "refused"  # RST to the SYN: nobody listens on the port
    TIMEOUT = "timeout"  # no answer to the SYN within the connect timeout
    UNREACHABLE = "unreachable"  # any other network error (no route)
    TLS_UNKNOWN_CA = "tls unknown ca"  # the server's chain does not end at the CA file
    TLS_HOSTNAME = "tls hostname"  # the certificate does not name the expected host
    TLS_HANDSHAKE = "tls handshake"  # the server refused (alert, close) or nothing in common
    TLS_DATE = "tls date"  # the certificate is not valid at the module's clock
    TLS_TIMEOUT = "tls timeout"  # the handshake did not finish in time
    TLS_NO_CA_FILE = "tls no ca file"  # the CA file named is not on the module
    TLS_BAD_CA_FILE = "tls bad ca file"  # the CA file holds no certificate
    TLS_BAD_CLIENT_CERT = "tls bad client cert"  # missing or not a certificate
    TLS_BAD_CLIENT_KEY = "tls bad client key"  # missing, not a key, or not the cert's key


@dataclass(frozen=True, slots=True)
class OpenFailure:
    """``kind`` for the module's error code, ``detail`` for the simulator's log. A TLS
    warning (SimpleLink's -461: connected, but the date was wrong) is one too."""

    kind: FailureKind
    detail: str
