"""The AgentRegistry service: each agent dials the master and keeps one stream attached."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import structlog

from aiomesos.v1 import agent_pb2, agent_pb2_grpc
from mesos_master.api.dispatch import Connection, Dispatcher
from mesos_master.cluster import CallError

log = structlog.get_logger(__name__)
AgentMessage = agent_pb2.AgentMessage
MasterMessage = agent_pb2.MasterMessage


class AgentRegistryService(agent_pb2_grpc.AgentRegistryServicer):
    def __init__(self, dispatcher: Dispatcher, ping_interval: float) -> None:
        self.dispatcher = dispatcher
        self.master = dispatcher.master
        self.ping_interval = ping_interval

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
        try:
            agent_id = self.master.register_agent(first.register)
        except CallError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"REGISTER rejected: {e}")
        conn: Connection[agent_pb2.MasterMessage] = Connection(agent_id)
        old = self.dispatcher.agents.get(agent_id)
        if old is not None:
            old.close("superseded by a newer attachment of the same agent")
        self.dispatcher.agents[agent_id] = conn
        self.dispatcher.flush()
        self.dispatcher.changed(allocate=True)
        try:
            reader = asyncio.create_task(self._read(agent_id, messages, conn))
            try:
                await self._write(conn, context)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        finally:
            if self.dispatcher.agents.get(agent_id) is conn:
                del self.dispatcher.agents[agent_id]
                self.master.disconnect_agent(agent_id)
                self.dispatcher.changed(allocate=True)

    async def _write(self, conn: Connection[agent_pb2.MasterMessage], context: grpc.aio.ServicerContext) -> None:
        ping = MasterMessage(type=MasterMessage.PING)
        while True:
            try:
                message = await asyncio.wait_for(conn.queue.get(), self.ping_interval)
            except TimeoutError:
                message = ping
            if message is None:
                return
            if message.type == MasterMessage.REGISTERED:
                message.registered.ping_interval_seconds = self.ping_interval
            await context.write(message)

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
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        finally:
            conn.close("agent closed its stream")
