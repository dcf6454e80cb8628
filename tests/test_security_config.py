"""Security profiles in the configuration file and the SecurityProfile key (security whitepaper
§2, A00.FR.005, use case A05): what check-config refuses, what the CSMS may change, fallback."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from chargepoint.app.assembly import configuration_keys
from chargepoint.app.security import SecurityProfiles
from chargepoint.blocks.diagnostics import redact_config
from chargepoint.blocks.security_events import SecurityEvent
from chargepoint.certificate_store import CertificateStore
from chargepoint.hardware.simulated import SimulatedCharger
from chargepoint.model.certificates import generate_key, make_csr
from chargepoint.storage import open_state
from config.loader import Config, ConfigError, parse_config
from config.ocpp_keys import AUTHORIZATION_KEY, SECURITY_PROFILE, ConfigurationKeys
from tests.harness import fresh_state
from tests.pki import make_pki
from tests.security_pki import make_root, sign_csr

HEAD = """
[charge_point]
id = "CP-1"
vendor = "V"
model = "M"

[storage]
directory = "{state}"

[modem]
type = "{link}"
{port}

[csms]
"""
KEY = "00112233445566778899AABBCCDDEEFF"


def config(
    csms: str, *, link: str = "host", state: Path | None = None, where: Path = Path("t.toml")
) -> Config:
    port = 'port = "/dev/ttyUSB2"' if link == "quectel" else ""
    text = HEAD.format(state=state or fresh_state(), link=link, port=port) + csms
    return parse_config(text, where)


def problems(csms: str, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as error:
        config(csms, **kwargs)  # type: ignore[arg-type]
    return error.value.problems


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CSMS root CA and a charge point certificate with its key, beside the config file."""
    directory = tmp_path_factory.mktemp("security")
    pki = make_pki(directory / "pki")
    client = pki.client("CP-1")
    for source, name in ((pki.ca, "ca.pem"), (client.cert, "cp.pem"), (client.key, "cp.key")):
        shutil.copy(source, directory / name)
    return directory


def test_the_profile_follows_from_the_url_and_the_credentials(pem: Path) -> None:
    assert config('url = "ws://h/o"').csms.security_profile == 0
    assert config(f'url = "wss://h/o"\npassword = "{KEY}"').csms.security_profile == 2
    mutual = config(
        'url = "wss://h/o"\nclient_certificate = "cp.pem"\nclient_key = "cp.key"',
        where=pem / "t.toml",
    )
    assert mutual.csms.security_profile == 3
    assert mutual.csms.client_key == pem / "cp.key"  # relative to the file


def test_a_password_over_ws_must_be_asked_for() -> None:
    (problem,) = problems(f'url = "ws://h/o"\npassword = "{KEY}"')
    assert problem.startswith("csms.security_profile: a password over ws:// travels in clear")
    explicit = config(f'url = "ws://h/o"\npassword = "{KEY}"\nsecurity_profile = 1')
    assert explicit.csms.security_profile == 1


@pytest.mark.parametrize(
    ("csms", "expected"),
    [
        (
            'url = "wss://h/o"\nsecurity_profile = 1\npassword = "p"',
            "csms.url: security profile 1 needs a ws:// URL",
        ),
        (
            'url = "ws://h/o"\nsecurity_profile = 2\npassword = "p"',
            "csms.url: security profile 2 needs a wss:// URL",
        ),
        (
            'url = "wss://h/o"\nsecurity_profile = 2',
            "csms.password: security profile 2 authenticates with a password "
            "(csms.password or csms.password_file)",
        ),
        (
            'url = "wss://h/o"\nsecurity_profile = 3',
            "csms.client_certificate: security profile 3 needs the charge point certificate "
            "and its key (client_certificate, client_key)",
        ),
        (
            'url = "wss://h/o"\nclient_certificate = "cp.pem"',
            "csms.client_key: give client_certificate and client_key together",
        ),
        (
            'url = "ws://h/o"\n[csms.upgrade_urls]\n0 = "ws://x/o"',
            'csms.upgrade_urls: must be one of "1", "2", "3", not "0"',
        ),
        (
            'url = "ws://h/o"\n[csms.upgrade_urls]\n2 = "ws://x/o"',
            "csms.upgrade_urls.2: security profile 2 needs a wss:// URL",
        ),
        (
            'url = "wss://h/o"\npassword = "p"\n[csms.upgrade_urls]\n1 = "ws://x/o"',
            "csms.upgrade_urls.1: not above security profile 2; the profile can only be raised",
        ),
        (
            'url = "wss://h/o"\npassword = "p"\ncipher_suite = "0X0035"',
            "csms.cipher_suite: must be one of the AES-GCM suites 0XC02B, 0XC02F, 0XC02C, "
            "0XC030, 0X009C, 0X009D (security whitepaper A00.FR.318)",
        ),
    ],
)
def test_contradictions_are_named(pem: Path, csms: str, expected: str) -> None:
    assert problems(csms, where=pem / "t.toml") == [expected]


