"""Sandbox garbage collection: which sandboxes go (age, disk watermark), which never do (live tasks)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mesos_agent import gc as gc_module
from mesos_agent.gc import SandboxGC, SandboxRegistry, fraction, live_sandboxes, scan, select
from mesos_agent.sandbox import create_sandbox
from scheduler_sdk._daemon.flags import parse_duration

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
        tmp_path / "agents/a1/frameworks/f/executors/t%2F2/runs/c2",
    ]


async def test_a_sandbox_created_while_the_scan_runs_is_not_removed(tmp_path: Path, monkeypatch: Any) -> None:
    """The scan runs in a thread while the agent goes on launching: a sandbox created meanwhile belongs to a live
    task even though it was not live when the pass began. Even with the disk full, it must stay."""
    old = create_sandbox(tmp_path, "a1", "fw", "old", "c1")
    _age(old, 2 * WEEK)
    live: list[Path] = []
    scanning, go_on = threading.Event(), threading.Event()
    real_scan = gc_module.scan

    def slow_scan(*args: Any) -> list[Any]:
        scanning.set()
        assert go_on.wait(10)
        return real_scan(*args)

    monkeypatch.setattr(gc_module, "scan", slow_scan)
    gc = SandboxGC(
        tmp_path,
        lambda: "a1",
        clock=lambda: NOW,
        live_sandboxes=lambda: list(live),
        disk_fill=lambda _: (0.99, 1 << 40),
    )
    pass_ = asyncio.create_task(gc.collect())
    assert await asyncio.to_thread(scanning.wait, 10)
    # A launch, in the event loop, while the scan is under way: the task is held, then its sandbox created.
    new = create_sandbox(tmp_path, "a1", "fw", "new", "c2")
    live.append(new)
    go_on.set()
    removed = await pass_
    assert removed == [old]
    assert new.is_dir(), "the sandbox of a task launched during the scan was removed"


# ------------------------------------------------------------------ finished marks
def test_a_sandbox_is_marked_finished_when_its_task_ends(tmp_path: Path) -> None:
    reg = SandboxRegistry(tmp_path)
    box = create_sandbox(tmp_path, "a1", "fw", "t", "c1")
    reg.started(box)
    _age(box, 3 * WEEK)  # a task silent for weeks: its files are old
    reg.finished(box)
    (found,) = scan(tmp_path, measure=False)
    assert time.time() - found.finished_at < 60, "the GC's delay counts from the task's end"
    assert reg.open() == set()
    assert SandboxRegistry(tmp_path).load() == set()


def test_sandboxes_of_tasks_that_ended_unseen_are_marked_finished_at_the_next_start(tmp_path: Path) -> None:
    reg = SandboxRegistry(tmp_path)
    ended_unseen = create_sandbox(tmp_path, "a1", "fw", "rebooted", "c1")
    readopted = create_sandbox(tmp_path, "a1", "fw", "still-running", "c2")
    done_before = create_sandbox(tmp_path, "a1", "fw", "done", "c3")
    for box in (ended_unseen, readopted, done_before):
        reg.started(box)
    reg.finished(done_before)
    for box in (ended_unseen, readopted, done_before):
        _age(box, 3 * WEEK)
    # The agent process dies; the next one loads what is left open.
    nxt = SandboxRegistry(tmp_path)
    unfinished = nxt.load()
    assert unfinished == {
        str(ended_unseen.relative_to(tmp_path)),
        str(readopted.relative_to(tmp_path)),
    }
    assert nxt.sweep(unfinished, keep=[readopted]) == 1
    at = {s.path: s.finished_at for s in scan(tmp_path, measure=False)}
    assert time.time() - at[ended_unseen] < 60, "marked finished now: kept --gc-delay from now"
    assert at[done_before] == at[readopted] == NOW - 3 * WEEK, "the others are left as they were"
    # Rewritten: only the re-adopted one is open; the next start marks it if it was not seen to end.
    assert SandboxRegistry(tmp_path).load() == {str(readopted.relative_to(tmp_path))}
    gc = SandboxGC(tmp_path, lambda: "a1", delay_seconds=WEEK, disk_fill=lambda _: (0.1, 1 << 40))
    assert gc.select(scan(tmp_path, measure=False), time.time(), 0.1, live=[readopted]) == [done_before]


def test_the_registry_file_is_compacted(tmp_path: Path) -> None:
    reg = SandboxRegistry(tmp_path)
    for i in range(1500):
        box = tmp_path / "agents" / "a1" / "frameworks" / "f" / "executors" / f"t{i}" / "runs" / "c"
        reg.started(box)
        reg.finished(box)
    assert len(reg.path.read_text().splitlines()) <= 1100
    assert SandboxRegistry(tmp_path).load() == set()


async def test_an_executor_directory_with_a_run_about_to_be_created_is_not_pruned(tmp_path: Path) -> None:
    """A task id run again: its new run is held by the agent before its sandbox is created (in a thread). The GC
    removing the old run must not prune the executor's directory from under that creation."""
    old = create_sandbox(tmp_path, "a1", "fw", "again", "c1")
    _age(old, 2 * WEEK)
    coming = old.parent / "c2"  # held, not created yet
    gc = SandboxGC(
        tmp_path, lambda: "a1", clock=lambda: NOW, live_sandboxes=lambda: [coming], disk_fill=lambda _: (0.1, 1 << 40)
    )
    assert await gc.collect() == [old]
    assert old.parent.is_dir(), "the runs directory of a held task was pruned"
    create_sandbox(tmp_path, "a1", "fw", "again", "c2")
    gc.live_sandboxes = lambda: []
    _age(coming, 2 * WEEK)
    assert await gc.collect() == [coming]
    assert not old.parent.parent.exists(), "pruned once no task of the executor is held"
