"""The jobs core across a crash: the real core and a real SQLite store, with a placement that records what it is
asked (a crash is dropping the objects and loading a new core from the same file). What was decided before the
crash is carried out after it, once: kills sent again, runs started, backoffs kept, nothing launched twice."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.frameworks.jobs.core import KILL_RESEND, JobError, JobsCore
from scheduler_sdk.frameworks.jobs.run import TaskLaunch
from scheduler_sdk.frameworks.jobs.store import JobStore

RECONCILIATION = tpb.TaskStatus.REASON_RECONCILIATION


class Placement:
    """What the core asks of the placement, recorded."""

    def __init__(self) -> None:
        self.submitted: list[TaskLaunch] = []
        self.killed: list[str] = []
        self.adopted: list[tuple[str, str]] = []
        self.launch_of: dict[str, TaskLaunch] = {}

    def submit(self, launches: Sequence[TaskLaunch]) -> None:
        for launch in launches:
            self.submitted.append(launch)
            self.launch_of[launch.task_id] = launch

    def kill(self, task_id: str) -> None:
        self.killed.append(task_id)

    def adopt(self, launch: TaskLaunch, agent_id: str) -> None:
        self.adopted.append((launch.task_id, agent_id))
        self.launch_of[launch.task_id] = launch

    def hostname(self, agent_id: str) -> str:
        return f"{agent_id}.local" if agent_id else ""

    def agent_host(self, agent_id: str) -> str:
        return "127.0.0.1" if agent_id else ""

    def ports(self, task_id: str) -> tuple[int, ...]:
        return (31000,) if task_id in self.launch_of else ()

    def waiting_reasons(self) -> dict[str, str]:
        return {}


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def start(path: Path, clock: Clock) -> tuple[JobsCore, Placement]:
    placement = Placement()
    core = JobsCore(JobStore(path), placement, clock=clock)  # type: ignore[arg-type]
    core.load()
    return core, placement


def report(core: JobsCore, placement: Placement, task_id: str, state: int, **fields: object) -> None:
    agent_id = str(fields.pop("agent_id", "a1"))
    status = tpb.TaskStatus(task_id=task_id, state=state, agent_id=agent_id, **fields)  # type: ignore[arg-type]
    core.on_update(placement.launch_of[task_id], status)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


def test_a_stop_decided_before_the_crash_is_sent_again_until_the_task_ends(db: Path) -> None:
    clock = Clock()
    core, placement = start(db, clock)
    core.submit("name: t\ncommand: sleep 1000\n", "t.yaml", "framework/a", None)
    (launch,) = placement.submitted
    report(core, placement, launch.task_id, tpb.TASK_RUNNING)
    core.stop("t", "stopped by framework/a")
    assert placement.killed == [launch.task_id]  # decided and written; the crash comes before it is sent
    core, placement = start(db, clock)
    assert placement.adopted == [(launch.task_id, "a1")] and placement.killed == [launch.task_id]
    clock.t += KILL_RESEND
    core.tick()
    assert placement.killed == [launch.task_id] * 2  # again, until it is answered
    report(core, placement, launch.task_id, tpb.TASK_KILLED)
    assert core.jobs["t"].runs[-1].state == "stopped"
    clock.t += KILL_RESEND
    core.tick()
    assert len(placement.killed) == 2


def test_a_timeout_kill_goes_out_once_and_again_after_a_crash(db: Path) -> None:
    clock = Clock()
    core, placement = start(db, clock)
    core.submit("name: t\ncommand: sleep 1000\ntimeout: 10s\n", "t.yaml", "framework/a", None)
    (launch,) = placement.submitted
    report(core, placement, launch.task_id, tpb.TASK_RUNNING)
    clock.t += 11
    core.tick()
    assert placement.killed == [launch.task_id]
    core, placement = start(db, clock)
    assert placement.killed == [launch.task_id]
    report(core, placement, launch.task_id, tpb.TASK_KILLED)
    assert core.jobs["t"].runs[-1].state == "failed" and not core.jobs["t"].active


def test_a_run_written_but_not_started_is_started_after_the_crash(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    core, placement = start(db, clock)
    monkeypatch.setattr(core, "_start", lambda job, run, now: None)  # the crash: right after the commit
    core.submit("name: p\ncommand: 'true'\n", "p.yaml", "framework/a", None)
    assert placement.submitted == []
    core, placement = start(db, clock)
    assert [launch.task_id for launch in placement.submitted] == ["p.1.p.0.0"]


def test_a_retry_in_its_backoff_is_queued_again_with_its_backoff_not_reconciled(db: Path) -> None:
    clock = Clock()
    core, placement = start(db, clock)
    core.submit("name: r\ncommand: 'false'\nretries: {attempts: 2, backoff: 1h}\n", "r.yaml", "framework/a", None)
    first = placement.submitted[0]
    report(core, placement, first.task_id, tpb.TASK_RUNNING)
    report(core, placement, first.task_id, tpb.TASK_FAILED, exit_code=1)
    retry = placement.submitted[-1]
    assert retry.ready_at == clock.t + 3600
    clock.t += 1
    core, placement = start(db, clock)
    assert placement.submitted == [retry] and placement.adopted == []  # it cannot have been launched yet


def test_a_task_handed_to_the_placement_but_never_launched_is_launched_without_using_a_retry(db: Path) -> None:
    clock = Clock()
    core, placement = start(db, clock)
    core.submit("name: q\ncommand: 'true'\n", "q.yaml", "framework/a", None)
    (launch,) = placement.submitted
    core, placement = start(db, clock)  # the crash: was the ACCEPT sent? The master will say.
    assert placement.adopted == [(launch.task_id, "")] and placement.submitted == []
    report(core, placement, launch.task_id, tpb.TASK_LOST, reason=RECONCILIATION, agent_id="")
    (again,) = placement.submitted
    assert again.task_id == "q.1.q.0.1"
    (slot,) = core.jobs["q"].active["1"].slots()
    assert slot.retries == 0 and slot.state == "queued"


def test_only_the_owner_or_an_operator_replaces_a_job(db: Path) -> None:
    core, _ = start(db, Clock())
    core.submit("name: nightly\nschedule: '0 2 * * *'\ncommand: train\n", "n.yaml", "framework/alice", None)
    with pytest.raises(JobError) as denied:
        core.submit("name: nightly\nschedule: '0 2 * * *'\ncommand: evil\n", "n.yaml", "framework/mallory", None)
    assert denied.value.kind == "denied" and "framework/mallory" in str(denied.value)
    assert core.jobs["nightly"].spec.steps[0].command == "train"
    core.submit(
        "name: nightly\nschedule: '0 3 * * *'\ncommand: train2\n", "n.yaml", "operator/admin", None, operator=True
    )
    assert core.jobs["nightly"].spec.steps[0].command == "train2"