def test_tls_through_the_module_needs_the_ca_file(pem: Path) -> None:
    assert problems(f'url = "wss://h/o"\npassword = "{KEY}"', link="quectel") == [
        "csms.ca_file: TLS through the module needs the CSMS's root CA certificate (the "
        "module has no trust store of its own)"
    ]
    upgrade = (
        f'url = "ws://h/o"\npassword = "{KEY}"\nsecurity_profile = 1\n'
        '[csms.upgrade_urls]\n2 = "wss://h/o"'
    )
    assert problems(upgrade, link="quectel")[0].startswith("csms.ca_file:")
    assert config(upgrade + "\n", link="host").csms.url_for(2) == "wss://h/o"
    missing = problems(
        f'url = "wss://h/o"\npassword = "{KEY}"\nca_file = "nowhere.pem"', where=pem / "t.toml"
    )
    assert missing == [f"csms.ca_file: {pem / 'nowhere.pem'} is not a readable file"]


def _profiles(cfg: Config) -> tuple[SecurityProfiles, ConfigurationKeys]:
    db = open_state(cfg.storage_directory)
    csms = cfg.csms
    client = (csms.client_certificate, csms.client_key) if csms.client_key else None
    store = CertificateStore(
        cfg.storage_directory / "certificates",
        db,
        factory_csms_roots=csms.ca_file,
        factory_client=client,  # type: ignore[arg-type]
    )
    security = SecurityProfiles(cfg, db, store)
    keys = configuration_keys(cfg, SimulatedCharger(1, db), db, security.check)
    security.bind(keys)
    return security, keys


def test_the_csms_may_raise_the_profile_only_when_its_prerequisites_hold(pem: Path) -> None:
    state = fresh_state()
    cfg = config(
        f'url = "ws://h/o"\npassword = "{KEY}"\npassword_format = "hex"\nsecurity_profile = 1\n'
        'ca_file = "ca.pem"\n[csms.upgrade_urls]\n2 = "wss://h/o"',
        state=state,
        where=pem / "t.toml",
    )
    security, keys = _profiles(cfg)
    assert keys.get(SECURITY_PROFILE) == "1"
    # A05.FR.01: never lowered, never "changed" to the same value.
    assert keys.change(SECURITY_PROFILE, "0").value == "Rejected"
    assert keys.change(SECURITY_PROFILE, "1").value == "Rejected"
    # A05.FR.04: no charge point certificate for 3 (and no endpoint for it either).
    assert keys.change(SECURITY_PROFILE, "3").value == "Rejected"
    assert keys.change(SECURITY_PROFILE, "4").value == "Rejected"
    assert keys.change(SECURITY_PROFILE, "2").value == "Accepted"
    endpoint = security.endpoint()
    assert (endpoint.profile, endpoint.url, endpoint.password) == (
        2,
        "wss://h/o",
        bytes.fromhex(KEY),
    )
    # The CSMS roots the module gets: the file's (and any the CSMS installs), in one bundle.
    assert endpoint.tls is not None and endpoint.tls.ca_file is not None
    bundle = x509.load_pem_x509_certificates(endpoint.tls.ca_file.read_bytes())
    assert bundle == x509.load_pem_x509_certificates((pem / "ca.pem").read_bytes())
    assert endpoint.tls.client_cert is None


