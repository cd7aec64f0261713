"""The agent's task state machine (mesos_agent.tasks) on injected clocks: every transition, read from the effects it
returns. No processes, no files, no sleeps."""

from __future__ import annotations

import itertools
import signal
from pathlib import Path
from typing import Any, cast

import pytest

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent.checkpoint import RecoveredTask
from mesos_agent.containerizer import Container, Termination
from mesos_agent.gpus import GpuAllocator
from mesos_agent.tasks import (
    CheckpointAck,
    CheckpointGpus,
    CheckpointUpdate,
    DropUpdates,
    Effect,
    FilesPlan,
    KillContainer,
    LaunchContainer,
    MarkSandboxFinished,
    ReleaseContainer,
    RemoveFrameworkCheckpoint,
    RemoveTaskCheckpoint,
    SandboxStarted,
    SendUpdate,
    StartHealthChecks,
    StartTask,
    StopHealthChecks,
    TaskRun,
    TaskStateMachine,
    WatchContainer,
)
from mesos_agent.users import TaskUser, UserRefused
from scheduler_sdk.resources import Resources

TaskStatus = tpb.TaskStatus
WORK_DIR = Path("/work-dir")
AGENT_ID = "S1"
WALL_TIME = 1_700_000_000.0
MONOTONIC_TIME = 5_000.0
EXITED = Termination(exit_code=0, signal=None, oom_killed=False, message="exited with status 0")
FAILED = Termination(exit_code=3, signal=None, oom_killed=False, message="exited with status 3")
SIGNALED = Termination(exit_code=None, signal=signal.SIGKILL, oom_killed=False, message="killed by SIGKILL")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeContainer:
    """The handle the state machine keeps for a task's container: it reads `done`, the shell does the rest."""

    def __init__(self, done: bool = False) -> None:
        self.done = done


def container(done: bool = False) -> Container:
    return cast(Container, FakeContainer(done))


@pytest.fixture
def wall() -> Clock:
    return Clock(WALL_TIME)


@pytest.fixture
def monotonic() -> Clock:
    return Clock(MONOTONIC_TIME)


def make_machine(wall: Clock, monotonic: Clock, gpus: GpuAllocator | None = None) -> TaskStateMachine:
    counter = itertools.count()
    machine = TaskStateMachine(
        WORK_DIR, clock=wall, monotonic=monotonic, gpus=gpus, new_uuid=lambda: f"u{next(counter)}".encode()
    )
    machine.agent_id = AGENT_ID
    return machine


@pytest.fixture
def machine(wall: Clock, monotonic: Clock) -> TaskStateMachine:
    return make_machine(wall, monotonic)


def framework(fid: str = "F1", *, checkpoint: bool = False, killing: bool = False) -> rpb.FrameworkInfo:
    info = rpb.FrameworkInfo(id=fid, name=fid, checkpoint=checkpoint)
    if killing:
        info.capabilities.add(type=rpb.FrameworkInfo.Capability.TASK_KILLING_STATE)
    return info


def task(tid: str = "t1", *, gpus: int = 0, grace: float | None = None, check: bool = False) -> tpb.TaskInfo:
    info = tpb.TaskInfo(
        task_id=tid,
        name=tid,
        resources=Resources.of(cpus=0.1, mem=32, **({"gpus": gpus} if gpus else {})).to_proto(),
        command=rpb.CommandInfo(shell=True, value="sleep 60"),
    )
    if grace is not None:
        info.kill_policy.grace_period.nanoseconds = int(grace * 1e9)
    if check:
        info.health_check.type = tpb.HealthCheck.TCP
        info.health_check.tcp.port = 31000
    return info


def sandbox(fid: str = "F1", tid: str = "t1", cid: str = "c1") -> Path:
    return WORK_DIR / "agents" / AGENT_ID / "frameworks" / fid / "executors" / tid / "runs" / cid


def sent(effects: list[Effect]) -> list[tpb.TaskStatus]:
    return [e.status for e in effects if isinstance(e, SendUpdate)]


def states(effects: list[Effect]) -> list[int]:
    return [s.state for s in sent(effects)]


def one_update(effects: list[Effect]) -> tpb.TaskStatus:
    [status] = sent(effects)
    return status


