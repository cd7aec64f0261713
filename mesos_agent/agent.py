"""The agent's state: the tasks it runs, their containers and their status updates.

The master link calls in with what the master said (`run_tasks`, `kill_task`, `acknowledge`...); every state
change of a task becomes a status update handed to the `StatusUpdateManager`, which sends it reliably. Task
runners are owned by the daemon's TaskGroup (`spawn`)."""

from __future__ import annotations

import asyncio
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
from mesos_agent.checkpoint import Checkpoint
from mesos_agent.containerizer import Container, Containerizer, LaunchError, LaunchSpec, Termination
from mesos_agent.gpus import GpuAllocator
from mesos_agent.sandbox import create_sandbox, safe_id
from mesos_agent.status_updates import StatusUpdateManager
from scheduler_sdk.resources import Resources
from scheduler_sdk.states import TERMINAL_STATES as TERMINAL

log = structlog.get_logger(__name__)
S = tpb.TaskStatus
AgentMessage = agent_pb2.AgentMessage
MasterMessage = agent_pb2.MasterMessage
KILLING_CAPABILITY = rpb.FrameworkInfo.Capability.TASK_KILLING_STATE


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
        launch_concurrency: int = 4,
        gpus: GpuAllocator | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.info = info
        self.containerizer = containerizer
        self.spawn = spawn
        self.clock = clock
        self.tasks: dict[tuple[str, str], TaskRun] = {}
        self.frameworks: dict[str, rpb.FrameworkInfo] = {}
        self._outgoing: list[AgentMessage.StatusUpdate] = []
        self._flush_scheduled = False
        self.send: Callable[[AgentMessage], None] | None = None
        # Launches run a few at a time, first come first served: a burst of tasks then reaches RUNNING in
        # order instead of every launch crawling forward together.
        self._launch_slots = asyncio.Semaphore(launch_concurrency)
        self.updates = StatusUpdateManager(self._queue, clock, retry_min=retry_min, retry_max=retry_max)
        self.checkpoint = Checkpoint(work_dir)
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
        self.frameworks[framework.id] = framework
        run = TaskRun(framework=framework, info=info, container_id=uuid.uuid4().hex[:16])
        self.tasks[key] = run
        if framework.checkpoint:
            self.checkpoint.add_task(framework, info, run.container_id)
        self.spawn(self._run(run))

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
            if any(c.type == KILLING_CAPABILITY for c in run.framework.capabilities):
                self._update(run, tpb.TASK_KILLING)
            self.spawn(run.container.kill(run.grace))

    def acknowledge(self, framework_id: str, task_id: str, update_uuid: bytes) -> None:
        acked = self.updates.acknowledge(framework_id, task_id, update_uuid)
        if acked is None:
            return
        run = self.tasks.get((framework_id, task_id))
        checkpointed = run is not None and run.framework.checkpoint
        if checkpointed:
            self.checkpoint.ack(framework_id, task_id, update_uuid)
        if acked.state in TERMINAL and not self.updates.unacknowledged(framework_id, task_id):
            self.tasks.pop((framework_id, task_id), None)
            if checkpointed:
                self.checkpoint.remove_task(framework_id, task_id)

    def shutdown_framework(self, framework_id: str) -> None:
        for run in [r for r in self.tasks.values() if r.framework.id == framework_id]:
            if run.state not in TERMINAL:
                self.kill_task(framework_id, run.info.task_id, None)
        # Nobody will acknowledge the framework's updates any more.
        self.updates.remove_framework(framework_id)
        self.checkpoint.remove_framework(framework_id)
        for key in [k for k, r in self.tasks.items() if k[0] == framework_id and r.state in TERMINAL]:
            del self.tasks[key]

    # ------------------------------------------------------------------ running a task
    async def _run(self, run: TaskRun) -> None:
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
            self._start_health_checks(run)
        await self._watch(run)

    def _start_health_checks(self, run: TaskRun) -> None:
        if not run.info.HasField("health_check") or run.sandbox is None:
            return
        checker = health.HealthChecker(
            run.info.health_check,
            env=run.env or {},
            cwd=run.sandbox,
            launched_at=time.monotonic(),
            on_health=lambda healthy: self._health_changed(run, healthy),
            on_kill=lambda message: self._health_kill(run, message),
        )
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

    async def _launch(self, run: TaskRun) -> bool:
        fid, task = run.framework.id, run.info
        if run.kill_requested:
            self._update(run, tpb.TASK_KILLED, S.REASON_TASK_KILLED_DURING_LAUNCH, "killed before it started")
            return False
        if run.info.HasField("health_check"):
            problems = health.validate_check(run.info.health_check)
            if problems:
                message = "invalid health check: " + "; ".join(problems)
                self._update(run, tpb.TASK_ERROR, S.REASON_TASK_INVALID, message)
                return False
        run.sandbox = create_sandbox(
            self.work_dir, self.agent_id, safe_id(fid), safe_id(task.task_id), run.container_id
        )
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
            if run.framework.checkpoint:
                self.checkpoint.write_task_file(fid, task.task_id, "gpus", ",".join(map(str, got)))
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
        if run.framework.checkpoint:
            self.checkpoint.update(run.framework.id, status)  # on disk before it is sent
        log.info(
            "task state",
            task_id=run.info.task_id,
            framework_id=run.framework.id,
            state=tpb.TaskState.Name(state),  # type: ignore[arg-type]
            **({"message": message} if message else {}),
        )
        self.updates.add(run.framework.id, status)

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
        watch the containers that still run, report those that ended meanwhile with their real exit status.
        After a host reboot they are all gone: report them lost. Returns the container ids kept."""
        previous_boot = self.checkpoint.read("boot_id")
        rebooted = bool(previous_boot) and previous_boot != boot_id
        kept: set[str] = set()
        for rt in self.checkpoint.recover():
            run = TaskRun(framework=rt.framework, info=rt.task, container_id=rt.container_id, state=rt.state)
            self.tasks[run.key] = run
            self.frameworks[rt.framework.id] = rt.framework
            for status in rt.unacknowledged:
                self.updates.add(rt.framework.id, status)
            if run.state in TERMINAL:
                if not rt.unacknowledged:  # over and acknowledged: nothing left to do
                    self.tasks.pop(run.key)
                    self.checkpoint.remove_task(rt.framework.id, rt.task.task_id)
                continue
            if rebooted:
                self._update(run, tpb.TASK_LOST, S.REASON_AGENT_RESTARTED, "the host rebooted: the task is gone")
                continue
            found = await self.containerizer.recover(rt.container_id)
            if found is not None:
                # Still running, or ended while no agent watched: wait() then gives its real end at once.
                run.container = found
                kept.add(rt.container_id)
                gpus = self.checkpoint.read_task_file(rt.framework.id, rt.task.task_id, "gpus")
                if gpus and self.gpus is not None:
                    run.gpus = tuple(int(i) for i in gpus.split(","))
                    self.gpus.take(run.gpus)
                self.spawn(self._watch(run))
            else:
                self._update(
                    run, tpb.TASK_LOST, S.REASON_AGENT_RESTARTED, "the task's container was not found after a restart"
                )
        self.checkpoint.write("boot_id", boot_id)
        if self.tasks:
            log.info(
                "recovered checkpointed tasks",
                tasks=len(self.tasks),
                running=len(kept),
                rebooted=rebooted,
                pending_updates=self.updates.pending(),
            )
        return kept

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


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
