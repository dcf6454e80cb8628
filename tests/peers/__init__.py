"""Two independent CSMS implementations the tests talk to, behind one small interface.

* :class:`PythonCsms`: `websockets` + the `ocpp` library's central-system side, in process.
* :class:`NodeCsms`: `ocpp-rpc` in strict mode, in its own Node.js process.

Both record what happens as event dicts (``{"event": "call", "method": ..., "params": ...}``,
``connect``, ``close``, ``auth_rejected``, ``frame``) with the monotonic time they were seen,
and can send CALLs and raw text to the connected charge point.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
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


class CsmsBehaviour:
    """How a test CSMS answers the charge point's transaction requests.

    ``id_tags``: idTagInfo per idTag (anything else is Accepted); ``fail``: how many of the
    next requests of an action get a CallError InternalError (OCPP-J "failed to process").
    A StartTransaction sent again unchanged (its answer was lost) gets the same transactionId,
    as a careful CSMS does: it is the same transaction.
    """

    def __init__(self) -> None:
        self.id_tags: dict[str, dict[str, Any]] = {}
        self.fail: dict[str, int] = {}
        self.next_transaction_id = 1000
        self.started: dict[str, int] = {}

    def configure(
        self, id_tags: dict[str, dict[str, Any]] | None, fail: dict[str, int] | None
    ) -> None:
        self.id_tags.update(id_tags or {})
        self.fail.update(fail or {})

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
        return {}


class PythonCsms(PeerLog):
    """A CSMS on `websockets` and the `ocpp` library; checks HTTP Basic auth."""

    def __init__(self, *, password: bytes | None = None, boots: str = "Accepted:300") -> None:
        super().__init__()
        self.password = password
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
    ) -> None:
        self.behaviour.configure(id_tags, fail)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    async def start(self) -> None:
        self.server = await serve(
            self._serve,
            "127.0.0.1",
            0,
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            process_request=self._check_auth,
            ping_interval=None,
            max_size=2**22,
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def _check_auth(self, connection: ServerConnection, request: Request) -> Response | None:
        identity = urllib.parse.unquote(request.path.rsplit("/", 1)[-1])
        if self.password is None:
            return None
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).partition(b":")
            # OCPP-J 1.6 §6.2.2: the user name is the charge point identity of the URL.
            if user == identity.encode() and password == self.password:
                return None
        self.record({"event": "auth_rejected", "identity": identity})
        return connection.respond(HTTPStatus.UNAUTHORIZED, "wrong charge point id or password\n")

    async def _serve(self, connection: ServerConnection) -> None:
        self.connection = connection
        path = connection.request.path if connection.request else ""
        self.record(
            {
                "event": "connect",
                "identity": urllib.parse.unquote(path.rsplit("/", 1)[-1]),
                "path": path,
                "protocol": connection.subprotocol,
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
        elif method in ("Authorize", "StartTransaction", "StopTransaction", "MeterValues"):
            reply = self.behaviour.answer(method, params)
            if reply is None:
                await self._send(connection, json.dumps([4, message_id, "InternalError", "", {}]))
                return
        elif method in (
            "StatusNotification",
            "DiagnosticsStatusNotification",
            "FirmwareStatusNotification",
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
    """`ocpp-rpc` in strict mode, in a Node.js process driven over stdin/stdout."""

    def __init__(self, *, password: bytes | None = None, boots: str = "Accepted:300") -> None:
        super().__init__()
        self.password = password
        self.boots = boots
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0
        self._reader: asyncio.Task[None] | None = None
        self._next_id = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    async def start(self) -> None:
        args = ["node", str(NODE_CSMS / "server.js"), "--boot", self.boots]
        if self.password is not None:
            args += ["--password-hex", self.password.hex()]
        self.process = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        self._reader = asyncio.create_task(self._read_events())
        listening = await self.wait_for(
            lambda events: [e for e in events if e["event"] == "listening"], 20
        )
        self.port = listening[0]["port"]

    async def _read_events(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.record(json.loads(line))

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

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
    ) -> None:
        self._next_id += 1
        command_id = self._next_id
        await self._command(
            {"cmd": "configure", "id": command_id, "idTags": id_tags or {}, "fail": fail or {}}
        )
        await self.wait_for(
            lambda events: any(
                e["event"] == "configured" and e.get("id") == command_id for e in events
            )
        )

    async def close_connection(self, code: int = 1000, reason: str = "") -> None:
        await self._command({"cmd": "close", "code": code, "reason": reason})


Csms = PythonCsms | NodeCsms


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
