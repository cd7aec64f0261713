"""The one long-lived run of a service or a stream job, as a pure state machine (the batch one is `run.Run`; core
drives both alike).

Its slots are instances (a service: one step named like the job) or workers (a stream: one step per stage, in data
order), keyed (step, index); `count` of each step is how many are wanted. A run never ends by itself: only `stop`.

- An instance is healthy when its last status said so (with a health check) or once RUNNING (without). One that
  ends without our asking (failed, finished, killed unhealthy, lost, gone) is relaunched at its version after the
  restart policy's backoff, doubled for each failure in a row; from `crash_loop` failures in a row it shows as
  crash-looping. Failures are forgotten once it has been healthy for `reset_after`. One dropped before it ran, or
  killed by its agent's drain, is relaunched at once, uncounted; one refused as unauthorized or invalid fails for
  good. On a draining agent (`draining`) instances are moved `max_parallel` at a time: killed, relaunched elsewhere,
  the next once the replacement is healthy.
- `scale` changes a step's count: new instances at the lowest free indexes, the highest ones retired (killed, never
  relaunched, dropped from `slots()` once ended).
- Every version is a deployment (`Deployment`): the first launches all at once; `update` replaces old instances
  `max_parallel` at a time (an old one killed, then its slot relaunched at the new version), the next only while
  (new ones not yet healthy for `min_healthy_time`) + (old ones being killed) < max_parallel, so that healthy
  capacity stays >= wanted - max_parallel. A new instance not healthy for min_healthy_time within
  `healthy_deadline` fails the deployment; with `auto_revert` the run asks (`Revert`) for the last stable version.
  With `canary: K` the update first starts K new instances beside the old ones and waits, "paused", for `promote`.
  Instances whose spec runs the same tasks as the new one (a change of counts or policies only) take the new
  version without a restart.
- A stream worker of stage k learns the addresses (host:port0) of stage k-1's healthy workers: in its environment
  at launch (AIOMESOS_UPSTREAM) and, whenever they change, in the file `upstream` of its sandbox (`Message`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk._daemon.flags import format_duration
from scheduler_sdk.frameworks.jobs.deployment import (
    KILL_DRAIN,
    KILL_REPLACE,
    KILL_RETIRE,
    Deployment,
    Rollouts,
    free_indexes,
    retire_first,
    serving,
    with_counts,
)
from scheduler_sdk.frameworks.jobs.run_base import (
    DRAINED,
    FAILED,
    FATAL,
    FREE,
    STOPPED,
    SUCCEEDED,
    classify_end,
    retry_delay,
)
from scheduler_sdk.frameworks.jobs.spec import JobSpec, StepSpec
from scheduler_sdk.frameworks.jobs.tasks import KILL_STOP, Action, Launch, Message, Slot, TaskLaunch
from scheduler_sdk.states import state_name

__all__ = ["MAX_COUNT", "UPSTREAM_FILE", "Deployment", "ServiceRun"]

MAX_COUNT = 1000  # instances of a service, workers of a stage
UPSTREAM_FILE = "upstream"  # the file in a stream worker's sandbox that lists its upstream endpoints
MAX_ATTEMPTS_KEPT = 10  # an instance's earlier attempts kept (a crash loop would grow them without end)
_RETIRED, _REPLACED = "retired", "replaced"  # how a task ended, besides run_base's


class ServiceRun(Rollouts):
    """The state of the run of a service or stream `spec` at `version`; every method that changes it returns the
    actions that follow."""

    def __init__(self, job_id: str, run_id: str, spec: JobSpec, created_at: float, version: int = 1) -> None:
        if not spec.long_running:
            raise ValueError(f"job {spec.name} is a {spec.type} job, not a service or a stream")
        self.job_id, self.run_id, self.spec, self.version = job_id, run_id, spec, version
        self.state = "pending"
        self.created_at = created_at
        self.ended_at: float | None = None
        self._specs: dict[int, JobSpec] = {version: spec}  # the spec of every version a slot runs
        self._slots: dict[str, dict[int, Slot]] = {
            s.name: {i: Slot(s.name, i, version=version) for i in range(s.count)} for s in spec.steps
        }
        self._stopping = ""  # why the run was stopped ("": it was not)
        self._deployments: list[Deployment] = []  # oldest first, the last MAX_DEPLOYMENTS_KEPT
        self._stable: set[int] = set()  # versions once fully rolled out and healthy
        self._moving: list[str] = []  # tasks on draining agents, to move off max_parallel at a time
        self._moved: set[tuple[str, int]] = set()  # slots relaunched off a drain, not healthy yet
        self._upstream: dict[str, tuple[str, ...]] = {}  # stage -> the upstream endpoints last sent to its workers
        self._watch()

    # -- driving it ---------------------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Launch every instance of the first version (its deployment: all at once)."""
        if self.state != "pending":
            return []
        self.state = "running"
        self._deploy(Deployment(self.version, 0, "running", now, max_parallel=self.spec.update.max_parallel))
        return self._advance(now)

    def on_status(
        self,
        task_id: str,
        state: int,
        now: float,
        *,
        exit_code: int | None = None,
        reason: int = 0,
        message: str = "",
        agent_id: str = "",
        hostname: str = "",
        healthy: bool | None = None,
        ports: Sequence[int] = (),
        host: str = "",
    ) -> list[Action]:
        """A task status update (`healthy`: its health, when the status says; `ports`: those placement gave it).
        Unknown tasks, old attempts and repeats change nothing."""
        slot = self._current(task_id)
        if slot is None or not slot.live:
            return []
        if state == tpb.TASK_UNREACHABLE:
            return self._unreachable(slot, now, message)
        was_running = slot.state == "running"
        if self._observe(
            slot,
            state,
            now,
            exit_code=exit_code,
            reason=reason,
            message=message,
            agent_id=agent_id,
            hostname=hostname,
            ports=ports,
            host=host,
        ):
            slot.healthy = slot.healthy_since = None
            actions = self._ended(slot, self._outcome(slot, state, reason), now)
            return actions + self._advance(now)
        if state != tpb.TASK_RUNNING:
            return []
        self._health(slot, healthy, now)
        actions = self._advance(now)
        if not was_running:
            actions += self._tell_upstream(slot, actions)
        return actions

    def tick(self, now: float) -> list[Action]:
        """What time alone moves: instances healthy long enough (a rollout goes on, failures are forgotten), and
        new ones not healthy by their deadline (a deployment fails). Backoff is the launches' `ready_at`."""
        return self._advance(now)

    def next_deadline(self) -> float | None:
        """When `tick` must be called next (None: nothing is timed)."""
        if self.state != "running" or self._stopping:
            return None
        times = []
        reset_after = self.spec.restart.reset_after
        for s in self.slots():
            if (s.failures or s.relaunches) and s.healthy and s.healthy_since is not None:
                times.append(s.healthy_since + reset_after)
        dep = self.deployment()
        if dep is not None and dep.active:
            policy = self.spec.update
            for s in self._active():
                if s.version != self.version or s.launched_at is None:
                    continue
                times.append(max(s.launched_at, dep.started_at) + policy.healthy_deadline)
                if serving(s) and s.healthy_since is not None:  # it settles then (not while being killed)
                    times.append(s.healthy_since + policy.min_healthy_time)
        return min(times, default=None)

    def stop(self, now: float, why: str = "stopped") -> list[Action]:
        """Kill every live task and launch nothing more; the run ends "stopped" once every task has ended."""
        if self.done:
            return []
        self._stopping = why or "stopped"
        dep = self.deployment()
        if dep is not None and dep.active:
            dep.end("cancelled", now, f"the job was stopped: {self._stopping}")
        actions: list[Action] = []
        for slot in self._all_slots():
            if slot.live:  # queued ones too: it may have been launched already; the placement answers either way
                if not slot.killing:
                    actions.append(self._kill(slot, KILL_STOP, self._stopping))
                slot.killing = KILL_STOP
            elif slot.state == "waiting":
                self._end_slot(slot, "stopped", now, self._stopping)
        self._moving.clear()
        if self.state == "pending":
            self.state = "running"
        self._maybe_end(now)
        return actions

    def draining(self, agent_id: str, now: float) -> list[Action]:
        """The agent `agent_id` drains (it gets no offers): move the instances there off, `max_parallel` at a
        time, the next once the previous one's replacement is healthy."""
        if self.done or self._stopping:
            return []
        for s in self.slots():
            if s.live and s.agent_id == agent_id and not s.killing and s.task_id not in self._moving:
                self._moving.append(s.task_id)
        return self._advance(now)

    def scale(self, count: int, now: float, step: str = "") -> list[Action]:
        """Want `count` instances (a stream: workers of stage `step`, which may be left out when there is one
        stage); ValueError naming what is wrong. During a rollout it is the new version's count."""
        noun = "instances" if self.spec.type == "service" else "workers"
        if self.done or self._stopping:
            raise ValueError(f"job {self.job_id} is stopped")
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
            raise ValueError(f"{noun} must be a whole number from 0 to {MAX_COUNT}, not {count!r}")
        names = [s.name for s in self.spec.steps]
        if not step and len(names) > 1:
            raise ValueError(f"stage: job {self.job_id} has {len(names)} stages ({', '.join(names)}): name one")
        step = step or names[0]
        if step not in names:
            what = f"no stage {step!r} in job {self.job_id} (its stages: {', '.join(names)})"
            raise ValueError(f"stage: {what}" if self.spec.type == "stream" else f"a service has no stages: {step!r}")
        self.spec = with_counts(self.spec, {step: count})
        self._specs[self.version] = self.spec
        return self._advance(now)

    # -- reading it ---------------------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.state == "stopped"

    def slots(self) -> list[Slot]:
        """Every instance (worker) not removed, in step order then index."""
        return [s for s in self._all_slots() if not _gone(s)]

    def step_state(self, step: str) -> str:
        """ "waiting" | "running" | "failed" (each instance failed for good) | "stopped" (KeyError: no such step)."""
        if step not in self._slots and step not in {s.name for s in self.spec.steps}:
            raise KeyError(step)
        if self.state in ("pending", "stopped"):
            return "waiting" if self.state == "pending" else "stopped"
        mine = [s for s in self._active() if s.step == step]
        return "failed" if mine and all(s.state == "failed" for s in mine) else "running"

    def endpoints(self, step: str = "") -> list[Slot]:
        """The healthy instances (workers of `step`, or of every stage), step then index: hostname and ports."""
        return [s for s in self.slots() if serving(s) and (not step or s.step == step)]

    def healthy_count(self) -> int:
        return len(self.endpoints())

    def crash_looping(self, slot: Slot) -> bool:
        return slot.failures >= self.spec.restart.crash_loop

    # -- persistence --------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole state, JSON-able: the header and every slot (removed ones too: they keep their attempts)."""
        return {**self.header(), "slots": [s.to_dict() for s in self._all_slots()]}

    def header(self) -> dict[str, Any]:
        """The run's state without its slots (small: written with every change)."""
        return {
            "job_id": self.job_id,
            "run_id": self.run_id,
            "state": self.state,
            "created_at": self.created_at,
            "ended_at": self.ended_at,
            "stopping": self._stopping,
            "version": self.version,
            "counts": {s.name: s.count for s in self.spec.steps},
            "versions": sorted(self._specs),
            "deployments": [d.to_dict() for d in self._deployments],
            "stable": sorted(self._stable),
            "moving": list(self._moving),
            "moved": sorted([step, index] for step, index in self._moved),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], specs: Mapping[int, JobSpec]) -> ServiceRun:
        return cls.from_parts(d, d["slots"], specs)

    @classmethod
    def from_parts(
        cls, header: dict[str, Any], slots: Iterable[dict[str, Any]], specs: Mapping[int, JobSpec]
    ) -> ServiceRun:
        """The run a `header` and the `to_dict` of each of its slots (in any order) give, with the spec of each
        version (`header["versions"]` names those it needs; ValueError when one is missing, or a slot is there
        twice). Its slots count as changed (`mark_clean` if they are as stored)."""
        version = header["version"]
        missing = sorted(set(header.get("versions", [version])) - set(specs))
        if missing:
            raise ValueError(f"run {header['run_id']}: no spec of version {', '.join(map(str, missing))}")
        spec = with_counts(specs[version], header.get("counts", {}))
        run = cls(header["job_id"], header["run_id"], spec, header["created_at"], version)
        run.state, run.ended_at, run._stopping = header["state"], header["ended_at"], header["stopping"]
        run._deployments = [Deployment.from_dict(d) for d in header.get("deployments", [])]
        run._stable = set(header.get("stable", []))
        run._moving = list(header.get("moving", []))
        run._moved = {(step, index) for step, index in header.get("moved", [])}
        run._slots = {}
        for d in slots:
            slot = Slot.from_dict(d)
            if slot.index in run._slots.get(slot.step, {}):
                raise ValueError(f"run {header['run_id']}: slot {slot.step}.{slot.index} is there twice")
            if not _gone(slot) and slot.version not in specs:
                raise ValueError(f"run {header['run_id']}: no spec of version {slot.version}, which a slot runs")
            run._slots.setdefault(slot.step, {})[slot.index] = slot
        for step, by_index in run._slots.items():
            run._slots[step] = dict(sorted(by_index.items()))
        run._specs = {v: specs[v] for v in {s.version for s in run.slots()}} | {version: spec}
        run._watch()
        return run

    # -- the machinery: slots -----------------------------------------------------------------------------------

    def _step_order(self) -> Mapping[str, int]:
        names = [s.name for s in self.spec.steps]
        names += [n for n in self._slots if n not in names]
        return {name: n for n, name in enumerate(names)}

    def _all_slots(self) -> Iterable[Slot]:
        for step in self._step_order():
            yield from self._slots.get(step, {}).values()

    def _slot_at(self, step: str, index: int) -> Slot | None:
        return self._slots.get(step, {}).get(index)

    def _active(self) -> list[Slot]:
        """The slots not being removed."""
        return [s for s in self._all_slots() if not s.retired]

    def _step_spec(self, slot: Slot) -> StepSpec:
        return self._specs[slot.version].step(slot.step)

    def _task_launch(self, slot: Slot) -> TaskLaunch:
        spec = self._specs[slot.version]
        step = spec.step(slot.step)
        ours = {
            "AIOMESOS_JOB": self.job_id,
            "AIOMESOS_RUN": self.run_id,
            "AIOMESOS_STEP": step.name,
            "AIOMESOS_TASK_INDEX": str(slot.index),
            "AIOMESOS_ATTEMPT": str(slot.attempt),
            "AIOMESOS_VERSION": str(slot.version),
        }
        if spec.type == "stream":
            stages = [s.name for s in spec.steps]
            upstream = self._upstream_of(step.name)
            ours |= {
                "AIOMESOS_STAGE": step.name,
                "AIOMESOS_STAGE_NUMBER": str(stages.index(step.name)),
                "AIOMESOS_WORKER_INDEX": str(slot.index),
                "AIOMESOS_UPSTREAM": ",".join(self._addresses(upstream)) if upstream else "",
                "AIOMESOS_UPSTREAM_FILE": UPSTREAM_FILE,
            }
        return TaskLaunch(
            task_id=slot.task_id,
            job_id=self.job_id,
            run_id=self.run_id,
            step=step.name,
            index=slot.index,
            attempt=slot.attempt,
            role=spec.role,
            command=step.command,
            user=step.user,
            env=tuple(sorted({**dict(step.env), **ours}.items())),
            resources=step.resources,
            constraints=step.constraints,
            group=f"{self.job_id}.{self.run_id}.{step.name}",
            gang="",
            gang_size=0,
            ready_at=slot.ready_at,
            health_check=step.health_check,
            lifecycle=spec.lifecycle or "perpetual",
            version=slot.version,
        )

    def _relaunch(self, slot: Slot, ready_at: float) -> Launch:
        """The slot's next attempt, at its version."""
        self._next_attempt(slot, ready_at, keep=MAX_ATTEMPTS_KEPT)
        return Launch(self._task_launch(slot))

    def _launch_at(self, slot: Slot, version: int, now: float, *, canary: bool = False) -> Launch:
        """The slot's next attempt as a new instance of `version` (its failures are the old one's no more)."""
        slot.version, slot.launched_at, slot.canary, slot.retired = version, now, canary, False
        slot.failures = slot.relaunches = 0
        return self._relaunch(slot, 0.0)

    def _new_slots(self, step: str, n: int, now: float, *, canary: bool = False) -> list[Action]:
        """`n` new instances of the current version at the lowest free indexes of `step` (a removed one's slot
        is used again: its attempts go on, so that no task id comes twice)."""
        by_index = self._slots.setdefault(step, {})
        actions: list[Action] = []
        for i in free_indexes((i for i, s in by_index.items() if not _gone(s)), n):
            slot = by_index.get(i)
            if slot is None:
                slot = by_index[i] = Slot(step, i)
                slot.report_to(self._changed)
            actions.append(self._launch_at(slot, self.version, now, canary=canary))
        self._slots[step] = dict(sorted(by_index.items()))
        return actions

    def _retire(self, slot: Slot, now: float, reason: str) -> list[Action]:
        """Remove the slot: its task killed (if live), never relaunched."""
        slot.retired = True
        if slot.live:
            if slot.killing:  # a kill is on its way already: it now ends the slot
                slot.killing = KILL_RETIRE
                return []
            return [self._kill(slot, KILL_RETIRE, reason)]
        if not slot.ended:
            self._end_slot(slot, "stopped", now, reason)
        return []

    def _health(self, slot: Slot, healthy: bool | None, now: float) -> None:
        check = self._step_spec(slot).health_check
        ok = True if check is None else (slot.healthy if healthy is None else healthy)
        if ok and not slot.healthy:
            slot.healthy_since = now
        elif not ok:
            slot.healthy_since = None
        slot.healthy = ok
        if ok:
            self._moved.discard((slot.step, slot.index))

    # -- the machinery: ends ------------------------------------------------------------------------------------

    def _outcome(self, slot: Slot, state: int, reason: int) -> str:
        """What a task's terminal state means for its slot (a service's task that finishes has failed)."""
        if slot.killing == KILL_STOP or self._stopping:
            return STOPPED
        if slot.retired:
            return _RETIRED
        if slot.killing == KILL_REPLACE:
            return _REPLACED
        if slot.killing == KILL_DRAIN:
            return DRAINED
        outcome = classify_end(state, reason, started=slot.started_at is not None, relaunches=slot.relaunches)
        return FAILED if outcome == SUCCEEDED else outcome

    def _ended(self, slot: Slot, outcome: str, now: float) -> list[Action]:
        """The current attempt of `slot` ended as `outcome`: what follows."""
        self._moved.discard((slot.step, slot.index))
        if outcome in (STOPPED, _RETIRED):
            slot.state = "stopped"
            return []
        if outcome == FATAL:
            slot.state = "failed"
            return []
        if outcome == _REPLACED:
            return [self._launch_at(slot, self.version, now)]
        if outcome == DRAINED:
            self._moved.add((slot.step, slot.index))
            return [self._relaunch(slot, 0.0)]
        if outcome == FREE:
            slot.relaunches += 1
            return [self._relaunch(slot, 0.0)]
        policy = self.spec.restart
        slot.failures += 1
        delay = retry_delay(policy.backoff, policy.max_backoff, slot.failures)
        launch = self._relaunch(slot, now + delay)
        if slot.failures >= policy.crash_loop:
            slot.why_waiting = (
                f"crash-looping: {slot.failures} failures in a row; restarting in {format_duration(delay)}"
            )
        return [launch]

    def _unreachable(self, slot: Slot, now: float, message: str) -> list[Action]:
        """Its agent is unreachable: replaced now (as Marathon does), not when the master gives it up; if the agent
        comes back, the shell kills the superseded task. Not a failure of the instance: no backoff."""
        slot.task_state, slot.ended_at = state_name(tpb.TASK_UNREACHABLE), now
        slot.message = message or "its agent is unreachable"
        slot.healthy = slot.healthy_since = None
        outcome = self._outcome(slot, tpb.TASK_UNREACHABLE, 0)
        actions = [self._relaunch(slot, 0.0)] if outcome == FAILED else self._ended(slot, outcome, now)
        return actions + self._advance(now)

    def waiting(self, task_id: str, why: str) -> None:
        """The placement's reason the queued task waits (a crash-looping one keeps saying so)."""
        slot = self._current(task_id)
        if slot is not None and slot.state == "queued":
            looping = self.crash_looping(slot)
            slot.why_waiting = f"crash-looping: {slot.failures} failures in a row; {why}" if looping else why

    # -- the machinery: what follows from the state ------------------------------------------------------------

    def _advance(self, now: float) -> list[Action]:
        """Everything the state now asks for: counts, the rollout, drains, upstream endpoints."""
        if self.state != "running":
            return []
        if self._stopping:
            self._maybe_end(now)
            return []
        self._forget_failures(now)
        actions = self._fit_counts(now)
        actions += self._roll(now)
        actions += self._move_off_drains()
        actions += self._upstream_messages()
        self._specs = {v: self._specs[v] for v in {s.version for s in self.slots()} | {self.version}}
        return actions

    def _forget_failures(self, now: float) -> None:
        reset_after = self.spec.restart.reset_after
        for s in self.slots():
            since = s.healthy_since if s.healthy else None
            if (s.failures or s.relaunches) and since is not None and now - since >= reset_after:
                s.failures = s.relaunches = 0

    def _fit_counts(self, now: float) -> list[Action]:
        """Each step to its count (canaries aside): slots not yet launched launched, missing ones added, too many
        retired (other versions' first, then the highest indexes); a stage the spec no longer has, retired."""
        actions: list[Action] = []
        counts = {s.name: s.count for s in self.spec.steps}
        for step in list(self._step_order()):
            want = counts.get(step, 0)
            regular = [s for s in self._slots.get(step, {}).values() if not s.retired and not s.canary]
            for s in regular:
                if s.state == "waiting":  # made before the run started
                    actions.append(self._launch_at(s, s.version, now))
            if len(regular) < want:
                actions += self._new_slots(step, want - len(regular), now)
            for s in retire_first(regular, self.version)[: max(0, len(regular) - want)]:
                why = "scaled down" if s.version == self.version else f"replaced by version {self.version}"
                if step not in counts:
                    why = f"stage {step} removed in version {self.version}"
                actions += self._retire(s, now, why)
        return actions

    def _move_off_drains(self) -> list[Action]:
        """Kill instances on draining agents while fewer than max_parallel moves are under way."""
        self._moved = {k for k in self._moved if (s := self._slot_at(*k)) is not None and s.live and not s.healthy}
        under_way = sum(s.killing == KILL_DRAIN and s.live for s in self._all_slots()) + len(self._moved)
        actions: list[Action] = []
        keep = []
        for task_id in self._moving:
            slot = self._current(task_id)
            if slot is None or not slot.live or slot.killing or slot.retired:
                continue  # moved, ended or going already
            if under_way < self.spec.update.max_parallel:
                actions.append(self._kill(slot, KILL_DRAIN, "agent draining"))
                under_way += 1
            else:
                keep.append(task_id)
        self._moving = keep
        return actions

    def _upstream_of(self, stage: str) -> str | None:
        """The stage before `stage` in the current spec (None: the first, or not a stage now)."""
        names = [s.name for s in self.spec.steps]
        k = names.index(stage) if stage in names else 0
        return names[k - 1] if k > 0 else None

    def _addresses(self, stage: str) -> list[str]:
        """host:port0 of the healthy workers of `stage`, by index."""
        return [address(s) for s in self.endpoints(stage) if (s.host or s.hostname) and s.ports]

    def _upstream_messages(self) -> list[Action]:
        """A stage's upstream endpoints changed: tell each of its running workers."""
        if self.spec.type != "stream":
            return []
        actions: list[Action] = []
        for stage in self.spec.steps[1:]:
            upstream = self._upstream_of(stage.name)
            addresses = tuple(self._addresses(upstream)) if upstream else ()
            if self._upstream.get(stage.name) == addresses:
                continue
            self._upstream[stage.name] = addresses
            data = "".join(f"{a}\n" for a in addresses).encode()
            for s in self._slots.get(stage.name, {}).values():
                if s.state == "running" and not s.killing:
                    actions.append(Message(s.task_id, s.agent_id, UPSTREAM_FILE, data))
        return actions

    def _tell_upstream(self, slot: Slot, sent: Sequence[Action]) -> list[Action]:
        """A stream worker just running learns its upstream endpoints (unless it was just told)."""
        upstream = self._upstream_of(slot.step) if self.spec.type == "stream" else None
        if upstream is None or any(isinstance(a, Message) and a.task_id == slot.task_id for a in sent):
            return []
        data = "".join(f"{a}\n" for a in self._addresses(upstream)).encode()
        return [Message(slot.task_id, slot.agent_id, UPSTREAM_FILE, data)]

    def _maybe_end(self, now: float) -> None:
        if self.state == "running" and self._stopping and not any(s.live for s in self._all_slots()):
            self.state, self.ended_at = "stopped", now


def address(slot: Slot) -> str:
    """host:port of an instance's first port ("" when it has none): its agent's address host, else its hostname."""
    return f"{slot.host or slot.hostname}:{slot.ports[0]}" if slot.ports else ""


def _gone(slot: Slot) -> bool:
    """Removed for good: retired, and its last task ended."""
    return slot.retired and not slot.live
