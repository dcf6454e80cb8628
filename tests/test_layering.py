"""The driver seam is real: nothing above :mod:`transport.modems` knows which module family it
drives (architecture: "each layer knows only the one below it"). The charge point, the daemon,
the WebSocket and the AT engine reach a family only through ``transport.modems.families``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Everything above the drivers: the charge point and the daemon, and the transport layers
# the drivers sit on or under (WebSocket, AT engine, stream and link seams).
ABOVE_THE_DRIVERS = [
    *sorted((ROOT / "chargepoint").rglob("*.py")),
    *sorted((ROOT / "transport").glob("*.py")),
]
FAMILY_NAMES = ("simplelink", "cc3220", "cc32xx")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
    return found


def test_there_is_code_above_the_drivers_to_check() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in ABOVE_THE_DRIVERS}
    assert {"chargepoint/app/daemon.py", "transport/websocket.py", "transport/at.py"} <= names


def test_nothing_above_the_drivers_imports_a_family_driver() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in ABOVE_THE_DRIVERS
        for module in _imports(path)
        if module.startswith("transport.modems.")
        and module.split(".")[2].startswith(("simplelink", "quectel"))
    ]
    assert offenders == []


def test_nothing_above_the_drivers_names_the_wifi_family() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in ABOVE_THE_DRIVERS
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if any(name in line.lower() for name in FAMILY_NAMES)
    ]
    assert offenders == []
