"""`PlacementScheduler`: the placement engine plugged into the scheduler driver (what Fenzo's
TaskSchedulingService does).

It keeps the offers it is given as per-host leases, runs the engine whenever tasks or offers arrive (coalesced:
at most one run per `loop_interval`), launches each host's assignments in one ACCEPT (all ACCEPTs of a run go in
one message), declines what it cannot use with a filter, gives back leases older than `lease_expiry`, tracks the
tasks running on each host from status updates, and keeps metrics.

    scheduler = PlacementScheduler(PlacementEngine(BinPacking("cpus")))
    scheduler.submit(TaskRequest("web-1", cpus=1, mem=256, payload="python -m http.server $PORT"))
    await run_framework("127.0.0.1:5050", FrameworkInfo(name="web"), scheduler)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import Scheduler, SchedulerDriver
from scheduler_sdk.placement.model import Assignment, Host, OfferSlice, RunningTask, SchedulingResult, TaskRequest
from scheduler_sdk.resources import Resources, attribute_values
from scheduler_sdk.states import TERMINAL_STATES as TERMINAL

log = structlog.get_logger(__name__)

KNOWN_SCALARS = ("cpus", "mem", "disk", "network")


class Engine(Protocol):
    def schedule(self, tasks: Sequence[TaskRequest], hosts: Sequence[Host]) -> SchedulingResult: ...


class Queue(Protocol):
    """What the scheduler needs of a task queue (see queues.py; `FifoQueue` is the simplest)."""

    def add(self, task: TaskRequest) -> None: ...
    def remove(self, task_id: str) -> None: ...
    def ready(self, now: float) -> list[TaskRequest]: ...  # tasks to try, in service order
    def on_assigned(self, task: TaskRequest) -> None: ...
    def on_finished(self, task: TaskRequest) -> None: ...
    def __len__(self) -> int: ...


class FifoQueue:
    """First come, first served; tasks with a future `ready_at` wait."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskRequest] = {}

    def add(self, task: TaskRequest) -> None:
        self._tasks[task.id] = task

    def remove(self, task_id: str) -> None:
        self._tasks.pop(task_id, None)

    def ready(self, now: float) -> list[TaskRequest]:
        return [t for t in self._tasks.values() if t.ready_at <= now]

    def on_assigned(self, task: TaskRequest) -> None:
        self._tasks.pop(task.id, None)

    def on_finished(self, task: TaskRequest) -> None:
        pass

    def __len__(self) -> int:
        return len(self._tasks)


def default_task_info(task: TaskRequest, assignment: Assignment) -> tpb.TaskInfo:
    """TaskInfo for an assignment. `payload` is the command: a shell string, an argv list, or a CommandInfo."""
    payload = task.payload
    if isinstance(payload, rpb.CommandInfo):
        command = payload
    elif isinstance(payload, str):
        command = rpb.CommandInfo(shell=True, value=payload)
    elif isinstance(payload, (list, tuple)) and payload:
        command = rpb.CommandInfo(shell=False, value=str(payload[0]), arguments=[str(a) for a in payload])
    else:
        raise ValueError(f"task {task.id}: payload must be a command (str, argv list or CommandInfo)")
    return tpb.TaskInfo(
        task_id=task.id,
        name=task.id,
        agent_id=assignment.agent_id,
        resources=task_resources(task, assignment.ports).to_proto(),
        command=command,
    )


def task_resources(task: TaskRequest, ports: Iterable[int] = ()) -> Resources:
    amounts = {
        n: v for n, v in (("cpus", task.cpus), ("mem", task.mem), ("disk", task.disk), ("network", task.network)) if v
    }
    amounts.update({k: v for k, v in task.scalars.items() if v})
    res = Resources.from_scalars(amounts)
    port_list = sorted(ports)
    if port_list:
        res = res + Resources.ports(*((p, p) for p in port_list))
    return res


@dataclass
class _Lease:
    hostname: str
    agent_id: str
    attributes: dict[str, str]
    offers: dict[str, spb.Offer] = field(default_factory=dict)
    received: dict[str, float] = field(default_factory=dict)


