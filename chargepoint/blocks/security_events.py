"""Security events (OCPP 1.6 security whitepaper §8, use case A04): what happened, in the
local security log and, for the events listed in :data:`NOTIFIED`, to the CSMS as a
SecurityEventNotification queued durably like transaction messages (A04.FR.02).

CONTRACT SKELETON: the event names and the sink type are fixed here; the recording class is
being built (see /tmp/sec/CONTRACT.md).
"""

from __future__ import annotations

import enum
from collections.abc import Callable


class SecurityEvent(enum.StrEnum):
    """The whitepaper's §8 list, by its exact names."""

    FIRMWARE_UPDATED = "FirmwareUpdated"
    FAILED_TO_AUTHENTICATE_AT_CENTRAL_SYSTEM = "FailedToAuthenticateAtCentralSystem"
    CENTRAL_SYSTEM_FAILED_TO_AUTHENTICATE = "CentralSystemFailedToAuthenticate"
    SETTING_SYSTEM_TIME = "SettingSystemTime"
    STARTUP_OF_THE_DEVICE = "StartupOfTheDevice"
    RESET_OR_REBOOT = "ResetOrReboot"
    SECURITY_LOG_WAS_CLEARED = "SecurityLogWasCleared"
    RECONFIGURATION_OF_SECURITY_PARAMETERS = "ReconfigurationOfSecurityParameters"
    MEMORY_EXHAUSTION = "MemoryExhaustion"
    INVALID_MESSAGES = "InvalidMessages"
    ATTEMPTED_REPLAY_ATTACKS = "AttemptedReplayAttacks"
    TAMPER_DETECTION_ACTIVATED = "TamperDetectionActivated"
    INVALID_FIRMWARE_SIGNATURE = "InvalidFirmwareSignature"
    INVALID_FIRMWARE_SIGNING_CERTIFICATE = "InvalidFirmwareSigningCertificate"
    INVALID_CENTRAL_SYSTEM_CERTIFICATE = "InvalidCentralSystemCertificate"
    INVALID_CHARGE_POINT_CERTIFICATE = "InvalidChargePointCertificate"
    INVALID_TLS_VERSION = "InvalidTLSVersion"
    INVALID_TLS_CIPHER_SUITE = "InvalidTLSCipherSuite"


# Record one event: its type and a technical detail for the CSMS (techInfo, at most 255
# characters; never a secret). Blocks take this callable, not the class, so they can be built
# and tested without the log.
SecurityEventSink = Callable[[SecurityEvent, str | None], None]
