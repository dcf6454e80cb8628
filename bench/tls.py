"""What the benches' TLS paths share: a throw-away CA and a server certificate for 127.0.0.1,
the server's ``ssl`` context, and the charge point's side of a wss:// CSMS (security profile 2).

TLS runs in the simulated module (AT+QSSLOPEN/QSSLSEND/QSSLRECV): the UART carries the same
plaintext as on the plain path, only the network carries TLS records. Certificates use RSA
keys, so the module's default suite (ECDHE-RSA-AES128-GCM-SHA256, TLS 1.2) applies.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from transport.tls import TlsSettings

SERVER_NAMES = ("127.0.0.1", "localhost")
# Security profile 2 authenticates with a password over TLS; the bench CSMS does not check it.
PASSWORD_HEX = "00112233445566778899aabbccddeeff00112233"


@dataclass(frozen=True, slots=True)
class BenchPki:
    ca: Path  # the root the charge point (and the module) trusts
    cert: Path  # the server's certificate chain
    key: Path  # and its key


def make_pki(directory: Path) -> BenchPki:
    """A CA and a server certificate for ``SERVER_NAMES``, as PEM files in ``directory``."""
    import trustme  # noqa: PLC0415 (only the parent makes certificates: the CSMS and the
    # charge point under callgrind start without it)

    directory.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA(organization_name="Bench CSMS root", key_type=trustme.KeyType.RSA)
    leaf = authority.issue_cert(*SERVER_NAMES, key_type=trustme.KeyType.RSA)
    pki = BenchPki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    authority.cert_pem.write_to_path(str(pki.ca))
    pki.cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(pki.key))
    pki.key.chmod(0o600)
    return pki


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS server context with ``cert`` and ``key`` (TLS 1.2 and up, OpenSSL's defaults)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def module_settings(ca: Path) -> TlsSettings:
    """What the driver is given to open a TLS socket in the module (profile 2, default suite)."""
    return TlsSettings(ca_file=ca)


def csms_security(ca: Path | None) -> str:
    """The ``[csms]`` lines for wss:// with ``ca`` (profile 2), or none for ws://."""
    if ca is None:
        return ""
    return (
        f'security_profile = 2\npassword = "{PASSWORD_HEX}"\npassword_format = "hex"\n'
        f'ca_file = "{ca}"\n'
    )
