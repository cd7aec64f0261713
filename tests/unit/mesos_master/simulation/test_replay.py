"""The replay through the real core: what runs when, never-placed tasks and why, determinism, policies."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mesos_master.simulation.generate import GeneratorOptions, generate
from mesos_master.simulation.plots import write_plots
from mesos_master.simulation.replay import Policy, ReplayResult, replay
from mesos_master.simulation.trace import Trace, parse_agents, parse_trace

AGENTS = parse_agents("4x cpus:4;mem:8192@zone=2")
TRACE = """\
{"time": 0, "job": "a1", "tasks": 6, "role": "a", "resources": {"cpus": 1, "mem": 512}, "duration": 10}
{"time": 1, "job": "b1", "tasks": 6, "role": "b", "resources": {"cpus": 2, "mem": 1024}, "duration": 5}
{"time": 2, "job": "b2", "tasks": 2, "role": "b", "resources": {"cpus": 8, "mem": 1024}, "duration": 5}
{"time": 3, "job": "a2", "tasks": 3, "role": "a", "resources": {"cpus": 1, "mem": 512}, "duration": 10, \
"constraints": [{"unique": "zone"}]}
"""


def run(trace: Trace, policy: Policy | None = None, **kw: object) -> ReplayResult:
    return asyncio.run(replay(trace, AGENTS, policy or Policy(), **kw))  # type: ignore[arg-type]


def test_tasks_run_for_their_duration_and_what_cannot_fit_is_named() -> None:
    result = run(parse_trace(TRACE.splitlines()))
    by_id = {r.task_id: r for r in result.records}
    assert result.figures.finished == 15
    for r in result.records:
        if r.start is not None:
            assert r.end is not None and r.end - r.start == pytest.approx(10 if r.role == "a" else 5)
            assert r.start >= r.arrival
    assert by_id["a1-0"].start == 0.0  # offered at once: a framework's subscription asks for an allocation
    assert {by_id[t].why for t in ("b2-0", "b2-1")} == {"larger than every agent (cpus)"}
    assert result.figures.never_placed_why == {"larger than every agent (cpus)": 2}
    # unique by zone, two zones: the third waits for one of the first two to end
    starts = sorted(by_id[f"a2-{i}"].start or 0.0 for i in range(3))
    assert starts[2] >= starts[0] + 10
    assert result.figures.utilization["cpus"] and max(result.figures.utilization["cpus"]) <= 1.0 + 1e-9


def test_until_cuts_the_replay() -> None:
    result = run(parse_trace(TRACE.splitlines()), until=4.0)
    assert result.figures.horizon == 4.0
    assert result.figures.finished == 0
    assert all(r.end is None for r in result.records)


def test_a_waiting_task_is_placed_when_room_comes_and_reports_why_while_it_waits() -> None:
    lines = [
        '{"time": 0, "job": "big", "tasks": 4, "role": "a", "resources": {"cpus": 4, "mem": 100}, "duration": 100}',
        '{"time": 1, "job": "late", "tasks": 1, "role": "b", "resources": {"cpus": 2, "mem": 100}, "duration": 1}',
    ]
    result = run(parse_trace(lines))
    late = next(r for r in result.records if r.task_id == "late")
    assert late.start == pytest.approx(100.0, abs=1.5)  # when a big task ended and freed an agent
    waiting = run(parse_trace(lines), until=50.0)
    late = next(r for r in waiting.records if r.task_id == "late")
    assert late.start is None and late.why  # the engine's reason at the last run


def _synthetic(seed: int) -> Trace:
    options = GeneratorOptions(hours=0.1, load=1.5, mean_tasks=3, median_duration=30, duration_sigma=0.3, seed=seed)
    return Trace(generate(AGENTS, options))


def test_the_same_trace_and_seed_give_the_same_figures() -> None:
    trace = _synthetic(1)
    assert trace.tasks > 50
    first, second = run(trace, Policy("random"), seed=7), run(trace, Policy("random"), seed=7)
    assert first.figures.summary() == second.figures.summary()
    assert [(r.task_id, r.start, r.end) for r in first.records] == [(r.task_id, r.start, r.end) for r in second.records]
    assert first.figures.waits["all"]["max"] > 0  # a queue formed: the policy had decisions to make
    other = run(trace, Policy("random"), seed=8)
    assert [(r.task_id, r.start) for r in other.records] != [(r.task_id, r.start) for r in first.records]


def test_plots_side_by_side(tmp_path: Path) -> None:
    trace = parse_trace(TRACE.splitlines())
    results = [run(trace), run(trace, Policy("fair"))]
    written = write_plots(results, tmp_path)
    assert [p.name for p in written] == ["utilization.png", "waits.png", "shares.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_policies_differ_where_they_should() -> None:
    trace = parse_trace(
        [
            '{"time": 0, "job": "s", "tasks": 4, "role": "a", "resources": {"cpus": 1, "mem": 100}, "duration": 50}',
        ]
    )
    packed = run(trace, Policy(fitness="cpu"))
    spread = run(trace, Policy(fitness="spread-cpu"))
    assert packed.figures.finished == spread.figures.finished == 4
    # the same utilization either way; binpacking fills one agent, spread one task per agent
    assert packed.figures.mean_utilization == spread.figures.mean_utilization
    assert packed.summary()["policy"] == "drf/cpu" and spread.summary()["policy"] == "drf/spread-cpu"


def test_the_summary_reports_the_replay_speed() -> None:
    result = run(parse_trace(TRACE.splitlines()))
    replayed = result.summary()["replay"]
    assert replayed["events"] > 0 and replayed["allocation_cycles"] > 0 and replayed["engine_runs"] > 0
    assert replayed["trace_hours_per_s"] > 0
