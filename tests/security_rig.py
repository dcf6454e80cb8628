"""What the end-to-end security-extension tests share (tests/test_octt_security.py,
tests/test_private_key_never_leaves.py): a charge point on security profile 3 through a
simulated module of either family, a real wss:// CSMS peer that asks for its client
certificate, certificates made at test time (tests/security_pki.py), and the checks a CSMS (the
OCTT) makes on its own: the CSR's subject and signature, certificateHashData computed
independently of the charge point's code, which client certificate a connection presented.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from chargepoint.model.certificates import (
    PrivateKey,
    generate_key,
    make_csr,
    private_key_pem,
)
from tests.harness import Rig, Stack, rig
from tests.peers import Csms, ServerTls
from tests.security_pki import Authority, SecurityPki, sign_csr

CP = "CP-TEST/1"
VENDOR = "TestVendor"  # charge_point.vendor in tests/harness.make_config: CpoName's default


@dataclass(frozen=True)
class ModuleWire:
    """What a module family's command log shows when a file goes to the module."""

    key_upload: str  # the charge point's private key (profile 3)
    ca_upload: str  # the CSMS root bundle
    key_file: str  # the module's name for the key file


WIRE = {
    "quectel": ModuleWire(
        key_upload='AT+QFUPL="UFS:cp-key.pem"',
        ca_upload='AT+QFUPL="UFS:csms-ca.pem"',
        key_file="UFS:cp-key.pem",
    ),
    "simplelink": ModuleWire(
        key_upload="AT+FileOpen=/cert/client-key.pem,CREATE",
        ca_upload="AT+FileOpen=/cert/csms-ca.pem,CREATE",
        key_file="/cert/client-key.pem",
    ),
}


# -- files --


def write_private_key(path: Path, key: PrivateKey) -> Path:
    """The key as an installer leaves it: PEM, readable by the daemon's user only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_key_pem(key))
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class ClientCertificate:
    """A charge point certificate and its key on disk."""

    cert: Path
    key_file: Path
    key: PrivateKey
    leaf: x509.Certificate

    @property
    def serial(self) -> str:
        return serial_hex(self.leaf)


def factory_certificate(
    directory: Path,
    ca: Authority,
    *,
    key_type: str = "ec-p256",
    valid_for: timedelta = timedelta(days=3650),
    name: str = "factory",
) -> ClientCertificate:
    """The charge point certificate a factory installs: a key and a CSR made with the model's
    own functions (CN = the identity, O = the vendor), signed by ``ca``, expiring
    ``valid_for`` from now."""
    directory.mkdir(parents=True, exist_ok=True)
    key = generate_key(key_type)
    csr = make_csr(key, charge_point_id=CP, cpo_name=VENDOR)
    yesterday = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    chain = sign_csr(csr, ca, days=(valid_for + timedelta(days=1)).days, not_before=yesterday)
    cert = directory / f"{name}.pem"
    cert.write_text(chain)
    key_file = write_private_key(directory / f"{name}.key", key)
    return ClientCertificate(
        cert, key_file, key, x509.load_pem_x509_certificates(chain.encode())[0]
    )


@dataclass(frozen=True)
class CsmsFiles:
    """The CSMS side on disk: its TLS server certificate and key, the CA it checks charge point
    certificates against, and the Central System root the charge point trusts."""

    server_cert: Path
    server_key: Path
    client_ca: Path
    csms_root: Path

    def tls(self) -> ServerTls:
        return ServerTls(self.server_cert, self.server_key, client_ca=self.client_ca)


def csms_files(directory: Path, server_ca: Authority, client_ca: Authority) -> CsmsFiles:
    """A server certificate from ``server_ca`` for 127.0.0.1; charge point certificates
    checked against ``client_ca``."""
    directory.mkdir(parents=True, exist_ok=True)
    chain, key = server_ca.issue_server("127.0.0.1", "localhost")
    server_cert, server_key = directory / "server.pem", directory / "server.key"
    server_cert.write_text(chain)
    server_key.write_bytes(key)
    server_key.chmod(0o600)
    return CsmsFiles(
        server_cert,
        server_key,
        client_ca.write(directory / "client-ca.pem"),
        server_ca.write(directory / "csms-root.pem"),
    )


@contextlib.asynccontextmanager
async def secure_rig(
    stack: Stack,
    pki: SecurityPki,
    directory: Path,
    *,
    client: ClientCertificate | None = None,
    key_type: str = "ec-p256",
    profile: int = 3,
    **config: Any,
) -> AsyncIterator[Rig]:
    """A booted charge point on security profile 3: it trusts ``pki.csms_root`` (csms.ca_file)
    and presents ``client`` (by default a factory certificate from ``pki.csms_root``, the OCTT
    being both Central System and Certificate Authority); the CSMS serves a certificate from
    ``pki.csms_root`` and trusts charge point certificates from it only. ``profile=2``: the
    same without client certificates (Basic auth)."""
    files = csms_files(directory / "csms", pki.csms_root, pki.csms_root)
    client = client or factory_certificate(directory / "cp", pki.csms_root)
    tls = files.tls() if profile == 3 else ServerTls(files.server_cert, files.server_key)
    async with rig(
        stack,
        tls=tls,
        security_profile=profile,
        ca_file=str(files.csms_root),
        client_certificate=str(client.cert),
        client_key=str(client.key_file),
        key_type=key_type,
        **config,
    ) as r:
        yield r


# -- what the CSMS sees --


def serial_hex(cert: x509.Certificate) -> str:
    """As the peers report a client certificate's serial: upper-case hex, no leading zeros."""
    return format(cert.serial_number, "X")