def held(machine: TaskStateMachine, fid: str = "F1", tid: str = "t1") -> TaskRun:
    return machine.tasks[(fid, tid)]


def start(machine: TaskStateMachine, fw: rpb.FrameworkInfo, info: tpb.TaskInfo, cid: str = "c1") -> TaskRun:
    """run_task and the files (the shell's part done): the task is ready to launch."""
    [start_task] = machine.run_task(fw, info, cid)
    assert isinstance(start_task, StartTask)
    run = start_task.run
    plan = machine.files_to_create(run)
    if plan is not None:
        machine.files_created(run, plan)
    return run


def launch(machine: TaskStateMachine, run: TaskRun, handle: Container | None = None) -> Container:
    """launch through the container running: TASK_STARTING, then TASK_RUNNING."""
    effects = machine.launch(run)
    assert isinstance(effects[-1], LaunchContainer)
    handle = handle or container()
    machine.container_launched(run, handle)
    machine.container_started(run)
    return handle


def acknowledge_all(machine: TaskStateMachine, run: TaskRun, statuses: list[tpb.TaskStatus]) -> list[Effect]:
    effects: list[Effect] = []
    for i, status in enumerate(statuses):
        more = i < len(statuses) - 1
        fid, tid = run.key
        effects += machine.acknowledged(fid, tid, status.uuid, status.state, more_pending=more)
    return effects


# ---------------------------------------------------------------------- launching
def test_run_task_holds_the_task_and_asks_for_its_start(machine: TaskStateMachine) -> None:
    fw = framework(checkpoint=True)
    [effect] = machine.run_task(fw, task(), "c1")
    assert effect == StartTask(held(machine), checkpoint_framework=True)
    assert held(machine).state == tpb.TASK_STAGING and machine.frameworks == {"F1": fw}
    assert machine.run_task(fw, task(), "c2") == [], "a duplicate launch is ignored"
    assert held(machine).container_id == "c1"


def test_the_files_a_launch_needs(machine: TaskStateMachine) -> None:
    [plain] = machine.run_task(framework(), task("t1"), "c1")
    [ckpt] = machine.run_task(framework("F2", checkpoint=True), task("t2"), "c2")
    assert isinstance(plain, StartTask) and isinstance(ckpt, StartTask)
    assert machine.files_to_create(plain.run) == FilesPlan(checkpoint=False, sandbox=sandbox())
    plan = machine.files_to_create(ckpt.run)
    assert plan == FilesPlan(checkpoint=True, sandbox=sandbox("F2", "t2", "c2"))
    assert machine.files_created(ckpt.run, plan) == [SandboxStarted(sandbox("F2", "t2", "c2"))]
    assert ckpt.run.checkpointed and ckpt.run.sandbox == sandbox("F2", "t2", "c2")


def test_a_task_runs_and_finishes(machine: TaskStateMachine, wall: Clock, monotonic: Clock) -> None:
    run = start(machine, framework(), task())
    effects = machine.launch(run)
    assert states(effects) == [tpb.TASK_STARTING]
    assert effects[-1] == LaunchContainer(run, Resources.from_proto(run.info.resources))
    assert run.launching
    handle = container()
    machine.container_launched(run, handle)
    assert run.container is handle and not run.launching
    wall.now += 2
    running = machine.container_started(run)
    status = one_update(running)
    assert status.state == tpb.TASK_RUNNING and status.timestamp == WALL_TIME + 2
    assert status.agent_id == AGENT_ID and status.executor_id == "t1" and status.source == TaskStatus.SOURCE_EXECUTOR
    assert running == [SendUpdate("F1", status)], "no health check: none started"
    ended = machine.container_ended(run, EXITED)
    finished = one_update(ended)
    assert ended == [
        StopHealthChecks(run),
        MarkSandboxFinished(sandbox()),
        SendUpdate("F1", finished),
        ReleaseContainer("c1"),
    ]
    assert finished.state == tpb.TASK_FINISHED and finished.HasField("exit_code") and finished.exit_code == 0


def test_a_failed_command_fails_the_task(machine: TaskStateMachine) -> None:
    run = start(machine, framework(), task())
    launch(machine, run)
    status = one_update(machine.container_ended(run, FAILED))
    assert status.state == tpb.TASK_FAILED and status.reason == TaskStatus.REASON_COMMAND_EXECUTOR_FAILED
    assert status.exit_code == 3


