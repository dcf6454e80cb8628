"""Talking to systemd (``Type=notify``) without a library: sd_notify(3) is one datagram per
message to the AF_UNIX socket named by ``$NOTIFY_SOCKET``.

* ``READY=1`` when the first OCPP session is up, or after ``[service] ready_timeout`` seconds
  if the CSMS cannot be reached, so that an unreachable CSMS never holds up boot;
* ``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` from a task of the daemon's event loop: if the
  loop blocks, the pings stop and systemd restarts the service (``WatchdogSec=``);
* ``STATUS=...`` a line for ``systemctl status``; ``STOPPING=1`` on the way out.

Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger(__name__)


class ServiceNotifier:
    def __init__(self, address: str | None, watchdog_interval: float | None) -> None:
        self.address = address
        self.watchdog_interval = watchdog_interval  # seconds between pings; None: no watchdog
        self.ready = False
        self._socket: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environment(cls) -> ServiceNotifier:
        address = os.environ.get("NOTIFY_SOCKET") or None
        interval = None
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        # WATCHDOG_PID, when set, names the process meant to ping (sd_watchdog_enabled(3)).
        if usec.isdigit() and int(usec) > 0 and pid in ("", str(os.getpid())):
            interval = int(usec) / 1e6 / 2
        return cls(address, interval)

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False if there is nobody to tell."""
        if self.address is None:
            return False
        address = self.address
        if address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            self._socket.sendto("\n".join(assignments).encode(), address)
        except OSError as error:
            if not self._failed:  # once, not at every watchdog ping
                log.error("cannot notify systemd at %s: %s", self.address, error)
            self._failed = True
            return False
        self._failed = False
        return True

    def mark_ready(self, status: str) -> None:
        if not self.ready:
            self.ready = True
            self.notify("READY=1", f"STATUS={status}")
        else:
            self.status(status)

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping")

    async def watchdog(self) -> None:
        """Ping systemd while the event loop runs; cancelled when the daemon stops."""
        if self.watchdog_interval is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)

    async def ready_after(self, seconds: float) -> None:
        """READY=1 after ``seconds`` if no session came up before."""
        await asyncio.sleep(seconds)
        if not self.ready:
            log.warning("no OCPP session after %g s: telling systemd the service is up", seconds)
            self.mark_ready("running; the CSMS has not been reached yet")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
