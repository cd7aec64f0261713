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

from collections.abc import Iterable
from typing import Any

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk._daemon.flags import format_duration
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
from scheduler_sdk.states import TERMINAL_STATES, state_name

__all__ = ["MAX_RELAUNCHES", "RUN_STATES", "Action", "Attempt", "Kill", "Launch", "Run", "Slot", "TaskLaunch"]

RUN_STATES = ("pending", "running", "succeeded", "failed", "stopped")
MAX_RELAUNCHES = 5  # free relaunches of a slot (or a gang) whose task never ran; then a drop counts as a failure
# a task that ends with one of these reasons before it ran was refused at launch (its offer went away): it never ran
_REFUSED_REASONS = frozenset({tpb.TaskStatus.REASON_INVALID_OFFERS, tpb.TaskStatus.REASON_RESOURCES_UNKNOWN})
# a reconciliation answer with one of these: the master does not have the task; if it never ran, it never will
_NOT_THERE = frozenset({tpb.TASK_LOST, tpb.TASK_GONE, tpb.TASK_UNKNOWN, tpb.TASK_DROPPED})
# refused by the master for what the task is: retrying cannot help
_FATAL_REASONS = frozenset(
    {
        tpb.TaskStatus.REASON_TASK_UNAUTHORIZED,
        tpb.TaskStatus.REASON_TASK_INVALID,
        tpb.TaskStatus.REASON_TASK_GROUP_UNAUTHORIZED,
        tpb.TaskStatus.REASON_TASK_GROUP_INVALID,
    }
)
# TASK_UNKNOWN (the master knows neither the task nor its agent) ends a task as TASK_LOST does
_END_STATES = TERMINAL_STATES | {tpb.TASK_UNKNOWN}
# how a task ended
_SUCCEEDED, _STOPPED, _FREE, _DRAINED, _FAILED, _FATAL, _GANG = (
    "succeeded",
    "stopped",
    "free",  # it never ran: relaunched without a retry (at most MAX_RELAUNCHES times)
    "drained",  # its agent was drained under it: relaunched without a retry
    "failed",  # retried if attempts are left
    "fatal",  # fails for good at once
    "gang",  # killed because another gang member ended
)
_RETRY, _FAIL = "retry", "fail"  # what a gang does once its members have ended (or _FREE, _DRAINED)


def retry_delay(backoff: float, max_backoff: float, n: int) -> float:
    """Seconds before the n-th retry (n >= 1): backoff, doubled for each further retry, at most max_backoff."""
    return min(max_backoff, backoff * 2.0 ** (n - 1))


