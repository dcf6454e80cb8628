"""Issue 18's acceptance: the charge point's private key never appears in a log, a trace,
GetConfiguration or an upload (whitepaper A00.FR.303: the key stays on the charge point,
readable by nothing else; A02.FR.02: it is made on the charge point and only the CSR leaves).

One run of the whole flow on each stack: boot on security profile 3 with a factory key, OCTT
TC_074 (a new key, its CSR, CertificateSigned, the reconnection with the new certificate),
GetConfiguration of every key, GetDiagnostics and GetLog (DiagnosticsLog and SecurityLog)
uploaded to the real HTTP file server. Then every artefact of the run is searched for the
material of both private keys (the factory one and the new one), in every form it could leak
in: the PEM body lines (PKCS#8 as stored, and the traditional encoding), the base64 of the
DER, the DER bytes, the private number(s) in hex and decimal, and the base64 of the PEM as the
Wi-Fi module's AT+FileWrite carries it.

The artefacts: every log record of every logger at DEBUG (the daemon's AT channel, frame log,
the peers' too), the log file the diagnostics archive takes, every file in the state directory
(the frame trace, the security log, the SQLite database and its WAL, raw bytes and a SQL dump
of it), the frames the CSMS saw, the GetConfiguration answer, the uploaded files (archives
unpacked), and the module simulator's log of AT commands.

Two things are not searched, and the test says why:

* the key files themselves (``certificates/client-*.key``): that is where the key lives; the
  test asserts they are mode 0600 in a 0700 directory, and that the database only names them;
* the one channel that carries the key by design: the upload of the key file to the module
  (profile 3 puts the TLS credentials in the module, issue 18 item 2). On the Quectel module
  the bytes follow AT+QFUPL's CONNECT as raw data, which the module's command log does not
  hold; on the Wi-Fi module they are the base64 arguments of the AT+FileWrite commands between
  AT+FileOpen=/cert/client-key.pem and its AT+FileClose. Exactly those command lines are set
  aside, and the test checks that they do carry the key (and the module's file holds it), so
  the allowance cannot hide anything else. The daemon's own log of those commands masks them
  (``log_as=... ***``) and is searched like every other record.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import sqlite3
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chargepoint.model.certificates import PrivateKey, load_private_key, private_key_pem
from tests.harness import STACKS, Rig, Stack, strict_failures
from tests.security_pki import SecurityPki, make_security_pki, sign_csr
from tests.security_rig import (
    WIRE,
    chain_leaf,
    connects,
    factory_certificate,
    request_signing,
    secure_rig,
    serial_hex,
    wait_connect_with,
)
from transport.simulator.file_server import FileServer

MIN_LINE = 16  # shorter PEM lines (the last one) could match by chance
FILE_WRITE_PIECE = 1024  # raw bytes per AT+FileWrite (transport/modems/simplelink_protocol.py)


@pytest.fixture(params=STACKS, ids=str)
def stack(request: pytest.FixtureRequest) -> Stack:
    result: Stack = request.param
    return result


@pytest.fixture(scope="module")
def pki() -> SecurityPki:
    return make_security_pki()


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as s:
        yield s


# -- the key material --


@dataclass(frozen=True)
class Needle:
    what: str
    text: str
    case_insensitive: bool = False  # hex


def _pem_body(pem: bytes) -> list[str]:
    return [line for line in pem.decode().splitlines() if not line.startswith("-----")]


def needles(key: PrivateKey) -> list[Needle]:
    """Every form of ``key``'s secret a careless line could carry."""
    found: list[Needle] = []
    encodings = {
        "PKCS#8": serialization.PrivateFormat.PKCS8,
        "traditional": serialization.PrivateFormat.TraditionalOpenSSL,
    }
    for name, fmt in encodings.items():
        pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        der = key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
        body = _pem_body(pem)
        found += [Needle(f"{name} PEM line {i}", line) for i, line in enumerate(body)]
        found.append(Needle(f"{name} PEM body joined", "".join(body)))
        found.append(Needle(f"base64 of the {name} DER", base64.b64encode(der).decode()))
        found.append(Needle(f"{name} DER bytes", der.decode("latin-1")))
    secrets: dict[str, int] = {}
    if isinstance(key, ec.EllipticCurvePrivateKey):
        secrets["private value"] = key.private_numbers().private_value
    elif isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        secrets |= {"d": numbers.d, "p": numbers.p, "q": numbers.q}
    for name, number in secrets.items():
        found.append(Needle(f"{name} in hex", format(number, "x"), case_insensitive=True))
        found.append(Needle(f"{name} in decimal", str(number)))
        raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
        found.append(Needle(f"{name} as bytes", raw.decode("latin-1")))
    # The Wi-Fi module's wire form of the key file: base64 of each AT+FileWrite piece.
    stored = private_key_pem(key)
    for offset in range(0, len(stored), FILE_WRITE_PIECE):
        piece = base64.b64encode(stored[offset : offset + FILE_WRITE_PIECE]).decode()
        found.append(Needle(f"AT+FileWrite base64 at {offset}", piece))
    return [n for n in found if len(n.text) >= MIN_LINE]


