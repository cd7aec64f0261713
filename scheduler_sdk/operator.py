"""A typed async client of the master's Operator API (what the CLI uses)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from aiomesos.v1 import agent_pb2, agent_pb2_grpc, operator_pb2_grpc
from aiomesos.v1 import events_pb2 as epb
from aiomesos.v1 import operator_pb2 as opb
from scheduler_sdk.backoff import Backoff
from scheduler_sdk.channels import open_channel
from scheduler_sdk.master_locator import MasterLocator, NoMasterError
from scheduler_sdk.masters import leader_hint
from scheduler_sdk.resources import Resources
from scheduler_sdk.security.config import ClientConfig, load_client_config

_ListRequest = opb.GetStateRequest | opb.GetAgentsRequest | opb.GetFrameworksRequest | opb.GetTasksRequest
_RETRY_WRITE = (grpc.StatusCode.UNAVAILABLE,)
_RETRY_READ = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
#: The master sends a heartbeat (an empty message) every 15 s; a stream silent for this long is dead.
EVENT_STREAM_SILENCE = 45.0
#: How an event stream may end and be subscribed to again (the master stopped or lost its leadership; the
#: watcher fell too far behind).
_RESUBSCRIBE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED)


def _unreachable(address: str, e: grpc.aio.AioRpcError) -> str:
    """Why `address` did not serve a call: a standby's own words, or that it could not be reached."""
    if leader_hint(e) is not None or "standby" in (e.details() or ""):
        return e.details() or "the master is a standby"
    return f"cannot reach the master at {address}: {e.code().name.lower()}"


class OperatorError(Exception):
    """The master could not be reached, or refused the request; the message says which."""


