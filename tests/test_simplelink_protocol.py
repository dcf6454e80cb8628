"""The SimpleLink driver's pure parts: one spelling of TI's results, error numbers, parameter
quoting, base64 data fields, settings, cipher names, the request head turned into the module's
header options, and AT+Connect's codes as the exceptions the daemon acts on."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport.at import FinalResult, Line, ResultKind, Urc
from transport.errors import (
    ModuleRebooted,
    ServerRefused,
    SocketOpenError,
    TlsHandshakeFailed,
    TlsSetupFailed,
    TransferError,
    TransferInterrupted,
)
from transport.http import Location, request_head
from transport.modems.simplelink import SIMPLELINK_BLOCKED_COMMANDS, SimpleLinkModem
from transport.modems.simplelink_http import (
    basic_auth,
    header_options,
    http_error,
    parse_request_head,
    server_address,
)
from transport.modems.simplelink_protocol import (
    MAX_SEND,
    DataError,
    chip_model,
    data_field,
    decode_data,
    describe_disconnect,
    error_code,
    normalise_line,
    parse_error,
    pieces,
    quote,
    ti_cipher,
)
from transport.modems.simplelink_settings import SimpleLinkSettings
from transport.modems.simplelink_sockets import connect_error, parse_select
from transport.modems.simplelink_tls import socket_options
from transport.tls import MODULE_CIPHER_SUITES, TlsSettings


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("+Socket: 3", "+socket:3"),
        ("+SOCKET:3", "+socket:3"),
        ("+socket:3", "+socket:3"),
        ("+Recv: 0,1,8,QUJDREVGR0g=", "+recv:0,1,8,QUJDREVGR0g="),  # base64 keeps its case
        (
            "+EventWlan: connect,SiteNet,a0:b1:c2:d3:e4:f5",
            "+eventwlan:connect,SiteNet,a0:b1:c2:d3:e4:f5",
        ),
        ("+select:", "+select:"),
        ("+EventStartup", "+eventstartup"),
        ("OK", "OK"),
        ("ok", "OK"),
        ("ERROR: process command, -111", "ERROR:process command,-111"),
        ("Error:parse parameters,-1", "ERROR:parse parameters,-1"),
        ("ERROR:process command,-111", "ERROR:process command,-111"),
        ("ERROR", "ERROR"),
    ],
)
def test_normaliser_gives_one_spelling(line: str, expected: str) -> None:
    assert normalise_line(line) == expected


def test_parser_takes_results_as_lines_errors_as_finals_and_events_as_urcs() -> None:
    parser = SimpleLinkModem.parser()
    events = parser.feed(
        b"+Socket: 3\r\nOK\r\nERROR: process command, -111\r\n"
        b"+EventWlan: disconnect,SiteNet,a0:b1:c2:d3:e4:f5,15\r\n"
    )
    assert events == [
        Line("+socket:3"),
        FinalResult(ResultKind.OK, "OK"),
        FinalResult(ResultKind.ERROR, "ERROR:process command,-111"),
        Urc("+eventwlan:disconnect,SiteNet,a0:b1:c2:d3:e4:f5,15"),
    ]


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_recv_line_with_any_payload_parses_the_same_at_any_split(
    payload: bytes, split: int
) -> None:
    """Base64 on the wire: CR, LF, NUL, "OK" in the data cannot end or fake a line."""
    wire = f"+Recv: 2,1,{data_field(payload)[2:]}\r\nOK\r\n".encode()
    whole = SimpleLinkModem.parser().feed(wire)
    parser = SimpleLinkModem.parser()
    cut = []
    for i in range(0, len(wire), split):
        cut += parser.feed(wire[i : i + split])
    assert cut == whole
    assert isinstance(whole[0], Line)
    fields = whole[0].text.split(":", 1)[1].split(",")
    assert decode_data(fields[2], fields[3]) == payload


def test_error_results_give_description_and_code() -> None:
    assert parse_error("ERROR:process command,-111").code == -111
    assert parse_error("ERROR: process command , -10341").what == "process command"
    assert parse_error("ERROR:number of parameters,0").code == 0
    assert parse_error("ERROR").code is None
    assert error_code(FinalResult(ResultKind.ERROR, "ERROR:process command,-9")) == -9
    assert "refused" in parse_error("ERROR:process command,-111").described


def test_parameters_are_quoted_when_the_guide_says_and_refused_when_they_cannot_be() -> None:
    assert quote("SiteNet") == "SiteNet"
    assert quote("Site Net") == '"Site Net"'
    assert quote("a,b") == '"a,b"'
    assert quote("") == '""'
    for bad in ('say "hi"', "line\rbreak", "nul\x00"):
        with pytest.raises(ValueError, match="cannot hold"):
            quote(bad)


def test_data_fields_count_base64_characters_and_check_them() -> None:
    assert data_field(b"hello") == "1,8,aGVsbG8="
    assert decode_data("8", "aGVsbG8=") == b"hello"
    with pytest.raises(DataError, match="announced"):
        decode_data("9", "aGVsbG8=")
    with pytest.raises(DataError, match="base64"):
        decode_data("4", "a!b=")
    # 1092 bytes make 1456 base64 characters: under AT+Send's 1460.
    assert len(data_field(bytes(MAX_SEND)).split(",")[2]) == 1456
    assert [len(p) for p in pieces(bytes(2500), MAX_SEND)] == [1092, 1092, 316]
    assert pieces(b"", MAX_SEND) == []


def test_select_lists_with_bars_or_spaces() -> None:
    assert parse_select("+select:0|3|12") == [0, 3, 12]
    assert parse_select("+select:0 2") == [0, 2]
    assert parse_select("+select:") == []


def test_chip_ids_name_the_part_and_unknown_ones_are_shown_raw() -> None:
    assert chip_model("0x31000019") == "CC3220SF"
    assert chip_model("0x31100019") == "CC3235SF"
    assert chip_model("0x31000018") == "CC3220S"
    assert chip_model("0x12345678") == "0x12345678"
    assert chip_model("garbage") == "garbage"


def test_disconnect_reasons_name_the_likely_cause() -> None:
    assert "wrong Wi-Fi key" in describe_disconnect(15)
    assert "802.1X credentials refused" in describe_disconnect(23)
    assert "out of range" in describe_disconnect(4)
    assert describe_disconnect(99).startswith("reason 99")


# --- settings ---------------------------------------------------------------------------------


def test_settings_hide_the_key_and_check_credentials() -> None:
    settings = SimpleLinkSettings(ssid="SiteNet", key="correct horse")
    assert "correct horse" not in repr(settings)
    with pytest.raises(ValueError, match="8 to 63"):
        SimpleLinkSettings(ssid="SiteNet", key="short")
    with pytest.raises(ValueError, match="needs an ssid"):
        SimpleLinkSettings(key="correct horse")
    with pytest.raises(ValueError, match="takes no key"):
        SimpleLinkSettings(ssid="Cafe", security="open", key="whatever1")
    with pytest.raises(ValueError, match="eap_method"):
        SimpleLinkSettings(ssid="Corp", security="wpa_ent", user="cp-17")
    with pytest.raises(ValueError, match="printable ASCII") as refused:
        SimpleLinkSettings(ssid="SiteNet", key='pass"word1')
    assert "pass" not in str(refused.value)
    SimpleLinkSettings(provisioning="stored")  # nothing to say: the module knows
    SimpleLinkSettings(ssid="Corp", security="wpa_ent", eap_method="PEAP0_MSCHAPv2", user="cp")


# --- TLS --------------------------------------------------------------------------------------


def test_every_whitepaper_suite_has_its_ti_name() -> None:
    for hex_id, openssl in MODULE_CIPHER_SUITES.items():
        name = ti_cipher(hex_id)
        assert name is not None
        assert ti_cipher(openssl) == name
        assert ti_cipher(name) == name
    assert ti_cipher("0XC02F") == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert ti_cipher("RC4-SHA") == "SSL_RSA_WITH_RC4_128_SHA"
    assert ti_cipher("TLS_AES_128_GCM_SHA256") is None  # TLS 1.3: not on this module


def test_sec_socket_options(tmp_path: Path) -> None:
    tls = TlsSettings(
        ca_file=tmp_path / "ca.pem",
        client_cert=tmp_path / "c.pem",
        client_key=tmp_path / "k.pem",
    )
    assert socket_options(3, tls, "csms.example") == [
        "AT+SetSockOpt=3,SOCKET,SECMETHOD,TLSV1_2",
        "AT+SetSockOpt=3,SOCKET,SECURE_MASK,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "AT+SetSockOpt=3,SOCKET,SECURE_FILES_CA_FILE_NAME,/cert/csms-ca.pem",
        "AT+SetSockOpt=3,SOCKET,SECURE_DOMAIN_NAME_VERIFICATION,csms.example",
        "AT+SetSockOpt=3,SOCKET,SECURE_FILES_CERTIFICATE_FILE_NAME,/cert/client.pem",
        "AT+SetSockOpt=3,SOCKET,SECURE_FILES_PRIVATE_KEY_FILE_NAME,/cert/client-key.pem",
    ]


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        (-111, ServerRefused, "refused the connection"),
        (-110, SocketOpenError, "internet access"),
        (-101, SocketOpenError, "network unreachable"),
        (-688, TlsHandshakeFailed, "not signed by the configured CA"),
        (-722, TlsHandshakeFailed, "does not name csms.example"),
        (-340, TlsHandshakeFailed, "client certificate"),
        (-461, TlsHandshakeFailed, "certificate date"),
        (-454, TlsSetupFailed, "not on the module"),
        (-456, TlsSetupFailed, "is not a certificate"),
        (-457, TlsSetupFailed, "/cert/client.pem"),
        (-458, TlsSetupFailed, "/cert/client-key.pem"),
        (-9, ModuleRebooted, "restarted"),
        (-1234, SocketOpenError, "-1234"),
    ],
)
def test_connect_codes_become_what_the_daemon_acts_on(
    code: int, kind: type[Exception], words: str
) -> None:
    error = connect_error("csms.example:443", "csms.example", code, f"ERROR:process command,{code}")
    assert type(error) is kind
    assert words in str(error)


# --- HTTP -------------------------------------------------------------------------------------


def test_our_request_head_becomes_the_modules_header_options() -> None:
    where = Location.parse("https://cp:s3cret@files.example:8443/fw/image.bin?v=2")
    head = request_head(
        "GET", where, {"Range": "bytes=0-65535", "If-Range": '"abc"', "X-Trace": "1"}
    )
    method, target, headers = parse_request_head(head)
    assert (method, target) == ("GET", "/fw/image.bin?v=2")
    with pytest.raises(TransferError, match="x-trace"):
        header_options(headers, where)
    del headers["x-trace"]
    options = dict(header_options(headers, where))
    assert options == {
        "req_user_agent": "chargepoint",
        "req_range": "bytes=0-65535",
        "req_if_range": '"abc"',
        "req_auth": "Basic " + base64.b64encode(b"cp:s3cret").decode(),
    }
    assert server_address(where) == "https://files.example:8443"
    assert basic_auth("http://files.example/x") is None


def test_http_errors_say_whether_to_resume() -> None:
    where = Location.parse("http://files.example/fw.bin")
    assert isinstance(
        http_error(where, "reading", "ERROR:process command,-107"), TransferInterrupted
    )
    refused = http_error(where, "connecting", "ERROR:process command,-111")
    assert not refused.retry_now and "refused" in str(refused)
    assert "all 4 HTTP clients" in str(http_error(where, "create", "ERROR:process command,-12"))


def test_the_at_console_knows_the_blocked_commands() -> None:
    assert {"AT+Connect", "AT+Recv", "AT+Select", "AT+NetAPPGetHostByName"} <= set(
        SIMPLELINK_BLOCKED_COMMANDS
    )
