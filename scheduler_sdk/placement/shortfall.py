"""The autoscaler's shortfall analysis: how many new hosts of a group's shape the unplaced tasks need.

The tasks are packed, with a real engine (by default `PlacementEngine` with cpu bin packing, so that constraints
count), onto empty pseudo-hosts of the shape carrying the group attribute and the group's other attributes; the
number of pseudo-hosts used is the number of hosts needed. Pure: no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from scheduler_sdk.placement.engine import PlacementEngine
from scheduler_sdk.placement.extension import Engine
from scheduler_sdk.placement.fitness import BinPacking
from scheduler_sdk.placement.model import BASE_RESOURCES, Host, OfferSlice, TaskRequest
from scheduler_sdk.placement.queues import demand


def default_engine() -> Engine:
    return PlacementEngine(fitness=BinPacking("cpus"))


def hosts_needed(
    engine: Engine,
    group: str,
    shape: Mapping[str, float],
    attributes: Mapping[str, str],
    group_attribute: str,
    tasks: Sequence[TaskRequest],
    limit: int,
) -> tuple[int, set[str]]:
    """Pack `tasks` onto at most `limit` empty pseudo-hosts of `shape` with the engine; returns how many
    pseudo-hosts hold tasks and which tasks they hold.

    Tasks go largest first (by dominant share of the shape); a task larger than the shape is left out at once.
    Pseudo-hosts come in rounds: the first round has as many as the tasks need at the least, each further
    round (for what did not fit: e.g. constraints that allow one task per host) at least twice as many as the
    last; unused pseudo-hosts do not count, so a generous round costs time, never hosts."""
    shape = dict(shape)
    sized = [(size_in(t, shape), t) for t in tasks]
    order = [t for size, t in sorted(sized, key=lambda st: (-st[0], st[1].id)) if size <= 1.0 + 1e-9]
    placed: set[str] = set()
    used = 0
    last_round = 0
    while order and used < limit:
        per_round = min(limit - used, max(lower_bound(order, shape), 2 * last_round))
        hosts = [pseudo_host(group, shape, attributes, group_attribute, used + i) for i in range(per_round)]
        result = engine.schedule(order, hosts)
        if not result.assignments:
            break  # what is left fits no empty host of this shape
        placed_now = {a.task.id for a in result.assignments}
        used += len({a.hostname for a in result.assignments})
        placed |= placed_now
        order = [t for t in order if t.id not in placed_now]
        last_round = per_round
    return used, placed


def pseudo_host(
    group: str, shape: Mapping[str, float], attributes: Mapping[str, str], group_attribute: str, i: int
) -> Host:
    """The i-th empty host of the group's shape, as the analysis places onto it."""
    name = f"{group}.pseudo-{i:05d}"
    ports = int(shape.get("ports", 0))
    offer = OfferSlice(
        offer_id=f"{name}.offer",
        cpus=shape.get("cpus", 0.0),
        mem=shape.get("mem", 0.0),
        disk=shape.get("disk", 0.0),
        network=shape.get("network", 0.0),
        ports=((1, ports),) if ports > 0 else (),
        scalars={k: v for k, v in shape.items() if k not in BASE_RESOURCES and k != "ports"},
    )
    host_attributes = {"hostname": name, **attributes, group_attribute: group}
    return Host(hostname=name, agent_id=name, attributes=host_attributes, offers=(offer,))


def size_in(task: TaskRequest, shape: Mapping[str, float]) -> float:
    """The task's dominant share of one host of this shape (inf: asks for something the shape lacks)."""
    share = 0.0
    for name, amount in demand(task).items():
        have = shape.get(name, 0.0)
        if have <= 0:
            return math.inf
        share = max(share, amount / have)
    return share


def lower_bound(tasks: Sequence[TaskRequest], shape: Mapping[str, float]) -> int:
    """Hosts of this shape the tasks need at the least (by their total size per resource)."""
    totals: dict[str, float] = {}
    for t in tasks:
        for name, amount in demand(t).items():
            totals[name] = totals.get(name, 0.0) + amount
    bound = 0.0
    for name, amount in totals.items():
        have = shape.get(name, 0.0)
        if have > 0:
            bound = max(bound, amount / have)
    return max(1, math.ceil(bound - 1e-9))