def test_a_launch_the_containerizer_refuses_fails_the_task(wall: Clock, monotonic: Clock) -> None:
    gpus = GpuAllocator([0, 1])
    machine = make_machine(wall, monotonic, gpus)
    run = start(machine, framework(), task(gpus=1))
    machine.launch(run)
    assert run.gpus == (0,) and gpus.available == 1
    status = one_update(machine.launch_failed(run, OSError("no such file")))
    assert status.state == tpb.TASK_FAILED and status.reason == TaskStatus.REASON_CONTAINER_LAUNCH_FAILED
    assert status.message == "launch failed: no such file"
    assert gpus.available == 2 and not run.launching, "its GPUs are free again"


def test_gpus_are_given_and_checkpointed_or_the_launch_fails(wall: Clock, monotonic: Clock) -> None:
    gpus = GpuAllocator([0])
    machine = make_machine(wall, monotonic, gpus)
    first = start(machine, framework(checkpoint=True), task("t1", gpus=1))
    effects = machine.launch(first)
    assert CheckpointGpus("F1", "t1", (0,)) in effects and first.gpus == (0,)
    second = start(machine, framework(checkpoint=True), task("t2", gpus=1), "c2")
    effects = machine.launch(second)
    assert states(effects) == [tpb.TASK_STARTING, tpb.TASK_FAILED]
    assert sent(effects)[-1].message == "launch failed: 1 GPU(s) asked for, not free on this agent"
    assert not any(isinstance(e, LaunchContainer) for e in effects)
    launch_handle = container()
    machine.container_launched(first, launch_handle)
    machine.container_ended(first, EXITED)
    assert gpus.available == 1 and first.gpus == ()


def test_an_invalid_health_check_is_a_task_error(machine: TaskStateMachine) -> None:
    info = task(check=True)
    info.health_check.tcp.port = 0
    [start_task] = machine.run_task(framework(), info, "c1")
    assert isinstance(start_task, StartTask)
    assert machine.files_to_create(start_task.run) is None, "no sandbox for a task that is not launched"
    status = one_update(machine.launch(start_task.run))
    assert status.state == tpb.TASK_ERROR and status.reason == TaskStatus.REASON_TASK_INVALID
    assert status.message.startswith("invalid health check: ")


def test_the_sandbox_is_made_for_the_task_user_and_a_refused_user_is_reported(machine: TaskStateMachine) -> None:
    nobody = TaskUser("nobody", 65534, 65534)
    [start_task] = machine.run_task(framework(), task("t1"), "c1", user=nobody)
    assert isinstance(start_task, StartTask) and start_task.run.user == nobody
    plan = machine.files_to_create(start_task.run)
    assert plan == FilesPlan(checkpoint=False, sandbox=sandbox(), owner=(65534, 65534))

    refusal = UserRefused(tpb.TASK_ERROR, TaskStatus.REASON_TASK_UNAUTHORIZED, "refused to run the task as root")
    for fw, tid in ((framework(), "t2"), (framework("F2", checkpoint=True), "t3")):
        [start_task] = machine.run_task(fw, task(tid), "c2", user=refusal)
        assert isinstance(start_task, StartTask)
        plan = machine.files_to_create(start_task.run)
        # No sandbox for a task that is not launched (a checkpointing framework's log is still written).
        assert plan is None or (plan.checkpoint and plan.sandbox is None)
        status = one_update(machine.launch(start_task.run))
        assert (status.state, status.reason, status.message) == (
            tpb.TASK_ERROR,
            TaskStatus.REASON_TASK_UNAUTHORIZED,
            "refused to run the task as root",
        )


def test_files_that_cannot_be_created_fail_the_task(machine: TaskStateMachine) -> None:
    [effect] = machine.run_task(framework(checkpoint=True), task(), "c1")
    assert isinstance(effect, StartTask)
    run = effect.run
    plan = machine.files_to_create(run)
    assert plan is not None
    effects = machine.sandbox_failed(run, plan, OSError(28, "No space left on device"))
    status = one_update(effects)
    assert status.message == "cannot create the sandbox: [Errno 28] No space left on device"
    assert effects[0] == CheckpointUpdate("F1", status), "the log was created: the update goes in it first"
    [other] = machine.run_task(framework(checkpoint=True), task("t2"), "c2")
    assert isinstance(other, StartTask)
    effects = machine.checkpoint_log_failed(other.run, plan, OSError(13, "Permission denied"))
    status = one_update(effects)
    assert status.state == tpb.TASK_FAILED and status.reason == TaskStatus.REASON_CONTAINER_LAUNCH_FAILED
    assert status.message == "cannot checkpoint the task: [Errno 13] Permission denied"
    assert not any(isinstance(e, CheckpointUpdate) for e in effects)


