"""Signed firmware (OCPP 1.6 security whitepaper L01; OCTT TC_080_CS, TC_081_CS).

The signing certificate and signature checks (chargepoint.model.firmware_signature) on their
own, the block's decisions on a station with no network, and the whole flow end to end: the
daemon on a simulated module of either family against both CSMS peers, the image from a real
HTTP server (transport/simulator/file_server.py), a real installer process, a manufacturer PKI
made at test time (tests/firmware_signing.py). The OCTT cases run over wss:// (security
profile 2, the module's TLS), where plain UpdateFirmware is NotSupported (L01.FR.20).
"""

from __future__ import annotations

import asyncio
import base64
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from ocpp.v16.enums import FirmwareStatus

from chargepoint.blocks.firmware import (
    INSTALL_JOB_ID,
    JOB_ID,
    FirmwareSettings,
    FirmwareUpdater,
    SignedUpdate,
    image_file_name,
)
from chargepoint.blocks.security_events import SecurityEvent, SecurityEventSink
from chargepoint.model.firmware_signature import (
    FirmwareSignatureProblem,
    SigningCertificateProblem,
    check_signing_certificate,
    image_digest,
    verify_image,
)
from tests.firmware_signing import ManufacturerPki, Signer, manufacturer_pki, sign
from tests.harness import STACKS, Rig, Stack, make_station, rig, strict_failures
from tests.peers import CsmsCallError
from tests.security_pki import SecurityPki, make_security_pki
from tests.security_rig import secure_rig
from transport.simulator.file_server import FileServer

KIB = 1024
PAST = "2020-01-01T00:00:00Z"  # a retrieveDateTime in the past: start at once
IMAGE = random.Random(80).randbytes(200 * KIB)

# The installer: copies the image and writes the new version; with "reject" it finds the
# image does not verify and exits 65 (chargepoint.blocks.firmware.IMAGE_REJECTED_EXIT).
INSTALLER = """
import shutil, sys
image, target, version_file, verdict = sys.argv[1:5]
print("installing", image)
if verdict == "reject":
    print("image does not verify")
    sys.exit(65)
shutil.copyfile(image, target)
open(version_file, "w").write("2.1.0-signed\\n")
"""


@pytest.fixture(scope="module")
def pki() -> ManufacturerPki:
    return manufacturer_pki()


def now() -> datetime:
    return datetime.now(UTC)


# -- the signing certificate (whitepaper L01.FR.23, L01.FR.12) --


def test_a_signing_certificate_issued_by_the_manufacturer_root_is_accepted(
    pki: ManufacturerPki,
) -> None:
    for signer in (pki.rsa, pki.ec):
        assert check_signing_certificate(signer.pem, [pki.root], now()) == signer.certificate


def test_a_signing_certificate_issued_through_an_intermediate_sent_with_it_is_accepted(
    pki: ManufacturerPki,
) -> None:
    signer = pki.via_intermediate
    assert check_signing_certificate(signer.pem, [pki.root], now()) == signer.certificate


def test_the_intermediate_must_be_sent_with_the_signing_certificate(
    pki: ManufacturerPki,
) -> None:
    alone = replace(pki.via_intermediate, chain=())
    with pytest.raises(SigningCertificateProblem, match="not issued by an installed"):
        check_signing_certificate(alone.pem, [pki.root], now())


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("untrusted", "not issued by an installed manufacturer root"),
        ("expired", "expired on"),
        ("not_yet_valid", "not valid before"),
        ("no_signing_usage", "keyUsage does not allow signatures"),
        ("ca_signer", r"is a CA certificate \(basicConstraints CA:TRUE\)"),  # review L4
    ],
)
def test_a_signing_certificate_that_is_not_the_manufacturers_to_use_is_refused_saying_why(
    pki: ManufacturerPki, name: str, why: str
) -> None:
    signer: Signer = getattr(pki, name)
    with pytest.raises(SigningCertificateProblem, match=why):
        check_signing_certificate(signer.pem, [pki.root], now())


def test_the_validity_is_judged_at_the_time_given(pki: ManufacturerPki) -> None:
    later = pki.rsa.certificate.not_valid_after_utc + timedelta(seconds=1)
    with pytest.raises(SigningCertificateProblem, match="expired"):
        check_signing_certificate(pki.rsa.pem, [pki.root], later)
    earlier = pki.expired.certificate.not_valid_after_utc - timedelta(hours=1)
    assert check_signing_certificate(pki.expired.pem, [pki.root], earlier)


