"""The operator's commands around the service: ``check-config``, ``modem info``, ``modem at``
and ``fetch``. Each prints what a person needs and returns the exit code (0 good, 1 not)."""

from __future__ import annotations

import asyncio
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from chargepoint.app.assembly import (
    checked_settings,
    key_specs,
    link_for,
    module_family,
    module_settings,
)
from chargepoint.hardware.charger import MEASURANDS
from chargepoint.logs import stderr_is_journal
from config.loader import Config, ConfigError, load_config
from transport.at import AtChannel, Urc
from transport.errors import TransportError
from transport.ftp import parse_location
from transport.link import TransferClients
from transport.modems.families import Family


def check_config(path: str, out: TextIO = sys.stdout) -> int:
    """Validate the file and its OCPP keys; print every problem, or a summary and warnings."""
    try:
        config = load_config(path)
        keys = key_specs(config, MEASURANDS)
        if (found := module_family(config)) is not None:
            checked_settings(config, found)
    except ConfigError as error:
        print(error.report(), file=sys.stderr)
        return 1
    found = module_family(config)
    link = (
        found.describe(module_settings(config))
        if found is not None
        else "the controller's own network (modem.type = host)"
    )
    print(f"{path}: OK", file=out)
    print(
        f"  charge point   {config.charge_point.id}, {config.charge_point.connectors} connector(s)",
        file=out,
    )
    print(f"  CSMS           {config.csms.url}", file=out)
    print(f"  security       {_security_line(config)}", file=out)
    print(f"  link           {link}", file=out)
    print(f"  state          {config.storage_directory}", file=out)
    print(f"  OCPP keys      {len(keys)} ({len(config.ocpp_keys)} set by the file)", file=out)
    for warning in _warnings(config):
        print(f"warning: {warning}", file=out)
    return 0


def _warnings(config: Config) -> list[str]:
    """Things that are not errors in the file but will stop the service on this machine."""
    found = []
    port = config.modem.port
    if config.modem.type != "host" and port is not None and not Path(port).exists():
        found.append(
            f"modem.port: {port} does not exist here (module not plugged in? its stable name "
            "is under /dev/serial/by-id/)"
        )
    for name, command in (
        ("firmware.install_command", config.firmware.install_command),
        ("firmware.reboot_command", config.firmware.reboot_command),
        ("charge_point.reset_command", config.charge_point.reset_command),
    ):
        if command and shutil.which(command[0]) is None:
            found.append(f"{name}: {command[0]} is not an executable program here")
    key = config.csms.client_key
    if key is not None and key.exists() and key.stat().st_mode & 0o077:
        found.append(
            f"csms.client_key: {key} can be read by other users (mode "
            f"{key.stat().st_mode & 0o777:o}); make it 0600, owned by the service user"
        )
    return found


def _security_line(config: Config) -> str:
    csms = config.csms
    what = {
        0: "no authentication",
        1: "Basic auth over ws:// (trusted network only)",
        2: "TLS, Basic auth",
        3: "TLS, client certificate",
    }[csms.security_profile]
    line = f"profile {csms.security_profile}: {what}"
    if csms.security_profile >= 2:
        line += f"; CSMS CA {csms.ca_file or 'from the system trust store'}"
    if csms.upgrade_urls:
        line += "; the CSMS may raise it to " + ", ".join(str(p) for p, _ in csms.upgrade_urls)
    return line


def _modem_family(config: Config) -> Family | None:
    found = module_family(config)
    if found is None:
        print(
            'chargepoint: modem.type is "host": the daemon uses the controller\'s own network, '
            "there is no module to talk to",
            file=sys.stderr,
        )
    return found


async def modem_info(config: Config, out: TextIO = sys.stdout) -> int:
    """Bring the module up as the daemon would and print what it says about itself."""
    found = _modem_family(config)
    if found is None:
        return 1
    try:
        rows = await found.info(checked_settings(config, found))
    except ConfigError as error:
        print(error.report(), file=sys.stderr)
        return 1
    except TransportError as error:
        print(f"chargepoint modem info: {error}", file=sys.stderr)
        return 1
    width = max(14, *(len(name) + 2 for name, _ in rows))
    for name, value in rows:
        print(f"{name:<{width}}{value}", file=out)
    return 0


async def modem_at(
    config: Config, command: str | None, timeout: float, out: TextIO = sys.stdout
) -> int:
    """One AT command, or a console (a command per line of stdin), URCs shown as they come."""
    found = _modem_family(config)
    if found is None:
        return 1
    try:
        channel = found.channel(checked_settings(config, found))
    except ConfigError as error:
        print(error.report(), file=sys.stderr)
        return 1
    except TransportError as error:
        print(f"chargepoint modem at: {error}", file=sys.stderr)
        return 1
    channel.start()
    channel.subscribe("", lambda urc: _show_urc(urc, out))
    try:
        if command is not None:
            return 0 if await _send(channel, found, command, timeout, out) else 1
        return await _console(channel, found, timeout, out)
    finally:
        await channel.close()