# ---------------------------------------------------------------------- kills
def test_a_kill_before_the_launch_reports_the_task_killed_instead(machine: TaskStateMachine) -> None:
    fw = framework(killing=True)
    [effect] = machine.run_task(fw, task(), "c1")
    assert isinstance(effect, StartTask)
    assert machine.kill_task("F1", "t1", None) == [], "nothing runs yet: the launch reports it"
    assert machine.files_to_create(effect.run) is None
    status = one_update(machine.launch(effect.run))
    assert status.state == tpb.TASK_KILLED and status.reason == TaskStatus.REASON_TASK_KILLED_DURING_LAUNCH
    assert status.message == "killed before it started"


def test_a_kill_while_the_files_are_created_reports_the_task_killed(machine: TaskStateMachine) -> None:
    [effect] = machine.run_task(framework(), task(), "c1")
    assert isinstance(effect, StartTask)
    plan = machine.files_to_create(effect.run)
    assert plan is not None and plan.sandbox is not None
    machine.kill_task("F1", "t1", None)
    machine.files_created(effect.run, plan)
    assert states(machine.launch(effect.run)) == [tpb.TASK_KILLED]


@pytest.mark.parametrize("killing", [True, False])
def test_a_kill_during_the_launch_kills_the_container_once_it_exists(machine: TaskStateMachine, killing: bool) -> None:
    run = start(machine, framework(killing=killing), task(grace=5))
    machine.launch(run)
    effects = machine.kill_task("F1", "t1", None)
    assert states(effects) == ([tpb.TASK_KILLING] if killing else [])
    assert not any(isinstance(e, KillContainer) for e in effects), "no container yet"
    handle = container()
    machine.container_launched(run, handle)
    assert machine.container_started(run) == [KillContainer(handle, 5.0)], "killed, not reported running"
    status = one_update(machine.container_ended(run, SIGNALED))
    assert status.state == tpb.TASK_KILLED and status.reason == TaskStatus.REASON_TASK_KILLED_DURING_LAUNCH
    assert status.exit_code == 128 + signal.SIGKILL


def test_kill_grace_comes_from_the_kill_then_the_task_then_the_default(machine: TaskStateMachine) -> None:
    for tid, grace in (("given", None), ("own", 7.0), ("default", None)):
        run = start(machine, framework(), task(tid, grace=grace), f"c-{tid}")
        launch(machine, run)
    policy = rpb.KillPolicy()
    policy.grace_period.nanoseconds = 1_500_000_000
    expected = {"given": 1.5, "own": 7.0, "default": 3.0}
    for tid, grace in expected.items():
        effects = machine.kill_task("F1", tid, policy if tid == "given" else None)
        run = held(machine, tid=tid)
        assert effects == [KillContainer(cast(Container, run.container), grace)], tid
        assert run.grace == grace and run.kill_requested


def test_a_kill_with_the_masters_reason_reports_it(machine: TaskStateMachine) -> None:
    run = start(machine, framework(), task())
    launch(machine, run)
    machine.kill_task("F1", "t1", None, reason=TaskStatus.REASON_CONTAINER_PREEMPTED)
    status = one_update(machine.container_ended(run, SIGNALED))
    assert status.state == tpb.TASK_KILLED and status.reason == TaskStatus.REASON_CONTAINER_PREEMPTED
    assert status.message == "task killed (killed by SIGKILL)"


def test_a_drain_kill_says_so_in_its_update(machine: TaskStateMachine) -> None:
    run = start(machine, framework(), task())
    launch(machine, run)
    why = "killed: agent S1 (h1) is draining and its drain deadline passed"
    machine.kill_task("F1", "t1", None, reason=TaskStatus.REASON_AGENT_DRAINING, message=why)
    status = one_update(machine.container_ended(run, SIGNALED))
    assert status.state == tpb.TASK_KILLED and status.reason == TaskStatus.REASON_AGENT_DRAINING
    assert status.message == f"{why} (task killed (killed by SIGKILL))"


