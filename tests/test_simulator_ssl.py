"""The simulated module's SSL sockets and clock: AT+QSSLOPEN/QSSLSEND/QSSLRECV/QSSLCLOSE/
QSSLSTATE with TLS terminated in the module (at-protocol.md §3), and AT+CCLK/CTZU/QLTS (§7).

Two levels: the command interpreter byte for byte with no pty and no clock (the syntax and the
socket-table rules), and raw AT through the real pty to real TLS servers on 127.0.0.1 built from
tests/pki.py (the handshake rules: CA, dates against the module's clock, host names, client
certificates, versions and suites).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import ssl
import tty
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import TcpProxy
from tests.pki import Pki, ServerFiles, make_pki
from transport.fd_ready import wait_readable, wait_writable
from transport.simulator import ModuleProfile, QuectelModule, SimulatorShell
from transport.simulator.quectel import (
    DEFAULT_NETWORK_EPOCH,
    CloseTcp,
    OpenSsl,
    OpenTcp,
    SendTcp,
)

WAIT = 10.0  # s: the longest any single answer or URC may take before the test fails
SHELL_LOG = "transport.simulator.shell"

# -- the command interpreter, no pty ------------------------------------------------------------


def fresh(profile: ModuleProfile | None = None) -> QuectelModule:
    module = QuectelModule(profile)
    module.power_on(0.0)
    module.tick(0.0)
    module.take_output()
    say(module, b"ATE0\r", now=0.0)
    return module


def say(module: QuectelModule, data: bytes, now: float = 1.0) -> bytes:
    module.receive(data, now)
    return b"".join(module.take_output())


def out(module: QuectelModule) -> bytes:
    return b"".join(module.take_output())


def active(profile: ModuleProfile | None = None) -> QuectelModule:
    module = fresh(profile)
    assert say(module, b"AT+QIACT=1\r") == b"\r\nOK\r\n"
    return module


def ssl_open(module: QuectelModule, sock_id: int = 0, ctx: int = 1, now: float = 1.0) -> OpenSsl:
    line = f'AT+QSSLOPEN=1,{ctx},{sock_id},"127.0.0.1",443,0\r'.encode()
    assert say(module, line, now) == b"\r\nOK\r\n"
    [action] = module.take_actions()
    assert isinstance(action, OpenSsl)
    return action


def ssl_connected(profile: ModuleProfile | None = None, sock_id: int = 0) -> QuectelModule:
    module = active(profile)
    ssl_open(module, sock_id)
    module.tcp_opened(sock_id, 40000)
    assert out(module) == f"\r\n+QSSLOPEN: {sock_id},0\r\n".encode()
    return module


def test_qsslopen_says_ok_then_reports_by_urc() -> None:
    module = active()
    action = ssl_open(module)
    assert (action.socket_id, action.host, action.port) == (0, "127.0.0.1", 443)
    module.tcp_opened(0, 40000)
    assert out(module) == b"\r\n+QSSLOPEN: 0,0\r\n"
    assert say(module, b"AT+QSSLSTATE\r") == (
        b'\r\n+QSSLSTATE: 0,"SSLClient","127.0.0.1",443,40000,2,1,0,0,"uart1",1\r\n\r\nOK\r\n'
    )


def test_qsslopen_test_form_and_refusals() -> None:
    module = fresh()
    assert say(module, b"AT+QSSLOPEN=?\r") == (
        b"\r\n+QSSLOPEN: (1-7),(0-5),(0-11),<serveraddr>,<server_port>[,(0-2)]\r\n\r\nOK\r\n"
    )
    # No active PDP context: ERROR at once, 572 for AT+QIGETERROR, as AT+QIOPEN (§2.4).
    assert say(module, b'AT+QSSLOPEN=1,1,0,"127.0.0.1",443,0\r') == b"\r\nERROR\r\n"
    assert b"+QIGETERROR: 572," in say(module, b"AT+QIGETERROR\r")
    say(module, b"AT+QIACT=1\r")
    for bad in (
        b'AT+QSSLOPEN=1,6,0,"127.0.0.1",443,0\r',  # SSL contexts are 0-5
        b'AT+QSSLOPEN=1,1,12,"127.0.0.1",443,0\r',  # client ids are 0-11
        b'AT+QSSLOPEN=1,1,0,"127.0.0.1",65536,0\r',
        b'AT+QSSLOPEN=1,1,0,"127.0.0.1",443,2\r',  # transparent mode is not modelled
        b'AT+QSSLOPEN=1,1,0,"127.0.0.1"\r',
    ):
        assert say(module, bad) == b"\r\nERROR\r\n", bad
    assert module.take_actions() == []


def test_ssl_and_tcp_share_one_id_space() -> None:
    module = active()
    ssl_open(module, 0)
    # Taken by an SSL socket: refused by URC to both kinds of open (§3.2).
    assert say(module, b'AT+QIOPEN=1,0,"TCP","127.0.0.1",80,0,0\r') == (
        b"\r\nOK\r\n\r\n+QIOPEN: 0,563\r\n"
    )
    assert say(module, b'AT+QSSLOPEN=1,1,0,"127.0.0.1",443,0\r') == (
        b"\r\nOK\r\n\r\n+QSSLOPEN: 0,563\r\n"
    )
    assert say(module, b'AT+QIOPEN=1,1,"TCP","127.0.0.1",80,0,0\r') == b"\r\nOK\r\n"
    assert module.take_actions() == [OpenTcp(1, "127.0.0.1", 80)]
    assert say(module, b'AT+QSSLOPEN=1,1,1,"127.0.0.1",443,0\r') == (
        b"\r\nOK\r\n\r\n+QSSLOPEN: 1,563\r\n"
    )
    assert module.most_sockets_held == 2


def test_qistate_lists_tcp_sockets_and_qsslstate_ssl_sockets() -> None:
    module = ssl_connected(sock_id=0)
    say(module, b'AT+QIOPEN=1,3,"TCP","127.0.0.1",80,0,0\r')
    module.tcp_opened(3, 40001)
    module.take_output()
    assert say(module, b"AT+QISTATE?\r") == (
        b'\r\n+QISTATE: 3,"TCP","127.0.0.1",80,40001,2,1,0,0,"uart1"\r\n\r\nOK\r\n'
    )
    assert say(module, b"AT+QISTATE=1,0\r") == b"\r\nOK\r\n"
    assert say(module, b"AT+QSSLSTATE=3\r") == b"\r\nOK\r\n"
    assert say(module, b"AT+QSSLSTATE=0\r").startswith(b'\r\n+QSSLSTATE: 0,"SSLClient"')
    assert say(module, b"AT+QSSLSTATE=?\r") == b"\r\nOK\r\n"


@pytest.mark.parametrize(
    "command",
    [
        b"AT+QISEND=0,5\r",
        b"AT+QISEND=0,0\r",
        b"AT+QIRD=0,1500\r",
        b"AT+QICLOSE=0\r",
        b"AT+QSSLSEND=3,5\r",
        b"AT+QSSLRECV=3,1500\r",
        b"AT+QSSLCLOSE=3\r",
    ],
)
def test_commands_of_the_other_kind_are_refused_with_552(command: bytes) -> None:
    module = ssl_connected(sock_id=0)
    say(module, b'AT+QIOPEN=1,3,"TCP","127.0.0.1",80,0,0\r')
    module.tcp_opened(3, 40001)
    module.take_output()
    module.take_actions()
    assert say(module, command) == b"\r\nERROR\r\n"
    assert say(module, b"AT+QIGETERROR\r") == (
        b"\r\n+QIGETERROR: 552,invalid parameters\r\n\r\nOK\r\n"
    )
    assert module.take_actions() == []
    assert set(module.sockets) == {0, 3}


def test_qsslsend_takes_exactly_len_bytes_of_plaintext() -> None:
    module = ssl_connected()
    assert say(module, b"AT+QSSLSEND=?\r") == b"\r\n+QSSLSEND: (0-11),(1-1460)\r\n\r\nOK\r\n"
    payload = b"\r\nOK\r\n\x1a\x1b> "
    assert say(module, b"AT+QSSLSEND=0,%d\r" % len(payload)) == b"\r\n> "
    assert say(module, payload) == b"\r\nSEND OK\r\n"
    assert module.take_actions() == [SendTcp(0, payload)]
    assert say(module, b"AT+QSSLSEND=0,1461\r") == b"\r\nERROR\r\n"
    assert say(module, b"AT+QSSLSEND=0,0\r") == b"\r\nERROR\r\n"  # no query form (§3.3)
    assert say(module, b"AT+QSSLSEND=5,1\r") == b"\r\nERROR\r\n"  # no such socket


def test_qsslsend_fails_like_qisend_when_the_radio_takes_nothing() -> None:
    module = ssl_connected(ModuleProfile(send_buffer=10))
    say(module, b"AT+QSSLSEND=0,8\r")
    assert say(module, b"12345678") == b"\r\nSEND OK\r\n"
    say(module, b"AT+QSSLSEND=0,5\r")
    assert say(module, b"abcde") == b"\r\nSEND FAIL\r\n"  # the send buffer is full
    module.tcp_sent(0, 8)
    module.refused_sends.add(0)
    say(module, b"AT+QSSLSEND=0,2\r")
    assert say(module, b"hi") == b"\r\nSEND FAIL\r\n"
    say(module, b"AT+QSSLCLOSE=0\r")
    assert module.refused_sends == set()


def test_one_recv_urc_until_qsslrecv_drains_the_buffer() -> None:
    module = ssl_connected()
    module.tcp_received(0, b"test1")
    assert out(module) == b'\r\n+QSSLURC: "recv",0\r\n'
    module.tcp_received(0, b"test2")
    assert out(module) == b""  # not drained yet (§3.4, the QIRD rule of §2.8)
    assert say(module, b"AT+QSSLRECV=0,6\r") == b"\r\n+QSSLRECV: 6\r\ntest1t\r\n\r\nOK\r\n"
    assert say(module, b"AT+QSSLRECV=0,1500\r") == b"\r\n+QSSLRECV: 4\r\nest2\r\n\r\nOK\r\n"
    assert say(module, b"AT+QSSLRECV=0,1500\r") == b"\r\n+QSSLRECV: 0\r\n\r\nOK\r\n"
    module.tcp_received(0, b"x")
    assert out(module) == b'\r\n+QSSLURC: "recv",0\r\n'
    assert say(module, b"AT+QSSLRECV=0,1501\r") == b"\r\nERROR\r\n"
    assert say(module, b"AT+QSSLRECV=0,0\r") == b"\r\nERROR\r\n"  # not in BG96 V1.0 (§3.4)
    assert say(module, b"AT+QSSLRECV=0\r") == b"\r\nERROR\r\n"
    assert say(module, b"AT+QSSLRECV=?\r") == b"\r\n+QSSLRECV: (0-11),(1-1500)\r\n\r\nOK\r\n"


def test_direct_push_carries_ssl_data_on_the_urc() -> None:
    module = active()
    say(module, b'AT+QSSLOPEN=1,1,4,"127.0.0.1",443,1\r')
    module.take_actions()
    module.tcp_opened(4, 1234)
    module.take_output()
    module.tcp_received(4, b"0123456789abcdef")
    assert out(module) == b'\r\n+QSSLURC: "recv",4,16\r\n0123456789abcdef\r\n'


def test_peer_close_keeps_the_id_and_its_data_until_qsslclose() -> None:
    module = ssl_connected()
    module.tcp_received(0, b"last words")
    module.tcp_closed(0)
    assert out(module) == b'\r\n+QSSLURC: "recv",0\r\n\r\n+QSSLURC: "closed",0\r\n'
    assert b',4,1,0,0,"uart1",1\r\n' in say(module, b"AT+QSSLSTATE=0\r")  # Closing
    assert say(module, b"AT+QSSLRECV=0,1500\r") == b"\r\n+QSSLRECV: 10\r\nlast words\r\n\r\nOK\r\n"
    assert say(module, b"AT+QSSLSEND=0,1\r") == b"\r\nERROR\r\n"
    assert say(module, b"AT+QSSLCLOSE=0,10\r") == b"\r\nOK\r\n"
    assert module.take_actions() == []  # the peer already closed
    assert say(module, b"AT+QSSLSTATE\r") == b"\r\nOK\r\n"


def test_a_dropped_ssl_connection_says_closed_in_ssl_words() -> None:
    module = ssl_connected()
    module.drop_connection(0)
    assert module.take_actions() == [CloseTcp(0, abort=True)]
    assert out(module) == b'\r\n+QSSLURC: "closed",0\r\n'


def test_qsslclose_closes_the_connection_in_order() -> None:
    module = ssl_connected()
    assert say(module, b"AT+QSSLCLOSE=?\r") == b"\r\n+QSSLCLOSE: (0-11),(0-65535)\r\n\r\nOK\r\n"
    assert say(module, b"AT+QSSLCLOSE=0,65536\r") == b"\r\nERROR\r\n"
    assert say(module, b"AT+QSSLCLOSE=0\r") == b"\r\nOK\r\n"
    assert module.take_actions() == [CloseTcp(0, abort=False)]


def test_pdp_loss_kills_ssl_sockets_with_pdpdeact_only() -> None:
    module = ssl_connected()
    module.network_deactivates_pdp(1)
    assert module.take_actions() == [CloseTcp(0, abort=True)]
    assert out(module) == b'\r\n+QIURC: "pdpdeact",1\r\n'  # no +QSSLURC (§3.6)
    assert b',4,1,0,0,"uart1",1\r\n' in say(module, b"AT+QSSLSTATE\r")


def test_reboot_kills_ssl_sockets() -> None:
    module = ssl_connected()
    module.reboot(2.0)
    assert module.take_actions() == [CloseTcp(0, abort=True)]
    assert module.sockets == {}


def test_a_degraded_ssl_stack_answers_552_until_reboot() -> None:
    module = active()
    module.ssl_degrade_after = 1
    ssl_open(module, 0)
    assert say(module, b'AT+QSSLOPEN=1,1,1,"127.0.0.1",443,0\r') == (
        b"\r\nOK\r\n\r\n+QSSLOPEN: 1,552\r\n"
    )
    assert module.take_actions() == []
    assert b'+QSSLSTATE: 1,"SSLClient","127.0.0.1",443,0,4,' in say(module, b"AT+QSSLSTATE=1\r")
    say(module, b"AT+QSSLCLOSE=1\r")
    assert say(module, b'AT+QSSLOPEN=1,1,1,"127.0.0.1",443,0\r').endswith(b"+QSSLOPEN: 1,552\r\n")
    module.reboot(2.0)
    assert module.take_actions() == [CloseTcp(0, abort=True)]
    module.tick(2.0)
    module.take_output()
    say(module, b"ATE0\r", now=2.0)
    say(module, b"AT+QIACT=1\r", now=2.0)
    ssl_open(module, 1, now=2.0)


def test_qsslcfg_checkhost_ciphersuites_and_the_settings_an_open_carries() -> None:
    module = active()
    assert (
        say(module, b'AT+QSSLCFG="checkhost",1\r') == b'\r\n+QSSLCFG: "checkhost",1,0\r\n\r\nOK\r\n'
    )
    for line in (
        b'AT+QSSLCFG="checkhost",1,1\r',
        b'AT+QSSLCFG="ciphersuite",1,0xc030\r',
        b'AT+QSSLCFG="sni",1,1\r',
        b'AT+QSSLCFG="seclevel",1,1\r',
        b'AT+QSSLCFG="cacert",1,"UFS:ca.pem"\r',
        b'AT+QSSLCFG="negotiatetime",1,10\r',
    ):
        assert say(module, line) == b"\r\nOK\r\n", line
    assert say(module, b'AT+QSSLCFG="ciphersuite",1\r') == (
        b'\r\n+QSSLCFG: "ciphersuite",1,0XC030\r\n\r\nOK\r\n'
    )
    assert say(module, b'AT+QSSLCFG="ciphersuite",1,0X1234\r') == b"\r\nERROR\r\n"
    assert say(module, b'AT+QSSLCFG="negotiatetime",1,9\r') == b"\r\nERROR\r\n"
    assert b'+QSSLCFG: "checkhost",(0-5),(0,1)' in say(module, b"AT+QSSLCFG=?\r")
    tls = ssl_open(module).tls
    assert (tls.cipher_suite, tls.checkhost, tls.sni, tls.seclevel) == ("0XC030", True, True, 1)
    assert tls.cacert.name == "UFS:ca.pem" and tls.cacert.data is None  # not uploaded
    assert tls.module_time is None and tls.negotiate_time == 10.0  # ignorelocaltime 1
    say(module, b'AT+QSSLCFG="ignorelocaltime",1,0\r', now=5.0)
    tls = ssl_open(module, 1, now=5.0).tls
    assert tls.module_time == datetime(1980, 1, 6, 0, 0, 5, tzinfo=UTC).timestamp()


def test_older_firmware_has_no_checkhost_option() -> None:
    module = active(ModuleProfile(checkhost_option=False))
    assert say(module, b'AT+QSSLCFG="checkhost",1,1\r') == b"\r\nERROR\r\n"
    assert say(module, b'AT+QSSLCFG="checkhost",1\r') == b"\r\nERROR\r\n"
    assert b"checkhost" not in say(module, b"AT+QSSLCFG=?\r")


# -- the module clock, no pty --------------------------------------------------------------------


def test_the_clock_is_unset_at_power_on_and_runs_from_there() -> None:
    module = fresh()
    assert (
        say(module, b"AT+CCLK?\r", now=61.0) == b'\r\n+CCLK: "80/01/06,00:01:01+00"\r\n\r\nOK\r\n'
    )


def test_cclk_sets_the_clock_in_local_time_with_its_zone() -> None:
    module = fresh()
    assert say(module, b'AT+CCLK="26/05/09,12:00:00+08"\r', now=1.0) == b"\r\nOK\r\n"
    assert (
        say(module, b"AT+CCLK?\r", now=61.0) == b'\r\n+CCLK: "26/05/09,12:01:00+08"\r\n\r\nOK\r\n'
    )
    assert module.clock_utc(61.0) == datetime(2026, 5, 9, 10, 1, tzinfo=UTC)  # +08 = 2 h


@pytest.mark.parametrize(
    "value",
    [
        b'"26/13/09,12:00:00+00"',  # month 13
        b'"26/02/30,12:00:00+00"',
        b'"26/05/09,24:00:00+00"',
        b'"26/05/09,12:00:00"',  # no zone
        b'"26/05/09,12:00:00+57"',  # zone beyond +56 quarter hours
        b"26/05/09,12:00:00+00",  # unquoted: the comma splits it
        b'"2026/05/09,12:00:00+00"',
    ],
)
def test_cclk_refuses_a_malformed_time(value: bytes) -> None:
    module = fresh()
    assert say(module, b"AT+CCLK=" + value + b"\r") == b"\r\n+CME ERROR: 50\r\n"
    say(module, b"AT+CMEE=0\r")
    assert say(module, b"AT+CCLK=" + value + b"\r") == b"\r\nERROR\r\n"


def qlts(module: QuectelModule, command: bytes, now: float) -> bytes:
    reply = say(module, command, now=now)
    match = re.fullmatch(rb'\r\n\+QLTS: "(.*)"\r\n\r\nOK\r\n', reply)
    assert match is not None, reply
    return match[1]


def test_network_time_arrives_at_registration_and_sets_the_clock_with_ctzu() -> None:
    module = fresh(ModuleProfile(registered_after=10.0))
    assert say(module, b"AT+QLTS=?\r") == b"\r\n+QLTS: (0-2)\r\n\r\nOK\r\n"
    assert qlts(module, b"AT+QLTS\r", now=5.0) == b""  # not registered: no network time
    assert say(module, b"AT+CTZU?\r") == b"\r\n+CTZU: 0\r\n\r\nOK\r\n"
    module.tick(10.0)  # registered: the network sends its time (NITZ)
    # DEFAULT_NETWORK_EPOCH is 2026-01-01 00:00:00 UTC at now == 0.
    assert qlts(module, b"AT+QLTS\r", now=20.0) == b"2026/01/01,00:00:10+00,0"  # as sent
    assert qlts(module, b"AT+QLTS=1\r", now=20.0) == b"2026/01/01,00:00:20+00,0"  # now
    assert qlts(module, b"AT+QLTS=2\r", now=20.0) == b"2026/01/01,00:00:20+00,0"
    assert b'"80/01/06,' in say(module, b"AT+CCLK?\r", now=20.0)  # CTZU 0: the clock is its own
    assert say(module, b"AT+CTZU=1\r", now=30.0) == b"\r\nOK\r\n"  # registered: set at once
    assert module.clock_utc(30.0).timestamp() == DEFAULT_NETWORK_EPOCH + 30.0
    assert say(module, b"AT+CTZU=?\r") == b"\r\n+CTZU: (0,1,3)\r\n\r\nOK\r\n"
    assert say(module, b"AT+CTZU=2\r") == b"\r\n+CME ERROR: 50\r\n"


def test_ctzu_survives_a_reboot_and_the_clock_follows_the_network_at_registration() -> None:
    module = fresh(ModuleProfile(registered_after=10.0))
    say(module, b"AT+CTZU=1\r", now=1.0)
    module.network_time_offset = 3600.0  # the network is an hour ahead of UTC
    module.reboot(2.0)  # RTC kept, CTZU kept (saved to NV), registration again
    module.tick(2.0)
    module.take_output()
    assert module.clock_utc(3.0) == datetime(1980, 1, 6, 0, 0, 3, tzinfo=UTC)
    module.tick(12.0)
    assert module.clock_utc(12.0).timestamp() == DEFAULT_NETWORK_EPOCH + 12.0 + 3600.0
    module.power_on(20.0)  # power removed: the clock is unset again
    assert module.clock_utc(20.0) == datetime(1980, 1, 6, tzinfo=UTC)


def test_no_nitz_from_the_network_leaves_the_clock_and_qlts_empty() -> None:
    module = fresh(ModuleProfile(nitz=False))
    say(module, b"AT+CTZU=1\r", now=1.0)
    assert qlts(module, b"AT+QLTS=1\r", now=5.0) == b""
    assert b'"80/01/06,00:00:05+00"' in say(module, b"AT+CCLK?\r", now=5.0)


def test_regaining_coverage_brings_the_network_time_again() -> None:
    module = fresh()
    say(module, b"AT+CTZU=1\r", now=1.0)
    say(module, b'AT+CCLK="99/01/01,00:00:00+00"\r', now=2.0)  # the host sets a wrong time
    module.set_coverage(False, now=3.0)
    module.set_coverage(True, now=4.0)
    assert module.clock_utc(4.0).timestamp() == DEFAULT_NETWORK_EPOCH + 4.0


# -- through the pty, to real TLS servers --------------------------------------------------------

FINAL = re.compile(rb"\r\n(OK|ERROR|\+CME ERROR: [^\r]*)\r\n")
CONNECT = re.compile(rb"\r\nCONNECT\r\n|\r\n\+CME ERROR: [^\r]*\r\n")
PROMPT = re.compile(rb"\r\n> |\r\nERROR\r\n")
SEND_RESULT = re.compile(rb"\r\n(SEND OK|SEND FAIL|ERROR)\r\n")
RECV_HEADER = re.compile(rb"\r\n\+QSSLRECV: (\d+)\r\n|\r\nERROR\r\n")


class RawPort:
    """The host end of the simulator's pty, spoken to in raw AT: everything received is kept
    in :attr:`received`; a command's answer and its URCs are searched from where it was sent."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        self.received = bytearray()
        self.mark = 0  # where the answer to the last command starts

    def close(self) -> None:
        os.close(self.fd)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                await wait_writable(self.fd)

    async def wait_for(self, pattern: re.Pattern[bytes] | bytes) -> re.Match[bytes]:
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        async with asyncio.timeout(WAIT):
            while (match := regex.search(self.received, self.mark)) is None:
                await self._read_more()
        return match

    async def send(self, data: bytes, until: re.Pattern[bytes] = FINAL) -> bytes:
        self.mark = len(self.received)
        await self.write(data)
        match = await self.wait_for(until)
        return bytes(self.received[self.mark : match.end()])

    async def command(self, line: str, until: re.Pattern[bytes] = FINAL) -> bytes:
        return await self.send(line.encode() + b"\r", until)

    async def ok(self, line: str) -> None:
        answer = await self.command(line)
        assert answer.endswith(b"\r\nOK\r\n"), (line, answer)

    async def upload(self, name: str, data: bytes) -> None:
        assert (await self.command(f'AT+QFUPL="{name}",{len(data)},5', CONNECT)).endswith(
            b"CONNECT\r\n"
        )
        assert (await self.send(data)).endswith(b"\r\nOK\r\n")

    async def ssl_open(self, sock_id: int, host: str, port: int, ctx: int = 1) -> int:
        """AT+QSSLOPEN and the <err> of its URC."""
        await self.ok(f'AT+QSSLOPEN=1,{ctx},{sock_id},"{host}",{port},0')
        match = await self.wait_for(re.compile(rb"\+QSSLOPEN: %d,(\d+)\r\n" % sock_id))
        return int(match[1])

    async def ssl_send(self, sock_id: int, data: bytes) -> bytes:
        assert (await self.command(f"AT+QSSLSEND={sock_id},{len(data)}", PROMPT)).endswith(b"> ")
        return (await self.send(data, SEND_RESULT)).strip()

    async def ssl_recv(self, sock_id: int) -> bytes:
        """Everything buffered for ``sock_id`` (AT+QSSLRECV until +QSSLRECV: 0), each payload
        taken by its length, as it may hold "\\r\\nOK\\r\\n" (§9.1)."""
        data = bytearray()
        while True:
            await self.command(f"AT+QSSLRECV={sock_id},1500", RECV_HEADER)
            header = await self.wait_for(RECV_HEADER)
            assert header[1] is not None, bytes(self.received[self.mark :])
            length = int(header[1])
            tail = b"\r\n\r\nOK\r\n" if length else b"\r\nOK\r\n"
            end = header.end() + length + len(tail)
            async with asyncio.timeout(WAIT):
                while len(self.received) < end:
                    await self._read_more()
            assert self.received[end - len(tail) : end] == tail
            if length == 0:
                return bytes(data)
            data += self.received[header.end() : header.end() + length]

    async def _read_more(self) -> None:
        try:
            self.received += os.read(self.fd, 65536)
        except BlockingIOError:
            await wait_readable(self.fd)


