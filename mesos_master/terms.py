"""A master's terms as leader. A single master has one, from start to stop, on its SQLite registry. A master
on etcd campaigns, leads until its term ends (its lease lost, a write fenced off, etcd gone for longer than the
lease), steps down to standby at once, and campaigns again. Each term builds its core afresh from the registry
(as a new Mesos leader recovers from the replicated log), so nothing of a deposed term's state survives it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry

from mesos_master.allocator import Allocator, create_allocator
from mesos_master.api.agents import AgentRegistryService
from mesos_master.api.dispatch import LEADERSHIP_LOST, MASTER_STOPPING, Dispatcher
from mesos_master.api.operator import OperatorService
from mesos_master.api.scheduler import SchedulerService
from mesos_master.api.standby import Seat
from mesos_master.cluster import Master
from mesos_master.election import Term
from mesos_master.ha import Coordination
from mesos_master.registry import Registry, SQLiteRegistry
from mesos_master.registry.etcd import EtcdRegistry
from scheduler_sdk._daemon.guard import Guard, reload_security
from scheduler_sdk._daemon.security import DaemonSecurity
from scheduler_sdk._daemon.tasks import cancel_and_wait, race
from scheduler_sdk.backoff import Backoff
from scheduler_sdk.resources import Resources, ResourcesError
from scheduler_sdk.security.acls import Authorizer

log = structlog.get_logger("mesos_master")


@dataclass
class SoleTerm:
    """A single master's term: it is never lost (there is no one else to lead)."""

    lost: asyncio.Event = field(default_factory=asyncio.Event)


