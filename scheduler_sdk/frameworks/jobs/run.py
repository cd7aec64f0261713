"""One run of a job as a pure state machine: which tasks to launch, retry, time out, kill and cancel.

A `Run` is driven by its shell (the jobs service) with times passed in: `start`, `on_status` for each task status
update, `tick` when `next_deadline` has come, `stop`. Each returns the actions to carry out (`Launch`, `Kill`); the
run never does I/O and never reads a clock, so a test drives it with plain numbers. `to_dict`/`from_dict` give
its whole state as JSON-able data; for a store that keeps it in pieces, `header` (the run without its slots) and
`take_dirty` (the slots changed since the last take, one row each) are what to write after an event, and
`from_parts` reads them back.

A batch job is a workflow of one step. A step is `count` slots (task index 0..count-1); each slot runs until its
task finishes, retrying a failed task (`retries.attempts` times, with exponential backoff through the launch's
`ready_at`) and relaunching, without using a retry, a task that was dropped before it ran (at most
`MAX_RELAUNCHES` times). A task killed by its agent's drain is relaunched free (unbounded: a draining agent is
offered no more); a task the master refuses as unauthorized or invalid fails for good at once. A gang step's slots
run and retry as one.

A slot never gets a new attempt before its current one has ended: a task we kill (a gang member, a stop, a
timeout), even one still queued in the placement, stays live, `killing`, until its terminal status comes (the
placement answers TASK_KILLED at once for a task it had only queued); `kills_outstanding` names those kills, to
send again after a restart. A step whose dependencies all succeeded is launched; a step that fails for good
cancels what can no longer run (`on_failure`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk._daemon.flags import format_duration
from scheduler_sdk.frameworks.jobs.run_base import (
    DRAINED,
    FAILED,
    FATAL,
    FREE,
    MAX_RELAUNCHES,
    STOPPED,
    SUCCEEDED,
    RunBase,
    classify_end,
    retry_delay,
)
from scheduler_sdk.frameworks.jobs.spec import JobSpec, StepSpec
from scheduler_sdk.frameworks.jobs.tasks import (
    KILL_GANG,
    KILL_STOP,
    KILL_TIMEOUT,
    Action,
    Attempt,
    Kill,
    Launch,
    Slot,
    TaskLaunch,
)

__all__ = [
    "MAX_RELAUNCHES",
    "RUN_STATES",
    "Action",
    "Attempt",
    "Kill",
    "Launch",
    "Run",
    "Slot",
    "TaskLaunch",
    "retry_delay",
]

RUN_STATES = ("pending", "running", "succeeded", "failed", "stopped")
GANG = "gang"  # how a task ended: killed because another gang member ended (the others: run_base)
_RETRY, _FAIL = "retry", "fail"  # what a gang does once its members have ended (or FREE, DRAINED)


class Run(RunBase):
    """The state of one run of `spec`; every method that changes it returns the actions that follow."""

    def __init__(self, job_id: str, run_id: str, spec: JobSpec, created_at: float) -> None:
        self.job_id, self.run_id, self.spec = job_id, run_id, spec
        self.state = "pending"
        self.created_at = created_at
        self.ended_at: float | None = None
        self._steps: dict[str, StepSpec] = {s.name: s for s in spec.steps}
        self._slots: dict[str, list[Slot]] = {s.name: [Slot(s.name, i) for i in range(s.count)] for s in spec.steps}
        self._started: set[str] = set()  # steps launched
        self._gangs: dict[str, str] = {}  # gang step -> what it does once its members have ended (_RETRY/FREE/_FAIL)
        self._stopping = ""  # why the run was stopped ("": it was not)
        self._changed: list[Slot] = []  # slots that turned dirty since the last take (see take_dirty)
        self._watch()

    # -- driving it ---------------------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Launch every step that depends on nothing (a batch: its one step)."""
        if self.state != "pending":
            return []
        self.state = "running"
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
        """A task status update. Unknown tasks, old attempts and repeats change nothing. `healthy` is for
        services (ignored here); `ports`, the ports placement gave the task, are recorded."""
        slot = self._current(task_id)
        if slot is None or not slot.live:
            return []
        if not self._observe(
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
            return []
        actions = self._ended(slot, self._outcome(slot, state, reason), now)
        return actions + self._advance(now)

    def tick(self, now: float) -> list[Action]:
        """Kill the tasks that ran past their step's timeout (retry backoff is the launches' `ready_at`)."""
        actions: list[Action] = []
        if self.done or self._stopping:
            return actions
        for slot in self._all_slots():
            deadline = self._deadline(slot)
            if deadline is not None and deadline <= now:
                timeout = self._steps[slot.step].timeout or 0.0
                actions.append(self._kill(slot, KILL_TIMEOUT, f"timed out after {format_duration(timeout)}"))
        return actions

    def next_deadline(self) -> float | None:
        """When `tick` must be called next: the first running task's timeout (None: nothing is timed)."""
        deadlines = [d for d in map(self._deadline, self._all_slots()) if d is not None]
        return min(deadlines, default=None)

    def stop(self, now: float, why: str = "stopped") -> list[Action]:
        """Kill every live task and launch nothing more; the run ends "stopped" once every task has ended."""
        if self.done:
            return []
        self._stopping = why or "stopped"
        self._gangs.clear()
        actions: list[Action] = []
        for slot in self._all_slots():
            if slot.live:  # queued ones too: it may have been launched already; the placement answers either way
                if not slot.killing:
                    actions.append(self._kill(slot, KILL_STOP, self._stopping))
                slot.killing = KILL_STOP
            elif slot.state == "waiting":
                self._end_slot(slot, "stopped", now, self._stopping)
        if self.state == "pending":
            self.state = "running"
        self._maybe_end(now)
        return actions

    def draining(self, agent_id: str, now: float) -> list[Action]:
        """The agent `agent_id` drains: a batch task there runs on until it ends (or the drain's deadline kills
        it, REASON_AGENT_DRAINING, and it is relaunched elsewhere without using a retry). Nothing to do now; a
        service moves its instances off (ServiceRun.draining)."""
        return []

    # -- reading it ---------------------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed", "stopped")

    def slots(self) -> list[Slot]:
        """Every (step, index), in step order then index."""
        return list(self._all_slots())

    def step_state(self, step: str) -> str:
        """ "waiting" | "running" | "succeeded" | "failed" | "cancelled" | "stopped" (KeyError: no such step)."""
        states = {s.state for s in self._slots[step]}
        if "failed" in states:
            return "failed"
        if "stopped" in states:
            return "stopped"
        if len(states) == 1 and states <= {"cancelled", "succeeded"}:
            return states.pop()
        return "waiting" if step not in self._started else "running"

    # -- persistence --------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole state, JSON-able: the header and every slot."""
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
            "started": sorted(self._started),
            "gangs": dict(self._gangs),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], spec: JobSpec) -> Run:
        """The run `to_dict` gave, for `spec` (ValueError: the slots are not those of spec's steps)."""
        return cls.from_parts(d, d["slots"], spec)

    @classmethod
    def from_parts(cls, header: dict[str, Any], slots: Iterable[dict[str, Any]], spec: JobSpec) -> Run:
        """The run a `header` and the `to_dict` of each of its slots (in any order) give, for `spec` (ValueError:
        the slots are not those of spec's steps, each once). Its slots count as changed (`mark_clean` if they are
        as stored)."""
        run = cls(header["job_id"], header["run_id"], spec, header["created_at"])
        run.state, run.ended_at, run._stopping = header["state"], header["ended_at"], header["stopping"]
        run._started, run._gangs = set(header["started"]), dict(header["gangs"])
        loaded = [Slot.from_dict(d) for d in slots]
        found = {(s.step, s.index): s for s in loaded}
        if len(found) != len(loaded) or found.keys() != {(s.step, s.index) for s in run._all_slots()}:
            raise ValueError(f"run {header['run_id']}: its slots are not those of job {spec.name}'s steps")
        for step, step_slots in run._slots.items():
            run._slots[step] = [found[(step, i)] for i in range(len(step_slots))]
        run._watch()
        return run

    # -- the machinery ------------------------------------------------------------------------------------------

    def _all_slots(self) -> Iterable[Slot]:
        for slots in self._slots.values():
            yield from slots

    def _slot_at(self, step: str, index: int) -> Slot | None:
        slots = self._slots.get(step)
        return slots[index] if slots is not None and index < len(slots) else None

    def _step_order(self) -> Mapping[str, int]:
        return {name: n for n, name in enumerate(self._slots)}

    def _deadline(self, slot: Slot) -> float | None:
        timeout = self._steps[slot.step].timeout
        if slot.state != "running" or slot.killing or timeout is None or slot.started_at is None:
            return None
        return slot.started_at + timeout

    def _task_launch(self, slot: Slot) -> TaskLaunch:
        step = self._steps[slot.step]
        group = f"{self.job_id}.{self.run_id}.{step.name}"
        ours = {
            "AIOMESOS_JOB": self.job_id,
            "AIOMESOS_RUN": self.run_id,
            "AIOMESOS_STEP": step.name,
            "AIOMESOS_TASK_INDEX": str(slot.index),
            "AIOMESOS_ATTEMPT": str(slot.attempt),
        }
        return TaskLaunch(
            task_id=slot.task_id,
            job_id=self.job_id,
            run_id=self.run_id,
            step=step.name,
            index=slot.index,
            attempt=slot.attempt,
            role=self.spec.role,
            command=step.command,
            user=step.user,
            env=tuple(sorted({**dict(step.env), **ours}.items())),
            resources=step.resources,
            constraints=step.constraints,
            group=group,
            gang=group if step.gang else "",
            gang_size=step.count if step.gang else 0,
            ready_at=slot.ready_at,
        )

    def _launch(self, slot: Slot, ready_at: float) -> Launch:
        """Hand the slot's next attempt to placement (the first one, when the slot has none yet)."""
        self._next_attempt(slot, ready_at)
        return Launch(self._task_launch(slot))

    def _outcome(self, slot: Slot, state: int, reason: int) -> str:
        """What a task's terminal state means for its slot."""
        if state == tpb.TASK_FINISHED:
            return SUCCEEDED
        if slot.killing == KILL_STOP or self._stopping:
            return STOPPED
        if slot.killing == KILL_GANG:
            slot.message = slot.kill_reason
            return GANG
        if slot.killing == KILL_TIMEOUT:
            slot.message = slot.kill_reason
            return FAILED
        return classify_end(state, reason, started=slot.started_at is not None, relaunches=slot.relaunches)

    def _retries_left(self, slot: Slot) -> bool:
        return slot.retries < self._steps[slot.step].retries.attempts and not self._stopping

    def _retry_at(self, slot: Slot, now: float) -> float:
        policy = self._steps[slot.step].retries
        return now + retry_delay(policy.backoff, policy.max_backoff, slot.retries)

    def _ended(self, slot: Slot, outcome: str, now: float) -> list[Action]:
        """The current attempt of `slot` ended as `outcome`: what follows."""
        if self._steps[slot.step].gang:
            return self._gang_member_ended(slot, outcome, now)
        if outcome in (FREE, DRAINED):
            slot.relaunches += outcome == FREE
            return [self._launch(slot, 0.0)]
        if outcome == FAILED and self._retries_left(slot):
            slot.retries += 1
            return [self._launch(slot, self._retry_at(slot, now))]
        slot.state = {SUCCEEDED: "succeeded", STOPPED: "stopped"}.get(outcome, "failed")
        if slot.state == "failed":
            self._step_failed(slot.step)
        return []

    def _gang_member_ended(self, slot: Slot, outcome: str, now: float) -> list[Action]:
        """A gang member ended: the first failure ends the gang's attempt (the others are killed); once every
        member has ended, the gang is relaunched as one (or the step fails)."""
        actions: list[Action] = []
        plan = self._gangs.get(slot.step)
        if outcome == STOPPED:
            slot.state = "stopped"
        elif outcome == SUCCEEDED and plan in (None, _FAIL):
            slot.state = "succeeded"
        elif outcome in (FREE, DRAINED, FAILED, FATAL) and plan is None:
            plan = self._gang_plan(slot, outcome)
            self._gangs[slot.step] = plan
            slot.state = "failed" if plan == _FAIL else "waiting"
            actions = self._kill_gang(slot)
            if plan == _FAIL:
                self._step_failed(slot.step)
        else:  # killed for the gang, or a second failure while it comes down, or finished after that
            slot.state = "failed" if plan == _FAIL else "waiting"
        # relaunched only once every member's attempt has ended (a killed one, even one only queued, stays live
        # until its terminal status comes)
        if plan is not None and not any(s.live for s in self._slots[slot.step]):
            del self._gangs[slot.step]
            if plan != _FAIL and not self._stopping:
                actions += self._relaunch_gang(slot.step, plan, now)
        return actions

    def _gang_plan(self, slot: Slot, outcome: str) -> str:
        """What the gang does once its members have ended, when `slot` is the first to end `outcome`."""
        if outcome in (FREE, DRAINED):
            return outcome
        return _RETRY if outcome == FAILED and self._retries_left(slot) else _FAIL

    def _kill_gang(self, failed: Slot) -> list[Action]:
        """Kill every other live member of a gang whose member `failed` (queued ones too: a gang launches in one
        accept, so a member whose first update has not come may run already)."""
        why = f"gang member {failed.index} failed"
        return [
            self._kill(s, KILL_GANG, why)
            for s in self._slots[failed.step]
            if s is not failed and s.live and not s.killing
        ]

    def _relaunch_gang(self, step: str, plan: str, now: float) -> list[Action]:
        slots = self._slots[step]
        for s in slots:
            if plan == FREE:
                s.relaunches += 1
            elif plan == _RETRY:
                s.retries += 1
        ready_at = self._retry_at(slots[0], now) if plan == _RETRY else 0.0
        return [self._launch(s, ready_at) for s in slots]

    def _step_failed(self, step: str) -> None:
        """`step` failed for good: cancel the steps that will not run now (all, or those that depend on it)."""
        doomed = self._dependents(step) if self.spec.on_failure == "continue" else set(self._slots)
        for name in doomed - self._started:
            for s in self._slots[name]:
                s.state = "cancelled"

    def _dependents(self, step: str) -> set[str]:
        found: set[str] = set()
        todo = [step]
        while todo:
            name = todo.pop()
            for s in self.spec.steps:
                if name in s.depends_on and s.name not in found:
                    found.add(s.name)
                    todo.append(s.name)
        return found

    def _advance(self, now: float) -> list[Action]:
        """Launch each step whose dependencies all succeeded, then end the run if nothing is left to do."""
        actions: list[Action] = []
        if self.state == "running" and not self._stopping:
            for step in self.spec.steps:
                if step.name in self._started or self.step_state(step.name) != "waiting":
                    continue
                if all(self.step_state(d) == "succeeded" for d in step.depends_on):
                    self._started.add(step.name)
                    actions += [self._launch(s, 0.0) for s in self._slots[step.name]]
        self._maybe_end(now)
        return actions

    def _maybe_end(self, now: float) -> None:
        if self.state != "running" or any(s.live for s in self._all_slots()):
            return
        for s in self._all_slots():
            if s.state == "waiting":  # cannot start any more (nothing is live to make it)
                s.state = "stopped" if self._stopping else "cancelled"
        if all(s.state == "succeeded" for s in self._all_slots()):  # even if stopped as its last tasks finished
            self.state = "succeeded"
        elif self._stopping:
            self.state = "stopped"
        else:
            self.state = "failed"
        self.ended_at = now
