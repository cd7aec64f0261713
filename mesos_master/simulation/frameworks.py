"""The simulated frameworks: one per role, each a real `PlacementScheduler` behind a real `SchedulerDriver`.

Nothing is re-implemented: the driver turns the master's Events into the scheduler's callbacks with its own
`_dispatch` (acknowledging updates as it does on a stream), and batches the scheduler's calls with its own
`_flush`, into a sink instead of a gRPC stream; the master's `SchedulerService._handle` (what the servicer does
with each call read off a stream) hands them to the core. The scheduling loop of `PlacementScheduler.run` is
replayed on the virtual clock: a run `loop_interval` after the last at the earliest when something arrived, or
at `next_wake` when nothing did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.api.scheduler import SchedulerService
from mesos_master.cluster import Master
from mesos_master.simulation.agents import SECONDS_LABEL
from mesos_master.simulation.metrics import TaskRecord
from mesos_master.simulation.trace import Arrival
from scheduler_sdk.driver import SchedulerDriver
from scheduler_sdk.frameworks.jobs.launching import placement_constraint
from scheduler_sdk.placement import BinPacking, PlacementEngine, Spread, TaskRequest, Weighted
from scheduler_sdk.placement.extension import FitnessLike
from scheduler_sdk.placement.model import Assignment
from scheduler_sdk.placement.service import PlacementScheduler, default_task_info
from scheduler_sdk.security.config import ClientConfig
from scheduler_sdk.states import TERMINAL_STATES, state_name

__all__ = ["FITNESS", "RoleFramework", "SimFramework", "fitness", "task_info"]

FITNESS: dict[str, Callable[[], FitnessLike]] = {
    "binpacking": lambda: Weighted({BinPacking("cpus"): 1.0, BinPacking("mem"): 1.0}),
    "cpu": lambda: BinPacking("cpus"),
    "mem": lambda: BinPacking("mem"),
    "spread": lambda: Weighted({Spread("cpus"): 1.0, Spread("mem"): 1.0}),
    "spread-cpu": lambda: Spread("cpus"),
}
_BASE = ("cpus", "mem", "disk", "network")


def fitness(name: str) -> FitnessLike:
    make = FITNESS.get(name)
    if make is None:
        raise ValueError(f"unknown fitness {name!r}: known are {', '.join(FITNESS)}")
    return make()


def task_info(task: TaskRequest, assignment: Assignment) -> tpb.TaskInfo:
    """The placement engine's TaskInfo (`sleep D`, so that a real agent runs it too), labelled with its run time
    for a simulated agent."""
    info = default_task_info(task, assignment)
    seconds = float(task.payload.split()[1])
    info.labels.labels.append(rpb.Label(key=SECONDS_LABEL, value=repr(seconds)))
    return info


def task_requests(arrival: Arrival) -> list[TaskRequest]:
    """The placement requests of an arrival's tasks (its job is their group, so constraints count them)."""
    hard = tuple(placement_constraint(c) for c in arrival.constraints if not c.soft)
    soft = tuple(placement_constraint(c) for c in arrival.constraints if c.soft)
    amount = arrival.resources.get
    scalars = {k: v for k, v in arrival.resources.items() if k not in _BASE}
    return [
        TaskRequest(
            task_id,
            cpus=amount("cpus", 0.0),
            mem=amount("mem", 0.0),
            disk=amount("disk", 0.0),
            network=amount("network", 0.0),
            scalars=scalars,
            group=arrival.job,
            hard_constraints=hard,
            soft_constraints=soft,
            payload=f"sleep {arrival.duration!r}",
        )
        for task_id in arrival.task_ids()
    ]


class _Sink:
    """Where the driver's `_flush` writes the batched calls of one loop turn, instead of a stream."""

    def __init__(self) -> None:
        self.calls: list[spb.Call] = []

    async def write(self, message: spb.Call) -> None:
        self.calls.append(message)


