"""The agent's task state machine: pure code, as the master's `Master` is.

`TaskStateMachine` holds the tasks the agent runs (`TaskRun`, one per task) and takes every event that changes
one: what the master said (`run_task`, `kill_task`, `acknowledged`, `shutdown_framework`), what the launch and
the containers did (`files_created`, `launch`, `container_launched`, `container_ended`...), what the health
checks found, and what a restarted agent process finds in its checkpoint (`recover_task`,
`container_recovered`). Each event returns the effects the imperative shell (`mesos_agent.agent.Agent`) must
carry out, in order: write a status update to the checkpoint, send it, kill a container, start a health check...
(the classes below `Effect`). Nothing here does I/O or reads a clock: the wall clock (for status timestamps), the
monotonic clock (for health check schedules) and the update uuids are injected."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent import executor, gc, health
from mesos_agent.checkpoint import RecoveredTask
from mesos_agent.containerizer import Container, Termination
from mesos_agent.gpus import GpuAllocator
from mesos_agent.sandbox import run_sandbox
from mesos_agent.users import TaskUser, UserRefused
from scheduler_sdk.resources import Resources
from scheduler_sdk.states import TERMINAL_STATES

log = structlog.get_logger(__name__)
TaskStatus = tpb.TaskStatus
KILLING_CAPABILITY = rpb.FrameworkInfo.Capability.TASK_KILLING_STATE
# States worth an info line; the others (STARTING, RUNNING, KILLING, FINISHED, KILLED: a thousand of each in a
# burst) are logged at debug level.
_NOTABLE_STATES = frozenset({tpb.TASK_FAILED, tpb.TASK_LOST, tpb.TASK_ERROR, tpb.TASK_DROPPED, tpb.TASK_GONE})
KILLED_BEFORE_START = "killed before it started"

TaskKey = tuple[str, str]  # (framework id, task id)


@dataclass(eq=False)
class TaskRun:
    """One task the agent holds, from its launch until its last update is acknowledged."""

    framework: rpb.FrameworkInfo
    info: tpb.TaskInfo
    container_id: str
    state: int = tpb.TASK_STAGING
    container: Container | None = None
    kill_requested: bool = False
    grace: float = executor.DEFAULT_GRACE_PERIOD
    sandbox: Path | None = None
    health_kill_message: str | None = None  # set when a failing health check killed the task
    kill_reason: int = 0  # why the master killed it (e.g. REASON_CONTAINER_PREEMPTED)
    kill_message: str = ""  # and what it said of it (e.g. that the agent is draining): the TASK_KILLED message
    gpus: tuple[int, ...] = ()  # the GPU indices it was given
    checkpointed: bool = False  # its log is in the checkpoint (updates are written there before they are sent)
    launching: bool = False  # the containerizer's launch is under way
    framework_gone: bool = False  # the framework was shut down: nothing of it is checkpointed any more
    # Who it runs as (None: the agent's own user; a re-adopted task's is in its container's record), or why not.
    user: TaskUser | UserRefused | None = None

    @property
    def key(self) -> TaskKey:
        return (self.framework.id, self.info.task_id)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


# ---------------------------------------------------------------------- effects, carried out by the shell
@dataclass(frozen=True, slots=True)
class StartTask:
    """Begin the task's launch: its files, its container, then watch it. When `checkpoint_framework`, write the
    framework's info to the checkpoint first (and report `cannot_checkpoint` if that fails)."""

    run: TaskRun
    checkpoint_framework: bool


@dataclass(frozen=True, slots=True)
class CheckpointUpdate:
    """Append a status update to the task's checkpointed log (before it is sent)."""

    framework_id: str
    status: tpb.TaskStatus


@dataclass(frozen=True, slots=True)
class MarkSandboxFinished:
    """The task ended: the sandbox's age, for the GC, counts from now."""

    sandbox: Path


@dataclass(frozen=True, slots=True)
class SendUpdate:
    """Hand a status update to the status update manager, which sends it until it is acknowledged."""

    framework_id: str
    status: tpb.TaskStatus


@dataclass(frozen=True, slots=True)
class SandboxStarted:
    """A task's sandbox was created: record it open (finished when its task ends)."""

    sandbox: Path


