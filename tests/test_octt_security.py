"""The OCTT security cases of certificate management and security events (OCPP 1.6 OCTT, FINAL
2024-04, 2.24: TC_074_CS to TC_078_CS), and the whitepaper behaviours around them (A02.FR.10
fallback, A03 renewal, the StartupOfTheDevice event), end to end: the daemon on a simulated
module of either family (the module holds the TLS credentials), a real wss:// CSMS peer that
asks for the client certificate (security profile 3), certificates made at test time.

Each case asserts the frames the OCTT's tool validations name (action, status and, where the
case orders them, order) and checks what the OCTT checks on its own side: the CSR's subject
and signature, certificateHashData computed by the test, and which client certificate each
TLS connection presented (the peers report its serial).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.triggers.interval import IntervalTrigger

from chargepoint.blocks.certificates import RENEWAL_JOB
from chargepoint.model.certificates import generate_key
from tests.harness import STACKS, Rig, Stack, strict_failures
from tests.security_pki import SecurityPki, make_security_pki, sign_csr
from tests.security_rig import (
    CP,
    VENDOR,
    WIRE,
    answer_index,
    call_index,
    chain_leaf,
    connects,
    csms_files,
    csr_subject,
    expected_hash_data,
    factory_certificate,
    installed_ids,
    key_type_of,
    normalised,
    parse_csr,
    request_signing,
    secure_rig,
    security_events,
    serial_hex,
    wait_connect_with,
    wait_security_event,
)

CSMS_ROOT = "CentralSystemRootCertificate"
MANUFACTURER_ROOT = "ManufacturerRootCertificate"


@pytest.fixture(params=STACKS, ids=str)
def stack(request: pytest.FixtureRequest) -> Stack:
    """Both CSMS peers and both module families, paired (tests/harness.py)."""
    result: Stack = request.param
    return result


@pytest.fixture(scope="module")
def pki() -> SecurityPki:
    return make_security_pki()


def no_strict_failures(r: Rig) -> None:
    assert strict_failures(r.peer) == []


def key_uploads(r: Rig, since: int = 0) -> int:
    wire = WIRE[r.family]
    return sum(1 for c in r.sim.module.log[since:] if c.startswith(wire.key_upload))


def ca_uploads(r: Rig, since: int = 0) -> int:
    wire = WIRE[r.family]
    return sum(1 for c in r.sim.module.log[since:] if c.startswith(wire.ca_upload))


def first_serial(r: Rig) -> str | None:
    serial: str | None = connects(r.peer)[0]["client_serial"]
    return serial


# -- 2.24.1 Certificate management --


@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-2048"])
async def test_tc_074_cs_update_charge_point_certificate_by_request_of_central_system(
    stack: Stack, pki: SecurityPki, tmp_path: Path, key_type: str
) -> None:
    """Whitepaper A02.FR.02/03/06/08/13: the CSR has O = CpoName (the vendor by default),
    CN = the identity, the configured key type, a valid signature; the signed certificate is
    Accepted and the charge point reconnects presenting it, with the new key written to the
    module; after a restart it still presents it."""
    async with secure_rig(stack, pki, tmp_path, key_type=key_type) as r:
        factory = first_serial(r)
        assert factory is not None
        pem = await request_signing(r)  # steps 1-4
        csr = parse_csr(pem)
        assert csr.is_signature_valid
        assert csr_subject(csr) == (VENDOR, CP)
        assert key_type_of(csr.public_key()) == key_type
        chain = sign_csr(pem, pki.csms_root)
        new = serial_hex(chain_leaf(chain))
        mark, seen = len(r.sim.module.log), len(connects(r.peer))
        answer = await r.peer.call("CertificateSigned", {"certificateChain": chain})
        assert answer == {"status": "Accepted"}  # step 6
        await wait_connect_with(r.peer, new, after=seen)  # step 7
        assert key_uploads(r, since=mark) >= 1  # the new key went to the module
        no_strict_failures(r)
        # The new certificate is the charge point's now: a restart keeps it.
        seen = len(connects(r.peer))
        await r.restart()
        await r.booted(2)
        await wait_connect_with(r.peer, new, after=seen)
        assert all(c["client_serial"] == new for c in connects(r.peer)[seen:])
        assert factory != new


async def test_tc_074_cs_cpo_name_set_by_the_csms_is_the_csr_organisation(
    stack: Stack, pki: SecurityPki, tmp_path: Path
) -> None:
    """A02.FR.13: O = CpoName as the CSMS set it (a certificate for the CPO's hierarchy)."""
    client = factory_certificate(tmp_path / "cp", pki.csms_root)
    async with secure_rig(stack, pki, tmp_path, client=client) as r:
        answer = await r.peer.call("ChangeConfiguration", {"key": "CpoName", "value": "Test CPO"})
        assert answer == {"status": "Accepted"}
        pem = await request_signing(r)
        assert csr_subject(parse_csr(pem)) == ("Test CPO", CP)
        chain = sign_csr(pem, pki.csms_root)
        seen = len(connects(r.peer))
        answer = await r.peer.call("CertificateSigned", {"certificateChain": chain})
        assert answer == {"status": "Accepted"}
        await wait_connect_with(r.peer, serial_hex(chain_leaf(chain)), after=seen)
        no_strict_failures(r)


@pytest.mark.parametrize(
    ("case", "use", "root"),
    [
        ("TC_075_1_CS", MANUFACTURER_ROOT, "manufacturer_root"),
        ("TC_075_2_CS", CSMS_ROOT, "second_root"),
    ],
)
async def test_tc_075_cs_install_a_certificate_on_the_charge_point(
    stack: Stack, pki: SecurityPki, tmp_path: Path, case: str, use: str, root: str
) -> None:
    """M05.FR.01/M03.FR.04: InstallCertificate Accepted, and GetInstalledCertificateIds of
    that type lists the hash data the OCTT computes for the certificate it installed."""
    authority = getattr(pki, root)
    async with secure_rig(stack, pki, tmp_path) as r:
        answer = await r.peer.call(
            "InstallCertificate", {"certificateType": use, "certificate": authority.pem}
        )
        assert answer == {"status": "Accepted"}  # step 2
        status, listed = await installed_ids(r, use)  # steps 3-4
        assert status == "Accepted"
        assert normalised(expected_hash_data(authority.cert)) in listed
        if use == CSMS_ROOT:  # the configured root stays beside it
            assert normalised(expected_hash_data(pki.csms_root.cert)) in listed
        no_strict_failures(r)


@pytest.mark.parametrize("installed", [True, False], ids=["installed", "not-installed"])
async def test_tc_075_2_cs_an_installed_central_system_root_is_used_on_the_next_connection(
    stack: Stack, pki: SecurityPki, tmp_path: Path, installed: bool
) -> None:
    """M05 (issue 18): the root InstallCertificate added goes to the module with the
    configured one, so a CSMS that moves to a server certificate of that root is reached on
    the next connection; without the installation the charge point refuses that CSMS (the
    control: the new root is what makes the difference)."""
    async with secure_rig(stack, pki, tmp_path) as r:
        if installed:
            answer = await r.peer.call(
                "InstallCertificate",
                {"certificateType": CSMS_ROOT, "certificate": pki.second_root.pem},
            )
            assert answer == {"status": "Accepted"}
        mark, seen = len(r.sim.module.log), len(connects(r.peer))
        # The CSMS moves to a server certificate of second_root (still asking for a client
        # certificate from csms_root); the charge point reconnects on its own.
        moved = csms_files(tmp_path / "moved", pki.second_root, pki.csms_root)
        await r.peer.stop()
        r.peer.tls = moved.tls()
        await r.peer.start()
        if installed:
            await r.peer.wait_for(lambda _: len(connects(r.peer)) > seen, timeout=60)
            # The bundle with the new root went to the module before that connection.
            assert ca_uploads(r, since=mark) >= 1
            no_strict_failures(r)
        else:
            failed = r.peer.count("tls_failed")
            await r.peer.wait_for(lambda _: r.peer.count("tls_failed") > failed, timeout=60)
            assert len(connects(r.peer)) == seen
            assert ca_uploads(r, since=mark) == 0


async def test_tc_076_cs_delete_a_specific_certificate_from_the_charge_point(
    stack: Stack, pki: SecurityPki, tmp_path: Path
) -> None:
    """M04.FR.01/02: with a second Central System root installed (memory state
    CertificateInstalled), the configured root is deleted by the hash data step 2 listed,
    with its hashAlgorithm; step 6 no longer lists it."""
    async with secure_rig(stack, pki, tmp_path) as r:
        answer = await r.peer.call(
            "InstallCertificate", {"certificateType": CSMS_ROOT, "certificate": pki.second_root.pem}
        )
        assert answer == {"status": "Accepted"}
        answer = await r.peer.call("GetInstalledCertificateIds", {"certificateType": CSMS_ROOT})
        assert answer["status"] == "Accepted"  # step 2
        configured = normalised(expected_hash_data(pki.csms_root.cert))
        [victim] = [d for d in answer["certificateHashData"] if normalised(d) == configured]
        answer = await r.peer.call("DeleteCertificate", {"certificateHashData": victim})
        assert answer == {"status": "Accepted"}  # step 4
        status, listed = await installed_ids(r, CSMS_ROOT)  # step 6
        assert configured not in listed
        assert listed == {normalised(expected_hash_data(pki.second_root.cert))}
        assert status == "Accepted"
        no_strict_failures(r)


@pytest.mark.parametrize("profile", [2, 3])
async def test_deleting_the_last_central_system_root_fails_and_an_unknown_one_is_not_found(
    stack: Stack, pki: SecurityPki, tmp_path: Path, profile: int
) -> None:
    """M04.FR.06: the last Central System root is in use under profile 2 or 3: Failed, and
    it stays installed; M04.FR.05: hash data of no installed certificate: NotFound."""
    async with secure_rig(stack, pki, tmp_path, profile=profile) as r:
        assert connects(r.peer)[0]["tls"] and (profile == 3) == bool(first_serial(r))
        only = expected_hash_data(pki.csms_root.cert)
        answer = await r.peer.call("DeleteCertificate", {"certificateHashData": only})
        assert answer == {"status": "Failed"}
        status, listed = await installed_ids(r, CSMS_ROOT)
        assert (status, listed) == ("Accepted", {normalised(only)})
        unknown = expected_hash_data(pki.untrusted_root.cert)
        answer = await r.peer.call("DeleteCertificate", {"certificateHashData": unknown})
        assert answer == {"status": "NotFound"}
        no_strict_failures(r)


# -- 2.24.2 Security event/logging --


def _untrusted(csr: str, pki: SecurityPki) -> str:
    return sign_csr(csr, pki.untrusted_root)


def _expired(csr: str, pki: SecurityPki) -> str:
    long_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(days=400)
    return sign_csr(csr, pki.csms_root, not_before=long_ago, days=30)


def _another_key(csr: str, pki: SecurityPki) -> str:
    return sign_csr(csr, pki.csms_root, key=generate_key("ec-p256"))


INVALID: dict[str, Callable[[str, SecurityPki], str]] = {
    "untrusted-root": _untrusted,
    "expired": _expired,
    "another-key": _another_key,
}


@pytest.mark.parametrize("invalid", INVALID)
async def test_tc_077_cs_invalid_charge_point_certificate_security_event(
    stack: Stack, pki: SecurityPki, tmp_path: Path, invalid: str
) -> None:
    """A02.FR.06/07: an invalid certificate is Rejected (step 6), then a
    SecurityEventNotification InvalidChargePointCertificate (step 7); nothing else changes:
    the next connection presents the certificate of before."""
    async with secure_rig(stack, pki, tmp_path) as r:
        old = first_serial(r)
        csr = await request_signing(r)  # steps 1-4
        chain = INVALID[invalid](csr, pki)
        answer = await r.peer.call("CertificateSigned", {"certificateChain": chain})
        assert answer == {"status": "Rejected"}  # step 6
        await wait_security_event(r, "InvalidChargePointCertificate")  # step 7
        event = call_index(
            r.peer,
            "SecurityEventNotification",
            lambda p: p["type"] == "InvalidChargePointCertificate",
        )
        assert answer_index(r.peer, "CertificateSigned") < event
        seen = len(connects(r.peer))
        await r.peer.close_connection()
        await r.peer.wait_for(lambda _: len(connects(r.peer)) > seen, timeout=60)
        assert [c["client_serial"] for c in connects(r.peer)] == [old] * (seen + 1)
        no_strict_failures(r)


@pytest.mark.parametrize("invalid", ["expired-root", "not-a-ca"])
async def test_tc_078_cs_invalid_central_system_certificate_security_event(
    stack: Stack, pki: SecurityPki, tmp_path: Path, invalid: str
) -> None:
    """M05.FR.06: an expired root or a certificate that is no CA is Rejected (step 2), then a
    SecurityEventNotification InvalidCentralSystemCertificate (step 3), and it is not
    installed."""
    certificate = pki.expired_root.pem if invalid == "expired-root" else pki.not_ca_pem
    async with secure_rig(stack, pki, tmp_path) as r:
        answer = await r.peer.call(
            "InstallCertificate", {"certificateType": CSMS_ROOT, "certificate": certificate}
        )
        assert answer == {"status": "Rejected"}  # step 2
        await wait_security_event(r, "InvalidCentralSystemCertificate")  # step 3
        event = call_index(
            r.peer,
            "SecurityEventNotification",
            lambda p: p["type"] == "InvalidCentralSystemCertificate",
        )
        assert answer_index(r.peer, "InstallCertificate") < event
        status, listed = await installed_ids(r, CSMS_ROOT)
        assert (status, listed) == (
            "Accepted",
            {normalised(expected_hash_data(pki.csms_root.cert))},
        )
        no_strict_failures(r)


async def test_a_new_certificate_the_csms_refuses_falls_back_to_the_previous_one(
    stack: Stack, pki: SecurityPki, tmp_path: Path
) -> None:
    """A02.FR.10 (issue 18): a certificate the charge point accepts (from a Central System
    root it has installed) but the CSMS refuses in csms.upgrade_attempts handshakes in a row
    is suspended: the next connection presents the old certificate again, and once that one
    connects the new one is known to be the cause: it is dropped, and a
    SecurityEventNotification InvalidChargePointCertificate says why (review M1)."""
    async with secure_rig(stack, pki, tmp_path, upgrade_attempts=2) as r:
        old = first_serial(r)
        answer = await r.peer.call(
            "InstallCertificate", {"certificateType": CSMS_ROOT, "certificate": pki.second_root.pem}
        )
        assert answer == {"status": "Accepted"}
        csr = await request_signing(r)
        chain = sign_csr(csr, pki.second_root)  # the CSMS's client_ca trusts csms_root only
        seen, refused = len(connects(r.peer)), r.peer.count("tls_failed")
        answer = await r.peer.call("CertificateSigned", {"certificateChain": chain})
        assert answer == {"status": "Accepted"}
        await wait_security_event(r, "InvalidChargePointCertificate", timeout=90)
        await wait_connect_with(r.peer, str(old), after=seen, timeout=60)
        assert r.peer.count("tls_failed") > refused  # the new certificate was presented
        new = serial_hex(chain_leaf(chain))
        assert new not in {c["client_serial"] for c in connects(r.peer)}
        no_strict_failures(r)


# -- A03: renewal before expiry --


@pytest.mark.parametrize(("days_left", "renews"), [(10, True), (60, False)])
async def test_a_certificate_that_expires_within_30_days_is_renewed_by_the_charge_point(
    stack: Stack, pki: SecurityPki, tmp_path: Path, days_left: int, renews: bool
) -> None:
    """A03.FR.02: the renewal check start() schedules (a minute after start, then daily)
    sends SignCertificate by itself for a certificate that expires within 30 days, and not
    for one that has longer. The test runs the scheduled job now rather than wait its first
    minute: what is tested is the job, not the delay."""
    client = factory_certificate(
        tmp_path / "cp", pki.csms_root, valid_for=timedelta(days=days_left)
    )
    async with secure_rig(stack, pki, tmp_path, client=client) as r:
        scheduler = r.daemon.scheduler
        job = scheduler.get_job(RENEWAL_JOB)
        assert job is not None  # scheduled by start()
        # Daily, and the first run at the trigger's start (FIRST_CHECK after start), not a
        # day later: asserted on the trigger, not against the wall clock.
        assert isinstance(job.trigger, IntervalTrigger)
        assert job.trigger.interval == timedelta(days=1)
        assert job.next_run_time == job.trigger.start_date
        ran = asyncio.Event()

        def executed(event: JobExecutionEvent) -> None:
            if event.job_id == RENEWAL_JOB:
                ran.set()

        scheduler.add_listener(executed, EVENT_JOB_EXECUTED)
        job.modify(next_run_time=datetime.now(UTC))
        async with asyncio.timeout(30):
            await ran.wait()
        if renews:
            [call] = await r.wait_calls("SignCertificate")
            csr = parse_csr(call["csr"])
            assert csr.is_signature_valid and csr_subject(csr) == (VENDOR, CP)
            chain = sign_csr(call["csr"], pki.csms_root)
            seen = len(connects(r.peer))
            answer = await r.peer.call("CertificateSigned", {"certificateChain": chain})
            assert answer == {"status": "Accepted"}
            await wait_connect_with(r.peer, serial_hex(chain_leaf(chain)), after=seen)
        else:
            # The job ran to its end; a request would have set these synchronously (its
            # sending is a task, so absent calls right now would prove nothing).
            assert r.daemon.certificate_store.pending_key() is None
            certificates = r.daemon.station.certificates
            assert certificates is not None and certificates._requesting is False
        no_strict_failures(r)


# -- security events (whitepaper §8) --


async def test_startup_of_the_device_is_notified_after_each_boot(
    stack: Stack, pki: SecurityPki, tmp_path: Path
) -> None:
    async with secure_rig(stack, pki, tmp_path) as r:
        await wait_security_event(r, "StartupOfTheDevice")
        await r.restart()
        await r.booted(2)
        await wait_security_event(r, "StartupOfTheDevice", count=2)
        for event in security_events(r, "StartupOfTheDevice"):
            assert event["timestamp"]
        no_strict_failures(r)
