"""Signed firmware (OCPP 1.6 security whitepaper L01): is a firmware signing certificate one
of the manufacturer's, and does a firmware image carry its signature.

Pure: ``cryptography`` only, the time passed in, the image given as an iterable of chunks
(the caller reads the file, in a thread: images are megabytes).

* The signing certificate (whitepaper L01.FR.23, L01.FR.12, §2.6 "Keys used in OCPP") must
  chain to one of the manufacturer roots: issued by one directly, or through CA certificates
  that come after it in the same PEM. The whitepaper asks manufacturers not to use
  intermediates (L01 remark 8); taking them when the chain is sound costs nothing. Every
  certificate of the chain must be valid at ``now``; the signing certificate must not be a CA
  (basicConstraints CA:TRUE: a CA key signs certificates, not images); its key must be RSA
  or EC (what the signature is checked with) and, when it has a keyUsage extension, that must
  allow signatures (A00.FR.512: key usage restricts a certificate to its purpose). Nothing
  more is asked (extended key usage, key sizes): a certificate a manufacturer's own tools
  accept is not refused here for a detail. Revocation needs an online check the whitepaper
  leaves open (§2.6.3); RevokedCertificate is never the answer.
* The signature (L01.FR.04) is over the SHA-256 digest of the whole file: RSA keys with
  RSA-PSS (MGF1 SHA-256, any salt length), and, for manufacturers whose tools sign that way,
  PKCS#1 v1.5; EC keys with ECDSA. (L01.FR.04 names "ECSchnorr", which no standard tool
  produces; the issue asks for ECDSA.)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

MAX_CHAIN = 5  # the signing certificate, intermediates, the root: more is not a real chain


class SigningCertificateProblem(Exception):
    """The firmware signing certificate is not acceptable; the message says why (fit for a
    log line and a security event's techInfo)."""


class FirmwareSignatureProblem(Exception):
    """The image does not carry a valid signature of the signing certificate's key; the
    message says why."""


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or f"serial {cert.serial_number:x}"


def load_signing_certificate(pem: str) -> list[x509.Certificate]:
    """The certificates of SignedUpdateFirmware's ``signingCertificate``: the signing
    certificate first, then any intermediates given with it."""
    try:
        chain = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as error:
        raise SigningCertificateProblem(
            f"signingCertificate is not a PEM X.509 certificate: {error}"
        ) from None
    if not chain:  # pragma: no cover - cryptography raises on an empty bundle
        raise SigningCertificateProblem("signingCertificate holds no certificate")
    if len(chain) >= MAX_CHAIN:
        raise SigningCertificateProblem(
            f"signingCertificate holds {len(chain)} certificates, at most {MAX_CHAIN - 1} taken"
        )
    return chain


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not constraints.ca:
        return False
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return usage.key_cert_sign


def _claims_ca(cert: x509.Certificate) -> bool:
    """basicConstraints says CA:TRUE, whatever its keyUsage."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _chain_to_root(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
) -> list[x509.Certificate]:
    """The path from ``leaf`` to a root (both included), or a problem."""
    if any(leaf == root for root in roots):
        return [leaf]  # the manufacturer root itself: trusted as installed
    path = [leaf]
    current = leaf
    while len(path) < MAX_CHAIN:
        for root in roots:
            if _issued_by(current, root):
                return [*path, root]
        step = next(
            (c for c in intermediates if c not in path and _is_ca(c) and _issued_by(current, c)),
            None,
        )
        if step is None:
            break
        path.append(step)
        current = step
    raise SigningCertificateProblem(
        f"signing certificate {_name(leaf)} (issuer {leaf.issuer.rfc4514_string()}) is not "
        "issued by an installed manufacturer root certificate"
    )


def check_signing_certificate(
    pem: str, roots: Sequence[x509.Certificate], now: datetime
) -> x509.Certificate:
    """The signing certificate of ``pem`` if it is acceptable at ``now`` (see the module
    docstring), else :class:`SigningCertificateProblem`."""
    chain = load_signing_certificate(pem)
    leaf = chain[0]
    if not roots:
        raise SigningCertificateProblem("no manufacturer root certificate is installed")
    for cert in _chain_to_root(leaf, chain[1:], roots):
        if now < cert.not_valid_before_utc:
            raise SigningCertificateProblem(
                f"certificate {_name(cert)} is not valid before "
                f"{cert.not_valid_before_utc.isoformat()}"
            )
        if now > cert.not_valid_after_utc:
            raise SigningCertificateProblem(
                f"certificate {_name(cert)} expired on {cert.not_valid_after_utc.isoformat()}"
            )
    if _claims_ca(leaf):
        # A CA signs certificates, not images: a manufacturer's CA key used as a firmware
        # signing key is refused, as the charge point certificate's check does (review L4).
        raise SigningCertificateProblem(
            f"signing certificate {_name(leaf)} is a CA certificate (basicConstraints CA:TRUE), "
            "not a firmware signing certificate"
        )
    if not isinstance(leaf.public_key(), rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise SigningCertificateProblem(
            f"signing certificate {_name(leaf)} has a {type(leaf.public_key()).__name__}: "
            "firmware signatures are checked with RSA or EC keys"
        )
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return leaf
    if not (usage.digital_signature or usage.content_commitment):
        raise SigningCertificateProblem(
            f"signing certificate {_name(leaf)}: its keyUsage does not allow signatures"
        )
    return leaf


def decode_signature(text: str) -> bytes:
    """SignedUpdateFirmware's ``signature``: base64 (whitepaper §6.9)."""
    try:
        signature = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise FirmwareSignatureProblem("signature is not base64") from None
    if not signature:
        raise FirmwareSignatureProblem("signature is empty")
    return signature


def image_digest(chunks: Iterable[bytes]) -> bytes:
    """SHA-256 over the whole image (L01.FR.04)."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.digest()


def verify_digest(certificate: x509.Certificate, signature: bytes, digest: bytes) -> str:
    """Check ``signature`` over an image whose SHA-256 is ``digest``; the scheme that
    verified it, else :class:`FirmwareSignatureProblem`."""
    key = certificate.public_key()
    prehashed = Prehashed(hashes.SHA256())
    if isinstance(key, rsa.RSAPublicKey):
        schemes: list[tuple[str, padding.AsymmetricPadding]] = [
            ("RSA-PSS", padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO)),
            ("RSA PKCS#1 v1.5", padding.PKCS1v15()),
        ]
        for name, scheme in schemes:
            try:
                key.verify(signature, digest, scheme, prehashed)
            except InvalidSignature:
                continue
            return f"{name} with SHA-256"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        try:
            key.verify(signature, digest, ec.ECDSA(prehashed))
        except InvalidSignature:
            pass
        else:
            return "ECDSA with SHA-256"
    else:
        raise FirmwareSignatureProblem(
            f"the signing certificate's {type(key).__name__} cannot check a firmware signature"
        )
    raise FirmwareSignatureProblem(
        f"the signature is not the signing certificate's ({_name(certificate)}) over the "
        f"image's SHA-256 {digest.hex()}"
    )


def verify_image(pem: str, signature_text: str, chunks: Iterable[bytes]) -> str:
    """Check the image read as ``chunks`` against SignedUpdateFirmware's signing certificate
    (the first of ``pem``, already checked on arrival) and base64 ``signature_text``; the
    scheme that verified it, else :class:`FirmwareSignatureProblem`."""
    signature = decode_signature(signature_text)
    try:
        certificate = load_signing_certificate(pem)[0]
    except SigningCertificateProblem as error:
        raise FirmwareSignatureProblem(str(error)) from None
    return verify_digest(certificate, signature, image_digest(chunks))