@dataclass
class Metrics:
    runs: int = 0
    last_run_ms: float = 0.0
    assigned: int = 0
    launched_accepts: int = 0
    declined_offers: int = 0
    expired_offers: int = 0
    unplaced_last_run: int = 0
    failures_by_reason: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class PlacementScheduler(Scheduler):
    def __init__(
        self,
        engine: Engine,
        queue: Queue | None = None,
        *,
        loop_interval: float = 0.05,
        lease_expiry: float = 10.0,
        decline_seconds: float = 5.0,
        idle_decline_seconds: float = 60.0,
        task_info: Callable[[TaskRequest, Assignment], tpb.TaskInfo] = default_task_info,
        on_update: Callable[[TaskRequest | None, tpb.TaskStatus], None] | None = None,
        after_run: Callable[[SchedulingResult, list[Host]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.queue: Queue = queue if queue is not None else FifoQueue()
        self.loop_interval = loop_interval
        self.lease_expiry = lease_expiry
        self.decline_seconds = decline_seconds
        self.idle_decline_seconds = idle_decline_seconds
        self.task_info = task_info
        self.on_update = on_update
        self.after_run = after_run
        self.clock = clock
        self.metrics = Metrics()
        self.leases: dict[str, _Lease] = {}  # by agent id
        self.running: dict[str, dict[str, TaskRequest]] = {}  # agent id -> task id -> task
        self.tasks: dict[str, TaskRequest] = {}  # every submitted task not yet terminal
        self.last_failures: dict[str, tuple[Any, ...]] = {}
        self.disabled_hosts: set[str] = set()  # hostnames that get no new tasks (autoscaler drains)
        self._wake = asyncio.Event()
        self._suppressed = False
        self._driver: SchedulerDriver | None = None

    # ------------------------------------------------------------------ the framework author's side
    def submit(self, *tasks: TaskRequest) -> None:
        for task in tasks:
            if task.id in self.tasks:
                raise ValueError(f"task {task.id} was already submitted")
            self.tasks[task.id] = task
            self.queue.add(task)
        if self._suppressed and self._driver is not None:
            self._driver.revive()
            self._suppressed = False
        self._wake.set()

    def kill(self, task_id: str) -> None:
        """Kill a launched task, or drop a queued one."""
        self.queue.remove(task_id)
        for agent_id, tasks in self.running.items():
            if task_id in tasks and self._driver is not None:
                self._driver.kill(task_id, agent_id)

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

    async def disconnected(self, driver: SchedulerDriver) -> None:
        self.leases.clear()  # offers do not survive the subscription

    async def offers(self, driver: SchedulerDriver, offers: Sequence[spb.Offer]) -> None:
        self._driver = driver
        now = self.clock()
        for offer in offers:
            lease = self.leases.get(offer.agent_id)
            if lease is None:
                lease = self.leases[offer.agent_id] = _Lease(
                    offer.hostname or offer.agent_id, offer.agent_id, _attributes(offer)
                )
            lease.offers[offer.id] = offer
            lease.received[offer.id] = now
        self._wake.set()

    async def offer_rescinded(self, driver: SchedulerDriver, offer_id: str) -> None:
        for lease in self.leases.values():
            lease.offers.pop(offer_id, None)
            lease.received.pop(offer_id, None)

    async def status_update(self, driver: SchedulerDriver, status: tpb.TaskStatus) -> None:
        task = self.tasks.get(status.task_id)
        if status.state in TERMINAL:
            for tasks in self.running.values():
                tasks.pop(status.task_id, None)
            if task is not None:
                del self.tasks[status.task_id]
                self.queue.on_finished(task)
            self._wake.set()  # freed resources may come back as offers; queued work may now fit
        elif task is not None and status.agent_id:
            self.running.setdefault(status.agent_id, {})[task.id] = task
        if self.on_update is not None:
            self.on_update(task, status)

    # ------------------------------------------------------------------ the loop
    async def run(self, driver: SchedulerDriver) -> None:
        """The scheduling loop; run it beside `driver.run()` (see `run_framework`)."""
        self._driver = driver
        while True:
            # Idle hosts are counted even when nothing happens, for an attached autoscaler.
            idle_wait = 1.0 if self.after_run is not None else self.lease_expiry / 2
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), idle_wait)
            self._wake.clear()
            if driver.subscribed.is_set():
                self.schedule_once(driver)
            await asyncio.sleep(self.loop_interval)  # coalesce: offers and tasks arriving meanwhile join

    def hosts(self) -> list[Host]:
        out = []
        for lease in self.leases.values():
            if not lease.offers:
                continue
            out.append(
                Host(
                    hostname=lease.hostname,
                    agent_id=lease.agent_id,
                    attributes=lease.attributes,
                    offers=tuple(_slice(o, lease.received[o.id]) for o in lease.offers.values()),
                    running=tuple(_running(t) for t in self.running.get(lease.agent_id, {}).values()),
                    disabled=lease.hostname in self.disabled_hosts,
                )
            )
        return out

    def schedule_once(self, driver: SchedulerDriver) -> SchedulingResult | None:
        now = self.clock()
        self._expire_leases(driver, now)
        ready = self.queue.ready(now)
        hosts = self.hosts()
        if not ready:
            if self.after_run is not None:
                # An autoscaler watches the hosts: keep their leases (they are given back as they expire and come
                # again), so that idle hosts stay visible and can be counted and drained.
                self.after_run(SchedulingResult((), {}), hosts)
            elif hosts and not len(self.queue):
                # Nothing to do: give every offer back for a long while and stop receiving them.
                self._decline_all(driver, self.idle_decline_seconds)
                driver.suppress()
                self._suppressed = True
            return None
        if not hosts:
            return None
        started = time.perf_counter()
        result = self.engine.schedule(ready, hosts)
        self.metrics.runs += 1
        self.metrics.last_run_ms = (time.perf_counter() - started) * 1000
        self._launch(driver, result)
        self.metrics.unplaced_last_run = len(result.failures)
        self.last_failures = dict(result.failures)
        for failures in result.failures.values():
            for f in failures:
                key = f"{f.kind}:{f.name}"
                self.metrics.failures_by_reason[key] = self.metrics.failures_by_reason.get(key, 0) + 1
        if self.after_run is not None:
            self.after_run(result, hosts)
        return result

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
                    continue
                self.queue.on_assigned(a.task)
                self.running.setdefault(agent_id, {})[a.task.id] = a.task
            self.metrics.assigned += len(infos)
            self.metrics.launched_accepts += 1
            # What the tasks leave unused returns now, to be offered again soon for the rest of the queue.
            driver.accept(list(lease.offers), infos, refuse_seconds=0 if len(self.queue) else self.decline_seconds)

    def _expire_leases(self, driver: SchedulerDriver, now: float) -> None:
        for lease in list(self.leases.values()):
            old = [oid for oid, at in lease.received.items() if now - at >= self.lease_expiry]
            if old:
                # Watched by an autoscaler: let them come straight back, so the host stays in view.
                refuse = 0.0 if self.after_run is not None else self.decline_seconds
                driver.decline(old, refuse_seconds=refuse)
                self.metrics.expired_offers += len(old)
                for oid in old:
                    lease.offers.pop(oid, None)
                    lease.received.pop(oid, None)
            if not lease.offers:
                del self.leases[lease.agent_id]

    def _decline_all(self, driver: SchedulerDriver, refuse_seconds: float) -> None:
        ids = [oid for lease in self.leases.values() for oid in lease.offers]
        if ids:
            driver.decline(ids, refuse_seconds=refuse_seconds)
            self.metrics.declined_offers += len(ids)
        self.leases.clear()


def _attributes(offer: spb.Offer) -> dict[str, str]:
    return attribute_values(offer.attributes, offer.hostname)


def _slice(offer: spb.Offer, received_at: float) -> OfferSlice:
    res = Resources.from_proto(offer.resources)
    scalars = res.scalars()
    return OfferSlice(
        offer_id=offer.id,
        cpus=scalars.pop("cpus", 0.0),
        mem=scalars.pop("mem", 0.0),
        disk=scalars.pop("disk", 0.0),
        network=scalars.pop("network", 0.0),
        ports=res.ranges("ports"),
        scalars=scalars,
        received_at=received_at,
    )


def _running(task: TaskRequest) -> RunningTask:
    from scheduler_sdk.placement.constraints import ExclusiveHost

    return RunningTask(
        exclusive=any(isinstance(c, ExclusiveHost) for c in task.hard_constraints),
        id=task.id,
        group=task.group,
        cpus=task.cpus,
        mem=task.mem,
        disk=task.disk,
        network=task.network,
        ports=task.ports,
        scalars=task.scalars,
    )


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
    (tearing the framework down by default). Raises the driver's `DriverError`, or TimeoutError after `timeout`."""
    driver = SchedulerDriver(master, framework, scheduler, **driver_options)
    runner = asyncio.create_task(driver.run())
    loop = asyncio.create_task(scheduler.run(driver))
    done_waiter = asyncio.create_task(until.wait()) if until is not None else None
    try:
        waiting = [runner] + ([done_waiter] if done_waiter is not None else [])
        finished, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if runner in finished:
            runner.result()  # the driver's error, if any
        elif not finished:
            raise TimeoutError(f"not done after {timeout} s")
    finally:
        for t in (loop, done_waiter):
            if t is not None:
                t.cancel()
        driver.stop(teardown=teardown)
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        if not runner.done() or not runner.cancelled():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(runner, 10)
