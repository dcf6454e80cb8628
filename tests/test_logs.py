"""Log lines as journald wants them (priority prefix, no time of their own) when stderr is the
journal stream systemd set up, and with time and level on a terminal or in a file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import logging
from chargepoint.logs import configure_logging
configure_logging("debug")
log = logging.getLogger("chargepoint.test")
log.debug("at debug")
log.info("at info")
log.warning("at warning")
log.error("at error")
try:
    raise ValueError("broken")
except ValueError:
    log.exception("with a traceback")
"""


def run(tmp_path: Path, journal: bool) -> list[str]:
    stderr = tmp_path / "stderr"
    with stderr.open("w") as out:
        status = os.fstat(out.fileno())
        # What systemd sets when stderr is the journal: "<st_dev>:<st_ino>" of that stream.
        # Otherwise one inherited from a parent whose stderr was the journal, not ours.
        inode = status.st_ino if journal else status.st_ino + 1
        env = {**os.environ, "JOURNAL_STREAM": f"{status.st_dev}:{inode}"}
        subprocess.run([sys.executable, "-c", SCRIPT], stderr=out, env=env, check=True)
    return stderr.read_text().splitlines()


def test_journal_lines_carry_the_priority_and_no_time(tmp_path: Path) -> None:
    lines = run(tmp_path, journal=True)
    assert lines[:5] == [
        "<7>chargepoint.test: at debug",
        "<6>chargepoint.test: at info",
        "<4>chargepoint.test: at warning",
        "<3>chargepoint.test: at error",
        "<3>chargepoint.test: with a traceback",
    ]
    assert lines[-1] == "<3>ValueError: broken"  # every traceback line at the record's level
    assert all(line.startswith("<3>") for line in lines[4:])
    assert not any(re.search(r"\d\d:\d\d:\d\d", line) for line in lines)


def test_elsewhere_lines_have_time_and_level(tmp_path: Path) -> None:
    lines = run(tmp_path, journal=False)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING chargepoint\.test: at warning", lines[2]
    )
    assert not any(line.startswith("<") for line in lines)
