"""The link between the pure core (`Master`) and the streams: after the core changes, the outbox is drained
once per event-loop turn, its registry writes are applied as one batch (before anything of that drain is sent),
and each batch of messages is queued on the stream of the framework or agent it is for. One flush runs at a time,
so what is sent keeps the order in which the core decided it; the operator events of each drain go to the
term's event hub (`hub`, mesos_master.events) after its writes, so a watcher sees only what is durable. `stop`
ends every stream (and the hub's) when the master stops or loses its leadership; a registry write that fails
ends the term (`failed`): the core is then ahead of what is durable, so it is thrown away and nothing more is
sent from it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

import grpc
import structlog

from mesos_master.cluster import Master
from mesos_master.events import EventHub, state_snapshot
from mesos_master.outbox import Drained
from mesos_master.registry import FencedError, Registry
from scheduler_sdk._daemon.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: Why every stream ends when the master stops: the peer should try again (another master, or this one back).
MASTER_STOPPING = "the master is stopping"
#: Why every stream ends when a master's term as leader is over: the peer should find the new leader.
LEADERSHIP_LOST = "this master is no longer the leader"


@dataclass(eq=False)
class Connection(Generic[T]):
    """One attached stream: a queue of outgoing messages, and why it was closed: `close_code` is the status
    the stream ends with when the master closed it, None when the peer ended it."""

    id: str
    queue: asyncio.Queue[T | None] = field(default_factory=asyncio.Queue)
    close_reason: str | None = None
    close_code: grpc.StatusCode | None = None

    def send(self, message: T) -> None:
        self.queue.put_nowait(message)

    def close(self, reason: str, code: grpc.StatusCode | None) -> None:
        if self.close_reason is None:
            self.close_reason = reason
            self.close_code = code
            self.queue.put_nowait(None)

    async def abort_if_closed(self, context: grpc.aio.ServicerContext, what: str) -> None:
        """End the call with the status the master closed the stream with (if it did)."""
        if self.close_code is not None:
            await context.abort(self.close_code, f"{what} {self.id}: {self.close_reason}")


class Dispatcher:
    def __init__(self, master: Master, registry: Registry) -> None:
        self.master = master
        self.registry = registry
        #: The operator event stream of this term (mesos_master.events); the core publishes only while it is
        #: watched (the snapshot a watcher starts from is taken when it comes).
        self.hub = EventHub(partial(state_snapshot, master), authorizer=master.authorizer, on_watchers=self._watchers)
        self._watchers(self.hub.watchers)
        self.frameworks: dict[str, Connection] = {}
        self.agents: dict[str, Connection] = {}
        self.allocation_wanted = asyncio.Event()
        self.stopped = False
        self.stop_reason = MASTER_STOPPING
        #: Set when a registry write failed (`failure` says why): the term must end.
        self.failed = asyncio.Event()
        self.failure: BaseException | None = None
        self._flush_lock = asyncio.Lock()
        self._flush_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    def background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` for the rest of this term (the servicers' own loops: the agents' pinger); cancelled when
        the dispatcher closes."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _watchers(self, count: int) -> None:
        self.master.outbox.watched = count > 0

    def stop(self, reason: str = MASTER_STOPPING) -> None:
        """The master is stopping (or no longer leads): end every stream now (UNAVAILABLE, so that peers come
        back, to this master or the new leader) and refuse new ones, rather than leave them to the server's grace
        period and its cancellation."""
        self.stopped = True
        self.stop_reason = reason
        for conn in [*self.frameworks.values(), *self.agents.values()]:
            conn.close(reason, grpc.StatusCode.UNAVAILABLE)
        self.hub.close(reason)

    def changed(self, *, allocate: bool = False) -> None:
        """Call after every change to the core; batches everything done in this loop turn."""
        if allocate:
            self.allocation_wanted.set()
        if self._flush_task is None and self.failure is None:
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        try:
            await self.flush()
        finally:
            self._flush_task = None

    async def flush(self) -> None:
        """Persist, then send, everything the core has queued (what it queues meanwhile too)."""
        async with self._flush_lock:
            while self.master.outbox and self.failure is None:
                drained = self.master.outbox.drain()
                if drained.writes:
                    try:
                        await self.registry.apply(drained.writes)
                    except Exception as e:  # FencedError, RegistryError, or the store's own error: the same end
                        self._fail(e)
                        return
                self._deliver(drained)

    async def commit(self, context: grpc.aio.ServicerContext) -> None:
        """Persist what the core has queued (an operator's change), then answer: a change the registry did not
        take is UNAVAILABLE (the term is over; the caller retries with the leader), never a false OK."""
        self.allocation_wanted.set()
        await self.flush()
        if self.failure is not None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"the change was not saved: {LEADERSHIP_LOST}")

    async def close(self) -> None:
        """Wait for the flush under way (the master stops: what the last calls wrote reaches the registry)."""
        await self.flush()
        task = self._flush_task
        if task is not None:
            await cancel_and_wait(task)
        for work in list(self._background):
            await cancel_and_wait(work)

    def _fail(self, error: BaseException) -> None:
        self.failure = error
        self.failed.set()
        if isinstance(error, FencedError):
            log.warning("registry write fenced off: another master leads", error=str(error))
        else:
            log.error("registry write failed: this master stops leading", error=str(error))

    def _deliver(self, drained: Drained) -> None:
        for framework_id, events in drained.to_frameworks.items():
            conn = self.frameworks.get(framework_id)
            if conn is None:
                continue
            for event in events:
                conn.send(event)
        for agent_id, messages in drained.to_agents.items():
            aconn = self.agents.get(agent_id)
            if aconn is None:
                log.warning("messages for a detached agent dropped", agent_id=agent_id, count=len(messages))
                continue
            for message in messages:
                aconn.send(message)
        for framework_id, why in drained.close_frameworks.items():
            conn = self.frameworks.pop(framework_id, None)
            if conn is not None:
                conn.close(why, grpc.StatusCode.FAILED_PRECONDITION)
        if any(drained.close_frameworks) or drained.writes:
            self.allocation_wanted.set()
        self.hub.publish(drained.events)

    async def serve(
        self,
        registry: dict[str, Connection[Any]],
        conn: Connection[Any],
        context: grpc.aio.ServicerContext,
        reader: Callable[[Connection[Any]], Coroutine[Any, Any, None]],
        *,
        keepalive: Any,
        interval: float | None,
        on_detach: Callable[[], None],
        prepare: Callable[[Any], None] | None = None,
        on_attach: Callable[[Connection[Any]], None] | None = None,
    ) -> None:
        """Run one attached stream: `conn` replaces any older one with its id, its queue is written out (with
        `keepalive` when idle for `interval`; None: no keepalive, someone else sends them), `reader` consumes
        what the peer sends; when either side ends, `on_detach` tells the core (unless a newer stream took
        over)."""
        old = registry.get(conn.id)
        if old is not None:
            old.close("superseded by a newer stream of the same id", grpc.StatusCode.ABORTED)
        registry[conn.id] = conn
        if on_attach is not None:
            on_attach(conn)
        if self.stopped:
            conn.close(self.stop_reason, grpc.StatusCode.UNAVAILABLE)
        await self.flush()  # what the core queued at registration (SUBSCRIBED, REGISTERED) goes to this stream
        self.changed(allocate=True)
        read = asyncio.create_task(reader(conn))
        try:
            while True:
                if interval is None:
                    message = await conn.queue.get()
                else:
                    try:
                        async with asyncio.timeout(interval):  # not wait_for: see scheduler_sdk._daemon.tasks
                            message = await conn.queue.get()
                    except TimeoutError:
                        message = keepalive
                if message is None:
                    return
                if prepare is not None:
                    prepare(message)
                await context.write(message)
        finally:
            try:
                await cancel_and_wait(read)
            finally:
                self._detach(registry, conn, on_detach)

    def _detach(
        self, registry: dict[str, Connection[Any]], conn: Connection[Any], on_detach: Callable[[], None]
    ) -> None:
        if registry.get(conn.id) is conn:
            del registry[conn.id]
            on_detach()
            self.changed(allocate=True)