class Terms:
    """Runs a master's terms: `sole` (SQLite, one master) or `elected` (etcd). Both return the daemon's exit code
    when `stopping` is set: 0, or 1 when a sole master's registry failed."""

    def __init__(
        self,
        args: argparse.Namespace,
        master_id: str,
        seat: Seat,
        authorizer: Authorizer,
        security: DaemonSecurity,
        stopping: asyncio.Event,
        *,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        self.args = args
        self.metrics = metrics  # the daemon's registry, read by GetMetrics (mesos_master.metrics)
        self.master_id = master_id
        self.seat = seat
        self.authorizer = authorizer
        self.security = security
        self.stopping = stopping

    async def sole(self, registry: SQLiteRegistry) -> int:
        """A single master leads from start to stop, on its SQLite registry; a registry that fails ends it (1)."""
        try:
            why = await self._lead(SoleTerm(), registry)
        finally:
            await registry.close()
        if why == "failed":
            self.stopping.set()
            return 1
        return 0

    async def elected(self, coordination: Coordination) -> int:
        """Campaign, lead until the term ends, step down, campaign again; until the master stops."""
        election = coordination.election
        retry = Backoff(initial=0.2, maximum=self.args.etcd_lease)
        while not self.stopping.is_set():
            campaign = asyncio.ensure_future(election.campaign())
            try:
                first = await race(stopping=self.stopping.wait(), campaign=asyncio.shield(campaign))
            except Exception as e:  # etcd unreachable: campaign again, with backoff
                log.warning("cannot campaign for leadership", error=str(e))
                await self._pause(retry.next())
                continue
            if first == "stopping":
                await cancel_and_wait(campaign)
                return 0
            term = campaign.result()
            registry = EtcdRegistry(coordination.client, coordination.prefix, term.fence())
            try:
                why = await self._lead(term, registry)
            finally:
                await registry.close()
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await election.resign(term)
            if why != "stopping":
                log.warning("stepped down: no longer the leader", master_id=self.master_id, why=why)
                await self._pause(retry.next())
            else:
                retry.reset()
        return 0

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stopping.wait()

    async def _lead(self, term: Term | SoleTerm, registry: Registry) -> str:
        """One term as leader: the core from the registry, the servicers bound to it, the loops; until the master
        stops ("stopping"), the term is lost ("lost") or a registry write fails ("failed")."""
        a = self.args
        try:
            async with asyncio.timeout(max(5.0, getattr(a, "etcd_lease", 5.0))):
                recovered = await registry.load()
        except Exception as e:
            log.error("cannot load the registry", error=str(e))
            return "failed"
        master = Master(
            self.master_id,
            build_allocator(a),
            recovered=recovered,
            offer_timeout=a.offer_timeout,
            agent_reregister_timeout=a.agent_reregister_timeout,
            agent_unreachable_timeout=a.agent_unreachable_timeout,
            unreachable_agent_max_age=a.unreachable_agent_max_age,
            hostname=a.hostname,
            authorizer=self.authorizer if self.security.secure else None,
        )
        dispatcher = Dispatcher(master, registry)
        guard = Guard(self.authorizer, secure=self.security.secure)
        operator = OperatorService(dispatcher, guard, self.security.client_config(), metrics=self.metrics)
        self.seat.begin(
            {
                "aiomesos.v1.Scheduler": SchedulerService(dispatcher, a.heartbeat_interval, guard),
                "aiomesos.v1.AgentRegistry": AgentRegistryService(
                    dispatcher, a.agent_ping_interval, guard, pings_per_second=a.max_agent_pings_per_second
                ),
                "aiomesos.v1.Operator": operator,
            },
            events=dispatcher.hub,
        )
        log.info(
            "leading",
            master_id=self.master_id,
            recovered_agents=len(recovered.agents),
            recovered_frameworks=len(recovered.frameworks),
        )
        why = "stopping"
        try:
            why = await race(
                stopping=self.stopping.wait(),
                lost=term.lost.wait(),
                failed=dispatcher.failed.wait(),
                allocation=self._allocation_loop(master, dispatcher),
                ticks=self._tick_loop(master, dispatcher, self.security),
            )
        finally:
            self.seat.end()
            dispatcher.stop(MASTER_STOPPING if why == "stopping" else LEADERSHIP_LOST)
            try:
                async with asyncio.timeout(2.0):
                    await dispatcher.close()  # what the last calls wrote reaches the registry (if still ours)
            except TimeoutError:
                log.error("the registry did not take the last writes in time")
        return why

    async def _allocation_loop(self, master: Master, dispatcher: Dispatcher) -> None:
        interval = self.args.allocation_interval
        while True:
            with contextlib.suppress(TimeoutError):
                # Not wait_for: it loses a cancellation that comes as the event is set (scheduler_sdk._daemon.tasks)
                async with asyncio.timeout(interval):
                    await dispatcher.allocation_wanted.wait()
            dispatcher.allocation_wanted.clear()
            # Let the calls that arrived in this turn land first, so one cycle serves them all.
            await asyncio.sleep(0)
            await dispatcher.flush()
            if master.allocate():
                await dispatcher.flush()

    async def _tick_loop(self, master: Master, dispatcher: Dispatcher, security: DaemonSecurity) -> None:
        while True:
            await asyncio.sleep(0.5)
            master.tick()
            dispatcher.changed()
            if master.authorizer is not None:
                # The credentials too: a revoked token must stop working without a SIGHUP (a stat when unchanged).
                reload_security(master.authorizer, security)


def build_allocator(a: argparse.Namespace) -> Allocator:
    """The allocator the flags ask for; raises ValueError (one readable line) for bad values."""
    try:
        minimums = [Resources.parse(alt) for alt in a.min_allocatable.split("|") if alt.strip()]
    except ResourcesError as e:
        raise ValueError(f"--min-allocatable: {e}") from None
    kwargs: dict[str, object] = {
        "allocation_interval": a.allocation_interval,
        "revocation": a.revocation,
        "min_allocatable": minimums,
        "fair_resource": a.fair_resource,
        "seed": a.random_seed,
    }
    if a.role_priorities:
        kwargs["priorities"] = [r.strip() for r in a.role_priorities.split(",") if r.strip()]
    try:
        return create_allocator(a.allocator, **kwargs)
    except TypeError as e:
        raise ValueError(f"--allocator {a.allocator}: {e}") from None