@dataclass(frozen=True, slots=True)
class CheckpointGpus:
    framework_id: str
    task_id: str
    gpus: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CheckpointAck:
    framework_id: str
    task_id: str
    update_uuid: bytes


@dataclass(frozen=True, slots=True)
class RemoveTaskCheckpoint:
    """Remove the task's log; and its framework's checkpoint when `last` and no other task of it is there."""

    framework_id: str
    task_id: str
    last: bool


@dataclass(frozen=True, slots=True)
class RemoveFrameworkCheckpoint:
    framework_id: str


@dataclass(frozen=True, slots=True)
class DropUpdates:
    """Nobody will acknowledge the framework's pending updates any more: stop resending them."""

    framework_id: str


@dataclass(frozen=True, slots=True)
class LaunchContainer:
    """Launch the run's container (its sandbox and GPUs are on the run) with the task's resources."""

    run: TaskRun
    resources: Resources


@dataclass(frozen=True, slots=True)
class KillContainer:
    container: Container
    grace: float


@dataclass(frozen=True, slots=True)
class StartHealthChecks:
    """Run the task's health check; `launched_at` is on the monotonic clock's scale; `healthy`, the health last
    reported (a re-adopted task's), so that an unchanged health is not reported again."""

    run: TaskRun
    launched_at: float
    healthy: bool | None


@dataclass(frozen=True, slots=True)
class StopHealthChecks:
    run: TaskRun


@dataclass(frozen=True, slots=True)
class WatchContainer:
    """Wait for a re-adopted task's container to end (then `container_ended`)."""

    run: TaskRun


@dataclass(frozen=True, slots=True)
class ReleaseContainer:
    """The container's end is in the update log: the containerizer's own record of it is no longer needed."""

    container_id: str


Effect = (
    StartTask
    | CheckpointUpdate
    | MarkSandboxFinished
    | SendUpdate
    | SandboxStarted
    | CheckpointGpus
    | CheckpointAck
    | RemoveTaskCheckpoint
    | RemoveFrameworkCheckpoint
    | DropUpdates
    | LaunchContainer
    | KillContainer
    | StartHealthChecks
    | StopHealthChecks
    | WatchContainer
    | ReleaseContainer
)


@dataclass(frozen=True, slots=True)
class FilesPlan:
    """What a launch needs on disk: the task's checkpoint log, its sandbox (None: not to be launched)."""

    checkpoint: bool
    sandbox: Path | None
    owner: tuple[int, int] | None = None  # (uid, gid) the sandbox is to belong to (None: the agent's)


def _random_uuid() -> bytes:
    return uuid.uuid4().bytes


