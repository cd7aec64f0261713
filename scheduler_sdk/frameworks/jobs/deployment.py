"""A service's (a stream's) versions and their rollouts, pure: the record of rolling out one version (`Deployment`,
what `job status` and `job history` show), the choices a rollout makes (which specs run the same tasks: a change of
counts or policies only is a scale, not a rollout; when an instance has been healthy long enough; which instances
go first when some are replaced or removed), and `Rollouts`, the half of `service_run.ServiceRun` that decides which
instance runs which version (update, canaries and promote, deadlines and reverts). The other half (instances'
health, restarts, drains, scale, streams, persistence) is ServiceRun's own."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scheduler_sdk._daemon.flags import format_duration
from scheduler_sdk.frameworks.jobs.run_base import RunBase
from scheduler_sdk.frameworks.jobs.spec import JobSpec
from scheduler_sdk.frameworks.jobs.tasks import Action, Launch, Revert, Slot

#: running | paused (canaries healthy: waiting for promote) | succeeded | failed | reverted (failed, and a revert
#: to the last stable version was asked) | cancelled (a newer update, or a stop, replaced it)
DEPLOYMENT_STATES = ("running", "paused", "succeeded", "failed", "reverted", "cancelled")
ACTIVE = frozenset({"running", "paused"})
MAX_DEPLOYMENTS_KEPT = 20
# why we asked for a kill (besides tasks.KILL_STOP: the run is stopped)
KILL_REPLACE = "replace"  # replaced by the new version: relaunched at it once ended
KILL_RETIRE = "retire"  # scaled down, replaced by a canary, its stage gone: never relaunched
KILL_DRAIN = "drain"  # moved off a draining agent: relaunched elsewhere, uncounted


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


class Rollouts(RunBase):
    """A long-running run's versions: `update` rolls one out, `promote` ends its canary phase, `_roll` moves it on
    after every event. The slots themselves are the subclass's (ServiceRun)."""

    job_id: str
    run_id: str
    spec: JobSpec  # the target version's
    version: int  # the target version
    state: str
    _stopping: str
    _specs: dict[int, JobSpec]
    _deployments: list[Deployment]
    _stable: set[int]

    def _active(self) -> list[Slot]:
        raise NotImplementedError

    def _retire(self, slot: Slot, now: float, reason: str) -> list[Action]:
        raise NotImplementedError

    def _launch_at(self, slot: Slot, version: int, now: float, *, canary: bool = False) -> Launch:
        raise NotImplementedError

    def _new_slots(self, step: str, n: int, now: float, *, canary: bool = False) -> list[Action]:
        raise NotImplementedError

    def _advance(self, now: float) -> list[Action]:
        raise NotImplementedError

    # -- driving it ---------------------------------------------------------------------------------------------

    def update(self, spec: JobSpec, version: int, now: float) -> list[Action]:
        """Roll out `spec` as `version` (ValueError: another type, not a newer version, the run stopped). A
        deployment in progress is cancelled; the new one starts from what runs now."""
        if self.state != "running" or self._stopping:
            raise ValueError(
                f"run {self.run_id} of job {self.job_id} is {'stopping' if self._stopping else self.state}"
            )
        if spec.type != self.spec.type:
            raise ValueError(f"type: job {self.job_id} is a {self.spec.type} job, not a {spec.type} job")
        if version <= self.version:
            raise ValueError(f"version {version} is not newer than version {self.version}")
        prev = self.deployment()
        if prev is not None and prev.active:
            prev.end("cancelled", now, f"replaced by version {version}")
        actions = self._retire_canaries(now, "whose update was cancelled")
        previous_version = self.version
        self.spec, self.version = spec, version
        self._specs[version] = spec
        for s in self._active():
            if runs_the_same(self._specs[s.version], spec):
                s.version = version  # nothing to restart: it runs what the new version would
        old = any(s.version != version for s in self._active())
        canaries = spec.update.canary if spec.type == "service" and old else 0
        dep = Deployment(version, previous_version, "running", now, canaries=canaries)
        dep.max_parallel = spec.update.max_parallel
        if not old and (prev is None or prev.state == "succeeded"):
            dep.wanted = dep.placed = self.wanted_count()
            dep.healthy = sum(1 for s in self._active() if s.healthy)
            dep.end("succeeded", now, "a scale: nothing to roll out")  # a scale, not a rollout
            if previous_version in self._stable:
                self._stable.add(version)
        self._deploy(dep)
        return actions + self._advance(now)

    def promote(self, now: float) -> list[Action]:
        """The canaries waiting take the place of as many old instances (retired); then the rest are replaced
        (ValueError: no canary waits)."""
        dep = self.deployment()
        if dep is None or dep.state != "paused":
            if dep is None:
                what = "there is no deployment"
            elif dep.active and dep.canaries:
                what = f"the canaries of version {dep.version} are not all healthy yet"
            else:
                what = f"the deployment of version {dep.version} is {dep.state}"
            raise ValueError(f"no canary waits for promotion ({what})")
        dep.promoted, dep.state, dep.message = True, "running", ""
        for s in self._active():
            s.canary = False  # now instances like the others: as many old ones are too many (retired)
        return self._advance(now)

    # -- reading it ---------------------------------------------------------------------------------------------

    def deployment(self) -> Deployment | None:
        """The latest deployment (None before the run started)."""
        return self._deployments[-1] if self._deployments else None

    def deployments(self) -> list[Deployment]:
        """The deployments kept (the last 20), oldest first."""
        return list(self._deployments)

    def wanted_count(self) -> int:
        return sum(s.count for s in self.spec.steps)

    def stable_versions(self) -> set[int]:
        """The versions once fully rolled out and healthy."""
        return set(self._stable)

    def pending_revert(self) -> Revert | None:
        """The revert the latest deployment asked for and that has not happened (a new version): to carry out
        after a restart that came between the asking and the doing."""
        dep = self.deployment()
        if dep is None or dep.state != "reverted" or not dep.revert_to or dep.version != self.version:
            return None
        return Revert(dep.revert_to, dep.message.removesuffix(f": reverting to version {dep.revert_to}"))

    # -- the machinery ------------------------------------------------------------------------------------------

    def _roll(self, now: float) -> list[Action]:
        """The deployment in progress: canaries, then old instances replaced max_parallel at a time; its end."""
        dep = self.deployment()
        if dep is None or not dep.active:
            return []
        policy = self.spec.update
        active = self._active()
        new = [s for s in active if s.version == self.version]
        ok = {id(s) for s in new if settled(s, now, policy.min_healthy_time)}
        for s in new:  # the healthy deadline runs from a new instance's launch (or trouble) until it has settled
            s.launched_at = None if id(s) in ok else (now if s.launched_at is None else s.launched_at)
        dep.wanted, dep.placed, dep.healthy = self.wanted_count(), sum(s.state != "waiting" for s in new), len(ok)
        for s in new:
            if s.launched_at is not None and max(s.launched_at, dep.started_at) + policy.healthy_deadline <= now:
                return self._fail(dep, s, now)
        actions: list[Action] = []
        if dep.canaries and not dep.promoted:
            canaries = [s for s in new if s.canary]
            if len(canaries) < dep.canaries:
                actions += self._new_slots(self.spec.steps[0].name, dep.canaries - len(canaries), now, canary=True)
            elif all(id(s) in ok for s in canaries):
                dep.state = "paused"
                dep.message = f"{len(canaries)} canaries healthy: waiting for `aiomesos job promote {self.job_id}`"
                return actions
            healthy = sum(id(s) in ok for s in canaries)
            dep.state, dep.message = "running", f"starting {dep.canaries} canaries: {healthy} healthy"
            return actions
        old = [s for s in active if s.version != self.version]
        in_flight = sum(s.killing == KILL_REPLACE for s in active) + sum(id(s) not in ok for s in new)
        for s in replace_first(old, self._step_order()):
            if in_flight >= policy.max_parallel:
                break
            if s.killing:
                continue
            if s.live:
                actions.append(self._kill(s, KILL_REPLACE, f"replaced by version {self.version}"))
            else:  # failed for good, or never launched: nothing to wait for
                actions.append(self._launch_at(s, self.version, now))
            in_flight += 1
        if not old and len(ok) == len(new):
            dep.end("succeeded", now, "")
            self._stable.add(self.version)
        else:
            doing = f"replacing {dep.max_parallel} at a time" if dep.from_version else "starting"
            dep.message = f"{doing}: {len(ok)} of {len(new)} healthy"
        return actions

    def _fail(self, dep: Deployment, slot: Slot, now: float) -> list[Action]:
        """`slot`, a new instance, was not healthy by its deadline: the deployment fails (and maybe reverts)."""
        policy = self.spec.update
        what = f"instance {slot.index}" if self.spec.type == "service" else f"worker {slot.index} of stage {slot.step}"
        why = f"{what} of version {dep.version} not healthy within {format_duration(policy.healthy_deadline)}"
        if policy.min_healthy_time:
            why += f" (for {format_duration(policy.min_healthy_time)})"
        target = max((v for v in self._stable if v != self.version), default=0)
        actions = self._retire_canaries(now, "whose update failed")  # the old instances serve on, all of them
        if policy.auto_revert and target:
            dep.end("reverted", now, f"{why}: reverting to version {target}")
            dep.revert_to = target
            return [*actions, Revert(target, why)]
        dep.end("failed", now, why + (" (no stable version to revert to)" if policy.auto_revert else ""))
        return actions

    def _retire_canaries(self, now: float, why: str) -> list[Action]:
        """Remove the canaries never promoted (of an update cancelled or failed)."""
        actions: list[Action] = []
        for s in self._active():
            if s.canary:
                actions += self._retire(s, now, f"canary of version {s.version}, {why}")
        return actions

    def _deploy(self, dep: Deployment) -> None:
        self._deployments = [*self._deployments, dep][-MAX_DEPLOYMENTS_KEPT:]
