"""The master's allocation loop (`Terms._allocation_loop`) lets the event loop run between the pieces of a cycle,
and the loop-stall monitor sees what holds the loop. Counted, not timed: a probe task records how many offers
the cycle made between two of its turns."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from typing import Any

import pytest

from mesos_master import terms
from mesos_master.api.dispatch import Dispatcher
from mesos_master.loop_stalls import LoopStallMonitor
from mesos_master.metrics import master_registry
from mesos_master.registry.memory import MemoryRegistry
from scheduler_sdk._daemon.prometheus import sample_key
from tests.unit.mesos_master.test_cluster import World


async def run_one_cycle(w: World, budget: float | None) -> list[int]:
    """The allocation loop for one cycle, with a probe that records the offers outstanding at each of its turns."""
    dispatcher = Dispatcher(w.master, MemoryRegistry())
    loop_owner: Any = terms.Terms(
        argparse.Namespace(allocation_interval=3600.0), "M", None, None, None, asyncio.Event()
    )  # type: ignore[arg-type]
    loop_owner.heap = None  # (not this test process' collector)
    if budget is not None:
        loop_owner.piece_seconds = budget
    seen: list[int] = []
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            seen.append(len(w.master.offers))
            await asyncio.sleep(0)

    probing = asyncio.ensure_future(probe())
    dispatcher.allocation_wanted.set()
    allocating = asyncio.ensure_future(loop_owner._allocation_loop(w.master, dispatcher))
    async with asyncio.timeout(30):
        while w.master.last_allocation.offers == 0:
            await asyncio.sleep(0.001)
    done.set()
    allocating.cancel()
    await asyncio.wait([allocating, probing])
    return seen


def test_the_loop_runs_between_the_pieces_of_a_cycle() -> None:
    w = World()
    w.subscribe("fw")
    for i in range(100):
        w.register(f"h{i}")
    w.drain()
    seen = asyncio.run(run_one_cycle(w, 0.0))  # every allocator piece (16 agents) a piece of its own
    assert seen[-1] == 100 and w.master.last_allocation.pieces >= 7
    steps = [b - a for a, b in itertools.pairwise(seen)]
    assert max(steps) <= 16  # the probe ran between every two pieces


def test_the_stall_monitor_sees_the_loop_held() -> None:
    monitor = LoopStallMonitor(interval=0.01)

    async def hold() -> None:
        async with monitor.running():
            await asyncio.sleep(0.03)
            spin_until = time.monotonic() + 0.1
            while time.monotonic() < spin_until:  # the loop held for 100 ms
                pass
            await asyncio.sleep(0.03)

    asyncio.run(hold())
    assert monitor.worst >= 0.08  # (a probe can be late, never early)
    assert monitor.lateness.count >= 3


def test_the_stall_figures_are_in_the_registry() -> None:
    monitor = LoopStallMonitor()
    monitor.observe(0.2)
    monitor.observe(0.003)
    registry = master_registry(lambda: None, lambda: 0.0, 0.0)
    registry.register(monitor)
    samples = {sample_key(s.name, s.labels): s.value for m in registry.collect() for s in m.samples}
    assert samples["aiomesos_master_event_loop_stall_seconds_max"] == pytest.approx(0.2)
    assert samples["aiomesos_master_event_loop_stall_seconds_count"] == 2
    assert samples['aiomesos_master_event_loop_stall_seconds_bucket{le="0.005"}'] == 1
