"""`make demo` runs `chargepoint demo`: it must finish on its own, succeed, and say so."""

from __future__ import annotations

import io

from chargepoint import cli, demo


async def test_demo_round_trip_succeeds_and_prints_a_timeline() -> None:
    out = io.StringIO()
    assert await demo.run(out) == 0
    text = out.getvalue()
    assert "every byte came back intact" in text
    assert "AT+QIOPEN=1,0" in text  # the AT conversation is on the timeline
    assert "closed the connection" in text  # the dropped connection is reported...
    assert "reconnected on socket 0: intact" in text  # ...and recovered from


def test_cli_knows_the_demo_command(capsys) -> None:
    try:
        cli.main(["--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    assert "demo" in capsys.readouterr().out
