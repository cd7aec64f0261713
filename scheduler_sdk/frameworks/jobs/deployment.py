"""A service's (a stream's) deployments: the record of rolling out one version (`Deployment`, what `job status` and
`job history` show), and the pure choices a rollout makes: which specs run the same tasks (a change of counts or
policies only is a scale, not a rollout), when an instance has been healthy long enough, which instances go first
when some are replaced or removed. The rollout itself moves slots: it is `service_run.ServiceRun`'s."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scheduler_sdk.frameworks.jobs.spec import JobSpec
from scheduler_sdk.frameworks.jobs.tasks import Slot

#: running | paused (canaries healthy: waiting for promote) | succeeded | failed | reverted (failed, and a revert
#: to the last stable version was asked) | cancelled (a newer update, or a stop, replaced it)
DEPLOYMENT_STATES = ("running", "paused", "succeeded", "failed", "reverted", "cancelled")
ACTIVE = frozenset({"running", "paused"})
MAX_DEPLOYMENTS_KEPT = 20


@dataclass
class Deployment:
    """The rollout of `version` (mirrors jobs.proto's DeploymentStatus; `revert_to` is ours)."""

    version: int
    from_version: int  # the version it replaces (0: the first)
    state: str  # one of DEPLOYMENT_STATES
    started_at: float
    ended_at: float | None = None
    wanted: int = 0  # instances (workers) of the new version wanted
    placed: int = 0  # new-version instances launched so far
    healthy: int = 0  # new-version instances healthy for min_healthy_time
    canaries: int = 0  # canaries wanted (0: none)
    promoted: bool = False
    message: str = ""  # why it failed, what it waits for
    max_parallel: int = 1
    revert_to: int = 0  # reverted: the stable version asked for (0: none)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def end(self, state: str, now: float, message: str) -> None:
        self.state, self.ended_at, self.message = state, now, message

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Deployment:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def runs_the_same(a: JobSpec, b: JobSpec) -> bool:
    """Whether specs `a` and `b` launch the same tasks: equal but for counts (instances, workers), the restart and
    update policies, labels and where they were read from. An update between two such is a scale."""
    return _tasks_of(a) == _tasks_of(b)


def _tasks_of(spec: JobSpec) -> tuple[object, ...]:
    steps = tuple(dataclasses.replace(s, count=0, line=None) for s in spec.steps)
    return (spec.type, spec.role, spec.lifecycle, steps)


def with_counts(spec: JobSpec, counts: Mapping[str, int]) -> JobSpec:
    """`spec` with the steps named in `counts` scaled to them (steps not named keep their count)."""
    if not any(s.name in counts and counts[s.name] != s.count for s in spec.steps):
        return spec
    steps = tuple(dataclasses.replace(s, count=counts.get(s.name, s.count)) for s in spec.steps)
    return dataclasses.replace(spec, steps=steps)


def settled(slot: Slot, now: float, min_healthy_time: float) -> bool:
    """Running, not being killed, and healthy for `min_healthy_time` by `now`."""
    return (
        slot.state == "running"
        and not slot.killing
        and slot.healthy is True
        and slot.healthy_since is not None
        and now - slot.healthy_since >= min_healthy_time
    )


def serving(slot: Slot) -> bool:
    """Healthy, running and not being killed: an endpoint to send work to."""
    return slot.state == "running" and slot.healthy is True and not slot.killing


def retire_first(slots: Iterable[Slot], version: int) -> list[Slot]:
    """The order in which instances are removed when there are too many: other versions' first, then the
    highest indexes."""
    return sorted(slots, key=lambda s: (s.version == version, -s.index))


def replace_first(slots: Iterable[Slot], order: Mapping[str, int]) -> list[Slot]:
    """The order in which old instances are replaced: those not healthy first (replacing them costs no capacity),
    then by stage and index."""
    return sorted(slots, key=lambda s: (s.healthy is True, order.get(s.step, len(order)), s.index))


def free_indexes(taken: Iterable[int], n: int) -> list[int]:
    """The `n` lowest indexes not in `taken`."""
    used, out, i = set(taken), list[int](), 0
    while len(out) < n:
        if i not in used:
            out.append(i)
        i += 1
    return out
