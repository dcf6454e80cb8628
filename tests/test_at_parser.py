"""The AT response parser, fed bytes with no serial port at all.

Framing per V.25ter with ATV1 (at-protocol.md §1.1), the prompt of §1.2/§2.7, QIRD payloads
of §2.8 and the quirks of §9.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transport.at import (
    PROMPT,
    AtEvent,
    AtParser,
    Connect,
    Echo,
    FinalResult,
    Line,
    Noise,
    ResultKind,
    Urc,
)
from transport.modems.quectel import QuectelModem
from transport.simulator.quectel import ModuleProfile, QuectelModule


def parse(data: bytes, parser: AtParser | None = None) -> list[AtEvent]:
    return (parser or QuectelModem.parser()).feed(data)


def parse_split(data: bytes, cuts: list[int]) -> list[AtEvent]:
    parser = QuectelModem.parser()
    events: list[AtEvent] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        events += parser.feed(data[start:cut])
        start = cut
    return events


OK = FinalResult(ResultKind.OK, "OK")

TABLE = [
    ("bare OK", b"\r\nOK\r\n", [OK]),
    ("echo then OK", b"AT\r\r\nOK\r\n", [Echo("AT"), OK]),
    ("lower-case echo", b"ati\r\r\nQuectel\r\n", [Echo("ati"), Line("Quectel")]),
    ("blank lines ignored", b"\r\n\r\n\r\nOK\r\n\r\n", [OK]),
    ("bare LF endings", b"\n+CSQ: 24,99\nOK\n", [Line("+CSQ: 24,99"), OK]),
    ("bare CR endings", b"\r+CSQ: 24,99\rOK\r", [Line("+CSQ: 24,99"), OK]),
    ("plain ERROR", b"\r\nERROR\r\n", [FinalResult(ResultKind.ERROR, "ERROR")]),
    (
        "numeric CME",
        b"\r\n+CME ERROR: 10\r\n",
        [FinalResult(ResultKind.CME_ERROR, "+CME ERROR: 10")],
    ),
    (
        "verbose CME",
        b"\r\n+CME ERROR: SIM not inserted\r\n",
        [FinalResult(ResultKind.CME_ERROR, "+CME ERROR: SIM not inserted")],
    ),
    ("CMS", b"\r\n+CMS ERROR: 500\r\n", [FinalResult(ResultKind.CMS_ERROR, "+CMS ERROR: 500")]),
    ("SEND OK", b"\r\nSEND OK\r\n", [FinalResult(ResultKind.SEND_OK, "SEND OK")]),
    ("SEND FAIL", b"\r\nSEND FAIL\r\n", [FinalResult(ResultKind.SEND_FAIL, "SEND FAIL")]),
    ("NO CARRIER", b"\r\nNO CARRIER\r\n", [FinalResult(ResultKind.NO_CARRIER, "NO CARRIER")]),
    (
        "TI SimpleLink error wording",
        b"\r\nERROR: process command,-111\r\n",
        [FinalResult(ResultKind.ERROR, "ERROR: process command,-111")],
    ),
    ("prompt with space", b"\r\n> ", [PROMPT]),
    ("prompt without space (EC200U formatcfg 0)", b"\r\n>", [PROMPT]),
    ("prompt then CRLF (EC200U formatcfg 1)", b"\r\n>\r\n", [PROMPT]),
    (
        "prompt then SEND OK",
        b"AT+QISEND=0,5\r\r\n> \r\nSEND OK\r\n",
        [Echo("AT+QISEND=0,5"), PROMPT, FinalResult(ResultKind.SEND_OK, "SEND OK")],
    ),
    (
        "URC between echo and OK",
        b'AT+CSQ\r\r\n+QIURC: "recv",0\r\n\r\n+CSQ: 24,99\r\n\r\nOK\r\n',
        [Echo("AT+CSQ"), Urc('+QIURC: "recv",0'), Line("+CSQ: 24,99"), OK],
    ),
    (
        "URC between prompt and SEND OK",
        b'\r\n> \r\n+QIURC: "closed",1\r\n\r\nSEND OK\r\n',
        [PROMPT, Urc('+QIURC: "closed",1'), FinalResult(ResultKind.SEND_OK, "SEND OK")],
    ),
    ("boot URCs", b"\r\nRDY\r\n\r\n+CFUN: 1\r\n", [Urc("RDY"), Urc("+CFUN: 1")]),
    ("CONNECT", b"\r\nCONNECT\r\n", [Connect("CONNECT", None)]),
    # AT+QFREAD (at-protocol.md §4.7): CONNECT <n>, exactly n bytes whatever they hold, OK.
    (
        "CONNECT with length",
        b"\r\nCONNECT 10\r\nOK\r\n\r\n>ABC\r\nOK\r\n",
        [Connect("CONNECT 10", 10, b"OK\r\n\r\n>ABC"), OK],
    ),
    (
        "CONNECT 0 at the end of a file",
        b"\r\nCONNECT 0\r\n\r\nOK\r\n",
        [Connect("CONNECT 0", 0), OK],
    ),
    (
        "QIRD payload",
        b"\r\n+QIRD: 5\r\nhello\r\n\r\nOK\r\n",
        [Line("+QIRD: 5", b"hello"), OK],
    ),
    (
        "QIRD payload that looks like a final result",
        b"\r\n+QIRD: 6\r\n\r\nOK\r\n\r\n\r\nOK\r\n",
        [Line("+QIRD: 6", b"\r\nOK\r\n"), OK],
    ),
    (
        "QIRD payload that looks like a URC, a prompt and Ctrl-Z",
        b'\r\n+QIRD: 23\r\n\r\n+QIURC: "recv",0\r\n> \x1a\r\n\r\nOK\r\n',
        [Line("+QIRD: 23", b'\r\n+QIURC: "recv",0\r\n> \x1a'), OK],
    ),
    ("QIRD empty", b"\r\n+QIRD: 0\r\n\r\nOK\r\n", [Line("+QIRD: 0"), OK]),
    (
        "QIRD query form announces nothing",
        b"\r\n+QIRD: 10,10,0\r\n\r\nOK\r\n",
        [Line("+QIRD: 10,10,0"), OK],
    ),
    (
        "QIRD header ended by bare LF: the payload may start with CR",
        b"\n+QIRD: 2\n\rx\r\nOK\r\n",
        [Line("+QIRD: 2", b"\rx"), OK],
    ),
    (
        "QIRD payload starting with LF after CRLF header",
        b"\r\n+QIRD: 2\r\n\nx\r\nOK\r\n",
        [Line("+QIRD: 2", b"\nx"), OK],
    ),
    (
        "UDP service QIRD",
        b'\r\n+QIRD: 3,"10.7.76.34",7687\r\nabc\r\nOK\r\n',
        [Line('+QIRD: 3,"10.7.76.34",7687', b"abc"), OK],
    ),
    (
        "garbage bytes form a line of their own",
        b"\r\n\xff\x00\x13noise\r\n\r\nOK\r\n",
        [Line("\xff\x00\x13noise"), OK],
    ),
    ("stray Ctrl-Z before a line", b"\x1a\r\nOK\r\n", [Line("\x1a"), OK]),
]


@pytest.mark.parametrize(("name", "data", "expected"), TABLE, ids=[t[0] for t in TABLE])
def test_parser_table(name: str, data: bytes, expected: list[AtEvent]) -> None:
    assert parse(data) == expected


@pytest.mark.parametrize(("name", "data", "expected"), TABLE, ids=[t[0] for t in TABLE])
def test_parser_table_one_byte_at_a_time(name: str, data: bytes, expected: list[AtEvent]) -> None:
    parser = QuectelModem.parser()
    events: list[AtEvent] = []
    for byte in data:
        events += parser.feed(bytes([byte]))
    assert events == expected


def test_qird_payload_containing_ok_is_not_mistaken_for_final_result() -> None:
    events = parse(b"\r\n+QIRD: 4\r\nOK\r\n\r\n\r\nOK\r\n")
    assert events == [Line("+QIRD: 4", b"OK\r\n"), OK]


def test_prompt_is_reported_before_its_trailing_space_arrives() -> None:
    parser = QuectelModem.parser()
    assert parser.feed(b"\r\n>") == [PROMPT]
    assert parser.feed(b" ") == []
    assert parser.feed(b"\r\nSEND OK\r\n") == [FinalResult(ResultKind.SEND_OK, "SEND OK")]


def test_payload_header_is_held_until_every_byte_has_arrived() -> None:
    parser = QuectelModem.parser()
    assert parser.feed(b"\r\n+QIRD: 10\r\n01234") == []
    assert parser.in_payload
    assert parser.feed(b"56789\r\nOK\r\n") == [Line("+QIRD: 10", b"0123456789"), OK]


def test_overlong_line_is_cut_into_noise_and_parsing_goes_on() -> None:
    parser = AtParser(max_line=8)
    events = parser.feed(b"0123456789abcdefXY\r\nOK\r\n")
    assert events == [Noise(b"01234567"), Noise(b"89abcdef"), Line("XY"), OK]


def test_absurd_payload_length_is_not_trusted() -> None:
    parser = AtParser(payload_rules=QuectelModem.parser()._payload_rules, max_payload=1500)
    assert parser.feed(b"\r\n+QIRD: 999999\r\n\r\nOK\r\n") == [Line("+QIRD: 999999"), OK]


def test_reset_drops_a_partial_payload() -> None:
    parser = QuectelModem.parser()
    parser.feed(b"\r\n+QIRD: 100\r\nabc")
    parser.reset()
    assert parser.feed(b"\r\nOK\r\n") == [OK]


def test_final_result_detail_and_code() -> None:
    numeric = FinalResult(ResultKind.CME_ERROR, "+CME ERROR: 10")
    verbose = FinalResult(ResultKind.CME_ERROR, "+CME ERROR: SIM not inserted")
    assert (numeric.code, numeric.detail) == (10, "10")
    assert (verbose.code, verbose.detail) == (None, "SIM not inserted")
    assert not numeric.success
    assert FinalResult(ResultKind.SEND_OK, "SEND OK").success


# --- property: any split of a recorded stream yields the same events ------------------------

NASTY = [
    b"\r\nOK\r\n",
    b'\r\n+QIURC: "recv",0\r\n',
    b"\x1a",
    b"\r\n> ",
    b"+QIRD: 5\r\n",
    b"\r\nERROR\r\n",
    b"\r\n+CME ERROR: 3\r\n",
    b"\x1b",
    b"\r",
    b"\n",
]


def record_module_stream(payloads: list[bytes]) -> bytes:
    """Drive the simulator's interpreter (no I/O) through a session and keep what it said.

    The recorded stream comes from the independent reading of the manuals, with echo on for
    the first commands, URCs, prompts, SEND OK/FAIL, errors, and QIRD payloads carrying the
    nasty sequences above.
    """
    module = QuectelModule(ModuleProfile(send_buffer=4000))
    module.power_on(0.0)
    module.tick(0.0)
    t = 1.0
    script = [
        b"AT\r",
        b"AT+CPIN?\r",
        b"ATE0\r",
        b"AT+CMEE=2\r",
        b"AT+CIMI\r",
        b"AT+NOSUCH\r",
        b'AT+QICSGP=1,1,"internet","","",1\r',
        b"AT+QIACT=1\r",
        b"AT+QIACT?\r",
        b'AT+QIOPEN=1,0,"TCP","127.0.0.1",8080,0,0\r',
    ]
    for line in script:
        module.receive(line, t)
    module.take_actions()
    module.tcp_opened(0, 40000)
    for payload in payloads:
        module.tcp_received(0, payload)
        module.receive(b"AT+QIRD=0,1500\r", t)
        module.receive(b"AT+QIRD=0,1500\r", t)
        module.receive(f"AT+QISEND=0,{len(payload) or 1}\r".encode(), t)
        module.receive(payload or b"x", t)
    module.receive(b"AT+QISEND=0,1460\r" + bytes(1460) * 1, t)
    module.receive(b"AT+QISEND=0,1460\r" + bytes(1460), t)
    module.receive(b"AT+QISEND=0,1460\r" + bytes(1460), t)  # over the 4000-byte buffer: SEND FAIL
    module.network_deactivates_pdp(1)
    return b"".join(module.take_output())


payload_strategy = st.lists(
    st.one_of(
        st.binary(min_size=1, max_size=300),
        st.lists(st.sampled_from(NASTY), min_size=1, max_size=12).map(b"".join),
    ),
    min_size=1,
    max_size=6,
)


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(payloads=payload_strategy, data=st.data())
def test_any_split_of_a_recorded_stream_gives_the_same_events(
    payloads: list[bytes], data: st.DataObject
) -> None:
    stream = record_module_stream(payloads)
    whole = parse(stream)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=40))
    assert parse_split(stream, cuts) == whole
    # And the payloads come out exactly as the network delivered them.
    qird = [e.payload for e in whole if isinstance(e, Line) and e.payload is not None]
    assert qird == [p for p in payloads if p]


def test_recorded_stream_holds_what_the_property_test_relies_on() -> None:
    stream = record_module_stream([b"\r\nOK\r\n", b'\r\n+QIURC: "recv",0\r\n\x1a'])
    events = parse(stream)
    kinds = {type(e).__name__ for e in events}
    assert {"Echo", "Line", "Urc", "Prompt", "FinalResult"} <= kinds
    results = {e.text for e in events if isinstance(e, FinalResult)}
    assert {"OK", "ERROR", "SEND OK", "SEND FAIL"} <= results
    assert Urc('+QIURC: "pdpdeact",1') in events


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(payload=st.binary(min_size=1, max_size=1500), cut=st.integers(min_value=0))
def test_any_qird_payload_round_trips_exactly(payload: bytes, cut: int) -> None:
    stream = b"\r\n+QIRD: %d\r\n" % len(payload) + payload + b"\r\n\r\nOK\r\n"
    cut %= len(stream) + 1
    assert parse_split(stream, [cut]) == [Line(f"+QIRD: {len(payload)}", payload), OK]
