"""What a `PlacementScheduler` knows of the agents: each agent seen in an offer (`KnownAgent`), the offers it holds
per agent (`Lease`), and the `Host`s a run sees, built from both and from our tasks running there.

What a run sees (`hosts_in_view`): one `Host` per hostname, for every agent that has offers or runs tasks of ours.
Agents are remembered from their offers (hostname, attributes, capacity), so an agent whose resources are all in
use, or whose offers were declined, still shows with ``offers=()`` and its running tasks: constraints count its
co-tasks. Its capacity (`Host.total_*`) is what `set_capacity` gave, else the most this framework has seen of it:
the largest (offered + used by our tasks there) since its first offer. Other frameworks' use is invisible to a
framework, so that is a lower bound of the agent's real total.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from aiomesos.v1 import scheduler_pb2 as spb
from scheduler_sdk.placement.constraints import ExclusiveHost
from scheduler_sdk.placement.model import BASE_RESOURCES, Host, OfferSlice, RunningTask, TaskRequest
from scheduler_sdk.placement.queues import demand
from scheduler_sdk.resources import Resources, attribute_values

Shape = tuple[tuple[str, float], ...]
"""A task's demand as sorted ``(resource, amount)`` pairs."""


@dataclass
class Lease:
    """The offers of one agent this scheduler holds, with when each came and what each holds (its `OfferSlice`,
    read from the offer once, when it comes: every run and every lease decision reads the slices)."""

    agent_id: str
    offers: dict[str, spb.Offer] = field(default_factory=dict)
    received: dict[str, float] = field(default_factory=dict)
    slices: dict[str, OfferSlice] = field(default_factory=dict)
    _room: dict[str, float] | None = field(default=None, repr=False, compare=False)

    def add(self, offer: spb.Offer, now: float) -> None:
        self.offers[offer.id] = offer
        self.received[offer.id] = now
        self.slices[offer.id] = offer_slice(offer, now)
        self._room = None

    def drop(self, offer_id: str) -> None:
        self.offers.pop(offer_id, None)
        self.received.pop(offer_id, None)
        self.slices.pop(offer_id, None)
        self._room = None

    def room(self) -> Mapping[str, float]:
        """What the offers hold together, per resource (`lease_room`), summed once until the offers change."""
        if self._room is None:
            self._room = lease_room(self)
        return self._room


@dataclass
class KnownAgent:
    """What the scheduler remembers of an agent from its offers (not the proto's `AgentInfo`: this is the
    framework's own, partial view, kept across offers)."""

    agent_id: str
    hostname: str
    attributes: dict[str, str]
    seen_at: float  # when its last offer came
    seen: dict[str, float] = field(default_factory=dict)  # the most offered + used by our tasks, per resource
    capacity: dict[str, float] | None = None  # given by `set_capacity`: wins over `seen`
    address: str = ""  # where the agent serves its API (host:port, from its offers): its host reaches its tasks

    @property
    def host(self) -> str:
        """The host part of the agent's address (an IP where agents register by IP); "" when unknown."""
        host = self.address.rsplit(":", 1)[0] if ":" in self.address else self.address
        return host.strip("[]")

    def totals(self) -> dict[str, float]:
        """The agent's capacity per resource (`ports`: how many)."""
        return dict(self.capacity) if self.capacity is not None else dict(self.seen)


