"""Property tests of the allocator (hypothesis): random clusters and event sequences against a model that
tracks offers, tasks, filters, quota and reservations the way the master does.

Checked at every offer and after every step: no agent is ever offered more than it has, no resource (scalar
amount or port) is offered to two frameworks at once, quota limits are never exceeded (what counts: reservations
and unreserved holdings, so neither an offer nor a dynamic reservation may take a role over its limit; a role
already over it when the limit was set, or by an agent's static reservations, may only come down), reserved
resources reach only their role or its children, offers respect suppression, activation, refusal filters,
offer constraints and minimums, revocation picks only tasks of roles above their share without taking them below
their guarantee, and the allocator's books agree with the model. Plus long-run fairness: weights are honoured,
and DRF evens out dominant shares, for every policy where that is meaningful."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mesos_master.allocator import (
    AllocatedTask,
    Allocation,
    AttributeMatch,
    DRFSorter,
    FairSorter,
    HierarchicalAllocator,
    OfferConstraints,
    PrioritySorter,
    Quota,
    RandomSorter,
    Sorter,
)
from scheduler_sdk.resources import UNRESERVED, Resources

P = Resources.parse
INTERVAL = 1.0
AGENT_IDS = ["a0", "a1", "a2", "a3"]
FW_IDS = ["f0", "f1", "f2", "f3"]
ROLES = ["*", "eng", "eng/prod", "eng/dev", "ads"]
ROLE_SETS = [("*",), ("eng",), ("eng/prod",), ("ads", "eng"), ("eng/prod", "eng/dev"), ("eng", "eng/prod")]
RESERVATION_ROLES = ["eng", "eng/prod", "ads"]

agent_totals = st.builds(
    lambda c, m, p, reserved, gpu: P(f"cpus:{c};mem:{m};ports:[{p}-{p + 9}]") + reserved + gpu,
    st.integers(1, 8),
    st.integers(32, 4096),
    st.integers(1000, 2000),
    st.sampled_from(
        [Resources.empty(), P("cpus(eng):2"), P("mem(ads):512;cpus(ads):1"), P("cpus(eng/prod):1;ports(eng):[5-6]")]
    ),
    st.sampled_from([Resources.empty(), Resources.empty(), Resources.empty(), P("gpus:1")]),
)
sorters = st.sampled_from(["drf", "fair", "priority", "random"])


def make_sorter(name: str) -> Sorter:
    return {
        "drf": DRFSorter,
        "fair": lambda: FairSorter("cpus"),
        "priority": lambda: PrioritySorter(["ads", "eng"]),
        "random": lambda: RandomSorter(5),
    }[name]()


def within(role: str, ancestor: str) -> bool:
    return role == ancestor or role.startswith(ancestor + "/")


def port_count(res: Resources) -> int:
    return sum(e - b + 1 for b, e in res.ranges("ports"))


class Twin:
    """Drives an incremental allocator and a full-scan one with the same calls and checks they answer alike:
    the incremental cycle must miss no agent that has something to offer."""

    def __init__(self, policy: str, **kwargs: object) -> None:
        self.incremental = HierarchicalAllocator(sorter=make_sorter(policy), **kwargs)  # type: ignore[arg-type]
        self.full = HierarchicalAllocator(sorter=make_sorter(policy), full_scan=True, **kwargs)  # type: ignore[arg-type]
        self.revocation = self.incremental.revocation

    def __getattr__(self, name: str) -> Any:
        def both(*args: object, **kwargs: object) -> Any:
            a = getattr(self.incremental, name)(*args, **kwargs)
            b = getattr(self.full, name)(*args, **kwargs)
            assert a == b, f"{name}{args}: the incremental allocator says {a}, the full scan {b}"
            return a

        return both


@dataclass
class Fw:
    roles: tuple[str, ...]
    active: bool = True
    gpu_aware: bool = False
    zone: str | None = None  # an attribute constraint
    min_cpus: float | None = None  # a per-role minimum for its first role


class AllocatorMachine(RuleBasedStateMachine):
    make_allocator: Any = Twin  # (test_pieces drives the same model through the cycle in pieces)

    # --------------------------------------------------------------- setup
    @initialize(
        policy=sorters,
        revocation=st.booleans(),
        initial_agents=st.lists(agent_totals, min_size=1, max_size=len(AGENT_IDS)),
        initial_frameworks=st.lists(st.sampled_from(ROLE_SETS), min_size=1, max_size=3),
    )
    def setup(
        self,
        policy: str,
        revocation: bool,
        initial_agents: list[Resources],
        initial_frameworks: list[tuple[str, ...]],
    ) -> None:
        self.alloc = self.make_allocator(policy, allocation_interval=INTERVAL, revocation=revocation)
        self.now = 0.0
        self.agents: dict[str, Resources] = {}
        self.agent_active: dict[str, bool] = {}
        self.zones: dict[str, str] = {}
        self.frameworks: dict[str, Fw] = {}
        self.suppressed: set[tuple[str, str]] = set()
        self.offers: list[Allocation] = []
        self.tasks: list[tuple[str, str, str, Resources, str]] = []  # (framework, agent, role, resources, id)
        self.task_count = 0
        self.allowance: dict[tuple[str, str], float] = {}  # (limited role, name) -> most it may consume now
        self.filters: list[tuple[str, str, str, Resources, float]] = []  # (fw, role, agent, refused, expires)
        self.limits: dict[str, Resources] = {}
        self.guarantees: dict[str, Resources] = {}
        for agent_id, total in zip(AGENT_IDS, initial_agents, strict=False):
            self.add_agent(agent_id, total, "a")
        for framework_id, roles in zip(FW_IDS, initial_frameworks, strict=False):
            self.add_framework(framework_id, roles, True, None, None)

    # --------------------------------------------------------------- helpers
    def held_on(self, agent_id: str) -> list[Resources]:
        return [o.resources for o in self.offers if o.agent_id == agent_id] + [
            t[3] for t in self.tasks if t[1] == agent_id
        ]

    def consumption(self, limited: str, name: str) -> float:
        """Quota consumption of `limited`'s subtree: reservations everywhere plus unreserved holdings."""
        amount = 0.0
        for total in self.agents.values():
            for r in total.roles():
                if r != UNRESERVED and within(r, limited):
                    amount += total.scalar(name, r)
        for role, res in [(o.role, o.resources) for o in self.offers] + [(t[2], t[3]) for t in self.tasks]:
            if within(role, limited):
                amount += res.scalar(name, UNRESERVED)
        return amount

    def forget(self, *, agent_id: str | None = None, framework_id: str | None = None) -> None:
        def keep(fid: str, aid: str) -> bool:
            return aid != agent_id and fid != framework_id

        self.offers = [o for o in self.offers if keep(o.framework_id, o.agent_id)]
        self.tasks = [t for t in self.tasks if keep(t[0], t[1])]
        self.filters = [f for f in self.filters if keep(f[0], f[2])]

    def recover(self, o: Allocation, resources: Resources, refuse: float | None) -> None:
        self.alloc.recover_resources(o.framework_id, o.agent_id, resources, refuse, self.now, role=o.role)
        if refuse is not None and refuse > 0:
            self.filters.append((o.framework_id, o.role, o.agent_id, resources, self.now + max(refuse, INTERVAL)))

    def cycle(self) -> None:
        """An event-triggered allocation cycle, as the master runs one after most events."""
        for a in self.alloc.allocate(self.now):
            self.check_offer(a)
            self.offers.append(a)

    # --------------------------------------------------------------- agents
    @rule(agent_id=st.sampled_from(AGENT_IDS), total=agent_totals, zone=st.sampled_from(["a", "b"]))
    def add_agent(self, agent_id: str, total: Resources, zone: str) -> None:
        if agent_id in self.agents:
            return
        self.agents[agent_id] = total
        self.agent_active[agent_id] = True
        self.zones[agent_id] = zone
        self.alloc.add_agent(agent_id, total, {}, attributes={"zone": zone})
        for (limited, name), allow in self.allowance.items():  # static reservations cannot be refused
            extra = sum(total.scalar(name, r) for r in total.roles() if r != UNRESERVED and within(r, limited))
            self.allowance[(limited, name)] = allow + extra

    @rule(agent_id=st.sampled_from(AGENT_IDS))
    def remove_agent(self, agent_id: str) -> None:
        self.agents.pop(agent_id, None)
        self.alloc.remove_agent(agent_id)
        self.forget(agent_id=agent_id)

    @rule(agent_id=st.sampled_from(AGENT_IDS), active=st.booleans())
    def toggle_agent(self, agent_id: str, active: bool) -> None:
        if agent_id in self.agents:
            self.agent_active[agent_id] = active
        (self.alloc.activate_agent if active else self.alloc.deactivate_agent)(agent_id)

    @rule(
        agent_id=st.sampled_from(AGENT_IDS),
        role=st.sampled_from(RESERVATION_ROLES),
        unreserve=st.booleans(),
        cpus=st.sampled_from([1, 2]),
    )
    def dynamic_reservation(self, agent_id: str, role: str, unreserve: bool, cpus: int) -> None:
        """The operator's RESERVE/UNRESERVE of one or two cpus, as the master does it: offers on the agent go
        back first, only resources no task holds move, and no reservation may take a role over its limit."""
        total = self.agents.get(agent_id)
        if total is None:
            return
        for o in [o for o in self.offers if o.agent_id == agent_id]:
            self.offers.remove(o)
            self.recover(o, o.resources, None)
        used = Resources.empty()
        for t in self.tasks:
            if t[1] == agent_id:
                used = used + t[3]
        free = total.subtract_clamped(used)
        one, reserved = Resources.of(cpus=cpus), Resources.of(role=role, cpus=cpus)
        if unreserve and free.contains(reserved):
            new = total - reserved + one
        elif not unreserve and free.contains(one):
            # The master asks the allocator first: no reservation may take a role over its limit.
            over = [
                limited
                for limited, limit in self.limits.items()
                if within(role, limited)
                and "cpus" in limit.names()
                and self.consumption(limited, "cpus") + cpus > limit.scalar("cpus") + 1e-9
            ]
            try:
                self.alloc.check_reservation(reserved)
            except ValueError as e:
                assert over, f"reserving {reserved} refused although no limit is in the way: {e}"
                return
            assert not over, f"reserving {reserved} would take {over} over its limit, yet it was allowed"
            new = total - one + reserved
        else:
            return
        self.agents[agent_id] = new
        self.alloc.update_agent(agent_id, new)
        self.cycle()

    # --------------------------------------------------------------- frameworks
    @rule(
        framework_id=st.sampled_from(FW_IDS),
        roles=st.sampled_from(ROLE_SETS),
        gpu_aware=st.booleans(),
        zone=st.sampled_from([None, None, "a"]),
        min_cpus=st.sampled_from([None, None, 2.0]),
    )
    def add_framework(
        self, framework_id: str, roles: tuple[str, ...], gpu_aware: bool, zone: str | None, min_cpus: float | None
    ) -> None:
        if framework_id in self.frameworks:
            return
        self.frameworks[framework_id] = Fw(roles, gpu_aware=gpu_aware, zone=zone, min_cpus=min_cpus)
        self.alloc.add_framework(
            framework_id,
            roles,
            {},
            gpu_aware=gpu_aware,
            constraints=OfferConstraints((AttributeMatch("zone", equals=zone),)) if zone else None,
            min_allocatable={roles[0]: [Resources.of(cpus=min_cpus)]} if min_cpus else None,
        )

    @rule(framework_id=st.sampled_from(FW_IDS), roles=st.sampled_from(ROLE_SETS))
    def update_framework(self, framework_id: str, roles: tuple[str, ...]) -> None:
        fw = self.frameworks.get(framework_id)
        if fw is None:
            return
        # As the master does: its offers go back first.
        for o in [o for o in self.offers if o.framework_id == framework_id]:
            self.offers.remove(o)
            self.recover(o, o.resources, None)
        self.frameworks[framework_id] = Fw(roles, active=fw.active, gpu_aware=fw.gpu_aware)
        self.suppressed = {s for s in self.suppressed if s[0] != framework_id or s[1] in roles}
        self.filters = [f for f in self.filters if f[0] != framework_id or f[1] in roles]
        self.alloc.update_framework(framework_id, roles, gpu_aware=fw.gpu_aware)
        self.cycle()

    @rule(framework_id=st.sampled_from(FW_IDS))
    def remove_framework(self, framework_id: str) -> None:
        self.frameworks.pop(framework_id, None)
        self.suppressed = {s for s in self.suppressed if s[0] != framework_id}
        self.alloc.remove_framework(framework_id)
        self.forget(framework_id=framework_id)

    @rule(framework_id=st.sampled_from(FW_IDS), active=st.booleans())
    def toggle_framework(self, framework_id: str, active: bool) -> None:
        fw = self.frameworks.get(framework_id)
        if fw is None:
            return
        fw.active = active
        if active:
            self.alloc.activate_framework(framework_id)
        else:
            self.alloc.deactivate_framework(framework_id)
            self.filters = [f for f in self.filters if f[0] != framework_id]

    @rule(framework_id=st.sampled_from(FW_IDS), suppress=st.booleans(), one=st.booleans())
    def suppress_or_revive(self, framework_id: str, suppress: bool, one: bool) -> None:
        fw = self.frameworks.get(framework_id)
        if fw is None:
            return
        roles = list(fw.roles[:1]) if one else list(fw.roles)
        if suppress:
            self.alloc.suppress_offers(framework_id, roles if one else None)
            self.suppressed.update((framework_id, r) for r in roles)
        else:
            self.alloc.revive_offers(framework_id, roles if one else None)
            self.suppressed.difference_update((framework_id, r) for r in roles)
            self.filters = [f for f in self.filters if not (f[0] == framework_id and f[1] in roles)]
        self.cycle()

    # --------------------------------------------------------------- operator policy
    @rule(
        role=st.sampled_from(ROLES[1:]),
        guarantee=st.sampled_from([None, "cpus:2", "cpus:6;mem:1024"]),
        limit=st.sampled_from([None, "cpus:1", "cpus:3", "cpus:8;mem:2048", "mem:100"]),
    )
    def set_quota(self, role: str, guarantee: str | None, limit: str | None) -> None:
        g = P(guarantee) if guarantee else Resources.empty()
        lim = P(limit) if limit else None
        if lim is not None and not lim.contains(g.only(*lim.names())):
            lim = None
        self.alloc.update_quota(role, Quota(g, lim) if g or lim else None)
        self.guarantees[role] = g
        self.allowance = {k: v for k, v in self.allowance.items() if k[0] != role}
        if lim is None:
            self.limits.pop(role, None)
        else:
            self.limits[role] = lim
            for name in lim.names():  # a role already above its new limit may only come down
                self.allowance[(role, name)] = max(lim.scalar(name), self.consumption(role, name))
        self.cycle()

    @rule(role=st.sampled_from(ROLES), weight=st.sampled_from([0.5, 1.0, 3.0]))
    def set_weight(self, role: str, weight: float) -> None:
        self.alloc.update_weights({role: weight})
        self.cycle()

    # --------------------------------------------------------------- offers and tasks
    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 5.0]))
    def allocate(self, dt: float) -> None:
        self.now += dt
        for a in self.alloc.allocate(self.now):
            self.check_offer(a)
            self.offers.append(a)

    def check_offer(self, a: Allocation) -> None:
        fw = self.frameworks.get(a.framework_id)
        assert fw is not None and a.agent_id in self.agents
        assert fw.active and self.agent_active[a.agent_id]
        assert a.role in fw.roles and (a.framework_id, a.role) not in self.suppressed
        assert a.resources, "empty allocation"
        # reserved resources only reach their role or its children
        assert a.resources == a.resources.allocatable_to(a.role)
        for r in a.resources.roles():
            assert r == UNRESERVED or within(a.role, r)
        # never more than the agent has, never one resource twice
        total = self.agents[a.agent_id]
        held = [*self.held_on(a.agent_id), a.resources]
        together = Resources.empty()
        for h in held:
            together = together + h
        assert total.contains(together), f"offered {a.resources} on {a.agent_id} ({total}) beyond what is free"
        assert port_count(together) == sum(port_count(h) for h in held), "a port offered twice"
        # quota limits (of the role and its ancestors) are never exceeded by an offer
        for limited, limit in self.limits.items():
            if not within(a.role, limited):
                continue
            for name in limit.names():
                if a.resources.scalar(name, UNRESERVED) > 0:
                    after = self.consumption(limited, name) + a.resources.scalar(name, UNRESERVED)
                    assert after <= limit.scalar(name) + 1e-9, f"{limited} over its {name} limit: {after}"
        # GPU agents only for GPU-aware frameworks; offer constraints; per-role minimums
        if total.scalar("gpus") > 0:
            assert fw.gpu_aware
        if fw.zone is not None:
            assert self.zones[a.agent_id] == fw.zone
        if fw.min_cpus is not None and a.role == fw.roles[0]:
            assert a.resources.scalar("cpus") >= fw.min_cpus
        # refusal filters hold
        for fid, role, aid, refused, expires in self.filters:
            if (fid, role, aid) == (a.framework_id, a.role, a.agent_id) and expires > self.now:
                assert not refused.contains(a.resources), f"{a} offered while filtered"

    @precondition(lambda self: self.offers)
    @rule(data=st.data(), refuse=st.sampled_from([None, 0.0, 0.5, 3.0]))
    def decline(self, data: st.DataObject, refuse: float | None) -> None:
        o = self.offers.pop(data.draw(st.integers(0, len(self.offers) - 1)))
        self.recover(o, o.resources, refuse)
        self.cycle()

    @precondition(lambda self: self.offers)
    @rule(data=st.data(), refuse=st.sampled_from([None, 0.0, 2.0]))
    def accept_part(self, data: st.DataObject, refuse: float | None) -> None:
        o = self.offers.pop(data.draw(st.integers(0, len(self.offers) - 1)))
        name = data.draw(st.sampled_from(sorted(o.resources.names())))
        used = o.resources.only(name)
        self.task_count += 1
        self.tasks.append((o.framework_id, o.agent_id, o.role, used, f"t{self.task_count}"))
        rest = o.resources - used
        if rest:
            self.recover(o, rest, refuse)
        self.cycle()

    @precondition(lambda self: self.tasks)
    @rule(data=st.data())
    def finish_task(self, data: st.DataObject) -> None:
        fid, aid, role, res, _ = self.tasks.pop(data.draw(st.integers(0, len(self.tasks) - 1)))
        self.alloc.recover_resources(fid, aid, res, None, self.now, role=role)
        self.cycle()

    @rule(carry_out=st.booleans())
    def revocations(self, carry_out: bool) -> None:
        """The tasks revocation picks (started in the order they were launched) are tasks of roles outside the
        starved role's line, each once, with something unreserved to give back, and no role on a victim's line
        (below what it shares with the starved role) falls below its guarantee. Carried out: they end."""
        running = [AllocatedTask(t[0], t[4], t[1], t[2], t[3], float(t[4][1:])) for t in self.tasks]
        decisions = self.alloc.revocations(self.now, running)
        by_id = {t[4]: t for t in self.tasks}
        assert len({r.task_id for r in decisions}) == len(decisions)
        lost: dict[tuple[str, str], float] = {}
        for r in decisions:
            assert self.alloc.revocation
            fid, _aid, role, res, _ = by_id[r.task_id]
            assert (r.framework_id, r.role, r.resources) == (fid, role, res)
            assert not within(r.for_role, r.role) and not within(r.role, r.for_role)
            assert res.unreserved(), f"{r} gives nothing back to {r.for_role}"
            for name in res.names():
                for limited in self.guarantees:
                    if within(role, limited) and not within(r.for_role, limited):
                        lost[(limited, name)] = lost.get((limited, name), 0.0) + res.scalar(name, UNRESERVED)
        for (limited, name), amount in lost.items():
            g = self.guarantees[limited].scalar(name)
            if g > 0 and amount > 0:
                after = self.consumption(limited, name) - amount
                assert after >= g - 1e-6, f"{limited} taken below its guarantee of {name}: {after} < {g}"
        if carry_out:
            for r in decisions:
                t = by_id[r.task_id]
                self.tasks.remove(t)
                self.alloc.recover_resources(t[0], t[1], t[3], None, self.now, role=t[2])
            self.cycle()

    # --------------------------------------------------------------- invariants
    @invariant()
    def agents_never_overcommitted(self) -> None:
        for agent_id, total in self.agents.items():
            held = self.held_on(agent_id)
            together = Resources.empty()
            for h in held:
                together = together + h
            assert total.contains(together)
            assert port_count(together) == sum(port_count(h) for h in held)

    @invariant()
    def limits_hold(self) -> None:
        """Consumption (reservations included) never goes above a limit: only what was already there when the
        limit was set (or came with an agent's static reservations) may exceed it, and only ever less."""
        for (limited, name), allow in list(self.allowance.items()):
            now = self.consumption(limited, name)
            assert now <= allow + 1e-6, f"{limited} consumes {now} {name}, more than its limit allows ({allow})"
            self.allowance[(limited, name)] = max(self.limits[limited].scalar(name), now)

    @invariant()
    def refused_resources_are_kept_only_while_a_filter_refers_to_them(self) -> None:
        for alloc in (self.alloc.incremental, self.alloc.full):
            slots = [
                slot
                for fw in alloc._frameworks.values()
                for per_agent in fw.filters.values()
                for slot in per_agent.refused.values()
                if type(slot) is int
            ]
            book = alloc._refusals.refused
            assert sum(book.refs.values()) == len(slots) and set(book.objects) == set(slots)

    @invariant()
    def allocator_agrees_with_model(self) -> None:
        for fid in self.frameworks:
            mine = Resources.empty()
            for o in self.offers:
                if o.framework_id == fid:
                    mine = mine + o.resources
            for t in self.tasks:
                if t[0] == fid:
                    mine = mine + t[3]
            assert self.alloc.allocated(fid) == mine


