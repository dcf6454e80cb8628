"""The CSMS of ``chargepoint demo``: `websockets` and the `ocpp` library's central-system side on
127.0.0.1, accepting one charge point with HTTP Basic auth, answering what a Core and
Firmware Management charge point with the security extension sends (security events, signed
firmware statuses, certificate signing requests), and calling it back (remote start/stop,
signed firmware update, diagnostics, a new charge point certificate) when the demo script
asks.

Every frame that crosses the WebSocket is handed to ``on_frame(direction, text)`` so the demo
can print it; every CALL the charge point makes is kept in :attr:`DemoCsms.calls`.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as CsmsSide
from ocpp.v16 import call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import Action, AuthorizationStatus, GenericStatus, RegistrationStatus
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

FrameSink = Callable[[str, str], None]  # direction ("cp>csms" or "csms>cp"), frame text

HEARTBEAT_INTERVAL = 300


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Recorded:
    """The connection the `ocpp` library reads and writes, with every frame shown on the way."""

    def __init__(self, connection: ServerConnection, on_frame: FrameSink) -> None:
        self._connection = connection
        self._on_frame = on_frame

    async def recv(self) -> str:
        text = str(await self._connection.recv())
        self._on_frame("cp>csms", text)
        return text

    async def send(self, text: str) -> None:
        self._on_frame("csms>cp", text)
        await self._connection.send(text)


class _Handlers(CsmsSide):  # type: ignore[misc]  # the ocpp library is untyped
    def __init__(self, identity: str, connection: _Recorded, csms: DemoCsms) -> None:
        super().__init__(identity, connection, response_timeout=60)
        self._csms = csms

    def _seen(self, action: str, payload: dict[str, Any]) -> None:
        self._csms.calls.append((action, payload))
        self._csms.changed.set()

    @on(Action.boot_notification)  # type: ignore[untyped-decorator]
    def on_boot(self, **payload: Any) -> call_result.BootNotification:
        self._seen("BootNotification", payload)
        return call_result.BootNotification(
            current_time=_now(), interval=HEARTBEAT_INTERVAL, status=RegistrationStatus.accepted
        )

    @on(Action.heartbeat)  # type: ignore[untyped-decorator]
    def on_heartbeat(self, **payload: Any) -> call_result.Heartbeat:
        self._seen("Heartbeat", payload)
        return call_result.Heartbeat(current_time=_now())

    @on(Action.status_notification)  # type: ignore[untyped-decorator]
    def on_status(self, **payload: Any) -> call_result.StatusNotification:
        self._seen("StatusNotification", payload)
        return call_result.StatusNotification()

    @on(Action.authorize)  # type: ignore[untyped-decorator]
    def on_authorize(self, **payload: Any) -> call_result.Authorize:
        self._seen("Authorize", payload)
        return call_result.Authorize(id_tag_info=IdTagInfo(status=AuthorizationStatus.accepted))

    @on(Action.start_transaction)  # type: ignore[untyped-decorator]
    def on_start(self, **payload: Any) -> call_result.StartTransaction:
        transaction_id = len(self._csms.transaction_ids) + 1
        self._csms.transaction_ids.append(transaction_id)
        self._csms.meter_start[transaction_id] = payload["meter_start"]
        self._seen("StartTransaction", payload)
        return call_result.StartTransaction(
            transaction_id=transaction_id,
            id_tag_info=IdTagInfo(status=AuthorizationStatus.accepted),
        )

    @on(Action.stop_transaction)  # type: ignore[untyped-decorator]
    def on_stop(self, **payload: Any) -> call_result.StopTransaction:
        self._seen("StopTransaction", payload)
        start = self._csms.meter_start.get(payload["transaction_id"])
        if start is not None:
            self._csms.energy_wh += payload["meter_stop"] - start
        return call_result.StopTransaction()

    @on(Action.meter_values)  # type: ignore[untyped-decorator]
    def on_meter_values(self, **payload: Any) -> call_result.MeterValues:
        self._seen("MeterValues", payload)
        return call_result.MeterValues()

    @on(Action.firmware_status_notification)  # type: ignore[untyped-decorator]
    def on_firmware_status(self, **payload: Any) -> call_result.FirmwareStatusNotification:
        self._seen("FirmwareStatusNotification", payload)
        return call_result.FirmwareStatusNotification()

    @on(Action.diagnostics_status_notification)  # type: ignore[untyped-decorator]
    def on_diagnostics_status(self, **payload: Any) -> call_result.DiagnosticsStatusNotification:
        self._seen("DiagnosticsStatusNotification", payload)
        return call_result.DiagnosticsStatusNotification()

    @on(Action.signed_firmware_status_notification)  # type: ignore[untyped-decorator]
    def on_signed_firmware_status(
        self, **payload: Any
    ) -> call_result.SignedFirmwareStatusNotification:
        self._seen("SignedFirmwareStatusNotification", payload)
        return call_result.SignedFirmwareStatusNotification()

    @on(Action.security_event_notification)  # type: ignore[untyped-decorator]
    def on_security_event(self, **payload: Any) -> call_result.SecurityEventNotification:
        self._seen("SecurityEventNotification", payload)
        return call_result.SecurityEventNotification()

    @on(Action.sign_certificate)  # type: ignore[untyped-decorator]
    def on_sign_certificate(self, **payload: Any) -> call_result.SignCertificate:
        # Accepted: the demo script signs the CSR and sends CertificateSigned (A02.FR.04/05).
        self._seen("SignCertificate", payload)
        return call_result.SignCertificate(status=GenericStatus.accepted)


class DemoCsms:
    def __init__(
        self,
        identity: str,
        password: bytes,
        on_frame: FrameSink,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.identity = identity
        self.tls = tls
        self.password = password
        self.on_frame = on_frame
        self.calls: list[tuple[str, dict[str, Any]]] = []  # (action, snake_case payload)
        self.changed = asyncio.Event()
        self.transaction_ids: list[int] = []  # given out, in order
        self.meter_start: dict[int, int] = {}
        self.energy_wh = 0  # meterStop - meterStart, summed over stopped transactions
        self._server: Server | None = None
        self._session: _Handlers | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{port}/ocpp"

    async def start(self) -> None:
        self._server = await serve(
            self._serve,
            "127.0.0.1",
            0,
            subprotocols=[Subprotocol("ocpp1.6")],
            process_request=self._check_auth,
            ping_interval=None,  # the charge point pings (WebSocketPingInterval)
            ssl=self.tls,
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _check_auth(self, connection: ServerConnection, request: Request) -> Response | None:
        # Security whitepaper profiles 1 and 2: Basic auth, user = charge point id.
        header = request.headers.get("Authorization", "")
        identity = urllib.parse.unquote(request.path.rsplit("/", 1)[-1])
        expected = base64.b64encode(identity.encode() + b":" + self.password).decode()
        if identity == self.identity and header == f"Basic {expected}":
            return None
        return connection.respond(HTTPStatus.UNAUTHORIZED, "wrong charge point id or password\n")

    async def _serve(self, connection: ServerConnection) -> None:
        session = _Handlers(self.identity, _Recorded(connection, self.on_frame), self)
        self._session = session
        try:
            await session.start()
        except Exception:  # the connection closed; the charge point will come back
            pass
        finally:
            if self._session is session:
                self._session = None

    async def call(self, payload: Any) -> Any:
        """Send a CALL to the charge point and return its CALLRESULT payload."""
        if self._session is None:
            raise RuntimeError("no charge point is connected")
        return await self._session.call(payload)

    def seen(self, action: str, *, since: int = 0, **fields: Any) -> list[dict[str, Any]]:
        """The payloads of ``action`` CALLs, from call number ``since`` on, that carry
        ``fields`` (snake_case names)."""
        return [
            payload
            for name, payload in self.calls[since:]
            if name == action and all(payload.get(k) == v for k, v in fields.items())
        ]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float) -> Any:
        async with asyncio.timeout(timeout):
            while not (result := predicate()):
                self.changed.clear()
                await self.changed.wait()
            return result
