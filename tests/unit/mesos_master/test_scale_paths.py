"""The master's paths that grow with the cluster: pages of a presorted section built a piece at a time (the
agents' order kept across calls), and when the heap keeper collects in full."""

from __future__ import annotations

import gc
import time

from hypothesis import given
from hypothesis import strategies as st

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import resources_pb2 as rpb
from mesos_master.allocator import HierarchicalAllocator
from mesos_master.api.operator import AgentOrder, agent_summary
from mesos_master.cluster import Master
from mesos_master.heap import SMALL_HEAP, HeapKeeper, full_collection_due
from mesos_master.paging import Cursor, Key, PageBuilder, SortedSection, take_page
from scheduler_sdk.resources import Resources


def plain(keys: list[str]) -> list[tuple[Key, object]]:
    return [((k,), lambda k=k: k) for k in keys]  # type: ignore[misc]


@given(st.sets(st.text("abcdef", min_size=1, max_size=3), max_size=40), st.integers(0, 7), st.integers(1, 5))
def test_a_sorted_section_pages_as_the_plain_one_and_in_pieces(keys: set[str], limit: int, piece: int) -> None:
    ordered = sorted(keys)
    gone = set(ordered[::5])  # removed after the keys were taken: skipped
    sorted_section = SortedSection([(k,) for k in ordered], lambda key: None if key[0] in gone else key[0])
    after: Cursor | None = None
    seen_plain: list[str] = []
    seen_sorted: list[str] = []
    for _ in range(100):
        page = take_page([plain([k for k in ordered if k not in gone])], after, lambda _: 1, limit=limit)
        seen_plain += page.items  # type: ignore[arg-type]
        after = page.next
        if after is None:
            break
    after = None
    for _ in range(100):
        builder = PageBuilder([sorted_section], after, lambda _: 1, limit=limit)
        while builder.step(piece):
            pass
        page = builder.page()
        seen_sorted += page.items
        after = page.next
        if after is None:
            break
    assert seen_sorted == seen_plain == [k for k in ordered if k not in gone]


def test_the_agents_order_is_sorted_again_only_when_the_agents_change() -> None:
    master = Master("M", HierarchicalAllocator(allocation_interval=1.0), clock=time.time)
    res = Resources.parse("cpus:1;mem:10").to_proto()
    for name in ("b", "a", "c"):
        reg = agent_pb2.AgentMessage.Register(agent_info=rpb.AgentInfo(hostname=name, resources=res))
        master.register_agent(reg, "agent/x")
    order = AgentOrder(master)
    first = order.keys()
    assert first == sorted(first) and len(first) == 3
    assert order.keys() is first
    del master.agents[first[0][0]]
    assert order.keys() == first[1:]
    agent = master.agents[first[1][0]]
    summary = order.section(())
    _, built = summary.build(first[1])  # type: ignore[misc]
    assert built == agent_summary(master, agent)
    assert isinstance(built, opb.AgentSummary) and not built.allocated and built.drain == opb.DrainInfo()


def test_a_full_collection_only_once_the_process_grew_by_half() -> None:
    gib = 1 << 30
    assert not full_collection_due(SMALL_HEAP, 0)
    assert not full_collection_due(int(1.4 * gib), gib)
    assert full_collection_due(int(1.6 * gib), gib)
    assert full_collection_due(SMALL_HEAP * 2, 0)


def test_the_keeper_freezes_and_collects_in_full_when_due() -> None:
    sizes = iter([SMALL_HEAP, SMALL_HEAP * 2, SMALL_HEAP * 2])
    keeper = HeapKeeper(size=lambda: next(sizes))
    try:
        keeper.step()
        assert keeper.full_collections == 0 and gc.get_freeze_count() > 0
        keeper.step()
        assert keeper.full_collections == 1 and keeper.after_last_full == SMALL_HEAP * 2
        keeper.step()
        assert keeper.full_collections == 1
    finally:
        gc.unfreeze()
