"""`aiomesos events [--follow] [--json]`: the operator event stream (Operator.Subscribe, Mesos' operator API
SUBSCRIBE). Without --follow: a summary of the snapshot (what the cluster holds now, as the caller may see it),
then exit. With --follow: the summary, then one line per event until Ctrl-C (subscribing again, with a new
summary, when the master stops or another one takes over). --json: one JSON object per line instead, the
events as events.proto has them (field names as there; the snapshot whole)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from google.protobuf.json_format import MessageToDict

from aiomesos.v1 import events_pb2 as epb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk._daemon.flags import FlagParser
from scheduler_sdk.enums import enum_name
from scheduler_sdk.operator import OperatorClient
from scheduler_sdk.resources import Resources
from scheduler_sdk.states import is_terminal, state_name

E = epb.OperatorEvent


def add_parsers(sub: Any, with_master: Callable[[FlagParser], FlagParser]) -> None:
    sp = with_master(
        sub.add_parser(
            "events",
            help="watch the cluster change: the operator event stream (a snapshot, then every change)",
            description="Subscribe to the master's event stream: print a summary of what the cluster holds "
            "now and, with --follow, every change as it happens (agents, frameworks, tasks, offers, quota, "
            "weights). A framework's principal sees only its own frameworks and tasks.",
        )
    )
    sp.add_argument("--follow", "-f", action="store_true", help="keep printing events until Ctrl-C")
    sp.add_argument("--json", action="store_true", help="one JSON object per line (the snapshot, then each event)")


async def cmd_events(args: argparse.Namespace) -> int:
    out = sys.stdout
    async with OperatorClient(args.master) as client:
        async for batch in client.subscribe(reconnect=args.follow):
            for event in batch:
                print(event_json(event) if args.json else event_line(event), file=out, flush=True)
            if not args.follow:
                return 0
    return 0


def event_json(event: epb.OperatorEvent) -> str:
    return json.dumps(MessageToDict(event, preserving_proto_field_name=True), separators=(",", ":"))


def event_line(event: epb.OperatorEvent) -> str:
    """One readable line: the time, the type, and what changed."""
    when = time.strftime("%H:%M:%S", time.localtime(event.time)) + f".{int(event.time * 1000) % 1000:03d}"
    describe = _DESCRIBE.get(event.type, lambda e: "")
    text = f"{when} {enum_name(E.Type, event.type):<18} {describe(event)}".rstrip()
    return text + (f": {event.message}" if event.message and event.type != E.SNAPSHOT else "")


def snapshot_summary(snapshot: epb.EventSnapshot) -> str:
    agents = list(snapshot.agents)
    active = sum(1 for a in agents if a.active)
    frameworks = [f for f in snapshot.frameworks if f.active]
    live = Counter(state_name(t.state) for t in snapshot.tasks if not is_terminal(t.state))
    ended = sum(1 for t in snapshot.tasks if is_terminal(t.state))
    tasks = ", ".join(f"{n} {state}" for state, n in sorted(live.items())) or "none running"
    parts = [
        f"master {snapshot.master_id}",
        f"{len(agents)} agents ({active} active)",
        f"{len(frameworks)} frameworks ({len(snapshot.frameworks) - len(frameworks)} completed)",
        f"tasks: {tasks}; {ended} ended",
    ]
    if snapshot.quotas:
        parts.append("quota: " + ", ".join(q.role for q in snapshot.quotas))
    if snapshot.weights:
        parts.append("weights: " + ", ".join(f"{r}={w:g}" for r, w in sorted(snapshot.weights.items())))
    return "; ".join(parts)


def _agent(event: epb.OperatorEvent) -> str:
    a = event.agent
    text = f"agent {a.agent_info.id} ({a.agent_info.hostname})"
    if event.type in (E.AGENT_ADDED, E.AGENT_UPDATED):
        text += f" {Resources.from_proto(a.total)}" + ("" if a.active else " detached")
    if event.type == E.AGENT_DRAINING:
        text += " drained" if a.drain.drained else " draining"
    return text


def _framework(event: epb.OperatorEvent) -> str:
    f = event.framework
    info = f.framework_info
    roles = ",".join(info.roles) or "*"
    state = "removed" if not f.active else ("connected" if f.connected else "disconnected")
    suppressed = f" suppressed:{','.join(f.suppressed_roles)}" if f.suppressed_roles else ""
    return f"framework {info.id} ({info.name}) roles {roles} {state}{suppressed}"


def _task_added(event: epb.OperatorEvent) -> str:
    t = event.task
    resources = Resources.from_proto(t.task.resources)
    return f"task {t.task.task_id} of {t.framework_id} on {t.agent_id} {state_name(t.state)} {resources}"


def _task_updated(event: epb.OperatorEvent) -> str:
    u = event.task_update
    text = f"task {u.task_id} of {u.framework_id} on {u.agent_id} {state_name(u.state)}"
    if u.status.reason:
        text += f" {enum_name(tpb.TaskStatus.Reason, u.status.reason)}"
    return text + (f": {u.status.message}" if u.status.message else "")


def _offers(event: epb.OperatorEvent) -> str:
    o = event.offers
    return f"{o.offers} offers to {o.framework_id} on {o.agents} agents: {Resources.from_proto(o.resources) or '-'}"


def _quota(event: epb.OperatorEvent) -> str:
    q = event.quota
    if q.removed:
        return f"role {q.role}: quota removed"
    limit = f", limit {Resources.from_proto(q.limit.resources) or '-'}" if q.HasField("limit") else ""
    return f"role {q.role}: guarantee {Resources.from_proto(q.guarantee) or '-'}{limit}"


def _weights(event: epb.OperatorEvent) -> str:
    return ", ".join(f"{role}={weight:g}" for role, weight in sorted(event.weights.items()))


_DESCRIBE: dict[int, Callable[[epb.OperatorEvent], str]] = {
    E.SNAPSHOT: lambda e: snapshot_summary(e.snapshot),
    **dict.fromkeys(
        (E.AGENT_ADDED, E.AGENT_UPDATED, E.AGENT_REMOVED, E.AGENT_UNREACHABLE, E.AGENT_DRAINING, E.AGENT_REACTIVATED),
        _agent,
    ),
    **dict.fromkeys((E.FRAMEWORK_ADDED, E.FRAMEWORK_UPDATED, E.FRAMEWORK_REMOVED), _framework),
    E.TASK_ADDED: _task_added,
    E.TASK_UPDATED: _task_updated,
    E.OFFERS_MADE: _offers,
    E.QUOTA_UPDATED: _quota,
    E.WEIGHTS_UPDATED: _weights,
}

COMMANDS = {"events": cmd_events}
