"""The health check rules (HealthPolicy, HealthTracker) on a fake clock: no processes, no sockets."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent.health import (
    CheckResult,
    HealthChecker,
    HealthEvent,
    HealthPolicy,
    HealthTracker,
    validate_check,
)

HC = tpb.HealthCheck
H, U, K = HealthEvent.HEALTHY, HealthEvent.UNHEALTHY, HealthEvent.KILL


def policy(**kw: object) -> HealthPolicy:
    base: dict[str, object] = dict(
        type=HC.TCP, port=1, delay=0.0, interval=1.0, timeout=1.0, consecutive_failures=3, grace_period=0.0
    )
    base.update(kw)
    return HealthPolicy(**base)  # type: ignore[arg-type]


def command_check(value: str = "true", **kw: object) -> tpb.HealthCheck:
    return tpb.HealthCheck(type=HC.COMMAND, command=rpb.CommandInfo(shell=True, value=value), **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- policy
def test_defaults_from_an_empty_proto() -> None:
    p = HealthPolicy.from_proto(tpb.HealthCheck())
    assert (p.delay, p.interval, p.timeout, p.consecutive_failures, p.grace_period) == (15.0, 10.0, 20.0, 3, 10.0)
    assert p.validate() == ["health check type must be COMMAND, HTTP or TCP (got 0)"]


def test_explicit_zero_values_are_kept_when_set() -> None:
    check = command_check(delay_seconds=0, grace_period_seconds=0)
    p = HealthPolicy.from_proto(check)
    assert p.delay == 0.0 and p.grace_period == 0.0
    assert p.interval == 10.0 and p.timeout == 20.0  # unset: defaults


def test_a_field_cleared_falls_back_to_its_default() -> None:
    check = command_check(interval_seconds=2.0)
    assert HealthPolicy.from_proto(check).interval == 2.0
    check.ClearField("interval_seconds")
    assert HealthPolicy.from_proto(check).interval == 10.0


def test_from_proto_command_http_tcp() -> None:
    p = HealthPolicy.from_proto(command_check("test -f ready"))
    assert p.argv == ("/bin/sh", "-c", "test -f ready") and p.validate() == []
    assert p.describe() == "command 'test -f ready'"

    argv = tpb.HealthCheck(
        type=HC.COMMAND,
        command=rpb.CommandInfo(
            shell=False,
            value="/bin/test",
            arguments=["test", "-f", "a b"],
            environment=rpb.Environment(variables=[rpb.Environment.Variable(name="X", value="1")]),
        ),
    )
    p = HealthPolicy.from_proto(argv)
    assert p.argv == ("/bin/test", "-f", "a b") and p.command_env == (("X", "1"),)  # value is what runs
    assert p.describe() == "command \"/bin/test -f 'a b'\""

    http = tpb.HealthCheck(type=HC.HTTP, http=HC.HTTPCheckInfo(port=31000))
    p = HealthPolicy.from_proto(http)
    assert (p.scheme, p.path, p.statuses, p.validate()) == ("http", "/", (), [])
    assert p.describe() == "HTTP GET http://127.0.0.1:31000/"
    assert p.healthy_status(200) and p.healthy_status(399) and not p.healthy_status(400)
    assert not p.healthy_status(199)

    https = tpb.HealthCheck(
        type=HC.HTTP, http=HC.HTTPCheckInfo(scheme="HTTPS", port=8443, path="health", statuses=[200, 503])
    )
    p = HealthPolicy.from_proto(https)
    assert p.url == "https://127.0.0.1:8443/health"
    assert p.healthy_status(503) and not p.healthy_status(204)

    tcp = tpb.HealthCheck(type=HC.TCP, tcp=HC.TCPCheckInfo(port=5))
    p = HealthPolicy.from_proto(tcp)
    assert p.port == 5 and p.validate() == [] and p.describe() == "TCP connect to 127.0.0.1:5"


@pytest.mark.parametrize(
    ("check", "problem"),
    [
        (tpb.HealthCheck(type=HC.COMMAND), "COMMAND health check needs a command"),
        (command_check(""), "COMMAND health check needs a command"),
        (tpb.HealthCheck(type=HC.HTTP), "HTTP health check needs a port between 1 and 65535 (got 0)"),
        (tpb.HealthCheck(type=HC.TCP), "TCP health check needs a port between 1 and 65535 (got 0)"),
        (
            tpb.HealthCheck(type=HC.TCP, tcp=HC.TCPCheckInfo(port=70000)),
            "TCP health check needs a port between 1 and 65535 (got 70000)",
        ),
        (
            tpb.HealthCheck(type=HC.HTTP, http=HC.HTTPCheckInfo(port=80, scheme="ftp")),
            "HTTP health check scheme must be http or https (got 'ftp')",
        ),
        (
            tpb.HealthCheck(type=HC.HTTP, http=HC.HTTPCheckInfo(port=80, statuses=[200, 999])),
            "HTTP health check statuses must be 100-599 (got [999])",
        ),
        (
            command_check(delay_seconds=-1),
            "health check delay_seconds must be a non-negative number (got -1.0)",
        ),
        (
            command_check(grace_period_seconds=-0.5),
            "health check grace_period_seconds must be a non-negative number (got -0.5)",
        ),
        (
            command_check(interval_seconds=0),
            "health check interval_seconds must be a positive number (got 0.0)",
        ),
        (
            command_check(timeout_seconds=math.nan),
            "health check timeout_seconds must be a positive number (got nan)",
        ),
        (
            command_check(consecutive_failures=0),
            "health check consecutive_failures must be at least 1 (got 0)",
        ),
    ],
)
def test_validate_reports_problems(check: tpb.HealthCheck, problem: str) -> None:
    assert validate_check(check) == [problem]


def test_checker_refuses_an_invalid_check() -> None:
    with pytest.raises(ValueError, match="needs a port"):
        HealthChecker(
            tpb.HealthCheck(type=HC.TCP),
            env={},
            cwd=Path("."),
            launched_at=0.0,
            on_health=lambda h: None,
            on_kill=lambda m: None,
        )


# ---------------------------------------------------------------------- tracker
def test_first_check_waits_for_delay_then_interval_after_each_check() -> None:
    t = HealthTracker(policy(delay=15.0, interval=10.0), launched_at=100.0)
    assert t.next_check_at == 115.0
    assert t.due_in(100.0) == 15.0 and t.due_in(120.0) == 0.0
    t.record(True, 116.5)  # the check ended at 116.5: the next starts one interval later
    assert t.next_check_at == 126.5


def test_failures_in_grace_period_are_ignored() -> None:
    t = HealthTracker(policy(grace_period=10.0, consecutive_failures=2), launched_at=0.0)
    for now in (1.0, 3.0, 5.0, 9.9):
        assert t.in_grace_period(now)
        assert t.record(False, now) is None
    assert t.consecutive_failures == 0 and t.healthy is None
    # Past the grace period failures count: the first reports unhealthy, the second kills.
    assert not t.in_grace_period(10.0)
    assert t.record(False, 10.0) is U
    assert t.record(False, 11.0) is K


def test_grace_period_ends_at_first_success() -> None:
    t = HealthTracker(policy(grace_period=100.0, consecutive_failures=2), launched_at=0.0)
    assert t.record(True, 1.0) is H
    assert not t.in_grace_period(2.0)
    assert t.record(False, 2.0) is U  # counted although within 100 s of launch
    assert t.record(False, 3.0) is K


def test_grace_period_includes_delay() -> None:
    # grace < delay has no effect: the first failure already counts.
    t = HealthTracker(policy(delay=5.0, grace_period=3.0), launched_at=0.0)
    assert t.record(False, t.next_check_at) is U


def test_transitions_only() -> None:
    t = HealthTracker(policy(consecutive_failures=10), launched_at=0.0)
    events = [t.record(ok, float(i)) for i, ok in enumerate([True, True, True, False, False, True, True, False])]
    assert events == [H, None, None, U, None, H, None, U]


def test_success_resets_the_failure_count() -> None:
    t = HealthTracker(policy(consecutive_failures=3), launched_at=0.0)
    outcomes = [True, False, False, True, False, False, True]
    events = [t.record(ok, float(i)) for i, ok in enumerate(outcomes)]
    assert K not in events
    assert t.consecutive_failures == 0


def test_kill_exactly_once_at_threshold() -> None:
    t = HealthTracker(policy(consecutive_failures=3), launched_at=0.0)
    assert t.record(True, 0.0) is H
    assert t.record(False, 1.0) is U
    assert t.record(False, 2.0) is None
    assert t.record(False, 3.0) is K
    assert t.killed and t.healthy is False
    assert [t.record(ok, 4.0 + i) for i, ok in enumerate([False, False, True, False])] == [None] * 4


def test_never_healthy_after_grace_reports_unhealthy_then_kills() -> None:
    t = HealthTracker(policy(grace_period=2.0, consecutive_failures=3), launched_at=0.0)
    assert [t.record(False, float(i)) for i in range(6)] == [None, None, U, None, K, None]


def test_threshold_of_one_kills_on_first_counted_failure() -> None:
    t = HealthTracker(policy(consecutive_failures=1), launched_at=0.0)
    assert t.record(True, 0.0) is H
    assert t.record(False, 1.0) is K


# ---------------------------------------------------------------------- checker loop on a fake clock
class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_checker_loop_schedule_and_callbacks() -> None:
    fake = FakeTime()
    check = command_check(
        delay_seconds=15,
        interval_seconds=10,
        grace_period_seconds=30,
        consecutive_failures=2,
    )
    calls: list[object] = []
    checker = HealthChecker(
        check,
        env={},
        cwd=Path("."),
        launched_at=0.0,
        on_health=calls.append,
        on_kill=lambda m: calls.append(("kill", m)),
        clock=fake.clock,
        sleep=fake.sleep,
    )
    # Probe outcomes by time: failing in the grace period (ignored), healthy, then failing.
    outcomes = iter([False, False, True, True, False, False])
    starts: list[float] = []

    async def probe() -> CheckResult:
        starts.append(fake.now)
        fake.now += 0.5  # each check takes half a second
        return CheckResult(next(outcomes), "command 'true' exited with status 1")

    checker.check_once = probe  # type: ignore[method-assign]
    await asyncio.wait_for(checker.run(), 1.0)
    assert starts == [15.0, 25.5, 36.0, 46.5, 57.0, 67.5]
    assert calls == [
        True,
        False,
        ("kill", "health check failed 2 times in a row: command 'true' exited with status 1"),
    ]


async def test_checker_reports_unhealthy_before_kill_when_threshold_is_one() -> None:
    fake = FakeTime()
    check = command_check(
        delay_seconds=0,
        grace_period_seconds=0,
        consecutive_failures=1,
    )
    calls: list[object] = []
    checker = HealthChecker(
        check,
        env={},
        cwd=Path("."),
        launched_at=0.0,
        on_health=calls.append,
        on_kill=lambda m: calls.append("kill"),
        clock=fake.clock,
        sleep=fake.sleep,
    )
    outcomes = iter([True, False])

    async def probe() -> CheckResult:
        return CheckResult(next(outcomes), "x")

    checker.check_once = probe  # type: ignore[method-assign]
    await asyncio.wait_for(checker.run(), 1.0)
    assert calls == [True, False, "kill"]