def _show_urc(urc: Urc, out: TextIO) -> None:
    print(f"urc: {urc.text}", file=out, flush=True)


async def _send(channel: AtChannel, found: Family, line: str, timeout: float, out: TextIO) -> bool:
    command = line.strip()
    if found.data_phase and command.upper().startswith(found.data_phase):
        print(f"{command}: needs a data phase, which only the daemon drives", file=out)
        return False
    if found.unbounded and command.upper().startswith(found.unbounded):
        print(
            f"{command}: blocks the module until data comes, and nothing (AT+Stop included) "
            "interrupts it; the daemon sends it only once AT+Select says data is there",
            file=out,
        )
        return False
    if not command.upper().startswith("AT"):
        print(f"{command}: AT commands start with AT", file=out)
        return False
    name = command[2:].split("=", 1)[0].rstrip("?").strip()
    # The command's own information lines (+CREG: for AT+CREG?) are its answer, not URCs.
    expect = (name + ":",) if name.startswith("+") else ()
    blocked = ("AT" + name).upper() in found.blocked
    try:
        response = await channel.command(
            command, timeout=timeout, expect=expect, check=False, blocked=blocked
        )
    except TransportError as error:
        print(f"{command}: {error}", file=out, flush=True)
        return False
    for answer in response.lines:
        extra = f" [{len(answer.payload)} bytes]" if answer.payload is not None else ""
        print(answer.text + extra, file=out)
    print(response.result.text, file=out, flush=True)
    return response.result.success


async def _console(channel: AtChannel, found: Family, timeout: float, out: TextIO) -> int:
    interactive = sys.stdin.isatty()
    if interactive:
        print("AT console: one command per line; URCs appear as they come. Ctrl-D ends.", file=out)
    lines = _stdin_lines()
    failures = 0
    while True:
        if interactive:
            print("AT> ", end="", file=out, flush=True)
        line = await lines.get()
        if line is None:
            return 1 if failures and not interactive else 0
        if line.strip().lower() in ("exit", "quit"):
            return 0
        if line.strip() and not await _send(channel, found, line, timeout, out):
            failures += 1


def _stdin_lines() -> asyncio.Queue[str | None]:
    """Lines of stdin, read by a daemon thread (a blocked read must not hold up the exit)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, name="stdin", daemon=True).start()
    return queue


class ProgressLine:
    """``bytes / total  percent  rate`` redrawn in place on a terminal; nothing elsewhere (a
    pipe, a file, the journal), where a line per update would only be noise."""

    def __init__(self, stream: TextIO, *, every: float = 0.25) -> None:
        self.stream = stream
        self.shown = stream.isatty() and not stderr_is_journal()
        self.every = every
        self.started = time.monotonic()
        self._last = 0.0
        self._first: int | None = None

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if self._first is None:
            self._first = done  # a resumed download starts part-way
        if not self.shown or (now - self._last < self.every and done != total):
            return
        self._last = now
        rate = (done - self._first) / max(now - self.started, 1e-6)
        text = f"{_size(done)}"
        if total:
            text += f" / {_size(total)}  {100 * done / total:5.1f}%"
        text += f"  {_size(int(rate))}/s"
        print(f"\r{text:<48}", end="", file=self.stream, flush=True)

    def finish(self) -> None:
        if self.shown and self._last:
            print(file=self.stream, flush=True)


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count / (1024 * 1024):.1f} MiB"


async def fetch(config: Config, url: str, output: Path, out: TextIO = sys.stdout) -> int:
    """Download ``url`` (http, https, ftp or ftps) through the link, as UpdateFirmware does:
    in pieces, resumable (run it again after an interruption)."""
    link = link_for(config)
    progress = ProgressLine(sys.stderr)
    try:
        where = parse_location(url)
        client = await TransferClients(link.http_client, link.ftp_client).client_for(where)
        result = await client.fetch(url, output, progress=progress)
    except TransportError as error:
        progress.finish()
        print(f"chargepoint fetch: {error}", file=sys.stderr)
        return 1
    finally:
        await link.close()
    progress.finish()
    resumed = f", resumed at byte {result.resumed_from}" if result.resumed_from else ""
    print(
        f"{result.path}: {result.size} bytes in {result.pieces} request(s){resumed}, "
        f"SHA-256 {result.sha256}",
        file=out,
    )
    return 0


def load(path: str) -> Config | None:
    """The configuration, or None after printing every problem in it."""
    try:
        return load_config(path)
    except ConfigError as error:
        print(error.report(), file=sys.stderr)
        return None
