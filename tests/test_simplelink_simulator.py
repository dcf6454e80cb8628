"""The simulated TI SimpleLink CC3220 (transport/simulator/simplelink*.py) against its wire
contract, transport/modems/simplelink_wire.md ("SPEC §n"), and TI's AT command guide
([guide] Table n).

Two levels: the command interpreter byte for byte with no pty and no clock (the time is passed
in), and raw AT through the real pty of a SimulatorShell to real TCP, TLS and HTTP servers on
127.0.0.1 (certificates from tests/pki.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import ssl
import subprocess
import sys
import tty
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.pki import Pki, ServerFiles, make_pki
from transport.fd_ready import wait_readable, wait_writable
from transport.simulator import AccessPoint, SimpleLinkModule, SimulatorShell, WifiProfile
from transport.simulator.file_server import FileServer
from transport.simulator.network_actions import CloseTcp, OpenSsl, OpenTcp, Resolve, SendTcp
from transport.simulator.open_failure import FailureKind, OpenFailure
from transport.simulator.simplelink_files import StoredFile
from transport.simulator.tls import TlsSettings

WAIT = 10.0  # s: the longest any single answer or event may take before the test fails
JOIN = 'AT+WlanConnect="SiteNet",,WPA_WPA2,charge-point-wifi,,,'
ACQUIRED = b"+eventnetapp:ipv4_acquired,192.168.50.23,192.168.50.1,192.168.50.1\r\n"


# -- the command interpreter, no pty -------------------------------------------------------------


def fresh(profile: WifiProfile | None = None) -> SimpleLinkModule:
    module = SimpleLinkModule(profile)
    module.tick(0.0)
    assert module.booted
    assert module.take_output() == []  # power-on prints nothing (SPEC §3)
    return module


def say(module: SimpleLinkModule, line: str | bytes, now: float = 1.0) -> bytes:
    """What the module says to ``line`` by ``now`` (its timers due by then run too)."""
    data = line.encode("latin-1") + b"\r" if isinstance(line, str) else line
    module.receive(data, now)
    module.tick(now)
    return out(module)


def out(module: SimpleLinkModule) -> bytes:
    return b"".join(module.take_output())


def joined(profile: WifiProfile | None = None) -> SimpleLinkModule:
    module = fresh(profile)
    assert say(module, JOIN) == (
        b"OK\r\n+eventwlan:connect,SiteNet,a0:b1:c2:d3:e4:f5\r\n" + ACQUIRED
    )
    return module


def connected(
    profile: WifiProfile | None = None, secure: bool = False
) -> tuple[SimpleLinkModule, int]:
    module = joined(profile)
    kind = "SEC" if secure else "TCP"
    assert say(module, f"AT+Socket=INET,STREAM,{kind}") == b"+socket:0\r\nOK\r\n"
    assert say(module, "AT+Connect=0,INET,8080,127.0.0.1") == b"OK\r\n"
    [action] = module.take_actions()
    assert (action.socket_id, action.host, action.port) == (0, "127.0.0.1", 8080)  # type: ignore[union-attr]
    module.tcp_opened(0, 40000)
    if not secure:
        assert out(module) == b"+connect:8080,127.0.0.1\r\nOK\r\n"
    return module, 0


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def send_line(sd: int, data: bytes) -> str:
    return f"AT+Send={sd},1,{len(b64(data))},{b64(data)}"


def test_power_on_is_silent_and_commands_answer_without_echo_in_any_case() -> None:
    module = fresh()
    assert say(module, "AT+Test") == b"OK\r\n"
    assert say(module, "at+TEST") == b"OK\r\n"  # names are case-insensitive (SPEC §1)
    # CR, LF or CRLF end a line; empty lines are nothing (SPEC §1).
    assert say(module, b"AT+Test\nAT+Test\r\n\r\n\nAT+Test\r") == b"OK\r\nOK\r\nOK\r\n"


def test_unknown_and_unmodelled_commands_say_error_never_ok() -> None:
    module = fresh()
    assert say(module, "AT+NoSuch=1") == b"ERROR:command not exist,-1\r\n"
    assert say(module, "AT") == b"ERROR:command not exist,-1\r\n"
    assert say(module, "hello") == b"ERROR:command not exist,-1\r\n"
    # In the guide, not modelled: an ERROR with a process code, never a silent OK.
    for line in ("AT+MqttCreate=a,b", "AT+Bind=0,INET,80,0.0.0.0", "AT+WlanSetMode=AP"):
        assert say(module, line) == b"ERROR:process command,-1\r\n", line
    assert say(module, "AT+Socket=INET,DGRAM,UDP") == b"ERROR:process command,-1\r\n"


def test_version_time_and_addresses() -> None:
    module = fresh()
    assert say(module, "AT+Get=General,Version") == (
        b"+get:0x31100019,3.7.0.1,2.2.0.7,3.7.0.1,0x2222\r\nOK\r\n"
    )
    # The clock starts at 2013-01-01 00:00:00 at power-on and runs (SPEC §3).
    assert say(module, "AT+Get=General,Time", now=61.0) == b"+get:0,1,1,1,1,2013\r\nOK\r\n"
    assert say(module, "AT+Set=General,Time,13,45,30,24,12,2026", now=100.0) == b"OK\r\n"
    assert say(module, "AT+Get=General,Time", now=110.0) == b"+get:13,45,40,24,12,2026\r\nOK\r\n"
    assert say(module, "AT+Set=General,Time,25,0,0,1,1,2026") == b"ERROR:parse parameters,-1\r\n"
    assert say(module, "AT+NetCfgGet=GET_MAC_ADDR") == b"+netcfgget:d4:36:39:5a:3c:11\r\nOK\r\n"
    assert say(module, "AT+NetCfgGet=IPV4_STA_ADDR") == (
        b"+netcfgget:DHCP,0.0.0.0,0.0.0.0,0.0.0.0,0.0.0.0\r\nOK\r\n"
    )
    say(module, JOIN, now=120.0)
    assert say(module, "AT+NetCfgGet=IPV4_STA_ADDR", now=120.0) == (
        b"+netcfgget:DHCP,192.168.50.23,255.255.255.0,192.168.50.1,192.168.50.1\r\nOK\r\n"
    )


# -- blocked commands (SPEC §2) --


def test_a_command_queued_behind_a_blocked_select_runs_after_its_result() -> None:
    module, sd = connected()
    # One write: the Select blocks, the Test and the Recv wait their turn.
    module.receive(b"AT+Select=1,0,5,0\rAT+Test\rAT+Recv=0,1,100\r", 1.0)
    assert out(module) == b"OK\r\n"
    assert module.next_deadline() == 6.0
    module.tcp_received(sd, b"data")
    assert out(module) == (
        b"+select:0\r\nOK\r\nOK\r\nOK\r\n+recv:0,1,8,ZGF0YQ==\r\nOK\r\n"
    )  # Select's result, Test's OK, Recv's OK and its result


def test_select_times_out_empty_and_a_zero_timeout_returns_at_once() -> None:
    module, _ = connected()
    assert say(module, "AT+Select=1,0,2,500000", now=1.0) == b"OK\r\n"
    assert say(module, "AT+Test", now=2.0) == b""  # blocked: queued
    assert module.next_deadline() == 3.5
    module.tick(3.5)
    assert out(module) == b"+select:\r\nOK\r\nOK\r\n"
    assert say(module, "AT+Select=1,0,0,0", now=4.0) == b"OK\r\n+select:\r\nOK\r\n"


def test_select_wakes_on_data_and_on_peer_close_and_lists_only_readable_sockets() -> None:
    module, _ = connected()
    assert say(module, "AT+Socket=INET,STREAM,TCP") == b"+socket:1\r\nOK\r\n"
    say(module, "AT+Connect=1,INET,8081,127.0.0.1")
    module.take_actions()
    module.tcp_opened(1, 40001)
    out(module)
    assert say(module, "AT+Select=2,0|1,10,0") == b"OK\r\n"
    module.tcp_closed(1)
    assert out(module) == b"+select:1\r\nOK\r\n"
    module.tcp_received(0, b"x")
    assert say(module, "AT+Select=2,[0|1],10,0") == b"OK\r\n+select:0|1\r\nOK\r\n"


def test_select_wakes_when_wifi_is_lost() -> None:
    module, _ = connected()
    assert say(module, "AT+Select=1,0,30,0") == b"OK\r\n"
    module.set_coverage(False, now=2.0)
    assert out(module) == (
        b"+eventwlan:disconnect,SiteNet,a0:b1:c2:d3:e4:f5,4\r\n+select:0\r\nOK\r\n"
    )
    assert module.take_actions() == [CloseTcp(0, abort=True)]
    assert say(module, "AT+Recv=0,1,100") == b"OK\r\nERROR:process command,-107\r\n"


def test_select_parse_and_process_errors() -> None:
    module, _ = connected()
    assert say(module, "AT+Select=1,0,5") == b"ERROR:parse parameters,-1\r\n"  # only line
    # nfds is the highest sd plus one (SPEC, simulator's note): socket 1 is not below 1.
    assert say(module, "AT+Select=1,1,5,0") == b"ERROR:parse parameters,-1\r\n"
    assert say(module, "AT+Select=4,0|3,5,0") == b"OK\r\nERROR:process command,-9\r\n"


# -- sockets (SPEC §5) --


def test_socket_numbers_and_limits() -> None:
    module = joined()
    for sd in range(6):
        assert say(module, "AT+Socket=INET,STREAM,SEC") == f"+socket:{sd}\r\nOK\r\n".encode()
    assert say(module, "AT+Socket=INET,STREAM,SEC") == b"ERROR:process command,-460\r\n"
    for sd in range(6, 16):
        assert say(module, "AT+Socket=inet,stream,tcp") == f"+socket:{sd}\r\nOK\r\n".encode()
    assert say(module, "AT+Socket=INET,STREAM,TCP") == b"ERROR:process command,-10\r\n"
    assert say(module, "AT+Close=3") == b"+close:3\r\nOK\r\n"
    assert say(module, "AT+Socket=INET,STREAM,TCP") == b"+socket:3\r\nOK\r\n"  # lowest free
    assert say(module, "AT+Close=3") == b"+close:3\r\nOK\r\n"
    assert say(module, "AT+Close=3") == b"ERROR:process command,-9\r\n"
    assert say(module, "AT+Socket=INET,STREAM") == b"ERROR:parse parameters,-1\r\n"


def test_connect_result_and_failures_by_their_reasons() -> None:
    module = joined()
    say(module, "AT+Socket=INET,STREAM,TCP")
    assert say(module, "AT+Connect=0,INET,80,csms.test") == b"ERROR:parse parameters,-1\r\n"
    assert say(module, "AT+Connect=5,INET,80,127.0.0.1") == b"OK\r\nERROR:process command,-9\r\n"
    for kind, code in [
        (FailureKind.REFUSED, -111),
        (FailureKind.TIMEOUT, -110),
        (FailureKind.UNREACHABLE, -101),
    ]:
        assert say(module, "AT+Connect=0,INET,80,[127.0.0.1]") == b"OK\r\n"
        assert module.take_actions() == [OpenTcp(0, "127.0.0.1", 80)]
        assert module.connect_failed(0, OpenFailure(kind, "test")) == str(code)
        assert out(module) == f"ERROR:process command,{code}\r\n".encode()
        # A failed socket is dead until the host closes it.
        assert say(module, "AT+Select=1,0,0,0") == b"OK\r\n+select:0\r\nOK\r\n"
        say(module, "AT+Close=0")
        say(module, "AT+Socket=INET,STREAM,TCP")
    module.set_coverage(False, now=2.0)
    assert out(module) == b"+eventwlan:disconnect,SiteNet,a0:b1:c2:d3:e4:f5,4\r\n"
    assert say(module, "AT+Connect=0,INET,80,127.0.0.1") == b"OK\r\nERROR:process command,-101\r\n"


def test_send_takes_base64_and_binary_survives_the_line_framing() -> None:
    module, sd = connected()
    payload = b"\r\nOK\r\n\x00\x01AT+Test\r\x00" + bytes(range(256))
    assert say(module, send_line(sd, payload)) == b"OK\r\n"
    assert module.take_actions() == [SendTcp(sd, payload)]
    module.tcp_received(sd, payload)
    reply = say(module, "AT+Recv=0,1,1460")
    match = re.fullmatch(rb"OK\r\n\+recv:0,1,(\d+),([A-Za-z0-9+/=]+)\r\nOK\r\n", reply)
    assert match is not None, reply
    assert int(match[1]) == len(match[2])  # the length counts base64 characters (SPEC §1)
    assert base64.b64decode(match[2]) == payload


def test_send_refusals() -> None:
    module, sd = connected()
    most = bytes(1460)
    assert say(module, send_line(sd, most)) == b"OK\r\n"
    assert say(module, send_line(sd, most + b"!")) == b"ERROR:parse parameters,-1\r\n"
    assert say(module, "AT+Send=0,1,8,aGVsbG8") == b"ERROR:parse parameters,-1\r\n"  # length
    assert say(module, "AT+Send=0,1,8,aGVsbG8*") == b"ERROR:parse parameters,-1\r\n"  # base64
    assert say(module, "AT+Send=7,1,8,aGVsbG8h") == b"ERROR:process command,-9\r\n"
    say(module, "AT+Socket=INET,STREAM,TCP")
    assert say(module, "AT+Send=1,1,8,aGVsbG8h") == b"ERROR:process command,-107\r\n"
    # Format 0: <length> bytes after the comma, as far as a line goes (SPEC §1).
    module.take_actions()
    assert say(module, "AT+Send=0,0,5,hello") == b"OK\r\n"
    assert module.take_actions() == [SendTcp(sd, b"hello")]


def test_a_full_send_buffer_holds_the_ok_and_the_module() -> None:
    module, sd = connected()
    piece = bytes(1024)
    for _ in range(8):  # 8 KiB: the send buffer (SPEC §5), nothing acknowledged yet
        assert say(module, send_line(sd, piece)) == b"OK\r\n"
    assert say(module, send_line(sd, piece), now=2.0) == b""  # held: sl_Send blocks
    assert say(module, "AT+Test", now=2.0) == b""  # and nothing else runs meanwhile
    module.tcp_sent(sd, 512)
    assert out(module) == b""  # not room enough yet
    module.tcp_sent(sd, 512)
    assert out(module) == b"OK\r\nOK\r\n"
    assert len(module.take_actions()) == 9


def test_a_held_send_fails_when_the_connection_dies_or_never_drains() -> None:
    module, sd = connected(WifiProfile(send_buffer=1024))
    say(module, send_line(sd, bytes(1000)))
    assert say(module, send_line(sd, bytes(100))) == b""
    module.drop_connection(sd)
    assert out(module) == b"ERROR:process command,-107\r\n"
    module, sd = connected(WifiProfile(send_buffer=1024, send_block_timeout=5.0))
    module.refused_sends.add(sd)  # the network takes nothing more (shell.refuse_sends)
    say(module, send_line(sd, bytes(1000)), now=1.0)
    assert module.take_actions() == []  # nothing sent
    assert say(module, send_line(sd, bytes(100)), now=1.0) == b""
    module.tick(6.0)
    assert out(module) == b"ERROR:process command,-110\r\n"


def test_a_delayed_send_result_holds_the_module_once() -> None:
    module, sd = connected()
    module.send_result_delay = 3.0
    assert say(module, send_line(sd, b"hi"), now=1.0) == b""
    assert say(module, "AT+Test", now=2.0) == b""
    module.tick(4.0)
    assert out(module) == b"OK\r\nOK\r\n"
    assert say(module, send_line(sd, b"hi"), now=5.0) == b"OK\r\n"


def test_recv_gives_at_most_what_was_asked_then_zero_after_the_peer_closed() -> None:
    module, sd = connected()
    module.tcp_received(sd, b"0123456789")
    assert say(module, "AT+Recv=0,1,4") == b"OK\r\n+recv:0,1,8,MDEyMw==\r\nOK\r\n"
    assert say(module, "AT+Recv=0,0,100") == b"OK\r\n+recv:0,0,6,456789\r\nOK\r\n"
    assert say(module, "AT+Recv=0,1,1461") == b"ERROR:parse parameters,-1\r\n"
    assert say(module, "AT+Recv=0,1,0") == b"ERROR:parse parameters,-1\r\n"
    assert say(module, "AT+Recv=0,1,100") == b"OK\r\n"  # no data: it blocks (SPEC §5)
    module.tcp_received(sd, b"late")
    assert out(module) == b"+recv:0,1,8,bGF0ZQ==\r\nOK\r\n"
    module.tcp_received(sd, b"last")
    module.tcp_closed(sd)
    assert say(module, "AT+Recv=0,1,100") == b"OK\r\n+recv:0,1,8,bGFzdA==\r\nOK\r\n"
    assert say(module, "AT+Recv=0,1,100") == b"OK\r\n+recv:0,1,0,\r\nOK\r\n"
    assert say(module, "AT+Send=0,1,4,aGkh") == b"ERROR:process command,-107\r\n"
    assert say(module, "AT+Close=0") == b"+close:0\r\nOK\r\n"
    assert module.take_actions() == []  # the server had closed


def test_recv_timeout_follows_rcvtimeo() -> None:
    module, _ = connected()
    assert say(module, "AT+SetSockOpt=0,SOCKET,RCVTIMEO,2,500000") == b"OK\r\n"
    assert say(module, "AT+Recv=0,1,100", now=1.0) == b"OK\r\n"
    module.tick(3.5)
    assert out(module) == b"ERROR:process command,-11\r\n"


def test_setsockopt_becomes_the_tls_settings_of_the_connect() -> None:
    module = joined()
    module.files["/cert/csms-ca.pem"] = _stored(b"CA PEM")
    say(module, "AT+Socket=INET,STREAM,SEC")
    for option in (
        "SECMETHOD,TLSV1_2",
        "SECURE_MASK,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256|TLS_RSA_WITH_AES_256_CBC_SHA",
        "SECURE_FILES_CA_FILE_NAME,/cert/csms-ca.pem",
        "SECURE_FILES_CERTIFICATE_FILE_NAME,/cert/client.pem",
        "SECURE_FILES_PRIVATE_KEY_FILE_NAME,/cert/client-key.pem",
        "SECURE_DOMAIN_NAME_VERIFICATION,csms.test",
        "KEEPALIVE,1",
    ):
        assert say(module, f"AT+SetSockOpt=0,SOCKET,{option}") == b"OK\r\n", option
    for bad in ("SECMETHOD,TLSV9", "SECURE_MASK,NOPE"):
        assert say(module, f"AT+SetSockOpt=0,SOCKET,{bad}") == b"ERROR:parse parameters,-1\r\n"
    assert say(module, "AT+SetSockOpt=9,SOCKET,KEEPALIVE,1") == b"ERROR:process command,-9\r\n"
    assert say(module, "AT+SetSockOpt=0,SOCKET,LINGER,1,5") == b"ERROR:process command,-1\r\n"
    assert say(module, "AT+Connect=0,INET,443,127.0.0.1", now=100.0) == b"OK\r\n"
    [action] = module.take_actions()
    assert isinstance(action, OpenSsl)
    tls: TlsSettings = action.tls
    assert (tls.host, tls.sni, tls.checkhost, tls.seclevel, tls.version) == (
        "csms.test",
        True,
        True,
        2,
        3,
    )
    assert tls.ciphers == "ECDHE-RSA-AES128-GCM-SHA256:AES256-SHA"
    assert tls.cacert.data == b"CA PEM"
    assert tls.clientcert.data is None  # named, not on the module: -457 at the handshake
    assert tls.module_time == datetime(2013, 1, 1, tzinfo=UTC).timestamp() + 100.0
    assert tls.date_is_warning


def test_tls_failures_read_as_the_spec_codes_and_warnings_leave_the_socket_connected() -> None:
    codes = {
        FailureKind.TLS_UNKNOWN_CA: -688,
        FailureKind.TLS_HOSTNAME: -722,
        FailureKind.TLS_NO_CA_FILE: -454,
        FailureKind.TLS_BAD_CA_FILE: -456,
        FailureKind.TLS_BAD_CLIENT_CERT: -457,
        FailureKind.TLS_BAD_CLIENT_KEY: -458,
        FailureKind.TLS_HANDSHAKE: -340,
        FailureKind.TLS_TIMEOUT: -462,
    }
    for kind, code in codes.items():
        module = joined()
        say(module, "AT+Socket=INET,STREAM,SEC")
        say(module, "AT+SetSockOpt=0,SOCKET,SECURE_FILES_CA_FILE_NAME,/cert/ca.pem")
        say(module, "AT+Connect=0,INET,443,127.0.0.1")
        assert module.connect_failed(0, OpenFailure(kind, "test")) == str(code)
        assert out(module) == f"ERROR:process command,{code}\r\n".encode(), kind
    module = joined()
    say(module, "AT+Socket=INET,STREAM,SEC")
    say(module, "AT+SetSockOpt=0,SOCKET,SECURE_FILES_CA_FILE_NAME,/cert/ca.pem")
    say(module, "AT+Connect=0,INET,443,127.0.0.1")
    module.tcp_opened(0, 40000, OpenFailure(FailureKind.TLS_DATE, "expired"))
    assert out(module) == b"ERROR:process command,-461\r\n"
    assert say(module, send_line(0, b"still up")) == b"OK\r\n"  # connected all the same
    # No CA file named: connected without verification, and told so (ESECSNOVERIFY).
    say(module, "AT+Socket=INET,STREAM,SEC")
    say(module, "AT+Connect=1,INET,443,127.0.0.1")
    module.tcp_opened(1, 40001)
    assert out(module) == b"ERROR:process command,-453\r\n"
    # The TLS server's close_notify is announced (SPEC §5).
    module.tcp_closed(0, close_notify=True)
    assert out(module) == b"+eventsock:async_event,0,other_side_close_ssl,0\r\n"


def test_gethostbyname_asks_the_network_and_fails_with_159() -> None:
    module = fresh()
    assert say(module, "AT+NetAPPGetHostByName=csms.test,INET") == (
        b"OK\r\nERROR:process command,-101\r\n"  # no IP address yet
    )
    say(module, JOIN)
    assert say(module, "AT+NetAPPGetHostByName=csms.test,INET") == b"OK\r\n"
    [action] = module.take_actions()
    assert isinstance(action, Resolve)
    assert action.name == "csms.test"
    assert say(module, "AT+Test") == b""  # blocked
    module.name_resolved(action.request_id, "10.1.2.3")
    assert out(module) == b"+netappgethostbyname:csms.test,10.1.2.3\r\nOK\r\nOK\r\n"
    say(module, "AT+NetAPPGetHostByName=nowhere.test,INET")
    [action] = module.take_actions()
    assert isinstance(action, Resolve)
    module.name_resolved(action.request_id, None)
    assert out(module) == b"ERROR:process command,-159\r\n"
    assert say(module, "AT+NetAPPGetHostByName=csms.test") == b"ERROR:parse parameters,-1\r\n"


def test_response_delay_and_a_muted_module() -> None:
    module = fresh()
    module.response_delay = 0.5
    assert say(module, "AT+Test", now=1.0) == b""
    assert say(module, "AT+Get=General,Version", now=1.1) == b""
    module.tick(1.5)
    assert out(module) == b"OK\r\n"
    module.tick(2.0)
    assert out(module).startswith(b"+get:")
    module.response_delay = 0.0
    module.muted = True
    assert say(module, "AT+Test", now=3.0) == b""
    module.muted = False
    assert say(module, "AT+Test", now=3.0) == b"OK\r\n"


# -- WLAN (SPEC §4) --


def test_a_wrong_key_is_disconnect_reason_15_and_enterprise_credentials_23() -> None:
    module = fresh()
    assert say(module, 'AT+WlanConnect=SiteNet,,WPA_WPA2,"wrong key",,,') == (
        b"OK\r\n+eventwlan:disconnect,SiteNet,a0:b1:c2:d3:e4:f5,15\r\n"
    )
    assert say(module, "AT+WlanConnect=SiteNet,,OPEN,,,,") == (
        b"OK\r\n+eventwlan:disconnect,SiteNet,a0:b1:c2:d3:e4:f5,15\r\n"
    )
    assert say(module, "AT+WlanGet=connection") == b"+wlanget:sta,disconnected,,,,\r\nOK\r\n"
    enterprise = fresh(WifiProfile(access_point=AccessPoint(security="WPA_ENT", key="pw")))
    assert say(enterprise, "AT+WlanConnect=SiteNet,,WPA_ENT,bad,chargepoint,,PEAP0_MSCHAPV2") == (
        b"OK\r\n+eventwlan:disconnect,SiteNet,a0:b1:c2:d3:e4:f5,23\r\n"
    )
    assert say(enterprise, "AT+WlanConnect=SiteNet,,WPA_ENT,pw,chargepoint,,PEAP0_MSCHAPV2") == (
        b"OK\r\n+eventwlan:connect,SiteNet,a0:b1:c2:d3:e4:f5\r\n" + ACQUIRED
    )
    assert say(enterprise, "AT+WlanGet=connection,") == (
        b"+wlanget:sta,station_connected,wpa_ent,SiteNet,a0:b1:c2:d3:e4:f5,\r\nOK\r\n"
    )


def test_an_ssid_not_in_range_says_nothing_at_all() -> None:
    module = fresh()
    assert say(module, "AT+WlanConnect=Elsewhere,,WPA_WPA2,charge-point-wifi,,,") == b"OK\r\n"
    module.tick(100.0)
    assert out(module) == b""
    assert say(module, "AT+WlanConnect=SiteNet,11:22:33:44:55:66,WPA_WPA2,x,,,") == b"OK\r\n"
    module.tick(200.0)
    assert out(module) == b""  # the BSSID is not the site's


def test_joining_takes_its_time_and_dhcp_after_it() -> None:
    module = fresh(WifiProfile(connect_time=2.0, dhcp_time=1.0))
    assert say(module, JOIN, now=1.0) == b"OK\r\n"
    assert module.next_deadline() == 3.0
    module.tick(3.0)
    assert out(module) == b"+eventwlan:connect,SiteNet,a0:b1:c2:d3:e4:f5\r\n"
    assert say(module, "AT+Socket=INET,STREAM,TCP", now=3.5) == b"+socket:0\r\nOK\r\n"
    assert say(module, "AT+Connect=0,INET,80,127.0.0.1", now=3.5) == (
        b"OK\r\nERROR:process command,-101\r\n"  # no address yet
    )
    module.tick(4.0)
    assert out(module) == ACQUIRED


def test_disconnect_says_reason_8_and_refuses_when_not_connected() -> None:
    module, _ = connected()
    assert say(module, "AT+WlanDisconnect") == (
        b"OK\r\n+eventwlan:disconnect,SiteNet,a0:b1:c2:d3:e4:f5,8\r\n"
    )
    assert module.take_actions() == [CloseTcp(0, abort=True)]
    assert say(module, "AT+WlanDisconnect") == b"ERROR:process command,-2071\r\n"


def test_profiles_add_get_delete_and_their_limit() -> None:
    module = fresh()
    for index in range(7):
        line = f'AT+WlanProfileAdd="Site {index}",,WPA_WPA2,secret,,,,{index}'
        assert say(module, line) == f"+wlanprofileadd:{index}\r\nOK\r\n".encode()
    assert say(module, "AT+WlanProfileAdd=More,,WPA_WPA2,secret,,,,1") == (
        b"ERROR:process command,-2062\r\n"
    )
    assert say(module, "AT+WlanProfileGet=3") == (
        b"+wlanprofileget:Site 3,,wpa_wpa2,,,,3\r\nOK\r\n"  # never the key
    )
    assert say(module, "AT+WlanProfileDel=3") == b"OK\r\n"
    assert say(module, "AT+WlanProfileGet=3") == b"ERROR:process command,-2074\r\n"
    assert say(module, "AT+WlanProfileAdd=SiteNet,,WPA_WPA2,secret,,,,16") == (
        b"ERROR:parse parameters,-1\r\n"
    )
    assert say(module, "AT+WlanProfileDel=0xFF") == b"OK\r\n"
    assert say(module, "AT+WlanProfileGet=0") == b"ERROR:process command,-2074\r\n"


def test_the_auto_policy_joins_at_start_and_when_the_access_point_comes_back() -> None:
    module = fresh()
    assert say(module, "AT+WlanPolicyGet=connection") == b"+wlanpolicyget:,\r\nOK\r\n"
    assert say(module, "AT+WlanPolicySet=connection,auto|fast,") == b"OK\r\n"
    assert say(module, "AT+WlanPolicyGet=connection") == b"+wlanpolicyget:auto|fast,\r\nOK\r\n"
    say(module, "AT+WlanProfileAdd=SiteNet,,WPA_WPA2,charge-point-wifi,,,,0")
    # Profiles and policy are in flash: the NWP joins by itself after a reset.
    module.reboot(2.0)
    assert not module.booted or out(module) == b""
    module.tick(2.0)
    assert out(module) == b"+eventwlan:connect,SiteNet,a0:b1:c2:d3:e4:f5\r\n" + ACQUIRED
    module.set_coverage(False, now=3.0)
    assert out(module) == b"+eventwlan:disconnect,SiteNet,a0:b1:c2:d3:e4:f5,4\r\n"
    module.set_coverage(True, now=4.0)
    module.tick(4.0)
    assert out(module) == b"+eventwlan:connect,SiteNet,a0:b1:c2:d3:e4:f5\r\n" + ACQUIRED


def test_without_the_auto_policy_the_host_must_join_again() -> None:
    module, _ = connected()
    say(module, "AT+WlanProfileAdd=SiteNet,,WPA_WPA2,charge-point-wifi,,,,0")
    module.set_coverage(False, now=2.0)
    out(module)
    module.set_coverage(True, now=3.0)
    module.tick(10.0)
    assert out(module) == b""
    assert say(module, JOIN, now=10.0).endswith(ACQUIRED)


def test_scan_lists_the_networks_in_range() -> None:
    module = fresh()
    assert say(module, "AT+WlanScan=0,30") == (
        b"+wlanscan:SiteNet,a0:b1:c2:d3:e4:f5,-52,6,wpa_wpa2,0,ccmp,psk;"
        b"Workshop-Guest,a0:b1:c2:00:11:22,-71,1,open,0,none,none;\r\nOK\r\n"
    )
    assert say(module, "AT+WlanScan=1,1").startswith(b"+wlanscan:Workshop-Guest,")
    module.set_coverage(False, now=2.0)
    assert say(module, "AT+WlanScan=0,30").startswith(b"+wlanscan:Workshop-Guest,")
    assert say(module, "AT+WlanScan=0,31") == b"ERROR:parse parameters,-1\r\n"


def test_losing_the_ip_address_kills_the_sockets_and_dhcp_brings_it_back() -> None:
    module, sd = connected(WifiProfile(dhcp_renew_after=5.0))
    module.tcp_received(sd, b"unread")
    module.lose_ip(now=2.0)
    assert out(module) == b"+eventnetapp:ipv4_lost,0\r\n"
    assert module.take_actions() == [CloseTcp(sd, abort=True)]
    assert say(module, "AT+Select=1,0,0,0", now=3.0) == b"OK\r\n+select:0\r\nOK\r\n"
    assert say(module, "AT+Recv=0,1,100", now=3.0) == b"OK\r\nERROR:process command,-107\r\n"
    assert module.next_deadline() == 7.0
    module.tick(7.0)
    assert out(module) == ACQUIRED


# -- the NWP's life (SPEC §3) --


def test_a_fatal_error_leaves_only_stop_and_start_working() -> None:
    module, _ = connected()
    assert say(module, "AT+Select=1,0,30,0") == b"OK\r\n"
    module.fatal_error(now=2.0)
    # The event, then the blocked Select fails with the NWP.
    assert out(module) == (b"+eventfatalerror:device_abort,1,0\r\nERROR:process command,-2018\r\n")
    assert module.take_actions() == [CloseTcp(0, abort=True)]
    for line in ("AT+Socket=INET,STREAM,TCP", "AT+Get=General,Version", "AT+WlanGet=connection"):
        assert say(module, line) == b"ERROR:process command,-2018\r\n", line
    assert say(module, "AT+Test") == b"OK\r\n"
    assert say(module, "AT+Start") == b"ERROR:process command,-2018\r\n"  # Stop first
    assert say(module, "AT+Stop=200") == b"OK\r\n"
    assert say(module, "AT+Start") == b"OK\r\n"
    assert say(module, "AT+Socket=INET,STREAM,TCP") == b"+socket:0\r\nOK\r\n"  # none survived
    assert say(module, "AT+WlanGet=connection") == b"+wlanget:sta,disconnected,,,,\r\nOK\r\n"


def test_a_reset_request_needs_the_same_recovery() -> None:
    module = joined()
    module.request_reset(now=2.0, code=-2, sender="netapp")
    assert out(module) == b"+eventgeneral:reset_request,-2,netapp\r\n"
    assert say(module, "AT+Get=General,Version") == b"ERROR:process command,-2018\r\n"


def test_stop_is_silent_and_start_twice_is_an_error() -> None:
    module, _ = connected()
    assert say(module, "AT+Start") == b"ERROR:process command,-2018\r\n"
    assert say(module, "AT+Stop=0") == b"OK\r\n"  # no disconnect event after a stop
    assert module.take_actions() == [CloseTcp(0, abort=False)]
    assert say(module, "AT+Stop=0") == b"OK\r\n"
    assert say(module, "AT+Close=0") == b"ERROR:process command,-2018\r\n"
    assert say(module, "AT+Start") == b"OK\r\n"
    assert say(module, "AT+Close=0") == b"ERROR:process command,-9\r\n"


def test_a_reset_forgets_sockets_but_not_files_and_keeps_the_clock() -> None:
    module = fresh()
    module.profile.boot_time = 2.0
    say(module, "AT+Set=General,Time,12,0,0,1,6,2026", now=1.0)
    _write(module, "/cert/csms-ca.pem", b"PEM")
    say(module, JOIN)
    say(module, "AT+Socket=INET,STREAM,TCP")
    module.reboot(5.0)
    assert say(module, "AT+Test", now=6.0) == b""  # booting: hears nothing
    module.tick(7.0)
    assert say(module, "AT+Get=General,Time", now=7.0) == b"+get:12,0,6,1,6,2026\r\nOK\r\n"
    assert say(module, "AT+Close=0", now=7.0) == b"ERROR:process command,-9\r\n"
    assert say(module, "AT+FileGetInfo=/cert/csms-ca.pem,", now=7.0).startswith(b"+filegetinfo:,3,")
    module.power_on(8.0)
    module.tick(10.0)
    assert say(module, "AT+Get=General,Time", now=10.0) == b"+get:0,0,2,1,1,2013\r\nOK\r\n"


# -- files (SPEC §6) --


def _stored(data: bytes) -> StoredFile:
    return StoredFile(data, max(len(data), 1))


def _write(module: SimpleLinkModule, name: str, data: bytes) -> None:
    reply = say(module, f"AT+FileOpen={name},CREATE|OVERWRITE,{max(len(data), 1)}")
    file_id = int(re.fullmatch(rb"\+fileopen:(\d+),0\r\nOK\r\n", reply)[1])  # type: ignore[index]
    for offset in range(0, len(data), 1024):
        piece = data[offset : offset + 1024]
        line = f"AT+FileWrite={file_id},{offset},1,{len(b64(piece))},{b64(piece)}"
        assert say(module, line) == f"+filewrite:{len(piece)}\r\nOK\r\n".encode()
    assert say(module, f"AT+FileClose={file_id},,") == b"OK\r\n"


def test_files_are_written_in_pieces_and_visible_only_once_closed() -> None:
    module = fresh()
    data = bytes(range(256)) * 9  # 2304 bytes: three AT+FileWrite
    assert say(module, "AT+FileOpen=/cert/client.pem,CREATE|OVERWRITE,4096") == (
        b"+fileopen:1,0\r\nOK\r\n"
    )
    assert say(module, f"AT+FileWrite=1,0,1,{len(b64(data[:1024]))},{b64(data[:1024])}") == (
        b"+filewrite:1024\r\nOK\r\n"
    )
    assert say(module, "AT+FileGetInfo=/cert/client.pem,") == b"ERROR:process command,-10341\r\n"
    too_much = bytes(1025)
    assert say(module, f"AT+FileWrite=1,0,1,{len(b64(too_much))},{b64(too_much)}") == (
        b"ERROR:parse parameters,-1\r\n"
    )
    assert say(module, "AT+FileClose=1,,") == b"OK\r\n"
    _write(module, "/cert/client.pem", data)
    assert say(module, "AT+FileGetInfo=/cert/client.pem,") == (
        b"+filegetinfo:,2304,4096,0,4096,2\r\nOK\r\n"  # the allocation of its creation
    )
    reply = say(module, "AT+FileOpen=/cert/client.pem,READ,0")
    file_id = int(re.fullmatch(rb"\+fileopen:(\d+),0\r\nOK\r\n", reply)[1])  # type: ignore[index]
    read = bytearray()
    while True:
        reply = say(module, f"AT+FileRead={file_id},{len(read)},1,1000")
        match = re.fullmatch(rb"\+fileread:1,(\d+),([A-Za-z0-9+/=]*)\r\nOK\r\n", reply)
        assert match is not None, reply
        if int(match[1]) == 0:
            break
        read += base64.b64decode(match[2])
    assert read == data
    assert say(module, f"AT+FileWrite={file_id},0,1,4,aGkh") == b"ERROR:process command,-10340\r\n"
    assert say(module, f"AT+FileClose={file_id},,") == b"OK\r\n"
    assert say(module, f"AT+FileClose={file_id},,") == b"ERROR:process command,-10335\r\n"


def test_file_open_and_delete_errors() -> None:
    module = fresh()
    assert say(module, "AT+FileOpen=/cert/none.pem,READ,0") == b"ERROR:process command,-10341\r\n"
    assert say(module, "AT+FileDel=/cert/none.pem,") == b"ERROR:process command,-10341\r\n"
    _write(module, "/cert/a.pem", b"abc")
    assert say(module, "AT+FileOpen=/cert/a.pem,CREATE,100") == b"ERROR:process command,-10293\r\n"
    assert say(module, "AT+FileOpen=/cert/b.pem,CREATE,0") == b"ERROR:parse parameters,-1\r\n"
    assert say(module, "AT+FileOpen=/cert/b.pem,CREATE|CREATE_SECURE,10") == (
        b"ERROR:process command,-1\r\n"
    )
    reply = say(module, "AT+FileOpen=/cert/c.pem,CREATE|OVERWRITE,4")
    file_id = int(re.fullmatch(rb"\+fileopen:(\d+),0\r\nOK\r\n", reply)[1])  # type: ignore[index]
    assert say(module, f"AT+FileWrite={file_id},0,1,8,aGVsbG8h") == (
        b"ERROR:process command,-10337\r\n"  # 6 bytes into a 4-byte file
    )
    assert say(module, "AT+FileDel=/cert/a.pem,") == b"OK\r\n"
    assert say(module, "AT+FileGetInfo=/cert/a.pem,") == b"ERROR:process command,-10341\r\n"


# -- the HTTP client (SPEC §7), the network played by hand --


def http_connected(url: str = "http://files.test:8080") -> tuple[SimpleLinkModule, int]:
    module = joined()
    assert say(module, "AT+HttpCreate") == b"+httpcreate:0\r\nOK\r\n"
    assert say(module, f"AT+HttpConnect=0,{url},,,,") == b""
    [action] = module.take_actions()
    assert isinstance(action, OpenTcp)
    assert (action.host, action.port) == ("files.test", 8080)
    module.tcp_opened(action.socket_id, 40000)
    assert out(module) == b"OK\r\n"
    return module, action.socket_id


def test_an_http_client_takes_one_of_the_sixteen_sockets() -> None:
    module, sd = http_connected()
    assert sd == 0
    assert say(module, "AT+Socket=INET,STREAM,TCP") == b"+socket:1\r\nOK\r\n"
    assert say(module, "AT+Close=0") == b"ERROR:process command,-9\r\n"  # not the host's
    for index in (1, 2, 3):
        assert say(module, "AT+HttpCreate") == f"+httpcreate:{index}\r\nOK\r\n".encode()
    assert say(module, "AT+HttpCreate") == b"ERROR:process command,-12\r\n"


def test_http_get_reads_a_chunked_body_in_pieces() -> None:
    module, sd = http_connected()
    assert say(module, "AT+HttpSetHeader=0,req_range,not_persistent,1,16,Ynl0ZXM9MTAwLQ==") == (
        b"OK\r\n"
    )
    assert say(module, 'AT+HttpSendReq=0,GET,"/fw.bin",,1,0,') == b""
    [action] = module.take_actions()
    assert action == SendTcp(
        sd, b"GET /fw.bin HTTP/1.1\r\nHost: files.test:8080\r\nRange: bytes=100-\r\n\r\n"
    )
    module.tcp_received(sd, b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 100-109/110\r\n")
    assert out(module) == b""  # the header is not complete yet
    module.tcp_received(sd, b"Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n6\r\nef")
    assert out(module) == b"+httpsendreq:206\r\nOK\r\n"
    value = b64(b"bytes 100-109/110")
    assert say(module, "AT+HttpGetHeader=0,res_content_range,1,100") == (
        f"+httpgetheader:0,1,{len(value)},{value}\r\nOK\r\n".encode()
    )
    assert say(module, "AT+HttpGetHeader=0,res_content_range,1,10") == (
        b"ERROR:process command,-105\r\n"  # longer than the host's buffer
    )
    assert say(module, "AT+HttpGetHeader=0,res_etag,1,100") == b"+httpgetheader:0,1,0,\r\nOK\r\n"
    assert say(module, "AT+HttpReadResBody=0,1,3") == b"+httpreadresbody:0,1,1,4,YWJj\r\nOK\r\n"
    assert say(module, "AT+HttpReadResBody=0,1,100") == b"+httpreadresbody:0,1,1,4,ZGVm\r\nOK\r\n"
    assert say(module, "AT+HttpReadResBody=0,1,100") == b""  # waits for the rest
    module.tcp_received(sd, b"ghij\r\n0\r\n\r\n")
    assert out(module) == b"+httpreadresbody:0,0,1,8,Z2hpag==\r\nOK\r\n"
    assert say(module, "AT+HttpReadResBody=0,1,100") == b"+httpreadresbody:0,0,1,0,\r\nOK\r\n"
    # The not-persistent Range went with that request.
    say(module, 'AT+HttpSendReq=0,HEAD,"/fw.bin",,1,0,')
    assert module.take_actions() == [
        SendTcp(sd, b"HEAD /fw.bin HTTP/1.1\r\nHost: files.test:8080\r\n\r\n")
    ]


KIND = b64(b"application/octet-stream")


def test_a_chunked_upload_sends_transfer_encoding_chunked() -> None:
    module, sd = http_connected()
    say(
        module,
        f"AT+HttpSetHeader=0,req_content_type,persistent,1,{len(KIND)},{KIND}",
    )
    first, second = b64(b"part"), b64(b"\r\n\x00")
    assert say(module, f'AT+HttpSendReq=0,POST,"/up",chunk_start,1,8,{first}') == b"OK\r\n"
    assert say(module, f'AT+HttpSendReq=0,POST,"/up",,1,4,{second}') == b"OK\r\n"
    assert say(module, 'AT+HttpSendReq=0,POST,"/up",chunk_end,1,0,') == b""
    sent = b"".join(a.data for a in module.take_actions() if isinstance(a, SendTcp))
    assert sent == (
        b"POST /up HTTP/1.1\r\nHost: files.test:8080\r\n"
        b"Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\npart\r\n3\r\n\r\n\x00\r\n0\r\n\r\n"
    )
    module.tcp_received(sd, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    assert out(module) == b"+httpsendreq:201\r\nOK\r\n"


def test_http_connection_lost_during_a_request_or_a_body() -> None:
    module, sd = http_connected()
    say(module, 'AT+HttpSendReq=0,GET,"/fw.bin",,1,0,')
    module.tcp_received(sd, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
    assert out(module) == b"+httpsendreq:200\r\nOK\r\n"
    assert (
        say(module, "AT+HttpReadResBody=0,1,100") == b"+httpreadresbody:0,1,1,8,MTIzNDU=\r\nOK\r\n"
    )
    module.tcp_closed(sd)
    assert say(module, "AT+HttpReadResBody=0,1,100") == b"ERROR:process command,-107\r\n"
    assert say(module, 'AT+HttpSendReq=0,GET,"/fw.bin",,1,0,') == b"ERROR:process command,-107\r\n"
    assert say(module, "AT+HttpDisconnect=0") == b"OK\r\n"
    assert say(module, "AT+HttpDestroy=0") == b"OK\r\n"
    assert say(module, "AT+HttpDestroy=0") == b"ERROR:process command,-22\r\n"


def test_http_connect_failures_and_https_settings() -> None:
    module = joined()
    module.files["/cert/files-ca.pem"] = _stored(b"PEM")
    say(module, "AT+HttpCreate")
    assert say(module, "AT+HttpConnect=0,ftp://files.test,,,,") == b"ERROR:parse parameters,-1\r\n"
    assert say(module, "AT+HttpConnect=0,https://files.test,,,,/cert/files-ca.pem") == b""
    [action] = module.take_actions()
    assert isinstance(action, OpenSsl)
    assert (action.host, action.port, action.tls.host, action.tls.checkhost) == (
        "files.test",
        443,
        "files.test",
        True,
    )
    assert module.connect_failed(action.socket_id, OpenFailure(FailureKind.DNS, "no")) == "-159"
    assert out(module) == b"ERROR:process command,-159\r\n"
    assert say(module, "AT+HttpConnect=0,https://files.test,,,,/cert/files-ca.pem") == b""
    [action] = module.take_actions()
    assert isinstance(action, OpenSsl)
    module.tcp_opened(action.socket_id, 40000, OpenFailure(FailureKind.TLS_DATE, "expired"))
    assert out(module) == b"ERROR:process command,-461\r\n"  # a failure for the HTTP client
    assert module.take_actions() == [CloseTcp(action.socket_id, abort=False)]


# -- through the shell: a real pty, real servers ---------------------------------------------


class Port:
    """The host's end of the pty, raw: answers are read line by line; events are set aside
    as they come, wherever they come."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        self.received = bytearray()
        self.events: list[str] = []

    def close(self) -> None:
        os.close(self.fd)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                await wait_writable(self.fd)

    async def _line(self) -> str:
        async with asyncio.timeout(WAIT):
            while b"\r\n" not in self.received:
                try:
                    self.received += os.read(self.fd, 65536)
                except BlockingIOError:
                    await wait_readable(self.fd)
        end = self.received.index(b"\r\n")
        line = self.received[:end].decode("latin-1")
        del self.received[: end + 2]
        return line

    async def answer(self) -> list[str]:
        """The lines of one answer, up to ``OK`` or an ``ERROR:``."""
        lines: list[str] = []
        while True:
            line = await self._line()
            if line.startswith("+event"):
                self.events.append(line)
                continue
            lines.append(line)
            if line == "OK" or line.startswith("ERROR:"):
                return lines

    async def command(self, line: str) -> list[str]:
        await self.write(line.encode("latin-1") + b"\r")
        return await self.answer()

    async def blocked(self, line: str) -> list[str]:
        """A blocked command (SPEC §2): its ``OK``, then its result."""
        assert await self.command(line) == ["OK"], line
        return await self.answer()

    async def event(self, prefix: str) -> str:
        while True:
            for i, line in enumerate(self.events):
                if line.startswith(prefix):
                    return self.events.pop(i)
            line = await self._line()
            assert line.startswith("+event"), f"{line!r} while waiting for {prefix}"
            self.events.append(line)

    async def join(self) -> None:
        assert await self.command(JOIN) == ["OK"]
        await self.event("+eventnetapp:ipv4_acquired,")

    async def set_clock(self) -> None:
        t = datetime.now(UTC)
        now = f"{t.hour},{t.minute},{t.second},{t.day},{t.month},{t.year}"
        assert await self.command(f"AT+Set=General,Time,{now}") == ["OK"]

    async def upload(self, name: str, data: bytes) -> None:
        [opened, _] = await self.command(f"AT+FileOpen={name},CREATE|OVERWRITE,{len(data)}")
        file_id = opened.split(":")[1].split(",")[0]
        for offset in range(0, len(data), 1024):
            piece = b64(data[offset : offset + 1024])
            line = f"AT+FileWrite={file_id},{offset},1,{len(piece)},{piece}"
            assert (await self.command(line))[-1] == "OK"
        assert await self.command(f"AT+FileClose={file_id},,") == ["OK"]

    async def socket(self, kind: str = "TCP") -> int:
        [line, _] = await self.command(f"AT+Socket=INET,STREAM,{kind}")
        return int(line.split(":")[1])

    async def send(self, sd: int, data: bytes) -> None:
        for offset in range(0, len(data), 1092):
            assert await self.command(send_line(sd, data[offset : offset + 1092])) == ["OK"]

    async def recv_all(self, sd: int, size: int) -> bytes:
        """``size`` bytes, each AT+Recv only after AT+Select says the socket is readable."""
        data = bytearray()
        while len(data) < size:
            assert await self.blocked(f"AT+Select={sd + 1},{sd},{int(WAIT)},0") == [
                f"+select:{sd}",
                "OK",
            ]
            [line, _] = await self.blocked(f"AT+Recv={sd},1,1460")
            data += base64.b64decode(line.split(",", 3)[3])
        return bytes(data)