def test_without_a_manufacturer_root_no_signing_certificate_is_accepted(
    pki: ManufacturerPki,
) -> None:
    with pytest.raises(SigningCertificateProblem, match="no manufacturer root"):
        check_signing_certificate(pki.rsa.pem, [], now())


def test_any_installed_manufacturer_root_will_do(pki: ManufacturerPki) -> None:
    roots = [pki.untrusted_root, pki.root]
    assert check_signing_certificate(pki.ec.pem, roots, now()) == pki.ec.certificate
    assert check_signing_certificate(pki.untrusted.pem, roots, now())


def test_text_that_is_no_certificate_is_refused() -> None:
    with pytest.raises(SigningCertificateProblem, match=r"not a PEM X\.509 certificate"):
        check_signing_certificate("-----BEGIN CERTIFICATE-----\nAAAA\n", [], now())


# -- the signature (whitepaper L01.FR.04) --


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


@pytest.mark.parametrize(
    ("signer_name", "scheme", "verified_as"),
    [
        ("rsa", "pss", "RSA-PSS with SHA-256"),
        ("rsa", "pkcs1v15", "RSA PKCS#1 v1.5 with SHA-256"),
        ("ec", "ecdsa", "ECDSA with SHA-256"),
        ("via_intermediate", "ecdsa", "ECDSA with SHA-256"),
    ],
)
def test_a_good_signature_over_the_whole_image_verifies(
    pki: ManufacturerPki, signer_name: str, scheme: str, verified_as: str
) -> None:
    signer: Signer = getattr(pki, signer_name)
    signature = sign(IMAGE, signer.key, scheme=scheme)
    assert verify_image(signer.pem, signature, _chunks(IMAGE, 7 * KIB)) == verified_as


@pytest.mark.parametrize(
    ("signer_name", "scheme"), [("rsa", "pss"), ("rsa", "pkcs1v15"), ("ec", "ecdsa")]
)
def test_a_signature_over_another_image_does_not_verify(
    pki: ManufacturerPki, signer_name: str, scheme: str
) -> None:
    signer: Signer = getattr(pki, signer_name)
    signature = sign(IMAGE, signer.key, scheme=scheme)
    tampered = bytearray(IMAGE)
    tampered[-1] ^= 1  # the last byte: the whole file is covered
    with pytest.raises(FirmwareSignatureProblem, match="is not the signing certificate's"):
        verify_image(signer.pem, signature, [bytes(tampered)])


def test_a_signature_by_another_key_does_not_verify(pki: ManufacturerPki) -> None:
    signature = sign(IMAGE, pki.untrusted.key)  # an RSA key, not the signing certificate's
    with pytest.raises(FirmwareSignatureProblem):
        verify_image(pki.rsa.pem, signature, [IMAGE])
    with pytest.raises(FirmwareSignatureProblem):  # an RSA signature for an EC certificate
        verify_image(pki.ec.pem, signature, [IMAGE])


def test_rsa_pss_with_any_salt_length_verifies(pki: ManufacturerPki) -> None:
    key = pki.rsa.key
    assert isinstance(key, rsa.RSAPrivateKey)
    raw = key.sign(
        IMAGE, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH), hashes.SHA256()
    )
    signature = base64.b64encode(raw).decode()
    assert verify_image(pki.rsa.pem, signature, [IMAGE]) == "RSA-PSS with SHA-256"


@pytest.mark.parametrize("signature", ["not base64!", ""])
def test_a_signature_that_is_not_base64_does_not_verify(
    pki: ManufacturerPki, signature: str
) -> None:
    with pytest.raises(FirmwareSignatureProblem):
        verify_image(pki.rsa.pem, signature, [IMAGE])


def test_the_digest_is_the_same_however_the_image_is_read() -> None:
    whole = image_digest([IMAGE])
    for size in (1, 1000, 64 * KIB, len(IMAGE)):
        assert image_digest(_chunks(IMAGE, size)) == whole


# -- the block's decisions, on a station with no network --


@dataclass
class Recorded:
    """A SecurityEventSink that keeps what it is given."""

    events: list[tuple[SecurityEvent, str | None]] = field(default_factory=list)

    def __call__(self, event: SecurityEvent, tech_info: str | None) -> None:
        self.events.append((event, tech_info))

    @property
    def types(self) -> list[SecurityEvent]:
        return [event for event, _ in self.events]


