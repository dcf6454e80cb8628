"""A manufacturer's firmware signing PKI, made at test time with ``cryptography`` (security
whitepaper §2.6 "Keys used in OCPP": the Manufacturer Root Certificate and the Firmware Signing
Certificate it issues; L01).

One manufacturer root CA issues signing certificates with RSA 2048 and EC P-256 keys, an expired
one, one issued through an intermediate CA, one whose keyUsage forbids signatures; that
intermediate CA serves as a signer too; a second root nobody installed issues one more.
:func:`sign` signs an image as a manufacturer's tools do: RSA-PSS (or PKCS#1 v1.5) or ECDSA
over the image's SHA-256. Keys are made once per test run (RSA generation is slow) and shared.
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class Signer:
    """A firmware signing certificate and its key."""

    certificate: x509.Certificate
    key: SigningKey
    chain: tuple[x509.Certificate, ...] = ()  # intermediates sent with it

    @property
    def pem(self) -> str:
        """SignedUpdateFirmware's ``signingCertificate``: the certificate, then the chain."""
        return "".join(
            c.public_bytes(serialization.Encoding.PEM).decode()
            for c in (self.certificate, *self.chain)
        )


@dataclass(frozen=True, slots=True)
class ManufacturerPki:
    root: x509.Certificate  # what the charge point has installed
    rsa: Signer
    ec: Signer
    expired: Signer  # RSA, expired yesterday
    not_yet_valid: Signer  # RSA, valid from tomorrow
    via_intermediate: Signer  # EC, issued by an intermediate CA sent along in the PEM
    no_signing_usage: Signer  # keyUsage keyEncipherment only
    ca_signer: Signer  # the intermediate CA itself (basicConstraints CA:TRUE) as a signer
    untrusted: Signer  # RSA, issued by a root the charge point does not have
    untrusted_root: x509.Certificate

    @property
    def root_pem(self) -> str:
        return self.root.public_bytes(serialization.Encoding.PEM).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Charger Maker"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _usage(*, sign: bool, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=not sign and not cert_sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _certificate(
    subject: str,
    key: SigningKey,
    issuer: x509.Certificate | None,
    issuer_key: SigningKey,
    *,
    ca: bool,
    sign: bool = True,
    valid: tuple[datetime, datetime] | None = None,
) -> x509.Certificate:
    now = datetime.now(UTC)
    # CAs from two years back, so a signing certificate that expired last year was theirs, and for
    # ten years ahead, so they outlive every certificate they sign (a leaf made a second after its
    # root must not outlive it: the validity-edge test judges the leaf alone at its expiry).
    back = timedelta(days=730 if ca else 1)
    ahead = timedelta(days=3650 if ca else 365)
    start, end = valid or (now - back, now + ahead)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(_usage(sign=sign and not ca, cert_sign=ca), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


@functools.cache
def _rsa_key(number: int) -> rsa.RSAPrivateKey:
    del number  # one key per number, made once a run
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def manufacturer_pki() -> ManufacturerPki:
    """The test run's manufacturer PKI (made once, certificates valid from yesterday)."""
    now = datetime.now(UTC)
    root_key = _rsa_key(0)
    root = _certificate("Test Manufacturer Root CA", root_key, None, root_key, ca=True)

    def signed_by(
        subject: str,
        key: SigningKey,
        issuer: x509.Certificate = root,
        issuer_key: SigningKey = root_key,
        *,
        sign: bool = True,
        valid: tuple[datetime, datetime] | None = None,
    ) -> Signer:
        cert = _certificate(subject, key, issuer, issuer_key, ca=False, sign=sign, valid=valid)
        return Signer(cert, key)

    ec_key = ec.generate_private_key(ec.SECP256R1())
    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    intermediate = _certificate(
        "Test Manufacturer Firmware CA", intermediate_key, root, root_key, ca=True
    )
    via = signed_by("Firmware Signing EC (via CA)", ec_key, intermediate, intermediate_key)
    other_root_key = _rsa_key(2)
    other_root = _certificate(
        "Unknown Maker Root CA", other_root_key, None, other_root_key, ca=True
    )
    return ManufacturerPki(
        root=root,
        rsa=signed_by("Firmware Signing RSA", _rsa_key(1)),
        ec=signed_by("Firmware Signing EC", ec_key),
        expired=signed_by(
            "Firmware Signing RSA (expired)",
            _rsa_key(1),
            valid=(now - timedelta(days=365), now - timedelta(days=1)),
        ),
        not_yet_valid=signed_by(
            "Firmware Signing RSA (future)",
            _rsa_key(1),
            valid=(now + timedelta(days=1), now + timedelta(days=365)),
        ),
        via_intermediate=Signer(via.certificate, ec_key, (intermediate,)),
        no_signing_usage=signed_by("Firmware Encryption RSA", _rsa_key(1), sign=False),
        ca_signer=Signer(intermediate, intermediate_key),
        untrusted=signed_by(
            "Firmware Signing RSA (unknown maker)", _rsa_key(3), other_root, other_root_key
        ),
        untrusted_root=other_root,
    )


def sign(image: bytes, key: SigningKey, *, scheme: str = "pss") -> str:
    """The base64 signature of ``image`` (SHA-256) by ``key``: RSA-PSS (``scheme="pss"``,
    salt as long as the digest) or PKCS#1 v1.5 (``"pkcs1v15"``) for RSA, ECDSA for EC."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(image, ec.ECDSA(hashes.SHA256()))
    elif scheme == "pss":
        signature = key.sign(
            image,
            padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH),
            hashes.SHA256(),
        )
    elif scheme == "pkcs1v15":
        signature = key.sign(image, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise ValueError(f"no signature scheme {scheme!r}")
    return base64.b64encode(signature).decode()
