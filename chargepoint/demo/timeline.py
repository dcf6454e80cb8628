"""The demo's one timeline: what crossed the serial line, the WebSocket and OCPP, in order."""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from typing import Any, TextIO

WIDTH = 160
LONG = 100  # a string without spaces longer than this (a signature) is shown shortened
MODULE_STATUS = ("module status: ", "module on ")  # the driver's words for URCs shown anyway


class Timeline(logging.Handler):
    """One timeline: seconds since start, the layer, what happened.

    ``transport.at`` debug records become one line per AT command with its result, except the
    data-moving commands, which are counted and shown as totals at each step of the script.
    """

    def __init__(self, out: TextIO, start: float, data_commands: tuple[str, ...] = ()) -> None:
        super().__init__(logging.DEBUG)
        # Commands that move bulk data (payload on the UART): counted, not printed one by one.
        self.data_command_names = tuple(name.upper() for name in data_commands)
        self.out = out
        self.start = start
        self.commands = 0
        self.urcs = 0
        self.data_commands: Counter[str] = Counter()
        self._command: str | None = None
        self._data_command = False
        self._names: dict[str, str] = {}  # OCPP message id -> action
        self.frames: Counter[str] = Counter()  # per direction

    def line(self, layer: str, text: str, when: float | None = None) -> None:
        at = (time.time() if when is None else when) - self.start
        text = f"{at:8.3f}s  {layer:<5} {text}"
        if len(text) > WIDTH and layer != "ocpp":  # OCPP is shown whole
            text = text[: WIDTH - 1] + "…"
        print(text, file=self.out, flush=True)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.name == "transport.at" and record.levelno == logging.DEBUG:
                self._at(message, record.created)
                return
            if record.levelno == logging.INFO and message.startswith(MODULE_STATUS):
                return  # the URC itself is on the timeline
            layer = {
                "transport.websocket": "ws",
                "transport.at": "uart",
            }.get(record.name, "modem" if record.name.startswith("transport.") else "cp")
            mark = "" if record.levelno < logging.WARNING else f"{record.levelname}: "
            self.line(layer, mark + message, record.created)
        except Exception:
            self.handleError(record)

    def _at(self, message: str, when: float) -> None:
        if message.startswith("→ "):
            self.commands += 1
            command = message[2:].split(" [+", 1)[0]
            self._command = command
            self._data_command = command.upper().startswith(self.data_command_names)
            if self._data_command:
                self.data_commands[command.split("=", 1)[0]] += 1
        elif message.startswith("← ") and self._command is not None:
            result = message[2:]
            failed = "ERROR" in result
            if not self._data_command or failed:
                self.line("uart", f"{self._command}  ⇒  {result}", when)
            self._command = None
        elif message.startswith("urc "):
            self.urcs += 1
            if '"recv"' in message:  # data pushed, or waiting to be read: counted, not shown
                self.data_commands['AT+"recv" URC'] += 1
            else:
                self.line("uart", message, when)

    def data_totals(self) -> str:
        counts = ", ".join(f"{n} {name[3:]}" for name, n in sorted(self.data_commands.items()))
        self.data_commands.clear()
        return counts

    def frame(self, direction: str, text: str) -> None:
        self.frames[direction] += 1
        try:
            frame = json.loads(text)
        except ValueError:
            self.line("ocpp", f"{direction} unreadable: {text[:60]}")
            return
        arrow = "CP → CSMS" if direction == "cp>csms" else "CSMS → CP"
        if frame[0] == 2:
            self._names[frame[1]] = frame[2]
            self.line("ocpp", f"{arrow}  {frame[2]}  {_describe(frame[2], frame[3])}")
        elif frame[0] == 3:
            name = self._names.pop(frame[1], "?")
            self.line("ocpp", f"{arrow}  {name}.conf  {_describe(name, frame[2])}")
        else:
            name = self._names.pop(frame[1], "?")
            self.line("ocpp", f"{arrow}  {name} CALLERROR {frame[2]} {frame[3]}")


def _describe(action: str, payload: dict[str, Any]) -> str:
    """A payload in one short line: scalars as key=value, meter values as readings."""
    if action == "MeterValues" and "meterValue" in payload:
        readings = []
        for value in payload["meterValue"]:
            for sample in value["sampledValue"]:
                name = sample.get("measurand", "Energy.Active.Import.Register")
                readings.append(f"{name}={sample['value']} {sample.get('unit', 'Wh')}")
            readings.append(f"@{value['timestamp'][11:19]}")
        return f"connector {payload['connectorId']} tx {payload.get('transactionId')}: " + " ".join(
            readings
        )
    parts = []
    for key, value in payload.items():
        shown = value
        if isinstance(value, dict):
            # idTagInfo and the like by their status; SignedUpdateFirmware's firmware in full.
            shown = value.get("status") or "{" + _describe(action, value) + "}"
        elif isinstance(value, list):
            shown = f"[{len(value)}]"
        elif isinstance(value, str):
            shown = _short(value)
        parts.append(f"{key}={shown}")
    return " ".join(parts)


def _short(text: str) -> str:
    """Certificates, CSRs and signatures by what they are, not as pages of base64."""
    if text.startswith("-----BEGIN "):
        kinds = re.findall(r"-----BEGIN ([A-Z0-9 ]+)-----", text)
        return f"<PEM {' + '.join(kinds)}, {len(text)} chars>"
    if len(text) > LONG and " " not in text:
        return f"{text[:16]}…<{len(text)} chars>"
    return text
