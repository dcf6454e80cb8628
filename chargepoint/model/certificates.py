"""X.509 certificates for the charge point (OCPP 1.6 security whitepaper §2.6, A02/A03,
M03-M05): pure functions on ``cryptography`` objects, no files, no clock (``now`` is passed in).

* :class:`HashData` and :func:`hash_data`: the CertificateHashDataType of whitepaper §6.1 that
  GetInstalledCertificateIds reports and DeleteCertificate names a certificate by (RFC 6960's
  CertID: issuer name hash, issuer key hash, serial number).
* :func:`check_root`: a certificate fit to be installed as a root (M05.FR.06).
* :func:`verify_chain`: leaf → intermediates → one of the roots.
* :func:`check_signed_chain`: the checks of A02.FR.06 on a CertificateSigned.req chain.
* :func:`generate_key` and :func:`make_csr`: the key pair and the RFC 2986 request of A02.FR.02,
  A02.FR.03 and A02.FR.13.

Every refusal is a :class:`CertificateProblem` whose message says why in words fit for a log
line and a security event's techInfo.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

KeyType = Literal["rsa-2048", "ec-p256"]
KEY_TYPES: tuple[KeyType, ...] = ("rsa-2048", "ec-p256")
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# HashAlgorithmEnumType (whitepaper §6.3) → hashlib name.
HASH_ALGORITHMS = {"SHA256": "sha256", "SHA384": "sha384", "SHA512": "sha512"}
DEFAULT_HASH_ALGORITHM = "SHA256"  # A00.FR.506
# Whitepaper §7.3: CertificateSignedMaxChainSize has a maximum of 10.000 characters.
MAX_CHAIN_SIZE = 10_000
# A00.FR.502/503: at least 2048 bits for RSA, 224 bits for elliptic curves.
MIN_RSA_BITS = 2048
MIN_EC_BITS = 224


class CertificateProblem(Exception):
    """A certificate (or chain) is refused; the message says why."""


# -- CertificateHashDataType (whitepaper §6.1) --


@dataclass(frozen=True, slots=True)
class HashData:
    """One certificate's identity as OCPP names it. Values are kept normalised (hashes in
    lower-case hex, the serial number in upper-case hex without leading zeroes), so two
    HashData of the same certificate compare equal whatever case the CSMS wrote them in
    (the fields are CiStrings)."""

    hash_algorithm: str
    issuer_name_hash: str
    issuer_key_hash: str
    serial_number: str

    def __post_init__(self) -> None:
        algorithm = self.hash_algorithm.upper()
        if algorithm not in HASH_ALGORITHMS:
            raise CertificateProblem(f"unknown hashAlgorithm {self.hash_algorithm!r}")
        serial = self.serial_number.upper().removeprefix("0X").lstrip("0") or "0"
        object.__setattr__(self, "hash_algorithm", algorithm)
        object.__setattr__(self, "issuer_name_hash", self.issuer_name_hash.lower())
        object.__setattr__(self, "issuer_key_hash", self.issuer_key_hash.lower())
        object.__setattr__(self, "serial_number", serial)

    def to_ocpp(self) -> dict[str, str]:
        return {
            "hashAlgorithm": self.hash_algorithm,
            "issuerNameHash": self.issuer_name_hash,
            "issuerKeyHash": self.issuer_key_hash,
            "serialNumber": self.serial_number,
        }

    @classmethod
    def from_ocpp(cls, data: Mapping[str, Any]) -> HashData:
        """From a payload's certificateHashData, camelCase (the wire) or snake_case (what the
        ``ocpp`` library hands a handler)."""

        def field(camel: str, snake: str) -> str:
            value = data.get(camel, data.get(snake))
            if not isinstance(value, str):
                raise CertificateProblem(f"certificateHashData without {camel}")
            return value

        return cls(
            hash_algorithm=field("hashAlgorithm", "hash_algorithm"),
            issuer_name_hash=field("issuerNameHash", "issuer_name_hash"),
            issuer_key_hash=field("issuerKeyHash", "issuer_key_hash"),
            serial_number=field("serialNumber", "serial_number"),
        )


def hash_data(
    cert: x509.Certificate,
    algorithm: str = DEFAULT_HASH_ALGORITHM,
    issuer: x509.Certificate | None = None,
) -> HashData:
    """The hash data of ``cert`` (whitepaper §6.1, RFC 6960 CertID). ``issuer`` is the
    certificate that signed it; a self-issued certificate (a root) is its own issuer."""
    name = HASH_ALGORITHMS.get(algorithm.upper())
    if name is None:
        raise CertificateProblem(f"unknown hashAlgorithm {algorithm!r}")
    if issuer is None:
        if cert.issuer != cert.subject:
            raise CertificateProblem(
                f"the issuer of {describe(cert)} is needed to compute its hash data"
            )
        issuer = cert
    issuer_name = _tbs_fields(cert).issuer
    issuer_key = _subject_public_key(issuer)
    return HashData(
        hash_algorithm=algorithm,
        issuer_name_hash=hashlib.new(name, issuer_name).hexdigest(),
        issuer_key_hash=hashlib.new(name, issuer_key).hexdigest(),
        serial_number=format(cert.serial_number, "X"),
    )


# The DER of the certificate itself, not a re-encoding: the hashes must be of the exact
# bytes the CSMS (and the OCTT) hash.


@dataclass(frozen=True, slots=True)
class _Tbs:
    issuer: bytes  # the whole Name element (tag, length, value)
    spki: bytes  # the whole SubjectPublicKeyInfo element


def _der_element(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the element) of the DER element at ``offset``."""
    tag = data[offset]
    length = data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    return tag, start, start + length