TestAllocatorMachine = AllocatorMachine.TestCase
TestAllocatorMachine.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)


# ------------------------------------------------------------------------------------------- long-run fairness
@given(
    wa=st.sampled_from([1.0, 2.0, 3.0]),
    wb=st.sampled_from([1.0, 2.0]),
    n=st.integers(12, 60),
    cpus=st.integers(1, 8),
)
@settings(max_examples=40, deadline=None)
def test_weights_are_honoured_with_endless_demand(wa: float, wb: float, n: int, cpus: int) -> None:
    """Two roles, weights wa:wb, frameworks that take everything: dominant shares end in the ratio wa:wb, within
    one agent's share."""
    alloc = HierarchicalAllocator()
    total = Resources.empty()
    for i in range(n):
        res = P(f"cpus:{cpus};mem:{cpus * 1024}")
        total = total + res
        alloc.add_agent(f"a{i}", res, {})
    alloc.add_framework("fa", ["a"], {})
    alloc.add_framework("fb", ["b"], {})
    alloc.update_weights({"a": wa, "b": wb})
    for t in range(3):
        alloc.allocate(float(t))  # endless demand: every offer is kept
    sa = alloc.allocated("fa").dominant_share(total)
    sb = alloc.allocated("fb").dominant_share(total)
    assert sa + sb == pytest.approx(1.0)
    one_agent = 1 / n
    assert abs(sa / wa - sb / wb) <= one_agent / min(wa, wb) + 1e-9
    assert sa / sb == pytest.approx(wa / wb, abs=2 * one_agent * (wa + wb) / min(wa, wb) / min(sa, sb) * max(sa, sb))


