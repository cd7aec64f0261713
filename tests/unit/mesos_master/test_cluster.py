"""`Master` core with a real `HierarchicalAllocator` and a fake clock; effects are read from the outbox."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from aiomesos.v1 import agent_pb2, scheduler_pb2
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.allocator import DRFSorter, HierarchicalAllocator, PrioritySorter, Quota, Sorter
from mesos_master.cluster import CallError, Drained, Master, UnknownIdError
from mesos_master.registry import (
    AdmitAgent,
    MarkAgentUnreachable,
    PutFramework,
    RegistryState,
    RemoveAgent,
    RemoveFramework,
)
from scheduler_sdk.resources import Resources

E = scheduler_pb2.Event
M = agent_pb2.MasterMessage
S = tpb.TaskStatus
Call = scheduler_pb2.Call
P = Resources.parse

AGENT_RES = "cpus:4;mem:4096;ports:[31000-31009]"


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class World:
    """A master, its clock, and helpers to drive it and read what it sends."""

    def __init__(
        self,
        *,
        offer_timeout: float | None = None,
        recovered: RegistryState | None = None,
        allocator: HierarchicalAllocator | None = None,
    ) -> None:
        self.clock = Clock()
        self.allocator = allocator if allocator is not None else HierarchicalAllocator(allocation_interval=1.0)
        self.master = Master("M", self.allocator, clock=self.clock, offer_timeout=offer_timeout, recovered=recovered)

    # ------------------------------------------------------------------ driving
    def subscribe(self, name: str = "fw", *, fid: str = "", roles: Iterable[str] = (), **kw: object) -> str:
        return self.master.subscribe(rpb.FrameworkInfo(id=fid, name=name, roles=list(roles), **kw))  # type: ignore[arg-type]

    def register(
        self,
        hostname: str = "h1",
        resources: str = AGENT_RES,
        *,
        aid: str = "",
        tasks: Iterable[agent_pb2.AgentTask] = (),
    ) -> str:
        info = rpb.AgentInfo(id=aid, hostname=hostname, resources=P(resources).to_proto())
        return self.master.register_agent(agent_pb2.AgentMessage.Register(agent_info=info, tasks=list(tasks)))

    def drain(self) -> Drained:
        return self.master.outbox.drain()

    def offers(self) -> dict[str, list[scheduler_pb2.Offer]]:
        """Run one allocation cycle and return the offers by framework (draining the outbox)."""
        self.master.allocate()
        out: dict[str, list[scheduler_pb2.Offer]] = {}
        for fid, events in self.drain().to_frameworks.items():
            for ev in events:
                if ev.type == E.OFFERS:
                    out.setdefault(fid, []).extend(ev.offers.offers)
        return out

    def accept(
        self,
        fid: str,
        offer_ids: Iterable[str],
        tasks: Iterable[tpb.TaskInfo] = (),
        refuse: float | None = None,
    ) -> None:
        call = Call.Accept(
            offer_ids=list(offer_ids),
            operations=[
                scheduler_pb2.Offer_Operation(
                    type=scheduler_pb2.Offer_Operation.LAUNCH,
                    launch=scheduler_pb2.Offer_Operation.Launch(task_infos=list(tasks)),
                )
            ],
        )
        if refuse is not None:
            call.filters.refuse_seconds = refuse
        self.master.accept(fid, call)

    def decline(self, fid: str, offer_ids: Iterable[str], refuse: float | None = None) -> None:
        call = Call.Decline(offer_ids=list(offer_ids))
        if refuse is not None:
            call.filters.refuse_seconds = refuse
        self.master.decline(fid, call)

    def launch(self, fid: str, *task_ids: str, res: str = "cpus:1;mem:128") -> tuple[str, scheduler_pb2.Offer]:
        """Take the framework's next offer and launch tasks on it; returns the agent id and the offer."""
        [offer] = self.offers()[fid]
        self.accept(fid, [offer.id], [task(t, res) for t in task_ids])
        return offer.agent_id, offer

    def agent_update(
        self, aid: str, fid: str, task_id: str, state: int, uuid: bytes = b"", **kw: object
    ) -> tpb.TaskStatus:
        status = tpb.TaskStatus(
            task_id=task_id,
            state=state,
            uuid=uuid,
            agent_id=aid,
            source=S.SOURCE_EXECUTOR,
            **kw,  # type: ignore[arg-type]
        )
        self.master.status_updates(aid, [agent_pb2.AgentMessage.StatusUpdate(framework_id=fid, status=status)])
        return status


def task(task_id: str, res: str = "cpus:1;mem:128", cmd: str = "sleep 10", agent_id: str = "") -> tpb.TaskInfo:
    return tpb.TaskInfo(
        task_id=task_id,
        name=task_id,
        agent_id=agent_id,
        resources=P(res).to_proto() if res else [],
        command=rpb.CommandInfo(value=cmd, shell=True),
    )


def events(d: Drained, fid: str, kind: int | None = None) -> list[scheduler_pb2.Event]:
    return [e for e in d.to_frameworks.get(fid, []) if kind is None or e.type == kind]


def updates(d: Drained, fid: str) -> list[tpb.TaskStatus]:
    evs = events(d, fid, E.UPDATE)
    assert len(evs) <= 1, "status updates for one framework must come as one UPDATE event"
    return list(evs[0].update.statuses) if evs else []


def messages(d: Drained, aid: str, kind: int | None = None) -> list[agent_pb2.MasterMessage]:
    return [m for m in d.to_agents.get(aid, []) if kind is None or m.type == kind]


def offered(offers: Iterable[scheduler_pb2.Offer]) -> Resources:
    total = Resources.empty()
    for o in offers:
        total = total + Resources.from_proto(o.resources)
    return total


@pytest.fixture
def w() -> World:
    return World()


# ============================================================================================ frameworks
def test_subscribe_assigns_id_and_emits_subscribed(w: World) -> None:
    fid = w.subscribe("batch")
    assert fid.startswith("M-F")
    d = w.drain()
    [ev] = events(d, fid)
    assert ev.type == E.SUBSCRIBED
    assert ev.subscribed.framework_id == fid
    assert ev.subscribed.master_id == "M"
    [write] = d.writes
    assert isinstance(write, PutFramework)
    info = write.info
    assert isinstance(info, rpb.FrameworkInfo)
    assert (info.id, info.name, info.user) == (fid, "batch", "")
    assert w.subscribe("other") != fid


def test_subscribe_does_not_modify_the_callers_info(w: World) -> None:
    info = rpb.FrameworkInfo(name="x")
    w.master.subscribe(info)
    assert info.id == "" and info.user == ""