def leaks(artefacts: dict[str, str], keys: dict[str, PrivateKey]) -> list[str]:
    """ "<artefact>: <key> <form>" for every needle found in an artefact."""
    found = []
    for key_name, key in keys.items():
        for needle in needles(key):
            for name, text in artefacts.items():
                haystack = text.lower() if needle.case_insensitive else text
                if needle.text in haystack:
                    found.append(f"{name}: {key_name} key, {needle.what}")
    return found


# -- the artefacts --


def text_of(data: bytes) -> str:
    return data.decode("latin-1")  # every byte kept, binary or not


def sqlite_dump(path: Path) -> str:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return "\n".join(db.iterdump())
    finally:
        db.close()


def state_artefacts(state: Path, key_files: set[Path]) -> dict[str, str]:
    """Every file of the state directory but the key files; the database also as SQL."""
    found: dict[str, str] = {}
    for path in sorted(p for p in state.rglob("*") if p.is_file()):
        if path in key_files:
            continue
        data = path.read_bytes()
        found[f"state file {path.relative_to(state)}"] = text_of(data)
        if data.startswith(b"SQLite format 3\0"):
            found[f"SQL dump of {path.relative_to(state)}"] = sqlite_dump(path)
    return found


def upload_artefacts(server: FileServer) -> dict[str, str]:
    found: dict[str, str] = {}
    for number, upload in enumerate(server.uploads):
        name = f"upload {number} ({upload.file_name})"
        found[name] = text_of(upload.data)
        if not tarfile.is_tarfile(io.BytesIO(upload.data)):
            continue  # the security log goes as text
        with tarfile.open(fileobj=io.BytesIO(upload.data), mode="r:*") as tar:
            for member in tar.getmembers():
                content = tar.extractfile(member)
                if content is not None:
                    found[f"{name}:{member.name}"] = text_of(content.read())
    return found


def key_writes(family: str, log: list[str]) -> tuple[list[str], list[bytes]]:
    """The module log without the key file's uploads, and what each upload wrote.

    Wi-Fi module: the AT+FileWrite lines between AT+FileOpen of the key file and the
    AT+FileClose after it (the driver serialises file commands). Quectel: the bytes are the
    raw data after AT+QFUPL's CONNECT, not a command line: nothing to set aside."""
    if family != "simplelink":
        return list(log), []
    kept: list[str] = []
    written: list[bytes] = []
    current: bytearray | None = None
    for line in log:
        if line.startswith(WIRE[family].key_upload):
            current = bytearray()
        elif current is not None and line.startswith("AT+FileWrite="):
            current += base64.b64decode(line.split(",", 4)[4])
            continue
        elif current is not None and line.startswith("AT+FileClose"):
            written.append(bytes(current))
            current = None
        kept.append(line)
    return kept, written


def module_key_file(r: Rig) -> bytes:
    module: Any = r.sim.module
    name = WIRE[r.family].key_file
    if r.family == "simplelink":
        return bytes(module.files[name].data)
    return bytes(module.storage.files[name])


