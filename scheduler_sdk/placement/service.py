"""`PlacementScheduler`: the placement engine plugged into the scheduler driver (what Fenzo's
TaskSchedulingService does).

It keeps the offers it is given as per-agent leases, runs the engine whenever tasks or offers arrive (coalesced:
at most one run per `loop_interval`), launches each agent's assignments in one ACCEPT (the driver sends the
ACCEPTs of a run in one message), declines what no pending task can use with a filter, gives back leases older
than `lease_expiry`, tracks the tasks running on each agent from status updates, and keeps metrics.

What a run sees is built by agents.py (`hosts()`); the engine, the queue and their optional capabilities are
declared in extension.py.

Which offers are kept (the rule, after each run):

* Offers a run used are accepted whole; what the tasks leave returns with the ACCEPT (refuse 0 while tasks are
  queued, so it comes back soon).
* An agent's lease that no queued task (ready or not) could use even if all our tasks there ended -- every
  queued task asks for more of some resource than offered + used by our tasks there -- is declined at once with
  `unusable_decline_seconds`. `submit` revives, so new tasks see those agents again.
* Other leases (tasks held back by constraints, by `ready_at`, or by a disabled host) are kept, and combined
  with later offers of the same agent, until `lease_expiry`; then they go back with `decline_seconds`. Fenzo does
  the same: unused leases are only rejected once they expire.
* Nothing queued: every offer goes back for `idle_decline_seconds` and offers are suppressed until `submit`.
* With an autoscaler attached (`after_run`) leases are kept until they expire and come straight back (refuse 0),
  so that idle hosts stay in view.

An agent the master drains (AGENT_DRAINING, `agent_draining`) is disabled for new placements at once, and with
`migrate_on_drain` (the default) our tasks there are moved off by themselves: killed now, and queued again under
the same id when the kill is reported, to be placed elsewhere well before the drain deadline. (Kill, then
relaunch: a task id names one live task, so the replacement cannot run beside it; Nomad's drain also stops an
allocation before it places its replacement.) That TASK_KILLED is not passed to `on_update`: the task is not over.
An offer from the agent again means the drain ended (the master never offers a draining agent).

    scheduler = PlacementScheduler(PlacementEngine(BinPacking("cpus")))
    scheduler.submit(TaskRequest("web-1", cpus=1, mem=256, payload="python -m http.server $PORT"))
    await run_framework("127.0.0.1:5050", FrameworkInfo(name="web"), scheduler)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import Scheduler, SchedulerDriver
from scheduler_sdk.placement.agents import (
    KnownAgent,
    Lease,
    Shape,
    cluster_capacity,
    hosts_in_view,
    minimal_shapes,
    offer_attributes,
    room_if_ours_ended,
)
from scheduler_sdk.placement.extension import (
    Engine,
    EngineRun,
    FairShareQueue,
    Plan,
    PlanningQueue,
    Queue,
    SteppedEngine,
    TimedQueue,
)
from scheduler_sdk.placement.launch import default_task_info, task_resources
from scheduler_sdk.placement.model import Assignment, Host, SchedulingResult, TaskRequest
from scheduler_sdk.placement.queues import FifoQueue
from scheduler_sdk.states import TERMINAL_STATES

__all__ = [
    "Engine",
    "EngineRun",
    "FifoQueue",
    "Metrics",
    "PlacementScheduler",
    "Plan",
    "Queue",
    "default_task_info",
    "run_framework",
    "task_resources",
]

log = structlog.get_logger(__name__)

_WAKE_SLACK = 0.001  # wake this much after a deadline, so that the clock has surely passed it


@dataclass
class Metrics:
    runs: int = 0  # engine runs
    failed_runs: int = 0  # runs that raised (logged; the loop goes on)
    last_error: str = ""  # the last such error
    last_run_ms: float = 0.0
    assigned: int = 0
    launched_accepts: int = 0
    declined_offers: int = 0  # declined as unusable, or when idle
    expired_offers: int = 0
    unplaced_last_run: int = 0
    queued: int = 0  # tasks in the queue (ready or not)
    running: int = 0  # tasks launched and not ended
    drain_migrations: int = 0  # tasks killed on a draining agent and queued again, to run elsewhere
    failures_by_reason: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["failures_by_reason"] = dict(self.failures_by_reason)
        return out


class PlacementScheduler(Scheduler):
    def __init__(
        self,
        engine: Engine,
        queue: Queue | None = None,
        *,
        loop_interval: float = 0.05,
        lease_expiry: float = 10.0,
        decline_seconds: float = 5.0,
        unusable_decline_seconds: float = 30.0,
        idle_decline_seconds: float = 60.0,
        retry_interval: float = 1.0,
        queue_totals: bool = True,
        task_info: Callable[[TaskRequest, Assignment], tpb.TaskInfo] = default_task_info,
        on_update: Callable[[TaskRequest | None, tpb.TaskStatus], None] | None = None,
        after_run: Callable[[SchedulingResult, list[Host]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        migrate_on_drain: bool = True,
        launch_batch: int = 2000,
    ) -> None:
        for name, value in (
            ("loop_interval", loop_interval),
            ("lease_expiry", lease_expiry),
            ("decline_seconds", decline_seconds),
            ("unusable_decline_seconds", unusable_decline_seconds),
            ("idle_decline_seconds", idle_decline_seconds),
            ("retry_interval", retry_interval),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, not {value!r}")
        if isinstance(launch_batch, bool) or not isinstance(launch_batch, int) or launch_batch < 1:
            raise ValueError(f"launch_batch must be an int >= 1, not {launch_batch!r}")
        self.engine = engine
        # The most tasks one driver message launches from the scheduling loop: a run that places more sends its
        # ACCEPTs over several messages, a loop turn apart. The master handles a message whole, and 20,000 tasks
        # in one hold its event loop for seconds; in pieces it sends the first agents their tasks (and takes
        # their updates, pings and other frameworks' calls) while the rest is still coming.
        self.launch_batch = launch_batch
        self._held: list[tuple[list[str], list[tpb.TaskInfo], float]] | None = None  # ACCEPTs a loop run holds
        self.queue: Queue = queue if queue is not None else FifoQueue()
        self.loop_interval = loop_interval
        self.lease_expiry = lease_expiry
        self.decline_seconds = decline_seconds
        self.unusable_decline_seconds = unusable_decline_seconds
        self.idle_decline_seconds = idle_decline_seconds
        self.retry_interval = retry_interval  # after a run that raised, the next one comes this much later at most
        self.queue_totals = queue_totals  # give the queue the cluster's totals (DRF denominators) at every run
        self.task_info = task_info
        self.on_update = on_update
        self.after_run = after_run
        self.clock = clock
        self.metrics = Metrics()
        self.agents: dict[str, KnownAgent] = {}  # by agent id: every agent seen in an offer and not lost
        self.leases: dict[str, Lease] = {}  # by agent id
        self.running: dict[str, dict[str, TaskRequest]] = {}  # agent id -> task id -> task
        self.tasks: dict[str, TaskRequest] = {}  # every submitted task not yet terminal
        self.last_failures: dict[str, tuple[Any, ...]] = {}
        self.disabled_hosts: set[str] = set()  # hostnames that get no new tasks (autoscaler drains)
        self.migrate_on_drain = migrate_on_drain
        self.draining: dict[str, float | None] = {}  # agent id -> its drain deadline (unix seconds; None: none)
        self._migrating: set[str] = set()  # task ids killed on a draining agent, to be queued again
        self._where: dict[str, str] = {}  # task id -> agent id, for launched tasks
        self._names: dict[str, str] = {}  # hostname -> the agent id that offered it last
        self._capacities: dict[str, dict[str, float]] = {}  # agent id -> capacity given by `set_capacity`
        self._wake = asyncio.Event()
        self._suppressed = False
        self._filtered = False  # offers were declined with a filter since the last revive
        self._driver: SchedulerDriver | None = None
        self._retry_at: float | None = None

    # ------------------------------------------------------------------ the framework author's side
    def submit(self, *tasks: TaskRequest) -> None:
        for task in tasks:
            if not isinstance(task, TaskRequest):
                raise TypeError(f"submit takes TaskRequests, not {type(task).__name__}")
            if task.id in self.tasks:
                raise ValueError(f"task {task.id} was already submitted")
        for task in tasks:
            self.tasks[task.id] = task
            self.queue.add(task)
        self.metrics.queued = len(self.queue)
        if (self._suppressed or self._filtered) and self._driver is not None:
            self._driver.revive()  # also lifts the filters of declined offers: the new tasks may fit there
            self._suppressed = self._filtered = False
        self._wake.set()

    def kill(self, task_id: str) -> None:
        """Kill a launched task, or drop a queued one: it then ends at once with TASK_KILLED (reported to
        `on_update`, with no agent id) and its id may be submitted again."""
        agent_id = self._where.get(task_id)
        self._migrating.discard(task_id)  # killed for good: not moved
        if agent_id is not None:
            if self._driver is not None:
                self._driver.kill(task_id, agent_id)
            return
        task = self.tasks.pop(task_id, None)
        if task is None:
            return
        self.queue.remove(task_id)
        self.metrics.queued = len(self.queue)
        self._report(task, tpb.TaskStatus(task_id=task_id, state=tpb.TASK_KILLED, message="killed before launch"))

    def set_capacity(self, agent_id: str, totals: Mapping[str, float]) -> None:
        """An agent's real capacity (e.g. from the master's operator API), per resource name (`ports`: how many):
        used for `Host.total_*` and the cluster totals instead of what its offers showed."""
        for name, amount in totals.items():
            if isinstance(amount, bool) or not isinstance(amount, int | float) or not amount >= 0:
                raise ValueError(f"agent {agent_id}: capacity of {name} must be a number >= 0, not {amount!r}")
        capacity = {k: float(v) for k, v in totals.items()}
        self._capacities[agent_id] = capacity  # for an agent not seen yet: taken when it first offers
        agent = self.agents.get(agent_id)
        if agent is not None:
            agent.capacity = dict(capacity)

    def pending(self) -> int:
        return len(self.queue)

    # ------------------------------------------------------------------ driver callbacks
    async def registered(self, driver: SchedulerDriver, framework_id: str, master_id: str) -> None:
        self._driver = driver

    async def reregistered(self, driver: SchedulerDriver, framework_id: str, master_id: str) -> None:
        self._driver = driver
        driver.reconcile()
        if len(self.queue):
            driver.revive()
            self._suppressed = self._filtered = False

    async def disconnected(self, driver: SchedulerDriver) -> None:
        self.leases.clear()  # offers do not survive the subscription

    async def offers(self, driver: SchedulerDriver, offers: Sequence[spb.Offer]) -> None:
        self._driver = driver
        now = self.clock()
        for offer in offers:
            if offer.agent_id in self.draining:
                del self.draining[offer.agent_id]
                log.info("agent no longer draining: offered again", agent_id=offer.agent_id)
            hostname = offer.hostname or offer.agent_id
            agent = self.agents.get(offer.agent_id)
            if agent is None:
                agent = self.agents[offer.agent_id] = KnownAgent(offer.agent_id, hostname, offer_attributes(offer), now)
                given = self._capacities.get(offer.agent_id)
                agent.capacity = dict(given) if given is not None else None
            else:
                agent.hostname, agent.attributes, agent.seen_at = hostname, offer_attributes(offer), now
            agent.address = offer.agent_address or agent.address
            self._supersede(driver, agent)
            lease = self.leases.get(offer.agent_id)
            if lease is None:
                lease = self.leases[offer.agent_id] = Lease(offer.agent_id)
            lease.add(offer, now)
            self._observe(agent)
        self._wake.set()

    async def offer_rescinded(self, driver: SchedulerDriver, offer_id: str) -> None:
        for agent_id, lease in list(self.leases.items()):
            lease.drop(offer_id)
            if not lease.offers:
                del self.leases[agent_id]

    async def agent_lost(self, driver: SchedulerDriver, agent_id: str) -> None:
        """The agent is gone: forget it (its tasks end with their own status updates)."""
        self.leases.pop(agent_id, None)
        self.draining.pop(agent_id, None)
        agent = self.agents.pop(agent_id, None)
        if agent is not None and self._names.get(agent.hostname) == agent_id:
            del self._names[agent.hostname]
        self._wake.set()

    async def agent_draining(self, driver: SchedulerDriver, agent_id: str, deadline: float | None) -> None:
        """The agent gets no new tasks from now on; with `migrate_on_drain`, ours there are moved off (see the
        module docstring). Told again on a resubscription: the kills are sent again (a kill is idempotent)."""
        self.draining[agent_id] = deadline
        lease = self.leases.pop(agent_id, None)
        if lease is not None:  # rescinded by the master already; declining what is gone is harmless
            driver.decline(list(lease.offers), refuse_seconds=self.decline_seconds)
        ours = sorted(self.running.get(agent_id, {}))
        log.info("agent draining", agent_id=agent_id, deadline=deadline, tasks=len(ours), migrate=self.migrate_on_drain)
        if self.migrate_on_drain:
            for task_id in ours:
                self._migrating.add(task_id)
                driver.kill(task_id, agent_id)
        self._wake.set()

    async def status_update(self, driver: SchedulerDriver, status: tpb.TaskStatus) -> None:
        task = self.tasks.get(status.task_id)
        if task is not None and self._moved_off_a_drain(task, status):
            return
        if status.state in TERMINAL_STATES:
            agent_id = self._where.pop(status.task_id, None)
            for tasks in self.running.values():
                tasks.pop(status.task_id, None)
            if agent_id is not None and not self.running.get(agent_id):
                self.running.pop(agent_id, None)
                agent = self.agents.get(agent_id)
                if agent is not None and self._names.get(agent.hostname, agent_id) != agent_id:
                    del self.agents[agent_id]  # superseded by a newer agent on its host, and now empty
            if task is not None:
                del self.tasks[status.task_id]
                if agent_id is None:
                    self.queue.remove(task.id)  # ended without our launch (reconciliation): not queued any more
                self.queue.on_finished(task)
            self._wake.set()  # freed resources may come back as offers; queued work may now fit
        elif task is not None and status.agent_id:
            old = self._where.get(task.id)
            if old is not None and old != status.agent_id:
                self.running.get(old, {}).pop(task.id, None)
            if old is None:
                self.queue.on_assigned(task)  # running though we did not launch it (e.g. after a failover)
            self._where[task.id] = status.agent_id
            self.running.setdefault(status.agent_id, {})[task.id] = task
        self.metrics.queued = len(self.queue)
        self.metrics.running = len(self._where)
        if self.on_update is not None:
            self.on_update(task, status)

    def _moved_off_a_drain(self, task: TaskRequest, status: tpb.TaskStatus) -> bool:
        """A task killed because its agent drains (by us, or by the master at the deadline) is not over: it is
        queued again, to be placed on another agent. True when that is what this update was."""
        drained = status.reason == tpb.TaskStatus.REASON_AGENT_DRAINING and self.migrate_on_drain
        if status.state != tpb.TASK_KILLED or not (task.id in self._migrating or drained):
            return False
        self._migrating.discard(task.id)
        agent_id = self._where.pop(task.id, None)
        if agent_id is not None:
            self.running.get(agent_id, {}).pop(task.id, None)
            if not self.running.get(agent_id):
                self.running.pop(agent_id, None)
        self.queue.on_finished(task)
        self.queue.add(task)
        self.metrics.drain_migrations += 1
        self.metrics.queued, self.metrics.running = len(self.queue), len(self._where)
        log.info("task moved off a draining agent: queued again", task_id=task.id, agent_id=agent_id)
        if (self._suppressed or self._filtered) and self._driver is not None:
            self._driver.revive()
            self._suppressed = self._filtered = False
        self._wake.set()
        return True

    # ------------------------------------------------------------------ the loop
    async def run(self, driver: SchedulerDriver) -> None:
        """The scheduling loop; run it beside `driver.run()` (see `run_framework`). A run that raises is logged
        and counted (`metrics.failed_runs`, `metrics.last_error`); the loop goes on."""
        self._driver = driver
        while True:
            with contextlib.suppress(TimeoutError):
                # Not wait_for: on Python 3.11 it loses a cancellation that comes as the event is set, and the
                # loop would run on after run_framework cancelled it (and waits for it).
                async with asyncio.timeout(self.next_wake(self.clock())):
                    await self._wake.wait()
            self._wake.clear()
            if driver.subscribed.is_set():
                self._held = []
                try:
                    self.run_once(driver)
                finally:
                    held, self._held = self._held, None
                await self._accept_in_batches(driver, held)
            else:
                self._retry_at = None  # nothing to retry until subscribed again (offers and tasks wake the loop)
            await asyncio.sleep(self.loop_interval)  # coalesce: offers and tasks arriving meanwhile join

    async def _accept_in_batches(
        self, driver: SchedulerDriver, accepts: list[tuple[list[str], list[tpb.TaskInfo], float]]
    ) -> None:
        """Send a run's ACCEPTs, at most `launch_batch` tasks a message (one ACCEPT is never split): the driver
        writes what was queued in one loop turn as one message, so a batch is followed by two turns. Cancelled
        meanwhile, the rest goes at once: the tasks are ours as launched already."""
        in_batch, sent = 0, 0
        try:
            for offer_ids, infos, refuse in accepts:
                if in_batch and in_batch + len(infos) > self.launch_batch:
                    for _ in range(2):  # the driver's writer wakes, then takes what is queued
                        await asyncio.sleep(0)
                    in_batch = 0
                driver.accept(offer_ids, infos, refuse_seconds=refuse)
                in_batch += len(infos)
                sent += 1
        finally:
            for offer_ids, infos, refuse in accepts[sent:]:
                driver.accept(offer_ids, infos, refuse_seconds=refuse)

    def next_wake(self, now: float) -> float:
        """Seconds until the loop must run even if nothing arrives: the next lease expiry, the next delayed task
        becoming ready, the retry after a failed run, or, at the latest, 1 s with an autoscaler attached (it counts
        idle hosts) or half the lease expiry without."""
        wait = 1.0 if self.after_run is not None else self.lease_expiry / 2
        deadlines = [at + self.lease_expiry for lease in self.leases.values() for at in lease.received.values()]
        if self._retry_at is not None:
            deadlines.append(self._retry_at)
        if isinstance(self.queue, TimedQueue):
            ready_at = self.queue.next_ready_at(now)
            if ready_at is not None:
                deadlines.append(ready_at)
        if deadlines:
            wait = min(wait, max(0.0, min(deadlines) - now) + _WAKE_SLACK)
        return wait

    def run_once(self, driver: SchedulerDriver) -> SchedulingResult | None:
        """`schedule_once`, but an exception is logged and counted instead of raised."""
        try:
            result = self.schedule_once(driver)
        except Exception as e:
            self._retry_at = self.clock() + self.retry_interval
            self.metrics.failed_runs += 1
            self.metrics.last_error = f"{type(e).__name__}: {e}"
            log.exception("scheduling run failed", error=self.metrics.last_error, queued=len(self.queue))
            return None
        self._retry_at = None
        return result

    def hosts(self) -> list[Host]:
        """What a run sees: one `Host` per hostname for every agent with offers or with tasks of ours running
        (see `agents.hosts_in_view`)."""
        draining = {self.agents[a].hostname for a in self.draining if a in self.agents}
        return hosts_in_view(self.agents, self.leases, self.running, self.disabled_hosts | draining)

    def totals(self) -> dict[str, float]:
        """The cluster's resources: every known agent's capacity added up (one agent per hostname)."""
        return cluster_capacity(self.agents.values())

    def schedule_once(self, driver: SchedulerDriver) -> SchedulingResult | None:
        now = self.clock()
        self._expire_leases(driver, now)
        if self.queue_totals and isinstance(self.queue, FairShareQueue) and self.agents:
            self.queue.set_total(self.totals())
        hosts = self.hosts()
        self.metrics.queued = len(self.queue)
        if not len(self.queue):
            if self.after_run is not None:
                # An autoscaler watches the hosts: keep their leases (they are given back as they expire and come
                # again), so that idle hosts stay visible and can be counted and drained.
                self.after_run(SchedulingResult((), {}), hosts)
            elif self.leases:
                # Nothing to do: give every offer back for a long while and stop receiving them.
                self._decline_all(driver, self.idle_decline_seconds)
                driver.suppress()
                self._suppressed = True
            return None
        result = self._place(hosts, now) if self.leases else None
        if result is None:  # nothing ready, or nothing offered
            if self.after_run is not None:
                self.after_run(SchedulingResult((), {}), hosts)
            else:
                self._decline_unusable(driver)
            return None
        self.metrics.runs += 1
        self.metrics.last_run_ms = result.elapsed_ms
        self._launch(driver, result)
        self.metrics.unplaced_last_run = len(result.failures)
        self.last_failures = dict(result.failures)
        for failures in result.failures.values():
            for f in failures:
                key = f"{f.kind}:{f.name}"
                self.metrics.failures_by_reason[key] = self.metrics.failures_by_reason.get(key, 0) + 1
        self.metrics.queued = len(self.queue)
        self.metrics.running = len(self._where)
        if self.after_run is not None:
            self.after_run(result, hosts)
        else:
            self._decline_unusable(driver)
        return result

    def _place(self, hosts: list[Host], now: float, skip: Collection[str] = frozenset()) -> SchedulingResult | None:
        """One engine run over the ready tasks, less those whose ids are in `skip` (None: none is ready). With an
        engine that runs task by task and a queue that plans, each task's place in the order follows from where
        the tasks before it really went. (A subclass may run it again with more to skip: it is pure, it launches
        nothing and changes no state; the gangs of the jobs service do.)"""
        engine, queue = self.engine, self.queue
        if not isinstance(engine, SteppedEngine) or not isinstance(queue, PlanningQueue):
            ready = [t for t in queue.ready(now) if t.id not in skip]
            return engine.schedule(ready, hosts) if ready else None
        plan: Plan = queue.plan(now)
        task = next(plan, None)
        while task is not None and task.id in skip:
            task = next(plan, None)
        if task is None:
            return None
        run: EngineRun = engine.start(hosts)
        while task is not None:
            if task.id not in skip and run.place(task) is not None:
                plan.assign(task)
            task = next(plan, None)
        return run.result()

    def _launch(self, driver: SchedulerDriver, result: SchedulingResult) -> None:
        by_agent: dict[str, list[Assignment]] = {}
        for a in result.assignments:
            by_agent.setdefault(a.agent_id, []).append(a)
        for agent_id, assignments in by_agent.items():
            lease = self.leases.pop(agent_id, None)
            if lease is None:
                continue
            infos = []
            for a in assignments:
                try:
                    infos.append(self.task_info(a.task, a))
                except ValueError as e:
                    log.error("task cannot be launched", task_id=a.task.id, error=str(e))
                    self.queue.remove(a.task.id)
                    self.tasks.pop(a.task.id, None)
                    self._report(
                        a.task, tpb.TaskStatus(task_id=a.task.id, state=tpb.TASK_ERROR, message=f"not launched: {e}")
                    )
                    continue
                self.queue.on_assigned(a.task)
                self.running.setdefault(agent_id, {})[a.task.id] = a.task
                self._where[a.task.id] = agent_id
            if not infos:
                driver.decline(list(lease.offers), refuse_seconds=0)
                continue
            self.metrics.assigned += len(infos)
            self.metrics.launched_accepts += 1
            # What the tasks leave unused returns now, to be offered again soon for the rest of the queue.
            refuse = 0.0 if len(self.queue) else self.decline_seconds
            if self._held is not None:  # the scheduling loop sends them, in batches (`launch_batch`)
                self._held.append((list(lease.offers), infos, refuse))
            else:
                driver.accept(list(lease.offers), infos, refuse_seconds=refuse)

    def _expire_leases(self, driver: SchedulerDriver, now: float) -> None:
        for lease in list(self.leases.values()):
            old = [oid for oid, at in lease.received.items() if now - at >= self.lease_expiry]
            if old:
                # Watched by an autoscaler: let them come straight back, so the host stays in view.
                refuse = 0.0 if self.after_run is not None else self.decline_seconds
                driver.decline(old, refuse_seconds=refuse)
                self.metrics.expired_offers += len(old)
                for oid in old:
                    lease.drop(oid)
            if not lease.offers:
                del self.leases[lease.agent_id]

    def _decline_unusable(self, driver: SchedulerDriver) -> None:
        """Decline, with `unusable_decline_seconds`, every lease that no queued task could use even if all our
        tasks on that agent ended (see the module docstring)."""
        if not self.leases:
            return
        shapes = minimal_shapes(self._lease_keepers())
        ids: list[str] = []
        for agent_id, lease in list(self.leases.items()):
            if _fits_one(shapes, lease.room()):  # the offers alone take a task: no need to count ours there
                continue
            if _fits_one(shapes, room_if_ours_ended(lease, self.running.get(agent_id, {}).values())):
                continue
            ids.extend(lease.offers)
            del self.leases[agent_id]
        if ids:
            driver.decline(ids, refuse_seconds=self.unusable_decline_seconds)
            self.metrics.declined_offers += len(ids)
            if self.unusable_decline_seconds > 0:
                self._filtered = True

    def _lease_keepers(self) -> Iterable[TaskRequest]:
        """The tasks whose demands keep a lease (see `_decline_unusable`): every submitted task not launched."""
        return (t for tid, t in self.tasks.items() if tid not in self._where)

    def _decline_all(self, driver: SchedulerDriver, refuse_seconds: float) -> None:
        ids = [oid for lease in self.leases.values() for oid in lease.offers]
        if ids:
            driver.decline(ids, refuse_seconds=refuse_seconds)
            self.metrics.declined_offers += len(ids)
        self.leases.clear()

    def _supersede(self, driver: SchedulerDriver, agent: KnownAgent) -> None:
        """Another agent id under this agent's hostname is an older registration: its offers go back, and it is
        forgotten once none of our tasks runs there (until then `hosts()` counts its tasks on this host)."""
        previous = self._names.get(agent.hostname)
        self._names[agent.hostname] = agent.agent_id
        other = self.agents.get(previous) if previous is not None else None
        if other is not None and other.agent_id != agent.agent_id and other.hostname == agent.hostname:
            log.warning("agent superseded", hostname=agent.hostname, old=other.agent_id, new=agent.agent_id)
            lease = self.leases.pop(other.agent_id, None)
            if lease is not None:
                driver.decline(list(lease.offers), refuse_seconds=self.decline_seconds)
                self.metrics.declined_offers += len(lease.offers)
            if not self.running.get(other.agent_id):
                del self.agents[other.agent_id]

    def _observe(self, agent: KnownAgent) -> None:
        """Note what the agent shows now (its lease plus our tasks there); `seen` keeps the most of each."""
        now = room_if_ours_ended(self.leases.get(agent.agent_id), self.running.get(agent.agent_id, {}).values())
        seen = agent.seen
        for name, amount in now.items():
            if amount > seen.get(name, 0.0):
                seen[name] = amount

    def _report(self, task: TaskRequest, status: tpb.TaskStatus) -> None:
        self.metrics.queued = len(self.queue)
        if self.on_update is not None:
            self.on_update(task, status)


def _fits_one(shapes: Iterable[Shape], room: Mapping[str, float]) -> bool:
    """Whether `room` holds one of the demands (`minimal_shapes`)."""
    return any(all(amount <= room.get(name, 0.0) + 1e-9 for name, amount in shape) for shape in shapes)


async def run_framework(
    master: str,
    framework: rpb.FrameworkInfo,
    scheduler: PlacementScheduler,
    *,
    until: asyncio.Event | None = None,
    timeout: float | None = None,
    teardown: bool = True,
    **driver_options: Any,
) -> None:
    """Run the driver and the scheduling loop together until `until` is set (or forever), then stop the driver
    (tearing the framework down by default). Raises the driver's `DriverError`, whatever ended the scheduling loop
    (a run that fails is only logged: this is for the loop itself dying), or TimeoutError after `timeout`."""
    driver = SchedulerDriver(master, framework, scheduler, **driver_options)
    runner = asyncio.create_task(driver.run())
    loop = asyncio.create_task(scheduler.run(driver))
    done_waiter = asyncio.create_task(until.wait()) if until is not None else None
    try:
        waiting = [runner, loop] + ([done_waiter] if done_waiter is not None else [])
        finished, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if runner in finished:
            runner.result()  # the driver's error, if any
        elif loop in finished:
            loop.result()  # the loop's error
            raise RuntimeError("the scheduling loop ended")
        elif not finished:
            raise TimeoutError(f"not done after {timeout} s")
    finally:
        for t in (loop, done_waiter):
            if t is not None:
                t.cancel()
        driver.stop(teardown=teardown)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await loop
        if not runner.done() or not runner.cancelled():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(runner, 10)
