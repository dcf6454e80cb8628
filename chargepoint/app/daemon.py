"""The charge-point daemon: keep an OCPP session with the CSMS up, whatever the network does.

It opens a stream through the link, performs the WebSocket handshake and runs a
:class:`~chargepoint.protocol.session.Session` until the connection ends; then it waits (capped
exponential back-off with jitter) and tries again. When failures are the link's (no socket,
a dead module, a silent connection), every third one in a row escalates recovery one step:
re-activate the PDP context, then cycle the radio, then restart the module. Failures that are
the CSMS's (HTTP 401, wrong subprotocol) or our own (a driver fault, an unexpected error) are
retried with back-off but never blamed on the module.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import signal
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from ocpp.v16.enums import ResetType

from chargepoint.app.assembly import configuration_keys
from chargepoint.app.backoff import Backoff
from chargepoint.app.control import ControlServer
from chargepoint.app.describe import describe
from chargepoint.app.reconnect import Blame, Outcome, ReconnectPolicy
from chargepoint.app.security import SecurityProfiles
from chargepoint.app.service import ServiceNotifier
from chargepoint.blocks.certificates import CertificateManagement
from chargepoint.blocks.data_transfer import DataTransferVendors
from chargepoint.blocks.diagnostics import DiagnosticsSettings, DiagnosticsUploader
from chargepoint.blocks.firmware import FirmwareSettings, FirmwareUpdater, read_version
from chargepoint.blocks.recovery import PowerLossPolicy
from chargepoint.blocks.security_events import SecurityEvent
from chargepoint.certificate_store import CertificateStore
from chargepoint.hardware.charger import Charger
from chargepoint.hardware.simulated import SimulatedCharger
from chargepoint.protocol.charge_point import redact
from chargepoint.protocol.frame_trace import FrameTrace
from chargepoint.protocol.session import (
    BootFields,
    Reconnect,
    Registration,
    Session,
    SessionSettings,
)
from chargepoint.security_log import SecurityLog
from chargepoint.station import Station
from chargepoint.storage import open_state
from config.loader import Config
from config.ocpp_keys import CERTIFICATE_STORE_MAX
from transport.errors import (
    DriverFault,
    ServerRefused,
    TlsHandshakeFailed,
    TlsRefusal,
    TlsSetupFailed,
    TransportError,
)
from transport.link import Link, RecoveryStep
from transport.websocket import (
    HandshakeRejected,
    NotAnOcppServer,
    PingTimeout,
    WebSocket,
    WebSocketError,
    WebSocketSettings,
    connection_url,
    parse_endpoint,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# What a refused TLS handshake is reported as (whitepaper §8).
_TLS_EVENTS = {
    TlsRefusal.CSMS_CERTIFICATE: SecurityEvent.INVALID_CENTRAL_SYSTEM_CERTIFICATE,
    TlsRefusal.VERSION: SecurityEvent.INVALID_TLS_VERSION,
    TlsRefusal.CIPHER_SUITE: SecurityEvent.INVALID_TLS_CIPHER_SUITE,
}


async def _until_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
    """Run ``work``; if ``stop`` is set first, cancel it and return None."""
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(work)
        stopping = tasks.create_task(stop.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            stopping.cancel()
            return task.result()
        task.cancel()
    return None


def cut_power() -> None:
    """``chargepoint ctl power-fail``: the process dies as in a power cut, with no clean-up:
    no WebSocket close, no StopTransaction, nothing more written. systemd restarts it."""
    log.warning("power cut (chargepoint ctl power-fail): the daemon goes down now")
    logging.shutdown()  # the log line above reaches its file; nothing else is done
    os.kill(os.getpid(), signal.SIGKILL)


class Daemon:
    def __init__(
        self,
        config: Config,
        link: Link,
        *,
        charger: Charger | None = None,
        data_transfer: DataTransferVendors | None = None,
        rng: random.Random | None = None,
        reset_hook: Callable[[ResetType], Awaitable[None]] | None = None,
        notifier: ServiceNotifier | None = None,
        power_cut: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self._power_cut = power_cut or cut_power
        self.notifier = notifier or ServiceNotifier.from_environment()
        self.link = link
        self.data_transfer = data_transfer or DataTransferVendors()
        self.db = open_state(config.storage_directory)
        self.charger: Charger = charger or SimulatedCharger(
            config.charge_point.connectors, self.db, fixed_cable=config.charger.fixed_cable
        )
        storage = config.storage_directory
        csms = config.csms
        client = (
            (csms.client_certificate, csms.client_key)
            if csms.client_certificate is not None and csms.client_key is not None
            else None
        )
        self.certificate_store = CertificateStore(
            storage / "certificates",
            self.db,
            factory_csms_roots=csms.ca_file,
            factory_client=client,
            factory_manufacturer_roots=config.firmware.manufacturer_ca_file,
            max_roots=CERTIFICATE_STORE_MAX,
        )
        self.security = SecurityProfiles(config, self.db, self.certificate_store)
        self.keys = configuration_keys(config, self.charger, self.db, self.security.check)
        self.security.bind(self.keys)
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.security_log = SecurityLog(storage / "security-log.jsonl")
        self.station = Station(
            charger=self.charger,
            keys=self.keys,
            db=self.db,
            scheduler=self.scheduler,
            power_loss=PowerLossPolicy(config.charge_point.power_loss),
            reset_hook=self._on_reset,
            no_answer_retry=config.csms.call_timeout,
            replay_batch_bytes=config.csms.replay_batch_bytes,
            profiles=config.charge_point.feature_profiles,
            data_transfer=self.data_transfer,
            security_log=self.security_log,
        )
        self.security.report_to(self.station.record_security_event)
        self._reported: set[SecurityEvent] = set()  # connection failures told once per outage
        self.trace = FrameTrace(storage / "ocpp-frames.jsonl", redact=redact)
        self._reset_reason = storage / "reset-reason"
        self.station.add_certificate_management(
            lambda context, events: CertificateManagement(
                context,
                self.certificate_store,
                events,
                charge_point_id=config.charge_point.id,
                key_type=csms.key_type,
                security_profile=lambda: self.security.active,
            )
        )
        self.station.add_firmware_management(
            lambda context, availability, transactions: FirmwareUpdater(
                context=context,
                availability=availability,
                transactions=transactions,
                http=self.link.http_client,
                ftp=self.link.ftp_client,
                settings=FirmwareSettings(
                    directory=storage / "firmware",
                    install_command=config.firmware.install_command,
                    reboot_command=config.firmware.reboot_command,
                    install_timeout=config.firmware.install_timeout,
                    unsigned_updates=config.firmware.unsigned_updates,
                ),
                reboot=self._firmware_reboot,
                events=self.station.record_security_event,
                manufacturer_roots=self.certificate_store.manufacturer_roots,
                security_profile=lambda: self.security.active,
            ),
            lambda context: DiagnosticsUploader(
                charge_point_id=config.charge_point.id,
                context=context,
                http=self.link.http_client,
                ftp=self.link.ftp_client,
                settings=DiagnosticsSettings(
                    log_files=config.diagnostics.log_files,
                    config_file=config.source if config.source.is_file() else None,
                    max_log_bytes=config.diagnostics.max_log_bytes,
                ),
                trace=self.trace,
                identity=self._identity,
                security_log=self.security_log,
            ),
        )
        self.firmware = self.station.firmware
        self.diagnostics = self.station.diagnostics
        self.reset_requested: ResetType | None = None
        self._reset_hook = reset_hook
        self._stop: asyncio.Event | None = None
        self.registration = Registration()
        self.session: Session | None = None
        self.sessions_started = 0
        self.attempts = 0
        self.outcomes: list[Outcome] = []
        self._policy = ReconnectPolicy(
            Backoff(config.csms.reconnect_delay_min, config.csms.reconnect_delay_max, rng),
            self.security,
        )
        link.use_csms_time(self._csms_time)

    async def _on_reset(self, kind: ResetType) -> None:
        self.reset_requested = kind
        # Reported by the next start, before StartupOfTheDevice: sent now, it would race the
        # shutdown and come between Reset.conf and the next BootNotification.
        if not self._reset_reason.exists():  # a firmware reboot said why already
            self._reset_reason.write_text(f"{kind.value} reset\n", encoding="utf-8")
        if self._reset_hook is not None:
            await self._reset_hook(kind)
        if self._stop is not None:
            self._stop.set()

    async def _firmware_reboot(self) -> None:
        command = self.config.firmware.reboot_command
        self._reset_reason.write_text("reboot after a firmware installation\n", encoding="utf-8")
        if command is None:
            await self._on_reset(ResetType.hard)  # the daemon restarts itself
            return
        log.warning("firmware installed: running %s", " ".join(command))
        try:
            process = await asyncio.create_subprocess_exec(*command)
            code = await process.wait()
        except OSError as error:
            log.error("reboot command %s could not be started: %s", command[0], error)
            await self._on_reset(ResetType.hard)
            return
        if code != 0:
            log.error("reboot command exited with %d: restarting the daemon instead", code)
            await self._on_reset(ResetType.hard)

    def _identity(self) -> dict[str, Any]:
        identity = self.link.identity
        return {
            "charge_point": self.config.charge_point.id,
            "software": version("chargepoint-at"),
            "firmware": self._boot_fields().firmware_version,
            "link": self.link.description,
            "module": dataclasses.asdict(identity) if identity is not None else None,
        }

    async def run(self, stop: asyncio.Event) -> None:
        cp, csms = self.config.charge_point, self.config.csms
        log.info("charge point %s: CSMS %s through %s", cp.id, csms.url, self.link.description)
        self._stop = stop
        self.scheduler.start()
        control = ControlServer(
            self.config.control_path, self.charger, self._describe, self._power_cut
        )
        service = [
            asyncio.create_task(self.notifier.watchdog(), name="systemd watchdog"),
            asyncio.create_task(
                self.notifier.ready_after(self.config.ready_timeout), name="systemd ready"
            ),
        ]
        self._report_restart()
        self.station.record_security_event(
            SecurityEvent.STARTUP_OF_THE_DEVICE,
            f"chargepoint-at {version('chargepoint-at')}, firmware "
            f"{self._boot_fields().firmware_version}",
        )
        try:
            await control.start()
            await self.station.start()
            while not stop.is_set():
                self.attempts += 1
                # A bring-up can wait minutes for the network, a recovery step for the module:
                # a stop must not wait for either.
                outcome = await _until_stopped(self._attempt(stop), stop)
                if outcome is None:
                    break
                self.outcomes.append(outcome)
                delay = await _until_stopped(self._after(outcome), stop)
                if delay is None:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
        finally:
            self.notifier.stopping()
            for task in service:
                task.cancel()
            await asyncio.gather(*service, return_exceptions=True)
            self.notifier.close()
            await control.stop()
            await self.station.close()
            self.security_log.close()
            self.trace.close()
            self.scheduler.shutdown(wait=False)
            await self.link.close()
            self.db.close()
            log.info("charge point %s stopped", cp.id)

    def _report_restart(self) -> None:
        """ResetOrReboot for a reset the last run was asked for (Reset, a firmware install)."""
        try:
            why = self._reset_reason.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return
        except OSError as error:
            why = f"a reset (its reason is unreadable: {error})"
        self.station.record_security_event(SecurityEvent.RESET_OR_REBOOT, why)
        self._reset_reason.unlink(missing_ok=True)

    def _describe(self) -> dict[str, Any]:
        return {
            "charge_point": self.config.charge_point.id,
            "link": self.link.description,
            "security_profile": self.security.active,
            **describe(self.station),
        }

    def _csms_time(self) -> datetime | None:
        """The CSMS's time, from the offset the last BootNotification or Heartbeat showed."""
        offset = self.registration.clock_offset
        if offset is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=offset)

    async def _attempt(self, stop: asyncio.Event) -> Outcome:
        try:
            return await self._connect(stop)
        except Exception as exc:
            # A bug must not take the charger off the network for good: say so loudly and
            # try again, without blaming (and cycling) the module for it.
            log.exception("unexpected failure in the OCPP session; reconnecting")
            return Outcome(Blame.DRIVER, 0.0, f"unexpected {type(exc).__name__}: {exc}")

    async def _connect(self, stop: asyncio.Event) -> Outcome:
        csms = self.config.csms
        endpoint = self.security.endpoint()
        uri = parse_endpoint(endpoint.url)
        try:
            stream = await self.link.open(uri.host, uri.port, tls=endpoint.tls)
        except DriverFault as exc:
            log.error("cannot reach the CSMS, and the fault is the driver's: %s", exc)
            return Outcome(Blame.DRIVER, 0.0, str(exc))
        except (TlsHandshakeFailed, TlsSetupFailed) as exc:
            # A certificate or a setting to fix: no module reset can cure it.
            log.error("cannot reach the CSMS securely (profile %d): %s", endpoint.profile, exc)
            reached = isinstance(exc, TlsHandshakeFailed)
            refused = exc.refused if isinstance(exc, TlsHandshakeFailed) else None
            if refused in _TLS_EVENTS:
                self._report(_TLS_EVENTS[refused], str(exc))
            if refused is TlsRefusal.CSMS_CERTIFICATE:
                # §8: the CSMS's credentials (its certificate) refused by the charge point.
                self._report(SecurityEvent.CENTRAL_SYSTEM_FAILED_TO_AUTHENTICATE, str(exc))
            return Outcome(
                Blame.CSMS,
                0.0,
                str(exc),
                reached_server=reached,
                handshake=refused is TlsRefusal.UNKNOWN,
            )
        except ServerRefused as exc:
            log.warning("cannot reach the CSMS, which does not take connections: %s", exc)
            return Outcome(Blame.CSMS, 0.0, str(exc), refused=True)
        except TransportError as exc:
            log.warning("cannot reach the CSMS: %s", exc)
            return Outcome(Blame.LINK, 0.0, str(exc))
        url = connection_url(endpoint.url, self.config.charge_point.id)
        try:
            ws = await WebSocket.connect(
                stream,
                url,
                user=self.config.charge_point.id,
                password=endpoint.password,
                settings=WebSocketSettings(
                    ping_interval=self.keys.integer("WebSocketPingInterval"),
                    pong_timeout=csms.pong_timeout,
                    max_message_size=csms.max_message_size,
                    handshake_timeout=csms.call_timeout,
                ),
            )
        except (HandshakeRejected, NotAnOcppServer) as exc:
            log.error("%s", exc)
            unauthorized = isinstance(exc, HandshakeRejected) and exc.status == 401
            if unauthorized:
                self._report(SecurityEvent.FAILED_TO_AUTHENTICATE_AT_CENTRAL_SYSTEM, str(exc))
            return Outcome(
                Blame.CSMS, 0.0, str(exc), reached_server=True, unauthorized=unauthorized
            )
        except WebSocketError as exc:
            log.warning("%s", exc)
            return Outcome(Blame.LINK, 0.0, str(exc))
        except TransportError as exc:
            log.warning("WebSocket upgrade failed: %s", exc)
            return Outcome(Blame.LINK, 0.0, str(exc))
        self.security.connected()
        self._reported.clear()
        return await self._serve(ws, stop)

    def _report(self, event: SecurityEvent, tech_info: str) -> None:
        """A connection failure as a security event, once until a connection succeeds (a
        CSMS that refuses every few seconds must not fill the queue)."""
        if event not in self._reported:
            self._reported.add(event)
            self.station.record_security_event(event, tech_info)

    async def _serve(self, ws: WebSocket, stop: asyncio.Event) -> Outcome:
        loop = asyncio.get_running_loop()
        opened = loop.time()
        cp = self.config.charge_point
        session = Session(
            ws,
            SessionSettings(cp.id, self.config.csms.call_timeout),
            self.registration,
            self._boot_fields(),
            self.station,
            trace=self.trace,
        )
        ping = self.keys.subscribe_to("WebSocketPingInterval", ws.set_ping_interval)
        self.session = session
        self.sessions_started += 1
        self.notifier.mark_ready(f"connected to {self.config.csms.url}")
        try:
            closed = await session.run()
        finally:
            ping.cancel()
            # Cancelled by a stop: say goodbye properly (1001 going away).
            await ws.close(
                1001 if stop.is_set() else 1000,
                "charge point shutting down" if stop.is_set() else "",
            )
        duration = loop.time() - opened
        log.warning("OCPP session ended after %.0f s: %s", duration, closed)
        self.notifier.status(f"offline: {closed}")
        # A CSMS that closes the WebSocket on purpose sends a close frame with its code; a
        # dead link (1006) or a missing pong is the network's doing.
        blame = (
            Blame.LINK
            if isinstance(closed, PingTimeout) or closed.code in (None, 1006)
            else Blame.CSMS
        )
        return Outcome(
            blame, duration, str(closed), opened=True, intentional=isinstance(closed, Reconnect)
        )

    async def _after(self, outcome: Outcome) -> float:
        step, delay = self._policy.after(outcome)
        if step is not RecoveryStep.REOPEN:
            try:
                await self.link.recover(step)
            except TransportError as exc:
                log.error("recovery step %s failed: %s", step.name, exc)
        log.info("reconnecting in %.2f s", delay)
        return delay

    def _boot_fields(self) -> BootFields:
        cp = self.config.charge_point
        identity = self.link.identity
        return BootFields(
            vendor=cp.vendor,
            model=cp.model,
            serial_number=cp.serial_number,
            charge_box_serial_number=cp.charge_box_serial_number,
            firmware_version=read_version(self.config.firmware.version_file)
            or cp.firmware_version
            or version("chargepoint-at"),
            # BootNotification limits these to 20 characters (CiString20).
            iccid=identity.iccid[:20] if identity and identity.iccid else None,
            imsi=identity.imsi[:20] if identity and identity.imsi else None,
            meter_type=cp.meter_type,
            meter_serial_number=cp.meter_serial_number,
        )