class FakeCsms:
    """The connection as a block sees it: keeps each request and answers ``{}`` (or, with
    ``hold``, never answers)."""

    def __init__(self, *, hold: bool = False) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.hold = hold
        self._more = asyncio.Event()

    async def got(self, count: int) -> None:
        """Once ``count`` requests have come."""
        while len(self.sent) < count:
            self._more.clear()
            await self._more.wait()

    async def request(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.sent.append((action, payload))
        self._more.set()
        if self.hold:
            await asyncio.Event().wait()
        return {}

    @property
    def statuses(self) -> list[str]:
        return [p["status"] for a, p in self.sent if a == "SignedFirmwareStatusNotification"]


def online(block: FirmwareUpdater, csms: FakeCsms) -> FakeCsms:
    block._context.connection = csms  # type: ignore[assignment]
    return csms


async def _no_client() -> Any:
    raise AssertionError("no transfer in this test")


async def _no_reboot() -> None:
    raise AssertionError("no reboot in this test")


def updater(
    tmp_path: Path,
    *,
    roots: list[x509.Certificate],
    profile: int = 0,
    policy: str = "without-security-profile",
    events: SecurityEventSink | None = None,
    clock: Callable[[], datetime] = now,
) -> FirmwareUpdater:
    station = make_station()
    return FirmwareUpdater(
        context=station.context,
        availability=station.availability,
        transactions=station.transactions,
        http=_no_client,
        settings=FirmwareSettings(directory=tmp_path, unsigned_updates=policy),
        reboot=_no_reboot,
        events=events,
        manufacturer_roots=lambda: roots,
        security_profile=lambda: profile,
        clock=clock,
    )


async def test_the_signing_certificate_is_judged_at_the_clocks_time(
    tmp_path: Path, pki: ManufacturerPki
) -> None:
    # whitepaper L01.FR.23 (checked on arrival), review L18: the validity edge, no real time
    expiry = pki.rsa.certificate.not_valid_after_utc
    at = [expiry]
    block = updater(tmp_path, roots=[pki.root], clock=lambda: at[0])
    assert block.decide_signed(pki.rsa.pem) == ("Accepted", None)
    at[0] = expiry + timedelta(seconds=1)
    status, why = block.decide_signed(pki.rsa.pem)
    assert status == "InvalidCertificate" and why and "expired on" in why
    await block.close()


async def test_close_cancels_the_download_scheduled_announcement(
    tmp_path: Path, pki: ManufacturerPki
) -> None:
    # review L17: the announcement is owned even once the download task has started
    block = updater(tmp_path, roots=[pki.root])
    csms = online(block, FakeCsms(hold=True))  # the CSMS never answers
    later = now() + timedelta(hours=1)
    block.update_signed(5, "http://127.0.0.1:9/fw.bin", later, None, pki.rsa.pem, "c2ln", 0, 0)
    await block._due()  # retrieveDateTime: the download starts (and waits on Downloading)
    await asyncio.wait_for(csms.got(2), 10)
    assert csms.statuses == ["DownloadScheduled", "Downloading"]
    await block.close()
    left = [t for t in asyncio.all_tasks() if t.get_name().startswith("firmware")]
    assert [t for t in left if not t.done()] == []


@pytest.mark.parametrize(
    ("last_segment", "name"),
    [
        ("cp-2.1.0.bin", "cp-2.1.0.bin"),
        ("..", "firmware.bin"),
        ("...", "firmware.bin"),
        ("", "firmware.bin"),
        ("..%2F..%2Fetc%2Fpasswd", "_2F._2Fetc_2Fpasswd"),
        ("../../etc/passwd", "_._etc_passwd"),
        ("a\\b c..d", "a_b_c.d"),
        (".hidden", "hidden"),
    ],
)
def test_the_image_file_name_is_sanitised(last_segment: str, name: str) -> None:
    # review L9: the last URL segment names a file in the firmware directory, nothing else
    assert image_file_name(last_segment) == name
    assert "/" not in name and ".." not in name


async def test_an_image_that_cannot_be_deleted_still_ends_in_invalid_signature(
    tmp_path: Path, pki: ManufacturerPki
) -> None:
    # review L9: deleting the image never raises out, so the phase does not stay "downloaded"
    # (a verify loop at every restart)
    recorded = Recorded()
    block = updater(tmp_path, roots=[pki.root], events=recorded)
    csms = online(block, FakeCsms())
    later = now() + timedelta(hours=1)
    signature = sign(IMAGE, pki.rsa.key)
    block.update_signed(6, "http://127.0.0.1:9/fw.bin", later, None, pki.rsa.pem, signature, 0, 0)
    image = tmp_path / "fw.bin"
    image.mkdir()  # neither readable as a file nor deletable with unlink
    block.db.execute("UPDATE firmware_update SET phase = 'downloaded', image = ?", (str(image),))
    signed = SignedUpdate(6, None, pki.rsa.pem, signature)
    await block._verify_and_install(image, signed)
    assert csms.statuses[-1] == "InvalidSignature"
    assert recorded.types == [SecurityEvent.INVALID_FIRMWARE_SIGNATURE]
    assert block._row() is None  # over: nothing left to resume
    await block.close()


async def test_the_invalid_firmware_signature_event_is_recorded_after_the_status_is_sent(
    tmp_path: Path, pki: ManufacturerPki
) -> None:
    # OCTT TC_081_CS step 7 after step 5, as for TC_077/TC_078 (review L14)
    csms = FakeCsms()
    seen: list[tuple[SecurityEvent, list[str]]] = []
    block = updater(
        tmp_path, roots=[pki.root], events=lambda event, _: seen.append((event, csms.statuses))
    )
    online(block, csms)
    signature = sign(IMAGE[1:], pki.rsa.key)  # not this image's
    later = now() + timedelta(hours=1)
    block.update_signed(8, "http://127.0.0.1:9/fw.bin", later, None, pki.rsa.pem, signature, 0, 0)
    image = tmp_path / "fw.bin"
    image.write_bytes(IMAGE)
    block.db.execute("UPDATE firmware_update SET phase = 'downloaded', image = ?", (str(image),))
    await block._verify_and_install(image, SignedUpdate(8, None, pki.rsa.pem, signature))
    [(event, statuses_then)] = seen
    assert event is SecurityEvent.INVALID_FIRMWARE_SIGNATURE
    assert statuses_then[-1] == "InvalidSignature"
    assert not image.exists()
    await block.close()


@pytest.mark.parametrize(
    ("policy", "profile", "refused"),
    [
        ("allowed", 0, False),
        ("allowed", 3, False),
        ("without-security-profile", 0, False),
        ("without-security-profile", 1, True),
        ("without-security-profile", 2, True),
        ("refused", 0, True),
    ],
)
async def test_update_firmware_is_taken_only_as_the_policy_says(
    tmp_path: Path, policy: str, profile: int, refused: bool
) -> None:
    # whitepaper L01.FR.20; the contract's firmware.unsigned_updates
    block = updater(tmp_path, roots=[], profile=profile, policy=policy)
    assert (block.unsigned_refused() is not None) is refused


async def test_a_new_signed_update_cancels_one_not_yet_installing(
    tmp_path: Path, pki: ManufacturerPki
) -> None:
    # whitepaper L01.FR.26: AcceptedCanceled; L01.FR.27: Rejected while installing
    block = updater(tmp_path, roots=[pki.root])
    assert block.decide_signed(pki.rsa.pem) == ("Accepted", None)
    later = now() + timedelta(days=1)
    block.update_signed(7, "http://127.0.0.1/fw.bin", later, None, pki.rsa.pem, "c2ln", 0, 0)
    assert block.decide_signed(pki.rsa.pem) == ("AcceptedCanceled", None)
    status, why = block.decide_signed(pki.untrusted.pem)
    assert status == "InvalidCertificate" and why and "not issued" in why
    block.status = FirmwareStatus.installing  # the installer runs: it cannot be stopped
    assert block.decide_signed(pki.rsa.pem) == (
        "Rejected",
        "the installation in progress cannot be cancelled",
    )
    await block.close()


async def test_the_status_for_extended_trigger_message_is_the_last_one_with_its_request_id(
    tmp_path: Path, pki: ManufacturerPki
) -> None:
    # whitepaper L01.FR.28/29, L01.FR.21
    block = updater(tmp_path, roots=[pki.root])
    assert block.signed_status() == {"status": "Idle"}
    block.update_signed(
        42, "http://127.0.0.1/fw.bin", now() + timedelta(days=1), None, pki.rsa.pem, "c2ln", 0, 0
    )
    assert block.signed_status() == {"status": "Idle"}  # nothing sent yet
    block.db.execute("UPDATE signed_firmware_update SET last_status = 'DownloadScheduled'")
    assert block.signed_status() == {"status": "DownloadScheduled", "requestId": 42}
    block.db.execute("UPDATE signed_firmware_update SET last_status = 'Installed'")
    assert block.signed_status() == {"status": "Idle"}
    # A plain UpdateFirmware replaces the signed one: nothing signed to report.
    block.db.execute("UPDATE signed_firmware_update SET last_status = 'Downloading'")
    block.update("http://127.0.0.1/fw.bin", now() + timedelta(days=1), 0, 0)
    assert block.signed_status() == {"status": "Idle"}
    await block.close()


async def test_an_invalid_signing_certificate_is_answered_and_recorded_and_starts_nothing(
    tmp_path: Path, pki: ManufacturerPki
) -> None:
    # whitepaper L01.FR.23/24 (before the answer), L01.FR.02 (the event, after it)
    recorded = Recorded()
    block = updater(tmp_path, roots=[pki.root], events=recorded)
    firmware = {
        "location": "http://127.0.0.1:9/fw.bin",
        "retrieve_date_time": PAST,
        "signing_certificate": pki.untrusted.pem,
        "signature": sign(IMAGE, pki.untrusted.key),
    }
    answer = block._on_signed_update_firmware(request_id=3, firmware=firmware)
    assert answer.status == "InvalidCertificate"
    assert recorded.events == []  # not before the answer is sent
    block._after_signed_update_firmware(request_id=3, firmware=firmware)
    [(event, tech_info)] = recorded.events
    assert event is SecurityEvent.INVALID_FIRMWARE_SIGNING_CERTIFICATE
    assert tech_info is not None and tech_info.startswith("SignedUpdateFirmware 3: ")
    assert len(tech_info) <= 255
    assert block._row() is None and block.signed_status() == {"status": "Idle"}
    await block.close()


def test_the_signed_table_is_added_to_an_existing_state_database(tmp_path: Path) -> None:
    block = updater(tmp_path, roots=[])
    block.db.execute("DROP TABLE signed_firmware_update")  # a database from before
    again = FirmwareUpdater(
        context=block._context,
        availability=block._availability,
        transactions=block._transactions,
        http=_no_client,
        settings=block.settings,
        reboot=_no_reboot,
    )
    assert again.signed_status() == {"status": "Idle"}


# -- end to end (OCTT TC_080_CS, TC_081_CS) --


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as s:
        yield s


@pytest.fixture(params=STACKS, ids=str)
def stack(request: pytest.FixtureRequest) -> Stack:
    result: Stack = request.param
    return result


@pytest.fixture(scope="module")
def tls_pki() -> SecurityPki:
    """The OCTT cases run over wss:// (security profile 2): the CSMS's certificates."""
    return make_security_pki()


FIRMWARE_EVENTS = {
    SecurityEvent.FIRMWARE_UPDATED,
    SecurityEvent.INVALID_FIRMWARE_SIGNATURE,
    SecurityEvent.INVALID_FIRMWARE_SIGNING_CERTIFICATE,
}


def firmware_events(r: Rig) -> list[tuple[str, str | None]]:
    """The firmware's SecurityEventNotifications the CSMS got: type and techInfo."""
    return [
        (c["type"], c.get("techInfo"))
        for c in r.calls("SecurityEventNotification")
        if c["type"] in FIRMWARE_EVENTS
    ]


async def wait_events(r: Rig, count: int) -> list[str]:
    """The types of the first ``count`` firmware security events, once they are there."""
    await r.peer.wait_for(lambda _: len(firmware_events(r)) >= count)
    return [kind for kind, _ in firmware_events(r)]


def firmware_config(tmp_path: Path, pki: ManufacturerPki, verdict: str = "ok") -> dict[str, Any]:
    script = tmp_path / "install.py"
    script.write_text(INSTALLER)
    roots = tmp_path / "manufacturer-root.pem"
    roots.write_text(pki.root_pem)
    return {
        "install_command": [
            sys.executable,
            str(script),
            "{image}",
            str(tmp_path / "installed.bin"),
            str(tmp_path / "version"),
            verdict,
        ],
        "version_file": str(tmp_path / "version"),
        "piece_size": 32 * KIB,
        "manufacturer_ca_file": str(roots),
    }


def signed_update(
    location: str,
    signer: Signer,
    signature: str,
    request_id: int,
    *,
    retrieve: str = PAST,
    install: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    firmware = {
        "location": location,
        "retrieveDateTime": retrieve,
        "signingCertificate": signer.pem,
        "signature": signature,
    }
    if install is not None:
        firmware["installDateTime"] = install
    return {"requestId": request_id, "firmware": firmware, **options}


def signed_statuses(r: Rig) -> list[str]:
    return [c["status"] for c in r.calls("SignedFirmwareStatusNotification")]


def request_ids(r: Rig) -> set[Any]:
    return {c.get("requestId") for c in r.calls("SignedFirmwareStatusNotification")}


async def wait_signed(r: Rig, status: str, timeout: float = 60) -> None:
    await r.peer.wait_for(lambda _: status in signed_statuses(r), timeout)


def in_the_future(delta: timedelta) -> str:
    return (now() + delta).isoformat().replace("+00:00", "Z")


def run_now(r: Rig, job: str) -> None:
    """Bring a scheduled job (retrieveDateTime, installDateTime) forward to now."""
    r.daemon.scheduler.modify_job(job, next_run_time=now())


def no_strict_failures(r: Rig) -> None:
    assert strict_failures(r.peer) == []


def signer_for(stack: Stack, pki: ManufacturerPki) -> tuple[Signer, str]:
    """RSA-PSS on the Python CSMS's stack, ECDSA through an intermediate CA on the Node one."""
    if stack.peer == "python":
        return pki.rsa, "pss"
    return pki.via_intermediate, "ecdsa"


async def test_tc_080_cs_secure_firmware_update(
    stack: Stack, server: FileServer, tmp_path: Path, pki: ManufacturerPki, tls_pki: SecurityPki
) -> None:
    server.files["/fw/cp-2.1.0.bin"] = IMAGE
    signer, scheme = signer_for(stack, pki)
    update = signed_update(
        server.url("/fw/cp-2.1.0.bin"), signer, sign(IMAGE, signer.key, scheme=scheme), 123
    )
    async with secure_rig(
        stack, tls_pki, tmp_path / "tls", profile=2, firmware=firmware_config(tmp_path, pki)
    ) as r:
        boots_before = len(r.calls("BootNotification"))
        assert await r.peer.call("SignedUpdateFirmware", update) == {"status": "Accepted"}
        await r.wait_stopped()  # installed: the daemon restarts itself
        assert signed_statuses(r) == [
            "Downloading",
            "Downloaded",
            "SignatureVerified",
            "Installing",
        ]
        assert r.calls("FirmwareStatusNotification") == []
        assert (tmp_path / "installed.bin").read_bytes() == IMAGE
        await r.restart()
        await wait_signed(r, "Installed")
        assert len(r.calls("BootNotification")) == boots_before + 1
        assert r.calls("BootNotification")[-1]["firmwareVersion"] == "2.1.0-signed"
        assert request_ids(r) == {123}  # every one of them (L01.FR.10)
        # Steps 11-17 after the boot, in any order the tool allows; ours puts Installed after
        # the statuses of every connector and of connector 0.
        frames = [(c["method"], c["params"]) for c in r.peer.calls()]
        last_boot = max(i for i, (m, _) in enumerate(frames) if m == "BootNotification")
        after = frames[last_boot:]
        installed = after.index(
            ("SignedFirmwareStatusNotification", {"status": "Installed", "requestId": 123})
        )
        available = {
            p["connectorId"]
            for m, p in after[:installed]
            if m == "StatusNotification" and p["status"] == "Available"
        }
        assert available == {0, 1, 2}
        assert await wait_events(r, 1) == ["FirmwareUpdated"]  # step 13
        # Over: an ExtendedTriggerMessage would get Idle (L01.FR.28).
        assert r.station.firmware is not None
        assert r.station.firmware.signed_status() == {"status": "Idle"}
        no_strict_failures(r)


async def test_tc_081_cs_secure_firmware_update_invalid_signature(
    stack: Stack, server: FileServer, tmp_path: Path, pki: ManufacturerPki, tls_pki: SecurityPki
) -> None:
    server.files["/fw/cp-2.1.0.bin"] = IMAGE
    signer, scheme = signer_for(stack, pki)
    other = random.Random(81).randbytes(len(IMAGE))  # signed, but not this image
    update = signed_update(
        server.url("/fw/cp-2.1.0.bin"), signer, sign(other, signer.key, scheme=scheme), 81
    )
    async with secure_rig(
        stack, tls_pki, tmp_path / "tls", profile=2, firmware=firmware_config(tmp_path, pki)
    ) as r:
        assert await r.peer.call("SignedUpdateFirmware", update) == {"status": "Accepted"}
        await wait_signed(r, "InvalidSignature")
        assert signed_statuses(r) == ["Downloading", "Downloaded", "InvalidSignature"]
        assert request_ids(r) == {81}
        assert await wait_events(r, 1) == ["InvalidFirmwareSignature"]  # L01.FR.03
        # The event after the status (step 7 after step 5; review L14, T7).
        methods = [
            (c["method"], c["params"].get("status") or c["params"].get("type"))
            for c in r.peer.calls()
        ]
        assert methods.index(("SignedFirmwareStatusNotification", "InvalidSignature")) < (
            methods.index(("SecurityEventNotification", "InvalidFirmwareSignature"))
        )
        # Nothing else changes: the image is gone, the connectors were never Unavailable,
        # the charge point charges on its old firmware.
        assert not (tmp_path / "installed.bin").exists()
        assert r.station.firmware is not None
        assert not list(r.station.firmware.settings.directory.glob("cp-2.1.0.bin*"))
        assert "Unavailable" not in r.status_sequence(1) + r.status_sequence(2)
        await r.charging(1)
        assert r.station.firmware.signed_status() == {"status": "InvalidSignature", "requestId": 81}
        no_strict_failures(r)


async def test_a_signing_certificate_not_from_the_manufacturer_is_answered_invalid_certificate(
    stack: Stack, server: FileServer, tmp_path: Path, pki: ManufacturerPki
) -> None:
    # whitepaper L01.FR.23/24 and L01.FR.02: checked before the answer, nothing starts
    server.files["/fw/cp-2.1.0.bin"] = IMAGE
    location = server.url("/fw/cp-2.1.0.bin")
    async with rig(stack, firmware=firmware_config(tmp_path, pki)) as r:
        for number, signer in enumerate((pki.untrusted, pki.expired), start=1):
            update = signed_update(location, signer, sign(IMAGE, signer.key), number)
            answer = await r.peer.call("SignedUpdateFirmware", update)
            assert answer == {"status": "InvalidCertificate"}
        assert await wait_events(r, 2) == ["InvalidFirmwareSigningCertificate"] * 2
        (_, untrusted), (_, expired) = firmware_events(r)
        assert "not issued by an installed manufacturer root" in str(untrusted)
        assert "expired" in str(expired)
        await r.charging(1)  # a unit of work later: still nothing was started
        assert signed_statuses(r) == []
        assert server.gets() == []
        no_strict_failures(r)


async def test_update_firmware_under_a_security_profile_is_answered_not_supported(
    stack: Stack, server: FileServer, tmp_path: Path, pki: ManufacturerPki, tls_pki: SecurityPki
) -> None:
    # whitepaper L01.FR.20, firmware.unsigned_updates = "without-security-profile" (the
    # default) at security profile 1
    server.files["/fw/cp-2.1.0.bin"] = IMAGE
    async with secure_rig(
        stack, tls_pki, tmp_path / "tls", profile=2, firmware=firmware_config(tmp_path, pki)
    ) as r:
        with pytest.raises(CsmsCallError) as error:
            await r.peer.call(
                "UpdateFirmware", {"location": server.url("/fw/cp-2.1.0.bin"), "retrieveDate": PAST}
            )
        assert error.value.code == "NotSupported"
        await r.charging(1)
        assert r.calls("FirmwareStatusNotification") == []
        assert server.gets() == []
        no_strict_failures(r)


async def test_retries_on_404_end_in_download_failed(
    server: FileServer, tmp_path: Path, pki: ManufacturerPki
) -> None:
    update = signed_update(
        server.url("/fw/missing.bin"),
        pki.rsa,
        sign(IMAGE, pki.rsa.key),
        5,
        retries=2,
        retryInterval=0,
    )
    async with rig(Stack("node", "quectel"), firmware=firmware_config(tmp_path, pki)) as r:
        assert await r.peer.call("SignedUpdateFirmware", update) == {"status": "Accepted"}
        await wait_signed(r, "DownloadFailed")
        assert signed_statuses(r) == ["Downloading", "DownloadFailed"]
        assert request_ids(r) == {5}
        assert len(server.gets()) == 3  # the first attempt and two retries
        assert firmware_events(r) == []
        no_strict_failures(r)


async def test_scheduled_download_and_installation_survive_a_restart(
    server: FileServer, tmp_path: Path, pki: ManufacturerPki
) -> None:
    # whitepaper L01.FR.13 (DownloadScheduled), L01.FR.16 (InstallScheduled); the phase is on
    # disk, so a restart resumes it without announcing it again.
    server.files["/fw/cp-2.1.0.bin"] = IMAGE
    update = signed_update(
        server.url("/fw/cp-2.1.0.bin"),
        pki.ec,
        sign(IMAGE, pki.ec.key),
        9,
        retrieve=in_the_future(timedelta(hours=1)),
        install=in_the_future(timedelta(hours=2)),
    )
    async with rig("python", firmware=firmware_config(tmp_path, pki)) as r:
        assert await r.peer.call("SignedUpdateFirmware", update) == {"status": "Accepted"}
        await wait_signed(r, "DownloadScheduled")
        await r.restart()
        await r.booted(2)
        run_now(r, JOB_ID)
        await wait_signed(r, "InstallScheduled")
        assert signed_statuses(r) == [
            "DownloadScheduled",
            "Downloading",
            "Downloaded",
            "SignatureVerified",
            "InstallScheduled",
        ]
        # Waiting for installDateTime, the connectors stay Available.
        assert "Unavailable" not in r.status_sequence(1)
        await r.restart()
        await r.booted(3)
        assert r.station.firmware is not None
        assert r.station.firmware.signed_status() == {"status": "InstallScheduled", "requestId": 9}
        run_now(r, INSTALL_JOB_ID)
        await r.wait_stopped()
        assert signed_statuses(r)[5:] == ["Installing"]
        await r.restart()
        await wait_signed(r, "Installed")
        assert request_ids(r) == {9}
        assert (tmp_path / "installed.bin").read_bytes() == IMAGE
        assert await wait_events(r, 1) == ["FirmwareUpdated"]


async def test_an_image_changed_while_waiting_for_its_install_date_is_not_installed(
    server: FileServer, tmp_path: Path, pki: ManufacturerPki
) -> None:
    # The signature is checked again right before the installer runs: the image lay on
    # writable flash since SignatureVerified (installDateTime, restarts).
    server.files["/fw/cp-2.1.0.bin"] = IMAGE
    update = signed_update(
        server.url("/fw/cp-2.1.0.bin"),
        pki.ec,
        sign(IMAGE, pki.ec.key),
        10,
        install=in_the_future(timedelta(hours=2)),
    )
    async with rig("python", firmware=firmware_config(tmp_path, pki)) as r:
        assert await r.peer.call("SignedUpdateFirmware", update) == {"status": "Accepted"}
        await wait_signed(r, "InstallScheduled")
        image = r.config.storage_directory / "firmware" / "cp-2.1.0.bin"
        image.write_bytes(IMAGE[:-1] + b"X")  # one byte changed on the flash
        run_now(r, INSTALL_JOB_ID)
        await wait_signed(r, "InvalidSignature")
        assert signed_statuses(r) == [
            "Downloading",
            "Downloaded",
            "SignatureVerified",
            "InstallScheduled",
            "InvalidSignature",
        ]
        assert await wait_events(r, 1) == ["InvalidFirmwareSignature"]
        assert not (tmp_path / "installed.bin").exists()
        assert not image.exists()
        # Unavailable for the installation that was about to begin, then Available again.
        await r.peer.wait_for(lambda _: r.status_sequence(1)[-2:] == ["Unavailable", "Available"])


async def test_a_new_signed_update_cancels_the_scheduled_one(
    server: FileServer, tmp_path: Path, pki: ManufacturerPki
) -> None:
    # whitepaper L01.FR.26
    server.files["/fw/cp-2.1.0.bin"] = IMAGE
    location = server.url("/fw/cp-2.1.0.bin")
    signature = sign(IMAGE, pki.rsa.key)
    first = signed_update(
        location, pki.rsa, signature, 1, retrieve=in_the_future(timedelta(hours=1))
    )
    async with rig("python", firmware=firmware_config(tmp_path, pki, verdict="reject")) as r:
        assert await r.peer.call("SignedUpdateFirmware", first) == {"status": "Accepted"}
        await wait_signed(r, "DownloadScheduled")
        second = signed_update(location, pki.rsa, signature, 2)
        assert await r.peer.call("SignedUpdateFirmware", second) == {"status": "AcceptedCanceled"}
        # The installer finds the image does not verify: InstallVerificationFailed, the
        # connectors are Available again.
        await wait_signed(r, "InstallVerificationFailed")
        assert [
            (c["status"], c["requestId"]) for c in r.calls("SignedFirmwareStatusNotification")
        ] == [
            ("DownloadScheduled", 1),
            ("Downloading", 2),
            ("Downloaded", 2),
            ("SignatureVerified", 2),
            ("Installing", 2),
            ("InstallVerificationFailed", 2),
        ]
        await r.peer.wait_for(lambda _: r.status_sequence(2)[-2:] == ["Unavailable", "Available"])
        assert not (tmp_path / "installed.bin").exists()
        assert firmware_events(r) == []
        no_strict_failures(r)
