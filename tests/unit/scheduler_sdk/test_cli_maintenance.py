"""`aiomesos agent drain` / `agent up`: durations, routing past the agent daemon, and what `agents` shows."""

from __future__ import annotations

import argparse

import pytest

from aiomesos.v1 import operator_pb2 as opb
from scheduler_sdk._daemon.flags import non_negative_duration as duration
from scheduler_sdk.cli.main import build_parser, main
from scheduler_sdk.cli.maintenance import drain_json, drain_text, routed


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("2d", 172800), ("45", 45), ("0", 0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10x", "m10", "1h 30m", "-5", "-5s", "inf", "nan", "10mm"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)


def test_agent_drain_and_up_are_ours_the_rest_is_the_daemon() -> None:
    assert routed(["agent", "drain", "S1", "--deadline", "10m"]) == ["agent drain", "S1", "--deadline", "10m"]
    assert routed(["agent", "up", "S1"]) == ["agent up", "S1"]
    assert routed(["agent", "--work-dir", "d"]) is None and routed(["agents"]) is None
    args = build_parser().parse_args(routed(["agent", "drain", "S1", "--deadline", "1h", "--mark-gone", "--wait"]))
    assert (args.command, args.agent_id, args.deadline, args.mark_gone, args.wait) == (
        "agent drain",
        "S1",
        3600,
        True,
        True,
    )


def test_a_bad_deadline_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["agent", "drain", "S1", "--deadline", "soon"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--deadline" in err and "'soon'" in err


def test_what_agents_shows_of_a_drain() -> None:
    assert drain_text(drain_json(opb.DrainInfo())) == "-"
    drained = opb.DrainInfo(state=opb.DRAINED, since=1.0, drained_at=2.0)
    assert drain_text(drain_json(drained)) == "DRAINED"
    draining = opb.DrainInfo(state=opb.DRAINING, deadline=1_000.0 + 552, mark_gone=True)
    text = drain_text(drain_json(draining), now=1_000.0)
    assert text.startswith("DRAINING (deadline ") and "in 9m12s" in text and text.endswith("; mark gone)")
    assert "passed" in drain_text(drain_json(draining), now=5_000.0)
    assert drain_json(draining) == {
        "state": "DRAINING",
        "deadline": 1552.0,
        "mark_gone": True,
        "since": 0.0,
        "drained_at": None,
    }