def connects(peer: Csms) -> list[dict[str, Any]]:
    return [e for e in peer.events if e["event"] == "connect"]


async def wait_connect_with(peer: Csms, serial: str, after: int = 0, timeout: float = 60) -> None:
    """Until a connection after the first ``after`` presents the certificate ``serial``."""
    await peer.wait_for(
        lambda _: any(c.get("client_serial") == serial for c in connects(peer)[after:]), timeout
    )


def security_events(r: Rig, kind: str | None = None) -> list[dict[str, Any]]:
    return [c for c in r.calls("SecurityEventNotification") if kind in (None, c["type"])]


async def wait_security_event(r: Rig, kind: str, count: int = 1, timeout: float = 30) -> None:
    await r.peer.wait_for(lambda _: len(security_events(r, kind)) >= count, timeout)


def frames(peer: Csms) -> list[tuple[int, list[Any]]]:
    """(index in the peer's events, frame) of every frame in either direction."""
    found = []
    for index, event in enumerate(peer.events):
        if event["event"] == "frame":
            with contextlib.suppress(ValueError):
                found.append((index, json.loads(event["text"])))
    return found


def answer_index(peer: Csms, action: str) -> int:
    """Where the charge point's answer to the CSMS's last ``action`` is in the peer's
    events (for the order the OCTT checks: a .conf before the request it leads to)."""
    sent = [f[1] for _, f in frames(peer) if f[0] == 2 and f[2] == action]
    assert sent, f"the CSMS sent no {action}"
    message_id = sent[-1]
    for index, frame in frames(peer):
        if frame[0] in (3, 4) and frame[1] == message_id:
            return index
    raise AssertionError(f"no answer to {action}")


def call_index(peer: Csms, method: str, predicate: Any = lambda _: True) -> int:
    """Where the charge point's first ``method`` matching ``predicate`` is in the events."""
    for index, event in enumerate(peer.events):
        if event["event"] == "call" and event["method"] == method and predicate(event["params"]):
            return index
    raise AssertionError(f"no {method}")


# -- SignCertificate (A02) --


def parse_csr(pem: str) -> x509.CertificateSigningRequest:
    return x509.load_pem_x509_csr(pem.encode())


def subject_field(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def csr_subject(csr: x509.CertificateSigningRequest) -> tuple[str | None, str | None]:
    """(O, CN)."""
    return (
        subject_field(csr.subject, NameOID.ORGANIZATION_NAME),
        subject_field(csr.subject, NameOID.COMMON_NAME),
    )


def key_type_of(public: Any) -> str:
    if isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1):
        return "ec-p256"
    if isinstance(public, rsa.RSAPublicKey):
        return f"rsa-{public.key_size}"
    return type(public).__name__


async def request_signing(r: Rig) -> str:
    """OCTT TC_074/077 steps 1-4: ExtendedTriggerMessage(SignChargePointCertificate) without a
    connectorId is Accepted, then the charge point sends SignCertificate.req (the peer answers
    Accepted); returns its CSR."""
    before = len(r.calls("SignCertificate"))
    answer = await r.peer.call(
        "ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"}
    )
    assert answer == {"status": "Accepted"}
    calls = await r.wait_calls("SignCertificate", before + 1)
    csr: str = calls[-1]["csr"]
    return csr


def chain_leaf(chain: str) -> x509.Certificate:
    return x509.load_pem_x509_certificates(chain.encode())[0]


# -- CertificateHashDataType (whitepaper §6.1, edition 3), computed as the OCTT does --


def expected_hash_data(
    cert: x509.Certificate, issuer: x509.Certificate | None = None
) -> dict[str, str]:
    """SHA-256 of the DER issuer name, SHA-256 of the issuer's subjectPublicKey BIT STRING
    value, the serial number in hex without leading zeros. Computed with ``cryptography``'s
    encoders, not the charge point's DER walk: the RSAPublicKey DER (PKCS#1) and the
    uncompressed EC point are exactly what the BIT STRING holds."""
    issuer = issuer or cert
    public = issuer.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        key_bits = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        key_bits = public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    else:
        raise AssertionError(f"no hash data for a {type(public).__name__}")
    return {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": hashlib.sha256(cert.issuer.public_bytes()).hexdigest(),
        "issuerKeyHash": hashlib.sha256(key_bits).hexdigest(),
        "serialNumber": format(cert.serial_number, "x"),
    }


def normalised(data: dict[str, Any]) -> tuple[str, str, str, str]:
    """Hash data as a CSMS compares it: the fields are case-insensitive strings (CiString)."""
    return (
        str(data["hashAlgorithm"]).upper(),
        str(data["issuerNameHash"]).lower(),
        str(data["issuerKeyHash"]).lower(),
        str(data["serialNumber"]).lower(),
    )


async def installed_ids(
    r: Rig, certificate_type: str
) -> tuple[str, set[tuple[str, str, str, str]]]:
    """GetInstalledCertificateIds: its status and the hash data it lists, normalised."""
    answer = await r.peer.call("GetInstalledCertificateIds", {"certificateType": certificate_type})
    listed = {normalised(d) for d in answer.get("certificateHashData", [])}
    return str(answer["status"]), listed