def test_a_second_kill_and_a_kill_of_an_unknown_task(machine: TaskStateMachine) -> None:
    run = start(machine, framework(killing=True), task())
    launch(machine, run)
    assert states(machine.kill_task("F1", "t1", None)) == [tpb.TASK_KILLING]
    assert machine.kill_task("F1", "t1", None) == [], "killed once"
    lost = one_update(machine.kill_task("F1", "nope", None))
    assert lost.state == tpb.TASK_LOST and lost.reason == TaskStatus.REASON_TASK_UNKNOWN
    assert lost.source == TaskStatus.SOURCE_AGENT and lost.timestamp == WALL_TIME


def test_terminal_states_are_final(machine: TaskStateMachine) -> None:
    run = start(machine, framework(), task(check=True))
    launch(machine, run)
    machine.container_ended(run, EXITED)
    assert run.state == tpb.TASK_FINISHED
    assert machine.kill_task("F1", "t1", None) == []
    assert machine.health_changed(run, False) == []
    assert machine.shutdown_framework("F1") == [DropUpdates("F1"), RemoveFrameworkCheckpoint("F1")]
    assert run.state == tpb.TASK_FINISHED and not machine.tasks


# ---------------------------------------------------------------------- health checks
def test_health_checks_start_with_the_task_and_report_changes(machine: TaskStateMachine, monotonic: Clock) -> None:
    run = start(machine, framework(), task(check=True))
    machine.launch(run)
    machine.container_launched(run, container())
    effects = machine.container_started(run)
    assert effects[-1] == StartHealthChecks(run, launched_at=MONOTONIC_TIME, healthy=None)
    status = one_update(machine.health_changed(run, True))
    assert status.state == tpb.TASK_RUNNING and status.HasField("healthy") and status.healthy
    assert status.reason == TaskStatus.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED


def test_a_failing_health_check_kills_the_task(machine: TaskStateMachine) -> None:
    run = start(machine, framework(killing=True), task(check=True))
    handle = launch(machine, run)
    effects = machine.health_check_failed(run, "health check failed 3 times in a row: refused")
    assert states(effects) == [tpb.TASK_KILLING] and effects[-1] == KillContainer(handle, 3.0)
    assert machine.health_changed(run, False) == [], "no health reports once it is being killed"
    ended = machine.container_ended(run, SIGNALED)
    assert ended[0] == StopHealthChecks(run)
    status = one_update(ended)
    assert status.state == tpb.TASK_KILLED and status.reason == TaskStatus.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED
    assert status.message == "health check failed 3 times in a row: refused"
    assert status.HasField("healthy") and not status.healthy


# ---------------------------------------------------------------------- acknowledgements and the checkpoint
def test_updates_of_a_checkpointing_framework_go_to_disk_first_and_their_acks_too(machine: TaskStateMachine) -> None:
    run = start(machine, framework(checkpoint=True), task())
    effects = machine.launch(run)
    starting = sent(effects)[0]
    assert effects[:2] == [CheckpointUpdate("F1", starting), SendUpdate("F1", starting)]
    assert machine.acknowledged("F1", "t1", starting.uuid, starting.state, more_pending=False) == [
        CheckpointAck("F1", "t1", starting.uuid)
    ]
    assert machine.tasks, "not over: still held"


def test_the_last_acknowledgement_of_a_task_removes_its_checkpoint(machine: TaskStateMachine) -> None:
    first = start(machine, framework(checkpoint=True), task("t1"))
    second = start(machine, framework(checkpoint=True), task("t2"), "c2")
    launch(machine, first)
    updates = sent(machine.container_ended(first, EXITED))
    assert machine.acknowledged("F1", "t1", updates[0].uuid, tpb.TASK_FINISHED, more_pending=True) == [
        CheckpointAck("F1", "t1", updates[0].uuid)
    ], "terminal, but updates of it are still to be acknowledged"
    effects = machine.acknowledged("F1", "t1", updates[0].uuid, tpb.TASK_FINISHED, more_pending=False)
    assert effects == [RemoveTaskCheckpoint("F1", "t1", last=False)], "the framework has another task"
    assert ("F1", "t1") not in machine.tasks and not first.checkpointed
    machine.launch(second)
    machine.container_launched(second, container())
    finished = sent(machine.container_ended(second, EXITED))[0]
    effects = machine.acknowledged("F1", "t2", finished.uuid, finished.state, more_pending=False)
    assert effects == [RemoveTaskCheckpoint("F1", "t2", last=True)]
    assert not machine.tasks and not machine.frameworks


