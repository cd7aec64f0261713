"""The Operator service: read-only views of the master's state (and TEARDOWN) for the CLI and scripts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

from aiomesos.v1 import agent_pb2, agent_pb2_grpc, operator_pb2_grpc
from aiomesos.v1 import operator_pb2 as opb
from mesos_master.allocator.base import Quota
from mesos_master.api.dispatch import Dispatcher
from mesos_master.cluster import AgentRecord, CallError, Framework, Master, Task
from mesos_master.validation import UnknownIdError, operator_resources
from scheduler_sdk import __version__
from scheduler_sdk.channels import CHANNEL_OPTIONS
from scheduler_sdk.quoting import quoted
from scheduler_sdk.resources import Resources, ResourcesError
from scheduler_sdk.states import is_terminal

#: GetContainers asks this many agents at a time, gives each this many seconds to answer, and answers itself
#: within CONTAINERS_DEADLINE whatever the number of agents (those it had no time to ask count as unreachable).
CONTAINERS_CONCURRENCY = 16
CONTAINERS_TIMEOUT = 2.0
CONTAINERS_DEADLINE = 4.0


def task_summary(task: Task) -> opb.TaskSummary:
    return opb.TaskSummary(
        framework_id=task.framework_id,
        task=task.info,
        state=task.state,  # type: ignore[arg-type]
        statuses=list(task.statuses),
    )


def agent_summary(master: Master, agent: AgentRecord) -> opb.AgentSummary:
    used = Resources.empty()
    for task in agent.tasks.values():
        if not is_terminal(task.state):
            used = used + task.resources
    offered = Resources.empty()
    for offer_id in agent.offers:
        offered = offered + master.offers[offer_id].resources
    return opb.AgentSummary(
        agent_info=agent.info,
        active=agent.connected,
        total=agent.total.to_proto(),
        allocated=(used + offered).to_proto(),
        offered=offered.to_proto(),
        registered_time=agent.registered_time,
        reregistered_time=agent.reregistered_time,
        task_count=sum(1 for t in agent.tasks.values() if not is_terminal(t.state)),
    )


def framework_summary(master: Master, fw: Framework, active: bool) -> opb.FrameworkSummary:
    used = Resources.empty()
    for task in fw.tasks.values():
        if not is_terminal(task.state):
            used = used + task.resources
    offered = Resources.empty()
    for offer_id in fw.offers:
        offer = master.offers.get(offer_id)
        if offer is not None:
            offered = offered + offer.resources
    return opb.FrameworkSummary(
        framework_info=fw.info,
        active=active,
        connected=fw.connected,
        suppressed=fw.suppressed,
        allocated=used.to_proto(),
        offered=offered.to_proto(),
        registered_time=fw.registered_time,
        task_count=len(fw.tasks),
        offer_count=len(fw.offers),
        suppressed_roles=sorted(fw.suppressed_roles),
    )


class OperatorService(operator_pb2_grpc.OperatorServicer):
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.master = dispatcher.master

    def _agents(self) -> opb.GetAgentsResponse:
        master = self.master
        return opb.GetAgentsResponse(agents=[agent_summary(master, a) for _, a in sorted(master.agents.items())])

    def _frameworks(self) -> opb.GetFrameworksResponse:
        master = self.master
        return opb.GetFrameworksResponse(
            frameworks=[framework_summary(master, f, True) for _, f in sorted(master.frameworks.items())],
            completed_frameworks=[framework_summary(master, f, False) for f in master.completed_frameworks],
        )

    def _tasks(self, framework_id: str = "") -> opb.GetTasksResponse:
        master = self.master
        if framework_id and framework_id not in master.frameworks:
            raise UnknownIdError(f"unknown framework {quoted(framework_id)}")
        frameworks = [master.frameworks[framework_id]] if framework_id else list(master.frameworks.values())
        if not framework_id:
            frameworks += list(master.completed_frameworks)
        active: list[opb.TaskSummary] = []
        completed: list[opb.TaskSummary] = []
        for fw in frameworks:
            active.extend(task_summary(t) for t in fw.tasks.values())
            completed.extend(task_summary(t) for t in fw.completed_tasks)
        return opb.GetTasksResponse(tasks=active, completed_tasks=completed)

    async def GetAgents(
        self, request: opb.GetAgentsRequest, context: grpc.aio.ServicerContext
    ) -> opb.GetAgentsResponse:
        return self._agents()

    async def GetFrameworks(
        self, request: opb.GetFrameworksRequest, context: grpc.aio.ServicerContext
    ) -> opb.GetFrameworksResponse:
        return self._frameworks()

    async def GetTasks(self, request: opb.GetTasksRequest, context: grpc.aio.ServicerContext) -> opb.GetTasksResponse:
        try:
            return self._tasks(request.framework_id)
        except CallError as e:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(e))
            raise  # abort() raises; this is for the type checker

    async def GetState(self, request: opb.GetStateRequest, context: grpc.aio.ServicerContext) -> opb.GetStateResponse:
        master = self.master
        return opb.GetStateResponse(
            master_id=master.master_id,
            version=__version__,
            start_time=master.start_time,
            agents=self._agents(),
            frameworks=self._frameworks(),
            tasks=self._tasks(),
        )

    async def Teardown(self, request: opb.TeardownRequest, context: grpc.aio.ServicerContext) -> opb.TeardownResponse:
        try:
            self.master.teardown(request.framework_id, "torn down by the operator")
        except CallError as e:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(e))
        self.dispatcher.changed(allocate=True)
        return opb.TeardownResponse()

    # ------------------------------------------------------------------ operator policy
    async def _change(self, context: grpc.aio.ServicerContext, change: Callable[[], None]) -> None:
        """Apply a change to the core; bad input becomes INVALID_ARGUMENT (NOT_FOUND for unknown ids)."""
        try:
            change()
        except (CallError, ResourcesError) as e:
            code = grpc.StatusCode.NOT_FOUND if isinstance(e, UnknownIdError) else grpc.StatusCode.INVALID_ARGUMENT
            await context.abort(code, str(e))
        self.dispatcher.changed(allocate=True)

    async def GetWeights(
        self, request: opb.GetWeightsRequest, context: grpc.aio.ServicerContext
    ) -> opb.GetWeightsResponse:
        return opb.GetWeightsResponse(
            weights=[opb.RoleWeight(role=r, weight=w) for r, w in sorted(self.master.weights.items())]
        )

    async def UpdateWeights(
        self, request: opb.UpdateWeightsRequest, context: grpc.aio.ServicerContext
    ) -> opb.UpdateWeightsResponse:
        weights = {w.role: w.weight for w in request.weights}
        if not weights:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no weights given")
        await self._change(context, lambda: self.master.set_weights(weights))
        return opb.UpdateWeightsResponse()

    async def GetQuota(self, request: opb.GetQuotaRequest, context: grpc.aio.ServicerContext) -> opb.GetQuotaResponse:
        master = self.master
        quotas = [_quota_info(role, quota) for role, quota in sorted(master.quotas.items())]
        usage = master.role_usage()
        roles = sorted(set(usage) | set(master.quotas) | set(master.weights))
        return opb.GetQuotaResponse(
            quotas=quotas,
            roles=[
                opb.RoleUsage(
                    role=r,
                    allocated=usage.get(r, Resources.empty()).to_proto(),
                    weight=master.weights.get(r, 1.0),
                    quota=_quota_info(r, master.quotas[r]) if r in master.quotas else None,
                    has_quota=r in master.quotas,
                )
                for r in roles
            ],
        )

    async def SetQuota(self, request: opb.SetQuotaRequest, context: grpc.aio.ServicerContext) -> opb.SetQuotaResponse:
        quota_info = request.quota
        if not quota_info.role:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "quota.role must not be empty")
        try:
            guarantee = operator_resources("quota.guarantee", quota_info.guarantee)
            limit = operator_resources("quota.limit", quota_info.limit) if quota_info.has_limit else None
            quota = Quota(guarantee, limit)
        except (CallError, ResourcesError) as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"quota of {quoted(quota_info.role)}: {e}")
            raise
        await self._change(context, lambda: self.master.set_quota(quota_info.role, quota))
        return opb.SetQuotaResponse()

    async def RemoveQuota(
        self, request: opb.RemoveQuotaRequest, context: grpc.aio.ServicerContext
    ) -> opb.RemoveQuotaResponse:
        if request.role not in self.master.quotas:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"role {quoted(request.role)} has no quota")
        await self._change(context, lambda: self.master.set_quota(request.role, None))
        return opb.RemoveQuotaResponse()

    async def Reserve(self, request: opb.ReserveRequest, context: grpc.aio.ServicerContext) -> opb.ReserveResponse:
        await self._change(
            context,
            lambda: self.master.operator_reserve(request.agent_id, operator_resources("resources", request.resources)),
        )
        return opb.ReserveResponse()

    async def Unreserve(
        self, request: opb.UnreserveRequest, context: grpc.aio.ServicerContext
    ) -> opb.UnreserveResponse:
        await self._change(
            context,
            lambda: self.master.operator_reserve(
                request.agent_id, operator_resources("resources", request.resources), unreserve=True
            ),
        )
        return opb.UnreserveResponse()

    async def GetMetrics(
        self, request: opb.GetMetricsRequest, context: grpc.aio.ServicerContext
    ) -> opb.GetMetricsResponse:
        master = self.master
        metrics: dict[str, float] = {
            "master_uptime_secs": master.clock() - master.start_time,
            "agents_active": sum(1 for a in master.agents.values() if a.connected),
            "agents_inactive": sum(1 for a in master.agents.values() if not a.connected),
            "frameworks_connected": sum(1 for f in master.frameworks.values() if f.connected),
            "frameworks_disconnected": sum(1 for f in master.frameworks.values() if not f.connected),
            "tasks_active": sum(len(f.tasks) for f in master.frameworks.values()),
            "offers_outstanding": len(master.offers),
        }
        metrics.update({k: float(v) for k, v in master.counters.items()})
        metrics.update(master.allocator.metrics())
        return opb.GetMetricsResponse(metrics=metrics)

    async def GetContainers(
        self, request: opb.GetClusterContainersRequest, context: grpc.aio.ServicerContext
    ) -> opb.GetClusterContainersResponse:
        """Every connected agent's containers and their usage statistics, asked of the agents now (a few at a
        time, each briefly); the agents that are disconnected or did not answer in time are listed as such."""
        targets = [(a.id, a.info.address) for _, a in sorted(self.master.agents.items()) if a.connected]
        unreachable = [a.id for _, a in sorted(self.master.agents.items()) if not a.connected]
        slots = asyncio.Semaphore(CONTAINERS_CONCURRENCY)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONTAINERS_DEADLINE

        async def ask(agent_id: str, address: str) -> list[agent_pb2.ContainerStatus] | None:
            if not address:
                return None
            async with slots:
                left = deadline - loop.time()
                if left <= 0.05:
                    return None
                try:
                    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
                        response = await agent_pb2_grpc.AgentStub(channel).GetContainers(
                            agent_pb2.GetContainersRequest(), timeout=min(CONTAINERS_TIMEOUT, left)
                        )
                except grpc.aio.AioRpcError:
                    return None
            for container in response.containers:
                container.agent_id = agent_id
            return list(response.containers)

        answers = await asyncio.gather(*(ask(agent_id, address) for agent_id, address in targets))
        containers: list[agent_pb2.ContainerStatus] = []
        for (agent_id, _), answer in zip(targets, answers, strict=True):
            if answer is None:
                unreachable.append(agent_id)
            else:
                containers.extend(answer)
        return opb.GetClusterContainersResponse(containers=containers, unreachable_agents=sorted(unreachable))


def _quota_info(role: str, quota: Quota) -> opb.QuotaInfo:
    return opb.QuotaInfo(
        role=role,
        guarantee=quota.guarantee.to_proto(),
        limit=quota.limit.to_proto() if quota.limit is not None else [],
        has_limit=quota.limit is not None,
    )
