"""The certificate model (chargepoint/model/certificates.py): CertificateHashData as the
whitepaper §6.1 defines it (checked against OpenSSL's own OCSP CertID), the M05 root checks,
chain verification, the A02.FR.06 checks on a CertificateSigned chain, and the CSR."""

from __future__ import annotations

import datetime
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from chargepoint.model.certificates import (
    CertificateProblem,
    HashData,
    check_root,
    check_signed_chain,
    generate_key,
    hash_data,
    load_pem_certificate,
    load_pem_chain,
    make_csr,
    verify_chain,
)
from tests.security_pki import Authority, SecurityPki, make_root, make_security_pki, sign_csr

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)
CP = "CP-0042"
CPO = "Test CPO"
OPENSSL = shutil.which("openssl")


@pytest.fixture(scope="module")
def pki() -> SecurityPki:
    return make_security_pki(key_type="ec-p256")


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    made = generate_key("ec-p256")
    assert isinstance(made, ec.EllipticCurvePrivateKey)
    return made


@pytest.fixture(scope="module")
def csr(key: ec.EllipticCurvePrivateKey) -> str:
    return make_csr(key, charge_point_id=CP, cpo_name=CPO)


# -- CertificateHashDataType (whitepaper §6.1) --


REQ = ("-req_text", "-no_nonce", "-reqout", "/dev/null")


