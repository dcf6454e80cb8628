"""The local control interface: JSON lines on a UNIX socket.

``chargepoint ctl`` speaks it, and so can a charger's HMI process: one JSON object per line
in, one per line out. Every request has ``cmd``; the answer has ``ok`` and either the result
or ``error`` (a sentence for a person). Commands:

=================  ==========================================================
``status``         connectors, transactions, link state
``plug``           ``connector``: the EV's cable goes in
``unplug``         ``connector``: the cable comes out of the socket (and the EV); with
                   ``ev_side``: out of the EV only, still in the socket
``hardware``       the simulated charger's whole physical state
``present``        ``id_tag`` (and optionally ``connector``): a card on the reader
``lock-fails``     ``connector``, ``fails``: make the cable lock fail (or work again)
``unlock-fails``   ``connector``, ``fails``: make unlocking fail (or work again)
``fault``          ``connector`` (0: the whole charge point), ``code`` (an OCPP
                   ChargePointErrorCode), ``info``
``clear-fault``    ``connector``
``suspend``        ``connector``, ``suspended``: the EV pauses or resumes charging
``tamper``         ``info``: the enclosure's tamper sensor trips (TamperDetectionActivated)
``power-fail``     the power goes: the daemon dies at once, as in a power cut (after the
                   answer; the hardware keeps its state, the daemon records nothing more);
                   with ``backup``: mains lost, running on the back-up supply
=================  ==========================================================

The socket is created with mode 0660 in the state directory: the daemon's group may use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chargepoint.hardware.charger import Charger
from chargepoint.hardware.simulated import SimulatedCharger

log = logging.getLogger(__name__)

MAX_REQUEST = 4096


class ControlError(Exception):
    """A control request that cannot be carried out; the message is for the person asking."""


class ControlServer:
    def __init__(
        self,
        path: Path,
        charger: Charger,
        describe: Callable[[], dict[str, Any]],
        power_cut: Callable[[], None],
    ) -> None:
        self.path = path
        self._charger = charger
        self._describe = describe
        self._power_cut = power_cut
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a daemon that did not stop cleanly
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(self.path), limit=MAX_REQUEST
        )
        os.chmod(self.path, 0o660)
        log.info("control socket %s", self.path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                answer, cut = self.handle(line)
                try:
                    writer.write(json.dumps(answer).encode() + b"\n")
                    await writer.drain()
                finally:
                    if cut:  # whether or not the one who asked is still there to hear it
                        self._power_cut()
        except (ConnectionError, ValueError):
            pass  # a client that went away, or a line over MAX_REQUEST
        finally:
            writer.close()

    def handle(self, line: bytes) -> tuple[dict[str, Any], bool]:
        """The answer to one request line, and whether the power is to be cut after it."""
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "not a JSON object"}, False
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'a request is a JSON object with "cmd"'}, False
        cut = request["cmd"] == "power-fail" and not request.get("backup")
        try:
            result = self._dispatch(request)
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}, False
        except (ValueError, TypeError, KeyError) as exc:
            return {"ok": False, "error": f"{request['cmd']}: {exc}"}, False
        return {"ok": True, **result}, cut

    def _dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request["cmd"]
        if command == "status":
            return self._describe()
        charger = self._charger
        if not isinstance(charger, SimulatedCharger):
            raise ControlError(f"{command}: only the simulated charger takes this command")
        connector = request.get("connector")
        if connector is not None and not isinstance(connector, int):
            raise ControlError("connector must be a number")
        match command:
            case "plug":
                charger.plug(_need(connector))
            case "unplug":
                charger.unplug(_need(connector), ev_side=bool(request.get("ev_side", False)))
            case "present":
                id_tag = request.get("id_tag")
                if not isinstance(id_tag, str):
                    raise ControlError("present needs id_tag")
                charger.present(id_tag, connector)
            case "lock-fails":
                charger.set_lock_fails(_need(connector), bool(request.get("fails", True)))
            case "unlock-fails":
                charger.set_unlock_fails(_need(connector), bool(request.get("fails", True)))
            case "fault":
                # Connector 0 is the charge point as a whole (a ground fault, a power supply).
                charger.raise_fault(_need(connector), str(request.get("code")), request.get("info"))
            case "clear-fault":
                charger.clear_fault(_need(connector))
            case "suspend":
                charger.suspend(_need(connector), bool(request.get("suspended", True)))
            case "tamper":
                info = request.get("info")
                charger.tamper(info if isinstance(info, str) else None)
            case "power-fail" if request.get("backup"):
                charger.power_failing()
                return {"power": "mains lost: transactions stop while the back-up supply holds"}
            case "power-fail":
                charger.power_cut()
                return {"power": "cut: the daemon goes down now; its service manager restarts it"}
            case "hardware":
                return charger.status()
            case _:
                raise ControlError(f"unknown command {command!r}")
        return {}


def _need(connector: int | None) -> int:
    if connector is None:
        raise ControlError("this command needs a connector number")
    return connector


async def request(path: Path, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to a running daemon; the answer as a dict."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_unix_connection(str(path))
        try:
            writer.write(json.dumps(message).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
    if not line:
        raise ControlError("the daemon closed the connection without an answer")
    answer: dict[str, Any] = json.loads(line)
    return answer
