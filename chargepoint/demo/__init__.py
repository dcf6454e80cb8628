"""``chargepoint demo``: the whole charge point on this machine, with nothing attached.

Four parts start on loopback and a pseudo-terminal: a simulated module (``--module``, of any
family :mod:`transport.simulator.families` has; a Quectel EC200U by default) on a pty at
115200 baud with 50 ms of network latency each way, a CSMS (`websockets` + the `ocpp` library)
with the security extension, an HTTP file server holding a firmware image and taking
diagnostics uploads, and the charge point daemon, configured by a TOML file written for it
exactly as an installer would: security profile 2 (TLS in the module, Basic auth), the CSMS
root and a manufacturer root made for the run (:mod:`chargepoint.demo.certificates`) as its
trusted roots. A script then plays a day at the charger:

1. boot (BootNotification; the security event StartupOfTheDevice);
2-3. cable in, RFID card, charging with meter values;
4-5. a coverage hole while charging (the module loses the cell, or the Wi-Fi access point;
   meter values queue on disk and are delivered when it is back);
6. stop;
7. a remote start and stop from the CSMS;
8. a signed firmware update as the security whitepaper has it (L01): SignedUpdateFirmware with
   the manufacturer's firmware signing certificate and the image's RSA-PSS signature;
   download through the module's HTTP client, SignatureVerified, install, restart, "Installed",
   and the security events ResetOrReboot, StartupOfTheDevice and FirmwareUpdated;
9. a diagnostics upload;
10. a new charge point certificate (A02): ExtendedTriggerMessage SignChargePointCertificate,
    SignCertificate with the charge point's CSR, CertificateSigned from the CSMS's CA, kept for
    security profile 3.

It prints one timeline of what crossed the serial line (AT commands with their results; the
data-moving commands only counted), the WebSocket and OCPP, then a summary with the security
events the CSMS received; exit code 0 when every step happened. ``--keep-running`` leaves
everything up for ``chargepoint ctl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from cryptography import x509
from ocpp.v16 import call
from ocpp.v16.datatypes import Firmware

from chargepoint.app import control
from chargepoint.app.assembly import link_for
from chargepoint.app.daemon import Daemon
from chargepoint.app.service import ServiceNotifier
from chargepoint.demo.certificates import (
    CsrRefused,
    make_certificates,
    sign_csr,
    sign_firmware,
)
from chargepoint.demo.csms import DemoCsms
from chargepoint.demo.installation import (
    BAUD,
    IDENTITY,
    NEW_VERSION,
    OLD_VERSION,
    PASSWORD,
    VENDOR,
    write_config,
)
from chargepoint.demo.summary import SIGNED_FIRMWARE_STATUSES, Parts, print_summary
from chargepoint.demo.timeline import Timeline
from chargepoint.logs import FORMAT
from chargepoint.station import Station
from config.loader import load_config
from transport.simulator import SimulatorShell
from transport.simulator.families import SimulatedFamily, simulated
from transport.simulator.file_server import FileServer

LATENCY = 0.05
CARD = "04A2B3C4D5"
REMOTE_CARD = "APP-USER-42"
FIRMWARE_PATH = f"/firmware/cp-{NEW_VERSION}.bin"
FIRMWARE_SIZE = 64 * 1024
FIRMWARE_REQUEST = 8  # SignedUpdateFirmware's requestId: the step's number
STEP_TIMEOUT = 90.0


class StepFailed(Exception):
    pass


class Demo:
    def __init__(self, out: TextIO, *, keep_running: bool = False, module: str = "quectel") -> None:
        self.out = out
        self.keep_running = keep_running
        self.module: SimulatedFamily = simulated(module)
        self.start = time.time()
        self.timeline = Timeline(out, self.start, self.module.data_commands)
        self.daemon: Daemon | None = None
        self._daemon_stop = asyncio.Event()
        self._finished = asyncio.Event()
        self._uart_seen = (0, 0)
        self.delivered_after_hole = 0

    # -- narration --

    def say(self, text: str) -> None:
        self.timeline.line("demo", f"── {text}")

    def _uart_totals(self, sim: SimulatorShell) -> None:
        up, down = sim.bytes_from_host, sim.bytes_to_host
        seen_up, seen_down = self._uart_seen
        data = self.timeline.data_totals()
        if up != seen_up or down != seen_down:
            self.timeline.line(
                "uart",
                f"since the last step: {up - seen_up} bytes to the module, "
                f"{down - seen_down} from it" + (f"; data commands: {data}" if data else ""),
            )
        self._uart_seen = (up, down)

    # -- the parts --

    @contextlib.contextmanager
    def _logging(self, log_file: Path) -> Iterator[None]:
        root = logging.getLogger()
        saved = (root.level, list(root.handlers))
        levels = {
            "transport.at": logging.DEBUG,
            "chargepoint.frames": logging.WARNING,  # OCPP is shown as the CSMS saw it
            "websockets": logging.WARNING,
            "ocpp": logging.WARNING,
            "asyncio": logging.WARNING,
            "apscheduler": logging.WARNING,
        }
        saved_levels = {name: logging.getLogger(name).level for name in levels}
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_file)
        to_file.setFormatter(logging.Formatter(FORMAT))
        to_file.setLevel(logging.INFO)
        self.timeline.setLevel(logging.DEBUG)
        root.handlers[:] = [self.timeline, to_file]
        root.setLevel(logging.INFO)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        try:
            yield
        finally:
            root.setLevel(saved[0])
            root.handlers[:] = saved[1]
            to_file.close()
            for name, level in saved_levels.items():
                logging.getLogger(name).setLevel(level)

    async def _daemon_loop(self, config_path: Path) -> None:
        """The daemon as the service runs it: after a restart it asks for (a firmware update's
        reboot, a Reset), a new one starts from the same configuration and state."""
        config = load_config(config_path)
        while True:
            self._daemon_stop = asyncio.Event()
            # The demo is not the service: systemd is not told anything even if it runs under it.
            self.daemon = Daemon(config, link_for(config), notifier=ServiceNotifier(None, None))
            await self.daemon.run(self._daemon_stop)
            if self.daemon.reset_requested is None or self._finished.is_set():
                return
            self.say("the daemon restarts (as the service manager would start it again)")

    # -- the script --

    async def run(self) -> int:
        directory = Path(tempfile.mkdtemp(prefix="chargepoint-demo-"))
        try:
            with self._logging(directory / "log" / "chargepoint.log"):
                return await self._run(directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    async def _run(self, directory: Path) -> int:
        certificates = make_certificates(directory)
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(certificates.server_cert, certificates.server_key)
        csms = DemoCsms(IDENTITY, PASSWORD.encode(), self.timeline.frame, tls)
        image = f"DEMO-FIRMWARE {NEW_VERSION}\n".encode()
        image += bytes(i * 7 % 251 for i in range(FIRMWARE_SIZE - len(image)))
        files = FileServer(files={FIRMWARE_PATH: image})
        await csms.start()
        files.start()
        daemon_task: asyncio.Task[None] | None = None
        try:
            async with SimulatorShell(self.module.module(), baud=BAUD, latency=LATENCY) as sim:
                config_path = write_config(directory, csms.url, sim.path, certificates, self.module)
                parts = Parts(csms, files, sim, config_path, self.module, certificates)
                self.say(
                    f"CSMS (ocpp library) on {csms.url}, its certificate signed by a CA made "
                    "for this run (security profile 2)"
                )
                self.say(
                    "a manufacturer root CA (firmware.manufacturer_ca_file) and the firmware "
                    "signing certificate it issued, made for this run"
                )
                self.say(f"HTTP file server on {files.url('/')} with {FIRMWARE_PATH}")
                self.say(
                    f"simulated {self.module.title} on {sim.path}, {BAUD} baud, "
                    f"{LATENCY * 1000:g} ms network latency each way"
                )
                self.say(f"charge point daemon with {config_path}")
                daemon_task = asyncio.create_task(self._daemon_loop(config_path))
                try:
                    await self._script(parts, daemon_task)
                except (StepFailed, TimeoutError) as failure:
                    self.say(f"FAILED: {failure or 'a step timed out'}")
                    ok = False
                else:
                    ok = True
                if ok and self.keep_running:
                    self._summary(parts, ok=ok)
                    await self._keep_running(parts)
                self.say("stopping the daemon (as SIGTERM does): WebSocket closed with 1001")
                await self._stop_daemon(daemon_task)
                if not self.keep_running or not ok:
                    self._summary(parts, ok=ok)
                return 0 if ok else 1
        finally:
            await self._stop_daemon(daemon_task)
            files.stop()
            await csms.stop()

    async def _stop_daemon(self, task: asyncio.Task[None] | None) -> None:
        self._finished.set()
        self._daemon_stop.set()
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(30):
                    await task

    async def _ctl(self, parts: Parts, *words: str) -> None:
        """Drive the charger as `chargepoint ctl` does: a request on the control socket."""
        assert self.daemon is not None
        message: dict[str, Any] = {"cmd": words[0]}
        if words[0] == "present":
            message["id_tag"] = words[1]
        elif len(words) > 1:
            message["connector"] = int(words[1])
        self.timeline.line("ctl", f"chargepoint ctl {' '.join(words)}")
        answer = await control.request(self.daemon.config.control_path, message)
        if not answer.get("ok"):
            raise StepFailed(f"ctl {' '.join(words)}: {answer.get('error')}")

    async def _wait(
        self, parts: Parts, what: str, predicate: Callable[[], Any], timeout: float = STEP_TIMEOUT
    ) -> Any:
        try:
            return await parts.csms.wait_for(predicate, timeout)
        except TimeoutError:
            raise StepFailed(f"no {what} within {timeout:g} s") from None

    def _status(self, parts: Parts, mark: int, status: str) -> Callable[[], Any]:
        return self._called(parts, mark, "StatusNotification", status=status)

    def _called(self, parts: Parts, mark: int, action: str, **fields: Any) -> Callable[[], Any]:
        """A predicate: the first ``action`` CALL since ``mark`` that carries ``fields``."""
        return lambda: next(iter(parts.csms.seen(action, since=mark, **fields)), None)

    async def _script(self, parts: Parts, daemon_task: asyncio.Task[None]) -> None:
        csms, sim = parts.csms, parts.sim

        def step(text: str) -> int:
            self._uart_totals(sim)
            self.say(text)
            if daemon_task.done():
                raise StepFailed(f"the daemon stopped: {daemon_task.exception()!r}")
            return len(csms.calls)

        mark = step("1. power on: the module comes up, the WebSocket opens, BootNotification")
        await self._wait(parts, "BootNotification", self._called(parts, mark, "BootNotification"))
        await self._wait(parts, "Available status", self._status(parts, mark, "Available"))

        mark = step("2. a driver plugs in and presents an RFID card")
        await self._ctl(parts, "plug", "1")
        await self._wait(parts, "Preparing", self._status(parts, mark, "Preparing"))
        await self._ctl(parts, "present", CARD)
        await self._wait(parts, "StartTransaction", self._called(parts, mark, "StartTransaction"))
        first = csms.transaction_ids[-1]
        await self._wait(parts, "Charging", self._status(parts, mark, "Charging"))

        mark = step("3. charging: a meter value every 5 s (MeterValueSampleInterval)")
        await self._wait(
            parts,
            "two MeterValues",
            lambda: len(csms.seen("MeterValues", since=mark)) >= 2,
            30,
        )

        mark = step(f"4. coverage hole: {self.module.coverage_hole} while the car charges")
        sim.set_coverage(False)
        station = self._station()
        async with asyncio.timeout(STEP_TIMEOUT):
            await station.wait_until(lambda: not station.online)
            await station.wait_until(lambda: len(station.outbox) >= 3)
        queued = len(station.outbox)
        mark = step(f"5. back in coverage, with {queued} messages waiting in the outbox on disk")
        sim.set_coverage(True)
        async with asyncio.timeout(STEP_TIMEOUT):
            await station.wait_until(lambda: station.online)
            await station.outbox.wait_empty()
        messages = csms.seen("MeterValues", since=mark)
        readings = sum(len(p["meter_value"]) for p in messages)
        if readings < queued:
            raise StepFailed(f"{queued} meter values queued, {readings} delivered")
        self.delivered_after_hole = queued
        self.say(
            f"   all {queued} delivered in {len(messages)} MeterValues, in order, "
            "each with the time it was measured"
        )

        mark = step("6. the driver ends the session with the same card and unplugs")
        await self._ctl(parts, "present", CARD)
        await self._wait(
            parts,
            "StopTransaction",
            self._called(parts, mark, "StopTransaction", transaction_id=first),
        )
        await self._ctl(parts, "unplug", "1")
        await self._wait(parts, "Available", self._status(parts, mark, "Available"))

        mark = step("7. remote start from the CSMS (an app user), then remote stop")
        await self._ctl(parts, "plug", "1")
        await self._wait(parts, "Preparing", self._status(parts, mark, "Preparing"))
        answer = await csms.call(call.RemoteStartTransaction(id_tag=REMOTE_CARD, connector_id=1))
        if answer.status != "Accepted":
            raise StepFailed(f"RemoteStartTransaction {answer.status}")
        await self._wait(parts, "StartTransaction", self._called(parts, mark, "StartTransaction"))
        transaction_id = csms.transaction_ids[-1]
        await self._wait(parts, "a MeterValues", self._called(parts, mark, "MeterValues"), 30)
        answer = await csms.call(call.RemoteStopTransaction(transaction_id=transaction_id))
        if answer.status != "Accepted":
            raise StepFailed(f"RemoteStopTransaction {answer.status}")
        await self._wait(
            parts,
            "StopTransaction",
            self._called(parts, mark, "StopTransaction", transaction_id=transaction_id),
        )
        await self._ctl(parts, "unplug", "1")
        await self._wait(parts, "Available", self._status(parts, mark, "Available"))

        await self._signed_firmware_update(parts, step)

        mark = step("9. diagnostics upload: logs, frame trace and configuration, as a tar.gz")
        await csms.call(call.GetDiagnostics(location=parts.files.url("/diagnostics/"), retries=2))
        await self._wait(
            parts,
            "DiagnosticsStatusNotification Uploaded",
            self._called(parts, mark, "DiagnosticsStatusNotification", status="Uploaded"),
            120,
        )
        assert self.daemon is not None and self.daemon.diagnostics is not None
        async with asyncio.timeout(STEP_TIMEOUT):  # its answer is on the way back
            await self.daemon.diagnostics.wait_done()

        await self._new_certificate(parts, step)
        self._uart_totals(sim)

    async def _signed_firmware_update(self, parts: Parts, step: Callable[[str], int]) -> None:
        """Step 8: SignedUpdateFirmware as a CSMS following the security whitepaper sends it
        (L01), the image signed by the manufacturer's firmware signing certificate."""
        csms, signer = parts.csms, parts.certificates.firmware_signer
        version = f"{OLD_VERSION} → {NEW_VERSION}"
        mark = step(f"8. signed firmware update {version} through {self.module.download}")
        self.say(
            "   SignedUpdateFirmware: the image signed (RSA-PSS, SHA-256) with the firmware "
            "signing certificate the manufacturer root issued"
        )
        answer = await csms.call(
            call.SignedUpdateFirmware(
                request_id=FIRMWARE_REQUEST,
                retries=2,
                firmware=Firmware(
                    location=parts.files.url(FIRMWARE_PATH),
                    retrieve_date_time=_utc_now(),
                    signing_certificate=signer.pem,
                    signature=sign_firmware(parts.files.files[FIRMWARE_PATH], signer),
                ),
            )
        )
        if answer.status != "Accepted":
            raise StepFailed(f"SignedUpdateFirmware {answer.status}")
        await self._wait(
            parts,
            "SignedFirmwareStatusNotification Installed",
            self._called(
                parts,
                mark,
                "SignedFirmwareStatusNotification",
                status="Installed",
                request_id=FIRMWARE_REQUEST,
            ),
            180,
        )
        statuses = [
            p["status"]
            for p in csms.seen("SignedFirmwareStatusNotification", since=mark)
            if p.get("request_id") == FIRMWARE_REQUEST
        ]
        if statuses != list(SIGNED_FIRMWARE_STATUSES):
            raise StepFailed(f"SignedFirmwareStatusNotification {' → '.join(statuses)}")
        boot = self._called(parts, mark, "BootNotification")()
        if boot is None or boot.get("firmware_version") != NEW_VERSION:
            raise StepFailed(f"BootNotification after the update reports {boot}")
        # The security events of the restart go through the outbox: all of them are in before
        # the next step, so the summary lists every one.
        for event in ("ResetOrReboot", "StartupOfTheDevice", "FirmwareUpdated"):
            await self._wait(
                parts,
                f"SecurityEventNotification {event}",
                self._called(parts, mark, "SecurityEventNotification", type=event),
            )

    async def _new_certificate(self, parts: Parts, step: Callable[[str], int]) -> None:
        """Step 10: the CSMS, as the CPO's certificate authority, gives the charge point a
        certificate of its own (A02). At profile 2 it is kept for profile 3: no reconnect."""
        csms = parts.csms
        mark = step("10. the CSMS asks for a new charge point certificate and signs its CSR")
        answer = await csms.call(
            call.ExtendedTriggerMessage(requested_message="SignChargePointCertificate")
        )
        if answer.status != "Accepted":
            raise StepFailed(f"ExtendedTriggerMessage SignChargePointCertificate {answer.status}")
        request = await self._wait(
            parts, "SignCertificate", self._called(parts, mark, "SignCertificate")
        )
        try:
            chain = sign_csr(
                request["csr"],
                parts.certificates.csms_root,
                charge_point_id=IDENTITY,
                cpo_name=VENDOR,
            )
        except CsrRefused as refused:
            raise StepFailed(f"SignCertificate: {refused}") from None
        answer = await csms.call(call.CertificateSigned(certificate_chain=chain))
        if answer.status != "Accepted":
            raise StepFailed(f"CertificateSigned {answer.status}")
        parts.charge_point_certificate = x509.load_pem_x509_certificate(chain.encode())
        self.say(
            "   Accepted and stored for a raise to security profile 3 "
            "(at profile 2 the charge point does not reconnect with it)"
        )
        await self._wait(
            parts,
            "SecurityEventNotification ReconfigurationOfSecurityParameters",
            self._called(
                parts, mark, "SecurityEventNotification", type="ReconfigurationOfSecurityParameters"
            ),
        )

    def _station(self) -> Station:
        assert self.daemon is not None
        return self.daemon.station

    # -- the end --

    def _summary(self, parts: Parts, *, ok: bool) -> None:
        print_summary(
            self.out,
            self.timeline,
            parts,
            delivered_after_hole=self.delivered_after_hole,
            start=self.start,
            ok=ok,
        )

    async def _keep_running(self, parts: Parts) -> None:
        assert self.daemon is not None
        socket = self.daemon.config.control_path
        print(
            f"\nStill running (Ctrl-C to stop). In another terminal:\n"
            f"  chargepoint ctl --socket {socket} status\n"
            f"  chargepoint ctl --socket {socket} plug 1\n"
            f"  chargepoint ctl --socket {socket} present MY-CARD\n"
            f"  configuration: {parts.config_path}\n",
            file=self.out,
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def main(out: TextIO = sys.stdout, *, keep_running: bool = False, module: str = "quectel") -> int:
    return asyncio.run(Demo(out, keep_running=keep_running, module=module).run())
