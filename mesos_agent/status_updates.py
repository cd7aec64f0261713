"""Reliable status updates: per task, a stream of updates of which only the head is in flight. The head is
resent with exponential backoff until the framework acknowledges it (through the master); then the next goes.
Pure: the owner supplies the clock and a `send` callback, and calls `due()` to learn what to resend."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.backoff import next_delay

StatusUpdate = agent_pb2.AgentMessage.StatusUpdate
STATUS_UPDATES = agent_pb2.AgentMessage.STATUS_UPDATES


@dataclass
class _Stream:
    framework_id: str
    task_id: str
    pending: deque[tpb.TaskStatus] = field(default_factory=deque)
    sent_at: float | None = None
    backoff: float = 0.0


class StatusUpdateManager:
    def __init__(
        self,
        send: Callable[[list[StatusUpdate]], None],
        clock: Callable[[], float],
        *,
        retry_min: float = 10.0,
        retry_max: float = 600.0,
    ) -> None:
        self._send = send
        self._clock = clock
        self.retry_min = retry_min
        self.retry_max = retry_max
        self._streams: dict[tuple[str, str], _Stream] = {}
        self.connected = False

    def add(self, framework_id: str, status: tpb.TaskStatus) -> None:
        key = (framework_id, status.task_id)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(framework_id, status.task_id)
        stream.pending.append(status)
        if len(stream.pending) == 1 and self.connected:
            self._send_heads([stream])

    def acknowledge(self, framework_id: str, task_id: str, uuid: bytes) -> tpb.TaskStatus | None:
        """Returns the acknowledged update, or None when the ack matches no head (a duplicate or stale ack)."""
        key = (framework_id, task_id)
        stream = self._streams.get(key)
        if stream is None or not stream.pending or stream.pending[0].uuid != uuid:
            return None
        acked = stream.pending.popleft()
        stream.sent_at, stream.backoff = None, 0.0
        if stream.pending:
            if self.connected:
                self._send_heads([stream])
        else:
            del self._streams[key]
        return acked

    def on_connected(self) -> None:
        """(Re-)attached to a master: send every head at once."""
        self.connected = True
        heads = [s for s in self._streams.values() if s.pending]
        for s in heads:  # a new attachment starts the retry backoff afresh, as Mesos does
            s.sent_at, s.backoff = None, 0.0
        self._send_heads(heads)

    def on_disconnected(self) -> None:
        self.connected = False

    def due(self) -> list[StatusUpdate]:
        """Resend the heads whose retry time has come; returns what was resent."""
        if not self.connected:
            return []
        now = self._clock()
        late = [
            s for s in self._streams.values() if s.pending and s.sent_at is not None and now - s.sent_at >= s.backoff
        ]
        return self._send_heads(late)

    def next_due_in(self) -> float | None:
        now = self._clock()
        waits = [s.sent_at + s.backoff - now for s in self._streams.values() if s.sent_at is not None]
        return max(0.0, min(waits)) if waits else None

    def remove_framework(self, framework_id: str) -> None:
        for key in [k for k in self._streams if k[0] == framework_id]:
            del self._streams[key]

    def pending(self) -> int:
        return sum(len(s.pending) for s in self._streams.values())

    def unacknowledged(self, framework_id: str, task_id: str) -> bool:
        return (framework_id, task_id) in self._streams

    def oldest(self, framework_id: str, task_id: str) -> tpb.TaskStatus | None:
        """The task's oldest unacknowledged update: the next its framework hears."""
        stream = self._streams.get((framework_id, task_id))
        return stream.pending[0] if stream and stream.pending else None

    def latest(self, framework_id: str, task_id: str) -> tpb.TaskStatus | None:
        stream = self._streams.get((framework_id, task_id))
        return stream.pending[-1] if stream and stream.pending else None

    def keys(self) -> Iterable[tuple[str, str]]:
        return list(self._streams)

    def _send_heads(self, streams: list[_Stream]) -> list[StatusUpdate]:
        if not streams:
            return []
        now = self._clock()
        batch: list[StatusUpdate] = []
        for s in streams:
            s.backoff = next_delay(0.0 if s.sent_at is None else s.backoff, self.retry_min, self.retry_max)
            s.sent_at = now
            batch.append(StatusUpdate(framework_id=s.framework_id, status=s.pending[0]))
        self._send(batch)
        return batch


def coalesce(messages: list[agent_pb2.AgentMessage]) -> list[agent_pb2.AgentMessage]:
    """Messages queued for the master while a write was in flight, fewer: consecutive STATUS_UPDATES become one
    (their updates in order, so each task's stay in order); anything else keeps its place. The messages given
    are not changed."""
    out: list[agent_pb2.AgentMessage] = []
    merged: set[int] = set()  # indexes in `out` of the messages made here (which may be extended)
    for message in messages:
        if out and message.type == STATUS_UPDATES and out[-1].type == STATUS_UPDATES:
            if len(out) - 1 not in merged:
                first = out[-1]
                out[-1] = agent_pb2.AgentMessage(type=STATUS_UPDATES)
                out[-1].status_updates.updates.extend(first.status_updates.updates)
                merged.add(len(out) - 1)
            out[-1].status_updates.updates.extend(message.status_updates.updates)
        else:
            out.append(message)
    return out