@contextlib.asynccontextmanager
async def simulated(
    profile: WifiProfile | None = None, **shell: object
) -> AsyncIterator[tuple[SimulatorShell[SimpleLinkModule], Port]]:
    hosts = {
        "csms.test": "127.0.0.1",
        "files.test": "127.0.0.1",
    }
    sim = SimulatorShell(SimpleLinkModule(profile), hosts=hosts, **shell)  # type: ignore[arg-type]
    async with sim:
        port = Port(sim.path)
        try:
            await sim.wait_until_booted()
            yield sim, port
        finally:
            port.close()


class Server:
    """A TCP (or TLS) server on 127.0.0.1 running ``serve`` for each connection."""

    def __init__(
        self,
        serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
        context: ssl.SSLContext | None = None,
    ) -> None:
        self._serve = serve
        self.context = context
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._run, "127.0.0.1", 0, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self.writers:
            writer.transport.abort()
        await self._server.wait_closed()

    async def _run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        with contextlib.suppress(OSError):
            await self._serve(reader, writer)
        writer.close()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def test_a_socket_through_the_shell_round_trips_binary_and_sees_the_close() -> None:
    closing = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readexactly(5000)
        writer.write(data)
        await writer.drain()
        await closing.wait()

    payload = ((b"\r\nOK\r\n\x00+eventwlan:" + bytes(range(256))) * 20)[:5000]
    async with Server(serve) as server, simulated(baud=921600, latency=0.002) as (_sim, port):
        await port.join()
        assert await port.blocked("AT+NetAPPGetHostByName=csms.test,INET") == [
            "+netappgethostbyname:csms.test,127.0.0.1",
            "OK",
        ]
        sd = await port.socket()
        assert await port.blocked(f"AT+Connect={sd},INET,{server.port},127.0.0.1") == [
            f"+connect:{server.port},127.0.0.1",
            "OK",
        ]
        await port.send(sd, payload)
        assert await port.recv_all(sd, len(payload)) == payload
        closing.set()
        assert await port.blocked(f"AT+Select=1,{sd},{int(WAIT)},0") == [f"+select:{sd}", "OK"]
        assert await port.blocked(f"AT+Recv={sd},1,1460") == [f"+recv:{sd},1,0,", "OK"]
        assert await port.command(f"AT+Close={sd}") == [f"+close:{sd}", "OK"]
        assert await port.blocked("AT+NetAPPGetHostByName=nowhere.invalid,INET") == [
            "ERROR:process command,-159"
        ]


