"""gRPC health checking (`grpc.health.v1.Health`) and server reflection on every daemon's gRPC server, for load
balancers, systemd watchdogs and grpcurl-style tools.

Both are served by the daemon's own server, next to its services and never through a master's standby routing
(mesos_master.api.standby): a standby answers them itself. They are authenticated like every other call (a
client certificate, or a token on the master's token port). The overall status ("") is SERVING from start until
the daemon stops; each service's own status says whether it takes calls now (a standby master's services are
NOT_SERVING: every call there is refused with the leader's address)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import grpc
from google.protobuf.descriptor import FileDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from scheduler_sdk._daemon.http import HttpServer

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


def service_names(*files: FileDescriptor) -> list[str]:
    """The full names of the services defined in these proto files (e.g. aiomesos.v1.Operator)."""
    return [service.full_name for f in files for service in f.services_by_name.values()]


class Health:
    """The daemon's health servicer, set from synchronous code (a term beginning or ending). The servicer's own
    `set` is a coroutine; the initial statuses are written to its table directly, before the server starts."""

    def __init__(self, services: Iterable[str], *, serving: bool = True) -> None:
        self.servicer = HealthServicer()
        self.services = list(services)
        self._pending: set[asyncio.Task[None]] = set()
        for service in self.services:
            self.servicer._server_status[service] = SERVING if serving else NOT_SERVING

    def set_serving(self, serving: bool, services: Iterable[str] | None = None) -> None:
        """Every service (or these) SERVING or NOT_SERVING; Watch callers hear of it."""
        status = SERVING if serving else NOT_SERVING
        for service in self.services if services is None else services:
            task = asyncio.get_running_loop().create_task(self.servicer.set(service, status))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def stopping(self) -> None:
        """The daemon stops: everything NOT_SERVING, for good."""
        await self.servicer.enter_graceful_shutdown()

    def status(self, service: str = "") -> int:
        return int(self.servicer._server_status.get(service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN))


def add_health_and_reflection(server: grpc.aio.Server, services: Iterable[str], *, serving: bool = True) -> Health:
    """Health (each of `services` and "" SERVING, unless `serving` is False) and reflection of `services`, the
    health service and reflection itself."""
    names = list(services)
    health = Health(names, serving=serving)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    reflection.enable_server_reflection([*names, HEALTH_SERVICE, reflection.SERVICE_NAME], server)
    return health


async def stop_serving(server: grpc.aio.Server, health: Health, http: HttpServer | None, grace: float) -> None:
    """A daemon stops serving: NOT_SERVING everywhere first (a probe sees it going), the HTTP port, the gRPC server."""
    await health.stopping()
    if http is not None:
        await http.stop()
    await server.stop(grace=grace)
