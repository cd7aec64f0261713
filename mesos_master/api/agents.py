"""The AgentRegistry service: each agent dials the master and keeps one stream attached. The master pings
every attached agent once per ping interval, but bounds its pings in total (Nomad's max_heartbeats_per_second):
the interval in force grows with the number of agents, never below --agent-ping-interval, and every PING says
it (so that an agent's missed-pings rule follows)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

import grpc
import structlog

from aiomesos.v1 import agent_pb2, agent_pb2_grpc
from mesos_master.api.dispatch import Connection, Dispatcher
from mesos_master.cluster import CallError
from mesos_master.validation import DeniedError
from scheduler_sdk._daemon.guard import Guard

log = structlog.get_logger(__name__)
AgentMessage = agent_pb2.AgentMessage
MasterMessage = agent_pb2.MasterMessage

#: The master's pings to all its agents together, at most (--max-agent-pings-per-second).
DEFAULT_PINGS_PER_SECOND = 500.0
#: How often the pinger wakes to send the pings that have come due.
PING_TICK = 0.1


def ping_interval(floor: float, pings_per_second: float, agents: int) -> float:
    """The ping interval in force with `agents` attached: `floor`, or longer so that pinging each once per
    interval stays within `pings_per_second` in total."""
    return max(floor, agents / pings_per_second) if pings_per_second > 0 else floor


class Pinger:
    """Pings the attached agents in turn (a ring, in attach order), each once per interval in force, spread
    evenly over it: at most `pings_per_second` in total, whatever the number of agents. One task for all of
    them (no timer per stream); a ping is queued on the agent's stream like any other message."""

    def __init__(
        self,
        agents: dict[str, Connection[agent_pb2.MasterMessage]],
        floor: float,
        pings_per_second: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.agents = agents
        self.floor = floor
        self.pings_per_second = pings_per_second
        self.clock = clock
        self.sent = 0
        self._ring: deque[Connection[agent_pb2.MasterMessage]] = deque()
        self._credit = 0.0

    def interval(self) -> float:
        return ping_interval(self.floor, self.pings_per_second, len(self.agents))

    def add(self, conn: Connection[agent_pb2.MasterMessage]) -> None:
        self._ring.append(conn)

    def due(self, elapsed: float) -> int:
        """Queue the pings that `elapsed` seconds have made due; returns how many were queued."""
        attached = len(self.agents)
        if not attached or not self._ring:
            self._credit = 0.0
            return 0
        interval = self.interval()
        self._credit = min(self._credit + attached * elapsed / interval, float(attached))
        want = int(self._credit)
        self._credit -= want
        ping = MasterMessage(type=MasterMessage.PING)
        ping.ping.interval_seconds = interval
        ping.ping.sent_at = self.clock()
        sent = 0
        for _ in range(len(self._ring)):
            if sent >= want:
                break
            conn = self._ring.popleft()
            if self.agents.get(conn.id) is not conn or conn.close_reason is not None:
                continue  # detached (or superseded): out of the ring
            conn.send(ping)
            self._ring.append(conn)
            sent += 1
        self.sent += sent
        return sent

    async def run(self, stopped: Callable[[], bool]) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not stopped():
            await asyncio.sleep(PING_TICK)
            now = loop.time()
            self.due(now - last)
            last = now


class AgentRegistryService(agent_pb2_grpc.AgentRegistryServicer):
    def __init__(
        self,
        dispatcher: Dispatcher,
        ping_interval: float,
        guard: Guard,
        *,
        pings_per_second: float = DEFAULT_PINGS_PER_SECOND,
    ) -> None:
        self.dispatcher = dispatcher
        self.master = dispatcher.master
        self.ping_interval = ping_interval
        self.guard = guard
        self.pinger = Pinger(dispatcher.agents, ping_interval, pings_per_second)
        self._pinging = False

    async def Attach(  # type: ignore[override]  # writes with context.write
        self, request_iterator: AsyncIterator[agent_pb2.AgentMessage], context: grpc.aio.ServicerContext
    ) -> None:
        messages = aiter(request_iterator)
        try:
            first = await anext(messages)
        except StopAsyncIteration:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the stream ended before REGISTER")
        if first.type != AgentMessage.REGISTER:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message of an agent must be REGISTER")
        await self.guard.authorize(context, "register_agents", first.register.agent_info.hostname)
        principal = self.guard.caller()
        try:
            agent_id = self.master.register_agent(first.register, str(principal) if principal else "")
        except CallError as e:
            code = grpc.StatusCode.PERMISSION_DENIED if isinstance(e, DeniedError) else grpc.StatusCode.INVALID_ARGUMENT
            await context.abort(code, f"REGISTER rejected: {e}")
        conn: Connection[agent_pb2.MasterMessage] = Connection(agent_id)

        def prepare(message: agent_pb2.MasterMessage) -> None:
            if message.type == MasterMessage.REGISTERED:
                message.registered.ping_interval_seconds = self.pinger.interval()

        if not self._pinging:
            self._pinging = True
            self.dispatcher.background(self.pinger.run(lambda: self.dispatcher.stopped))
        await self.dispatcher.serve(
            self.dispatcher.agents,
            conn,
            context,
            lambda c: self._read(agent_id, messages, c),
            keepalive=None,
            interval=None,  # the pinger pings
            on_detach=lambda: self.master.disconnect_agent(agent_id),
            prepare=prepare,
            on_attach=self.pinger.add,
        )
        await conn.abort_if_closed(context, "agent")

    async def _read(
        self,
        agent_id: str,
        messages: AsyncIterator[agent_pb2.AgentMessage],
        conn: Connection[agent_pb2.MasterMessage],
    ) -> None:
        try:
            async for message in messages:
                if message.type == AgentMessage.STATUS_UPDATES:
                    self.master.status_updates(agent_id, message.status_updates.updates)
                    self.dispatcher.changed(allocate=True)
                elif message.type == AgentMessage.REGISTER:
                    log.warning("agent sent REGISTER twice on one stream", agent_id=agent_id)
        except grpc.aio.AioRpcError:
            pass
        finally:
            conn.close("agent closed its stream", None)
