"""The OCPP configuration keys of the charge point (OCPP 1.6 chapter 9, errata v4.0).

Every Core-profile key the charge point honours is described here with its type, access,
default, bounds and unit, and kept in the state database, so a value the CSMS set survives a
restart. A key the charge point does not honour is left out on purpose: GetConfiguration
reports it as unknown and ChangeConfiguration answers NotSupported, which is the truth
(TC_040_1_CS), rather than accepting a value that would change nothing.

Values are OCPP strings ("true", "300", "Energy.Active.Import.Register,SoC"); typed readers
turn them into Python values. Listeners hear about every change, so the keys the spec wants
to act at once (HeartbeatInterval, MeterValueSampleInterval, WebSocketPingInterval...) do.

AuthorizationKey (security whitepaper §7.2) is write-only: GetConfiguration never returns
it, and its value never reaches a log.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ocpp.v16.enums import ConfigurationStatus

log = logging.getLogger(__name__)

AUTHORIZATION_KEY = "AuthorizationKey"
SECURITY_PROFILE = "SecurityProfile"  # security whitepaper §2 and A05
PHASE_ROTATIONS = ("NotApplicable", "Unknown", "RST", "RTS", "SRT", "STR", "TRS", "TSR")
# The OCPP 1.6 feature profiles this version implements (§3); a deployment enables a subset.
IMPLEMENTED_PROFILES = (
    "Core",
    "FirmwareManagement",
    "LocalAuthListManagement",
    "Reservation",
    "SmartCharging",
    "RemoteTrigger",
)
# The Local Authorization List's length; a SendLocalList may carry as many entries as fit in
# one WebSocket message (csms.max_message_size), each at its longest (an idTag and a parent of
# 20 characters, ConcurrentTx, an expiryDate with an offset: under 200 bytes of JSON).
LOCAL_LIST_MAX = 10_000
LONGEST_LIST_ENTRY = 200
DEFAULT_MAX_MESSAGE = 2 * 1024 * 1024
MAX_CSL_ITEMS = 8
GET_CONFIGURATION_MAX_KEYS = 64
# The security whitepaper's limits (§7.3, §7.4): a CertificateSigned chain of at most this many
# characters (the key's maximum; a leaf and two intermediates in PEM are ~6,000), and this many
# Root/CA certificates installed (CSMS and manufacturer roots together).
CERTIFICATE_CHAIN_MAX = 10_000
CERTIFICATE_STORE_MAX = 10
CPO_NAME = "CpoName"


class Kind(enum.Enum):
    BOOL = "boolean"
    INT = "integer"
    CSL = "CSL"
    TEXT = "string"


class Access(enum.Enum):
    R = "R"
    RW = "RW"
    W = "W"  # write-only


Check = Callable[[str], str | None]  # a problem with the value, or None


@dataclass(frozen=True, slots=True)
class KeySpec:
    name: str
    kind: Kind
    access: Access
    default: str
    minimum: int | None = None
    maximum: int | None = None
    unit: str | None = None
    check: Check | None = None
    reboot_required: bool = False
    # Only for a ChangeConfiguration from the CSMS (not a stored value or the file's): a rule
    # about the change itself, such as "only raised".
    change_check: Check | None = None

    def problem(self, value: str) -> str | None:
        """Why ``value`` is not acceptable for this key, or None."""
        if self.kind is Kind.BOOL and value.lower() not in ("true", "false"):
            return "must be true or false"
        if self.kind is Kind.INT:
            if not re.fullmatch(r"-?[0-9]{1,10}", value.strip()):
                return "must be an integer"
            number = int(value)
            if self.minimum is not None and number < self.minimum:
                return f"must be at least {self.minimum}"
            if self.maximum is not None and number > self.maximum:
                return f"must be at most {self.maximum}"
        if self.check is not None:
            return self.check(value)
        return None


def csl(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _measurands(supported: Iterable[str]) -> Check:
    allowed = set(supported)

    def check(value: str) -> str | None:
        items = csl(value)
        if len(items) > MAX_CSL_ITEMS:
            return f"at most {MAX_CSL_ITEMS} measurands"
        unknown = [item for item in items if item not in allowed]
        # Errata v3.0 §3.14.4: one unsupported measurand rejects the whole list.
        return f"measurands not supported: {', '.join(unknown)}" if unknown else None

    return check


def _phase_rotation(connectors: int) -> Check:
    def check(value: str) -> str | None:
        for item in csl(value):
            number, _, rotation = item.partition(".")
            if not number.isdigit() or int(number) > connectors or rotation not in PHASE_ROTATIONS:
                return f"{item!r} is not <connector 0..{connectors}>.<{'|'.join(PHASE_ROTATIONS)}>"
        return None

    return check


def _authorization_key(value: str) -> str | None:
    # Whitepaper §7.2: 16 to 20 bytes, written as up to 40 hexadecimal digits.
    if not re.fullmatch(r"(?:[0-9A-Fa-f]{2}){16,20}", value):
        return "must be 32 to 40 hexadecimal digits (16 to 20 bytes)"
    return None


def _cpo_name(value: str) -> str | None:
    # The CSR's organizationName (A02.FR.13): X.520 allows 1 to 64 characters.
    if not 1 <= len(value) <= 64:
        return "must be 1 to 64 characters (the certificate's organisation name)"
    return None


def _rate_units(value: str) -> str | None:
    items = csl(value)
    if not items or any(item not in ("Current", "Power") for item in items):
        return "must be Current, Power or Current,Power"
    return None


def core_keys(
    *,
    connectors: int,
    measurands: Iterable[str],
    heartbeat_interval: int,
    ping_interval: int,
    authorization_key: bytes | None,
    profiles: Iterable[str] = IMPLEMENTED_PROFILES,
    security_profile: int = 0,
    security_check: Check | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE,
    transfer_protocols: Iterable[str] = ("FTP", "FTPS", "HTTP", "HTTPS"),
    cpo_name: str = "",
) -> list[KeySpec]:
    """The keys this charge point honours, with defaults from the configuration file; a
    feature profile's keys only when the profile is enabled. ``transfer_protocols`` are the
    schemes the link can fetch and upload files with (a module without FTP commands has none
    of FTP). ``cpo_name``: CpoName's default (the CSR's organisation, whitepaper A02.FR.13)."""
    enabled = set(profiles)
    supported = list(measurands)
    measurand_list = _measurands(supported)
    rotation = ",".join(f"{n}.Unknown" for n in range(1, connectors + 1))
    key = authorization_key.hex().upper() if authorization_key else ""
    b, i, c = Kind.BOOL, Kind.INT, Kind.CSL
    r, rw = Access.R, Access.RW
    specs = [
        KeySpec("AllowOfflineTxForUnknownId", b, rw, "false"),
        KeySpec("AuthorizationCacheEnabled", b, rw, "true"),
        KeySpec("AuthorizeRemoteTxRequests", b, rw, "true"),
        KeySpec("ClockAlignedDataInterval", i, rw, "0", 0, 86400, "seconds"),
        KeySpec("ConnectionTimeOut", i, rw, "60", 1, 3600, "seconds"),
        KeySpec("ConnectorPhaseRotation", c, rw, rotation, check=_phase_rotation(connectors)),
        KeySpec("ConnectorPhaseRotationMaxLength", i, r, str(connectors + 1)),
        KeySpec("GetConfigurationMaxKeys", i, r, str(GET_CONFIGURATION_MAX_KEYS)),
        KeySpec("HeartbeatInterval", i, rw, str(heartbeat_interval), 1, 86400, "seconds"),
        KeySpec("LocalAuthorizeOffline", b, rw, "true"),
        KeySpec("LocalPreAuthorize", b, rw, "false"),
        KeySpec("MaxEnergyOnInvalidId", i, rw, "0", 0, None, "Wh"),
        KeySpec(
            "MeterValuesAlignedData",
            c,
            rw,
            "Energy.Active.Import.Register",
            check=measurand_list,
        ),
        KeySpec("MeterValuesAlignedDataMaxLength", i, r, str(MAX_CSL_ITEMS)),
        KeySpec(
            "MeterValuesSampledData",
            c,
            rw,
            "Energy.Active.Import.Register",
            check=measurand_list,
        ),
        KeySpec("MeterValuesSampledDataMaxLength", i, r, str(MAX_CSL_ITEMS)),
        KeySpec("MeterValueSampleInterval", i, rw, "60", 0, 86400, "seconds"),
        KeySpec("MinimumStatusDuration", i, rw, "0", 0, 3600, "seconds"),
        KeySpec("NumberOfConnectors", i, r, str(connectors)),
        KeySpec("ResetRetries", i, rw, "1", 0, 10, "times"),
        KeySpec("StopTransactionOnEVSideDisconnect", b, rw, "true"),
        KeySpec("StopTransactionOnInvalidId", b, rw, "true"),
        KeySpec("StopTxnAlignedData", c, rw, "", check=measurand_list),
        KeySpec("StopTxnAlignedDataMaxLength", i, r, str(MAX_CSL_ITEMS)),
        KeySpec("StopTxnSampledData", c, rw, "", check=measurand_list),
        KeySpec("StopTxnSampledDataMaxLength", i, r, str(MAX_CSL_ITEMS)),
        KeySpec("SupportedFeatureProfiles", c, r, ",".join(profiles)),
        # §8: the protocols of UpdateFirmware / GetDiagnostics locations.
        KeySpec("SupportedFileTransferProtocols", c, r, ",".join(transfer_protocols)),
        KeySpec("TransactionMessageAttempts", i, rw, "3", 1, 100, "times"),
        KeySpec("TransactionMessageRetryInterval", i, rw, "60", 0, 86400, "seconds"),
        KeySpec("UnlockConnectorOnEVSideDisconnect", b, rw, "true"),
        # Negative values are not allowed (§9.1.34): Rejected.
        KeySpec("WebSocketPingInterval", i, rw, str(ping_interval), 0, 86400, "seconds"),
        KeySpec(AUTHORIZATION_KEY, Kind.TEXT, Access.W, key, check=_authorization_key),
        # Only raised (whitepaper A05.FR.01): the check compares with the profile in use.
        KeySpec(SECURITY_PROFILE, i, rw, str(security_profile), 0, 3, change_check=security_check),
        # The security extension (whitepaper §7). Only one CSMS root at a time is not enforced:
        # a root is installed beside the others (M05), so AdditionalRootCertificateCheck is false.
        KeySpec("AdditionalRootCertificateCheck", b, r, "false"),
        KeySpec("CertificateSignedMaxChainSize", i, r, str(CERTIFICATE_CHAIN_MAX), 1, 10_000),
        KeySpec("CertificateStoreMaxLength", i, r, str(CERTIFICATE_STORE_MAX), 1, 100),
        KeySpec(CPO_NAME, Kind.TEXT, rw, cpo_name, check=_cpo_name),
    ]
    if "LocalAuthListManagement" in enabled:  # §9.2
        send_max = min(LOCAL_LIST_MAX, max_message_size // LONGEST_LIST_ENTRY)
        specs += [
            KeySpec("LocalAuthListEnabled", b, rw, "true"),
            KeySpec("LocalAuthListMaxLength", i, r, str(LOCAL_LIST_MAX), 0, LOCAL_LIST_MAX),
            KeySpec("SendLocalListMaxLength", i, r, str(send_max), 0, LOCAL_LIST_MAX),
        ]
    if "Reservation" in enabled:  # §9.3
        specs.append(KeySpec("ReserveConnectorZeroSupported", b, r, "true"))
    if "SmartCharging" in enabled:  # §9.4
        specs += [
            KeySpec("ChargeProfileMaxStackLevel", i, r, "10", 0, 100),
            KeySpec(
                "ChargingScheduleAllowedChargingRateUnit",
                c,
                r,
                "Current,Power",
                check=_rate_units,
            ),
            KeySpec("ChargingScheduleMaxPeriods", i, r, "24", 1, 1000),
            KeySpec("ConnectorSwitch3to1PhaseSupported", b, r, "false"),
            KeySpec("MaxChargingProfilesInstalled", i, r, "32", 1, 1000),
        ]
    return specs


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    readonly: bool
    value: str


Listener = Callable[[str, str], None]


class Subscription:
    def __init__(self, listeners: list[Listener], listener: Listener) -> None:
        self._listeners = listeners
        self._listener = listener

    def cancel(self) -> None:
        if self._listener in self._listeners:
            self._listeners.remove(self._listener)


class ConfigurationKeys:
    """The keys' current values: defaults, overlaid with what the CSMS set (persisted)."""

    def __init__(self, db: sqlite3.Connection, specs: list[KeySpec]) -> None:
        self._db = db
        self._specs = {spec.name: spec for spec in specs}
        self._values = {spec.name: spec.default for spec in specs}
        self._listeners: list[Listener] = []
        self._waiters: list[asyncio.Future[str]] = []
        for name, value in db.execute("SELECT key, value FROM configuration"):
            spec = self._specs.get(name)
            if spec is None or spec.problem(value) is not None:
                log.warning("ignoring stored configuration key %s: not valid here", name)
                continue
            self._values[name] = value

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def subscribe_to(self, name: str, action: Callable[[int], None]) -> Subscription:
        """Call ``action`` with the new value of integer key ``name`` until cancelled."""

        def listener(changed: str, value: str) -> None:
            if changed == name:
                action(int(value))

        self._listeners.append(listener)
        return Subscription(self._listeners, listener)

    async def changed(self) -> str:
        """Wait for the next change of any key; return its name."""
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def get(self, name: str) -> str:
        return self._values[name]

    def boolean(self, name: str) -> bool:
        return self._values[name].lower() == "true"

    def integer(self, name: str) -> int:
        return int(self._values[name])

    def items(self, name: str) -> list[str]:
        return csl(self._values[name])

    def read(self, names: list[str] | None) -> tuple[list[KeyValue], list[str]]:
        """GetConfiguration: the known keys asked for (all if None) and the unknown ones."""
        wanted = names or list(self._specs)
        known, unknown = [], []
        for name in wanted:
            spec = self._specs.get(name)
            if spec is None:
                unknown.append(name)
            elif spec.access is not Access.W:
                known.append(KeyValue(name, spec.access is Access.R, self._values[name]))
            elif names:
                # Write-only: asked for by name, it is reported unknown rather than shown.
                unknown.append(name)
        return known, unknown

    def change(self, name: str, value: str) -> ConfigurationStatus:
        """ChangeConfiguration from the CSMS (OCPP 1.6 §5.3)."""
        spec = self._specs.get(name)
        if spec is None:
            log.info("ChangeConfiguration of unknown key %s: NotSupported", name)
            return ConfigurationStatus.not_supported
        if spec.access is Access.R:
            log.info("ChangeConfiguration of read-only key %s: Rejected", name)
            return ConfigurationStatus.rejected
        problem = spec.problem(value)
        if problem is None and spec.change_check is not None:
            problem = spec.change_check(value)
        if problem is not None:
            shown = "(secret)" if spec.access is Access.W else repr(value)
            log.info("ChangeConfiguration %s = %s rejected: %s", name, shown, problem)
            return ConfigurationStatus.rejected
        self.store(name, value)
        if spec.access is Access.W:
            log.warning("configuration key %s changed by the CSMS", name)  # never its value
        else:
            log.info("configuration key %s = %s", name, value)
        return (
            ConfigurationStatus.reboot_required
            if spec.reboot_required
            else ConfigurationStatus.accepted
        )

    def store(self, name: str, value: str) -> None:
        """Set and persist a value (also for values the charge point sets itself)."""
        spec = self._specs[name]
        if spec.kind is Kind.BOOL:
            value = value.lower()
        elif spec.kind is Kind.INT:
            value = str(int(value))
        elif spec.kind is Kind.CSL:
            value = ",".join(csl(value))
        changed = self._values[name] != value
        self._values[name] = value
        self._db.execute(
            "INSERT INTO configuration (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (name, value),
        )
        if changed:
            for listener in self._listeners:
                listener(name, value)
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(name)
