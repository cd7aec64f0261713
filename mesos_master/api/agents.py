"""The AgentRegistry service: each agent dials the master and keeps one stream attached."""

from __future__ import annotations

from collections.abc import AsyncIterator

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


class AgentRegistryService(agent_pb2_grpc.AgentRegistryServicer):
    def __init__(self, dispatcher: Dispatcher, ping_interval: float, guard: Guard) -> None:
        self.dispatcher = dispatcher
        self.master = dispatcher.master
        self.ping_interval = ping_interval
        self.guard = guard

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
                message.registered.ping_interval_seconds = self.ping_interval

        await self.dispatcher.serve(
            self.dispatcher.agents,
            conn,
            context,
            lambda c: self._read(agent_id, messages, c),
            keepalive=MasterMessage(type=MasterMessage.PING),
            interval=self.ping_interval,
            on_detach=lambda: self.master.disconnect_agent(agent_id),
            prepare=prepare,
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