async def test_faults_through_the_shell_wifi_loss_ip_loss_and_a_dead_nwp() -> None:
    profile = WifiProfile(dhcp_renew_after=0.2)
    async with Server(echo) as server, simulated(profile) as (sim, port):
        await port.join()
        sd = await port.socket()
        await port.blocked(f"AT+Connect={sd},INET,{server.port},127.0.0.1")
        # A Select waiting on a quiet socket wakes when the access point goes.
        await port.write(f"AT+Select=1,{sd},{int(WAIT)},0\r".encode())
        assert await port.answer() == ["OK"]
        await sim.wait_for_command(f"AT+Select=1,{sd},{int(WAIT)},0")
        sim.set_coverage(False)
        assert await port.answer() == [f"+select:{sd}", "OK"]
        assert await port.event("+eventwlan:disconnect,") == (
            "+eventwlan:disconnect,SiteNet,a0:b1:c2:d3:e4:f5,4"
        )
        assert await port.blocked(f"AT+Recv={sd},1,100") == ["ERROR:process command,-107"]
        await port.command(f"AT+Close={sd}")
        sim.set_coverage(True)
        await port.join()
        sim.deactivate_pdp()
        await port.event("+eventnetapp:ipv4_lost,0")
        await port.event("+eventnetapp:ipv4_acquired,")  # DHCP, dhcp_renew_after later
        sim.fatal_error()
        await port.event("+eventfatalerror:device_abort,1,0")
        assert await port.command("AT+WlanGet=connection") == ["ERROR:process command,-2018"]
        assert await port.command("AT+Stop=100") == ["OK"]
        assert await port.command("AT+Start") == ["OK"]
        sim.reboot()
        await sim.wait_until_booted()
        assert await port.command("AT+Test") == ["OK"]
    with pytest.raises(TypeError, match="SimpleLink"):
        SimulatorShell().fatal_error()