def test_a_task_of_a_plain_framework_is_forgotten_when_its_end_is_acknowledged(machine: TaskStateMachine) -> None:
    run = start(machine, framework(), task())
    launch(machine, run)
    end = one_update(machine.container_ended(run, EXITED))
    assert acknowledge_all(machine, run, [end]) == []
    assert not machine.tasks and machine.live_sandboxes() == []


# ---------------------------------------------------------------------- framework shutdown
def test_framework_shutdown_kills_its_tasks_and_drops_its_checkpoint(machine: TaskStateMachine) -> None:
    fw = framework(checkpoint=True, killing=True)
    running = start(machine, fw, task("run"), "c1")
    handle = launch(machine, running)
    over = start(machine, fw, task("over"), "c2")
    launch(machine, over)
    machine.container_ended(over, EXITED)
    [pending_start] = machine.run_task(fw, task("new"), "c3")
    assert isinstance(pending_start, StartTask)
    plan = machine.files_to_create(pending_start.run)
    assert plan is not None
    other = start(machine, framework("F2"), task("t1"), "c4")

    effects = machine.shutdown_framework("F1")
    killing = sent(effects)[0]
    assert effects == [
        CheckpointUpdate("F1", killing),
        SendUpdate("F1", killing),
        KillContainer(handle, 3.0),
        DropUpdates("F1"),
        RemoveFrameworkCheckpoint("F1"),
    ]
    assert ("F1", "over") not in machine.tasks, "over: forgotten"
    assert running.framework_gone and not running.checkpointed
    ended = machine.container_ended(running, SIGNALED)
    assert not any(isinstance(e, CheckpointUpdate) for e in ended), "nothing of it is checkpointed any more"
    # A task whose files were being created meanwhile: its log goes, it is not launched.
    assert machine.files_created(pending_start.run, plan)[0] == RemoveTaskCheckpoint("F1", "new", last=False)
    assert states(machine.launch(pending_start.run)) == [tpb.TASK_KILLED]
    assert other.state == tpb.TASK_STAGING and ("F2", "t1") in machine.tasks


# ---------------------------------------------------------------------- recovery
def recovered(
    state: int | None, *, acked: bool = False, gpus: tuple[int, ...] = (), launched_at: float | None = None
) -> RecoveredTask:
    updates = []
    if state is not None:
        if launched_at is not None:
            updates.append(tpb.TaskStatus(task_id="t1", state=tpb.TASK_RUNNING, uuid=b"r", timestamp=launched_at))
        updates.append(tpb.TaskStatus(task_id="t1", state=state, uuid=b"last", healthy=True))
    acks = {u.uuid for u in updates} if acked else set()
    info = task(check=True)
    return RecoveredTask(framework(checkpoint=True), info, "c1", updates=updates, acked=acks, gpus=gpus)


def test_recovery_readopts_a_running_task_with_its_gpus_and_health_checks(wall: Clock, monotonic: Clock) -> None:
    gpus = GpuAllocator([0, 1])
    machine = make_machine(wall, monotonic, gpus)
    found = recovered(tpb.TASK_RUNNING, acked=True, gpus=(1,), launched_at=WALL_TIME - 30)
    run, effects = machine.recover_task(found, rebooted=False)
    assert run is not None and effects == [] and run.checkpointed and run.state == tpb.TASK_RUNNING
    handle = container()
    effects = machine.container_recovered(run, found, handle, sandbox_exists=True)
    assert effects == [StartHealthChecks(run, launched_at=MONOTONIC_TIME - 30, healthy=True), WatchContainer(run)]
    assert run.container is handle and run.sandbox == sandbox() and gpus.available == 1


