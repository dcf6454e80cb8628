"""Two independent CSMS implementations the tests talk to, behind one small interface.

* :class:`PythonCsms`: `websockets` + the `ocpp` library's central-system side, in process.
* :class:`NodeCsms`: `ocpp-rpc` in strict mode, in its own Node.js process.

Both record what happens as event dicts (``{"event": "call", "method": ..., "params": ...}``,
``connect``, ``close``, ``auth_rejected``, ``tls_failed``, ``frame``, ``stopped``) with the
monotonic time they were seen, and can send CALLs and raw text to the connected charge point.

Both serve ``ws://`` (security profiles 0 and 1) or, given a :class:`ServerTls`, ``wss://``
(profile 2, or 3 with ``client_ca``: OCPP 1.6 security whitepaper §2). ``stop()`` closes the
live connection and the listener; ``start()`` again listens on the same port, keeps the log,
and answers as the same CSMS (boot sequence, idTags, transaction ids carry over).

Events (besides the ``t`` monotonic time every event gets):

* ``connect``: ``identity``, ``protocol``, ``tls`` (bool), ``client_cn`` (the commonName of the
  client certificate, or None), ``basic_auth`` (an ``Authorization: Basic`` header came);
  PythonCsms also ``path``.
* ``auth_rejected``: ``identity``, ``reason`` (``"wrong charge point id or password"``, or
  ``"client certificate commonName ... is not the charge point identity"``); NodeCsms also
  ``hadPassword``.
* ``tls_failed``: ``reason`` (the TLS library's message), ``code`` (the OpenSSL reason, e.g.
  ``TLSV1_ALERT_UNKNOWN_CA``, ``PEER_DID_NOT_RETURN_A_CERTIFICATE``, or None): a handshake
  that failed (the charge point did not trust us, or brought no or a bad client certificate).
  Best effort: a client that drops the TCP connection mid-handshake without a TLS alert is not
  recorded by PythonCsms.
* ``close``: ``code``, ``reason``; ``stopped``: the CSMS was stopped (NodeCsms adds ``state``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import ssl
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

NODE_CSMS = Path(__file__).parent / "node_csms"

Event = dict[str, Any]


class CsmsCallError(Exception):
    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code


@dataclass
class PeerLog:
    events: list[Event] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, event: Event) -> None:
        event.setdefault("t", time.monotonic())
        self.events.append(event)
        self.changed.set()

    async def wait_for(self, predicate: Callable[[list[Event]], Any], timeout: float = 30.0) -> Any:
        """Wait until ``predicate(events)`` is truthy; return its value."""
        async with asyncio.timeout(timeout):
            while True:
                result = predicate(self.events)
                if result:
                    return result
                self.changed.clear()
                await self.changed.wait()

    def calls(self, method: str | None = None) -> list[Event]:
        return [e for e in self.events if e["event"] == "call" and method in (None, e["method"])]

    def count(self, kind: str) -> int:
        return sum(1 for e in self.events if e["event"] == kind)

    def reply_to(self, message_id: str) -> list[Any] | None:
        """The charge point's CALLRESULT/CALLERROR for ``message_id``, if it came."""
        for event in self.events:
            if event["event"] == "frame" and not event["outbound"]:
                frame = json.loads(event["text"])
                if frame[0] in (3, 4) and frame[1] == message_id:
                    return list(frame)
        return None


@dataclass(frozen=True)
class ServerTls:
    """Serve ``wss://`` with ``cert`` (PEM, with its chain) and ``key`` (TLS 1.2 or later).

    With ``client_ca`` (security profile 3), the charge point must present a client certificate
    signed by ``client_ca`` (else the TLS handshake fails, A00.FR.403/407) whose commonName is
    its identity in the URL (else HTTP 401, A00.FR.405). Profile 3 authenticates with the
    certificate: HTTP Basic auth is then not required and a configured password is ignored
    (whether a Basic header came is still recorded in the ``connect`` event).
    """

    cert: Path
    key: Path
    client_ca: Path | None = None


def _basic_auth(header: str | None) -> bool:
    return bool(header) and re.match(r"\s*basic\s", header or "", re.IGNORECASE) is not None


def _serial(peercert: dict[str, Any] | None) -> str | None:
    """The client certificate's serial number, upper-case hex without leading zeros (as the
    Node peer reports it): which certificate the charge point presented."""
    serial = (peercert or {}).get("serialNumber")
    return str(serial).upper().lstrip("0") or "0" if serial else None