# -- HTTP and TLS against real servers --


class HttpServer:
    """Records each request (head and de-chunked body) and answers GET /fw.bin with
    ``firmware``, anything else with 201."""

    def __init__(self, firmware: bytes) -> None:
        self.firmware = firmware
        self.requests: list[tuple[bytes, bytes]] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            body = bytearray()
            if b"transfer-encoding: chunked" in head.lower():
                while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                    body += await reader.readexactly(size)
                    await reader.readexactly(2)
                await reader.readuntil(b"\r\n")
            self.requests.append((head, bytes(body)))
            if head.startswith(b"GET /fw.bin"):
                writer.write(
                    b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\nETag: "v2"\r\n\r\n'
                    % len(self.firmware)
                    + self.firmware
                )
            else:
                writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()


async def http_download(port: Port, index: int, uri: str) -> bytes:
    assert await port.command(f'AT+HttpSendReq={index},GET,"{uri}",,1,0,') == [
        "+httpsendreq:200",
        "OK",
    ]
    body = bytearray()
    while True:
        [line, _] = await port.command(f"AT+HttpReadResBody={index},1,1460")
        _, more, _fmt, _length, data = line.split(":", 1)[1].split(",")
        body += base64.b64decode(data)
        if more == "0":
            return bytes(body)


