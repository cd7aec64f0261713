"""`aiomesos simulate-agents`: its pure helpers, and bad input (exit 2, one line) before anything attaches."""

from __future__ import annotations

import contextlib
import io

import pytest

from scheduler_sdk.cli.main import main
from scheduler_sdk.cli.simulate_agents import report_line, shares, summed


def test_shares_split_the_agents_evenly_and_in_order() -> None:
    assert shares(10, 3, 5) == [(5, 4), (9, 3), (12, 3)]
    assert shares(2, 4, 0) == [(0, 1), (1, 1)]  # never a process without agents


def test_reports_of_several_processes_are_summed() -> None:
    a = {"agents": 3, "attached": 3, "pings": 5, "ping_interval_seconds": 15.0, "ping_lag_p99_ms": 2.0}
    b = {"agents": 2, "attached": 1, "pings": 1, "ping_interval_seconds": 15.0, "ping_lag_p99_ms": 7.0}
    total = summed([a, b])
    assert (total["agents"], total["attached"], total["pings"], total["ping_lag_p99_ms"]) == (5, 4, 6, 7.0)
    assert total["processes"] == 2
    line = report_line({**total, "tasks_running": 0, "tasks_launched": 0, "tasks_finished": 0, "tasks_killed": 0})
    assert line.startswith("attached 4/5 ") and "lag p99 7.0 ms" in line


def run(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    quiet = contextlib.redirect_stdout(io.StringIO())
    with contextlib.redirect_stderr(err), quiet, pytest.raises(SystemExit) as e:
        main(["simulate-agents", "--master", "127.0.0.1:1", *args])
    assert isinstance(e.value.code, int)
    return e.value.code, err.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "0"], "--count"),
        (["--count", "5", "--attributes-spread", "zone=x"], "zone's count 'x' is not a whole number"),
        (["--count", "5", "--resources", "cpus:nope"], "cpus"),
        (["--count", "5", "--cert", "/x.crt"], "--cert and --key go together"),
        (["--count", "5", "--ca", "/ca.crt"], "need an agent's certificate"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIOMESOS_CONFIG", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")
    code, err = run(*args)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
