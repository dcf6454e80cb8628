"""What the configuration file makes of the parts: the link to the CSMS and the OCPP keys.

Shared by the daemon, the operator commands and the demo, so each builds the same link and
the same keys from the same ``[modem]``, ``[firmware]`` and ``[ocpp_keys]``.
"""

from __future__ import annotations

import dataclasses
import sqlite3

from chargepoint.hardware.charger import Charger
from config.loader import Config, ConfigError
from config.ocpp_keys import Check, ConfigurationKeys, KeySpec, core_keys
from transport.link import Link
from transport.modems.host import HostLink
from transport.modems.host_ftp import HostFtp
from transport.modems.host_http import HostHttp
from transport.modems.quectel import QuectelLink
from transport.modems.quectel_ftp import FtpSettings
from transport.modems.quectel_http import HttpSettings
from transport.modems.quectel_settings import PdpAuth, QuectelSettings


def quectel_settings(config: Config) -> QuectelSettings:
    """The module driver's settings from ``[modem]``."""
    modem = config.modem
    return QuectelSettings(
        apn=modem.apn,
        username=modem.username,
        password=modem.password,
        auth={"none": PdpAuth.NONE, "pap": PdpAuth.PAP, "chap": PdpAuth.CHAP}.get(
            modem.auth, PdpAuth.PAP_OR_CHAP
        ),
        context_id=modem.context_id,
        sim_pin=modem.sim_pin,
        registration_timeout=modem.registration_timeout,
    )


def link_for(config: Config) -> Link:
    """The link the configuration asks for."""
    modem = config.modem
    fw = config.firmware
    # HTTPS and FTPS file servers (often a public CDN) are verified against firmware.ca_file,
    # which may be the CSMS's CA file; on the host link without it, against the system's store.
    ca_file = fw.ca_file
    if modem.type == "host":
        return HostLink(
            http=HostHttp(ca_file=ca_file, piece_size=fw.piece_size),
            ftp=HostFtp(ca_file=ca_file),
        )
    assert modem.port is not None  # the loader insists on it for a module
    http = HttpSettings(
        context_id=modem.context_id,
        ca_file=ca_file,
        piece_size=fw.piece_size,
        chunk=fw.chunk_size,
        scratch_drive=fw.scratch_drive,
    )
    ftp = FtpSettings(
        context_id=modem.context_id,
        ca_file=ca_file,
        chunk=fw.chunk_size,
        scratch_drive=fw.scratch_drive,
    )
    return QuectelLink(modem.port, modem.baudrate, quectel_settings(config), http, ftp)


def key_specs(
    config: Config, measurands: tuple[str, ...], security_check: Check | None = None
) -> list[KeySpec]:
    """The OCPP keys, with the defaults the configuration file gives (``[ocpp_keys]``); a
    ConfigError names every key the file gets wrong."""
    csms = config.csms
    specs = core_keys(
        connectors=config.charge_point.connectors,
        measurands=measurands,
        heartbeat_interval=csms.heartbeat_interval,
        ping_interval=csms.ping_interval,
        authorization_key=csms.password
        if csms.password is not None and 16 <= len(csms.password) <= 20
        else None,
        profiles=config.charge_point.feature_profiles,
        security_profile=config.csms.security_profile,
        security_check=security_check,
        max_message_size=csms.max_message_size,
    )
    by_name = {spec.name: spec for spec in specs}
    problems = []
    for name, value in config.ocpp_keys:
        spec = by_name.get(name)
        if spec is None:
            problems.append(f"ocpp_keys.{name}: not a configuration key this charge point has")
        elif (problem := spec.problem(value)) is not None:
            problems.append(f"ocpp_keys.{name}: {problem}")
        else:
            by_name[name] = dataclasses.replace(spec, default=value)
    if problems:
        raise ConfigError(str(config.source), problems)
    return list(by_name.values())


def configuration_keys(
    config: Config,
    charger: Charger,
    db: sqlite3.Connection,
    security_check: Check | None = None,
) -> ConfigurationKeys:
    return ConfigurationKeys(db, key_specs(config, charger.measurands, security_check))
