"""The certificate store (chargepoint/certificate_store.py) on a real directory and the real
state database, and the CertificateManagement block's handlers on a real Context (whitepaper
A02/A03, M03-M05; OCTT TC_074-TC_078 at the block's level; the end-to-end runs through the
daemon are elsewhere)."""

from __future__ import annotations

import asyncio
import datetime
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ocpp.v16.enums import (
    CertificateSignedStatus,
    CertificateStatus,
    DeleteCertificateStatus,
    GetInstalledCertificateStatus,
)

from chargepoint.blocks.certificates import RENEWAL_JOB, CertificateManagement
from chargepoint.blocks.security_events import SecurityEvent
from chargepoint.certificate_store import (
    CertificateStore,
    Deletion,
    Fallback,
    Installed,
    RootType,
    StoreFull,
)
from chargepoint.model.certificates import (
    CertificateProblem,
    HashData,
    generate_key,
    hash_data,
    load_pem_chain,
    make_csr,
    private_key_pem,
)
from chargepoint.protocol.request import Online
from chargepoint.storage import open_state
from tests.harness import make_station
from tests.security_pki import SecurityPki, make_security_pki, sign_csr

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)
CP = "CP-0042"
CPO = "Test CPO"
CSMS = RootType.CSMS
MANUFACTURER = RootType.MANUFACTURER


@pytest.fixture(scope="module")
def pki() -> SecurityPki:
    return make_security_pki(key_type="ec-p256")


class Place:
    """A state directory: the factory files of the configuration, the database, the store's
    directory; ``store()`` opens the store as a (re)started daemon would."""

    def __init__(self, root: Path, pki: SecurityPki) -> None:
        self.root = root
        self.factory_roots = root / "ca.pem"
        self.factory_roots.write_text(pki.csms_root.pem)
        self.factory_cert = root / "client.pem"
        self.factory_key = root / "client.key"
        key = generate_key("ec-p256")
        csr = make_csr(key, charge_point_id=CP, cpo_name=CPO)
        self.factory_cert.write_text(sign_csr(csr, pki.csms_root, days=400))
        self.factory_key.write_bytes(private_key_pem(key))
        self.directory = root / "state" / "certificates"
        self.db = open_state(root / "state")

    def store(self, max_roots: int = 10, manufacturer: Path | None = None) -> CertificateStore:
        return CertificateStore(
            self.directory,
            self.db,
            factory_csms_roots=self.factory_roots,
            factory_client=(self.factory_cert, self.factory_key),
            factory_manufacturer_roots=manufacturer,
            max_roots=max_roots,
        )


@pytest.fixture
def place(tmp_path: Path, pki: SecurityPki) -> Place:
    return Place(tmp_path, pki)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _request(store: CertificateStore) -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = generate_key("ec-p256")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    store.store_pending_key(key, organization=CPO, common_name=CP)
    return key, make_csr(key, charge_point_id=CP, cpo_name=CPO)


def _accept(store: CertificateStore, text: str, now: datetime.datetime = NOW) -> None:
    store.accept_chain(text, charge_point_id=CP, cpo_name=CPO, now=now)


# -- roots: install, list, delete (M03-M05) --


def test_the_factory_roots_are_listed_and_bundled(place: Place, pki: SecurityPki) -> None:
    place.factory_roots.write_text(pki.csms_root.pem + pki.second_root.pem)  # several in one file
    store = place.store()
    assert store.hash_data(CSMS) == [hash_data(pki.csms_root.cert), hash_data(pki.second_root.cert)]
    assert store.hash_data(MANUFACTURER) == []
    bundle = store.csms_roots_file()
    assert bundle is not None and bundle.parent == place.directory
    assert load_pem_chain(bundle.read_bytes()) == [pki.csms_root.cert, pki.second_root.cert]


def test_the_directory_is_0700_even_under_a_permissive_umask(place: Place) -> None:
    old = os.umask(0)
    try:
        place.store()
    finally:
        os.umask(old)
    assert _mode(place.directory) == 0o700


def test_an_installed_root_is_listed_and_changes_the_bundles_path(
    place: Place, pki: SecurityPki
) -> None:
    store = place.store()
    before = store.csms_roots_file()
    assert store.install(CSMS, pki.second_root.pem, NOW) is Installed.ADDED
    after = store.csms_roots_file()
    assert after is not None and after != before
    assert before is not None and not before.exists()  # the stale bundle is removed
    assert load_pem_chain(after.read_bytes()) == [pki.csms_root.cert, pki.second_root.cert]
    assert hash_data(pki.second_root.cert) in store.hash_data(CSMS)


def test_a_manufacturer_root_is_listed_apart_and_not_in_the_csms_bundle(
    place: Place, pki: SecurityPki
) -> None:
    store = place.store()
    bundle = store.csms_roots_file()
    store.install(MANUFACTURER, pki.manufacturer_root.pem, NOW)
    assert store.hash_data(MANUFACTURER) == [hash_data(pki.manufacturer_root.cert)]
    assert store.manufacturer_roots() == [pki.manufacturer_root.cert]
    assert store.csms_roots_file() == bundle


