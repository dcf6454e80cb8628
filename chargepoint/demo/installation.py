"""What the demo installs: its configuration file, CSMS password and firmware installer,
written as an installer would write them for a charger in the field, with the CSMS root and
the manufacturer root (:mod:`chargepoint.demo.certificates`) as the two trusted roots."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from chargepoint.demo.certificates import DemoCertificates
from transport.simulator.families import SimulatedFamily

BAUD = 115200
IDENTITY = "CP-DEMO-1"
PASSWORD = "demo-secret-0123"
VENDOR = "DemoVendor"  # also CpoName, by default: the organisation of the charge point's CSR
OLD_VERSION, NEW_VERSION = "1.0.0", "1.1.0"

INSTALLER = """\
# The demo's firmware installer: takes the image, "installs" it by recording its version.
import pathlib, sys
image, version_file = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
version = image.read_bytes().split(b"\\n", 1)[0].split()[-1].decode()
version_file.write_text(version + "\\n")
"""


def write_config(
    directory: Path,
    csms_url: str,
    sim_path: str,
    certificates: DemoCertificates,
    module: SimulatedFamily,
) -> Path:
    """The configuration an installer would write for the demo, with its firmware installer."""
    version_file = directory / "firmware-version"
    version_file.write_text(OLD_VERSION + "\n")
    installer = directory / "install-firmware.py"
    installer.write_text(INSTALLER)
    (directory / "csms-password").write_text(PASSWORD + "\n")
    install = [sys.executable, str(installer), "{image}", str(version_file)]
    config = directory / "chargepoint.toml"
    config.write_text(
        f"""\
# Written by `chargepoint demo`: the charge point on a simulated {module.title}.
[charge_point]
id = "{IDENTITY}"
vendor = "{VENDOR}"
model = "AT-1"
serial_number = "DEMO-0001"
connectors = 1

[csms]
url = "{csms_url}"
password_file = "csms-password"
ca_file = "{certificates.ca}"  # security profile 2: TLS in the module, Basic auth inside
reconnect_delay_min = 1
reconnect_delay_max = 4

{module.config(sim_path, BAUD)}
[firmware]
install_command = {json.dumps(install)}
manufacturer_ca_file = "{certificates.manufacturer_ca}"  # signed images only at profile 2
version_file = "{version_file}"

[diagnostics]
log_files = ["{directory / "log"}/*.log"]

[ocpp_keys]
MeterValueSampleInterval = 5
MeterValuesSampledData = "Energy.Active.Import.Register,Power.Active.Import"

[storage]
directory = "{directory / "state"}"
"""
    )
    return config
