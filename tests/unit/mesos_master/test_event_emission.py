"""The core publishes one operator event per change, through its outbox (mesos_master.state `_publish_*`):
each transition's events read straight from the drained outbox, and a view built from a snapshot plus the
events that follow equals the snapshot taken at the end (nothing missed, nothing the view cannot apply)."""

from __future__ import annotations

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import events_pb2 as epb
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.allocator import Quota
from mesos_master.events import state_snapshot
from mesos_master.outbox import Published
from scheduler_sdk.resources import Resources
from tests.unit.mesos_master.test_cluster import World, task

P = Resources.parse

E = epb.OperatorEvent
S = tpb.TaskStatus
Kind = int


def published(w: World) -> list[Published]:
    return w.drain().events


def kinds(events: list[Published]) -> list[str]:
    return [E.Type.Name(p.event.type) for p in events]


def test_framework_agent_offers_and_task_lifecycle() -> None:
    w = World()
    fid = w.subscribe("fw", principal="framework/alice")
    [added] = published(w)
    assert kinds([added]) == ["FRAMEWORK_ADDED"] and added.owner == "framework/alice"
    assert added.event.framework.framework_info.id == fid and added.event.framework.connected

    aid = w.register("h1")
    [agent] = published(w)
    assert kinds([agent]) == ["AGENT_ADDED"] and agent.owner is None
    assert agent.event.agent.agent_info.id == aid and agent.event.agent.active

    w.master.allocate()
    drained = w.drain()
    [offers] = drained.events
    assert kinds([offers]) == ["OFFERS_MADE"] and offers.owner == "framework/alice"
    assert (offers.event.offers.framework_id, offers.event.offers.offers, offers.event.offers.agents) == (fid, 1, 1)
    [offer] = [o for e in drained.to_frameworks[fid] for o in e.offers.offers]
    w.accept(fid, [offer.id], [task("t1")])
    [launched] = [p for p in published(w) if p.event.type == E.TASK_ADDED]
    assert launched.event.task.task.task_id == "t1" and launched.event.task.agent_id == aid
    assert launched.event.task.state == tpb.TASK_STAGING and launched.owner == "framework/alice"

    w.agent_update(aid, fid, "t1", tpb.TASK_RUNNING, b"u1")
    w.agent_update(aid, fid, "t1", tpb.TASK_RUNNING, b"u1")  # a retry of the same update: no change, no event
    w.agent_update(aid, fid, "t1", tpb.TASK_FINISHED, b"u2", message="done", reason=S.REASON_COMMAND_EXECUTOR_FAILED)
    updates = published(w)
    assert kinds(updates) == ["TASK_UPDATED", "TASK_UPDATED"]
    finished = updates[-1].event.task_update
    assert (finished.framework_id, finished.agent_id, finished.task_id) == (fid, aid, "t1")
    assert finished.state == tpb.TASK_FINISHED and finished.status.message == "done"
    assert finished.status.reason == S.REASON_COMMAND_EXECUTOR_FAILED

    w.master.teardown(fid, "bye")
    [removed] = published(w)
    assert kinds([removed]) == ["FRAMEWORK_REMOVED"] and removed.event.message == "bye"
    assert not removed.event.framework.active and removed.owner == "framework/alice"


def test_teardown_kills_the_running_tasks_and_says_so() -> None:
    w = World()
    fid = w.subscribe("fw", principal="framework/alice")
    aid = w.register()
    w.launch(fid, "t1")
    w.agent_update(aid, fid, "t1", tpb.TASK_RUNNING, b"u1")
    published(w)
    w.master.teardown(fid)
    events = published(w)
    assert kinds(events) == ["TASK_UPDATED", "FRAMEWORK_REMOVED"]
    assert events[0].event.task_update.state == tpb.TASK_KILLED and events[0].owner == "framework/alice"


def test_agent_disconnected_unreachable_removed() -> None:
    w = World()
    fid = w.subscribe("fw")
    aid = w.register()
    w.launch(fid, "t1")
    published(w)
    w.master.disconnect_agent(aid)
    [detached] = published(w)
    assert kinds([detached]) == ["AGENT_UPDATED"] and not detached.event.agent.active
    w.master.mark_unreachable(aid, "gone quiet")
    events = published(w)
    assert kinds(events) == ["TASK_UPDATED", "AGENT_UNREACHABLE"]
    assert events[0].event.task_update.state == tpb.TASK_LOST
    assert events[1].event.message == "gone quiet" and events[1].event.agent.HasField("unreachable_time")
    w.master.remove_agent(aid, S.REASON_AGENT_REMOVED, "forgotten")
    [removed] = published(w)
    assert (
        kinds([removed]) == ["AGENT_REMOVED"] and removed.event.agent.removed and removed.event.message == "forgotten"
    )


def test_drain_reactivate_and_drained() -> None:
    w = World()
    aid = w.register()
    published(w)
    w.master.drain_agent(aid, None, False)
    events = published(w)
    assert kinds(events) == ["AGENT_DRAINING", "AGENT_DRAINING"]  # draining, then (nothing runs there) drained
    assert not events[0].event.agent.drain.drained and events[1].event.agent.drain.drained
    w.master.reactivate_agent(aid)
    [back] = published(w)
    assert kinds([back]) == ["AGENT_REACTIVATED"] and not back.event.agent.HasField("drain")


