"""The synthetic generator, the Google task_events converter, and the simulator's command line."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mesos_master.simulation.__main__ import main
from mesos_master.simulation.agents import capacity
from mesos_master.simulation.generate import GeneratorOptions, generate, parse_roles
from mesos_master.simulation.google import convert, priority_role
from mesos_master.simulation.trace import TraceError, dump_trace, parse_agents, parse_trace

AGENTS = parse_agents("20x cpus:32;mem:131072@zone=3")


def test_the_generator_is_seeded_and_loads_the_cluster_as_asked() -> None:
    options = GeneratorOptions(hours=6, load=0.5, median_duration=300, duration_sigma=0.5, seed=3)
    arrivals = generate(AGENTS, options)
    assert arrivals == generate(AGENTS, options)
    assert arrivals != generate(AGENTS, GeneratorOptions(hours=6, load=0.5, seed=4))
    assert [a.time for a in arrivals] == sorted(a.time for a in arrivals)
    assert {a.role for a in arrivals} == {"prod", "batch", "dev"}
    asked = sum(a.tasks * a.resources["cpus"] * a.duration for a in arrivals)
    total, _ = capacity(AGENTS)
    assert 0.3 < asked / (total["cpus"] * 6 * 3600) < 0.8  # about the load asked for, with the run times' spread
    assert any(a.constraints for a in arrivals)
    # and it reads back as a trace
    assert parse_trace(list(dump_trace(arrivals, AGENTS))).arrivals == arrivals


def test_roles_with_weights() -> None:
    assert parse_roles("prod:2, batch") == (("prod", 2.0), ("batch", 1.0))
    with pytest.raises(ValueError, match="ROLE:WEIGHT"):
        parse_roles("prod:-1")


def _row(
    ts: float, job: int, index: int, kind: int, priority: int = 0, cpu: str = "", mem: str = "", diff: str = "0"
) -> str:
    return ",".join(
        [str(int(ts * 1e6)), "", str(job), str(index), "m1", str(kind), "u", "0", str(priority), cpu, mem, "", diff]
    )


def test_google_task_events_convert(tmp_path: Path) -> None:
    rows = [
        _row(600, 1, 0, 0, priority=9, cpu="0.125", mem="0.0625", diff="1"),  # SUBMIT, prod, unique host
        _row(600, 1, 1, 0, priority=9, cpu="0.125", mem="0.0625", diff="1"),
        _row(601, 1, 0, 1),  # SCHEDULE
        _row(601, 1, 1, 1),
        _row(661, 1, 0, 4),  # FINISH after 60 s
        _row(661.2, 1, 1, 4),
        _row(700, 2, 0, 0, priority=0, cpu="0.5", mem="0.25"),
        _row(705, 2, 0, 1),
        _row(710, 2, 0, 2),  # EVICT after 5 s ...
        _row(720, 2, 0, 1),  # ... scheduled again, killed after 30: its last run counts
        _row(750, 2, 0, 5),
        _row(800, 3, 0, 0, priority=5, cpu="0.1", mem="0.1"),  # never ends: left out
    ]
    path = tmp_path / "part-00000-of-00500.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(rows) + "\n")
    result = convert([path], machine_cpus=32, machine_mem=65536)
    assert (result.tasks, result.skipped, result.rows) == (3, 1, 12)
    one, two = result.arrivals
    assert (one.time, one.job, one.tasks, one.role, one.duration) == (0.0, "1", 2, "prod", 60.0)
    assert one.resources == {"cpus": 4.0, "mem": 4096.0}
    assert one.constraints[0].kind == "unique" and one.constraints[0].attribute == "hostname"
    assert (two.time, two.role, two.duration, two.resources) == (100.0, "free", 30.0, {"cpus": 16.0, "mem": 16384.0})
    assert [priority_role(p) for p in (0, 1, 2, 8, 9, 11)] == ["free", "free", "batch", "batch", "prod", "prod"]


def test_google_rows_that_are_not_task_events_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("1,2,3\n")
    with pytest.raises(TraceError, match=r"bad.csv:1: 3 columns"):
        convert([path])


SMALL = """\
{"agents": "3x cpus:4;mem:8192"}
{"time": 0, "job": "a", "tasks": 5, "role": "a", "resources": {"cpus": 2, "mem": 512}, "duration": 30}
{"time": 5, "job": "b", "tasks": 2, "role": "b", "resources": {"cpus": 4, "mem": 512}, "duration": 10}
"""


def test_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text(SMALL)
    assert main([str(trace), "--compare", "spread", "--json", "--out", str(tmp_path / "out")]) == 0
    summaries = json.loads(capsys.readouterr().out)
    assert [s["policy"] for s in summaries] == ["drf/binpacking", "drf/spread"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summaries
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "summary.json",
        "utilization.png",
        "waits.png",
        "shares.png",
    }
    assert main([str(trace), "--compare", "fair"]) == 0
    table = capsys.readouterr().out
    assert "drf/binpacking" in table and "fair/binpacking" in table and "wait a p50 / p99" in table
    generated = tmp_path / "g.jsonl"
    assert main(["generate", "--agents", "3x cpus:4;mem:8192", "--hours", "2", "--out", str(generated)]) == 0
    assert parse_trace(generated.read_text().splitlines()).agents == parse_agents("3x cpus:4;mem:8192")
    bare = tmp_path / "bare.jsonl"
    bare.write_text(SMALL.split("\n", 1)[1])
    for argv, why in (
        ([str(tmp_path / "nope.jsonl")], "No such file"),
        ([str(trace), "--allocator", "nope"], "unknown allocator 'nope'"),
        ([str(trace), "--compare", "nope"], "neither an allocator"),
        ([str(bare)], "has no agents line"),
        (["generate", "--roles", "x:0"], "ROLE:WEIGHT"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert why in err and "Traceback" not in err and err.count("\n") == 1, (argv, err)
    with pytest.raises(SystemExit) as flag:
        main([str(trace), "--until", "soon"])
    assert flag.value.code == 2 and "not a duration" in capsys.readouterr().err


def test_aiomesos_simulate_runs_the_simulator(tmp_path: Path) -> None:
    """The SDK's CLI may not import the master: it runs `python -m mesos_master.simulation`, argv, output and exit
    code passed through."""
    trace = tmp_path / "t.jsonl"
    trace.write_text(SMALL)
    cli = [sys.executable, "-m", "scheduler_sdk.cli.main", "simulate"]
    bad = subprocess.run([*cli, str(trace), "--allocator", "nope"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.startswith("aiomesos simulate: error: --allocator: unknown allocator 'nope'"), bad.stderr