def test_without_an_authorization_key_profile_2_is_refused(pem: Path) -> None:
    cfg = config(
        'url = "ws://h/o"\nca_file = "ca.pem"\n[csms.upgrade_urls]\n2 = "wss://h/o"',
        where=pem / "t.toml",
    )
    security, keys = _profiles(cfg)
    assert (
        security.check("2")
        == "no AuthorizationKey of 16 to 20 bytes to authenticate with (A05.FR.02)"
    )
    assert keys.change(SECURITY_PROFILE, "2").value == "Rejected"
    assert keys.change(AUTHORIZATION_KEY, KEY).value == "Accepted"
    assert keys.change(SECURITY_PROFILE, "2").value == "Accepted"


def test_a_raised_profile_that_keeps_failing_falls_back_and_a_working_one_sticks(pem: Path) -> None:
    state = fresh_state()
    text = (
        f'url = "wss://h/o"\npassword = "{KEY}"\nca_file = "ca.pem"\nupgrade_attempts = 2\n'
        'client_certificate = "cp.pem"\nclient_key = "cp.key"\nsecurity_profile = 2'
    )
    security, keys = _profiles(config(text, state=state, where=pem / "t.toml"))
    assert keys.change(SECURITY_PROFILE, "3").value == "Accepted"
    assert security.endpoint().tls is not None
    assert security.endpoint().tls.client_cert == pem / "cp.pem"  # type: ignore[union-attr]
    assert security.endpoint().password is None  # profile 3: the certificate authenticates
    security.failed("TLS refused")
    assert keys.get(SECURITY_PROFILE) == "3"
    security.failed("TLS refused")
    assert keys.get(SECURITY_PROFILE) == "2"  # A05.FR.08
    assert keys.change(SECURITY_PROFILE, "3").value == "Accepted"
    security.connected()
    security.failed("the CSMS is restarting")  # a proven profile is kept whatever happens
    security.failed("the CSMS is restarting")
    assert keys.get(SECURITY_PROFILE) == "3"
    # A restart keeps what the CSMS set...
    again, keys = _profiles(config(text, state=state, where=pem / "t.toml"))
    assert (keys.get(SECURITY_PROFILE), again.proven) == ("3", 3)
    # ...unless the installer changed the file's profile: lowering is done on the charge point.
    lowered = text.replace("security_profile = 2", "security_profile = 2\n") + "\n"
    _, keys = _profiles(config(lowered, state=state, where=pem / "t.toml"))
    assert keys.get(SECURITY_PROFILE) == "3"  # the same profile in the file: nothing changed
    text1 = text.replace('url = "wss://h/o"', 'url = "ws://h/o"').replace(
        "security_profile = 2", 'security_profile = 1\n[csms.upgrade_urls]\n3 = "wss://h/o"'
    )
    again, keys = _profiles(config(text1, state=state, where=pem / "t.toml"))
    assert (keys.get(SECURITY_PROFILE), again.proven) == ("1", 1)


def test_what_the_csms_may_not_raise_to(pem: Path) -> None:
    # A05.FR.02: a text password of 8 bytes is no AuthorizationKey.
    short = config(
        'url = "ws://h/o"\npassword = "changeme"\nsecurity_profile = 1\nca_file = "ca.pem"\n'
        '[csms.upgrade_urls]\n2 = "wss://h/o"',
        where=pem / "t.toml",
    )
    security, _ = _profiles(short)
    assert security.check("2") == (
        "no AuthorizationKey of 16 to 20 bytes to authenticate with (A05.FR.02)"
    )
    # Profile 1 sends the password in clear: not on the CSMS's word alone.
    zero = config(
        f'url = "ws://h/o"\npassword = "{KEY}"\npassword_format = "hex"\nsecurity_profile = 0'
    )
    security, _ = _profiles(zero)
    assert security.check("1") == "profile 1 (a password over ws://) needs csms.upgrade_urls.1"
    # A05.FR.04: a certificate whose key does not fit it is no valid certificate.
    (pem / "other.key").write_bytes((pem / "pki" / "server.key").read_bytes())
    mismatched = config(
        f'url = "wss://h/o"\npassword = "{KEY}"\nca_file = "ca.pem"\n'
        'client_certificate = "cp.pem"\nclient_key = "other.key"\nsecurity_profile = 2',
        where=pem / "t.toml",
    )
    security, _ = _profiles(mismatched)
    problem = security.check("3")
    assert problem is not None and problem.startswith("the TLS files cannot be used:")