class RoleFramework:
    """A role's `PlacementScheduler` and the records of its tasks: the same in a replay and in a real run
    (live.py)."""

    def __init__(
        self,
        role: str,
        engine_fitness: str,
        clock: Callable[[], float],
        records: dict[str, TaskRecord],
        *,
        on_record: Callable[[TaskRecord], None] | None = None,
        **scheduler_options: Any,
    ) -> None:
        self.role = role
        self.clock = clock
        self.records = records
        self.on_record = on_record  # told of every change to a record
        self.scheduler = PlacementScheduler(
            PlacementEngine(fitness(engine_fitness)),
            clock=clock,
            task_info=task_info,
            on_update=self._on_update,
            **scheduler_options,
        )
        self.info = rpb.FrameworkInfo(name=f"sim-{role}", user="nobody", roles=[] if role == "*" else [role])

    def submit(self, arrival: Arrival) -> None:
        now = self.clock()
        tasks = task_requests(arrival)
        for task in tasks:
            self.records[task.id] = TaskRecord(task.id, self.role, now, dict(arrival.resources))
        self.scheduler.submit(*tasks)

    def _on_update(self, task: TaskRequest | None, status: tpb.TaskStatus) -> None:
        record = self.records.get(status.task_id)
        if record is None:
            return
        record.state = state_name(status.state)
        if status.state == tpb.TASK_RUNNING and record.start is None:
            record.start = self.clock()
        elif status.state in TERMINAL_STATES:
            record.end = self.clock()
            if record.start is None:
                record.why = f"ended {record.state} before it ran"
        if self.on_record is not None:
            self.on_record(record)


class SimFramework(RoleFramework):
    """A `RoleFramework` on the virtual clock, its driver never dialling: the replay hands it the master's
    events and takes its calls."""

    def __init__(
        self,
        role: str,
        engine_fitness: str,
        clock: Callable[[], float],
        records: dict[str, TaskRecord],
        **scheduler_options: Any,
    ) -> None:
        super().__init__(role, engine_fitness, clock, records, **scheduler_options)
        # Plaintext and never dialled: the driver is used for its dispatch and its batching only.
        self.driver = SchedulerDriver("127.0.0.1:1", self.info, self.scheduler, config=ClientConfig())
        self.framework_id = ""
        self.last_run = -1e18
        self.run_at: float | None = None  # the next run of the scheduling loop

    def subscribe(self, master: Master) -> None:
        self.framework_id = master.subscribe(self.driver.framework)

    async def deliver(self, events: list[spb.Event]) -> None:
        for event in events:
            await self.driver._dispatch(event, False)

    async def calls(self) -> list[spb.Call]:
        sink = _Sink()
        await self.driver._flush(cast(Any, sink))
        return sink.calls

    def wanted_at(self, now: float) -> float:
        """When the loop runs after something woke it at `now` (it sleeps `loop_interval` after each run)."""
        return max(now, self.last_run + self.scheduler.loop_interval)

    def idle_wake(self) -> float | None:
        """When the loop runs by itself after the last run (None: it would find nothing to do)."""
        s = self.scheduler
        if not s.leases and not s.pending():
            return None
        after = self.last_run + s.loop_interval
        return after + s.next_wake(after)

    def woken(self) -> bool:
        """Whether what was delivered or submitted woke the scheduling loop (as it wakes `PlacementScheduler.run`);
        the loop clears it when it runs."""
        wake = self.scheduler._wake
        if wake.is_set():
            wake.clear()
            return True
        return False

    def run(self) -> None:
        """One turn of the scheduling loop. A turn with nothing queued and no offers held changes nothing
        (`schedule_once` would only look at the hosts), so it is not run; it still counts for the loop's pace."""
        self.last_run = self.clock()
        s = self.scheduler
        if s.pending() or s.leases or s.after_run is not None:
            s.run_once(self.driver)


class ServiceAdapter:
    """What `SchedulerService._handle` needs of its dispatcher: the core, and `changed` (which says whether the
    call asks for an allocation cycle)."""

    def __init__(self, master: Master) -> None:
        self.master = master
        self.allocation_wanted = False

    def changed(self, *, allocate: bool = False) -> None:
        self.allocation_wanted = self.allocation_wanted or allocate


def call_handler(adapter: ServiceAdapter) -> Callable[[str, spb.Call], None]:
    """The master's own handling of one framework call (`SchedulerService._handle`), without a stream."""
    service = SchedulerService(cast(Any, adapter), 15.0, cast(Any, None))
    return service._handle


def why_never_placed(task: TaskRequest, failures: Mapping[str, tuple[Any, ...]], largest: Mapping[str, float]) -> str:
    """Larger than any agent, else the reason most hosts gave at the last run, else still waiting."""
    for name in _BASE:
        need = getattr(task, name)
        if need > largest.get(name, 0.0) + 1e-9:
            return f"larger than every agent ({name})"
    for name, need in task.scalars.items():
        if need > largest.get(name, 0.0) + 1e-9:
            return f"larger than every agent ({name})"
    counts: dict[str, int] = {}
    for f in failures.get(task.id, ()):
        key = f"{f.kind}:{f.name}"
        counts[key] = counts.get(key, 0) + 1
    if counts:
        return max(sorted(counts), key=lambda k: counts[k])
    return ""
