"""The charge point's behaviour, composed of one functional block per OCPP feature (after
EVerest libocpp's ``functional_blocks/``), all on one :class:`~chargepoint.blocks.context.Context`.

The station lives as long as the daemon, across connections: the OCPP session only lends it a
way to send requests while the CSMS has accepted the charge point (:meth:`Station.serve`).
Each block owns its ``@on``/``@after`` handlers; :attr:`Station.routes` merges them into the
route map the ``ocpp`` library dispatches on, with only the blocks of the feature profiles this
deployment enables (``SupportedFeatureProfiles``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from ocpp.routing import create_route_map

from chargepoint.blocks.authorization import Authorization
from chargepoint.blocks.availability import Availability
from chargepoint.blocks.card_reader import CardReader
from chargepoint.blocks.context import Context
from chargepoint.blocks.data_transfer import DataTransferVendors
from chargepoint.blocks.diagnostics import DiagnosticsUploader
from chargepoint.blocks.firmware import FirmwareUpdater
from chargepoint.blocks.invalid_id import InvalidIdPolicy
from chargepoint.blocks.local_auth_list import LocalAuthListManagement
from chargepoint.blocks.metering import Metering
from chargepoint.blocks.provisioning import Provisioning, ResetHook
from chargepoint.blocks.recovery import PowerLossPolicy, recover
from chargepoint.blocks.remote_control import RemoteControl
from chargepoint.blocks.remote_trigger import ExtendedTrigger, RemoteTrigger
from chargepoint.blocks.reservation import Reservations
from chargepoint.blocks.security_events import SecurityEvent, SecurityEvents, SecurityEventSink
from chargepoint.blocks.smart_charging import SmartCharging
from chargepoint.blocks.transactions import Transactions
from chargepoint.blocks.unsupported import ReservationNotSupported
from chargepoint.hardware.charger import Charger
from chargepoint.protocol.outbox import BATCH_BYTES, Item, Outbox, RetryPolicy
from chargepoint.protocol.request import Online, SessionHooks
from chargepoint.security_log import SecurityLog
from config.ocpp_keys import IMPLEMENTED_PROFILES, ConfigurationKeys

if TYPE_CHECKING:
    from chargepoint.blocks.certificates import CertificateManagement

Routes = dict[str, dict[str, Any]]


class Station:
    def __init__(
        self,
        *,
        charger: Charger,
        keys: ConfigurationKeys,
        db: sqlite3.Connection,
        scheduler: AsyncIOScheduler,
        power_loss: PowerLossPolicy = PowerLossPolicy.STOP,
        reset_hook: ResetHook | None = None,
        no_answer_retry: float = 30.0,
        profiles: tuple[str, ...] = IMPLEMENTED_PROFILES,
        data_transfer: DataTransferVendors | None = None,
        security_log: SecurityLog | None = None,
        replay_batch_bytes: int = BATCH_BYTES,
    ) -> None:
        self.context = context = Context(
            charger=charger,
            keys=keys,
            db=db,
            scheduler=scheduler,
            profiles=frozenset(profiles),
            batch_bytes=replay_batch_bytes,
        )
        self.no_answer_retry = no_answer_retry
        # The security extension (whitepaper): its events, then the blocks that record them.
        self.security_events = SecurityEvents(context, security_log or SecurityLog(None))
        self.availability = Availability(context)
        self.authorization = Authorization(context)
        self.transactions = Transactions(context, self.availability, self.authorization)
        self.invalid_id = InvalidIdPolicy(context, self.transactions)
        self.power_loss = power_loss
        self.reservations = (
            Reservations(context, self.availability, self.transactions)
            if "Reservation" in context.profiles
            else None
        )
        self.card_reader = CardReader(
            context, self.availability, self.authorization, self.transactions, self.reservations
        )
        self.metering = Metering(context, self.transactions)
        self.provisioning = Provisioning(context, self.availability, self.transactions, reset_hook)
        self.smart_charging = (
            SmartCharging(context, self.transactions)
            if "SmartCharging" in context.profiles
            else None
        )
        self.remote_control = RemoteControl(
            context, self.transactions, self.authorization, self.reservations, self.smart_charging
        )
        self.data_transfer = data_transfer or DataTransferVendors()
        self.firmware: FirmwareUpdater | None = None
        self.diagnostics: DiagnosticsUploader | None = None
        self.certificates: CertificateManagement | None = None

    @property
    def record_security_event(self) -> SecurityEventSink:
        return self.security_events.record

    def add_certificate_management(
        self, certificates: Callable[[Context, SecurityEventSink], CertificateManagement]
    ) -> None:
        """The security extension's certificate management (it needs the certificate store,
        which the composition root has)."""
        self.certificates = certificates(self.context, self.security_events.record)

    def add_firmware_management(
        self,
        firmware: Callable[[Context, Availability, Transactions], FirmwareUpdater],
        diagnostics: Callable[[Context], DiagnosticsUploader],
    ) -> None:
        """The Firmware Management blocks (they need the link's HTTP client, which the
        composition root has); only when the profile is enabled."""
        if "FirmwareManagement" in self.context.profiles:
            self.firmware = firmware(self.context, self.availability, self.transactions)
            self.diagnostics = diagnostics(self.context)

    @property
    def routes(self) -> Routes:
        """The route map of every enabled block; an action handled twice is a bug."""
        profiles = self.context.profiles
        blocks: list[object] = [
            self.availability,
            self.authorization,
            self.remote_control,
            self.provisioning,
            self.data_transfer,
            self.reservations or ReservationNotSupported(),
        ]
        if self.firmware is not None and self.diagnostics is not None:
            blocks += [self.firmware, self.diagnostics]
        if self.smart_charging is not None:
            blocks.append(self.smart_charging)
        if self.authorization.local_list is not None:
            blocks.append(LocalAuthListManagement(self.context, self.authorization.local_list))
        if self.certificates is not None:
            blocks.append(self.certificates)
        blocks.append(
            ExtendedTrigger(
                self.context,
                self.availability,
                self.metering,
                self.certificates,
                self.firmware,
                self.diagnostics,
            )
        )
        if "RemoteTrigger" in profiles:
            blocks.append(
                RemoteTrigger(
                    self.context, self.availability, self.metering, self.firmware, self.diagnostics
                )
            )
        routes: Routes = {}
        for block in blocks:
            for action, handlers in create_route_map(block).items():
                if action in routes:
                    raise AssertionError(f"{action} is handled by two blocks")
                routes[action] = handlers
        return routes

    # -- life cycle --

    async def start(self) -> None:
        """Load what the last run left and pick up interrupted transactions."""
        self.metering.start()
        self.security_events.start()
        if self.certificates is not None:
            self.certificates.start()
        await recover(self.context, self.transactions, self.power_loss)
        if self.reservations is not None:
            self.reservations.start()
        if self.smart_charging is not None:
            self.smart_charging.start()
        if self.firmware is not None:
            self.firmware.start()

    async def close(self) -> None:
        if self.smart_charging is not None:
            await self.smart_charging.close()
        if self.firmware is not None:
            await self.firmware.close()
        if self.diagnostics is not None:
            await self.diagnostics.close()
        await self.context.close()

    async def serve(self, online: Online, *, booted: bool) -> None:
        """Run the online duties (statuses, then the outbox) until cancelled.

        ``booted``: a BootNotification was just accepted, so every connector's status is
        reported again (errata v4.0 §3.22); otherwise only what changed while offline.
        """
        context = self.context
        if booted:
            self.availability.forget_reported()
        context.connection = online
        context.changed()  # whoever waits for the charge point to be online
        self.availability.refresh()
        try:
            await self.availability.report(until_idle=True)
            if booted:
                context.booted()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.availability.report(until_idle=False), name="statuses")
                tasks.create_task(
                    context.outbox.deliver(online.request, self._retry_policy, self._on_delivered),
                    name="outbox",
                )
        finally:
            context.connection = None
            context.changed()

    def attach(self, session: SessionHooks | None) -> None:
        self.context.session = session

    def invalid_message(self, why: str) -> None:
        self.security_events.record(SecurityEvent.INVALID_MESSAGES, why)

    def replayed_message(self, why: str) -> None:
        self.security_events.record(SecurityEvent.ATTEMPTED_REPLAY_ATTACKS, why)

    def _retry_policy(self) -> RetryPolicy:
        keys = self.context.keys
        return RetryPolicy(
            keys.integer("TransactionMessageAttempts"),
            float(keys.integer("TransactionMessageRetryInterval")),
            self.no_answer_retry,
        )

    def _on_delivered(self, item: Item, answer: dict[str, Any]) -> None:
        self.context.changed()
        self.transactions.on_delivered(item, answer)

    # -- what tests, the demo and `chargepoint ctl` look at --

    @property
    def keys(self) -> ConfigurationKeys:
        return self.context.keys

    @property
    def outbox(self) -> Outbox:
        return self.context.outbox

    @property
    def online(self) -> bool:
        return self.context.online

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        await self.context.wait_until(predicate)
