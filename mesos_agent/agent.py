"""The agent: the imperative shell around its task state machine (`mesos_agent.tasks`).

The master link calls in with what the master said (`run_task`, `kill_task`, `acknowledge`...); the state machine
decides, and returns the effects this shell carries out: files and checkpoint writes, the containerizer's
launches and kills, health checks, status updates handed to the `StatusUpdateManager`, which sends them
reliably. What the containers and health checks do is fed back to the state machine. Task runners are owned by
the daemon's TaskGroup (`spawn`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent import executor, health
from mesos_agent.checkpoint import Checkpoint, CheckpointError, write_new_log
from mesos_agent.containerizer import Containerizer, LaunchError, LaunchSpec
from mesos_agent.framework_messages import sandbox_write
from mesos_agent.gc import SandboxRegistry
from mesos_agent.gpus import GpuAllocator
from mesos_agent.sandbox import make_run_dir, write_sandbox_file
from mesos_agent.status_updates import StatusUpdateManager
from mesos_agent.tasks import (
    CheckpointAck,
    CheckpointGpus,
    CheckpointUpdate,
    DropUpdates,
    Effect,
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
    TaskKey,
    TaskRun,
    TaskStateMachine,
    WatchContainer,
)
from mesos_agent.users import TaskUser, UserPolicy
from scheduler_sdk.resources import Resources

__all__ = ["Agent"]

log = structlog.get_logger(__name__)
AgentMessage = agent_pb2.AgentMessage
MasterMessage = agent_pb2.MasterMessage


class Agent:
    def __init__(
        self,
        work_dir: Path,
        info: rpb.AgentInfo,
        containerizer: Containerizer,
        *,
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        retry_min: float = 10.0,
        retry_max: float = 600.0,
        launch_concurrency: int = 16,
        gpus: GpuAllocator | None = None,
        users: UserPolicy | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.users = users if users is not None else UserPolicy()
        self.info = info
        self.containerizer = containerizer
        self.spawn = spawn
        self.monotonic = monotonic
        self.machine = TaskStateMachine(work_dir, clock=clock, monotonic=monotonic, gpus=gpus)
        self._outgoing: list[AgentMessage.StatusUpdate] = []
        self._flush_scheduled = False
        self.send: Callable[[AgentMessage], None] | None = None
        # Launches run a bounded number at a time, first come first served: a burst of tasks then reaches RUNNING
        # in order instead of every launch crawling forward together.
        self._launch_slots = asyncio.Semaphore(launch_concurrency)
        # Sandboxes and checkpoints are created by two threads, a bounded number of tasks ahead of the launches.
        self._files = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="agent-files")
        self._prepare_slots = asyncio.Semaphore(4 * launch_concurrency)
        self._health_checks: dict[TaskRun, asyncio.Task[None]] = {}
        self.updates = StatusUpdateManager(self._queue, clock, retry_min=retry_min, retry_max=retry_max)
        self.checkpoint = Checkpoint(work_dir)
        self.sandboxes = SandboxRegistry(work_dir)
        self.info.id = self.machine.agent_id = self.checkpoint.read("agent_id")

    # ------------------------------------------------------------------ identity and state
    @property
    def agent_id(self) -> str:
        return self.info.id

    @property
    def tasks(self) -> dict[TaskKey, TaskRun]:
        """The tasks held, until their last update is acknowledged."""
        return self.machine.tasks

    @property
    def frameworks(self) -> dict[str, rpb.FrameworkInfo]:
        """The frameworks of the tasks held."""
        return self.machine.frameworks

    def sandbox_of(self, run: TaskRun) -> Path:
        """Where the run's sandbox is (for a task re-adopted after a restart: where the layout puts it)."""
        return self.machine.sandbox_of(run)

    def live_sandboxes(self) -> list[Path]:
        """The sandboxes of the tasks held: never collected."""
        return self.machine.live_sandboxes()

    def has_live_checkpointed_tasks(self) -> bool:
        return self.machine.has_live_checkpointed_tasks()

    def on_registered(self, agent_id: str) -> None:
        if agent_id != self.info.id:
            self.checkpoint.write("agent_id", agent_id)
            self.info.id = self.machine.agent_id = agent_id
        self.updates.on_connected()

    def on_disconnected(self) -> None:
        self.updates.on_disconnected()

    def register_message(self, boot_id: str, version: str) -> AgentMessage:
        tasks = []
        for run in self.tasks.values():
            reported = agent_pb2.AgentTask(framework_id=run.framework.id, task=run.info, state=run.state)  # type: ignore[arg-type]
            oldest = self.updates.oldest(run.framework.id, run.info.task_id)
            if oldest is not None:
                reported.status_update_state = oldest.state
            tasks.append(reported)
        return AgentMessage(
            type=AgentMessage.REGISTER,
            register=AgentMessage.Register(agent_info=self.info, boot_id=boot_id, tasks=tasks, version=version),
        )

    # ------------------------------------------------------------------ from the master
    def on_master_message(self, message: agent_pb2.MasterMessage) -> None:
        match message.type:
            case MasterMessage.RUN_TASKS:
                for item in message.run_tasks.tasks:
                    self.run_task(item.framework, item.task)
            case MasterMessage.KILL_TASKS:
                for kill in message.kill_tasks.tasks:
                    policy = kill.kill_policy if kill.HasField("kill_policy") else None
                    self.kill_task(kill.framework_id, kill.task_id, policy, reason=kill.reason, message=kill.message)
            case MasterMessage.ACKNOWLEDGE:
                for ack in message.acknowledge.acknowledgements:
                    self.acknowledge(ack.framework_id, ack.task_id, ack.uuid)
            case MasterMessage.SHUTDOWN_FRAMEWORK:
                self.shutdown_framework(message.shutdown_framework.framework_id)
            case MasterMessage.FRAMEWORK_MESSAGE:
                self.framework_message(message.framework_message)
            case _:
                pass

    def run_task(self, framework: rpb.FrameworkInfo, info: tpb.TaskInfo) -> None:
        user = self.users.resolve(info.command.user, framework.user)
        self._execute(self.machine.run_task(framework, info, container_id=uuid.uuid4().hex[:16], user=user))

    def kill_task(
        self, framework_id: str, task_id: str, policy: rpb.KillPolicy | None, reason: int = 0, message: str = ""
    ) -> None:
        self._execute(self.machine.kill_task(framework_id, task_id, policy, reason, message))

    def acknowledge(self, framework_id: str, task_id: str, update_uuid: bytes) -> None:
        acked = self.updates.acknowledge(framework_id, task_id, update_uuid)
        if acked is None:
            return
        more_pending = self.updates.unacknowledged(framework_id, task_id)
        self._execute(
            self.machine.acknowledged(framework_id, task_id, update_uuid, acked.state, more_pending=more_pending)
        )

    def shutdown_framework(self, framework_id: str) -> None:
        self._execute(self.machine.shutdown_framework(framework_id))

    def framework_message(self, message: MasterMessage.FrameworkMessage) -> None:
        """Write a framework message to the file it names in its command task's sandbox (`framework_messages`), here
        on the event loop: a small file, and two messages to one file land in the order they came."""
        write = sandbox_write(self.tasks, message)
        if isinstance(write, str):
            log.info(
                "framework message dropped",
                framework_id=message.framework_id,
                executor_id=message.executor_id,
                why=write,
            )
            return
        try:
            write_sandbox_file(write.sandbox, write.name, write.data, write.owner)
        except OSError as e:
            log.warning(
                "framework message not written to the sandbox",
                framework_id=write.framework_id,
                task_id=write.task_id,
                path=write.name,
                error=str(e),
            )
            return
        log.debug("framework message written", framework_id=write.framework_id, task_id=write.task_id, path=write.name)

    # ------------------------------------------------------------------ carrying out the effects
    def _execute(self, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:  # the frequent ones first
                case SendUpdate(framework_id, status):
                    self.updates.add(framework_id, status)
                case CheckpointUpdate(framework_id, status):
                    self._checkpoint_write(framework_id, status.task_id, self.checkpoint.update, framework_id, status)
                case MarkSandboxFinished(sandbox):
                    self.sandboxes.finished(sandbox)
                case SandboxStarted(sandbox):
                    self.sandboxes.started(sandbox)
                case StartTask(run, checkpoint_framework):
                    self._start_task(run, checkpoint_framework)
                case KillContainer(container, grace):
                    self.spawn(container.kill(grace))
                case ReleaseContainer(container_id):
                    self.containerizer.release(container_id)
                case CheckpointAck(framework_id, task_id, acked):
                    self._checkpoint_write(framework_id, task_id, self.checkpoint.ack, framework_id, task_id, acked)
                case RemoveTaskCheckpoint(framework_id, task_id, last):
                    self.checkpoint.remove_task(framework_id, task_id, last=last)
                case CheckpointGpus(framework_id, task_id, gpus):
                    self._checkpoint_write(framework_id, task_id, self.checkpoint.set_gpus, framework_id, task_id, gpus)
                case StartHealthChecks():
                    self._start_health_checks(effect)
                case StopHealthChecks(run):
                    self._stop_health_checks(run)
                case WatchContainer(run):
                    self.spawn(self._watch(run))
                case RemoveFrameworkCheckpoint(framework_id):
                    self.checkpoint.remove_framework(framework_id)
                case DropUpdates(framework_id):
                    self.updates.remove_framework(framework_id)
                case LaunchContainer():
                    raise AssertionError("LaunchContainer is carried out by _launch")

    def _checkpoint_write(self, framework_id: str, task_id: str, write: Callable[..., None], *args: Any) -> None:
        try:
            write(*args)
        except OSError as e:
            # Not fatal to the task, and better sent than lost: but a restart now would not know it.
            log.error("checkpoint write failed", task_id=task_id, framework_id=framework_id, error=str(e))

    def _start_task(self, run: TaskRun, checkpoint_framework: bool) -> None:
        if checkpoint_framework:
            try:
                self.checkpoint.add_framework(run.framework)  # once per framework (and when its info changes)
            except OSError as e:
                self._execute(self.machine.cannot_checkpoint(run, e))
                return
        self.spawn(self._run(run))

    # ------------------------------------------------------------------ running a task
    async def _run(self, run: TaskRun) -> None:
        async with self._prepare_slots:
            if not await self._prepare(run):
                return
        async with self._launch_slots:
            launched = await self._launch(run)
            # A launch does not suspend (posix_spawn is synchronous): yield, so that this update goes out
            # before the next of a burst of launches instead of after all of them.
            await asyncio.sleep(0)
            if not launched:
                return
        self._execute(self.machine.container_started(run))
        await self._watch(run)

    async def _prepare(self, run: TaskRun) -> bool:
        """What a launch needs on disk, created in a worker thread (creating files and directories is the slow
        part of a launch, and the event loop goes on launching the tasks before this one meanwhile): the task's
        checkpoint, for a checkpointing framework, and its sandbox, unless it is not to be launched after all."""
        plan = self.machine.files_to_create(run)
        if plan is None:
            return True  # _launch reports why not
        # Paths and records are made here; the thread only makes the system calls (and so hardly holds the GIL,
        # which the event loop needs meanwhile).
        new_log = self.checkpoint.new_log(run.framework.id, run.info, run.container_id) if plan.checkpoint else None
        sandbox = str(plan.sandbox) if plan.sandbox is not None else None
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._files, _create_files, new_log, sandbox, run.container_id, plan.owner
            )
        except CheckpointError as e:
            self._execute(self.machine.checkpoint_log_failed(run, plan, e))
            return False
        except OSError as e:
            self._execute(self.machine.sandbox_failed(run, plan, e))
            return False
        except BaseException:
            self._execute(self.machine.files_abandoned(run, plan))
            raise
        self._execute(self.machine.files_created(run, plan))
        return True

    async def _launch(self, run: TaskRun) -> bool:
        """The task's turn: TASK_STARTING and the containerizer's launch (or the update that says why not)."""
        effects = self.machine.launch(run)
        launch = effects[-1] if effects else None
        if not isinstance(launch, LaunchContainer):
            self._execute(effects)
            return False
        self._execute(effects[:-1])
        try:
            spec = self._launch_spec(run, launch.resources)
            try:
                container = await self.containerizer.launch(spec)
            except (LaunchError, OSError, ValueError) as e:
                self._execute(self.machine.launch_failed(run, e))
                return False
        except BaseException:
            self.machine.launch_abandoned(run)
            raise
        self.machine.container_launched(run, container)
        return True

    def _launch_spec(self, run: TaskRun, resources: Resources) -> LaunchSpec:
        task = run.info
        assert run.sandbox is not None
        user = run.user
        return LaunchSpec(
            container_id=run.container_id,
            argv=executor.command_argv(task.command),
            env=self._task_environment(run, run.sandbox),
            cwd=run.sandbox,
            stdout_path=run.sandbox / "stdout",
            stderr_path=run.sandbox / "stderr",
            cpus=resources.scalar("cpus") or None,
            mem_mb=resources.scalar("mem") or None,
            # Switch user when the task's is not the agent's own (`mesos_agent.users` decided it may run).
            user=user.name if isinstance(user, TaskUser) and user.uid != os.geteuid() else None,
            checkpoint=run.framework.checkpoint,
            disk_mb=resources.scalar("disk") or None,
            gpus=run.gpus,
        )

    def _task_environment(self, run: TaskRun, sandbox: Path) -> dict[str, str]:
        return executor.task_environment(
            run.info, run.framework.id, self.agent_id, str(sandbox), run.container_id, self.info.hostname
        )

    async def _watch(self, run: TaskRun) -> None:
        """Wait for the task's container to end and report how it ended."""
        container = run.container
        assert container is not None
        try:
            termination = await container.wait()
        except BaseException as e:
            self._stop_health_checks(run)
            if isinstance(e, asyncio.CancelledError) and not run.framework.checkpoint:
                await container.kill(0)
            raise
        self._execute(self.machine.container_ended(run, termination))

    def _start_health_checks(self, effect: StartHealthChecks) -> None:
        run = effect.run
        assert run.sandbox is not None
        checker = health.HealthChecker(
            run.info.health_check,
            env=self._task_environment(run, run.sandbox),
            cwd=run.sandbox,
            launched_at=effect.launched_at,
            on_health=lambda healthy: self._execute(self.machine.health_changed(run, healthy)),
            on_kill=lambda message: self._execute(self.machine.health_check_failed(run, message)),
            clock=self.monotonic,
            container=run.container,  # COMMAND checks run inside the task's container
        )
        if effect.healthy is not None:
            checker.tracker.healthy = effect.healthy
            checker.tracker.ever_healthy = checker.tracker.ever_healthy or effect.healthy
        self._health_checks[run] = self.spawn(checker.run())

    def _stop_health_checks(self, run: TaskRun) -> None:
        checks = self._health_checks.pop(run, None)
        if checks is not None:
            checks.cancel()

    # ------------------------------------------------------------------ outgoing batches
    def _queue(self, batch: list[AgentMessage.StatusUpdate]) -> None:
        self._outgoing.extend(batch)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._outgoing or self.send is None:
            self._outgoing.clear()  # the manager resends heads on the next attach
            return
        batch, self._outgoing = self._outgoing, []
        self.send(
            AgentMessage(type=AgentMessage.STATUS_UPDATES, status_updates=AgentMessage.StatusUpdates(updates=batch))
        )

    async def retry_loop(self) -> None:
        while True:
            wait = self.updates.next_due_in()
            await asyncio.sleep(min(1.0, wait) if wait is not None else 1.0)
            self.updates.due()

    # ------------------------------------------------------------------ recovery
    async def recover(self, boot_id: str) -> set[str]:
        """Re-adopt the checkpointed tasks a previous agent process left: resend their unacknowledged updates,
        watch the containers that still run (and run their health checks again), report those that ended
        meanwhile with their real exit status. After a host reboot they are all gone: report them lost.

        Every sandbox whose task ended while no agent watched it (a reboot, the orphans of a `kill -9`) is
        marked finished now, so that the GC keeps it `--gc-delay` from now like any other. Returns the
        container ids kept."""
        previous_boot = self.checkpoint.read("boot_id")
        rebooted = bool(previous_boot) and previous_boot != boot_id
        unfinished = self.sandboxes.load()
        kept: set[str] = set()
        for recovered in self.checkpoint.recover():
            run, effects = self.machine.recover_task(recovered, rebooted=rebooted)
            self._execute(effects)
            if run is None:
                continue
            container = await self.containerizer.recover(recovered.container_id)
            if container is not None:
                kept.add(recovered.container_id)
            # Where the containerizer's record says the task runs (an earlier version may have named it otherwise).
            sandbox = Path(container.spec.cwd) if container is not None else self.sandbox_of(run)
            sandbox_exists = container is not None and sandbox.is_dir()
            self._execute(
                self.machine.container_recovered(
                    run, recovered, container, sandbox_exists=sandbox_exists, sandbox=sandbox
                )
            )
        live = {self.sandbox_of(r) for r in self.tasks.values() if not r.terminal}
        ended = self.sandboxes.sweep(unfinished, keep=live)
        self.checkpoint.write("boot_id", boot_id)
        if self.tasks or ended:
            log.info(
                "recovered checkpointed tasks",
                tasks=len(self.tasks),
                running=len(kept),
                rebooted=rebooted,
                pending_updates=self.updates.pending(),
                sandboxes_marked_finished=ended,
            )
        return kept

    # ------------------------------------------------------------------ shutdown
    async def shutdown(self, grace_cap: float = 10.0, *, keep_checkpointed: bool = True) -> None:
        """Kill the tasks that must not outlive the agent and report them. Tasks of frameworks that checkpoint
        keep running for the next agent process to re-adopt, unless `keep_checkpointed` is False."""
        live, effects = self.machine.stop_tasks(grace_cap, keep_checkpointed=keep_checkpointed)
        self._execute(effects)
        if live:
            deadline = self.monotonic() + grace_cap + 2.0
            while any(not r.terminal for r in live) and self.monotonic() < deadline:
                await asyncio.sleep(0.05)

    def close(self) -> None:
        """Release the agent's threads (after `shutdown`, once nothing launches any more)."""
        self._files.shutdown(wait=False, cancel_futures=True)


_OUTPUT = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC


def _create_files(
    log: tuple[str, bytes] | None, sandbox: str | None, container_id: str, owner: tuple[int, int] | None
) -> None:
    """In a worker thread, system calls only: the task's checkpoint log, then its sandbox (the layout of
    `mesos_agent.sandbox`: the run directory and the `latest` link to it) with its `stdout` and `stderr`, which the
    containerizer opens (O_APPEND, created if missing): created here, they cost the launch itself no file
    creation. The run directory and both files belong to `owner` (uid, gid), the task's user, when given.
    CheckpointError when the log cannot be created."""
    if log is not None:
        try:
            write_new_log(*log)
        except OSError as e:
            raise CheckpointError(e.errno, e.strerror or str(e)) from e
    if sandbox is None:
        return
    make_run_dir(sandbox, container_id, owner)
    for name in ("stdout", "stderr"):
        fd = os.open(f"{sandbox}/{name}", _OUTPUT | os.O_NOFOLLOW, 0o644)
        try:
            if owner is not None:
                os.fchown(fd, *owner)
        finally:
            os.close(fd)
