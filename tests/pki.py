"""Certificates made at test time for the TLS tests (security profiles 2 and 3).

One CSMS root CA signs the CSMS's server certificates (a good one, an expired one, one for another
host name); a second CA, the CPO's, signs charge point client certificates (profile 3, whose
commonName is the charge point identity, whitepaper A00.FR.405); a third CA nobody trusts stands
for a CSMS certificate the charge point must refuse. RSA 2048 keys (whitepaper A00.FR.502), so
the module's ECDHE-RSA-AES-GCM suite and the host's defaults both apply.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path

import trustme

RSA = trustme.KeyType.RSA
SERVER_NAMES = ("127.0.0.1", "localhost", "csms.test")


@dataclass(frozen=True, slots=True)
class ServerFiles:
    """A server certificate (with its chain) and its key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class ClientFiles:
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class Pki:
    directory: Path
    ca: Path  # the CSMS root CA the charge point trusts
    cpo_ca: Path  # the CA the CSMS checks charge point certificates against (profile 3)
    untrusted_ca: Path  # a CA the charge point does not trust
    server: ServerFiles  # valid, for SERVER_NAMES
    expired_server: ServerFiles  # same names, expired a year ago
    recent_server: ServerFiles  # same names, issued yesterday for 90 days (a renewal)
    wrong_host_server: ServerFiles  # valid, but for another host name only
    untrusted_server: ServerFiles  # valid names, signed by untrusted_ca

    def client(self, charge_point_id: str, *, ca: str = "cpo") -> ClientFiles:
        """A charge point certificate whose commonName is ``charge_point_id``, signed by the
        CPO's CA (``ca="cpo"``) or by the untrusted one (``ca="untrusted"``)."""
        authority = _CAS[(self.directory, ca)]
        safe = charge_point_id.replace("/", "_")
        host = re.sub(r"[^a-z0-9-]", "-", charge_point_id.lower())
        leaf = authority.issue_cert(
            f"{host}.chargepoints.test", common_name=charge_point_id, key_type=RSA
        )
        cert = self.directory / f"client-{ca}-{safe}.pem"
        key = self.directory / f"client-{ca}-{safe}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)
        return ClientFiles(cert, key)


_CAS: dict[tuple[Path, str], trustme.CA] = {}


def _server(
    ca: trustme.CA, directory: Path, name: str, *names: str, **validity: datetime.datetime
) -> ServerFiles:
    leaf = ca.issue_cert(*names, key_type=RSA, **validity)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    with cert.open("wb") as out:
        for pem in leaf.cert_chain_pems:
            out.write(pem.bytes())
    leaf.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)
    return ServerFiles(cert, key)


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    csms_ca = trustme.CA(organization_name="Test CSMS root", key_type=RSA)
    cpo_ca = trustme.CA(organization_name="Test CPO", key_type=RSA)
    untrusted = trustme.CA(organization_name="Nobody trusts this", key_type=RSA)
    _CAS[(directory, "cpo")] = cpo_ca
    _CAS[(directory, "untrusted")] = untrusted
    files = {}
    for name, authority in (("ca", csms_ca), ("cpo-ca", cpo_ca), ("untrusted-ca", untrusted)):
        path = directory / f"{name}.pem"
        authority.cert_pem.write_to_path(str(path))
        files[name] = path
    now = datetime.datetime.now(datetime.UTC)
    return Pki(
        directory=directory,
        ca=files["ca"],
        cpo_ca=files["cpo-ca"],
        untrusted_ca=files["untrusted-ca"],
        server=_server(csms_ca, directory, "server", *SERVER_NAMES),
        expired_server=_server(
            csms_ca,
            directory,
            "expired-server",
            *SERVER_NAMES,
            not_before=now - datetime.timedelta(days=730),
            not_after=now - datetime.timedelta(days=365),
        ),
        recent_server=_server(
            csms_ca,
            directory,
            "recent-server",
            *SERVER_NAMES,
            not_before=now - datetime.timedelta(days=1),
            not_after=now + datetime.timedelta(days=90),
        ),
        wrong_host_server=_server(csms_ca, directory, "wrong-host-server", "csms.elsewhere.test"),
        untrusted_server=_server(untrusted, directory, "untrusted-server", *SERVER_NAMES),
    )
