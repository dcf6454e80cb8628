"""The simulated Quectel module, byte for byte, with no pty and no clock: what the manuals
(as distilled in at-protocol.md) say the module answers."""

from __future__ import annotations

from transport.simulator.quectel import (
    CloseTcp,
    ModuleProfile,
    OpenTcp,
    QuectelModule,
    SendTcp,
    SimState,
)


def fresh(profile: ModuleProfile | None = None, *, echo: bool = False) -> QuectelModule:
    module = QuectelModule(profile)
    module.power_on(0.0)
    module.tick(0.0)
    module.take_output()
    if not echo:
        say(module, b"ATE0\r")
    return module


def say(module: QuectelModule, data: bytes, now: float = 1.0) -> bytes:
    module.receive(data, now)
    return b"".join(module.take_output())


def connected(profile: ModuleProfile | None = None) -> QuectelModule:
    module = fresh(profile)
    say(module, b'AT+QICSGP=1,1,"internet","","",0\r')
    say(module, b"AT+QIACT=1\r")
    say(module, b'AT+QIOPEN=1,0,"TCP","127.0.0.1",8080,0,0\r')
    assert module.take_actions() == [OpenTcp(0, "127.0.0.1", 8080)]
    module.tcp_opened(0, 40000)
    assert b"".join(module.take_output()) == b"\r\n+QIOPEN: 0,0\r\n"
    return module