def _tbs_fields(cert: x509.Certificate) -> _Tbs:
    tbs = cert.tbs_certificate_bytes
    _, position, _ = _der_element(tbs, 0)  # TBSCertificate ::= SEQUENCE {
    elements: list[bytes] = []
    while len(elements) < 6:
        tag, _, end = _der_element(tbs, position)
        if not (tag == 0xA0 and not elements):  # version [0] EXPLICIT, optional
            elements.append(tbs[position:end])
        position = end
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
    return _Tbs(issuer=elements[2], spki=elements[5])


def _subject_public_key(cert: x509.Certificate) -> bytes:
    """The value of the subjectPublicKey BIT STRING, without tag, length and the unused-bits
    octet (RFC 6960 §4.1.1, as OpenSSL computes issuerKeyHash)."""
    spki = _tbs_fields(cert).spki
    _, position, _ = _der_element(spki, 0)
    _, _, position = _der_element(spki, position)  # algorithm AlgorithmIdentifier
    tag, start, end = _der_element(spki, position)
    if tag != 0x03:
        raise CertificateProblem(f"{describe(cert)}: no subjectPublicKey BIT STRING")
    return spki[start + 1 : end]


# -- reading --


def load_pem_chain(text: str | bytes) -> list[x509.Certificate]:
    """The PEM certificates in ``text``, in order (A00.FR.507)."""
    data = text.encode() if isinstance(text, str) else text
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CertificateProblem("no PEM certificate in the text")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CertificateProblem(f"not a valid PEM certificate: {exc}") from None


def load_pem_certificate(text: str | bytes) -> x509.Certificate:
    """Exactly one PEM certificate."""
    chain = load_pem_chain(text)
    if len(chain) != 1:
        raise CertificateProblem(f"{len(chain)} certificates where one was expected")
    return chain[0]


def certificate_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER: the certificate's identity in the store."""
    return cert.fingerprint(hashes.SHA256()).hex()


def describe(cert: x509.Certificate) -> str:
    """A certificate for a log line: subject and serial number."""
    return f"'{cert.subject.rfc4514_string()}' (serial {cert.serial_number:X})"


def common_name(name: x509.Name) -> str | None:
    return _attribute(name, NameOID.COMMON_NAME)


def organization(name: x509.Name) -> str | None:
    return _attribute(name, NameOID.ORGANIZATION_NAME)


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    if not values:
        return None
    value = values[0].value
    return value.decode() if isinstance(value, bytes) else value


# -- checks --


def check_validity(cert: x509.Certificate, now: datetime, *, allow_future: bool = False) -> None:
    """Within the validity period at ``now`` (``allow_future``: only not expired)."""
    if now > cert.not_valid_after_utc:
        raise CertificateProblem(
            f"{describe(cert)} expired on {cert.not_valid_after_utc.isoformat()}"
        )
    if not allow_future and now < cert.not_valid_before_utc:
        raise CertificateProblem(
            f"{describe(cert)} is not valid before {cert.not_valid_before_utc.isoformat()}"
        )


def is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca


