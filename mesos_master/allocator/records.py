"""The allocator's records of an agent and a framework: their books (`books`) and what else a cycle reads of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mesos_master.allocator import _vectors as vectors
from mesos_master.allocator._vectors import Vec
from mesos_master.allocator.base import OfferConstraints
from mesos_master.allocator.books import AgentBook, FrameworkBook
from mesos_master.allocator.constraints import CompiledConstraints
from mesos_master.allocator.filters import FiltersByAgent
from mesos_master.allocator.quota import Headroom
from mesos_master.allocator.refusals import AgentRefusals
from scheduler_sdk.resources import UNRESERVED, Resources


class AgentRecord(AgentBook):
    """An agent as the allocator knows it: its book, its attributes, its refusals."""

    __slots__ = ("attr_key", "attributes", "gpus", "hostname", "refusals", "seq")

    def __init__(
        self,
        agent_id: str,
        total: Resources,
        attributes: Mapping[str, str],
        attr_key: tuple,
        hostname: str | None,
        headroom: Headroom,
    ) -> None:
        super().__init__(agent_id, total, headroom)
        self.attributes = attributes  # without the hostname: shared by the agents with the same attributes
        self.attr_key = attr_key  # the attributes' key (sorted items): shared too
        self.hostname = hostname
        self.gpus = total.scalar("gpus") > 0
        self.refusals = AgentRefusals()
        self.seq = 0


class FrameworkRecord(FrameworkBook):
    """A framework as the allocator knows it: its book, its roles and state, its offer constraints and filters."""

    __slots__ = (
        "active",
        "attr_cache",
        "constraints",
        "filters",
        "gpu_aware",
        "min_alloc",
        "pairs",
        "roles",
        "special",
        "suppressed",
    )

    def __init__(self, framework_id: str, roles: tuple[str, ...]) -> None:
        super().__init__(framework_id)
        self.roles = roles
        self.active = True
        self.gpu_aware = False
        self.suppressed: set[str] = set()
        self.constraints: CompiledConstraints | None = None
        self.min_alloc: dict[str, tuple[Vec, ...]] = {}
        self.special = False  # has constraints or its own minimums: the slow eligibility path
        self.attr_cache: dict[tuple, bool] = {}
        self.filters: dict[str, FiltersByAgent] = {}  # role -> agent id -> refusal filter(s)
        self.pairs: dict[str, tuple[str, str]] = {}  # role -> (id, role), one tuple for all agents' refusals

    def configure(
        self,
        gpu_aware: bool,
        constraints: OfferConstraints | None,
        min_allocatable: Mapping[str, Sequence[Resources]] | None,
    ) -> None:
        """What it said at SUBSCRIBE (or UPDATE_FRAMEWORK): GPU_RESOURCES, offer constraints, minimums by role."""
        self.gpu_aware = gpu_aware
        compiled = None
        if constraints is not None and (constraints.attributes or constraints.min_resources):
            compiled = CompiledConstraints(constraints)
        self.constraints = compiled
        self.attr_cache = {}
        self.min_alloc = {
            role: tuple(vectors.vector(m) for m in mins) for role, mins in (min_allocatable or {}).items()
        }
        self.special = compiled is not None or bool(self.min_alloc)

    def role_for(self, resources: Resources) -> str:
        """The role resources it holds are charged to when the master does not say: the first of its roles a
        reservation in them is for (or below), else its first role."""
        reserved = sorted(r for r in resources.roles() if r != UNRESERVED)
        for role in reserved:
            for mine in self.roles:
                if role == mine or mine.startswith(role + "/"):
                    return mine
        return self.roles[0]
