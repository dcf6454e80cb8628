"""Bringing the link up: the driver against the simulated module over a real pty.

The order and limits follow the Quectel TCP/IP manual's flow chart and the HTTP manuals'
error-handling chapters (at-protocol.md §1.3, §7; seeds 000 §1.4.2, 001 §4.2).
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.conftest import FAST, fast
from transport.errors import PdpActivationError, RegistrationError, SimError, SocketOpenError
from transport.modem import RegistrationStatus
from transport.modems.quectel import QuectelModem, open_quectel
from transport.modems.quectel_settings import QuectelSettings
from transport.simulator import ModuleProfile, QuectelModule, SimState, SimulatorShell


async def bring_up(profile: ModuleProfile, settings: QuectelSettings = FAST, **knobs: object):
    module = QuectelModule(profile)
    for name, value in knobs.items():
        setattr(module, name, value)
    async with SimulatorShell(module) as sim, open_quectel(sim.path, settings=settings) as modem:
        info = await modem.bring_up()
        return info, module


async def test_bring_up_follows_the_manuals_order_and_reports_identity() -> None:
    info, module = await bring_up(ModuleProfile())
    commands = [c for c in module.log if c != "AT"]
    assert commands[:4] == ["ATE0", "AT+CMEE=2", "AT+QISDE=0", "AT+CPIN?"]
    order = [
        "AT+CPIN?",
        "AT+GSN",
        "AT+CEREG?",
        "AT+CSQ",
        'AT+QICSGP=1,1,"internet","","",0',
        "AT+QIACT=1",
    ]
    positions = [commands.index(c) for c in order]
    assert positions == sorted(positions)
    assert info.identity.imei == "869710030002906"
    assert info.identity.iccid == "89860025128306012474"
    assert info.identity.imsi == "460023210226023"
    assert (info.identity.manufacturer, info.identity.model) == ("Quectel", "EC200U")
    assert info.identity.revision == "EC200UCNAAR03A06M08"
    assert info.signal.dbm == -65
    assert info.registration.eps is RegistrationStatus.HOME
    assert info.ip_address == "10.64.23.7"


async def test_bring_up_waits_for_a_slow_boot_sim_and_network() -> None:
    info, _ = await bring_up(ModuleProfile(boot_time=1.0, sim_busy_for=0.5, registered_after=1.0))
    assert info.registration.packet_registered


async def test_roaming_counts_as_registered() -> None:
    info, _ = await bring_up(ModuleProfile(registration_stat=5))
    assert info.registration.eps is RegistrationStatus.ROAMING


async def test_missing_sim_is_reported_at_once() -> None:
    with pytest.raises(SimError, match="no SIM card"):
        await bring_up(ModuleProfile(sim=SimState.ABSENT))


async def test_sim_pin_is_entered_when_configured() -> None:
    info, module = await bring_up(
        ModuleProfile(sim=SimState.PIN, sim_pin="4321"), fast(sim_pin="4321")
    )
    assert info.identity.imsi == "460023210226023"
    assert module.pin_attempts == 3


async def test_sim_pin_required_but_not_configured() -> None:
    with pytest.raises(SimError, match="asks for its PIN"):
        await bring_up(ModuleProfile(sim=SimState.PIN))


async def test_wrong_pin_is_tried_once_only() -> None:
    module = QuectelModule(ModuleProfile(sim=SimState.PIN, sim_pin="4321"))
    async with (
        SimulatorShell(module) as sim,
        open_quectel(sim.path, settings=fast(sim_pin="1111")) as modem,
    ):
        with pytest.raises(SimError, match="rejected the configured PIN"):
            await modem.bring_up()
    assert module.pin_attempts == 2  # one try used, the SIM is not pushed towards its PUK


async def test_puk_locked_sim() -> None:
    with pytest.raises(SimError, match="locked"):
        await bring_up(ModuleProfile(sim=SimState.PUK))


async def test_registration_denied() -> None:
    with pytest.raises(RegistrationError, match="denies registration"):
        await bring_up(ModuleProfile(registration_stat=3))


async def test_no_network_times_out_with_the_signal_in_the_message() -> None:
    with pytest.raises(
        RegistrationError, match=r"not registered for data after 2 s .*signal -65 dBm"
    ):
        await bring_up(ModuleProfile(registered_after=600.0))


async def test_failed_pdp_activation_is_retried_after_qideact() -> None:
    info, module = await bring_up(ModuleProfile(), pdp_failures=1)
    assert info.ip_address == "10.64.23.7"
    tail = module.log[module.log.index("AT+QIACT=1") :]
    assert tail[:4] == ["AT+QIACT=1", "AT+QIGETERROR", "AT+QIDEACT=1", "AT+QIACT?"]
    assert tail.count("AT+QIACT=1") == 2


async def test_wrong_apn_gives_up_with_advice() -> None:
    with pytest.raises(
        PdpActivationError, match=r"APN 'internet' after 2 attempts .*561 open PDP context failed"
    ):
        await bring_up(ModuleProfile(required_apn="operator.apn"))


async def test_already_active_context_is_reused() -> None:
    module = QuectelModule()
    async with SimulatorShell(module) as sim:
        async with open_quectel(sim.path, settings=FAST) as modem:
            await modem.bring_up()
        async with open_quectel(sim.path, settings=FAST) as modem:
            info = await modem.bring_up()
    assert module.log.count("AT+QIACT=1") == 1
    assert info.ip_address == "10.64.23.7"


async def test_sockets_left_open_by_an_earlier_run_are_closed(echo_server) -> None:
    module = QuectelModule()
    async with SimulatorShell(module) as sim:
        async with open_quectel(sim.path, settings=FAST) as modem:
            await modem.bring_up()
            await modem.open_tcp("127.0.0.1", echo_server.port)
            # The daemon dies here without closing its socket.
        async with open_quectel(sim.path, settings=FAST) as modem:
            await modem.bring_up()
            stream = await modem.open_tcp("127.0.0.1", echo_server.port)
            assert stream.connect_id == 0
            await stream.close()
    assert "AT+QICLOSE=0,0" in module.log


async def test_apn_password_and_pin_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = fast(username="user", password="s3cr3t-pw", sim_pin="4321")
    await bring_up(ModuleProfile(sim=SimState.PIN, sim_pin="4321"), settings)
    assert "s3cr3t-pw" not in caplog.text
    assert "4321" not in caplog.text
    assert 'AT+QICSGP=1,1,"internet","user","***",0' in caplog.text


def test_settings_refuse_what_would_break_out_of_an_at_argument() -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        QuectelSettings(apn='internet",1\rAT+CFUN=0')
    with pytest.raises(ValueError, match="sim_pin"):
        QuectelSettings(sim_pin="12ab")


async def test_open_errors_name_the_cause(modem: QuectelModem, sim: SimulatorShell) -> None:
    sim.dns_failures.add("csms.example.invalid")
    with pytest.raises(SocketOpenError, match="565 DNS parse failed: check the host name") as dns:
        await modem.open_tcp("csms.example.invalid", 443)
    assert dns.value.code == 565
    with pytest.raises(SocketOpenError, match="566 socket connect failed") as refused:
        await modem.open_tcp("127.0.0.1", 1)  # nothing listens on port 1
    assert refused.value.code == 566
    with pytest.raises(ValueError, match="not a host name"):
        await modem.open_tcp('evil",80\rAT+CFUN=0', 80)
    # The failed ids were closed again and are free.
    assert sim.module.sockets == {}


async def test_registration_is_seen_when_the_module_says_so_not_at_the_next_poll() -> None:
    # Polls an hour apart: only the module's "+CEREG: 1" (the driver enables the URCs) can
    # end the wait, and the status is asked once before it and once after.
    slow_polls = fast(registration_poll=3600.0, registration_timeout=7200.0)
    module = QuectelModule()
    asked = asyncio.Event()
    answer = module._cmd_cereg

    def cereg(form: str, args: list[str], now: float) -> str:
        if form == "read":
            asked.set()
        return answer(form, args, now)

    module._cmd_cereg = cereg  # type: ignore[method-assign]
    async with SimulatorShell(module) as sim, open_quectel(sim.path, settings=slow_polls) as modem:
        sim.set_coverage(False)  # no cell yet: the driver finds the module searching
        bringing = asyncio.create_task(modem.bring_up())
        async with asyncio.timeout(30):
            await asked.wait()
            sim.set_coverage(True)
            info = await bringing
    assert info.registration.packet_registered
    assert [c for c in module.log if c.startswith("AT+C") and "REG" in c] == [
        "AT+CREG=1",
        "AT+CGREG=1",
        "AT+CEREG=1",
        *["AT+CREG?", "AT+CGREG?", "AT+CEREG?"] * 2,
    ]