def test_the_two_hierarchies_stay_apart(place: Place, pki: SecurityPki) -> None:
    # A manufacturer root signs firmware, not charge point certificates (A02.FR.06: the CPO's
    # hierarchy), and a CSMS root is no manufacturer's (L01.FR.12): installing one kind
    # never lets it stand in for the other.
    store = place.store()
    store.install(MANUFACTURER, pki.manufacturer_root.pem, NOW)
    _key, csr = _request(store)
    with pytest.raises(CertificateProblem, match="not issued by an installed"):
        _accept(store, sign_csr(csr, pki.manufacturer_root))
    assert pki.csms_root.cert not in store.manufacturer_roots()
    assert store.manufacturer_roots() == [pki.manufacturer_root.cert]


def test_the_factory_manufacturer_roots_come_from_their_file(
    place: Place, pki: SecurityPki
) -> None:
    path = place.root / "manufacturer.pem"
    path.write_text(pki.manufacturer_root.pem)
    assert place.store(manufacturer=path).manufacturer_roots() == [pki.manufacturer_root.cert]


def test_installing_a_root_twice_keeps_one_copy(place: Place, pki: SecurityPki) -> None:
    store = place.store()
    store.install(CSMS, pki.second_root.pem, NOW)
    assert store.install(CSMS, pki.second_root.pem, NOW) is Installed.ALREADY_INSTALLED
    assert store.install(CSMS, pki.csms_root.pem, NOW) is Installed.ALREADY_INSTALLED  # factory
    assert len(store.roots()) == 2


@pytest.mark.parametrize("which", ["expired_root", "not_ca"])
def test_an_invalid_root_is_refused_and_changes_nothing(
    place: Place, pki: SecurityPki, which: str
) -> None:
    store = place.store()
    bundle = store.csms_roots_file()
    with pytest.raises(CertificateProblem):
        store.install(CSMS, getattr(pki, which).pem, NOW)
    assert len(store.roots()) == 1 and store.csms_roots_file() == bundle


def test_certificate_store_max_length_counts_both_types(place: Place, pki: SecurityPki) -> None:
    store = place.store(max_roots=2)  # the factory CSMS root is one
    store.install(MANUFACTURER, pki.manufacturer_root.pem, NOW)
    with pytest.raises(StoreFull, match="CertificateStoreMaxLength"):
        store.install(CSMS, pki.second_root.pem, NOW)
    # A duplicate needs no room.
    assert store.install(CSMS, pki.csms_root.pem, NOW) is Installed.ALREADY_INSTALLED


def test_delete_unknown_is_not_found(place: Place, pki: SecurityPki) -> None:
    store = place.store()
    assert store.delete(hash_data(pki.second_root.cert), security_profile=2) is Deletion.NOT_FOUND


def test_delete_finds_the_root_by_the_hash_algorithm_given(place: Place, pki: SecurityPki) -> None:
    # M04.FR.07: the CSMS uses the hashAlgorithm it installed with; any of the three matches.
    store = place.store()
    store.install(CSMS, pki.second_root.pem, NOW)
    bundle = store.csms_roots_file()
    target = hash_data(pki.second_root.cert, "SHA512")
    assert store.delete(target, security_profile=2) is Deletion.ACCEPTED
    assert store.csms_roots() == [pki.csms_root.cert]
    assert store.csms_roots_file() != bundle
    assert bundle is not None and not bundle.exists()


def test_the_last_csms_root_cannot_be_deleted_under_profile_2_or_3(
    place: Place, pki: SecurityPki
) -> None:
    # M04.FR.06: the charge point could never check the CSMS again.
    store = place.store()
    root = hash_data(pki.csms_root.cert)
    for profile in (2, 3):
        assert store.delete(root, security_profile=profile) is Deletion.FAILED
    assert store.csms_roots() == [pki.csms_root.cert]
    assert store.delete(root, security_profile=1) is Deletion.ACCEPTED
    assert store.csms_roots_file() is None


def test_a_deleted_factory_root_stays_deleted_after_a_restart(
    place: Place, pki: SecurityPki
) -> None:
    store = place.store()
    store.install(CSMS, pki.second_root.pem, NOW)
    assert store.delete(hash_data(pki.csms_root.cert), security_profile=3) is Deletion.ACCEPTED
    again = place.store()  # a restart reads the same factory file
    assert again.csms_roots() == [pki.second_root.cert]
    # Installed again by the CSMS, it is back.
    assert again.install(CSMS, pki.csms_root.pem, NOW) is Installed.ADDED
    assert len(again.csms_roots()) == 2


def test_a_root_taken_out_of_the_factory_file_is_forgotten(place: Place, pki: SecurityPki) -> None:
    place.store()
    place.factory_roots.write_text(pki.second_root.pem)  # the installer replaced the file
    assert place.store().csms_roots() == [pki.second_root.cert]