def hosts_in_view(
    agents: Mapping[str, KnownAgent],
    leases: Mapping[str, Lease],
    running: Mapping[str, Mapping[str, TaskRequest]],
    disabled: Iterable[str],
) -> list[Host]:
    """One `Host` per hostname for every agent with offers or with tasks of ours running (``offers=()`` when it
    has none), hostname order. Two agents with one hostname (an agent that came back under a new id): the one that
    offered last is the host, with the tasks of both."""
    off = set(disabled)
    shown = set(leases) | {agent_id for agent_id, tasks in running.items() if tasks}
    by_name: dict[str, list[KnownAgent]] = {}
    for agent_id in shown:
        agent = agents.get(agent_id)
        if agent is not None:  # tasks on an agent never seen in an offer: its name and attributes are unknown
            by_name.setdefault(agent.hostname, []).append(agent)
    out = []
    for hostname in sorted(by_name):
        same_name = sorted(by_name[hostname], key=lambda a: (a.seen_at, a.agent_id))
        current = same_name[-1]
        lease = leases.get(current.agent_id)
        offers = tuple(lease.slices.values()) if lease else ()
        tasks = tuple(running_task(t) for a in same_name for t in running.get(a.agent_id, {}).values())
        totals = current.totals()
        scalars = {k: v for k, v in totals.items() if k not in BASE_RESOURCES and k != "ports"}
        out.append(
            Host(
                hostname=hostname,
                agent_id=current.agent_id,
                attributes=current.attributes,
                offers=offers,
                running=tasks,
                total_cpus=totals.get("cpus"),
                total_mem=totals.get("mem"),
                total_disk=totals.get("disk"),
                total_network=totals.get("network"),
                total_scalars=scalars or None,
                disabled=hostname in off,
            )
        )
    return out


def cluster_capacity(agents: Iterable[KnownAgent]) -> dict[str, float]:
    """The cluster's resources: every known agent's capacity added up (one agent per hostname: the one that
    offered last)."""
    current: dict[str, KnownAgent] = {}
    for agent in agents:
        other = current.get(agent.hostname)
        if other is None or (agent.seen_at, agent.agent_id) > (other.seen_at, other.agent_id):
            current[agent.hostname] = agent
    out: dict[str, float] = {}
    for agent in current.values():
        for name, amount in agent.totals().items():
            out[name] = out.get(name, 0.0) + amount
    return out


def room_if_ours_ended(lease: Lease | None, ours: Iterable[TaskRequest]) -> dict[str, float]:
    """What an agent would hold for us if all our tasks there ended: its lease plus what they use."""
    room = dict(lease.room()) if lease is not None else {}
    for task in ours:
        for name, amount in demand(task).items():
            room[name] = room.get(name, 0.0) + amount
    return room


def lease_room(lease: Lease) -> dict[str, float]:
    """What a lease's offers hold, per resource (`ports`: how many)."""
    room: dict[str, float] = {}
    for piece in lease.slices.values():
        for name in BASE_RESOURCES:
            amount = getattr(piece, name)
            if amount:
                room[name] = room.get(name, 0.0) + amount
        for name, amount in piece.scalars.items():
            room[name] = room.get(name, 0.0) + amount
        ports = sum(hi - lo + 1 for lo, hi in piece.ports)
        if ports:
            room["ports"] = room.get("ports", 0.0) + ports
    return room


def minimal_shapes(tasks: Iterable[TaskRequest]) -> list[tuple[tuple[str, float], ...]]:
    """The distinct demands of the tasks, less those that ask at least as much as another in every resource
    (whatever fits one of those fits a smaller one)."""
    shapes = sorted({tuple(sorted(demand(t).items())) for t in tasks}, key=lambda s: (len(s), s))
    out: list[tuple[tuple[str, float], ...]] = []
    for shape in shapes:
        asked = dict(shape)
        if not any(all(asked.get(name, 0.0) >= amount for name, amount in small) for small in out):
            out.append(shape)
    return out


def offer_attributes(offer: spb.Offer) -> dict[str, str]:
    return attribute_values(offer.attributes, offer.hostname)


def offer_slice(offer: spb.Offer, received_at: float) -> OfferSlice:
    res = Resources.from_proto(offer.resources)
    scalars = res.scalars()
    return OfferSlice(
        offer_id=offer.id,
        cpus=scalars.pop("cpus", 0.0),
        mem=scalars.pop("mem", 0.0),
        disk=scalars.pop("disk", 0.0),
        network=scalars.pop("network", 0.0),
        ports=res.ranges("ports"),
        scalars=scalars,
        received_at=received_at,
    )


def running_task(task: TaskRequest) -> RunningTask:
    """How a task of ours running on an agent shows in a run's `Host.running`."""
    return RunningTask(
        exclusive=any(isinstance(c, ExclusiveHost) for c in task.hard_constraints),
        id=task.id,
        group=task.group,
        cpus=task.cpus,
        mem=task.mem,
        disk=task.disk,
        network=task.network,
        ports=task.ports,
        scalars=task.scalars,
    )
