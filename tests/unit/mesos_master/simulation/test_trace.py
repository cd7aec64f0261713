"""The trace format and the cluster spec: what parses, and errors that name the line and the field."""

from __future__ import annotations

import pytest

from mesos_master.simulation.trace import (
    AgentGroup,
    TraceError,
    dump_trace,
    parse_agents,
    parse_duration,
    parse_trace,
)

LINE = '{"time": 5, "job": "j1", "tasks": 3, "role": "prod", "resources": {"cpus": 2, "mem": 512}, "duration": 60}'


def test_a_trace_parses_sorted_by_time_with_its_agents_line() -> None:
    trace = parse_trace(
        [
            '{"agents": "4x cpus:8;mem:16384@zone=2"}',
            "# a comment",
            "",
            LINE,
            '{"time": 1, "job": "j0", "resources": {"cpus": 1}, "duration": 5, "constraints": [{"unique": "zone"}]}',
        ]
    )
    assert [a.job for a in trace.arrivals] == ["j0", "j1"]
    assert trace.agents == [AgentGroup(4, "cpus:8;mem:16384", (("zone", 2),))]
    j0, j1 = trace.arrivals
    assert (j0.role, j0.tasks, j0.task_ids()) == ("*", 1, ["j0"])
    assert j1.task_ids() == ["j1-0", "j1-1", "j1-2"]
    assert j0.constraints[0].kind == "unique" and j0.constraints[0].attribute == "zone"
    assert trace.tasks == 4 and trace.span == 5


def test_a_trace_round_trips_through_its_json_lines() -> None:
    trace = parse_trace(
        [
            LINE,
            '{"time": 7, "job": "k", "resources": {"cpus": 1, "gpus": 1}, "duration": 1, '
            '"constraints": [{"attribute": {"rack": ["r1", "r2"]}, "soft": true}, {"hostname": "h1"}]}',
        ]
    )
    again = parse_trace(list(dump_trace(trace.arrivals, parse_agents("2x cpus:1;mem:1"))))
    assert again.arrivals == trace.arrivals
    assert again.agents == [AgentGroup(2, "cpus:1;mem:1")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "t:1: not JSON"),
        ("[1]", "t:1: must be a JSON object"),
        (LINE.replace('"time": 5', '"time": -1'), "t:1: time: must be a finite number >= 0"),
        (LINE.replace('"tasks": 3', '"tasks": 0'), "t:1: tasks: must be a whole number"),
        (LINE.replace('"role": "prod"', '"role": ""'), "t:1: role: must be a non-empty string"),
        (LINE.replace('"mem": 512', '"mem": "lots"'), "t:1: resources: mem: must be a finite number"),
        (LINE.replace('"duration": 60', '"durasion": 60'), "t:1: unknown field 'durasion'"),
        (LINE.replace("}, ", '}, "constraints": [{"near": "x"}], ', 1), "constraints[0]: needs exactly one of"),
        ('{"agents": "lots"}', "t:1: agents: 'lots' must start with a count"),
    ],
)
def test_bad_lines_are_named(line: str, message: str) -> None:
    with pytest.raises(TraceError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_trace([line], "t")


def test_a_job_arrives_once() -> None:
    with pytest.raises(TraceError, match="t:2: job: 'j1' arrives twice"):
        parse_trace([LINE, LINE], "t")


def test_agents_and_durations() -> None:
    assert parse_agents("2x cpus:4;mem:8 + 1x cpus:64;mem:1024;gpus:2@rack=3,zone=1") == [
        AgentGroup(2, "cpus:4;mem:8"),
        AgentGroup(1, "cpus:64;mem:1024;gpus:2", (("rack", 3), ("zone", 1))),
    ]
    for bad, why in (
        ("0x cpus:1;mem:1", "count must be >= 1"),
        ("3x disk:5", "needs cpus and mem"),
        ("3x cpus:1;mem:1@zone", "NAME=COUNT"),
    ):
        with pytest.raises(TraceError, match=why):
            parse_agents(bad)
    assert [parse_duration(t) for t in ("90", "90s", "15m", "24h", "2d")] == [90, 90, 900, 86400, 172800]
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
