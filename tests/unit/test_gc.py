"""Sandbox garbage collection: which sandboxes go (age, disk watermark), which never do (live tasks)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mesos_agent.gc import SandboxGC, fraction, live_sandboxes, parse_duration, select
from mesos_agent.sandbox import create_sandbox

DAY = 24 * 3600.0
WEEK = 7 * DAY
NOW = 1_000_000_000.0
P = Path


def sb(name: str, age: float, size: int = 0) -> tuple[Path, float, int]:
    return (P(name), NOW - age, size)


def test_by_age_only_runs_past_the_delay_go() -> None:
    boxes = [sb("new", DAY), sb("old", WEEK + 1), sb("older", 3 * WEEK), sb("edge", WEEK)]
    assert select(boxes, NOW, 0.1) == [P("older"), P("old"), P("edge")]
    assert select(boxes, NOW, 0.1, delay_seconds=2 * DAY) == [P("older"), P("old"), P("edge")]
    assert select(boxes, NOW, 0.1, delay_seconds=0.5 * DAY) == [P("older"), P("old"), P("edge"), P("new")]
    assert select([], NOW, 0.99) == []


def test_live_sandboxes_are_never_removed() -> None:
    boxes = [sb("live-old", 4 * WEEK, 10), sb("dead-old", 2 * WEEK, 10), sb("live-new", 1, 10)]
    live = {P("live-old"), P("live-new")}
    assert select(boxes, NOW, 0.1, live=live) == [P("dead-old")]
    # Not even when the disk is full.
    assert select(boxes, NOW, 0.99, live=live, disk_total_bytes=100) == [P("dead-old")]
    assert select(boxes, NOW, 0.99, live=live) == [P("dead-old")]


def test_over_the_watermark_oldest_go_first_until_under_it_by_estimate() -> None:
    boxes = [sb("a", 1 * DAY, 30), sb("b", 2 * DAY, 30), sb("c", 3 * DAY, 30), sb("d", 10, 30)]
    total = 1000
    # 95 % full, watermark 90 %: 50 bytes to free. Oldest first: c (30), then b (60 ≥ 50): stop.
    assert select(boxes, NOW, 0.95, disk_total_bytes=total) == [P("c"), P("b")]
    # Just under the watermark: age alone decides.
    assert select(boxes, NOW, 0.89, disk_total_bytes=total) == []
    # What goes by age counts toward the target.
    old = [*boxes, sb("ancient", 2 * WEEK, 40)]
    assert select(old, NOW, 0.95, disk_total_bytes=total) == [P("ancient"), P("c")]
    # Far over: everything finished goes.
    assert select(boxes, NOW, 1.0, disk_total_bytes=total, disk_watermark=0.5) == [P("c"), P("b"), P("a"), P("d")]
    # The disk's size unknown: every finished sandbox goes.
    assert select(boxes, NOW, 0.95) == [P("c"), P("b"), P("a"), P("d")]


def test_gc_method_uses_its_own_delay_and_watermark(tmp_path: Path) -> None:
    gc = SandboxGC(tmp_path, lambda: "a1", delay_seconds=DAY, disk_watermark=0.5, clock=lambda: NOW)
    boxes = [sb("x", 2 * DAY, 10), sb("y", 1, 10)]
    assert gc.select(boxes, NOW, 0.4) == [P("x")]
    assert gc.select(boxes, NOW, 0.6, disk_total_bytes=10) == [P("x")]
    assert gc.select(boxes, NOW, 0.6, disk_total_bytes=1000) == [P("x"), P("y")]


def _age(path: Path, seconds: float) -> None:
    t = NOW - seconds
    for p in [path, *path.iterdir()]:
        os.utime(p, (t, t), follow_symlinks=False)


async def test_collect_removes_old_runs_keeps_live_and_prunes_empty_dirs(tmp_path: Path) -> None:
    old = create_sandbox(tmp_path, "a1", "fw", "old-task", "c1")
    (old / "stdout").write_text("bye")
    _age(old, 2 * WEEK)
    # Two runs of one executor: the old one goes, the newer (and `latest`) stays.
    rerun_old = create_sandbox(tmp_path, "a1", "fw", "rerun", "r1")
    rerun_new = create_sandbox(tmp_path, "a1", "fw", "rerun", "r2")
    _age(rerun_old, 2 * WEEK)
    live = create_sandbox(tmp_path, "a1", "fw2", "live-task", "c2")
    _age(live, 3 * WEEK)
    fresh = create_sandbox(tmp_path, "a1", "fw", "fresh", "c3")
    _age(fresh, DAY)
    # Sandboxes of an older agent id of this work dir are collected too.
    previous = create_sandbox(tmp_path, "a0", "fw0", "t", "c0")
    _age(previous, 2 * WEEK)

    gc = SandboxGC(
        tmp_path,
        lambda: "a1",
        clock=lambda: NOW,
        live_sandboxes=lambda: [live.parent / "latest"],  # known through the link: still the same sandbox
        disk_fill=lambda _: (0.1, 1 << 40),
    )
    removed = await gc.collect()
    assert sorted(removed) == sorted([old, rerun_old, previous])
    assert not old.exists() and not old.parent.parent.exists(), "the executor dir of a removed run goes too"
    assert not (tmp_path / "agents" / "a0" / "frameworks" / "fw0").exists()
    assert (tmp_path / "agents" / "a0").is_dir(), "only framework dirs and below are pruned"
    assert rerun_new.is_dir() and (rerun_new.parent / "latest").resolve() == rerun_new
    assert live.is_dir() and fresh.is_dir()
    assert (tmp_path / "agents" / "a1" / "frameworks" / "fw").is_dir()

    # Disk full: the fresh run goes as well, the live one still stays.
    gc.disk_fill = lambda _: (0.97, 1 << 40)
    removed = await gc.collect()
    assert sorted(removed) == sorted([rerun_new, fresh])
    assert live.is_dir()
    assert gc.removed == 5


async def test_collect_waits_for_an_agent_id(tmp_path: Path) -> None:
    old = create_sandbox(tmp_path, "a1", "fw", "t", "c1")
    _age(old, 2 * WEEK)
    gc = SandboxGC(tmp_path, lambda: "", clock=lambda: NOW, disk_fill=lambda _: (0.1, 100))
    assert await gc.collect() == []
    assert old.is_dir()


def test_durations_and_fractions_for_the_flags() -> None:
    assert parse_duration("3600") == 3600
    assert parse_duration("90s") == 90
    assert parse_duration("30m") == 1800
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration("7d") == WEEK
    assert parse_duration("1w") == WEEK
    assert parse_duration("0") == 0
    for bad in ("", "abc", "-5", "5x", "nan"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert fraction("0.9") == 0.9
    for bad in ("0", "1.5", "-0.1"):
        with pytest.raises(ValueError):
            fraction(bad)


def test_live_sandboxes_of_an_agent_include_re_adopted_tasks(tmp_path: Path) -> None:
    def run(fid: str, tid: str, cid: str, sandbox: Path | None) -> Any:
        return SimpleNamespace(
            framework=SimpleNamespace(id=fid), info=SimpleNamespace(task_id=tid), container_id=cid, sandbox=sandbox
        )

    launched = tmp_path / "somewhere"
    agent: Any = SimpleNamespace(
        work_dir=tmp_path,
        agent_id="a1",
        tasks={("f", "t1"): run("f", "t1", "c1", launched), ("f", "t/2"): run("f", "t/2", "c2", None)},
    )
    assert live_sandboxes(agent) == [
        launched,
        tmp_path / "agents/a1/frameworks/f/executors/t_2/runs/c2",
    ]