def test_quota_weights_reservations_suppress() -> None:
    w = World()
    fid = w.subscribe("fw", roles=["eng"])
    aid = w.register()
    published(w)
    w.master.set_weights({"eng": 2.0})
    w.master.set_quota("eng", Quota(P("cpus:1")))
    w.master.set_quota("eng", None)
    events = published(w)
    assert kinds(events) == ["WEIGHTS_UPDATED", "QUOTA_UPDATED", "QUOTA_UPDATED"]
    assert dict(events[0].event.weights) == {"eng": 2.0}
    assert events[1].event.quota.role == "eng" and not events[1].event.quota.HasField("limit")
    assert events[2].event.quota.removed
    w.master.operator_reserve(aid, P("cpus(eng):1"))
    [reserved] = published(w)
    assert kinds([reserved]) == ["AGENT_UPDATED"]
    assert Resources.from_proto(reserved.event.agent.total).roles() >= {"eng"}
    w.master.suppress(fid)
    w.master.suppress(fid)  # already suppressed: nothing changes
    w.master.revive(fid)
    events = published(w)
    assert kinds(events) == ["FRAMEWORK_UPDATED", "FRAMEWORK_UPDATED"]
    assert list(events[0].event.framework.suppressed_roles) == ["eng"]
    assert list(events[1].event.framework.suppressed_roles) == []


# ---------------------------------------------------------------------------------------------- views
class View:
    """What a watcher keeps: the snapshot, with every event applied as an upsert."""

    def __init__(self, snapshot: epb.EventSnapshot) -> None:
        self.agents = {a.agent_info.id: a for a in snapshot.agents}
        self.frameworks = {f.framework_info.id: f for f in snapshot.frameworks}
        self.tasks = {(t.framework_id, t.task.task_id): t.state for t in snapshot.tasks}

    def apply(self, event: epb.OperatorEvent) -> None:
        if event.HasField("agent"):
            if event.agent.removed:
                self.agents.pop(event.agent.agent_info.id, None)
            else:
                self.agents[event.agent.agent_info.id] = event.agent
        if event.HasField("framework"):
            self.frameworks[event.framework.framework_info.id] = event.framework
        if event.HasField("task"):
            self.tasks[(event.task.framework_id, event.task.task.task_id)] = event.task.state
        if event.HasField("task_update"):
            update = event.task_update
            self.tasks[(update.framework_id, update.task_id)] = update.state


def test_a_view_of_snapshot_and_events_equals_the_snapshot_at_the_end() -> None:
    w = World()
    view = View(state_snapshot(w.master, lambda owner: True))
    fid = w.subscribe("fw", roles=["eng"])
    other = w.subscribe("other")
    a1, a2 = w.register("h1"), w.register("h2")
    w.master.allocate()
    drained = w.drain()
    for event in drained.events:
        view.apply(event.event)
    where = {}
    for framework_id in (fid, other):
        [offer] = [o for e in drained.to_frameworks[framework_id] for o in e.offers.offers]
        w.accept(framework_id, [offer.id], [task(f"t-{framework_id}", agent_id=offer.agent_id)])
        where[framework_id] = offer.agent_id
    for event in published(w):
        view.apply(event.event)
    for n, framework_id in enumerate((fid, other)):
        w.agent_update(where[framework_id], framework_id, f"t-{framework_id}", tpb.TASK_RUNNING, b"r%d" % n)
    w.agent_update(where[fid], fid, f"t-{fid}", tpb.TASK_FAILED, b"f")
    w.master.disconnect_framework(other)
    w.master.disconnect_agent(a2)
    w.master.operator_reserve(a1, P("mem(eng):64"))
    w.master.drain_agent(a1, 0.0, False)
    w.clock.now += 100
    w.master.mark_unreachable(a2, "partition")
    w.master.teardown(other)
    w.master.tick()
    for event in published(w):
        view.apply(event.event)
    end = View(state_snapshot(w.master, lambda owner: True))
    assert view.agents == end.agents
    assert view.frameworks == end.frameworks
    assert view.tasks == end.tasks


def test_events_of_a_reattaching_agent_bring_its_tasks_back() -> None:
    w = World()
    aware = rpb.FrameworkInfo.Capability(type=rpb.FrameworkInfo.Capability.PARTITION_AWARE)
    fid = w.subscribe("fw", capabilities=[aware])
    aid = w.register("h1")
    w.launch(fid, "t1")
    w.agent_update(aid, fid, "t1", tpb.TASK_RUNNING, b"r")
    w.master.disconnect_agent(aid)
    w.master.mark_unreachable(aid, "partition")
    view = View(state_snapshot(w.master, lambda owner: True))
    published(w)
    running = agent_pb2.AgentTask(framework_id=fid, task=task("t1", agent_id=aid), state=tpb.TASK_RUNNING)
    w.register("h1", aid=aid, tasks=[running])
    events = published(w)
    assert "AGENT_ADDED" in kinds(events) and "TASK_UPDATED" in kinds(events)
    for event in events:
        view.apply(event.event)
    assert view.tasks[(fid, "t1")] == tpb.TASK_RUNNING
    assert view.agents == View(state_snapshot(w.master, lambda owner: True)).agents


def test_nothing_is_built_while_nobody_watches() -> None:
    from mesos_master.api.dispatch import Dispatcher

    w = World()
    dispatcher = Dispatcher(w.master, None)  # type: ignore[arg-type]  # no registry: nothing is flushed here
    assert not w.master.outbox.watched
    w.subscribe("fw")
    w.register()
    w.master.set_weights({"eng": 2.0})
    assert published(w) == []
    sub = dispatcher.hub.subscribe(None)
    assert w.master.outbox.watched and len(sub.snapshot.agents) == 1 and len(sub.snapshot.frameworks) == 1
    w.register("h2")
    assert kinds(published(w)) == ["AGENT_ADDED"]
    sub.close()
    assert not w.master.outbox.watched