@dataclass
class Certificates:
    pki: Pki
    ca: bytes  # the CSMS root, PEM, for the module's UFS
    client_cert: bytes  # a charge point certificate (security profile 3) and its key
    client_key: bytes


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    client = pki.client("CP-SSL-1")
    return Certificates(pki, pki.ca.read_bytes(), client.cert.read_bytes(), client.key.read_bytes())


class TlsServer:
    """A real TLS server on 127.0.0.1 that echoes; or first says ``greeting`` and hangs up; or,
    ``silent``, reads and never answers (with no ``context``: a TCP server that never starts
    the handshake)."""

    def __init__(
        self,
        context: ssl.SSLContext | None,
        *,
        greeting: bytes = b"",
        hang_up: bool = False,
        silent: bool = False,
    ) -> None:
        self.context = context
        self.greeting = greeting
        self.hang_up = hang_up
        self.silent = silent
        self.port = 0
        self.received = bytearray()  # plaintext from the module
        self.server_names: list[str | None] = []  # SNI of each handshake
        self.ended = asyncio.Event()  # a connection has ended
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> TlsServer:
        if self.context is not None:
            self.context.sni_callback = self._sni
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()

    def _sni(self, _conn: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        self.server_names.append(name)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            if self.greeting:
                writer.write(self.greeting)
                await writer.drain()
            if not self.hang_up:
                while data := await reader.read(65536):
                    self.received += data
                    if not self.silent:
                        writer.write(data)
                        await writer.drain()
        except OSError:
            pass  # ssl.SSLError included: the module went away
        finally:
            writer.close()
            self.ended.set()


def server_context(
    files: ServerFiles,
    *,
    client_ca: Path | None = None,
    version: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    if version is not None:
        context.minimum_version = context.maximum_version = version
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


@contextlib.asynccontextmanager
async def module_port(
    profile: ModuleProfile | None = None, **shell: object
) -> AsyncIterator[tuple[SimulatorShell, RawPort]]:
    hosts = {"csms.test": "127.0.0.1", "csms.elsewhere.test": "127.0.0.1"}
    async with SimulatorShell(QuectelModule(profile), hosts=hosts, **shell) as sim:  # type: ignore[arg-type]
        port = RawPort(sim.path)
        try:
            await sim.wait_until_booted()
            await port.ok("ATE0")
            await port.ok("AT+QIACT=1")
            yield sim, port
        finally:
            port.close()


async def trust(port: RawPort, ca: bytes, ctx: int = 1, **options: object) -> None:
    """The CA file on the module and SSL context ``ctx`` verifying the server with it."""
    await port.upload("UFS:ca.pem", ca)
    await port.ok(f'AT+QSSLCFG="cacert",{ctx},"UFS:ca.pem"')
    await port.ok(f'AT+QSSLCFG="seclevel",{ctx},1')
    for option, value in options.items():
        await port.ok(f'AT+QSSLCFG="{option}",{ctx},{value}')


@contextlib.contextmanager
def shell_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger=SHELL_LOG):
        yield caplog


async def test_plaintext_round_trips_through_real_tls_and_only_records_cross_the_network(
    certificates: Certificates,
) -> None:
    payload = b"GET /ocpp HTTP/1.1\r\n\r\nOK\r\n" + bytes(range(256))
    async with TlsServer(server_context(certificates.pki.server)) as server:
        proxy = TcpProxy(server.port)
        await proxy.start()
        try:
            async with module_port() as (_sim, port):
                await trust(port, certificates.ca)
                assert await port.ssl_open(0, "127.0.0.1", proxy.port) == 0
                assert await port.ssl_send(0, payload) == b"SEND OK"
                await port.wait_for(b'+QSSLURC: "recv",0\r\n')
                echoed = bytearray()
                while len(echoed) < len(payload):  # one URC until drained, then a new one
                    echoed += await port.ssl_recv(0)
                    if len(echoed) < len(payload):
                        await port.wait_for(b'+QSSLURC: "recv",0\r\n')
                assert echoed == payload
                await port.ok("AT+QSSLCLOSE=0")
                async with asyncio.timeout(WAIT):
                    await server.ended.wait()  # close_notify and FIN reached the server
                assert await port.command("AT+QSSLSTATE") == b"\r\nOK\r\n"
        finally:
            await proxy.stop()
    assert bytes(server.received) == payload
    assert proxy.from_client.startswith(b"\x16\x03")  # a TLS handshake record
    assert b"GET /ocpp" not in proxy.from_client


@pytest.mark.parametrize("ca", ["untrusted", "missing"])
async def test_a_server_the_ca_does_not_vouch_for_fails_with_566(
    certificates: Certificates, caplog: pytest.LogCaptureFixture, ca: str
) -> None:
    async with (
        TlsServer(server_context(certificates.pki.untrusted_server)) as server,
        module_port() as (_sim, port),
    ):
        if ca == "untrusted":
            await trust(port, certificates.ca)
        else:
            await port.ok('AT+QSSLCFG="cacert",1,"UFS:nothere.pem"')
            await port.ok('AT+QSSLCFG="seclevel",1,1')
        with shell_log(caplog):
            assert await port.ssl_open(0, "127.0.0.1", server.port) == 566
        # The failed id stays taken (Closing) until AT+QSSLCLOSE (§9.11).
        assert b',4,1,0,0,"uart1",1\r\n' in await port.command("AT+QSSLSTATE=0")
        await port.ok("AT+QSSLCLOSE=0")
    reason = "certificate verify failed" if ca == "untrusted" else "'UFS:nothere.pem' is not"
    assert reason in caplog.text


async def test_certificate_dates_are_checked_against_the_module_clock_only_when_asked(
    certificates: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        TlsServer(server_context(certificates.pki.expired_server)) as expired,
        TlsServer(server_context(certificates.pki.server)) as valid,
        module_port() as (_sim, port),
    ):
        await trust(port, certificates.ca)
        # ignorelocaltime 1 (the default): an expired certificate is accepted.
        assert await port.ssl_open(0, "127.0.0.1", expired.port) == 0
        await port.ok('AT+QSSLCFG="ignorelocaltime",1,0')
        with shell_log(caplog):
            # The clock is unset (1980): even a valid certificate is not yet valid.
            assert await port.ssl_open(1, "127.0.0.1", valid.port) == 566
        assert "the module clock says 1980-01-06" in caplog.text
        await port.ok("AT+CTZU=1")  # registered: the network's (true) time sets the clock
        assert b'+CCLK: "80/' not in await port.command("AT+CCLK?")
        assert await port.ssl_open(2, "127.0.0.1", valid.port) == 0
        assert await port.ssl_open(3, "127.0.0.1", expired.port) == 566


async def test_checkhost_compares_the_certificate_with_the_host_given_to_qsslopen(
    certificates: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        TlsServer(server_context(certificates.pki.wrong_host_server)) as server,
        module_port() as (_sim, port),
    ):
        await trust(port, certificates.ca)
        assert await port.ssl_open(0, "127.0.0.1", server.port) == 0  # checkhost 0
        await port.ok('AT+QSSLCFG="checkhost",1,1')
        with shell_log(caplog):
            assert await port.ssl_open(1, "127.0.0.1", server.port) == 566
        assert "does not name '127.0.0.1'" in caplog.text
        assert await port.ssl_open(2, "csms.elsewhere.test", server.port) == 0


async def test_sni_is_sent_only_when_configured(certificates: Certificates) -> None:
    async with (
        TlsServer(server_context(certificates.pki.server)) as server,
        module_port() as (_sim, port),
    ):
        await trust(port, certificates.ca, checkhost=1)
        assert await port.ssl_open(0, "csms.test", server.port) == 0
        await port.ok('AT+QSSLCFG="sni",1,1')
        assert await port.ssl_open(1, "csms.test", server.port) == 0
    assert server.server_names == [None, "csms.test"]


@pytest.mark.parametrize("sslversion", [3, 4])
async def test_a_server_demanding_a_client_certificate_gets_it_with_seclevel_2(
    certificates: Certificates, caplog: pytest.LogCaptureFixture, sslversion: int
) -> None:
    context = server_context(certificates.pki.server, client_ca=certificates.pki.cpo_ca)
    async with TlsServer(context) as server, module_port() as (_sim, port):
        await trust(port, certificates.ca, sslversion=sslversion)
        with shell_log(caplog):
            # seclevel 1 presents no certificate: TLS 1.2 fails in the handshake, TLS 1.3
            # right after it; either way the open fails.
            assert await port.ssl_open(0, "127.0.0.1", server.port) == 566
        assert "566" in caplog.text
        await port.upload("UFS:cp.pem", certificates.client_cert)
        await port.upload("UFS:cp.key", certificates.client_key)
        await port.ok('AT+QSSLCFG="clientcert",1,"UFS:cp.pem"')
        await port.ok('AT+QSSLCFG="clientkey",1,"UFS:cp.key"')
        await port.ok('AT+QSSLCFG="seclevel",1,2')
        assert await port.ssl_open(1, "127.0.0.1", server.port) == 0
        assert await port.ssl_send(1, b"profile 3") == b"SEND OK"
        await port.wait_for(b'+QSSLURC: "recv",1\r\n')
        assert await port.ssl_recv(1) == b"profile 3"


@pytest.mark.parametrize(
    ("sslversion", "suite", "server_version", "server_ciphers", "expected"),
    [
        (3, "0XC02F", ssl.TLSVersion.TLSv1_2, None, 0),
        (4, "0XFFFF", ssl.TLSVersion.TLSv1_3, None, 0),
        (3, "0XFFFF", ssl.TLSVersion.TLSv1_3, None, 566),  # TLS 1.2 only against 1.3 only
        (0, "0XFFFF", None, None, 566),  # SSL 3.0 is not to be had
        (3, "0XC02F", ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES256-GCM-SHA384", 566),
        (3, "0XC030", ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES256-GCM-SHA384", 0),
        (3, "0x009c", ssl.TLSVersion.TLSv1_2, "AES128-GCM-SHA256", 0),
        (3, "0X0005", ssl.TLSVersion.TLSv1_2, None, 566),  # RC4: not in this OpenSSL
    ],
)
async def test_versions_and_cipher_suites_must_meet_the_server(
    certificates: Certificates,
    sslversion: int,
    suite: str,
    server_version: ssl.TLSVersion | None,
    server_ciphers: str | None,
    expected: int,
) -> None:
    context = server_context(
        certificates.pki.server, version=server_version, ciphers=server_ciphers
    )
    async with TlsServer(context) as server, module_port() as (_sim, port):
        await trust(port, certificates.ca, sslversion=sslversion, ciphersuite=suite)
        assert await port.ssl_open(0, "127.0.0.1", server.port) == expected


async def test_a_server_that_never_finishes_the_handshake_fails_after_negotiatetime(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        TlsServer(None, silent=True) as silent,
        module_port(tls_time_scale=0.01) as (_sim, port),
    ):
        await port.ok('AT+QSSLCFG="negotiatetime",1,10')
        with shell_log(caplog):
            assert await port.ssl_open(0, "127.0.0.1", silent.port) == 566
    assert 'no TLS handshake within "negotiatetime" 10 s' in caplog.text


async def test_refused_and_unresolvable_servers_fail_as_qiopen_does(
    certificates: Certificates,
) -> None:
    async with TlsServer(server_context(certificates.pki.server)) as server:
        closed_port = server.port
    async with module_port(dns_failures={"nowhere.test"}) as (_sim, port):
        assert await port.ssl_open(0, "127.0.0.1", closed_port) == 566
        assert await port.ssl_open(1, "nowhere.test", 443) == 565


async def test_server_close_says_closed_and_keeps_the_id_until_qsslclose(
    certificates: Certificates,
) -> None:
    server_ctx = server_context(certificates.pki.server)
    async with (
        TlsServer(server_ctx, greeting=b"bye now", hang_up=True) as server,
        module_port() as (_sim, port),
    ):
        await trust(port, certificates.ca)
        assert await port.ssl_open(0, "127.0.0.1", server.port) == 0
        await port.wait_for(b'+QSSLURC: "closed",0\r\n')
        assert b'+QSSLURC: "recv",0\r\n' in port.received
        assert await port.ssl_recv(0) == b"bye now"  # still readable while Closing
        assert b",4,1,0,0," in await port.command("AT+QSSLSTATE=0")
        assert (await port.command('AT+QSSLOPEN=1,1,0,"127.0.0.1",1,0')).endswith(b"OK\r\n")
        await port.wait_for(b"+QSSLOPEN: 0,563\r\n")
        await port.ok("AT+QSSLCLOSE=0")
        assert await port.ssl_open(0, "127.0.0.1", server.port) == 0


async def test_pdp_deactivation_drops_the_tls_connection_with_pdpdeact_only(
    certificates: Certificates,
) -> None:
    async with (
        TlsServer(server_context(certificates.pki.server)) as server,
        module_port() as (sim, port),
    ):
        await trust(port, certificates.ca)
        assert await port.ssl_open(0, "127.0.0.1", server.port) == 0
        port.mark = len(port.received)
        sim.deactivate_pdp(1)
        await port.wait_for(b'+QIURC: "pdpdeact",1\r\n')
        async with asyncio.timeout(WAIT):
            await server.ended.wait()
        assert b"+QSSLURC" not in port.received[port.mark :]
        assert b",4,1,0,0," in await port.command("AT+QSSLSTATE=0")


async def test_a_blackholed_ssl_connection_hears_and_says_nothing(
    certificates: Certificates,
) -> None:
    server_ctx = server_context(certificates.pki.server)
    async with (
        TlsServer(server_ctx, greeting=b"lost", hang_up=True) as server,
        module_port() as (sim, port),
    ):
        await trust(port, certificates.ca)
        sim.blackhole(0)
        assert await port.ssl_open(0, "127.0.0.1", server.port) == 0
        mark = len(port.received)
        async with asyncio.timeout(WAIT):
            await server.ended.wait()
            # The shell has read the greeting and the end of the connection off the network
            # (its receive task is over); the module must have been told of neither.
            await asyncio.gather(*sim._connections[0].tasks[:1], return_exceptions=True)
        assert await port.command("AT+QSSLRECV=0,1500") == b"\r\n+QSSLRECV: 0\r\n\r\nOK\r\n"
        assert b"+QSSLURC" not in port.received[mark:]
        assert b",2,1,0,0," in await port.command("AT+QSSLSTATE=0")  # still "connected"
