"""The allocation cycle through the master's core (`python -m bench.allocator --core`): what `bench.allocator`
measures of the allocator alone, plus the offers the master builds (one `scheduler_pb2.Offer` per allocation),
in pieces as the daemon runs it, and the memory of the core per agent.

Agents are registered through `Master.register_agent` (``cpus:8;mem:32768;disk:100000``, attributes ``zone``
(3 values) and ``rack`` (100), as `aiomesos simulate-agents` attaches them), frameworks subscribe (one role), and
every round each framework declines what it was offered for good (a refusal filter that never expires), so each
round offers every agent again, to a framework that has not declined it yet (Mesos' DeclineOffers shape).

Reported (one JSON line, ``"mode": "core"``, appended to bench/results/allocator.jsonl): bytes per agent of the
core (traced allocations of registering them: the master's records, the allocator's, the agent info), the
first cycle's work (ms, wall and process CPU) and the allocator's share of it (the rest is building offers),
the longest piece of any round (wall, and CPU time: what it cost, whatever else ran on the machine), the longest
the event loop was held while the cycles ran in pieces under asyncio (a probe every 5 ms: its worst lateness),
the garbage collector's longest pause, and each round's figures (`rounds`). The heap is frozen before and after
every cycle, as the master's allocation loop does (`--no-freeze`: the collector as Python has it)."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import tracemalloc
from typing import Any

import structlog

from aiomesos.v1 import agent_pb2, scheduler_pb2
from aiomesos.v1 import resources_pb2 as rpb
from mesos_master.allocator import create_allocator
from mesos_master.cluster import Master
from mesos_master.heap import HeapKeeper
from mesos_master.loop_stalls import LoopStallMonitor
from mesos_master.offers import PIECE_SECONDS
from scheduler_sdk.resources import Resources

AGENT = "cpus:8;mem:32768;disk:100000"
REFUSE = 3e7  # (the most a DECLINE may ask: a year)
TOP_SITES = 6


def agent_info(i: int, total: rpb.Resource | Any) -> rpb.AgentInfo:
    attributes = [
        rpb.Attribute(name="zone", type=rpb.Value.TEXT, text=rpb.Value.Text(value=f"zone-{i % 3}")),
        rpb.Attribute(name="rack", type=rpb.Value.TEXT, text=rpb.Value.Text(value=f"rack-{i % 100}")),
    ]
    return rpb.AgentInfo(
        hostname=f"sim-{i:06}", resources=total, attributes=attributes, address=f"10.0.{i // 256 % 256}.{i % 256}:5051"
    )


def build(agents: int, frameworks: int) -> tuple[Master, dict[str, Any]]:
    """A master with `frameworks` subscribed and `agents` registered; the traced bytes per agent."""
    master = Master("M", create_allocator("drf", allocation_interval=1.0))
    for f in range(frameworks):
        master.subscribe(rpb.FrameworkInfo(name=f"fw{f:05}", user="bench"))
    master.outbox.drain()
    master.outbox.watched = False  # (no one watches the event stream)
    total = Resources.parse(AGENT).to_proto()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    for i in range(agents):
        master.register_agent(agent_pb2.AgentMessage.Register(agent_info=agent_info(i, total)))
        if i % 1000 == 999:
            master.outbox.drain()
    master.outbox.drain()
    add_s = time.perf_counter() - t0
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    sites = tracemalloc.take_snapshot().statistics("lineno")[:TOP_SITES]
    tracemalloc.stop()
    figures = {
        "add_agents_s_traced": round(add_s, 2),
        "bytes_per_agent": round((after - before) / agents),
        "top_allocation_sites": [
            f"{s.traceback[0].filename.rsplit('/', 2)[-2:]}:{s.traceback[0].lineno} {s.size // agents} B/agent"
            for s in sites
        ],
    }
    return master, figures


def decline_all(master: Master) -> None:
    for fid, events in master.outbox.drain().to_frameworks.items():
        ids = [o.id for ev in events if ev.type == scheduler_pb2.Event.OFFERS for o in ev.offers.offers]
        if ids:
            call = scheduler_pb2.Call.Decline(offer_ids=ids)
            call.filters.refuse_seconds = REFUSE
            master.decline(fid, call)


class GcPauses:
    """The longest pause of Python's garbage collector, and their total, while installed."""

    def __init__(self) -> None:
        self.longest = self.total = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            took = time.perf_counter() - self._started
            self.total += took
            self.longest = max(self.longest, took)


async def pieced_cycle(master: Master) -> float:
    """One cycle in pieces under asyncio, as the master's allocation loop runs it; the probe's worst lateness."""
    probe = LoopStallMonitor(interval=0.005)
    async with probe.running():
        await asyncio.sleep(0.02)
        for _ in master.allocation_pieces(PIECE_SECONDS):
            await asyncio.sleep(0)
        await asyncio.sleep(0.02)
    return probe.worst


def run_core(agents: int, frameworks: int, rounds: int, *, freeze: bool = True) -> dict[str, Any]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # as a quiet daemon
    master, figures = build(agents, frameworks)
    heap = HeapKeeper(growth=float("inf")) if freeze else None  # as the master's allocation loop does
    gc.collect()
    if heap is not None:
        heap.freeze()  # (the cycles while the agents attached would have)
    per_round: list[dict[str, float]] = []
    for r in range(rounds):
        if r:
            decline_all(master)
            master.clock = (lambda t: lambda: t)(master.clock() + 1.0)
        if heap is not None:
            heap.freeze()
        pauses = GcPauses()
        gc.callbacks.append(pauses)
        c0, t0 = time.process_time(), time.perf_counter()
        stall = asyncio.run(pieced_cycle(master))
        span, cpu = time.perf_counter() - t0, time.process_time() - c0
        gc.callbacks.remove(pauses)
        if heap is not None:
            heap.freeze()
        cycle = master.last_allocation
        allocator_ms = master.allocator.metrics()["allocation_run_ms"]
        per_round.append(
            {
                "cycle_ms": round(cycle.work * 1000, 1),
                "cycle_cpu_ms": round(cpu * 1000, 1),  # (with the probe's and the loop's few ms)
                "allocator_ms": round(allocator_ms, 1),
                "offers_ms": round(cycle.work * 1000 - allocator_ms, 1),
                "offers": cycle.offers,
                "pieces": cycle.pieces,
                "longest_piece_ms": round(cycle.longest_piece * 1000, 1),
                "longest_piece_cpu_ms": round(cycle.longest_piece_cpu * 1000, 1),
                "loop_stall_max_ms": round(stall * 1000, 1),
                "gc_longest_ms": round(pauses.longest * 1000, 1),
                "gc_total_ms": round(pauses.total * 1000, 1),
                "span_ms": round(span * 1000, 1),
            }
        )
    first = per_round[0]
    return {
        "mode": "core",
        "agents": agents,
        "frameworks": frameworks,
        "frozen_heap": freeze,
        **figures,
        "first_cycle_ms": first["cycle_ms"],
        "first_cycle_cpu_ms": first["cycle_cpu_ms"],
        "first_cycle_allocator_ms": first["allocator_ms"],
        "first_cycle_offers_ms": first["offers_ms"],
        "longest_piece_ms": max(r["longest_piece_ms"] for r in per_round),
        "longest_piece_cpu_ms": max(r["longest_piece_cpu_ms"] for r in per_round),
        "loop_stall_max_ms": max(r["loop_stall_max_ms"] for r in per_round),
        "gc_longest_ms": max(r["gc_longest_ms"] for r in per_round),
        "piece_budget_ms": PIECE_SECONDS * 1000,
        "rounds": per_round,
    }