async def test_http_download_and_chunked_upload_against_a_real_server() -> None:
    firmware = bytes(range(256)) * 40  # 10 KiB, larger than the receive buffer below
    http = HttpServer(firmware)
    async with (
        Server(http.serve) as server,
        simulated(WifiProfile(receive_buffer=4096)) as (_sim, port),
    ):
        await port.join()
        assert await port.command("AT+HttpCreate") == ["+httpcreate:0", "OK"]
        assert await port.command(f"AT+HttpConnect=0,http://files.test:{server.port},,,,") == ["OK"]
        assert await http_download(port, 0, "/fw.bin") == firmware
        etag = b64(b'"v2"')
        assert await port.command("AT+HttpGetHeader=0,res_etag,1,100") == [
            f"+httpgetheader:0,1,{len(etag)},{etag}",
            "OK",
        ]
        archive = bytes(range(256)) * 10 + b"\r\n0\r\n\r\n"
        pieces = [archive[i : i + 1092] for i in range(0, len(archive), 1092)]
        first, *middle = pieces
        await port.command(
            f"AT+HttpSetHeader=0,req_content_type,persistent,1,{len(b64(b'application/gzip'))},"
            f"{b64(b'application/gzip')}"
        )
        line = f'AT+HttpSendReq=0,POST,"/diag/upload",chunk_start,1,{len(b64(first))},{b64(first)}'
        assert await port.command(line) == ["OK"]
        for piece in middle:
            line = f'AT+HttpSendReq=0,POST,"/diag/upload",,1,{len(b64(piece))},{b64(piece)}'
            assert await port.command(line) == ["OK"]
        assert await port.command('AT+HttpSendReq=0,POST,"/diag/upload",chunk_end,1,0,') == [
            "+httpsendreq:201",
            "OK",
        ]
        assert await port.command("AT+HttpDisconnect=0") == ["OK"]
        assert await port.command("AT+HttpDestroy=0") == ["OK"]
    head, body = http.requests[-1]
    assert head.startswith(b"POST /diag/upload HTTP/1.1\r\n")
    assert b"\r\nTransfer-Encoding: chunked\r\n" in head
    assert b"\r\nContent-Type: application/gzip\r\n" in head
    assert body == archive


