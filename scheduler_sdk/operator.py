"""A typed async client of the master's Operator API (what the CLI uses)."""

from __future__ import annotations

import grpc

from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import operator_pb2_grpc


class OperatorError(Exception):
    """The master could not be reached, or refused the request; the message says which."""


class OperatorClient:
    def __init__(self, master: str, *, timeout: float = 5.0) -> None:
        self.master = master
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(master, options=[("grpc.max_receive_message_length", 256 << 20)])
        self._stub = operator_pb2_grpc.OperatorStub(self._channel)

    async def __aenter__(self) -> OperatorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: str, request: object) -> object:
        try:
            return await getattr(self._stub, method)(request, timeout=self.timeout, wait_for_ready=False)
        except grpc.aio.AioRpcError as e:
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise OperatorError(f"cannot reach the master at {self.master}: {e.code().name.lower()}") from None
            raise OperatorError(f"{method}: {e.details()}") from None

    async def state(self) -> opb.GetStateResponse:
        return await self._call("GetState", opb.GetStateRequest())  # type: ignore[return-value]

    async def agents(self) -> opb.GetAgentsResponse:
        return await self._call("GetAgents", opb.GetAgentsRequest())  # type: ignore[return-value]

    async def frameworks(self) -> opb.GetFrameworksResponse:
        return await self._call("GetFrameworks", opb.GetFrameworksRequest())  # type: ignore[return-value]

    async def tasks(self, framework_id: str = "") -> opb.GetTasksResponse:
        return await self._call("GetTasks", opb.GetTasksRequest(framework_id=framework_id))  # type: ignore[return-value]

    async def teardown(self, framework_id: str) -> None:
        await self._call("Teardown", opb.TeardownRequest(framework_id=framework_id))
