"""The OCPP frame trace (chargepoint/protocol/frame_trace.py): JSON lines on a file kept open,
bounded by rotation, and no file-system metadata call per frame (issue 19 item 2)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest

from chargepoint.protocol.frame_trace import FrameTrace

FRAME = '[2,"1","Heartbeat",{}]'


def lines(trace: FrameTrace) -> list[dict[str, str]]:
    return [json.loads(line) for path in trace.files() for line in path.read_text().splitlines()]


def test_each_frame_is_one_json_line_with_time_direction_and_redacted_text(tmp_path: Path) -> None:
    trace = FrameTrace(
        tmp_path / "state" / "frames.jsonl", redact=lambda frame: frame.replace("s3cret", "***")
    )
    trace.record("out", FRAME)
    trace.record("in", '[3,"1",{"key":"s3cret","text":"Grüße"}]')
    first, second = lines(trace)
    assert first["direction"] == "out" and first["frame"] == FRAME
    assert first["time"].endswith("+00:00") and "." in first["time"]
    assert second == {**second, "direction": "in", "frame": '[3,"1",{"key":"***","text":"Grüße"}]'}
    trace.close()


def test_the_trace_is_bounded_by_its_rotation(tmp_path: Path) -> None:
    trace = FrameTrace(tmp_path / "frames.jsonl", max_bytes=2000, backups=2)
    for i in range(500):
        trace.record("in", f'[2,"{i}","Heartbeat",{{}}]')
    files = trace.files()
    assert [p.name for p in files] == ["frames.jsonl.2", "frames.jsonl.1", "frames.jsonl"]
    assert all(p.stat().st_size <= 2000 for p in files)
    # Nothing lost between the files kept: the frames they hold are the newest, in order.
    ids = [json.loads(entry["frame"])[1] for entry in lines(trace)]
    assert ids == [str(i) for i in range(500 - len(ids), 500)]
    trace.close()


def test_a_trace_reopened_after_a_restart_counts_the_bytes_already_there(tmp_path: Path) -> None:
    path = tmp_path / "frames.jsonl"
    first = FrameTrace(path, max_bytes=4000)
    for i in range(10):
        first.record("in", f'[2,"{i}","Heartbeat",{{}}]')
    first.close()
    size = path.stat().st_size
    assert 0 < size < 4000
    second = FrameTrace(path, max_bytes=4000)
    while not path.with_name("frames.jsonl.1").exists():
        second.record("in", FRAME)
    # The file it rotated held the first run's frames and then the second's, up to the limit.
    rotated = path.with_name("frames.jsonl.1")
    assert 4000 - 100 < rotated.stat().st_size <= 4000
    first_line = json.loads(rotated.read_text().splitlines()[0])
    assert json.loads(first_line["frame"])[1] == "0"
    second.close()


def test_a_frame_costs_no_open_mkdir_or_stat_once_the_file_is_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = FrameTrace(tmp_path / "deep" / "frames.jsonl", max_bytes=10_000_000)
    trace.record("out", FRAME)  # opens the file (and makes its directory) once
    calls: list[str] = []
    watching = True

    def audit(event: str, args: tuple[object, ...]) -> None:
        if watching and event in ("open", "os.mkdir", "os.rename", "os.remove"):
            calls.append(f"{event} {args[0]}")

    sys.addaudithook(audit)
    real_stat = os.stat

    def stat(*args: object, **kwargs: object) -> os.stat_result:
        calls.append(f"stat {args[0]}")
        return real_stat(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", stat)
    fd = trace._handler.stream.fileno()
    for _ in range(200):
        trace.record("in", FRAME)
        trace.record("out", FRAME)
    watching = False
    monkeypatch.undo()
    assert calls == []
    assert trace._handler.stream.fileno() == fd
    assert len(lines(trace)) == 401  # and every frame reached the file (flushed, no close)
    trace.close()


def test_a_disk_that_refuses_writes_is_said_once_and_the_trace_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    trace = FrameTrace(blocker / "frames.jsonl")
    with caplog.at_level(logging.ERROR, logger="chargepoint.protocol.frame_trace"):
        for _ in range(5):
            trace.record("in", FRAME)
    said = [r for r in caplog.records if "cannot write the OCPP frame trace" in r.getMessage()]
    assert len(said) == 1
    blocker.unlink()  # the technician frees the path: the next frame is written
    trace.record("in", FRAME)
    assert [entry["frame"] for entry in lines(trace)] == [FRAME]
    trace.close()


def test_close_releases_the_file_and_a_later_frame_opens_it_again(tmp_path: Path) -> None:
    trace = FrameTrace(tmp_path / "frames.jsonl")
    trace.record("in", FRAME)
    before = len(os.listdir("/proc/self/fd"))
    trace.close()
    assert len(os.listdir("/proc/self/fd")) == before - 1
    trace.record("out", FRAME)
    assert len(lines(trace)) == 2
    trace.close()