async def test_the_project_file_server_takes_a_chunked_multipart_upload() -> None:
    archive = bytes(range(256)) * 12
    boundary = "sl-boundary"
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="diag.tar.gz"'
            "\r\nContent-Type: application/gzip\r\n\r\n"
        ).encode()
        + archive
        + f"\r\n--{boundary}--\r\n".encode()
    )
    content_type = b64(f"multipart/form-data; boundary={boundary}".encode())
    with FileServer() as files:
        async with simulated() as (_sim, port):
            await port.join()
            await port.command("AT+HttpCreate")
            await port.command(f"AT+HttpConnect=0,http://127.0.0.1:{files.port},,,,")
            await port.command(
                f"AT+HttpSetHeader=0,req_content_type,persistent,1,{len(content_type)},"
                f"{content_type}"
            )
            pieces = [form[i : i + 1092] for i in range(0, len(form), 1092)]
            flag = "chunk_start"
            for piece in pieces:
                line = f'AT+HttpSendReq=0,POST,"/diag",{flag},1,{len(b64(piece))},{b64(piece)}'
                assert await port.command(line) == ["OK"]
                flag = ""
            assert await port.command('AT+HttpSendReq=0,POST,"/diag",chunk_end,1,0,') == [
                "+httpsendreq:201",
                "OK",
            ]
        [upload] = files.uploads
    assert (upload.path, upload.file_name, upload.data) == ("/diag", "diag.tar.gz", archive)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def server_context(files: ServerFiles, client_ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


async def tls_connect(port: Port, server_port: int, *options: str) -> list[str]:
    """A SEC socket with ``options`` (AT+SetSockOpt SOCKET options) connected to
    ``server_port``: the Connect's result lines."""
    sd = await port.socket("SEC")
    for option in options:
        assert await port.command(f"AT+SetSockOpt={sd},SOCKET,{option}") == ["OK"], option
    return await port.blocked(f"AT+Connect={sd},INET,{server_port},127.0.0.1")


CA = "SECURE_FILES_CA_FILE_NAME,/cert/csms-ca.pem"
DOMAIN = "SECURE_DOMAIN_NAME_VERIFICATION,csms.test"


async def test_tls_round_trips_and_an_expired_certificate_is_a_warning(pki: Pki) -> None:
    async with (
        Server(echo, server_context(pki.server)) as server,
        Server(echo, server_context(pki.expired_server)) as expired,
        simulated() as (_sim, port),
    ):
        await port.join()
        await port.upload("/cert/csms-ca.pem", pki.ca.read_bytes())
        await port.set_clock()
        assert await tls_connect(port, server.port, CA, DOMAIN, "SECMETHOD,TLSV1_2") == [
            f"+connect:{server.port},127.0.0.1",
            "OK",
        ]
        await port.send(0, b"over TLS \r\n\x00")
        assert await port.recv_all(0, 12) == b"over TLS \r\n\x00"
        # Expired at the module clock: -461, and the socket connected all the same (SPEC §5).
        assert await tls_connect(port, expired.port, CA, DOMAIN) == ["ERROR:process command,-461"]
        await port.send(1, b"still here")
        assert await port.recv_all(1, 10) == b"still here"


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("untrusted", -688),
        ("wrong host", -722),
        ("no CA file", -454),
        ("bad CA file", -456),
        ("client certificate wanted", -340),
        ("no common cipher", -340),
    ],
)
async def test_tls_failures_against_real_servers_read_as_the_spec_codes(
    pki: Pki, case: str, code: int
) -> None:
    files = {
        "untrusted": pki.untrusted_server,
        "wrong host": pki.wrong_host_server,
    }.get(case, pki.server)
    client_ca = pki.cpo_ca if case == "client certificate wanted" else None
    context = server_context(files, client_ca)
    options = [CA, DOMAIN]
    if case == "no common cipher":
        context.set_ciphers("ECDHE-RSA-AES256-GCM-SHA384")
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        options.append("SECURE_MASK,TLS_RSA_WITH_AES_128_CBC_SHA256")
    async with Server(echo, context) as server, simulated() as (_sim, port):
        await port.join()
        await port.set_clock()
        if case == "bad CA file":
            await port.upload("/cert/csms-ca.pem", b"not a certificate\n")
        elif case != "no CA file":
            await port.upload("/cert/csms-ca.pem", pki.ca.read_bytes())
        assert await tls_connect(port, server.port, *options) == [f"ERROR:process command,{code}"]
        # The failed socket is dead: readable, -107, until the host closes it.
        assert await port.blocked("AT+Recv=0,1,100") == ["ERROR:process command,-107"]
        assert await port.command("AT+Close=0") == ["+close:0", "OK"]


