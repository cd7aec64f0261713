"""The Operator service: views of the master's state for the CLI and scripts, and the operator's changes
(teardown, weights, quota, reservations), each authorised by the ACLs."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from prometheus_client import CollectorRegistry

from aiomesos.v1 import agent_pb2, agent_pb2_grpc, operator_pb2_grpc
from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import resources_pb2 as rpb
from mesos_master.allocator.base import Quota
from mesos_master.api.dispatch import Dispatcher
from mesos_master.api.events import SubscribeServicer
from mesos_master.cluster import AgentRecord, CallError, Framework, Master, Task
from mesos_master.drain import drain_info
from mesos_master.errors import PreconditionError
from mesos_master.metrics import master_registry
from mesos_master.paging import (
    ITEM_OVERHEAD,
    Key,
    PageBuilder,
    PageTokenError,
    Section,
    SortedSection,
    decode_token,
    encode_token,
    unique_keys,
)
from mesos_master.validation import UnknownIdError, operator_resources
from scheduler_sdk import __version__
from scheduler_sdk._daemon.guard import Guard, deny
from scheduler_sdk._daemon.prometheus import metrics_response
from scheduler_sdk.channels import open_channel
from scheduler_sdk.quoting import quoted
from scheduler_sdk.resources import UNRESERVED, Resources, ResourcesError
from scheduler_sdk.security.certs import Principal
from scheduler_sdk.security.config import ClientConfig
from scheduler_sdk.states import is_terminal

#: GetContainers asks this many agents at a time, gives each this many seconds to answer, and answers itself
#: within CONTAINERS_DEADLINE whatever the number of agents (those it had no time to ask count as unreachable).
CONTAINERS_CONCURRENCY = 16
CONTAINERS_TIMEOUT = 2.0
CONTAINERS_DEADLINE = 4.0
#: A page is built this many items at a time, the event loop let run between pieces.
PAGE_PIECE = 200


def task_summary(task: Task) -> opb.TaskSummary:
    return opb.TaskSummary(
        framework_id=task.framework_id,
        task=task.info,
        state=task.state,  # type: ignore[arg-type]
        statuses=list(task.statuses),
    )


#: An agent's total as protos, by agent id, with the Resources it was made from (a total changes only when the
#: agent re-registers or a reservation is made: the cache holds while the Resources object is the same).
TotalsCache = dict[str, tuple[Resources, list[rpb.Resource]]]


def agent_summary(master: Master, agent: AgentRecord, totals: TotalsCache | None = None) -> opb.AgentSummary:
    used = [task.resources for task in agent.tasks.values() if not is_terminal(task.state)]
    offered = [master.offers[offer_id].resources for offer_id in agent.offers]
    cached = totals.get(agent.id) if totals is not None else None
    if cached is not None and cached[0] is agent.total:
        total = cached[1]
    else:
        total = agent.total.to_proto()
        if totals is not None:
            totals[agent.id] = (agent.total, total)
    summary = opb.AgentSummary(
        agent_info=agent.info,
        active=agent.connected,
        total=total,
        registered_time=agent.registered_time,
        reregistered_time=agent.reregistered_time,
        task_count=len(used),
        drain=drain_info(master.drains.get(agent.id)),
    )
    if used or offered:  # an idle agent (most of a big cluster's, often) has neither
        offered_sum = sum(offered, Resources.empty())
        summary.allocated.extend((sum(used, Resources.empty()) + offered_sum).to_proto())
        summary.offered.extend(offered_sum.to_proto())
    return summary


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


# ------------------------------------------------------------------ the paged lists (see mesos_master.paging)
#: An item of a list: its key, and how to build it: the path of the repeated field it goes into, and its summary.
_Entry = tuple[Key, Callable[[], tuple[tuple[str, ...], Message]]]
_PagedRequest = opb.GetAgentsRequest | opb.GetFrameworksRequest | opb.GetTasksRequest | opb.GetStateRequest
_Paged = TypeVar("_Paged", opb.GetAgentsResponse, opb.GetFrameworksResponse, opb.GetTasksResponse, opb.GetStateResponse)
#: Within one task id, the active task sorts after the completed ones it reused the id of, so a task that completes
#: between two pages moves towards the front (see mesos_master.paging: it is not listed twice).
_ACTIVE = "~"


def _placed(path: tuple[str, ...], build: Callable[[], Message]) -> Callable[[], tuple[tuple[str, ...], Message]]:
    return lambda: (path, build())


def _placed_size(placed: tuple[tuple[str, ...], Message]) -> int:
    return placed[1].ByteSize() + ITEM_OVERHEAD


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class AgentOrder:
    """The agents' keys in order, kept across calls (sorted again only when the set of agents changed): a page of
    50,000 agents neither sorts them nor makes an entry for each."""

    def __init__(self, master: Master) -> None:
        self.master = master
        self._ids: set[str] = set()
        self._keys: list[Key] = []
        self.totals: TotalsCache = {}

    def keys(self) -> list[Key]:
        agents = self.master.agents
        if agents.keys() != self._ids:
            self._ids = set(agents)
            self._keys = [(agent_id,) for agent_id in sorted(self._ids)]
            for gone in self.totals.keys() - self._ids:
                del self.totals[gone]
        return self._keys

    def section(self, prefix: tuple[str, ...]) -> SortedSection[tuple[tuple[str, ...], Message]]:
        path = (*prefix, "agents")
        master = self.master

        def build(key: Key) -> tuple[tuple[str, ...], Message] | None:
            agent = master.agents.get(key[0])
            return (path, agent_summary(master, agent, self.totals)) if agent is not None else None

        return SortedSection(self.keys(), build)


def framework_entries(master: Master, prefix: tuple[str, ...], visible: Callable[[str], bool]) -> list[_Entry]:
    """Active and completed frameworks in one order by id (a framework torn down between pages keeps its place),
    those whose principal is `visible` to the caller."""
    entries: list[_Entry] = []
    for frameworks, name, active in (
        (master.frameworks.values(), "frameworks", True),
        (master.completed_frameworks, "completed_frameworks", False),
    ):
        path = (*prefix, name)
        entries.extend(
            ((f.id,), _placed(path, partial(framework_summary, master, f, active)))
            for f in frameworks
            if visible(f.info.principal)
        )
    return entries


def completed_rank(task: Task) -> str:
    """What tells a completed task from the others that had its id: when, and with which update, it ended."""
    latest = task.latest()
    timestamp, uuid = (latest.timestamp, latest.uuid.hex()) if latest is not None else (0.0, "")
    return f"c{timestamp:020.6f}/{uuid}"


def task_entries(frameworks: Iterable[Framework], prefix: tuple[str, ...]) -> list[_Entry]:
    """The tasks of `frameworks`, active and completed, in one order by framework id, task id, then rank."""
    active, completed = (*prefix, "tasks"), (*prefix, "completed_tasks")
    keyed: list[_Entry] = []
    for fw in frameworks:
        keyed.extend(
            ((fw.id, t.task_id, _ACTIVE), _placed(active, partial(task_summary, t))) for t in fw.tasks.values()
        )
        keyed.extend(
            ((fw.id, t.task_id, completed_rank(t)), _placed(completed, partial(task_summary, t)))
            for t in fw.completed_tasks
        )
    return unique_keys(keyed)


class OperatorService(SubscribeServicer, operator_pb2_grpc.OperatorServicer):
    def __init__(
        self,
        dispatcher: Dispatcher,
        guard: Guard,
        client_config: ClientConfig | None = None,
        *,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.master = dispatcher.master
        self.guard = guard
        self.client_config = client_config  # how the master dials agents (its own certificate)
        # What /metrics serves too (the daemon's registry); a registry of this core alone without one (tests).
        self.metrics = metrics or master_registry(lambda: self.master, time.time, self.master.start_time)
        self.agent_order = AgentOrder(self.master)

    async def GetMasters(
        self, request: opb.GetMastersRequest, context: grpc.aio.ServicerContext
    ) -> opb.GetMastersResponse:
        """Every master answers this itself, leader or standby: api/standby.py routes it to the master's seat,
        never to a term's servicer."""
        await context.abort(grpc.StatusCode.INTERNAL, "GetMasters reached a term's servicer")
        raise AssertionError("abort raises")

    async def _page(
        self,
        context: grpc.aio.ServicerContext,
        request: _PagedRequest,
        scope: str,
        sections: Sequence[Section[tuple[tuple[str, ...], Message]]],
        response: _Paged,
    ) -> _Paged:
        """One page of `sections` after the request's continue token, placed into `response`; built a piece at a
        time, letting the event loop run between pieces (a page of 1 MiB is thousands of agents)."""
        try:
            after = decode_token(scope, request.continue_token, len(sections))
        except PageTokenError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            raise  # abort() raises; this is for the type checker
        builder = PageBuilder(sections, after, _placed_size, limit=request.limit)
        while builder.step(PAGE_PIECE):
            await asyncio.sleep(0)
        page = builder.page()
        for path, summary in page.items:
            target: Any = response
            for name in path:
                target = getattr(target, name)
            target.append(summary)
        if page.next is not None:
            response.continue_token = encode_token(scope, page.next)
        return response

    def _task_frameworks(self, framework_id: str, visible: Callable[[str], bool]) -> list[Framework]:
        """The frameworks whose tasks a read lists: the one asked for, or all; only those the caller may see (one
        it may not is as unknown as one that is not there)."""
        master = self.master
        if framework_id:
            fw = master.frameworks.get(framework_id)
            if fw is None or not visible(fw.info.principal):
                raise UnknownIdError(f"unknown framework {quoted(framework_id)}")
            return [fw]
        everything = list(master.frameworks.values()) + list(master.completed_frameworks)
        return [fw for fw in everything if visible(fw.info.principal)]

    async def GetAgents(
        self, request: opb.GetAgentsRequest, context: grpc.aio.ServicerContext
    ) -> opb.GetAgentsResponse:
        sections = [self.agent_order.section(())]
        return await self._page(context, request, "GetAgents", sections, opb.GetAgentsResponse())

    async def GetFrameworks(
        self, request: opb.GetFrameworksRequest, context: grpc.aio.ServicerContext
    ) -> opb.GetFrameworksResponse:
        sections = [framework_entries(self.master, (), self.guard.viewer())]
        return await self._page(context, request, "GetFrameworks", sections, opb.GetFrameworksResponse())

    async def GetTasks(self, request: opb.GetTasksRequest, context: grpc.aio.ServicerContext) -> opb.GetTasksResponse:
        try:
            frameworks = self._task_frameworks(request.framework_id, self.guard.viewer())
        except CallError as e:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(e))
            raise  # abort() raises; this is for the type checker
        scope = f"GetTasks/{_digest(request.framework_id)}"
        return await self._page(context, request, scope, [task_entries(frameworks, ())], opb.GetTasksResponse())

    async def GetState(self, request: opb.GetStateRequest, context: grpc.aio.ServicerContext) -> opb.GetStateResponse:
        master = self.master
        visible = self.guard.viewer()
        sections: list[Section[tuple[tuple[str, ...], Message]]] = [
            self.agent_order.section(("agents",)),
            framework_entries(master, ("frameworks",), visible),
            task_entries(self._task_frameworks("", visible), ("tasks",)),
        ]
        response = opb.GetStateResponse(master_id=master.master_id, version=__version__, start_time=master.start_time)
        return await self._page(context, request, "GetState", sections, response)

    async def Teardown(self, request: opb.TeardownRequest, context: grpc.aio.ServicerContext) -> opb.TeardownResponse:
        fw = self.master.frameworks.get(request.framework_id)
        if fw is not None:  # an unknown id is NOT_FOUND below, for anyone
            owner = fw.info.principal
            await self.guard.authorize(context, "teardown_frameworks", owner, owner=Principal.parse(owner))
        try:
            self.master.teardown(request.framework_id, "torn down by the operator")
        except CallError as e:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(e))
        await self.dispatcher.commit(context)
        return opb.TeardownResponse()

    # ------------------------------------------------------------------ operator policy
    async def _change(self, context: grpc.aio.ServicerContext, change: Callable[[], object]) -> None:
        """Apply a change to the core; bad input becomes INVALID_ARGUMENT (NOT_FOUND for unknown ids)."""
        try:
            change()
        except (CallError, ResourcesError) as e:
            await context.abort(_status_code(e), str(e))
        await self.dispatcher.commit(context)

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
        for role in sorted(weights):
            await self.guard.authorize(context, "update_weights", role)
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
        await self.guard.authorize(context, "update_quotas", quota_info.role)
        await self._change(context, lambda: self.master.set_quota(quota_info.role, quota))
        return opb.SetQuotaResponse()

    async def RemoveQuota(
        self, request: opb.RemoveQuotaRequest, context: grpc.aio.ServicerContext
    ) -> opb.RemoveQuotaResponse:
        await self.guard.authorize(context, "update_quotas", request.role)
        if request.role not in self.master.quotas:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"role {quoted(request.role)} has no quota")
        await self._change(context, lambda: self.master.set_quota(request.role, None))
        return opb.RemoveQuotaResponse()

    # ------------------------------------------------------------------ maintenance (mesos_master.drain)
    async def DrainAgent(
        self, request: opb.DrainAgentRequest, context: grpc.aio.ServicerContext
    ) -> opb.DrainAgentResponse:
        await self._authorize_drain(context, request.agent_id)
        deadline = request.deadline_seconds if request.HasField("deadline_seconds") else None
        await self._change(context, lambda: self.master.drain_agent(request.agent_id, deadline, request.mark_gone))
        return opb.DrainAgentResponse(drain=drain_info(self.master.drains.get(request.agent_id)))

    async def ReactivateAgent(
        self, request: opb.ReactivateAgentRequest, context: grpc.aio.ServicerContext
    ) -> opb.ReactivateAgentResponse:
        await self._authorize_drain(context, request.agent_id)
        await self._change(context, lambda: self.master.reactivate_agent(request.agent_id))
        return opb.ReactivateAgentResponse()

    async def _authorize_drain(self, context: grpc.aio.ServicerContext, agent_id: str) -> None:
        agent = self.master.agents.get(agent_id)
        if agent is not None:  # an unknown id is NOT_FOUND (from the core), for anyone
            await self.guard.authorize(context, "drain_agents", agent.info.hostname)

    async def Reserve(self, request: opb.ReserveRequest, context: grpc.aio.ServicerContext) -> opb.ReserveResponse:
        await self._reserve(context, request.agent_id, request.resources, unreserve=False)
        return opb.ReserveResponse()

    async def Unreserve(
        self, request: opb.UnreserveRequest, context: grpc.aio.ServicerContext
    ) -> opb.UnreserveResponse:
        await self._reserve(context, request.agent_id, request.resources, unreserve=True)
        return opb.UnreserveResponse()

    async def _reserve(
        self, context: grpc.aio.ServicerContext, agent_id: str, wire: Sequence[rpb.Resource], *, unreserve: bool
    ) -> None:
        try:
            resources = operator_resources("resources", wire)
        except (CallError, ResourcesError) as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            raise
        action = "unreserve_resources" if unreserve else "reserve_resources"
        roles = sorted(resources.roles() - {UNRESERVED})
        for role in roles:
            await self.guard.authorize(context, action, role)
        caller = self.guard.caller()
        if caller is not None and caller.role == "framework":
            # A framework reserves for its own roles (as in an ACCEPT's RESERVE), whatever the ACLs let it do.
            own = {r for fw in self.master.frameworks.values() if fw.info.principal == str(caller) for r in fw.roles()}
            others = [r for r in roles if r not in own]
            if others:
                what = "unreserve" if unreserve else "reserve"
                await deny(
                    context,
                    f"{caller} may not {what} resources for role {quoted(others[0])}: not a role of its frameworks",
                )
        await self._change(context, lambda: self.master.operator_reserve(agent_id, resources, unreserve=unreserve))

    async def GetMetrics(
        self, request: opb.GetMetricsRequest, context: grpc.aio.ServicerContext
    ) -> opb.GetMetricsResponse:
        """The samples /metrics serves, from the same collectors (mesos_master.metrics)."""
        return metrics_response(self.metrics)

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
                    async with open_channel(address, self.client_config) as channel:
                        response = await agent_pb2_grpc.AgentStub(channel).GetContainers(
                            agent_pb2.GetContainersRequest(), timeout=min(CONTAINERS_TIMEOUT, left)
                        )
                except grpc.aio.AioRpcError:
                    return None
            for container in response.containers:
                container.agent_id = agent_id
            return list(response.containers)

        answers = await asyncio.gather(*(ask(agent_id, address) for agent_id, address in targets))
        visible = self.guard.viewer()
        frameworks = self.master.frameworks

        def shown(container: agent_pb2.ContainerStatus) -> bool:
            fw = frameworks.get(container.framework_id)
            return visible(fw.info.principal if fw is not None else "")

        containers: list[agent_pb2.ContainerStatus] = []
        for (agent_id, _), answer in zip(targets, answers, strict=True):
            if answer is None:
                unreachable.append(agent_id)
            else:
                containers.extend(c for c in answer if shown(c))
        return opb.GetClusterContainersResponse(containers=containers, unreachable_agents=sorted(unreachable))


def _status_code(e: Exception) -> grpc.StatusCode:
    if isinstance(e, UnknownIdError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(e, PreconditionError):
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.INVALID_ARGUMENT


def _quota_info(role: str, quota: Quota) -> opb.QuotaInfo:
    return opb.QuotaInfo(
        role=role,
        guarantee=quota.guarantee.to_proto(),
        limit=quota.limit.to_proto() if quota.limit is not None else [],
        has_limit=quota.limit is not None,
    )
