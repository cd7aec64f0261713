"""One role's placement in the jobs service: `RoleScheduler` (a `PlacementScheduler` of `TaskLaunch`es, with gangs,
lifecycles and the ports of each task launched) and `RoleDriver` (the driver as one role sees it). `JobsScheduler`
(placement.py) keeps one per role.

Gangs (the Mesos paper's "minimum allocation"). The tasks of a gang (`TaskLaunch.gang`, all `gang_size` of them)
are placed all or none: after an engine run, a gang with a member left unplaced has none of them launched, and
the run is done again without that gang, so that the room it would have taken goes to the others. A complete gang
is launched in the run that placed it: one ACCEPT per agent, all sent by the driver in one message. A gang that
does not fit keeps the leases (held offers) it was given, and gathers more as they come, for at most `gang_hold`
seconds from its first incomplete run; then the leases it was placed on are declined (refuse 1 s) and it holds
nothing for a random 0.5 .. 1.5 x `gang_hold`, after which it holds again. So two gangs in different roles that
together need more than the cluster cannot each hold half of it for ever: one of them gets the room the other let
go while it backs off, and completes; the other runs after it.

How this meets the allocator's fairness: the master's DRF allocator offers each role its share, whatever the
framework holds back; held offers count as the role's allocation, so a role gathering a gang does not get more
than its share because it holds. A gang bigger than what its role is offered (its fair share while others want
the cluster, its quota's limit, or simply more than is free) never completes: its hold ends at `gang_hold`, the
offers go back to the allocator for the other roles, and its waiting reason says so ("gang of 20: 12 fit in the
offers held; released after 10s, ..."). It completes once the role is offered enough at once, e.g. when the
other roles' demand falls. Within one role gangs hold nothing exclusively (each run places every gang afresh), so
two gangs of one role never deadlock: the first one that fits is launched, the next after it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import SchedulerDriver
from scheduler_sdk.frameworks.batch import why_unplaced
from scheduler_sdk.frameworks.jobs.launching import LaunchLike, launch_task_info, task_ports, task_request
from scheduler_sdk.placement.engine import PlacementEngine
from scheduler_sdk.placement.extension import Engine
from scheduler_sdk.placement.fitness import BinPacking
from scheduler_sdk.placement.model import Assignment, Host, SchedulingResult, TaskRequest
from scheduler_sdk.placement.service import PlacementScheduler
from scheduler_sdk.states import TERMINAL_STATES

__all__ = ["GANG_RELEASE_REFUSE_SECONDS", "SOFT_CONSTRAINT_WEIGHT", "GangWait", "RoleDriver", "RoleScheduler"]

log = structlog.get_logger(__name__)

GANG_RELEASE_REFUSE_SECONDS = 1.0  # the filter of the offers a gang lets go at the end of its hold
# w in the engine's score = (1 - w) * fitness + w * soft: above 2/3 a soft score of 0.5 (an empty host) outranks
# one of 0 (a host of the other lifecycle) whatever their fitness
SOFT_CONSTRAINT_WEIGHT = 0.75


# ---------------------------------------------------------------------------------------------- gangs
@dataclass
class GangWait:
    """A gang that did not fit: since when it holds leases, how many of its members fit the last time, on which
    agents, and until when it backs off (holds nothing) after a hold that ended."""

    size: int
    since: float | None = None  # its first incomplete run of this hold (None: not holding)
    fit: int = 0
    agents: set[str] = field(default_factory=set)
    backoff_until: float | None = None


class RoleDriver:
    """The driver as one role's scheduler sees it: SUPPRESS and REVIVE name that role; the rest is the driver's."""

    def __init__(self, driver: SchedulerDriver, role: str) -> None:
        self.driver = driver
        self.role = role

    def suppress(self, roles: Iterable[str] = ()) -> None:
        self.driver.suppress([self.role])

    def revive(self, roles: Iterable[str] = ()) -> None:
        self.driver.revive([self.role])

    def __getattr__(self, name: str) -> Any:  # accept, decline, kill, reconcile, subscribed, ...
        return getattr(self.driver, name)


class RoleScheduler(PlacementScheduler):
    """The placement of one role's tasks (see the module docstring): a `PlacementScheduler` of `TaskLaunch`es,
    with gangs, lifecycles, the ports each task was launched with (`ports`) and waiting reasons.

    `lifecycle_of` (group -> lifecycle) is read by the lifecycle constraints of its launches; `outside()` tells,
    before each run with such launches queued, the lifecycles of the tasks on each agent (by agent id) that this
    role's hosts do not show (another role's)."""

    def __init__(
        self,
        role: str,
        *,
        on_update: Callable[[TaskRequest | None, tpb.TaskStatus], None],
        engine: Engine | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        gang_hold: float = 10.0,
        lease_expiry: float = 10.0,
        loop_interval: float = 0.05,
        rng: random.Random | None = None,
        lifecycle_of: Mapping[str, str] | None = None,
        outside: Callable[[], Mapping[str, Collection[str]]] | None = None,
    ) -> None:
        if isinstance(gang_hold, bool) or not isinstance(gang_hold, int | float) or not gang_hold >= 0:
            raise ValueError(f"gang_hold must be a number >= 0, not {gang_hold!r}")
        super().__init__(
            engine
            if engine is not None
            else PlacementEngine(BinPacking("cpus"), soft_constraint_weight=SOFT_CONSTRAINT_WEIGHT),
            task_info=self._task_info,
            on_update=on_update,
            clock=clock,
            lease_expiry=lease_expiry,
            loop_interval=loop_interval,
            # A task on a draining agent is the run's to move (run.py relaunches it, a gang as a whole): moved here,
            # behind the run's back, a gang member would start alone and an attempt would run twice.
            migrate_on_drain=False,
        )
        self.role = role
        self.wall_clock = wall_clock
        self.gang_hold = float(gang_hold)
        self.rng = rng if rng is not None else random.Random()
        self.gangs: dict[str, GangWait] = {}  # gang -> its wait, for gangs that did not fit
        self.ports: dict[str, tuple[int, ...]] = {}  # task id -> the ports it was launched with, while tracked
        self.lifecycle_of: Mapping[str, str] = lifecycle_of if lifecycle_of is not None else {}
        self.outside: dict[str, frozenset[str]] = {}  # what the lifecycle constraints see of other roles' tasks
        self._outside_source = outside
        self._with_lifecycle: set[str] = set()  # ids of the launches with a lifecycle submitted (some may be gone)

    # ------------------------------------------------------------------ the jobs side
    def submit_launches(self, launches: Sequence[LaunchLike]) -> None:
        lifecycles, outside = self.lifecycle_of, self.outside
        self.submit(*(task_request(x, self.ready_at(x), lifecycle_of=lifecycles, outside=outside) for x in launches))
        self._with_lifecycle.update(x.task_id for x in launches if x.lifecycle)

    def _task_info(self, task: TaskRequest, assignment: Assignment) -> tpb.TaskInfo:
        info = launch_task_info(task, assignment)
        self.ports[task.id] = task_ports(assignment)
        return info

    async def status_update(self, driver: SchedulerDriver, status: tpb.TaskStatus) -> None:
        await super().status_update(driver, status)  # on_update is told first: the ports are still known there
        if status.state in TERMINAL_STATES and status.task_id not in self.tasks:
            self.ports.pop(status.task_id, None)

    def ready_at(self, launch: LaunchLike) -> float:
        """A launch's `ready_at` (unix seconds; 0: now) on this scheduler's clock."""
        if launch.ready_at <= 0:
            return 0.0
        return self.clock() + (launch.ready_at - self.wall_clock())

    def adopt(self, launch: LaunchLike, agent_id: str) -> None:
        """Track a task that already runs on `agent_id` ("": launched or not, unknown: reconciliation tells) as
        if this scheduler had launched it: its updates are reported, a kill goes to its agent."""
        if launch.task_id in self.tasks:
            raise ValueError(f"task {launch.task_id} was already submitted")
        task = task_request(launch)
        self.tasks[task.id] = task
        self.queue.on_assigned(task)
        self._where[task.id] = agent_id
        self.running.setdefault(agent_id, {})[task.id] = task
        self.metrics.running = len(self._where)

    def attach(self, driver: SchedulerDriver) -> None:
        self._driver = driver

    def resubscribed(self, driver: SchedulerDriver) -> None:
        """The master lifted suppression and filters (a resubscription): revive if anything is queued."""
        self._driver = driver
        self._suppressed = self._filtered = False
        if len(self.queue):
            driver.revive()

    def launched(self) -> list[tuple[str, str]]:
        """(task id, agent id) of every task launched (or adopted) and not ended."""
        return sorted(self._where.items())

    def queued_tasks(self) -> list[TaskRequest]:
        return [t for tid, t in self.tasks.items() if tid not in self._where]

    def waiting_reasons(self) -> dict[str, str]:
        """Why each queued task waits: its gang, its retry backoff, the engine's reasons, or no offers yet."""
        now = self.clock()
        out: dict[str, str] = {}
        for task in self.queued_tasks():
            launch: LaunchLike = task.payload
            wait = self.gangs.get(launch.gang) if launch.gang else None
            failures = self.last_failures.get(task.id)
            if task.ready_at > now:
                out[task.id] = f"retry backoff: ready in {task.ready_at - now:.0f}s"
            elif wait is not None:
                out[task.id] = self._gang_reason(wait, now)
            elif failures:
                out[task.id] = why_unplaced(failures)
            else:
                out[task.id] = "no offers yet"
        return out

    def _gang_reason(self, wait: GangWait, now: float) -> str:
        line = f"gang of {wait.size}: {wait.fit} fit in the offers held"
        if wait.backoff_until is not None:
            line += (
                f"; released after {self.gang_hold:g}s (the role is not offered enough for the whole gang),"
                f" holding again in {max(0.0, wait.backoff_until - now):.0f}s"
            )
        return line

    # ------------------------------------------------------------------ gangs in the loop
    def schedule_once(self, driver: SchedulerDriver) -> SchedulingResult | None:
        self._gang_holds(driver, self.clock())
        return super().schedule_once(driver)

    def _place(self, hosts: list[Host], now: float, skip: Collection[str] = frozenset()) -> SchedulingResult | None:
        """The engine run, redone without each gang it could not place whole (see the module docstring)."""
        self._refresh_outside()
        skipped = set(skip)
        members_of = self._gang_members()
        gangs = self._ready_gangs(members_of, now)
        for gang, members in gangs.items():
            wait = self.gangs.get(gang)
            if members is None or (wait is not None and wait.backoff_until is not None):
                skipped.update(t.id for t in members_of[gang])
        open_gangs = {g: m for g, m in gangs.items() if m is not None and not skipped.issuperset(m)}
        incomplete: dict[str, tuple[int, list[Assignment]]] = {}  # gang -> (its size, what of it was placed)
        while True:
            result = super()._place(hosts, now, skipped)
            if result is None:
                break
            placed: dict[str, list[Assignment]] = {}
            for a in result.assignments:
                gang = a.task.payload.gang
                if gang:
                    placed.setdefault(gang, []).append(a)
            broken = {g: placed.get(g, []) for g, m in open_gangs.items() if len(placed.get(g, ())) < len(m)}
            if not broken:
                break
            for gang, got in broken.items():
                members = open_gangs.pop(gang)
                incomplete[gang] = (self.tasks[members[0]].payload.gang_size, got)
                skipped.update(members)
            if not any(placed.get(g) for g in broken):
                break  # the broken gangs took no room: the run stands as it is
        self._note_gangs(gangs, incomplete, now)
        return result

    def _refresh_outside(self) -> None:
        """What the lifecycle constraints see of other roles' tasks, taken once per run (none are queued: nothing)."""
        if not self._with_lifecycle or self._outside_source is None:
            return
        self._with_lifecycle.intersection_update(self.tasks)
        if self._with_lifecycle:
            self.outside.clear()  # in place: the queued launches' constraints hold this dict
            self.outside.update({a: frozenset(v) for a, v in self._outside_source().items()})

    def _gang_members(self) -> dict[str, list[TaskRequest]]:
        """The queued members of each gang."""
        members: dict[str, list[TaskRequest]] = {}
        for task in self.queued_tasks():
            if task.payload.gang:
                members.setdefault(task.payload.gang, []).append(task)
        return members

    def _ready_gangs(self, members: Mapping[str, list[TaskRequest]], now: float) -> dict[str, list[str] | None]:
        """The ids of each gang's queued members, when the gang is whole (queued or launched) and ready (None: not
        yet)."""
        launched: dict[str, int] = {}
        for task_id in self._where:
            gang = getattr(self.tasks[task_id].payload, "gang", "") if task_id in self.tasks else ""
            if gang in members:
                launched[gang] = launched.get(gang, 0) + 1
        out: dict[str, list[str] | None] = {}
        for gang, tasks in members.items():
            size = tasks[0].payload.gang_size
            whole = len(tasks) + launched.get(gang, 0) >= size
            out[gang] = [t.id for t in tasks] if whole and all(t.ready_at <= now for t in tasks) else None
        return out

    def _note_gangs(
        self,
        gangs: Mapping[str, list[str] | None],
        incomplete: Mapping[str, tuple[int, list[Assignment]]],
        now: float,
    ) -> None:
        for gang in list(self.gangs):
            if gang not in gangs or (gang not in incomplete and self.gangs[gang].backoff_until is None):
                del self.gangs[gang]  # launched, or gone from the queue
        for gang, (size, got) in incomplete.items():
            wait = self.gangs.setdefault(gang, GangWait(size))
            if wait.since is None:
                wait.since = now
                log.info("gang waits: holding offers", role=self.role, gang=gang, size=wait.size, fit=len(got))
            wait.fit = len(got)
            wait.agents = {a.agent_id for a in got}

    def _gang_holds(self, driver: SchedulerDriver, now: float) -> None:
        """End the holds that lasted `gang_hold` (decline, back off) and the back-offs that are over (revive)."""
        queued = self._gang_members() if self.gangs else {}
        for gang, wait in list(self.gangs.items()):
            if gang not in queued:
                del self.gangs[gang]
            elif wait.backoff_until is not None and now >= wait.backoff_until:
                wait.backoff_until = None
                self._suppressed = self._filtered = False
                driver.revive()  # lifts the filters of what it let go, and of the leases declined meanwhile
                log.info("gang holds offers again", role=self.role, gang=gang)
            elif wait.since is not None and now - wait.since >= self.gang_hold:
                ids: list[str] = []
                for agent_id in sorted(wait.agents):
                    lease = self.leases.pop(agent_id, None)
                    if lease is not None:
                        ids.extend(lease.offers)
                if ids:
                    driver.decline(ids, refuse_seconds=GANG_RELEASE_REFUSE_SECONDS)
                    self.metrics.declined_offers += len(ids)
                wait.since = None
                wait.backoff_until = now + self.gang_hold * (0.5 + self.rng.random())
                backoff = round(wait.backoff_until - now, 3)
                log.info("gang released its offers", role=self.role, gang=gang, fit=wait.fit, backoff=backoff)

    def _lease_keepers(self) -> Iterable[TaskRequest]:
        """A gang that backs off keeps no lease: what only it could use goes back (declined as unusable)."""
        off = {g for g, w in self.gangs.items() if w.backoff_until is not None}
        return (t for t in self.queued_tasks() if t.payload.gang not in off)  # "" (no gang) is never in it

    def next_wake(self, now: float) -> float:
        wait = super().next_wake(now)
        for w in self.gangs.values():
            at = w.backoff_until if w.since is None else w.since + self.gang_hold
            if at is not None:
                wait = min(wait, max(0.0, at - now) + 0.001)
        return wait