def test_recovery_without_the_sandbox_or_of_an_ended_container_starts_no_health_checks(
    machine: TaskStateMachine,
) -> None:
    found = recovered(tpb.TASK_RUNNING)
    run, effects = machine.recover_task(found, rebooted=False)
    assert run is not None and sent(effects) == list(found.updates), "the unacknowledged updates are resent"
    assert not any(isinstance(e, CheckpointUpdate) for e in effects), "they are in the checkpoint already"
    assert machine.container_recovered(run, found, container(), sandbox_exists=False) == [WatchContainer(run)]
    assert run.sandbox is None
    again = make_machine(Clock(WALL_TIME), Clock(MONOTONIC_TIME))
    run, _ = again.recover_task(found, rebooted=False)
    assert run is not None
    assert again.container_recovered(run, found, container(done=True), sandbox_exists=True) == [WatchContainer(run)]


def test_recovery_goes_on_killing_a_task_that_was_being_killed(machine: TaskStateMachine) -> None:
    found = recovered(tpb.TASK_KILLING, acked=True)
    run, _ = machine.recover_task(found, rebooted=False)
    assert run is not None
    handle = container()
    assert machine.container_recovered(run, found, handle, sandbox_exists=False) == [
        KillContainer(handle, 3.0),
        WatchContainer(run),
    ]
    assert run.kill_requested
    status = one_update(machine.container_ended(run, SIGNALED))
    assert status.state == tpb.TASK_KILLED


def test_recovery_reports_a_vanished_container_or_a_reboot_lost(machine: TaskStateMachine) -> None:
    found = recovered(tpb.TASK_RUNNING, acked=True)
    run, _ = machine.recover_task(found, rebooted=False)
    assert run is not None
    effects = machine.container_recovered(run, found, None, sandbox_exists=False)
    lost = one_update(effects)
    assert effects[0] == CheckpointUpdate("F1", lost)
    assert lost.state == tpb.TASK_LOST and lost.reason == TaskStatus.REASON_AGENT_RESTARTED
    assert lost.source == TaskStatus.SOURCE_AGENT
    assert lost.message == "the task's container was not found after a restart"
    rebooted = make_machine(Clock(WALL_TIME), Clock(MONOTONIC_TIME))
    run, effects = rebooted.recover_task(found, rebooted=True)
    assert run is None
    assert one_update(effects).message == "the host rebooted: the task is gone"


def test_recovery_of_tasks_already_over(machine: TaskStateMachine) -> None:
    done = recovered(tpb.TASK_FINISHED, acked=True)
    assert machine.recover_task(done, rebooted=False) == (None, [RemoveTaskCheckpoint("F1", "t1", last=True)])
    assert not machine.tasks
    unacknowledged = recovered(tpb.TASK_FINISHED)
    run, effects = machine.recover_task(unacknowledged, rebooted=False)
    assert run is None and effects == [SendUpdate("F1", u) for u in unacknowledged.updates]
    assert ("F1", "t1") in machine.tasks, "held until its end is acknowledged"


# ---------------------------------------------------------------------- the agent stopping
def test_stopping_kills_what_must_not_outlive_the_agent(machine: TaskStateMachine) -> None:
    plain = start(machine, framework("plain"), task("p", grace=30), "c1")
    plain_handle = launch(machine, plain)
    kept = start(machine, framework("ckpt", checkpoint=True), task("k"), "c2")
    launch(machine, kept)
    unlaunched = start(machine, framework("plain"), task("u"), "c3")
    live, effects = machine.stop_tasks(10.0, keep_checkpointed=True)
    assert live == [plain, unlaunched] and effects == [KillContainer(plain_handle, 10.0)], "the grace is capped"
    assert machine.has_live_checkpointed_tasks()
    live, _ = machine.stop_tasks(10.0, keep_checkpointed=False)
    assert kept in live


def test_the_state_machine_reads_no_clock_of_its_own(machine: TaskStateMachine, wall: Clock) -> None:
    run = start(machine, framework(), task())
    timestamps: list[Any] = []
    for now in (10.0, 20.0):
        wall.now = now
        effects = machine.launch(run) if now == 10.0 else machine.container_ended(run, EXITED)
        timestamps.append(sent(effects)[0].timestamp)
        if now == 10.0:
            machine.container_launched(run, container())
    assert timestamps == [10.0, 20.0]
