"""`aiomesos agent drain AGENT_ID [--deadline 10m] [--mark-gone] [--wait]` and `aiomesos agent up AGENT_ID`:
maintenance, as Mesos' DRAIN_AGENT / REACTIVATE_AGENT and Nomad's `node drain`.

`aiomesos agent` alone runs the agent daemon; `agent drain` and `agent up` are the operator's commands (main
routes them here before it hands `agent ...` to the daemon). `aiomesos agents` shows the drain state."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiomesos.v1 import operator_pb2 as opb
from scheduler_sdk._daemon.flags import FlagParser, non_negative_duration, positive_float
from scheduler_sdk.operator import OperatorClient, OperatorError

#: `aiomesos agent ACTION`: the actions that are operator commands, not the daemon.
ACTIONS = ("drain", "up")
WAIT_INTERVAL = 1.0


def routed(argv: Sequence[str]) -> list[str] | None:
    """`agent drain ...` / `agent up ...` as the one command word main's parser knows (None: not one of ours)."""
    if len(argv) >= 2 and argv[0] == "agent" and argv[1] in ACTIONS:
        return [f"agent {argv[1]}", *argv[2:]]
    return None


def add_parsers(sub: Any, with_master: Callable[[FlagParser], FlagParser]) -> None:
    drain = with_master(
        sub.add_parser(
            "agent drain",
            help="drain an agent for maintenance: no new offers, its tasks killed at --deadline, then DRAINED",
            description="Drain an agent for maintenance: it gets no new offers, the frameworks with tasks there are "
            "told (AGENT_DRAINING), and what still runs there at the deadline is killed (TASK_KILLED, "
            "REASON_AGENT_DRAINING). Once nothing runs there it is DRAINED. `aiomesos agent up` ends it.",
        )
    )
    drain.add_argument("agent_id")
    drain.add_argument(
        "--deadline",
        type=non_negative_duration,
        default=None,
        help="kill what still runs after this long, e.g. 90s, 10m, 1h (default: none, tasks end by themselves)",
    )
    drain.add_argument(
        "--mark-gone",
        action="store_true",
        help="once drained, remove the agent for good: it is shut down and may never attach with its id again",
    )
    drain.add_argument("--wait", action="store_true", help="wait until the agent is DRAINED (or gone) and say so")
    drain.add_argument(
        "--wait-timeout", type=positive_float, default=None, help="with --wait: give up after this many seconds"
    )
    up = with_master(
        sub.add_parser(
            "agent up", help="end an agent's drain: it is offered again", description="End an agent's drain."
        )
    )
    up.add_argument("agent_id")


def drain_text(drain: dict[str, Any] | None, now: float | None = None) -> str:
    """`DRAINING (deadline 12:30:00, in 9m12s)`, `DRAINED`, or `-`, from `drain_json` (for `aiomesos agents` and
    the commands)."""
    if drain is None:
        return "-"
    extra = []
    deadline = drain["deadline"]
    if drain["state"] == "DRAINING" and deadline is not None:
        left = deadline - (time.time() if now is None else now)
        when = time.strftime("%H:%M:%S", time.localtime(deadline))
        extra.append(f"deadline {when}, " + (f"in {_short(left)}" if left > 0 else "passed"))
    if drain["mark_gone"]:
        extra.append("mark gone")
    return f"{drain['state']} ({'; '.join(extra)})" if extra else str(drain["state"])


def drain_json(drain: opb.DrainInfo) -> dict[str, Any] | None:
    """An agent's drain as JSON (None: not draining)."""
    if drain.state == opb.DRAIN_NONE:
        return None
    return {
        "state": opb.DrainState.Name(drain.state),
        "deadline": drain.deadline if drain.HasField("deadline") else None,
        "mark_gone": drain.mark_gone,
        "since": drain.since,
        "drained_at": drain.drained_at or None,
    }


def _short(left: float) -> str:
    seconds = round(left)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if v) or "0s"


async def cmd_drain(args: argparse.Namespace) -> int:
    async with OperatorClient(args.master) as client:
        drain = await client.drain_agent(args.agent_id, args.deadline, mark_gone=args.mark_gone)
        print(f"agent {args.agent_id}: {drain_text(drain_json(drain))}", flush=True)
        if not args.wait:
            return 0
        return await _wait_drained(client, args.agent_id, args.mark_gone, args.wait_timeout)


async def _wait_drained(client: OperatorClient, agent_id: str, mark_gone: bool, timeout: float | None) -> int:
    started = time.monotonic()
    while True:
        agents = {a.agent_info.id: a for a in (await client.agents()).agents}
        agent = agents.get(agent_id)
        if agent is None:
            if mark_gone:
                print(f"agent {agent_id}: DRAINED and gone (marked gone) after {time.monotonic() - started:.1f}s")
                return 0
            raise OperatorError(f"agent {agent_id} is no longer known to the master")
        if agent.drain.state == opb.DRAIN_NONE:
            raise OperatorError(f"agent {agent_id} is no longer draining (reactivated meanwhile?)")
        if agent.drain.state == opb.DRAINED and not mark_gone:
            print(f"agent {agent_id}: DRAINED after {time.monotonic() - started:.1f}s: nothing runs there")
            return 0
        if timeout is not None and time.monotonic() - started > timeout:
            still = drain_text(drain_json(agent.drain))
            print(f"agent {agent_id}: still {still} after {timeout:g}s ({agent.task_count} tasks there)")
            return 1
        await asyncio.sleep(WAIT_INTERVAL)


async def cmd_up(args: argparse.Namespace) -> int:
    async with OperatorClient(args.master) as client:
        await client.reactivate_agent(args.agent_id)
    print(f"agent {args.agent_id}: reactivated: it is offered again")
    return 0


COMMANDS = {"agent drain": cmd_drain, "agent up": cmd_up}
