"""Placement for the jobs service: one framework (one `SchedulerDriver`), many roles, and gangs.

`JobsScheduler` is the driver's scheduler. It keeps one `RoleScheduler` (a `PlacementScheduler`, bin packing on
cpus by default) per role its tasks run in, made on first use: offers go to the role they were allocated to
(`Offer.allocation_role`), status updates to the role of their task, and each role's loop runs on its own
(`run`, one TaskGroup). A role scheduler talks to the driver through a `RoleDriver`: its SUPPRESS and REVIVE name
its role only, so a role with nothing queued stops receiving offers while the others go on. A role seen for the
first time is added to the framework's roles with UPDATE_FRAMEWORK (the master then rescinds the offers out and
offers again, in every role).

A `TaskLaunch` (run.py) is placed as a `TaskRequest` (`task_request`) and launched as a TaskInfo
(`launch_task_info`).

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

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, cast

import structlog

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import Scheduler, SchedulerDriver
from scheduler_sdk.frameworks.batch import why_unplaced
from scheduler_sdk.frameworks.jobs.spec import ConstraintSpec, TaskResources
from scheduler_sdk.placement.constraints import AttributeValue, BalancedByAttribute, UniqueByAttribute
from scheduler_sdk.placement.engine import PlacementEngine
from scheduler_sdk.placement.extension import Engine
from scheduler_sdk.placement.fitness import BinPacking
from scheduler_sdk.placement.model import Assignment, Host, SchedulingResult, TaskRequest
from scheduler_sdk.placement.service import PlacementScheduler, default_task_info
from scheduler_sdk.states import TERMINAL_STATES

__all__ = ["GANG_RELEASE_REFUSE_SECONDS", "JobsScheduler", "LaunchLike", "RoleDriver", "RoleScheduler"]
__all__ += ["launch_task_info", "placement_constraint", "task_request"]

log = structlog.get_logger(__name__)

UNRESERVED = "*"
GANG_RELEASE_REFUSE_SECONDS = 1.0  # the filter of the offers a gang lets go at the end of its hold


class LaunchLike(Protocol):
    """What placement reads of a `run.TaskLaunch` (the contract's fields; read-only)."""

    @property
    def task_id(self) -> str: ...
    @property
    def job_id(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def step(self) -> str: ...
    @property
    def index(self) -> int: ...
    @property
    def attempt(self) -> int: ...
    @property
    def role(self) -> str: ...
    @property
    def command(self) -> str: ...
    @property
    def user(self) -> str: ...
    @property
    def env(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def resources(self) -> TaskResources: ...
    @property
    def constraints(self) -> tuple[ConstraintSpec, ...]: ...
    @property
    def group(self) -> str: ...
    @property
    def gang(self) -> str: ...
    @property
    def gang_size(self) -> int: ...
    @property
    def ready_at(self) -> float: ...


OnUpdate = Callable[[Any, tpb.TaskStatus], None]  # (the TaskLaunch, its status)


# ---------------------------------------------------------------------------------------------- the pure part
def placement_constraint(spec: ConstraintSpec) -> object:
    """The placement engine's constraint for a spec's (constraints.py): `unique` -> UniqueByAttribute,
    `attribute`/`hostname` -> AttributeValue(in_=values), `balanced` -> BalancedByAttribute; ValueError for an
    unknown kind."""
    if spec.kind == "unique":
        return UniqueByAttribute(spec.attribute or "hostname")
    if spec.kind == "attribute":
        return AttributeValue(spec.attribute, in_=spec.values)
    if spec.kind == "hostname":
        return AttributeValue("hostname", in_=spec.values)
    if spec.kind == "balanced":
        return BalancedByAttribute(spec.attribute)
    raise ValueError(f"unknown constraint kind {spec.kind!r}")


def task_request(launch: LaunchLike, ready_at: float = 0.0) -> TaskRequest:
    """The request a launch is placed as: its resources (gpus a scalar, ports a count), group and constraints (soft
    ones rank hosts instead of filtering them); payload: the launch; `ready_at` on the scheduler's clock."""
    r = launch.resources
    hard = tuple(placement_constraint(c) for c in launch.constraints if not c.soft)
    soft = tuple(placement_constraint(c) for c in launch.constraints if c.soft)
    return TaskRequest(
        launch.task_id,
        cpus=r.cpus,
        mem=r.mem,
        disk=r.disk,
        ports=r.ports,
        scalars={"gpus": r.gpus} if r.gpus else {},
        group=launch.group,
        hard_constraints=hard,
        soft_constraints=soft,
        ready_at=ready_at,
        payload=launch,
    )


def launch_task_info(task: TaskRequest, assignment: Assignment) -> tpb.TaskInfo:
    """The TaskInfo of a placed launch: its shell command as its user, its environment plus AIOMESOS_PORTi and
    PORTi for each port it was given (in the order the agent numbers them), its resources."""
    launch: LaunchLike = task.payload
    env = dict(launch.env)
    for i, port in enumerate(sorted(assignment.ports)):
        env[f"AIOMESOS_PORT{i}"] = env[f"PORT{i}"] = str(port)
    command = rpb.CommandInfo(shell=True, value=launch.command, user=launch.user)
    for name in sorted(env):
        command.environment.variables.add(name=name, value=env[name])
    return default_task_info(replace(task, payload=command), assignment)


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
    with gangs and waiting reasons."""

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
    ) -> None:
        if isinstance(gang_hold, bool) or not isinstance(gang_hold, int | float) or not gang_hold >= 0:
            raise ValueError(f"gang_hold must be a number >= 0, not {gang_hold!r}")
        super().__init__(
            engine if engine is not None else PlacementEngine(BinPacking("cpus")),
            task_info=launch_task_info,
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

    # ------------------------------------------------------------------ the jobs side
    def submit_launches(self, launches: Sequence[LaunchLike]) -> None:
        self.submit(*(task_request(launch, self.ready_at(launch)) for launch in launches))

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


# ---------------------------------------------------------------------------------------------- many roles
class JobsScheduler(Scheduler):
    """The driver's scheduler of the jobs service: one framework, many roles (see the module docstring).

    `on_update(launch, status)` is told every status update of a task submitted or adopted (and TASK_KILLED for a
    queued one killed, TASK_ERROR for one that could not be launched); `on_unknown(status)` the updates of task
    ids it does not track (e.g. reconciliation answers for tasks not adopted). `on_registered(driver,
    framework_id, again)` is awaited after each (re)subscription, `again` on a resubscription of this process.
    `wall_clock` is the clock of `TaskLaunch.ready_at` (unix seconds); pass the same as `clock` when that is
    unix time too."""

    def __init__(
        self,
        *,
        on_update: OnUpdate,
        on_registered: Callable[[SchedulerDriver, str, bool], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        gang_hold: float = 10.0,
        lease_expiry: float = 10.0,
        loop_interval: float = 0.05,
        wall_clock: Callable[[], float] = time.time,
        on_unknown: Callable[[tpb.TaskStatus], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.on_update = on_update
        self.on_registered = on_registered
        self.on_unknown = on_unknown
        times = dict(clock=clock, wall_clock=wall_clock, gang_hold=gang_hold, lease_expiry=lease_expiry)
        self._options: dict[str, Any] = dict(times, loop_interval=loop_interval, rng=rng)
        RoleScheduler(UNRESERVED, on_update=lambda t, s: None, **self._options)  # bad options fail here
        self.schedulers: dict[str, RoleScheduler] = {}  # role -> its scheduler
        self._role_of: dict[str, str] = {}  # task id -> role, for every task tracked
        self._role_drivers: dict[str, SchedulerDriver] = {}
        self._driver: SchedulerDriver | None = None
        self._joined = asyncio.Event()  # a role was added: its loop is to be started

    # ------------------------------------------------------------------ the service's side
    def submit(self, launches: Sequence[LaunchLike]) -> None:
        """Queue launches, each in its role's scheduler (made on first use). ValueError for a task id already
        tracked (nothing is queued then)."""
        seen: set[str] = set()
        for launch in launches:
            if launch.task_id in self._role_of or launch.task_id in seen:
                raise ValueError(f"task {launch.task_id} was already submitted")
            seen.add(launch.task_id)
        by_role: dict[str, list[LaunchLike]] = {}
        for launch in launches:
            by_role.setdefault(launch.role or UNRESERVED, []).append(launch)
        for role, group in by_role.items():
            self._role(role).submit_launches(group)
            for launch in group:
                self._role_of[launch.task_id] = role

    def kill(self, task_id: str) -> None:
        """A launched task: killed through the driver (its TASK_KILLED comes from the agent). A queued one: dropped,
        and reported TASK_KILLED at once. An unknown id: nothing."""
        role = self._role_of.get(task_id)
        if role is not None:
            self.schedulers[role].kill(task_id)

    def adopt(self, launch: LaunchLike, agent_id: str) -> None:
        """After a restart: a task that was launched (reconciliation tells its state) is tracked, not launched."""
        if launch.task_id in self._role_of:
            raise ValueError(f"task {launch.task_id} was already submitted")
        role = launch.role or UNRESERVED
        self._role(role).adopt(launch, agent_id)
        self._role_of[launch.task_id] = role

    def roles(self) -> list[str]:
        return sorted(self.schedulers)

    def hostname(self, agent_id: str) -> str:
        """The hostname an agent offered under ("" if none of its offers came): for the task records, as a
        TaskStatus names the agent only."""
        for scheduler in self.schedulers.values():
            agent = scheduler.agents.get(agent_id)
            if agent is not None:
                return agent.hostname
        return ""

    def waiting_reasons(self) -> dict[str, str]:
        """task id -> why it waits, for every queued task of every role."""
        out: dict[str, str] = {}
        for scheduler in self.schedulers.values():
            out.update(scheduler.waiting_reasons())
        return out

    # ------------------------------------------------------------------ the loop
    async def run(self, driver: SchedulerDriver) -> None:
        """Every role's scheduling loop, each started when its role appears (cancel to stop them all)."""
        self._attach(driver)
        started: set[str] = set()
        async with asyncio.TaskGroup() as tg:
            while True:
                self._joined.clear()
                for role, scheduler in list(self.schedulers.items()):
                    if role not in started:
                        started.add(role)
                        tg.create_task(scheduler.run(self._role_driver(role)), name=f"jobs-placement-{role}")
                await self._joined.wait()

    def _role(self, role: str) -> RoleScheduler:
        scheduler = self.schedulers.get(role)
        if scheduler is None:
            scheduler = self.schedulers[role] = RoleScheduler(
                role, on_update=lambda task, status: self._updated(role, task, status), **self._options
            )
            log.info("jobs placement: new role", role=role)
            if self._driver is not None:
                scheduler.attach(self._role_driver(role))
                if self._driver.subscribed.is_set():
                    self._sync_roles(self._driver)
            self._joined.set()
        return scheduler

    def _role_driver(self, role: str) -> SchedulerDriver:
        assert self._driver is not None
        rd = self._role_drivers.get(role)
        if rd is None or cast(RoleDriver, rd).driver is not self._driver:
            rd = self._role_drivers[role] = cast(SchedulerDriver, RoleDriver(self._driver, role))
        return rd

    def _attach(self, driver: SchedulerDriver) -> None:
        self._driver = driver
        for role, scheduler in self.schedulers.items():
            scheduler.attach(self._role_driver(role))

    def _sync_roles(self, driver: SchedulerDriver) -> None:
        """Add the roles we place tasks in to the framework's, if some are missing (never removes one)."""
        current = list(driver.framework.roles) or [UNRESERVED]
        missing = [r for r in sorted(self.schedulers) if r not in current]
        if not missing:
            return
        info = rpb.FrameworkInfo()
        info.CopyFrom(driver.framework)
        info.ClearField("roles")
        info.roles.extend(current + missing)
        if not any(c.type == rpb.FrameworkInfo.Capability.MULTI_ROLE for c in info.capabilities):
            info.capabilities.add(type=rpb.FrameworkInfo.Capability.MULTI_ROLE)
        log.info("framework roles updated", roles=list(info.roles))
        driver.update_framework(info)

    def _updated(self, role: str, task: TaskRequest | None, status: tpb.TaskStatus) -> None:
        if status.state in TERMINAL_STATES and status.task_id not in self.schedulers[role].tasks:
            self._role_of.pop(status.task_id, None)  # first: the service may submit the id again at once
        if task is not None:
            self.on_update(task.payload, status)
        elif self.on_unknown is not None:
            self.on_unknown(status)

    # ------------------------------------------------------------------ driver callbacks
    async def registered(self, driver: SchedulerDriver, framework_id: str, master_id: str) -> None:
        self._attach(driver)
        self._sync_roles(driver)
        if self.on_registered is not None:
            await self.on_registered(driver, framework_id, False)

    async def reregistered(self, driver: SchedulerDriver, framework_id: str, master_id: str) -> None:
        """Resubscribed after a disconnection: the master lifted every suppression; ask it about our tasks."""
        self._attach(driver)
        self._sync_roles(driver)
        launched = [pair for s in self.schedulers.values() for pair in s.launched()]
        if launched:
            driver.reconcile(launched)
        for role, scheduler in self.schedulers.items():
            scheduler.resubscribed(self._role_driver(role))
        if self.on_registered is not None:
            await self.on_registered(driver, framework_id, True)

    async def disconnected(self, driver: SchedulerDriver) -> None:
        for role, scheduler in self.schedulers.items():
            await scheduler.disconnected(self._role_driver(role))

    async def offers(self, driver: SchedulerDriver, offers: Sequence[spb.Offer]) -> None:
        if self._driver is not driver:
            self._attach(driver)
        by_role: dict[str, list[spb.Offer]] = {}
        for offer in offers:
            by_role.setdefault(offer.allocation_role or UNRESERVED, []).append(offer)
        for role, group in by_role.items():
            # A role of the framework with nothing of ours yet: its scheduler declines and suppresses.
            await self._role(role).offers(self._role_driver(role), group)

    async def offer_rescinded(self, driver: SchedulerDriver, offer_id: str) -> None:
        for role, scheduler in self.schedulers.items():
            await scheduler.offer_rescinded(self._role_driver(role), offer_id)

    async def status_update(self, driver: SchedulerDriver, status: tpb.TaskStatus) -> None:
        role = self._role_of.get(status.task_id)
        if role is None:
            if self.on_unknown is not None:
                self.on_unknown(status)
            return
        await self.schedulers[role].status_update(self._role_driver(role), status)

    async def agent_lost(self, driver: SchedulerDriver, agent_id: str) -> None:
        for role, scheduler in self.schedulers.items():
            await scheduler.agent_lost(self._role_driver(role), agent_id)

    async def agent_draining(self, driver: SchedulerDriver, agent_id: str, deadline: float | None) -> None:
        for role, scheduler in self.schedulers.items():
            await scheduler.agent_draining(self._role_driver(role), agent_id, deadline)