def _openssl_cert_id(tmp_path: Path, cert: str, issuer: str, digest: str) -> dict[str, str]:
    """OpenSSL's RFC 6960 CertID for ``cert``: an independent computation of the hashes."""
    assert OPENSSL is not None
    (tmp_path / "cert.pem").write_text(cert)
    (tmp_path / "issuer.pem").write_text(issuer)
    text = subprocess.run(
        [OPENSSL, "ocsp", f"-{digest}", "-issuer", "issuer.pem", "-cert", "cert.pem", *REQ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    text = re.sub(r"\\\n\s*", "", text)  # long values go on over lines ending in a backslash
    fields = {}
    for line in text.splitlines():
        name, _, value = line.strip().partition(": ")
        fields[name] = value
    return fields


@pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")
@pytest.mark.parametrize("algorithm", ["SHA256", "SHA384", "SHA512"])
@pytest.mark.parametrize("key_type", ["rsa-2048", "ec-p256"])
def test_hash_data_of_a_root_is_openssls_ocsp_cert_id(
    tmp_path: Path, algorithm: str, key_type: str
) -> None:
    root = make_root(f"Root {key_type}", key_type=key_type)
    expected = _openssl_cert_id(tmp_path, root.pem, root.pem, algorithm.lower())
    data = hash_data(root.cert, algorithm)
    assert data.issuer_name_hash == expected["Issuer Name Hash"].lower()
    assert data.issuer_key_hash == expected["Issuer Key Hash"].lower()
    assert data.serial_number == expected["Serial Number"].lstrip("0")


@pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")
def test_hash_data_of_an_issued_certificate_hashes_its_issuers_name_and_key(
    tmp_path: Path, pki: SecurityPki
) -> None:
    intermediate = pki.csms_root.intermediate("Sub CA")
    expected = _openssl_cert_id(tmp_path, intermediate.pem, pki.csms_root.pem, "sha256")
    data = hash_data(intermediate.cert, "SHA256", issuer=pki.csms_root.cert)
    assert data.issuer_name_hash == expected["Issuer Name Hash"].lower()
    assert data.issuer_key_hash == expected["Issuer Key Hash"].lower()
    with pytest.raises(CertificateProblem, match="issuer"):
        hash_data(intermediate.cert)  # not self-issued: the issuer is needed


def test_serial_number_is_hex_without_leading_zeroes() -> None:
    # Whitepaper §6.1: decimal 4095 is "FFF".
    root = make_root("Small serial", key_type="ec-p256", serial=4095)
    assert hash_data(root.cert).serial_number == "FFF"
    assert hash_data(root.cert).to_ocpp()["serialNumber"] == "FFF"


def test_hash_lengths_follow_the_algorithm(pki: SecurityPki) -> None:
    for algorithm, length in (("SHA256", 64), ("SHA384", 96), ("SHA512", 128)):
        data = hash_data(pki.csms_root.cert, algorithm)
        assert len(data.issuer_name_hash) == len(data.issuer_key_hash) == length


def test_an_unknown_hash_algorithm_is_refused(pki: SecurityPki) -> None:
    with pytest.raises(CertificateProblem, match="hashAlgorithm"):
        hash_data(pki.csms_root.cert, "MD5")
    with pytest.raises(CertificateProblem, match="hashAlgorithm"):
        HashData.from_ocpp(
            {
                "hashAlgorithm": "SHA1",
                "issuerNameHash": "a",
                "issuerKeyHash": "b",
                "serialNumber": "1",
            }
        )


def test_hash_data_compares_case_insensitively_and_ignores_leading_zeroes(pki: SecurityPki) -> None:
    # The fields are CiStrings: a CSMS that writes hex in capitals names the same certificate.
    data = hash_data(pki.csms_root.cert)
    shouting = {k: v.upper() for k, v in data.to_ocpp().items()}
    shouting["serialNumber"] = "00" + shouting["serialNumber"]
    assert HashData.from_ocpp(shouting) == data


def test_from_ocpp_takes_the_snake_case_the_library_hands_a_handler(pki: SecurityPki) -> None:
    data = hash_data(pki.csms_root.cert)
    snake = {
        "hash_algorithm": data.hash_algorithm,
        "issuer_name_hash": data.issuer_name_hash,
        "issuer_key_hash": data.issuer_key_hash,
        "serial_number": data.serial_number,
    }
    assert HashData.from_ocpp(snake) == data
    with pytest.raises(CertificateProblem, match="serialNumber"):
        HashData.from_ocpp({k: v for k, v in snake.items() if k != "serial_number"})


HEX = st.text(alphabet="0123456789abcdefABCDEF", min_size=1, max_size=128)


@given(
    algorithm=st.sampled_from(["SHA256", "SHA384", "SHA512", "sha256"]),
    name=HEX,
    key=HEX,
    serial=st.integers(min_value=0, max_value=2**160 - 1),
)
def test_hash_data_survives_the_wire_both_ways(
    algorithm: str, name: str, key: str, serial: int
) -> None:
    data = HashData(algorithm, name, key, format(serial, "x"))
    wire = data.to_ocpp()
    assert HashData.from_ocpp(wire) == data
    assert wire["serialNumber"] == format(serial, "X")
    assert wire["hashAlgorithm"] == algorithm.upper()


# -- reading --


def test_load_pem_chain_keeps_the_order_and_refuses_garbage(pki: SecurityPki) -> None:
    chain = load_pem_chain(pki.csms_root.pem + pki.second_root.pem)
    assert [c.subject for c in chain] == [pki.csms_root.cert.subject, pki.second_root.cert.subject]
    with pytest.raises(CertificateProblem, match="no PEM"):
        load_pem_chain("not a certificate")
    broken = pki.csms_root.pem.replace("A", "B", 20)
    with pytest.raises(CertificateProblem):
        load_pem_chain(broken)
    with pytest.raises(CertificateProblem, match="2 certificates"):
        load_pem_certificate(pki.csms_root.pem + pki.second_root.pem)


# -- roots (M05.FR.06) --


def test_a_valid_self_signed_ca_is_an_installable_root(pki: SecurityPki) -> None:
    check_root(pki.csms_root.cert, NOW)
    check_root(pki.manufacturer_root.cert, NOW)


@pytest.mark.parametrize(
    ("which", "why"),
    [
        ("expired_root", "expired"),
        ("not_ca", "not a CA"),
    ],
)
def test_an_invalid_root_is_refused_with_the_reason(pki: SecurityPki, which: str, why: str) -> None:
    authority: Authority = getattr(pki, which)
    with pytest.raises(CertificateProblem, match=why):
        check_root(authority.cert, NOW)


def test_a_root_not_yet_valid_is_refused() -> None:
    future = make_root("Future", key_type="ec-p256", not_before=NOW + 10 * DAY)
    with pytest.raises(CertificateProblem, match="not valid before"):
        check_root(future.cert, NOW)


def test_an_intermediate_is_not_a_root(pki: SecurityPki) -> None:
    intermediate = pki.csms_root.intermediate("Sub CA")
    with pytest.raises(CertificateProblem, match="self-signed"):
        check_root(intermediate.cert, NOW)


def test_a_root_whose_self_signature_does_not_verify_is_refused(pki: SecurityPki) -> None:
    # Same subject and issuer as the root, but signed by another key.
    other = generate_key("ec-p256")
    forged = (
        x509.CertificateBuilder()
        .subject_name(pki.csms_root.cert.subject)
        .issuer_name(pki.csms_root.cert.subject)
        .public_key(pki.csms_root.key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(other, hashes.SHA256())
    )
    with pytest.raises(CertificateProblem, match="self-signed"):
        check_root(forged, NOW)


def test_a_root_with_a_weak_rsa_key_is_refused() -> None:
    # A00.FR.502: RSA keys of at least 2048 bits.
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Weak")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(weak.public_key())
        .serial_number(1)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(weak, hashes.SHA256())
    )
    with pytest.raises(CertificateProblem, match=r"A00\.FR\.502"):
        check_root(cert, NOW)


# -- chains --


def _leaf_chain(pki: SecurityPki, csr: str, **options: object) -> list[x509.Certificate]:
    return load_pem_chain(sign_csr(csr, pki.csms_root, **options))  # type: ignore[arg-type]


def test_a_chain_through_intermediates_leads_to_its_root(pki: SecurityPki, csr: str) -> None:
    chain = _leaf_chain(pki, csr, intermediates=2)
    assert len(chain) == 3
    roots = [pki.second_root.cert, pki.csms_root.cert]
    assert verify_chain(chain, roots, NOW) == pki.csms_root.cert
    # A chain that ends with the root itself is the same chain.
    assert verify_chain([*chain, pki.csms_root.cert], roots, NOW) == pki.csms_root.cert


def test_a_chain_to_another_root_is_refused(pki: SecurityPki, csr: str) -> None:
    chain = load_pem_chain(sign_csr(csr, pki.untrusted_root))
    with pytest.raises(CertificateProblem, match="not issued by an installed"):
        verify_chain(chain, [pki.csms_root.cert], NOW)


def test_a_chain_with_a_missing_link_is_refused(pki: SecurityPki, csr: str) -> None:
    leaf, _first, second = _leaf_chain(pki, csr, intermediates=2)
    with pytest.raises(CertificateProblem, match="is not signed by"):
        verify_chain([leaf, second], [pki.csms_root.cert], NOW)


def test_an_intermediate_that_is_no_ca_breaks_the_chain(
    pki: SecurityPki, key: ec.EllipticCurvePrivateKey
) -> None:
    # The charge point's own leaf (not a CA) used to sign another certificate.
    leaf_pem = sign_csr(make_csr(key, charge_point_id=CP, cpo_name=CPO), pki.csms_root)
    leaf = load_pem_certificate(leaf_pem)
    not_ca = Authority(leaf, key, (pki.csms_root.cert,))
    other_csr = make_csr(generate_key("ec-p256"), charge_point_id="X", cpo_name=CPO)
    chain = [*load_pem_chain(sign_csr(other_csr, not_ca)), leaf]
    with pytest.raises(CertificateProblem, match="not a CA"):
        verify_chain(chain, [pki.csms_root.cert], NOW)


def test_an_expired_certificate_in_the_chain_is_refused(pki: SecurityPki, csr: str) -> None:
    chain = _leaf_chain(pki, csr, not_before=NOW - 400 * DAY, days=365)
    with pytest.raises(CertificateProblem, match="expired"):
        verify_chain(chain, [pki.csms_root.cert], NOW)


def test_an_expired_root_does_not_validate_a_chain(pki: SecurityPki, csr: str) -> None:
    chain = load_pem_chain(sign_csr(csr, pki.expired_root))
    with pytest.raises(CertificateProblem, match="expired"):
        verify_chain(chain, [pki.expired_root.cert], NOW)


# -- the A02.FR.06 checks --


def _check(
    pki: SecurityPki, key: ec.EllipticCurvePrivateKey, text: str, **options: object
) -> list[x509.Certificate]:
    arguments: dict[str, object] = {
        "key": key,
        "charge_point_id": CP,
        "cpo_name": CPO,
        "roots": [pki.csms_root.cert],
        "now": NOW,
    }
    arguments.update(options)
    return check_signed_chain(text, **arguments)  # type: ignore[arg-type]


def test_a_chain_signed_for_the_csr_passes(
    pki: SecurityPki, key: ec.EllipticCurvePrivateKey, csr: str
) -> None:
    chain = _check(pki, key, sign_csr(csr, pki.csms_root, intermediates=1))
    assert chain[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CP


def test_a_certificate_not_yet_valid_passes_to_be_used_from_its_not_before(
    pki: SecurityPki, key: ec.EllipticCurvePrivateKey, csr: str
) -> None:
    # A02.FR.08: the charge point switches once notBefore has come; it keeps it until then.
    chain = _check(pki, key, sign_csr(csr, pki.csms_root, not_before=NOW + 5 * DAY))
    assert chain[0].not_valid_before_utc > NOW


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"key": "other"}, "not for the key"),
        ({"cn": "CP-9999"}, "commonName"),
        ({"organization": "Someone else"}, "organizationName"),
        ({"ca": "untrusted"}, "not issued by an installed"),
        ({"not_before": NOW - 400 * DAY, "days": 365}, "expired"),
    ],
    ids=["other key", "other CN", "other O", "untrusted CA", "expired"],
)
def test_a_chain_failing_an_a02_fr_06_check_is_refused_with_the_reason(
    pki: SecurityPki,
    key: ec.EllipticCurvePrivateKey,
    csr: str,
    options: dict[str, object],
    why: str,
) -> None:
    options = dict(options)
    ca = pki.untrusted_root if options.pop("ca", None) == "untrusted" else pki.csms_root
    if options.get("key") == "other":
        options["key"] = generate_key("ec-p256")
    text = sign_csr(csr, ca, **options)  # type: ignore[arg-type]
    with pytest.raises(CertificateProblem, match=why):
        _check(pki, key, text)


