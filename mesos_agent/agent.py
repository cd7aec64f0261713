"""The agent's state: the tasks it runs, their containers and their status updates.

The master link calls in with what the master said (`run_tasks`, `kill_task`, `acknowledge`...); every state
change of a task becomes a status update handed to the `StatusUpdateManager`, which sends it reliably. Task
runners are owned by the daemon's TaskGroup (`spawn`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent import executor, health
from mesos_agent.checkpoint import Checkpoint, CheckpointError, RecoveredTask, write_new_log
from mesos_agent.containerizer import Container, Containerizer, LaunchError, LaunchSpec, Termination
from mesos_agent.gc import SandboxRegistry
from mesos_agent.gpus import GpuAllocator
from mesos_agent.sandbox import make_run_dir, run_sandbox
from mesos_agent.status_updates import StatusUpdateManager
from scheduler_sdk.resources import Resources
from scheduler_sdk.states import TERMINAL_STATES as TERMINAL

log = structlog.get_logger(__name__)
S = tpb.TaskStatus
AgentMessage = agent_pb2.AgentMessage
MasterMessage = agent_pb2.MasterMessage
KILLING_CAPABILITY = rpb.FrameworkInfo.Capability.TASK_KILLING_STATE
# States worth an info line; the others (STARTING, RUNNING, KILLING, FINISHED, KILLED: a thousand of each in a
# burst) are logged at debug level.
_NOTABLE = frozenset({tpb.TASK_FAILED, tpb.TASK_LOST, tpb.TASK_ERROR, tpb.TASK_DROPPED, tpb.TASK_GONE})


@dataclass(eq=False)
class TaskRun:
    framework: rpb.FrameworkInfo
    info: tpb.TaskInfo
    container_id: str
    state: int = tpb.TASK_STAGING
    container: Container | None = None
    kill_requested: bool = False
    grace: float = executor.DEFAULT_GRACE_PERIOD
    sandbox: Path | None = None
    env: dict[str, str] | None = None
    health_task: asyncio.Task[None] | None = None
    health_kill_message: str | None = None  # set when a failing health check killed the task
    kill_reason: int = 0  # why the master killed it (e.g. REASON_CONTAINER_PREEMPTED)
    gpus: tuple[int, ...] = ()  # the GPU indices it was given
    checkpointed: bool = False  # its log is in the checkpoint (updates are written there before they are sent)
    launching: bool = False  # the containerizer's launch is under way
    framework_gone: bool = False  # the framework was shut down: nothing of it is checkpointed any more

    @property
    def key(self) -> tuple[str, str]:
        return (self.framework.id, self.info.task_id)


class Agent:
    def __init__(
        self,
        work_dir: Path,
        info: rpb.AgentInfo,
        containerizer: Containerizer,
        *,
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        clock: Callable[[], float] = time.time,
        retry_min: float = 10.0,
        retry_max: float = 600.0,
        launch_concurrency: int = 16,
        gpus: GpuAllocator | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.info = info
        self.containerizer = containerizer
        self.spawn = spawn
        self.clock = clock
        self.tasks: dict[tuple[str, str], TaskRun] = {}
        self.frameworks: dict[str, rpb.FrameworkInfo] = {}  # of the tasks held
        self._held: dict[str, int] = {}  # framework id -> tasks held
        self._outgoing: list[AgentMessage.StatusUpdate] = []
        self._flush_scheduled = False
        self.send: Callable[[AgentMessage], None] | None = None
        # Launches run a bounded number at a time, first come first served: a burst of tasks then reaches RUNNING
        # in order instead of every launch crawling forward together.
        self._launch_slots = asyncio.Semaphore(launch_concurrency)
        # Sandboxes and checkpoints are created by two threads, a bounded number of tasks ahead of the launches.
        self._files = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="agent-files")
        self._prepare_slots = asyncio.Semaphore(4 * launch_concurrency)
        self.updates = StatusUpdateManager(self._queue, clock, retry_min=retry_min, retry_max=retry_max)
        self.checkpoint = Checkpoint(work_dir)
        self.sandboxes = SandboxRegistry(work_dir)
        self.gpus = gpus
        self.info.id = self.checkpoint.read("agent_id")

    # ------------------------------------------------------------------ identity
    @property
    def agent_id(self) -> str:
        return self.info.id

    def on_registered(self, agent_id: str) -> None:
        if agent_id != self.info.id:
            self.checkpoint.write("agent_id", agent_id)
            self.info.id = agent_id
        self.updates.on_connected()

    def on_disconnected(self) -> None:
        self.updates.on_disconnected()

    def register_message(self, boot_id: str, version: str) -> AgentMessage:
        tasks = [
            agent_pb2.AgentTask(framework_id=run.framework.id, task=run.info, state=run.state)  # type: ignore[arg-type]
            for run in self.tasks.values()
        ]
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
                    self.kill_task(kill.framework_id, kill.task_id, policy, reason=kill.reason)
            case MasterMessage.ACKNOWLEDGE:
                for ack in message.acknowledge.acknowledgements:
                    self.acknowledge(ack.framework_id, ack.task_id, ack.uuid)
            case MasterMessage.SHUTDOWN_FRAMEWORK:
                self.shutdown_framework(message.shutdown_framework.framework_id)
            case MasterMessage.FRAMEWORK_MESSAGE:
                log.info(
                    "framework message for an executor dropped: command tasks take no messages",
                    framework_id=message.framework_message.framework_id,
                )
            case _:
                pass

    def run_task(self, framework: rpb.FrameworkInfo, info: tpb.TaskInfo) -> None:
        key = (framework.id, info.task_id)
        if key in self.tasks:
            log.warning("duplicate launch ignored", framework_id=framework.id, task_id=info.task_id)
            return
        run = TaskRun(framework=framework, info=info, container_id=uuid.uuid4().hex[:16])
        self._hold(run)
        if framework.checkpoint:
            try:
                self.checkpoint.add_framework(framework)  # once per framework (and when its info changes)
            except OSError as e:
                self._cannot_checkpoint(run, e)
                return
        self.spawn(self._run(run))

    def _cannot_checkpoint(self, run: TaskRun, error: OSError) -> None:
        # Not launched: a task the next agent process could not re-adopt would be an orphan.
        log.error("cannot checkpoint a task", task_id=run.info.task_id, framework_id=run.framework.id, error=str(error))
        self._update(run, tpb.TASK_FAILED, S.REASON_CONTAINER_LAUNCH_FAILED, f"cannot checkpoint the task: {error}")

    def kill_task(self, framework_id: str, task_id: str, policy: rpb.KillPolicy | None, reason: int = 0) -> None:
        run = self.tasks.get((framework_id, task_id))
        if run is None:
            self._update_unknown(framework_id, task_id)
            return
        if run.state in TERMINAL or run.kill_requested:
            return
        run.kill_requested = True
        run.kill_reason = reason
        run.grace = executor.grace_period(run.info, policy)
        if run.container is not None:
            self._killing(run)
            self.spawn(run.container.kill(run.grace))
        elif run.launching:
            # The container is being created: it is killed as soon as it exists (see _run).
            if not run.kill_reason:
                run.kill_reason = S.REASON_TASK_KILLED_DURING_LAUNCH
            self._killing(run)
        # Else the launch has not begun: it reports the task killed instead of launching it (see _launch).

    def _killing(self, run: TaskRun) -> None:
        if any(c.type == KILLING_CAPABILITY for c in run.framework.capabilities):
            self._update(run, tpb.TASK_KILLING)

    def acknowledge(self, framework_id: str, task_id: str, update_uuid: bytes) -> None:
        acked = self.updates.acknowledge(framework_id, task_id, update_uuid)
        if acked is None:
            return
        key = (framework_id, task_id)
        run = self.tasks.get(key)
        done = acked.state in TERMINAL and not self.updates.unacknowledged(framework_id, task_id)
        if done:
            self._forget(key)
        if run is not None and run.checkpointed:
            if done:  # the whole log goes: no need to record the acknowledgement first
                run.checkpointed = False
                self.checkpoint.remove_task(framework_id, task_id, last=framework_id not in self._held)
            else:
                self._checkpoint_write(run, self.checkpoint.ack, framework_id, task_id, update_uuid)

    def _hold(self, run: TaskRun) -> None:
        self.tasks[run.key] = run
        self.frameworks[run.framework.id] = run.framework
        self._held[run.framework.id] = self._held.get(run.framework.id, 0) + 1

    def _forget(self, key: tuple[str, str]) -> None:
        if self.tasks.pop(key, None) is None:
            return
        framework_id = key[0]
        left = self._held.pop(framework_id, 1) - 1
        if left > 0:
            self._held[framework_id] = left
        else:
            self.frameworks.pop(framework_id, None)

    def shutdown_framework(self, framework_id: str) -> None:
        runs = [r for r in self.tasks.values() if r.framework.id == framework_id]
        for run in runs:
            if run.state not in TERMINAL:
                self.kill_task(framework_id, run.info.task_id, None)
        # Nobody will acknowledge the framework's updates any more (the master acknowledges those still sent for
        # it, the ends of the kills above), and nothing of it is to be re-adopted after a restart.
        self.updates.remove_framework(framework_id)
        self.checkpoint.remove_framework(framework_id)
        for run in runs:
            run.framework_gone = True
            run.checkpointed = False
            if run.state in TERMINAL:
                self._forget(run.key)

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
        assert run.container is not None
        if run.kill_requested:
            self.spawn(run.container.kill(run.grace))
        else:
            self._update(run, tpb.TASK_RUNNING)
            self._start_health_checks(run, time.monotonic())
        await self._watch(run)

    def _start_health_checks(self, run: TaskRun, launched_at: float, healthy: bool | None = None) -> None:
        """Run the task's health check, if it has one. `launched_at` is on time.monotonic's scale; `healthy`, the
        health last reported (a re-adopted task's), so that an unchanged health is not reported again."""
        if not run.info.HasField("health_check") or run.sandbox is None:
            return
        checker = health.HealthChecker(
            run.info.health_check,
            env=run.env or {},
            cwd=run.sandbox,
            launched_at=launched_at,
            on_health=lambda healthy: self._health_changed(run, healthy),
            on_kill=lambda message: self._health_kill(run, message),
            container=run.container,  # COMMAND checks run inside the task's container
        )
        if healthy is not None:
            checker.tracker.healthy = healthy
            checker.tracker.ever_healthy = checker.tracker.ever_healthy or healthy
        run.health_task = self.spawn(checker.run())

    def _health_changed(self, run: TaskRun, healthy: bool) -> None:
        if run.state == tpb.TASK_RUNNING and not run.kill_requested:
            self._update(run, tpb.TASK_RUNNING, S.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED, healthy=healthy)

    def _health_kill(self, run: TaskRun, message: str) -> None:
        run.health_kill_message = message
        log.warning("killing an unhealthy task", task_id=run.info.task_id, why=message)
        self.kill_task(run.framework.id, run.info.task_id, None)

    async def _watch(self, run: TaskRun) -> None:
        """Wait for the task's container to end and report how it ended."""
        assert run.container is not None
        try:
            term = await run.container.wait()
        except asyncio.CancelledError:
            if not run.framework.checkpoint:
                await run.container.kill(0)
            raise
        finally:
            if run.health_task is not None:
                run.health_task.cancel()
        self._report_end(run, term)

    def _report_end(self, run: TaskRun, term: Termination) -> None:
        state, reason, message, code = executor.terminal_status(term, run.kill_requested)
        if run.kill_requested and run.kill_reason and state == tpb.TASK_KILLED:
            reason = run.kill_reason
        if run.health_kill_message is not None:
            reason, message = S.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED, run.health_kill_message
            self._update(run, state, reason, message, exit_code=code, healthy=False)
        else:
            self._update(run, state, reason, message, exit_code=code)
        # The end is in the update log now: the container's own record of it is no longer needed.
        self._release_gpus(run)
        self.containerizer.release(run.container_id)

    def _release_gpus(self, run: TaskRun) -> None:
        if run.gpus and self.gpus is not None:
            self.gpus.release(run.gpus)
            run.gpus = ()

    async def _prepare(self, run: TaskRun) -> bool:
        """What a launch needs on disk, created in a worker thread (creating files and directories is the slow
        part of a launch, and the event loop goes on launching the tasks before this one meanwhile): the task's
        checkpoint, for a checkpointing framework, and its sandbox, unless it is not to be launched after all."""
        checkpoint = run.framework.checkpoint and not run.framework_gone
        launch = not run.kill_requested and self._valid(run)
        if not checkpoint and not launch:
            return True  # _launch reports why not
        fid, tid = run.framework.id, run.info.task_id
        # Paths and records are made here; the thread only makes the system calls (and so hardly holds the GIL,
        # which the event loop needs meanwhile).
        new_log = self.checkpoint.new_log(fid, run.info, run.container_id) if checkpoint else None
        sandbox = self.sandbox_of(run) if launch else None
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._files, _create_files, new_log, str(sandbox) if sandbox is not None else None, run.container_id
            )
        except CheckpointError as e:
            self._cannot_checkpoint(run, e)
            return False
        except OSError as e:
            run.checkpointed = checkpoint and not run.framework_gone
            self._update(run, tpb.TASK_FAILED, S.REASON_CONTAINER_LAUNCH_FAILED, f"cannot create the sandbox: {e}")
            return False
        finally:
            if run.framework_gone and checkpoint:  # shut down meanwhile: its checkpoint is not wanted
                self.checkpoint.remove_task(fid, tid)
        run.checkpointed = checkpoint and not run.framework_gone
        if sandbox is not None:
            run.sandbox = sandbox
            self.sandboxes.started(sandbox)
        return True

    def _valid(self, run: TaskRun) -> bool:
        return not run.info.HasField("health_check") or not health.validate_check(run.info.health_check)

    async def _launch(self, run: TaskRun) -> bool:
        if run.kill_requested:
            self._update(run, tpb.TASK_KILLED, S.REASON_TASK_KILLED_DURING_LAUNCH, "killed before it started")
            return False
        if run.info.HasField("health_check"):
            problems = health.validate_check(run.info.health_check)
            if problems:
                message = "invalid health check: " + "; ".join(problems)
                self._update(run, tpb.TASK_ERROR, S.REASON_TASK_INVALID, message)
                return False
        if run.sandbox is None:  # killed while its files were created (the sandbox was not)
            self._update(run, tpb.TASK_KILLED, S.REASON_TASK_KILLED_DURING_LAUNCH, "killed before it started")
            return False
        run.launching = True
        try:
            return await self._start_container(run)
        finally:
            run.launching = False

    async def _start_container(self, run: TaskRun) -> bool:
        fid, task = run.framework.id, run.info
        assert run.sandbox is not None
        self._update(run, tpb.TASK_STARTING)
        resources = Resources.from_proto(task.resources)
        wanted_gpus = int(resources.scalar("gpus"))
        if wanted_gpus:
            got = self.gpus.allocate(wanted_gpus) if self.gpus is not None else None
            if got is None:
                message = f"launch failed: {wanted_gpus} GPU(s) asked for, not free on this agent"
                self._update(run, tpb.TASK_FAILED, S.REASON_CONTAINER_LAUNCH_FAILED, message)
                return False
            run.gpus = got
            if run.checkpointed:
                self._checkpoint_write(run, self.checkpoint.set_gpus, fid, task.task_id, got)
        user = task.command.user or run.framework.user
        run.env = executor.task_environment(
            task, fid, self.agent_id, str(run.sandbox), run.container_id, self.info.hostname
        )
        spec = LaunchSpec(
            container_id=run.container_id,
            argv=executor.command_argv(task.command),
            env=run.env,
            cwd=run.sandbox,
            stdout_path=run.sandbox / "stdout",
            stderr_path=run.sandbox / "stderr",
            cpus=resources.scalar("cpus") or None,
            mem_mb=resources.scalar("mem") or None,
            # Switch user only when the agent can (root) and the framework named another user.
            user=user if user and os.getuid() == 0 and user != _current_user() else None,
            checkpoint=run.framework.checkpoint,
            disk_mb=resources.scalar("disk") or None,
            gpus=run.gpus,
        )
        try:
            run.container = await self.containerizer.launch(spec)
        except (LaunchError, OSError, ValueError) as e:
            self._release_gpus(run)
            self._update(run, tpb.TASK_FAILED, S.REASON_CONTAINER_LAUNCH_FAILED, f"launch failed: {e}")
            return False
        return True

    def _checkpoint_write(self, run: TaskRun, write: Callable[..., None], *args: Any) -> None:
        try:
            write(*args)
        except OSError as e:
            # Not fatal to the task, and better sent than lost: but a restart now would not know it.
            log.error("checkpoint write failed", task_id=run.info.task_id, framework_id=run.framework.id, error=str(e))

    def _update(
        self,
        run: TaskRun,
        state: int,
        reason: int = S.REASON_NONE,
        message: str = "",
        *,
        exit_code: int | None = None,
        healthy: bool | None = None,
    ) -> None:
        run.state = state
        status = tpb.TaskStatus(
            task_id=run.info.task_id,
            state=state,  # type: ignore[arg-type]
            reason=reason,  # type: ignore[arg-type]
            message=message,
            source=S.SOURCE_EXECUTOR if state not in (tpb.TASK_LOST, tpb.TASK_DROPPED) else S.SOURCE_AGENT,
            agent_id=self.agent_id,
            executor_id=run.info.task_id,
            timestamp=self.clock(),
            uuid=uuid.uuid4().bytes,
        )
        if exit_code is not None:
            status.exit_code, status.has_exit_code = exit_code, True
        if healthy is not None:
            status.healthy, status.has_healthy = healthy, True
        if run.checkpointed:
            self._checkpoint_write(run, self.checkpoint.update, run.framework.id, status)  # on disk before it is sent
        (log.info if state in _NOTABLE else log.debug)(
            "task state",
            task_id=run.info.task_id,
            framework_id=run.framework.id,
            state=tpb.TaskState.Name(state),  # type: ignore[arg-type]
            **({"message": message} if message else {}),
        )
        if state in TERMINAL:
            self._mark_finished(run)
        self.updates.add(run.framework.id, status)

    def sandbox_of(self, run: TaskRun) -> Path:
        """Where the run's sandbox is (for a task re-adopted after a restart: where the layout puts it)."""
        return run_sandbox(
            self.work_dir, self.agent_id, run.framework.id, run.info.task_id, run.container_id, run.sandbox
        )

    def _mark_finished(self, run: TaskRun) -> None:
        """The task ended: its sandbox's age, for the GC, counts from now (as Mesos touches an executor's
        directory when it schedules it for collection)."""
        self.sandboxes.finished(self.sandbox_of(run))

    def _update_unknown(self, framework_id: str, task_id: str) -> None:
        status = tpb.TaskStatus(
            task_id=task_id,
            state=tpb.TASK_LOST,
            reason=S.REASON_TASK_UNKNOWN,
            message="the agent does not know this task",
            source=S.SOURCE_AGENT,
            agent_id=self.agent_id,
            timestamp=self.clock(),
            uuid=uuid.uuid4().bytes,
        )
        self.updates.add(framework_id, status)

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
        for rt in self.checkpoint.recover():
            run = TaskRun(
                framework=rt.framework,
                info=rt.task,
                container_id=rt.container_id,
                state=rt.state,
                checkpointed=True,
            )
            self._hold(run)
            for status in rt.unacknowledged:
                self.updates.add(rt.framework.id, status)
            if run.state in TERMINAL:
                if not rt.unacknowledged:  # over and acknowledged: nothing left to do
                    self._forget(run.key)
                    fid = rt.framework.id
                    self.checkpoint.remove_task(fid, rt.task.task_id, last=fid not in self._held)
                continue
            if rebooted:
                self._update(run, tpb.TASK_LOST, S.REASON_AGENT_RESTARTED, "the host rebooted: the task is gone")
                continue
            found = await self.containerizer.recover(rt.container_id)
            if found is not None:
                # Still running, or ended while no agent watched: wait() then gives its real end at once.
                run.container = found
                kept.add(rt.container_id)
                if rt.gpus and self.gpus is not None:
                    run.gpus = rt.gpus
                    self.gpus.take(run.gpus)
                self._readopt(run, rt)
                if run.state == tpb.TASK_KILLING:  # the previous agent process was killing it: go on
                    run.kill_requested = True
                    self.spawn(found.kill(run.grace))
                self.spawn(self._watch(run))
            else:
                self._update(
                    run, tpb.TASK_LOST, S.REASON_AGENT_RESTARTED, "the task's container was not found after a restart"
                )
        live = {self.sandbox_of(r) for r in self.tasks.values() if r.state not in TERMINAL}
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

    def _readopt(self, run: TaskRun, rt: RecoveredTask) -> None:
        """What the launch gave a task and a new agent process must rebuild: its sandbox, its environment, its
        health checks (their clock counting from the task's launch)."""
        sandbox = self.sandbox_of(run)
        if not sandbox.is_dir():
            return
        run.sandbox = sandbox
        run.env = executor.task_environment(
            rt.task, rt.framework.id, self.agent_id, str(sandbox), run.container_id, self.info.hostname
        )
        assert run.container is not None
        if run.state == tpb.TASK_RUNNING and not run.container.done:
            started = rt.launched_at()
            age = max(0.0, self.clock() - started) if started is not None else 0.0
            self._start_health_checks(run, time.monotonic() - age, healthy=rt.healthy())

    def has_live_checkpointed_tasks(self) -> bool:
        return any(r.framework.checkpoint and r.state not in TERMINAL for r in self.tasks.values())

    # ------------------------------------------------------------------ shutdown
    async def shutdown(self, grace_cap: float = 10.0, *, keep_checkpointed: bool = True) -> None:
        """Kill the tasks that must not outlive the agent and report them. Tasks of frameworks that checkpoint
        keep running for the next agent process to re-adopt, unless `keep_checkpointed` is False."""
        live = [
            r
            for r in self.tasks.values()
            if r.state not in TERMINAL and not (keep_checkpointed and r.framework.checkpoint)
        ]
        for run in live:
            run.kill_requested = True
            if run.container is not None:
                grace = min(executor.grace_period(run.info, None), grace_cap)
                self.spawn(run.container.kill(grace))
        if live:
            deadline = self.clock() + grace_cap + 2.0
            while any(r.state not in TERMINAL for r in live) and self.clock() < deadline:
                await asyncio.sleep(0.05)

    def close(self) -> None:
        """Release the agent's threads (after `shutdown`, once nothing launches any more)."""
        self._files.shutdown(wait=False, cancel_futures=True)


_OUTPUT = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC


def _create_files(log: tuple[str, bytes] | None, sandbox: str | None, container_id: str) -> None:
    """In a worker thread, system calls only: the task's checkpoint log, then its sandbox (the layout of
    `mesos_agent.sandbox`: the run directory and the `latest` link to it) with its `stdout` and `stderr`, which the
    containerizer opens (O_APPEND, created if missing): created here, they cost the launch itself no file
    creation. CheckpointError when the log cannot be created."""
    if log is not None:
        try:
            write_new_log(*log)
        except OSError as e:
            raise CheckpointError(e.errno, e.strerror or str(e)) from e
    if sandbox is None:
        return
    make_run_dir(sandbox, container_id)
    for name in ("stdout", "stderr"):
        os.close(os.open(f"{sandbox}/{name}", _OUTPUT, 0o644))


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