class LogFile:
    """Every record at DEBUG into a file the diagnostics archive takes (logs/*.log)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setLevel(logging.DEBUG)
        self.handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )

    def __enter__(self) -> LogFile:
        logging.getLogger().addHandler(self.handler)
        return self

    def __exit__(self, *_: object) -> None:
        logging.getLogger().removeHandler(self.handler)
        self.handler.close()


def statuses(r: Rig, action: str) -> list[tuple[str, Any]]:
    return [(c["status"], c.get("requestId")) for c in r.calls(action)]


async def wait_status(r: Rig, action: str, status: tuple[str, Any]) -> None:
    await r.peer.wait_for(lambda _: status in statuses(r, action), 60)


async def run_whole_flow(r: Rig, pki: SecurityPki, server: FileServer) -> dict[str, Any]:
    """TC_074, GetConfiguration, GetDiagnostics, GetLog x2; what the CSMS was answered."""
    csr = await request_signing(r)
    chain = sign_csr(csr, pki.csms_root)
    seen = len(connects(r.peer))
    assert await r.peer.call("CertificateSigned", {"certificateChain": chain}) == {
        "status": "Accepted"
    }
    await wait_connect_with(r.peer, serial_hex(chain_leaf(chain)), after=seen)

    configuration = await r.peer.call("GetConfiguration", {})
    assert configuration["configurationKey"]

    answer = await r.peer.call("GetDiagnostics", {"location": server.url("/upload/diagnostics")})
    assert "fileName" in answer
    await wait_status(r, "DiagnosticsStatusNotification", ("Uploaded", None))
    for request_id, log_type in ((1, "DiagnosticsLog"), (2, "SecurityLog")):
        answer = await r.peer.call(
            "GetLog",
            {
                "logType": log_type,
                "requestId": request_id,
                "log": {"remoteLocation": server.url(f"/upload/{log_type}")},
            },
        )
        # The previous upload is over once "Uploaded" is sent: nothing to cancel (N01.FR.11).
        assert answer["status"] == "Accepted"
        await wait_status(r, "LogStatusNotification", ("Uploaded", request_id))
    assert strict_failures(r.peer) == []
    return {"GetConfiguration.conf": configuration}


async def test_the_private_key_appears_in_no_log_trace_configuration_or_upload(
    stack: Stack,
    pki: SecurityPki,
    server: FileServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: every logger's records
    log_file = tmp_path / "logs" / "chargepoint.log"
    factory = factory_certificate(tmp_path / "cp", pki.csms_root)
    factory_key = factory.key
    with LogFile(log_file):
        async with secure_rig(
            stack,
            pki,
            tmp_path,
            client=factory,
            diagnostics={"log_files": [str(log_file.parent / "*.log")]},
        ) as r:
            answers = await run_whole_flow(r, pki, server)
            module_key = module_key_file(r)
    state = r.config.storage_directory
    certificates = state / "certificates"

    # The key files: where the key lives, 0600 in a 0700 directory (A00.FR.303).
    key_files = set(certificates.glob("client-*.key"))
    assert key_files, "the new key is stored in the certificate store"
    assert stat.S_IMODE(certificates.stat().st_mode) == 0o700
    keys: dict[str, PrivateKey] = {"factory": factory_key}
    for path in key_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        keys[f"new ({path.name})"] = load_private_key(path.read_bytes())
    # The charge point presents the new key now, and the module holds it (profile 3).
    assert module_key in {private_key_pem(k) for k in keys.values()}
    assert module_key != private_key_pem(factory_key)
    # Positive control: the needles are found where the key is.
    for name, key in keys.items():
        assert leaks({"the key's own PEM": text_of(private_key_pem(key))}, {name: key})

    artefacts: dict[str, str] = {}
    artefacts["log records"] = "\n".join(
        record.getMessage() + "\n" + (record.exc_text or "") for record in caplog.records
    )
    artefacts["formatted log"] = caplog.text
    artefacts["frames the CSMS saw"] = "\n".join(
        e["text"] for e in r.peer.events if e["event"] == "frame"
    )
    artefacts["CSMS events"] = json.dumps(r.peer.events, default=str)
    artefacts |= {name: json.dumps(value) for name, value in answers.items()}
    artefacts |= state_artefacts(state, key_files)
    artefacts |= upload_artefacts(server)
    module_log, uploads_to_module = key_writes(r.family, r.sim.module.log)
    artefacts["module AT command log"] = "\n".join(module_log)

    # The artefacts are the real ones, not empty: each holds what this run did.
    assert "CertificateSigned" in artefacts["state file ocpp-frames.jsonl"]
    assert any("SignCertificate" in text for text in (artefacts["log records"],))
    assert len(server.uploads) == 3  # GetDiagnostics, GetLog DiagnosticsLog and SecurityLog
    for number in (0, 1):  # both diagnostics archives, with the log file and the trace
        assert f"upload {number}" in "".join(artefacts)
        for member in ("logs/chargepoint.log", "ocpp-frames.jsonl", "ocpp-keys.json"):
            assert any(n.startswith(f"upload {number} ") and n.endswith(member) for n in artefacts)
    security_log = server.uploads[2]
    assert b"StartupOfTheDevice" in security_log.data  # the security log, as GetLog sent it
    assert any(line.startswith(WIRE[r.family].key_upload) for line in module_log)
    # The allowed channel carries exactly the key files (Wi-Fi module) and nothing else.
    assert bool(uploads_to_module) == (r.family == "simplelink")
    for written in uploads_to_module:
        assert written in {private_key_pem(k) for k in keys.values()}

    assert leaks(artefacts, keys) == []
