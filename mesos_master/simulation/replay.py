"""The replay: a trace through the real master core in virtual time.

The core is `mesos_master.cluster.Master` with a real allocator (`create_allocator`), the in-memory registry and
an injected clock; the frameworks are `PlacementScheduler`s (frameworks.py), the agents virtual (agents.py).
Nothing sleeps: the loop takes the next event from a heap (an arrival, an agent's status update, the scheduling
loop of a framework, the periodic allocation cycle), sets the clock to its time, and lets everything it causes
settle at that instant, as a daemon's loop turns would: the outbox is drained (events to the frameworks,
messages to the agents, writes to the registry), the frameworks' calls are handled, and an allocation cycle runs
when a call asks for one (as `Dispatcher.changed(allocate=True)` does), until nothing moves. The periodic
allocation cycle (`allocation_interval`) runs only while some task is queued (it could offer nothing useful
otherwise), so an idle cluster costs nothing to replay.

Deterministic: ids come from counters, every order is fixed, and the only randomness is the seeded policy's.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from aiomesos.v1 import agent_pb2
from mesos_master.allocator import available_allocators, create_allocator
from mesos_master.cluster import Master
from mesos_master.registry.memory import MemoryRegistry
from mesos_master.simulation.agents import Update, VirtualAgents, agent_infos, capacity
from mesos_master.simulation.frameworks import (
    FITNESS,
    ServiceAdapter,
    SimFramework,
    call_handler,
    fitness,
    why_never_placed,
)
from mesos_master.simulation.metrics import DEFAULT_BUCKETS, Figures, TaskRecord, figures
from mesos_master.simulation.trace import AgentGroup, Trace

__all__ = ["Policy", "ReplayResult", "policy_pair", "replay"]

_UPDATE, _ARRIVAL, _ALLOCATE, _RUN = 0, 1, 2, 3  # the order of events at one instant
DEFAULT_LOOP_INTERVAL = 0.05  # PlacementScheduler's own default
_IDLE_GRACE = 60.0  # after the last task ended and the last arrival, replay this long for what is queued


@dataclass(frozen=True)
class Policy:
    allocator: str = "drf"
    fitness: str = "binpacking"

    @property
    def label(self) -> str:
        return f"{self.allocator}/{self.fitness}"

    def check(self) -> None:
        fitness(self.fitness)
        create_allocator(self.allocator)


def policy_pair(allocator: str, fitness_name: str, compare: str | None = None) -> list[Policy]:
    """The policy, and with `compare` (an allocator or a fitness name) the second one beside it; ValueError for
    an unknown name."""
    known = available_allocators()
    if allocator not in known:
        raise ValueError(f"--allocator: unknown allocator {allocator!r} (known: {', '.join(known)})")
    if fitness_name not in FITNESS:
        raise ValueError(f"--fitness: unknown fitness {fitness_name!r} (known: {', '.join(FITNESS)})")
    first = Policy(allocator, fitness_name)
    if not compare:
        return [first]
    if compare in FITNESS:
        return [first, Policy(allocator, compare)]
    if compare in known:
        return [first, Policy(compare, fitness_name)]
    raise ValueError(
        f"--compare: {compare!r} is neither an allocator ({', '.join(known)}) nor a fitness ({', '.join(FITNESS)})"
    )


@dataclass
class ReplayResult:
    policy: Policy
    figures: Figures
    records: list[TaskRecord]
    wall_seconds: float
    cpu_seconds: float
    events: int
    allocation_cycles: int
    engine_runs: int
    totals: dict[str, float]
    counters: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "policy": self.policy.label,
            **self.figures.summary(),
            "replay": {
                "wall_s": round(self.wall_seconds, 3),
                "cpu_s": round(self.cpu_seconds, 3),
                "events": self.events,
                "allocation_cycles": self.allocation_cycles,
                "engine_runs": self.engine_runs,
                "trace_hours_per_s": round(self.figures.horizon / 3600.0 / max(self.wall_seconds, 1e-9), 3),
            },
        }


class _Replay:
    def __init__(
        self,
        trace: Trace,
        agents: list[AgentGroup],
        policy: Policy,
        *,
        seed: int,
        interval: float,
        latency: float,
        loop_interval: float,
    ) -> None:
        self.loop_interval = loop_interval
        self.trace = trace
        self.policy = policy
        self.now = 0.0
        self.interval = interval
        allocator = create_allocator(policy.allocator, allocation_interval=interval, seed=seed)
        self.master = Master("sim", allocator, clock=self._clock, offer_timeout=None)
        self.master.outbox.watched = False  # no operator event stream to feed
        self.registry = MemoryRegistry()
        self.adapter = ServiceAdapter(self.master)
        self.handle = call_handler(self.adapter)
        self.agents = VirtualAgents(latency)
        self.records: dict[str, TaskRecord] = {}
        self.frameworks: dict[str, SimFramework] = {}  # by role
        self.by_id: dict[str, SimFramework] = {}
        self.totals, self.largest = capacity(agents)
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = itertools.count()
        self._tick_at: float | None = None
        self.events = 0
        self.cycles = 0
        for info in agent_infos(agents):
            self.master.register_agent(agent_pb2.AgentMessage.Register(agent_info=info))
        self.arrivals_left = len(trace.arrivals)
        for i, arrival in enumerate(trace.arrivals):
            self._push(arrival.time, _ARRIVAL, i)

    def _clock(self) -> float:
        return self.now

    def _push(self, at: float, kind: int, data: Any) -> None:
        heapq.heappush(self._heap, (at, kind, next(self._seq), data))

    def framework(self, role: str) -> SimFramework:
        fw = self.frameworks.get(role)
        if fw is None:
            fw = self.frameworks[role] = SimFramework(
                role, self.policy.fitness, self._clock, self.records, loop_interval=self.loop_interval
            )
            fw.subscribe(self.master)
            self.adapter.changed(allocate=True)  # as the servicer does when a framework subscribes
            self.by_id[fw.framework_id] = fw
        return fw

    # ------------------------------------------------------------------ the loop
    async def run(self, until: float | None) -> None:
        await self.settle()
        idle_since: float | None = None
        while self._heap:
            at, kind, _, data = self._heap[0]
            if until is not None and at > until:
                break
            if idle_since is not None and at > idle_since + _IDLE_GRACE:
                break
            heapq.heappop(self._heap)
            self.now = max(self.now, at)
            self.events += 1
            if kind == _UPDATE:
                self._updates([data, *self._same_instant(_UPDATE)])
            elif kind == _ARRIVAL:
                arrival = self.trace.arrivals[data]
                self.arrivals_left -= 1
                fw = self.framework(arrival.role)
                fw.submit(arrival)
                self._wake(fw)
            elif kind == _ALLOCATE:
                self._tick_at = None
                self.master.tick()
                await self.allocate()
            elif kind == _RUN:
                await self._framework_run(data)
            await self.settle()
            self._schedule_tick()
            if self.arrivals_left or self.agents.live:
                idle_since = None
            elif idle_since is None:
                idle_since = self.now  # nothing runs and nothing more comes: what is queued gets a grace period

    def _same_instant(self, kind: int) -> list[Any]:
        out = []
        while self._heap and self._heap[0][0] <= self.now and self._heap[0][1] == kind:
            out.append(heapq.heappop(self._heap)[3])
        return out

    def _updates(self, updates: list[Update]) -> None:
        by_agent: dict[str, list[Update]] = {}
        for u in updates:
            by_agent.setdefault(u.agent_id, []).append(u)
        for agent_id, mine in by_agent.items():
            batch = self.agents.report(mine)
            if batch:
                self.master.status_updates(agent_id, batch)
                self.adapter.changed(allocate=True)  # as the agents' servicer does for STATUS_UPDATES

    async def _framework_run(self, data: tuple[str, float]) -> None:
        role, at = data
        fw = self.frameworks[role]
        if fw.run_at != at:
            return  # superseded by an earlier run
        fw.run_at = None
        fw.run()
        wake = fw.idle_wake()
        if wake is not None:
            self._at(fw, wake)

    def _wake(self, fw: SimFramework) -> None:
        if fw.woken():
            self._at(fw, fw.wanted_at(self.now))

    def _at(self, fw: SimFramework, at: float) -> None:
        if fw.run_at is None or at < fw.run_at:
            fw.run_at = at
            self._push(at, _RUN, (fw.role, at))

    def _schedule_tick(self) -> None:
        """The periodic allocation cycle, while something is queued."""
        if self._tick_at is not None or not any(fw.scheduler.pending() for fw in self.frameworks.values()):
            return
        tick = int(self.now / self.interval) + 1
        while tick * self.interval <= self.now:  # strictly later, whatever the rounding
            tick += 1
        self._tick_at = tick * self.interval
        self._push(self._tick_at, _ALLOCATE, None)

    async def allocate(self) -> None:
        self.adapter.allocation_wanted = False
        made: Any = self.master.allocate()
        if inspect.isawaitable(made):  # an allocator that yields between pieces of a cycle
            await made
        self.cycles += 1

    async def settle(self) -> None:
        """Everything the last event causes at this instant, until nothing moves."""
        while True:
            moved = False
            if self.master.outbox:
                moved = True
                await self._drain()
            for fw in self.frameworks.values():
                for call in await fw.calls():
                    moved = True
                    self.handle(fw.framework_id, call)
            if not moved and self.adapter.allocation_wanted:
                moved = True
                await self.allocate()
            if not moved:
                return

    async def _drain(self) -> None:
        drained = self.master.outbox.drain()
        if drained.writes:
            await self.registry.apply(drained.writes)
        for framework_id, events in drained.to_frameworks.items():
            fw = self.by_id.get(framework_id)
            if fw is None:
                continue
            await fw.deliver(events)
            self._wake(fw)
        for agent_id, messages in drained.to_agents.items():
            for u in self.agents.handle(agent_id, messages, self.now):
                self._push(u.time, _UPDATE, u)

    def records_with_why(self) -> list[TaskRecord]:
        for fw in self.frameworks.values():
            failures = fw.scheduler.last_failures
            for task_id, task in fw.scheduler.tasks.items():
                record = self.records[task_id]
                if record.start is None and not record.why:
                    record.why = why_never_placed(task, failures, self.largest)
        return list(self.records.values())


async def replay(
    trace: Trace,
    agents: list[AgentGroup],
    policy: Policy,
    *,
    seed: int = 0,
    until: float | None = None,
    allocation_interval: float = 1.0,
    launch_latency: float = 0.0,
    loop_interval: float = DEFAULT_LOOP_INTERVAL,
    buckets: int = DEFAULT_BUCKETS,
) -> ReplayResult:
    """Replay `trace` on `agents` under `policy`; the figures cover [0, until] (default: to the last end).
    `launch_latency`: the seconds from RUN_TASKS to RUNNING (a real agent's process start); `loop_interval`: the
    frameworks' (`PlacementScheduler`'s: at most one engine run per interval)."""
    started, cpu = time.perf_counter(), time.process_time()
    r = _Replay(
        trace,
        agents,
        policy,
        seed=seed,
        interval=allocation_interval,
        latency=launch_latency,
        loop_interval=loop_interval,
    )
    await r.run(until)
    records = r.records_with_why()
    wall = time.perf_counter() - started
    return ReplayResult(
        policy=policy,
        figures=figures(records, r.totals, horizon=until, buckets=buckets),
        records=records,
        wall_seconds=wall,
        cpu_seconds=time.process_time() - cpu,
        events=r.events,
        allocation_cycles=r.cycles,
        engine_runs=sum(fw.scheduler.metrics.runs for fw in r.frameworks.values()),
        totals=r.totals,
    )