def test_resubscribe_keeps_the_id(w: World) -> None:
    fid = w.subscribe("batch")
    w.drain()
    w.master.disconnect_framework(fid)
    w.clock.now += 5
    assert w.subscribe("batch", fid=fid) == fid
    assert len(w.master.frameworks) == 1
    assert w.master.frameworks[fid].connected
    assert w.master.frameworks[fid].reregistered_time == w.clock.now
    [ev] = events(w.drain(), fid)
    assert ev.type == E.SUBSCRIBED and ev.subscribed.framework_id == fid


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "roles": ["a", "a"]}, "repeat"),
        ({"name": "x", "roles": [""]}, "empty"),
        ({"name": "x", "roles": ["a b"]}, "invalid role"),
        ({"name": "x", "roles": ["eng/../x"]}, "invalid role"),
        ({"name": "x", "failover_timeout": -1}, "failover_timeout"),
    ],
)
def test_subscribe_rejects_bad_framework_info(w: World, kw: dict[str, object], fragment: str) -> None:
    with pytest.raises(CallError, match=fragment):
        w.master.subscribe(rpb.FrameworkInfo(**kw))  # type: ignore[arg-type]
    assert not w.master.frameworks
    assert not w.master.outbox


def test_calls_for_unknown_framework_raise(w: World) -> None:
    with pytest.raises(CallError, match="unknown framework"):
        w.decline("ghost", ["O1"])
    with pytest.raises(CallError, match="unknown framework"):
        w.master.teardown("ghost")


# ============================================================================================ agents
def test_register_agent_assigns_id_and_answers_registered(w: World) -> None:
    aid = w.register()
    assert aid.startswith("M-S")
    d = w.drain()
    [msg] = messages(d, aid)
    assert msg.type == M.REGISTERED
    assert (msg.registered.agent_id, msg.registered.master_id) == (aid, "M")
    [write] = d.writes
    assert isinstance(write, AdmitAgent)
    info = write.info
    assert isinstance(info, rpb.AgentInfo) and info.id == aid
    assert w.master.agents[aid].total == P(AGENT_RES)


def test_reregister_with_same_id_keeps_it(w: World) -> None:
    aid = w.register()
    w.master.disconnect_agent(aid)
    w.drain()
    assert w.register(aid=aid) == aid
    assert list(w.master.agents) == [aid]
    assert w.master.agents[aid].connected
    [msg] = messages(w.drain(), aid)
    assert msg.registered.agent_id == aid


@pytest.mark.parametrize(
    ("hostname", "resources", "fragment"),
    [("", AGENT_RES, "hostname"), ("h", "", "must not be empty")],
)
def test_register_agent_rejects_bad_info(w: World, hostname: str, resources: str, fragment: str) -> None:
    with pytest.raises(CallError, match=fragment):
        w.register(hostname, resources)


def test_register_agent_rejects_bad_resources(w: World) -> None:
    bad = rpb.Resource(name="cpus", type=rpb.Value.SCALAR, scalar=rpb.Value.Scalar(value=-1))
    reg = agent_pb2.AgentMessage.Register(agent_info=rpb.AgentInfo(hostname="h", resources=[bad]))
    with pytest.raises(CallError, match=r"agent_info\.resources"):
        w.master.register_agent(reg)


# ============================================================================================ offers
def test_allocate_sends_one_offers_event_per_framework(w: World) -> None:
    a1 = w.register("h1")
    a2 = w.register("h2")
    f1 = w.subscribe("one")
    w.drain()
    assert w.master.allocate() == 2
    d = w.drain()
    [ev] = events(d, f1)
    assert ev.type == E.OFFERS
    assert len(ev.offers.offers) == 2
    assert {o.agent_id for o in ev.offers.offers} == {a1, a2}
    assert {o.hostname for o in ev.offers.offers} == {"h1", "h2"}
    for o in ev.offers.offers:
        assert o.framework_id == f1
        assert o.allocation_role == "*"
        assert Resources.from_proto(o.resources) == P(AGENT_RES)
        assert o.id in w.master.offers
    assert len({o.id for o in ev.offers.offers}) == 2


def test_two_frameworks_get_separate_offers_events(w: World) -> None:
    w.register("h1")
    w.register("h2")
    f1, f2 = w.subscribe("one"), w.subscribe("two")
    w.drain()
    w.master.allocate()
    d = w.drain()
    assert [e.type for e in events(d, f1)] == [E.OFFERS]
    assert [e.type for e in events(d, f2)] == [E.OFFERS]
    assert len(events(d, f1)[0].offers.offers) == len(events(d, f2)[0].offers.offers) == 1


def test_no_offers_to_disconnected_or_suppressed_framework(w: World) -> None:
    w.register()
    f1 = w.subscribe()
    w.master.suppress(f1)
    assert w.offers() == {}
    w.master.revive(f1)
    assert list(w.offers()) == [f1]
    w.master.disconnect_framework(f1)  # its offer is rescinded quietly and recovered
    assert not w.master.offers
    assert w.offers() == {}


