"""How the Quectel driver brings the link up, the time limits of the manual's flow chart
(at-protocol.md §1.3), and the module's data limits (§2.7, §2.8)."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

MAX_SEND = 1460  # AT+QISEND data length limit (§2.7)
MAX_READ = 1500  # AT+QIRD read length limit (§2.8)
MAX_HEX_SEND = 512  # AT+QISENDEX data length limit: 1024 hex digits (§2.9)


def hex_send_default(baudrate: int) -> int:
    """The largest chunk worth sending as AT+QISENDEX at ``baudrate``: its hex form puts its
    size on the line once more, which must take no longer than the AT+QISEND prompt round trip
    it saves, about 22 ms (a module's 20 ms answer, as the realistic simulator profile has it,
    and the prompt's bytes): 256 bytes at 115200 baud, 21 at 9600."""
    return min(256, baudrate // 450)


_SAFE_FIELD = re.compile(r"[\x20-\x7e]*")


class AccessMode(enum.IntEnum):
    """``<access_mode>`` of AT+QIOPEN / AT+QSSLOPEN (§2.4, §3.2)."""

    BUFFER = 0  # the module keeps what arrives; "recv" URC, then AT+QIRD until +QIRD: 0
    PUSH = 1  # direct push: the data rides on the "recv" URC itself (§2.13)


class PdpAuth(enum.IntEnum):
    """``<authentication>`` of AT+QICSGP (§2.1)."""

    NONE = 0
    PAP = 1
    CHAP = 2
    PAP_OR_CHAP = 3


@dataclass(frozen=True, slots=True)
class QuectelSettings:
    """How to bring the link up, and the time limits of the manual's flow chart (§1.3)."""

    apn: str = ""
    username: str = ""
    password: str = ""
    auth: PdpAuth = PdpAuth.NONE
    context_id: int = 1
    sim_pin: str | None = None
    command_timeout: float = 5.0
    sync_timeout: float = 30.0
    sim_timeout: float = 20.0
    registration_timeout: float = 90.0
    registration_poll: float = 2.0
    pdp_activate_timeout: float = 150.0
    pdp_deactivate_timeout: float = 40.0
    pdp_attempts: int = 3
    open_timeout: float = 150.0
    close_timeout: int = 10
    reboot_timeout: float = 60.0
    cfun_timeout: float = 15.0
    send_stall_timeout: float = 120.0
    send_retry_delay: float = 0.05  # first back-off after SEND FAIL, doubling up to 1 s
    idle_poll_interval: float = 10.0
    # Direct push costs one UART exchange and one wake-up per arrival instead of a URC, an
    # AT+QIRD and its answer, and an AT+QIRD that finds the buffer empty (issue 19). Buffer
    # mode stays for modules or firmware that misbehave in push mode, and is what an open
    # falls back to when the module refuses the push mode argument.
    access_mode: AccessMode = AccessMode.PUSH
    rx_high_water: int = 64 * 1024
    tx_high_water: int = 4 * MAX_SEND
    # A chunk this small or smaller goes as one AT+QISENDEX carrying its bytes as hex digits
    # (§2.9): no ">" prompt to wait for, so one UART exchange and one wake-up fewer per frame
    # (most OCPP frames: every .conf, Heartbeat, StatusNotification, Authorize), at the cost of
    # twice its bytes on the line, which the prompt's round trip outweighs below a few hundred
    # bytes at 115200 baud (issue 19; hex_send_default scales it to the port's rate). Larger
    # chunks, and every TLS socket (AT+QSSLSEND has no hex form), use AT+QISEND with the
    # prompt. 0: AT+QISEND only.
    hex_send_max: int = hex_send_default(115200)

    def __post_init__(self) -> None:
        # These go inside quoted AT command arguments: a quote or a control character would
        # end the argument early and let the rest be read as more command.
        for name in ("apn", "username", "password"):
            value = getattr(self, name)
            if '"' in value or not _SAFE_FIELD.fullmatch(value):
                raise ValueError(f"modem {name} may only hold printable ASCII without '\"'")
        if self.sim_pin is not None and not re.fullmatch(r"\d{4,8}", self.sim_pin):
            raise ValueError("modem sim_pin must be 4 to 8 digits")
        if not 1 <= self.context_id <= 16:
            raise ValueError("modem context_id must be 1..16")
        if not 0 <= self.hex_send_max <= MAX_HEX_SEND:
            raise ValueError(f"modem hex_send_max must be 0..{MAX_HEX_SEND} bytes")