def test_installed_roots_survive_a_restart(place: Place, pki: SecurityPki) -> None:
    store = place.store()
    store.install(CSMS, pki.second_root.pem, NOW)
    store.install(MANUFACTURER, pki.manufacturer_root.pem, NOW)
    bundle = store.csms_roots_file()
    again = place.store()
    assert again.csms_roots() == store.csms_roots()
    assert again.manufacturer_roots() == [pki.manufacturer_root.cert]
    assert again.csms_roots_file() == bundle


# -- the charge point certificate (A02/A03) --


def test_the_factory_certificate_is_presented_until_there_is_another(place: Place) -> None:
    store = place.store()
    assert store.client_files() == (place.factory_cert, place.factory_key)
    leaf = load_pem_chain(place.factory_cert.read_bytes())[0]
    assert store.client_expires() == leaf.not_valid_after_utc


def test_the_pending_key_is_0600_from_its_creation_whatever_the_umask(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = place.store()
    opened: list[tuple[str, int]] = []
    real_open = os.open

    def recording_open(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        if flags & os.O_CREAT:
            opened.append((os.fspath(path), mode))
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(os, "open", recording_open)
    old = os.umask(0)
    try:
        key, _ = _request(store)
    finally:
        os.umask(old)
    keys = list(place.directory.glob("client-*.key"))
    assert len(keys) == 1 and _mode(keys[0]) == 0o600
    # The temporary file was created 0600: never readable by others, not for an instant.
    assert opened and all(mode == 0o600 for path, mode in opened if ".key" in path)
    assert not list(place.directory.glob(".*.tmp"))
    pending = store.pending_key()
    assert pending is not None and private_key_pem(pending) == private_key_pem(key)


def test_a_signed_chain_becomes_the_candidate_then_current_once_proven(
    place: Place, pki: SecurityPki
) -> None:
    # A02.FR.08-10.
    store = place.store()
    _, csr = _request(store)
    _accept(store, sign_csr(csr, pki.csms_root, intermediates=1))
    assert store.pending_key() is None
    files = store.client_files()
    assert files is not None and files != (place.factory_cert, place.factory_key)
    cert, key = files
    assert cert.parent == key.parent == place.directory
    assert _mode(key) == 0o600
    assert len(load_pem_chain(cert.read_bytes())) == 2
    store.client_proven()
    assert store.client_files() == files
    # A second renewal: a new candidate; the first stays as the fallback when it fails.
    _, csr = _request(store)
    _accept(store, sign_csr(csr, pki.csms_root))
    newer = store.client_files()
    assert newer is not None and newer != files and newer[0].name != files[0].name
    assert store.client_failed() is Fallback.SUSPENDED
    assert store.client_files() == files
    assert newer[0].exists() and newer[1].exists()  # suspended, not yet judged
    assert store.client_proven() is Fallback.DROPPED  # the old one works: the new one failed
    assert not newer[0].exists() and not newer[1].exists()
    assert store.client_failed() is Fallback.NONE  # nothing newer left to drop


def test_a_failing_first_certificate_falls_back_to_the_factory_one(
    place: Place, pki: SecurityPki
) -> None:
    store = place.store()
    _, csr = _request(store)
    _accept(store, sign_csr(csr, pki.csms_root))
    assert store.client_files() != (place.factory_cert, place.factory_key)
    assert store.client_failed() is Fallback.SUSPENDED
    assert store.client_files() == (place.factory_cert, place.factory_key)


def test_a_suspended_certificate_is_restored_when_the_previous_one_fails_too_m1(
    place: Place, pki: SecurityPki
) -> None:
    # A failed handshake does not say why: a CSMS that is down fails the previous
    # certificate as well, so the new one was not the cause and is tried again.
    store = place.store()
    _, csr = _request(store)
    _accept(store, sign_csr(csr, pki.csms_root))
    new = store.client_files()
    assert store.client_failed() is Fallback.SUSPENDED
    assert store.client_files() == (place.factory_cert, place.factory_key)
    again = place.store()  # a restart in between keeps the suspended one and its files
    assert again.client_files() == (place.factory_cert, place.factory_key)
    assert new is not None and new[0].exists() and new[1].exists()
    assert again.client_failed() is Fallback.RESTORED
    assert again.client_files() == new
    assert again.client_proven() is Fallback.NONE  # the CSMS is back: the new one works
    assert again.client_files() == new
    assert again.client_failed() is Fallback.NONE  # proven: no longer suspended


def test_a_proven_certificate_keeps_the_previous_one_as_fallback_on_disk(
    place: Place, pki: SecurityPki
) -> None:
    store = place.store()
    for _ in range(3):
        _, csr = _request(store)
        _accept(store, sign_csr(csr, pki.csms_root))
        store.client_files()
        store.client_proven()
    rows = dict(place.db.execute("SELECT state, COUNT(*) FROM client_certificates GROUP BY state"))
    assert rows == {"current": 1, "previous": 1}
    # Two certificates and their keys on disk, the third one's files removed.
    assert len(list(place.directory.glob("client-*"))) == 4


def test_a_certificate_not_yet_valid_is_used_from_its_not_before(
    place: Place, pki: SecurityPki
) -> None:
    # A02.FR.08.
    store = place.store()
    _, csr = _request(store)
    start = NOW + 3 * DAY
    _accept(store, sign_csr(csr, pki.csms_root, not_before=start))
    assert store.client_files(NOW) == (place.factory_cert, place.factory_key)
    store.client_proven()  # the factory one worked: the candidate waits on
    assert store.client_files(start + DAY) != (place.factory_cert, place.factory_key)


def test_a_refused_chain_leaves_the_key_pending_and_nothing_else(
    place: Place, pki: SecurityPki
) -> None:
    store = place.store()
    key, csr = _request(store)
    with pytest.raises(CertificateProblem, match="not issued by an installed"):
        _accept(store, sign_csr(csr, pki.untrusted_root))
    with pytest.raises(CertificateProblem, match="not for the key"):
        _accept(store, sign_csr(csr, pki.csms_root, key=generate_key("ec-p256")))
    assert store.client_files() == (place.factory_cert, place.factory_key)
    assert not list(place.directory.glob("client-*.pem"))
    pending = store.pending_key()
    assert pending is not None and private_key_pem(pending) == private_key_pem(key)
    _accept(store, sign_csr(csr, pki.csms_root))  # the right chain for the same CSR


def test_a_chain_without_a_pending_request_is_refused(place: Place, pki: SecurityPki) -> None:
    store = place.store()
    csr = make_csr(generate_key("ec-p256"), charge_point_id=CP, cpo_name=CPO)
    with pytest.raises(CertificateProblem, match="no certificate signing request"):
        _accept(store, sign_csr(csr, pki.csms_root))


def test_start_makes_key_files_0600_again_and_leaves_an_installers_files_alone(
    place: Place, pki: SecurityPki
) -> None:
    store = place.store()
    _, csr = _request(store)
    _accept(store, sign_csr(csr, pki.csms_root))
    bundle = store.csms_roots_file()
    files = store.client_files()
    assert files is not None and bundle is not None
    files[1].chmod(0o644)  # restored from a backup with the wrong mode
    installers = [
        place.directory / "client-cert.key",
        place.directory / "client-cert.pem",
        place.directory / "csms-roots-site.pem",
        place.directory / ".client-cert.key.tmp",
    ]
    for path in installers:
        path.write_text("the installer's")
    again = place.store()
    assert _mode(files[1]) == 0o600
    assert all(path.exists() for path in installers)
    assert again.client_files() == files and again.csms_roots_file() == bundle
    assert all(path.exists() for path in installers)


def test_a_second_request_keeps_the_first_key_so_its_certificate_is_accepted_a02_fr_04(
    place: Place, pki: SecurityPki
) -> None:
    # The CA may take longer than the next renewal check or a second
    # ExtendedTriggerMessage(SignChargePointCertificate): the first CSR's certificate still fits.
    store = place.store()
    _, first = _request(store)
    _, second = _request(store)
    _accept(store, sign_csr(first, pki.csms_root))
    assert store.pending_key() is not None  # the second request still waits
    _accept(store, sign_csr(second, pki.csms_root))  # and may still come, replacing it
    assert store.pending_key() is None


def test_only_the_last_three_pending_keys_are_kept(place: Place, pki: SecurityPki) -> None:
    store = place.store()
    csrs = [_request(store)[1] for _ in range(4)]
    assert len(list(place.directory.glob("client-*.key"))) == 3
    with pytest.raises(CertificateProblem, match="not for the key"):
        _accept(store, sign_csr(csrs[0], pki.csms_root))
    _accept(store, sign_csr(csrs[1], pki.csms_root))


async def test_renewal_waits_for_a_request_younger_than_a_day(place: Place) -> None:
    b = Block(place)
    expires = b.store.client_expires()
    assert expires is not None
    start = expires - 29 * DAY
    b.clock = lambda: start
    await b.sign()  # pending since ``start``
    b.clock = lambda: start + datetime.timedelta(hours=23)
    assert b.block.renew_if_due() is False
    assert b.block._requesting is False
    b.clock = lambda: start + DAY
    assert b.block.renew_if_due() is True  # no certificate a day later: ask again
    await _drain(b.context)


def test_everything_survives_a_restart(place: Place, pki: SecurityPki) -> None:
    store = place.store()
    _, csr = _request(store)
    _accept(store, sign_csr(csr, pki.csms_root, days=200))
    proven = store.client_files()
    store.client_proven()
    _, csr = _request(store)
    _accept(store, sign_csr(csr, pki.csms_root, days=300))
    candidate = store.client_files()
    _, csr = _request(store)  # and one still pending
    again = place.store()
    assert again.client_files() == candidate
    assert again.pending_key() is not None
    expires = again.client_expires()
    assert expires is not None and NOW + 290 * DAY < expires < NOW + 310 * DAY
    assert again.client_failed() is Fallback.SUSPENDED
    assert again.client_files() == proven


def test_files_a_power_cut_left_behind_are_removed_at_start(place: Place, pki: SecurityPki) -> None:
    store = place.store()
    _, csr = _request(store)
    _accept(store, sign_csr(csr, pki.csms_root))
    files = store.client_files()
    # A key written before its row (the cut came in between) and a half-written temporary.
    orphan = place.directory / "client-0123456789abcdef.key"
    orphan.write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    temporary = place.directory / ".client-0123456789abcdef.key.tmp"
    temporary.write_bytes(b"half")
    again = place.store()
    assert not orphan.exists() and not temporary.exists()
    assert again.client_files() == files
    assert files is not None and all(path.exists() for path in files)


# -- the block: handlers on a real Context --


class FakeCsms:
    """The CSMS end of an accepted connection, for the block alone: it records requests
    (answering SignCertificate with ``status``) and reconnects asked of the session."""

    def __init__(self, status: str | None = "Accepted") -> None:
        self.status = status
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.reconnects: list[str] = []
        self.requested = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def request(
        self, action: str, payload: dict[str, Any], /, *, line_wait: float | None = None
    ) -> dict[str, Any]:
        self.requests.append((action, payload))
        self.requested.set()
        if self.status is None:
            raise TimeoutError("no answer")
        return {"status": self.status}

    def spawn(self, work: Any, name: str) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(work, name=name))

    async def boot(self) -> None:
        pass

    async def heartbeat(self) -> None:
        pass

    async def reconnect(self, why: str) -> None:
        self.reconnects.append(why)


class Block:
    def __init__(self, place: Place, profile: int = 3, cpo_name: str = CPO, **options: Any) -> None:
        self.station = make_station(CpoName=cpo_name) if cpo_name else make_station()
        self.context = self.station.context
        self.store = place.store(**options)
        self.events: list[tuple[SecurityEvent, str | None]] = []
        self.profile = profile
        self.csms = FakeCsms()
        self.clock: Callable[[], datetime.datetime] = lambda: NOW
        self.block = CertificateManagement(
            self.context,
            self.store,
            lambda event, info: self.events.append((event, info)),
            charge_point_id=CP,
            key_type="ec-p256",
            security_profile=lambda: self.profile,
            clock=lambda: self.clock(),  # noqa: PLW0108 (the test changes self.clock)
        )

    def online(self) -> None:
        self.context.connection = Online(request=self.csms.request, session=self.csms)
        self.context.session = self.csms

    def event_types(self) -> list[SecurityEvent]:
        return [event for event, _ in self.events]

    async def sign(self) -> str:
        """request_certificate() through to the CSR the CSMS received."""
        self.online()
        self.block.request_certificate()
        await asyncio.wait_for(self.csms.requested.wait(), 10)
        action, payload = self.csms.requests[-1]
        assert action == "SignCertificate"
        await _drain(self.context)
        return str(payload["csr"])


async def _drain(context: Any) -> None:
    await asyncio.gather(*list(context._tasks), return_exceptions=False)


def test_install_a_manufacturer_root_tc_075_1(place: Place, pki: SecurityPki) -> None:
    b = Block(place)
    result = b.block._on_install_certificate(
        certificate_type="ManufacturerRootCertificate", certificate=pki.manufacturer_root.pem
    )
    assert result.status is CertificateStatus.accepted
    b.block._after_install_certificate("ManufacturerRootCertificate", pki.manufacturer_root.pem)
    answer = b.block._on_get_installed_certificate_ids(
        certificate_type="ManufacturerRootCertificate"
    )
    assert answer.status is GetInstalledCertificateStatus.accepted
    assert answer.certificate_hash_data == [hash_data(pki.manufacturer_root.cert).to_ocpp()]
    assert b.events == []


def test_install_a_csms_root_tc_075_2_records_a_reconfiguration(
    place: Place, pki: SecurityPki
) -> None:
    b = Block(place)
    result = b.block._on_install_certificate(
        certificate_type="CentralSystemRootCertificate", certificate=pki.second_root.pem
    )
    assert result.status is CertificateStatus.accepted
    assert b.events == []  # not before the answer has gone
    b.block._after_install_certificate("CentralSystemRootCertificate", pki.second_root.pem)
    assert b.event_types() == [SecurityEvent.RECONFIGURATION_OF_SECURITY_PARAMETERS]
    answer = b.block._on_get_installed_certificate_ids("CentralSystemRootCertificate")
    assert hash_data(pki.second_root.cert).to_ocpp() in answer.certificate_hash_data


def test_an_expired_csms_root_is_rejected_with_invalid_central_system_certificate_tc_078(
    place: Place, pki: SecurityPki
) -> None:
    b = Block(place)
    result = b.block._on_install_certificate("CentralSystemRootCertificate", pki.expired_root.pem)
    assert result.status is CertificateStatus.rejected
    b.block._after_install_certificate("CentralSystemRootCertificate", pki.expired_root.pem)
    assert b.event_types() == [SecurityEvent.INVALID_CENTRAL_SYSTEM_CERTIFICATE]
    assert "expired" in str(b.events[0][1])
    assert b.store.csms_roots() == [pki.csms_root.cert]


def test_an_invalid_manufacturer_root_is_rejected_without_a_csms_event(
    place: Place, pki: SecurityPki
) -> None:
    b = Block(place)
    result = b.block._on_install_certificate("ManufacturerRootCertificate", "garbage")
    assert result.status is CertificateStatus.rejected
    b.block._after_install_certificate("ManufacturerRootCertificate", "garbage")
    assert b.events == []


def test_a_full_store_rejects_an_install_m05_fr_03(place: Place, pki: SecurityPki) -> None:
    b = Block(place, max_roots=1)
    result = b.block._on_install_certificate(
        "ManufacturerRootCertificate", pki.manufacturer_root.pem
    )
    assert result.status is CertificateStatus.rejected


def test_a_store_that_cannot_write_fails_the_install_m05_fr_04(
    place: Place, pki: SecurityPki
) -> None:
    b = Block(place)
    place.db.close()  # the store's database cannot be written
    result = b.block._on_install_certificate("CentralSystemRootCertificate", pki.second_root.pem)
    assert result.status is CertificateStatus.failed


def test_get_installed_certificate_ids_of_a_type_with_none_is_not_found(place: Place) -> None:
    b = Block(place)
    answer = b.block._on_get_installed_certificate_ids("ManufacturerRootCertificate")
    assert answer.status is GetInstalledCertificateStatus.not_found
    assert answer.certificate_hash_data is None


def test_delete_a_certificate_tc_076(place: Place, pki: SecurityPki) -> None:
    b = Block(place)
    b.store.install(CSMS, pki.second_root.pem, NOW)
    listed = b.block._on_get_installed_certificate_ids("CentralSystemRootCertificate")
    wire = next(
        d for d in listed.certificate_hash_data if d == hash_data(pki.second_root.cert).to_ocpp()
    )
    snake = {  # as the library hands it to the handler
        "hash_algorithm": wire["hashAlgorithm"],
        "issuer_name_hash": wire["issuerNameHash"].upper(),
        "issuer_key_hash": wire["issuerKeyHash"],
        "serial_number": wire["serialNumber"],
    }
    result = b.block._on_delete_certificate(certificate_hash_data=snake)
    assert result.status is DeleteCertificateStatus.accepted
    b.block._after_delete_certificate(snake)
    assert b.event_types() == [SecurityEvent.RECONFIGURATION_OF_SECURITY_PARAMETERS]
    again = b.block._on_get_installed_certificate_ids("CentralSystemRootCertificate")
    assert wire not in again.certificate_hash_data
    assert b.block._on_delete_certificate(snake).status is DeleteCertificateStatus.not_found


def test_a_factory_file_with_an_intermediate_lists_both_and_the_root_can_be_deleted_m03_m04(
    place: Place, pki: SecurityPki, caplog: pytest.LogCaptureFixture
) -> None:
    # Root + intermediate in csms.ca_file, as installers often ship it: the intermediate's
    # hash data is computed with the root as its issuer (whitepaper §6.1), so the CSMS sees
    # every installed certificate (M03) and can delete any of them (M04, TC_075_2/TC_076).
    intermediate = pki.csms_root.intermediate("Factory intermediate")
    place.factory_roots.write_text(pki.csms_root.pem + intermediate.pem + pki.second_root.pem)
    b = Block(place)
    assert "Factory intermediate" in caplog.text  # L2: not a valid root, said at start
    bundle = b.store.csms_roots_file()
    assert bundle is not None and len(load_pem_chain(bundle.read_bytes())) == 3  # still there
    listed = b.block._on_get_installed_certificate_ids("CentralSystemRootCertificate")
    assert listed.status is GetInstalledCertificateStatus.accepted
    root_data = hash_data(pki.csms_root.cert).to_ocpp()
    assert listed.certificate_hash_data == [
        root_data,
        hash_data(intermediate.cert, issuer=pki.csms_root.cert).to_ocpp(),
        hash_data(pki.second_root.cert).to_ocpp(),
    ]
    assert b.block._on_delete_certificate(root_data).status is DeleteCertificateStatus.accepted
    # Its issuer gone, the intermediate cannot be hashed: left out with a warning, the
    # listing and later deletions still work.
    caplog.clear()
    again = b.block._on_get_installed_certificate_ids("CentralSystemRootCertificate")
    assert again.certificate_hash_data == [hash_data(pki.second_root.cert).to_ocpp()]
    b.block._on_get_installed_certificate_ids("CentralSystemRootCertificate")
    assert caplog.text.count("its issuer is not installed") == 1
    data = hash_data(pki.second_root.cert).to_ocpp()
    assert b.block._on_delete_certificate(data).status is DeleteCertificateStatus.accepted


def test_deleting_the_last_csms_root_in_use_fails_m04_fr_06(place: Place, pki: SecurityPki) -> None:
    b = Block(place, profile=2)
    data = hash_data(pki.csms_root.cert).to_ocpp()
    assert b.block._on_delete_certificate(data).status is DeleteCertificateStatus.failed
    b.block._after_delete_certificate(data)
    assert b.events == []


async def test_update_the_charge_point_certificate_tc_074(place: Place, pki: SecurityPki) -> None:
    b = Block(place)
    csr = await b.sign()
    chain = sign_csr(csr, pki.csms_root)
    result = b.block._on_certificate_signed(certificate_chain=chain)
    assert result.status is CertificateSignedStatus.accepted
    assert b.csms.tasks == []  # nothing before the answer has gone
    b.block._after_certificate_signed(chain)
    assert b.event_types() == [SecurityEvent.RECONFIGURATION_OF_SECURITY_PARAMETERS]
    await asyncio.gather(*b.csms.tasks)
    assert b.csms.reconnects == ["a new charge point certificate"]
    files = b.store.client_files()
    assert files is not None
    assert load_pem_chain(files[0].read_bytes())[0] == load_pem_chain(chain)[0]


async def test_under_profile_2_an_accepted_certificate_causes_no_reconnect(
    place: Place, pki: SecurityPki
) -> None:
    b = Block(place, profile=2)
    csr = await b.sign()
    chain = sign_csr(csr, pki.csms_root)
    assert b.block._on_certificate_signed(chain).status is CertificateSignedStatus.accepted
    b.block._after_certificate_signed(chain)
    assert b.csms.tasks == []


async def test_a_certificate_valid_later_schedules_the_switch_instead(
    place: Place, pki: SecurityPki
) -> None:
    # A02.FR.08: the switch (a reconnect) when notBefore comes, not now.
    b = Block(place)
    csr = await b.sign()
    start = NOW + 2 * DAY
    chain = sign_csr(csr, pki.csms_root, not_before=start)
    assert b.block._on_certificate_signed(chain).status is CertificateSignedStatus.accepted
    b.block._after_certificate_signed(chain)
    assert b.csms.tasks == []
    job = b.context.scheduler.get_job("certificate switch")
    assert job is not None and job.trigger.run_date == start.replace(microsecond=0)
    await job.func()
    await asyncio.gather(*b.csms.tasks)
    assert b.csms.reconnects == ["the new charge point certificate is valid now"]


async def test_the_switch_to_a_certificate_valid_later_is_scheduled_again_after_a_restart(
    place: Place, pki: SecurityPki
) -> None:
    # A02.FR.08 across a restart before notBefore: start() schedules the switch again from
    # the candidate on disk.
    b = Block(place)
    csr = await b.sign()
    start = NOW + 2 * DAY
    chain = sign_csr(csr, pki.csms_root, not_before=start)
    assert b.block._on_certificate_signed(chain).status is CertificateSignedStatus.accepted
    restarted = Block(place)
    scheduler = restarted.context.scheduler
    scheduler.start(paused=True)
    try:
        restarted.block.start()
        job = scheduler.get_job("certificate switch")
        assert job is not None and job.trigger.run_date == start.replace(microsecond=0)
    finally:
        scheduler.shutdown(wait=False)


async def test_an_invalid_certificate_is_rejected_with_invalid_charge_point_certificate_tc_077(
    place: Place, pki: SecurityPki
) -> None:
    b = Block(place)
    csr = await b.sign()
    chain = sign_csr(csr, pki.untrusted_root)
    result = b.block._on_certificate_signed(chain)
    assert result.status is CertificateSignedStatus.rejected
    b.block._after_certificate_signed(chain)
    assert b.event_types() == [SecurityEvent.INVALID_CHARGE_POINT_CERTIFICATE]
    assert "not issued by an installed" in str(b.events[0][1])
    assert b.store.client_files() == (place.factory_cert, place.factory_key)


def test_a_database_of_an_earlier_release_gains_the_csr_subject_columns(
    place: Place, pki: SecurityPki
) -> None:
    place.db.execute(
        "CREATE TABLE client_certificates (id INTEGER PRIMARY KEY AUTOINCREMENT, state TEXT "
        "NOT NULL, key_file TEXT NOT NULL, cert_file TEXT, not_before TEXT, not_after TEXT, "
        "since TEXT NOT NULL)"
    )
    store = place.store()
    _, csr = _request(store)
    _accept(store, sign_csr(csr, pki.csms_root))


async def test_a_cpo_name_changed_after_the_request_does_not_reject_its_certificate(
    place: Place, pki: SecurityPki
) -> None:
    # The leaf is compared with the CSR's subject (A02.FR.06, A02.FR.13), not with a CpoName
    # a ChangeConfiguration set while the CA was signing.
    b = Block(place)
    csr = await b.sign()
    b.context.keys.store("CpoName", "Another CPO")
    chain = sign_csr(csr, pki.csms_root)
    assert b.block._on_certificate_signed(chain).status is CertificateSignedStatus.accepted
    b.csms.requested.clear()
    other = await b.sign()  # a CSR with the new name: its certificate carries the new name
    assert "Another CPO" in str(x509.load_pem_x509_csr(other.encode()).subject)
    assert (
        b.block._on_certificate_signed(sign_csr(other, pki.csms_root, organization=CPO)).status
        is CertificateSignedStatus.rejected
    )


async def test_a_wrong_subject_is_rejected(place: Place, pki: SecurityPki) -> None:
    b = Block(place)
    csr = await b.sign()
    chain = sign_csr(csr, pki.csms_root, organization="Another CPO")
    assert b.block._on_certificate_signed(chain).status is CertificateSignedStatus.rejected


async def test_a_chain_over_certificate_signed_max_chain_size_is_rejected(
    place: Place, pki: SecurityPki
) -> None:
    b = Block(place)
    b.context.keys.store("CertificateSignedMaxChainSize", "1500")
    csr = await b.sign()
    chain = sign_csr(csr, pki.csms_root, intermediates=2)
    assert len(chain) > 1500
    assert b.block._on_certificate_signed(chain).status is CertificateSignedStatus.rejected
    b.block._after_certificate_signed(chain)
    assert "CertificateSignedMaxChainSize" in str(b.events[0][1])


def test_certificate_signed_without_a_request_is_rejected(place: Place, pki: SecurityPki) -> None:
    b = Block(place)
    csr = make_csr(generate_key("ec-p256"), charge_point_id=CP, cpo_name=CPO)
    chain = sign_csr(csr, pki.csms_root)
    assert b.block._on_certificate_signed(chain).status is CertificateSignedStatus.rejected
    b.block._after_certificate_signed(chain)
    assert b.event_types() == [SecurityEvent.INVALID_CHARGE_POINT_CERTIFICATE]


async def test_the_csr_carries_the_cpo_name_and_identity_a02_fr_13(place: Place) -> None:
    b = Block(place)
    csr = await b.sign()
    request = x509.load_pem_x509_csr(csr.encode())
    assert request.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == CPO
    assert request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CP
    pending = b.store.pending_key()
    assert pending is not None and request.public_key() == pending.public_key()


async def test_a_refused_or_unanswered_request_only_logs(place: Place) -> None:
    for status in ("Rejected", None):
        b = Block(place)
        b.csms.status = status
        await b.sign()
        assert b.events == []
        assert b.block._requesting is False  # the next request may go


async def test_no_request_without_a_cpo_name(place: Place) -> None:
    b = Block(place, cpo_name="")
    b.online()
    b.block.request_certificate()
    await _drain(b.context)
    assert b.csms.requests == []
    assert b.store.pending_key() is None


async def test_renewal_30_days_before_expiry_under_profile_3_a03(place: Place) -> None:
    b = Block(place)
    b.online()
    expires = b.store.client_expires()
    assert expires is not None
    b.clock = lambda: expires - 31 * DAY
    assert b.block.renew_if_due() is False
    b.profile = 2
    b.clock = lambda: expires - 29 * DAY
    assert b.block.renew_if_due() is False
    b.profile = 3
    assert b.block.renew_if_due() is True
    await asyncio.wait_for(b.csms.requested.wait(), 10)
    await _drain(b.context)
    assert [action for action, _ in b.csms.requests] == ["SignCertificate"]


async def test_start_adds_the_daily_renewal_job_first_a_minute_after_start(place: Place) -> None:
    b = Block(place)
    scheduler = b.context.scheduler
    scheduler.start(paused=True)
    try:
        b.block.start()
        job = scheduler.get_job(RENEWAL_JOB)
        assert job is not None
        assert job.trigger.interval == DAY
        assert job.next_run_time == NOW + datetime.timedelta(minutes=1)
        b.block.start()  # again: still one job
        assert [j.id for j in scheduler.get_jobs()].count(RENEWAL_JOB) == 1
    finally:
        scheduler.shutdown(wait=False)


def test_the_block_leaves_the_tech_info_cut_to_the_security_events(place: Place) -> None:
    # One place cuts techInfo to CiString255 (SecurityEvents.record); the block hands the
    # whole reason over (review S2).
    b = Block(place)
    reason = "x" * 300
    b.block._record_after(SecurityEvent.INVALID_CHARGE_POINT_CERTIFICATE, reason)
    b.block._record_now()
    assert b.events == [(SecurityEvent.INVALID_CHARGE_POINT_CERTIFICATE, reason)]


def test_an_unknown_key_type_is_refused(place: Place) -> None:
    station = make_station()
    with pytest.raises(ValueError, match="key type"):
        CertificateManagement(
            station.context,
            place.store(),
            lambda event, info: None,
            charge_point_id=CP,
            key_type="dsa",
            security_profile=lambda: 3,
        )


def test_hash_data_from_the_wire_names_the_same_root_as_the_store(
    place: Place, pki: SecurityPki
) -> None:
    store = place.store()
    wire = store.hash_data(CSMS, "SHA384")[0].to_ocpp()
    assert HashData.from_ocpp(wire) == hash_data(pki.csms_root.cert, "SHA384")
