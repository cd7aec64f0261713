"""Placement for the jobs service: one framework (one `SchedulerDriver`), many roles, gangs and lifecycles.

`JobsScheduler` is the driver's scheduler. It keeps one `RoleScheduler` (a `PlacementScheduler`, bin packing on
cpus by default) per role its tasks run in, made on first use: offers go to the role they were allocated to
(`Offer.allocation_role`), status updates to the role of their task, and each role's loop runs on its own
(`run`, one TaskGroup). A role scheduler talks to the driver through a `RoleDriver`: its SUPPRESS and REVIVE name
its role only, so a role with nothing queued stops receiving offers while the others go on. A role seen for the
first time is added to the framework's roles with UPDATE_FRAMEWORK (the master then rescinds the offers out and
offers again, in every role).

A `TaskLaunch` (tasks.py) is placed as a `TaskRequest` (`task_request`) and launched as a TaskInfo
(`launch_task_info`), both in launching.py; `ports(task_id)` are the ports a task was launched with.

Lifecycles (Fenzo's objective for Mantis). `lifecycle_of` maps each group tracked to its lifecycle: a launch's
own ("perpetual", "transient"), or "transient" for batch and workflow launches (they end). A launch with a lifecycle
gets a soft `LifecycleAffinity` over it, which also sees the tasks of the other roles (`outside`, refreshed before
each run of a role with such launches queued), so perpetual and transient work land on disjoint hosts while there
is room, and share hosts (nothing is refused) when there is not. Soft constraints weigh `SOFT_CONSTRAINT_WEIGHT` in
the jobs engine: enough that a host's lifecycle outranks bin packing (an empty host beats a fuller one running the
other lifecycle), and bin packing decides among hosts of the same standing. A launch without a lifecycle gets no
constraint: batch placement keeps its speed.

A draining agent (the master's `agent_draining`, told again on each resubscription) is told once to `on_draining`,
so that the service can move its long-running instances off it; it may be told again after it was offered again.

Gangs and their leases: role_scheduler.py.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import structlog

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import Scheduler, SchedulerDriver
from scheduler_sdk.frameworks.jobs.launching import LaunchLike, launch_task_info, placement_constraint, task_request
from scheduler_sdk.frameworks.jobs.role_scheduler import (
    GANG_RELEASE_REFUSE_SECONDS,
    SOFT_CONSTRAINT_WEIGHT,
    RoleDriver,
    RoleScheduler,
)
from scheduler_sdk.placement.agents import KnownAgent
from scheduler_sdk.placement.model import TaskRequest
from scheduler_sdk.states import TERMINAL_STATES

__all__ = ["GANG_RELEASE_REFUSE_SECONDS", "JobsScheduler", "LaunchLike", "RoleDriver", "RoleScheduler"]
__all__ += ["SOFT_CONSTRAINT_WEIGHT", "TRANSIENT", "launch_task_info", "placement_constraint", "task_request"]

log = structlog.get_logger(__name__)

UNRESERVED = "*"
TRANSIENT = "transient"  # the lifecycle of launches without one (batch and workflow work ends)


OnUpdate = Callable[[Any, tpb.TaskStatus], None]  # (the TaskLaunch, its status)


# ---------------------------------------------------------------------------------------------- many roles
class JobsScheduler(Scheduler):
    """The driver's scheduler of the jobs service: one framework, many roles (see the module docstring).

    `on_update(launch, status)` is told every status update of a task submitted or adopted (and TASK_KILLED for a
    queued one killed, TASK_ERROR for one that could not be launched); `on_unknown(status)` the updates of task
    ids it does not track (e.g. reconciliation answers for tasks not adopted). `on_registered(driver,
    framework_id, again)` is awaited after each (re)subscription, `again` on a resubscription of this process.
    `wall_clock` is the clock of `TaskLaunch.ready_at` (unix seconds); pass the same as `clock` when that is
    unix time too. `on_draining(agent_id)` is told when the master says an agent drains (once until the agent is
    offered again or lost)."""

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
        on_draining: Callable[[str], None] | None = None,
    ) -> None:
        self.on_update = on_update
        self.on_draining = on_draining
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
        self.lifecycle_of: dict[str, str] = {}  # group -> lifecycle, for every group with a task tracked
        self._group_tasks: dict[str, int] = {}  # group -> how many of its tasks are tracked
        self._draining: set[str] = set()  # agents told to on_draining

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
            self._track(launch)
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
        self._track(launch)

    def ports(self, task_id: str) -> tuple[int, ...]:
        """The ports a task was launched with, in AIOMESOS_PORTi order, while it is tracked (also in the update
        that ends it); () for a task unknown, not launched yet, or adopted (its ports are the service's record)."""
        for scheduler in self.schedulers.values():
            ports = scheduler.ports.get(task_id)
            if ports is not None:
                return ports
        return ()

    def _track(self, launch: LaunchLike) -> None:
        if launch.group:
            self.lifecycle_of[launch.group] = launch.lifecycle or TRANSIENT
            self._group_tasks[launch.group] = self._group_tasks.get(launch.group, 0) + 1

    def _untrack(self, launch: LaunchLike) -> None:
        n = self._group_tasks.get(launch.group, 0) - 1
        if n > 0:
            self._group_tasks[launch.group] = n
        else:
            self._group_tasks.pop(launch.group, None)
            self.lifecycle_of.pop(launch.group, None)

    def _outside(self, role: str) -> dict[str, set[str]]:
        """agent id -> the lifecycles of the tasks other roles than `role` run (or were launched) there."""
        out: dict[str, set[str]] = {}
        for other, scheduler in self.schedulers.items():
            if other == role:
                continue
            for agent_id, tasks in scheduler.running.items():
                found = {lc for t in tasks.values() if (lc := self.lifecycle_of.get(t.group))}
                if found:
                    out.setdefault(agent_id, set()).update(found)
        return out

    def roles(self) -> list[str]:
        return sorted(self.schedulers)

    def hostname(self, agent_id: str) -> str:
        """The hostname an agent offered under ("" if none of its offers came): for the task records, as a
        TaskStatus names the agent only."""
        agent = self._agent(agent_id)
        return agent.hostname if agent is not None else ""

    def agent_host(self, agent_id: str) -> str:
        """The host part of the agent's own address (an IP on a cluster whose agents register by IP): where its
        tasks' ports are reached, even where its hostname does not resolve ("" if none of its offers came)."""
        agent = self._agent(agent_id)
        return agent.host if agent is not None else ""

    def _agent(self, agent_id: str) -> KnownAgent | None:
        for scheduler in self.schedulers.values():
            agent = scheduler.agents.get(agent_id)
            if agent is not None:
                return agent
        return None

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
                role,
                on_update=lambda task, status: self._updated(role, task, status),
                lifecycle_of=self.lifecycle_of,
                outside=lambda: self._outside(role),
                **self._options,
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
        ended = status.state in TERMINAL_STATES and status.task_id not in self.schedulers[role].tasks
        # first: the service may submit the id again at once
        if ended and self._role_of.pop(status.task_id, None) is not None and task is not None:
            self._untrack(task.payload)
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
            self._draining.discard(offer.agent_id)  # offered: no longer draining
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
        self._draining.discard(agent_id)
        for role, scheduler in self.schedulers.items():
            await scheduler.agent_lost(self._role_driver(role), agent_id)

    async def agent_draining(self, driver: SchedulerDriver, agent_id: str, deadline: float | None) -> None:
        for role, scheduler in self.schedulers.items():
            await scheduler.agent_draining(self._role_driver(role), agent_id, deadline)
        if agent_id not in self._draining:
            self._draining.add(agent_id)
            if self.on_draining is not None:
                self.on_draining(agent_id)
