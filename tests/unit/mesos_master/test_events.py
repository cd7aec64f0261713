"""The operator event hub (mesos_master.events): batching, the bounded queue of a slow watcher, the
view_frameworks filter, the end of a term, and the snapshot's pages."""

from __future__ import annotations

import asyncio

import pytest

from aiomesos.v1 import events_pb2 as epb
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.events import (
    EventHub,
    EventsClosedError,
    Subscription,
    byte_batches,
    snapshot_pages,
    state_snapshot,
)
from mesos_master.outbox import Published
from scheduler_sdk.security.acls import Authorizer
from scheduler_sdk.security.certs import Principal

E = epb.OperatorEvent
ALICE = "framework/alice"
BOB = "framework/bob"


def event(task_id: str, framework_id: str = "F1", state: int = tpb.TASK_RUNNING) -> epb.OperatorEvent:
    update = epb.EventTaskUpdate(framework_id=framework_id, task_id=task_id, state=state)  # type: ignore[arg-type]
    return E(type=E.TASK_UPDATED, task_update=update)


def hub(**kw: object) -> EventHub:
    return EventHub(lambda visible: epb.EventSnapshot(master_id="M"), **kw)  # type: ignore[arg-type]


def principal(text: str) -> Principal:
    p = Principal.parse(text)
    assert p is not None
    return p


async def next_batch(sub: Subscription) -> list[epb.OperatorEvent]:
    async with asyncio.timeout(2):
        return await anext(sub)


async def test_one_drain_is_one_batch_and_batches_merge_while_behind() -> None:
    h = hub()
    sub = h.subscribe(None)
    assert sub.snapshot.master_id == "M"
    h.publish([Published(event("t1")), Published(event("t2"))])
    assert [e.task_update.task_id for e in await next_batch(sub)] == ["t1", "t2"]
    h.publish([Published(event("t3"))])
    h.publish([Published(event("t4"))])
    assert h.behind == 2
    assert [e.task_update.task_id for e in await next_batch(sub)] == ["t3", "t4"]  # merged: it was behind


async def test_a_batch_is_bounded_in_count() -> None:
    h = hub(max_batch=3)
    sub = h.subscribe(None)
    h.publish([Published(event(f"t{i}")) for i in range(7)])
    sizes = [len(await next_batch(sub)) for _ in range(3)]
    assert sizes == [3, 3, 1]


async def test_a_waiting_watcher_wakes_up_when_events_come() -> None:
    h = hub()
    sub = h.subscribe(None)
    waiting = asyncio.ensure_future(anext(sub))
    await asyncio.sleep(0)
    assert not waiting.done()
    h.publish([Published(event("t1"))])
    async with asyncio.timeout(2):
        batch = await waiting
    assert [e.task_update.task_id for e in batch] == ["t1"]


async def test_a_slow_watcher_is_dropped_with_a_reason_and_never_blocks_the_others() -> None:
    h = hub(max_pending=5)
    slow, fast = h.subscribe(None), h.subscribe(None)
    for i in range(3):
        h.publish([Published(event(f"a{i}")), Published(event(f"b{i}"))])
        assert len(await next_batch(fast)) == 2
    assert slow.overflowed and slow.ended
    assert "more than 5 events behind" in (slow.end_reason or "")
    assert slow.pending == 0
    with pytest.raises(StopAsyncIteration):
        await next_batch(slow)
    assert not fast.ended and h.watchers == 1 and h.dropped == 1
    async with asyncio.timeout(1):
        assert "behind" in await slow.wait_ended()


async def test_close_ends_every_watcher_and_refuses_new_ones() -> None:
    h = hub()
    sub = h.subscribe(None)
    h.publish([Published(event("t1"))])
    h.close("the master is stopping")
    assert sub.end_reason == "the master is stopping" and not sub.overflowed
    with pytest.raises(StopAsyncIteration):
        await next_batch(sub)
    with pytest.raises(EventsClosedError, match="stopping"):
        h.subscribe(None)
    assert h.watchers == 0


async def test_a_watcher_that_closes_stops_receiving() -> None:
    h = hub()
    sub = h.subscribe(None)
    sub.close()
    h.publish([Published(event("t1"))])
    assert h.watchers == 0 and h.published == 1
    with pytest.raises(StopAsyncIteration):
        await next_batch(sub)


def view_acls() -> Authorizer:
    """The built-in rules: a framework sees only its own; an operator sees everything."""
    return Authorizer()


