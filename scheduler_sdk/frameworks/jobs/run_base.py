"""What every run state machine of the jobs service shares (`run.Run` for batch and workflow jobs,
`service_run.ServiceRun` for services and streams): its slots' task ids and attempts, how a task's status moves
its slot, what a task's end means when nothing else explains it, the kills it waits on, and the dirty tracking its
store reads (`take_dirty`). Pure: times are passed in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.frameworks.jobs.tasks import Attempt, Kill, Slot, TaskLaunch
from scheduler_sdk.states import TERMINAL_STATES, state_name

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
END_STATES = TERMINAL_STATES | {tpb.TASK_UNKNOWN}

# how a task ended
SUCCEEDED = "succeeded"
STOPPED = "stopped"
FREE = "free"  # it never ran: relaunched without counting (at most MAX_RELAUNCHES times in a row)
DRAINED = "drained"  # its agent was drained under it: relaunched without counting
FAILED = "failed"  # retried (batch: if attempts are left; services: always, with backoff)
FATAL = "fatal"  # fails for good at once


def retry_delay(backoff: float, max_backoff: float, n: int) -> float:
    """Seconds before the n-th retry (n >= 1): backoff, doubled for each further retry, at most max_backoff."""
    return min(max_backoff, backoff * 2.0 ** (n - 1))


def classify_end(state: int, reason: int, *, started: bool, relaunches: int) -> str:
    """What a task's terminal `state` means when no kill of ours explains it: SUCCEEDED (finished), FATAL (refused
    for what it is), DRAINED (killed by its agent's drain), FREE (it never ran, and relaunches are left) or
    FAILED."""
    if state == tpb.TASK_FINISHED:
        return SUCCEEDED
    if state == tpb.TASK_ERROR and reason in _FATAL_REASONS:
        return FATAL
    if state == tpb.TASK_KILLED and reason == tpb.TaskStatus.REASON_AGENT_DRAINING:
        return DRAINED
    not_started = not started and (
        reason in _REFUSED_REASONS or (reason == tpb.TaskStatus.REASON_RECONCILIATION and state in _NOT_THERE)
    )
    never_ran = state == tpb.TASK_DROPPED or not_started
    if never_ran and state != tpb.TASK_ERROR and relaunches < MAX_RELAUNCHES:
        return FREE
    return FAILED


class RunBase:
    """The slot bookkeeping of a run. A subclass says where its slots are (`_all_slots`, `_slot_at`,
    `_step_order`) and what a slot launches (`_task_launch`)."""

    job_id: str
    run_id: str
    _changed: list[Slot]  # slots that turned dirty since the last take (see take_dirty)

    def _all_slots(self) -> Iterable[Slot]:
        raise NotImplementedError

    def _slot_at(self, step: str, index: int) -> Slot | None:
        raise NotImplementedError

    def _step_order(self) -> Mapping[str, int]:
        raise NotImplementedError

    def _task_launch(self, slot: Slot) -> TaskLaunch:
        raise NotImplementedError

    # -- what the shell asks ------------------------------------------------------------------------------------

    def waiting(self, task_id: str, why: str) -> None:
        """The placement's reason the queued task `task_id` waits (shown by `job status`)."""
        slot = self._current(task_id)
        if slot is not None and slot.state == "queued":
            slot.why_waiting = why

    def kills_outstanding(self) -> list[Kill]:
        """Every kill asked and not yet answered by the task's end: to send again (after a restart, and every
        few seconds until the terminal status comes)."""
        return [Kill(s.task_id, s.agent_id, s.kill_reason) for s in self._all_slots() if s.live and s.killing]

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

    def owns(self, task_id: str) -> bool:
        return self._parse(task_id) is not None

    # -- persistence --------------------------------------------------------------------------------------------

    def take_dirty(self) -> list[dict[str, Any]]:
        """The `to_dict` of every slot changed since the last take (each names its step and index), in slot order;
        they are clean afterwards. A new run's slots (and a loaded run's, see `from_parts`) all count as changed.
        Costs what changed, not the run's size."""
        order = self._step_order()
        changed = sorted((s for s in self._changed if s.dirty), key=lambda s: (order.get(s.step, len(order)), s.index))
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

    # -- the machinery ------------------------------------------------------------------------------------------

    def _watch(self) -> None:
        """Have every slot report to this run when it turns dirty (the dirty ones are listed now)."""
        self._changed = []
        for slot in self._all_slots():
            slot.report_to(self._changed)

    def _parse(self, task_id: str) -> tuple[Slot, int] | None:
        """The slot a task id of this run names, and the attempt; None when it names none."""
        prefix = f"{self.job_id}.{self.run_id}."
        parts = task_id[len(prefix) :].rsplit(".", 2) if task_id.startswith(prefix) else []
        if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
            return None
        slot, attempt = self._slot_at(parts[0], int(parts[1])), int(parts[2])
        if slot is None or attempt > slot.attempt:
            return None
        return slot, attempt

    def _current(self, task_id: str) -> Slot | None:
        """The slot whose current attempt `task_id` is."""
        found = self._parse(task_id)
        return found[0] if found is not None and found[0].task_id == task_id else None

    def _observe(
        self,
        slot: Slot,
        state: int,
        now: float,
        *,
        exit_code: int | None,
        reason: int,
        message: str,
        agent_id: str,
        hostname: str,
        ports: Sequence[int],
        host: str = "",
    ) -> bool:
        """Move a live slot by its task's status; True when the status ended the task (its end recorded in the
        slot). KILLING and UNREACHABLE are no end (the master says LOST/GONE later)."""
        slot.agent_id, slot.hostname = agent_id or slot.agent_id, hostname or slot.hostname
        slot.host = host or slot.host
        if ports:
            slot.ports = list(ports)
        if state in (tpb.TASK_STAGING, tpb.TASK_STARTING):
            if slot.state == "queued":
                slot.state, slot.why_waiting = "staging", ""
            return False
        if state == tpb.TASK_RUNNING:
            if slot.state != "running":
                slot.state, slot.why_waiting = "running", ""
                slot.started_at = now if slot.started_at is None else slot.started_at
            return False
        if state not in END_STATES:
            return False
        slot.task_state, slot.reason, slot.exit_code, slot.ended_at = state_name(state), reason, exit_code, now
        slot.message = message
        return True

    def _next_attempt(self, slot: Slot, ready_at: float, keep: int | None = None) -> None:
        """Make the slot's next attempt, queued (its first, when it has none yet); the current one goes to its
        attempts (the last `keep` of them are kept, when given)."""
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
            if keep is not None and len(slot.attempts) > keep:
                del slot.attempts[: len(slot.attempts) - keep]
            slot.mark_dirty()  # changed in place
            slot.attempt += 1
        slot.task_id = f"{self.job_id}.{self.run_id}.{slot.step}.{slot.index}.{slot.attempt}"
        slot.state, slot.ready_at, slot.why_waiting = "queued", ready_at, ""
        slot.agent_id = slot.hostname = slot.host = slot.message = slot.task_state = slot.killing = slot.kill_reason = (
            ""
        )
        slot.started_at = slot.ended_at = slot.exit_code = slot.healthy = slot.healthy_since = None
        slot.reason = 0
        slot.ports = []

    def _kill(self, slot: Slot, kind: str, reason: str) -> Kill:
        slot.killing, slot.kill_reason = kind, reason
        return Kill(slot.task_id, slot.agent_id, reason)

    def _end_slot(self, slot: Slot, state: str, now: float, message: str = "") -> None:
        """End a slot's current attempt without a status from its task (it was not known launched)."""
        slot.state, slot.ended_at = state, now
        if slot.task_id and not slot.task_state:
            slot.task_state = state_name(tpb.TASK_KILLED)
        slot.message = message or slot.message