def _common_name(peercert: dict[str, Any] | None) -> str | None:
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class CsmsBehaviour:
    """How a test CSMS answers the charge point's transaction requests.

    ``id_tags``: idTagInfo per idTag (anything else is Accepted); ``fail``: how many of the
    next requests of an action get a CallError InternalError (OCPP-J "failed to process").
    A StartTransaction sent again unchanged (its answer was lost) gets the same transactionId,
    as a careful CSMS does: it is the same transaction. ``sign_certificate``: the status of
    SignCertificate.conf (the CSMS takes the CSR to its CA; a test signs it and sends
    CertificateSigned itself).
    """

    def __init__(self) -> None:
        self.id_tags: dict[str, dict[str, Any]] = {}
        self.fail: dict[str, int] = {}
        self.next_transaction_id = 1000
        self.started: dict[str, int] = {}
        self.sign_certificate = "Accepted"

    def configure(
        self,
        id_tags: dict[str, dict[str, Any]] | None,
        fail: dict[str, int] | None,
        sign_certificate: str | None = None,
    ) -> None:
        self.id_tags.update(id_tags or {})
        self.fail.update(fail or {})
        if sign_certificate is not None:
            self.sign_certificate = sign_certificate

    def answer(self, method: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """The answer, or None for a CallError."""
        if self.fail.get(method, 0) > 0:
            self.fail[method] -= 1
            return None
        info = self.id_tags.get(params.get("idTag", ""), {"status": "Accepted"})
        if method == "Authorize":
            return {"idTagInfo": info}
        if method == "StartTransaction":
            key = json.dumps(params, sort_keys=True)
            if key not in self.started:
                self.next_transaction_id += 1
                self.started[key] = self.next_transaction_id
            return {"transactionId": self.started[key], "idTagInfo": info}
        if method == "StopTransaction":
            return {"idTagInfo": info} if "idTag" in params else {}
        if method == "SignCertificate":
            return {"status": self.sign_certificate}
        return {}


class PythonCsms(PeerLog):
    """A CSMS on `websockets` and the `ocpp` library; checks HTTP Basic auth.

    ``tls``: serve ``wss://`` (see :class:`ServerTls`; with ``client_ca`` no Basic auth).
    """

    def __init__(
        self,
        *,
        password: bytes | None = None,
        boots: str = "Accepted:300",
        tls: ServerTls | None = None,
    ) -> None:
        super().__init__()
        self.password = password
        self.tls = tls
        self._handshakes: set[asyncio.Task[None]] = set()
        self.boots = [(s, int(i)) for s, i in (entry.split(":") for entry in boots.split(","))]
        self.boot_count = 0
        self.server: Server | None = None
        self.connection: ServerConnection | None = None
        self.port = 0
        self.behaviour = CsmsBehaviour()

    async def configure(
        self,
        *,
        id_tags: dict[str, dict[str, Any]] | None = None,
        fail: dict[str, int] | None = None,
        sign_certificate: str | None = None,
    ) -> None:
        self.behaviour.configure(id_tags, fail, sign_certificate)

    @property
    def url(self) -> str:
        scheme = "wss" if self.tls is not None else "ws"
        return f"{scheme}://127.0.0.1:{self.port}/ocpp"

    async def start(self) -> None:
        """Listen; after :meth:`stop`, on the same port as before."""
        context = self._ssl_context()
        log, handshakes = self, self._handshakes

        class TlsServerConnection(ServerConnection):
            """TLS started by hand (``loop.start_tls``), not by ``create_server(ssl=...)``:
            asyncio drops a failed server-side handshake silently, this way it is recorded."""

            secured = False

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                assert context is not None
                transport.pause_reading()  # start_tls takes over the reading
                handshake = self.loop.create_task(self._start_tls(transport, context))
                handshakes.add(handshake)
                handshake.add_done_callback(handshakes.discard)

            async def _start_tls(self, raw: Any, context: ssl.SSLContext) -> None:
                try:
                    transport = await self.loop.start_tls(
                        raw, self, context, server_side=True, ssl_handshake_timeout=10
                    )
                except ssl.SSLError as exc:
                    log.record({"event": "tls_failed", "reason": str(exc), "code": exc.reason})
                    return
                except (ConnectionError, TimeoutError) as exc:  # EOF or reset, or too slow
                    timeout = isinstance(exc, ConnectionAbortedError)
                    reason = str(exc) or "connection closed during the TLS handshake"
                    code = "HANDSHAKE_TIMEOUT" if timeout else "ECONNRESET"
                    log.record({"event": "tls_failed", "reason": reason, "code": code})
                    return
                assert transport is not None
                self.secured = True
                super().connection_made(transport)

            def connection_lost(self, exc: Exception | None) -> None:
                if self.secured:  # else the handshake failed: nothing was set up
                    super().connection_lost(exc)

        self.server = await serve(
            self._serve,
            "127.0.0.1",
            self.port,
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            process_request=self._check_auth,
            ping_interval=None,
            max_size=2**22,
            create_connection=None if context is None else TlsServerConnection,
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the live connection (close code 1001) and stop listening."""
        if self.server is not None:
            self.server.close(close_connections=True)
            for handshake in list(self._handshakes):
                handshake.cancel()
            await self.server.wait_closed()
            self.server = None
            self.record({"event": "stopped"})

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # A00.FR.312
        context.load_cert_chain(self.tls.cert, self.tls.key)
        if self.tls.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.tls.client_ca)
        return context

    def _check_auth(self, connection: ServerConnection, request: Request) -> Response | None:
        identity = urllib.parse.unquote(request.path.rsplit("/", 1)[-1])
        if self.tls is not None and self.tls.client_ca is not None:
            # Profile 3, A00.FR.405: the certificate is this charge point's.
            common_name = _common_name(self._peercert(connection))
            if common_name == identity:
                return None
            reason = (
                f"client certificate commonName {common_name!r} is not the charge point identity"
            )
            self.record({"event": "auth_rejected", "identity": identity, "reason": reason})
            return connection.respond(HTTPStatus.UNAUTHORIZED, reason + "\n")
        if self.password is None:
            return None
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).partition(b":")
            # OCPP-J 1.6 §6.2.2: the user name is the charge point identity of the URL.
            if user == identity.encode() and password == self.password:
                return None
        reason = "wrong charge point id or password"
        self.record({"event": "auth_rejected", "identity": identity, "reason": reason})
        return connection.respond(HTTPStatus.UNAUTHORIZED, reason + "\n")

    @staticmethod
    def _peercert(connection: ServerConnection) -> dict[str, Any] | None:
        ssl_object = connection.transport.get_extra_info("ssl_object")
        return None if ssl_object is None else ssl_object.getpeercert()

    async def _serve(self, connection: ServerConnection) -> None:
        self.connection = connection
        request = connection.request
        path = request.path if request else ""
        self.record(
            {
                "event": "connect",
                "identity": urllib.parse.unquote(path.rsplit("/", 1)[-1]),
                "path": path,
                "protocol": connection.subprotocol,
                "tls": connection.transport.get_extra_info("ssl_object") is not None,
                "client_cn": _common_name(self._peercert(connection)),
                "client_serial": _serial(self._peercert(connection)),
                "basic_auth": _basic_auth(
                    request.headers.get("Authorization") if request else None
                ),
            }
        )
        try:
            async for message in connection:
                await self._on_frame(connection, str(message))
        except Exception:  # the close is recorded below either way
            pass
        self.record(
            {
                "event": "close",
                "code": connection.close_code,
                "reason": connection.close_reason or "",
            }
        )

    async def _on_frame(self, connection: ServerConnection, text: str) -> None:
        self.record({"event": "frame", "outbound": False, "text": text})
        try:
            frame = json.loads(text)
        except ValueError:
            return
        if frame[0] != 2:
            return
        _, message_id, method, params = frame
        self.record({"event": "call", "method": method, "params": params})
        if method == "BootNotification":
            status, interval = self.boots[min(self.boot_count, len(self.boots) - 1)]
            self.boot_count += 1
            reply: Any = {"status": status, "interval": interval, "currentTime": _now()}
        elif method == "Heartbeat":
            reply = {"currentTime": _now()}
        elif method in (
            "Authorize",
            "StartTransaction",
            "StopTransaction",
            "MeterValues",
            "SignCertificate",
        ):
            reply = self.behaviour.answer(method, params)
            if reply is None:
                await self._send(connection, json.dumps([4, message_id, "InternalError", "", {}]))
                return
        elif method in (
            "StatusNotification",
            "DiagnosticsStatusNotification",
            "FirmwareStatusNotification",
            # the security extension's (whitepaper §5)
            "SecurityEventNotification",
            "LogStatusNotification",
            "SignedFirmwareStatusNotification",
        ):
            reply = {}
        else:
            await self._send(connection, json.dumps([4, message_id, "NotImplemented", "", {}]))
            return
        await self._send(connection, json.dumps([3, message_id, reply]))

    async def _send(self, connection: ServerConnection, text: str) -> None:
        self.record({"event": "frame", "outbound": True, "text": text})
        await connection.send(text)

    async def call(self, method: str, params: dict[str, Any], timeout: float = 30.0) -> Any:
        assert self.connection is not None, "no charge point connected"
        message_id = str(uuid.uuid4())
        await self._send(self.connection, json.dumps([2, message_id, method, params]))
        reply = await self.wait_for(lambda _: self.reply_to(message_id), timeout)
        if reply[0] == 4:
            raise CsmsCallError(reply[2], reply[3])
        return reply[2]

    async def send_raw(self, text: str) -> None:
        assert self.connection is not None, "no charge point connected"
        await self._send(self.connection, text)

    async def send_fragmented(self, fragments: list[str]) -> None:
        assert self.connection is not None, "no charge point connected"
        self.record({"event": "frame", "outbound": True, "text": "".join(fragments)})
        await self.connection.send(fragments)

    async def close_connection(self, code: int = 1000, reason: str = "") -> None:
        assert self.connection is not None, "no charge point connected"
        await self.connection.close(code, reason)


class NodeCsms(PeerLog):
    """`ocpp-rpc` in strict mode, in a Node.js process driven over stdin/stdout.

    ``tls``: serve ``wss://`` (see :class:`ServerTls`; with ``client_ca`` no Basic auth).
    ``stop()`` ends the process; ``start()`` again runs a new one on the same port, handing it
    the state the old one reported when stopped (boot count, idTags, failures still due,
    transaction ids), so the CSMS answers as before its restart.
    """

    def __init__(
        self,
        *,
        password: bytes | None = None,
        boots: str = "Accepted:300",
        tls: ServerTls | None = None,
    ) -> None:
        super().__init__()
        self.password = password
        self.boots = boots
        self.tls = tls
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0
        self._reader: asyncio.Task[None] | None = None
        self._next_id = 0
        self._state: dict[str, Any] | None = None

    @property
    def url(self) -> str:
        scheme = "wss" if self.tls is not None else "ws"
        return f"{scheme}://127.0.0.1:{self.port}/ocpp"

    async def start(self) -> None:
        """Run the server; after :meth:`stop`, on the same port and with the same state."""
        args = ["node", str(NODE_CSMS / "server.js"), "--boot", self.boots]
        if self.password is not None:
            args += ["--password-hex", self.password.hex()]
        if self.port:
            args += ["--port", str(self.port)]
        if self._state is not None:
            args += ["--state", json.dumps(self._state)]
        if self.tls is not None:
            args += ["--tls-cert", str(self.tls.cert), "--tls-key", str(self.tls.key)]
            if self.tls.client_ca is not None:
                args += ["--client-ca", str(self.tls.client_ca)]
        first = len(self.events)
        self.process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=EVENT_LINE_LIMIT,
        )
        self._reader = asyncio.create_task(self._read_events())
        started = await self.wait_for(
            lambda events: [
                e for e in events[first:] if e["event"] in ("listening", "listen_failed")
            ],
            20,
        )
        if started[0]["event"] != "listening":
            await self.stop()
            raise RuntimeError(f"the Node.js CSMS could not listen: {started[0].get('error')}")
        self.port = started[0]["port"]

    async def _read_events(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.record(json.loads(line))

    async def stop(self) -> None:
        """Close the live connection and end the process (its last event: ``stopped``)."""
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()
        if self._reader is not None:
            # Read to the end of its output (the ``stopped`` event with the state) first.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reader), 5)
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        stopped = [e for e in self.events if e["event"] == "stopped" and "state" in e]
        if stopped:
            self._state = stopped[-1]["state"]

    async def _command(self, command: dict[str, Any]) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()

    async def call(self, method: str, params: dict[str, Any], timeout: float = 30.0) -> Any:
        self._next_id += 1
        command_id = self._next_id
        await self._command({"cmd": "call", "id": command_id, "method": method, "params": params})

        def answered(events: list[Event]) -> Event | None:
            for event in events:
                if event.get("id") == command_id and event["event"] in (
                    "result",
                    "error",
                    "command_error",
                ):
                    return event
            return None

        event = await self.wait_for(answered, timeout)
        if event["event"] != "result":
            raise CsmsCallError(
                str(event.get("code")), str(event.get("message") or event.get("error"))
            )
        return event["result"]

    async def send_raw(self, text: str) -> None:
        await self._command({"cmd": "raw", "data": text})

    async def configure(
        self,
        *,
        id_tags: dict[str, dict[str, Any]] | None = None,
        fail: dict[str, int] | None = None,
        sign_certificate: str | None = None,
    ) -> None:
        self._next_id += 1
        command_id = self._next_id
        command: dict[str, Any] = {
            "cmd": "configure",
            "id": command_id,
            "idTags": id_tags or {},
            "fail": fail or {},
        }
        if sign_certificate is not None:
            command["signCertificate"] = sign_certificate
        await self._command(command)
        await self.wait_for(
            lambda events: any(
                e["event"] == "configured" and e.get("id") == command_id for e in events
            )
        )

    async def close_connection(self, code: int = 1000, reason: str = "") -> None:
        await self._command({"cmd": "close", "code": code, "reason": reason})


Csms = PythonCsms | NodeCsms


# One event line of the Node.js CSMS holds a whole frame: a SendLocalList of 10,000 entries
# is ~1.7 MB.
EVENT_LINE_LIMIT = 8 * 1024 * 1024


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