def test_a_new_authorization_key_the_csms_keeps_refusing_is_given_up(pem: Path) -> None:
    """A01.FR.04: if our ChangeConfiguration.conf was lost, the CSMS keeps the old password."""
    cfg = config(
        f'url = "wss://h/o"\npassword = "{KEY}"\npassword_format = "hex"\nupgrade_attempts = 2'
    )
    security, keys = _profiles(cfg)
    new = "4F43415F4F4354545F61646D696E5F74657374"
    assert keys.change(AUTHORIZATION_KEY, new).value == "Accepted"
    assert security.endpoint().password == bytes.fromhex(new)
    security.failed("HTTP 401", unauthorized=True)
    assert security.endpoint().password == bytes.fromhex(new)
    security.failed("HTTP 401", unauthorized=True)
    assert security.endpoint().password == bytes.fromhex(KEY)  # back to what worked
    # Once a connection proved a new key, a later 401 never brings the old one back.
    assert keys.change(AUTHORIZATION_KEY, new).value == "Accepted"
    security.connected()
    for _ in range(3):
        security.failed("HTTP 401", unauthorized=True)
    assert security.endpoint().password == bytes.fromhex(new)


def test_the_diagnostics_copy_of_the_configuration_holds_no_secret() -> None:
    text = (
        'csms.password = "s3cret"\n'
        'modem = { password = "apn-pw", apn = "internet" }\n'
        'url = "wss://user:pw-in-url@csms.example.com/ocpp"\n'
        '[csms]\npassword = "abc"\nclient_key = "/etc/chargepoint/cp-key.pem"\n'
    )
    redacted = redact_config(text)
    for secret in ("s3cret", "apn-pw", "pw-in-url", "abc"):
        assert secret not in redacted
    assert 'apn = "internet"' in redacted and "@csms.example.com/ocpp" in redacted


def test_a_new_certificate_is_dropped_only_when_the_previous_one_connects_where_it_failed(
    tmp_path: Path, pem: Path
) -> None:
    """A02.FR.10, review M1: a handshake failure of unknown cause does not delete a new
    charge point certificate. After csms.upgrade_attempts failures it is suspended and the
    previous one presented; if that one fails as often (the CSMS was down), the new one is
    tried again; if it connects, the new one was refused: dropped, with
    InvalidChargePointCertificate."""
    root = make_root("CSMS root", key_type="ec-p256")
    root.write(tmp_path / "ca.pem")
    for name in ("cp.pem", "cp.key"):
        shutil.copy(pem / name, tmp_path / name)
    cfg = config(
        'url = "wss://h/o"\nca_file = "ca.pem"\nclient_certificate = "cp.pem"\n'
        'client_key = "cp.key"\nupgrade_attempts = 2',
        where=tmp_path / "t.toml",
    )
    security, _ = _profiles(cfg)
    events: list[tuple[SecurityEvent, str | None]] = []
    security.report_to(lambda event, info: events.append((event, info)))
    store = security._store
    key = generate_key("ec-p256")
    store.store_pending_key(key, organization="V", common_name="CP-1")
    csr = make_csr(key, charge_point_id="CP-1", cpo_name="V")
    now = datetime.now(UTC)
    store.accept_chain(sign_csr(csr, root), charge_point_id="CP-1", cpo_name="V", now=now)

    def presented() -> Path | None:
        tls = security.endpoint().tls
        assert tls is not None
        return tls.client_cert

    def fail_twice() -> None:
        for _ in range(2):
            presented()
            security.failed("TLS handshake failed", handshake=True)

    new = presented()
    assert new is not None and new != tmp_path / "cp.pem"
    fail_twice()  # the CSMS is down, say
    assert presented() == tmp_path / "cp.pem"  # suspended: the previous one is tried
    fail_twice()  # still down: not the new certificate's fault
    assert presented() == new and new.exists()  # restored
    assert events == []
    fail_twice()
    assert presented() == tmp_path / "cp.pem"
    security.connected()  # the previous one works where the new one failed
    assert [event for event, _ in events] == [SecurityEvent.INVALID_CHARGE_POINT_CERTIFICATE]
    assert presented() == tmp_path / "cp.pem" and not new.exists()