@given(
    weights=st.tuples(st.sampled_from([1.0, 2.0]), st.sampled_from([1.0, 2.0])),
    tasks=st.integers(30, 80),
)
@settings(max_examples=20, deadline=None)
def test_weights_honoured_as_tasks_come_and_go(weights: tuple[float, float], tasks: int) -> None:
    """Endless demand of small tasks that end now and then: over the run, dominant shares stay near wa:wb."""
    alloc = HierarchicalAllocator()
    total = Resources.empty()
    for i in range(6):
        res = P("cpus:8;mem:8192")
        total = total + res
        alloc.add_agent(f"a{i}", res, {})
    alloc.add_framework("fa", ["a"], {})
    alloc.add_framework("fb", ["b"], {})
    alloc.update_weights({"a": weights[0], "b": weights[1]})
    task = P("cpus:1;mem:1024")
    running: list[tuple[str, str]] = []
    for t in range(tasks):
        for a in alloc.allocate(float(t)):
            pool = a.resources
            while pool.contains(task):
                running.append((a.framework_id, a.agent_id))
                pool = pool - task
            alloc.recover_resources(a.framework_id, a.agent_id, pool, None, float(t), role=a.role)
        if running and t % 3 == 0:  # the oldest task ends
            fid, aid = running.pop(0)
            alloc.recover_resources(fid, aid, task, None, float(t))
    sa = alloc.allocated("fa").dominant_share(total) / weights[0]
    sb = alloc.allocated("fb").dominant_share(total) / weights[1]
    assert abs(sa - sb) <= 2 * 8 / 48 / min(weights)  # within a couple of agents' worth