def test_boot_announces_rdy_and_sim_state_then_echoes_commands() -> None:
    module = QuectelModule()
    module.power_on(0.0)
    module.tick(0.0)
    boot = b"".join(module.take_output())
    assert boot.startswith(b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n")
    # Echo is on at boot (ATE1 factory default): the command line comes back with its CR.
    assert say(module, b"AT\r") == b"AT\r\r\nOK\r\n"


def test_module_hears_nothing_until_it_has_booted() -> None:
    module = QuectelModule(ModuleProfile(boot_time=5.0))
    module.power_on(0.0)
    assert say(module, b"AT\r", now=1.0) == b""
    module.tick(5.0)
    assert b"RDY" in b"".join(module.take_output())
    assert say(module, b"AT\r", now=6.0) == b"AT\r\r\nOK\r\n"


def test_ate0_line_is_still_echoed_then_echo_stops() -> None:
    module = fresh(echo=True)
    assert say(module, b"ATE0\r") == b"ATE0\r\r\nOK\r\n"
    assert say(module, b"AT\r") == b"\r\nOK\r\n"


def test_ati_lists_manufacturer_model_revision() -> None:
    assert (
        say(fresh(), b"ATI\r")
        == b"\r\nQuectel\r\nEC200U\r\nRevision: EC200UCNAAR03A06M08\r\n\r\nOK\r\n"
    )


def test_identity_commands() -> None:
    module = fresh()
    assert say(module, b"AT+GSN\r") == b"\r\n869710030002906\r\n\r\nOK\r\n"
    assert say(module, b"AT+CIMI\r") == b"\r\n460023210226023\r\n\r\nOK\r\n"
    assert say(module, b"AT+QCCID\r") == b"\r\n+QCCID: 89860025128306012474\r\n\r\nOK\r\n"
    assert say(module, b"AT+CSQ\r") == b"\r\n+CSQ: 24,99\r\n\r\nOK\r\n"
    assert say(module, b"AT+GMI\r") == b"\r\nQuectel\r\n\r\nOK\r\n"
    assert say(module, b"AT+CGMM\r") == b"\r\nEC200U\r\n\r\nOK\r\n"
    assert say(module, b"AT+GMR\r") == b"\r\nEC200UCNAAR03A06M08\r\n\r\nOK\r\n"
    assert say(module, b"AT+GMR=?\r") == b"\r\nOK\r\n"


def test_cme_error_follows_cmee_mode() -> None:
    module = fresh(ModuleProfile(sim=SimState.ABSENT))
    assert say(module, b"AT+CIMI\r") == b"\r\n+CME ERROR: 10\r\n"  # CMEE=1 by default
    say(module, b"AT+CMEE=2\r")
    assert say(module, b"AT+CPIN?\r") == b"\r\n+CME ERROR: SIM not inserted\r\n"
    say(module, b"AT+CMEE=0\r")
    assert say(module, b"AT+CIMI\r") == b"\r\nERROR\r\n"


def test_sim_pin_flow_and_lockout() -> None:
    module = fresh(ModuleProfile(sim=SimState.PIN, sim_pin="4321"))
    assert say(module, b"AT+CPIN?\r") == b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
    assert say(module, b'AT+CPIN="0000"\r') == b"\r\n+CME ERROR: 16\r\n"
    assert say(module, b'AT+CPIN="4321"\r') == b"\r\nOK\r\n\r\n+CPIN: READY\r\n"
    assert say(module, b"AT+CPIN?\r") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
    locked = fresh(ModuleProfile(sim=SimState.PIN))
    for _ in range(3):
        say(locked, b'AT+CPIN="0000"\r')
    assert say(locked, b"AT+CPIN?\r") == b"\r\n+CPIN: SIM PUK\r\n\r\nOK\r\n"


def test_sim_busy_right_after_boot() -> None:
    module = fresh(ModuleProfile(sim_busy_for=3.0))
    assert say(module, b"AT+CPIN?\r", now=1.0) == b"\r\n+CME ERROR: 14\r\n"
    assert say(module, b"AT+CPIN?\r", now=3.5) == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"


def test_registration_searching_then_registered() -> None:
    module = fresh(ModuleProfile(registered_after=10.0))
    assert say(module, b"AT+CEREG?\r", now=2.0) == b"\r\n+CEREG: 0,2\r\n\r\nOK\r\n"
    assert say(module, b"AT+CGATT?\r", now=2.0) == b"\r\n+CGATT: 0\r\n\r\nOK\r\n"
    assert say(module, b"AT+CEREG?\r", now=10.0) == b"\r\n+CEREG: 0,1\r\n\r\nOK\r\n"
    say(module, b"AT+CREG=2\r", now=10.0)
    assert (
        say(module, b"AT+CREG?\r", now=10.0) == b'\r\n+CREG: 2,1,"1A2B","0C3D4E5",7\r\n\r\nOK\r\n'
    )


def test_unknown_command_and_garbage() -> None:
    module = fresh()
    assert say(module, b"AT+NOSUCH\r") == b"\r\nERROR\r\n"
    assert say(module, b"hello\r") == b""  # no "AT": ignored
    assert say(module, b"\x1aAT\r") == b"\r\nOK\r\n"  # stray Ctrl-Z before AT (§9.7)
    assert say(module, b"at\r") == b"\r\nOK\r\n"


def test_qicsgp_accepts_the_seed_logs_spaces_and_reads_back() -> None:
    module = fresh()
    # Seed 004 §4 sends exactly this, with a space inside the argument list.
    assert say(module, b'AT+QICSGP=1,1,"airtelgprs.com","", "",1\r') == b"\r\nOK\r\n"
    assert say(module, b"AT+QICSGP=1\r") == b'\r\n+QICSGP: 1,"airtelgprs.com","","",1\r\n\r\nOK\r\n'
    assert say(module, b'AT+QICSGP=1,1,"unterminated\r') == b"\r\nERROR\r\n"


def test_pdp_activation_and_its_errors() -> None:
    module = fresh()
    assert say(module, b"AT+QIACT?\r") == b"\r\nOK\r\n"
    assert say(module, b"AT+QIACT=1\r") == b"\r\nOK\r\n"
    assert say(module, b"AT+QIACT?\r") == b'\r\n+QIACT: 1,1,1,"10.64.23.7"\r\n\r\nOK\r\n'
    assert say(module, b"AT+QIACT=1\r") == b"\r\nERROR\r\n"  # already active
    assert (
        say(module, b"AT+QIGETERROR\r")
        == b"\r\n+QIGETERROR: 561,open PDP context failed\r\n\r\nOK\r\n"
    )
    assert say(module, b"AT+QIDEACT=1\r") == b"\r\nOK\r\n"
    assert say(module, b"AT+QIACT?\r") == b"\r\nOK\r\n"


def test_pdp_activation_takes_its_time_and_blocks_the_port() -> None:
    module = fresh(ModuleProfile(pdp_activation_time=3.0))
    assert say(module, b"AT+QIACT=1\r", now=1.0) == b""
    assert say(module, b"AT\r", now=2.0) == b""  # queued behind QIACT
    module.tick(4.0)
    assert b"".join(module.take_output()) == b"\r\nOK\r\n\r\nOK\r\n"


def test_wrong_apn_fails_activation() -> None:
    module = fresh(ModuleProfile(required_apn="right"))
    say(module, b'AT+QICSGP=1,1,"wrong","","",0\r')
    assert say(module, b"AT+QIACT=1\r") == b"\r\nERROR\r\n"


def test_qiopen_reports_connect_result_by_urc() -> None:
    module = fresh()
    say(module, b"AT+QIACT=1\r")
    assert say(module, b'AT+QIOPEN=1,0,"TCP","example.org",80,0,0\r') == b"\r\nOK\r\n"
    assert module.take_actions() == [OpenTcp(0, "example.org", 80)]
    module.tcp_open_failed(0, 565)
    assert b"".join(module.take_output()) == b"\r\n+QIOPEN: 0,565\r\n"
    # The failed id stays taken until AT+QICLOSE: a new open is refused by URC.
    assert say(module, b'AT+QIOPEN=1,0,"TCP","example.org",80,0,0\r') == (
        b"\r\nOK\r\n\r\n+QIOPEN: 0,563\r\n"
    )
    assert module.take_actions() == []
    say(module, b"AT+QICLOSE=0\r")
    assert say(module, b'AT+QIOPEN=1,0,"TCP","example.org",80,0,0\r') == b"\r\nOK\r\n"


def test_qiopen_without_active_context_is_an_error() -> None:
    assert say(fresh(), b'AT+QIOPEN=1,0,"TCP","127.0.0.1",80,0,0\r') == b"\r\nERROR\r\n"


def test_qisend_fixed_length_prompt_data_send_ok() -> None:
    module = connected()
    assert say(module, b"AT+QISEND=0,5\r") == b"\r\n> "
    assert say(module, b"hel") == b""
    assert say(module, b"lo") == b"\r\nSEND OK\r\n"
    assert module.take_actions() == [SendTcp(0, b"hello")]
    assert say(module, b"AT+QISEND=0,0\r") == b"\r\n+QISEND: 5,0,5\r\n\r\nOK\r\n"
    module.tcp_sent(0, 5)
    assert say(module, b"AT+QISEND=0,0\r") == b"\r\n+QISEND: 5,5,0\r\n\r\nOK\r\n"


def test_qisend_payload_may_hold_anything() -> None:
    module = connected()
    payload = b"\r\nOK\r\nAT\r\x1a\x1b> "
    say(module, b"AT+QISEND=0,%d\r" % len(payload))
    assert say(module, payload) == b"\r\nSEND OK\r\n"
    assert module.take_actions() == [SendTcp(0, payload)]


def test_qisend_limits_and_closed_socket() -> None:
    module = connected()
    assert say(module, b"AT+QISEND=0,1461\r") == b"\r\nERROR\r\n"
    assert say(module, b"AT+QISEND=1,5\r") == b"\r\nERROR\r\n"  # no such socket: no prompt


def test_qisendex_carries_its_bytes_as_hex_with_no_prompt() -> None:
    # at-protocol.md §2.9: AT+QISENDEX=<connectID>,"<hex_string>" -> SEND OK, and the bytes are
    # counted as AT+QISEND's are (the manual's query example after "3132333435").
    module = connected()
    payload = b"\r\nOK\r\n+QIURC: \x1a\x1b\x00\xff"
    assert say(module, b'AT+QISENDEX=0,"%s"\r' % payload.hex().upper().encode()) == (
        b"\r\nSEND OK\r\n"
    )
    assert module.take_actions() == [SendTcp(0, payload)]
    assert say(module, b'AT+QISENDEX=0,"3132333435"\r') == b"\r\nSEND OK\r\n"
    assert module.take_actions() == [SendTcp(0, b"12345")]
    total = len(payload) + 5
    assert say(module, b"AT+QISEND=0,0\r") == b"\r\n+QISEND: %d,0,%d\r\n\r\nOK\r\n" % (
        total,
        total,
    )


def test_qisendex_limits_and_closed_socket() -> None:
    module = connected()
    assert say(module, b'AT+QISENDEX=0,"%s"\r' % (b"41" * 512)) == b"\r\nSEND OK\r\n"
    module.take_actions()
    for bad in (b"41" * 513, b"414", b"4G", b"", b"41 42"):  # too long, odd, not hex, empty
        assert say(module, b'AT+QISENDEX=0,"%s"\r' % bad) == b"\r\nERROR\r\n", bad
        assert say(module, b"AT+QIGETERROR\r").startswith(b"\r\n+QIGETERROR: 552,")
    assert say(module, b'AT+QISENDEX=1,"41"\r') == b"\r\nERROR\r\n"  # no such socket
    assert say(module, b"AT+QIGETERROR\r").startswith(b"\r\n+QIGETERROR: 567,")
    assert module.take_actions() == []


def test_qisendex_send_fail_when_the_send_buffer_is_full() -> None:
    module = connected(ModuleProfile(send_buffer=10))
    assert say(module, b'AT+QISENDEX=0,"3132333435363738"\r') == b"\r\nSEND OK\r\n"
    assert say(module, b'AT+QISENDEX=0,"3132333435"\r') == b"\r\nSEND FAIL\r\n"
    module.tcp_sent(0, 8)
    assert say(module, b'AT+QISENDEX=0,"3132333435"\r') == b"\r\nSEND OK\r\n"


def test_a_late_qisendex_result_still_comes_before_the_next_commands() -> None:
    # The module answers one command at a time: an AT written while AT+QISENDEX's result is
    # held back is answered after it.
    module = connected()
    module.response_delay = 0.1
    module.send_result_delay = 0.5
    assert say(module, b'AT+QISENDEX=0,"3132"\r', now=1.0) == b""
    assert say(module, b"AT\r", now=1.05) == b""
    for now in (1.2, 1.6, 1.7, 1.8):
        module.tick(now)
    assert b"".join(module.take_output()) == b"\r\nSEND OK\r\n\r\nOK\r\n"


def test_firmware_without_qisendex_answers_error() -> None:
    module = connected(ModuleProfile(hex_send=False))
    assert say(module, b'AT+QISENDEX=0,"3132333435"\r') == b"\r\nERROR\r\n"
    assert module.take_actions() == []


def test_qisend_variable_length_ends_at_ctrl_z_and_esc_cancels() -> None:
    module = connected()
    assert say(module, b"AT+QISEND=0\r") == b"\r\n> "
    assert say(module, b"GET / HTTP/1.1\r\n\r\n\x1a") == b"\r\nSEND OK\r\n"
    assert module.take_actions() == [SendTcp(0, b"GET / HTTP/1.1\r\n\r\n")]
    say(module, b"AT+QISEND=0\r")
    assert say(module, b"never mind\x1b") == b"\r\nERROR\r\n"
    assert module.take_actions() == []


def test_qisend_input_timeout() -> None:
    module = connected()
    say(module, b"AT+QISEND=0,10\r", now=1.0)
    say(module, b"abc", now=1.5)
    assert module.next_deadline() == 6.0
    module.tick(6.0)
    assert b"".join(module.take_output()) == b"\r\nERROR\r\n"
    assert say(module, b"AT\r", now=6.1) == b"\r\nOK\r\n"


def test_send_fail_when_send_buffer_is_full() -> None:
    module = connected(ModuleProfile(send_buffer=10))
    say(module, b"AT+QISEND=0,8\r")
    assert say(module, b"12345678") == b"\r\nSEND OK\r\n"
    say(module, b"AT+QISEND=0,5\r")
    assert say(module, b"abcde") == b"\r\nSEND FAIL\r\n"
    module.tcp_sent(0, 8)
    say(module, b"AT+QISEND=0,5\r")
    assert say(module, b"abcde") == b"\r\nSEND OK\r\n"


def test_payload_echo_when_qisde_is_on() -> None:
    module = connected()
    say(module, b"AT+QISDE=1\r")
    say(module, b"AT+QISEND=0,3\r")
    assert say(module, b"xyz") == b"xyz\r\nSEND OK\r\n"


def test_one_recv_urc_until_the_buffer_is_drained() -> None:
    module = connected()
    module.tcp_received(0, b"test1")
    assert b"".join(module.take_output()) == b'\r\n+QIURC: "recv",0\r\n'
    module.tcp_received(0, b"test2")
    assert module.take_output() == []  # no second URC (§2.8)
    assert say(module, b"AT+QIRD=0,1500\r") == b"\r\n+QIRD: 10\r\ntest1test2\r\n\r\nOK\r\n"
    module.tcp_received(0, b"more")
    assert module.take_output() == []  # still not drained: the host has not seen +QIRD: 0
    assert say(module, b"AT+QIRD=0,1500\r") == b"\r\n+QIRD: 4\r\nmore\r\n\r\nOK\r\n"
    assert say(module, b"AT+QIRD=0,1500\r") == b"\r\n+QIRD: 0\r\n\r\nOK\r\n"
    module.tcp_received(0, b"x")
    assert b"".join(module.take_output()) == b'\r\n+QIURC: "recv",0\r\n'
    assert say(module, b"AT+QIRD=0,0\r") == b"\r\n+QIRD: 15,14,1\r\n\r\nOK\r\n"


def test_qird_reads_at_most_what_was_asked() -> None:
    module = connected()
    module.tcp_received(0, bytes(range(256)) * 8)
    module.take_output()
    reply = say(module, b"AT+QIRD=0,1500\r")
    assert reply.startswith(b"\r\n+QIRD: 1500\r\n")
    assert say(module, b"AT+QIRD=0,1501\r") == b"\r\nERROR\r\n"


def test_peer_close_keeps_unread_data_until_qiclose() -> None:
    module = connected()
    module.tcp_received(0, b"last words")
    module.tcp_closed(0)
    assert b"".join(module.take_output()) == b'\r\n+QIURC: "recv",0\r\n\r\n+QIURC: "closed",0\r\n'
    assert say(module, b"AT+QIRD=0,1500\r") == b"\r\n+QIRD: 10\r\nlast words\r\n\r\nOK\r\n"
    assert say(module, b"AT+QISEND=0,1\r") == b"\r\nERROR\r\n"
    assert say(module, b"AT+QICLOSE=0\r") == b"\r\nOK\r\n"
    assert module.take_actions() == []  # the peer already closed
    assert say(module, b"AT+QIRD=0,1500\r") == b"\r\nERROR\r\n"


def test_an_id_closed_by_the_peer_stays_taken_until_qiclose() -> None:
    module = connected()
    module.tcp_closed(0)
    module.take_output()
    # Listed as Closing (4) and refused to a new open by URC, as field logs show (§2.5, §2.6).
    assert b'+QISTATE: 0,"TCP","127.0.0.1",8080,40000,4,' in say(module, b"AT+QISTATE?\r")
    assert say(module, b'AT+QIOPEN=1,0,"TCP","127.0.0.1",8081,0,0\r') == (
        b"\r\nOK\r\n\r\n+QIOPEN: 0,563\r\n"
    )
    assert module.take_actions() == []
    say(module, b"AT+QICLOSE=0,10\r")
    assert say(module, b"AT+QISTATE?\r") == b"\r\nOK\r\n"
    assert say(module, b'AT+QIOPEN=1,0,"TCP","127.0.0.1",8081,0,0\r') == b"\r\nOK\r\n"
    assert module.take_actions() == [OpenTcp(0, "127.0.0.1", 8081)]
    assert module.most_sockets_held == 1


def test_refused_sends_fail_until_the_socket_is_closed() -> None:
    module = connected()
    module.refused_sends.add(0)
    assert say(module, b"AT+QISEND=0,2\r") == b"\r\n> "
    assert say(module, b"hi") == b"\r\nSEND FAIL\r\n"
    say(module, b"AT+QICLOSE=0\r")
    assert module.refused_sends == set()


def test_a_delayed_send_result_holds_the_module_once() -> None:
    module = connected()
    module.send_result_delay = 3.0
    say(module, b"AT+QISEND=0,2\r", now=1.0)
    assert say(module, b"hi", now=1.0) == b""
    assert say(module, b"AT\r", now=2.0) == b""  # busy: the command waits
    module.tick(4.0)
    assert b"".join(module.take_output()) == b"\r\nSEND OK\r\n\r\nOK\r\n"
    say(module, b"AT+QISEND=0,2\r", now=5.0)
    assert say(module, b"hi", now=5.0) == b"\r\nSEND OK\r\n"  # once only


def test_qiclose_closes_the_connection() -> None:
    module = connected()
    assert say(module, b"AT+QICLOSE=0,10\r") == b"\r\nOK\r\n"
    assert module.take_actions() == [CloseTcp(0, abort=False)]


def test_qistate_line() -> None:
    module = connected()
    assert say(module, b"AT+QISTATE?\r") == (
        b'\r\n+QISTATE: 0,"TCP","127.0.0.1",8080,40000,2,1,0,0,"uart1"\r\n\r\nOK\r\n'
    )
    assert say(module, b"AT+QISTATE=1,5\r") == b"\r\nOK\r\n"


def test_network_pdp_deactivation() -> None:
    module = connected()
    module.network_deactivates_pdp(1)
    assert module.take_actions() == [CloseTcp(0, abort=True)]
    assert b"".join(module.take_output()) == b'\r\n+QIURC: "pdpdeact",1\r\n'
    assert say(module, b"AT+QIACT?\r") == b"\r\nOK\r\n"


def test_coverage_hole_loses_registration_and_the_pdp_context_until_the_cell_is_back() -> None:
    module = connected()
    say(module, b"AT+CREG=2\r")
    module.set_coverage(False, now=2.0)
    assert module.take_actions() == [CloseTcp(0, abort=True)]
    assert b"".join(module.take_output()) == b'\r\n+CREG: 2\r\n\r\n+QIURC: "pdpdeact",1\r\n'
    assert say(module, b"AT+CREG?\r", now=3.0) == b"\r\n+CREG: 2,2\r\n\r\nOK\r\n"
    assert say(module, b"AT+QICLOSE=0\r", now=3.0) == b"\r\nOK\r\n"
    assert say(module, b"AT+QIACT=1\r", now=3.0) == b"\r\nERROR\r\n"  # no network to attach to
    module.set_coverage(True, now=4.0)
    assert b"".join(module.take_output()) == b'\r\n+CREG: 1,"1A2B","0C3D4E5",7\r\n'
    assert say(module, b"AT+QIACT=1\r", now=5.0) == b"\r\nOK\r\n"


def test_reboot_forgets_everything_and_says_rdy() -> None:
    module = connected()
    module.profile.boot_time = 2.0
    assert say(module, b"AT+CFUN=1,1\r", now=1.0) == b"\r\nOK\r\n"
    assert module.take_actions() == [CloseTcp(0, abort=True)]
    assert say(module, b"AT\r", now=2.0) == b""  # booting
    module.tick(3.0)
    assert b"".join(module.take_output()).startswith(b"\r\nRDY\r\n")
    assert say(module, b"AT+QIACT?\r", now=3.1) == b"AT+QIACT?\r\r\nOK\r\n"  # echo is back on


def test_response_delay_holds_answers_and_queues_commands() -> None:
    module = fresh()
    module.response_delay = 0.5
    assert say(module, b"AT\r", now=1.0) == b""
    assert say(module, b"AT+CSQ\r", now=1.1) == b""
    module.tick(1.5)
    assert b"".join(module.take_output()) == b"\r\nOK\r\n"
    module.tick(2.0)
    assert b"".join(module.take_output()) == b"\r\n+CSQ: 24,99\r\n\r\nOK\r\n"


def test_muted_module_says_nothing() -> None:
    module = fresh()
    module.muted = True
    assert say(module, b"AT\r") == b""
    module.muted = False
    assert say(module, b"AT\r") == b"\r\nOK\r\n"


def test_chatter_puts_a_urc_between_echo_and_answer() -> None:
    module = fresh(echo=True)
    module.chatter = 1.0
    reply = say(module, b"AT+CSQ\r")
    assert reply.startswith(b"AT+CSQ\r\r\n+Q")
    assert reply.endswith(b"\r\n+CSQ: 24,99\r\n\r\nOK\r\n")


def test_direct_push_mode_carries_data_on_the_urc() -> None:
    module = fresh()
    say(module, b"AT+QIACT=1\r")
    say(module, b'AT+QIOPEN=1,3,"TCP","127.0.0.1",80,0,1\r')
    module.tcp_opened(3, 1234)
    module.take_output()
    module.tcp_received(3, b"test")
    assert b"".join(module.take_output()) == b'\r\n+QIURC: "recv",3,4\r\ntest\r\n'