class Run:
    """The state of one run of `spec`; every method that changes it returns the actions that follow."""

    def __init__(self, job_id: str, run_id: str, spec: JobSpec, created_at: float) -> None:
        self.job_id, self.run_id, self.spec = job_id, run_id, spec
        self.state = "pending"
        self.created_at = created_at
        self.ended_at: float | None = None
        self._steps: dict[str, StepSpec] = {s.name: s for s in spec.steps}
        self._slots: dict[str, list[Slot]] = {s.name: [Slot(s.name, i) for i in range(s.count)] for s in spec.steps}
        self._started: set[str] = set()  # steps launched
        self._gangs: dict[str, str] = {}  # gang step -> what it does once its members have ended (_RETRY/_FREE/_FAIL)
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
    ) -> list[Action]:
        """A task status update. Unknown tasks, old attempts and repeats change nothing."""
        slot = self._current(task_id)
        if slot is None or not slot.live:
            return []
        slot.agent_id, slot.hostname = agent_id or slot.agent_id, hostname or slot.hostname
        if state in (tpb.TASK_STAGING, tpb.TASK_STARTING):
            if slot.state == "queued":
                slot.state, slot.why_waiting = "staging", ""
            return []
        if state == tpb.TASK_RUNNING:
            if slot.state != "running":
                slot.state, slot.why_waiting = "running", ""
                slot.started_at = now if slot.started_at is None else slot.started_at
            return []
        if state not in _END_STATES:  # KILLING; UNREACHABLE is not an end: the master says LOST/GONE later
            return []
        slot.task_state, slot.reason, slot.exit_code, slot.ended_at = state_name(state), reason, exit_code, now
        slot.message = message
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

    def waiting(self, task_id: str, why: str) -> None:
        """The placement's reason the queued task `task_id` waits (shown by `job status`)."""
        slot = self._current(task_id)
        if slot is not None and slot.state == "queued":
            slot.why_waiting = why

    def kills_outstanding(self) -> list[Kill]:
        """Every kill asked and not yet answered by the task's end: to send again (after a restart, and every
        few seconds until the terminal status comes)."""
        return [Kill(s.task_id, s.agent_id, s.kill_reason) for s in self._all_slots() if s.live and s.killing]

    # -- reading it ---------------------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed", "stopped")

    def live_tasks(self) -> list[tuple[str, str]]:
        """(task_id, agent_id) of every task launched and not ended: what to reconcile after a restart."""
        return [(s.task_id, s.agent_id) for s in self._all_slots() if s.state in ("staging", "running")]

    def queued(self) -> list[TaskLaunch]:
        """The launches handed to placement and not yet reported: what to queue again after a restart."""
        return [self._task_launch(s) for s in self._all_slots() if s.state == "queued"]

    def launch_for(self, task_id: str) -> TaskLaunch | None:
        """The current launch of a live task (to adopt it after a restart); None for old or unknown ids."""
        slot = self._current(task_id)
        return self._task_launch(slot) if slot is not None and slot.live else None

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

    def owns(self, task_id: str) -> bool:
        return self._parse(task_id) is not None

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

    def take_dirty(self) -> list[dict[str, Any]]:
        """The `to_dict` of every slot changed since the last take (each names its step and index), in slot order;
        they are clean afterwards. A new run's slots (and a loaded run's, see `from_parts`) all count as changed.
        Costs what changed, not the run's size."""
        order = {name: n for n, name in enumerate(self._slots)}
        changed = sorted((s for s in self._changed if s.dirty), key=lambda s: (order[s.step], s.index))
        self._changed.clear()
        out = []
        for slot in changed:
            if slot.dirty:  # once, however often it was listed
                out.append(slot.to_dict())
                slot.mark_clean()
        return out

    def mark_clean(self) -> None:
        """Every slot as stored (after writing them all, or after loading them)."""
        for slot in self._changed:
            slot.mark_clean()
        self._changed.clear()

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

    def _watch(self) -> None:
        """Have every slot report to this run when it turns dirty (the dirty ones are listed now)."""
        self._changed = []
        for slot in self._all_slots():
            slot.report_to(self._changed)

    def _all_slots(self) -> Iterable[Slot]:
        for slots in self._slots.values():
            yield from slots

    def _parse(self, task_id: str) -> tuple[Slot, int] | None:
        """The slot a task id of this run names, and the attempt; None when it names none."""
        prefix = f"{self.job_id}.{self.run_id}."
        parts = task_id[len(prefix) :].rsplit(".", 2) if task_id.startswith(prefix) else []
        if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()) or parts[0] not in self._slots:
            return None
        slots, index, attempt = self._slots[parts[0]], int(parts[1]), int(parts[2])
        if index >= len(slots) or attempt > slots[index].attempt:
            return None
        return slots[index], attempt

    def _current(self, task_id: str) -> Slot | None:
        """The slot whose current attempt `task_id` is."""
        found = self._parse(task_id)
        return found[0] if found is not None and found[0].task_id == task_id else None

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
        if slot.task_id:
            slot.attempts.append(
                Attempt(
                    slot.task_id,
                    slot.task_state,
                    slot.exit_code,
                    slot.started_at,
                    slot.ended_at,
                    slot.agent_id,
                    slot.hostname,
                    slot.message,
                )
            )
            slot.mark_dirty()  # changed in place
            slot.attempt += 1
        slot.task_id = f"{self.job_id}.{self.run_id}.{slot.step}.{slot.index}.{slot.attempt}"
        slot.state, slot.ready_at, slot.why_waiting = "queued", ready_at, ""
        slot.agent_id = slot.hostname = slot.message = slot.task_state = slot.killing = slot.kill_reason = ""
        slot.started_at = slot.ended_at = slot.exit_code = None
        slot.reason = 0
        return Launch(self._task_launch(slot))

    def _kill(self, slot: Slot, kind: str, reason: str) -> Kill:
        slot.killing, slot.kill_reason = kind, reason
        return Kill(slot.task_id, slot.agent_id, reason)

    def _end_slot(self, slot: Slot, state: str, now: float, message: str = "") -> None:
        """End a slot's current attempt without a status from its task (it was not known launched)."""
        slot.state, slot.ended_at = state, now
        if slot.task_id and not slot.task_state:
            slot.task_state = state_name(tpb.TASK_KILLED)
        slot.message = message or slot.message

    def _outcome(self, slot: Slot, state: int, reason: int) -> str:
        """What a task's terminal state means for its slot."""
        if state == tpb.TASK_FINISHED:
            return _SUCCEEDED
        if slot.killing == KILL_STOP or self._stopping:
            return _STOPPED
        if slot.killing == KILL_GANG:
            slot.message = slot.kill_reason
            return _GANG
        if slot.killing == KILL_TIMEOUT:
            slot.message = slot.kill_reason
            return _FAILED
        if state == tpb.TASK_ERROR and reason in _FATAL_REASONS:
            return _FATAL
        if state == tpb.TASK_KILLED and reason == tpb.TaskStatus.REASON_AGENT_DRAINING:
            return _DRAINED
        not_started = slot.started_at is None and (
            reason in _REFUSED_REASONS or (reason == tpb.TaskStatus.REASON_RECONCILIATION and state in _NOT_THERE)
        )
        never_ran = state == tpb.TASK_DROPPED or not_started
        if never_ran and state != tpb.TASK_ERROR and slot.relaunches < MAX_RELAUNCHES:
            return _FREE
        return _FAILED

    def _retries_left(self, slot: Slot) -> bool:
        return slot.retries < self._steps[slot.step].retries.attempts and not self._stopping

    def _retry_at(self, slot: Slot, now: float) -> float:
        policy = self._steps[slot.step].retries
        return now + retry_delay(policy.backoff, policy.max_backoff, slot.retries)

    def _ended(self, slot: Slot, outcome: str, now: float) -> list[Action]:
        """The current attempt of `slot` ended as `outcome`: what follows."""
        if self._steps[slot.step].gang:
            return self._gang_member_ended(slot, outcome, now)
        if outcome in (_FREE, _DRAINED):
            slot.relaunches += outcome == _FREE
            return [self._launch(slot, 0.0)]
        if outcome == _FAILED and self._retries_left(slot):
            slot.retries += 1
            return [self._launch(slot, self._retry_at(slot, now))]
        slot.state = {_SUCCEEDED: "succeeded", _STOPPED: "stopped"}.get(outcome, "failed")
        if slot.state == "failed":
            self._step_failed(slot.step)
        return []

    def _gang_member_ended(self, slot: Slot, outcome: str, now: float) -> list[Action]:
        """A gang member ended: the first failure ends the gang's attempt (the others are killed); once every
        member has ended, the gang is relaunched as one (or the step fails)."""
        actions: list[Action] = []
        plan = self._gangs.get(slot.step)
        if outcome == _STOPPED:
            slot.state = "stopped"
        elif outcome == _SUCCEEDED and plan in (None, _FAIL):
            slot.state = "succeeded"
        elif outcome in (_FREE, _DRAINED, _FAILED, _FATAL) and plan is None:
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
        if outcome in (_FREE, _DRAINED):
            return outcome
        return _RETRY if outcome == _FAILED and self._retries_left(slot) else _FAIL

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
            if plan == _FREE:
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
