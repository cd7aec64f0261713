"""The pages' live updates: the master's event hub (mesos_master.events), in process, as server-sent events.

A page opens `/events` once (EventSource); the handler subscribes to the hub as the page's principal (so the hub's
view_frameworks filter applies, as on `Operator.Subscribe`), sends a compact snapshot first (every task's and
agent's state now: what changed between the page's rendering and the subscription is not lost), then one message
per batch the hub hands over: a JSON list of small updates (`update_of`), never the whole state. A subscription
the hub ends (a slow page, a new term) ends the response; the browser reconnects and gets a fresh snapshot."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from typing import Any, TypeVar

from aiomesos.v1 import events_pb2 as epb
from aiomesos.v1 import jobs_pb2 as jpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk._daemon.tasks import cancel_and_wait
from scheduler_sdk.states import state_name

T = TypeVar("T")

OperatorEvent = epb.OperatorEvent  # the enum's values; annotations name epb.OperatorEvent
Update = dict[str, Any]
#: What the browser waits before it reconnects (milliseconds), sent as the stream's `retry:`.
RETRY_MS = 1000
#: Seconds between comments on a quiet stream (so that a proxy or a dead peer is noticed).
KEEPALIVE = 15.0


def agent_state(agent: epb.EventAgent) -> str:
    """As `webui.model.agent_state` names it, from what an event says of the agent."""
    if agent.removed:
        return "removed"
    if agent.HasField("drain"):
        return "DRAINED" if agent.drain.drained else "DRAINING"
    if agent.HasField("unreachable_time"):
        return "unreachable"
    return "active" if agent.active else "disconnected"


def framework_state(fw: epb.EventFramework) -> str:
    if not fw.active:
        return "removed"
    return "connected" if fw.connected else "disconnected"


def _status_fields(status: tpb.TaskStatus | None) -> Update:
    if status is None:
        return {}
    out: Update = {
        "reason": tpb.TaskStatus.Reason.Name(status.reason) if status.reason else "",
        "message": status.message,
        "time": status.timestamp,
        "source": tpb.TaskStatus.Source.Name(status.source).removeprefix("SOURCE_").lower(),
    }
    if exit_code(status) is not None:
        out["code"] = status.exit_code
    return out


def exit_code(message: tpb.TaskStatus | jpb.TaskSlot) -> int | None:
    """The exit code of a TaskStatus (or a jobs TaskSlot), if it has one (a proto3 `optional`)."""
    return int(message.exit_code) if message.HasField("exit_code") else None


def task_added(task: epb.EventTask, hostname: Callable[[str], str]) -> Update:
    latest = task.statuses[-1] if task.statuses else None
    return {
        "k": "task",
        "fw": task.framework_id,
        "id": task.task.task_id,
        "name": task.task.name,
        "state": state_name(task.state),
        "agent": task.agent_id,
        "host": hostname(task.agent_id),
        **_status_fields(latest),
    }


def update_of(event: epb.OperatorEvent, hostname: Callable[[str], str]) -> Update | None:
    """What a page needs of one event (None: nothing it shows)."""
    kind = event.type
    if kind == OperatorEvent.TASK_ADDED:
        return task_added(event.task, hostname)
    if kind == OperatorEvent.TASK_UPDATED:
        u = event.task_update
        return {
            "k": "task",
            "fw": u.framework_id,
            "id": u.task_id,
            "state": state_name(u.state),
            "agent": u.agent_id,
            **_status_fields(u.status if u.HasField("status") else None),
        }
    if kind in AGENT_EVENTS:
        a = event.agent
        return {"k": "agent", "id": a.agent_info.id, "hostname": a.agent_info.hostname, "state": agent_state(a)}
    if kind in FRAMEWORK_EVENTS:
        f = event.framework
        info = f.framework_info
        return {"k": "framework", "id": info.id, "name": info.name, "state": framework_state(f)}
    return None


AGENT_EVENTS = frozenset(
    {
        OperatorEvent.AGENT_ADDED,
        OperatorEvent.AGENT_UPDATED,
        OperatorEvent.AGENT_REMOVED,
        OperatorEvent.AGENT_UNREACHABLE,
        OperatorEvent.AGENT_DRAINING,
        OperatorEvent.AGENT_REACTIVATED,
    }
)
FRAMEWORK_EVENTS = frozenset(
    {OperatorEvent.FRAMEWORK_ADDED, OperatorEvent.FRAMEWORK_UPDATED, OperatorEvent.FRAMEWORK_REMOVED}
)


def updates(events: Iterable[epb.OperatorEvent], hostname: Callable[[str], str]) -> list[Update]:
    return [u for u in (update_of(e, hostname) for e in events) if u is not None]


def snapshot_update(snapshot: epb.EventSnapshot) -> Update:
    """The states now, compactly: `tasks` [[framework, task, state], ...], `agents` [[id, state], ...]."""
    return {
        "k": "snapshot",
        "tasks": [[t.framework_id, t.task.task_id, state_name(t.state)] for t in snapshot.tasks],
        "agents": [[a.agent_info.id, agent_state(a)] for a in snapshot.agents],
    }


def sse(data: Sequence[Update] | Update, event: str = "") -> bytes:
    """One server-sent event (JSON data on one line)."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def sse_text(event: str, text: str, event_id: str = "") -> bytes:
    """One event of text (one `data:` line per line); `event_id`, if any, is its `id:` (the browser's
    `lastEventId`: a followed log's byte offset after this text)."""
    flat = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = "".join(f"data: {line}\n" for line in flat.split("\n"))
    head = f"id: {event_id}\n" if event_id else ""
    return f"event: {event}\n{head}{lines}\n".encode()


async def with_keepalives(source: AsyncIterator[T], every: float = KEEPALIVE) -> AsyncGenerator[T | None, None]:
    """The items of `source`, and None for each `every` seconds that brings none: the caller writes a keepalive
    then, which is how it learns that the page went away while nothing came. `source` runs in a task of its own
    (an async generator cannot be waited on with a timeout without being closed), ended with this one: use it
    in `contextlib.aclosing`."""
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=16)

    async def pump() -> None:
        try:
            async for item in source:
                await queue.put(("item", item))
            await queue.put(("end", None))
        except Exception as e:  # given to the reader, which raises it
            await queue.put(("error", e))

    task = asyncio.create_task(pump())
    try:
        while True:
            try:
                async with asyncio.timeout(every):
                    kind, value = await queue.get()
            except TimeoutError:
                yield None
                continue
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        await cancel_and_wait(task)