async def test_events_are_filtered_by_view_frameworks() -> None:
    h = hub(authorizer=view_acls())
    alice, operator = h.subscribe(principal(ALICE)), h.subscribe(principal("operator/admin"))
    agent = E(type=E.AGENT_ADDED, agent=epb.EventAgent(agent_info=rpb.AgentInfo(id="A1")))
    h.publish(
        [
            Published(event("mine", "F1"), owner=ALICE),
            Published(event("theirs", "F2"), owner=BOB),
            Published(agent),  # the cluster's: everyone sees it
        ]
    )
    seen = [e.task_update.task_id or e.agent.agent_info.id for e in await next_batch(alice)]
    assert seen == ["mine", "A1"]
    assert len(await next_batch(operator)) == 3


class FakeMaster:
    """What state_snapshot reads of the master."""

    def __init__(self) -> None:
        from collections import deque

        from mesos_master.records import Framework, Task
        from scheduler_sdk.resources import Resources

        def fw(fid: str, owner: str) -> Framework:
            info = rpb.FrameworkInfo(id=fid, name=fid, principal=owner)
            return Framework(info=info, connected=True, registered_time=1)

        f1, f2 = fw("F1", ALICE), fw("F2", BOB)
        f1.tasks["t1"] = Task("F1", "A1", tpb.TaskInfo(task_id="t1"), Resources.empty())
        f2.tasks["t2"] = Task("F2", "A1", tpb.TaskInfo(task_id="t2"), Resources.empty())
        self.master_id, self.start_time = "M", 5.0
        self.frameworks = {"F1": f1, "F2": f2}
        self.completed_frameworks = deque([fw("F0", BOB)])
        self.agents: dict[str, object] = {}
        self.drains: dict[str, object] = {}
        self.quotas: dict[str, object] = {}
        self.weights = {"dev": 2.0}


def test_the_snapshot_shows_what_getstate_shows_to_that_caller() -> None:
    master = FakeMaster()
    authorizer = view_acls()
    h = EventHub(lambda visible: state_snapshot(master, visible), authorizer=authorizer)  # type: ignore[arg-type]
    alice = h.subscribe(principal(ALICE)).snapshot
    assert [f.framework_info.id for f in alice.frameworks] == ["F1"]
    assert [t.task.task_id for t in alice.tasks] == ["t1"]
    assert dict(alice.weights) == {"dev": 2.0}
    everything = h.subscribe(principal("operator/admin")).snapshot
    assert [(f.framework_info.id, f.active) for f in everything.frameworks] == [
        ("F0", False),
        ("F1", True),
        ("F2", True),
    ]
    assert [t.task.task_id for t in everything.tasks] == ["t1", "t2"]
    insecure = EventHub(lambda visible: state_snapshot(master, visible)).subscribe(None).snapshot  # type: ignore[arg-type]
    assert len(insecure.frameworks) == 3


def test_a_big_snapshot_comes_in_pages_that_keep_every_item_in_order() -> None:
    tasks = [epb.EventTask(framework_id="F", task=tpb.TaskInfo(task_id=f"t{i:04}", name="x" * 200)) for i in range(100)]
    agents = [epb.EventAgent(agent_info=rpb.AgentInfo(id=f"A{i}")) for i in range(3)]
    snap = epb.EventSnapshot(master_id="M", agents=agents, tasks=tasks, weights={"r": 3.0})
    pages = snapshot_pages(snap, max_bytes=4096)
    assert len(pages) > 3
    assert all(p.ByteSize() <= 4096 + 300 for p in pages)
    assert [p.more for p in pages] == [True] * (len(pages) - 1) + [False]
    assert pages[0].master_id == "M" and dict(pages[0].weights) == {"r": 3.0}
    assert [t.task.task_id for p in pages for t in p.tasks] == [t.task.task_id for t in tasks]
    assert [a.agent_info.id for p in pages for a in p.agents] == ["A0", "A1", "A2"]
    assert snapshot_pages(snap) == [snap]  # it fits: one page


def test_byte_batches_cut_events_into_bounded_messages() -> None:
    events = [event(f"t{i}" + "x" * 100) for i in range(50)]
    batches = list(byte_batches(events, max_bytes=1000))
    assert [e for b in batches for e in b] == events
    assert all(sum(e.ByteSize() for e in b) <= 1000 for b in batches)
    assert list(byte_batches([event("y" * 5000)], max_bytes=1000)) == [[event("y" * 5000)]]  # one too big: alone