class EventStreamError(OperatorError):
    """The master ended an event stream (`code`: UNAVAILABLE, it stopped or no longer leads; RESOURCE_EXHAUSTED,
    the watcher fell too far behind); the message says why."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class AgentError(OperatorError):
    """An agent could not be reached, or refused the request (`code` says how); the message says which."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class OperatorClient:
    """`config`: how to reach and prove who we are to the master (None: the one `load_client_config` finds,
    as the CLI does; `ClientConfig()`: plaintext). `master` overrides the config's: `host:port`, a comma-separated
    list, or `etcd://h:p[,h:p]/prefix`; every call goes to the leading master (`MasterLocator`)."""

    def __init__(
        self, master: str = "", *, timeout: float = 5.0, config: ClientConfig | None = None, tries: int = 0
    ) -> None:
        config = config if config is not None else load_client_config()
        self.master = master or (config.master if config else "")
        if not self.master:
            raise OperatorError("no master address: give one, or a client config that names it")
        try:
            self.locator = MasterLocator(self.master, config)
        except ValueError as e:
            raise OperatorError(str(e)) from None
        self.config = config
        self.timeout = timeout
        # Tries of one call (0: enough to go round a list twice and follow a standby's hint, at least 4).
        self.tries = tries or max(4, 2 * len(self.locator.spec.addresses) + 2)
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def __aenter__(self) -> OperatorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()
        await self.locator.close()

    def _stub(self, address: str) -> operator_pb2_grpc.OperatorStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = open_channel(
                address, self.config, master=True, options=[("grpc.max_receive_message_length", 256 << 20)]
            )
            self._channels[address] = channel
        return operator_pb2_grpc.OperatorStub(channel)

    async def _call(self, method: str, request: object) -> object:
        """One call to the leading master: a standby's refusal names the leader, who is asked next; an unreachable
        master, the next candidate; `tries` in all, with a short backoff. Reads are retried after a timeout too;
        writes only when they cannot have been done (UNAVAILABLE: unreached, or refused by a standby)."""
        retryable = _RETRY_READ if method.startswith("Get") else _RETRY_WRITE
        backoff = Backoff(0.05, 1.0)
        why = f"cannot reach the master at {self.locator}"
        for _ in range(self.tries):
            try:
                address = await self.locator.candidate()
            except NoMasterError as e:
                why = str(e)
                await asyncio.sleep(backoff.next())
                continue
            try:
                response = await getattr(self._stub(address), method)(
                    request, timeout=self.timeout, wait_for_ready=False
                )
            except grpc.aio.AioRpcError as e:
                if e.code() not in retryable:
                    raise OperatorError(f"{method}: {e.details()}") from None
                why = _unreachable(address, e)
                if not self.locator.failed(address, e):
                    await asyncio.sleep(backoff.next())
                continue
            self.locator.attached(address)
            return response
        if len(self.locator.spec.addresses) == 1:
            raise OperatorError(why)
        raise OperatorError(f"no leading master answered ({self.locator}); last: {why}")

    async def _list(self, method: str, request: _ListRequest) -> Any:
        """The whole answer of a paged list: every page, asked for in turn, merged into the first (the master
        gives at most `request.limit` items a page, 0: as many as fit in its page bytes)."""
        whole: Any = None
        tokens: set[str] = set()
        while True:
            page: Any = await self._call(method, request)
            if whole is None:
                whole = page
            else:
                whole.MergeFrom(page)
            token = page.continue_token
            if not token:
                whole.continue_token = ""
                return whole
            if token in tokens:
                raise OperatorError(f"{method}: the master gave the same continue token twice")
            tokens.add(token)
            request.continue_token = token

    async def masters(self) -> opb.GetMastersResponse:
        """Every master of the cluster (which leads, since when) and etcd's health, as any master sees them."""
        return await self._call("GetMasters", opb.GetMastersRequest())  # type: ignore[return-value]

    async def state(self, *, page_size: int = 0) -> opb.GetStateResponse:
        """The master's whole state (asked for in pages of `page_size` items; 0: the master's page)."""
        return await self._list("GetState", opb.GetStateRequest(limit=page_size))

    async def agents(self, *, page_size: int = 0) -> opb.GetAgentsResponse:
        return await self._list("GetAgents", opb.GetAgentsRequest(limit=page_size))

    async def frameworks(self, *, page_size: int = 0) -> opb.GetFrameworksResponse:
        return await self._list("GetFrameworks", opb.GetFrameworksRequest(limit=page_size))

    async def tasks(self, framework_id: str = "", *, page_size: int = 0) -> opb.GetTasksResponse:
        request = opb.GetTasksRequest(framework_id=framework_id, limit=page_size)
        return await self._list("GetTasks", request)

    async def teardown(self, framework_id: str) -> None:
        await self._call("Teardown", opb.TeardownRequest(framework_id=framework_id))

    async def weights(self) -> dict[str, float]:
        resp: opb.GetWeightsResponse = await self._call("GetWeights", opb.GetWeightsRequest())  # type: ignore[assignment]
        return {w.role: w.weight for w in resp.weights}

    async def update_weights(self, weights: dict[str, float]) -> None:
        request = opb.UpdateWeightsRequest(weights=[opb.RoleWeight(role=r, weight=w) for r, w in weights.items()])
        await self._call("UpdateWeights", request)

    async def quota(self) -> opb.GetQuotaResponse:
        return await self._call("GetQuota", opb.GetQuotaRequest())  # type: ignore[return-value]

    async def set_quota(self, role: str, guarantee: Resources, limit: Resources | None) -> None:
        info = opb.QuotaInfo(
            role=role,
            guarantee=guarantee.to_proto(),
            limit=limit.to_proto() if limit is not None else [],
            has_limit=limit is not None,
        )
        await self._call("SetQuota", opb.SetQuotaRequest(quota=info))

    async def remove_quota(self, role: str) -> None:
        await self._call("RemoveQuota", opb.RemoveQuotaRequest(role=role))

    async def reserve(self, agent_id: str, resources: Resources) -> None:
        await self._call("Reserve", opb.ReserveRequest(agent_id=agent_id, resources=resources.to_proto()))

    async def unreserve(self, agent_id: str, resources: Resources) -> None:
        await self._call("Unreserve", opb.UnreserveRequest(agent_id=agent_id, resources=resources.to_proto()))

    async def drain_agent(
        self, agent_id: str, deadline: float | None = None, *, mark_gone: bool = False
    ) -> opb.DrainInfo:
        """Drain the agent (maintenance): no new offers; what runs there at `deadline` seconds from now is killed
        (None: it may run until it ends); with `mark_gone` the agent is removed for good once drained."""
        request = opb.DrainAgentRequest(agent_id=agent_id, deadline_seconds=deadline, mark_gone=mark_gone)
        response: opb.DrainAgentResponse = await self._call("DrainAgent", request)  # type: ignore[assignment]
        return response.drain

    async def reactivate_agent(self, agent_id: str) -> None:
        """End the agent's drain: it is offered again."""
        await self._call("ReactivateAgent", opb.ReactivateAgentRequest(agent_id=agent_id))

    async def metrics(self) -> dict[str, float]:
        """The master's Prometheus samples by name (`name` or `name{label="value",...}`)."""
        return dict((await self.metrics_response()).metrics)

    async def metrics_response(self) -> opb.GetMetricsResponse:
        """The master's metrics: the samples by name, and by family with their type and help."""
        return await self._call("GetMetrics", opb.GetMetricsRequest())  # type: ignore[return-value]

    async def containers(self) -> opb.GetClusterContainersResponse:
        """Every task's container with its usage statistics, gathered from the agents by the master."""
        return await self._call("GetContainers", opb.GetClusterContainersRequest())  # type: ignore[return-value]

    async def subscribe(self, *, reconnect: bool = False) -> AsyncIterator[list[epb.OperatorEvent]]:
        """The operator event stream (events.proto), batch by batch: first a batch of one SNAPSHOT event (the
        master's state, its pages joined), then the batches of events as the master publishes them, each event
        the whole new state of what it is about. Raises EventStreamError when the master ends the stream; with
        `reconnect`, subscribes again instead (to whichever master leads, with backoff), and the next batch
        is a new SNAPSHOT: a view starts again from it. A first subscription that finds no master raises."""
        backoff = Backoff(0.1, 5.0)
        established = False
        while True:
            try:
                async for batch in self._subscribe_once():
                    established = True
                    backoff.reset()
                    yield batch
                return
            except EventStreamError as e:
                if not (reconnect and established) or e.code not in _RESUBSCRIBE:
                    raise
            await asyncio.sleep(backoff.next())

    async def _subscribe_once(self) -> AsyncIterator[list[epb.OperatorEvent]]:
        """One event stream from the leading master (found as `_call` finds it, until its snapshot is in)."""
        backoff = Backoff(0.05, 1.0)
        why = f"cannot reach the master at {self.locator}"
        for _ in range(self.tries):
            try:
                address = await self.locator.candidate()
            except NoMasterError as e:
                why = str(e)
                await asyncio.sleep(backoff.next())
                continue
            call = self._stub(address).Subscribe(epb.SubscribeRequest(), wait_for_ready=False)
            snapshot: list[epb.OperatorEvent] = []
            try:
                async for batch in _event_batches(call, snapshot):
                    self.locator.attached(address)
                    yield batch
                raise EventStreamError("event stream: the master ended it", grpc.StatusCode.UNAVAILABLE)
            except grpc.aio.AioRpcError as e:
                if snapshot or e.code() not in _RETRY_READ:
                    raise EventStreamError(e.details() or e.code().name.lower(), e.code()) from None
                why = _unreachable(address, e)
                if not self.locator.failed(address, e):
                    await asyncio.sleep(backoff.next())
            finally:
                call.cancel()
        raise EventStreamError(why, grpc.StatusCode.UNAVAILABLE)