def test_a_chain_longer_than_certificate_signed_max_chain_size_is_refused(
    pki: SecurityPki, key: ec.EllipticCurvePrivateKey, csr: str
) -> None:
    text = sign_csr(csr, pki.csms_root, intermediates=2)
    _check(pki, key, text, max_chain_size=len(text))
    with pytest.raises(CertificateProblem, match="CertificateSignedMaxChainSize"):
        _check(pki, key, text, max_chain_size=len(text) - 1)


def test_garbage_instead_of_a_chain_is_refused(
    pki: SecurityPki, key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(CertificateProblem, match="no PEM"):
        _check(pki, key, "hello")


# -- key pair and CSR (A02.FR.02/03/13) --


@pytest.mark.parametrize(
    ("key_type", "kind"), [("rsa-2048", rsa.RSAPrivateKey), ("ec-p256", ec.EllipticCurvePrivateKey)]
)
def test_key_types(key_type: str, kind: type) -> None:
    made = generate_key(key_type)
    assert isinstance(made, kind)
    if isinstance(made, rsa.RSAPrivateKey):
        assert made.key_size == 2048
    else:
        assert isinstance(made.curve, ec.SECP256R1)
    with pytest.raises(ValueError, match="key type"):
        generate_key("dsa-1024")


def test_the_csr_names_the_cpo_and_the_charge_point_and_is_signed_with_sha256(
    key: ec.EllipticCurvePrivateKey, csr: str
) -> None:
    assert csr.startswith("-----BEGIN CERTIFICATE REQUEST-----")
    request = x509.load_pem_x509_csr(csr.encode())
    assert request.is_signature_valid
    assert isinstance(request.signature_hash_algorithm, hashes.SHA256)
    assert request.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == CPO
    assert request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CP
    assert request.public_key() == key.public_key()


@pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")
def test_openssl_verifies_the_csr(tmp_path: Path, csr: str) -> None:
    assert OPENSSL is not None
    (tmp_path / "csr.pem").write_text(csr)
    result = subprocess.run(
        [OPENSSL, "req", "-in", "csr.pem", "-noout", "-verify", "-subject"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "verify OK" in result.stdout + result.stderr
    assert f"O = {CPO}, CN = {CP}" in result.stdout
