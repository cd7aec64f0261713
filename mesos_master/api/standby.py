"""Leader or standby: the gRPC services a master serves for its whole life, routed to the servicers of the term it
leads, or refused while it does not.

A master's server runs from start to stop; its terms as leader come and go (a single master has one term, for
its whole life). `Seat` holds the servicers of the current term (each bound to that term's core and dispatcher)
or none. A call that comes while there is no term is refused UNAVAILABLE with a message that names the leader
and the trailing metadata `aiomesos-leader` (scheduler_sdk.masters), which every client follows: that refusal is
the redirect, for reads and writes alike. `GetMasters` is answered by every master, leader or not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc

from aiomesos.v1 import operator_pb2 as opb
from mesos_master.api.dispatch import MASTER_STOPPING
from mesos_master.events import EventHub
from scheduler_sdk.masters import MasterRecord, standby_message, standby_metadata

#: The Operator methods every master answers itself.
ANSWERED_BY_ANY_MASTER = frozenset({"GetMasters"})


class Seat:
    """This master's place: the servicers of the term it leads, or none (a standby)."""

    def __init__(
        self,
        master_id: str,
        leader: Callable[[], MasterRecord | None] = lambda: None,
        masters: Callable[[], Awaitable[opb.GetMastersResponse]] | None = None,
    ) -> None:
        self.master_id = master_id
        self.services: Mapping[str, Any] | None = None
        #: The operator event stream of the term it leads (None: a standby has none).
        self.events: EventHub | None = None
        self.closing = False  # the master is stopping: say so, rather than call it a standby
        self._leader = leader
        #: What GetMasters answers (mesos_master.ha: the master alone, or every master as etcd lists them).
        self.masters_view = masters
        #: Told when a term begins (True) or ends (False): the daemon's gRPC health follows it.
        self.on_change: Callable[[bool], None] | None = None

    @property
    def leading(self) -> bool:
        return self.services is not None

    def begin(self, services: Mapping[str, Any], events: EventHub | None = None) -> None:
        """A term starts: calls go to these servicers (by service name) from now on; `events` is its hub."""
        self.services = services
        self.events = events
        if self.on_change is not None:
            self.on_change(True)

    def end(self) -> None:
        """The term is over: refuse from now on (streams of the term are ended by its dispatcher)."""
        self.services = None
        self.events = None
        if self.on_change is not None:
            self.on_change(False)

    def leader(self) -> MasterRecord | None:
        """The leader as this master last saw it, when it is another master."""
        leader = self._leader()
        if leader is None or leader.master_id == self.master_id:
            return None  # itself, between terms: no one to send the caller to
        return leader

    async def refuse(self, context: grpc.aio.ServicerContext) -> None:
        if self.closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, MASTER_STOPPING)
        leader = self.leader()
        await context.abort(
            grpc.StatusCode.UNAVAILABLE,
            standby_message(self.master_id, leader),
            trailing_metadata=standby_metadata(leader),
        )

    async def masters(self, context: grpc.aio.ServicerContext) -> opb.GetMastersResponse:
        if self.masters_view is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "this master cannot list the masters yet")
            raise AssertionError("abort raises")
        return await self.masters_view()


def routed(servicer: type, service: str, seat: Seat) -> Any:
    """An instance of the generated `servicer` base whose every RPC goes to the current term's servicer of
    `service` (its full name, e.g. aiomesos.v1.Scheduler), or is refused while this master does not lead."""
    namespace: dict[str, Any] = {}
    for name, value in vars(servicer).items():
        if name.startswith("_") or not callable(value):
            continue
        namespace[name] = _forward(service, name)
    cls = type(f"Routed{servicer.__name__}", (servicer,), namespace)
    instance = cls()
    instance._seat = seat
    return instance


def _forward(service: str, name: str) -> Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    answered_here = service == "aiomesos.v1.Operator" and name in ANSWERED_BY_ANY_MASTER

    async def method(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        seat: Seat = self._seat
        if answered_here:
            return await seat.masters(context)
        services = seat.services
        if services is None:
            await seat.refuse(context)
            return None
        return await getattr(services[service], name)(request, context)

    method.__name__ = name
    return method