class AgentClient:
    """A typed async client of one agent's own API: its state, containers and tasks' sandboxes."""

    def __init__(self, address: str, *, timeout: float = 5.0, config: ClientConfig | None = None) -> None:
        self.address = address
        self.timeout = timeout
        config = config if config is not None else load_client_config()
        self._channel = open_channel(address, config, options=[("grpc.max_receive_message_length", 64 << 20)])
        self._stub = agent_pb2_grpc.AgentStub(self._channel)

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    def _error(self, e: grpc.aio.AioRpcError) -> AgentError:
        if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return AgentError(f"cannot reach the agent at {self.address}: {e.code().name.lower()}", e.code())
        return AgentError(e.details() or e.code().name.lower(), e.code())

    async def _call(self, method: str, request: object) -> object:
        try:
            return await getattr(self._stub, method)(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as e:
            raise self._error(e) from None

    async def state(self) -> agent_pb2.AgentState:
        return await self._call("GetState", agent_pb2.AgentStateRequest())  # type: ignore[return-value]

    async def containers(self) -> agent_pb2.GetContainersResponse:
        return await self._call("GetContainers", agent_pb2.GetContainersRequest())  # type: ignore[return-value]

    async def list_files(self, task_id: str, path: str = "", framework_id: str = "") -> list[agent_pb2.FileInfo]:
        request = agent_pb2.ListFilesRequest(task_id=task_id, framework_id=framework_id, path=path)
        response: agent_pb2.ListFilesResponse = await self._call("ListFiles", request)  # type: ignore[assignment]
        return list(response.files)

    async def read_file(
        self,
        task_id: str,
        path: str,
        *,
        framework_id: str = "",
        offset: int = 0,
        length: int = 0,
        follow: bool = False,
        tail_lines: int = 0,
    ) -> AsyncIterator[agent_pb2.ReadFileChunk]:
        """The file's chunks; with `follow`, also what is appended until the task is over (no deadline then)."""
        request = agent_pb2.ReadFileRequest(
            task_id=task_id,
            framework_id=framework_id,
            path=path,
            offset=offset,
            length=length,
            follow=follow,
            tail_lines=tail_lines,
        )
        call = self._stub.ReadFile(request, timeout=None if follow else self.timeout * 12)
        try:
            async for chunk in call:
                yield chunk
        except grpc.aio.AioRpcError as e:
            raise self._error(e) from None
        finally:
            call.cancel()


async def _read_or_silent(call: Any) -> Any:
    """The stream's next message; a stream silent for EVENT_STREAM_SILENCE (no heartbeat) is dead: UNAVAILABLE."""
    try:
        async with asyncio.timeout(EVENT_STREAM_SILENCE):
            return await call.read()
    except TimeoutError:
        raise EventStreamError("event stream: the master went silent", grpc.StatusCode.UNAVAILABLE) from None


async def _event_batches(call: Any, snapshot: list[epb.OperatorEvent]) -> AsyncIterator[list[epb.OperatorEvent]]:
    """The batches of one Subscribe call: its SNAPSHOT pages joined into one event (put in `snapshot` too, so
    the caller knows the stream was established), then each non-empty message's events. A stream silent for
    EVENT_STREAM_SILENCE (no heartbeat) is dead: UNAVAILABLE."""
    while True:
        message = await _read_or_silent(call)
        if message is grpc.aio.EOF:
            return
        events = list(message.events)
        if not snapshot:
            if not events or events[0].type != epb.OperatorEvent.SNAPSHOT:
                continue
            joined = epb.OperatorEvent()
            joined.CopyFrom(events[0])
            while joined.snapshot.more:
                page = await _read_or_silent(call)
                if page is grpc.aio.EOF or not page.events or not page.events[0].HasField("snapshot"):
                    raise EventStreamError("event stream: the snapshot ended half-way", grpc.StatusCode.UNAVAILABLE)
                joined.snapshot.MergeFrom(page.events[0].snapshot)
                joined.snapshot.more = page.events[0].snapshot.more
            snapshot.append(joined)
            yield [joined]
            continue
        if events:
            yield events