@pytest.mark.parametrize("policy", ["drf", "fair", "random"])
def test_one_role_many_frameworks_spread(policy: str) -> None:
    """Frameworks of one role with endless demand share the agents evenly (random: roughly)."""
    alloc = HierarchicalAllocator(sorter=make_sorter(policy))
    for i in range(60):
        alloc.add_agent(f"a{i:02}", P("cpus:4;mem:4096"), {})
    for f in range(4):
        alloc.add_framework(f"f{f}", ["r"], {})
    counts: dict[str, int] = {}
    for a in alloc.allocate(0):
        counts[a.framework_id] = counts.get(a.framework_id, 0) + 1
    if policy == "random":
        assert len(counts) == 4 and min(counts.values()) >= 5
    else:
        assert counts == {"f0": 15, "f1": 15, "f2": 15, "f3": 15}


# ------------------------------------------------------------------------------------------- revocation decisions
@given(
    holders=st.lists(st.sampled_from(["a", "b", "c/x", "c/y"]), min_size=2, max_size=10),
    starved=st.sampled_from(["s", "c/z"]),
    guarantee=st.sampled_from([None, 2, 5, 12]),
    victim_guarantee=st.sampled_from([None, 3, 8]),
    weights=st.tuples(st.sampled_from([1.0, 2.0]), st.sampled_from([1.0, 3.0])),
    policy=st.sampled_from(["drf", "fair", "priority"]),
    split=st.sampled_from([1, 2, 4]),
    starts=st.randoms(use_true_random=False),
)
@settings(max_examples=80, deadline=None)
def test_revocation_decisions(
    holders: list[str],
    starved: str,
    guarantee: int | None,
    victim_guarantee: int | None,
    weights: tuple[float, float],
    policy: str,
    split: int,
    starts: Any,
) -> None:
    """A full cluster of tasks started in random order, a role with work waiting: the tasks picked belong to
    roles beside the starved one, oldest first within each victim, never take a victim below its guarantee nor
    (for a fair share alone) below its fair share, and each was needed when it was picked."""
    alloc = HierarchicalAllocator(sorter=make_sorter(policy), revocation=True)
    tasks: list[AllocatedTask] = []
    held: dict[str, Resources] = {}
    piece = P(f"cpus:{4 // split};mem:{4096 // split}")
    for i, role in enumerate(holders):
        alloc.add_agent(f"a{i}", P("cpus:4;mem:4096"), {})
        if role not in held:
            alloc.add_framework(f"h-{role}", [role], {})
            alloc.suppress_offers(f"h-{role}")  # content with what they hold: no work waiting
        for j in range(split):
            alloc.add_used(f"h-{role}", f"a{i}", piece, role=role)
            tasks.append(AllocatedTask(f"h-{role}", f"t{i}.{j}", f"a{i}", role, piece, starts.random()))
        held[role] = held.get(role, Resources.empty()) + P("cpus:4;mem:4096")
    if victim_guarantee is not None:
        alloc.update_quota("a", Quota(Resources.of(cpus=victim_guarantee)))
    if guarantee is not None:
        alloc.update_quota(starved, Quota(Resources.of(cpus=guarantee)))
    alloc.update_weights({"a": weights[0], starved.split("/")[0]: weights[1]})
    alloc.add_framework("waiting", [starved], {})
    decisions = alloc.revocations(0, tasks)

    by_id = {t.task_id: t for t in tasks}
    assert len({r.task_id for r in decisions}) == len(decisions)
    asked: dict[str, Resources] = {}
    for r in decisions:
        assert r.for_role == starved
        assert not within(starved, r.role) and not within(r.role, starved)
        asked[r.role] = asked.get(r.role, Resources.empty()) + r.resources
    for role, amount in asked.items():
        mine = [t for t in tasks if t.role == role]
        picked = sorted(by_id[r.task_id].started_at for r in decisions if r.role == role)
        assert held[role].contains(amount)
        if victim_guarantee is None or not within(role, "a"):
            # nothing protects a task but its role's share: the oldest go first
            oldest = sorted(t.started_at for t in mine)[: len(picked)]
            if policy == "priority":
                assert picked == oldest
    if victim_guarantee is not None and "a" in asked:
        left = held["a"] - asked["a"]
        assert left.scalar("cpus") >= victim_guarantee - 1e-6
    if guarantee is not None and policy == "priority":  # a guarantee alone: every kill was needed
        cpus = [r.resources.scalar("cpus") for r in decisions]
        assert sum(cpus[:-1]) < guarantee if cpus else True
    if guarantee is None and victim_guarantee is None and policy != "priority":
        # fair shares alone: no top-level victim goes below its weighted fair share
        competing = {role.split("/")[0] for role in held} | {starved.split("/")[0]}
        weight = {"a": weights[0], starved.split("/")[0]: weights[1]}
        total_w = sum(weight.get(r, 1.0) for r in competing)
        cluster = 4.0 * len(holders)
        for victim in {r.role.split("/")[0] for r in decisions}:
            cpus = sum(res.scalar("cpus") for role, res in held.items() if within(role, victim))
            cpus -= sum(amount.scalar("cpus") for role, amount in asked.items() if within(role, victim))
            assert cpus / cluster >= weight.get(victim, 1.0) / total_w - 1e-6
    if policy == "priority" and guarantee is None:
        assert decisions == []  # no fair-share revocation without a fair-share policy
