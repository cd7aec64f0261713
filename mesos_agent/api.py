"""The agent's own API, served on `--port`."""

from __future__ import annotations

import grpc

from aiomesos.v1 import agent_pb2, agent_pb2_grpc
from mesos_agent.agent import Agent
from mesos_agent.master_link import MasterLink


class AgentService(agent_pb2_grpc.AgentServicer):
    def __init__(self, agent: Agent, link: MasterLink) -> None:
        self.agent = agent
        self.link = link

    async def GetState(
        self, request: agent_pb2.AgentStateRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AgentState:
        a = self.agent
        return agent_pb2.AgentState(
            agent_info=a.info,
            master=self.link.master,
            connected=self.link.connected.is_set(),
            tasks=[
                agent_pb2.AgentTask(framework_id=r.framework.id, task=r.info, state=r.state)  # type: ignore[arg-type]
                for r in a.tasks.values()
            ],
            pending_updates=a.updates.pending(),
            isolators=a.containerizer.isolators,
        )