def test_valid_accept_runs_tasks_and_recovers_the_rest(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    [offer] = w.offers()[fid]
    w.accept(fid, [offer.id], [task("t1", "cpus:1;mem:128"), task("t2", "cpus:2;mem:256;ports:[31000-31001]")])
    d = w.drain()
    [run] = messages(d, aid)
    assert run.type == M.RUN_TASKS
    assert [r.task.task_id for r in run.run_tasks.tasks] == ["t1", "t2"]
    assert all(r.task.agent_id == aid for r in run.run_tasks.tasks)
    assert all(r.framework.id == fid for r in run.run_tasks.tasks)
    assert updates(d, fid) == []
    assert offer.id not in w.master.offers
    assert set(w.master.frameworks[fid].tasks) == {"t1", "t2"}
    assert w.master.frameworks[fid].tasks["t1"].state == tpb.TASK_STAGING
    # the leftover came back (filtered for 5 s by default); once revived it is offered again
    w.master.revive(fid)
    [again] = w.offers()[fid]
    assert Resources.from_proto(again.resources) == P("cpus:1;mem:3712;ports:[31002-31009]")


def test_accept_default_refusal_filters_leftover_for_five_seconds(w: World) -> None:
    w.register()
    fid = w.subscribe()
    [offer] = w.offers()[fid]
    w.accept(fid, [offer.id], [task("t1")])
    w.clock.now += 4.9
    assert w.offers() == {}
    w.clock.now += 0.1
    assert list(w.offers()) == [fid]


def test_accept_with_no_tasks_is_a_decline(w: World) -> None:
    w.register()
    fid = w.subscribe()
    [offer] = w.offers()[fid]
    w.accept(fid, [offer.id], [], refuse=0)
    assert offered(w.offers()[fid]) == P(AGENT_RES)


def _reoffered_after_revive(w: World, fid: str) -> Resources:
    w.master.revive(fid)
    return offered(w.offers().get(fid, []))


def test_accept_unknown_offer_drops_tasks(w: World) -> None:
    w.register()
    fid = w.subscribe()
    [offer] = w.offers()[fid]
    w.accept(fid, ["no-such-offer"], [task("t1")])
    d = w.drain()
    [st] = updates(d, fid)
    assert (st.task_id, st.state, st.reason) == ("t1", tpb.TASK_DROPPED, S.REASON_INVALID_OFFERS)
    assert st.source == S.SOURCE_MASTER
    assert "no-such-offer" in st.message and "no longer valid" in st.message
    assert d.to_agents == {}
    assert offer.id in w.master.offers  # the real offer is untouched


def test_accept_same_offer_twice_drops_second(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    [offer] = w.offers()[fid]
    w.accept(fid, [offer.id], [task("t1")], refuse=0)
    w.drain()
    w.accept(fid, [offer.id], [task("t2")])
    d = w.drain()
    [st] = updates(d, fid)
    assert (st.task_id, st.state, st.reason) == ("t2", tpb.TASK_DROPPED, S.REASON_INVALID_OFFERS)
    assert offer.id in st.message
    assert messages(d, aid) == []
    assert "t2" not in w.master.frameworks[fid].tasks
    # only the first task holds resources
    assert _reoffered_after_revive(w, fid) == P(AGENT_RES) - P("cpus:1;mem:128")


def test_accept_offer_id_listed_twice_drops_and_recovers(w: World) -> None:
    w.register()
    fid = w.subscribe()
    [offer] = w.offers()[fid]
    w.accept(fid, [offer.id, offer.id], [task("t1")])
    [st] = updates(w.drain(), fid)
    assert (st.state, st.reason) == (tpb.TASK_DROPPED, S.REASON_INVALID_OFFERS)
    assert "appears twice" in st.message
    assert offer.id not in w.master.offers
    assert _reoffered_after_revive(w, fid) == P(AGENT_RES)


def test_accept_offers_from_two_agents_drops_and_recovers_both(w: World) -> None:
    a1, a2 = w.register("h1"), w.register("h2")
    fid = w.subscribe()
    offers = w.offers()[fid]
    assert len(offers) == 2
    w.accept(fid, [o.id for o in offers], [task("t1")])
    d = w.drain()
    [st] = updates(d, fid)
    assert (st.task_id, st.state, st.reason) == ("t1", tpb.TASK_DROPPED, S.REASON_INVALID_OFFERS)
    assert "different agents" in st.message and a1 in st.message and a2 in st.message
    assert d.to_agents == {}
    assert not w.master.offers
    again = w.offers()[fid]  # recovered without a filter
    assert {o.agent_id for o in again} == {a1, a2}


def test_accept_another_frameworks_offer_is_dropped(w: World) -> None:
    w.register()
    f1, f2 = w.subscribe("one"), w.subscribe("two")
    [offer] = w.offers()[f1]
    w.accept(f2, [offer.id], [task("t1")])
    [st] = updates(w.drain(), f2)
    assert (st.state, st.reason) == (tpb.TASK_DROPPED, S.REASON_INVALID_OFFERS)
    assert "another framework" in st.message
    assert offer.id in w.master.offers  # still f1's


def test_accept_without_offer_ids_is_dropped(w: World) -> None:
    fid = w.subscribe()
    w.accept(fid, [], [task("t1")])
    [st] = updates(w.drain(), fid)
    assert st.state == tpb.TASK_DROPPED and "at least one offer" in st.message


def test_task_asking_more_than_offered_is_task_error(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    [offer] = w.offers()[fid]
    w.accept(fid, [offer.id], [task("big", "cpus:5;mem:128")])
    d = w.drain()
    [st] = updates(d, fid)
    assert (st.task_id, st.state, st.reason) == ("big", tpb.TASK_ERROR, S.REASON_TASK_INVALID)
    assert "more resources than offered" in st.message
    assert messages(d, aid) == []
    assert _reoffered_after_revive(w, fid) == P(AGENT_RES)


def test_later_tasks_see_what_earlier_ones_took(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    [offer] = w.offers()[fid]
    w.accept(fid, [offer.id], [task("a", "cpus:3;mem:128"), task("b", "cpus:2;mem:128"), task("c", "cpus:1")])
    d = w.drain()
    [st] = updates(d, fid)
    assert (st.task_id, st.state) == ("b", tpb.TASK_ERROR)
    [run] = messages(d, aid, M.RUN_TASKS)
    assert [r.task.task_id for r in run.run_tasks.tasks] == ["a", "c"]


def test_duplicate_task_id_in_one_accept(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    [offer] = w.offers()[fid]
    w.accept(fid, [offer.id], [task("t1", "cpus:1"), task("t1", "cpus:2")])
    d = w.drain()
    [st] = updates(d, fid)
    assert (st.task_id, st.state, st.reason) == ("t1", tpb.TASK_ERROR, S.REASON_TASK_INVALID)
    assert "duplicate" in st.message
    [run] = messages(d, aid, M.RUN_TASKS)
    assert len(run.run_tasks.tasks) == 1
    assert w.master.frameworks[fid].tasks["t1"].resources == P("cpus:1")
    assert _reoffered_after_revive(w, fid) == P(AGENT_RES) - P("cpus:1")


def test_task_id_of_an_active_task_is_a_duplicate(w: World) -> None:
    w.register()
    fid = w.subscribe()
    w.launch(fid, "t1")
    w.master.revive(fid)
    [offer] = w.offers()[fid]
    w.accept(fid, [offer.id], [task("t1")])
    [st] = updates(w.drain(), fid)
    assert (st.state, st.reason) == (tpb.TASK_ERROR, S.REASON_TASK_INVALID)


@pytest.mark.parametrize(
    ("info", "fragment"),
    [
        (task("t1", cmd=""), "no command"),
        (task("", "cpus:1"), "task_id must not be empty"),
        (task("t1", ""), "uses no resources"),
        (task("t1", "ports:[31000-31000]"), "uses no resources"),
        (task("t1", agent_id="elsewhere"), "names agent 'elsewhere'"),
    ],
    ids=["empty-command", "empty-id", "no-resources", "ports-only", "wrong-agent"],
)
def test_invalid_task_is_task_error_and_offer_comes_back(w: World, info: tpb.TaskInfo, fragment: str) -> None:
    aid = w.register()
    fid = w.subscribe()
    [offer] = w.offers()[fid]
    w.accept(fid, [offer.id], [info])
    d = w.drain()
    [st] = updates(d, fid)
    assert (st.state, st.reason) == (tpb.TASK_ERROR, S.REASON_TASK_INVALID)
    assert fragment in st.message
    assert st.agent_id == aid
    assert messages(d, aid) == []
    assert not w.master.frameworks[fid].tasks
    assert _reoffered_after_revive(w, fid) == P(AGENT_RES)


def test_unsupported_operation_is_an_error_event(w: World) -> None:
    w.register()
    fid = w.subscribe()
    [offer] = w.offers()[fid]
    call = Call.Accept(offer_ids=[offer.id], operations=[scheduler_pb2.Offer_Operation(type=0)])
    w.master.accept(fid, call)
    [err] = events(w.drain(), fid, E.ERROR)
    assert "unsupported offer operation" in err.error.message


def test_decline_with_refuse_seconds_filters_agent_for_that_framework_only(w: World) -> None:
    aid = w.register()
    f1 = w.subscribe("one")
    f2 = w.subscribe("two")
    offers = w.offers()
    assert list(offers) == [f1]  # tie on share: the whole agent goes to the first framework
    w.decline(f1, [offers[f1][0].id], refuse=30)
    assert offers[f1][0].id not in w.master.offers
    w.clock.now += 1
    [o2] = w.offers()[f2]
    assert o2.agent_id == aid
    w.decline(f2, [o2.id], refuse=0)
    w.clock.now += 28
    assert list(w.offers()) == [f2]  # still filtered for f1
    w.decline(f2, [next(iter(w.master.offers))], refuse=0)
    w.clock.now += 1.5  # past f1's filter (30 s)
    assert list(w.offers()) == [f1]


def test_decline_without_filters_uses_default_refusal(w: World) -> None:
    w.register()
    fid = w.subscribe()
    [offer] = w.offers()[fid]
    w.decline(fid, [offer.id])
    w.clock.now += 4.99
    assert w.offers() == {}
    w.clock.now += 0.01
    assert list(w.offers()) == [fid]


def test_decline_is_idempotent(w: World) -> None:
    w.register()
    fid = w.subscribe()
    [offer] = w.offers()[fid]
    w.decline(fid, [offer.id, offer.id, "unknown"], refuse=0)
    assert offered(w.offers()[fid]) == P(AGENT_RES)


def test_offer_timeout_rescinds_in_tick() -> None:
    w = World(offer_timeout=10)
    w.register()
    fid = w.subscribe()
    [offer] = w.offers()[fid]
    w.clock.now += 9.9
    w.master.tick()
    assert not w.drain().to_frameworks
    w.clock.now += 0.1
    w.master.tick()
    [ev] = events(w.drain(), fid)
    assert ev.type == E.RESCIND
    assert list(ev.rescind.offer_ids) == [offer.id]
    assert offer.id not in w.master.offers
    # recovered without a filter: offered again
    assert offered(w.offers()[fid]) == P(AGENT_RES)


# ============================================================================================ status updates
def test_status_updates_reach_framework_as_one_update_event(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    w.launch(fid, "t1", "t2")
    w.drain()
    s1 = tpb.TaskStatus(task_id="t1", state=tpb.TASK_RUNNING, uuid=b"u1", agent_id=aid)
    s2 = tpb.TaskStatus(task_id="t2", state=tpb.TASK_RUNNING, uuid=b"u2", agent_id=aid)
    U = agent_pb2.AgentMessage.StatusUpdate
    w.master.status_updates(aid, [U(framework_id=fid, status=s1), U(framework_id=fid, status=s2)])
    d = w.drain()
    [ev] = events(d, fid)
    assert ev.type == E.UPDATE
    assert list(ev.update.statuses) == [s1, s2]
    assert w.master.frameworks[fid].tasks["t1"].state == tpb.TASK_RUNNING


def test_an_agent_cannot_speak_for_a_task_on_another_agent(w: World) -> None:
    real = w.register("h1")
    fid = w.subscribe()
    w.launch(fid, "t1")
    spoofer = w.register("h2")
    w.drain()
    w.agent_update(spoofer, fid, "t1", tpb.TASK_FINISHED, b"fake")
    d = w.drain()
    assert updates(d, fid) == []  # the framework hears nothing
    assert w.master.frameworks[fid].tasks["t1"].state == tpb.TASK_STAGING
    assert messages(d, spoofer) == []  # and the spoofer gets no acknowledgement
    w.agent_update(real, fid, "t1", tpb.TASK_RUNNING, b"u1")
    assert [u.state for u in updates(w.drain(), fid)] == [tpb.TASK_RUNNING]


def test_acknowledge_forwards_to_agent_and_terminal_task_completes(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    w.launch(fid, "t1")
    w.agent_update(aid, fid, "t1", tpb.TASK_RUNNING, b"u1")
    w.drain()
    w.master.acknowledge(fid, [tpb.Acknowledgement(agent_id=aid, task_id="t1", uuid=b"u1")])
    d = w.drain()
    assert fid not in d.to_frameworks
    [ack] = messages(d, aid)
    assert ack.type == M.ACKNOWLEDGE
    [a] = ack.acknowledge.acknowledgements
    assert (a.agent_id, a.task_id, a.uuid, a.framework_id) == (aid, "t1", b"u1", fid)
    assert "t1" in w.master.frameworks[fid].tasks  # running: stays

    w.agent_update(aid, fid, "t1", tpb.TASK_FINISHED, b"u2")
    assert "t1" in w.master.frameworks[fid].tasks  # terminal but not acknowledged yet
    w.master.acknowledge(fid, [tpb.Acknowledgement(task_id="t1", uuid=b"u2")])  # agent id from the task
    d = w.drain()
    [ack] = messages(d, aid, M.ACKNOWLEDGE)
    assert ack.acknowledge.acknowledgements[0].agent_id == aid
    fw = w.master.frameworks[fid]
    assert "t1" not in fw.tasks
    assert [t.task_id for t in fw.completed_tasks] == ["t1"]
    assert (fid, "t1") not in w.master.agents[aid].tasks


def test_acknowledge_of_an_old_update_does_not_complete_task(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    w.launch(fid, "t1")
    w.agent_update(aid, fid, "t1", tpb.TASK_RUNNING, b"u1")
    w.agent_update(aid, fid, "t1", tpb.TASK_FAILED, b"u2")
    w.master.acknowledge(fid, [tpb.Acknowledgement(agent_id=aid, task_id="t1", uuid=b"u1")])
    assert "t1" in w.master.frameworks[fid].tasks


def test_acknowledge_without_uuid_raises(w: World) -> None:
    fid = w.subscribe()
    with pytest.raises(CallError, match="no uuid"):
        w.master.acknowledge(fid, [tpb.Acknowledgement(task_id="t1")])


def test_terminal_update_frees_resources(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    w.launch(fid, "t1", res="cpus:4;mem:4096")  # takes everything but the ports
    w.master.revive(fid)
    assert w.offers() == {}  # ports alone are below the minimum allocatable
    w.agent_update(aid, fid, "t1", tpb.TASK_FAILED, b"u1")  # freed at once, before the ack
    assert offered(w.offers()[fid]) == P(AGENT_RES)


def test_terminal_state_is_never_left(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    w.launch(fid, "t1")
    w.agent_update(aid, fid, "t1", tpb.TASK_FINISHED, b"u1")
    w.agent_update(aid, fid, "t1", tpb.TASK_RUNNING, b"u2")
    assert w.master.frameworks[fid].tasks["t1"].state == tpb.TASK_FINISHED


# ============================================================================================ kill, reconcile
def test_kill_unknown_task_answers_lost_reconciliation(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    w.drain()
    w.master.kill(fid, Call.Kill(task_id="nope"))
    d = w.drain()
    [st] = updates(d, fid)
    assert (st.task_id, st.state, st.reason) == ("nope", tpb.TASK_LOST, S.REASON_RECONCILIATION)
    assert st.source == S.SOURCE_MASTER
    assert messages(d, aid) == []
    w.master.kill(fid, Call.Kill(task_id="nope", agent_id=aid))  # on a known agent: still LOST
    [st] = updates(w.drain(), fid)
    assert st.state == tpb.TASK_LOST


def test_kill_unknown_task_partition_aware(w: World) -> None:
    aid = w.register()
    cap = rpb.FrameworkInfo.Capability(type=rpb.FrameworkInfo.Capability.PARTITION_AWARE)
    fid = w.master.subscribe(rpb.FrameworkInfo(name="pa", capabilities=[cap]))
    w.drain()
    w.master.kill(fid, Call.Kill(task_id="nope"))
    w.master.kill(fid, Call.Kill(task_id="nope", agent_id=aid))
    assert [s.state for s in updates(w.drain(), fid)] == [tpb.TASK_UNKNOWN, tpb.TASK_GONE]


def test_kill_known_task_goes_to_its_agent(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    w.launch(fid, "t1")
    w.drain()
    w.master.kill(fid, Call.Kill(task_id="t1"))
    d = w.drain()
    [kill] = messages(d, aid)
    assert kill.type == M.KILL_TASKS
    assert [(k.framework_id, k.task_id) for k in kill.kill_tasks.tasks] == [(fid, "t1")]
    assert updates(d, fid) == []
    with pytest.raises(CallError, match="task_id"):
        w.master.kill(fid, Call.Kill())


def test_implicit_reconcile_returns_every_known_task(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    w.launch(fid, "t1", "t2", "t3")
    w.agent_update(aid, fid, "t2", tpb.TASK_RUNNING, b"u1")
    w.drain()
    w.master.reconcile(fid, [])
    sts = {s.task_id: s for s in updates(w.drain(), fid)}
    assert set(sts) == {"t1", "t2", "t3"}
    assert sts["t1"].state == tpb.TASK_STAGING
    assert sts["t2"].state == tpb.TASK_RUNNING
    assert all(s.reason == S.REASON_RECONCILIATION and s.agent_id == aid for s in sts.values())
    assert all(not s.uuid for s in sts.values())  # reconciliation answers need no ack


def test_explicit_reconcile(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    w.launch(fid, "t1", "t2")
    w.agent_update(aid, fid, "t2", tpb.TASK_FINISHED, b"u1")
    w.master.acknowledge(fid, [tpb.Acknowledgement(agent_id=aid, task_id="t2", uuid=b"u1")])
    w.drain()
    w.master.reconcile(fid, [Call.Reconcile.Task(task_id=t) for t in ("t1", "t2", "t9")])
    got = [(s.task_id, s.state) for s in updates(w.drain(), fid)]
    assert got == [("t1", tpb.TASK_STAGING), ("t2", tpb.TASK_FINISHED), ("t9", tpb.TASK_LOST)]


# ============================================================================================ teardown
def test_teardown_kills_tasks_shuts_framework_down_and_forgets_it(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    other = w.subscribe("other")
    w.launch(fid, "t1")
    w.drain()
    w.master.teardown(fid)
    d = w.drain()
    [shutdown] = messages(d, aid)
    assert shutdown.type == M.SHUTDOWN_FRAMEWORK
    assert shutdown.shutdown_framework.framework_id == fid
    assert RemoveFramework(fid) in d.writes
    assert fid in d.close_frameworks
    assert fid not in w.master.frameworks
    [done] = [f for f in w.master.completed_frameworks if f.id == fid]
    [t1] = done.completed_tasks
    assert t1.state == tpb.TASK_KILLED
    assert t1.latest() is not None and t1.latest().reason == S.REASON_FRAMEWORK_REMOVED  # type: ignore[union-attr]
    assert (fid, "t1") not in w.master.agents[aid].tasks
    with pytest.raises(CallError, match="torn down"):
        w.subscribe(fid=fid)
    # all its resources are free again, for the other framework
    assert offered(w.offers()[other]) == P(AGENT_RES)


def test_late_update_for_torn_down_framework_is_acked_and_shut_down(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    w.launch(fid, "t1")
    w.master.teardown(fid)
    w.drain()
    w.agent_update(aid, fid, "t1", tpb.TASK_KILLED, b"u9")
    d = w.drain()
    kinds = [m.type for m in messages(d, aid)]
    assert M.ACKNOWLEDGE in kinds and M.SHUTDOWN_FRAMEWORK in kinds
    assert fid not in d.to_frameworks


def test_failover_timeout_tears_disconnected_framework_down(w: World) -> None:
    fid = w.subscribe(failover_timeout=60)
    w.master.disconnect_framework(fid)
    w.drain()
    w.clock.now += 59
    w.master.tick()
    assert fid in w.master.frameworks
    w.clock.now += 1
    w.master.tick()
    assert fid not in w.master.frameworks
    d = w.drain()
    assert RemoveFramework(fid) in d.writes
    assert fid not in d.close_frameworks  # it had no stream open


# ============================================================================================ agent lifecycle
def test_agent_reregistering_without_a_known_task_loses_it(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    w.launch(fid, "t1", "t2")
    w.agent_update(aid, fid, "t1", tpb.TASK_RUNNING, b"u1")
    w.agent_update(aid, fid, "t2", tpb.TASK_RUNNING, b"u2")
    w.master.disconnect_agent(aid)
    w.drain()
    kept = agent_pb2.AgentTask(framework_id=fid, task=task("t2"), state=tpb.TASK_RUNNING)
    assert w.register(aid=aid, tasks=[kept]) == aid
    d = w.drain()
    [st] = updates(d, fid)
    assert (st.task_id, st.state, st.reason) == ("t1", tpb.TASK_LOST, S.REASON_AGENT_RESTARTED)
    assert st.agent_id == aid
    fw = w.master.frameworks[fid]
    assert set(fw.tasks) == {"t2"}
    assert [t.task_id for t in fw.completed_tasks] == ["t1"]
    # t1's resources are free again; t2's are not
    w.master.revive(fid)
    assert offered(w.offers()[fid]) == P(AGENT_RES) - P("cpus:1;mem:128")


def test_connected_agent_reregistering_rescinds_its_offers(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    [offer] = w.offers()[fid]
    w.register(aid=aid, resources="cpus:2;mem:1024")
    d = w.drain()
    [ev] = events(d, fid, E.RESCIND)
    assert list(ev.rescind.offer_ids) == [offer.id]
    assert offered(w.offers()[fid]) == P("cpus:2;mem:1024")


def test_disconnected_agent_gets_no_offers_and_becomes_unreachable(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    w.launch(fid, "t1")
    w.master.disconnect_agent(aid)
    w.drain()
    w.master.revive(fid)
    assert w.offers() == {}
    w.clock.now += w.master.agent_unreachable_timeout - 1
    w.master.tick()
    assert updates(w.drain(), fid) == []  # not yet
    w.clock.now += 1
    w.master.tick()
    d = w.drain()
    assert w.master.agents[aid].unreachable_at == w.clock.now  # kept, so that it may come back
    assert MarkAgentUnreachable(aid, w.clock.now) in d.writes
    [st] = updates(d, fid)  # not partition-aware: TASK_LOST
    assert (st.task_id, st.state, st.reason) == ("t1", tpb.TASK_LOST, S.REASON_AGENT_REMOVED)
    assert "unreachable" in st.message and st.source == S.SOURCE_MASTER
    [failure] = events(d, fid, E.FAILURE)
    assert failure.failure.agent_id == aid and not failure.failure.executor_id
    assert "t1" not in w.master.frameworks[fid].tasks


def _partition_aware(w: World, name: str) -> str:
    cap = rpb.FrameworkInfo.Capability(type=rpb.FrameworkInfo.Capability.PARTITION_AWARE)
    return w.master.subscribe(rpb.FrameworkInfo(name=name, capabilities=[cap]))


def test_unreachable_agent_returns_partition_aware_tasks_and_kills_the_lost_ones(w: World) -> None:
    aid = w.register(resources="cpus:4;mem:1024")
    aware, plain = _partition_aware(w, "aware"), w.subscribe("plain")
    w.master.suppress(plain)
    w.launch(aware, "a1")
    w.master.suppress(aware)
    w.master.revive(plain)
    w.launch(plain, "p1")
    for fid, t in ((aware, "a1"), (plain, "p1")):
        w.agent_update(aid, fid, t, tpb.TASK_RUNNING, uuid=t.encode())
    w.drain()
    w.master.disconnect_agent(aid)
    w.clock.now += w.master.agent_unreachable_timeout
    w.master.tick()
    d = w.drain()
    assert [(s.task_id, s.state) for s in updates(d, aware)] == [("a1", tpb.TASK_UNREACHABLE)]
    assert [(s.task_id, s.state) for s in updates(d, plain)] == [("p1", tpb.TASK_LOST)]
    assert w.master.frameworks[aware].tasks["a1"].state == tpb.TASK_UNREACHABLE  # kept for its framework
    # Reconciliation agrees: UNREACHABLE for the aware framework (known task, and an unknown one on that
    # agent), LOST for the other.
    w.master.reconcile(aware, [scheduler_pb2.Call.Reconcile.Task(task_id="a1", agent_id=aid)])
    w.master.reconcile(aware, [scheduler_pb2.Call.Reconcile.Task(task_id="zz", agent_id=aid)])
    w.master.reconcile(plain, [scheduler_pb2.Call.Reconcile.Task(task_id="p1", agent_id=aid)])
    d = w.drain()
    assert [s.state for s in updates(d, aware)] == [tpb.TASK_UNREACHABLE, tpb.TASK_UNREACHABLE]
    assert [s.state for s in updates(d, plain)] == [tpb.TASK_LOST]

    # The agent comes back with both tasks still running.
    back = [
        agent_pb2.AgentTask(framework_id=aware, task=task("a1"), state=tpb.TASK_RUNNING),
        agent_pb2.AgentTask(framework_id=plain, task=task("p1"), state=tpb.TASK_RUNNING),
    ]
    assert w.register(aid=aid, resources="cpus:4;mem:1024", tasks=back) == aid
    d = w.drain()
    [st] = updates(d, aware)
    assert (st.task_id, st.state, st.source) == ("a1", tpb.TASK_RUNNING, S.SOURCE_MASTER)
    assert updates(d, plain) == []  # LOST stays the last word
    kills = [k for m in messages(d, aid, agent_pb2.MasterMessage.KILL_TASKS) for k in m.kill_tasks.tasks]
    assert [(k.framework_id, k.task_id) for k in kills] == [(plain, "p1")]
    assert w.master.agents[aid].unreachable_at is None
    assert set(w.master.agents[aid].tasks) == {(aware, "a1")}
    # The killed task's updates end at the master, which acknowledges them itself.
    w.agent_update(aid, plain, "p1", tpb.TASK_KILLED, uuid=b"k")
    d = w.drain()
    assert updates(d, plain) == []
    assert [(a.task_id, a.uuid) for m in messages(d, aid) for a in _acks(m)] == [("p1", b"k")]
    assert w.master.agents[aid].lost_tasks == set()
    # Its resources were freed for good; the aware task's are still in use.
    w.master.revive(plain)
    assert offered(w.offers()[plain]) == P("cpus:3;mem:896")


def _acks(m: agent_pb2.MasterMessage) -> list[tpb.Acknowledgement]:
    return list(m.acknowledge.acknowledgements) if m.HasField("acknowledge") else []


def test_unreachable_agents_are_forgotten_after_their_max_age(w: World) -> None:
    aid = w.register()
    w.master.disconnect_agent(aid)
    w.clock.now += w.master.agent_unreachable_timeout
    w.master.tick()
    w.drain()
    w.clock.now += w.master.unreachable_agent_max_age
    w.master.tick()
    d = w.drain()
    assert aid not in w.master.agents and RemoveAgent(aid) in d.writes


def test_agents_known_from_the_registry_get_the_reregister_timeout() -> None:
    info = rpb.AgentInfo(id="S1", hostname="h1", resources=P(AGENT_RES).to_proto())
    gone = rpb.AgentInfo(id="S2", hostname="h2", resources=P(AGENT_RES).to_proto())
    w = World(recovered=RegistryState(agents={"S1": info, "S2": gone}, unreachable={"S2": 500.0}))
    assert w.master.agents["S2"].unreachable_at == 500.0  # still unreachable after the restart
    w.clock.now += w.master.agent_unreachable_timeout
    w.master.tick()
    assert w.master.agents["S1"].unreachable_at is None  # a new master waits longer for agents to find it
    w.clock.now += w.master.agent_reregister_timeout
    w.master.tick()
    d = w.drain()
    assert w.master.agents["S1"].unreachable_at == w.clock.now
    assert MarkAgentUnreachable("S1", w.clock.now) in d.writes


def test_framework_learned_from_agent_is_kept_until_it_can_resubscribe(w: World) -> None:
    orphan = agent_pb2.AgentTask(framework_id="F-old", task=task("t1"), state=tpb.TASK_RUNNING)
    w.register(aid="S-old", tasks=[orphan])
    assert not w.master.frameworks["F-old"].connected
    w.clock.now += 1
    w.master.tick()
    assert "F-old" in w.master.frameworks
    assert w.subscribe("old", fid="F-old") == "F-old"
    assert set(w.master.frameworks["F-old"].tasks) == {"t1"}


# ============================================================================================ found bugs
def test_resubscribe_with_new_roles_keeps_task_resources_allocated(w: World) -> None:
    w.register()
    fid = w.subscribe()
    w.launch(fid, "t1", res="cpus:1;mem:128")
    w.master.revive(fid)
    [offer] = w.offers()[fid]  # the rest of the agent is outstanding
    assert offered([offer]) == P(AGENT_RES) - P("cpus:1;mem:128")
    w.subscribe(fid=fid, roles=["eng"])  # resubscribe in another role
    w.drain()
    [again] = w.offers()[fid]
    assert offered([again]) == P(AGENT_RES) - P("cpus:1;mem:128")  # the task's cpu and mem stay in use


# ============================================================================================ revocation
def _full_of_batch(sorter: Sorter | None = None) -> tuple[World, str, str]:
    """The audit's case: an agent cpus:2;mem:1024 full of RUNNING batch tasks cpus:0.5;mem:256 (b0 oldest)."""
    w = World(allocator=HierarchicalAllocator(sorter=sorter, revocation=True))
    aid = w.register(resources="cpus:2;mem:1024")
    batch = w.subscribe("batch", roles=["batch"])
    [offer] = w.offers()[batch]
    tasks = [task(f"b{i}", "cpus:0.5;mem:256") for i in range(4)]
    for t in tasks:
        t.kill_policy.grace_period.nanoseconds = 3_000_000_000
    w.accept(batch, [offer.id], tasks)
    for i in range(4):
        w.clock.now += 1
        w.agent_update(aid, batch, f"b{i}", tpb.TASK_RUNNING, uuid=f"r{i}".encode())
    w.master.suppress(batch)
    w.drain()
    return w, aid, batch


def _kills(d: Drained, aid: str) -> list[M.KillTask]:
    return [k for m in messages(d, aid, M.KILL_TASKS) for k in m.kill_tasks.tasks]


@pytest.mark.parametrize("sorter", [PrioritySorter(), DRFSorter()], ids=["guarantee-only", "drf"])
def test_revocation_kills_tasks_bigger_than_the_need_in_one_resource(sorter: Sorter) -> None:
    """The guarantee is cpus:1;mem:64 and each batch task holds 256 MB: two tasks still go (the master used to
    kill none, forever, because no task fit inside the need in every resource)."""
    w, aid, batch = _full_of_batch(sorter)
    w.master.set_quota("prod", Quota(P("cpus:1;mem:64")))
    prod = w.subscribe("prod", roles=["prod"])
    w.drain()
    assert w.master.revoke() == 2
    d = w.drain()
    kills = _kills(d, aid)
    assert [k.task_id for k in kills] == ["b0", "b1"]  # least recently started first
    assert all(k.reason == S.REASON_CONTAINER_PREEMPTED for k in kills)
    assert all(k.kill_policy.grace_period.nanoseconds == 3_000_000_000 for k in kills)
    assert w.master.counters["tasks_revoked"] == 2
    # while the kills are in flight nothing more is killed, tick after tick
    for _ in range(3):
        w.clock.now += 0.5
        w.master.tick()
        assert _kills(w.drain(), aid) == []
    for i in (0, 1):
        w.agent_update(aid, batch, f"b{i}", tpb.TASK_KILLED, uuid=f"k{i}".encode(), reason=S.REASON_CONTAINER_PREEMPTED)
    assert w.master.revoke() == 0
    got = offered(w.offers()[prod])
    assert got.scalar("cpus") == 1 and got.scalar("mem") == 512


def test_revocation_spares_a_labelled_task_within_its_roles_guarantee() -> None:
    w, aid, batch = _full_of_batch(PrioritySorter())
    label = w.master.frameworks[batch].tasks["b0"].info.labels.labels.add()
    label.key, label.value = "aiomesos.non_revocable", "true"
    w.master.set_quota("prod", Quota(P("cpus:1;mem:64")))
    w.subscribe("prod", roles=["prod"])
    w.drain()
    assert w.master.revoke() == 2
    assert [k.task_id for k in _kills(w.drain(), aid)] == ["b0", "b1"]  # batch has no guarantee: no protection
    w2, aid2, batch2 = _full_of_batch(PrioritySorter())
    w2.master.set_quota("batch", Quota(P("cpus:0.5")))
    label = w2.master.frameworks[batch2].tasks["b0"].info.labels.labels.add()
    label.key, label.value = "aiomesos.non_revocable", "true"
    w2.master.set_quota("prod", Quota(P("cpus:1;mem:64")))
    w2.subscribe("prod", roles=["prod"])
    w2.drain()
    assert w2.master.revoke() == 2
    assert [k.task_id for k in _kills(w2.drain(), aid2)] == ["b1", "b2"]  # b0 fits within batch's guarantee


def test_revocation_is_off_without_the_flag() -> None:
    w = World()
    aid = w.register(resources="cpus:2;mem:1024")
    batch = w.subscribe("batch", roles=["batch"])
    w.launch(batch, "b0", res="cpus:2;mem:1024")
    w.agent_update(aid, batch, "b0", tpb.TASK_RUNNING, uuid=b"r")
    w.master.set_quota("prod", Quota(P("cpus:1")))
    w.subscribe("prod", roles=["prod"])
    assert w.master.revoke() == 0


# ============================================================================================ reservations and quota
def _reserve_op(res: str) -> scheduler_pb2.Offer_Operation:
    Op = scheduler_pb2.Offer_Operation
    return Op(type=Op.RESERVE, reserve=Op.Reserve(resources=P(res).to_proto()))


def _accept_ops(w: World, fid: str, offer_ids: Iterable[str], ops: list[scheduler_pb2.Offer_Operation]) -> None:
    w.master.accept(fid, Call.Accept(offer_ids=list(offer_ids), operations=ops))


def _errors(d: Drained, fid: str) -> list[str]:
    return [e.error.message for e in events(d, fid, E.ERROR)]


def test_operator_reservation_beyond_a_quota_limit_is_refused(w: World) -> None:
    aid = w.register(resources="cpus:8;mem:4096")
    w.master.set_quota("eng", Quota(limit=P("cpus:2")))
    with pytest.raises(CallError, match="over its quota limit"):
        w.master.operator_reserve(aid, P("cpus(eng):6"))
    with pytest.raises(CallError, match="'eng' over its quota limit"):
        w.master.operator_reserve(aid, P("cpus(eng/prod):3"))  # a child counts toward its parent's limit
    w.master.operator_reserve(aid, P("cpus(eng):2"))
    with pytest.raises(CallError, match="cpus: 0 left"):
        w.master.operator_reserve(aid, P("cpus(eng):0.5"))
    assert w.master.reservations[aid] == P("cpus(eng):2")


def test_framework_reserves_only_for_the_offers_allocation_role(w: World) -> None:
    w.register(resources="cpus:8;mem:4096")
    w.master.set_quota("eng", Quota(limit=P("cpus:2")))
    fid = w.subscribe("multi", roles=["eng", "ads"])
    offers = w.offers()[fid]
    [ads_offer] = [o for o in offers if o.allocation_role == "ads"]
    _accept_ops(w, fid, [ads_offer.id], [_reserve_op("cpus(eng):4")])
    [error] = _errors(w.drain(), fid)
    assert "allocation role 'ads'" in error
    assert w.master.reservations == {}


def test_framework_reservation_for_a_child_role_respects_its_limit(w: World) -> None:
    w.register(resources="cpus:8;mem:4096")
    w.master.set_quota("eng/prod", Quota(limit=P("cpus:1")))
    fid = w.subscribe("eng", roles=["eng"])
    [offer] = w.offers()[fid]
    # two RESERVEs in one accept: each fits alone, not both together
    _accept_ops(w, fid, [offer.id], [_reserve_op("cpus(eng/prod):1"), _reserve_op("cpus(eng/prod):0.5")])
    [error] = _errors(w.drain(), fid)
    assert "'eng/prod' over its quota limit" in error
    assert w.master.reservations[offer.agent_id] == P("cpus(eng/prod):1")


@pytest.mark.parametrize(
    ("first", "second", "fragment"),
    [
        (("eng", None, "cpus:4"), ("eng/prod", "cpus:10", None), "exceed the limit of 'eng'"),
        (("eng/prod", "cpus:10", None), ("eng", None, "cpus:4"), "exceed the limit of 'eng'"),
        (("eng/a", "cpus:3", None), ("eng", None, "cpus:5;mem:100"), "exceed the limit of 'eng'"),
        (("eng", "cpus:2", None), ("eng/prod", "cpus:3", None), "exceed its own guarantee"),
        (("eng/prod", "cpus:3", None), ("eng", "cpus:2", None), "exceed its own guarantee"),
        (("eng", "cpus:10", None), ("eng/prod", "cpus:1;mem:64", None), "exceed its own guarantee"),
        (("eng", "cpus:2", None), ("eng", "cpus:3", "cpus:2"), "exceeds the limit"),
    ],
)
def test_hierarchical_quota_is_validated(
    w: World, first: tuple[str, str | None, str | None], second: tuple[str, str | None, str | None], fragment: str
) -> None:
    def quota(g: str | None, lim: str | None) -> Quota:
        return Quota(P(g) if g else Resources.empty(), P(lim) if lim else None)

    if first[0] != "eng/a":
        w.master.set_quota(first[0], quota(first[1], first[2]))
    else:
        w.master.set_quota("eng/a", quota("cpus:3", None))
        w.master.set_quota("eng/b", quota("cpus:3", None))
    before = dict(w.master.quotas)
    required = w.allocator.quota_headroom()[0]
    w.drain()
    with pytest.raises(CallError, match=fragment):
        w.master.set_quota(second[0], quota(second[1], second[2]))
    assert w.master.quotas == before and w.drain().writes == []  # nothing changed, nothing written
    assert w.allocator.quota_headroom()[0] == required


def test_valid_hierarchical_quota_is_accepted_and_removal_is_always_allowed(w: World) -> None:
    w.master.set_quota("eng", Quota(P("cpus:10;mem:1024"), P("cpus:20;mem:4096")))
    w.master.set_quota("eng/prod", Quota(P("cpus:6;mem:512"), P("cpus:8")))
    w.master.set_quota("eng/dev", Quota(P("cpus:4"), None))
    w.master.set_quota("eng/dev/x", Quota(limit=P("cpus:1")))
    w.master.set_quota("eng", None)
    w.master.set_quota("eng/prod", None)
    assert set(w.master.quotas) == {"eng/dev", "eng/dev/x"}


# ============================================================================================ suppression per role
def test_suppress_and_revive_track_roles(w: World) -> None:
    w.register()
    fid = w.subscribe("multi", roles=["a", "b"])
    fw = w.master.frameworks[fid]
    w.master.suppress(fid, ["a"])
    assert fw.suppressed_roles == {"a"} and not fw.suppressed
    assert {o.allocation_role for o in w.offers()[fid]} == {"b"}
    w.master.suppress(fid, ["b"])
    assert fw.suppressed and fw.suppressed_roles == {"a", "b"}
    w.master.revive(fid, ["a"])
    assert fw.suppressed_roles == {"b"} and not fw.suppressed
    w.master.revive(fid)
    w.master.suppress(fid)
    assert fw.suppressed and fw.suppressed_roles == {"a", "b"}
    with pytest.raises(CallError, match="'c' not among the framework's roles"):
        w.master.suppress(fid, ["c"])
    w.subscribe("multi", fid=fid, roles=["a", "b"])  # a resubscription lifts suppression
    assert fw.suppressed_roles == set()


def test_unknown_ids_are_their_own_error(w: World) -> None:
    """The operator API answers NOT_FOUND for these (and INVALID_ARGUMENT for the other CallErrors)."""
    with pytest.raises(UnknownIdError, match="unknown agent 'ghost'"):
        w.master.operator_reserve("ghost", P("cpus(eng):1"))
    with pytest.raises(UnknownIdError, match="unknown framework 'ghost'"):
        w.master.kill("ghost", Call.Kill(task_id="t1"))
    aid = w.register()
    with pytest.raises(CallError) as refused:
        w.master.operator_reserve(aid, P("cpus:1"))
    assert not isinstance(refused.value, UnknownIdError)