class TaskStateMachine:
    """The tasks the agent holds and their transitions. Every event method returns the effects to carry out."""

    def __init__(
        self,
        work_dir: Path,
        *,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        gpus: GpuAllocator | None = None,
        new_uuid: Callable[[], bytes] = _random_uuid,
    ) -> None:
        self.work_dir = work_dir
        self.agent_id = ""
        self.clock = clock
        self.monotonic = monotonic
        self.gpus = gpus
        self.new_uuid = new_uuid
        self.tasks: dict[TaskKey, TaskRun] = {}
        self.frameworks: dict[str, rpb.FrameworkInfo] = {}  # of the tasks held
        self._held_per_framework: dict[str, int] = {}
        self._effects: list[Effect] = []

    def _take_effects(self) -> list[Effect]:
        effects, self._effects = self._effects, []
        return effects

    # ------------------------------------------------------------------ queries
    def sandbox_of(self, run: TaskRun) -> Path:
        """Where the run's sandbox is (for a task re-adopted after a restart: where the layout puts it)."""
        return run_sandbox(
            self.work_dir, self.agent_id, run.framework.id, run.info.task_id, run.container_id, run.sandbox
        )

    def live_sandboxes(self) -> list[Path]:
        """The sandboxes of every task held, finished ones included until their updates are acknowledged."""
        return gc.live_sandboxes(self)

    def has_live_checkpointed_tasks(self) -> bool:
        return any(r.framework.checkpoint and not r.terminal for r in self.tasks.values())

    # ------------------------------------------------------------------ from the master
    def run_task(
        self,
        framework: rpb.FrameworkInfo,
        info: tpb.TaskInfo,
        container_id: str,
        user: TaskUser | UserRefused | None = None,
    ) -> list[Effect]:
        """`user`: who the task runs as, or why it may not run (`mesos_agent.users`); None: as the agent."""
        if (framework.id, info.task_id) in self.tasks:
            log.warning("duplicate launch ignored", framework_id=framework.id, task_id=info.task_id)
            return []
        run = TaskRun(framework=framework, info=info, container_id=container_id, user=user)
        self._hold(run)
        self._effects.append(StartTask(run, checkpoint_framework=framework.checkpoint))
        return self._take_effects()

    def cannot_checkpoint(self, run: TaskRun, error: OSError) -> list[Effect]:
        """The framework's info or the task's log could not be checkpointed: the task is not launched (one the next
        agent process could not re-adopt would be an orphan)."""
        self._cannot_checkpoint(run, error)
        return self._take_effects()

    def _cannot_checkpoint(self, run: TaskRun, error: OSError) -> None:
        log.error("cannot checkpoint a task", task_id=run.info.task_id, framework_id=run.framework.id, error=str(error))
        message = f"cannot checkpoint the task: {error}"
        self._update(run, tpb.TASK_FAILED, TaskStatus.REASON_CONTAINER_LAUNCH_FAILED, message)

    def kill_task(
        self, framework_id: str, task_id: str, policy: rpb.KillPolicy | None, reason: int = 0, message: str = ""
    ) -> list[Effect]:
        self._kill(framework_id, task_id, policy, reason, message)
        return self._take_effects()

    def _kill(
        self, framework_id: str, task_id: str, policy: rpb.KillPolicy | None, reason: int = 0, message: str = ""
    ) -> None:
        run = self.tasks.get((framework_id, task_id))
        if run is None:
            self._update_unknown(framework_id, task_id)
            return
        if run.terminal or run.kill_requested:
            return
        run.kill_requested = True
        run.kill_reason, run.kill_message = reason, message if reason else ""
        run.grace = executor.grace_period(run.info, policy)
        if run.container is not None:
            self._killing(run)
            self._effects.append(KillContainer(run.container, run.grace))
        elif run.launching:
            # The container is being created: it is killed as soon as it exists (see `container_started`).
            if not run.kill_reason:
                run.kill_reason = TaskStatus.REASON_TASK_KILLED_DURING_LAUNCH
            self._killing(run)
        # Else the launch has not begun: it reports the task killed instead of launching it (see `launch`).

    def _killing(self, run: TaskRun) -> None:
        if any(c.type == KILLING_CAPABILITY for c in run.framework.capabilities):
            self._update(run, tpb.TASK_KILLING)

    def acknowledged(
        self, framework_id: str, task_id: str, update_uuid: bytes, state: int, *, more_pending: bool
    ) -> list[Effect]:
        """The status update manager matched an acknowledgement to the update it had in flight (of `state`);
        `more_pending`: the task has more updates to send."""
        key = (framework_id, task_id)
        run = self.tasks.get(key)
        done = state in TERMINAL_STATES and not more_pending
        if done:
            self._forget(key)
        if run is not None and run.checkpointed:
            if done:  # the whole log goes: no need to record the acknowledgement first
                run.checkpointed = False
                last = framework_id not in self._held_per_framework
                self._effects.append(RemoveTaskCheckpoint(framework_id, task_id, last=last))
            else:
                self._effects.append(CheckpointAck(framework_id, task_id, update_uuid))
        return self._take_effects()

    def shutdown_framework(self, framework_id: str) -> list[Effect]:
        runs = [r for r in self.tasks.values() if r.framework.id == framework_id]
        for run in runs:
            if not run.terminal:
                self._kill(framework_id, run.info.task_id, None)
        # Nobody will acknowledge the framework's updates any more (the master acknowledges those still sent for
        # it, the ends of the kills above), and nothing of it is to be re-adopted after a restart.
        self._effects.append(DropUpdates(framework_id))
        self._effects.append(RemoveFrameworkCheckpoint(framework_id))
        for run in runs:
            run.framework_gone = True
            run.checkpointed = False
            if run.terminal:
                self._forget(run.key)
        return self._take_effects()

    def _hold(self, run: TaskRun) -> None:
        self.tasks[run.key] = run
        framework_id = run.framework.id
        self.frameworks[framework_id] = run.framework
        self._held_per_framework[framework_id] = self._held_per_framework.get(framework_id, 0) + 1

    def _forget(self, key: TaskKey) -> None:
        if self.tasks.pop(key, None) is None:
            return
        framework_id = key[0]
        left = self._held_per_framework.pop(framework_id, 1) - 1
        if left > 0:
            self._held_per_framework[framework_id] = left
        else:
            self.frameworks.pop(framework_id, None)

    # ------------------------------------------------------------------ launching a task
    def files_to_create(self, run: TaskRun) -> FilesPlan | None:
        """What the launch must create on disk first: the task's checkpoint log for a checkpointing framework, and
        its sandbox unless it is not to be launched after all. None: nothing (`launch` reports why not)."""
        checkpoint = run.framework.checkpoint and not run.framework_gone
        user = run.user
        launch = not run.kill_requested and _valid_health_check(run.info) and not isinstance(user, UserRefused)
        if not checkpoint and not launch:
            return None
        owner = (user.uid, user.gid) if isinstance(user, TaskUser) else None
        return FilesPlan(checkpoint, self.sandbox_of(run) if launch else None, owner)

    def files_created(self, run: TaskRun, plan: FilesPlan) -> list[Effect]:
        self._drop_checkpoint_if_gone(run, plan)
        run.checkpointed = plan.checkpoint and not run.framework_gone
        if plan.sandbox is not None:
            run.sandbox = plan.sandbox
            self._effects.append(SandboxStarted(plan.sandbox))
        return self._take_effects()

    def checkpoint_log_failed(self, run: TaskRun, plan: FilesPlan, error: OSError) -> list[Effect]:
        self._cannot_checkpoint(run, error)
        self._drop_checkpoint_if_gone(run, plan)
        return self._take_effects()

    def sandbox_failed(self, run: TaskRun, plan: FilesPlan, error: OSError) -> list[Effect]:
        run.checkpointed = plan.checkpoint and not run.framework_gone
        message = f"cannot create the sandbox: {error}"
        self._update(run, tpb.TASK_FAILED, TaskStatus.REASON_CONTAINER_LAUNCH_FAILED, message)
        self._drop_checkpoint_if_gone(run, plan)
        return self._take_effects()

    def files_abandoned(self, run: TaskRun, plan: FilesPlan) -> list[Effect]:
        """Creating the files was cancelled (the agent is stopping)."""
        self._drop_checkpoint_if_gone(run, plan)
        return self._take_effects()

    def _drop_checkpoint_if_gone(self, run: TaskRun, plan: FilesPlan) -> None:
        if run.framework_gone and plan.checkpoint:  # shut down meanwhile: its checkpoint is not wanted
            self._effects.append(RemoveTaskCheckpoint(run.framework.id, run.info.task_id, last=False))

    def launch(self, run: TaskRun) -> list[Effect]:
        """The task's turn to launch (its files are there). Ends with `LaunchContainer` when the container is to be
        launched (then `container_launched` or `launch_failed`); else the task is over, and the updates say why."""
        killed = TaskStatus.REASON_TASK_KILLED_DURING_LAUNCH
        if run.kill_requested:
            if run.kill_message:  # the master said why (a drain deadline): that is the reason
                self._update(run, tpb.TASK_KILLED, run.kill_reason, f"{run.kill_message} ({KILLED_BEFORE_START})")
            else:
                self._update(run, tpb.TASK_KILLED, killed, KILLED_BEFORE_START)
            return self._take_effects()
        if run.info.HasField("health_check"):
            problems = health.validate_check(run.info.health_check)
            if problems:
                message = "invalid health check: " + "; ".join(problems)
                self._update(run, tpb.TASK_ERROR, TaskStatus.REASON_TASK_INVALID, message)
                return self._take_effects()
        if isinstance(run.user, UserRefused):
            self._update(run, run.user.state, run.user.reason, run.user.message)
            return self._take_effects()
        if run.sandbox is None:  # killed while its files were created (the sandbox was not)
            self._update(run, tpb.TASK_KILLED, killed, KILLED_BEFORE_START)
            return self._take_effects()
        self._update(run, tpb.TASK_STARTING)
        resources = Resources.from_proto(run.info.resources)
        wanted_gpus = int(resources.scalar("gpus"))
        if wanted_gpus:
            given = self.gpus.allocate(wanted_gpus) if self.gpus is not None else None
            if given is None:
                message = f"launch failed: {wanted_gpus} GPU(s) asked for, not free on this agent"
                self._update(run, tpb.TASK_FAILED, TaskStatus.REASON_CONTAINER_LAUNCH_FAILED, message)
                return self._take_effects()
            run.gpus = given
            if run.checkpointed:
                self._effects.append(CheckpointGpus(run.framework.id, run.info.task_id, given))
        run.launching = True
        self._effects.append(LaunchContainer(run, resources))
        return self._take_effects()

    def launch_failed(self, run: TaskRun, error: BaseException) -> list[Effect]:
        run.launching = False
        self._release_gpus(run)
        self._update(run, tpb.TASK_FAILED, TaskStatus.REASON_CONTAINER_LAUNCH_FAILED, f"launch failed: {error}")
        return self._take_effects()

    def launch_abandoned(self, run: TaskRun) -> None:
        """The launch was cancelled (the agent is stopping)."""
        run.launching = False

    def container_launched(self, run: TaskRun, container: Container) -> None:
        run.launching = False
        run.container = container

    def container_started(self, run: TaskRun) -> list[Effect]:
        """The launched container runs: report it running, or kill it if a kill came during the launch."""
        assert run.container is not None
        if run.kill_requested:
            self._effects.append(KillContainer(run.container, run.grace))
        else:
            self._update(run, tpb.TASK_RUNNING)
            self._start_health_checks(run, self.monotonic(), healthy=None)
        return self._take_effects()

    def _start_health_checks(self, run: TaskRun, launched_at: float, healthy: bool | None) -> None:
        if run.info.HasField("health_check") and run.sandbox is not None:
            self._effects.append(StartHealthChecks(run, launched_at, healthy))

    def container_ended(self, run: TaskRun, termination: Termination) -> list[Effect]:
        self._effects.append(StopHealthChecks(run))
        state, reason, message, code = executor.terminal_status(termination, run.kill_requested)
        if run.kill_requested and run.kill_reason and state == tpb.TASK_KILLED:
            reason = run.kill_reason
            message = f"{run.kill_message} ({message})" if run.kill_message else message
        if run.health_kill_message is not None:
            reason, message = TaskStatus.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED, run.health_kill_message
            self._update(run, state, reason, message, exit_code=code, healthy=False)
        else:
            self._update(run, state, reason, message, exit_code=code)
        self._release_gpus(run)
        self._effects.append(ReleaseContainer(run.container_id))
        return self._take_effects()

    def _release_gpus(self, run: TaskRun) -> None:
        if run.gpus and self.gpus is not None:
            self.gpus.release(run.gpus)
            run.gpus = ()

    # ------------------------------------------------------------------ health checks
    def health_changed(self, run: TaskRun, healthy: bool) -> list[Effect]:
        if run.state == tpb.TASK_RUNNING and not run.kill_requested:
            reason = TaskStatus.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED
            self._update(run, tpb.TASK_RUNNING, reason, healthy=healthy)
        return self._take_effects()

    def health_check_failed(self, run: TaskRun, message: str) -> list[Effect]:
        """The health check failed its `consecutive_failures` in a row: kill the task."""
        run.health_kill_message = message
        log.warning("killing an unhealthy task", task_id=run.info.task_id, why=message)
        self._kill(run.framework.id, run.info.task_id, None)
        return self._take_effects()

    # ------------------------------------------------------------------ recovery
    def recover_task(self, recovered: RecoveredTask, *, rebooted: bool) -> tuple[TaskRun | None, list[Effect]]:
        """Hold a task found in the checkpoint and resend its unacknowledged updates. Returns the run when its
        container is to be looked for (then `container_recovered`), None when the task is over or lost."""
        run = TaskRun(
            framework=recovered.framework,
            info=recovered.task,
            container_id=recovered.container_id,
            state=recovered.state,
            checkpointed=True,
        )
        self._hold(run)
        framework_id = recovered.framework.id
        unacknowledged = recovered.unacknowledged
        self._effects.extend(SendUpdate(framework_id, status) for status in unacknowledged)
        if run.terminal:
            if not unacknowledged:  # over and acknowledged: nothing left to do
                self._forget(run.key)
                last = framework_id not in self._held_per_framework
                self._effects.append(RemoveTaskCheckpoint(framework_id, recovered.task.task_id, last=last))
            return None, self._take_effects()
        if rebooted:
            message = "the host rebooted: the task is gone"
            self._update(run, tpb.TASK_LOST, TaskStatus.REASON_AGENT_RESTARTED, message)
            return None, self._take_effects()
        return run, self._take_effects()

    def container_recovered(
        self,
        run: TaskRun,
        recovered: RecoveredTask,
        container: Container | None,
        *,
        sandbox_exists: bool,
        sandbox: Path | None = None,
    ) -> list[Effect]:
        """What the containerizer found of a re-adopted task's container (None: nothing). A container found runs
        on, or ended while no agent watched it (its wait then gives its real end at once). `sandbox`: where the
        container's record says it ran (else: where the layout puts it)."""
        if container is None:
            message = "the task's container was not found after a restart"
            self._update(run, tpb.TASK_LOST, TaskStatus.REASON_AGENT_RESTARTED, message)
            return self._take_effects()
        run.container = container
        if recovered.gpus and self.gpus is not None:
            run.gpus = recovered.gpus
            self.gpus.take(run.gpus)
        if sandbox_exists:
            # What the launch gave the task and a new agent process must rebuild: its sandbox, its health checks
            # (their clock counting from the task's launch).
            run.sandbox = sandbox or self.sandbox_of(run)
            if run.state == tpb.TASK_RUNNING and not container.done:
                started = recovered.launched_at()
                age = max(0.0, self.clock() - started) if started is not None else 0.0
                self._start_health_checks(run, self.monotonic() - age, healthy=recovered.healthy())
        if run.state == tpb.TASK_KILLING:  # the previous agent process was killing it: go on
            run.kill_requested = True
            self._effects.append(KillContainer(container, run.grace))
        self._effects.append(WatchContainer(run))
        return self._take_effects()

    # ------------------------------------------------------------------ the agent stopping
    def stop_tasks(self, grace_cap: float, *, keep_checkpointed: bool) -> tuple[list[TaskRun], list[Effect]]:
        """Kill the tasks that must not outlive the agent (those of frameworks that checkpoint run on, for the next
        agent process, unless not `keep_checkpointed`), each grace period capped. Returns them."""
        live = [r for r in self.tasks.values() if not r.terminal and not (keep_checkpointed and r.framework.checkpoint)]
        for run in live:
            run.kill_requested = True
            if run.container is not None:
                grace = min(executor.grace_period(run.info, None), grace_cap)
                self._effects.append(KillContainer(run.container, grace))
        return live, self._take_effects()

    # ------------------------------------------------------------------ status updates
    def _update(
        self,
        run: TaskRun,
        state: int,
        reason: int = TaskStatus.REASON_NONE,
        message: str = "",
        *,
        exit_code: int | None = None,
        healthy: bool | None = None,
    ) -> None:
        run.state = state
        status = executor.task_status(
            run.info.task_id, state, reason, message, self.agent_id, self.clock(), self.new_uuid(), exit_code, healthy
        )
        framework_id = run.framework.id
        if run.checkpointed:
            self._effects.append(CheckpointUpdate(framework_id, status))  # on disk before it is sent
        (log.info if state in _NOTABLE_STATES else log.debug)(
            "task state",
            task_id=run.info.task_id,
            framework_id=framework_id,
            state=tpb.TaskState.Name(state),  # type: ignore[arg-type]
            **({"message": message} if message else {}),
        )
        if state in TERMINAL_STATES:
            self._effects.append(MarkSandboxFinished(self.sandbox_of(run)))
        self._effects.append(SendUpdate(framework_id, status))

    def _update_unknown(self, framework_id: str, task_id: str) -> None:
        status = executor.unknown_task_status(task_id, self.agent_id, self.clock(), self.new_uuid())
        self._effects.append(SendUpdate(framework_id, status))


def _valid_health_check(info: tpb.TaskInfo) -> bool:
    return not info.HasField("health_check") or not health.validate_check(info.health_check)
