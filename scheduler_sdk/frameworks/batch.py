"""A batch framework: run a list of commands once each, placed by the placement engine (cpu bin packing), and
wait until every one has ended. It is what `aiomesos run` and the demo job use."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import SchedulerDriver
from scheduler_sdk.placement.engine import PlacementEngine
from scheduler_sdk.placement.extension import Engine
from scheduler_sdk.placement.fitness import BinPacking
from scheduler_sdk.placement.model import Assignment, Failure, SchedulingResult, TaskRequest
from scheduler_sdk.placement.service import PlacementScheduler, run_framework
from scheduler_sdk.resources import Resources
from scheduler_sdk.states import TERMINAL_STATES


@dataclass
class TaskSpec:
    task_id: str
    command: str | Sequence[str]  # a shell string, or argv
    cpus: float = 0.1
    mem: float = 32
    disk: float = 0
    name: str = ""
    env: dict[str, str] = field(default_factory=dict)
    grace_period: float | None = None

    def resources(self) -> Resources:
        if self.disk:
            return Resources.of(cpus=self.cpus, mem=self.mem, disk=self.disk)
        return Resources.of(cpus=self.cpus, mem=self.mem)

    def task_info(self, agent_id: str) -> tpb.TaskInfo:
        if isinstance(self.command, str):
            command = rpb.CommandInfo(shell=True, value=self.command)
        else:
            argv = list(self.command)
            command = rpb.CommandInfo(shell=False, value=argv[0], arguments=argv)
        for k, v in self.env.items():
            command.environment.variables.add(name=k, value=v)
        info = tpb.TaskInfo(
            task_id=self.task_id,
            name=self.name or self.task_id,
            agent_id=agent_id,
            resources=self.resources().to_proto(),
            command=command,
        )
        if self.grace_period is not None:
            info.kill_policy.grace_period.nanoseconds = int(self.grace_period * 1e9)
        return info


@dataclass
class TaskRecord:
    spec: TaskSpec
    state: int = tpb.TASK_STAGING
    agent_id: str = ""
    hostname: str = ""
    exit_code: int | None = None
    message: str = ""
    reason: int = 0
    launched_at: float | None = None
    running_at: float | None = None
    ended_at: float | None = None
    states: list[int] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def duration(self) -> float | None:
        start = self.running_at or self.launched_at
        if start is None or self.ended_at is None:
            return None
        return self.ended_at - start


class BatchScheduler(PlacementScheduler):
    """Runs each spec once, placed by the placement engine (cpu bin packing by default)."""

    def __init__(
        self,
        specs: Sequence[TaskSpec],
        *,
        on_update: Callable[[TaskRecord, tpb.TaskStatus], None] | None = None,
        on_waiting: Callable[[TaskRecord, str], None] | None = None,
        engine: Engine | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        ids = [s.task_id for s in specs]
        if len(set(ids)) != len(ids):
            raise ValueError("task ids must be unique")
        super().__init__(
            engine if engine is not None else PlacementEngine(BinPacking("cpus")),
            task_info=_spec_task_info,
            on_update=self._record,
            clock=clock,
        )
        self.records = {s.task_id: TaskRecord(s) for s in specs}
        self.user_update = on_update
        # Told once per task, the first time no offered host could take it, with the engine's reasons: a task
        # that asks for more than any agent has would otherwise wait in silence.
        self.on_waiting = on_waiting
        self._waiting_told: set[str] = set()
        self.done = asyncio.Event()
        self.first_failure: TaskRecord | None = None
        self.submit(*(TaskRequest(s.task_id, cpus=s.cpus, mem=s.mem, disk=s.disk, payload=s) for s in specs))
        if not specs:
            self.done.set()

    def schedule_once(self, driver: SchedulerDriver) -> SchedulingResult | None:
        result = super().schedule_once(driver)
        if result is not None and self.on_waiting is not None:
            for task_id, failures in result.failures.items():
                record = self.records.get(task_id)
                if record is not None and failures and task_id not in self._waiting_told:
                    self._waiting_told.add(task_id)
                    self.on_waiting(record, why_unplaced(failures))
        return result

    def _launch(self, driver: SchedulerDriver, result: SchedulingResult) -> None:
        now = self.clock()
        for a in result.assignments:
            record = self.records[a.task.id]
            record.agent_id, record.hostname, record.launched_at = a.agent_id, a.hostname, now
        super()._launch(driver, result)

    def _record(self, task: TaskRequest | None, status: tpb.TaskStatus) -> None:
        record = self.records.get(status.task_id)
        if record is None or record.terminal:
            return
        now = self.clock()
        record.state = status.state
        record.states.append(status.state)
        record.message, record.reason = status.message, status.reason
        if status.agent_id:
            record.agent_id = status.agent_id
        if status.state == tpb.TASK_RUNNING and record.running_at is None:
            record.running_at = now
        if status.HasField("exit_code"):
            record.exit_code = status.exit_code
        if record.terminal:
            record.ended_at = now
            if status.state != tpb.TASK_FINISHED and self.first_failure is None:
                self.first_failure = record
        if self.user_update is not None:
            self.user_update(record, status)
        if all(r.terminal for r in self.records.values()):
            self.done.set()

    def exit_code(self) -> int:
        """0 when every task finished; else the first failure's exit code (1 when it has none)."""
        failure = self.first_failure
        if failure is None:
            return 0
        return failure.exit_code if failure.exit_code else 1


def why_unplaced(failures: Sequence[Failure], hosts: int = 3) -> str:
    """One line from the engine's reasons: the first few hosts, what each lacked."""
    parts = [f"{f.hostname}: {f.name} {f.detail}".strip() for f in failures[:hosts]]
    more = f" (and {len(failures) - hosts} more hosts)" if len(failures) > hosts else ""
    return "; ".join(parts) + more


def _spec_task_info(task: TaskRequest, assignment: Assignment) -> tpb.TaskInfo:
    spec: TaskSpec = task.payload
    return spec.task_info(assignment.agent_id)


async def run_batch(
    master: str,
    specs: Sequence[TaskSpec],
    *,
    name: str = "batch",
    role: str = "",
    on_update: Callable[[TaskRecord, tpb.TaskStatus], None] | None = None,
    on_waiting: Callable[[TaskRecord, str], None] | None = None,
    timeout: float | None = None,
    capabilities: Sequence[int] = (rpb.FrameworkInfo.Capability.TASK_KILLING_STATE,),
) -> BatchScheduler:
    """Run `specs` to completion as one framework, then tear it down. Raises TimeoutError after `timeout`."""
    scheduler = BatchScheduler(specs, on_update=on_update, on_waiting=on_waiting)
    # Long enough to ride out a brief disconnection; the framework is torn down when the run ends anyway.
    info = rpb.FrameworkInfo(name=name, roles=[role] if role else [], failover_timeout=30)
    for cap in capabilities:
        info.capabilities.add(type=cap)
    await run_framework(master, info, scheduler, until=scheduler.done, timeout=timeout, max_reconnect_attempts=5)
    return scheduler