async def test_a_client_certificate_from_the_module_files(pki: Pki) -> None:
    client = pki.client("CP-WIFI-1")
    context = server_context(pki.server, pki.cpo_ca)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    async with Server(echo, context) as server, simulated() as (_sim, port):
        await port.join()
        await port.set_clock()
        await port.upload("/cert/csms-ca.pem", pki.ca.read_bytes())
        await port.upload("/cert/client.pem", client.cert.read_bytes())
        assert await tls_connect(
            port,
            server.port,
            CA,
            DOMAIN,
            "SECURE_FILES_CERTIFICATE_FILE_NAME,/cert/client.pem",
            "SECURE_FILES_PRIVATE_KEY_FILE_NAME,/cert/client-key.pem",
        ) == ["ERROR:process command,-458"]  # the key file is not on the module
        await port.upload("/cert/client-key.pem", client.key.read_bytes())
        assert await tls_connect(
            port,
            server.port,
            CA,
            DOMAIN,
            "SECURE_FILES_CERTIFICATE_FILE_NAME,/cert/client.pem",
            "SECURE_FILES_PRIVATE_KEY_FILE_NAME,/cert/client-key.pem",
        ) == [f"+connect:{server.port},127.0.0.1", "OK"]


async def test_https_download_verifies_the_files_server(pki: Pki) -> None:
    firmware = b"\x7fELF" + bytes(3000)
    http = HttpServer(firmware)
    async with (
        Server(http.serve, server_context(pki.server)) as server,
        simulated() as (_sim, port),
    ):
        await port.join()
        await port.set_clock()
        await port.upload("/cert/files-ca.pem", pki.ca.read_bytes())
        await port.command("AT+HttpCreate")
        url = f"https://files.test:{server.port}"
        assert await port.command(f"AT+HttpConnect=0,{url},,,,/cert/files-ca.pem") == [
            "ERROR:process command,-722"  # the certificate names csms.test, not files.test
        ]
        url = f"https://csms.test:{server.port}"
        assert await port.command(f"AT+HttpConnect=0,{url},,,,/cert/files-ca.pem") == ["OK"]
        assert await http_download(port, 0, "/fw.bin") == firmware
    assert http.requests[0][0].startswith(b"GET /fw.bin HTTP/1.1\r\nHost: csms.test:")


def test_the_cli_runs_a_simplelink_module_by_hand(tmp_path: Path) -> None:
    link = tmp_path / "wifi"
    proc = subprocess.Popen(
        [sys.executable, "-m", "transport.simulator", "simplelink", "--link", str(link)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert "SimpleLink" in banner
        assert f"linked at {link}" in banner
        fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
        try:
            tty.setraw(fd)
            os.write(fd, b"AT+Test\r")
            seen = b""
            while b"OK\r\n" not in seen:
                seen += os.read(fd, 100)
            assert seen == b"OK\r\n"
        finally:
            os.close(fd)
    finally:
        proc.terminate()
        proc.wait(timeout=WAIT)