def check_key_strength(cert: x509.Certificate) -> None:
    """A00.FR.501-503: RSA of 2048 bits or more, elliptic curves of 224 bits or more."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CertificateProblem(
                f"{describe(cert)}: RSA key of {key.key_size} bits, under {MIN_RSA_BITS} "
                "(whitepaper A00.FR.502)"
            )
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size < MIN_EC_BITS:
            raise CertificateProblem(
                f"{describe(cert)}: elliptic curve key of {key.curve.key_size} bits, under "
                f"{MIN_EC_BITS} (whitepaper A00.FR.503)"
            )
    else:
        raise CertificateProblem(f"{describe(cert)}: a key type OCPP does not use")


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def find_issuer(
    cert: x509.Certificate, candidates: list[x509.Certificate]
) -> x509.Certificate | None:
    """The certificate among ``candidates`` that signed ``cert`` (itself when self-issued);
    None when it is not there."""
    if cert.issuer == cert.subject:
        return cert
    for candidate in candidates:
        if candidate.subject == cert.issuer and _signed_by(cert, candidate):
            return candidate
    return None


def check_root(cert: x509.Certificate, now: datetime) -> None:
    """A certificate fit to be installed as a root (whitepaper M05.FR.06): X.509 v3, a CA,
    self-signed with a signature that verifies, a strong enough key, valid at ``now``."""
    if cert.version is not x509.Version.v3:
        raise CertificateProblem(f"{describe(cert)} is not an X.509 v3 certificate")
    if not is_ca(cert):
        raise CertificateProblem(f"{describe(cert)} is not a CA certificate (basicConstraints)")
    if cert.issuer != cert.subject or not _signed_by(cert, cert):
        raise CertificateProblem(f"{describe(cert)} is not a self-signed root certificate")
    check_key_strength(cert)
    check_validity(cert, now)


def verify_chain(
    chain: list[x509.Certificate],
    roots: list[x509.Certificate],
    now: datetime,
    *,
    allow_future: bool = False,
) -> x509.Certificate:
    """``chain[0]`` (the leaf), through the intermediates that follow it, leads to one of
    ``roots``: every signature verifies, every intermediate is a CA, every certificate is
    valid at ``now`` (``allow_future``: not expired). The chain may end with the root itself.
    Returns the root."""
    if not chain:
        raise CertificateProblem("an empty certificate chain")
    for cert in chain:
        check_validity(cert, now, allow_future=allow_future)
    for cert, issuer in itertools.pairwise(chain):
        if not is_ca(issuer):
            raise CertificateProblem(f"{describe(issuer)} in the chain is not a CA")
        if not _signed_by(cert, issuer):
            raise CertificateProblem(f"{describe(cert)} is not signed by {describe(issuer)}")
    last = chain[-1]
    for root in roots:
        if last == root or _signed_by(last, root):
            check_validity(root, now)
            return root
    raise CertificateProblem(
        f"{describe(last)} is not issued by an installed Central System root certificate"
    )


def same_key(cert: x509.Certificate, key: PrivateKey) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


def check_signed_chain(
    text: str,
    *,
    key: PrivateKey,
    charge_point_id: str,
    cpo_name: str,
    roots: list[x509.Certificate],
    now: datetime,
    max_chain_size: int = MAX_CHAIN_SIZE,
) -> list[x509.Certificate]:
    """The checks of whitepaper A02.FR.06 / A03.FR.06 on a CertificateSigned.req chain:
    its size (CertificateSignedMaxChainSize), the leaf's key is the pending key of the CSR,
    the subject as the CSR asked (A00.FR.509, A00.FR.511, A02.FR.13), the validity period (a
    leaf not yet valid is kept until its notBefore, A02.FR.08), and the chain leads to a
    Central System root (§2.6.2, the CPO hierarchy). Returns the chain, leaf first."""
    if len(text) > max_chain_size:
        raise CertificateProblem(
            f"certificate chain of {len(text)} characters, over CertificateSignedMaxChainSize "
            f"({max_chain_size})"
        )
    chain = load_pem_chain(text)
    leaf = chain[0]
    if not same_key(leaf, key):
        raise CertificateProblem(
            f"{describe(leaf)} is not for the key of the certificate signing request"
        )
    name = common_name(leaf.subject)
    if name != charge_point_id:
        raise CertificateProblem(
            f"{describe(leaf)}: commonName {name!r} is not the charge point's identity"
        )
    org = organization(leaf.subject)
    if org != cpo_name:
        raise CertificateProblem(f"{describe(leaf)}: organizationName {org!r} is not the CpoName")
    if is_ca(leaf):
        raise CertificateProblem(f"{describe(leaf)} is a CA certificate, not a charge point's")
    check_key_strength(leaf)
    verify_chain(chain, roots, now, allow_future=True)
    return chain


# -- the key pair and the certificate signing request (A02.FR.02/03/13) --


def generate_key(key_type: KeyType | str) -> PrivateKey:
    """A new key pair (A00.FR.502/503); RSA 2048 takes ~100 ms: call it off the event loop."""
    if key_type == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"key type {key_type!r}: expected one of {', '.join(KEY_TYPES)}")


def make_csr(key: PrivateKey, *, charge_point_id: str, cpo_name: str) -> str:
    """The PEM certificate signing request (RFC 2986) for ``key``: subject O = CpoName
    (A02.FR.13), CN = the charge point identity (A00.FR.511), signed with SHA-256."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, cpo_name),
            x509.NameAttribute(NameOID.COMMON_NAME, charge_point_id),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def private_key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: the module takes the key as a file (profile 3)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(data: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CertificateProblem("the private key is neither RSA nor elliptic curve")
    return key


def public_key_digest(key: PrivateKey) -> str:
    """SHA-256 of the public key (SubjectPublicKeyInfo DER): a file name for the key that
    says nothing about the private part."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()
