"""What securing a connection to the CSMS takes (OCPP 1.6 security whitepaper §2, security
profiles 2 and 3), whoever terminates the TLS: the module (``AT+QSSL*``) or the host (``ssl``).

The whitepaper's rules that apply to the client, cited as A00.FR.n:

* TLS 1.2 or above only (A00.FR.312/416);
* the CSMS's certificate path is verified, and its name checked against the host name of the
  URL (A00.FR.307/308, 411/412);
* cipher suites with AES-GCM (A00.FR.318/422); nothing marked unsuitable (A00.FR.319/423);
* profile 3: the charge point presents its own certificate (A00.FR.402).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

# The GCM suites a module can be told to use (AT+QSSLCFG="ciphersuite" takes one hex id):
# forward secrecy (ECDHE) first, then the two RSA-key-exchange suites A00.FR.317 obliges every
# CSMS with an RSA certificate to offer (0X009C, 0X009D). A00.FR.318 wants the client to offer
# a 128- and a 256-bit suite of one family, which a one-suite module cannot (README).
MODULE_CIPHER_SUITES = {
    "0XC02B": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "0XC02F": "ECDHE-RSA-AES128-GCM-SHA256",
    "0XC02C": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "0XC030": "ECDHE-RSA-AES256-GCM-SHA384",
    "0X009C": "AES128-GCM-SHA256",
    "0X009D": "AES256-GCM-SHA384",
}
# The host offers all of them (TLS 1.3's suites are AES-GCM or ChaCha20-Poly1305 anyway).
HOST_CIPHERS = ":".join(MODULE_CIPHER_SUITES.values())


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """How the charge point secures its connection to the CSMS.

    ``ca_file``: the CSMS root certificate(s), PEM; None on the host link means the host's own
    trust store (a module has none, so a module link needs the file). ``client_cert`` and
    ``client_key``: the charge point certificate and its private key for security profile 3.
    ``cipher_suite``: the one suite a module is told to use (``MODULE_CIPHER_SUITES``).
    """

    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    cipher_suite: str = "0XC02F"

    def __post_init__(self) -> None:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("a client certificate needs its key, and a key its certificate")
        if self.cipher_suite.upper() not in MODULE_CIPHER_SUITES:
            raise ValueError(
                f"cipher suite {self.cipher_suite} is not one of the AES-GCM suites of the "
                f"security whitepaper: {', '.join(MODULE_CIPHER_SUITES)}"
            )

    @property
    def mutual(self) -> bool:
        """Security profile 3: the charge point authenticates with its certificate."""
        return self.client_cert is not None


def host_context(settings: TlsSettings) -> ssl.SSLContext:
    """An ``ssl`` client context that follows the whitepaper (see the module docstring)."""
    context = ssl.create_default_context(
        cafile=str(settings.ca_file) if settings.ca_file is not None else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(HOST_CIPHERS)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if settings.client_cert is not None and settings.client_key is not None:
        context.load_cert_chain(settings.client_cert, settings.client_key)
    return context
