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
from transport.modems.families import Family, ModuleSettings, WifiSettings, family
from transport.modems.host import HostLink
from transport.modems.host_ftp import HostFtp
from transport.modems.host_http import HostHttp


def module_family(config: Config) -> Family | None:
    """The module family ``modem.type`` names; None for the host's own network."""
    return None if config.modem.type == "host" else family(config.modem.type)


def module_settings(config: Config) -> ModuleSettings:
    """What ``[modem]``, ``[wifi]`` and ``[firmware]`` say about the module, for its driver."""
    modem = config.modem
    fw = config.firmware
    wifi = modem.wifi
    assert modem.port is not None  # the loader insists on it for a module
    return ModuleSettings(
        port=modem.port,
        baudrate=modem.baudrate,
        apn=modem.apn,
        username=modem.username,
        password=modem.password,
        auth=modem.auth,
        context_id=modem.context_id,
        sim_pin=modem.sim_pin,
        registration_timeout=modem.registration_timeout,
        access_mode=modem.access_mode,
        hex_send_max=modem.hex_send_max,
        wifi=None
        if wifi is None
        else WifiSettings(
            ssid=wifi.ssid,
            security=wifi.security,
            key=wifi.key,
            eap_method=wifi.eap_method,
            user=wifi.user,
            anonymous_user=wifi.anonymous_user,
            provisioning=wifi.provisioning,
            join_timeout=wifi.join_timeout,
        ),
        # HTTPS and FTPS file servers (often a public CDN) are verified against
        # firmware.ca_file, which may be the CSMS's CA file.
        files_ca=fw.ca_file,
        piece_size=fw.piece_size,
        chunk=fw.chunk_size,
        scratch_drive=fw.scratch_drive,
    )


def checked_settings(config: Config, found: Family) -> ModuleSettings:
    """:func:`module_settings`, with what the family's driver refuses in them raised as a
    ConfigError (what the schema cannot say: a driver's own rules)."""
    settings = module_settings(config)
    problems = found.problems(settings)
    if problems:
        raise ConfigError(str(config.source), problems)
    return settings


def link_for(config: Config) -> Link:
    """The link the configuration asks for (a ConfigError if its driver refuses it)."""
    fw = config.firmware
    found = module_family(config)
    if found is None:
        # On the host link without firmware.ca_file, servers are verified against the
        # system's trust store.
        return HostLink(
            http=HostHttp(ca_file=fw.ca_file, piece_size=fw.piece_size),
            ftp=HostFtp(ca_file=fw.ca_file),
        )
    return found.link(checked_settings(config, found))


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
        transfer_protocols=found.transfer_protocols
        if (found := module_family(config)) is not None
        else ("FTP", "FTPS", "HTTP", "HTTPS"),
        cpo_name=config.charge_point.vendor[:64],
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
