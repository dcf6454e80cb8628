"""The demo's certificates, made fresh for every run with ``cryptography``, as the two
hierarchies of the security whitepaper (§2.6 "Keys used in OCPP") would have them:

* the CPO's: a CSMS root CA (what an installer puts in ``csms.ca_file``) that signs the CSMS's
  TLS server certificate for 127.0.0.1 and, as the CSMS's certificate authority, the charge
  point's certificate from its CSR (A02: :func:`sign_csr`);
* the manufacturer's: a manufacturer root CA (``firmware.manufacturer_ca_file``) that issues
  the firmware signing certificate the demo signs its image with (L01: :func:`sign_firmware`).

RSA 2048 (whitepaper A00.FR.502), so the module's ECDHE-RSA-AES128-GCM suite fits.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key (which stays in the demo's memory)."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey = field(repr=False)

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True, slots=True)
class DemoCertificates:
    ca: Path  # the CSMS root CA certificate (PEM)
    server_cert: Path
    server_key: Path
    manufacturer_ca: Path  # the manufacturer root CA certificate (PEM)
    csms_root: Issued  # signs the charge point's certificate, as the CSMS's CA
    firmware_signer: Issued  # the firmware signing certificate, issued by the manufacturer root


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chargepoint demo"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _usage(*, sign: bool = False, encipher: bool = False, ca: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=encipher,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _validity() -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    return now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    valid = _validity()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
    )


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _root(common_name: str) -> Issued:
    key = _key()
    certificate = (
        _builder(_name(common_name), _name(common_name), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issued(certificate, key)


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def make_certificates(directory: Path) -> DemoCertificates:
    csms_root = _root("demo CSMS root CA")
    key = _key()
    server = (
        _builder(_name("127.0.0.1"), csms_root.certificate.subject, key.public_key())
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(csms_root.key, hashes.SHA256())
    )
    # L01: one manufacturer root issues the signing certificate directly (no intermediate,
    # whitepaper L01 remark 8); code signing is all it may do.
    manufacturer_root = _root("demo manufacturer root CA")
    signing_key = _key()
    signing = (
        _builder(
            _name("demo firmware signing"),
            manufacturer_root.certificate.subject,
            signing_key.public_key(),
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(sign=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .sign(manufacturer_root.key, hashes.SHA256())
    )
    files = DemoCertificates(
        directory / "csms-ca.pem",
        directory / "csms-server.pem",
        directory / "csms-server.key",
        directory / "manufacturer-ca.pem",
        csms_root,
        Issued(signing, signing_key),
    )
    files.ca.write_bytes(_pem(csms_root.certificate))
    files.manufacturer_ca.write_bytes(_pem(manufacturer_root.certificate))
    files.server_cert.write_bytes(_pem(server))
    files.server_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.server_key.chmod(0o600)
    return files


def sign_firmware(image: bytes, signer: Issued) -> str:
    """SignedUpdateFirmware's ``signature``: RSA-PSS (MGF1 SHA-256, salt as long as the
    digest) over the SHA-256 of the whole image, base64 (whitepaper L01.FR.04, §6.9)."""
    signature = signer.key.sign(
        image,
        padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH),
        hashes.SHA256(),
    )
    return base64.b64encode(signature).decode()


class CsrRefused(Exception):
    """The CSMS will not sign this CSR; the message says why."""


def sign_csr(csr_pem: str, authority: Issued, *, charge_point_id: str, cpo_name: str) -> str:
    """CertificateSigned's ``certificateChain`` for SignCertificate's CSR: the charge point
    certificate (a TLS client certificate, A00.FR.511: O = CpoName, CN = the charge point's
    identity) signed by ``authority``; the root itself is not sent."""
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    if not csr.is_signature_valid:
        raise CsrRefused("the CSR's signature does not verify")
    wanted = [
        ("organizationName", NameOID.ORGANIZATION_NAME, cpo_name),
        ("commonName", NameOID.COMMON_NAME, charge_point_id),
    ]
    for name, oid, value in wanted:
        got = [a.value for a in csr.subject.get_attributes_for_oid(oid)]
        if got != [value]:
            raise CsrRefused(f"the CSR's {name} is {got}, not {value!r}")
    public_key = csr.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise CsrRefused(f"the CSR has a {type(public_key).__name__}: RSA or EC keys only")
    certificate = (
        _builder(csr.subject, authority.certificate.subject, public_key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(sign=True, encipher=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(authority.key, hashes.SHA256())
    )
    return _pem(certificate).decode()
