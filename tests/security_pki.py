"""Certificates made at test time for the security-extension tests (whitepaper A02/A03,
M03-M05; OCTT TC_074-TC_078).

The OCTT is "both Central System and Certificate Authority Server": it signs the charge point's
CSR with its own certificate. Here :attr:`SecurityPki.csms_root` plays that part: it is the
Central System root the charge point trusts (put its PEM in ``csms.ca_file`` or install it),
it can issue the CSMS's TLS server certificate (:meth:`Authority.issue_server`), and
:func:`sign_csr` turns a SignCertificate.req CSR into the chain a CertificateSigned.req
carries. The variants for the negative cases:

* a chain from ``pki.untrusted_root`` (not in the CPO hierarchy, A02.FR.06);
* ``sign_csr(..., not_before=..., days=...)`` for an expired or not yet valid certificate;
* ``sign_csr(..., key=other_key)`` for a certificate of another key than the CSR's;
* ``sign_csr(..., cn=..., organization=...)`` for a wrong subject;
* ``sign_csr(..., intermediates=n)`` for a chain through n intermediate CAs (too long a chain
  for CertificateSignedMaxChainSize with a large n);
* roots for InstallCertificate: ``second_root`` and ``manufacturer_root`` (valid),
  ``expired_root`` (TC_078), ``not_ca_pem`` (a self-signed certificate that is no CA).

Keys are RSA 2048 by default (whitepaper A00.FR.502; the module simulators' cipher suites
want RSA); ``key_type="ec-p256"`` is faster where the key type does not matter.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chargepoint.model.certificates import (
    PrivateKey,
    certificate_pem,
    generate_key,
    private_key_pem,
)

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)


def _now() -> datetime.datetime:
    return datetime.datetime.now(UTC).replace(microsecond=0)


def _name(common_name: str, organization: str | None) -> x509.Name:
    attributes = []
    if organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


@dataclass(frozen=True)
class Authority:
    """A CA: its certificate and key (chain: the intermediates above it, up to the root,
    excluded)."""

    cert: x509.Certificate
    key: PrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def pem(self) -> str:
        return certificate_pem(self.cert)

    def write(self, path: Path) -> Path:
        path.write_text(self.pem)
        return path

    def intermediate(self, name: str, *, key_type: str = "ec-p256") -> Authority:
        """A CA signed by this one."""
        key = generate_key(key_type)
        cert = _build(
            subject=_name(name, "Test CPO"),
            issuer=self.cert.subject,
            public_key=key,
            signer=self.key,
            ca=True,
        )
        return Authority(cert, key, (self.cert, *self.chain))

    def issue_server(self, *names: str, key_type: str = "rsa-2048") -> tuple[str, bytes]:
        """A TLS server certificate for ``names`` (chain PEM, key PEM), e.g. the CSMS's."""
        key = generate_key(key_type)
        alt: list[x509.GeneralName] = []
        for name in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        cert = _build(
            subject=_name(names[0], "Test CSMS"),
            issuer=self.cert.subject,
            public_key=key,
            signer=self.key,
            ca=False,
            extensions=[
                (x509.SubjectAlternativeName(alt), False),
                (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            ],
        )
        chain = "".join(certificate_pem(c) for c in (cert, *self.chain_without_root()))
        return chain, private_key_pem(key)

    def chain_without_root(self) -> tuple[x509.Certificate, ...]:
        """This CA and the intermediates above it, without the self-signed root."""
        if self.cert.issuer == self.cert.subject:
            return ()
        return (self.cert, *(c for c in self.chain if c.issuer != c.subject))


def _build(
    *,
    subject: x509.Name,
    issuer: x509.Name,
    public_key: PrivateKey,
    signer: PrivateKey,
    ca: bool,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    extensions: list[tuple[x509.ExtensionType, bool]] | None = None,
    serial: int | None = None,
) -> x509.Certificate:
    start = not_before or _now() - DAY
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after or start + 3650 * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    for extension, critical in extensions or []:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signer, hashes.SHA256())


def make_root(
    name: str,
    *,
    key_type: str = "rsa-2048",
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    ca: bool = True,
    serial: int | None = None,
) -> Authority:
    """A self-signed root (``ca=False``: a self-signed certificate that is not a CA)."""
    key = generate_key(key_type)
    subject = _name(name, "Test PKI")
    cert = _build(
        subject=subject,
        issuer=subject,
        public_key=key,
        signer=key,
        ca=ca,
        not_before=not_before,
        not_after=not_after,
        serial=serial,
    )
    return Authority(cert, key)


@dataclass(frozen=True)
class SecurityPki:
    csms_root: Authority  # trusted; signs the CSMS server and the charge point certificates
    second_root: Authority  # another valid Central System root (install, delete)
    manufacturer_root: Authority  # a valid ManufacturerRootCertificate
    untrusted_root: Authority  # a CA the charge point does not trust
    expired_root: Authority  # expired a year ago (TC_078)
    not_ca: Authority  # self-signed, but basicConstraints CA false

    @property
    def not_ca_pem(self) -> str:
        return self.not_ca.pem


def make_security_pki(*, key_type: str = "rsa-2048") -> SecurityPki:
    now = _now()
    return SecurityPki(
        csms_root=make_root("Test CSMS root", key_type=key_type),
        second_root=make_root("Second CSMS root", key_type=key_type),
        manufacturer_root=make_root("Test manufacturer root", key_type=key_type),
        untrusted_root=make_root("Nobody trusts this", key_type=key_type),
        expired_root=make_root(
            "Expired CSMS root",
            key_type=key_type,
            not_before=now - 730 * DAY,
            not_after=now - 365 * DAY,
        ),
        not_ca=make_root("Not a CA", key_type=key_type, ca=False),
    )


def sign_csr(
    csr_pem: str,
    ca: Authority,
    *,
    days: int = 365,
    not_before: datetime.datetime | None = None,
    cn: str | None = None,
    organization: str | None = None,
    key: PrivateKey | None = None,
    intermediates: int = 0,
) -> str:
    """The PEM chain (leaf first, then any intermediates, no root) a CSMS sends in
    CertificateSigned.req for ``csr_pem``, signed by ``ca``. ``cn``/``organization`` replace
    the CSR's subject fields, ``key`` puts another public key in the certificate than the
    CSR's, ``intermediates`` inserts that many intermediate CAs under ``ca``."""
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.is_signature_valid, "the CSR's signature does not verify"
    subject = csr.subject
    if cn is not None or organization is not None:
        old_cn = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        old_o = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        subject = _name(
            cn if cn is not None else str(old_cn[0].value),
            organization if organization is not None else (str(old_o[0].value) if old_o else None),
        )
    signer = ca
    for number in range(intermediates):
        signer = signer.intermediate(f"Test intermediate {number + 1}")
    start = not_before or _now() - DAY
    public = key.public_key() if key is not None else csr.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + days * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    leaf = builder.sign(signer.key, hashes.SHA256())
    chain = (leaf, *signer.chain_without_root())
    return "".join(certificate_pem(c) for c in chain)
